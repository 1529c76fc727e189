//! The HTTP API in-process (`oneshot`), and one real listener on port 0 shut down cleanly.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use xgserve::bundle::Model;
use xgserve::http::{router, AppState};
use xgserve::input::Limits;

const EXAMPLE: &str = include_str!("fixtures/bento_example.json");

fn state() -> AppState {
    AppState::new(
        Model::load(common::shipped_bundle()).unwrap(),
        Limits { max_rows: 1000 },
        64 * 1024,
    )
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, String) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn post(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/predict")
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn predict_answers_bentos_exact_bytes() {
    let (status, body) = send(&state(), post("application/json", EXAMPLE)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, include_str!("fixtures/bento_example.response").trim());
    // curl -d without a content type, as Bento accepted.
    let (status, form) = send(&state(), post("application/x-www-form-urlencoded", EXAMPLE)).await;
    assert_eq!((status, form), (StatusCode::OK, body));
}

#[tokio::test]
async fn records_and_csv_answer_the_same() {
    let state = state();
    let (_, columnar) = send(&state, post("application/json", EXAMPLE)).await;
    let records = r#"[{"model": "C-MAX", "year": 2014, "transmission": "Semi-Auto", "mileage": 40000, "fuelType": "Diesel", "tax": 160, "mpg": 50.4, "engineSize": 2.0},
                      {"model": "EcoSport", "year": 2019, "transmission": "Automatic", "mileage": 1400, "fuelType": "Petrol", "tax": 150, "mpg": 44.1, "engineSize": 1.0}]"#;
    let csv = "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\nC-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0\nEcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0\n";
    assert_eq!(
        send(&state, post("application/json", records)).await,
        (StatusCode::OK, columnar.clone())
    );
    assert_eq!(
        send(&state, post("text/csv; charset=utf-8", csv)).await,
        (StatusCode::OK, columnar)
    );
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
            post("application/json", EXAMPLE.replace(r#""mpg": [50.4, 44.1], "#, "")),
            422,
            "missing_column",
            Some("mpg"),
            None,
        ),
        (
            post("application/json", EXAMPLE.replace("[2014, 2019]", "[2014]")),
            422,
            "ragged",
            Some("year"),
            None,
        ),
        (
            post("application/json", EXAMPLE.replace("[2014, 2019]", r#"[2014, "x"]"#)),
            422,
            "type",
            Some("year"),
            Some(1),
        ),
        (
            post("application/json", EXAMPLE.replace("[40000, 1400]", "[-1, 1400]")),
            422,
            "out_of_range",
            Some("mileage"),
            Some(0),
        ),
        (post("application/json", "{\"model\": ["), 400, "syntax", None, None),
        (post("application/json", "[]"), 400, "empty", None, None),
        (post("text/plain", EXAMPLE), 415, "unsupported_media_type", None, None),
        (post("application/json", many_rows), 413, "too_many_rows", None, None),
        (
            post("application/json", vec![b' '; 65 * 1024]),
            413,
            "body_too_large",
            None,
            None,
        ),
    ];
    for (request, status, error_type, column, row) in cases {
        let (got, body) = send(&state, request).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        assert_eq!(got.as_u16(), status, "{body}");
        assert_eq!(json["error_type"], error_type, "{body}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
        assert_eq!(json.get("column").and_then(|c| c.as_str()), column, "{body}");
        assert_eq!(json.get("row").and_then(|r| r.as_u64()), row.map(|r: u64| r), "{body}");
    }
}

#[tokio::test]
async fn health_routes_and_info() {
    let state = state();
    for path in ["/healthz", "/livez", "/readyz"] {
        let (status, _) = send(&state, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, body) = send(&state, Request::get("/info").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["name"], "ford_used_car_price");
    assert_eq!(info["features"].as_array().unwrap().len(), 12);
    assert_eq!(info["trees"], 100);

    state.ready.store(false, std::sync::atomic::Ordering::Release);
    let (status, _) = send(&state, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = send(&state, post("application/json", EXAMPLE)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn real_listener_serves_then_shuts_down_cleanly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(xgserve::http::run(listener, state(), async move {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /predict HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{EXAMPLE}",
        EXAMPLE.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(include_str!("fixtures/bento_example.response").trim()),
        "{response}"
    );
    stop.send(()).unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "server did not stop cleanly: {result:?}"
    );
}
