//! Randomised greedy contraction, the workhorse of hyper search.
//!
//! Every pair of live tensors sharing a label is a candidate scored by
//! `size(result) - costmod * (size(a) + size(b))` (opt_einsum's greedy is
//! `costmod = 1`). With a temperature, each candidate's score (taken in a
//! signed log scale so that one temperature suits every network) is
//! perturbed by Gumbel noise when it is queued: taking the best perturbed
//! score samples pairs from a Boltzmann distribution without re-scoring.
//! Unlike opt_einsum's greedy every connected pair stays queued, not only each
//! tensor's best partner, so the noise has real choices to make.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::rng::Rng;
use super::tree::{Ctx, Legs};

#[derive(Clone, Copy, Debug)]
pub(crate) struct GreedyParams {
    pub costmod: f64,
    pub temperature: f64,
}

/// Labels held by more inputs than this are not used to find candidate
/// pairs (they would make the queue quadratic); other labels or the final
/// outer products still join their holders.
const MAX_DEGREE: usize = 64;

#[derive(PartialEq)]
struct Cand {
    score: f64,
    a: u32,
    b: u32,
}
impl Eq for Cand {}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then((self.a, self.b).cmp(&(o.a, o.b)))
    }
}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

fn slog(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

/// One randomised greedy tree for `ctx` (which may be a sub-network made by
/// [`Ctx::sub`]), as SSA pairs.
pub(crate) fn random_greedy(ctx: &Ctx, params: GreedyParams, rng: &mut Rng) -> Vec<(usize, usize)> {
    let n = ctx.n;
    if n < 2 {
        return Vec::new();
    }
    let mut legs: Vec<Legs> = (0..n).map(|i| ctx.leaf_legs(i)).collect();
    let mut size: Vec<f64> = legs.iter().map(|l| ctx.legs_size(l)).collect();
    let mut live = vec![true; n];
    let mut holders: Vec<Vec<u32>> = vec![Vec::new(); ctx.sizes.len()];
    for (i, t) in ctx.inputs.iter().enumerate() {
        for &l in t {
            holders[l as usize].push(i as u32);
        }
    }
    // A label held by every input can only be summed at the very end.
    let usable: Vec<bool> = (0..ctx.sizes.len())
        .map(|l| {
            let d = ctx.total[l] as usize;
            (2..=MAX_DEGREE).contains(&d) && d < n
        })
        .collect();
    let mut heap = BinaryHeap::new();
    let mut scratch = Legs::new();
    let mut score = |a: usize, b: usize, legs: &[Legs], size: &[f64], rng: &mut Rng| {
        let (_, s12) = ctx.merge(&legs[a], &legs[b], &mut scratch);
        let mut s = slog(s12 - params.costmod * (size[a] + size[b]));
        if params.temperature > 0.0 {
            s -= params.temperature * rng.gumbel();
        }
        Reverse(Cand {
            score: s,
            a: a as u32,
            b: b as u32,
        })
    };
    let mut stamp = vec![u32::MAX; 2 * n];
    for (l, hs) in holders.iter().enumerate() {
        if !usable[l] {
            continue;
        }
        for (i, &a) in hs.iter().enumerate() {
            for &b in &hs[i + 1..] {
                heap.push(score(a as usize, b as usize, &legs, &size, rng));
            }
        }
    }
    let mut path = Vec::with_capacity(n - 1);
    while let Some(Reverse(c)) = heap.pop() {
        let (a, b) = (c.a as usize, c.b as usize);
        if !(live[a] && live[b]) {
            continue;
        }
        live[a] = false;
        live[b] = false;
        let mut new = Legs::new();
        let (_, s) = ctx.merge(&legs[a], &legs[b], &mut new);
        let id = legs.len();
        path.push((a, b));
        for t in [a, b] {
            for &(l, _) in &legs[t] {
                holders[l as usize].retain(|&h| h as usize != t);
            }
        }
        for &(l, _) in &new {
            holders[l as usize].push(id as u32);
        }
        legs.push(new);
        size.push(s);
        live.push(true);
        let mut neighbours = Vec::new();
        for &(l, _) in &legs[id] {
            if !usable[l as usize] {
                continue;
            }
            for &h in &holders[l as usize] {
                let h = h as usize;
                if h != id && stamp[h] != id as u32 {
                    stamp[h] = id as u32;
                    neighbours.push(h);
                }
            }
        }
        for h in neighbours {
            heap.push(score(h, id, &legs, &size, rng));
        }
    }
    // Whatever is left is joined by outer products, smallest first.
    let mut rest: BinaryHeap<Reverse<(OrdF64, usize)>> = (0..legs.len())
        .filter(|&i| live[i])
        .map(|i| Reverse((OrdF64(size[i]), i)))
        .collect();
    while rest.len() > 1 {
        let (Some(Reverse((_, a))), Some(Reverse((_, b)))) = (rest.pop(), rest.pop()) else {
            break;
        };
        let mut new = Legs::new();
        let (_, s) = ctx.merge(&legs[a], &legs[b], &mut new);
        path.push((a.min(b), a.max(b)));
        rest.push(Reverse((OrdF64(s), legs.len())));
        legs.push(new);
        size.push(s);
    }
    path
}

#[derive(Clone, Copy, PartialEq)]
struct OrdF64(f64);
impl Eq for OrdF64 {}
impl Ord for OrdF64 {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
