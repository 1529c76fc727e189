//! The HTTP transport: a Bento-compatible `/predict` and the health routes, over a loaded bundle.
//!
//! `run(listener, state, shutdown)` takes its listener and shutdown signal as arguments, so tests bind
//! port 0, run in parallel and stop cleanly; `router(state)` serves tests in-process.

mod error;
mod handlers;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use error::{ApiError, ErrorBody};

use crate::bundle::Model;
use crate::input::Limits;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub model: Arc<Model>,
    /// Cleared while shutting down, so `/readyz` sends traffic elsewhere before the listener closes.
    pub ready: Arc<AtomicBool>,
    pub limits: Limits,
    /// Largest request body read, in bytes.
    pub max_body_bytes: usize,
}

impl AppState {
    pub fn new(model: Model, limits: Limits, max_body_bytes: usize) -> Self {
        Self {
            model: Arc::new(model),
            ready: Arc::new(AtomicBool::new(true)),
            limits,
            max_body_bytes,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/predict", post(handlers::predict))
        .route("/healthz", get(handlers::live))
        .route("/livez", get(handlers::live))
        .route("/readyz", get(handlers::ready))
        .route("/info", get(handlers::info))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then marks the server not ready and finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready = state.ready.clone();
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            ready.store(false, Ordering::Release);
        })
        .await
}
