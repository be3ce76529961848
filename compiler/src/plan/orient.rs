//! The orientation of a product's last GEMM: which side of it is the transposed one.
//!
//! Why: a row-major product `C[m,n] = A[m,k] · B[k,n]` ("NN": each operand's unit-stride
//! axis is the one the next matrix walks) runs faster in both GEMM libraries the runtime
//! calls than the same product with `B` stored `[n,k]` ("NT"). Measured on the AVX-512
//! VM, one thread (`cargo bench -p einc-runtime --bench gemm_backends -- "long k"`, f32,
//! 256×4096×256): OpenBLAS 5.50 ms NN against 5.92 NT, the gemm crate 5.10 against 7.85;
//! f64, the faster library each: 10.5 against 11.3 ms; 512×1024×512 f32 4.8 against 5.4.
//!
//! [`super::Builder::relayout`] orders a product's own intermediate `x` for its consumer
//! as `[kept labels, summed labels]`. When the consumer's other operand `o` is an input
//! (its layout is given) stored with the summed labels last, `[free_o, K]` (bilinear's
//! `jkl` in `ik,jkl,il->ij`), that makes the step NT whatever the result's order. Laying
//! `x` out as `[K, free_x]` and the result as `[free_o, free_x]` makes it NN (`o` is the
//! left matrix); where the statement wants another order, the planner's closing
//! permutation moves the result, which at `K ≥ MIN_K` is a small part of the work.
//! Only the last step of a statement's root product is turned (an earlier step's result
//! order was chosen for its own consumer; a product inside a map has no closing
//! permutation), in real sum-product plans (`Builder::relayout` checks both).

use super::{Op, Step};
use crate::ir::IndexId;

/// Smallest summed length at which a step is turned: the result's closing permutation
/// costs one pass over `m·n` elements against the product's `m·n·k` multiply-adds.
const MIN_K: f64 = 256.0;
/// Smallest side (rows, columns) of a turned product: the gain measured is on large
/// matrices, where packing is a small part of the time.
const MIN_SIDE: f64 = 64.0;

/// The new layout of the product's last step `c` and of its operand `x`.
#[derive(Debug, PartialEq)]
pub(super) struct Turn {
    /// The step whose result is the operand laid out anew.
    pub x: usize,
    /// That operand's new order: the summed labels in the other operand's order, then
    /// its kept labels in the result's order.
    pub x_indices: Vec<IndexId>,
    /// The step's new result order: the other operand's kept labels, then `x`'s.
    pub result: Vec<IndexId>,
}

/// The NN orientation of `steps[c]`, a `Contract` whose operand from step `first` on (a
/// contraction of this product) can take any order and whose other operand (from before
/// `first`) is stored `[free, summed]`; `None` where the step is not of that form, is
/// small, or is NN already. `len` gives an index's length.
pub(super) fn turn(
    steps: &[Step],
    c: usize,
    first: usize,
    len: impl Fn(IndexId) -> f64,
) -> Option<Turn> {
    let Op::Contract { lhs, rhs } = steps[c].op else {
        return None;
    };
    let own = |v: usize| v >= first && matches!(steps[v].op, Op::Contract { .. });
    let (l, r) = (lhs.0 as usize, rhs.0 as usize);
    let (x, o) = match (own(l), own(r)) {
        (true, false) if l != r => (l, r),
        (false, true) if l != r => (r, l),
        _ => return None,
    };
    let (res, xi, oi) = (&steps[c].indices, &steps[x].indices, &steps[o].indices);
    // Every label of `o` is kept or summed with `x`, and likewise for `x` (a label only
    // one operand has would be summed away first), and no label is in all three (batch).
    let fits = |v: &[IndexId], w: &[IndexId]| v.iter().all(|i| res.contains(i) != w.contains(i));
    if !fits(oi, xi) || !fits(xi, oi) || oi.len() != super::dedup(oi).len() {
        return None;
    }
    let summed: Vec<IndexId> = oi.iter().copied().filter(|i| !res.contains(i)).collect();
    let split = oi.len() - summed.len();
    if summed.is_empty() || split == 0 || oi[split..] != summed[..] {
        return None;
    }
    let free_x: Vec<IndexId> = res.iter().copied().filter(|i| xi.contains(i)).collect();
    let product = |v: &[IndexId]| v.iter().map(|&i| len(i)).product::<f64>();
    if product(&summed) < MIN_K || product(&oi[..split]) < MIN_SIDE || product(&free_x) < MIN_SIDE {
        return None;
    }
    // The closing permutation holds the result twice, beside nothing else: no more than
    // the GEMM held (`x` and the result) where the result is not larger than `x`.
    if product(res) > product(xi) {
        return None;
    }
    let x_indices = [&summed[..], &free_x[..]].concat();
    let result = [&oi[..split], &free_x[..]].concat();
    if (x_indices == *xi && result == *res) || !keeps_classes(steps, x, &x_indices) {
        return None;
    }
    Some(Turn {
        x,
        x_indices,
        result,
    })
}

/// Whether `new`, an order of step `x`'s result, keeps each class of its labels (from
/// its left operand only, its right operand only, both) in one run, so that the step's
/// own product still writes a plain matrix (or batch of matrices). True for a step that
/// is not a contraction.
pub(super) fn keeps_classes(steps: &[Step], x: usize, new: &[IndexId]) -> bool {
    let Op::Contract { lhs, rhs } = steps[x].op else {
        return true;
    };
    let (l, r) = (
        &steps[lhs.0 as usize].indices,
        &steps[rhs.0 as usize].indices,
    );
    let class = |i: &IndexId| (l.contains(i), r.contains(i));
    let mut runs: Vec<(bool, bool)> = Vec::new();
    for i in new {
        if runs.last() != Some(&class(i)) {
            runs.push(class(i));
        }
    }
    runs.iter().enumerate().all(|(k, r)| !runs[..k].contains(r))
}
