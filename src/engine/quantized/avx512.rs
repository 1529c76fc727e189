//! The walk over bins, sixteen rows in the lanes of one register.
//!
//! Per level and tree: the node at each lane's position comes from the tree's nodes held in two
//! registers (a permute, no memory), the bin it reads is loaded (levels 0-2, whose few columns are
//! blended) or gathered (levels 3-5) from the block, and the sign of the node's word minus the
//! bin is the child bit. Four trees walk in lockstep; at the last level the leaves come from four
//! registers of leaf values, and each lane adds them in tree order.

use std::arch::x86_64::*;

use super::{Quantized, LANES, MISSING, NODES, PROBED_HALVINGS, SLOTS, SLOTTED_LEVELS, SLOT_SHIFT};

/// Trees walked in lockstep. Measured on this project's machine: with levels 3-5 gathered, 4 beat
/// 1, 2, 3, 6, 8 and 16 (more spill registers; two blocks at a time gained nothing, so throughput
/// bounds it); with them picked from loaded columns, 2 took 0.92 of 4's time at 100 and at 10,000
/// rows, and 1 no less than 2.
const TREES: usize = 2;
/// The levels whose bins are picked from their columns' loads by position rather than gathered:
/// those below the slotted ones. Measured at 100 rows: four levels (eight nodes on the last) took
/// 0.93 of the time three took; five gained nothing more.
const SELECTED_LEVELS: usize = SLOTTED_LEVELS[0];
// `Lockstep::columns` holds the two slotted levels, the last two.
const _: () = assert!(SLOTTED_LEVELS[1] == SELECTED_LEVELS + 1 && SELECTED_LEVELS + 2 == super::DEPTH as usize);

/// Writes the bins of `rows` (whole rows, at most `LANES`, row after row) into `block`, as the
/// scalar `Quantized::bin_block` defines them: per feature, sixteen rows' values gathered, then
/// searched together by [`bin_values`].
///
/// # Safety
/// The CPU has AVX-512F; `rows` holds 1 to `LANES` whole rows and `block` is
/// `2 × features × LANES` long.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn bin_block(forest: &Quantized, rows: &[f32], block: &mut [u32]) {
    let width = forest.features;
    let count = rows.len() / width;
    debug_assert!((1..=LANES).contains(&count) && rows.len() == count * width);
    debug_assert!(block.len() == 2 * width * LANES);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let starts = _mm512_mullo_epi32(
        _mm512_min_epi32(lanes, _mm512_set1_epi32(count as i32 - 1)),
        _mm512_set1_epi32(width as i32),
    );
    for feature in 0..width {
        // SAFETY: every index is `row * width + feature` for a row below `count`.
        let x = unsafe {
            _mm512_i32gather_ps::<4>(
                _mm512_add_epi32(starts, _mm512_set1_epi32(feature as i32)),
                rows.as_ptr(),
            )
        };
        // SAFETY: as this function's.
        unsafe { bin_values(forest, feature, x, block) };
    }
}

/// As [`bin_block`], for rows `start..start + count` of a matrix laid out column after column
/// (`columns` is `features` columns of equal length): each feature's values are one load, with
/// the lanes past `count` repeating the last row.
///
/// # Safety
/// The CPU has AVX-512F; `count` is 1 to `LANES`, `start + count` is at most a column's length,
/// and `block` is `2 × features × LANES` long.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn bin_columns(forest: &Quantized, columns: &[f32], start: usize, count: usize, block: &mut [u32]) {
    let width = forest.features;
    let height = columns.len() / width;
    debug_assert!((1..=LANES).contains(&count) && start + count <= height);
    debug_assert!(block.len() == 2 * width * LANES);
    let present = (u32::MAX >> (32 - count)) as __mmask16;
    for (feature, column) in columns.chunks_exact(height).enumerate() {
        let rows = &column[start..start + count];
        // SAFETY: the mask loads only the `count` values of `rows`.
        let x = unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(rows[count - 1]), present, rows.as_ptr()) };
        // SAFETY: as this function's.
        unsafe { bin_values(forest, feature, x, block) };
    }
}

/// Searches sixteen values of `feature` together and writes their bins, plain and mirrored, into
/// `block`. Each halving of the feature's padded thresholds picks each lane's probe from the ones
/// it can reach: the first by broadcast, the next five by a permute from one or two registers (see
/// `probes`), the rest by a gather.
///
/// # Safety
/// The CPU has AVX-512F; `feature` is below the forest's features and `block` is
/// `2 × features × LANES` long.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bin_values(forest: &Quantized, feature: usize, x: __m512, block: &mut [u32]) {
    let width = forest.features;
    let search = &forest.search[feature];
    let low_bits = _mm512_set1_epi32(0xFFFF);
    let mut bin = _mm512_setzero_si512();
    let span = search.len().trailing_zeros();
    for halving in 0..span {
        let half = search.len() >> (halving + 1);
        // Which of the thresholds this halving can probe a lane's bin so far points to.
        let which = || _mm512_srl_epi32(bin, _mm_cvtsi32_si128((span - halving) as i32));
        let probes = |h: u32| forest.probes[feature][h as usize - 1].as_ptr();
        // SAFETY: the loads are inside a feature's `2 × LANES` probes; a gathered `bin` sums
        // distinct smaller halves, so `bin + half - 1 < search.len()`.
        let cut = unsafe {
            match halving {
                // Every lane's first probe is the middle threshold: a broadcast.
                0 => _mm512_set1_ps(search[half - 1]),
                // Up to sixteen thresholds: one register.
                h if 1 << h <= LANES => _mm512_permutexvar_ps(which(), _mm512_loadu_ps(probes(h))),
                // Up to thirty-two: two.
                h if h as usize <= PROBED_HALVINGS => {
                    let p = probes(h);
                    _mm512_permutex2var_ps(_mm512_loadu_ps(p), which(), _mm512_loadu_ps(p.add(LANES)))
                }
                _ => {
                    let probe = _mm512_add_epi32(bin, _mm512_set1_epi32(half as i32 - 1));
                    _mm512_i32gather_ps::<4>(probe, search.as_ptr())
                }
            }
        };
        let at_or_below = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(cut, x);
        bin = _mm512_mask_add_epi32(bin, at_or_below, bin, _mm512_set1_epi32(half as i32));
    }
    let missing = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    let cuts = _mm512_set1_epi32(forest.cuts[feature].len() as i32);
    let miss = _mm512_set1_epi32(MISSING as i32);
    let plain = _mm512_mask_mov_epi32(bin, missing, miss);
    let mirrored = _mm512_mask_mov_epi32(_mm512_sub_epi32(cuts, bin), missing, miss);
    // SAFETY: both columns are inside `block` (`feature < width`).
    unsafe {
        let start = block.as_mut_ptr();
        let column = |c: usize| start.add(c * LANES).cast::<__m512i>();
        _mm512_storeu_si512(
            column(feature),
            _mm512_or_si512(_mm512_slli_epi32::<16>(plain), low_bits),
        );
        _mm512_storeu_si512(
            column(width + feature),
            _mm512_or_si512(_mm512_slli_epi32::<16>(mirrored), low_bits),
        );
    }
}

/// Adds every tree's leaf to `sums` (one lane per row, `LANES` rows per block of `bins`; the last
/// block holds the rows past the others', up to `LANES`, and `sums.len()` is a whole number of
/// blocks). A last block of at most 8 rows is walked packed, several trees at once (see
/// [`packed`]).
///
/// # Safety
/// The CPU has AVX-512F, and `bins` holds `sums.len() / LANES` blocks of `2 × features × LANES`
/// values written by `Quantized::bin_block` (every node's offset plus a lane is inside a block).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn walk(forest: &Quantized, bins: &[u32], sums: &mut [f32], rows: usize) {
    let block_len = 2 * forest.features * LANES;
    let blocks = sums.len() / LANES;
    debug_assert!(bins.len() == blocks * block_len && rows.div_ceil(LANES) == blocks);
    let tail = rows - (blocks.max(1) - 1) * LANES;
    let packing = match tail {
        1..=4 => 4,
        5..=8 => 2,
        _ => 1,
    };
    let whole = if packing > 1 { blocks - 1 } else { blocks };
    let (bins, tail_bins) = bins.split_at(whole * block_len);
    let (sums, tail_sums) = sums.split_at_mut(whole * LANES);
    let count = forest.nodes.len();
    let grouped = count - count % TREES;
    for first in (0..grouped).step_by(TREES) {
        // SAFETY: as this function's.
        unsafe { trees::<TREES>(forest, first, bins, sums) };
    }
    for first in grouped..count {
        // SAFETY: as this function's.
        unsafe { trees::<1>(forest, first, bins, sums) };
    }
    if packing == 1 {
        return;
    }
    let block: &mut [f32; LANES] = tail_sums.try_into().expect("the last block's sums");
    let mut nodes = forest.nodes.chunks_exact(packing);
    let mut leaves = forest.leaves.chunks_exact(packing);
    for (nodes, leaves) in (&mut nodes).zip(&mut leaves) {
        // SAFETY: as this function's; the last block's rows are its first `tail`, at most
        // `LANES / packing`.
        unsafe {
            match packing {
                4 => packed::<4>(forest.offset_mask, nodes, leaves, tail_bins, block),
                _ => packed::<2>(forest.offset_mask, nodes, leaves, tail_bins, block),
            }
        }
    }
    // The trees left over, one at a time and after the packed ones: each row still adds its
    // leaves in tree order.
    for first in count - nodes.remainder().len()..count {
        // SAFETY: as this function's.
        unsafe { trees::<1>(forest, first, tail_bins, block) };
    }
}

/// `P` trees over the first `LANES / P` rows of one block, all in one register: lane `l` walks
/// tree `l / R` for row `l % R` (`R = LANES / P`). A block of 4 rows then takes one gather a level
/// for four trees, where sixteen lanes of one tree would each take one for the same four rows.
/// Sums for the lanes past `R` are left as they were.
///
/// # Safety
/// The CPU has AVX-512F, `block` is one block of bins (as [`walk`]'s), `nodes` and `leaves` are
/// `P` trees, and `P` is 2 or 4.
#[target_feature(enable = "avx512f")]
unsafe fn packed<const P: usize>(
    offset_mask: u32,
    nodes: &[[u32; NODES]],
    leaves: &[[f32; NODES]],
    block: &[u32],
    sums: &mut [f32; LANES],
) {
    debug_assert!(nodes.len() == P && leaves.len() == P && (P == 2 || P == 4));
    let rows = LANES / P;
    let base = block.as_ptr().cast::<i32>();
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let row = _mm512_and_si512(lanes, _mm512_set1_epi32(rows as i32 - 1));
    // The lanes of the `g`th tree.
    let group = |g: usize| (((1u32 << rows) - 1) << (g * rows)) as __mmask16;
    let offset_bits = _mm512_set1_epi32(offset_mask as i32);
    let mut at = _mm512_set1_epi32(1);
    for level in 0..super::DEPTH as usize {
        // As in `descend`.
        let half = if level < 5 { 0 } else { 32 };
        let mut node = _mm512_setzero_si512();
        for (g, nodes) in nodes.iter().enumerate() {
            node = _mm512_mask_mov_epi32(node, group(g), node_at(nodes, half, at));
        }
        let index = _mm512_ternarylogic_epi32::<0xEA>(node, offset_bits, row);
        // SAFETY: the offsets in `nodes` are inside a block, and `row` is a lane.
        let bin = unsafe { _mm512_i32gather_epi32::<4>(index, base) };
        at = child(at, node, bin);
    }
    let mut leaf = _mm512_setzero_ps();
    for (g, leaves) in leaves.iter().enumerate() {
        leaf = _mm512_mask_mov_ps(leaf, group(g), leaf_at(leaves, at));
    }
    // SAFETY: `sums` is one block.
    let mut sum = unsafe { _mm512_loadu_ps(sums.as_ptr()) };
    for g in 0..P {
        // Each row's leaf of tree `g`, moved to the row's own lane, added in tree order.
        let from = _mm512_add_epi32(row, _mm512_set1_epi32((g * rows) as i32));
        sum = _mm512_add_ps(sum, _mm512_permutexvar_ps(from, leaf));
    }
    let kept = (u32::MAX >> (32 - rows)) as __mmask16;
    // SAFETY: as the load.
    unsafe { _mm512_mask_storeu_ps(sums.as_mut_ptr(), kept, sum) };
}

/// Trees `first..first + N` over every block, in lockstep; levels 4 and 5 pick their bins by
/// slot when every one of the `N` trees has slots there (see `Quantized::slots`), else gather.
///
/// # Safety
/// As [`walk`]'s, and the trees are the forest's.
#[target_feature(enable = "avx512f")]
unsafe fn trees<const N: usize>(forest: &Quantized, first: usize, bins: &[u32], sums: &mut [f32]) {
    let slots: &[_; N] = forest.slots[first..first + N].try_into().expect("N trees' slots");
    let slotted = |level: usize| slots.iter().all(|s| s[level].is_some());
    let columns = |level: usize| slots.map(|s| s[level].unwrap_or([0; SLOTS]));
    let lockstep = Lockstep {
        offset_mask: forest.offset_mask,
        nodes: forest.nodes[first..first + N].try_into().expect("N trees' nodes"),
        leaves: forest.leaves[first..first + N].try_into().expect("N trees' leaves"),
        columns: [columns(0), columns(1)],
    };
    let block_len = 2 * forest.features * LANES;
    // SAFETY: as this function's.
    unsafe {
        match (slotted(0), slotted(1)) {
            (true, true) => lockstep.walk::<true, true>(block_len, bins, sums),
            (true, false) => lockstep.walk::<true, false>(block_len, bins, sums),
            (false, true) => lockstep.walk::<false, true>(block_len, bins, sums),
            (false, false) => lockstep.walk::<false, false>(block_len, bins, sums),
        }
    }
}

/// What `N` trees walked in lockstep read besides the bins.
struct Lockstep<'a, const N: usize> {
    offset_mask: u32,
    nodes: &'a [[u32; NODES]; N],
    leaves: &'a [[f32; NODES]; N],
    /// Each tree's slot columns on levels 4 and 5 (zeros where it has none).
    columns: [[[u32; SLOTS]; N]; 2],
}

impl<const N: usize> Lockstep<'_, N> {
    /// Every block of `bins`, level 4 by slot when `S4`, level 5 when `S5`.
    ///
    /// # Safety
    /// As [`walk`]'s; with `S4` or `S5`, every tree has slots on that level.
    #[target_feature(enable = "avx512f")]
    unsafe fn walk<const S4: bool, const S5: bool>(&self, block_len: usize, bins: &[u32], sums: &mut [f32]) {
        let one = _mm512_set1_epi32(1);
        for (block, sums) in bins.chunks_exact(block_len).zip(sums.chunks_exact_mut(LANES)) {
            let base = block.as_ptr().cast::<i32>();
            let mut at = [one; N];
            // One call per level, the level a constant: LLVM did not unroll the loop over levels
            // once the child bit was arithmetic, and the walk ran 8% slower.
            // SAFETY: as this function's.
            unsafe {
                self.descend::<0, false>(base, &mut at);
                self.descend::<1, false>(base, &mut at);
                self.descend::<2, false>(base, &mut at);
                self.descend::<3, false>(base, &mut at);
                self.descend::<4, S4>(base, &mut at);
                self.descend::<5, S5>(base, &mut at);
            }
            // SAFETY: `sums` is one block of `LANES` values.
            let mut sum = unsafe { _mm512_loadu_ps(sums.as_ptr()) };
            for (at, leaves) in at.iter().zip(self.leaves) {
                sum = _mm512_add_ps(sum, leaf_at(leaves, *at));
            }
            // SAFETY: as the load.
            unsafe { _mm512_storeu_ps(sums.as_mut_ptr(), sum) };
        }
    }

    /// One level of the `N` trees: each lane's position `at` moves to the child its bin picks.
    /// Levels below [`SELECTED_LEVELS`] pick the bin by position, a `SLOTTED` level by the
    /// node's slot; any other gathers it.
    ///
    /// # Safety
    /// AVX-512F, the offsets of the nodes are inside the block at `base`, and with `SLOTTED` every
    /// tree has slots on `LEVEL`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn descend<const LEVEL: usize, const SLOTTED: bool>(&self, base: *const i32, at: &mut [__m512i; N]) {
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let offset_bits = _mm512_set1_epi32(self.offset_mask as i32);
        // Levels 0-4 live at positions 1..32, level 5 at 32..64.
        let half = if LEVEL < 5 { 0 } else { 32 };
        for (tree, (at, nodes)) in at.iter_mut().zip(self.nodes).enumerate() {
            let node = node_at(nodes, half, *at);
            // SAFETY: the offsets in `nodes` and the slot columns are inside a block (the
            // caller's contract).
            let bin = unsafe {
                if LEVEL < SELECTED_LEVELS {
                    // At most eight nodes on this level: load their columns and pick each
                    // lane's, which costs less than a gather.
                    select::<LEVEL>(base, nodes, *at)
                } else if SLOTTED {
                    let columns = &self.columns[LEVEL - SELECTED_LEVELS][tree];
                    pick(base, columns, columns.len(), node, 1 << SLOT_SHIFT)
                } else {
                    // offset | lane: where the lane's bin for this node's column is.
                    let index = _mm512_ternarylogic_epi32::<0xEA>(node, offset_bits, lanes);
                    _mm512_i32gather_epi32::<4>(index, base)
                }
            };
            *at = child(*at, node, bin);
        }
    }
}

/// Each lane's node of `nodes` at its position `at`, on a level at `half` (0 for levels 0-4,
/// positions 1..32; 32 for level 5): two registers either way, and the permute reads a
/// position's low five bits.
#[target_feature(enable = "avx512f")]
#[inline]
fn node_at(nodes: &[u32; NODES], half: usize, at: __m512i) -> __m512i {
    let level = &nodes[half..half + 2 * LANES];
    // SAFETY: two loads of sixteen inside `level`.
    let (low, high) = unsafe {
        let p = level.as_ptr().cast::<__m512i>();
        (_mm512_loadu_si512(p), _mm512_loadu_si512(p.add(1)))
    };
    _mm512_permutex2var_epi32(low, at, high)
}

/// The child of each lane's position `at` that its `bin` picks at `node`: `2 × at`, plus 1 when
/// `bin >= node`, the sign of their difference. Both are below 2^31 (see `MISSING`), and the low
/// bits, the bin's 0xFFFF against a node's offset and slot (at most 0xFFF0), only break the tie
/// of equal thresholds.
#[target_feature(enable = "avx512f")]
#[inline]
fn child(at: __m512i, node: __m512i, bin: __m512i) -> __m512i {
    let second = _mm512_srli_epi32::<31>(_mm512_sub_epi32(node, bin));
    _mm512_or_si512(_mm512_add_epi32(at, at), second)
}

/// Each lane's leaf of `leaves` at its last position `at` (64..128: leaves 0..64, bit 5 picking
/// the upper half).
#[target_feature(enable = "avx512f")]
#[inline]
fn leaf_at(leaves: &[f32; NODES], at: __m512i) -> __m512 {
    let p = leaves.as_ptr();
    // SAFETY: four loads of sixteen inside the tree's 64 leaves.
    let (lower, upper) = unsafe {
        (
            _mm512_permutex2var_ps(_mm512_loadu_ps(p), at, _mm512_loadu_ps(p.add(16))),
            _mm512_permutex2var_ps(_mm512_loadu_ps(p.add(32)), at, _mm512_loadu_ps(p.add(48))),
        )
    };
    let in_upper = _mm512_test_epi32_mask(at, _mm512_set1_epi32(32));
    _mm512_mask_blend_ps(in_upper, lower, upper)
}

/// Each lane's bin for its node on `LEVEL` (below [`SELECTED_LEVELS`]), from the level's
/// `2^LEVEL` columns, picked by the lane's position.
///
/// # Safety
/// AVX-512F, and the offsets of `nodes` at positions `1..16` are inside the block at `base`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn select<const LEVEL: usize>(base: *const i32, nodes: &[u32; NODES], at: __m512i) -> __m512i {
    let first = 1 << LEVEL;
    let mut columns = [0; SLOTS];
    for (column, node) in columns.iter_mut().zip(&nodes[first..2 * first]) {
        *column = node & 0xFFFF;
    }
    // Position `first + j`: bit `b` of `j` is bit `b` of the position.
    // SAFETY: as this function's.
    unsafe { pick(base, &columns, first, at, 1) }
}

/// Each lane's value from the first `width` (a power of two, at most `SLOTS`) of the columns at
/// offsets `columns` in the block at `base`: the one whose index has the bits of `key` from
/// `bit` up, a tree of blends halving on each.
///
/// # Safety
/// AVX-512F, and every offset names a column of `LANES` values in the block.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pick(base: *const i32, columns: &[u32; SLOTS], width: usize, key: __m512i, bit: i32) -> __m512i {
    let mut picked = [_mm512_setzero_si512(); SLOTS];
    for (picked, &column) in picked.iter_mut().zip(columns).take(width) {
        // SAFETY: as this function's.
        *picked = unsafe { _mm512_loadu_si512(base.add(column as usize).cast()) };
    }
    let (mut width, mut bit) = (width, bit);
    while width > 1 {
        let high = _mm512_test_epi32_mask(key, _mm512_set1_epi32(bit));
        for j in 0..width / 2 {
            picked[j] = _mm512_mask_blend_epi32(high, picked[2 * j], picked[2 * j + 1]);
        }
        width /= 2;
        bit *= 2;
    }
    picked[0]
}
