//! The HTTP API in-process (`oneshot`): every route, every error kind, auth, load shedding,
//! metrics, reload and the v2 protocol; and real listeners on port 0: one drains a request in flight
//! when told to shut down, one keeps a shed request's connection, one closes connections slow to
//! send a request's head.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::http::{
    config, example_request, get, listening, post, read_answer, send, state, state_of, state_with, stuck, Listening,
    EXAMPLE, EXAMPLE_RESPONSE,
};
use xgserve::http::HttpConfig;

#[tokio::test]
async fn predict_answers_bentos_exact_bytes() {
    let answer = send(&state(), post("/predict", "application/json", EXAMPLE)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, EXAMPLE_RESPONSE.trim());
    assert_eq!(answer.headers["content-type"], "application/json");
    // curl -d without a content type, as Bento accepted.
    let form = send(&state(), post("/predict", "application/x-www-form-urlencoded", EXAMPLE)).await;
    assert_eq!((form.status, form.body), (StatusCode::OK, answer.body));
}

#[tokio::test]
async fn records_csv_and_v2_answer_the_same() {
    let state = state();
    let columnar = send(&state, post("/predict", "application/json", EXAMPLE)).await.body;
    let records = r#"[{"model": "C-MAX", "year": 2014, "transmission": "Semi-Auto", "mileage": 40000, "fuelType": "Diesel", "tax": 160, "mpg": 50.4, "engineSize": 2.0},
                      {"model": "EcoSport", "year": 2019, "transmission": "Automatic", "mileage": 1400, "fuelType": "Petrol", "tax": 150, "mpg": 44.1, "engineSize": 1.0}]"#;
    let csv = "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\nC-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0\nEcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0\n";
    assert_eq!(
        send(&state, post("/predict", "application/json", records)).await.body,
        columnar
    );
    assert_eq!(
        send(&state, post("/predict", "text/csv; charset=utf-8", csv))
            .await
            .body,
        columnar
    );

    let v2 = serde_json::json!({"id": "r1", "inputs": [
        {"name": "model", "shape": [2], "datatype": "BYTES", "data": ["C-MAX", "EcoSport"]},
        {"name": "year", "shape": [2, 1], "datatype": "INT64", "data": [[2014], [2019]]},
        {"name": "transmission", "shape": [2], "datatype": "BYTES", "data": ["Semi-Auto", "Automatic"]},
        {"name": "mileage", "shape": [2], "datatype": "FP64", "data": [40000, 1400]},
        {"name": "fuelType", "shape": [2], "datatype": "BYTES", "data": ["Diesel", "Petrol"]},
        {"name": "tax", "shape": [2], "datatype": "FP32", "data": [160, 150]},
        {"name": "mpg", "shape": [2], "datatype": "FP64", "data": [50.4, 44.1]},
        {"name": "engineSize", "shape": [2], "datatype": "FP64", "data": [2.0, 1.0]}]});
    let answer = send(
        &state,
        post(
            "/v2/models/ford_used_car_price/infer",
            "application/json",
            v2.to_string(),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["id"], "r1");
    assert_eq!(json["model_name"], "ford_used_car_price");
    assert_eq!(json["outputs"][0]["name"], "predict");
    assert_eq!(json["outputs"][0]["datatype"], "FP32");
    assert_eq!(json["outputs"][0]["shape"], serde_json::json!([2]));
    assert_eq!(json["outputs"][0]["data"].to_string(), columnar);
}

#[tokio::test]
async fn every_error_kind_has_its_status_and_json_shape() {
    let state = state();
    let many_rows = format!(
        r#"{{"model": {0}, "year": {1}, "transmission": {0}, "mileage": {1}, "fuelType": {0}, "tax": {1}, "mpg": {1}, "engineSize": {1}}}"#,
        serde_json::to_string(&vec!["Focus"; 1001]).unwrap(),
        serde_json::to_string(&vec![1; 1001]).unwrap()
    );
    let cases = [
        (
            EXAMPLE.replace(r#""mpg": [50.4, 44.1], "#, ""),
            "application/json",
            422,
            "missing_column",
            Some("mpg"),
            None,
        ),
        (
            EXAMPLE.replace("[2014, 2019]", "[2014]"),
            "application/json",
            422,
            "ragged",
            Some("year"),
            None,
        ),
        (
            EXAMPLE.replace("[2014, 2019]", r#"[2014, "x"]"#),
            "application/json",
            422,
            "type",
            Some("year"),
            Some(1),
        ),
        (
            EXAMPLE.replace("[40000, 1400]", "[-1, 1400]"),
            "application/json",
            422,
            "out_of_range",
            Some("mileage"),
            Some(0),
        ),
        (
            "{\"model\": [".to_owned(),
            "application/json",
            400,
            "syntax",
            None,
            None,
        ),
        ("[]".to_owned(), "application/json", 400, "empty", None, None),
        (
            EXAMPLE.to_owned(),
            "text/plain",
            415,
            "unsupported_media_type",
            None,
            None,
        ),
        (many_rows, "application/json", 413, "too_many_rows", None, None),
        (
            " ".repeat(65 * 1024),
            "application/json",
            413,
            "body_too_large",
            None,
            None,
        ),
    ];
    for (body, content_type, status, error_type, column, row) in cases {
        let answer = send(&state, post("/predict", content_type, body)).await;
        let json = answer.json();
        assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
        assert_eq!(json["error_type"], error_type, "{}", answer.body);
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", answer.body);
        assert_eq!(json.get("column").and_then(|c| c.as_str()), column, "{}", answer.body);
        assert_eq!(json.get("row").and_then(|r| r.as_u64()), row, "{}", answer.body);
    }
}

#[tokio::test]
async fn health_readiness_info_and_docs() {
    let state = state();
    for path in [
        "/healthz",
        "/livez",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/docs/",
    ] {
        assert_eq!(send(&state, get(path)).await.status, StatusCode::OK, "{path}");
    }
    let root = send(&state, get("/")).await;
    assert!(root.status.is_redirection());
    assert_eq!(root.headers["location"], "/docs");
    assert!(
        send(&state, get("/docs/")).await.body.contains("swagger"),
        "Swagger UI page"
    );
    let info = send(&state, get("/info")).await.json();
    assert_eq!(info["name"], "ford_used_car_price");
    assert_eq!(info["features"].as_array().unwrap().len(), 12);
    assert_eq!(info["trees"], 100);
    assert_eq!(info["xgboost_version"], "1.6.2");
    let meta = send(&state, get("/v2/models/ford_used_car_price")).await.json();
    assert_eq!(meta["inputs"].as_array().unwrap().len(), 8);
    assert_eq!(meta["outputs"][0]["datatype"], "FP32");
    assert_eq!(
        send(&state, get("/v2/models/ford_used_car_price/ready")).await.status,
        StatusCode::OK
    );
    let unknown = send(&state, get("/v2/models/other")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json()["error"].as_str().unwrap().contains("other"));

    state.stop_ready();
    assert_eq!(
        send(&state, get("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(&state, get("/v2/health/ready")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Draining still predicts, closing each connection after its answer.
    let draining = send(&state, post("/predict", "application/json", EXAMPLE)).await;
    assert_eq!(draining.status, StatusCode::OK, "{}", draining.body);
    assert_eq!(draining.headers["connection"], "close");
}

#[tokio::test]
async fn v2_errors_use_the_protocol_body() {
    let state = state();
    let missing =
        serde_json::json!({"inputs": [{"name": "model", "shape": [1], "datatype": "BYTES", "data": ["Focus"]}]});
    let answer = send(
        &state,
        post(
            "/v2/models/ford_used_car_price/infer",
            "application/json",
            missing.to_string(),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer.json()["error"].as_str().unwrap().contains("\"year\""),
        "{}",
        answer.body
    );
    let answer = send(
        &state,
        post("/v2/models/nope/infer", "application/json", missing.to_string()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = send(
        &state,
        post("/v2/models/ford_used_car_price/infer", "application/json", "{"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.json()["error"].is_string());
}

#[tokio::test]
async fn metrics_count_requests_rows_and_unknown_categories() {
    let state = state();
    let unknown_model = EXAMPLE.replace("\"C-MAX\"", "\"Model T\"");
    assert_eq!(
        send(&state, post("/predict", "application/json", unknown_model))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&state, post("/predict", "application/json", "[]")).await.status,
        StatusCode::BAD_REQUEST
    );
    let metrics = send(&state, get("/metrics")).await.body;
    for line in [
        "xgserve_rows_predicted_total 2",
        r#"xgserve_unknown_categories_total{column="model"} 1"#,
        r#"xgserve_http_requests_total{method="POST",route="/predict",status="200"} 1"#,
        r#"xgserve_http_requests_total{method="POST",route="/predict",status="400"} 1"#,
        r#"xgserve_http_request_duration_seconds_count{route="/predict"} 2"#,
        "xgserve_predict_duration_seconds_count 1",
        r#"xgserve_model_info{digest=""#,
        "xgserve_http_requests_in_flight 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_token_guards_predictions_and_admin_but_not_health_docs_or_metrics() {
    let state = state_with(HttpConfig {
        api_key: Some("s3cret".into()),
        ..config()
    });
    let denied = send(&state, post("/predict", "application/json", EXAMPLE)).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.headers["www-authenticate"], "Bearer");
    assert_eq!(denied.json()["error_type"], "unauthorized");
    let wrong = Request::post("/predict")
        .header("authorization", "Bearer nope")
        .body(Body::from(EXAMPLE))
        .unwrap();
    assert_eq!(send(&state, wrong).await.status, StatusCode::UNAUTHORIZED);
    let v2 = post("/v2/models/ford_used_car_price/infer", "application/json", "{}");
    assert_eq!(send(&state, v2).await.status, StatusCode::UNAUTHORIZED);
    let allowed = Request::post("/predict")
        .header("authorization", "Bearer s3cret")
        .header("content-type", "application/json")
        .body(Body::from(EXAMPLE))
        .unwrap();
    assert_eq!(send(&state, allowed).await.body, EXAMPLE_RESPONSE.trim());
    for path in ["/healthz", "/readyz", "/metrics", "/docs.json", "/info"] {
        assert_eq!(send(&state, get(path)).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn overload_is_shed_with_503_and_retry_after_and_slow_requests_time_out() {
    let state = state_with(HttpConfig {
        max_concurrency: 1,
        request_timeout: Duration::from_millis(300),
        ..config()
    });
    let request = stuck("/predict");
    let held = tokio::spawn({
        let state = state.clone();
        async move { send(&state, request).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let shed = send(&state, post("/predict", "application/json", EXAMPLE)).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE, "{}", shed.body);
    assert_eq!(shed.headers["retry-after"], "1");
    assert_eq!(shed.json()["error_type"], "overloaded");
    let timed_out = held.await.unwrap();
    assert_eq!(timed_out.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(timed_out.json()["error_type"], "timeout");
    assert_eq!(timed_out.headers["retry-after"], "1");
    // The permit is back.
    assert_eq!(
        send(&state, post("/predict", "application/json", EXAMPLE)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_request_abandoned_mid_way_is_no_longer_counted_in_flight() {
    let state = state();
    let request = stuck("/predict");
    // The client goes away: the request's future is dropped while it waits for the body.
    let abandoned = tokio::time::timeout(Duration::from_millis(100), send(&state, request)).await;
    assert!(abandoned.is_err(), "the request was still in flight");
    let metrics = send(&state, get("/metrics")).await.body;
    let in_flight = metrics
        .lines()
        .find_map(|l| l.strip_prefix("xgserve_http_requests_in_flight "))
        .unwrap();
    // The /metrics request itself is the one in flight.
    assert_eq!(in_flight, "1", "{metrics}");
}

#[tokio::test]
async fn request_ids_are_made_or_echoed() {
    let state = state();
    let first = send(&state, get("/livez")).await.headers["x-request-id"].clone();
    let second = send(&state, get("/livez")).await.headers["x-request-id"].clone();
    assert_eq!(first.len(), 32);
    assert_ne!(first, second, "ids are unique");
    let given = Request::get("/livez")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&state, given).await.headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let preflight = || {
        Request::builder()
            .method("OPTIONS")
            .uri("/predict")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap()
    };
    let off = send(&state(), preflight()).await;
    assert!(!off.headers.contains_key("access-control-allow-origin"));
    let on = state_with(HttpConfig {
        cors_origins: vec!["https://app.example".into()],
        ..config()
    });
    let answer = send(&on, preflight()).await;
    assert_eq!(answer.headers["access-control-allow-origin"], "https://app.example");
}

#[tokio::test]
async fn reload_swaps_a_good_bundle_and_refuses_a_bad_one_while_the_old_serves() {
    let dir = common::shipped_bundle_copy();
    let state = state_of(
        dir.path(),
        HttpConfig {
            api_key: Some("k".into()),
            ..config()
        },
    );
    let reload = || {
        Request::post("/admin/reload")
            .header("authorization", "Bearer k")
            .body(Body::empty())
            .unwrap()
    };

    // A new version of the bundle: the documents follow the model that serves, also from a router
    // built before the reload (as a running server's is).
    let app = xgserve::http::router(state.clone());
    let manifest = dir.path().join("bundle.json");
    let mut bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    bundle["version"] = "reloaded-version".into();
    std::fs::write(&manifest, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let good = send(&state, reload()).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    assert_eq!(good.json()["name"], "ford_used_car_price");
    assert_eq!(good.json()["version"], "reloaded-version");
    for path in ["/docs.json", "/openapi.json"] {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = app.clone().oneshot(get(path)).await.unwrap();
        let document = response.into_body().collect().await.unwrap().to_bytes();
        let document = String::from_utf8_lossy(&document);
        assert!(document.contains("version reloaded-version"), "{path} is stale");
    }

    std::fs::write(dir.path().join("model.json"), b"{\"broken\": true}").unwrap();
    let bad = send(&state, reload()).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.json()["error_type"], "reload_refused");
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("model.json: digest mismatch"),
        "{}",
        bad.body
    );
    // The old model still serves.
    let predict = Request::post("/predict")
        .header("authorization", "Bearer k")
        .header("content-type", "application/json")
        .body(Body::from(EXAMPLE))
        .unwrap();
    let answer = send(&state, predict).await;
    assert_eq!(answer.body, EXAMPLE_RESPONSE.trim());

    let metrics = send(&state, get("/metrics")).await.body;
    assert!(
        metrics.contains(r#"xgserve_model_reloads_total{result="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"xgserve_model_reloads_total{result="error"} 1"#),
        "{metrics}"
    );

    assert_eq!(
        send(&state, Request::post("/admin/reload").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let no_token = send(
        &common::http::state(),
        Request::post("/admin/reload").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert_eq!(no_token.json()["error_type"], "reload_disabled");
}

#[tokio::test]
async fn real_listener_finishes_a_request_in_flight_when_shut_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Listening {
        address,
        state,
        stop,
        server,
    } = listening(config()).await;

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = example_request();
    // Headers and the body's first 100 bytes, then the shutdown, then the rest of the body.
    let split = request.len() - EXAMPLE.len() + 100;
    stream.write_all(&request.as_bytes()[..split]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!state.is_ready(), "not ready once shutdown starts");
    stream.write_all(&request.as_bytes()[split..]).await.unwrap();

    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(EXAMPLE_RESPONSE.trim()), "{response}");
    drop(stream);
    let result = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "server did not stop cleanly: {result:?}"
    );
    // New connections are refused once it has stopped.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

/// A request shed at the concurrency limit has its body read away before the 503, so the
/// connection stays usable: unread bytes would make the close a reset, and the client could lose
/// the 503 along with the connection.
#[tokio::test]
async fn a_shed_request_leaves_its_connection_usable() {
    use tokio::io::AsyncWriteExt;
    // Kept to the end: dropping `stop` would start the shutdown.
    let Listening {
        address, stop: _stop, ..
    } = listening(HttpConfig {
        max_concurrency: 1,
        max_body_bytes: 1 << 20,
        request_timeout: Duration::from_secs(5),
        ..config()
    })
    .await;

    // The one permit, held by a body that never finishes.
    let mut holder = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{";
    holder.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = format!("{{\"model\": [\"{}\"]}}", "x".repeat(512 * 1024));
    let request = format!(
        "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let shed = read_answer(&mut client).await;
    assert!(shed.starts_with("HTTP/1.1 503"), "{shed}");
    assert!(shed.to_ascii_lowercase().contains("retry-after: 1"), "{shed}");
    client
        .write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let live = read_answer(&mut client).await;
    assert!(
        live.starts_with("HTTP/1.1 200"),
        "the connection was not kept: {live:?}"
    );

    drop(holder);
}

/// Whether the server closes a connection that sends no more within `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(0)) => true,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => true,
        Ok(other) => panic!("the server sent something: {other:?} {byte:?}"),
        Err(_) => false,
    }
}

/// A client has `header_read_timeout` to send a request's head, counted from the connection's start
/// or the end of the previous answer: one that trickles it, sends none, or sits idle after an
/// answer is disconnected, while one that keeps asking keeps its connection; with no timeout,
/// nothing is disconnected.
#[tokio::test]
async fn a_connection_slow_to_send_a_head_is_closed() {
    use tokio::io::AsyncWriteExt;
    const TIMEOUT: Duration = Duration::from_millis(300);
    let Listening {
        address, stop: _stop, ..
    } = listening(HttpConfig {
        header_read_timeout: Some(TIMEOUT),
        ..config()
    })
    .await;
    let connect = || tokio::net::TcpStream::connect(address);
    let request = example_request();

    let opened = std::time::Instant::now();
    let mut trickling = connect().await.unwrap();
    trickling
        .write_all(b"POST /predict HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut silent = connect().await.unwrap();
    let mut idle = connect().await.unwrap();
    // Before the answer, so before the server starts counting.
    let asked = std::time::Instant::now();
    idle.write_all(request.as_bytes()).await.unwrap();
    assert!(read_answer(&mut idle).await.ends_with(EXAMPLE_RESPONSE.trim()));
    // Asking more often than the timeout, for longer than it: the last request comes ~400 ms after
    // the connection opened.
    let mut busy = connect().await.unwrap();
    for _ in 0..5 {
        busy.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut busy).await;
        assert!(answer.ends_with(EXAMPLE_RESPONSE.trim()), "{answer}");
        tokio::time::sleep(TIMEOUT / 3).await;
    }

    for (name, stream, since) in [
        ("trickling", &mut trickling, opened),
        ("silent", &mut silent, opened),
        ("idle", &mut idle, asked),
    ] {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        assert!(closed, "the {name} connection is still open");
        assert!(since.elapsed() >= TIMEOUT, "the {name} connection closed early");
    }

    // Without the timeout, a silent connection stays.
    let Listening {
        address, stop: _stop, ..
    } = listening(HttpConfig {
        header_read_timeout: None,
        ..config()
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
    assert!(
        !closed_within(&mut silent, 3 * TIMEOUT).await,
        "closed without a timeout"
    );
}
