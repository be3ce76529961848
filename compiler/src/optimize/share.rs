//! Common sub-products across products: `A B C` and `A B D` (in one statement or in
//! several) can both be built on one `A B`, computed once.
//!
//! Hash-consing already shares equal terms; this rule *creates* the shared term when the
//! two products only overlap, which fixes part of their contraction orders. So it is
//! offered only between the values of two statements (inside one product the order
//! search already finds the best grouping, and offering every overlap there grows the
//! e-graph for nothing), and the extraction (which discounts a class by the number of
//! statements reaching it) decides.

use super::lang::ENode;
use super::rules::{flattest, private_sums, EG};
use crate::ir::IndexId;
use egg::Id;

pub const SHARE: &str = "share-subproduct";

/// At most this many other products are compared with one product node...
const MAX_PARTNERS: usize = 16;
/// ...and at most this many shared sub-products are built from it.
const MAX_SHARES: usize = 4;

pub fn filter(n: &ENode) -> bool {
    n.as_product()
        .is_some_and(|(f, s)| f.len() >= 3 && !s.is_empty())
}

/// In `Product{F, S}`, a statement's value, with a partner product `Product{F', S'}`, the
/// value of another statement,
/// let `G = F ∩ F'` (e-classes; at least two, fewer than both) and `I` the indices of
/// `S ∩ S'` that are free in `G` and in no other factor of either product. Then
/// `Product{F, S} = Product{[Product{G, I}] ++ (F \ G), S \ I}`.
///
/// Sound by distributivity, as for push-sum: every index of `I` occurs only in `G` within
/// this product, so the other factors are constants for that sum. `I` must be non-empty
/// (the sub-product saves a summation both products would otherwise do over a larger
/// space), and the partner conditions make the same `Product{G, I}` node valid in the
/// partner, which builds it too when the rule visits the partner's class.
pub fn share(eg: &mut EG, class: Id, node: &ENode) -> Vec<Id> {
    let Some((factors, summed)) = node.as_product() else {
        return Vec::new();
    };
    let roots: Vec<Id> = eg
        .analysis
        .statement_roots
        .iter()
        .map(|&r| eg.find(r))
        .collect();
    if !roots.contains(&class) {
        return Vec::new();
    }
    // Only the flattest product of each statement (most factors; the least node among
    // equals) is compared: the sub-products this rule builds are less flat, so they never
    // seed further sharing, which bounds the rule to a few nodes per pair of statements.
    if flattest(eg, class).as_ref() != Some(node) {
        return Vec::new();
    }
    let factors: Vec<Id> = factors.iter().map(|&f| eg.find(f)).collect();
    let summed = summed.to_vec();
    // Partners: other product nodes that read one of our factors.
    let mut partners: Vec<(Vec<Id>, Vec<IndexId>)> = Vec::new();
    for &f in &factors {
        let parents: Vec<Id> = eg[f].parents().map(|p| eg.find(p)).collect();
        for p in parents {
            if p == class || !roots.contains(&p) {
                continue;
            }
            if let Some((pf, ps)) = flattest(eg, p).as_ref().and_then(ENode::as_product) {
                let pf: Vec<Id> = pf.iter().map(|&c| eg.find(c)).collect();
                if !partners.iter().any(|(q, s)| *q == pf && s == ps) {
                    partners.push((pf, ps.to_vec()));
                }
            }
            if partners.len() >= MAX_PARTNERS {
                break;
            }
        }
    }
    partners.truncate(MAX_PARTNERS);
    let mut out = Vec::new();
    let mut done: Vec<(Vec<Id>, Vec<IndexId>)> = Vec::new();
    for (pf, ps) in &partners {
        let g: Vec<Id> = factors.iter().copied().filter(|c| pf.contains(c)).collect();
        let mut gd = g.clone();
        gd.dedup();
        if gd.len() != g.len() || g.len() < 2 || g.len() >= factors.len() || g.len() >= pf.len() {
            continue;
        }
        let others: Vec<Id> = factors
            .iter()
            .chain(pf.iter())
            .copied()
            .filter(|c| !g.contains(c))
            .collect();
        let inner: Vec<IndexId> = private_sums(eg, &summed, &g, &others)
            .into_iter()
            .filter(|s| ps.contains(s))
            .collect();
        if inner.is_empty() || done.iter().any(|(dg, di)| *dg == g && *di == inner) {
            continue;
        }
        done.push((g.clone(), inner.clone()));
        let sub = eg.add(ENode::Product {
            summed: inner.clone(),
            factors: g.clone(),
        });
        let mut outer: Vec<Id> = factors.iter().copied().filter(|c| !g.contains(c)).collect();
        outer.push(sub);
        out.push(
            eg.add(ENode::Product {
                summed: summed
                    .iter()
                    .copied()
                    .filter(|s| !inner.contains(s))
                    .collect(),
                factors: outer,
            }),
        );
        if out.len() >= MAX_SHARES {
            break;
        }
    }
    out
}
