//! The HTTP face of [`ApiError`]: one status table, one JSON body
//! `{"error": ..., "error_type": ..., "column": ..., "row": ...}` (column and row where they apply).
//! The v2 routes answer the same statuses with the protocol's `{"error": ...}` body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::core::ApiError;
use crate::preprocess::InputErrorKind;

/// Seconds a shed or timed-out client is asked to wait before trying again.
const RETRY_AFTER_SECONDS: &str = "1";

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

/// The HTTP status of each error.
pub fn status(error: &ApiError) -> StatusCode {
    match error {
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
        ApiError::NotExplainable(_) => StatusCode::NOT_IMPLEMENTED,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The response with `body`, plus the headers this error calls for.
fn respond(error: &ApiError, body: impl IntoResponse) -> Response {
    let mut response = (status(error), body).into_response();
    let headers = response.headers_mut();
    match error {
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
pub fn v2_response(error: ApiError) -> Response {
    respond(
        &error,
        axum::Json(V2Error {
            error: error.to_string(),
        }),
    )
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
        respond(&self, axum::Json(body))
    }
}
