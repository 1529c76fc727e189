//! Why a request was not answered with predictions, with a stable name for each reason. The
//! transports map these to their own status tables: `http/error.rs` to HTTP statuses and JSON
//! bodies, `grpc/mod.rs` to gRPC status codes with the same messages.

use crate::bundle::BundleError;
use crate::explain::ExplainError;
use crate::preprocess::InputError;

/// Why a request was not answered with predictions.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("content type {0:?} is not supported; send application/json or text/csv")]
    UnsupportedMediaType(String),
    #[error("the body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("could not read the body: {0}")]
    BodyRead(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("reload is disabled: start the server with --api-key to enable it")]
    ReloadDisabled,
    #[error("reload refused, the previous model keeps serving: {0}")]
    Reload(#[from] BundleError),
    #[error("model {0:?} is not served here")]
    UnknownModel(String),
    #[error("the server is at its concurrency limit; retry shortly")]
    Overloaded,
    #[error("the prediction took longer than {0} ms")]
    Timeout(u128),
    /// The served model cannot attribute its predictions (it records no node covers): neither the
    /// request's fault nor a failure, a capability the model lacks.
    #[error("the served model cannot explain its predictions: {0}")]
    NotExplainable(String),
    /// Our fault, not the request's: a prediction that panicked or whose task was cancelled. The
    /// detail goes to the log (with the request id), never to the client.
    #[error("the server failed to answer this request; it is logged under the request's x-request-id")]
    Internal(String),
}

impl ApiError {
    /// A stable name for the kind of error, e.g. `missing_column` or `overloaded`.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::Input(e) => e.kind.as_str(),
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::BodyRead(_) => "body_read",
            ApiError::Unauthorized => "unauthorized",
            ApiError::ReloadDisabled => "reload_disabled",
            ApiError::Reload(_) => "reload_refused",
            ApiError::UnknownModel(_) => "unknown_model",
            ApiError::Overloaded => "overloaded",
            ApiError::Timeout(_) => "timeout",
            ApiError::NotExplainable(_) => "not_explainable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<ExplainError> for ApiError {
    fn from(error: ExplainError) -> Self {
        match error {
            ExplainError::Input(e) => ApiError::Input(e),
            ExplainError::Model(reason) => ApiError::NotExplainable(reason),
        }
    }
}
