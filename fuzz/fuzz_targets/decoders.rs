//! Any bytes, as any body format the server takes (columnar or records JSON, CSV, a v2 inference
//! request, JSON or with binary tensors), through the decoder and, when it decodes, the shipped
//! model's preprocessing and trees. Nothing may panic; a decoded batch gets one prediction per row;
//! every refusal of a value names its column.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xgserve::bundle::Model;
use xgserve::input::{self, Limits};
use xgserve::preprocess::{InputError, InputErrorKind};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/ford_used_car_price");
        Model::load(dir).expect("the shipped bundle loads")
    })
}

fn check_error(error: &InputError) {
    let located = matches!(
        error.kind,
        InputErrorKind::Type
            | InputErrorKind::Ragged
            | InputErrorKind::OutOfRange
            | InputErrorKind::UnknownCategory
            | InputErrorKind::MissingColumn
    );
    assert!(!located || error.column.is_some(), "{error:?} names no column");
}

fuzz_target!(|data: &[u8]| {
    let Some((&format, body)) = data.split_first() else {
        return;
    };
    let model = model();
    let inputs = model.preprocessor.inputs();
    let limits = Limits { max_rows: 1_000 };
    let decoded = match format % 4 {
        0 => input::decode_json(body, inputs, limits),
        1 => input::decode_csv(body, inputs, limits),
        2 => input::decode_v2(body, None, inputs, limits).map(|request| request.batch),
        _ => {
            // The binary data extension: a JSON header, then the tensors' bytes, split at the first 0.
            let split = body.iter().position(|&b| b == 0).unwrap_or(body.len());
            let binary = body.get(split + 1..).unwrap_or_default();
            input::decode_v2(&body[..split], Some(binary), inputs, limits).map(|request| request.batch)
        }
    };
    match decoded {
        Ok(batch) => match model.predict(&batch) {
            Ok(predictions) => assert_eq!(predictions.len(), batch.rows()),
            Err(error) => check_error(&error),
        },
        Err(error) => check_error(&error),
    }
});
