//! The Open Inference Protocol v2 (KServe, Triton, MLServer clients): one input tensor per column,
//! BYTES for text and FP32/FP64/INT32/INT64 for numbers, one FP32 output named `predict`. The
//! request is decoded in `input::v2`.

use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::handlers::{read_body, request_id, score};
use super::middleware::Admission;
use super::{ApiError, AppState, V2Error};
use crate::bundle::Model;
use crate::input;
use crate::pyfloat;

/// The output tensor's name.
const OUTPUT: &str = "predict";

/// The server's name and version.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    /// Protocol extensions supported: none.
    extensions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Live {
    live: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    ready: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ModelReady {
    name: String,
    ready: bool,
}

/// A model's inputs (one tensor per column) and its output.
#[derive(Serialize, ToSchema)]
pub struct ModelMetadata {
    name: String,
    versions: Vec<String>,
    platform: &'static str,
    inputs: Vec<TensorMetadata>,
    outputs: Vec<TensorMetadata>,
}

#[derive(Serialize, ToSchema)]
pub struct TensorMetadata {
    name: String,
    /// `BYTES` for text, a number type for numbers.
    datatype: &'static str,
    /// `[-1]`: any number of rows.
    shape: Vec<i64>,
}

/// The predictions, one per row, as the output tensor `predict`. Documentation only: `infer` writes
/// this shape by hand.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferResponse {
    model_name: String,
    model_version: String,
    /// The request's `id`, when it had one.
    id: Option<String>,
    outputs: Vec<OutputTensor>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OutputTensor {
    name: String,
    datatype: String,
    shape: Vec<usize>,
    /// Written as `/predict` writes its floats: exact float32 decimals.
    data: Vec<f32>,
}

fn known(state: &AppState, name: &str) -> Result<std::sync::Arc<Model>, ApiError> {
    let model = state.model();
    if model.manifest.name == name {
        Ok(model)
    } else {
        Err(ApiError::UnknownModel(name.to_owned()))
    }
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, description = "The server", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "xgserve",
        version: env!("CARGO_PKG_VERSION"),
        extensions: Vec::new(),
    })
}

/// The process answers.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, description = "Alive", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// Ready once the model is loaded and warmed; not ready while shutting down.
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses(
    (status = 200, description = "Ready to predict", body = Ready),
    (status = 503, description = "Shutting down", body = Ready),
))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let ready = state.is_ready();
    (state.readiness_status(), Json(Ready { ready })).into_response()
}

/// Model metadata: its inputs with their datatypes, and the output.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "The model's tensors", body = ModelMetadata),
        (status = 404, description = "No model of that name is served", body = V2Error),
    )
)]
pub async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match known(&state, &name) {
        Ok(model) => {
            let inputs = model
                .preprocessor
                .inputs()
                .iter()
                .map(|i| TensorMetadata {
                    name: i.name.clone(),
                    datatype: input::v2_datatype(i.kind),
                    shape: vec![-1],
                })
                .collect();
            Json(ModelMetadata {
                name: model.manifest.name.clone(),
                versions: vec![model.manifest.version.clone()],
                platform: "xgboost",
                inputs,
                outputs: vec![TensorMetadata {
                    name: OUTPUT.to_owned(),
                    datatype: "FP32",
                    shape: vec![-1],
                }],
            })
            .into_response()
        }
        Err(e) => e.into_v2_response(),
    }
}

/// The model is loaded and warmed.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Ready to predict", body = ModelReady),
        (status = 404, description = "No model of that name is served", body = V2Error),
        (status = 503, description = "Shutting down", body = ModelReady),
    )
)]
pub async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match known(&state, &name) {
        Ok(model) => {
            let name = model.manifest.name.clone();
            let ready = state.is_ready();
            (state.readiness_status(), Json(ModelReady { name, ready })).into_response()
        }
        Err(e) => e.into_v2_response(),
    }
}

/// Scores the rows given as one tensor per column (the request body's schema is the bundle's).
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "One float32 prediction per row, in the output tensor `predict`", body = InferResponse),
        (status = 400, description = "The body is not a v2 inference request, or has no rows", body = V2Error),
        (status = 401, description = "A token is configured and the request does not carry it", body = V2Error),
        (status = 404, description = "No model of that name is served", body = V2Error),
        (status = 413, description = "More rows or bytes than the configured limits", body = V2Error),
        (status = 422, description = "A tensor is missing, has the wrong datatype or shape, or a value is out of range", body = V2Error),
        (status = 503, description = "Overloaded or timed out; see Retry-After", body = V2Error),
    ),
    security((), ("bearer" = []))
)]
pub async fn infer(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Response {
    match infer_inner(&state, &name, request).await {
        Ok(response) => response,
        Err(e) => e.into_v2_response(),
    }
}

async fn infer_inner(state: &AppState, name: &str, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let model = known(state, name)?;
    let bytes = read_body(body, state.config.max_body_bytes).await?;
    let (id, batch) = input::decode_v2(&bytes, model.preprocessor.inputs(), state.config.limits)?;
    let admission = parts.extensions.get::<Admission>().cloned();
    let predictions = score(state, admission, request_id(&parts.headers), model.clone(), batch).await?;
    let id = id
        .map(|id| format!(",\"id\":{}", Value::String(id)))
        .unwrap_or_default();
    // Written by hand (as `InferResponse` declares it) so the floats come out exactly as `/predict`
    // writes them, non-finite ones included, which serde would refuse.
    let body = format!(
        "{{\"model_name\":{},\"model_version\":{}{id},\"outputs\":[{{\"name\":\"{OUTPUT}\",\"datatype\":\"FP32\",\"shape\":[{}],\"data\":{}}}]}}",
        Value::String(model.manifest.name.clone()),
        Value::String(model.manifest.version.clone()),
        predictions.len(),
        pyfloat::float32_array(&predictions)
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
