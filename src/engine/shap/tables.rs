//! Path-dependent TreeSHAP from per-leaf tables, after Yang's Fast TreeSHAP v2 (2021, "Fast TreeSHAP:
//! Accelerating SHAP Value Computation for Trees"). What a leaf gives each feature on its path
//! depends on the row through one thing only: which of those features the row's own path agrees
//! with (a feature split on twice agrees when it agrees at both). A leaf whose path has `d` distinct
//! features therefore has `2^d` possible answers, and they are computed once, at load, by the same
//! path arithmetic as the reference walk. Two sibling leaves share one table, indexed by their
//! parent's mask and the row's direction there, and their answers are added together at load.
//!
//! Per row, each tree is one pass over its splits (the row's direction at each, and so each node's
//! disagreement mask) and one table read per leaf or pair of leaves: O(leaves · d) additions
//! instead of the walk's O(leaves · d²) path updates. Trees too deep to tabulate within [`BUDGET`]
//! are left to the walk.

use super::{extend, unwound_sum, PathElement};
use crate::engine::Forest;

/// The most distinct features a tabulated leaf's path may have: 2^12 answers of 12 values each.
const MAX_PATH: usize = 12;
/// The most table values a forest keeps (as f32, 32 MB); trees past it are walked instead.
pub(crate) const BUDGET: usize = 8 << 20;
/// Running sums per feature that consecutive table reads alternate between: most paths share a
/// few features, and one running sum per feature would make each read wait for the last addition.
pub(super) const LANES: usize = 4;

/// One split of a tabulated tree, with node indices local to its tree.
#[derive(Debug, Clone, Copy)]
struct Split {
    threshold: f32,
    feature: u16,
    /// This node and its left child (the right one is next to it).
    node: u16,
    left: u16,
    /// The bit for this split's feature in the masks below it; 0 when `pair`.
    shift: u8,
    /// 1 when both children are leaves: the left child's slot then holds the pair's table index,
    /// this node's mask shifted up by one with the row's direction (1 for right) below it.
    pair: u8,
    default_left: bool,
}

/// A leaf, or a pair of sibling leaves, and its answers: `width` values per table index, starting
/// at `values`, one per feature of its path (listed from `features`).
#[derive(Debug, Clone, Copy)]
struct Unit {
    /// The node whose slot holds the table index: the leaf, or the pair's left leaf.
    node: u16,
    width: u8,
    features: u32,
    values: u32,
}

#[derive(Debug, Clone)]
struct Tree {
    /// The tree's splits in breadth-first order (a parent before its children).
    splits: std::ops::Range<usize>,
    /// Its units, by width, so that each width's reads run in a loop of fixed length.
    units: std::ops::Range<usize>,
}

/// Every tabulated tree's splits, units and answers, and which trees are walked instead.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    trees: Vec<Tree>,
    splits: Vec<Split>,
    units: Vec<Unit>,
    features: Vec<u16>,
    /// Per unit and table index `i`, what it gives each feature of its path: the `width` values
    /// from `unit.values + i * width`, in the order of its `features`.
    values: Vec<f32>,
    /// The trees (by index in `Forest::trees`) the walk computes instead.
    pub(super) walked: Vec<usize>,
    /// The most nodes any tabulated tree has: the scratch space one row needs.
    pub(super) nodes: usize,
    /// One more than the largest feature any split reads.
    row_width: usize,
}

/// The distinct features on the path to a node, in the order they first appear, each with the
/// share of the training cover that follows the path through its splits.
type PathFeatures = Vec<(u16, f64)>;

/// What the leaf at the end of `path` with `value` gives each of the path's features, for a row
/// that disagrees with the path where `mask` has a 1 (the reference walk's sums at that leaf).
fn answer(path: &PathFeatures, value: f64, mask: usize) -> [f64; MAX_PATH] {
    let mut elements = [PathElement::default(); MAX_PATH + 1];
    extend(&mut elements, 0, 1.0, 1.0, -1);
    for (k, &(feature, zero)) in path.iter().enumerate() {
        let one = if mask >> k & 1 == 1 { 0.0 } else { 1.0 };
        extend(&mut elements, k + 1, zero, one, i64::from(feature));
    }
    let mut out = [0.0; MAX_PATH];
    for (i, slot) in out.iter_mut().enumerate().take(path.len()) {
        let element = elements[i + 1];
        *slot = unwound_sum(&elements, path.len(), i + 1) * (element.one - element.zero) * value;
    }
    out
}

impl Tables {
    /// Tabulates every tree it can while the tables hold at most `budget` values. Needs covers.
    pub(crate) fn build(forest: &Forest, budget: usize) -> Tables {
        let mut tables = Tables {
            trees: Vec::new(),
            splits: Vec::new(),
            units: Vec::new(),
            features: Vec::new(),
            values: Vec::new(),
            walked: Vec::new(),
            nodes: 0,
            row_width: 0,
        };
        for (index, tree) in forest.trees.iter().enumerate() {
            let mark = (
                tables.splits.len(),
                tables.units.len(),
                tables.features.len(),
                tables.values.len(),
            );
            match tables.tabulate(forest, tree.root as usize, budget) {
                Some(nodes) => {
                    tables.units[mark.1..].sort_by_key(|unit| unit.width);
                    tables.trees.push(Tree {
                        splits: mark.0..tables.splits.len(),
                        units: mark.1..tables.units.len(),
                    });
                    tables.nodes = tables.nodes.max(nodes);
                    let features = tables.splits[mark.0..].iter().map(|s| usize::from(s.feature) + 1);
                    tables.row_width = features.fold(tables.row_width, usize::max);
                }
                None => {
                    tables.splits.truncate(mark.0);
                    tables.units.truncate(mark.1);
                    tables.features.truncate(mark.2);
                    tables.values.truncate(mark.3);
                    tables.walked.push(index);
                }
            }
        }
        tables
    }

    /// How many values the tables hold, against a budget.
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.values.len()
    }

    /// Appends the tree at `root`'s splits, units and answers; returns its node count, or `None`
    /// when it does not fit (the caller takes back what was appended).
    fn tabulate(&mut self, forest: &Forest, root: usize, budget: usize) -> Option<usize> {
        let local = |slot: usize| u16::try_from(slot - root).ok();
        let mut nodes = 1;
        // Breadth-first, as the forest lays the tree out, so a parent's mask is set before its
        // children read it. (slot, the path's distinct features)
        let mut queue = std::collections::VecDeque::from([(root, PathFeatures::new())]);
        while let Some((slot, path)) = queue.pop_front() {
            let n = forest.nodes[slot];
            if n.is_leaf() {
                let value = f64::from(forest.leaf_values[slot]);
                let answers = (0..1 << path.len()).map(|mask| answer(&path, value, mask));
                self.unit(local(slot)?, &path, answers, budget)?;
                continue;
            }
            let feature = u16::try_from(n.feature).ok()?;
            let shift = path.iter().position(|&(f, _)| f == feature).unwrap_or(path.len());
            if shift >= MAX_PATH {
                return None;
            }
            let left = n.left as usize;
            nodes = nodes.max(usize::from(local(left + 1)?) + 1);
            let cover = f64::from(forest.covers[slot]);
            let [below_left, below_right] = [left, left + 1].map(|child| {
                let share = f64::from(forest.covers[child]) / cover;
                let mut below = path.clone();
                match below.get_mut(shift) {
                    Some((_, zero)) => *zero *= share,
                    None => below.push((feature, share)),
                }
                below
            });
            let pair = forest.nodes[left].is_leaf() && forest.nodes[left + 1].is_leaf();
            self.splits.push(Split {
                threshold: n.threshold,
                feature,
                node: local(slot)?,
                left: local(left)?,
                shift: if pair { 0 } else { shift as u8 },
                pair: u8::from(pair),
                default_left: forest.default_left[slot],
            });
            if !pair {
                queue.push_back((left, below_left));
                queue.push_back((left + 1, below_right));
                continue;
            }
            // Index `i`: this node's mask is `i >> 1`, and the row went right when `i & 1` is 1, so
            // the right leaf's path disagrees where the left one's agrees.
            let values = [left, left + 1].map(|leaf| f64::from(forest.leaf_values[leaf]));
            let answers = (0..2 << path.len()).map(|index: usize| {
                let (above, right) = (index >> 1, index & 1);
                let left_answer = answer(&below_left, values[0], above | right << shift);
                let right_answer = answer(&below_right, values[1], above | (right ^ 1) << shift);
                std::array::from_fn(|k| left_answer[k] + right_answer[k])
            });
            self.unit(local(left)?, &below_left, answers, budget)?;
        }
        Some(nodes)
    }

    /// Appends a unit whose table index `node`'s slot holds, with one answer per table index.
    fn unit(
        &mut self,
        node: u16,
        path: &PathFeatures,
        answers: impl ExactSizeIterator<Item = [f64; MAX_PATH]>,
        budget: usize,
    ) -> Option<()> {
        let width = path.len();
        if self.values.len() + answers.len() * width > budget {
            return None;
        }
        if width == 0 {
            // A tree that is one leaf gives its features nothing; its mean is in the bias.
            return Some(());
        }
        self.units.push(Unit {
            node,
            width: width as u8,
            features: u32::try_from(self.features.len()).ok()?,
            values: u32::try_from(self.values.len()).ok()?,
        });
        self.features.extend(path.iter().map(|&(f, _)| f));
        for answer in answers {
            self.values.extend(answer[..width].iter().map(|&v| v as f32));
        }
        Some(())
    }

    /// Adds to `phi` what every tabulated tree gives each feature for `row`. `masks` holds at
    /// least [`Self::nodes`] values; `lanes` is [`LANES`] times `phi`'s length, zeroed.
    pub(super) fn add(&self, row: &[f32], phi: &mut [f64], masks: &mut [u32], lanes: &mut [f64]) {
        let width = phi.len();
        assert!(
            masks.len() >= self.nodes && row.len() >= self.row_width,
            "scratch and row too short"
        );
        let missing = row.iter().any(|x| x.is_nan());
        for tree in &self.trees {
            let splits = &self.splits[tree.splits.clone()];
            if missing {
                set_masks::<true>(splits, row, masks);
            } else {
                set_masks::<false>(splits, row, masks);
            }
            for units in self.units[tree.units.clone()].chunk_by(|a, b| a.width == b.width) {
                match units[0].width {
                    1 => self.read::<1>(units, masks, lanes, width),
                    2 => self.read::<2>(units, masks, lanes, width),
                    3 => self.read::<3>(units, masks, lanes, width),
                    4 => self.read::<4>(units, masks, lanes, width),
                    5 => self.read::<5>(units, masks, lanes, width),
                    6 => self.read::<6>(units, masks, lanes, width),
                    7 => self.read::<7>(units, masks, lanes, width),
                    8 => self.read::<8>(units, masks, lanes, width),
                    _ => self.read_any(units, masks, lanes, width),
                }
            }
        }
        for lane in lanes.chunks_exact_mut(width) {
            for (sum, value) in phi.iter_mut().zip(lane.iter_mut()) {
                *sum += std::mem::take(value);
            }
        }
    }

    /// Adds the answers of units `W` values wide, at the indices `masks` holds, into `lanes`.
    #[inline(always)]
    fn read<const W: usize>(&self, units: &[Unit], masks: &[u32], lanes: &mut [f64], width: usize) {
        for (i, unit) in units.iter().enumerate() {
            let lane = &mut lanes[(i % LANES) * width..][..width];
            let at = unit.values as usize + masks[usize::from(unit.node)] as usize * W;
            let values: &[f32; W] = self.values[at..at + W].try_into().expect("W values");
            let from = unit.features as usize;
            let features: &[u16; W] = self.features[from..from + W].try_into().expect("W features");
            for (&feature, &value) in features.iter().zip(values) {
                lane[usize::from(feature)] += f64::from(value);
            }
        }
    }

    /// [`Self::read`] for the rare widths past eight.
    fn read_any(&self, units: &[Unit], masks: &[u32], lanes: &mut [f64], width: usize) {
        for (i, unit) in units.iter().enumerate() {
            let lane = &mut lanes[(i % LANES) * width..][..width];
            let count = usize::from(unit.width);
            let at = unit.values as usize + masks[usize::from(unit.node)] as usize * count;
            let from = unit.features as usize;
            for (&feature, &value) in self.features[from..from + count]
                .iter()
                .zip(&self.values[at..at + count])
            {
                lane[usize::from(feature)] += f64::from(value);
            }
        }
    }
}

/// Sets each node's mask (each child's table index, for a pair) from the row's direction at each
/// split, the tree's splits given parent first. `MISSING` is false only when the row has no NaN.
/// The caller has checked that `masks` holds the tree's nodes and `row` every feature it reads.
#[inline(always)]
fn set_masks<const MISSING: bool>(splits: &[Split], row: &[f32], masks: &mut [u32]) {
    masks[0] = 0;
    for split in splits {
        debug_assert!(usize::from(split.feature) < row.len() && usize::from(split.left) + 1 < masks.len());
        // SAFETY: the caller checked `row` against every split's feature (`Tables::row_width`) and
        // `masks` against every tree's node count (`Tables::nodes`), which counts each split's node
        // and both children.
        let (x, above) = unsafe {
            (
                *row.get_unchecked(usize::from(split.feature)),
                *masks.get_unchecked(usize::from(split.node)),
            )
        };
        let mut left = x < split.threshold;
        if MISSING {
            // `|`, not `||`: rows go either way, and a branch here would be mispredicted often.
            left |= x.is_nan() & split.default_left;
        }
        let right = u32::from(!left);
        let at = usize::from(split.left);
        // SAFETY: as above.
        unsafe {
            *masks.get_unchecked_mut(at) = (above << split.pair) | (right << split.shift);
            *masks.get_unchecked_mut(at + 1) = above | ((right ^ 1) << split.shift);
        }
    }
}
