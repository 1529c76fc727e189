//! The edges of the Open Inference Protocol on both transports, in-process: the binary data
//! extension's framing (sizes that do not add up, a missing header, a wrong type, compressed
//! bodies, limits) over HTTP, and over gRPC the token, raw and typed contents, limits and error
//! codes. Every answer is checked against `/predict`'s bytes for the same rows.

mod common;

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::http::{config, state_with, EXAMPLE_RESPONSE};
use http_body_util::BodyExt;
use tonic::Code;
use tower::ServiceExt;
use xgserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use xgserve::grpc::proto::model_infer_request::InferInputTensor;
use xgserve::grpc::proto::{InferTensorContents, ModelInferRequest};
use xgserve::http::{AppState, HttpConfig};

const MODEL: &str = "ford_used_car_price";

/// The two cars of the Bento example, column by column: (name, datatype, values).
fn example() -> Vec<(&'static str, &'static str, Vec<Value>)> {
    use Value::{Int, Real, Text};
    vec![
        ("model", "BYTES", vec![Text("C-MAX"), Text("EcoSport")]),
        ("year", "INT64", vec![Int(2014), Int(2019)]),
        ("transmission", "BYTES", vec![Text("Semi-Auto"), Text("Automatic")]),
        ("mileage", "INT64", vec![Int(40000), Int(1400)]),
        ("fuelType", "BYTES", vec![Text("Diesel"), Text("Petrol")]),
        ("tax", "INT64", vec![Int(160), Int(150)]),
        ("mpg", "FP64", vec![Real(50.4), Real(44.1)]),
        ("engineSize", "FP64", vec![Real(2.0), Real(1.0)]),
    ]
}

#[derive(Clone, Copy)]
enum Value {
    Text(&'static str),
    Int(i64),
    Real(f64),
}

/// A value in the binary extension's encoding.
fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::Text(s) => [&(s.len() as u32).to_le_bytes()[..], s.as_bytes()].concat(),
        Value::Int(i) => i.to_le_bytes().to_vec(),
        Value::Real(x) => x.to_le_bytes().to_vec(),
    }
}

/// The predictions `/predict` answers for the example (Bento's own bytes), as float32.
fn expected() -> Vec<f32> {
    serde_json::from_str(EXAMPLE_RESPONSE).unwrap()
}

/// A binary-extension request: the JSON header (with `binary_data_size` per tensor) and the bytes.
fn binary_request(extra: serde_json::Value) -> (String, Vec<u8>) {
    let mut inputs = Vec::new();
    let mut data = Vec::new();
    for (name, datatype, values) in example() {
        let tensor: Vec<u8> = values.iter().flat_map(|v| bytes(*v)).collect();
        inputs.push(
            serde_json::json!({"name": name, "datatype": datatype, "shape": [values.len()],
            "parameters": {"binary_data_size": tensor.len()}}),
        );
        data.extend(tensor);
    }
    let mut header = serde_json::json!({"inputs": inputs});
    header
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    (header.to_string(), data)
}

struct Raw {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

async fn infer(state: &AppState, headers: &[(&str, String)], body: Vec<u8>) -> Raw {
    let mut request = Request::post(format!("/v2/models/{MODEL}/infer"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = xgserve::http::router(state.clone())
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    Raw {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.into_body().collect().await.unwrap().to_bytes().to_vec(),
    }
}

async fn binary(state: &AppState, header: &str, data: &[u8]) -> Raw {
    let length = [("inference-header-content-length", header.len().to_string())];
    infer(state, &length, [header.as_bytes(), data].concat()).await
}

fn error(raw: &Raw) -> String {
    let body: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn binary_tensors_in_and_out_give_the_predictions_of_predict() {
    let state = state_with(config());
    for (extra, binary_out) in [
        (serde_json::json!({}), false),
        (
            serde_json::json!({"parameters": {"binary_data_output": true, "priority": 3}}),
            true,
        ),
        (
            serde_json::json!({"outputs": [{"name": "predict", "parameters": {"binary_data": true}}]}),
            true,
        ),
        (
            serde_json::json!({"parameters": {"binary_data_output": true},
                "outputs": [{"name": "predict", "parameters": {"binary_data": false}}]}),
            false,
        ),
    ] {
        let (header, data) = binary_request(extra.clone());
        let answer = binary(&state, &header, &data).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{extra}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let predictions: Vec<f32> = if binary_out {
            let length: usize = answer.headers["inference-header-content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let head: serde_json::Value = serde_json::from_slice(&answer.body[..length]).unwrap();
            assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8, "{head}");
            assert_eq!(answer.headers["content-type"], "application/octet-stream");
            answer.body[length..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        } else {
            let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert!(answer.headers.get("inference-header-content-length").is_none());
            serde_json::from_value(body["outputs"][0]["data"].clone()).unwrap()
        };
        assert_eq!(predictions, expected(), "{extra}");
    }
}

#[tokio::test]
async fn compressed_bodies_are_inflated_within_the_limit() {
    let state = state_with(HttpConfig {
        max_body_bytes: 4096,
        ..config()
    });
    let (header, data) = binary_request(serde_json::json!({"parameters": {"binary_data_output": true}}));
    let plain = [header.as_bytes(), &data].concat();
    let length = ("inference-header-content-length", header.len().to_string());
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&plain).unwrap();
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(&plain).unwrap();
    let uncompressed = binary(&state, &header, &data).await;
    for (encoding, body) in [("gzip", gzip.finish().unwrap()), ("deflate", deflate.finish().unwrap())] {
        let answer = infer(&state, &[length.clone(), ("content-encoding", encoding.into())], body).await;
        assert_eq!(answer.status, StatusCode::OK, "{encoding}");
        assert_eq!(answer.body, uncompressed.body, "{encoding}");
    }
    // 1 MB of spaces after the JSON compresses to a few kB but inflates past the 4 kB limit.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&[b' '; 1 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 4096);
    let answer = infer(&state, &[("content-encoding", "gzip".into())], bomb).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", error(&answer));
    let answer = infer(&state, &[("content-encoding", "br".into())], plain).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(error(&answer).contains("\"br\""), "{}", error(&answer));
}

#[tokio::test]
async fn framing_that_does_not_add_up_is_refused_naming_the_tensor() {
    let state = state_with(config());
    let (header, data) = binary_request(serde_json::json!({}));

    let short = binary(&state, &header, &data[..data.len() - 1]).await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(
        error(&short).contains("\"engineSize\"") && error(&short).contains("runs past"),
        "{}",
        error(&short)
    );

    let long = binary(&state, &header, &[&data[..], b"x"].concat()).await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert!(error(&long).contains("1 bytes of binary data"), "{}", error(&long));

    let no_header = infer(&state, &[], [header.as_bytes(), &data].concat()).await;
    assert_eq!(no_header.status, StatusCode::BAD_REQUEST);
    assert!(
        error(&no_header).contains("Inference-Header-Content-Length"),
        "{}",
        error(&no_header)
    );
    let header_only = infer(&state, &[], header.clone().into_bytes()).await;
    assert_eq!(header_only.status, StatusCode::BAD_REQUEST);
    let message = error(&header_only);
    assert!(
        message.contains("\"model\"") && message.contains("Inference-Header-Content-Length"),
        "{message}"
    );

    let beyond = infer(
        &state,
        &[("inference-header-content-length", "999999".into())],
        header.clone().into_bytes(),
    )
    .await;
    assert_eq!(beyond.status, StatusCode::BAD_REQUEST, "{}", error(&beyond));

    // mileage declared FP32 (4 bytes a value) but sent as 8-byte integers: the sizes disagree.
    let fp32 = header.replacen(
        r#""datatype":"INT64","name":"mileage""#,
        r#""datatype":"FP32","name":"mileage""#,
        1,
    );
    assert_ne!(fp32, header, "the header's key order changed; fix the test");
    let answer = binary(&state, &fp32, &data).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error(&answer).contains("\"mileage\"") && error(&answer).contains("16 bytes"),
        "{}",
        error(&answer)
    );

    let text = header.replacen(
        r#""datatype":"INT64","name":"mileage""#,
        r#""datatype":"BYTES","name":"mileage""#,
        1,
    );
    let answer = binary(&state, &text, &data).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error(&answer).contains("\"mileage\"") && error(&answer).contains("BYTES"),
        "{}",
        error(&answer)
    );

    let unknown_output = binary_request(serde_json::json!({"outputs": [{"name": "price"}]})).0;
    let answer = binary(&state, &unknown_output, &data).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(error(&answer).contains("\"price\""), "{}", error(&answer));
}

#[tokio::test]
async fn a_shape_beyond_the_row_limit_is_refused_before_its_data_is_read() {
    let state = state_with(HttpConfig {
        limits: xgserve::input::Limits { max_rows: 10 },
        ..config()
    });
    // Claims 11 rows; its data is not even valid for that.
    let body = r#"{"inputs": [{"name": "mileage", "datatype": "INT64", "shape": [11], "data": [1]}]}"#;
    let answer = infer(&state, &[], body.into()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", error(&answer));
    // More values than the shape says stops the reading at once, naming the tensor.
    let body = r#"{"inputs": [{"name": "mileage", "datatype": "INT64", "shape": [1], "data": [1, 2, 3]}]}"#;
    let answer = infer(&state, &[], body.into()).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error(&answer).contains("\"mileage\""), "{}", error(&answer));
}

/// A gRPC server on a free loopback port over `state`'s core, and a client to it.
async fn grpc(state: &AppState) -> GrpcInferenceServiceClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(xgserve::grpc::run(
        listener,
        Arc::clone(&state.core),
        std::future::pending(),
    ));
    GrpcInferenceServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap()
}

fn raw_request() -> ModelInferRequest {
    let (inputs, raw) = example()
        .into_iter()
        .map(|(name, datatype, values)| {
            let tensor = InferInputTensor {
                name: name.into(),
                datatype: datatype.into(),
                shape: vec![values.len() as i64],
                ..Default::default()
            };
            (
                tensor,
                values.iter().flat_map(|v| bytes(*v)).collect::<Vec<u8>>().into(),
            )
        })
        .unzip();
    ModelInferRequest {
        model_name: MODEL.into(),
        inputs,
        raw_input_contents: raw,
        ..Default::default()
    }
}

fn typed_request() -> ModelInferRequest {
    let inputs = example()
        .into_iter()
        .map(|(name, datatype, values)| {
            let mut contents = InferTensorContents::default();
            for value in &values {
                match *value {
                    Value::Text(s) => contents.bytes_contents.push(s.as_bytes().to_vec().into()),
                    Value::Int(i) => contents.int64_contents.push(i),
                    Value::Real(x) => contents.fp64_contents.push(x),
                }
            }
            InferInputTensor {
                name: name.into(),
                datatype: datatype.into(),
                shape: vec![values.len() as i64],
                contents: Some(contents),
                ..Default::default()
            }
        })
        .collect();
    ModelInferRequest {
        model_name: MODEL.into(),
        id: "typed".into(),
        inputs,
        ..Default::default()
    }
}

fn predictions(response: &xgserve::grpc::proto::ModelInferResponse) -> Vec<f32> {
    assert_eq!(response.outputs[0].name, "predict");
    assert_eq!(response.outputs[0].datatype, "FP32");
    response.raw_output_contents[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn with_token(message: ModelInferRequest, token: &str) -> tonic::Request<ModelInferRequest> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn grpc_takes_raw_and_typed_contents_behind_the_token_with_the_http_limits() {
    let state = state_with(HttpConfig {
        api_key: Some("grpc-token".into()),
        limits: xgserve::input::Limits { max_rows: 10 },
        ..config()
    });
    let mut client = grpc(&state).await;

    let refused = client.model_infer(raw_request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(refused.metadata().get("x-error-type").unwrap(), "unauthorized");
    let refused = client
        .model_infer(with_token(raw_request(), "wrong"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let raw = client
        .model_infer(with_token(raw_request(), "grpc-token"))
        .await
        .unwrap();
    assert_eq!(predictions(raw.get_ref()), expected());
    let typed = client
        .model_infer(with_token(typed_request(), "grpc-token"))
        .await
        .unwrap();
    assert_eq!(predictions(typed.get_ref()), expected());
    assert_eq!(typed.get_ref().id, "typed");

    let mut missing_one = raw_request();
    missing_one.raw_input_contents.pop();
    let refused = client
        .model_infer(with_token(missing_one, "grpc-token"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("raw_input_contents"), "{refused:?}");

    let mut wrong_type = typed_request();
    wrong_type.inputs[3].datatype = "BYTES".into();
    let refused = client
        .model_infer(with_token(wrong_type, "grpc-token"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("\"mileage\""), "{refused:?}");
    assert_eq!(refused.metadata().get("x-error-type").unwrap(), "type");

    let mut too_many = typed_request();
    for tensor in &mut too_many.inputs {
        tensor.shape = vec![11];
    }
    let refused = client
        .model_infer(with_token(too_many, "grpc-token"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    let mut unknown = raw_request();
    unknown.model_name = "other".into();
    let refused = client.model_infer(with_token(unknown, "grpc-token")).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    let metrics = state.metrics.render();
    for series in [
        r#"xgserve_grpc_requests_total{code="OK",method="ModelInfer"} 2"#,
        r#"xgserve_grpc_requests_total{code="UNAUTHENTICATED",method="ModelInfer"} 2"#,
        r#"xgserve_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer"} 2"#,
        r#"xgserve_grpc_requests_total{code="RESOURCE_EXHAUSTED",method="ModelInfer"} 1"#,
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }
}

#[tokio::test]
async fn grpc_health_follows_readiness_and_the_server_stops_when_told() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let state = state_with(config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(xgserve::grpc::run(listener, Arc::clone(&state.core), async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Channel::from_shared(address)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let mut client = GrpcInferenceServiceClient::new(channel);
    let status = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    for service in ["", "inference.GRPCInferenceService"] {
        let answer = health.check(status(service)).await.unwrap();
        assert_eq!(answer.get_ref().status(), ServingStatus::Serving, "{service:?}");
    }

    // Shutting down: not ready at once, while predictions are still answered.
    state.stop_ready();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for service in ["", "inference.GRPCInferenceService"] {
        let answer = health.check(status(service)).await.unwrap();
        assert_eq!(answer.get_ref().status(), ServingStatus::NotServing, "{service:?}");
    }
    let ready = client
        .server_ready(xgserve::grpc::proto::ServerReadyRequest {})
        .await
        .unwrap();
    assert!(!ready.get_ref().ready);
    let answer = client.model_infer(raw_request()).await.unwrap();
    assert_eq!(predictions(answer.get_ref()), expected());

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the gRPC server stops when told")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_reload_serves_grpc_too_under_the_name_given_by_flag() {
    let state = state_with(HttpConfig {
        model_name: Some("ford-price".into()),
        ..config()
    });
    let mut client = grpc(&state).await;
    let metadata = |name: &str| xgserve::grpc::proto::ModelMetadataRequest {
        name: name.to_owned(),
        version: String::new(),
    };
    let before = client.model_metadata(metadata("ford-price")).await.unwrap();
    assert_eq!(before.get_ref().name, "ford-price");
    assert_eq!(
        client.model_metadata(metadata(MODEL)).await.unwrap_err().code(),
        Code::NotFound
    );
    state.reload().await.unwrap();
    let after = client.model_metadata(metadata("ford-price")).await.unwrap();
    assert_eq!(after.get_ref().name, "ford-price", "the reloaded model lost its name");
    assert!(state
        .metrics
        .render()
        .contains(r#"xgserve_model_reloads_total{result="ok"} 1"#));
    let mut request = raw_request();
    request.model_name = "ford-price".into();
    let answer = client.model_infer(request).await.unwrap();
    assert_eq!(predictions(answer.get_ref()), expected());
}
