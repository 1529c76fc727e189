//! The protocol-neutral core under every transport: the served model and its hot reload, admission
//! (the token, one permit per prediction), scoring with its metrics, the model's tensor metadata,
//! and the errors. `http/` and `grpc/` only turn their wire formats into these types and back; this
//! module imports neither, and neither borrows from the other.

mod error;
pub mod metrics;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use error::ApiError;

use crate::bundle::Model;
use crate::explain::Explanation;
use crate::input::{self, Limits, V2Output};
use crate::preprocess::Batch;
use metrics::Metrics;

/// Batches above this many rows are scored on the blocking pool, so they never stall other requests.
const INLINE_ROWS: usize = 256;
/// The same for explanations, which cost each row far more than a prediction.
const INLINE_EXPLAINED_ROWS: usize = 16;

/// The output tensors' names in the inference protocols.
pub use crate::input::{V2_CONTRIBUTIONS as CONTRIBUTIONS, V2_OUTPUT as OUTPUT};

/// The platform the inference protocols' model metadata names.
pub const PLATFORM: &str = "xgboost";

/// What every transport enforces alike; built from the `serve` flags.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Rows a request may carry.
    pub limits: Limits,
    /// Bytes a request body (or gRPC message) may carry, after any inflation.
    pub max_body_bytes: usize,
    /// Bearer token for predictions and reload; `None` leaves them open.
    pub api_key: Option<String>,
    /// Predictions served at once; more are refused at once (503, UNAVAILABLE) instead of queueing.
    pub max_concurrency: usize,
    /// A request taking longer is abandoned (503, DEADLINE_EXCEEDED); its permit is kept until its
    /// prediction has really stopped.
    pub request_timeout: Duration,
    /// The name to serve the model under instead of its bundle's, after every load and reload.
    pub model_name: Option<String>,
}

/// The served model and what guards it; one per process, shared by every transport.
pub struct Core {
    /// The served model; a reload swaps it while requests in flight keep the one they started with.
    pub model: ArcSwap<Model>,
    /// Cleared while shutting down, so readiness probes send traffic elsewhere before the listeners
    /// close; predictions are still served meanwhile.
    ready: AtomicBool,
    /// Wakes what waits for readiness to drop (gRPC health).
    not_ready: tokio::sync::Notify,
    pub policy: Policy,
    pub metrics: Metrics,
    /// One permit per prediction in flight.
    permits: Arc<Semaphore>,
    /// Reloads run one at a time.
    reload_lock: tokio::sync::Mutex<()>,
}

/// A prediction's permit. The transport holds one handle until its answer goes out, and the
/// prediction work holds another, so the permit returns only when both have ended: a request
/// abandoned at its deadline, or by its client, keeps its permit while its prediction still runs.
#[derive(Clone)]
pub struct Admission(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// A model input as the inference protocols describe it.
pub struct TensorSpec<'a> {
    pub name: &'a str,
    /// `BYTES` for text, `FP64` for numbers.
    pub datatype: &'static str,
}

/// One FP32 output tensor of an inference-protocol answer, its data row-major.
#[derive(Debug)]
pub struct OutputTensor {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Core {
    pub fn new(mut model: Model, policy: Policy) -> Self {
        rename(&mut model, &policy);
        let metrics = Metrics::new();
        metrics.set_model(&model.manifest.name, &model.manifest.version, &model.digest);
        Self {
            model: ArcSwap::from_pointee(model),
            ready: AtomicBool::new(true),
            not_ready: tokio::sync::Notify::new(),
            permits: Arc::new(Semaphore::new(policy.max_concurrency.max(1))),
            policy,
            metrics,
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Stops being ready, for good: the process is shutting down.
    pub fn stop_ready(&self) {
        self.ready.store(false, Ordering::Release);
        self.not_ready.notify_waiters();
    }

    /// Resolves once the core is not ready.
    pub async fn until_not_ready(&self) {
        loop {
            let notified = self.not_ready.notified();
            if !self.is_ready() {
                return;
            }
            notified.await;
        }
    }

    /// The model to serve this request with.
    pub fn model(&self) -> Arc<Model> {
        self.model.load_full()
    }

    /// The served model, if it is the one named.
    pub fn known(&self, name: &str) -> Result<Arc<Model>, ApiError> {
        let model = self.model();
        if model.manifest.name == name {
            Ok(model)
        } else {
            Err(ApiError::UnknownModel(name.to_owned()))
        }
    }

    /// Checks the bearer token a request carries (`None`: it carries none).
    pub fn authorize(&self, token: Option<&str>) -> Result<(), ApiError> {
        match self.policy.api_key.as_deref() {
            None => Ok(()),
            Some(key) if token.is_some_and(|t| same_secret(t.as_bytes(), key.as_bytes())) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized),
        }
    }

    /// One of `--max-concurrency` permits, or `Overloaded` at once.
    pub fn admit(&self) -> Result<Admission, ApiError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)?;
        Ok(Admission(Arc::new(permit)))
    }

    /// Loads the bundle again from its folder, checks it and swaps it in; on any refusal the old
    /// model keeps serving and the error says why: `Reload` when the bundle is refused, `Internal`
    /// when the load itself failed (its task panicked), which is the server's fault.
    pub async fn reload(&self) -> Result<Arc<Model>, ApiError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let dir = self.model().dir.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            fail::fail_point!("reload");
            Model::load(dir)
        })
        .await;
        let result = match loaded {
            Ok(result) => result,
            Err(e) => {
                self.metrics.record_reload(false);
                tracing::error!(error = %e, "the reload task failed; the previous model keeps serving");
                return Err(ApiError::Internal(format!("the reload task failed: {e}")));
            }
        };
        match result {
            Ok(mut model) => {
                rename(&mut model, &self.policy);
                let model = Arc::new(model);
                self.metrics
                    .set_model(&model.manifest.name, &model.manifest.version, &model.digest);
                self.model.store(model.clone());
                self.metrics.record_reload(true);
                tracing::info!(name = %model.manifest.name, version = %model.manifest.version, digest = %model.digest, "reloaded");
                Ok(model)
            }
            Err(error) => {
                self.metrics.record_reload(false);
                tracing::error!(%error, "reload refused; the previous model keeps serving");
                Err(ApiError::Reload(error))
            }
        }
    }

    /// Scores a batch (inline when small, on the blocking pool when large) and records its metrics.
    ///
    /// The work holds the request's admission until it has really ended, whatever happens to the
    /// request meanwhile. A panic in it, or a task cancelled before it ran, is the server's fault:
    /// `Internal`, whose message names nothing of the cause, which is logged with the request id.
    pub async fn score(
        &self,
        admission: Option<Admission>,
        request_id: &str,
        model: Arc<Model>,
        batch: Batch,
    ) -> Result<Vec<f32>, ApiError> {
        let work = |model: &Model, batch: &Batch, unknown: &mut [u64]| Ok(model.predict_counting(batch, unknown)?);
        self.run(admission, request_id, model, batch, INLINE_ROWS, work).await
    }

    /// Each row's prediction with its contributions per feature and per input column, as
    /// [`Self::score`] runs a prediction; `NotExplainable` when the model cannot attribute.
    pub async fn explain(
        &self,
        admission: Option<Admission>,
        request_id: &str,
        model: Arc<Model>,
        batch: Batch,
    ) -> Result<Explanation, ApiError> {
        let work = |model: &Model, batch: &Batch, unknown: &mut [u64]| Ok(model.explain_counting(batch, unknown)?);
        self.run(admission, request_id, model, batch, INLINE_EXPLAINED_ROWS, work)
            .await
    }

    /// The inference protocols' outputs a request names, in its order (none names `predict`):
    /// `predict`, one value per row, and `contributions`, per row each input column's contribution
    /// then the base value. Explains the rows only when `contributions` is asked for.
    pub async fn infer(
        &self,
        admission: Option<Admission>,
        request_id: &str,
        model: Arc<Model>,
        batch: Batch,
        outputs: &[V2Output],
    ) -> Result<Vec<OutputTensor>, ApiError> {
        let rows = batch.rows();
        let (predictions, contributions) = if outputs.contains(&V2Output::Contributions) {
            let explanation = self.explain(admission, request_id, model, batch).await?;
            (explanation.predictions, Some(explanation.by_column))
        } else {
            (self.score(admission, request_id, model, batch).await?, None)
        };
        let tensor = |output: &V2Output| match output {
            V2Output::Predict => OutputTensor {
                name: OUTPUT,
                shape: vec![rows],
                data: predictions.clone(),
            },
            V2Output::Contributions => {
                let values = contributions.as_ref().expect("explained when asked for");
                OutputTensor {
                    name: CONTRIBUTIONS,
                    shape: vec![rows, values.ncols()],
                    data: values.iter().copied().collect(),
                }
            }
        };
        Ok(match outputs {
            [] => vec![tensor(&V2Output::Predict)],
            named => named.iter().map(tensor).collect(),
        })
    }

    /// Runs `work` on a batch, inline up to `inline_rows` rows and on the blocking pool above,
    /// holding the admission until it ends, and records its metrics.
    async fn run<T: Send + 'static>(
        &self,
        admission: Option<Admission>,
        request_id: &str,
        model: Arc<Model>,
        batch: Batch,
        inline_rows: usize,
        work: fn(&Model, &Batch, &mut [u64]) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let rows = batch.rows();
        let run = move || {
            let _admitted = admission;
            let started = Instant::now();
            let mut unknown = vec![0u64; model.preprocessor.inputs().len()];
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                fail::fail_point!("score");
                work(&model, &batch, &mut unknown)
            }));
            (model, result, unknown, started.elapsed().as_secs_f64())
        };
        let outcome = if rows <= inline_rows {
            Ok(run())
        } else {
            tokio::task::spawn_blocking(run).await
        };
        let fault = |detail: String| {
            tracing::error!(
                request_id,
                rows,
                detail,
                "prediction failed; answered as a server fault"
            );
            ApiError::Internal(detail)
        };
        let (model, result, unknown, seconds) = outcome.map_err(|e| fault(format!("prediction task: {e}")))?;
        let answer = result.map_err(|panic| fault(format!("prediction panicked: {}", panic_text(&*panic))))??;
        let named: Vec<(&str, u64)> = model
            .preprocessor
            .inputs()
            .iter()
            .map(|i| i.name.as_str())
            .zip(unknown)
            .collect();
        self.metrics.record_prediction(rows, seconds, &named);
        Ok(answer)
    }
}

fn rename(model: &mut Model, policy: &Policy) {
    if let Some(name) = &policy.model_name {
        model.manifest.name.clone_from(name);
    }
}

/// The model's inputs as inference-protocol tensors, one per column.
pub fn input_tensors(model: &Model) -> impl Iterator<Item = TensorSpec<'_>> {
    model.preprocessor.inputs().iter().map(|i| TensorSpec {
        name: &i.name,
        datatype: input::v2_datatype(i.kind),
    })
}

/// What a panic said, when it said it as text.
/// The output tensors the inference protocols' model metadata lists, with their shapes: `predict`,
/// one value per row, and `contributions` (per row, each input column then the base value) when the
/// model can explain.
pub fn output_tensors(model: &Model) -> Vec<(&'static str, Vec<i64>)> {
    let mut outputs = vec![(OUTPUT, vec![-1])];
    if model.can_explain() {
        let width = model.preprocessor.inputs().len() as i64 + 1;
        outputs.push((CONTRIBUTIONS, vec![-1, width]));
    }
    outputs
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

/// Compares in time that does not depend on where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_by_value() {
        assert!(super::same_secret(b"s3cret", b"s3cret"));
        assert!(!super::same_secret(b"s3cret", b"s3creT"));
        assert!(!super::same_secret(b"s3cre", b"s3cret"));
    }
}
