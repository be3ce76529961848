//! Exact minimum-`flops` search over pairwise contraction trees.
//!
//! Two searches share this file. Up to [`FULL_MAX_INPUTS`] inputs, a dynamic
//! programme over *all* subsets (below) minimises over every tree, outer
//! products anywhere included. Above, [`connected`] follows opt_einsum's
//! `dp`: it only builds intermediates for connected sets of inputs, each
//! connected component separately, under a cost cap that grows until the
//! whole component fits, and joins the components by outer products in the
//! cheapest order. It is exact over that space (every tree whose outer
//! products are the final joins), which is opt_einsum `dp`'s, and on sparse
//! networks it visits a tiny fraction of the `3^n / 2` splits.
//!
//! The labels of the intermediate that contracts a subset `S` of the inputs
//! do not depend on how `S` was contracted: they are the labels of `S` that
//! are in the output or on some input outside `S` ("legs"). So the cheapest
//! tree for `S` is the cheapest split `S = A ∪ B` plus the cheapest trees for
//! `A` and `B`, a dynamic programme over all `2^n` subsets and their `3^n / 2`
//! splits. Unlike opt_einsum's `dp` it also considers outer products anywhere
//! (they can win with hyperedges), and unlike opt_einsum's `optimal` it is
//! truly optimal: that one caches pair results by label sets without the set
//! of remaining tensors and counts the factor 2 only for labels shared by both
//! operands, so it can miss the minimum of its own `opt_cost`.
//!
//! Ties in flops are broken by the largest intermediate, then by split order,
//! so the result is deterministic. A memory limit removes every subset whose
//! legs exceed it (inputs excepted).

use std::time::Instant;

use super::Problem;

mod connected;

/// Most inputs the exact search accepts (sets of inputs are `u64` masks);
/// dense networks of that size give up on [`MAX_PAIRS`] or the time limit.
pub const MAX_OPTIMAL_INPUTS: usize = 40;

/// Up to this many inputs the all-subsets programme runs (at most `3^13 / 2`
/// splits, milliseconds) and outer products are searched anywhere, so that
/// `Auto`'s exact range stays exact over every tree; above, the
/// connected-subset search.
pub const FULL_MAX_INPUTS: usize = super::AUTO_OPTIMAL_MAX_INPUTS;

/// Candidate pairs the connected search examines before giving up, so that
/// a dense network without a time limit still ends (about a second).
const MAX_PAIRS: u64 = 1 << 25;

/// Largest label-bitset table (in `u64` words, 64 MiB) the search builds;
/// two such tables live at once.
const MAX_TABLE_WORDS: usize = 1 << 23;

/// Roughly how many splits pass between two looks at the clock.
const DEADLINE_STRIDE: u64 = 1 << 14;

pub(crate) enum Outcome {
    Found(Vec<(usize, usize)>),
    /// No tree keeps every intermediate within the memory limit.
    Infeasible,
    /// Too big or too slow; the text says why.
    GaveUp(String),
}

/// The connected-subset search whatever the size, for tests on problems
/// small enough to brute-force.
#[cfg(test)]
pub(crate) fn optimal_connected(
    p: &Problem,
    limit: Option<f64>,
    deadline: Option<Instant>,
) -> Outcome {
    if p.inputs.len() < 2 {
        return Outcome::Found(Vec::new());
    }
    connected::connected(p, limit, deadline)
}

/// `batch_weight`: [`super::Limits::batch_weight`], resolved (the all-subsets programme
/// alone reads it).
pub(crate) fn optimal(
    p: &Problem,
    limit: Option<f64>,
    deadline: Option<Instant>,
    batch_weight: f64,
) -> Outcome {
    let n = p.inputs.len();
    if n < 2 {
        return Outcome::Found(Vec::new());
    }
    if n > MAX_OPTIMAL_INPUTS {
        return Outcome::GaveUp(format!(
            "{n} inputs exceed the exact search's maximum of {MAX_OPTIMAL_INPUTS}"
        ));
    }
    let words = p.sizes.len().div_ceil(64).max(1);
    if n > FULL_MAX_INPUTS || (1usize << n).saturating_mul(words) > MAX_TABLE_WORDS {
        return connected::connected(p, limit, deadline);
    }
    let tables = Tables::new(p);
    let mut dp = Dp::new(&tables, limit);
    dp.batch_weight = batch_weight;
    if let Err(visited) = dp.run(deadline) {
        return Outcome::GaveUp(format!("time limit reached after {visited} splits"));
    }
    let full = (1usize << n) - 1;
    if !dp.ok[full] {
        return Outcome::Infeasible;
    }
    let mut path = Vec::with_capacity(n - 1);
    let mut next_id = n;
    emit(full, &dp.split, &mut next_id, &mut path);
    Outcome::Found(path)
}

/// Per subset, the labels of the tensor that stands for it (as bitsets of
/// `words` words) and its size: an input's own labels, or a result's legs.
struct Tables<'a> {
    p: &'a Problem,
    n: usize,
    words: usize,
    legs: Vec<u64>,
    legs_size: Vec<f64>,
    /// Every label size is at least 1, so sizes grow with label sets and
    /// cheap lower bounds on a step's cost are valid.
    monotone: bool,
}

impl<'a> Tables<'a> {
    fn new(p: &'a Problem) -> Self {
        let n = p.inputs.len();
        let words = p.sizes.len().div_ceil(64).max(1);
        let subsets = 1usize << n;
        let full = subsets - 1;
        let mut labels = vec![0u64; subsets * words];
        for (i, term) in p.inputs.iter().enumerate() {
            for &l in term {
                labels[(1 << i) * words + l / 64] |= 1 << (l % 64);
            }
        }
        for s in 1..subsets {
            let low = s & s.wrapping_neg();
            if low != s {
                for w in 0..words {
                    labels[s * words + w] = labels[low * words + w] | labels[(s ^ low) * words + w];
                }
            }
        }
        let mut out = vec![0u64; words];
        for &l in &p.output {
            out[l / 64] |= 1 << (l % 64);
        }
        let mut legs = vec![0u64; subsets * words];
        let mut legs_size = vec![1.0; subsets];
        for s in 1..subsets {
            // An input still holds every label; only results drop dead ones.
            let single = s.is_power_of_two();
            let mut size = 1.0;
            for w in 0..words {
                let mut bits = labels[s * words + w];
                if !single {
                    bits &= out[w] | labels[(full ^ s) * words + w];
                }
                legs[s * words + w] = bits;
                size *= bits_size(p, w, bits);
            }
            legs_size[s] = size;
        }
        Tables {
            p,
            n,
            words,
            legs,
            legs_size,
            monotone: p.sizes.iter().all(|&s| s >= 1.0),
        }
    }

    fn legs(&self, s: usize) -> &[u64] {
        &self.legs[s * self.words..(s + 1) * self.words]
    }
}

/// Product of the sizes of the labels set in word `w`.
fn bits_size(p: &Problem, w: usize, mut bits: u64) -> f64 {
    let mut size = 1.0;
    while bits != 0 {
        size *= p.sizes[w * 64 + bits.trailing_zeros() as usize];
        bits &= bits - 1;
    }
    size
}

struct Dp<'t, 'a> {
    t: &'t Tables<'a>,
    limit: Option<f64>,
    /// A summing step with batch labels costs `1 + batch_weight` times its flops.
    batch_weight: f64,
    /// Whether a tree is known for the subset, its flops, its largest
    /// intermediate, and the part `A` of its last split.
    ok: Vec<bool>,
    flops: Vec<f64>,
    largest: Vec<f64>,
    split: Vec<u32>,
}

impl<'t, 'a> Dp<'t, 'a> {
    fn new(t: &'t Tables<'a>, limit: Option<f64>) -> Self {
        let subsets = 1usize << t.n;
        let mut dp = Dp {
            t,
            limit,
            batch_weight: 0.0,
            ok: vec![false; subsets],
            flops: vec![0.0; subsets],
            largest: vec![0.0; subsets],
            split: vec![0; subsets],
        };
        for i in 0..t.n {
            dp.ok[1 << i] = true;
        }
        dp
    }

    /// Fills the tables; `Err(splits visited)` when the deadline passes.
    fn run(&mut self, deadline: Option<Instant>) -> Result<(), u64> {
        let t = self.t;
        let full = (1usize << t.n) - 1;
        let mut visited: u64 = 0;
        let mut next_check = DEADLINE_STRIDE;
        for s in 1..=full {
            let low = s & s.wrapping_neg();
            if low == s {
                continue;
            }
            let size_s = t.legs_size[s];
            if self.limit.is_some_and(|lim| size_s > lim) {
                continue;
            }
            let rest = s ^ low;
            // One subset has at most 2^19 splits: checking between subsets
            // keeps the overrun to milliseconds and the inner loop lean.
            visited += (1u64 << rest.count_ones()) - 1;
            if visited >= next_check {
                next_check = visited + DEADLINE_STRIDE;
                if deadline.is_some_and(|d| Instant::now() > d) {
                    return Err(visited);
                }
            }
            let legs_s = t.legs(s);
            // Submasks of `rest`, descending; `A` always holds the lowest input.
            let mut sub = rest;
            while sub != 0 {
                sub = (sub - 1) & rest;
                let a = low | sub;
                let b = s ^ a;
                if !(self.ok[a] && self.ok[b]) {
                    continue;
                }
                let base = self.flops[a] + self.flops[b];
                if self.ok[s] {
                    let mut bound = base;
                    if t.monotone {
                        bound += size_s.max(t.legs_size[a]).max(t.legs_size[b]);
                    }
                    if bound.total_cmp(&self.flops[s]).is_gt() {
                        continue;
                    }
                }
                let (la, lb) = (t.legs(a), t.legs(b));
                let mut step = 1.0;
                let mut summed = false;
                for w in 0..t.words {
                    let u = la[w] | lb[w];
                    summed |= u != legs_s[w];
                    step *= bits_size(t.p, w, u);
                }
                if summed {
                    step *= 2.0;
                    if self.batch_weight > 0.0
                        && (0..t.words).any(|w| la[w] & lb[w] & legs_s[w] != 0)
                    {
                        step *= 1.0 + self.batch_weight;
                    }
                }
                let total = base + step;
                let largest = size_s.max(self.largest[a]).max(self.largest[b]);
                let better = !self.ok[s]
                    || total
                        .total_cmp(&self.flops[s])
                        .then(largest.total_cmp(&self.largest[s]))
                        .is_lt();
                if better {
                    self.ok[s] = true;
                    self.flops[s] = total;
                    self.largest[s] = largest;
                    self.split[s] = a as u32;
                }
            }
        }
        Ok(())
    }
}

/// Appends the steps building subset `s` in post-order (the part holding the
/// lowest input first) and returns the SSA id of its result.
fn emit(s: usize, split: &[u32], next_id: &mut usize, path: &mut Vec<(usize, usize)>) -> usize {
    if s.is_power_of_two() {
        return s.trailing_zeros() as usize;
    }
    let a = split[s] as usize;
    let ia = emit(a, split, next_id, path);
    let ib = emit(s ^ a, split, next_id, path);
    path.push((ia, ib));
    *next_id += 1;
    *next_id - 1
}
