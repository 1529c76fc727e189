//! Any bytes as a Debezium message value, read by the stream bridge's decoder and, when it is a row
//! to price, written back with a price. Nothing may panic; a message reads the same whether or not
//! the decoder has just seen its schema; the written record reads again as a row whose price field
//! holds the price and whose other members are exactly as they came.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;
use xgserve::stream::debezium::{decode, Change, Decoder, PriceFormat, Schemas};

const FIELD: &str = "suggested_price";

fuzz_target!(|data: &[u8]| {
    // Read twice by one decoder: the second read may skip a schema the first one taught it.
    let mut decoder = Decoder::default();
    let first = decoder.decode(Some(data));
    let second = decoder.decode(Some(data));
    assert_eq!(first, second, "the known-schema path reads differently");
    let Ok(Change::Upsert(record)) = first else { return };
    let schemas = Schemas::new(FIELD, PriceFormat::Integer);
    // Only a schema no value can hold (a number beyond f64) is refused.
    let Ok(written) = record.to_bytes(FIELD, &Value::from(8507), &schemas) else {
        return;
    };
    let again = match decode(Some(&written)) {
        Ok(Change::Upsert(again)) => again,
        other => panic!(
            "the written record {:?} reads as {other:?}",
            String::from_utf8_lossy(&written)
        ),
    };
    assert_eq!(again.row().get(FIELD).map(RawValue::get), Some("8507"));
    for name in record.row().names().filter(|name| *name != FIELD) {
        assert_eq!(
            again.row().get(name).map(RawValue::get),
            record.row().get(name).map(RawValue::get),
            "member {name:?}"
        );
    }
});
