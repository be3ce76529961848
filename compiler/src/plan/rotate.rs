//! Tree rotations that trade a few flops for a lower peak.
//!
//! Why: a searched tree may contract two branches that are each large (two halves of a
//! lattice's boundary, a block of inputs contracted on its own before it meets the
//! boundary). While one waits for the other, no executor holds less than both, so such
//! a tree exceeds its largest intermediate even with every step in place. Rotating the
//! node `(o, (c1, c2))` into `((o, c1), c2)` (or `((o, c2), c1)`) lets the boundary `o`
//! absorb the pieces of its sibling one at a time, in place; along a lattice's row that
//! costs a few percent more flops, where a sweep of the whole network (`order::sweep`)
//! costs two to three times the flops.
//!
//! [`rotate`] is a greedy local search on the excess: how far each subtree's peak (as
//! [`super::memory::subtree_peaks`] counts it) is over the bound, summed over the
//! subtrees. Each round applies the rotation that removes the most excess per added
//! flop, never growing the tree's largest intermediate. A branch that waits beside the
//! boundary may have to shrink over several rotations before the excess drops, so where
//! a subtree is over the bound, rotations that keep the excess are allowed too (the
//! cheapest first, never back to a tree already seen). The search stops when the peak
//! fits, when no rotation is left within the flops budget, or after [`MAX_ROUNDS`], and
//! returns the tree with the least excess. Each candidate costs one pass over the tree:
//! a rotation changes the labels of one node only (`order::tree`'s `Tree::set`).

use super::memory::subtree_peaks;
use crate::order::tree::{Ctx, Tree};
use crate::order::{self, PathInfo, Problem};
use std::collections::HashSet;

/// Rounds of the local search: each applies one rotation. A lattice needs one per row
/// it rotates; the bound keeps a pathological network from searching for long.
const MAX_ROUNDS: usize = 64;

/// The nodes of `t` in post-order (children first), with each node's children (the
/// entries of the inputs unused), as [`subtree_peaks`] takes them.
fn post_order(t: &Tree) -> (Vec<usize>, Vec<(usize, usize)>) {
    let n = t.n;
    let mut children = vec![(0, 0); n];
    children.extend(t.kids.iter().map(|&(a, b)| (a as usize, b as usize)));
    let mut order = Vec::with_capacity(t.kids.len());
    let mut stack = vec![(t.root, false)];
    while let Some((node, expanded)) = stack.pop() {
        if node < n {
            continue;
        }
        if expanded {
            order.push(node);
            continue;
        }
        let (a, b) = children[node];
        stack.push((node, true));
        stack.push((b, false));
        stack.push((a, false));
    }
    (order, children)
}

/// The peak of each subtree of `t` (inputs hold nothing: they are borrowed), and the
/// nodes in post-order.
fn peaks(t: &Tree) -> (Vec<usize>, Vec<f64>) {
    let (order, children) = post_order(t);
    let (peaks, _) = subtree_peaks(&children, &t.size, &order, t.n);
    (order, peaks)
}

/// The peak and the excess (how far each subtree's peak exceeds `bound`, summed over the
/// subtrees). A rotation that fixes one of several branches that exceed the bound leaves
/// the peak as it was but lowers the excess, so the search can fix them one at a time.
fn profile(t: &Tree, bound: f64) -> (f64, f64) {
    let (order, peaks) = peaks(t);
    let excess = order.iter().map(|&id| (peaks[id] - bound).max(0.0)).sum();
    (peaks[t.root], excess)
}

/// `info`'s tree after rotations that lower its peak (elements held at once with steps
/// in place) to at most its largest intermediate plus `slack`, or as far as they can,
/// each keeping the largest intermediate no larger than `info`'s and the flops at most
/// `max_flops`. `None` when no rotation lowers the excess.
pub(super) fn rotate(
    info: &PathInfo,
    inputs: &[Vec<u32>],
    output: &[u32],
    sizes: &[u64],
    slack: f64,
    max_flops: f64,
) -> Option<PathInfo> {
    let n = inputs.len();
    let ssa = order::linear_to_ssa(n, &info.path).ok()?;
    if n < 3 || ssa.len() + 1 != n {
        return None;
    }
    let ctx = Ctx::new(&Problem::new(inputs, output, sizes).ok()?);
    let mut t = Tree::from_ssa(&ctx, &ssa);
    let largest = info.largest_intermediate;
    let bound = largest + slack;
    let mut flops = t.total_flops();
    let (mut peak, mut excess) = profile(&t, bound);
    // The tree with the least excess so far, and its excess.
    let (mut best_tree, mut best_excess): (Option<Vec<(u32, u32)>>, f64) = (None, excess);
    let mut seen: HashSet<Vec<(u32, u32)>> = HashSet::new();
    seen.insert(t.kids.clone());
    for _ in 0..MAX_ROUNDS {
        if peak <= bound {
            break;
        }
        // Key (a rotation that lowers the excess beats one that keeps it; then excess
        // removed per flop added, or fewer flops added), the nodes `[node, c, o, first,
        // last]`, and the flops, peak and excess after the rotation.
        type Move = ((bool, f64), [usize; 5], f64, f64, f64);
        let mut best: Option<Move> = None;
        let (_, node_peaks) = peaks(&t);
        for (node, &node_peak) in node_peaks.iter().enumerate().skip(n) {
            let (a, b) = t.kids[node - n];
            for (o, c) in [(a as usize, b as usize), (b as usize, a as usize)] {
                if c < n {
                    continue;
                }
                let (c1, c2) = t.kids[c - n];
                for (first, last) in [(c1 as usize, c2 as usize), (c2 as usize, c1 as usize)] {
                    // `c` becomes `(o, first)`, `node` becomes `(c, last)`; `node` keeps
                    // its leaves, so its labels, and nothing above it changes.
                    let before = t.flops[c - n] + t.flops[node - n];
                    t.set(&ctx, c, o, first);
                    t.set(&ctx, node, c, last);
                    let total = flops - before + t.flops[c - n] + t.flops[node - n];
                    let fresh =
                        t.size[c] <= largest && total <= max_flops && !seen.contains(&t.kids);
                    let (p, e) = if fresh {
                        profile(&t, bound)
                    } else {
                        (peak, f64::INFINITY)
                    };
                    t.set(&ctx, c, c1 as usize, c2 as usize);
                    t.set(&ctx, node, a as usize, b as usize);
                    // A waiting branch may have to shrink in several rotations before
                    // the excess drops: moves that keep it are allowed where the peak is
                    // over the bound, never a worse one.
                    if e > excess || p > peak || (e == excess && node_peak <= bound) {
                        continue;
                    }
                    let added = total - flops;
                    let key = if e < excess {
                        (true, (excess - e) / added.max(1e-9 * flops.max(1.0)))
                    } else {
                        (false, -added)
                    };
                    if best.as_ref().is_none_or(|(k, ..)| key > *k) {
                        best = Some((key, [node, c, o, first, last], total, p, e));
                    }
                }
            }
        }
        let Some((_, [node, c, o, first, last], total, p, e)) = best else {
            break;
        };
        t.set(&ctx, c, o, first);
        t.set(&ctx, node, c, last);
        seen.insert(t.kids.clone());
        flops = total;
        peak = p;
        if e < best_excess {
            best_tree = Some(t.kids.clone());
            best_excess = e;
        }
        excess = e;
    }
    t.kids = best_tree?;
    // The rotated tree, evaluated afresh (sizes and flops by `order::evaluate`'s rules):
    // the search's own bookkeeping (optimizer, notes, trials) goes with the new path.
    let path = order::ssa_to_linear(n, &t.to_ssa()).ok()?;
    let cur = order::evaluate(inputs, output, sizes, &path).ok()?;
    // The search's own accounting agrees with `evaluate` (tested); a tree outside the
    // limits all the same is not returned.
    if cur.flops > max_flops || cur.largest_intermediate > largest {
        return None;
    }
    Some(PathInfo {
        optimizer: info.optimizer,
        notes: info.notes.clone(),
        trials: info.trials,
        ..cur
    })
}

#[cfg(test)]
mod tests;
