//! The OpenAPI document is honest: the committed `openapi/openapi.json` is what the server serves,
//! and every status it declares for every operation is produced by a real request here.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::http::{config, get, post, send, state, state_of, state_with, stuck, EXAMPLE};
use sha2::Digest;
use xgserve::bundle::Model;
use xgserve::http::openapi::spec;
use xgserve::http::HttpConfig;

fn committed() -> serde_json::Value {
    let path = common::repo().join("openapi/openapi.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[tokio::test]
async fn committed_document_is_what_the_server_serves() {
    let generated = serde_json::to_value(spec(&Model::load(common::shipped_bundle()).unwrap())).unwrap();
    assert!(
        generated == committed(),
        "openapi/openapi.json is stale: run `cargo run -- openapi` and commit it"
    );
    let state = state();
    for path in ["/docs.json", "/openapi.json"] {
        assert_eq!(send(&state, get(path)).await.json(), generated, "{path}");
    }
}

#[test]
fn request_schema_and_example_come_from_the_bundle() {
    let doc = committed();
    let body = &doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(
        body["example"],
        serde_json::from_str::<serde_json::Value>(EXAMPLE).unwrap()
    );
    let properties = body["schema"]["properties"].as_object().unwrap();
    let names: Vec<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    let transmission = &properties["transmission"]["items"]["enum"];
    assert_eq!(
        transmission,
        &serde_json::json!(["Automatic", "Manual", "Semi-Auto", null])
    );
    // Fuel types outside the kept ones are grouped, not refused: no enum.
    assert!(properties["fuelType"]["items"].get("enum").is_none());
    assert_eq!(
        properties["year"]["items"]["type"],
        serde_json::json!(["number", "null"])
    );
}

#[tokio::test]
async fn csv_example_is_accepted_and_prices_as_the_json_example() {
    let doc = committed();
    let csv = &doc["paths"]["/predict"]["post"]["requestBody"]["content"]["text/csv"];
    let example = csv["example"].as_str().unwrap().to_owned();
    let pattern = csv["schema"]["pattern"].as_str().unwrap();
    assert!(
        pattern.starts_with("^model,year,transmission,mileage,fuelType,tax,mpg,engineSize("),
        "{pattern}"
    );
    let state = state();
    let from_csv = send(&state, post("/predict", "text/csv", example)).await;
    let from_json = send(&state, post("/predict", "application/json", EXAMPLE)).await;
    assert_eq!(from_csv.status, 200, "{}", from_csv.body);
    assert_eq!(from_csv.body, from_json.body);
}

/// The document says a log1p column takes any number but -1; the server refuses exactly that one.
#[tokio::test]
async fn minus_one_is_refused_where_the_document_says_so() {
    let doc = committed();
    let properties =
        &doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"];
    let refuses_minus_one = |column: &str| properties[column]["items"]["anyOf"][0]["exclusiveMaximum"] == -1.0;
    let state = state();
    for column in ["mileage", "tax", "year", "mpg", "engineSize"] {
        for value in [-1.0, -5.0, -0.5] {
            let mut body: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
            body[column][1] = value.into();
            let answer = send(&state, post("/predict", "application/json", body.to_string())).await;
            let refused = value == -1.0 && refuses_minus_one(column);
            if refused {
                assert_eq!(answer.status, 422, "{column} = {value}: {}", answer.body);
                assert_eq!(answer.json()["column"], column);
                assert_eq!(answer.json()["row"], 1);
            } else {
                assert_eq!(answer.status, 200, "{column} = {value}: {}", answer.body);
            }
        }
    }
    assert!(refuses_minus_one("mileage") && refuses_minus_one("tax") && !refuses_minus_one("year"));
}

const MODEL: &str = "ford_used_car_price";

/// The document's example of a v2 inference request.
fn infer_example() -> serde_json::Value {
    let doc = committed();
    let body = &doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"];
    body["example"].clone()
}

#[tokio::test]
async fn v2_example_prices_as_the_bento_example() {
    let state = state();
    let infer = send(
        &state,
        post(
            &format!("/v2/models/{MODEL}/infer"),
            "application/json",
            infer_example().to_string(),
        ),
    )
    .await;
    assert_eq!(infer.status, 200, "{}", infer.body);
    let predict = send(&state, post("/predict", "application/json", EXAMPLE)).await;
    let data = &infer.json()["outputs"][0]["data"];
    assert_eq!(data.to_string(), predict.body, "v2 data and /predict differ");
    let doc = committed();
    let name = &doc["paths"]["/v2/models/{name}/infer"]["post"]["parameters"][0]["schema"]["enum"];
    assert_eq!(name, &serde_json::json!([MODEL]));
}

/// Schemathesis found the first v2 document refusing what the server takes: a null `id`, and
/// shapes other than `[rows]` (`[]` for one value, `[rows, 1]`). Both are declared now, and taken.
#[tokio::test]
async fn v2_document_declares_the_ids_and_shapes_the_server_takes() {
    let doc = committed();
    let schema =
        &doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        schema["properties"]["id"]["type"],
        serde_json::json!(["string", "null"])
    );
    let shape = &schema["properties"]["inputs"]["prefixItems"][0]["properties"]["shape"];
    assert!(
        shape.get("minItems").is_none() && shape.get("maxItems").is_none(),
        "{shape}"
    );
    let state = state();
    let mut body = infer_example();
    body["id"] = serde_json::Value::Null;
    for tensor in body["inputs"].as_array_mut().unwrap() {
        let first = tensor["data"][0].clone();
        tensor["data"] = serde_json::json!([[first]]);
        tensor["shape"] = serde_json::json!([1, 1]);
    }
    let infer = |body: &serde_json::Value| {
        post(
            &format!("/v2/models/{MODEL}/infer"),
            "application/json",
            body.to_string(),
        )
    };
    let answer = send(&state, infer(&body)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for tensor in body["inputs"].as_array_mut().unwrap() {
        tensor["shape"] = serde_json::json!([]);
    }
    let answer = send(&state, infer(&body)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.json().get("id").is_none(), "{}", answer.body);
}

/// A request that makes `path` answer `status`, with the state it needs.
async fn trigger(path: &str, status: u16) -> Option<u16> {
    let with_token = || {
        state_with(HttpConfig {
            api_key: Some("t".into()),
            ..config()
        })
    };
    let authed = |request: axum::http::request::Builder| request.header("authorization", "Bearer t");
    let answer = match (path, status) {
        ("/predict", 200) => send(&state(), post(path, "application/json", EXAMPLE)).await,
        ("/predict", 400) => send(&state(), post(path, "application/json", "{")).await,
        ("/predict", 401) => send(&with_token(), post(path, "application/json", EXAMPLE)).await,
        ("/predict", 413) => send(&state(), post(path, "application/json", " ".repeat(70_000))).await,
        ("/predict", 415) => send(&state(), post(path, "text/plain", EXAMPLE)).await,
        ("/predict", 422) => send(&state(), post(path, "application/json", r#"{"model": ["Focus"]}"#)).await,
        ("/predict", 503) => {
            let state = state_with(HttpConfig {
                request_timeout: Duration::from_millis(50),
                ..config()
            });
            let request = stuck(path);
            send(&state, request).await
        }
        ("/explain", 200) => send(&state(), post(path, "application/json", EXAMPLE)).await,
        ("/explain", 400) => send(&state(), post("/explain?by=tree", "application/json", EXAMPLE)).await,
        ("/explain", 401) => send(&with_token(), post(path, "application/json", EXAMPLE)).await,
        ("/explain", 413) => send(&state(), post(path, "application/json", " ".repeat(70_000))).await,
        ("/explain", 415) => send(&state(), post(path, "text/plain", EXAMPLE)).await,
        ("/explain", 422) => send(&state(), post(path, "application/json", r#"{"model": ["Focus"]}"#)).await,
        ("/explain", 501) => {
            // A model whose trees record no covers (sum_hessian) predicts but cannot attribute.
            let dir = common::shipped_bundle_copy();
            let model_path = dir.path().join("model.json");
            let mut model: serde_json::Value = serde_json::from_slice(&std::fs::read(&model_path).unwrap()).unwrap();
            for tree in model["learner"]["gradient_booster"]["model"]["trees"]
                .as_array_mut()
                .unwrap()
            {
                tree.as_object_mut().unwrap().remove("sum_hessian");
            }
            let bytes = serde_json::to_vec(&model).unwrap();
            std::fs::write(&model_path, &bytes).unwrap();
            let manifest_path = dir.path().join("bundle.json");
            let mut manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
            manifest["files"]["model.json"] = xgserve::bundle::hex(&sha2::Sha256::digest(&bytes)).into();
            std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
            send(&state_of(dir.path(), config()), post(path, "application/json", EXAMPLE)).await
        }
        ("/explain", 503) => {
            let state = state_with(HttpConfig {
                request_timeout: Duration::from_millis(50),
                ..config()
            });
            send(&state, stuck(path)).await
        }
        ("/healthz" | "/livez" | "/readyz" | "/info" | "/metrics", 200) => send(&state(), get(path)).await,
        ("/readyz", 503) => {
            let state = state();
            state.stop_ready();
            send(&state, get(path)).await
        }
        ("/v2" | "/v2/health/live" | "/v2/health/ready", 200) => send(&state(), get(path)).await,
        ("/v2/health/ready" | "/v2/models/{name}/ready", 503) => {
            let state = state();
            state.stop_ready();
            send(&state, get(&path.replace("{name}", MODEL))).await
        }
        ("/v2/models/{name}" | "/v2/models/{name}/ready", 200) => {
            send(&state(), get(&path.replace("{name}", MODEL))).await
        }
        ("/v2/models/{name}" | "/v2/models/{name}/ready", 404) => {
            send(&state(), get(&path.replace("{name}", "no_such_model"))).await
        }
        ("/v2/models/{name}/infer", _) => {
            let infer = path.replace("{name}", MODEL);
            let example = infer_example().to_string();
            match status {
                200 => send(&state(), post(&infer, "application/json", example)).await,
                400 => send(&state(), post(&infer, "application/json", "{")).await,
                401 => send(&with_token(), post(&infer, "application/json", example)).await,
                404 => {
                    let elsewhere = path.replace("{name}", "no_such_model");
                    send(&state(), post(&elsewhere, "application/json", example)).await
                }
                413 => send(&state(), post(&infer, "application/json", " ".repeat(70_000))).await,
                422 => send(&state(), post(&infer, "application/json", r#"{"inputs": []}"#)).await,
                503 => {
                    let state = state_with(HttpConfig {
                        request_timeout: Duration::from_millis(50),
                        ..config()
                    });
                    send(&state, stuck(&infer)).await
                }
                _ => return None,
            }
        }
        ("/admin/reload", 200) => send(&with_token(), authed(Request::post(path)).body(Body::empty()).unwrap()).await,
        ("/admin/reload", 401) => send(&with_token(), Request::post(path).body(Body::empty()).unwrap()).await,
        ("/admin/reload", 403) => send(&state(), Request::post(path).body(Body::empty()).unwrap()).await,
        ("/admin/reload", 422) => {
            let dir = common::shipped_bundle_copy();
            let state = state_of(
                dir.path(),
                HttpConfig {
                    api_key: Some("t".into()),
                    ..config()
                },
            );
            std::fs::remove_file(dir.path().join("parity.json")).unwrap();
            send(&state, authed(Request::post(path)).body(Body::empty()).unwrap()).await
        }
        _ => return None,
    };
    Some(answer.status.as_u16())
}

#[tokio::test]
async fn every_declared_status_is_produced() {
    let doc = committed();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                let status: u16 = status.parse().unwrap();
                let got = trigger(path, status).await;
                assert_eq!(
                    got,
                    Some(status),
                    "{method} {path} declares {status} but no test produces it"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 41, "declared statuses checked");
}
