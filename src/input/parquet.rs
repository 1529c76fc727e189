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

/// A Parquet file read a record batch at a time; converting a batch to the inputs' columns is
/// [`ParquetDecoder::decode`]'s, on the scoring threads.
pub struct ParquetChunks {
    reader: ParquetRecordBatchReader,
    schema: Arc<Schema>,
    decoder: ParquetDecoder,
    total_rows: u64,
    rows_read: u64,
}

/// The inputs and, for each, its column in the file.
#[derive(Debug, Clone)]
pub struct ParquetDecoder {
    inputs: Vec<InputSpec>,
    columns: Vec<usize>,
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
            decoder: ParquetDecoder {
                inputs: inputs.to_vec(),
                columns,
            },
            total_rows,
            rows_read: 0,
        })
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn total_rows(&self) -> u64 {
        self.total_rows
    }

    pub fn decoder(&self) -> &ParquetDecoder {
        &self.decoder
    }

    /// The next record batch and how many rows have been read with it; `None` at the end.
    pub fn next_raw(&mut self) -> Result<Option<(RecordBatch, u64)>, InputError> {
        match self.reader.next() {
            None => Ok(None),
            Some(Ok(batch)) => {
                self.rows_read += batch.num_rows() as u64;
                Ok(Some((batch, self.rows_read)))
            }
            Some(Err(e)) => Err(InputError::new(
                InputErrorKind::Syntax,
                format!("cannot read the Parquet file: {e}"),
            )),
        }
    }
}

impl ParquetDecoder {
    /// The batch's inputs as one batch of the rows that decode; rows are counted from the batch's
    /// first.
    pub fn decode(&self, batch: RecordBatch) -> Chunk {
        let (decoded, refused, columns) = match self.values(&batch) {
            Ok(values) => values,
            // The types were checked against the schema; a value that still cannot be cast is
            // every row's fault.
            Err(reason) => {
                let refused = (0..batch.num_rows())
                    .map(|row| {
                        (
                            row,
                            InputError {
                                row: Some(row),
                                ..reason.clone()
                            },
                        )
                    })
                    .collect();
                (Vec::new(), refused, Vec::new())
            }
        };
        let values = (!decoded.is_empty()).then(|| Batch::new(decoded.len(), columns));
        Chunk {
            rows: Rows::Arrow(batch),
            batch: values,
            decoded,
            refused,
        }
    }

    /// The inputs' values of the rows that decode: a row with an infinite number is refused, as a
    /// CSV row would be.
    #[allow(clippy::type_complexity)]
    fn values(&self, batch: &RecordBatch) -> Result<(Vec<usize>, Vec<(usize, InputError)>, Vec<Column>), InputError> {
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
                                Some(row),
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
