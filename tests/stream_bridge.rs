//! The bridge's pricing without Kafka: a batch of Debezium messages priced in one engine call, bad
//! messages dead-lettered while the rest are priced, the same prices through a remote `/predict`
//! (this server, on a real listener), and a backend that is down at first: the batch waits and is
//! priced once it is up, never skipped.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use xgserve::bundle::Model;
use xgserve::http::{self, AppState};
use xgserve::input::{decode_csv, Limits};
use xgserve::stream::debezium::{PriceFormat, Schemas};
use xgserve::stream::metrics::{self, Metrics};
use xgserve::stream::{remote, Bridge, Message, Outcome, Pricer};

const ROWS: usize = 300;

fn model() -> Model {
    Model::load(common::shipped_bundle()).unwrap()
}

/// The first rows of ford.csv as flattened Debezium messages with the seed table's schema, and the
/// engine's price for each.
fn messages(n: usize) -> (Vec<Message>, Vec<f32>) {
    let model = model();
    let csv = std::fs::read(common::ford_csv()).unwrap();
    let batch = decode_csv(&csv, model.preprocessor.inputs(), Limits::default()).unwrap();
    let prices = model.predict(&batch).unwrap()[..n].to_vec();
    let mut reader = csv::Reader::from_path(common::ford_csv()).unwrap();
    let schema = json!({"type": "struct", "name": "car_database.public.tbl_car_price.Value", "optional": false,
        "fields": [{"type": "int32", "optional": false, "field": "id"},
                   {"type": "int32", "optional": true, "field": "suggested_price"}]});
    let messages = reader
        .records()
        .take(n)
        .enumerate()
        .map(|(i, r)| {
            let r = r.unwrap();
            let number = |s: &str| s.parse::<f64>().unwrap();
            let payload = json!({"id": i + 1, "model": r[0], "year": number(&r[1]) as i64,
                "price": number(&r[2]) as i64, "transmission": r[3], "mileage": number(&r[4]) as i64,
                "fuel_type": r[5], "tax": number(&r[6]) as i64, "mpg": number(&r[7]),
                "engine_size": number(&r[8]), "suggested_price": null});
            message(
                i,
                json!({"schema": schema, "payload": payload}).to_string().into_bytes(),
            )
        })
        .collect();
    (messages, prices)
}

fn message(offset: usize, value: Vec<u8>) -> Message {
    Message {
        key: Some(format!("{{\"id\": {}}}", offset + 1).into_bytes()),
        value: Some(value),
        topic: "car_database.public.tbl_car_price".into(),
        partition: 0,
        offset: offset as i64,
    }
}

fn bridge(pricer: Pricer, format: PriceFormat) -> Bridge {
    Bridge {
        pricer,
        columns: xgserve::stream::ColumnMap::DEFAULT.parse().unwrap(),
        price_field: "suggested_price".into(),
        price_format: format,
        metrics: Arc::new(Metrics::new()),
        schemas: Arc::new(Schemas::new("suggested_price", format)),
        keep_rows: true,
    }
}

fn price_of(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Priced { value, row, .. } => {
            let message: Value = serde_json::from_slice(value).unwrap();
            assert_eq!(message["payload"]["suggested_price"], row["suggested_price"]);
            row["suggested_price"].clone()
        }
        other => panic!("expected a priced record, got {other:?}"),
    }
}

/// A real server for the shipped bundle on port 0; returns its /predict URL.
async fn server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/predict", listener.local_addr().unwrap());
    let state = AppState::new(Model::load(common::shipped_bundle()).unwrap(), common::http::config());
    tokio::spawn(http::run(listener, state, std::future::pending()));
    url
}

// Multi-threaded, as `xgserve stream` runs: the engine's work leaves the async workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_priced_as_the_engine_prices_each_row_with_poison_dead_lettered() {
    let (mut batch, prices) = messages(ROWS);
    // Poison among good rows: unreadable, a wrong type, a missing column, an unknown op; a tombstone.
    let mut bad_type: Value = serde_json::from_slice(batch[10].value.as_ref().unwrap()).unwrap();
    bad_type["payload"]["mileage"] = json!("a lot");
    let mut missing: Value = serde_json::from_slice(batch[20].value.as_ref().unwrap()).unwrap();
    missing["payload"].as_object_mut().unwrap().remove("engine_size");
    batch[5].value = Some(b"{oops".to_vec());
    batch[10].value = Some(bad_type.to_string().into_bytes());
    batch[20].value = Some(missing.to_string().into_bytes());
    batch[30].value = Some(
        json!({"op": "t", "before": null, "after": null})
            .to_string()
            .into_bytes(),
    );
    batch[40].value = None;
    // Valid JSON, but a schema no value can hold: a number beyond f64.
    let huge = String::from_utf8(batch[45].value.clone().unwrap()).unwrap();
    batch[45].value = Some(
        huge.replacen(r#""optional":false"#, r#""optional":false,"version":1e999"#, 1)
            .into_bytes(),
    );

    let bridge = bridge(Pricer::local(model()), PriceFormat::Float);
    let outcomes = bridge.handle(&batch).await;
    assert_eq!(outcomes.len(), ROWS);
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (5, Outcome::DeadLetter { kind, .. }) => assert_eq!(kind, "json"),
            (10, Outcome::DeadLetter { kind, error }) => {
                assert_eq!(kind, "type");
                assert!(error.contains("mileage"), "{error}");
            }
            (20, Outcome::DeadLetter { kind, error }) => {
                assert_eq!(kind, "missing_column");
                assert!(error.contains("engine_size"), "names the database column: {error}");
            }
            (30, Outcome::DeadLetter { kind, .. }) => assert_eq!(kind, "op"),
            (40, Outcome::Tombstone) => {}
            (45, Outcome::DeadLetter { kind, error }) => {
                assert_eq!(kind, "json");
                assert!(error.contains("schema"), "{error}");
            }
            (5 | 10 | 20 | 30 | 40 | 45, other) => panic!("message {i}: {other:?}"),
            (_, outcome) => assert_eq!(price_of(outcome), json!(f64::from(prices[i])), "message {i}"),
        }
    }
    let rendered = bridge.metrics.render();
    assert!(
        rendered.contains(&format!("{}_count 1", metrics::PREDICT_SECONDS)),
        "the engine's two refused rows are found in one pricing call, not one call each:\n{rendered}"
    );
}

#[tokio::test]
async fn a_reload_swaps_the_model_for_the_next_batch_and_a_refused_one_keeps_the_old() {
    let dir = common::shipped_bundle_copy();
    let pricer = Pricer::local(Model::load(dir.path()).unwrap());
    let bridge = bridge(pricer.clone(), PriceFormat::Float);
    let (batch, prices) = messages(3);
    pricer.reload().await.unwrap();
    let outcomes = bridge.handle(&batch).await;
    assert_eq!(price_of(&outcomes[0]), json!(f64::from(prices[0])));

    let model = dir.path().join("model.json");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, text.replacen("\"base_score\"", "\"base_scorx\"", 1)).unwrap();
    let refused = pricer.reload().await.unwrap_err();
    assert!(refused.to_string().contains("model.json"), "{refused}");
    let outcomes = bridge.handle(&batch).await;
    assert_eq!(
        price_of(&outcomes[2]),
        json!(f64::from(prices[2])),
        "the old model prices on"
    );
}

/// The real binary: SIGHUP reloads the bundle in `stream` as in `serve`, and a refused bundle
/// leaves it running. No broker is needed for that: the bridge waits for one meanwhile.
#[test]
fn sighup_reloads_the_bundle_in_the_stream_command() {
    use common::process::{free_port, wait_until, Process};
    let out = common::repo().join("target/stream-sighup");
    std::fs::create_dir_all(&out).unwrap();
    let dir = common::shipped_bundle_copy();
    let mut bridge = Process::spawn(
        "stream",
        std::process::Command::new(env!("CARGO_BIN_EXE_xgserve"))
            .args(["stream", "--brokers", &format!("127.0.0.1:{}", free_port())])
            .args(["--metrics-port", "0", "--log-format", "json", "--model"])
            .arg(dir.path()),
        &out,
    );
    let log = || std::fs::read_to_string(&bridge.log).unwrap();
    let lines = |text: &str, message: &str| text.matches(message).count();
    wait_until("the model to load", std::time::Duration::from_secs(30), || {
        (lines(&log(), "model loaded and checked") == 1).then_some(())
    });
    let hangup = || {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &bridge.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    hangup();
    wait_until("the reload", std::time::Duration::from_secs(30), || {
        (lines(&log(), "reloaded; the next batch is priced with it") == 1).then_some(())
    });
    let model = dir.path().join("model.json");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, text.replacen("\"base_score\"", "\"base_scorx\"", 1)).unwrap();
    hangup();
    wait_until("the refusal", std::time::Duration::from_secs(30), || {
        (lines(&log(), "reload refused; the previous model keeps pricing") == 1).then_some(())
    });
    bridge.assert_running();
}

#[tokio::test]
async fn the_remote_backend_gives_the_same_prices_and_the_same_refusals() {
    let (mut batch, prices) = messages(ROWS);
    let mut bad_type: Value = serde_json::from_slice(batch[7].value.as_ref().unwrap()).unwrap();
    bad_type["payload"]["year"] = json!("new");
    batch[7].value = Some(bad_type.to_string().into_bytes());
    let url = server().await;
    let metrics = Arc::new(Metrics::new());
    let client = remote::Client::new(&url, Duration::from_secs(5), None, metrics).unwrap();
    let remote = bridge(Pricer::Remote(Box::new(client)), PriceFormat::Integer);
    let local = bridge(Pricer::local(model()), PriceFormat::Integer);
    let (remote, local) = (remote.handle(&batch).await, local.handle(&batch).await);
    assert_eq!(remote.len(), local.len());
    for (i, (r, l)) in remote.iter().zip(&local).enumerate() {
        match (r, l) {
            (Outcome::Priced { value: a, .. }, Outcome::Priced { value: b, .. }) => {
                assert!(
                    a == b,
                    "message {i}: a different record through /predict than in process"
                )
            }
            (Outcome::DeadLetter { kind: a, .. }, Outcome::DeadLetter { kind: b, .. }) => assert_eq!(a, b),
            _ => panic!("message {i}: different outcomes through /predict and in process"),
        }
    }
    match &remote[7] {
        Outcome::DeadLetter { kind, error } => {
            assert_eq!(kind, "type");
            assert!(error.contains("year"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        price_of(&remote[0]),
        json!(f64::from(prices[0]).round_ties_even() as i64)
    );
}

#[tokio::test]
async fn a_backend_that_is_down_holds_the_batch_until_it_is_up() {
    let (batch, prices) = messages(3);
    // Reserve a port, then serve on it only later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let metrics = Arc::new(Metrics::new());
    let client = remote::Client::new(
        &format!("http://{address}/predict"),
        Duration::from_secs(2),
        None,
        metrics.clone(),
    )
    .unwrap();
    let bridge = bridge(Pricer::Remote(Box::new(client)), PriceFormat::Float);
    let pricing = tokio::spawn(async move { bridge.handle(&batch).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !pricing.is_finished(),
        "nothing is priced or skipped while the backend is down"
    );
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let state = AppState::new(Model::load(common::shipped_bundle()).unwrap(), common::http::config());
    tokio::spawn(http::run(listener, state, std::future::pending()));
    let outcomes = tokio::time::timeout(Duration::from_secs(15), pricing)
        .await
        .unwrap()
        .unwrap();
    for (outcome, price) in outcomes.iter().zip(&prices) {
        assert_eq!(price_of(outcome), json!(f64::from(*price)));
    }
    let retries = metrics
        .render()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{} ", metrics::BACKEND_RETRIES))
                .map(str::to_owned)
        })
        .unwrap();
    assert!(retries.parse::<u64>().unwrap() >= 2, "retried while down: {retries}");
}

#[tokio::test]
async fn the_health_listener_is_ready_only_while_consuming() {
    use tower::ServiceExt;
    let metrics = Arc::new(Metrics::new());
    let get = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    let router = metrics::router(metrics.clone());
    let status = |r: axum::response::Response| r.status().as_u16();
    assert_eq!(status(router.clone().oneshot(get("/livez")).await.unwrap()), 200);
    assert_eq!(status(router.clone().oneshot(get("/readyz")).await.unwrap()), 503);
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(status(router.clone().oneshot(get("/readyz")).await.unwrap()), 200);
    metrics.dead_letter("json");
    let response = router.oneshot(get("/metrics")).await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(&format!("{}{{error_type=\"json\"}} 1", metrics::DEAD_LETTERED)),
        "{text}"
    );
}

/// A backend in front of a real server that first answers the given statuses, refuses bodies over
/// `max_body` bytes with 413, and refuses any body naming the model "Poison" with a 400 that names
/// no row (as the Bento service does); everything else it passes on. Returns its URL and the
/// statuses it answered.
async fn scripted_backend(script: Vec<u16>, max_body: usize) -> (String, Arc<std::sync::Mutex<Vec<u16>>>) {
    use axum::body::Body;
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let state = AppState::new(Model::load(common::shipped_bundle()).unwrap(), common::http::config());
    let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(script)));
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = answered.clone();
    let app = axum::Router::new().route(
        "/predict",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (state, script, seen) = (state.clone(), script.clone(), seen.clone());
            async move {
                let scripted = script.lock().unwrap().pop_front();
                let response = if let Some(status) = scripted {
                    (axum::http::StatusCode::from_u16(status).unwrap(), "scripted").into_response()
                } else if body.len() > max_body {
                    (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response()
                } else if String::from_utf8_lossy(&body).contains("Poison") {
                    (axum::http::StatusCode::BAD_REQUEST, "Invalid JSON input").into_response()
                } else {
                    let request = axum::http::Request::post("/predict")
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap();
                    http::router(state).oneshot(request).await.unwrap()
                };
                seen.lock().unwrap().push(response.status().as_u16());
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/predict", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, answered)
}

#[tokio::test]
async fn only_the_datas_faults_dead_letter_rows_through_a_remote_backend() {
    let (mut batch, prices) = messages(40);
    for i in [7, 23] {
        let mut poisoned: Value = serde_json::from_slice(batch[i].value.as_ref().unwrap()).unwrap();
        poisoned["payload"]["model"] = json!("Poison");
        batch[i].value = Some(poisoned.to_string().into_bytes());
    }
    // A rotated token, a wrong route and an outage first; bodies of more than about 12 rows are
    // too large for it.
    let (url, answered) = scripted_backend(vec![401, 404, 503], 1500).await;
    let metrics = Arc::new(Metrics::new());
    let client = remote::Client::new(&url, Duration::from_secs(5), None, metrics.clone()).unwrap();
    let outcomes = bridge(Pricer::Remote(Box::new(client)), PriceFormat::Float)
        .handle(&batch)
        .await;
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (7 | 23, Outcome::DeadLetter { kind, error }) => {
                assert_eq!(kind, "backend_refused");
                assert!(error.contains("Invalid JSON input"), "{error}");
            }
            (7 | 23, other) => panic!("message {i}: {other:?}"),
            (_, outcome) => assert_eq!(price_of(outcome), json!(f64::from(prices[i])), "message {i}"),
        }
    }
    let answered = answered.lock().unwrap().clone();
    assert_eq!(&answered[..3], [401, 404, 503], "{answered:?}");
    assert!(answered.contains(&413) && answered.contains(&400), "{answered:?}");
    assert_eq!(
        metrics.backend_retries.get(),
        3,
        "the three faults that are not the data's are retried"
    );
}
