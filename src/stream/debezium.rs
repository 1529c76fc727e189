//! Debezium change events as Kafka Connect's JSON converter writes them, in and out.
//!
//! Every form is read: with or without the `schema` envelope (`schemas.enable`), flattened by
//! `ExtractNewRecordState` or the full change envelope (`before`/`after`/`op`/`ts_ms`). A priced record
//! is written back in the form it came in, with its schema updated to match the value written, so a
//! JDBC sink takes it as it is. Knows nothing of Kafka or the model.
//!
//! A message is read without building a value tree: the row's members are kept as slices of the
//! message's text, and the priced record is the message with the price spliced into the row. The
//! bridge's throughput depends on it (see `benches/engine.rs`, group `bridge`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde::de::{MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::input::JsonKey;

/// What a message asks of the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    /// A row to price: a create, an update, a snapshot read, or a flattened record.
    Upsert(Record<'a>),
    /// A deleted row or a tombstone: forwarded as a tombstone with the same key.
    Delete,
}

/// A message the bridge cannot read, and why; it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// A short machine-readable kind: `json`, `shape` or `op`.
    pub kind: &'static str,
    pub message: String,
}

impl DecodeError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// How the price is written: the seed's table has an INTEGER column, the model predicts a float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PriceFormat {
    /// Rounded to the nearest integer, ties to even (Python's `round`); Connect type `int32`.
    Integer,
    /// The float32 prediction as its exact decimal (what Bento answers); Connect type `float`.
    Float,
}

impl PriceFormat {
    /// The Connect schema type of the price field.
    pub fn schema_type(self) -> &'static str {
        match self {
            PriceFormat::Integer => "int32",
            PriceFormat::Float => "float",
        }
    }

    /// The JSON value written for a prediction; `None` for a value the format cannot hold.
    pub fn value(self, price: f32) -> Option<Value> {
        if !price.is_finite() {
            return None;
        }
        match self {
            PriceFormat::Integer => {
                let rounded = f64::from(price).round_ties_even();
                (rounded.abs() <= f64::from(i32::MAX)).then(|| Value::from(rounded as i64))
            }
            // Widening to f64 keeps the float32's exact value, which serde_json writes as Python would.
            PriceFormat::Float => Some(Value::from(f64::from(price))),
        }
    }
}

/// Where the row sits in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The row is the payload (`ExtractNewRecordState`).
    Flat,
    /// The row is `payload.after` of a change envelope.
    Envelope,
}

/// A JSON object's members as they appear in the message: each key, and its value's text.
#[derive(Debug, Clone)]
pub struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl PartialEq for Members<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((a, x), (b, y))| a == b && x.get() == y.get())
    }
}

impl<'a> Members<'a> {
    /// The value of `name`, as JSON text; a key given twice means its last value, as a parser's map
    /// would have it.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }

    /// The member names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(key, _)| key.as_ref())
    }

    /// The members as parsed values; fails only on a number beyond f64, which JSON allows but no
    /// column can hold.
    pub fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        self.0
            .iter()
            .map(|(key, value)| Ok((key.clone().into_owned(), serde_json::from_str(value.get())?)))
            .collect()
    }

    /// Reads an object's members from its text (valid JSON); `None` when it is not an object.
    fn read(object: &'a str) -> Option<Self> {
        if !object.starts_with('{') {
            return None;
        }
        serde_json::from_str(object).ok()
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(16);
                while let Some(JsonKey(key)) = map.next_key()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

/// A row to price, kept as the message it came in so it can be written back in the same form.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The message, as consumed.
    message: &'a str,
    /// The message's schema, verbatim; `None` for a message without the schema envelope. It is the
    /// same for every message of a table, so it is rewritten once per schema (see [`Schemas`]).
    schema: Option<&'a RawValue>,
    /// Where the payload sits in `message`: the row itself, or a change envelope holding it in
    /// `after`.
    payload: Range<usize>,
    /// The row's members.
    row: Members<'a>,
    /// Where the row's object sits in `message`.
    row_span: Range<usize>,
    form: Form,
}

impl PartialEq for Record<'_> {
    fn eq(&self, other: &Self) -> bool {
        (
            self.message,
            self.schema.map(RawValue::get),
            &self.payload,
            &self.row,
            &self.row_span,
            self.form,
        ) == (
            other.message,
            other.schema.map(RawValue::get),
            &other.payload,
            &other.row,
            &other.row_span,
            other.form,
        )
    }
}

/// `{"schema": ..., "payload": ...}`, exactly those two keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithSchema<'a> {
    #[serde(borrow)]
    schema: &'a RawValue,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// Where `part`, a slice of `whole`, sits in it.
fn span(whole: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    debug_assert!(start + part.len() <= whole.len(), "not a slice of the message");
    start..start + part.len()
}

/// Reads one message value; `None` is a tombstone.
pub fn decode(value: Option<&[u8]>) -> Result<Change<'_>, DecodeError> {
    Decoder::default().decode(value)
}

/// Reads a batch's messages, remembering the last schema: a table's messages all carry the same
/// one, and a message that starts with it skips parsing it again.
#[derive(Debug, Default)]
pub struct Decoder<'a> {
    last_schema: Option<&'a RawValue>,
}

impl<'a> Decoder<'a> {
    /// Reads one message value; `None` is a tombstone.
    pub fn decode(&mut self, value: Option<&'a [u8]>) -> Result<Change<'a>, DecodeError> {
        let Some(bytes) = value else {
            return Ok(Change::Delete);
        };
        let message = std::str::from_utf8(bytes).map_err(|e| DecodeError::new("json", format!("not JSON: {e}")))?;
        let (schema, payload, members) = match self.known_schema(message) {
            Some((schema, payload, members)) => (Some(schema), payload, Some(members)),
            None => match serde_json::from_str::<WithSchema>(message) {
                Ok(WithSchema { schema, payload }) => (Some(schema), payload.get(), None),
                Err(_) => match serde_json::from_str::<&RawValue>(message) {
                    Ok(whole) => (None, whole.get(), None),
                    Err(e) => return Err(DecodeError::new("json", format!("not JSON: {e}"))),
                },
            },
        };
        if schema.is_some() {
            self.last_schema = schema;
            if payload == "null" {
                return Ok(Change::Delete);
            }
        }
        let Some(members) = members.or_else(|| Members::read(payload)) else {
            return Err(match schema {
                Some(_) => DecodeError::new("shape", "`payload` is not an object"),
                None => DecodeError::new("shape", "not a JSON object"),
            });
        };
        let text = |name: &str| {
            let value = members.get(name)?;
            serde_json::from_str::<JsonKey>(value.get())
                .ok()
                .map(|JsonKey(text)| text)
        };
        let op = text("op").filter(|_| members.get("after").is_some() || members.get("before").is_some());
        let (row, row_text, form) = match op.as_deref() {
            Some(op) => match op {
                "c" | "u" | "r" => match members
                    .get("after")
                    .and_then(|after| Some((Members::read(after.get())?, after.get())))
                {
                    Some((row, after)) => (row, after, Form::Envelope),
                    None => return Err(DecodeError::new("shape", format!("op {op:?} without an `after` row"))),
                },
                "d" => return Ok(Change::Delete),
                "t" => return Err(DecodeError::new("op", "a truncate event names no row to price")),
                other => return Err(DecodeError::new("op", format!("unknown Debezium op {other:?}"))),
            },
            None => {
                // ExtractNewRecordState with `delete.handling.mode=rewrite` marks deletes instead of
                // dropping them.
                if text("__deleted").as_deref() == Some("true") {
                    return Ok(Change::Delete);
                }
                (members, payload, Form::Flat)
            }
        };
        // A number no f64 holds is valid JSON that no column can take: refused here, as a parser
        // building values would refuse it.
        if let Some((key, _)) = row.0.iter().find(|(_, value)| beyond_f64(value.get())) {
            return Err(DecodeError::new(
                "json",
                format!("the number in {key:?} is out of range"),
            ));
        }
        Ok(Change::Upsert(Record {
            message,
            schema,
            payload: span(message, payload),
            row_span: span(message, row_text),
            row,
            form,
        }))
    }

    /// The schema, payload and payload's members of a message that starts `{"schema":` with the
    /// last schema seen, so the schema's text needs no parsing and the payload is read once; `None`
    /// for any other layout or payload, read the long way.
    fn known_schema(&self, message: &'a str) -> Option<(&'a RawValue, &'a str, Members<'a>)> {
        let schema = self.last_schema?;
        let rest = message
            .strip_prefix(r#"{"schema":"#)?
            .strip_prefix(schema.get())?
            .strip_prefix(r#","payload":"#)?;
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Members>();
        let members = values.next()?.ok()?;
        let end = values.byte_offset();
        let start = rest.len() - rest.trim_start_matches(JSON_SPACE).len();
        let close = trim_json_space(&rest[end..]).strip_prefix('}')?;
        trim_json_space(close)
            .is_empty()
            .then_some((schema, &rest[start..end], members))
    }
}

/// Whether `text` is a number too large for an f64 (`1e400`); only long numbers or those with an
/// exponent can be, so most are not parsed.
fn beyond_f64(text: &str) -> bool {
    text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        && (text.contains(['e', 'E']) || text.len() > 300)
        && serde_json::from_str::<f64>(text).is_err()
}

/// JSON's whitespace, and nothing more.
const JSON_SPACE: [char; 4] = [' ', '\t', '\n', '\r'];

fn trim_json_space(s: &str) -> &str {
    s.trim_matches(JSON_SPACE)
}

/// Schemas rewritten to declare the price field, by the schema's text: a table's messages all carry
/// the same schema, so each is rewritten once.
#[derive(Debug)]
pub struct Schemas {
    field: String,
    format: PriceFormat,
    rewritten: Mutex<Cache>,
}

/// Rewritten schemas by their original text, and the last one asked for, which is found without
/// hashing its text (the usual case: one table).
#[derive(Debug, Default)]
struct Cache {
    by_text: HashMap<Arc<str>, Rewritten>,
    last: Option<(Arc<str>, Rewritten)>,
}

/// The Connect type of each row field, in the schema's order.
pub type RowTypes = Arc<[(String, String)]>;

/// One schema, rewritten, and its row's field types (read once, for the Postgres sink's table).
#[derive(Debug, Clone)]
struct Rewritten {
    text: Arc<str>,
    row_types: Option<RowTypes>,
}

impl Schemas {
    /// Distinct schemas kept; beyond this the cache starts again (schemas change rarely).
    const CAPACITY: usize = 256;

    pub fn new(field: &str, format: PriceFormat) -> Self {
        Self {
            field: field.to_owned(),
            format,
            rewritten: Mutex::new(Cache::default()),
        }
    }

    /// The schema rewritten; refused (and not kept) when its text holds a number no f64 holds,
    /// which JSON allows but a value cannot hold.
    fn rewrite(&self, schema: &RawValue, form: Form) -> Result<Rewritten, DecodeError> {
        let mut cache = self.rewritten.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((text, done)) = &cache.last {
            if **text == *schema.get() {
                return Ok(done.clone());
            }
        }
        let (text, done) = match cache.by_text.get_key_value(schema.get()) {
            Some((text, done)) => (text.clone(), done.clone()),
            None => {
                let done = self.rewritten_afresh(schema, form)?;
                if cache.by_text.len() >= Self::CAPACITY {
                    cache.by_text.clear();
                }
                let text: Arc<str> = schema.get().into();
                cache.by_text.insert(text.clone(), done.clone());
                (text, done)
            }
        };
        cache.last = Some((text, done.clone()));
        Ok(done)
    }

    fn rewritten_afresh(&self, schema: &RawValue, form: Form) -> Result<Rewritten, DecodeError> {
        let mut value: Value = serde_json::from_str(schema.get())
            .map_err(|e| DecodeError::new("json", format!("the schema cannot be read: {e}")))?;
        match form {
            Form::Flat => declare(&mut value, &self.field, self.format),
            Form::Envelope => {
                // `before` and `after` share the table's row schema; keep them equal.
                for side in schema_fields(&mut value).into_iter().flatten() {
                    if matches!(side.get("field"), Some(Value::String(f)) if f == "before" || f == "after") {
                        declare(side, &self.field, self.format);
                    }
                }
            }
        }
        Ok(Rewritten {
            text: serde_json::to_string(&value).expect("JSON serializes").into(),
            row_types: row_types(&value, form),
        })
    }
}

/// The field types of the row struct of a schema: the schema itself, or its `after` field.
fn row_types(schema: &Value, form: Form) -> Option<RowTypes> {
    let fields = match form {
        Form::Flat => schema.get("fields")?,
        Form::Envelope => schema
            .get("fields")?
            .as_array()?
            .iter()
            .find(|f| f.get("field") == Some(&Value::from("after")))?
            .get("fields")?,
    };
    let types = fields.as_array()?.iter().filter_map(|f| {
        Some((
            f.get("field")?.as_str()?.to_owned(),
            f.get("type")?.as_str()?.to_owned(),
        ))
    });
    Some(types.collect())
}

impl<'a> Record<'a> {
    /// The row's members, as the database names them.
    pub fn row(&self) -> &Members<'a> {
        &self.row
    }

    /// The message to produce: the message as it came, with the row's `field` set to `price` and,
    /// when the message has a schema, the schema declaring the field with the type of the value
    /// written. Fails only for a schema that cannot be read as a value.
    pub fn to_bytes(&self, field: &str, price: &Value, schemas: &Schemas) -> Result<Vec<u8>, DecodeError> {
        let message = self.message;
        let schema = match self.schema {
            Some(schema) => Some(schemas.rewrite(schema, self.form)?.text),
            None => None,
        };
        let price = serde_json::to_string(price).expect("a JSON value serializes");
        let mut out = Vec::with_capacity(message.len() + schema.as_ref().map_or(0, |s| s.len()) + 32);
        if let Some(schema) = &schema {
            out.extend_from_slice(br#"{"schema":"#);
            out.extend_from_slice(schema.as_bytes());
            out.extend_from_slice(br#","payload":"#);
        }
        // Every value of the field is replaced (a key given twice keeps its count); a row without it
        // gets it as its last member.
        let mut at = self.payload.start;
        let mut found = false;
        for (_, value) in self.row.0.iter().filter(|(key, _)| key == field) {
            let value = span(message, value.get());
            out.extend_from_slice(&message.as_bytes()[at..value.start]);
            out.extend_from_slice(price.as_bytes());
            at = value.end;
            found = true;
        }
        if !found {
            let close = self.row_span.end - 1;
            out.extend_from_slice(&message.as_bytes()[at..close]);
            if !self.row.0.is_empty() {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, field).expect("a string serializes");
            out.push(b':');
            out.extend_from_slice(price.as_bytes());
            at = close;
        }
        out.extend_from_slice(&message.as_bytes()[at..self.payload.end]);
        if schema.is_some() {
            out.push(b'}');
        }
        Ok(out)
    }

    /// The Connect type of each row field, when the message has a schema, as [`Self::to_bytes`]
    /// writes it.
    pub fn row_types(&self, schemas: &Schemas) -> Option<RowTypes> {
        schemas.rewrite(self.schema?, self.form).ok()?.row_types
    }
}

fn schema_fields(schema: &mut Value) -> Option<&mut Vec<Value>> {
    schema.get_mut("fields").and_then(Value::as_array_mut)
}

/// Declares `field` in a struct schema as an optional value of the format's type.
fn declare(schema: &mut Value, field: &str, format: PriceFormat) {
    let Some(fields) = schema_fields(schema) else {
        return;
    };
    let existing = fields
        .iter_mut()
        .find(|f| matches!(f.get("field"), Some(Value::String(name)) if name == field));
    match existing {
        Some(Value::Object(f)) => {
            f.insert("type".into(), format.schema_type().into());
            f.insert("optional".into(), true.into());
            // A logical type or parameters of the old type would not describe the new value.
            f.remove("name");
            f.remove("version");
            f.remove("parameters");
        }
        _ => fields.push(serde_json::json!({"type": format.schema_type(), "optional": true, "field": field})),
    }
}

/// The fields of a message key (`{"id": 22}`, with or without the schema envelope), for the sink's
/// deletes.
pub fn key_fields(key: &[u8]) -> Option<Map<String, Value>> {
    let key: Value = serde_json::from_slice(key).ok()?;
    let Value::Object(mut key) = key else { return None };
    if key.len() == 2 && key.contains_key("schema") {
        match key.remove("payload") {
            Some(Value::Object(payload)) => Some(payload),
            _ => None,
        }
    } else {
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The row of the issue's example, as the seed's table holds it.
    fn row() -> Value {
        json!({"id": 22, "model": "B-MAX", "year": 2022, "price": null, "transmission": "Automatic",
               "mileage": 1230, "fuel_type": "Diesel", "tax": 165, "mpg": 45.2, "engine_size": 1.2,
               "suggested_price": null})
    }

    fn row_schema(name: &str) -> Value {
        let field = |t: &str, f: &str, optional: bool| json!({"type": t, "optional": optional, "field": f});
        json!({"type": "struct", "optional": true, "name": name, "fields": [
            field("int32", "id", false), field("string", "model", true), field("int32", "year", true),
            field("int32", "price", true), field("string", "transmission", true),
            field("int32", "mileage", true), field("string", "fuel_type", true), field("int32", "tax", true),
            field("double", "mpg", true), field("double", "engine_size", true),
            field("int32", "suggested_price", true)]})
    }

    fn envelope(op: &str, before: Value, after: Value) -> Value {
        json!({"before": before, "after": after, "op": op, "ts_ms": 1_700_000_000_000_i64,
               "source": {"connector": "postgresql", "table": "tbl_car_price"}, "transaction": null})
    }

    fn envelope_schema() -> Value {
        let value = row_schema("car_database.public.tbl_car_price.Value");
        let mut before = value.clone();
        before["field"] = "before".into();
        let mut after = value;
        after["field"] = "after".into();
        json!({"type": "struct", "optional": false, "name": "car_database.public.tbl_car_price.Envelope",
               "fields": [before, after, {"type": "string", "optional": false, "field": "op"},
                          {"type": "int64", "optional": true, "field": "ts_ms"}]})
    }

    /// The record priced and written out, as the bridge produces it.
    fn priced(record: Record, price: Value, format: PriceFormat) -> Value {
        let schemas = Schemas::new("suggested_price", format);
        serde_json::from_slice(&record.to_bytes("suggested_price", &price, &schemas).unwrap()).unwrap()
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    /// A record borrows its message; a test's messages live until the test process ends.
    fn upsert(v: &Value) -> Record<'static> {
        match decode(Some(Vec::leak(bytes(v)))) {
            Ok(Change::Upsert(record)) => record,
            other => panic!("expected a row to price, got {other:?}"),
        }
    }

    /// A row member's value.
    fn member(record: &Record, name: &str) -> Value {
        serde_json::from_str(record.row().get(name).expect("the member is there").get()).unwrap()
    }

    #[test]
    fn flattened_with_schema_is_priced_and_its_schema_follows() {
        let message = json!({"schema": row_schema("car_database.public.tbl_car_price.Value"), "payload": row()});
        let record = upsert(&message);
        assert_eq!(member(&record, "fuel_type"), "Diesel");
        let price = PriceFormat::Float.value(8506.82).unwrap();
        let out = priced(record, price, PriceFormat::Float);
        assert_eq!(out["payload"]["suggested_price"], json!(8506.8203125));
        assert_eq!(out["payload"]["id"], 22);
        let fields = out["schema"]["fields"].as_array().unwrap();
        let price_fields: Vec<_> = fields.iter().filter(|f| f["field"] == "suggested_price").collect();
        assert_eq!(
            price_fields,
            [&json!({"type": "float", "optional": true, "field": "suggested_price"})]
        );
        assert_eq!(fields.len(), 11, "no field added or lost");
        assert!(serde_json::to_string(&out)
            .unwrap()
            .contains("\"suggested_price\":8506.8203125"));
    }

    #[test]
    fn row_types_come_from_the_schema_after_pricing() {
        let float = Schemas::new("suggested_price", PriceFormat::Float);
        let record = upsert(&json!({"schema": row_schema("v"), "payload": row()}));
        let types = record.row_types(&float).unwrap();
        assert_eq!(types[0], ("id".to_owned(), "int32".to_owned()));
        assert_eq!(types[10], ("suggested_price".to_owned(), "float".to_owned()));
        let integer = Schemas::new("suggested_price", PriceFormat::Integer);
        let record = upsert(&json!({"schema": envelope_schema(), "payload": envelope("r", Value::Null, row())}));
        let types = record.row_types(&integer).unwrap();
        assert_eq!(types[9], ("engine_size".to_owned(), "double".to_owned()));
        assert_eq!(types[10], ("suggested_price".to_owned(), "int32".to_owned()));
        assert_eq!(upsert(&row()).row_types(&integer), None);
    }

    #[test]
    fn a_schema_is_rewritten_once_and_reused() {
        let schemas = Schemas::new("suggested_price", PriceFormat::Float);
        let message = json!({"schema": row_schema("v"), "payload": row()});
        let (a, b) = (upsert(&message), upsert(&message));
        let (a, b): (Value, Value) = (
            serde_json::from_slice(&a.to_bytes("suggested_price", &json!(1.5), &schemas).unwrap()).unwrap(),
            serde_json::from_slice(&b.to_bytes("suggested_price", &json!(2.5), &schemas).unwrap()).unwrap(),
        );
        assert_eq!(a["schema"], b["schema"]);
        assert_eq!(a["schema"]["fields"][10]["type"], "float");
        assert_eq!(
            (
                a["payload"]["suggested_price"].clone(),
                b["payload"]["suggested_price"].clone()
            ),
            (json!(1.5), json!(2.5))
        );
        assert_eq!(schemas.rewritten.lock().unwrap().by_text.len(), 1);
    }

    #[test]
    fn messages_of_two_tables_in_turn_keep_their_own_schemas() {
        let schemas = Schemas::new("suggested_price", PriceFormat::Integer);
        for name in ["v", "w", "v", "v", "w"] {
            let record = upsert(&json!({"schema": row_schema(name), "payload": row()}));
            let written: Value =
                serde_json::from_slice(&record.to_bytes("suggested_price", &json!(1), &schemas).unwrap()).unwrap();
            assert_eq!(written["schema"]["name"], name);
            assert_eq!(written["schema"]["fields"][10]["type"], "int32");
        }
        assert_eq!(schemas.rewritten.lock().unwrap().by_text.len(), 2);
    }

    #[test]
    fn flattened_without_schema_is_priced_as_an_integer() {
        let record = upsert(&row());
        let price = PriceFormat::Integer.value(8506.82).unwrap();
        let out = priced(record, price, PriceFormat::Integer);
        assert_eq!(out["suggested_price"], json!(8507));
        assert_eq!(out.as_object().unwrap().len(), 11);
    }

    #[test]
    fn a_missing_price_field_is_added_to_payload_and_schema() {
        let mut schema = row_schema("v");
        schema["fields"].as_array_mut().unwrap().pop();
        let mut payload = row();
        payload.as_object_mut().unwrap().remove("suggested_price");
        let record = upsert(&json!({"schema": schema, "payload": payload}));
        let out = priced(record, json!(17892), PriceFormat::Integer);
        assert_eq!(out["payload"]["suggested_price"], 17892);
        assert_eq!(
            out["schema"]["fields"].as_array().unwrap().last().unwrap(),
            &json!({"type": "int32", "optional": true, "field": "suggested_price"})
        );
    }

    #[test]
    fn a_logical_type_on_the_price_field_is_dropped_with_the_old_type() {
        let mut schema = row_schema("v");
        schema["fields"][10] = json!({"type": "bytes", "optional": true, "field": "suggested_price",
            "name": "org.apache.kafka.connect.data.Decimal", "version": 1, "parameters": {"scale": "2"}});
        let record = upsert(&json!({"schema": schema, "payload": row()}));
        let out = priced(record, json!(1), PriceFormat::Integer);
        assert_eq!(
            out["schema"]["fields"][10],
            json!({"type": "int32", "optional": true, "field": "suggested_price"})
        );
    }

    #[test]
    fn creates_updates_and_snapshot_reads_are_priced_from_after() {
        for op in ["c", "u", "r"] {
            let mut after = row();
            after["model"] = json!(format!("model-{op}"));
            let before = if op == "u" { row() } else { Value::Null };
            for with_schema in [false, true] {
                let payload = envelope(op, before.clone(), after.clone());
                let message = if with_schema {
                    json!({"schema": envelope_schema(), "payload": payload})
                } else {
                    payload
                };
                let record = upsert(&message);
                assert_eq!(member(&record, "model"), json!(format!("model-{op}")), "op {op}");
                let out = priced(record, json!(9000), PriceFormat::Integer);
                let payload = if with_schema { &out["payload"] } else { &out };
                assert_eq!(payload["after"]["suggested_price"], 9000, "op {op}");
                assert_eq!(payload["op"], op, "the envelope is kept");
                assert_eq!(payload["before"], before, "before is left as it was");
                if with_schema {
                    for side in [0, 1] {
                        let fields = out["schema"]["fields"][side]["fields"].as_array().unwrap();
                        assert_eq!(fields[10]["type"], "int32");
                    }
                }
            }
        }
    }

    #[test]
    fn float_prices_declare_float_in_both_sides_of_an_envelope() {
        let message = json!({"schema": envelope_schema(), "payload": envelope("c", Value::Null, row())});
        let out = priced(upsert(&message), json!(1.5), PriceFormat::Float);
        for side in [0, 1] {
            assert_eq!(out["schema"]["fields"][side]["fields"][10]["type"], "float");
        }
        assert_eq!(out["schema"]["fields"][2]["field"], "op", "other fields untouched");
    }

    #[test]
    fn deletes_and_tombstones_become_tombstones() {
        assert_eq!(decode(None), Ok(Change::Delete));
        let delete = envelope("d", row(), Value::Null);
        assert_eq!(decode(Some(&bytes(&delete))), Ok(Change::Delete));
        let with_schema = json!({"schema": envelope_schema(), "payload": delete});
        assert_eq!(decode(Some(&bytes(&with_schema))), Ok(Change::Delete));
        let null_payload = json!({"schema": null, "payload": null});
        assert_eq!(decode(Some(&bytes(&null_payload))), Ok(Change::Delete));
        let mut rewritten = row();
        rewritten["__deleted"] = json!("true");
        assert_eq!(decode(Some(&bytes(&rewritten))), Ok(Change::Delete));
        rewritten["__deleted"] = json!("false");
        assert!(matches!(decode(Some(&bytes(&rewritten))), Ok(Change::Upsert(_))));
    }

    #[test]
    fn what_cannot_be_read_is_refused_with_its_kind() {
        let kind = |bytes: &[u8]| decode(Some(bytes)).unwrap_err().kind;
        assert_eq!(kind(b"{not json"), "json");
        assert_eq!(kind(b""), "json");
        assert_eq!(kind(b"[1, 2]"), "shape");
        assert_eq!(kind(br#"{"schema": {}, "payload": 5}"#), "shape");
        assert_eq!(kind(&bytes(&envelope("c", Value::Null, Value::Null))), "shape");
        assert_eq!(kind(&bytes(&envelope("t", Value::Null, Value::Null))), "op");
        assert_eq!(kind(&bytes(&envelope("x", Value::Null, row()))), "op");
        let message = decode(Some(&bytes(&envelope("t", Value::Null, Value::Null)))).unwrap_err();
        assert!(message.message.contains("truncate"), "{message}");
    }

    #[test]
    fn a_row_with_a_column_named_op_is_still_a_row() {
        let mut r = row();
        r["op"] = json!("c");
        let record = upsert(&r);
        assert_eq!(member(&record, "op"), "c");
        assert_eq!(member(&record, "id"), 22);
    }

    #[test]
    fn the_written_message_is_the_message_with_only_the_price_changed() {
        // Pretty-printed, keys in no sorted order, escapes and non-ASCII text: all kept as they came.
        let message = "{\"schema\": {\"type\": \"struct\", \"fields\": []},\n \"payload\": {\"id\": 7, \"suggested_price\": null,\n  \"model\": \"C-MAX \\u00e9\\\"\", \"mpg\": 1.50, \"note\": \"Straße\"}}";
        let record = match decode(Some(message.as_bytes())) {
            Ok(Change::Upsert(record)) => record,
            other => panic!("{other:?}"),
        };
        assert_eq!(member(&record, "model"), json!("C-MAX é\""));
        let schemas = Schemas::new("suggested_price", PriceFormat::Integer);
        let written = String::from_utf8(record.to_bytes("suggested_price", &json!(8507), &schemas).unwrap()).unwrap();
        let payload = &message[message.find("{\"id\"").unwrap()..message.len() - 1];
        let schema = r#"{"fields":[{"field":"suggested_price","optional":true,"type":"int32"}],"type":"struct"}"#;
        assert_eq!(
            written,
            format!(r#"{{"schema":{schema},"payload":{}}}"#, payload.replace("null", "8507"))
        );
    }

    #[test]
    fn a_price_field_given_twice_is_set_twice_and_an_empty_row_gets_one() {
        let schemas = Schemas::new("suggested_price", PriceFormat::Integer);
        let twice = br#"{"suggested_price": 1, "id": 2, "suggested_price": 3}"#;
        let Ok(Change::Upsert(record)) = decode(Some(twice)) else {
            panic!()
        };
        assert_eq!(
            record.to_bytes("suggested_price", &json!(9), &schemas).unwrap(),
            br#"{"suggested_price": 9, "id": 2, "suggested_price": 9}"#
        );
        let Ok(Change::Upsert(record)) = decode(Some(b" { } ")) else {
            panic!()
        };
        assert_eq!(
            record.to_bytes("suggested_price", &json!(9), &schemas).unwrap(),
            br#"{ "suggested_price":9}"#
        );
        let Ok(Change::Upsert(record)) = decode(Some(br#"{"op": "c", "after": {"id": 1}, "before": null}"#)) else {
            panic!()
        };
        assert_eq!(
            record.to_bytes("suggested_price", &json!(9), &schemas).unwrap(),
            br#"{"op": "c", "after": {"id": 1,"suggested_price":9}, "before": null}"#
        );
    }

    #[test]
    fn escaped_keys_are_read_as_their_text() {
        let record = upsert(&serde_json::from_str(r#"{"fuel\u005ftype": "Diesel", "id": 1}"#).unwrap());
        assert_eq!(member(&record, "fuel_type"), "Diesel");
    }

    #[test]
    fn a_known_schema_is_skipped_only_when_the_message_is_exactly_schema_then_payload() {
        let schema = row_schema("v").to_string();
        let good = format!(r#"{{"schema":{schema},"payload":{}}}"#, row());
        let messages = [
            good.clone(),
            format!("{good}  \n"),
            format!(r#"{{"schema":{schema},"payload":{}}}x"#, row()),
            format!(r#"{{"schema":{schema},"payload":{}}}}}"#, row()),
            format!(r#"{{"schema":{schema},"payload":{},"extra":1}}"#, row()),
            format!(r#"{{"schema":{schema},"payload":null}}"#),
            format!(r#"{{"schema":{schema},"payload":[1]}}"#),
            format!(r#"{{"schema":{schema},"payload":{{"id":1e400}}}}"#),
        ];
        // Each message read after the good one (which teaches the decoder its schema) reads as it
        // does alone.
        for message in &messages {
            let mut decoder = Decoder::default();
            assert!(matches!(decoder.decode(Some(good.as_bytes())), Ok(Change::Upsert(_))));
            assert_eq!(
                decoder.decode(Some(message.as_bytes())),
                decode(Some(message.as_bytes())),
                "{message}"
            );
        }
        let kinds: Vec<_> = messages
            .iter()
            .map(|m| match decode(Some(m.as_bytes())) {
                Ok(Change::Upsert(_)) => "upsert",
                Ok(Change::Delete) => "delete",
                Err(e) => e.kind,
            })
            .collect();
        assert_eq!(
            kinds,
            ["upsert", "upsert", "json", "json", "upsert", "delete", "shape", "json"]
        );
    }

    #[test]
    fn a_schema_with_a_number_beyond_f64_is_refused_not_a_panic() {
        let schemas = Schemas::new("suggested_price", PriceFormat::Integer);
        let record = upsert(&json!({"schema": {"version": 1}, "payload": row()}));
        let text = String::from_utf8(bytes(&json!({"schema": {"version": 1}, "payload": row()}))).unwrap();
        let huge = Vec::leak(text.replace(r#""version":1"#, r#""version":1e999"#).into_bytes());
        let Ok(Change::Upsert(bad)) = decode(Some(huge)) else {
            panic!()
        };
        assert_eq!(
            bad.to_bytes("suggested_price", &json!(1), &schemas).unwrap_err().kind,
            "json"
        );
        assert_eq!(bad.row_types(&schemas), None);
        assert!(
            record.to_bytes("suggested_price", &json!(1), &schemas).is_ok(),
            "the next schema still works"
        );
    }

    #[test]
    fn numbers_beyond_f64_in_the_row_are_refused() {
        let e = decode(Some(br#"{"id": 1, "price": -2E+999}"#)).unwrap_err();
        assert_eq!(e.kind, "json");
        assert!(e.message.contains("price"), "{e}");
        assert!(matches!(
            decode(Some(br#"{"id": 1, "price": 1e-999, "mpg": 2e300}"#)),
            Ok(Change::Upsert(_))
        ));
    }

    #[test]
    fn prices_are_written_as_the_format_says() {
        assert_eq!(PriceFormat::Integer.value(8506.5), Some(json!(8506)), "ties to even");
        assert_eq!(PriceFormat::Integer.value(8507.5), Some(json!(8508)));
        assert_eq!(PriceFormat::Integer.value(-0.4), Some(json!(0)));
        assert_eq!(PriceFormat::Integer.value(3e9), None, "beyond int32");
        assert_eq!(PriceFormat::Integer.value(f32::NAN), None);
        assert_eq!(PriceFormat::Float.value(f32::INFINITY), None);
        let exact = serde_json::to_string(&PriceFormat::Float.value(17892.19).unwrap()).unwrap();
        assert_eq!(
            exact, "17892.189453125",
            "the float32's exact decimal, as Bento writes it"
        );
    }

    #[test]
    fn keys_are_read_with_or_without_schema() {
        let with = br#"{"schema": {"type": "struct"}, "payload": {"id": 22}}"#;
        assert_eq!(key_fields(with).unwrap()["id"], 22);
        assert_eq!(key_fields(br#"{"id": 7}"#).unwrap()["id"], 7);
        assert_eq!(key_fields(b"22"), None);
    }
}
