//! The route handlers of the Bento-compatible API and the operations routes.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::body::{self, request_id};
use super::{ApiError, AppState};
use crate::core::Admission;
use crate::input;
use crate::pyfloat;

/// Scores the cars in the body (Bento's columnar JSON, a list of records, or CSV with a header row)
/// and answers a JSON array of float32 predictions, byte-identical to the Bento service's.
#[utoipa::path(
    post,
    path = "/predict",
    tag = "predict",
    responses(
        (status = 200, description = "One float32 prediction per row, as Python's json.dumps writes them", body = Vec<f32>,
         example = json!([8506.8203125, 17892.189453125])),
        (status = 400, description = "The body is not valid JSON or CSV, or has no rows", body = super::ErrorBody),
        (status = 401, description = "A token is configured and the request does not carry it", body = super::ErrorBody),
        (status = 413, description = "More rows or bytes than the configured limits", body = super::ErrorBody),
        (status = 415, description = "Neither JSON nor CSV", body = super::ErrorBody),
        (status = 422, description = "A column is missing or ragged, or a value has the wrong type or is out of range; names the column and row", body = super::ErrorBody),
        (status = 503, description = "Overloaded or timed out; see Retry-After", body = super::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn predict(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    // The parts, not a `HeaderMap` extractor, which would copy every header.
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
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
    let bytes = body::read(body, state.config.max_body_bytes).await?;
    let model = state.model();
    let inputs = model.preprocessor.inputs();
    let limits = state.config.limits;
    let batch = if is_csv {
        input::decode_csv(&bytes, inputs, limits)?
    } else {
        input::decode_json(&bytes, inputs, limits)?
    };
    let admission = parts.extensions.get::<Admission>().cloned();
    let predictions = state.score(admission, request_id(&parts.headers), model, batch).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        pyfloat::float32_array(&predictions),
    )
        .into_response())
}

/// The process answers (Bento's `/healthz`).
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> StatusCode {
    StatusCode::OK
}

/// The process answers (Bento's `/livez`).
#[utoipa::path(get, path = "/livez", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// Ready once the bundle is loaded and its parity cases replayed; not ready while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready to predict"),
    (status = 503, description = "Shutting down"),
))]
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    state.readiness_status()
}

/// The served model: name, version, digest, inputs, features, training metrics.
#[utoipa::path(get, path = "/info", tag = "operations", responses((status = 200, description = "The served model", body = Object)))]
pub async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let model = state.model();
    let forest = model.forest.info();
    Json(json!({
        "name": model.manifest.name,
        "version": model.manifest.version,
        "digest": model.digest,
        "created": model.manifest.created,
        "task": model.manifest.task,
        "objective": forest.objective,
        "trees": forest.trees,
        "xgboost_version": forest.xgboost_version.map(|v| format!("{}.{}.{}", v[0], v[1], v[2])),
        "inputs": model.preprocessor.inputs(),
        "features": model.manifest.feature_names,
        "metrics": model.manifest.metrics,
        "libraries": model.manifest.libraries,
    }))
}

/// Prometheus metrics in the text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Loads the bundle again, checks it and swaps it in; a refused bundle leaves the old one serving.
/// Enabled only when a token is configured.
#[utoipa::path(post, path = "/admin/reload", tag = "operations", responses(
    (status = 200, description = "The new model serves", body = Object),
    (status = 401, description = "Missing or wrong token", body = super::ErrorBody),
    (status = 403, description = "No token is configured, so reload is disabled", body = super::ErrorBody),
    (status = 422, description = "The bundle was refused (with the file and reason); the old model keeps serving", body = super::ErrorBody),
), security(("bearer" = [])))]
pub async fn reload(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.config.api_key.is_none() {
        return Err(ApiError::ReloadDisabled);
    }
    let model = state.reload().await?;
    Ok(Json(
        json!({"name": model.manifest.name, "version": model.manifest.version, "digest": model.digest}),
    ))
}
