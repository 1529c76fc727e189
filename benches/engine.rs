//! Preprocess + predict with the shipped bundle for batches of 1, 100 and 10,000 rows (and each stage
//! alone), and libxgboost on the same rows in the same run (with `--features libxgboost`), one thread each; the exact
//! contributions (TreeSHAP) of the same rows against libxgboost's `pred_contribs`; the whole
//! request path of `/predict` (decode, predict, encode), alone and through the router; and the
//! stream bridge's work on a batch of Debezium events, without Kafka.
//!
//!     cargo bench --bench engine --features libxgboost

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

#[path = "../tests/common/seed_events.rs"]
mod seed_events;
use xgserve::bundle::{single_row, Model};
use xgserve::input::{decode_columnar, Limits};
use xgserve::preprocess::{Batch, Column};

const BATCHES: [usize; 3] = [1, 100, 10_000];

fn model() -> Model {
    Model::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ford_used_car_price")).unwrap()
}

/// `rows` cars cycled from the bundle's parity cases that the model scores (not the refused ones).
fn cars(model: &Model, rows: usize) -> Batch {
    let parity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.dir.join("parity.json")).unwrap()).unwrap();
    let body = serde_json::to_vec(&parity["inputs"]).unwrap();
    let all = decode_columnar(&body, model.preprocessor.inputs(), Limits { max_rows: usize::MAX }).unwrap();
    // libxgboost's DMatrix refuses infinite features (a year of 1e308 overflows f32), so keep rows
    // whose features are all finite.
    let finite = |r: usize| {
        let features = model.preprocessor.transform(&single_row(&all, r));
        features.is_ok_and(|f| f.iter().all(|x| !x.is_infinite()))
    };
    let scored: Vec<usize> = (0..all.rows()).filter(|&r| finite(r)).collect();
    let pick = |r: usize| scored[r % scored.len()];
    let columns = all
        .columns()
        .iter()
        .map(|column| match column {
            Column::Number(v) => Column::Number((0..rows).map(|r| v[pick(r)]).collect()),
            Column::Text(v) => Column::Text((0..rows).map(|r| v[pick(r)].clone()).collect()),
        })
        .collect();
    Batch::new(rows, columns)
}

/// The bundle's booster loaded by libxgboost itself.
#[cfg(feature = "libxgboost")]
fn libxgboost(model: &Model) -> xgserve::engine::libxgboost::LibXgboost {
    xgserve::engine::libxgboost::LibXgboost::from_slice(&std::fs::read(model.dir.join("model.json")).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let model = model();
    #[cfg(feature = "libxgboost")]
    let reference = libxgboost(&model);

    let mut group = c.benchmark_group("preprocess+predict");
    for rows in BATCHES {
        let batch = cars(&model, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("xgserve", rows), &batch, |b, batch| {
            b.iter(|| model.predict(black_box(batch)).unwrap())
        });
        #[cfg(feature = "libxgboost")]
        group.bench_with_input(BenchmarkId::new("libxgboost", rows), &batch, |b, batch| {
            b.iter(|| {
                let features = model.preprocessor.transform(black_box(batch)).unwrap();
                reference.predict(features.view()).unwrap()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("preprocess-only");
    for rows in BATCHES {
        let batch = cars(&model, rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("xgserve", rows), &batch, |b, batch| {
            b.iter(|| model.preprocessor.transform(black_box(batch)).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("predict-only");
    for rows in BATCHES {
        let features = model.preprocessor.transform(&cars(&model, rows)).unwrap();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("xgserve", rows), &features, |b, f| {
            b.iter(|| model.forest.predict(black_box(f.view())).unwrap())
        });
        #[cfg(feature = "libxgboost")]
        group.bench_with_input(BenchmarkId::new("libxgboost", rows), &features, |b, f| {
            b.iter(|| reference.predict(black_box(f.view())).unwrap())
        });
    }
    group.finish();
}

/// What `/predict` does with a body: decode the JSON, preprocess, predict, write the answer.
fn bench_request(c: &mut Criterion) {
    let model = model();
    let parity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.dir.join("parity.json")).unwrap()).unwrap();
    let scored: Vec<usize> = (0..parity["predictions"].as_array().unwrap().len())
        .filter(|&i| !parity["predictions"][i].is_null())
        .take(100)
        .collect();
    let body_100: serde_json::Map<String, serde_json::Value> = parity["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, values)| (name.clone(), scored.iter().map(|&i| values[i].clone()).collect()))
        .collect();
    let bodies = [
        ("2 rows", std::fs::read(model.dir.join("example.json")).unwrap()),
        ("100 rows", serde_json::to_vec(&body_100).unwrap()),
    ];
    let mut group = c.benchmark_group("request");
    for (name, body) in &bodies {
        group.bench_with_input(BenchmarkId::new("decode+predict+encode", name), body, |b, body| {
            b.iter(|| {
                let batch =
                    xgserve::input::decode_json(black_box(body), model.preprocessor.inputs(), Limits::default())
                        .unwrap();
                xgserve::pyfloat::float32_array(&model.predict(&batch).unwrap())
            })
        });
    }
    group.finish();
}

/// The same requests through the router and every middleware, in process (no sockets): what the
/// server adds around `/predict`'s work, and the trivial route `/livez` for scale.
fn bench_router(c: &mut Criterion) {
    use tower::ServiceExt;
    let model = model();
    let example = std::fs::read(model.dir.join("example.json")).unwrap();
    let state = xgserve::http::AppState::new(model, xgserve::http::HttpConfig::default());
    let router = xgserve::http::router(state);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("router");
    group.bench_function("GET /livez", |b| {
        b.iter(|| {
            let request = axum::http::Request::get("/livez")
                .body(axum::body::Body::empty())
                .unwrap();
            runtime.block_on(router.clone().oneshot(request)).unwrap()
        })
    });
    for route in ["/predict", "/explain"] {
        group.bench_function(format!("POST {route} 2 rows"), |b| {
            b.iter(|| {
                let request = axum::http::Request::post(route)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(example.clone()))
                    .unwrap();
                let response = runtime.block_on(router.clone().oneshot(request)).unwrap();
                runtime
                    .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// What the stream bridge does with a batch of 1,000 Debezium events (flattened, JSON with schemas,
/// as the seed's connector writes them), without Kafka: decode, price in one engine call, write the
/// priced records. The Kafka side is measured by `benches/stream.rs`.
fn bench_bridge(c: &mut Criterion) {
    use std::sync::Arc;
    use xgserve::stream::debezium::{PriceFormat, Schemas};
    use xgserve::stream::{Bridge, ColumnMap, Message, Pricer};
    let model = model();
    let parity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.dir.join("parity.json")).unwrap()).unwrap();
    let inputs = &parity["inputs"];
    let scored: Vec<usize> = (0..parity["predictions"].as_array().unwrap().len())
        .filter(|&i| !parity["predictions"][i].is_null())
        .collect();
    let schema = seed_events::value_schema();
    let batch: Vec<Message> = (0..1000)
        .map(|id| {
            let r = scored[id % scored.len()];
            let payload = serde_json::json!({"id": id, "model": inputs["model"][r], "year": inputs["year"][r],
                "price": null, "transmission": inputs["transmission"][r], "mileage": inputs["mileage"][r],
                "fuel_type": inputs["fuelType"][r], "tax": inputs["tax"][r], "mpg": inputs["mpg"][r],
                "engine_size": inputs["engineSize"][r], "suggested_price": null});
            Message {
                key: Some(format!("{{\"id\":{id}}}").into_bytes()),
                value: Some(seed_events::message(&schema, &payload).into_bytes()),
                topic: "car_database.public.tbl_car_price".into(),
                partition: 0,
                offset: id as i64,
            }
        })
        .collect();
    let bridge = Bridge {
        pricer: Pricer::local(model),
        columns: ColumnMap::DEFAULT.parse().unwrap(),
        price_field: "suggested_price".into(),
        price_format: PriceFormat::Integer,
        metrics: Arc::new(xgserve::stream::metrics::Metrics::new()),
        schemas: Arc::new(Schemas::new("suggested_price", PriceFormat::Integer)),
        keep_rows: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut group = c.benchmark_group("bridge");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("decode+price+write 1000 events", |b| {
        b.iter(|| runtime.block_on(bridge.handle(black_box(&batch))))
    });
    group.finish();
}

/// TreeSHAP on the features (the engine's tables, its reference walk, and libxgboost's
/// `pred_contribs` with `--features libxgboost`), one thread each; few samples, since the walk and
/// libxgboost take about 0.3 ms a row.
fn bench_contributions(c: &mut Criterion) {
    let model = model();
    #[cfg(feature = "libxgboost")]
    let reference = libxgboost(&model);
    let mut group = c.benchmark_group("contributions");
    group.sample_size(10);
    for rows in BATCHES {
        let features = model.preprocessor.transform(&cars(&model, rows)).unwrap();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("xgserve", rows), &features, |b, f| {
            b.iter(|| model.forest.contributions(black_box(f.view())).unwrap())
        });
        // The reference walk the tables replaced: XGBoost's algorithm, in the engine.
        group.bench_with_input(BenchmarkId::new("xgserve-walk", rows), &features, |b, f| {
            b.iter(|| model.forest.reference_contributions(black_box(f.view())).unwrap())
        });
        #[cfg(feature = "libxgboost")]
        group.bench_with_input(BenchmarkId::new("libxgboost", rows), &features, |b, f| {
            b.iter(|| reference.contributions(black_box(f.view())).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench, bench_contributions, bench_request, bench_router, bench_bridge
}

/// libxgboost predicts with OpenMP, which reads `OMP_NUM_THREADS` when the library loads, before any
/// code here runs; so the bench runs itself again with the variable set, and the comparison is one
/// thread against one thread.
fn main() {
    if std::env::var("OMP_NUM_THREADS").as_deref() != Ok("1") {
        let status = std::process::Command::new(std::env::current_exe().expect("the bench's own path"))
            .args(std::env::args_os().skip(1))
            .env("OMP_NUM_THREADS", "1")
            .status()
            .expect("the bench runs again");
        std::process::exit(status.code().unwrap_or(1));
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
