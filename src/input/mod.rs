//! Request bodies decoded into a typed [`Batch`]: columnar JSON (Bento's format), records JSON, CSV,
//! and v2 inference requests.
//!
//! Decoding is driven by the model's input spec, so values land in typed columns in one pass and
//! every refusal names its column and row. Columns the model does not use are skipped, not stored.

mod chunks;
mod csv;
mod json;
mod parquet;
mod v2;

use crate::preprocess::{Batch, Column, ColumnKind, InputError, InputErrorKind, InputSpec};

pub use self::chunks::{Chunk, Chunks, Decoder, Raw, Rows};
pub use self::csv::{decode_csv, CsvChunks, CsvDecoder};
pub(crate) use self::json::Key as JsonKey;
pub use self::json::{decode_columnar, decode_json, decode_records};
pub use self::parquet::{ParquetChunks, ParquetDecoder};
pub use self::v2::{
    datatype as v2_datatype, decode_tensors, decode_v2, fp32_bytes as v2_fp32_bytes, served_output as v2_served_output,
    Data as V2Data, Output as V2Output, Request as V2Request, Tensor as V2Tensor, CONTRIBUTIONS as V2_CONTRIBUTIONS,
    NUMBER_DATATYPES as V2_NUMBER_DATATYPES, OUTPUT as V2_OUTPUT,
};

/// Bounds on what a body may ask of the decoder.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rows per batch; more is refused with `TooManyRows`.
    pub max_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_rows: 100_000 }
    }
}

/// Columns being filled, one slot per model input.
struct Builder<'a> {
    inputs: &'a [InputSpec],
    columns: Vec<Option<Column>>,
    limits: Limits,
}

impl<'a> Builder<'a> {
    fn new(inputs: &'a [InputSpec], limits: Limits) -> Self {
        Self {
            inputs,
            columns: vec![None; inputs.len()],
            limits,
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|i| i.name == name)
    }

    fn empty_column(kind: ColumnKind) -> Column {
        match kind {
            ColumnKind::Number => Column::Number(Vec::new()),
            ColumnKind::String => Column::Text(Vec::new()),
        }
    }

    fn too_many_rows(&self) -> InputError {
        InputError::new(
            InputErrorKind::TooManyRows,
            format!("more than {} rows in one request", self.limits.max_rows),
        )
    }

    /// Checks that every input is present, all columns have one length, and it is not zero.
    fn finish(self) -> Result<Batch, InputError> {
        let mut columns = Vec::with_capacity(self.columns.len());
        let mut rows = None;
        for (input, column) in self.inputs.iter().zip(self.columns) {
            let column = column.ok_or_else(|| {
                InputError::at(
                    InputErrorKind::MissingColumn,
                    &input.name,
                    None,
                    "is required but missing",
                )
            })?;
            match rows {
                None => rows = Some((column.len(), &input.name)),
                Some((n, first)) if n != column.len() => {
                    return Err(InputError::at(
                        InputErrorKind::Ragged,
                        &input.name,
                        None,
                        format!(
                            "has {} values but {first:?} has {n}; all columns need the same length",
                            column.len()
                        ),
                    ))
                }
                Some(_) => {}
            }
            columns.push(column);
        }
        let rows = rows.map_or(0, |(n, _)| n);
        if rows == 0 {
            return Err(InputError::new(InputErrorKind::Empty, "the request has no rows"));
        }
        Ok(Batch::new(rows, columns))
    }
}

/// A batch from columns whose values are still JSON text: the stream bridge reads a row's members
/// without building a value for each.
pub fn decode_raw<'v>(
    inputs: &[InputSpec],
    limits: Limits,
    columns: impl IntoIterator<Item = (&'v str, Vec<&'v serde_json::value::RawValue>)>,
) -> Result<Batch, InputError> {
    decode_cells(inputs, limits, columns, json::Cell::of_raw)
}

fn decode_cells<'v, T: ?Sized + 'v>(
    inputs: &[InputSpec],
    limits: Limits,
    columns: impl IntoIterator<Item = (&'v str, Vec<&'v T>)>,
    cell: impl Fn(&T) -> json::Cell,
) -> Result<Batch, InputError> {
    let mut builder = Builder::new(inputs, limits);
    for (name, values) in columns {
        let Some(i) = builder.index(name) else { continue };
        if values.len() > limits.max_rows {
            return Err(builder.too_many_rows());
        }
        let mut column = Builder::empty_column(inputs[i].kind);
        for (row, value) in values.into_iter().enumerate() {
            let cell = cell(value);
            match &mut column {
                Column::Number(v) => v.push(cell.into_number(name, row)?),
                Column::Text(v) => v.push(cell.into_text(name, row)?),
            }
        }
        builder.columns[i] = Some(column);
    }
    builder.finish()
}

/// Describes a JSON or CSV value for an error message.
fn type_error(column: &str, row: usize, expected: ColumnKind, got: &str) -> InputError {
    let expected = match expected {
        ColumnKind::Number => "a number or null",
        ColumnKind::String => "a string or null",
    };
    InputError::at(
        InputErrorKind::Type,
        column,
        Some(row),
        format!("expected {expected}, got {got}"),
    )
}
