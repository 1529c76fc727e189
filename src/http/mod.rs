//! The HTTP transport: a Bento-compatible `/predict`, the Open Inference Protocol v2, health,
//! metrics, OpenAPI with Swagger UI, and hot reload, over one loaded bundle.
//!
//! `run(listener, state, shutdown)` (in `server`) takes its listener and shutdown signal as
//! arguments, so tests bind port 0, run in parallel and stop cleanly; `router(state)` serves tests
//! in-process.

mod error;
mod handlers;
pub mod metrics;
mod middleware;
mod observe;
pub mod openapi;
mod server;
mod v2;

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;
use tower_http::cors::CorsLayer;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ErrorBody, V2Error};
pub use server::run;

use crate::bundle::{BundleError, Model};
use crate::input::Limits;
use metrics::Metrics;

/// What the hand-written layers (`observe`, `middleware`) return for a request.
type Answer =
    std::pin::Pin<Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>>;

/// How the server treats requests; built from the `serve` flags.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Rows and body size a request may carry.
    pub limits: Limits,
    pub max_body_bytes: usize,
    /// Bearer token for `/predict`, v2 infer and `/admin/reload`; `None` leaves them open.
    pub api_key: Option<String>,
    /// Predictions served at once; more are refused with 503 and `Retry-After` instead of queueing.
    pub max_concurrency: usize,
    /// A prediction taking longer is abandoned with 503.
    pub request_timeout: Duration,
    /// A connection that takes longer to send a request's head (or sits idle between requests) is
    /// closed; `None` waits forever.
    pub header_read_timeout: Option<Duration>,
    /// Origins allowed by CORS; empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// Threads serving connections, each running its own event loop; 0 is one per core.
    pub workers: usize,
    /// Bind worker i to the i-th core of the process's affinity, when there are as many workers as
    /// such cores (`server.rs` says why).
    pub pin_workers: bool,
    /// The scheduler time slice each worker asks for; `None` keeps the kernel's (`server.rs` says why).
    pub worker_slice: Option<Duration>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            limits: Limits { max_rows: 10_000 },
            max_body_bytes: 8 * 1024 * 1024,
            api_key: None,
            max_concurrency: 256,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Some(Duration::from_secs(30)),
            cors_origins: Vec::new(),
            workers: 0,
            pin_workers: true,
            worker_slice: Some(Duration::from_micros(100)),
        }
    }
}

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    /// The served model; a reload swaps it while requests in flight keep the one they started with.
    pub model: ArcSwap<Model>,
    /// Cleared while shutting down, so `/readyz` sends traffic elsewhere before the listener closes;
    /// predictions are still served meanwhile, each on a connection closed after its answer.
    pub ready: AtomicBool,
    pub config: HttpConfig,
    pub metrics: Metrics,
    /// One permit per prediction in flight.
    permits: Arc<Semaphore>,
    /// Reloads run one at a time.
    reload_lock: tokio::sync::Mutex<()>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(model: Model, config: HttpConfig) -> Self {
        let metrics = Metrics::new();
        metrics.set_model(&model.manifest.name, &model.manifest.version, &model.digest);
        Self(Arc::new(Shared {
            model: ArcSwap::from_pointee(model),
            ready: AtomicBool::new(true),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            config,
            metrics,
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The status every readiness route answers: 200 when ready, 503 otherwise.
    pub fn readiness_status(&self) -> StatusCode {
        if self.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// The model to serve this request with.
    pub fn model(&self) -> Arc<Model> {
        self.model.load_full()
    }

    /// Loads the bundle again from its folder, checks it and swaps it in; on any refusal the old
    /// model keeps serving and the error says why.
    pub async fn reload(&self) -> Result<Arc<Model>, BundleError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let dir = self.model().dir.clone();
        let loaded = tokio::task::spawn_blocking(move || Model::load(dir)).await;
        let result = loaded.unwrap_or_else(|e| {
            Err(BundleError {
                path: self.model().dir.clone(),
                reason: format!("the load task failed: {e}"),
            })
        });
        match result {
            Ok(model) => {
                let model = Arc::new(model);
                self.metrics
                    .set_model(&model.manifest.name, &model.manifest.version, &model.digest);
                self.model.store(model.clone());
                self.metrics.record_reload(true);
                tracing::info!(name = %model.manifest.name, version = %model.manifest.version, digest = %model.digest, "reloaded");
                Ok(model)
            }
            Err(error) => {
                self.metrics.record_reload(false);
                tracing::error!(%error, "reload refused; the previous model keeps serving");
                Err(error)
            }
        }
    }
}

/// Every route, with its middleware.
pub fn router(state: AppState) -> Router {
    // Predictions: authorized first, then one permit each and a deadline.
    let predictions = Router::new()
        .route("/predict", post(handlers::predict))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route_layer(middleware::GuardLayer::predictions(state.clone()));
    let admin = Router::new()
        .route("/admin/reload", post(handlers::reload))
        .route_layer(middleware::GuardLayer::admin(state.clone()));
    let open = Router::new()
        .route("/", get(|| async { Redirect::temporary("/docs") }))
        .route("/healthz", get(handlers::healthz))
        .route("/livez", get(handlers::live))
        .route("/readyz", get(handlers::ready))
        .route("/info", get(handlers::info))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        // Bento's path for the same document; both are written from the model serving now, so a
        // reload that changes the model's inputs changes them too.
        .route("/docs.json", get(handlers::openapi))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready));
    let cors = (!state.config.cors_origins.is_empty()).then(|| {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
    });
    Router::new()
        .merge(predictions)
        .merge(admin)
        .merge(open)
        .merge(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/docs.json")))
        .layer(observe::ObserveLayer::new(state.clone()))
        .layer(tower::util::option_layer(cors))
        .with_state(state)
}
