//! The reference walk: Lundberg, Erion and Lee's path-dependent TreeSHAP (2018, "Consistent
//! individualized feature attribution for tree ensembles", Algorithm 2), laid out as XGBoost lays it
//! out (`RegTree::TreeShap`): one slab of path elements, each level's path a copy of its parent's;
//! one row, one tree, one path at a time, O(leaves · depth²) per row and tree. The tables
//! (`tables.rs`) are checked against it, and trees too deep to tabulate take it.

use super::{extend, unwind, unwound_sum, PathElement};
use crate::engine::Forest;

impl Forest {
    /// Adds to `phi` what the tree at `index` in `self.trees` gives each feature for `row`.
    pub(super) fn walk_tree(&self, index: usize, row: &[f32], phi: &mut [f64], slab: &mut [PathElement]) {
        self.tree_shap(row, phi, self.trees[index].root as usize, slab, 0, 0, 1.0, 1.0, -1);
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
