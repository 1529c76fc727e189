//! The inference engine: XGBoost tree ensembles, laid out flat, predicting exactly as libxgboost does.
//!
//! It knows nothing of HTTP, Kafka or preprocessing: a row-major `f32` feature matrix goes in (NaN is a
//! missing value), one prediction per row comes out. Loading (`load`) is separate from evaluation.

#[cfg(feature = "libxgboost")]
pub mod libxgboost;
mod load;
mod objective;
mod quantized;
mod shap;
pub mod ubjson;

pub use load::LoadError;
pub use objective::Objective;
pub use quantized::Traversal;
pub use shap::ContributionError;

use std::sync::OnceLock;

use ndarray::ArrayView2;

/// The traversal every forest loaded from now on takes; the CPU's fastest unless set.
static TRAVERSAL: OnceLock<Traversal> = OnceLock::new();

/// Reads `XGSERVE_TRAVERSAL` once, at start-up, for every model this process loads (and reloads).
pub fn configure_traversal() -> Result<Traversal, String> {
    let wanted = Traversal::from_env()?;
    Ok(*TRAVERSAL.get_or_init(|| wanted))
}

/// Batches smaller than this take the reference walk even where the AVX-512 one is chosen: a
/// block of sixteen lanes mostly empty costs more than walking a few rows one by one.
const MIN_SIMD_ROWS: usize = 8;

/// Rows checked for missing values together: a block without any takes the shorter step.
const BLOCK_ROWS: usize = 64;
/// Trees that a row walks in lockstep: independent walks overlap their memory loads, and eight
/// trees' nodes (about 12 KB) stay in L1 while a block of rows walks them.
const LANES: usize = 8;

/// One tree node in 12 bytes. Children are stored side by side (`right = left + 1`), so a node
/// needs one child index.
///
/// A leaf is a node that leads to itself: its threshold is NaN (every `x < NaN` is false, so the walk
/// goes right), missing values go right too, and `left` is its own index minus one. A walk can then
/// take a tree's full depth in steps without asking whether it has reached a leaf.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The split threshold; NaN for a leaf.
    threshold: f32,
    /// The feature the split reads.
    feature: u32,
    /// Index of the left child in `Forest::nodes`.
    left: u32,
}

impl Node {
    /// Index 0 is never a real node, so every leaf's `left` (its own index - 1) is valid.
    const PLACEHOLDER: Node = Node {
        threshold: f32::NAN,
        feature: 0,
        left: 0,
    };

    fn leaf(index: usize) -> Node {
        Node {
            threshold: f32::NAN,
            feature: 0,
            left: index as u32 - 1,
        }
    }

    fn is_leaf(&self) -> bool {
        self.threshold.is_nan()
    }
}

/// Where a tree starts and how many steps reach any of its leaves.
#[derive(Debug, Clone, Copy)]
struct TreeRef {
    root: u32,
    depth: u32,
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
    /// The value of each leaf, at the leaf's index in `nodes` (0.0 elsewhere).
    leaf_values: Vec<f32>,
    /// Whether a missing value goes left, at each split's index in `nodes`. Kept apart from the nodes
    /// because rows without missing values never read it.
    default_left: Vec<bool>,
    /// Each node's cover (its training rows' hessian sum), at its index in `nodes`; NaN where the
    /// model does not say. Read only to explain predictions.
    covers: Vec<f32>,
    /// Each node's cover-weighted mean leaf, by slot: a tree's share of the bias. `None` when the
    /// model has no covers.
    means: Option<Vec<f64>>,
    /// Each leaf's contributions for every way a row's path can agree with its own, built at load
    /// when the model has covers: what [`Forest::contributions`] reads.
    tables: Option<shap::Tables>,
    /// The same trees as bins and perfect trees, for the AVX-512 walk; `None` when they do not fit
    /// that layout.
    quantized: Option<quantized::Quantized>,
    /// How `predict` walks: the reference walk or the AVX-512 one.
    traversal: Traversal,
    /// The trees in XGBoost's summation order.
    trees: Vec<TreeRef>,
    num_features: usize,
    /// Every row's margin starts here: `base_score` mapped through the objective's link.
    base_margin: f32,
    objective: Objective,
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

    /// How this forest walks its trees: the chosen traversal if the model fits its layout, else
    /// the portable (reference) walk.
    pub fn traversal(&self) -> Traversal {
        match self.quantized {
            Some(_) => self.traversal,
            None => Traversal::Portable,
        }
    }

    /// The same forest walking with `traversal`. Tests take each path with it.
    ///
    /// # Panics
    /// When `traversal` is AVX-512 and this CPU does not have it.
    pub fn with_traversal(mut self, traversal: Traversal) -> Forest {
        assert!(
            traversal != Traversal::Avx512 || Traversal::detect() == Traversal::Avx512,
            "AVX-512 asked for on a CPU without it"
        );
        self.traversal = traversal;
        self
    }

    /// Every split as (feature, threshold): inputs that sit exactly on a threshold test the `<`.
    pub fn splits(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.nodes
            .iter()
            .filter(|n| !n.is_leaf())
            .map(|n| (n.feature as usize, n.threshold))
    }

    /// Predictions for each row of `features`, after the objective's transform.
    pub fn predict(&self, features: ArrayView2<'_, f32>) -> Result<Vec<f32>, WidthError> {
        let mut out = self.predict_margin(features)?;
        for value in &mut out {
            *value = self.objective.transform(*value);
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
        match (self.fast_walk(out.len()), features.t().as_slice()) {
            // Column after column (as `Preprocessor::transform_counting_by_columns` lays them
            // out), the AVX-512 walk reads the features as they are.
            (Some(quantized), Some(columns)) => {
                quantized.margins_avx512(quantized::Layout::Columns(columns), self.base_margin, &mut out)
            }
            // Any other layout is made row after row.
            (fast, _) => {
                let contiguous = features.as_standard_layout();
                let rows = contiguous.as_slice().expect("a standard layout is contiguous");
                match fast {
                    Some(quantized) => {
                        quantized.margins_avx512(quantized::Layout::Rows(rows), self.base_margin, &mut out)
                    }
                    None => self.reference_margins_into(rows, &mut out),
                }
            }
        }
        Ok(out)
    }

    /// The AVX-512 layout, when `rows` rows take that walk.
    fn fast_walk(&self, rows: usize) -> Option<&quantized::Quantized> {
        let fast = self.traversal == Traversal::Avx512 && rows >= MIN_SIMD_ROWS;
        self.quantized.as_ref().filter(|_| fast)
    }

    /// The reference walk: floats compared as the model file has them, eight trees in lockstep.
    fn reference_margins_into(&self, features: &[f32], out: &mut [f32]) {
        let width = self.num_features;
        for (block, sums) in features.chunks(BLOCK_ROWS * width).zip(out.chunks_mut(BLOCK_ROWS)) {
            sums.fill(self.base_margin);
            // Most rows have no missing value and take the shorter step.
            let mut missing = [false; BLOCK_ROWS];
            for (flag, row) in missing.iter_mut().zip(block.chunks_exact(width)) {
                *flag = row.iter().any(|x| x.is_nan());
            }
            // Eight trees at a time (about 12 KB of nodes, so they stay in L1) for every row of the
            // block; each row still adds its leaves in tree order.
            let mut groups = self.trees.chunks_exact(LANES);
            for eight in &mut groups {
                self.group_margins(block, sums, &missing, eight, LANES);
            }
            // The last trees walk together too, padded with copies of the last one whose leaves are
            // not added: a tree walked alone waits on every load.
            let rest = groups.remainder();
            if let Some(last) = rest.last() {
                let padded: [TreeRef; LANES] = std::array::from_fn(|i| *rest.get(i).unwrap_or(last));
                self.group_margins(block, sums, &missing, &padded, rest.len());
            }
        }
    }

    /// Adds to each row's sum the leaves of the first `used` of eight trees walked in lockstep.
    /// Inlined so that `used == LANES` is a constant for full groups and the loop unrolls.
    #[inline(always)]
    fn group_margins(&self, block: &[f32], sums: &mut [f32], missing: &[bool], eight: &[TreeRef], used: usize) {
        let roots: [u32; LANES] = std::array::from_fn(|i| eight[i].root);
        let depth = eight.iter().map(|t| t.depth).max().unwrap_or(0);
        for ((row, sum), &missing) in block.chunks_exact(self.num_features).zip(sums.iter_mut()).zip(missing) {
            let leaves = if missing {
                self.walk::<true, LANES>(roots, depth, row)
            } else {
                self.walk::<false, LANES>(roots, depth, row)
            };
            for index in &leaves[..used] {
                *sum += self.leaf_values[*index as usize];
            }
        }
    }

    /// Walks `N` trees in lockstep for `depth` steps and returns the leaves reached.
    #[inline(always)]
    fn walk<const MISSING: bool, const N: usize>(&self, mut at: [u32; N], depth: u32, row: &[f32]) -> [u32; N] {
        for _ in 0..depth {
            for index in &mut at {
                *index = self.step::<MISSING>(*index, row);
            }
        }
        at
    }

    /// One step down the tree; a leaf steps to itself. `row` starts at the row's first feature.
    /// `MISSING` is false only when the caller has checked that the row holds no NaN.
    #[inline(always)]
    fn step<const MISSING: bool>(&self, index: u32, row: &[f32]) -> u32 {
        debug_assert!((index as usize) < self.nodes.len());
        // SAFETY: `index` is a root or a child written by `load::flatten`, which checks every child
        // index against the tree's size, so it is inside `nodes`.
        let node = unsafe { *self.nodes.get_unchecked(index as usize) };
        debug_assert!((node.feature as usize) < self.num_features && (node.feature as usize) < row.len());
        // SAFETY: `flatten` checks `feature < num_features`, and every row slice passed here starts
        // at a row of a matrix `num_features` wide, so it holds at least `num_features` values.
        let x = unsafe { *row.get_unchecked(node.feature as usize) };
        let mut go_left = x < node.threshold;
        if MISSING {
            // NaN fails `<`, so a missing value goes left only when the node says so.
            go_left |= x.is_nan() && self.default_left[index as usize];
        }
        node.left + u32::from(!go_left)
    }
}
