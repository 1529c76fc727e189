//! Open Inference Protocol v2 inference requests, from every transport: one tensor per column,
//! `BYTES` for text and a number datatype for numbers.
//!
//! A tensor's values arrive as JSON `data` (flat or nested, row-major), as binary (the HTTP binary
//! data extension and gRPC's `raw_input_contents`: little-endian numbers, `BYTES` as a 4-byte
//! little-endian length then the bytes) or as gRPC's typed contents. All of them land in typed
//! columns in one pass, JSON straight from the body's text: each tensor's shape is checked against
//! the row limit before a value is read, so no body builds a tree of values first.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{Cell, CellVisitor};
use super::{Builder, Limits};
use crate::preprocess::{Batch, Column, ColumnKind, InputError, InputErrorKind, InputSpec};

/// The output tensor's name.
pub const OUTPUT: &str = "predict";
/// The output a request may ask for beside (or instead of) the predictions: per row, each input
/// column's exact contribution, then the base value.
pub const CONTRIBUTIONS: &str = "contributions";

/// An output tensor a request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// [`OUTPUT`]: the predictions, FP32 `[rows]`.
    Predict,
    /// [`CONTRIBUTIONS`]: FP32 `[rows, inputs + 1]`, the input columns in the model's order, then
    /// the base value.
    Contributions,
}

/// The datatypes a number column takes; values are read as f64 whatever is declared.
pub const NUMBER_DATATYPES: [&str; 10] = [
    "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
];

/// One input tensor as a transport carries it.
pub struct Tensor<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: &'a [i64],
    pub data: Data<'a>,
}

/// A tensor's values.
pub enum Data<'a> {
    /// JSON `data`, still as the body's text.
    Json(&'a RawValue),
    /// Little-endian values of the datatype; `BYTES` as length-prefixed elements.
    Binary(&'a [u8]),
    /// gRPC typed contents of a number datatype.
    Numbers(Vec<f64>),
    /// gRPC typed contents of `BYTES`.
    Texts(Vec<&'a [u8]>),
}

/// A decoded inference request.
#[derive(Debug)]
pub struct Request {
    pub id: Option<String>,
    pub batch: Batch,
    /// The output is asked for in binary (`binary_data_output`, or `binary_data` on the output).
    pub binary_output: bool,
    /// The outputs asked for, in order; empty asks for the predictions alone.
    pub outputs: Vec<Output>,
}

#[derive(Deserialize)]
struct JsonRequest<'a> {
    id: Option<String>,
    #[serde(default)]
    parameters: RequestParameters,
    #[serde(borrow)]
    inputs: Vec<JsonTensor<'a>>,
    #[serde(default)]
    outputs: Vec<JsonOutput>,
}

/// Parameters not named here (Triton's `sequence_id`, `priority`, ...) are read and ignored.
#[derive(Deserialize, Default)]
struct RequestParameters {
    binary_data_output: Option<bool>,
}

#[derive(Deserialize)]
struct JsonTensor<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    shape: Vec<i64>,
    datatype: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    parameters: TensorParameters,
}

#[derive(Deserialize, Default)]
struct TensorParameters {
    binary_data_size: Option<usize>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: OutputParameters,
}

#[derive(Deserialize, Default)]
struct OutputParameters {
    binary_data: Option<bool>,
}

/// Decodes a JSON inference request. `binary` is what follows the JSON when the request uses the
/// binary data extension (`Inference-Header-Content-Length`): the tensors that declare a
/// `binary_data_size` take their bytes from it, in order, and together they must take all of it.
pub fn decode_v2(
    json: &[u8],
    binary: Option<&[u8]>,
    inputs: &[InputSpec],
    limits: Limits,
) -> Result<Request, InputError> {
    let request: JsonRequest = serde_json::from_slice(json).map_err(|e| {
        // Binary tensor data after the JSON, without the header that says where the JSON ends.
        let hint = if binary.is_none() && e.to_string().starts_with("trailing characters") {
            "; binary tensor data needs the Inference-Header-Content-Length header"
        } else {
            ""
        };
        InputError::new(InputErrorKind::Syntax, format!("not a v2 inference request: {e}{hint}"))
    })?;
    let mut rest = binary;
    let mut tensors = Vec::with_capacity(request.inputs.len());
    for tensor in &request.inputs {
        let name = tensor.name.as_ref();
        let framing = |what: String| InputError::at(InputErrorKind::Syntax, name, None, what);
        let data = match (tensor.data, tensor.parameters.binary_data_size) {
            (Some(data), None) => Data::Json(data),
            (None, Some(size)) => {
                let Some(bytes) = rest else {
                    return Err(framing(format!(
                        "has binary_data_size {size} but the request has no Inference-Header-Content-Length header"
                    )));
                };
                if size > bytes.len() {
                    return Err(framing(format!(
                        "binary_data_size {size} runs past the end of the binary data ({} bytes left)",
                        bytes.len()
                    )));
                }
                let (own, after) = bytes.split_at(size);
                rest = Some(after);
                Data::Binary(own)
            }
            (Some(_), Some(_)) => return Err(framing("has both data and binary_data_size".into())),
            (None, None) => return Err(framing("has neither data nor binary_data_size".into())),
        };
        tensors.push(Tensor {
            name,
            datatype: &tensor.datatype,
            shape: &tensor.shape,
            data,
        });
    }
    if let Some(left) = rest.filter(|r| !r.is_empty()) {
        return Err(InputError::new(
            InputErrorKind::Syntax,
            format!(
                "{} bytes of binary data are claimed by no tensor's binary_data_size",
                left.len()
            ),
        ));
    }
    let mut binary_output = request.parameters.binary_data_output.unwrap_or(false);
    let mut outputs = Vec::with_capacity(request.outputs.len());
    for output in &request.outputs {
        outputs.push(served_output(&output.name)?);
        binary_output = output.parameters.binary_data.unwrap_or(binary_output);
    }
    let batch = decode_tensors(tensors, inputs, limits)?;
    Ok(Request {
        id: request.id,
        batch,
        binary_output,
        outputs,
    })
}

/// The output a request names, or a refusal naming those served.
pub fn served_output(name: &str) -> Result<Output, InputError> {
    match name {
        OUTPUT => Ok(Output::Predict),
        CONTRIBUTIONS => Ok(Output::Contributions),
        _ => {
            let message =
                format!("output {name:?} is not served; the model's outputs are {OUTPUT:?} and {CONTRIBUTIONS:?}");
            Err(InputError::new(InputErrorKind::Syntax, message))
        }
    }
}

/// The predictions as the binary forms carry an FP32 tensor: little-endian, one after another.
pub fn fp32_bytes(predictions: &[f32]) -> impl Iterator<Item = u8> + '_ {
    predictions.iter().flat_map(|p| p.to_le_bytes())
}

/// Decodes tensors into a batch: datatypes and shapes checked against the model's inputs, the row
/// limit against each shape before any value is read, then values as every body format reads them.
/// Tensors the model does not use are skipped unread.
pub fn decode_tensors<'a>(
    tensors: impl IntoIterator<Item = Tensor<'a>>,
    inputs: &[InputSpec],
    limits: Limits,
) -> Result<Batch, InputError> {
    let mut builder = Builder::new(inputs, limits);
    for tensor in tensors {
        let Some(i) = builder.index(tensor.name) else { continue };
        let input = &inputs[i];
        let name = input.name.as_str();
        let fits = match input.kind {
            ColumnKind::Number => NUMBER_DATATYPES.contains(&tensor.datatype),
            ColumnKind::String => tensor.datatype == "BYTES",
        };
        if !fits {
            let message = format!(
                "datatype {} does not fit; send {}",
                tensor.datatype,
                datatype(input.kind)
            );
            return Err(InputError::at(InputErrorKind::Type, name, None, message));
        }
        let count = tensor
            .shape
            .iter()
            .try_fold(1usize, |product, &d| {
                usize::try_from(d).ok().and_then(|d| product.checked_mul(d))
            })
            .ok_or_else(|| {
                let message = format!("shape {:?} is not a list of sizes", tensor.shape);
                InputError::at(InputErrorKind::Ragged, name, None, message)
            })?;
        if count > limits.max_rows {
            return Err(builder.too_many_rows());
        }
        let column = match tensor.data {
            Data::Json(data) => json_column(data, name, input.kind, count)?,
            Data::Binary(bytes) => binary_column(bytes, name, tensor.datatype, count)?,
            Data::Numbers(values) => Column::Number(values),
            Data::Texts(values) => Column::Text(
                values
                    .into_iter()
                    .enumerate()
                    .map(|(row, bytes)| text(bytes, name, row).map(Some))
                    .collect::<Result<_, _>>()?,
            ),
        };
        if column.len() != count {
            let message = format!("shape {:?} does not match {} values", tensor.shape, column.len());
            return Err(InputError::at(InputErrorKind::Ragged, name, None, message));
        }
        builder.columns[i] = Some(column);
    }
    builder.finish()
}

/// The datatype a column is described with.
pub fn datatype(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Number => "FP64",
        ColumnKind::String => "BYTES",
    }
}

fn text(bytes: &[u8], column: &str, row: usize) -> Result<String, InputError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| InputError::at(InputErrorKind::Type, column, Some(row), "is not UTF-8 text"))
}

/// Reads little-endian values of `datatype`, or length-prefixed `BYTES` elements.
fn binary_column(bytes: &[u8], column: &str, datatype: &str, count: usize) -> Result<Column, InputError> {
    if datatype == "BYTES" {
        let mut values = Vec::with_capacity(count.min(bytes.len() / 4));
        let mut rest = bytes;
        while !rest.is_empty() {
            let row = values.len();
            let short = || {
                InputError::at(
                    InputErrorKind::Syntax,
                    column,
                    Some(row),
                    "BYTES element runs past the tensor's binary data",
                )
            };
            let (length, after) = rest.split_first_chunk::<4>().ok_or_else(short)?;
            let length = u32::from_le_bytes(*length) as usize;
            if length > after.len() {
                return Err(short());
            }
            let (element, after) = after.split_at(length);
            values.push(Some(text(element, column, row)?));
            rest = after;
        }
        return Ok(Column::Text(values));
    }
    let (width, read) = number_reader(datatype);
    if bytes.len() != count * width {
        let message = format!(
            "has {} bytes of binary data; {count} values of {datatype} take {}",
            bytes.len(),
            count * width
        );
        return Err(InputError::at(InputErrorKind::Ragged, column, None, message));
    }
    Ok(Column::Number(bytes.chunks_exact(width).map(read).collect()))
}

/// The width of a little-endian number of `datatype` and how to read one, chosen once per tensor
/// rather than per value. Other datatypes are refused before this is asked; they read as FP64.
fn number_reader(datatype: &str) -> (usize, fn(&[u8]) -> f64) {
    fn le<const N: usize>(b: &[u8]) -> [u8; N] {
        b.try_into().expect("chunks of the datatype's width")
    }
    match datatype {
        "INT8" => (1, |b| i8::from_le_bytes(le(b)) as f64),
        "UINT8" => (1, |b| u8::from_le_bytes(le(b)) as f64),
        "INT16" => (2, |b| i16::from_le_bytes(le(b)) as f64),
        "UINT16" => (2, |b| u16::from_le_bytes(le(b)) as f64),
        "INT32" => (4, |b| i32::from_le_bytes(le(b)) as f64),
        "UINT32" => (4, |b| u32::from_le_bytes(le(b)) as f64),
        "FP32" => (4, |b| f32::from_le_bytes(le(b)) as f64),
        "INT64" => (8, |b| i64::from_le_bytes(le(b)) as f64),
        "UINT64" => (8, |b| u64::from_le_bytes(le(b)) as f64),
        _ => (8, |b| f64::from_le_bytes(le(b))),
    }
}

/// Reads JSON `data`, nested or flat, straight into a column, stopping at the first value past
/// `count` (the shape's product, already within the row limit).
fn json_column(data: &RawValue, column: &str, kind: ColumnKind, count: usize) -> Result<Column, InputError> {
    let mut reader = DataReader {
        column: Builder::empty_column(kind),
        name: column,
        count,
        error: None,
    };
    let mut deserializer = serde_json::Deserializer::from_str(data.get());
    match (&mut reader).deserialize(&mut deserializer) {
        Ok(()) => Ok(reader.column),
        Err(e) => Err(reader
            .error
            .unwrap_or_else(|| InputError::at(InputErrorKind::Syntax, column, None, format!("invalid data: {e}")))),
    }
}

/// Fills a column from a JSON value: lists are walked into, anything else is one cell.
struct DataReader<'a> {
    column: Column,
    name: &'a str,
    count: usize,
    /// A refusal found inside serde, kept with its column and row.
    error: Option<InputError>,
}

impl DataReader<'_> {
    fn push<E: serde::de::Error>(&mut self, cell: Cell) -> Result<(), E> {
        let row = self.column.len();
        let pushed = if row >= self.count {
            let message = format!("has more values than its shape's {}", self.count);
            Err(InputError::at(InputErrorKind::Ragged, self.name, None, message))
        } else {
            match &mut self.column {
                Column::Number(v) => cell.into_number(self.name, row).map(|x| v.push(x)),
                Column::Text(v) => cell.into_text(self.name, row).map(|x| v.push(x)),
            }
        };
        pushed.map_err(|error| {
            let message = error.message.clone();
            self.error = Some(error);
            E::custom(message)
        })
    }
}

impl<'de> DeserializeSeed<'de> for &mut DataReader<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut DataReader<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tensor data: a value or a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.push(CellVisitor.visit_i64::<E>(v)?)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.push(CellVisitor.visit_u64::<E>(v)?)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.push(CellVisitor.visit_f64::<E>(v)?)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.push(CellVisitor.visit_str::<E>(v)?)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.push(Cell::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.push(Cell::Other("a boolean"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        self.push(Cell::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::ColumnKind;

    fn inputs() -> Vec<InputSpec> {
        vec![InputSpec {
            name: "x".into(),
            kind: ColumnKind::Number,
        }]
    }

    fn decode(body: &str) -> Result<(Option<String>, Batch), InputError> {
        decode_v2(body.as_bytes(), None, &inputs(), Limits::default()).map(|r| (r.id, r.batch))
    }

    #[test]
    fn shape_whose_product_overflows_is_refused_not_a_panic() {
        let body =
            r#"{"inputs": [{"name": "x", "shape": [4294967296, 4294967296, 4], "datatype": "FP64", "data": [1]}]}"#;
        let error = decode(body).unwrap_err();
        assert_eq!(error.kind, InputErrorKind::Ragged);
        assert_eq!(error.column.as_deref(), Some("x"));
    }

    #[test]
    fn nested_data_reads_in_row_major_order_and_the_id_is_kept() {
        let body =
            r#"{"id": "a", "inputs": [{"name": "x", "shape": [2, 1], "datatype": "INT64", "data": [[1], [2]]}]}"#;
        let (id, batch) = decode(body).unwrap();
        assert_eq!(id.as_deref(), Some("a"));
        assert_eq!(batch.rows(), 2);
        assert!(matches!(&batch.columns()[0], crate::preprocess::Column::Number(v) if v == &[1.0, 2.0]));
    }

    #[test]
    fn negative_dimension_and_wrong_datatype_are_refused() {
        let negative = r#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP64", "data": [1]}]}"#;
        assert_eq!(decode(negative).unwrap_err().kind, InputErrorKind::Ragged);
        let text = r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["1"]}]}"#;
        assert_eq!(decode(text).unwrap_err().kind, InputErrorKind::Type);
    }
}
