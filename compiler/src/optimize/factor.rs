//! Factoring a common operand out of a sum of products, and its converse, distributing a
//! product over a sum (expansion), within a budget.
//!
//! `A[i,j] B[j,k] + A[i,j] C[j,k]` is two matrix products; `A[i,j] (B[j,k] + C[j,k])` is
//! one plus an addition. Factoring always shrinks the expression, so it is always
//! offered; expanding can multiply the work, so it is offered only for small sums and
//! products, and the cost model decides.

use super::lang::{union_sorted, ENode};
use super::rules::{summing_factor_candidates, EG};
use crate::ir::IndexId;
use egg::Id;

pub const FACTOR: &str = "factor";
pub const DISTRIBUTE: &str = "distribute";

/// At most this many terms in a sum that [`distribute`] expands...
const MAX_DISTRIBUTE_TERMS: usize = 4;
/// ...and at most this many factors in the product it expands.
const MAX_DISTRIBUTE_FACTORS: usize = 8;
/// At most this many product nodes of the first term are tried as factoring patterns.
const MAX_PATTERNS: usize = 4;

pub fn factor_filter(n: &ENode) -> bool {
    matches!(n, ENode::Add(terms) if terms.len() >= 2)
}

/// `Add(Product{[g] ++ R_1, S}, ..., Product{[g] ++ R_n, S})
///    = Product{[g, Add(Product{R_1, {}}, ..., Product{R_n, {}})], S}`.
///
/// Sound when every term is a product over the same summed set `S` that has the class
/// `g` among its factors: `Σ_S g·R_1 + ... + Σ_S g·R_n = Σ_S g·(R_1 + ... + R_n)` by
/// linearity, the addition broadcasting each `R_k` over the indices it lacks exactly as
/// the outer addition broadcast the terms. Each valid term has every index of `S` free in
/// `g` or in its `R_k`, so the inner sum adds no multiplicity. The free indices agree:
/// both sides have `(free(g) ∪ ⋃ free(R_k)) \ S`. One common factor is taken out per
/// application; the next comes out of the inner `Add` on a later iteration.
pub fn factor(eg: &mut EG, _class: Id, node: &ENode) -> Vec<Id> {
    let ENode::Add(terms) = node else {
        return Vec::new();
    };
    let terms: Vec<Id> = terms.iter().map(|&t| eg.find(t)).collect();
    let products = |eg: &EG, t: Id| -> Vec<(Vec<Id>, Vec<IndexId>)> {
        eg[t]
            .nodes
            .iter()
            .filter_map(ENode::as_product)
            .map(|(f, s)| (f.iter().map(|&c| eg.find(c)).collect(), s.to_vec()))
            .collect()
    };
    let first = products(eg, terms[0]);
    let mut out = Vec::new();
    for (f0, s0) in first.iter().take(MAX_PATTERNS) {
        let mut candidates: Vec<Id> = f0.clone();
        candidates.dedup();
        for g in candidates {
            // Per term, the first product node over `s0` that has `g` as a factor.
            let mut rests: Vec<Vec<Id>> = Vec::with_capacity(terms.len());
            for &t in &terms {
                let found = products(eg, t)
                    .into_iter()
                    .find(|(f, s)| s == s0 && f.contains(&g));
                match found {
                    Some((mut f, _)) => {
                        let at = f.iter().position(|&c| c == g).expect("found above");
                        f.remove(at);
                        rests.push(f);
                    }
                    None => break,
                }
            }
            if rests.len() != terms.len() || rests.iter().any(|r| r.is_empty()) {
                continue;
            }
            let inner: Vec<Id> = rests
                .into_iter()
                .map(|r| match r.as_slice() {
                    [one] => *one,
                    _ => eg.add(ENode::Product {
                        summed: Vec::new(),
                        factors: r,
                    }),
                })
                .collect();
            let sum = eg.add(ENode::Add(inner));
            out.push(eg.add(ENode::Product {
                summed: s0.clone(),
                factors: vec![g, sum],
            }));
            // One factoring per pattern keeps the growth linear in the sum's size.
            break;
        }
    }
    out
}

pub fn distribute_filter(n: &ENode) -> bool {
    n.as_product()
        .is_some_and(|(f, _)| !f.is_empty() && f.len() <= MAX_DISTRIBUTE_FACTORS)
}

/// `Product{[Add(T_1, ..., T_n)] ++ R, S} = Add(Product{[T_1] ++ R, S}, ..., Product{[T_n] ++ R, S})`.
///
/// Sound by linearity of the sum and distributivity when every index of `S` is free in
/// `T_k` or in `R` for each `k` (otherwise `Σ_s` over a term lacking `s` would count it
/// `|s|` times, and the node would break the IR's rule that summed indices are free in a
/// factor). Free indices agree: `(⋃ free(T_k) ∪ free(R)) \ S` on both sides. This is how
/// a sum is pushed into the terms of an addition (`R` empty). Only the first sum factor
/// of the product is expanded, only for sums of at most [`MAX_DISTRIBUTE_TERMS`] terms
/// and products of at most [`MAX_DISTRIBUTE_FACTORS`] factors, and only when the
/// product sums something (expanding a plain product only repeats work).
pub fn distribute(eg: &mut EG, _class: Id, node: &ENode) -> Vec<Id> {
    let Some((summed, candidates)) = summing_factor_candidates(eg, node, |n| match n {
        ENode::Add(t) if t.len() >= 2 && t.len() <= MAX_DISTRIBUTE_TERMS => Some(t.clone()),
        _ => None,
    }) else {
        return Vec::new();
    };
    for (rest, terms) in candidates {
        let rest_free = union_sorted(rest.iter().map(|&c| &eg[c].data.free[..]));
        let covered = terms.iter().all(|&t| {
            summed.iter().all(|s| {
                rest_free.binary_search(s).is_ok() || eg[t].data.free.binary_search(s).is_ok()
            })
        });
        if !covered {
            continue;
        }
        let parts: Vec<Id> = terms
            .iter()
            .map(|&t| {
                let mut fs = rest.clone();
                fs.push(eg.find(t));
                eg.add(ENode::Product {
                    summed: summed.clone(),
                    factors: fs,
                })
            })
            .collect();
        return vec![eg.add(ENode::Add(parts))];
    }
    Vec::new()
}
