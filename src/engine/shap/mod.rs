//! Exact per-feature contributions: path-dependent TreeSHAP, as XGBoost's `pred_contribs` computes
//! them. Per row, one value per model feature and then the bias (the base margin plus each tree's
//! cover-weighted mean leaf); the bias plus the features' values is the row's margin.
//!
//! Two implementations of the same sums: the reference walk (`walk.rs`, XGBoost's algorithm) and
//! per-leaf tables built at load (`tables.rs`), which serve requests; tests hold the two together.
//! Sums are kept in f64 (XGBoost keeps f32), so both agree with XGBoost to float32 rounding, not
//! bit for bit.

mod tables;
mod walk;

use ndarray::{Array2, ArrayView2};

pub(crate) use tables::{Tables, BUDGET};

use super::{Forest, WidthError};

/// Why a forest cannot attribute its predictions.
#[derive(Debug, thiserror::Error)]
pub enum ContributionError {
    #[error(transparent)]
    Width(#[from] WidthError),
    #[error("the model does not record its nodes' covers (sum_hessian), which contributions are weighted by")]
    NoCovers,
}

/// One feature on the path from the root: how much of the training data's cover flows through its
/// splits (`zero`), whether the row itself does (`one`), and its share of the permutations.
#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    /// The split's feature; -1 for the root's element.
    feature: i64,
    zero: f64,
    one: f64,
    weight: f64,
}

impl Forest {
    /// Whether [`Self::contributions`] can attribute this model's predictions: it records its covers.
    pub fn can_explain(&self) -> bool {
        self.tables.is_some()
    }

    /// Each row's contributions: `num_features + 1` columns, the last the bias.
    pub fn contributions(&self, features: ArrayView2<'_, f32>) -> Result<Array2<f32>, ContributionError> {
        let tables = self.tables.as_ref().ok_or(ContributionError::NoCovers)?;
        let mut masks = vec![0u32; tables.nodes];
        let mut lanes = vec![0.0f64; tables::LANES * (self.num_features + 1)];
        self.each_row(features, |row, phi, slab| {
            tables.add(row, phi, &mut masks, &mut lanes);
            for &tree in &tables.walked {
                self.walk_tree(tree, row, phi, slab);
            }
        })
    }

    /// The same contributions as [`Self::contributions`] by the reference walk alone, every tree
    /// walked path by path as XGBoost walks it: what tests and benches compare the tables with.
    pub fn reference_contributions(&self, features: ArrayView2<'_, f32>) -> Result<Array2<f32>, ContributionError> {
        self.each_row(features, |row, phi, slab| {
            for tree in 0..self.trees.len() {
                self.walk_tree(tree, row, phi, slab);
            }
        })
    }

    /// Runs `trees` for each row with the row's `phi` (features, then the bias) holding the bias,
    /// and a slab for the walk; returns the rows' sums.
    fn each_row(
        &self,
        features: ArrayView2<'_, f32>,
        mut trees: impl FnMut(&[f32], &mut [f64], &mut [PathElement]),
    ) -> Result<Array2<f32>, ContributionError> {
        if features.ncols() != self.num_features {
            return Err(WidthError {
                expected: self.num_features,
                got: features.ncols(),
            }
            .into());
        }
        let means = self.means.as_deref().ok_or(ContributionError::NoCovers)?;
        let bias = self.trees.iter().fold(f64::from(self.base_margin), |bias, tree| {
            bias + means[tree.root as usize]
        });
        let deepest = self.trees.iter().map(|t| t.depth as usize).max().unwrap_or(0) + 2;
        let mut slab = vec![PathElement::default(); deepest * (deepest + 1) / 2 + deepest];
        let width = self.num_features;
        let mut out = Array2::zeros((features.nrows(), width + 1));
        let mut phi = vec![0.0f64; width + 1];
        let rows = features.as_standard_layout();
        let rows = rows.as_slice().expect("a standard layout is contiguous");
        for (row, mut contributions) in rows.chunks_exact(width).zip(out.rows_mut()) {
            phi.fill(0.0);
            phi[width] = bias;
            trees(row, &mut phi, &mut slab);
            for (slot, value) in contributions.iter_mut().zip(&phi) {
                *slot = *value as f32;
            }
        }
        Ok(out)
    }

    /// Every node's cover-weighted mean leaf, by slot, once at load; `None` when the model does not
    /// record its covers.
    pub(super) fn node_means(&self) -> Option<Vec<f64>> {
        let mut means = vec![0.0f64; self.nodes.len()];
        for tree in &self.trees {
            self.fill_means(tree.root as usize, &mut means).ok()?;
        }
        Some(means)
    }

    /// The cover-weighted mean of the leaves under `slot`, for it and every node below.
    fn fill_means(&self, slot: usize, means: &mut [f64]) -> Result<f64, ContributionError> {
        let node = self.nodes[slot];
        let mean = if node.is_leaf() {
            f64::from(self.leaf_values[slot])
        } else {
            let (left, right) = (node.left as usize, node.left as usize + 1);
            let cover = |s: usize| match self.covers[s] {
                c if c.is_nan() => Err(ContributionError::NoCovers),
                c => Ok(f64::from(c)),
            };
            let sum = self.fill_means(left, means)? * cover(left)? + self.fill_means(right, means)? * cover(right)?;
            sum / cover(slot)?
        };
        means[slot] = mean;
        Ok(mean)
    }
}

/// Adds a feature to the path, updating every element's share of the permutations.
fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: i64) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let n = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / n;
        path[i].weight = zero * path[i].weight * (depth - i) as f64 / n;
    }
}

/// Takes the element at `index` off the path: the inverse of [`extend`].
fn unwind(path: &mut [PathElement], depth: usize, index: usize) {
    let (one, zero) = (path[index].one, path[index].zero);
    let n = (depth + 1) as f64;
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let kept = path[i].weight;
            path[i].weight = next * n / ((i + 1) as f64 * one);
            next = kept - path[i].weight * zero * (depth - i) as f64 / n;
        } else {
            path[i].weight = path[i].weight * n / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/// The total permutation weight the path would have without the element at `index`.
fn unwound_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let (one, zero) = (path[index].one, path[index].zero);
    let n = (depth + 1) as f64;
    let mut next = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let share = next * n / ((i + 1) as f64 * one);
            total += share;
            next = path[i].weight - share * zero * ((depth - i) as f64 / n);
        } else if zero != 0.0 {
            total += (path[i].weight / zero) / ((depth - i) as f64 / n);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    /// One split on feature 0 at 0.5 (cover 10: 4 left, 6 right), leaves -1 and 2, base score 0.5.
    const STUMP: &str = r#"{"learner": {"attributes": {}, "feature_names": [], "feature_types": [],
          "gradient_booster": {"name": "gbtree", "model": {"gbtree_model_param": {"num_parallel_tree": "1",
            "num_trees": "1"}, "tree_info": [0], "trees": [{"tree_param": {"num_nodes": "3",
            "num_feature": "2", "size_leaf_vector": "0"}, "left_children": [1, -1, -1],
            "right_children": [2, -1, -1], "split_indices": [0, 0, 0], "split_conditions": [0.5, -1.0, 2.0],
            "default_left": [1, 0, 0], "split_type": [0, 0, 0], "sum_hessian": [10.0, 4.0, 6.0]}]}},
          "learner_model_param": {"base_score": "5E-1", "num_class": "0", "num_feature": "2"},
          "objective": {"name": "reg:squarederror"}}, "version": [1, 6, 2]}"#;

    fn stump() -> Forest {
        Forest::from_slice(STUMP.as_bytes()).unwrap()
    }

    #[test]
    fn a_stump_gives_its_feature_the_leaf_minus_the_mean_and_the_rest_to_the_bias() {
        let forest = stump();
        // The tree's mean: (-1 * 4 + 2 * 6) / 10 = 0.8; the bias is 0.5 + 0.8.
        let rows = Array2::from_shape_vec((3, 2), vec![0.0, 7.0, 1.0, 7.0, f32::NAN, 7.0]).unwrap();
        let phi = forest.contributions(rows.view()).unwrap();
        let margins = forest.predict_margin(rows.view()).unwrap();
        for (row, expected) in [(0, -1.8f32), (1, 1.2), (2, -1.8)] {
            assert!((phi[[row, 0]] - expected).abs() < 1e-6, "row {row}: {}", phi[[row, 0]]);
            assert_eq!(phi[[row, 1]], 0.0, "feature 1 is never split on");
            assert!((phi[[row, 2]] - 1.3).abs() < 1e-6);
            assert!((phi.row(row).sum() - margins[row]).abs() < 1e-6);
        }
    }

    /// The shipped model: 100 trees with features split on twice along a path and pairs of leaves.
    fn shipped() -> Forest {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ford_used_car_price/model.json");
        Forest::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Rows that go both ways at the forest's splits: each feature sits on one of its thresholds
    /// or just below it, or is missing, picked by a fixed pseudo-random sequence.
    fn rows_around_the_splits(forest: &Forest, rows: usize) -> Array2<f32> {
        let mut thresholds = vec![Vec::new(); forest.num_features()];
        for (feature, threshold) in forest.splits() {
            thresholds[feature].push(threshold);
        }
        let mut state = 0x2545_f491_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        Array2::from_shape_fn((rows, forest.num_features()), |(_, feature)| {
            let pick = next();
            match &thresholds[feature] {
                _ if pick % 10 == 0 => f32::NAN,
                t if t.is_empty() => 0.0,
                t => t[pick / 10 % t.len()] - if pick % 3 == 0 { 1e-3 * (1.0 + t[0].abs()) } else { 0.0 },
            }
        })
    }

    #[test]
    fn trees_past_the_budget_are_walked_and_the_sums_stay_the_same() {
        let mut forest = shipped();
        let all = Tables::build(&forest, BUDGET);
        assert!(all.walked.is_empty(), "every tree of the shipped model is tabulated");
        let half = Tables::build(&forest, all.size() / 2);
        assert!(
            !half.walked.is_empty() && half.walked.len() < forest.trees.len(),
            "{} of {} trees walked",
            half.walked.len(),
            forest.trees.len()
        );
        forest.tables = Some(half);
        let rows = rows_around_the_splits(&forest, 500);
        let mixed = forest.contributions(rows.view()).unwrap();
        let walk = forest.reference_contributions(rows.view()).unwrap();
        for (row, (mixed, walk)) in mixed.rows().into_iter().zip(walk.rows()).enumerate() {
            let scale: f32 = walk.iter().map(|v| v.abs()).sum::<f32>().max(1.0);
            for (column, (a, b)) in mixed.iter().zip(walk.iter()).enumerate() {
                // Table values are rounded to float32 once each (tests/contributions.rs says why).
                assert!(
                    (a - b).abs() <= 1e-6 * scale,
                    "row {row}, column {column}: {a} against {b}"
                );
            }
        }
    }

    #[test]
    fn a_model_without_covers_cannot_explain() {
        let model = STUMP.replace(r#", "sum_hessian": [10.0, 4.0, 6.0]"#, "");
        let forest = Forest::from_slice(model.as_bytes()).unwrap();
        let rows = Array2::zeros((1, 2));
        assert!(matches!(
            forest.contributions(rows.view()),
            Err(ContributionError::NoCovers)
        ));
        assert!(forest.predict(rows.view()).is_ok(), "it still predicts");
    }
}
