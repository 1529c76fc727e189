//! Prometheus metrics: every name here, every recording through [`Metrics`]; the HTTP counters are
//! recorded by one layer (`http/observe.rs`), the gRPC ones by one wrapper (`grpc/mod.rs`). Each
//! server has its own registry, so tests running in parallel count on their own.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub const REQUESTS: &str = "xgserve_http_requests_total";
pub const REQUEST_SECONDS: &str = "xgserve_http_request_duration_seconds";
pub const IN_FLIGHT: &str = "xgserve_http_requests_in_flight";
pub const GRPC_REQUESTS: &str = "xgserve_grpc_requests_total";
pub const GRPC_SECONDS: &str = "xgserve_grpc_request_duration_seconds";
pub const ROWS: &str = "xgserve_rows_predicted_total";
pub const PREDICT_SECONDS: &str = "xgserve_predict_duration_seconds";
pub const UNKNOWN_CATEGORIES: &str = "xgserve_unknown_categories_total";
pub const RELOADS: &str = "xgserve_model_reloads_total";
pub const MODEL_INFO: &str = "xgserve_model_info";

/// Latency buckets from 50 µs (a 2-row prediction) to 5 s.
const BUCKETS: [f64; 14] = [
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5, 1.0, 5.0,
];

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    in_flight: IntGauge,
    grpc_requests: IntCounterVec,
    grpc_seconds: HistogramVec,
    rows: IntCounter,
    predict_seconds: Histogram,
    unknown_categories: IntCounterVec,
    reloads: IntCounterVec,
    model_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(REQUESTS, "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(REQUEST_SECONDS, "HTTP request latency by route").buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(IN_FLIGHT, "HTTP requests being served").expect("valid metric");
        let grpc_requests = IntCounterVec::new(
            Opts::new(GRPC_REQUESTS, "gRPC calls by method and status code"),
            &["method", "code"],
        )
        .expect("valid metric");
        let grpc_seconds = HistogramVec::new(
            HistogramOpts::new(GRPC_SECONDS, "gRPC call latency by method").buckets(BUCKETS.to_vec()),
            &["method"],
        )
        .expect("valid metric");
        let rows = IntCounter::new(ROWS, "Rows scored").expect("valid metric");
        let predict_seconds = Histogram::with_opts(
            HistogramOpts::new(PREDICT_SECONDS, "Preprocessing and prediction time per batch")
                .buckets(BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let unknown_categories = IntCounterVec::new(
            Opts::new(
                UNKNOWN_CATEGORIES,
                "Values not among a column's known categories (nulls included), encoded by the model's fallback",
            ),
            &["column"],
        )
        .expect("valid metric");
        let reloads =
            IntCounterVec::new(Opts::new(RELOADS, "Model reloads by result"), &["result"]).expect("valid metric");
        let model_info = IntGaugeVec::new(
            Opts::new(MODEL_INFO, "The served model (value 1)"),
            &["name", "version", "digest"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(in_flight.clone()),
            Box::new(grpc_requests.clone()),
            Box::new(grpc_seconds.clone()),
            Box::new(rows.clone()),
            Box::new(predict_seconds.clone()),
            Box::new(unknown_categories.clone()),
            Box::new(reloads.clone()),
            Box::new(model_info.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            request_seconds,
            in_flight,
            grpc_requests,
            grpc_seconds,
            rows,
            predict_seconds,
            unknown_categories,
            reloads,
            model_info,
        }
    }

    /// One scored batch: its rows, its time, and per column the values that took the fallback.
    pub fn record_prediction(&self, rows: usize, seconds: f64, unknown: &[(&str, u64)]) {
        self.rows.inc_by(rows as u64);
        self.predict_seconds.observe(seconds);
        for (column, count) in unknown {
            if *count > 0 {
                self.unknown_categories.with_label_values(&[column]).inc_by(*count);
            }
        }
    }

    /// One answered request, by its route template (not its raw path), method and status.
    pub fn record_request(&self, route: &str, method: &str, status: &str, elapsed: Duration) {
        self.request_seconds
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        self.requests.with_label_values(&[route, method, status]).inc();
    }

    /// One answered gRPC call, by its method (`ModelInfer`) and status code name (`OK`).
    pub fn record_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        self.grpc_seconds
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
        self.grpc_requests.with_label_values(&[method, code]).inc();
    }

    pub fn record_reload(&self, ok: bool) {
        self.reloads.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
    }

    /// Marks the served model; the previous one's series is removed.
    pub fn set_model(&self, name: &str, version: &str, digest: &str) {
        self.model_info.reset();
        self.model_info.with_label_values(&[name, version, digest]).set(1);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding does not fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a request in flight until dropped, so a request whose client goes away (and whose future
/// is dropped mid-way) is not counted forever.
pub(crate) struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    pub(crate) fn enter(metrics: &'a Metrics) -> Self {
        metrics.in_flight.inc();
        Self(&metrics.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
