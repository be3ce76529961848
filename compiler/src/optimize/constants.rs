//! Constant folding of weight-only sub-products into the precomputation stage.
//!
//! A product over constant inputs (fixed weights) and variable ones can contract the
//! weights among themselves first; the runtime computes that part once
//! (`exec::prepare`), and the cost model prices it as paid once. For a CP or Tucker
//! weight `W = Σ_r λ_r A_r ⊗ B_r ⊗ ...` used by a layer this is the *materialised* form,
//! next to the *factorised* one that the flattened product already is; extraction picks
//! whichever costs less per call (the crossover in the rank is tested).

use super::lang::ENode;
use super::rules::{flattest, private_sums, EG};
use egg::Id;

pub const FOLD: &str = "fold-constants";

pub fn filter(n: &ENode) -> bool {
    n.as_product().is_some_and(|(f, _)| f.len() >= 3)
}

/// In `Product{F, S}` with constant factors `C` (at least two) and at least one variable
/// factor: `Product{F, S} = Product{[Product{C, S_C}] ++ (F \ C), S \ S_C}`, where `S_C`
/// holds the indices of `S` free in no variable factor.
///
/// Sound by distributivity as for push-sum: every index of `S_C` occurs only in `C`, so
/// the variable factors are constants for that sum; each index of `S \ S_C` is still free
/// in a variable factor. The new sub-product depends on constants only, so its class is
/// constant (paid once).
///
/// Only the class's flattest product is folded ([`flattest`]), once.
pub fn fold(eg: &mut EG, class: Id, node: &ENode) -> Vec<Id> {
    let Some((factors, summed)) = node.as_product() else {
        return Vec::new();
    };
    if flattest(eg, class).as_ref() != Some(node) {
        return Vec::new();
    }
    let factors: Vec<Id> = factors.iter().map(|&f| eg.find(f)).collect();
    let (consts, vars): (Vec<Id>, Vec<Id>) = factors.iter().partition(|&&f| eg[f].data.constant);
    if consts.len() < 2 || vars.is_empty() {
        return Vec::new();
    }
    let inner = private_sums(eg, summed, &consts, &vars);
    let sub = eg.add(ENode::Product {
        summed: inner.clone(),
        factors: consts,
    });
    let mut outer = vars;
    outer.push(sub);
    vec![eg.add(ENode::Product {
        summed: summed
            .iter()
            .copied()
            .filter(|s| !inner.contains(s))
            .collect(),
        factors: outer,
    })]
}
