//! Memory-aware choices of the planner: the evaluation order of a tree, its peak with
//! steps computed in place, a sweep path instead of a tree whose branches meet, and the
//! layout that lets a step overwrite the operand it consumes.

use super::{order, Builder};
use crate::ir::IndexId;

impl Builder<'_> {
    /// `info`, or a sweep path ([`order::sweep`]) when `info`'s tree would hold more
    /// than its largest intermediate plus `slack` (the statement's result) even with every
    /// step computed in place, and the sweep holds less for at most
    /// [`SWEEP_FLOPS`] times the flops. See [`in_place_peak`].
    pub(super) fn within_largest(
        &mut self,
        info: order::PathInfo,
        inputs: &[Vec<u32>],
        output: &[u32],
        sizes: &[u64],
        slack: f64,
    ) -> order::PathInfo {
        let n = inputs.len();
        let peak = in_place_peak(&info, n);
        if n < 3 || peak <= info.largest_intermediate + slack {
            return info;
        }
        let Ok(sweep) = order::sweep(inputs, output, sizes)
            .and_then(|p| order::evaluate(inputs, output, sizes, &p))
        else {
            return info;
        };
        let sweep_peak = in_place_peak(&sweep, n);
        if sweep.flops <= SWEEP_FLOPS * info.flops && sweep_peak < peak {
            self.notes.push(format!(
                "memory: a sweep path ({:.2}x the flops) holds {} elements at most, against {} \
                 for the searched tree",
                sweep.flops / info.flops.max(1.0),
                crate::dump::fmt_num(sweep_peak),
                crate::dump::fmt_num(peak)
            ));
            return order::PathInfo {
                optimizer: info.optimizer,
                notes: info.notes,
                trials: info.trials,
                ..sweep
            };
        }
        info
    }
}

/// How many times the searched tree's flops a sweep path may cost to be taken for its
/// memory. Along an MPS the sweep (one zipper) costs more than the searched tree (two
/// zippers meeting in the middle, which contract a few end sites of the ket and of the
/// bra on their own while 2^sites < bond): 1.42x on the CPU suite's 20-site chain with
/// bond 32 (its plan's `note: memory:` line), 1.01-1.10x on the paths suite's open
/// chains. The paths suite's lattices keep their searched trees: a sweep costs 2.22x
/// (5x5, bond 8), 2.47x (10x10, bond 4) and 3.14x (10x10, bond 2), the periodic MPS far
/// more (`cargo run --release --example sweep_cost`).
pub const SWEEP_FLOPS: f64 = 1.5;

/// The most result elements `info`'s tree holds at once when each node runs first the
/// child that needs more (as [`low_memory_order`] does) and every step that reads an
/// intermediate overwrites the larger one it reads (the runtime's in-place steps, where
/// the layouts allow). A buffer that such a chain of steps grows is allocated at the
/// chain's start with room for the largest size it reaches (as the runtime does), and
/// counts with that room while it waits. Inputs count nothing: they are borrowed.
fn in_place_peak(info: &order::PathInfo, n: usize) -> f64 {
    let Ok(ssa) = order::linear_to_ssa(n, &info.path) else {
        return f64::INFINITY;
    };
    if info.steps.len() != ssa.len() {
        return f64::INFINITY;
    }
    let total = n + ssa.len();
    let mut size = vec![0.0f64; total];
    for (k, st) in info.steps.iter().enumerate() {
        size[n + k] = st.size;
    }
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
    let mut room = size.clone();
    for k in (0..ssa.len()).rev() {
        let (a, b) = ssa[k];
        if let Some(ch) = consumed(a, b) {
            room[ch] = room[ch].max(room[n + k]);
        }
    }
    let mut peak = vec![0.0f64; total];
    for (k, &(a, b)) in ssa.iter().enumerate() {
        let id = n + k;
        let step = match consumed(a, b) {
            Some(ch) => room[ch] + if ch == a { room[b] } else { room[a] },
            None => room[id],
        };
        let (ha, hb) = (
            room[a] * f64::from(u8::from(a >= n)),
            room[b] * f64::from(u8::from(b >= n)),
        );
        let a_first = peak[a].max(ha + peak[b]);
        let b_first = peak[b].max(hb + peak[a]);
        peak[id] = a_first.min(b_first).max(step);
    }
    peak.last().copied().unwrap_or(0.0)
}

/// Elements a step holds while it runs, with operands of `a` and `b` elements (0 for an
/// input) and a result of `c`: the runtime computes it in the buffer of the larger
/// operand when that is an intermediate (`inplace.rs`, where the layouts allow).
fn step_peak(a: f64, b: f64, c: f64) -> f64 {
    if a.max(b) > 0.0 {
        a.min(b) + a.max(b).max(c)
    } else {
        c
    }
}

/// The search's contraction tree in the evaluation order that holds the fewest result
/// elements alive at once, with each step's flops in that order ([`step_peak`]: steps
/// computed in place). The executor frees a value after its last reader, so while one
/// subtree runs the other's result waits; at each node the child that needs more beyond
/// its own result runs first (Sethi and Ullman's rule, exact for trees). Inputs count
/// nothing: they are borrowed. Ties keep the search's order, and the tree and its flops
/// are unchanged.
pub(super) fn low_memory_order(
    info: &order::PathInfo,
    n_inputs: usize,
) -> (Vec<(usize, usize)>, Vec<f64>) {
    let unchanged = || {
        let flops = info.steps.iter().map(|s| s.flops).collect();
        (info.path.pairs.clone(), flops)
    };
    let Ok(ssa) = order::linear_to_ssa(n_inputs, &info.path) else {
        return unchanged();
    };
    if ssa.len() < 3 || info.steps.len() != ssa.len() {
        return unchanged();
    }
    // Per SSA id: its result size and the most elements alive while it is computed.
    let total = n_inputs + ssa.len();
    let mut size = vec![0.0f64; total];
    let mut peak = vec![0.0f64; total];
    let mut first_b = vec![false; ssa.len()];
    for (k, &(a, b)) in ssa.iter().enumerate() {
        let id = n_inputs + k;
        size[id] = info.steps[k].size;
        let all = step_peak(size[a], size[b], size[id]);
        let a_first = peak[a].max(size[a] + peak[b]).max(all);
        let b_first = peak[b].max(size[b] + peak[a]).max(all);
        first_b[k] = b_first < a_first;
        peak[id] = a_first.min(b_first);
    }
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
