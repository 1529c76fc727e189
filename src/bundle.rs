//! A model bundle on disk: checked, loaded and proved against its own parity cases.
//!
//! Loading refuses, with the file's path and the reason, a missing file, a digest that does not match
//! `bundle.json`, a model the engine does not support, a spec whose width differs from the booster's,
//! and a bundle whose engine output differs from the Python predictions in `parity.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Forest;
use crate::explain::{ExplainError, Explanation};
use crate::input::{self, Limits};
use crate::preprocess::{Batch, InputError, Preprocessor, Spec};

/// `bundle.json`: what the bundle is and how to check it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    pub created: String,
    /// "regression" or "classification" (the probability of class 1).
    pub task: String,
    /// Versions of the libraries that trained and exported the model.
    #[serde(default)]
    pub libraries: BTreeMap<String, String>,
    /// Training metrics as the training script reported them.
    #[serde(default)]
    pub metrics: serde_json::Value,
    pub feature_names: Vec<String>,
    /// File name → SHA-256 (hex) of every file the bundle holds.
    pub files: BTreeMap<String, String>,
}

/// `parity.json`: synthetic inputs with the Python pipeline's predictions.
#[derive(Debug, Deserialize)]
struct Parity {
    inputs: serde_json::Value,
    /// `None` where the Python pipeline refused the row.
    predictions: Vec<Option<f32>>,
    #[serde(default)]
    refused: BTreeMap<String, String>,
}

/// A bundle that could not be loaded: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct BundleError {
    pub path: PathBuf,
    pub reason: String,
}

/// The model files a bundle may hold, in order of preference.
const MODEL_FILES: [&str; 2] = ["model.json", "model.ubj"];

/// A loaded, checked bundle ready to predict.
#[derive(Debug)]
pub struct Model {
    pub manifest: Manifest,
    pub dir: PathBuf,
    /// SHA-256 of `bundle.json`, which pins every other file: one value names the whole bundle.
    pub digest: String,
    /// Bytes on disk of all the bundle's files.
    pub size: u64,
    pub preprocessor: Preprocessor,
    pub forest: Forest,
    /// Parity cases checked at load (rows predicted, rows refused as Python refused them).
    pub parity: (usize, usize),
    /// A request body for documentation: the bundle's `example.json`, or its first parity rows.
    pub example: serde_json::Value,
}

impl Model {
    /// Loads and checks the bundle in `dir`, including its parity cases.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let (mut model, parity_bytes) = Self::load_files(dir.as_ref())?;
        let parity_path = model.dir.join("parity.json");
        model.parity = model
            .check_parity(&parity_bytes)
            .map_err(|reason| error(&parity_path, reason))?;
        Ok(model)
    }

    /// Loads the bundle with every check but parity: only to look at the features of a bundle whose
    /// parity check fails.
    pub fn load_without_parity(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        Ok(Self::load_files(dir.as_ref())?.0)
    }

    fn load_files(dir: &Path) -> Result<(Self, Vec<u8>), BundleError> {
        let dir = dir.to_path_buf();
        let manifest_path = dir.join("bundle.json");
        let manifest_bytes = read(&manifest_path)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| error(&manifest_path, format!("not a valid bundle manifest: {e}")))?;
        if manifest.format != 1 {
            return Err(error(
                &manifest_path,
                format!("format {} is not supported (expected 1)", manifest.format),
            ));
        }

        let mut size = manifest_bytes.len() as u64;
        let mut files = BTreeMap::new();
        for (name, expected) in &manifest.files {
            if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                return Err(error(
                    &manifest_path,
                    format!("file name {name:?} must be a plain name"),
                ));
            }
            let path = dir.join(name);
            let bytes = read(&path)?;
            let found = hex(&Sha256::digest(&bytes));
            if !found.eq_ignore_ascii_case(expected) {
                return Err(error(
                    &path,
                    format!("digest mismatch: bundle.json says {expected}, the file has {found}"),
                ));
            }
            size += bytes.len() as u64;
            files.insert(name.clone(), bytes);
        }
        let mut take = |name: &str| {
            files
                .remove(name)
                .ok_or_else(|| error(&dir.join(name), "is not listed in bundle.json".to_owned()))
        };

        let spec_path = dir.join("preprocess.json");
        let spec: Spec = serde_json::from_slice(&take("preprocess.json")?)
            .map_err(|e| error(&spec_path, format!("not a valid preprocessing spec: {e}")))?;
        let preprocessor = Preprocessor::new(spec).map_err(|e| error(&spec_path, e.to_string()))?;

        let model_name = MODEL_FILES
            .iter()
            .find(|n| manifest.files.contains_key(**n))
            .ok_or_else(|| {
                error(
                    &manifest_path,
                    format!("lists no model file (one of {})", MODEL_FILES.join(", ")),
                )
            })?;
        let model_path = dir.join(model_name);
        let forest = Forest::from_slice(&take(model_name)?).map_err(|e| error(&model_path, e.to_string()))?;
        if forest.num_features() != preprocessor.num_features() {
            return Err(error(
                &model_path,
                format!(
                    "the booster expects {} features but preprocess.json writes {}",
                    forest.num_features(),
                    preprocessor.num_features()
                ),
            ));
        }

        let parity_bytes = take("parity.json")?;
        let example = match files.remove("example.json") {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| error(&dir.join("example.json"), format!("not valid JSON: {e}")))?,
            None => first_rows(&parity_bytes, 2),
        };
        let model = Model {
            manifest,
            dir,
            digest: hex(&Sha256::digest(&manifest_bytes)),
            size,
            preprocessor,
            forest,
            parity: (0, 0),
            example,
        };
        Ok((model, parity_bytes))
    }

    /// Scores a batch: preprocessing, then the trees.
    pub fn predict(&self, batch: &Batch) -> Result<Vec<f32>, InputError> {
        self.predict_counting(batch, &mut [])
    }

    /// As [`Self::predict`], counting per input the values that were not a known category.
    pub fn predict_counting(&self, batch: &Batch, unknown: &mut [u64]) -> Result<Vec<f32>, InputError> {
        // Column after column: the AVX-512 walk loads sixteen rows of a feature at once.
        let features = self.preprocessor.transform_counting_by_columns(batch, unknown)?;
        Ok(self.forest.predict(features.view()).expect("load checked the widths"))
    }

    /// Each row's prediction and why: its exact contributions (TreeSHAP) per model feature and per
    /// input column, counting unknown categories as [`Self::predict_counting`] does.
    pub fn explain_counting(&self, batch: &Batch, unknown: &mut [u64]) -> Result<Explanation, ExplainError> {
        let features = self.preprocessor.transform_counting(batch, unknown)?;
        let by_feature = self.forest.contributions(features.view())?;
        let predictions = self.forest.predict(features.view()).expect("load checked the widths");
        let inputs = self.preprocessor.inputs().len();
        Ok(Explanation::new(
            predictions,
            by_feature,
            self.preprocessor.feature_inputs(),
            inputs,
        ))
    }

    /// Whether the model can attribute its predictions (its trees record their covers).
    pub fn can_explain(&self) -> bool {
        self.forest.can_explain()
    }

    /// As [`Self::explain_counting`], without counting.
    pub fn explain(&self, batch: &Batch) -> Result<Explanation, ExplainError> {
        self.explain_counting(batch, &mut [])
    }

    /// Every parity case must predict bit-for-bit what Python predicted, and be refused where
    /// Python refused it. This is also the warm-up prediction.
    fn check_parity(&self, bytes: &[u8]) -> Result<(usize, usize), String> {
        let parity: Parity = serde_json::from_slice(bytes).map_err(|e| format!("not a valid parity file: {e}"))?;
        let inputs = serde_json::to_vec(&parity.inputs).map_err(|e| e.to_string())?;
        let limits = Limits { max_rows: usize::MAX };
        let batch = input::decode_columnar(&inputs, self.preprocessor.inputs(), limits)
            .map_err(|e| format!("inputs do not fit the spec: {e}"))?;
        if batch.rows() != parity.predictions.len() {
            return Err(format!(
                "{} inputs but {} predictions",
                batch.rows(),
                parity.predictions.len()
            ));
        }
        let mut checked = (0, 0);
        for (row, expected) in parity.predictions.iter().enumerate() {
            let one = single_row(&batch, row);
            match (self.predict(&one), expected) {
                (Ok(got), Some(want)) if got[0].to_bits() == want.to_bits() => checked.0 += 1,
                (Ok(got), Some(want)) => {
                    return Err(format!(
                        "row {row}: the engine predicts {} but Python predicted {want}",
                        got[0]
                    ))
                }
                (Err(_), None) => checked.1 += 1,
                (Ok(got), None) => {
                    let why = parity.refused.get(&row.to_string()).map_or("", String::as_str);
                    return Err(format!(
                        "row {row}: the engine predicts {} but Python refused it ({why})",
                        got[0]
                    ));
                }
                (Err(e), Some(want)) => {
                    return Err(format!(
                        "row {row}: the engine refuses it ({e}) but Python predicted {want}"
                    ))
                }
            }
        }
        Ok(checked)
    }
}

/// The first `n` rows of the parity inputs, as a columnar body.
fn first_rows(parity: &[u8], n: usize) -> serde_json::Value {
    let parity: serde_json::Value = serde_json::from_slice(parity).unwrap_or_default();
    let mut body = serde_json::Map::new();
    if let Some(columns) = parity["inputs"].as_object() {
        for (name, values) in columns {
            let head: Vec<serde_json::Value> = values.as_array().into_iter().flatten().take(n).cloned().collect();
            body.insert(name.clone(), head.into());
        }
    }
    body.into()
}

/// Row `row` of `batch` as a batch of its own.
pub fn single_row(batch: &Batch, row: usize) -> Batch {
    use crate::preprocess::Column;
    let columns = batch
        .columns()
        .iter()
        .map(|c| match c {
            Column::Number(v) => Column::Number(vec![v[row]]),
            Column::Text(v) => Column::Text(vec![v[row].clone()]),
        })
        .collect();
    Batch::new(1, columns)
}

fn read(path: &Path) -> Result<Vec<u8>, BundleError> {
    std::fs::read(path).map_err(|e| error(path, format!("cannot read: {e}")))
}

fn error(path: &Path, reason: String) -> BundleError {
    BundleError {
        path: path.to_path_buf(),
        reason,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
