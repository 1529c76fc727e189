//! The forest in a second, faster form: every split threshold replaced by its rank among its
//! feature's thresholds, every tree laid out as a perfect binary tree of depth 6, and rows walked
//! sixteen at a time with AVX-512 (`avx512.rs`).
//!
//! Exact by construction. For a feature's sorted distinct thresholds `t_0 < t_1 < …`, a value's
//! bin is the number of thresholds at or below it, and `x < t_k` holds exactly when `bin(x) <= k`.
//! So a walk over bins takes the same branches as the walk over floats, reaches the same leaves,
//! and adds them in the same order with the same float additions.
//!
//! Missing values need no second test: a node whose missing values go left is stored mirrored,
//! reading the feature's bins counted from the top and with its children swapped, so that "missing
//! goes to the second child" holds for every node. A missing value's bin is then larger than any
//! threshold, and one subtraction per node decides (see `MISSING`).
//!
//! The walk over floats (`Forest::reference_margins_into`) stays as the reference and as the path for
//! machines without AVX-512, for models this layout does not fit (a tree deeper than 6), and for
//! batches too small to fill the lanes.

#[cfg(target_arch = "x86_64")]
mod avx512;

use std::cell::RefCell;

use super::Forest;

/// Rows walked together: one 512-bit register of 32-bit lanes.
pub(super) const LANES: usize = 16;
/// Levels of the perfect layout; a deeper tree keeps the model on the reference walk.
const DEPTH: u32 = 6;
/// Nodes of a tree in the layout: positions 1..64 (0 unused), level `d` at `2^d..2^(d+1)`.
const NODES: usize = 1 << DEPTH;
/// A missing value's bin: above every threshold (a feature has at most `MAX_CUTS`). Bins and
/// thresholds stay below `2^15`, so that a node's word and a bin's (both `value << 16 | low`)
/// are below `2^31` and the sign of their difference is the child bit: no compare into a mask
/// register, which LLVM turns back into a vector in three instructions.
const MISSING: u32 = 0x7FFF;
const MAX_CUTS: usize = 0x7FFE;
/// Columns a tree's level may read and still be walked without a gather: its nodes then carry a
/// slot among them in bits 13-15 of their offset (see `Quantized::slots`).
const SLOTS: usize = 8;
/// The levels whose nodes may carry slots: 4 and 5 (the walk picks levels 0-3 by position).
const SLOTTED_LEVELS: [usize; 2] = [4, 5];
/// A slot's place in a node's word: offsets below `1 << SLOT_SHIFT` leave bits 13-15 free.
const SLOT_SHIFT: u32 = 13;
/// The bits of a node's word that are its offset when the forest's nodes may carry slots.
const SLOTTED_OFFSET_MASK: u32 = (1 << SLOT_SHIFT) - 1;
/// Rows binned and walked per pass: their bins (2 × features × 4 bytes a row) stay in L1.
const PASS_ROWS: usize = 16 * LANES;
/// Halvings of a search after the first whose thresholds are permuted from registers: halving `h`
/// can probe `2^h` thresholds, and two registers hold 32.
const PROBED_HALVINGS: usize = 5;

/// What halvings 1 to `PROBED_HALVINGS` of the binary search over `search` (a power of two long)
/// can probe. Halving `h` steps by `half = len >> (h + 1)` from a bin that is a multiple of
/// `2 × half`, so it probes `search[m × 2 × half + half - 1]` for `m` below `2^h`. Slots a
/// halving cannot reach, and the halvings of a short search, hold NaN.
fn probes(search: &[f32]) -> [[f32; 2 * LANES]; PROBED_HALVINGS] {
    let mut probes = [[f32::NAN; 2 * LANES]; PROBED_HALVINGS];
    for (h, probes) in (1..).zip(&mut probes) {
        let half = search.len() >> (h + 1);
        if half == 0 {
            break;
        }
        for (m, probe) in probes.iter_mut().take(1 << h).enumerate() {
            *probe = search[m * 2 * half + half - 1];
        }
    }
    probes
}

/// How the forest is walked: chosen once, at load, from the CPU (or forced with
/// `XGSERVE_TRAVERSAL`, which is how the tests take each path on one machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traversal {
    /// The walk over floats, on any CPU: the reference.
    Portable,
    /// Bins walked sixteen rows at a time with AVX-512F.
    Avx512,
}

impl Traversal {
    /// The fastest path this CPU has.
    pub fn detect() -> Traversal {
        if avx512_available() {
            Traversal::Avx512
        } else {
            Traversal::Portable
        }
    }

    /// `XGSERVE_TRAVERSAL` (`portable` or `avx512`) when set, else [`Traversal::detect`]. Asking for
    /// a path this CPU lacks is an error, not a silent fallback: a test that forces a path must
    /// take it.
    pub fn from_env() -> Result<Traversal, String> {
        Traversal::chosen(std::env::var("XGSERVE_TRAVERSAL").ok().as_deref(), avx512_available())
    }

    /// What `XGSERVE_TRAVERSAL`'s value asks for on a CPU with or without AVX-512F.
    fn chosen(value: Option<&str>, avx512: bool) -> Result<Traversal, String> {
        match value {
            None | Some("") if avx512 => Ok(Traversal::Avx512),
            None | Some("") | Some("portable") => Ok(Traversal::Portable),
            Some("avx512") if avx512 => Ok(Traversal::Avx512),
            Some("avx512") => Err("XGSERVE_TRAVERSAL=avx512, but this CPU has no AVX-512F".into()),
            Some(other) => Err(format!("XGSERVE_TRAVERSAL={other:?}: expected portable or avx512")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Traversal::Portable => "portable",
            Traversal::Avx512 => "avx512",
        }
    }
}

fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The columns that the nodes of one level read, when there are at most `SLOTS`, each node's
/// slot among them written into its word's bits 13-15. A node that always takes its second
/// child (0) reads any column: it keeps slot 0. Offsets are within `SLOTTED_OFFSET_MASK`.
fn slot(level: &mut [u32]) -> Option<[u32; SLOTS]> {
    let mut columns: Vec<u32> = level
        .iter()
        .filter(|&&node| node != 0)
        .map(|node| node & 0xFFFF)
        .collect();
    columns.sort_unstable();
    columns.dedup();
    if columns.len() > SLOTS {
        return None;
    }
    for node in level.iter_mut().filter(|node| **node != 0) {
        let slot = columns
            .binary_search(&(*node & 0xFFFF))
            .expect("a column of this level") as u32;
        *node |= slot << SLOT_SHIFT;
    }
    let mut slots = [columns.first().copied().unwrap_or(0); SLOTS];
    slots[..columns.len()].copy_from_slice(&columns);
    Some(slots)
}

/// The forest as bins and perfect trees.
#[derive(Debug, Clone)]
pub(super) struct Quantized {
    /// Each feature's distinct split thresholds, ascending.
    cuts: Vec<Vec<f32>>,
    /// The same, padded with NaN to a power of two above their count, for a branch-free binary
    /// search (NaN is never `<=` a value, so the padding is never counted).
    search: Vec<Vec<f32>>,
    /// For the first halvings of each feature's search, every threshold they can probe, so that a
    /// permute from registers replaces a gather: `probes[f][h - 1][m]` is what halving `h` (1 to
    /// `PROBED_HALVINGS`) probes for a lane whose bin so far is `m` of that halving's spans.
    probes: Vec<[[f32; 2 * LANES]; PROBED_HALVINGS]>,
    /// Each tree's nodes by position: `threshold << 16 | lane offset`, where the offset
    /// (`column * LANES`) names the bins column the node reads (columns `features..2 × features`
    /// are the mirrored ones), and on levels 4 and 5 bits 13-15 may hold a slot (`slots`). A
    /// node that always takes its second child is 0.
    nodes: Vec<[u32; NODES]>,
    /// Each tree's leaf values by position below the last level (unreachable positions hold 0).
    leaves: Vec<[f32; NODES]>,
    /// For each tree and each of `SLOTTED_LEVELS`, the offsets of the columns its nodes there
    /// read, when there are at most `SLOTS`: each node's word then holds its column's slot in
    /// bits 13-15, and the walk loads the few columns and picks each lane's by those bits, which
    /// costs less than a gather. `None` for a level that reads more columns (the walk gathers).
    slots: Vec<[Option<[u32; SLOTS]>; 2]>,
    /// The bits of a node's word that are its offset: `0x1FFF` when offsets leave room for
    /// slots, `0xFFFF` when they do not (then no tree has slots).
    offset_mask: u32,
    features: usize,
}

impl Quantized {
    /// The layout of `forest`, or `None` when it does not fit: a tree deeper than 6, a feature
    /// with more than 32,766 distinct thresholds, or too many features for a 16-bit offset.
    pub(super) fn build(forest: &Forest) -> Option<Quantized> {
        let features = forest.num_features;
        if forest.trees.iter().any(|t| t.depth > DEPTH) || 2 * features * LANES > 0xFFFF {
            return None;
        }
        let mut cuts = vec![Vec::new(); features];
        for (feature, threshold) in forest.splits() {
            cuts[feature].push(threshold);
        }
        for c in &mut cuts {
            // -0.0 and 0.0 split alike (`x < -0.0` is `x < 0.0`): one cut.
            c.sort_by(f32::total_cmp);
            c.dedup_by(|a, b| a == b);
        }
        if cuts.iter().any(|c| c.len() > MAX_CUTS) {
            return None;
        }
        let search: Vec<Vec<f32>> = cuts
            .iter()
            .map(|c| {
                let mut padded = c.clone();
                padded.resize((c.len() + 1).next_power_of_two(), f32::NAN);
                padded
            })
            .collect();
        let probes = search.iter().map(|s| probes(s)).collect();
        let mut quantized = Quantized {
            cuts,
            search,
            probes,
            nodes: Vec::with_capacity(forest.trees.len()),
            leaves: Vec::with_capacity(forest.trees.len()),
            slots: Vec::with_capacity(forest.trees.len()),
            offset_mask: if 2 * features * LANES <= 1 << SLOT_SHIFT {
                SLOTTED_OFFSET_MASK
            } else {
                0xFFFF
            },
            features,
        };
        for tree in &forest.trees {
            let (mut nodes, mut leaves) = ([0u32; NODES], [0f32; NODES]);
            quantized.place(forest, tree.root as usize, 1, &mut nodes, &mut leaves);
            let slots = if quantized.offset_mask == SLOTTED_OFFSET_MASK {
                SLOTTED_LEVELS.map(|level| slot(&mut nodes[1 << level..2 << level]))
            } else {
                [None, None]
            };
            quantized.nodes.push(nodes);
            quantized.leaves.push(leaves);
            quantized.slots.push(slots);
        }
        Some(quantized)
    }

    /// Lays out the subtree at `slot` of `forest` at `position`.
    fn place(
        &self,
        forest: &Forest,
        slot: usize,
        position: usize,
        nodes: &mut [u32; NODES],
        leaves: &mut [f32; NODES],
    ) {
        if position >= NODES {
            leaves[position - NODES] = forest.leaf_values[slot];
            return;
        }
        let node = forest.nodes[slot];
        if node.is_leaf() {
            // A leaf above the last level: always the second child, down to the last level.
            nodes[position] = 0;
            self.place(forest, slot, 2 * position + 1, nodes, leaves);
            return;
        }
        let feature = node.feature as usize;
        let cuts = &self.cuts[feature];
        let rank = cuts.partition_point(|&c| c < node.threshold);
        let (left, right) = (node.left as usize, node.left as usize + 1);
        // Plain: `x < t_k` is `bin <= k`, so the second child (right) takes `bin >= k + 1`.
        // Mirrored (missing goes left): the bin counted from the top is `K - bin`, and
        // `bin <= k` is `K - bin >= K - k`: the second child is then the left one.
        let (column, threshold, first, second) = if forest.default_left[slot] {
            (self.features + feature, cuts.len() - rank, right, left)
        } else {
            (feature, rank + 1, left, right)
        };
        nodes[position] = ((threshold as u32) << 16) | (column * LANES) as u32;
        self.place(forest, first, 2 * position, nodes, leaves);
        self.place(forest, second, 2 * position + 1, nodes, leaves);
    }

    /// Writes the bins of `rows` (row-major, `features` wide, at most `LANES` rows) into a block:
    /// `2 × features` columns of `LANES` values, each `bin << 16 | 0xFFFF` so that the sign bit of
    /// a node's word minus it is `bin >= threshold` (a node's low bits, its offset, are below
    /// `0xFFFF`). Lanes past the rows repeat the last row.
    /// The definition that `avx512::bin_block` is tested against.
    #[cfg(test)]
    fn bin_block(&self, rows: &[f32], block: &mut [u32]) {
        let width = self.features;
        let count = rows.len() / width;
        for lane in 0..LANES {
            let row = &rows[lane.min(count - 1) * width..][..width];
            for (feature, (&x, cuts)) in row.iter().zip(&self.cuts).enumerate() {
                let (plain, mirrored) = if x.is_nan() {
                    (MISSING, MISSING)
                } else {
                    let bin = cuts.partition_point(|&c| c <= x);
                    (bin as u32, (cuts.len() - bin) as u32)
                };
                block[feature * LANES + lane] = (plain << 16) | 0xFFFF;
                block[(width + feature) * LANES + lane] = (mirrored << 16) | 0xFFFF;
            }
        }
    }

    /// Margins of the rows of `features` into `out` (one slot per row), each starting at
    /// `base_margin`, with AVX-512.
    ///
    /// # Panics
    /// When the CPU has no AVX-512F: callers take this path only after [`Traversal::from_env`]
    /// or [`Traversal::detect`] said it has.
    pub(super) fn margins_avx512(&self, features: Layout<'_>, base_margin: f32, out: &mut [f32]) {
        assert!(avx512_available(), "the AVX-512 traversal on a CPU without it");
        BINS.with_borrow_mut(|bins| self.margins_through(features, base_margin, out, bins));
    }

    /// [`Self::margins_avx512`], binning into `bins`, which it first grows to a pass's blocks or
    /// the batch's, whichever is fewer.
    fn margins_through(&self, features: Layout<'_>, base_margin: f32, out: &mut [f32], bins: &mut Vec<u32>) {
        let width = self.features;
        let block_len = 2 * width * LANES;
        let most = out.len().min(PASS_ROWS).div_ceil(LANES);
        if bins.len() < most * block_len {
            bins.resize(most * block_len, 0);
        }
        let mut sums = [0f32; PASS_ROWS];
        for (pass, out) in out.chunks_mut(PASS_ROWS).enumerate() {
            let blocks = out.len().div_ceil(LANES);
            let sums = &mut sums[..blocks * LANES];
            sums.fill(base_margin);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F is present (`margins_avx512`, the one caller, asserts it); each
            // block is `block_len` long and holds 1 to `LANES` whole rows of the matrix; the walk
            // reads `blocks` blocks written by `bin_block` or `bin_columns`, whose values and the
            // nodes' offsets stay inside a block.
            unsafe {
                for (b, block) in bins.chunks_mut(block_len).take(blocks).enumerate() {
                    let start = pass * PASS_ROWS + b * LANES;
                    let count = (out.len() - b * LANES).min(LANES);
                    match features {
                        Layout::Rows(rows) => {
                            avx512::bin_block(self, &rows[start * width..(start + count) * width], block)
                        }
                        Layout::Columns(columns) => avx512::bin_columns(self, columns, start, count, block),
                    }
                }
                avx512::walk(self, &bins[..blocks * block_len], sums, out.len())
            };
            out.copy_from_slice(&sums[..out.len()]);
        }
    }
}

thread_local! {
    /// Each thread's bins, kept from call to call: binning writes every cell it walks, so a
    /// 100-row call need not allocate and zero its 7 blocks (11 KB for the Ford model) again.
    /// At most a pass's blocks.
    static BINS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// A matrix of `features`-wide rows, as the AVX-512 walk reads it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Layout<'a> {
    /// Row after row.
    Rows(&'a [f32]),
    /// Column after column (Fortran order): each feature's values are contiguous, so sixteen
    /// rows' values are one load, not a gather.
    Columns(&'a [f32]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TreeRef;

    fn shipped() -> Forest {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/ford_used_car_price/model.json");
        Forest::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The AVX-512 binning, from rows and from columns, writes what the scalar definition writes:
    /// for values on, below and above every threshold, signed zeros, infinities and NaN, and for
    /// every block length.
    #[test]
    fn the_simd_bins_are_the_scalar_definitions() {
        if !avx512_available() {
            return; // nothing to compare on this CPU; the portable walk reads no bins
        }
        let forest = shipped();
        let quantized = Quantized::build(&forest).unwrap();
        let width = quantized.features;
        let mut values = vec![-0.0f32, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        for c in quantized.cuts.iter().flatten() {
            values.extend([*c, c.next_down(), c.next_up()]);
        }
        let block_len = 2 * width * LANES;
        let mut checked = 0;
        for (start, count) in (0..values.len()).step_by(7).zip((1..=LANES).cycle()) {
            let rows: Vec<f32> = (0..count * width)
                .map(|i| values[(start + i * 31) % values.len()])
                .collect();
            let (mut scalar, mut simd) = (vec![0u32; block_len], vec![0u32; block_len]);
            quantized.bin_block(&rows, &mut scalar);
            // SAFETY: AVX-512F is present; `rows` holds `count` whole rows, `simd` one block.
            unsafe { avx512::bin_block(&quantized, &rows, &mut simd) };
            assert_eq!(simd, scalar, "{count} rows from value {start}");
            // The same rows column after column, inside a taller matrix (`above` rows before them,
            // two after), binned from there.
            let above = start % 5;
            let height = above + count + 2;
            let mut columns = vec![f32::NAN; width * height];
            for (r, row) in rows.chunks_exact(width).enumerate() {
                for (feature, &x) in row.iter().enumerate() {
                    columns[feature * height + above + r] = x;
                }
            }
            let mut simd = vec![0u32; block_len];
            // SAFETY: AVX-512F is present; rows `above..above + count` are inside the columns.
            unsafe { avx512::bin_columns(&quantized, &columns, above, count, &mut simd) };
            assert_eq!(simd, scalar, "{count} rows from value {start}, by columns");
            checked += 1;
        }
        assert!(checked > 500);
    }

    /// The bins a thread keeps from call to call never stand in for a batch's own: after a pass
    /// and a half of other rows, every shorter batch of new rows scores as the reference walk
    /// scores it.
    #[test]
    fn bins_kept_from_an_earlier_call_do_not_leak_into_the_next() {
        if !avx512_available() {
            return; // the portable walk keeps no bins
        }
        let forest = shipped();
        let quantized = Quantized::build(&forest).unwrap();
        let width = quantized.features;
        let mut values = vec![f32::NAN];
        for c in quantized.cuts.iter().flatten() {
            values.extend([*c, c.next_down(), c.next_up()]);
        }
        let rows = |seed: usize, count: usize| -> Vec<f32> {
            (0..count * width)
                .map(|i| values[(seed + i * 37) % values.len()])
                .collect()
        };
        let margins = |features: &[f32]| {
            let mut out = vec![0f32; features.len() / width];
            quantized.margins_avx512(Layout::Rows(features), forest.base_margin, &mut out);
            out
        };
        let earlier = rows(0, PASS_ROWS * 3 / 2);
        let before = margins(&earlier);
        for (seed, count) in [(11, 100), (23, 17), (5, 16), (41, 3)] {
            let features = rows(seed, count);
            let mut expected = vec![0f32; count];
            forest.reference_margins_into(&features, &mut expected);
            let got = margins(&features);
            assert_eq!(
                got.iter().map(|m| m.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|m| m.to_bits()).collect::<Vec<_>>(),
                "{count} rows"
            );
            assert_ne!(got[..], before[..count], "the new rows are not the earlier ones");
        }
    }

    /// Every batch length from 1 to 3 blocks, so every last block from 1 row to 16 (packed four
    /// trees a register up to 4 rows, two up to 8, then one), scores as the reference walk: rows
    /// on, below and above every threshold, and missing values. The shipped model's 100 trees
    /// fill the packed groups; with 99 the trees left over are walked one at a time.
    #[test]
    fn every_length_of_the_last_block_scores_as_the_reference_walk() {
        if !avx512_available() {
            return; // the portable walk reads no bins
        }
        let mut forest = shipped();
        let values = values_around_cuts(&Quantized::build(&forest).unwrap());
        for trees in [100, 99] {
            forest.trees.truncate(trees);
            let quantized = Quantized::build(&forest).unwrap();
            for seed in [0, 13, 29] {
                let what = format!("{trees} trees, from value {seed}");
                assert_scores_as_the_reference_walk(&forest, &quantized, &values, seed, &what);
            }
        }
    }

    /// Unset picks the CPU's fastest; a path the CPU lacks is refused, not quietly replaced (a
    /// CPU without AVX-512 is simulated: CI's machine has it).
    #[test]
    fn the_variable_picks_a_path_and_refuses_one_the_cpu_lacks() {
        assert_eq!(Traversal::chosen(None, true), Ok(Traversal::Avx512));
        assert_eq!(Traversal::chosen(Some(""), false), Ok(Traversal::Portable));
        assert_eq!(Traversal::chosen(Some("portable"), true), Ok(Traversal::Portable));
        assert_eq!(Traversal::chosen(Some("avx512"), true), Ok(Traversal::Avx512));
        let refused = Traversal::chosen(Some("avx512"), false).unwrap_err();
        assert_eq!(refused, "XGSERVE_TRAVERSAL=avx512, but this CPU has no AVX-512F");
        let unknown = Traversal::chosen(Some("AVX512"), true).unwrap_err();
        assert_eq!(unknown, "XGSERVE_TRAVERSAL=\"AVX512\": expected portable or avx512");
    }

    /// The shipped trees, copied until there are at least `splits` splits, with every split moved
    /// to feature 0 at a threshold from `0, 1, …, distinct - 1` in turn: a feature with exactly
    /// `distinct` cuts.
    fn one_feature_with_cuts(distinct: usize, splits: usize) -> Forest {
        let mut forest = shipped();
        let (nodes, trees) = (forest.nodes.len(), forest.trees.len());
        let copies = splits.div_ceil(forest.splits().count());
        for copy in 1..copies {
            let offset = (copy * nodes) as u32;
            for i in 0..nodes {
                let mut node = forest.nodes[i];
                node.left += offset;
                forest.nodes.push(node);
                forest.leaf_values.push(forest.leaf_values[i]);
                forest.default_left.push(forest.default_left[i]);
                forest.covers.push(forest.covers[i]);
            }
            for t in 0..trees {
                let tree = forest.trees[t];
                forest.trees.push(TreeRef {
                    root: tree.root + offset,
                    ..tree
                });
            }
        }
        for (i, node) in forest.nodes.iter_mut().filter(|n| !n.is_leaf()).enumerate() {
            node.feature = 0;
            node.threshold = (i % distinct) as f32;
        }
        forest
    }

    /// A bin is at most `MISSING` and a threshold at most `MAX_CUTS`, which keeps the walk's child
    /// bit (a subtraction's sign) exact: a feature with `MAX_CUTS` cuts scores every value, from
    /// below the first cut to above the last and missing, as the reference walk does, and one cut
    /// more keeps the model on the reference walk.
    #[test]
    fn the_most_cuts_a_feature_may_have_score_as_the_reference_walk() {
        assert!(Quantized::build(&one_feature_with_cuts(MAX_CUTS + 1, MAX_CUTS + 1)).is_none());
        if !avx512_available() {
            return; // the portable walk reads no bins
        }
        let forest = one_feature_with_cuts(MAX_CUTS, MAX_CUTS);
        let quantized = Quantized::build(&forest).unwrap();
        assert_eq!(quantized.cuts[0].len(), MAX_CUTS);
        let width = quantized.features;
        let top = MAX_CUTS as f32;
        let mut values = vec![f32::NAN, -1.0, 0.0, top - 1.0, top - 0.5, top, top + 1.0];
        values.extend((0..MAX_CUTS).step_by(97).map(|c| c as f32 + 0.5));
        let mut features = vec![0f32; values.len() * width];
        for (row, &x) in features.chunks_exact_mut(width).zip(&values) {
            row[0] = x;
        }
        let mut expected = vec![0f32; values.len()];
        forest.reference_margins_into(&features, &mut expected);
        let mut got = vec![0f32; values.len()];
        quantized.margins_avx512(Layout::Rows(&features), forest.base_margin, &mut got);
        assert_eq!(
            got.iter().map(|m| m.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|m| m.to_bits()).collect::<Vec<_>>()
        );
    }

    /// Rows of `values` from the `seed`th on, every length of one to three blocks: the AVX-512
    /// walk of `quantized` scores each as the reference walk of `forest` does.
    fn assert_scores_as_the_reference_walk(
        forest: &Forest,
        quantized: &Quantized,
        values: &[f32],
        seed: usize,
        what: &str,
    ) {
        let width = quantized.features;
        for count in 1..=3 * LANES {
            let features: Vec<f32> = (0..count * width)
                .map(|i| values[(seed + i * 41) % values.len()])
                .collect();
            let mut expected = vec![0f32; count];
            forest.reference_margins_into(&features, &mut expected);
            let mut got = vec![0f32; count];
            quantized.margins_avx512(Layout::Rows(&features), forest.base_margin, &mut got);
            assert_eq!(
                got.iter().map(|m| m.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|m| m.to_bits()).collect::<Vec<_>>(),
                "{what}, {count} rows"
            );
        }
    }

    /// Every value a bin can tell apart: NaN, and each cut with its neighbours.
    fn values_around_cuts(quantized: &Quantized) -> Vec<f32> {
        let mut values = vec![f32::NAN];
        for c in quantized.cuts.iter().flatten() {
            values.extend([*c, c.next_down(), c.next_up()]);
        }
        values
    }

    /// Levels 4 and 5 of a group of trees walked in lockstep are read by slot only when every tree
    /// of the group has slots there, and gathered otherwise. With slots taken from some trees on
    /// either level, so that groups take each of the four ways, every prediction stays the
    /// reference walk's.
    #[test]
    fn levels_read_by_slot_or_gathered_score_as_the_reference_walk() {
        let forest = shipped();
        let slotted = Quantized::build(&forest).unwrap();
        let count = |level: usize| slotted.slots.iter().filter(|s| s[level].is_some()).count();
        // Most of the shipped trees read at most eight columns on each level.
        assert!(
            count(0) > 90 && count(1) > 80,
            "{} and {} trees with slots",
            count(0),
            count(1)
        );
        if !avx512_available() {
            return; // the portable walk reads no bins
        }
        let values = values_around_cuts(&slotted);
        assert_scores_as_the_reference_walk(&forest, &slotted, &values, 0, "the shipped slots");
        let mut mixed = slotted.clone();
        for (tree, (slots, nodes)) in mixed.slots.iter_mut().zip(&mut mixed.nodes).enumerate() {
            for (s, level) in SLOTTED_LEVELS.into_iter().enumerate() {
                if (tree / 4 + tree / (8 << s)) % 2 == 1 {
                    slots[s] = None;
                    nodes[1 << level..2 << level]
                        .iter_mut()
                        .for_each(|node| *node &= 0xFFFF_0000 | SLOTTED_OFFSET_MASK);
                }
            }
        }
        assert_scores_as_the_reference_walk(&forest, &mixed, &values, 0, "slots taken from some trees");
    }

    /// A model too wide for slots (offsets need bits 13-15) gathers on levels 4 and 5 and
    /// scores as the reference walk.
    #[test]
    fn a_model_too_wide_for_slots_scores_as_the_reference_walk() {
        let mut forest = shipped();
        forest.num_features = 300;
        for (i, node) in forest.nodes.iter_mut().filter(|n| !n.is_leaf()).enumerate() {
            node.feature = (i * 7 % 300) as u32;
        }
        let quantized = Quantized::build(&forest).unwrap();
        assert_eq!(quantized.offset_mask, 0xFFFF);
        assert!(quantized.slots.iter().all(|s| s == &[None, None]));
        if !avx512_available() {
            return; // the portable walk reads no bins
        }
        let values = values_around_cuts(&quantized);
        assert_scores_as_the_reference_walk(&forest, &quantized, &values, 0, "300 features");
    }

    #[test]
    fn a_tree_deeper_than_the_layout_keeps_the_model_on_the_reference_walk() {
        let mut forest = shipped();
        assert!(Quantized::build(&forest).is_some());
        forest.trees[3].depth = DEPTH + 1;
        assert!(Quantized::build(&forest).is_none());
    }
}
