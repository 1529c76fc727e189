//! Debezium change events as Kafka Connect's JSON converter writes them, in and out.
//!
//! Every form is read: with or without the `schema` envelope (`schemas.enable`), flattened by
//! `ExtractNewRecordState` or the full change envelope (`before`/`after`/`op`/`ts_ms`). A priced record
//! is written back in the form it came in, with its schema updated to match the value written, so a
//! JDBC sink takes it as it is. Knows nothing of Kafka or the model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What a message asks of the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A row to price: a create, an update, a snapshot read, or a flattened record.
    Upsert(Record),
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

/// A row to price, kept inside the message it came in so it can be written back in the same form.
#[derive(Debug, Clone)]
pub struct Record {
    /// The message's schema, verbatim; `None` for a message without the schema envelope. It is the
    /// same for every message of a table, so it is kept as text and rewritten once per schema (see
    /// [`Schemas`]), not parsed and written again per message.
    schema: Option<Box<RawValue>>,
    /// The payload: the row itself, or a change envelope holding it in `after`.
    payload: Map<String, Value>,
    form: Form,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.schema.as_ref().map(|s| s.get()) == other.schema.as_ref().map(|s| s.get())
            && self.payload == other.payload
            && self.form == other.form
    }
}

/// `{"schema": ..., "payload": ...}`, exactly those two keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithSchema {
    schema: Box<RawValue>,
    payload: Value,
}

/// Reads one message value; `None` is a tombstone.
pub fn decode(value: Option<&[u8]>) -> Result<Change, DecodeError> {
    let Some(bytes) = value else {
        return Ok(Change::Delete);
    };
    let (schema, payload) = match serde_json::from_slice::<WithSchema>(bytes) {
        Ok(WithSchema { schema, payload }) => match payload {
            Value::Null => return Ok(Change::Delete),
            Value::Object(payload) => (Some(schema), payload),
            _ => return Err(DecodeError::new("shape", "`payload` is not an object")),
        },
        Err(_) => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(message)) => (None, message),
            Ok(_) => return Err(DecodeError::new("shape", "not a JSON object")),
            Err(e) => return Err(DecodeError::new("json", format!("not JSON: {e}"))),
        },
    };
    let form = match payload.get("op") {
        Some(Value::String(op)) if payload.contains_key("after") || payload.contains_key("before") => {
            match op.as_str() {
                "c" | "u" | "r" => match payload.get("after") {
                    Some(Value::Object(_)) => Form::Envelope,
                    _ => return Err(DecodeError::new("shape", format!("op {op:?} without an `after` row"))),
                },
                "d" => return Ok(Change::Delete),
                "t" => return Err(DecodeError::new("op", "a truncate event names no row to price")),
                other => return Err(DecodeError::new("op", format!("unknown Debezium op {other:?}"))),
            }
        }
        _ => Form::Flat,
    };
    // ExtractNewRecordState with `delete.handling.mode=rewrite` marks deletes instead of dropping them.
    if form == Form::Flat && matches!(payload.get("__deleted"), Some(Value::String(s)) if s == "true") {
        return Ok(Change::Delete);
    }
    Ok(Change::Upsert(Record { schema, payload, form }))
}

/// Schemas rewritten to declare the price field, by the schema's text: a table's messages all carry
/// the same schema, so each is rewritten once.
#[derive(Debug)]
pub struct Schemas {
    field: String,
    format: PriceFormat,
    rewritten: Mutex<HashMap<String, Rewritten>>,
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
            rewritten: Mutex::new(HashMap::new()),
        }
    }

    fn rewrite(&self, schema: &RawValue, form: Form) -> Rewritten {
        let mut cache = self.rewritten.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = cache.get(schema.get()) {
            return done.clone();
        }
        let mut value: Value = serde_json::from_str(schema.get()).expect("a RawValue is valid JSON");
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
        let done = Rewritten {
            text: serde_json::to_string(&value).expect("JSON serializes").into(),
            row_types: row_types(&value, form),
        };
        if cache.len() >= Self::CAPACITY {
            cache.clear();
        }
        cache.insert(schema.get().to_owned(), done.clone());
        done
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

impl Record {
    /// The row's columns, as the database names them.
    pub fn row(&self) -> &Map<String, Value> {
        match self.form {
            Form::Flat => &self.payload,
            Form::Envelope => self.payload["after"].as_object().expect("decode checked `after`"),
        }
    }

    fn row_mut(&mut self) -> &mut Map<String, Value> {
        match self.form {
            Form::Flat => &mut self.payload,
            Form::Envelope => self
                .payload
                .get_mut("after")
                .and_then(Value::as_object_mut)
                .expect("decode checked `after`"),
        }
    }

    /// Sets the price field of the row.
    pub fn set_price(&mut self, field: &str, price: Value) {
        self.row_mut().insert(field.to_owned(), price);
    }

    /// The message to produce: the payload as it is now and, when the message has a schema, the
    /// schema declaring the price field with the type of the value written.
    pub fn to_bytes(&self, schemas: &Schemas) -> Vec<u8> {
        let payload = serde_json::to_vec(&self.payload).expect("a JSON map serializes");
        let Some(schema) = &self.schema else {
            return payload;
        };
        let schema = schemas.rewrite(schema, self.form).text;
        let mut out = Vec::with_capacity(schema.len() + payload.len() + 24);
        out.extend_from_slice(b"{\"schema\":");
        out.extend_from_slice(schema.as_bytes());
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(&payload);
        out.push(b'}');
        out
    }

    /// The Connect type of each row field, when the message has a schema, as [`Self::to_bytes`]
    /// writes it.
    pub fn row_types(&self, schemas: &Schemas) -> Option<RowTypes> {
        schemas.rewrite(self.schema.as_ref()?, self.form).row_types
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
    fn priced(mut record: Record, price: Value, format: PriceFormat) -> Value {
        record.set_price("suggested_price", price);
        serde_json::from_slice(&record.to_bytes(&Schemas::new("suggested_price", format))).unwrap()
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn upsert(v: &Value) -> Record {
        match decode(Some(&bytes(v))) {
            Ok(Change::Upsert(record)) => record,
            other => panic!("expected a row to price, got {other:?}"),
        }
    }

    #[test]
    fn flattened_with_schema_is_priced_and_its_schema_follows() {
        let message = json!({"schema": row_schema("car_database.public.tbl_car_price.Value"), "payload": row()});
        let record = upsert(&message);
        assert_eq!(record.row()["fuel_type"], "Diesel");
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
        let mut a = upsert(&message);
        a.set_price("suggested_price", json!(1.5));
        let mut b = upsert(&message);
        b.set_price("suggested_price", json!(2.5));
        let (a, b): (Value, Value) = (
            serde_json::from_slice(&a.to_bytes(&schemas)).unwrap(),
            serde_json::from_slice(&b.to_bytes(&schemas)).unwrap(),
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
        assert_eq!(schemas.rewritten.lock().unwrap().len(), 1);
    }

    #[test]
    fn messages_of_two_tables_in_turn_keep_their_own_schemas() {
        let schemas = Schemas::new("suggested_price", PriceFormat::Integer);
        for name in ["v", "w", "v", "v", "w"] {
            let mut record = upsert(&json!({"schema": row_schema(name), "payload": row()}));
            record.set_price("suggested_price", json!(1));
            let written: Value = serde_json::from_slice(&record.to_bytes(&schemas)).unwrap();
            assert_eq!(written["schema"]["name"], name);
            assert_eq!(written["schema"]["fields"][10]["type"], "int32");
        }
        assert_eq!(schemas.rewritten.lock().unwrap().len(), 2);
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
                assert_eq!(record.row()["model"], json!(format!("model-{op}")), "op {op}");
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
        assert_eq!(record.row()["op"], "c");
        assert_eq!(record.row()["id"], 22);
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
