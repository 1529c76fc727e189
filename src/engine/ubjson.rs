//! A decoder for the Universal Binary JSON that `Booster.save_model("model.ubj")` writes.
//!
//! It produces a `serde_json::Value`, so JSON and UBJSON models go through one typed loader. XGBoost
//! writes big-endian scalars and "optimized" typed arrays (`[$d#L<count>` followed by raw floats); both
//! are handled, as are the plain forms other writers use.

use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused: XGBoost models nest about 8 levels.
const MAX_DEPTH: usize = 64;

/// Why a UBJSON document could not be decoded, with the byte offset where it went wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid UBJSON at byte {offset}: {reason}")]
pub struct UbjsonError {
    pub offset: usize,
    pub reason: String,
}

/// Decodes one UBJSON value that fills `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, UbjsonError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(0)?;
    if reader.pos != bytes.len() {
        return Err(reader.error("trailing bytes after the document"));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, reason: impl Into<String>) -> UbjsonError {
        UbjsonError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], UbjsonError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| self.error(format!("needs {n} more bytes, the file ends")))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, UbjsonError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UbjsonError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// An integer introduced by its type marker, as used for lengths and counts.
    fn length(&mut self) -> Result<usize, UbjsonError> {
        let marker = self.byte()?;
        let n = self.integer(marker)?;
        let n = usize::try_from(n).map_err(|_| self.error(format!("negative length {n}")))?;
        // Every element takes at least one byte, so a larger count is a corrupt file, not a big one.
        if n > self.bytes.len() - self.pos {
            return Err(self.error(format!("length {n} is larger than the rest of the file")));
        }
        Ok(n)
    }

    fn integer(&mut self, marker: u8) -> Result<i64, UbjsonError> {
        Ok(match marker {
            b'i' => i8::from_be_bytes(self.array()?) as i64,
            b'U' => self.byte()? as i64,
            b'I' => i16::from_be_bytes(self.array()?) as i64,
            b'l' => i32::from_be_bytes(self.array()?) as i64,
            b'L' => i64::from_be_bytes(self.array()?),
            other => return Err(self.error(format!("expected an integer marker, got {:?}", other as char))),
        })
    }

    fn string(&mut self) -> Result<String, UbjsonError> {
        let n = self.length()?;
        let at = self.pos;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| UbjsonError {
            offset: at,
            reason: "string is not UTF-8".into(),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, UbjsonError> {
        let marker = self.byte()?;
        self.typed_value(marker, depth)
    }

    fn typed_value(&mut self, marker: u8, depth: usize) -> Result<Value, UbjsonError> {
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::from(self.integer(marker)?),
            b'd' => {
                let x = f32::from_be_bytes(self.array()?);
                self.float(f64::from(x))?
            }
            b'D' => {
                let x = f64::from_be_bytes(self.array()?);
                self.float(x)?
            }
            b'C' => Value::String((self.byte()? as char).to_string()),
            b'S' => Value::String(self.string()?),
            b'H' => {
                let text = self.string()?;
                let number = text
                    .parse::<f64>()
                    .map_err(|_| self.error("bad high-precision number"))?;
                self.float(number)?
            }
            b'[' => self.container(depth, false)?,
            b'{' => self.container(depth, true)?,
            other => return Err(self.error(format!("unknown type marker {:?}", other as char))),
        })
    }

    /// JSON has no NaN or infinity: they become null, as `nan_as_null` does for XGBoost's JSON.
    fn float(&self, x: f64) -> Result<Value, UbjsonError> {
        Ok(Number::from_f64(x).map_or(Value::Null, Value::Number))
    }

    fn container(&mut self, depth: usize, object: bool) -> Result<Value, UbjsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let mut element_type = None;
        if self.peek() == Some(b'$') {
            self.pos += 1;
            element_type = Some(self.byte()?);
        }
        let mut count = None;
        if self.peek() == Some(b'#') {
            self.pos += 1;
            count = Some(self.length()?);
        } else if element_type.is_some() {
            return Err(self.error("a typed container needs a count"));
        }
        let mut array = Vec::with_capacity(count.unwrap_or(0));
        let mut map = Map::new();
        let mut i = 0;
        loop {
            match count {
                Some(n) if i == n => break,
                None if self.peek() == Some(if object { b'}' } else { b']' }) => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let key = if object { Some(self.string()?) } else { None };
            let value = match element_type {
                Some(marker) => self.typed_value(marker, depth + 1)?,
                None => self.value(depth + 1)?,
            };
            match key {
                Some(key) => {
                    map.insert(key, value);
                }
                None => array.push(value),
            }
            i += 1;
        }
        Ok(if object {
            Value::Object(map)
        } else {
            Value::Array(array)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_typed_and_plain_containers() {
        // {"a": [1.5f32, -2f32] as a typed array, "b": "hi", "c": [int8 -3, true, null]}
        let mut doc = vec![b'{'];
        doc.extend([b'i', 1, b'a', b'[', b'$', b'd', b'#', b'i', 2]);
        doc.extend(1.5f32.to_be_bytes());
        doc.extend((-2f32).to_be_bytes());
        doc.extend([b'i', 1, b'b', b'S', b'i', 2, b'h', b'i']);
        doc.extend([b'i', 1, b'c', b'[', b'i', 0xfd, b'T', b'Z', b']']);
        doc.push(b'}');
        assert_eq!(
            decode(&doc).unwrap(),
            json!({"a": [1.5, -2.0], "b": "hi", "c": [-3, true, null]})
        );
    }

    #[test]
    fn refuses_truncated_and_oversized_input() {
        let err = decode(&[b'[', b'$', b'd', b'#', b'L', 0x7f, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(err.reason.contains("larger than the rest"), "{err}");
        let err = decode(&[b'S', b'i', 5, b'a']).unwrap_err();
        assert!(err.reason.contains("larger than the rest"), "{err}");
        let err = decode(&[b'd', 0, 0]).unwrap_err();
        assert!(err.reason.contains("the file ends"), "{err}");
        assert!(decode(b"[").is_err());
        let deep = vec![b'['; 1000];
        assert!(decode(&deep).unwrap_err().reason.contains("deeply"));
    }
}
