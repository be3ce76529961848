//! Slicing: meeting a memory limit by fixing some summed labels to each of
//! their values in turn, running the same tree once per combination and
//! summing the results (cotengra's `SliceFinder` + `slice_and_reconfigure`).
//!
//! Slicing label `l` divides every intermediate holding `l` by its size and
//! multiplies the number of runs by it; steps that did not involve `l` are
//! repeated for nothing, which is the slicing overhead. Labels are chosen one
//! at a time among those of the largest intermediate, by least total cost;
//! after each choice the tree is re-optimised by subtree reconfiguration
//! under the limit, with the sliced labels at size 1, and at the end labels
//! that are no longer needed are released.

use super::tree::{Ctx, Tree};
use super::Label;

/// How a tree meets its memory limit by slicing.
///
/// The path in [`super::PathInfo::path`] is the per-slice path: run it with
/// every sliced label fixed to one value (the label dropped from every
/// operand that holds it) for each of the `slices` combinations, and add up
/// the results. Sliced labels are never output labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Slicing {
    /// Sliced labels, in the caller's numbering, in the order they were chosen.
    pub labels: Vec<Label>,
    /// Size of each sliced label.
    pub sizes: Vec<u64>,
    /// Number of slices: the product of `sizes` (a float: it can be huge).
    pub slices: f64,
    /// opt_einsum flops / cotengra cost of one slice.
    pub per_slice_flops: f64,
    pub per_slice_cost: f64,
    /// Flops and cost of the same tree without slicing.
    pub unsliced_flops: f64,
    pub unsliced_cost: f64,
    /// `slices * per_slice_flops / unsliced_flops`: the price of slicing
    /// this tree (at least 1).
    pub overhead: f64,
}

impl Slicing {
    /// The value of each sliced label in slice `k` (`0 <= k < slices`),
    /// the last label varying fastest.
    pub fn slice_values(&self, mut k: u64) -> Vec<(Label, u64)> {
        let mut out = vec![(0, 0); self.labels.len()];
        for i in (0..self.labels.len()).rev() {
            let s = self.sizes[i].max(1);
            out[i] = (self.labels[i], k % s);
            k /= s;
        }
        out
    }
}

/// Slices `tree` until its largest intermediate is at most `limit`. Returns
/// the sliced (dense) labels and the per-slice tree, built on `ctx` with the
/// sliced labels' sizes set to 1, or `None` when only output labels (or
/// inputs themselves) exceed the limit.
pub(crate) fn slice_tree(
    ctx: &Ctx,
    tree: &Tree,
    limit: f64,
    reconf: bool,
) -> Option<(Vec<u32>, Ctx, Tree)> {
    let mut c = ctx.clone();
    let mut t = tree.clone();
    let mut sliced: Vec<u32> = Vec::new();
    let n = ctx.n;
    loop {
        let Some(worst) = (n..t.legs.len()).max_by(|&a, &b| t.size[a].total_cmp(&t.size[b])) else {
            return Some((sliced, c, t));
        };
        if t.size[worst] <= limit {
            break;
        }
        let total = t.total_flops();
        // Per label: flops of the steps involving it.
        let mut involved = vec![0.0f64; c.sizes.len()];
        let mut stamp = vec![usize::MAX; c.sizes.len()];
        for x in n..t.legs.len() {
            let (a, b) = t.kids[x - n];
            for &(l, _) in t.legs[a as usize].iter().chain(&t.legs[b as usize]) {
                if stamp[l as usize] != x {
                    stamp[l as usize] = x;
                    involved[l as usize] += t.flops[x - n];
                }
            }
        }
        let best = t.legs[worst]
            .iter()
            .map(|&(l, _)| l)
            .filter(|&l| !c.in_output[l as usize] && c.sizes[l as usize] > 1.0)
            .map(|l| {
                let s = c.sizes[l as usize];
                (l, s * total - involved[l as usize] * (s - 1.0))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))?;
        c.sizes[best.0 as usize] = 1.0;
        sliced.push(best.0);
        t = Tree::from_ssa(&c, &t.to_ssa());
        if reconf {
            // Cheaper per slice, never larger than now: forcing the target
            // size here would buy feasibility at any price, which further
            // slicing provides more cheaply.
            let cap = t.largest();
            t.reconfigure(&c, 8, 4, Some(cap));
        }
    }
    if reconf {
        t.reconfigure(&c, 8, 4, Some(limit));
    }
    // Release labels that reconfiguration made unnecessary, last chosen first.
    for i in (0..sliced.len()).rev() {
        let l = sliced[i] as usize;
        let mut trial = c.clone();
        trial.sizes[l] = ctx.sizes[l];
        let t2 = Tree::from_ssa(&trial, &t.to_ssa());
        if t2.largest() <= limit {
            c = trial;
            t = t2;
            sliced.remove(i);
        }
    }
    Some((sliced, c, t))
}
