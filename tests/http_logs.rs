//! The log of each answer, in-process. Its own test binary: tracing caches per call site whether a
//! subscriber is interested, and tests running beside it on other threads without one would race
//! that cache.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::http::{config, get, send, state_with, stuck};
use common::logs::Captured;
use xgserve::http::HttpConfig;

/// Each answer, a 503 included, is logged as `answered` at DEBUG in a `request` span carrying the
/// request id. The span is at DEBUG too: at the default level a request makes no span (it would
/// cost about a tenth of the throughput), so what a request logs at INFO carries none. One test, so
/// the two subscribers never run side by side.
#[tokio::test]
async fn answers_are_logged_in_a_span_with_the_request_id() {
    let captured = Captured::default();
    let logging = captured.log("xgserve=debug");
    let state = state_with(HttpConfig {
        request_timeout: Duration::from_millis(100),
        ..config()
    });
    let with_id = |mut request: Request<Body>, id: &'static str| {
        request.headers_mut().insert("x-request-id", id.parse().unwrap());
        request
    };
    assert_eq!(
        send(&state, with_id(get("/livez"), "log-me")).await.status,
        StatusCode::OK
    );
    let slow = send(&state, with_id(stuck("/predict"), "too-slow")).await;
    assert_eq!(slow.status, StatusCode::SERVICE_UNAVAILABLE);
    let entries = captured.entries();
    let answered: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|entry| entry["fields"]["message"] == "answered")
        .collect();
    assert_eq!(answered.len(), 2, "{entries:?}");
    let (ok, failed) = (answered[0], answered[1]);
    assert_eq!(ok["level"], "DEBUG", "{ok}");
    assert_eq!(ok["fields"]["status"], 200, "{ok}");
    assert_eq!(ok["span"]["name"], "request", "{ok}");
    assert_eq!(ok["span"]["request_id"], "log-me", "{ok}");
    assert_eq!(ok["span"]["method"], "GET", "{ok}");
    assert_eq!(ok["span"]["uri"], "/livez", "{ok}");
    assert_eq!(failed["level"], "DEBUG", "{failed}");
    assert_eq!(failed["fields"]["status"], 503, "{failed}");
    assert_eq!(failed["span"]["request_id"], "too-slow", "{failed}");
    assert!(failed["fields"]["latency_us"].as_u64().unwrap() >= 100_000, "{failed}");
    drop(logging);

    // At INFO, a reload through the admin route logs `reloaded` outside any request span.
    let captured = Captured::default();
    let _logging = captured.log("xgserve=info");
    let state = state_with(HttpConfig {
        api_key: Some("k".into()),
        ..config()
    });
    let reload = Request::post("/admin/reload")
        .header("authorization", "Bearer k")
        .header("x-request-id", "reload-me")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&state, reload).await.status, StatusCode::OK);
    let entries = captured.entries();
    let reloaded = entries
        .iter()
        .find(|entry| entry["fields"]["message"] == "reloaded")
        .unwrap_or_else(|| panic!("the reload is logged at INFO: {entries:?}"));
    assert_eq!(reloaded["level"], "INFO", "{reloaded}");
    assert!(reloaded.get("span").is_none(), "no request span at INFO: {reloaded}");
}
