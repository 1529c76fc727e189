//! The HTTP transport: a Bento-compatible `/predict`, the Open Inference Protocol v2, health,
//! metrics, OpenAPI with Swagger UI, and hot reload, over one loaded bundle.
//!
//! `run(listener, state, shutdown)` (in `server`) takes its listener and shutdown signal as
//! arguments, so tests bind port 0, run in parallel and stop cleanly; `router(state)` serves tests
//! in-process.

mod body;
mod error;
mod handlers;
mod middleware;
mod observe;
pub mod openapi;
mod server;
mod v2;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::CorsLayer;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ErrorBody, V2Error};
pub use server::{run, worker_count};

use crate::bundle::Model;
use crate::core::{Core, Policy};
use crate::input::Limits;

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
    /// The name to serve the model under instead of its bundle's.
    pub model_name: Option<String>,
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

impl HttpConfig {
    /// What the core enforces for every transport.
    pub fn policy(&self) -> Policy {
        Policy {
            limits: self.limits,
            max_body_bytes: self.max_body_bytes,
            api_key: self.api_key.clone(),
            max_concurrency: self.max_concurrency,
            request_timeout: self.request_timeout,
            model_name: self.model_name.clone(),
        }
    }
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
            model_name: None,
            cors_origins: Vec::new(),
            workers: 0,
            pin_workers: true,
            worker_slice: Some(Duration::from_micros(100)),
        }
    }
}

/// What every handler shares: the core and this transport's configuration; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    pub config: Arc<HttpConfig>,
}

impl Deref for AppState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl AppState {
    /// A core of its own, for a server that speaks HTTP alone (and for tests).
    pub fn new(model: Model, config: HttpConfig) -> Self {
        Self::with_core(Arc::new(Core::new(model, config.policy())), config)
    }

    /// HTTP over a core other transports share.
    pub fn with_core(core: Arc<Core>, config: HttpConfig) -> Self {
        Self {
            core,
            config: Arc::new(config),
        }
    }

    /// The status every readiness route answers: 200 when ready, 503 otherwise.
    pub fn readiness_status(&self) -> StatusCode {
        if self.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Every route, with its middleware.
pub fn router(state: AppState) -> Router {
    // Predictions: authorized first, then one permit each and a deadline.
    let predictions = Router::new()
        .route("/predict", post(handlers::predict))
        .route("/explain", post(handlers::explain))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route_layer(middleware::GuardLayer::predictions(state.clone()));
    let admin = Router::new()
        .route("/admin/reload", post(handlers::reload))
        .route_layer(middleware::GuardLayer::admin(state.clone()));
    let open = Router::new()
        .route("/", get(|| async { Redirect::temporary("/docs") }))
        .route("/ui", get(handlers::ui))
        .route("/healthz", get(handlers::healthz))
        .route("/livez", get(handlers::live))
        .route("/readyz", get(handlers::ready))
        .route("/info", get(handlers::info))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(openapi::serve))
        // Bento's path for the same document; both are written from the model serving now, so a
        // reload that changes the model's inputs changes them too.
        .route("/docs.json", get(openapi::serve))
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
