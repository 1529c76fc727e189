//! The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` (`inference.proto`) and
//! `grpc.health.v1` for probes, on their own port, over the same core as HTTP: the same token
//! (`authorization: Bearer` metadata), limits, permits, deadline, metrics, hot reload and
//! graceful shutdown. Refusals are status codes carrying the messages HTTP sends, plus the stable
//! `error_type` in the `x-error-type` trailer.
//!
//! `run(listener, core, shutdown)` takes its listener and shutdown signal, as `http::run` does.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::core::{self, ApiError, Core};
use crate::input::{self, V2Data, V2Output, V2Tensor};
use crate::preprocess::InputErrorKind;

/// The messages and service generated from `inference.proto` by build.rs.
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::model_infer_request::InferInputTensor;
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;
use proto::*;

/// Serves gRPC on `listener` until `shutdown` resolves, then finishes the calls in flight. Health
/// turns NOT_SERVING as soon as the core stops being ready, as `/readyz` does.
pub async fn run(
    listener: TcpListener,
    core: Arc<Core>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<GrpcInferenceServiceServer<Inference>>().await;
    let watched = core.clone();
    tokio::spawn(async move {
        watched.until_not_ready().await;
        reporter
            .set_not_serving::<GrpcInferenceServiceServer<Inference>>()
            .await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    });
    let limit = core.policy.max_body_bytes;
    let service = GrpcInferenceServiceServer::new(Inference { core }).max_decoding_message_size(limit);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The inference service over the core.
pub struct Inference {
    core: Arc<Core>,
}

impl Inference {
    /// Runs one call and counts it by method and status code.
    async fn observe<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = call.await.map(Response::new).map_err(status);
        let code = result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
        self.core
            .metrics
            .record_grpc(method, code_name(code), started.elapsed());
        result
    }

    async fn infer(&self, request: Request<ModelInferRequest>) -> Result<ModelInferResponse, ApiError> {
        let core = &self.core;
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        core.authorize(token)?;
        let admission = core.admit()?;
        let deadline = core.policy.request_timeout;
        let request_id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let request = request.into_inner();
        let predict = async {
            let model = core.known(&request.model_name)?;
            let (batch, outputs) = decode(&request, model.preprocessor.inputs(), core.policy.limits)?;
            core.infer(Some(admission), &request_id, model.clone(), batch, &outputs)
                .await
                .map(|outputs| (model, outputs))
        };
        let (model, outputs) = tokio::time::timeout(deadline, predict)
            .await
            .map_err(|_| ApiError::Timeout(deadline.as_millis()))??;
        let tensors = outputs
            .iter()
            .map(|output| InferOutputTensor {
                name: output.name.to_owned(),
                datatype: "FP32".to_owned(),
                shape: output.shape.iter().map(|&n| n as i64).collect(),
                parameters: Default::default(),
                contents: None,
            })
            .collect();
        // As Triton answers, and where tritonclient reads FP32 outputs.
        let raw = outputs
            .iter()
            .map(|output| input::v2_fp32_bytes(&output.data).collect::<Vec<u8>>().into())
            .collect();
        Ok(ModelInferResponse {
            model_name: model.manifest.name.clone(),
            model_version: model.manifest.version.clone(),
            id: request.id,
            parameters: Default::default(),
            outputs: tensors,
            raw_output_contents: raw,
        })
    }
}

/// The request's tensors as the core decodes them (all from `raw_input_contents` when it is given,
/// one entry per input, in order; otherwise from each tensor's typed contents), and the outputs it
/// asks for.
fn decode(
    request: &ModelInferRequest,
    inputs: &[crate::preprocess::InputSpec],
    limits: input::Limits,
) -> Result<(crate::preprocess::Batch, Vec<V2Output>), ApiError> {
    let outputs = request
        .outputs
        .iter()
        .map(|output| input::v2_served_output(&output.name))
        .collect::<Result<Vec<_>, _>>()?;
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        let message = format!(
            "raw_input_contents has {} entries for {} inputs; give one per input or none",
            raw.len(),
            request.inputs.len()
        );
        return Err(crate::preprocess::InputError::new(InputErrorKind::Syntax, message).into());
    }
    let tensors = request.inputs.iter().enumerate().map(|(i, tensor)| V2Tensor {
        name: &tensor.name,
        datatype: &tensor.datatype,
        shape: &tensor.shape,
        data: match raw.get(i) {
            Some(bytes) => V2Data::Binary(bytes),
            None => contents(tensor),
        },
    });
    Ok((input::decode_tensors(tensors, inputs, limits)?, outputs))
}

/// A tensor's typed contents, from the field its datatype names.
fn contents(tensor: &InferInputTensor) -> V2Data<'_> {
    let Some(c) = &tensor.contents else {
        return V2Data::Numbers(Vec::new());
    };
    match tensor.datatype.as_str() {
        "BYTES" => V2Data::Texts(c.bytes_contents.iter().map(|b| &b[..]).collect()),
        "FP64" => V2Data::Numbers(c.fp64_contents.clone()),
        "FP32" => V2Data::Numbers(c.fp32_contents.iter().map(|&x| x as f64).collect()),
        "INT8" | "INT16" | "INT32" => V2Data::Numbers(c.int_contents.iter().map(|&x| x as f64).collect()),
        "INT64" => V2Data::Numbers(c.int64_contents.iter().map(|&x| x as f64).collect()),
        "UINT8" | "UINT16" | "UINT32" => V2Data::Numbers(c.uint_contents.iter().map(|&x| x as f64).collect()),
        "UINT64" => V2Data::Numbers(c.uint64_contents.iter().map(|&x| x as f64).collect()),
        _ => V2Data::Numbers(Vec::new()),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        self.observe("ServerLive", async { Ok(ServerLiveResponse { live: true }) })
            .await
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.core.is_ready();
        self.observe("ServerReady", async move { Ok(ServerReadyResponse { ready }) })
            .await
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let known = self.core.known(&request.get_ref().name).map(|_| ());
        let ready = self.core.is_ready();
        self.observe(
            "ModelReady",
            async move { known.map(|()| ModelReadyResponse { ready }) },
        )
        .await
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.observe("ServerMetadata", async {
            Ok(ServerMetadataResponse {
                name: "xgserve".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                extensions: Vec::new(),
            })
        })
        .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let answer = self.core.known(&request.get_ref().name).map(|model| {
            let tensor = |name: &str, datatype: &str| TensorMetadata {
                name: name.to_owned(),
                datatype: datatype.to_owned(),
                shape: vec![-1],
            };
            ModelMetadataResponse {
                name: model.manifest.name.clone(),
                versions: vec![model.manifest.version.clone()],
                platform: core::PLATFORM.to_owned(),
                inputs: core::input_tensors(&model)
                    .map(|t| tensor(t.name, t.datatype))
                    .collect(),
                outputs: core::output_tensors(&model)
                    .into_iter()
                    .map(|(name, shape)| TensorMetadata {
                        name: name.to_owned(),
                        datatype: "FP32".to_owned(),
                        shape,
                    })
                    .collect(),
            }
        });
        self.observe("ModelMetadata", async move { answer }).await
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        self.observe("ModelInfer", self.infer(request)).await
    }
}

/// The gRPC status of each error, with the message HTTP would send and the error's stable name.
fn status(error: ApiError) -> Status {
    let code = match &error {
        ApiError::Input(e) if e.kind == InputErrorKind::TooManyRows => Code::ResourceExhausted,
        ApiError::Input(_) | ApiError::BodyRead(_) | ApiError::UnsupportedMediaType(_) => Code::InvalidArgument,
        ApiError::BodyTooLarge(_) => Code::ResourceExhausted,
        ApiError::Unauthorized => Code::Unauthenticated,
        ApiError::ReloadDisabled => Code::PermissionDenied,
        ApiError::Reload(_) => Code::FailedPrecondition,
        ApiError::UnknownModel(_) => Code::NotFound,
        ApiError::Overloaded => Code::Unavailable,
        ApiError::Timeout(_) => Code::DeadlineExceeded,
        ApiError::NotExplainable(_) => Code::Unimplemented,
        ApiError::Internal(_) => Code::Internal,
    };
    let mut status = Status::new(code, error.to_string());
    status
        .metadata_mut()
        .insert("x-error-type", MetadataValue::from_static(error.error_type()));
    status
}

/// The status code's name as gRPC spells it, for the metrics' `code` label.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
