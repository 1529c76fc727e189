//! The Open Inference Protocol v2 (KServe, Triton, MLServer clients): one input tensor per column,
//! BYTES for text and FP32/FP64/INT32/INT64 for numbers, one FP32 output named `predict`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::handlers::{read_body, score};
use super::{ApiError, AppState};
use crate::bundle::Model;
use crate::input::{self, Limits};
use crate::preprocess::{Batch, ColumnKind, InputError, InputErrorKind};
use crate::pyfloat;

/// The output tensor's name.
const OUTPUT: &str = "predict";

#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<Tensor>,
}

#[derive(Deserialize)]
struct Tensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

fn datatype(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Number => "FP64",
        ColumnKind::String => "BYTES",
    }
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
pub async fn server_metadata() -> Json<Value> {
    Json(json!({"name": "xgserve", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready}))).into_response()
}

/// Model metadata: its inputs with their datatypes, and the output.
pub async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match known(&state, &name) {
        Ok(model) => {
            let inputs: Vec<Value> = model
                .preprocessor
                .inputs()
                .iter()
                .map(|i| json!({"name": i.name, "datatype": datatype(i.kind), "shape": [-1]}))
                .collect();
            Json(json!({
                "name": model.manifest.name,
                "versions": [model.manifest.version],
                "platform": "xgboost",
                "inputs": inputs,
                "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1]}],
            }))
            .into_response()
        }
        Err(e) => e.into_v2_response(),
    }
}

pub async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match known(&state, &name) {
        Ok(model) => {
            let ready = state.is_ready();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(json!({"name": model.manifest.name, "ready": ready}))).into_response()
        }
        Err(e) => e.into_v2_response(),
    }
}

/// Scores the rows given as one tensor per column.
pub async fn infer(State(state): State<AppState>, Path(name): Path<String>, body: Body) -> Response {
    match infer_inner(&state, &name, body).await {
        Ok(response) => response,
        Err(e) => e.into_v2_response(),
    }
}

async fn infer_inner(state: &AppState, name: &str, body: Body) -> Result<Response, ApiError> {
    let model = known(state, name)?;
    if !state.is_ready() {
        return Err(ApiError::NotReady);
    }
    let bytes = read_body(body, state.config.max_body_bytes).await?;
    let request: InferRequest = serde_json::from_slice(&bytes)
        .map_err(|e| InputError::new(InputErrorKind::Syntax, format!("not a v2 inference request: {e}")))?;
    let batch = batch(&model, &request.inputs, state.config.limits)?;
    let predictions = score(state, model.clone(), batch).await?;
    let id = request
        .id
        .map(|id| format!(",\"id\":{}", Value::String(id)))
        .unwrap_or_default();
    // Written by hand so the floats come out exactly as `/predict` writes them.
    let body = format!(
        "{{\"model_name\":{},\"model_version\":{}{id},\"outputs\":[{{\"name\":\"{OUTPUT}\",\"datatype\":\"FP32\",\"shape\":[{}],\"data\":{}}}]}}",
        Value::String(model.manifest.name.clone()),
        Value::String(model.manifest.version.clone()),
        predictions.len(),
        pyfloat::float32_array(&predictions)
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The tensors as typed columns: shapes and datatypes are checked here, values, row limit and
/// column lengths by the input decoder every body format shares.
fn batch(model: &Model, tensors: &[Tensor], limits: Limits) -> Result<Batch, InputError> {
    let inputs = model.preprocessor.inputs();
    let mut columns = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let Some(input) = inputs.iter().find(|i| i.name == tensor.name) else {
            continue;
        };
        let mut values = Vec::new();
        flatten(&tensor.data, &mut values);
        let declared: i64 = tensor.shape.iter().product();
        if tensor.shape.iter().any(|&d| d < 0) || declared != values.len() as i64 {
            return Err(InputError::at(
                InputErrorKind::Ragged,
                &input.name,
                None,
                format!("shape {:?} does not match {} values", tensor.shape, values.len()),
            ));
        }
        let numeric = matches!(
            tensor.datatype.as_str(),
            "FP32" | "FP64" | "INT8" | "INT16" | "INT32" | "INT64" | "UINT8" | "UINT16" | "UINT32" | "UINT64"
        );
        let fits = match input.kind {
            ColumnKind::Number => numeric,
            ColumnKind::String => tensor.datatype == "BYTES",
        };
        if !fits {
            let message = format!(
                "datatype {} does not fit; send {}",
                tensor.datatype,
                datatype(input.kind)
            );
            return Err(InputError::at(InputErrorKind::Type, &input.name, None, message));
        }
        columns.push((tensor.name.as_str(), values));
    }
    input::decode_values(inputs, limits, columns)
}

/// Row-major tensor data may come nested; the protocol allows both forms.
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}
