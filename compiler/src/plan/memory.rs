//! Memory-aware choices of the planner: the evaluation order of a tree, its peak with
//! steps computed in place, a rotated tree or a sweep path instead of a tree whose
//! branches meet, and the layout that lets a step overwrite the operand it consumes.

use super::rotate::rotate;
use super::{order, Builder};
use crate::ir::IndexId;

impl Builder<'_> {
    /// `info`, or a path that holds less, when `info`'s tree would hold more than its
    /// largest intermediate plus `slack` (the statement's result) even with every step
    /// computed in place ([`in_place_peak`]). The candidates, each at most
    /// `PlanConfig::memory_flops` times the flops: the tree after rotations that let a
    /// boundary absorb its sibling's pieces one at a time ([`rotate`]), and the first of
    /// the sweep paths ([`order::sweeps`]) that fits. The cheaper one that fits the bound
    /// is taken; one that does not is not (on the periodic MPS of the paths suite,
    /// rotations lower the peak by a quarter for 1.001x the flops but ran 1.36x slower,
    /// 4.35 against 3.21 ms: `benches/ab.sh`, 2026-12-07).
    pub(super) fn within_largest(
        &mut self,
        info: order::PathInfo,
        inputs: &[Vec<u32>],
        output: &[u32],
        sizes: &[u64],
        slack: f64,
    ) -> order::PathInfo {
        let n = inputs.len();
        let factor = self.cfg.memory_flops;
        // NaN keeps the searched tree too.
        if n < 3 || factor.is_nan() || factor <= 1.0 {
            return info;
        }
        let peak = in_place_peak(&info, n);
        if peak <= info.largest_intermediate + slack {
            return info;
        }
        // A small network's time is its steps' fixed costs more than its flops: a few
        // hundred thousand flops more cost it nothing measurable.
        let max_flops = (factor * info.flops).max(info.flops + SMALL_EXTRA_FLOPS);
        // Candidates beside the searched tree: its rotations, and sweeps.
        let mut best: Option<(order::PathInfo, f64, &str)> = None;
        let rotated = rotate(&info, inputs, output, sizes, slack, max_flops);
        let swept = order::sweeps(inputs, output, sizes)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, p)| order::evaluate(inputs, output, sizes, &p).ok())
            .filter(|s| s.flops <= max_flops);
        let candidates = std::iter::once((rotated, "rotating the searched tree", false))
            .chain(swept.map(|s| (Some(s), "a sweep path", true)));
        let mut swept_fits = false;
        for (cand, what, sweep) in candidates {
            let Some(cand) = cand else { continue };
            // The first sweep that fits, in the order of the starts (the cheapest pair
            // first): along an open MPS a sweep from a middle site fits the model too, for
            // fewer flops, but the executor then held 1.2-1.4x the bound (small chains in
            // `inplace::tests`), where the sweep from the chain's end fits.
            if swept_fits {
                // Only sweeps come after the first (the rotated tree comes first).
                break;
            }
            let p = in_place_peak(&cand, n);
            // Only a path that fits: one that merely holds less costs more time than its
            // flops say (its in-place steps copy blocks), for a bound it still misses.
            if p >= peak || p > cand.largest_intermediate + slack {
                continue;
            }
            swept_fits |= sweep;
            if best.as_ref().is_none_or(|(b, _, _)| cand.flops < b.flops) {
                best = Some((cand, p, what));
            }
        }
        let Some((cand, p, what)) = best else {
            return info;
        };
        self.notes.push(format!(
            "memory: {what} ({:.2}x the flops) holds {} elements at most, against {} for \
             the searched tree",
            cand.flops / info.flops.max(1.0),
            crate::dump::fmt_num(p),
            crate::dump::fmt_num(peak)
        ));
        order::PathInfo {
            optimizer: info.optimizer,
            notes: info.notes,
            trials: info.trials,
            ..cand
        }
    }
}

/// How many times the searched tree's flops a rotated tree or a sweep path may cost to
/// be taken for its memory, by default (`PlanConfig::memory_flops`). Along an open MPS
/// the sweep (one zipper) costs more than the searched tree (two zippers meeting in the
/// middle, which contract a few end sites of the ket and of the bra on their own while
/// 2^sites < bond): 1.42x on the CPU suite's
/// 20-site chain with bond 32 (its plan's `note: memory:` line), 1.01-1.10x on the paths
/// suite's open chains. Around a ring (a periodic MPS) the sweep from a site's ket and
/// bra costs 1.48x on the paths suite's 30 sites with bond 16 and 1.72-2.17x on the
/// smaller rings of `inplace::tests`; those rings set this factor. On the paths suite's
/// lattices a sweep costs 1.74x (5x5, bond 8) and 2.22x (10x10, bond 4), where rotations
/// fit the bound for 1.06x and 1.04x; on the bond-2 10x10 lattice, whose two halves'
/// boundaries are each its largest intermediate, the sweep (2.88x: `einc run
/// --memory-flops 3 --stats`) is taken through [`SMALL_EXTRA_FLOPS`]. `cargo run
/// --release --example sweep_cost` prints each plan's choice.
pub const SWEEP_FLOPS: f64 = 2.25;

/// Extra flops a rotated tree or a sweep path may cost whatever `memory_flops` says
/// (above 1): on the paths suite's 10x10 lattice with bond 2 (3.5e5 flops, 99 steps of
/// at most 2048 elements) the sweep costs 6.6e5 more, 2.88x the flops but 1.25x the time
/// (0.68 → 0.85 ms, docs/benchmarks.md), where the searched tree holds both halves'
/// boundaries at its end.
pub const SMALL_EXTRA_FLOPS: f64 = 1e6;

/// The most result elements `info`'s tree holds at once when each node runs first the
/// child that needs more (as [`low_memory_order`] does) and every step that reads an
/// intermediate overwrites the larger one it reads (the runtime's in-place steps, where
/// the layouts allow), with room for a growing chain as [`subtree_peaks`] counts it.
/// Inputs count nothing: they are borrowed.
pub(super) fn in_place_peak(info: &order::PathInfo, n: usize) -> f64 {
    sethi_ullman(info, n).map_or(f64::INFINITY, |su| su.peak.last().copied().unwrap_or(0.0))
}

/// The Sethi–Ullman evaluation of a tree: each subtree's peak, and at each step whether
/// its second operand's subtree runs first.
struct SethiUllman {
    ssa: Vec<(usize, usize)>,
    /// Elements held at most while each SSA id is computed (0 for the inputs).
    peak: Vec<f64>,
    /// Per step: whether operand `b`'s subtree runs before operand `a`'s.
    first_b: Vec<bool>,
}

/// The executor frees a value after its last reader, so while one subtree runs the
/// other's result waits; at each node the child that needs more beyond its own result
/// runs first (Sethi and Ullman's rule, exact for trees). Ties keep the search's order.
fn sethi_ullman(info: &order::PathInfo, n: usize) -> Option<SethiUllman> {
    let ssa = order::linear_to_ssa(n, &info.path).ok()?;
    if info.steps.len() != ssa.len() {
        return None;
    }
    let mut children = vec![(0, 0); n];
    children.extend(ssa.iter().copied());
    let mut size = vec![0.0f64; n];
    size.extend(info.steps.iter().map(|s| s.size));
    let order: Vec<usize> = (n..children.len()).collect();
    let (peak, first) = subtree_peaks(&children, &size, &order, n);
    let first_b = first[n..].to_vec();
    Some(SethiUllman { ssa, peak, first_b })
}

/// Spare capacity of at least this many elements costs no memory: where a run needs it to
/// stay within its bound, the runtime gives a fresh result's room back to the system
/// until a step writes it (`inplace::fit`, from 64 KiB up). Smaller room, and the
/// partial pages at its ends, stay: a room of 16384 f32 elements (64 KiB) keeps at most
/// two partial pages, an eighth of it.
pub(super) const FREE_ROOM: f64 = 16384.0;

/// [`sethi_ullman`]'s peaks on a tree given by the `children` of each node (entries of
/// the inputs, ids below `n`, unused), the `size` of each node's result (0 for the
/// inputs) and its nodes in an `order` where children come first: the peak of each
/// node's subtree, and per node whether its second child runs first.
///
/// A step that reads an intermediate overwrites the larger one it reads, and a buffer
/// that such a chain of steps grows is allocated at the chain's start with room for the
/// largest size the chain reaches; room below [`FREE_ROOM`] counts while it waits.
pub(super) fn subtree_peaks(
    children: &[(usize, usize)],
    size: &[f64],
    order: &[usize],
    n: usize,
) -> (Vec<f64>, Vec<bool>) {
    // The child each step overwrites: its larger computed operand.
    let consumed = |a: usize, b: usize| -> Option<usize> {
        match (a >= n, b >= n) {
            (false, false) => None,
            (true, false) => Some(a),
            (false, true) => Some(b),
            (true, true) => Some(if size[b] > size[a] { b } else { a }),
        }
    };
    // Room of each buffer: the largest size along the chain that overwrites it.
    let mut room = size.to_vec();
    for &id in order.iter().rev() {
        let (a, b) = children[id];
        if let Some(ch) = consumed(a, b) {
            room[ch] = room[ch].max(room[id]);
        }
    }
    // What each buffer holds while it waits, and while its own step writes it.
    let held: Vec<f64> = size
        .iter()
        .zip(&room)
        .map(|(&s, &r)| if r - s >= FREE_ROOM { s } else { r })
        .collect();
    let mut peak = vec![0.0f64; children.len()];
    let mut first_b = vec![false; children.len()];
    for &id in order {
        let (a, b) = children[id];
        let all = match consumed(a, b) {
            Some(ch) => {
                let other = if ch == a { b } else { a };
                held[ch].max(size[id]) + if other >= n { held[other] } else { 0.0 }
            }
            None => held[id],
        };
        let (ha, hb) = (
            if a >= n { held[a] } else { 0.0 },
            if b >= n { held[b] } else { 0.0 },
        );
        let a_first = peak[a].max(ha + peak[b]).max(all);
        let b_first = peak[b].max(hb + peak[a]).max(all);
        first_b[id] = b_first < a_first;
        peak[id] = a_first.min(b_first);
    }
    (peak, first_b)
}

/// The search's contraction tree in the evaluation order that holds the fewest result
/// elements alive at once ([`sethi_ullman`], steps computed in place), with each step's
/// flops in that order. The tree and its flops are unchanged.
pub(super) fn low_memory_order(
    info: &order::PathInfo,
    n_inputs: usize,
) -> (Vec<(usize, usize)>, Vec<f64>) {
    let unchanged = || {
        let flops = info.steps.iter().map(|s| s.flops).collect();
        (info.path.pairs.clone(), flops)
    };
    if info.steps.len() < 3 {
        return unchanged();
    }
    let Some(SethiUllman { ssa, first_b, .. }) = sethi_ullman(info, n_inputs) else {
        return unchanged();
    };
    let total = n_inputs + ssa.len();
    // Post-order from the root, children in the chosen order, without recursion.
    let mut order: Vec<usize> = Vec::with_capacity(ssa.len());
    let mut stack = vec![(n_inputs + ssa.len() - 1, false)];
    while let Some((id, expanded)) = stack.pop() {
        if id < n_inputs {
            continue;
        }
        let k = id - n_inputs;
        if expanded {
            order.push(k);
            continue;
        }
        let (a, b) = ssa[k];
        let (first, second) = if first_b[k] { (b, a) } else { (a, b) };
        stack.push((id, true));
        stack.push((second, false));
        stack.push((first, false));
    }
    if order.len() != ssa.len() {
        return unchanged();
    }
    let mut new_id: Vec<usize> = (0..total).collect();
    for (pos, &k) in order.iter().enumerate() {
        new_id[n_inputs + k] = n_inputs + pos;
    }
    let reordered: Vec<(usize, usize)> = order
        .iter()
        .map(|&k| (new_id[ssa[k].0], new_id[ssa[k].1]))
        .collect();
    match order::ssa_to_linear(n_inputs, &reordered) {
        Ok(path) => (
            path.pairs,
            order.iter().map(|&k| info.steps[k].flops).collect(),
        ),
        Err(_) => unchanged(),
    }
}

/// The order of operand `x` of a step with result `out` and other operand `other` that
/// shares the most leading and trailing labels with `out`: `out`'s order, with the labels
/// `x` sums where the first of `other`'s new labels stands. A step then computes
/// `out[p, ·, q]` from `x[p, ·, q]` alone, over the labels `p` before and `q` after that
/// place that `other` lacks.
///
/// The summed labels go in `other`'s order, split so that those `x` took from `carried`
/// (the operand its own step consumes) lie toward the end of `x` where fewer of its
/// other labels stand: `x`'s own step then shares an end with `carried` as well.
pub(super) fn shared_ends(
    x: &[IndexId],
    out: &[IndexId],
    other: &[IndexId],
    carried: &[IndexId],
) -> Vec<IndexId> {
    let mut summed: Vec<IndexId> = x.iter().filter(|i| !out.contains(i)).copied().collect();
    summed.sort_by_key(|i| other.iter().position(|j| j == i).unwrap_or(other.len()));
    let at = out.iter().position(|i| !x.contains(i)).unwrap_or(out.len());
    let kept =
        |r: &[IndexId]| -> Vec<IndexId> { r.iter().filter(|i| x.contains(i)).copied().collect() };
    let (before, after) = (kept(&out[..at]), kept(&out[at..]));
    let fresh = |r: &[IndexId]| r.iter().filter(|i| !carried.contains(i)).count();
    // Carried labels of the summed block go next to the side with fewer fresh labels.
    let (mut s_fresh, mut s_carried): (Vec<IndexId>, Vec<IndexId>) =
        summed.iter().partition(|i| !carried.contains(i));
    let mut block = Vec::with_capacity(summed.len());
    if fresh(&before) >= fresh(&after) {
        block.append(&mut s_fresh);
        block.append(&mut s_carried);
    } else {
        block.append(&mut s_carried);
        block.append(&mut s_fresh);
    }
    let mut new = before;
    new.extend(block);
    new.extend(after);
    new
}
