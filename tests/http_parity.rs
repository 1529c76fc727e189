//! The bundle's parity cases through `/predict` (columnar, records, CSV) and v2 infer answer exactly
//! what the engine predicts (which equals Python's); rows Python refuses are refused over HTTP too.
//! Also the error kinds only other bundles or broken bodies can produce.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::http::{config, post, send, state};
use serde_json::{json, Map, Value};
use xgserve::bundle::Model;
use xgserve::http::AppState;
use xgserve::preprocess::ColumnKind;
use xgserve::pyfloat::float32_array;

fn parity() -> Value {
    serde_json::from_slice(&std::fs::read(common::shipped_bundle().join("parity.json")).unwrap()).unwrap()
}

/// The scored parity rows as columns, with the engine's predictions for them.
fn scored_cases(model: &Model) -> (Map<String, Value>, Vec<usize>, String) {
    let parity = parity();
    let rows: Vec<usize> = parity["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_null())
        .map(|(i, _)| i)
        .collect();
    let columns: Map<String, Value> = parity["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, values)| (name.clone(), rows.iter().map(|&i| values[i].clone()).collect()))
        .collect();
    let body = serde_json::to_vec(&columns).unwrap();
    let batch = xgserve::input::decode_columnar(&body, model.preprocessor.inputs(), Default::default()).unwrap();
    let expected = float32_array(&model.predict(&batch).unwrap());
    // The engine's output is Python's: parity.json holds Python's predictions for the same rows.
    let python: Vec<f32> = rows
        .iter()
        .map(|&i| parity["predictions"][i].as_f64().unwrap() as f32)
        .collect();
    assert_eq!(expected, float32_array(&python));
    (columns, rows, expected)
}

#[tokio::test]
async fn parity_cases_through_every_format_equal_the_engine() {
    let state = state();
    let model = state.model();
    let (columns, rows, expected) = scored_cases(&model);
    let n = rows.len();
    assert!(n > 250, "{n}");

    let columnar = send(
        &state,
        post("/predict", "application/json", serde_json::to_vec(&columns).unwrap()),
    )
    .await;
    assert_eq!(
        (columnar.status, columnar.body.as_str()),
        (StatusCode::OK, expected.as_str())
    );

    let records: Vec<Value> = (0..n)
        .map(|r| {
            columns
                .iter()
                .map(|(name, values)| (name.clone(), values[r].clone()))
                .collect()
        })
        .collect();
    let answer = send(
        &state,
        post("/predict", "application/json", serde_json::to_vec(&records).unwrap()),
    )
    .await;
    assert_eq!(answer.body, expected, "records");

    // CSV has no null: an empty cell is missing, which the model treats as it treats "" (unknown).
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(columns.keys()).unwrap();
    for r in 0..n {
        csv.write_record(columns.values().map(|values| match &values[r] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
        .unwrap();
    }
    let answer = send(&state, post("/predict", "text/csv", csv.into_inner().unwrap())).await;
    assert_eq!(answer.body, expected, "csv");

    let inputs: Vec<Value> = model
        .preprocessor
        .inputs()
        .iter()
        .map(|input| {
            let datatype = if input.kind == ColumnKind::String {
                "BYTES"
            } else {
                "FP64"
            };
            json!({"name": input.name, "shape": [n], "datatype": datatype, "data": columns[&input.name]})
        })
        .collect();
    let body = json!({"inputs": inputs}).to_string();
    let answer = send(
        &state,
        post("/v2/models/ford_used_car_price/infer", "application/json", body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["outputs"][0]["data"].to_string(), expected, "v2");
}

#[tokio::test]
async fn rows_python_refuses_are_refused_with_their_column_and_row() {
    let state = state();
    let parity = parity();
    let refused: Vec<usize> = parity["refused"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    assert!(!refused.is_empty());
    for row in refused {
        let body: Map<String, Value> = parity["inputs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, values)| (name.clone(), json!([values[row].clone()])))
            .collect();
        let answer = send(
            &state,
            post("/predict", "application/json", serde_json::to_vec(&body).unwrap()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.body);
        assert_eq!(answer.json()["error_type"], "out_of_range");
        assert_eq!(answer.json()["row"], 0);
    }
}

#[tokio::test]
async fn a_strict_encoder_refuses_unknown_categories_with_422() {
    // The round-trip classifier's OrdinalEncoder was fitted with handle_unknown="error".
    let dir = common::reference().join("roundtrip/classifier");
    let state = AppState::new(Model::load(&dir).unwrap(), config());
    let body = json!({"year": [2019], "transmission": ["Hovercraft"], "mileage": [10], "fuelType": ["Petrol"],
                      "tax": [150], "mpg": [50.0], "engineSize": [1.0]});
    let answer = send(&state, post("/predict", "application/json", body.to_string())).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["error_type"], "unknown_category");
    assert_eq!(json["column"], "transmission");
    assert_eq!(json["row"], 0);
    assert!(json["error"].as_str().unwrap().contains("Hovercraft"));
}

/// A body whose stream fails.
struct Broken;

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
    }
}

#[tokio::test]
async fn a_body_that_fails_to_arrive_is_a_400() {
    let request = Request::post("/predict")
        .header("content-type", "application/json")
        .body(Body::new(Broken))
        .unwrap();
    let answer = send(&state(), request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.json()["error_type"], "body_read");
}
