//! `text/csv` bodies: a header row naming the columns, then one car per line.

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

/// A CSV file decoded a chunk of rows at a time, so that a file of any size is scored in bounded
/// memory; each chunk keeps its records as read, to be written beside their predictions or to a
/// rejects file.
pub struct CsvChunks<R> {
    reader: ::csv::Reader<R>,
    inputs: Vec<InputSpec>,
    /// For each CSV field, the input it fills.
    targets: Vec<Option<usize>>,
    header: ::csv::StringRecord,
    rows_per_chunk: usize,
    next_row: usize,
}

impl<R: std::io::Read> CsvChunks<R> {
    /// Reads the header: every input must be there, once. Extra columns are carried along.
    pub fn new(source: R, inputs: &[InputSpec], rows_per_chunk: usize) -> Result<Self, InputError> {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(source);
        let syntax = |e: ::csv::Error| InputError::new(InputErrorKind::Syntax, format!("invalid CSV: {e}"));
        let header = reader.headers().map_err(syntax)?.clone();
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
        Ok(Self {
            reader,
            inputs: inputs.to_vec(),
            targets,
            header,
            rows_per_chunk: rows_per_chunk.max(1),
            next_row: 0,
        })
    }

    /// The header as read.
    pub fn header(&self) -> &::csv::StringRecord {
        &self.header
    }

    /// The next chunk, `None` at the end; an error only when the file cannot be read on (not for
    /// a row that cannot be decoded).
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, InputError> {
        let first_row = self.next_row;
        let mut records = Vec::with_capacity(self.rows_per_chunk);
        let mut refused = Vec::new();
        let mut decoded = Vec::with_capacity(self.rows_per_chunk);
        let mut columns: Vec<Column> = self.inputs.iter().map(|i| Builder::empty_column(i.kind)).collect();
        let mut values: Vec<Value> = Vec::with_capacity(self.inputs.len());
        while records.len() < self.rows_per_chunk {
            let mut record = ::csv::StringRecord::new();
            let row = self.next_row;
            match self.reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                // A line with the wrong number of fields, or that is not UTF-8, is that row's
                // fault: it is refused and the rest is read on.
                Err(e)
                    if matches!(
                        e.kind(),
                        ::csv::ErrorKind::UnequalLengths { .. } | ::csv::ErrorKind::Utf8 { .. }
                    ) =>
                {
                    let reason = InputError::new(InputErrorKind::Syntax, format!("row {row}: invalid CSV: {e}"));
                    refused.push((records.len(), reason));
                    records.push(::csv::StringRecord::new());
                    self.next_row += 1;
                    continue;
                }
                Err(e) => return Err(InputError::new(InputErrorKind::Syntax, format!("invalid CSV: {e}"))),
            }
            self.next_row += 1;
            values.clear();
            values.resize(self.inputs.len(), Value::Number(f64::NAN));
            let mut fault = None;
            for (field, target) in record.iter().zip(&self.targets) {
                let Some(i) = *target else { continue };
                values[i] = match self.inputs[i].kind {
                    ColumnKind::Number => match number(field, &self.inputs[i].name, row) {
                        Ok(x) => Value::Number(x),
                        Err(e) => {
                            fault = Some(e);
                            break;
                        }
                    },
                    ColumnKind::String => Value::Text((!field.is_empty()).then(|| field.to_owned())),
                };
            }
            match fault {
                Some(reason) => refused.push((records.len(), reason)),
                None => {
                    decoded.push(records.len());
                    for (column, value) in columns.iter_mut().zip(values.drain(..)) {
                        match (column, value) {
                            (Column::Number(v), Value::Number(x)) => v.push(x),
                            (Column::Text(v), Value::Text(t)) => v.push(t),
                            _ => unreachable!("each value has its input's kind"),
                        }
                    }
                }
            }
            records.push(record);
        }
        if records.is_empty() {
            return Ok(None);
        }
        let batch = (!decoded.is_empty()).then(|| Batch::new(decoded.len(), columns));
        Ok(Some(Chunk {
            first_row,
            rows: Rows::Csv(records),
            batch,
            decoded,
            refused,
            progress: self.reader.position().byte(),
        }))
    }
}

/// One decoded cell.
#[derive(Clone)]
enum Value {
    Number(f64),
    Text(Option<String>),
}
