//! `text/csv` bodies: a header row naming the columns, then one car per line.

use std::io::Read;

use super::chunks::{Chunk, Rows};
use super::{type_error, Builder, Limits};
use crate::preprocess::{Batch, Column, ColumnKind, InputError, InputErrorKind, InputSpec};

/// Decodes CSV with a header. Empty cells are missing values; extra columns are ignored.
pub fn decode_csv(body: &[u8], inputs: &[InputSpec], limits: Limits) -> Result<Batch, InputError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let syntax = |e: ::csv::Error| InputError::new(InputErrorKind::Syntax, format!("invalid CSV: {e}"));
    let headers = reader.headers().map_err(syntax)?.clone();
    let mut builder = Builder::new(inputs, limits);
    // For each CSV field, the input it fills.
    let mut targets = Vec::with_capacity(headers.len());
    for name in headers.iter() {
        let target = builder.index(name.trim());
        if let Some(i) = target {
            if builder.columns[i].is_some() {
                return Err(InputError::at(
                    InputErrorKind::Syntax,
                    name,
                    None,
                    "appears twice in the header",
                ));
            }
            builder.columns[i] = Some(Builder::empty_column(inputs[i].kind));
        }
        targets.push(target);
    }
    let mut record = ::csv::StringRecord::new();
    let mut row = 0;
    while reader.read_record(&mut record).map_err(syntax)? {
        if row == limits.max_rows {
            return Err(builder.too_many_rows());
        }
        for (field, target) in record.iter().zip(&targets) {
            let Some(i) = *target else { continue };
            let name = &inputs[i].name;
            match builder.columns[i].as_mut() {
                Some(Column::Number(values)) => values.push(number(field, name, row)?),
                Some(Column::Text(values)) => values.push((!field.is_empty()).then(|| field.to_owned())),
                None => {}
            }
        }
        row += 1;
    }
    builder.finish()
}

fn number(field: &str, column: &str, row: usize) -> Result<f64, InputError> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(f64::NAN);
    }
    match field.parse::<f64>() {
        Ok(x) if x.is_infinite() => Err(InputError::at(
            InputErrorKind::OutOfRange,
            column,
            Some(row),
            format!("{field:?} is not a finite number"),
        )),
        Ok(x) => Ok(x),
        Err(_) => Err(type_error(column, row, ColumnKind::Number, &format!("{field:?}"))),
    }
}

/// A CSV file read a chunk at a time, so that a file of any size is scored in bounded memory. The
/// reader only cuts the bytes at record boundaries (a newline outside quotes); decoding, the costly
/// part, is [`CsvDecoder::decode`]'s, on the scoring threads.
pub struct CsvChunks<R> {
    source: R,
    decoder: CsvDecoder,
    chunk_bytes: usize,
    /// Bytes read past the last boundary handed out.
    carry: Vec<u8>,
    /// Bytes handed out so far, the header included.
    consumed: u64,
    at_end: bool,
}

/// What decoding a chunk needs: the inputs, the header, and which input each field fills.
#[derive(Debug, Clone)]
pub struct CsvDecoder {
    /// Whether chunks keep their records (for `--keep-columns` and rejects files).
    pub keep_records: bool,
    inputs: Vec<InputSpec>,
    header: ::csv::StringRecord,
    targets: Vec<Option<usize>>,
}

impl<R: std::io::Read> CsvChunks<R> {
    /// Reads the header: every input must be there, once. Extra columns are carried along.
    pub fn new(source: R, inputs: &[InputSpec], chunk_bytes: usize) -> Result<Self, InputError> {
        let mut chunks = Self {
            source,
            decoder: CsvDecoder {
                keep_records: true,
                inputs: inputs.to_vec(),
                header: ::csv::StringRecord::new(),
                targets: Vec::new(),
            },
            chunk_bytes: chunk_bytes.max(1),
            carry: Vec::new(),
            consumed: 0,
            at_end: false,
        };
        let syntax = |e: ::csv::Error| InputError::new(InputErrorKind::Syntax, format!("invalid CSV: {e}"));
        let first = chunks.next_cut(1, true)?.unwrap_or_default();
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(first.as_slice());
        let header = reader.headers().map_err(syntax)?.clone();
        if reader.records().next().is_some() {
            return Err(InputError::new(
                InputErrorKind::Syntax,
                "invalid CSV: the header is not one line",
            ));
        }
        let mut targets: Vec<Option<usize>> = Vec::with_capacity(header.len());
        for name in header.iter() {
            let target = inputs.iter().position(|i| i.name == name.trim());
            if target.is_some() && targets.contains(&target) {
                return Err(InputError::at(
                    InputErrorKind::Syntax,
                    name,
                    None,
                    "appears twice in the header",
                ));
            }
            targets.push(target);
        }
        if let Some(missing) = (0..inputs.len()).find(|i| !targets.contains(&Some(*i))) {
            return Err(InputError::at(
                InputErrorKind::MissingColumn,
                &inputs[missing].name,
                None,
                "is required but missing",
            ));
        }
        chunks.decoder.header = header;
        chunks.decoder.targets = targets;
        Ok(chunks)
    }

    pub fn decoder(&self) -> &CsvDecoder {
        &self.decoder
    }

    /// The next chunk's bytes (whole records, about `chunk_bytes` of them) and how far into the
    /// file they end; `None` at the end.
    pub fn next_raw(&mut self) -> Result<Option<(Vec<u8>, u64)>, InputError> {
        let cut = self.next_cut(self.chunk_bytes, false)?;
        Ok(cut.map(|bytes| (bytes, self.consumed)))
    }

    /// At least `want` bytes (fewer at the end of the file) cut after the last record boundary in
    /// them, or after the first for the `header`; `None` when the file is used up.
    fn next_cut(&mut self, mut want: usize, header: bool) -> Result<Option<Vec<u8>>, InputError> {
        let mut buffer = std::mem::take(&mut self.carry);
        loop {
            if buffer.len() < want && !self.at_end {
                let room = (want - buffer.len()).max(64 * 1024) as u64;
                let read = (&mut self.source)
                    .take(room)
                    .read_to_end(&mut buffer)
                    .map_err(|e| InputError::new(InputErrorKind::Syntax, format!("cannot read: {e}")))?;
                self.at_end = read == 0;
                continue;
            }
            let cut = match boundary(&buffer, header) {
                Some(cut) => cut,
                // A record longer than `want`: read on until it ends.
                None if !self.at_end => {
                    want = buffer.len() * 2;
                    continue;
                }
                None if buffer.is_empty() => return Ok(None),
                None => buffer.len(),
            };
            self.carry = buffer.split_off(cut);
            self.consumed += buffer.len() as u64;
            return Ok(Some(buffer));
        }
    }
}

/// Just past the last newline outside quotes, or the first one when `first` (a doubled quote
/// inside quotes toggles twice, so the state stays right); `None` when there is none.
fn boundary(bytes: &[u8], first: bool) -> Option<usize> {
    let mut quoted = false;
    let mut last = None;
    for at in memchr::memchr2_iter(b'"', b'\n', bytes) {
        if bytes[at] == b'"' {
            quoted = !quoted;
        } else if !quoted {
            last = Some(at + 1);
            if first {
                break;
            }
        }
    }
    last
}
impl CsvDecoder {
    /// The header as read.
    pub fn header(&self) -> &::csv::StringRecord {
        &self.header
    }

    /// Decodes a chunk's records; rows are counted from the chunk's first. A record that cannot be
    /// read, has the wrong number of fields or a bad value is refused with why, and the rest go on.
    pub fn decode(&self, bytes: &[u8]) -> Chunk {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut records = Vec::new();
        let mut count = 0;
        let mut refused = Vec::new();
        let mut decoded = Vec::new();
        let mut columns: Vec<Column> = self.inputs.iter().map(|i| Builder::empty_column(i.kind)).collect();
        let mut values: Vec<Value> = Vec::with_capacity(self.inputs.len());
        let mut record = ::csv::StringRecord::new();
        loop {
            let row = count;
            let fault = match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) if record.len() != self.header.len() => Some(row_error(
                    row,
                    format!(
                        "invalid CSV: {} fields, the header has {}",
                        record.len(),
                        self.header.len()
                    ),
                )),
                Ok(true) => self.values(&record, row, &mut values).err(),
                // Bytes that are not UTF-8: that row's fault.
                Err(e) => Some(row_error(row, format!("invalid CSV: {e}"))),
            };
            match fault {
                Some(reason) => refused.push((row, reason)),
                None => {
                    decoded.push(row);
                    for (column, value) in columns.iter_mut().zip(values.drain(..)) {
                        match (column, value) {
                            (Column::Number(v), Value::Number(x)) => v.push(x),
                            (Column::Text(v), Value::Text(t)) => v.push(t),
                            _ => unreachable!("each value has its input's kind"),
                        }
                    }
                }
            }
            count += 1;
            if self.keep_records {
                records.push(std::mem::take(&mut record));
            }
        }
        let batch = (!decoded.is_empty()).then(|| Batch::new(decoded.len(), columns));
        Chunk {
            rows: Rows::Csv(count, records),
            batch,
            decoded,
            refused,
        }
    }

    /// The inputs' values of one record, in the inputs' order.
    fn values(&self, record: &::csv::StringRecord, row: usize, values: &mut Vec<Value>) -> Result<(), InputError> {
        values.clear();
        values.resize(self.inputs.len(), Value::Number(f64::NAN));
        for (field, target) in record.iter().zip(&self.targets) {
            let Some(i) = *target else { continue };
            values[i] = match self.inputs[i].kind {
                ColumnKind::Number => Value::Number(number(field, &self.inputs[i].name, row)?),
                ColumnKind::String => Value::Text((!field.is_empty()).then(|| field.to_owned())),
            };
        }
        Ok(())
    }
}

/// A fault of a whole row (no one column's).
fn row_error(row: usize, message: String) -> InputError {
    InputError {
        row: Some(row),
        ..InputError::new(InputErrorKind::Syntax, message)
    }
}

/// One decoded cell.
#[derive(Clone)]
enum Value {
    Number(f64),
    Text(Option<String>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::ColumnKind;

    fn inputs() -> Vec<InputSpec> {
        let spec = |name: &str, kind| InputSpec {
            name: name.to_owned(),
            kind,
        };
        vec![spec("model", ColumnKind::String), spec("mileage", ColumnKind::Number)]
    }

    #[test]
    fn a_boundary_is_a_newline_outside_quotes() {
        let text = b"a,\"two\nlines\"\nb,\"say \"\"hi\"\"\n\"\nc";
        assert_eq!(
            boundary(text, true),
            Some(14),
            "after the first record, not inside its quotes"
        );
        assert_eq!(
            boundary(text, false),
            Some(30),
            "doubled quotes inside quotes keep the state"
        );
        assert_eq!(boundary(b"no newline", false), None);
    }

    #[test]
    fn chunks_cut_whole_records_that_decode_as_the_whole_file_does() {
        let text = "model,mileage\r\n\"Focus\nST\",100\r\nFiesta,\r\nKa,abc\r\nPuma,5\r\n";
        // Chunks of about 10 bytes: every cut must still fall between records.
        let mut chunks = CsvChunks::new(text.as_bytes(), &inputs(), 10).unwrap();
        let (mut models, mut refused, mut rows) = (Vec::new(), Vec::new(), 0);
        while let Some((bytes, _)) = chunks.next_raw().unwrap() {
            let chunk = chunks.decoder().decode(&bytes);
            for (row, reason) in &chunk.refused {
                refused.push((rows + row, reason.clone().at_row(rows + row).message));
            }
            if let Some(Column::Text(names)) = chunk.batch.as_ref().map(|b| b.columns()[0].clone()) {
                models.extend(names.into_iter().flatten());
            }
            rows += chunk.rows.len();
        }
        assert_eq!(models, ["Focus\nST", "Fiesta", "Puma"]);
        assert_eq!(rows, 4);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 2);
        assert!(
            refused[0].1.starts_with("column \"mileage\", row 2:"),
            "{}",
            refused[0].1
        );
    }
}
