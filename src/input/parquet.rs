//! Apache Parquet files for batch scoring, read a record batch at a time with arrow-rs: a number
//! input may be any integer or float column, a text input a string column (plain or dictionary
//! encoded); nulls are missing values.

use std::fs::File;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::chunks::{Chunk, Rows};
use crate::preprocess::{Batch, Column, ColumnKind, InputError, InputErrorKind, InputSpec};

pub struct ParquetChunks {
    reader: ParquetRecordBatchReader,
    schema: Arc<Schema>,
    inputs: Vec<InputSpec>,
    /// For each input, its column in the file.
    columns: Vec<usize>,
    total_rows: u64,
    next_row: usize,
}

impl ParquetChunks {
    /// Reads the file's footer: every input must be a column of a type it can take.
    pub fn open(file: File, inputs: &[InputSpec], rows_per_chunk: usize) -> Result<Self, InputError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| InputError::new(InputErrorKind::Syntax, format!("not a Parquet file: {e}")))?;
        let schema = builder.schema().clone();
        let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let mut columns = Vec::with_capacity(inputs.len());
        for input in inputs {
            let Some((index, field)) = schema.column_with_name(&input.name) else {
                return Err(InputError::at(
                    InputErrorKind::MissingColumn,
                    &input.name,
                    None,
                    "is required but missing",
                ));
            };
            let fits = match input.kind {
                ColumnKind::Number => field.data_type().is_integer() || field.data_type().is_floating(),
                ColumnKind::String => is_text(field.data_type()),
            };
            if !fits {
                let wanted = match input.kind {
                    ColumnKind::Number => "an integer or float column",
                    ColumnKind::String => "a string column",
                };
                return Err(InputError::at(
                    InputErrorKind::Type,
                    &input.name,
                    None,
                    format!("is {} in the file; it needs {wanted}", field.data_type()),
                ));
            }
            columns.push(index);
        }
        let reader = builder
            .with_batch_size(rows_per_chunk.max(1))
            .build()
            .map_err(|e| InputError::new(InputErrorKind::Syntax, format!("cannot read the Parquet file: {e}")))?;
        Ok(Self {
            reader,
            schema,
            inputs: inputs.to_vec(),
            columns,
            total_rows,
            next_row: 0,
        })
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn total_rows(&self) -> u64 {
        self.total_rows
    }

    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, InputError> {
        let batch = match self.reader.next() {
            None => return Ok(None),
            Some(Ok(batch)) => batch,
            Some(Err(e)) => {
                return Err(InputError::new(
                    InputErrorKind::Syntax,
                    format!("cannot read the Parquet file: {e}"),
                ))
            }
        };
        let first_row = self.next_row;
        self.next_row += batch.num_rows();
        let (decoded, refused, columns) = self.decode(&batch, first_row)?;
        let batch_of_decoded = (!decoded.is_empty()).then(|| Batch::new(decoded.len(), columns));
        Ok(Some(Chunk {
            first_row,
            rows: Rows::Arrow(batch),
            batch: batch_of_decoded,
            decoded,
            refused,
            progress: self.next_row as u64,
        }))
    }

    /// The inputs' values of the rows that decode: a row with an infinite number is refused, as a
    /// CSV row would be.
    #[allow(clippy::type_complexity)]
    fn decode(
        &self,
        batch: &RecordBatch,
        first_row: usize,
    ) -> Result<(Vec<usize>, Vec<(usize, InputError)>, Vec<Column>), InputError> {
        let rows = batch.num_rows();
        let mut faults: Vec<Option<InputError>> = (0..rows).map(|_| None).collect();
        let mut values = Vec::with_capacity(self.inputs.len());
        for (input, &index) in self.inputs.iter().zip(&self.columns) {
            let cannot = |e: arrow_schema::ArrowError| {
                InputError::at(InputErrorKind::Type, &input.name, None, format!("cannot be read: {e}"))
            };
            let column = batch.column(index);
            values.push(match input.kind {
                ColumnKind::Number => {
                    let numbers = arrow_cast::cast(column, &DataType::Float64).map_err(cannot)?;
                    let numbers = numbers.as_primitive::<Float64Type>();
                    let mut out = Vec::with_capacity(rows);
                    for (row, fault) in faults.iter_mut().enumerate() {
                        let x = if numbers.is_null(row) {
                            f64::NAN
                        } else {
                            numbers.value(row)
                        };
                        if x.is_infinite() && fault.is_none() {
                            *fault = Some(InputError::at(
                                InputErrorKind::OutOfRange,
                                &input.name,
                                Some(first_row + row),
                                format!("{x} is not a finite number"),
                            ));
                        }
                        out.push(x);
                    }
                    Column::Number(out)
                }
                ColumnKind::String => {
                    let text = arrow_cast::cast(column, &DataType::Utf8).map_err(cannot)?;
                    let text = text.as_string::<i32>();
                    Column::Text(
                        (0..rows)
                            .map(|row| (!text.is_null(row)).then(|| text.value(row).to_owned()))
                            .collect(),
                    )
                }
            });
        }
        let mut decoded = Vec::with_capacity(rows);
        let mut refused = Vec::new();
        for (row, fault) in faults.into_iter().enumerate() {
            match fault {
                Some(reason) => refused.push((row, reason)),
                None => decoded.push(row),
            }
        }
        if !refused.is_empty() {
            // Keep only the rows that decoded.
            for column in &mut values {
                *column = match column {
                    Column::Number(v) => Column::Number(decoded.iter().map(|&r| v[r]).collect()),
                    Column::Text(v) => Column::Text(decoded.iter().map(|&r| v[r].take()).collect()),
                };
            }
        }
        Ok((decoded, refused, values))
    }
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}
