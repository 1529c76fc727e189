//! Exact per-feature contributions: path-dependent TreeSHAP, as XGBoost's `pred_contribs` computes
//! them. Per row, one value per model feature and then the bias (the base margin plus each tree's
//! cover-weighted mean leaf); the bias plus the features' values is the row's margin.
//!
//! The algorithm is Lundberg, Erion and Lee's (2018, "Consistent individualized feature attribution
//! for tree ensembles", Algorithm 2), laid out as XGBoost lays it out (`RegTree::TreeShap`): one
//! slab of path elements, each level's path a copy of its parent's. Sums are kept in f64 (XGBoost
//! keeps f32), so the two agree to float32 rounding, not bit for bit. This is the reference walk:
//! one row, one tree, one path at a time.

use ndarray::{Array2, ArrayView2};

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
        self.means.is_some()
    }

    /// Each row's contributions: `num_features + 1` columns, the last the bias.
    pub fn contributions(&self, features: ArrayView2<'_, f32>) -> Result<Array2<f32>, ContributionError> {
        if features.ncols() != self.num_features {
            return Err(WidthError {
                expected: self.num_features,
                got: features.ncols(),
            }
            .into());
        }
        let means = self.means.as_deref().ok_or(ContributionError::NoCovers)?;
        let deepest = self.trees.iter().map(|t| t.depth as usize).max().unwrap_or(0) + 2;
        let mut slab = vec![PathElement::default(); deepest * (deepest + 1) / 2 + deepest];
        let width = self.num_features;
        let mut out = Array2::zeros((features.nrows(), width + 1));
        let mut phi = vec![0.0f64; width + 1];
        let rows = features.as_standard_layout();
        let rows = rows.as_slice().expect("a standard layout is contiguous");
        for (row, mut contributions) in rows.chunks_exact(width).zip(out.rows_mut()) {
            phi.fill(0.0);
            phi[width] = f64::from(self.base_margin);
            for tree in &self.trees {
                let root = tree.root as usize;
                phi[width] += means[root];
                self.tree_shap(row, &mut phi, root, &mut slab, 0, 0, 1.0, 1.0, -1);
            }
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

    /// Adds to `phi` what the subtree at `slot` gives each feature, for the path that led here:
    /// its parent's path sits at `parent` in the slab, `depth + 1` elements long.
    #[allow(clippy::too_many_arguments)]
    fn tree_shap(
        &self,
        row: &[f32],
        phi: &mut [f64],
        slot: usize,
        slab: &mut [PathElement],
        parent: usize,
        mut depth: usize,
        zero: f64,
        one: f64,
        feature: i64,
    ) {
        let start = parent + depth + 1;
        slab.copy_within(parent..parent + depth + 1, start);
        extend(&mut slab[start..], depth, zero, one, feature);
        let node = self.nodes[slot];
        if node.is_leaf() {
            let value = f64::from(self.leaf_values[slot]);
            let path = &slab[start..];
            for i in 1..=depth {
                let w = unwound_sum(path, depth, i);
                phi[path[i].feature as usize] += w * (path[i].one - path[i].zero) * value;
            }
            return;
        }
        let x = row[node.feature as usize];
        let (left, right) = (node.left as usize, node.left as usize + 1);
        let hot = if x.is_nan() {
            if self.default_left[slot] {
                left
            } else {
                right
            }
        } else if x < node.threshold {
            left
        } else {
            right
        };
        let cold = if hot == left { right } else { left };
        let cover = f64::from(self.covers[slot]);
        let (hot_zero, cold_zero) = (
            f64::from(self.covers[hot]) / cover,
            f64::from(self.covers[cold]) / cover,
        );
        // A feature split on again higher up is taken off the path and put back here.
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        let split = i64::from(node.feature);
        if let Some(k) = (0..=depth).find(|&k| slab[start + k].feature == split) {
            incoming_zero = slab[start + k].zero;
            incoming_one = slab[start + k].one;
            unwind(&mut slab[start..], depth, k);
            depth -= 1;
        }
        self.tree_shap(
            row,
            phi,
            hot,
            slab,
            start,
            depth + 1,
            hot_zero * incoming_zero,
            incoming_one,
            split,
        );
        self.tree_shap(
            row,
            phi,
            cold,
            slab,
            start,
            depth + 1,
            cold_zero * incoming_zero,
            0.0,
            split,
        );
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
