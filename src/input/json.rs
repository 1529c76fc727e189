//! JSON bodies: columnar (`{"col": [v, ...], ...}`, Bento's format) or records (`[{"col": v}, ...]`).
//!
//! Values are deserialized straight into typed columns with serde seeds. A refusal found inside serde
//! is parked in `Shared::error` so it keeps its column and row instead of becoming a string.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{type_error, Builder, Limits};
use crate::preprocess::{Batch, Column, ColumnKind, InputError, InputErrorKind, InputSpec};

/// Decodes columnar JSON or records JSON, told apart by the first character.
pub fn decode_json(body: &[u8], inputs: &[InputSpec], limits: Limits) -> Result<Batch, InputError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => decode_records(body, inputs, limits),
        _ => decode_columnar(body, inputs, limits),
    }
}

/// Decodes `{"col": [v, ...], ...}`; columns the model does not use are skipped.
pub fn decode_columnar(body: &[u8], inputs: &[InputSpec], limits: Limits) -> Result<Batch, InputError> {
    let shared = Shared {
        builder: RefCell::new(Builder::new(inputs, limits)),
        error: RefCell::new(None),
    };
    run(body, &shared, ColumnarSeed(&shared))?;
    shared.builder.into_inner().finish()
}

/// Decodes `[{"col": v, ...}, ...]`; every record must carry every column the model uses.
pub fn decode_records(body: &[u8], inputs: &[InputSpec], limits: Limits) -> Result<Batch, InputError> {
    let mut builder = Builder::new(inputs, limits);
    for (i, input) in inputs.iter().enumerate() {
        builder.columns[i] = Some(Builder::empty_column(input.kind));
    }
    let shared = Shared {
        builder: RefCell::new(builder),
        error: RefCell::new(None),
    };
    run(body, &shared, RecordsSeed(&shared))?;
    shared.builder.into_inner().finish()
}

struct Shared<'a> {
    builder: RefCell<Builder<'a>>,
    error: RefCell<Option<InputError>>,
}

impl Shared<'_> {
    /// Parks `error` and returns the serde error that unwinds the parser.
    fn fail<E: de::Error>(&self, error: InputError) -> E {
        let message = error.message.clone();
        *self.error.borrow_mut() = Some(error);
        E::custom(message)
    }
}

fn run<'de, S: DeserializeSeed<'de, Value = ()>>(body: &'de [u8], shared: &Shared, seed: S) -> Result<(), InputError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result = seed.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(shared
            .error
            .borrow_mut()
            .take()
            .unwrap_or_else(|| InputError::new(InputErrorKind::Syntax, format!("invalid JSON: {e}")))),
    }
}

/// One JSON value in a cell: what it was, so a wrong type can be named.
pub(super) enum Cell {
    Number(f64),
    Text(String),
    Null,
    Other(&'static str),
}

impl Cell {
    /// The cell of a value still as JSON text (the stream bridge's rows).
    pub(super) fn of_raw(value: &serde_json::value::RawValue) -> Self {
        let mut deserializer = serde_json::Deserializer::from_str(value.get());
        // The text is valid JSON; what still fails is a number beyond f64 (`1e400`).
        CellVisitor
            .deserialize(&mut deserializer)
            .unwrap_or(Cell::Other("a number beyond f64"))
    }

    pub(super) fn into_number(self, column: &str, row: usize) -> Result<f64, InputError> {
        match self {
            Cell::Number(x) => Ok(x),
            Cell::Null => Ok(f64::NAN),
            Cell::Text(_) => Err(type_error(column, row, ColumnKind::Number, "a string")),
            Cell::Other(what) => Err(type_error(column, row, ColumnKind::Number, what)),
        }
    }

    pub(super) fn into_text(self, column: &str, row: usize) -> Result<Option<String>, InputError> {
        match self {
            Cell::Text(s) => Ok(Some(s)),
            Cell::Null => Ok(None),
            Cell::Number(_) => Err(type_error(column, row, ColumnKind::String, "a number")),
            Cell::Other(what) => Err(type_error(column, row, ColumnKind::String, what)),
        }
    }
}

pub(super) struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a string or null")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Cell, E> {
        Ok(Cell::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Cell, E> {
        Ok(Cell::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Cell, E> {
        Ok(Cell::Number(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cell, E> {
        Ok(Cell::Text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cell, E> {
        Ok(Cell::Text(v))
    }
    fn visit_unit<E>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }
    fn visit_none<E>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Cell, E> {
        Ok(Cell::Other("a boolean"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Other("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Other("an object"))
    }
}

impl<'de> DeserializeSeed<'de> for CellVisitor {
    type Value = Cell;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cell, D::Error> {
        d.deserialize_any(self)
    }
}

/// A key, borrowed when it has no escapes.
pub(crate) struct Key<'a>(pub std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct ColumnarSeed<'s, 'a>(&'s Shared<'a>);

impl<'de> DeserializeSeed<'de> for ColumnarSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ColumnarSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an object of columns, {"column": [values...]}, or a list of records"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(name)) = map.next_key::<Key>()? {
            let index = self.0.builder.borrow().index(&name);
            let Some(i) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if self.0.builder.borrow().columns[i].is_some() {
                return Err(self
                    .0
                    .fail(InputError::at(InputErrorKind::Syntax, &name, None, "appears twice")));
            }
            let (kind, max_rows) = {
                let builder = self.0.builder.borrow();
                (builder.inputs[i].kind, builder.limits.max_rows)
            };
            let column = map.next_value_seed(ColumnSeed {
                shared: self.0,
                name: &name,
                kind,
                max_rows,
            })?;
            self.0.builder.borrow_mut().columns[i] = Some(column);
        }
        Ok(())
    }
}

/// One column's list of values.
struct ColumnSeed<'s, 'a> {
    shared: &'s Shared<'a>,
    name: &'s str,
    kind: ColumnKind,
    max_rows: usize,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_, '_> {
    type Value = Column;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Column, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_, '_> {
    type Value = Column;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Column, A::Error> {
        let capacity = seq.size_hint().unwrap_or(0).min(self.max_rows);
        let mut column = match self.kind {
            ColumnKind::Number => Column::Number(Vec::with_capacity(capacity)),
            ColumnKind::String => Column::Text(Vec::with_capacity(capacity)),
        };
        let mut row = 0;
        while let Some(cell) = seq.next_element_seed(CellVisitor)? {
            if row == self.max_rows {
                return Err(self.shared.fail(self.shared.builder.borrow().too_many_rows()));
            }
            let pushed = match &mut column {
                Column::Number(values) => cell.into_number(self.name, row).map(|x| values.push(x)),
                Column::Text(values) => cell.into_text(self.name, row).map(|s| values.push(s)),
            };
            pushed.map_err(|e| self.shared.fail(e))?;
            row += 1;
        }
        Ok(column)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Column, A::Error> {
        Err(self.not_a_list("an object"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Column, E> {
        Err(self.not_a_list("a string"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Column, E> {
        Err(self.not_a_list("a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Column, E> {
        Err(self.not_a_list("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Column, E> {
        Err(self.not_a_list("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Column, E> {
        Err(self.not_a_list("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Column, E> {
        Err(self.not_a_list("null"))
    }
}

impl ColumnSeed<'_, '_> {
    fn not_a_list<E: de::Error>(&self, got: &str) -> E {
        let message = format!("expected a list of values, got {got}");
        self.shared
            .fail(InputError::at(InputErrorKind::Type, self.name, None, message))
    }
}

struct RecordsSeed<'s, 'a>(&'s Shared<'a>);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut row = 0;
        loop {
            if row == self.0.builder.borrow().limits.max_rows {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                return Err(self.0.fail(self.0.builder.borrow().too_many_rows()));
            }
            if seq.next_element_seed(RecordSeed { shared: self.0, row })?.is_none() {
                return Ok(());
            }
            row += 1;
        }
    }
}

/// One record; fills one value of every column.
struct RecordSeed<'s, 'a> {
    shared: &'s Shared<'a>,
    row: usize,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let row = self.row;
        while let Some(Key(name)) = map.next_key::<Key>()? {
            let index = self.shared.builder.borrow().index(&name);
            let Some(i) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let cell = map.next_value_seed(CellVisitor)?;
            let mut builder = self.shared.builder.borrow_mut();
            let pushed = match builder.columns[i].as_mut() {
                Some(Column::Number(values)) if values.len() == row => {
                    cell.into_number(&name, row).map(|x| values.push(x))
                }
                Some(Column::Text(values)) if values.len() == row => cell.into_text(&name, row).map(|s| values.push(s)),
                _ => Err(InputError::at(
                    InputErrorKind::Syntax,
                    &name,
                    Some(row),
                    "appears twice in the record",
                )),
            };
            drop(builder);
            pushed.map_err(|e| self.shared.fail(e))?;
        }
        let builder = self.shared.builder.borrow();
        for (input, column) in builder.inputs.iter().zip(&builder.columns) {
            if column.as_ref().map_or(0, Column::len) != row + 1 {
                let error = InputError::at(
                    InputErrorKind::MissingColumn,
                    &input.name,
                    Some(row),
                    "is missing from the record",
                );
                drop(builder);
                return Err(self.shared.fail(error));
            }
        }
        Ok(())
    }
}
