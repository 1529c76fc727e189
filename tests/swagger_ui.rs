//! Swagger UI in a real browser: the server on a port-0 listener, Debian's headless Chromium driven by
//! playwright-core (`tests/browser/swagger.mjs`): open /docs, expand POST /predict, "Try it out",
//! Execute. The page must show a 200 with the two prices the Bento example gives, byte for byte as the
//! Python reference wrote them. The screenshot goes to `target/swagger-ui/predict.png`; the browser's
//! profile is removed afterwards.

mod common;

use xgserve::bundle::Model;
use xgserve::http::{self, AppState};

#[tokio::test(flavor = "multi_thread")]
async fn try_it_out_on_predict_shows_the_two_prices() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(Model::load(common::shipped_bundle()).unwrap(), common::http::config());
    tokio::spawn(http::run(listener, state, std::future::pending()));

    let out = common::repo().join("target/swagger-ui");
    std::fs::create_dir_all(&out).unwrap();
    let screenshot = out.join("predict.png");
    let _ = std::fs::remove_file(&screenshot);
    let shown = common::browser::run("swagger.mjs", vec![base.into(), screenshot.clone().into()]).await;
    assert_eq!(shown["status"], "200", "{shown}");
    let body: serde_json::Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    let expected: serde_json::Value = serde_json::from_str(common::http::EXAMPLE_RESPONSE).unwrap();
    assert_eq!(body, expected, "the prices the page shows");
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a screenshot was taken"
    );
}
