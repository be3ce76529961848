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
//! a rotation changes the labels of one node only.

use super::memory::subtree_peaks;
use crate::order::{self, PathInfo};
use std::collections::HashSet;

/// Rounds of the local search: each applies one rotation. A lattice needs one per row
/// it rotates; the bound keeps a pathological network from searching for long.
const MAX_ROUNDS: usize = 64;

/// A contraction tree with each node's result labels, size and step flops, which a
/// rotation updates in place of re-evaluating the whole path.
struct Tree<'s> {
    n: usize,
    root: usize,
    sizes: &'s [u64],
    children: Vec<(usize, usize)>,
    labels: Vec<Vec<u32>>,
    size: Vec<f64>,
    flops: Vec<f64>,
}

impl Tree<'_> {
    fn elements(&self, ls: &[u32]) -> f64 {
        ls.iter().map(|&l| self.sizes[l as usize] as f64).product()
    }

    /// Result labels and flops (`order::evaluate`'s convention) of contracting `x` and
    /// `y` into a value that keeps only the labels of `keep`.
    fn step(&self, x: usize, y: usize, keep: &[&[u32]]) -> (Vec<u32>, f64) {
        let mut union = self.labels[x].clone();
        union.extend(
            self.labels[y]
                .iter()
                .filter(|l| !self.labels[x].contains(l)),
        );
        let kept: Vec<u32> = union
            .iter()
            .copied()
            .filter(|l| keep.iter().any(|k| k.contains(l)))
            .collect();
        let cost = self.elements(&union);
        let flops = if kept.len() < union.len() {
            2.0 * cost
        } else {
            cost
        };
        (kept, flops)
    }

    /// The nodes in post-order (children first).
    fn post_order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.children.len() - self.n);
        let mut stack = vec![(self.root, false)];
        while let Some((node, expanded)) = stack.pop() {
            if node < self.n {
                continue;
            }
            if expanded {
                order.push(node);
                continue;
            }
            let (a, b) = self.children[node];
            stack.push((node, true));
            stack.push((b, false));
            stack.push((a, false));
        }
        order
    }

    /// The peak and the excess (how far each subtree's peak exceeds `bound`, summed over
    /// the subtrees). A rotation that fixes one of several branches that exceed the bound
    /// leaves the peak as it was but lowers the excess, so the search can fix them one at
    /// a time.
    fn profile(&self, bound: f64) -> (f64, f64) {
        let (order, peaks) = self.peaks();
        let excess = order.iter().map(|&id| (peaks[id] - bound).max(0.0)).sum();
        (peaks[self.root], excess)
    }

    /// The nodes in post-order, and the peak of each one's subtree.
    fn peaks(&self) -> (Vec<usize>, Vec<f64>) {
        let order = self.post_order();
        let (peaks, _) = subtree_peaks(&self.children, &self.size, &order, self.n);
        (order, peaks)
    }
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
    if n < 3 || ssa.len() + 1 != n || info.steps.len() != ssa.len() {
        return None;
    }
    let mut t = Tree {
        n,
        root: n + ssa.len() - 1,
        sizes,
        children: vec![(0, 0); n],
        labels: inputs.to_vec(),
        size: vec![0.0; n],
        flops: vec![0.0; n],
    };
    t.children.extend(ssa.iter().copied());
    for st in &info.steps {
        t.labels.push(st.result.clone());
        t.size.push(st.size);
        t.flops.push(st.flops);
    }
    let largest = info.largest_intermediate;
    let bound = largest + slack;
    let mut flops = info.flops;
    let (mut peak, mut excess) = t.profile(bound);
    // The tree with the least excess so far, and its excess.
    let (mut best_tree, mut best_excess): (Option<Vec<(usize, usize)>>, f64) = (None, excess);
    let mut seen: HashSet<Vec<(usize, usize)>> = HashSet::new();
    seen.insert(t.children.clone());
    for _ in 0..MAX_ROUNDS {
        if peak <= bound {
            break;
        }
        // Key (a rotation that lowers the excess beats one that keeps it; then excess
        // removed per flop added, or fewer flops added), the nodes `[node, c, o, first,
        // last]`, `c`'s new labels, the new flops of `c` and `node`, and the peak and
        // excess after the rotation.
        type Move = ((bool, f64), [usize; 5], Vec<u32>, [f64; 2], f64, f64);
        let mut best: Option<Move> = None;
        let (_, peaks) = t.peaks();
        for (node, &node_peak) in peaks.iter().enumerate().skip(n) {
            let (a, b) = t.children[node];
            for (o, c) in [(a, b), (b, a)] {
                if c < n {
                    continue;
                }
                let (c1, c2) = t.children[c];
                for (first, last) in [(c1, c2), (c2, c1)] {
                    // `c` becomes `(o, first)`, `node` becomes `(c, last)`.
                    let keep_c = [&t.labels[last][..], &t.labels[node][..]];
                    let (lab_c, flops_c) = t.step(o, first, &keep_c);
                    let size_c = t.elements(&lab_c);
                    if size_c > largest {
                        continue;
                    }
                    let (old_lab, old_size) = (std::mem::take(&mut t.labels[c]), t.size[c]);
                    let (old_c, old_node) = (t.children[c], t.children[node]);
                    t.labels[c] = lab_c;
                    t.size[c] = size_c;
                    t.children[c] = (o, first);
                    t.children[node] = (c, last);
                    let (_, flops_node) = t.step(c, last, &[&t.labels[node][..]]);
                    let total = flops - t.flops[c] - t.flops[node] + flops_c + flops_node;
                    let fresh = total <= max_flops && !seen.contains(&t.children);
                    let (p, e) = if fresh {
                        t.profile(bound)
                    } else {
                        (peak, f64::INFINITY)
                    };
                    let lab_c = std::mem::replace(&mut t.labels[c], old_lab);
                    t.size[c] = old_size;
                    t.children[c] = old_c;
                    t.children[node] = old_node;
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
                        let nodes = [node, c, o, first, last];
                        best = Some((key, nodes, lab_c, [flops_c, flops_node], p, e));
                    }
                }
            }
        }
        let Some((_, [node, c, o, first, last], lab_c, [flops_c, flops_node], p, e)) = best else {
            break;
        };
        flops += flops_c + flops_node - t.flops[c] - t.flops[node];
        t.size[c] = t.elements(&lab_c);
        t.labels[c] = lab_c;
        t.flops[c] = flops_c;
        t.flops[node] = flops_node;
        t.children[c] = (o, first);
        t.children[node] = (c, last);
        seen.insert(t.children.clone());
        peak = p;
        if e < best_excess {
            best_tree = Some(t.children.clone());
            best_excess = e;
        }
        excess = e;
    }
    t.children = best_tree?;
    // The rotated tree in post-order, evaluated afresh: the search's own bookkeeping
    // (optimizer, notes, trials) goes with the new path.
    let order = t.post_order();
    let mut id: Vec<usize> = (0..t.children.len()).collect();
    let mut pairs = Vec::with_capacity(order.len());
    for (k, &node) in order.iter().enumerate() {
        let (a, b) = t.children[node];
        pairs.push((id[a], id[b]));
        id[node] = n + k;
    }
    let path = order::ssa_to_linear(n, &pairs).ok()?;
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
