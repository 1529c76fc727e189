//! `text/csv` bodies: a header row naming the columns, then one car per line.

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
