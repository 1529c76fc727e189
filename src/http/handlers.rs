//! The route handlers of the Bento-compatible API and the operations routes.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use utoipa::ToSchema;

use std::sync::Arc;

use axum::http::request::Parts;

use super::body::{self, request_id};
use super::{ApiError, AppState};
use crate::bundle::Model;
use crate::core::Admission;
use crate::explain::Attribution;
use crate::input;
use crate::preprocess::{Batch, InputError, InputErrorKind};
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
    let (parts, model, batch) = cars(&state, request).await?;
    let admission = parts.extensions.get::<Admission>().cloned();
    let predictions = state.score(admission, request_id(&parts.headers), model, batch).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        pyfloat::float32_array(&predictions),
    )
        .into_response())
}

/// One explained car. Documentation only: `Explanation::to_json` writes it, floats as `/predict`
/// writes them.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ExplainedRow {
    /// What `/predict` answers for the car.
    prediction: f32,
    /// The model's expected margin over its training data: where every car starts.
    base_value: f32,
    /// Each column's (or, with `by=feature`, each feature's) contribution, in the model's order;
    /// with the base value they add up to the prediction (a classifier's margin).
    contributions: std::collections::BTreeMap<String, f32>,
}

/// What the contributions are attributed to.
// Documentation only: `attribution` reads the query.
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum By {
    /// The columns sent (the default).
    Column,
    /// The model's features.
    Feature,
}

/// Prices the cars in the body (the same bodies as `/predict`) and says why: per car the
/// prediction, the base value and each input column's exact contribution (TreeSHAP), which add up
/// to the prediction (for a classifier, to its margin). `?by=feature` attributes to the model's
/// features instead (one-hot categories apart, as XGBoost's `pred_contribs`).
#[utoipa::path(
    post,
    path = "/explain",
    tag = "predict",
    params(("by" = inline(Option<By>), Query, description = "`column` (the default): the columns sent; `feature`: the model's features")),
    responses(
        (status = 200, description = "Per car: the prediction, the base value and each column's contribution, floats as /predict writes them", body = Vec<ExplainedRow>),
        (status = 400, description = "The body is not valid JSON or CSV, has no rows, or `by` is neither `column` nor `feature`", body = super::ErrorBody),
        (status = 401, description = "A token is configured and the request does not carry it", body = super::ErrorBody),
        (status = 413, description = "More rows or bytes than the configured limits", body = super::ErrorBody),
        (status = 415, description = "Neither JSON nor CSV", body = super::ErrorBody),
        (status = 422, description = "A column is missing or ragged, or a value has the wrong type or is out of range; names the column and row", body = super::ErrorBody),
        (status = 501, description = "The served model records no node covers, which contributions are weighted by", body = super::ErrorBody),
        (status = 503, description = "Overloaded or timed out; see Retry-After", body = super::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn explain(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let by = attribution(request.uri().query())?;
    let (parts, model, batch) = cars(&state, request).await?;
    let admission = parts.extensions.get::<Admission>().cloned();
    let explanation = state
        .explain(admission, request_id(&parts.headers), model.clone(), batch)
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        explanation.to_json(&model, by),
    )
        .into_response())
}

/// `?by=` of `/explain`; other query parameters are ignored.
fn attribution(query: Option<&str>) -> Result<Attribution, ApiError> {
    let by = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("by="))
        .next_back();
    match by {
        None => Ok(Attribution::default()),
        Some(text) => Attribution::parse(text).ok_or_else(|| {
            let message = format!("query parameter by={text:?}: expected \"column\" or \"feature\"");
            InputError::new(InputErrorKind::Syntax, message).into()
        }),
    }
}

/// The cars a `/predict` or `/explain` body carries (columnar JSON, records or CSV), decoded for the
/// model serving now.
async fn cars(state: &AppState, request: Request) -> Result<(Parts, Arc<Model>, Batch), ApiError> {
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
    Ok((parts, model, batch))
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

/// The page where a person asks why a price: `ui.html`, whole in the binary so it works offline. Its
/// policy lets it load nothing from elsewhere and talk to this server alone.
pub async fn ui() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        include_str!("ui.html"),
    )
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
