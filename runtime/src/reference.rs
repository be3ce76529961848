//! The correctness oracle: a naive einsum over `Complex<f64>`.
//!
//! It deliberately does nothing clever: it walks every assignment of every
//! label, multiplies the operand entries and accumulates into the output entry.
//! Its cost is the product of all label sizes, so it is meant for small tests.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use num_complex::Complex64;
use std::collections::BTreeMap;

/// Naive einsum: `out[out_idx] = Σ_{other labels} Π_ops op[labels]`.
///
/// * `operands`: each view with one label per axis; labels may repeat inside
///   an operand (a diagonal).
/// * `out_idx`: the output labels (normally distinct; a repeated output label
///   simply writes the diagonal of the output).
/// * `sizes`: the size of every label the operands and the output use; the
///   sum runs over all labels in `sizes`, including any no operand uses
///   (each such label multiplies the result by its size, as einsum semantics
///   over a declared index would).
///
/// An operand axis of length 1 whose label has a larger size is broadcast
/// (always read at index 0), like numpy's size-1 broadcasting.
///
/// # Panics
/// If an operand's label count differs from its rank, a label has no entry in
/// `sizes`, or an axis length is neither the label's size nor 1.
pub fn reference_einsum(
    operands: &[(ArrayViewD<Complex64>, Vec<u32>)],
    out_idx: &[u32],
    sizes: &BTreeMap<u32, usize>,
) -> ArrayD<Complex64> {
    let labels: Vec<u32> = sizes.keys().copied().collect();
    let dims: Vec<usize> = sizes.values().copied().collect();
    let slot = |l: &u32| {
        labels
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("label {l} has no size"))
    };
    let out_slots: Vec<usize> = out_idx.iter().map(slot).collect();
    let out_shape: Vec<usize> = out_slots.iter().map(|&s| dims[s]).collect();
    let mut out = ArrayD::<Complex64>::zeros(IxDyn(&out_shape));

    // For every operand axis: the slot of its label, or None when the axis is
    // broadcast (length 1 against a larger size) and always read at index 0.
    let plans: Vec<Vec<Option<usize>>> = operands
        .iter()
        .map(|(a, idx)| {
            assert_eq!(a.ndim(), idx.len(), "one label per axis");
            idx.iter()
                .zip(a.shape())
                .map(|(l, &len)| {
                    let s = slot(l);
                    if len == dims[s] {
                        Some(s)
                    } else {
                        assert_eq!(
                            len, 1,
                            "axis of label {l} has length {len}, size is {}",
                            dims[s]
                        );
                        None
                    }
                })
                .collect()
        })
        .collect();
    if dims.contains(&0) {
        return out;
    }

    let mut assign = vec![0usize; labels.len()];
    let mut op_ix: Vec<Vec<usize>> = operands.iter().map(|(a, _)| vec![0; a.ndim()]).collect();
    let mut out_ix = vec![0usize; out_slots.len()];
    loop {
        let mut prod = Complex64::new(1.0, 0.0);
        for (((a, _), plan), ix) in operands.iter().zip(&plans).zip(&mut op_ix) {
            for (k, p) in plan.iter().enumerate() {
                ix[k] = p.map_or(0, |s| assign[s]);
            }
            prod *= a[&ix[..]];
        }
        for (k, &s) in out_slots.iter().enumerate() {
            out_ix[k] = assign[s];
        }
        out[&out_ix[..]] += prod;

        // Odometer step over all labels; done after the last assignment.
        let mut d = labels.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            assign[d] += 1;
            if assign[d] < dims[d] {
                break;
            }
            assign[d] = 0;
        }
    }
}

/// [`reference_einsum`] for real operands; returns the real part.
pub fn reference_einsum_f64(
    operands: &[(ArrayViewD<f64>, Vec<u32>)],
    out_idx: &[u32],
    sizes: &BTreeMap<u32, usize>,
) -> ArrayD<f64> {
    let owned: Vec<(ArrayD<Complex64>, Vec<u32>)> = operands
        .iter()
        .map(|(a, idx)| (a.mapv(|x| Complex64::new(x, 0.0)), idx.clone()))
        .collect();
    let views: Vec<(ArrayViewD<Complex64>, Vec<u32>)> = owned
        .iter()
        .map(|(a, idx)| (a.view(), idx.clone()))
        .collect();
    reference_einsum(&views, out_idx, sizes).mapv(|z| z.re)
}

/// Naive einsum in another semiring: `out[out_idx] = ⊕_{other labels} Σ_ops op[labels]`
/// with `⊕` = `add` (`Max`, `Min` or `LogSumExp`; `Sum` gives the sum of sums). Labels,
/// sizes and broadcasting as in [`reference_einsum`]. Every term of an output element is
/// collected first and then reduced, so the oracle shares no arithmetic with the kernels.
pub fn reference_semiring(
    operands: &[(ArrayViewD<f64>, Vec<u32>)],
    out_idx: &[u32],
    sizes: &BTreeMap<u32, usize>,
    add: crate::kernels::ReduceOp,
) -> ArrayD<f64> {
    use crate::kernels::ReduceOp;
    let labels: Vec<u32> = sizes.keys().copied().collect();
    let dims: Vec<usize> = sizes.values().copied().collect();
    let slot = |l: &u32| {
        labels
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("label {l} has no size"))
    };
    let out_shape: Vec<usize> = out_idx.iter().map(|l| dims[slot(l)]).collect();
    let mut terms: ArrayD<Vec<f64>> = ArrayD::from_elem(IxDyn(&out_shape), Vec::new());
    if !dims.contains(&0) {
        let mut assign = vec![0usize; labels.len()];
        'all: loop {
            let term: f64 = operands
                .iter()
                .map(|(a, idx)| {
                    let ix: Vec<usize> = idx
                        .iter()
                        .zip(a.shape())
                        .map(|(l, &len)| if len == 1 { 0 } else { assign[slot(l)] })
                        .collect();
                    a[&ix[..]]
                })
                .sum();
            let o: Vec<usize> = out_idx.iter().map(|l| assign[slot(l)]).collect();
            terms[&o[..]].push(term);
            let mut d = labels.len();
            loop {
                if d == 0 {
                    break 'all;
                }
                d -= 1;
                assign[d] += 1;
                if assign[d] < dims[d] {
                    break;
                }
                assign[d] = 0;
            }
        }
    }
    terms.mapv(|t| match add {
        ReduceOp::Sum => t.iter().sum(),
        ReduceOp::Max => t.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ReduceOp::Min => t.iter().copied().fold(f64::INFINITY, f64::min),
        ReduceOp::LogSumExp => {
            let m = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if m.is_finite() {
                m + t.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
            } else {
                m
            }
        }
    })
}

/// The size of every label used by `operands`: the largest axis length seen
/// for it (so length-1 axes broadcast against longer ones).
pub fn label_sizes<T>(operands: &[(ArrayViewD<T>, Vec<u32>)]) -> BTreeMap<u32, usize> {
    let mut sizes = BTreeMap::new();
    for (a, idx) in operands {
        for (&l, &len) in idx.iter().zip(a.shape()) {
            let e = sizes.entry(l).or_insert(len);
            *e = (*e).max(len);
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn c(x: f64) -> Complex64 {
        Complex64::new(x, 0.0)
    }

    #[test]
    fn matmul_trace_diag() {
        let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
        let b = array![[5.0, 6.0], [7.0, 8.0]].into_dyn();
        let ops = [(a.view(), vec![0, 1]), (b.view(), vec![1, 2])];
        let sizes = label_sizes(&ops);
        let mm = reference_einsum_f64(&ops, &[0, 2], &sizes);
        assert_eq!(mm, array![[19.0, 22.0], [43.0, 50.0]].into_dyn());
        let tr = reference_einsum_f64(
            &[(a.view(), vec![0, 0])],
            &[],
            &label_sizes(&[(a.view(), vec![0, 0])]),
        );
        assert_eq!(tr[IxDyn(&[])], 5.0);
        let dg = reference_einsum_f64(&[(a.view(), vec![3, 3])], &[3], &BTreeMap::from([(3, 2)]));
        assert_eq!(dg, array![1.0, 4.0].into_dyn());
    }

    #[test]
    fn broadcast_size_one_and_complex() {
        let a = array![[c(1.0)], [Complex64::new(0.0, 1.0)]].into_dyn(); // i=2, j=1
        let b = array![[c(1.0), c(2.0), c(3.0)]].into_dyn(); // i=1, j=3
        let sizes = BTreeMap::from([(0, 2), (1, 3)]);
        let out = reference_einsum(
            &[(a.view(), vec![0, 1]), (b.view(), vec![0, 1])],
            &[0, 1],
            &sizes,
        );
        assert_eq!(out[[1, 2]], Complex64::new(0.0, 3.0));
        assert_eq!(out[[0, 1]], c(2.0));
    }

    #[test]
    fn empty_scalar_and_unused_label() {
        let e = ArrayD::<f64>::zeros(IxDyn(&[0, 3]));
        let out = reference_einsum_f64(
            &[(e.view(), vec![0, 1])],
            &[1],
            &BTreeMap::from([(0, 0), (1, 3)]),
        );
        assert_eq!(out, ArrayD::zeros(IxDyn(&[3])));
        let s = ArrayD::from_elem(IxDyn(&[]), 2.0);
        let out = reference_einsum_f64(
            &[(s.view(), vec![]), (s.view(), vec![])],
            &[],
            &BTreeMap::new(),
        );
        assert_eq!(out[IxDyn(&[])], 4.0);
        // A label in `sizes` that no operand uses multiplies by its size.
        let out = reference_einsum_f64(&[(s.view(), vec![])], &[], &BTreeMap::from([(9, 3)]));
        assert_eq!(out[IxDyn(&[])], 6.0);
    }
}
