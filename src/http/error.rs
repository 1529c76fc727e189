//! One error type for every HTTP refusal, one status table, one JSON body:
//! `{"error": ..., "error_type": ..., "column": ..., "row": ...}` (column and row where they apply).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::preprocess::{InputError, InputErrorKind};

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
    #[error("the model is not ready")]
    NotReady,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub error_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
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
            ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            ApiError::Input(e) => e.kind.as_str(),
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::BodyRead(_) => "body_read",
            ApiError::NotReady => "not_ready",
        }
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
            error_type: self.error_type(),
            column,
            row,
        };
        (self.status(), axum::Json(body)).into_response()
    }
}
