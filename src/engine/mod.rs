//! The inference engine: XGBoost tree ensembles, laid out flat, predicting exactly as libxgboost does.
//!
//! It knows nothing of HTTP, Kafka or preprocessing: a row-major `f32` feature matrix goes in (NaN is a
//! missing value), one prediction per row comes out. Loading (`load`) is separate from evaluation.

mod load;
mod objective;
pub mod ubjson;

pub use load::LoadError;
pub use objective::{Objective, SigmoidStyle};

use ndarray::ArrayView2;

/// Rows scored together, tree by tree: the trees stay in cache while a block of rows walks them.
const BLOCK_ROWS: usize = 64;

/// Marks a leaf in `Node::feature`.
const LEAF: u32 = u32::MAX;
/// Set in `Node::feature` when a missing value takes the left branch.
const DEFAULT_LEFT: u32 = 1 << 31;

/// One tree node in 12 bytes. Children are stored side by side (`right = left + 1`), so a node
/// needs one child index.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The split threshold, or the leaf value for a leaf.
    value: f32,
    /// The feature index, `| DEFAULT_LEFT` when missing goes left; `LEAF` for a leaf.
    feature: u32,
    /// Index of the left child in `Forest::nodes`.
    left: u32,
}

/// What the loaded model says about itself, for logs, `/info` and `models list`.
#[derive(Debug, Clone)]
pub struct ForestInfo {
    /// The objective's name as XGBoost wrote it.
    pub objective: String,
    /// The XGBoost version that saved the model, when it says.
    pub xgboost_version: Option<[u32; 3]>,
    /// Trees used for prediction (fewer than saved when the model kept a `best_iteration`).
    pub trees: usize,
    /// `base_score` as saved (in the objective's output space).
    pub base_score: f32,
}

/// A gradient-boosted tree ensemble ready to predict.
#[derive(Debug, Clone)]
pub struct Forest {
    nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`, in XGBoost's summation order.
    roots: Vec<u32>,
    num_features: usize,
    /// Every row's margin starts here: `base_score` mapped through the objective's link.
    base_margin: f32,
    objective: Objective,
    sigmoid: SigmoidStyle,
    info: ForestInfo,
}

/// The feature matrix does not have the width the model was trained on.
#[derive(Debug, thiserror::Error)]
#[error("the model expects {expected} features per row, got {got}")]
pub struct WidthError {
    pub expected: usize,
    pub got: usize,
}

impl Forest {
    /// Loads a model saved by XGBoost 1.6 to 3.x as JSON or UBJSON (detected from the bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, LoadError> {
        load::forest(bytes)
    }

    pub fn num_features(&self) -> usize {
        self.num_features
    }

    pub fn info(&self) -> &ForestInfo {
        &self.info
    }

    /// Predictions for each row of `features`, after the objective's transform.
    pub fn predict(&self, features: ArrayView2<'_, f32>) -> Result<Vec<f32>, WidthError> {
        let mut out = self.predict_margin(features)?;
        for value in &mut out {
            *value = self.objective.transform(*value, self.sigmoid);
        }
        Ok(out)
    }

    /// Raw margins (summed leaf values plus the base margin) for each row of `features`.
    pub fn predict_margin(&self, features: ArrayView2<'_, f32>) -> Result<Vec<f32>, WidthError> {
        if features.ncols() != self.num_features {
            return Err(WidthError {
                expected: self.num_features,
                got: features.ncols(),
            });
        }
        let mut out = vec![0.0f32; features.nrows()];
        let contiguous = features.as_standard_layout();
        if let Some(rows) = contiguous.as_slice() {
            self.margins_into(rows, &mut out);
        }
        Ok(out)
    }

    /// Margins of a row-major matrix whose width is `num_features`; `out` has one slot per row.
    fn margins_into(&self, features: &[f32], out: &mut [f32]) {
        let width = self.num_features.max(1);
        for (block, sums) in features.chunks(BLOCK_ROWS * width).zip(out.chunks_mut(BLOCK_ROWS)) {
            sums.fill(self.base_margin);
            // XGBoost adds tree after tree onto each row's sum: the same order gives the same floats.
            for &root in &self.roots {
                for (row, sum) in block.chunks_exact(width).zip(sums.iter_mut()) {
                    *sum += self.leaf_value(root, row);
                }
            }
        }
    }

    #[inline]
    fn leaf_value(&self, root: u32, row: &[f32]) -> f32 {
        let mut node = self.nodes[root as usize];
        while node.feature != LEAF {
            let x = row[(node.feature & !DEFAULT_LEFT) as usize];
            let go_left = if x.is_nan() {
                node.feature & DEFAULT_LEFT != 0
            } else {
                x < node.value
            };
            node = self.nodes[node.left as usize + usize::from(!go_left)];
        }
        node.value
    }
}
