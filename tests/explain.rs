//! Why a price, as clients ask for it: `POST /explain` (per column and `?by=feature`, its bodies,
//! limits and errors), the v2 output `contributions` over HTTP, and `xgserve predict --explain`.
//! The per-feature values themselves are checked against XGBoost's `pred_contribs` in
//! `contributions.rs`; here they must be the engine's, and each column's the sum of its features'.

mod common;

use axum::http::StatusCode;
use common::http::{post, send, state, EXAMPLE, EXAMPLE_RESPONSE};
use common::process::xgserve;
use serde_json::Value;
use xgserve::bundle::Model;
use xgserve::input::{decode_json, Limits};

const MODEL: &str = "ford_used_car_price";

/// A row's values may differ from the prediction by this share of its total absolute contribution:
/// the contributions are float32 values, each rounded once (2^-24 of itself), then added here.
const SUM_TOLERANCE: f64 = 1e-6;

fn shipped() -> Model {
    Model::load(common::shipped_bundle()).unwrap()
}

/// The engine's own per-feature contributions for the Bento example.
fn engine_contributions(model: &Model) -> ndarray::Array2<f32> {
    let batch = decode_json(EXAMPLE.as_bytes(), model.preprocessor.inputs(), Limits { max_rows: 10 }).unwrap();
    let features = model.preprocessor.transform(&batch).unwrap();
    model.forest.contributions(features.view()).unwrap()
}

/// Asserts `names` appear as keys in `body`'s first row in this order (serde_json's map sorts them).
fn assert_key_order(body: &str, names: &[&str]) {
    let first = &body[..body.find("}}").expect("a row")];
    let positions: Vec<usize> = names
        .iter()
        .map(|name| {
            first
                .find(&format!("\"{name}\":"))
                .unwrap_or_else(|| panic!("{name} in {first}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{names:?} in order in {first}"
    );
}

fn as_f64(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{value} is not a number"))
}

#[tokio::test]
async fn explain_answers_each_rows_price_base_value_and_column_contributions() {
    let answer = send(&state(), post("/explain", "application/json", EXAMPLE)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    let rows = answer.json();
    let rows = rows.as_array().unwrap();
    let predictions: Vec<f64> = serde_json::from_str(EXAMPLE_RESPONSE).unwrap();
    assert_eq!(rows.len(), predictions.len());

    let model = shipped();
    let by_feature = engine_contributions(&model);
    let names: Vec<&str> = model.preprocessor.inputs().iter().map(|i| i.name.as_str()).collect();
    let feature_inputs = model.preprocessor.feature_inputs();
    assert_key_order(&answer.body, &names);
    for (row, (explained, &prediction)) in rows.iter().zip(&predictions).enumerate() {
        assert_eq!(
            as_f64(&explained["prediction"]),
            prediction,
            "row {row}: /predict's price"
        );
        let contributions = explained["contributions"].as_object().unwrap();
        assert_eq!(
            contributions.len(),
            names.len(),
            "row {row}: one value per input column"
        );
        let base = as_f64(&explained["base_value"]);
        assert_eq!(
            base as f32,
            by_feature[[row, feature_inputs.len()]],
            "row {row}: the bias"
        );
        for (input, name) in names.iter().enumerate() {
            let summed: f64 = feature_inputs
                .iter()
                .enumerate()
                .filter(|&(_, &i)| i == input)
                .map(|(f, _)| f64::from(by_feature[[row, f]]))
                .sum();
            assert_eq!(
                as_f64(&contributions[*name]),
                f64::from(summed as f32),
                "row {row}, {name}"
            );
        }
        let total: f64 = base + contributions.values().map(as_f64).sum::<f64>();
        let scale: f64 = base.abs() + contributions.values().map(|v| as_f64(v).abs()).sum::<f64>();
        assert!(
            (total - prediction).abs() <= SUM_TOLERANCE * scale,
            "row {row}: base value + contributions = {total}, the price is {prediction}"
        );
    }
    // transmission's one-hot features add up to one value, which differs from zero for this model.
    assert!(as_f64(&rows[0]["contributions"]["transmission"]) != 0.0);
}

#[tokio::test]
async fn explain_by_feature_gives_the_engines_values_with_the_feature_names() {
    let answer = send(&state(), post("/explain?by=feature", "application/json", EXAMPLE)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let model = shipped();
    let by_feature = engine_contributions(&model);
    let names = &model.preprocessor.spec().feature_names;
    assert_key_order(&answer.body, &names.iter().map(String::as_str).collect::<Vec<_>>());
    for (row, explained) in answer.json().as_array().unwrap().iter().enumerate() {
        let contributions = explained["contributions"].as_object().unwrap();
        assert_eq!(contributions.len(), names.len());
        for (f, name) in names.iter().enumerate() {
            assert_eq!(
                as_f64(&contributions[name]) as f32,
                by_feature[[row, f]],
                "row {row}, {name}"
            );
        }
        assert_eq!(as_f64(&explained["base_value"]) as f32, by_feature[[row, names.len()]]);
    }
}

#[tokio::test]
async fn explain_takes_records_and_csv_as_predict_does() {
    let state = state();
    let columnar = send(&state, post("/explain", "application/json", EXAMPLE)).await;
    let records = r#"[{"model": "C-MAX", "year": 2014, "transmission": "Semi-Auto", "mileage": 40000, "fuelType": "Diesel", "tax": 160, "mpg": 50.4, "engineSize": 2.0},
                      {"model": "EcoSport", "year": 2019, "transmission": "Automatic", "mileage": 1400, "fuelType": "Petrol", "tax": 150, "mpg": 44.1, "engineSize": 1.0}]"#;
    let csv = "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\nC-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0\nEcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0\n";
    let from_records = send(&state, post("/explain", "application/json", records)).await;
    let from_csv = send(&state, post("/explain", "text/csv", csv)).await;
    assert_eq!(columnar.status, StatusCode::OK);
    assert_eq!(from_records.body, columnar.body);
    assert_eq!(from_csv.body, columnar.body);
}

#[tokio::test]
async fn explain_refusals_name_the_column_and_row_or_the_parameter() {
    let state = state();
    let bad = EXAMPLE.replace("40000", "\"many\"");
    let answer = send(&state, post("/explain", "application/json", bad)).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.body);
    assert!(
        answer.body.contains("mileage") && answer.body.contains("row 0"),
        "{}",
        answer.body
    );

    let answer = send(&state, post("/explain?by=tree", "application/json", EXAMPLE)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(
        answer.body.contains("by") && answer.body.contains("feature"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn v2_answers_contributions_when_asked_in_the_order_asked() {
    let state = state();
    let v2 = |outputs: Value| {
        let request = serde_json::json!({"inputs": [
            {"name": "model", "shape": [2], "datatype": "BYTES", "data": ["C-MAX", "EcoSport"]},
            {"name": "year", "shape": [2], "datatype": "INT64", "data": [2014, 2019]},
            {"name": "transmission", "shape": [2], "datatype": "BYTES", "data": ["Semi-Auto", "Automatic"]},
            {"name": "mileage", "shape": [2], "datatype": "FP64", "data": [40000, 1400]},
            {"name": "fuelType", "shape": [2], "datatype": "BYTES", "data": ["Diesel", "Petrol"]},
            {"name": "tax", "shape": [2], "datatype": "FP64", "data": [160, 150]},
            {"name": "mpg", "shape": [2], "datatype": "FP64", "data": [50.4, 44.1]},
            {"name": "engineSize", "shape": [2], "datatype": "FP64", "data": [2.0, 1.0]}],
            "outputs": outputs});
        post(
            &format!("/v2/models/{MODEL}/infer"),
            "application/json",
            request.to_string(),
        )
    };
    let answer = send(
        &state,
        v2(serde_json::json!([{"name": "contributions"}, {"name": "predict"}])),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let outputs = answer.json()["outputs"].clone();
    assert_eq!(outputs[0]["name"], "contributions");
    assert_eq!(outputs[1]["name"], "predict");
    let model = shipped();
    let names: Vec<&str> = model.preprocessor.inputs().iter().map(|i| i.name.as_str()).collect();
    let inputs = names.len();
    assert_eq!(outputs[0]["shape"], serde_json::json!([2, inputs + 1]));

    let explained = send(&state, post("/explain", "application/json", EXAMPLE)).await.json();
    let data = outputs[0]["data"].as_array().unwrap();
    for (row, explained) in explained.as_array().unwrap().iter().enumerate() {
        let mut expected: Vec<f64> = names.iter().map(|n| as_f64(&explained["contributions"][*n])).collect();
        expected.push(as_f64(&explained["base_value"]));
        let got: Vec<f64> = data[row * (inputs + 1)..(row + 1) * (inputs + 1)]
            .iter()
            .map(as_f64)
            .collect();
        assert_eq!(got, expected, "row {row}: /explain's columns, then the base value");
    }
    let predictions: Value = serde_json::from_str(EXAMPLE_RESPONSE).unwrap();
    assert_eq!(outputs[1]["data"], predictions);

    let answer = send(&state, v2(serde_json::json!([{"name": "reasons"}]))).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(answer.body.contains("contributions"), "{}", answer.body);

    let metadata = send(&state, common::http::get(&format!("/v2/models/{MODEL}")))
        .await
        .json();
    assert_eq!(metadata["outputs"][1]["name"], "contributions");
    assert_eq!(metadata["outputs"][1]["shape"], serde_json::json!([-1, inputs + 1]));
}

#[tokio::test]
async fn predict_explain_writes_what_explain_answers_as_json_and_csv() {
    let served = send(&state(), post("/explain", "application/json", EXAMPLE)).await.body;
    let (ok, stdout, stderr) = xgserve(&["predict", "--explain", "--input", "tests/fixtures/bento_example.json"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), served);

    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("why.csv");
    let (ok, _, stderr) = xgserve(&[
        "predict",
        "--explain",
        "--input",
        "tests/fixtures/bento_example.json",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let csv = std::fs::read_to_string(&output).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let served: Value = serde_json::from_str(&served).unwrap();
    let model = shipped();
    let columns: Vec<&str> = model.preprocessor.inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(header[..2], ["prediction", "base_value"]);
    assert_eq!(header[2..], columns[..]);
    for (row, line) in lines.enumerate() {
        let values: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        let explained = &served[row];
        assert_eq!(values[0], as_f64(&explained["prediction"]), "row {row}");
        assert_eq!(values[1], as_f64(&explained["base_value"]), "row {row}");
        for (value, column) in values[2..].iter().zip(&columns) {
            assert_eq!(
                *value,
                as_f64(&explained["contributions"][*column]),
                "row {row}, {column}"
            );
        }
    }
    assert_eq!(csv.lines().count(), 3, "a header and a row per car");

    let (ok, stdout, stderr) = xgserve(&[
        "predict",
        "--explain",
        "--explain-by",
        "feature",
        "--format",
        "csv",
        "--input",
        "tests/fixtures/bento_example.json",
    ]);
    assert!(ok, "{stderr}");
    let header = stdout.lines().next().unwrap();
    let features = shipped().preprocessor.spec().feature_names.join(",");
    assert_eq!(header, format!("prediction,base_value,{features}"));
}

#[tokio::test]
async fn the_readmes_curl_example_answers_what_the_readme_shows() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("$ curl -s localhost:3000/explain"));
    let command = lines.next().expect("the README's /explain example");
    let shown = lines.next().unwrap();
    let body = command.split(" -d '").nth(1).unwrap().trim_end_matches('\'');
    let answer = send(&state(), post("/explain", "application/json", body.to_owned())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, shown, "the README shows /explain's real answer");
}
