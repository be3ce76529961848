//! Deferring a normaliser past a contraction: attention's
//! `O = Σ_j softmax_j(S)·V = Σ_j (E / Z)·V` with `Z = Σ_j E` becomes `(Σ_j E·V) / Z`,
//! dividing the small result instead of the large probability tensor.

use super::lang::ENode;
use super::rules::{summing_factor_candidates, EG};
use crate::ir::MapOp;
use egg::Id;

pub const DEFER_DIV: &str = "defer-division";

pub fn filter(n: &ENode) -> bool {
    n.as_product().is_some_and(|(_, s)| !s.is_empty())
}

/// `Product{[Map div(x, z)] ++ R, S} = Map div(Product{[x] ++ R, S}, z)` when no index
/// of `S` is free in `z`.
///
/// Sound because `z` is then the same for every term of the sum:
/// `Σ_S (x / z)·R = (Σ_S x·R) / z` (multiplication by `1/z` distributes over the sum;
/// floating-point results differ only by rounding). Every index of `S` stays free in `x`
/// or `R` (it was free in `x / z` or `R`, and not in `z`). Free indices agree:
/// `(free(x) ∪ free(z) ∪ free(R)) \ S` with `free(z) ∩ S = ∅`. Only the first such
/// factor of a product is moved per application; a product that sums nothing gains
/// nothing from it and is left alone.
pub fn defer_division(eg: &mut EG, _class: Id, node: &ENode) -> Vec<Id> {
    let Some((summed, candidates)) = summing_factor_candidates(eg, node, |n| match n {
        ENode::Map {
            op: MapOp::Div,
            args,
        } => Some((eg.find(args[0]), eg.find(args[1]))),
        _ => None,
    }) else {
        return Vec::new();
    };
    for (rest, (x, z)) in candidates {
        if summed
            .iter()
            .any(|s| eg[z].data.free.binary_search(s).is_ok())
        {
            continue;
        }
        let mut inner = rest;
        inner.push(x);
        let num = eg.add(ENode::Product {
            summed: summed.clone(),
            factors: inner,
        });
        return vec![eg.add(ENode::Map {
            op: MapOp::Div,
            args: vec![num, z],
        })];
    }
    Vec::new()
}
