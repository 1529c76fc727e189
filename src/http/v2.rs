//! The Open Inference Protocol v2 (KServe, Triton, MLServer clients): one input tensor per column,
//! BYTES for text and FP32/FP64/INT32/INT64 for numbers, one FP32 output named `predict`. The
//! request is decoded in `input::v2`.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{self, request_id};
use super::error::v2_response;
use super::{ApiError, AppState, V2Error};
use crate::core::{self, Admission};
use crate::input;
use crate::preprocess::{InputError, InputErrorKind};
use crate::pyfloat;

/// The binary data extension's header: the length of the JSON that starts the body, the tensors'
/// bytes following it; in a request and in an answer with binary outputs.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The server's name and version.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    /// Protocol extensions supported: `binary_tensor_data`.
    extensions: Vec<&'static str>,
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
    /// `-1` for any number of rows: `[-1]` for an input or `predict`, `[-1, columns + 1]` for
    /// `contributions`.
    shape: Vec<i64>,
}

/// The outputs asked for, in their order (by default `predict` alone): `predict`, one float32 per
/// row; `contributions`, per row each input column's contribution then the base value, row-major.
/// Documentation only: `infer` writes this shape by hand.
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

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, description = "The server", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "xgserve",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data"],
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
    match state.known(&name) {
        Ok(model) => {
            let inputs = core::input_tensors(&model)
                .map(|t| TensorMetadata {
                    name: t.name.to_owned(),
                    datatype: t.datatype,
                    shape: vec![-1],
                })
                .collect();
            Json(ModelMetadata {
                name: model.manifest.name.clone(),
                versions: vec![model.manifest.version.clone()],
                platform: core::PLATFORM,
                inputs,
                outputs: core::output_tensors(&model)
                    .into_iter()
                    .map(|(name, shape)| TensorMetadata {
                        name: name.to_owned(),
                        datatype: "FP32",
                        shape,
                    })
                    .collect(),
            })
            .into_response()
        }
        Err(e) => v2_response(e),
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
    match state.known(&name) {
        Ok(model) => {
            let name = model.manifest.name.clone();
            let ready = state.is_ready();
            (state.readiness_status(), Json(ModelReady { name, ready })).into_response()
        }
        Err(e) => v2_response(e),
    }
}

/// Scores the rows given as one tensor per column (the request body's schema is the bundle's).
///
/// With the binary tensor data extension (tritonclient's default), the body is a JSON header of
/// `Inference-Header-Content-Length` bytes, then the bytes of each tensor that declares a
/// `binary_data_size`; `binary_data_output` (or `binary_data` on the output) asks for the answer
/// in the same form. Gzip and deflate bodies (`Content-Encoding`) are inflated within the limit.
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
        Err(e) => v2_response(e),
    }
}

async fn infer_inner(state: &AppState, name: &str, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let model = state.known(name)?;
    let limit = state.config.max_body_bytes;
    let bytes = body::inflate(&parts.headers, body::read(body, limit).await?, limit)?;
    let (json, binary) = match parts.headers.get(HEADER_LENGTH) {
        None => (&bytes[..], None),
        Some(value) => {
            let length = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n <= bytes.len())
                .ok_or_else(|| {
                    let message = format!(
                        "Inference-Header-Content-Length {value:?} is not a length within the body's {} bytes",
                        bytes.len()
                    );
                    InputError::new(InputErrorKind::Syntax, message)
                })?;
            let (json, binary) = bytes.split_at(length);
            (json, Some(binary))
        }
    };
    let request = input::decode_v2(json, binary, model.preprocessor.inputs(), state.config.limits)?;
    let admission = parts.extensions.get::<Admission>().cloned();
    let outputs = state
        .infer(
            admission,
            request_id(&parts.headers),
            model.clone(),
            request.batch,
            &request.outputs,
        )
        .await?;
    let id = request
        .id
        .map(|id| format!(",\"id\":{}", Value::String(id)))
        .unwrap_or_default();
    let mut head = format!(
        "{{\"model_name\":{},\"model_version\":{}{id},\"outputs\":[",
        Value::String(model.manifest.name.clone()),
        Value::String(model.manifest.version.clone()),
    );
    let mut binary = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        if i > 0 {
            head.push(',');
        }
        let shape: Vec<String> = output.shape.iter().map(usize::to_string).collect();
        head.push_str(&format!(
            "{{\"name\":\"{}\",\"datatype\":\"FP32\",\"shape\":[{}],",
            output.name,
            shape.join(",")
        ));
        if request.binary_output {
            head.push_str(&format!(
                "\"parameters\":{{\"binary_data_size\":{}}}}}",
                output.data.len() * 4
            ));
            binary.extend(input::v2_fp32_bytes(&output.data));
        } else {
            // Written by hand (as `InferResponse` declares it) so the floats come out exactly as
            // `/predict` writes them, non-finite ones included, which serde would refuse.
            head.push_str(&format!("\"data\":{}}}", pyfloat::float32_array(&output.data)));
        }
    }
    head.push_str("]}");
    if request.binary_output {
        let json_length = head.len();
        let mut body = head.into_bytes();
        body.extend(binary);
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(json_length)),
        ];
        return Ok((headers, body).into_response());
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], head).into_response())
}
