//! The seed table's change events as Debezium's JSON converter writes them (flattened by
//! `ExtractNewRecordState`, with schemas), for the benches and tests that feed the bridge.
#![allow(dead_code)] // each bench uses its own subset

use serde_json::{json, Value};

fn field(kind: &str, name: &str) -> Value {
    json!({"type": kind, "optional": name != "id", "field": name})
}

/// The schema of a row of `tbl_car_price`.
pub fn value_schema() -> Value {
    json!({"type": "struct", "optional": false, "name": "car_database.public.tbl_car_price.Value",
        "fields": [field("int32", "id"), field("string", "model"), field("int32", "year"), field("int32", "price"),
                   field("string", "transmission"), field("int32", "mileage"), field("string", "fuel_type"),
                   field("int32", "tax"), field("double", "mpg"), field("double", "engine_size"),
                   field("int32", "suggested_price")]})
}

/// The schema of its key, `{"id": ...}`.
pub fn key_schema() -> Value {
    json!({"type": "struct", "optional": false, "name": "car_database.public.tbl_car_price.Key",
        "fields": [field("int32", "id")]})
}

/// A message as the converter writes it: the schema first (`json!` would sort it last, which the
/// bridge reads too, but more slowly).
pub fn message(schema: &Value, payload: &Value) -> String {
    format!(r#"{{"schema":{schema},"payload":{payload}}}"#)
}
