//! The server's own faults, injected with fail points (feature `failpoints`, on under
//! `cargo test --all-features`): a prediction that panics is a 500 (INTERNAL over gRPC) that names
//! nothing of the cause, logged with the request id, and the server goes on serving; a prediction
//! abandoned at its deadline keeps its permit until it has really stopped.
//!
//! Fail points are global to the process, so this file is its own test binary and runs its steps in
//! one test, one after the other.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::http::{config, post, send, state_with, EXAMPLE, EXAMPLE_RESPONSE};
use common::logs::Captured;
use xgserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use xgserve::grpc::proto::model_infer_request::InferInputTensor;
use xgserve::grpc::proto::{InferTensorContents, ModelInferRequest};
use xgserve::http::{AppState, HttpConfig};

/// The example's two cars repeated to `rows` rows: above 256 the prediction runs on the blocking
/// pool, at or below it inline.
fn rows(rows: usize) -> String {
    let example: serde_json::Map<String, serde_json::Value> = serde_json::from_str(EXAMPLE).unwrap();
    let columns: serde_json::Map<String, serde_json::Value> = example
        .into_iter()
        .map(|(name, values)| {
            let values = values.as_array().unwrap();
            (name, values.iter().cycle().take(rows).cloned().collect())
        })
        .collect();
    serde_json::Value::Object(columns).to_string()
}

fn v2_request() -> String {
    serde_json::json!({"inputs": [
        {"name": "model", "shape": [1], "datatype": "BYTES", "data": ["Fiesta"]},
        {"name": "year", "shape": [1], "datatype": "INT64", "data": [2017]},
        {"name": "transmission", "shape": [1], "datatype": "BYTES", "data": ["Manual"]},
        {"name": "mileage", "shape": [1], "datatype": "INT64", "data": [15944]},
        {"name": "fuelType", "shape": [1], "datatype": "BYTES", "data": ["Petrol"]},
        {"name": "tax", "shape": [1], "datatype": "INT64", "data": [150]},
        {"name": "mpg", "shape": [1], "datatype": "FP64", "data": [57.7]},
        {"name": "engineSize", "shape": [1], "datatype": "FP64", "data": [1.0]},
    ]})
    .to_string()
}

/// The v2 request's car as a gRPC request with typed contents.
fn grpc_request(model: &str) -> ModelInferRequest {
    let request: serde_json::Value = serde_json::from_str(&v2_request()).unwrap();
    let inputs = request["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tensor| {
            let value = &tensor["data"][0];
            let mut contents = InferTensorContents::default();
            match tensor["datatype"].as_str().unwrap() {
                "BYTES" => contents
                    .bytes_contents
                    .push(value.as_str().unwrap().as_bytes().to_vec().into()),
                "INT64" => contents.int64_contents.push(value.as_i64().unwrap()),
                _ => contents.fp64_contents.push(value.as_f64().unwrap()),
            }
            InferInputTensor {
                name: tensor["name"].as_str().unwrap().into(),
                datatype: tensor["datatype"].as_str().unwrap().into(),
                shape: vec![1],
                contents: Some(contents),
                ..Default::default()
            }
        })
        .collect();
    ModelInferRequest {
        model_name: model.into(),
        inputs,
        ..Default::default()
    }
}

async fn predict(state: &AppState, body: String) -> common::http::Answer {
    send(state, post("/predict", "application/json", body)).await
}

#[tokio::test]
async fn a_panicked_prediction_is_a_500_and_an_abandoned_one_keeps_its_permit() {
    let state = state_with(config());
    let name = state.model().manifest.name.clone();
    let log = Captured::default();
    let logging = log.log("error");

    fail::cfg("score", "panic(secret engine detail)").unwrap();
    for (what, request) in [
        ("inline, 2 rows", post("/predict", "application/json", EXAMPLE)),
        (
            "blocking pool, 300 rows",
            post("/predict", "application/json", rows(300)),
        ),
        (
            "v2 infer",
            post(&format!("/v2/models/{name}/infer"), "application/json", v2_request()),
        ),
    ] {
        let answer = send(&state, request).await;
        assert_eq!(
            answer.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{what}: {}",
            answer.body
        );
        assert!(
            !answer.body.contains("secret") && !answer.body.contains("panic"),
            "{what}: the body names the cause: {}",
            answer.body
        );
        if !what.starts_with("v2") {
            assert_eq!(answer.json()["error_type"], "internal", "{what}");
        }
        let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
        let logged = log.entries().into_iter().any(|entry| {
            entry["fields"]["request_id"] == id.as_str()
                && entry["fields"]["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("secret engine detail"))
        });
        assert!(
            logged,
            "{what}: no error line with request id {id}: {:?}",
            log.entries()
        );
    }
    // The same over gRPC: INTERNAL, naming nothing of the cause, logged with the request id.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(xgserve::grpc::run(listener, state.core.clone(), std::future::pending()));
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(grpc_request(&name));
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-panic-1".parse().unwrap());
    let refused = client.model_infer(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
    assert!(!refused.message().contains("secret"), "{refused:?}");
    assert!(
        log.entries()
            .into_iter()
            .any(|entry| entry["fields"]["request_id"] == "grpc-panic-1"
                && entry["fields"]["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("secret engine detail"))),
        "no gRPC error line: {:?}",
        log.entries()
    );
    fail::remove("score");
    drop(logging);
    let answer = client.model_infer(grpc_request(&name)).await.unwrap();
    assert_eq!(answer.get_ref().raw_output_contents[0].len(), 4, "gRPC stopped serving");

    let answer = predict(&state, EXAMPLE.to_owned()).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the server stopped serving: {}",
        answer.body
    );
    assert_eq!(answer.body, EXAMPLE_RESPONSE.trim_end());
    let answer = predict(&state, rows(300)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let metrics = state.metrics.render();
    assert!(
        metrics.contains(r#"xgserve_http_requests_total{method="POST",route="/predict",status="500"} 2"#),
        "{metrics}"
    );

    // A reload whose load task panics is the server's fault too: 500, and the old model serves on.
    let admin = state_with(HttpConfig {
        api_key: Some("reload-token".into()),
        ..config()
    });
    fail::cfg("reload", "panic(secret loader detail)").unwrap();
    let reload = axum::http::Request::post("/admin/reload")
        .header("authorization", "Bearer reload-token")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = send(&admin, reload).await;
    fail::remove("reload");
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", answer.body);
    assert_eq!(answer.json()["error_type"], "internal");
    assert!(!answer.body.contains("secret"), "{}", answer.body);
    assert!(admin
        .metrics
        .render()
        .contains(r#"xgserve_model_reloads_total{result="error"} 1"#));
    let authorized = axum::http::Request::post("/predict")
        .header("content-type", "application/json")
        .header("authorization", "Bearer reload-token")
        .body(axum::body::Body::from(EXAMPLE))
        .unwrap();
    let answer = send(&admin, authorized).await;
    assert_eq!(answer.body, EXAMPLE_RESPONSE.trim_end(), "the old model serves on");

    // One permit, a 200 ms deadline, and a prediction that takes 1.5 s.
    let state = state_with(HttpConfig {
        max_concurrency: 1,
        request_timeout: Duration::from_millis(200),
        ..config()
    });
    fail::cfg("score", "sleep(1500)").unwrap();
    let started = Instant::now();
    let answer = predict(&state, rows(300)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert_eq!(answer.json()["error_type"], "timeout");
    fail::remove("score");
    let answer = predict(&state, EXAMPLE.to_owned()).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a request was admitted while the abandoned prediction still ran: {}",
        answer.body
    );
    assert_eq!(answer.json()["error_type"], "overloaded");
    // Once the prediction has ended, its permit is back.
    loop {
        let answer = predict(&state, EXAMPLE.to_owned()).await;
        if answer.status == StatusCode::OK {
            assert!(
                started.elapsed() >= Duration::from_millis(1400),
                "admitted before the work ended"
            );
            break;
        }
        assert_eq!(answer.json()["error_type"], "overloaded");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the permit never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
