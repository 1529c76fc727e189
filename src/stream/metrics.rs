//! The bridge's Prometheus metrics, every name here, and the small listener that serves them with
//! `/livez` and `/readyz` on their own port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::preprocess::InputSpec;

pub const CONSUMED: &str = "xgserve_stream_consumed_total";
pub const PRODUCED: &str = "xgserve_stream_produced_total";
pub const TOMBSTONES: &str = "xgserve_stream_tombstones_total";
pub const DEAD_LETTERED: &str = "xgserve_stream_dead_lettered_total";
pub const BATCH_SIZE: &str = "xgserve_stream_batch_size";
pub const PREDICT_SECONDS: &str = "xgserve_stream_predict_duration_seconds";
pub const BATCH_SECONDS: &str = "xgserve_stream_batch_duration_seconds";
pub const LAG: &str = "xgserve_stream_consumer_lag";
pub const SINK_ROWS: &str = "xgserve_stream_pg_rows_total";
pub const BACKEND_RETRIES: &str = "xgserve_stream_backend_retries_total";
pub const UNKNOWN_CATEGORIES: &str = "xgserve_stream_unknown_categories_total";
pub const REBALANCES: &str = "xgserve_stream_partitions_revoked_total";
pub const ASSIGNED: &str = "xgserve_stream_assigned_partitions";

/// The bridge's metrics, in one registry.
pub struct Metrics {
    registry: Registry,
    pub consumed: IntCounter,
    pub produced: IntCounter,
    pub tombstones: IntCounter,
    pub dead_lettered: IntCounterVec,
    pub batch_size: Histogram,
    pub predict_seconds: Histogram,
    /// Consume to commit, per batch.
    pub batch_seconds: Histogram,
    /// Messages in the source partitions not yet consumed (librdkafka's statistics).
    pub lag: IntGauge,
    pub sink_rows: IntCounter,
    pub backend_retries: IntCounter,
    /// Revocations of partitions from this member (each rebalance that takes some away).
    pub rebalances: IntCounter,
    /// Source partitions this member owns now: how the group spread the work.
    pub assigned: IntGauge,
    unknown_categories: IntCounterVec,
    /// Set once the consumer is subscribed; cleared while shutting down.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric")
        };
        let seconds = vec![1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0, 30.0];
        let metrics = Self {
            registry: Registry::new(),
            consumed: counter(CONSUMED, "Messages consumed from the source topics"),
            produced: counter(PRODUCED, "Priced records produced to the sink topic"),
            tombstones: counter(TOMBSTONES, "Tombstones produced for deletes and tombstones"),
            dead_lettered: IntCounterVec::new(
                Opts::new(DEAD_LETTERED, "Messages sent to the dead-letter topic, by error type"),
                &["error_type"],
            )
            .expect("valid metric"),
            batch_size: histogram(
                BATCH_SIZE,
                "Messages per batch",
                vec![1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0],
            ),
            predict_seconds: histogram(PREDICT_SECONDS, "Pricing time per call of the pricer", seconds.clone()),
            batch_seconds: histogram(
                BATCH_SECONDS,
                "Time from a batch's first message to its commit",
                seconds,
            ),
            lag: IntGauge::new(LAG, "Messages in the assigned partitions not yet consumed").expect("valid metric"),
            sink_rows: counter(SINK_ROWS, "Rows upserted or deleted by the Postgres sink"),
            backend_retries: counter(BACKEND_RETRIES, "Failed calls to the remote backend, retried"),
            rebalances: counter(REBALANCES, "Rebalances that took partitions from this member"),
            assigned: IntGauge::new(ASSIGNED, "Source partitions assigned to this member").expect("valid metric"),
            unknown_categories: IntCounterVec::new(
                Opts::new(UNKNOWN_CATEGORIES, "Values not among a column's known categories"),
                &["column"],
            )
            .expect("valid metric"),
            ready: AtomicBool::new(false),
        };
        let r = &metrics.registry;
        for collector in [
            Box::new(metrics.consumed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.produced.clone()),
            Box::new(metrics.tombstones.clone()),
            Box::new(metrics.dead_lettered.clone()),
            Box::new(metrics.batch_size.clone()),
            Box::new(metrics.predict_seconds.clone()),
            Box::new(metrics.batch_seconds.clone()),
            Box::new(metrics.lag.clone()),
            Box::new(metrics.sink_rows.clone()),
            Box::new(metrics.backend_retries.clone()),
            Box::new(metrics.rebalances.clone()),
            Box::new(metrics.assigned.clone()),
            Box::new(metrics.unknown_categories.clone()),
        ] {
            r.register(collector).expect("names are unique");
        }
        metrics
    }

    pub fn count_unknown(&self, inputs: &[InputSpec], unknown: &[u64]) {
        for (input, &n) in inputs.iter().zip(unknown) {
            if n > 0 {
                self.unknown_categories.with_label_values(&[&input.name]).inc_by(n);
            }
        }
    }

    pub fn dead_letter(&self, kind: &str) {
        self.dead_lettered.with_label_values(&[kind]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding does not fail")
    }
}

/// `/livez`, `/readyz` and `/metrics`, for the listener given with `--metrics-port`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .with_state(metrics)
}
