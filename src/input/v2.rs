//! Open Inference Protocol v2 inference requests: one tensor per column, `BYTES` for text and a
//! number datatype for numbers, data flat or nested in row-major order.

use serde::Deserialize;
use serde_json::Value;

use super::{decode_values, Limits};
use crate::preprocess::{Batch, ColumnKind, InputError, InputErrorKind, InputSpec};

#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<Tensor>,
}

#[derive(Deserialize)]
struct Tensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

/// The datatypes a number column takes; values are read as f64 whatever is declared.
pub const NUMBER_DATATYPES: [&str; 10] = [
    "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
];

/// Decodes an inference request into its `id` and the typed batch. Shapes and datatypes are checked
/// here; values, the row limit and column lengths as every body format checks them.
pub fn decode_v2(body: &[u8], inputs: &[InputSpec], limits: Limits) -> Result<(Option<String>, Batch), InputError> {
    let request: InferRequest = serde_json::from_slice(body)
        .map_err(|e| InputError::new(InputErrorKind::Syntax, format!("not a v2 inference request: {e}")))?;
    let mut columns = Vec::with_capacity(request.inputs.len());
    for tensor in &request.inputs {
        let Some(input) = inputs.iter().find(|i| i.name == tensor.name) else {
            continue;
        };
        let mut values = Vec::new();
        flatten(&tensor.data, &mut values);
        let declared = tensor
            .shape
            .iter()
            .try_fold(1i64, |product, &d| if d < 0 { None } else { product.checked_mul(d) });
        if declared != Some(values.len() as i64) {
            return Err(InputError::at(
                InputErrorKind::Ragged,
                &input.name,
                None,
                format!("shape {:?} does not match {} values", tensor.shape, values.len()),
            ));
        }
        let fits = match input.kind {
            ColumnKind::Number => NUMBER_DATATYPES.contains(&tensor.datatype.as_str()),
            ColumnKind::String => tensor.datatype == "BYTES",
        };
        if !fits {
            let message = format!(
                "datatype {} does not fit; send {}",
                tensor.datatype,
                datatype(input.kind)
            );
            return Err(InputError::at(InputErrorKind::Type, &input.name, None, message));
        }
        columns.push((tensor.name.as_str(), values));
    }
    let batch = decode_values(inputs, limits, columns)?;
    Ok((request.id, batch))
}

/// The datatype a column is described with.
pub fn datatype(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Number => "FP64",
        ColumnKind::String => "BYTES",
    }
}

/// Row-major tensor data may come nested; the protocol allows both forms.
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
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
        decode_v2(body.as_bytes(), &inputs(), Limits::default())
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
