//! One error type for every HTTP refusal, one status table, one JSON body:
//! `{"error": ..., "error_type": ..., "column": ..., "row": ...}` (column and row where they apply).
//! The v2 routes answer the same statuses with the protocol's `{"error": ...}` body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::bundle::BundleError;
use crate::preprocess::{InputError, InputErrorKind};

/// Seconds a shed or timed-out client is asked to wait before trying again.
const RETRY_AFTER_SECONDS: &str = "1";

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
    /// Our fault, not the request's: a prediction that panicked or whose task was cancelled. The
    /// detail goes to the log (with the request id), never to the client.
    #[error("the server failed to answer this request; it is logged under the request's x-request-id")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the column and row where they apply.
    pub error: String,
    /// A stable name for the kind of error, e.g. `missing_column` or `overloaded`.
    pub error_type: String,
    /// The column at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The row at fault, counted from 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

/// The error body of the v2 routes, as the Open Inference Protocol has it.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2Error {
    /// What went wrong.
    pub error: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Input(e) => match e.kind {
                InputErrorKind::Syntax | InputErrorKind::Empty => StatusCode::BAD_REQUEST,
                InputErrorKind::TooManyRows => StatusCode::PAYLOAD_TOO_LARGE,
                InputErrorKind::MissingColumn
                | InputErrorKind::Ragged
                | InputErrorKind::Type
                | InputErrorKind::UnknownCategory
                | InputErrorKind::OutOfRange => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ReloadDisabled => StatusCode::FORBIDDEN,
            ApiError::Reload(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnknownModel(_) => StatusCode::NOT_FOUND,
            ApiError::Overloaded | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

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
            ApiError::Internal(_) => "internal",
        }
    }

    /// The response with `body`, plus the headers this error calls for.
    fn respond(&self, body: impl IntoResponse) -> Response {
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Overloaded | ApiError::Timeout(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }

    /// The Open Inference Protocol's error body, `{"error": ...}`, with the same status.
    pub fn into_v2_response(self) -> Response {
        self.respond(axum::Json(V2Error {
            error: self.to_string(),
        }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (column, row) = match &self {
            ApiError::Input(e) => (e.column.clone(), e.row),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: self.to_string(),
            error_type: self.error_type().to_owned(),
            column,
            row,
        };
        self.respond(axum::Json(body))
    }
}
