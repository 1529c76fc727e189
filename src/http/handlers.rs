//! The route handlers.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState};
use crate::input;
use crate::pyfloat;

/// Batches above this many rows are scored on the blocking pool, so they never stall other requests.
const INLINE_ROWS: usize = 256;

/// `POST /predict`: columnar JSON (Bento's format), a list of records, or CSV with a header row.
/// Answers a JSON array of float32 predictions, byte-identical to the Bento service's.
pub async fn predict(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::NotReady);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_csv = match media.as_str() {
        // curl -d sends form-urlencoded unless told otherwise; Bento clients rely on that.
        "application/json" | "application/x-www-form-urlencoded" | "" => false,
        "text/csv" => true,
        _ => return Err(ApiError::UnsupportedMediaType(content_type.to_owned())),
    };
    let bytes = read_body(body, state.max_body_bytes).await?;
    let inputs = state.model.preprocessor.inputs();
    let batch = if is_csv {
        input::decode_csv(&bytes, inputs, state.limits)?
    } else {
        input::decode_json(&bytes, inputs, state.limits)?
    };
    let predictions = if batch.rows() <= INLINE_ROWS {
        state.model.predict(&batch)?
    } else {
        let model = state.model.clone();
        tokio::task::spawn_blocking(move || model.predict(&batch))
            .await
            .map_err(|e| ApiError::BodyRead(format!("prediction task failed: {e}")))??
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        pyfloat::float32_array(&predictions),
    )
        .into_response())
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(e) = source {
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::BodyTooLarge(limit));
                }
                source = e.source();
            }
            Err(ApiError::BodyRead(error.to_string()))
        }
    }
}

/// `GET /healthz`, `/livez`: the process answers.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /readyz`: 200 once the model is loaded and warmed (parity checked), 503 while draining.
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET /info`: which model is served.
pub async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let model = &state.model;
    let forest = model.forest.info();
    Json(json!({
        "name": model.manifest.name,
        "version": model.manifest.version,
        "digest": model.digest,
        "created": model.manifest.created,
        "task": model.manifest.task,
        "objective": forest.objective,
        "trees": forest.trees,
        "inputs": model.preprocessor.inputs(),
        "features": model.manifest.feature_names,
        "metrics": model.manifest.metrics,
        "libraries": model.manifest.libraries,
    }))
}
