//! Contractions in the max-plus, min-plus and log-sum-exp semirings.
//!
//! `out[b, m, n] = ⊕_k (a[b, m, k] + b[b, k, n])`, where `⊕` is max, min or the stable
//! log-sum-exp. There is no GEMM for these, so each operand is brought into
//! `[batch, m, k]` / `[batch, k, n]` standard layout and the `n` loop is innermost and
//! contiguous (it vectorises); rows of the result are spread over the rayon pool.
//! Unary reductions of these semirings are [`kernels::reduce`] with the matching op.

use crate::kernels::{self, ReduceOp, Scalar};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// Below this many `⊗` operations a contraction runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 16;

/// Pairwise contraction in the semiring whose `⊕` is `op` (`Max`, `Min` or `LogSumExp`;
/// `⊗` is `+`). Labels: `a_idx`/`b_idx` one per axis (repeats take a diagonal); labels of
/// both operands missing from `out_idx` are reduced with `⊕`, as are labels of one operand
/// missing from the other and from `out_idx`.
///
/// # Panics
/// If `op` is `Sum`, a label count differs from an operand's rank, or `out_idx` names a
/// label neither operand has.
pub fn contract<T: Scalar>(
    op: ReduceOp,
    a: ArrayViewD<T>,
    a_idx: &[u32],
    b: ArrayViewD<T>,
    b_idx: &[u32],
    out_idx: &[u32],
) -> ArrayD<T> {
    assert!(
        op != ReduceOp::Sum,
        "sum-product contractions go through GEMM"
    );
    // Diagonals, and labels only one side holds and the output drops, are reduced first.
    let keep = |own: &[u32], other: &[u32]| -> Vec<u32> {
        let mut k: Vec<u32> = Vec::new();
        for &l in own {
            if !k.contains(&l) && (other.contains(&l) || out_idx.contains(&l)) {
                k.push(l);
            }
        }
        k
    };
    let (ak, bk) = (keep(a_idx, b_idx), keep(b_idx, a_idx));
    let a_owned = (ak.as_slice() != a_idx).then(|| kernels::reduce(op, a.view(), a_idx, &ak));
    let b_owned = (bk.as_slice() != b_idx).then(|| kernels::reduce(op, b.view(), b_idx, &bk));
    let a = a_owned.as_ref().map_or(a, |x| x.view());
    let b = b_owned.as_ref().map_or(b, |x| x.view());

    let batch: Vec<u32> = out_idx
        .iter()
        .copied()
        .filter(|l| ak.contains(l) && bk.contains(l))
        .collect();
    let m: Vec<u32> = ak
        .iter()
        .copied()
        .filter(|l| !bk.contains(l) && out_idx.contains(l))
        .collect();
    let n: Vec<u32> = bk
        .iter()
        .copied()
        .filter(|l| !ak.contains(l) && out_idx.contains(l))
        .collect();
    let k: Vec<u32> = ak
        .iter()
        .copied()
        .filter(|l| bk.contains(l) && !out_idx.contains(l))
        .collect();
    let len = |v: &ArrayViewD<T>, own: &[u32], group: &[u32]| -> usize {
        group.iter().map(|l| v.shape()[pos(own, *l)]).product()
    };
    let (nb, nm, nk, nn) = (
        len(&a, &ak, &batch),
        len(&a, &ak, &m),
        len(&a, &ak, &k),
        len(&b, &bk, &n),
    );
    let a3 = arrange(a.view(), &ak, &[&batch, &m, &k]);
    let b3 = arrange(b.view(), &bk, &[&batch, &k, &n]);

    let mut c = vec![T::zero(); nb * nm * nn];
    let row = |r: usize, out: &mut [T]| {
        let (bi, mi) = (r / nm.max(1), r % nm.max(1));
        let a_row = &a3[(bi * nm + mi) * nk..(bi * nm + mi + 1) * nk];
        let b_mat = &b3[bi * nk * nn..(bi + 1) * nk * nn];
        semiring_row(op, a_row, b_mat, nn, out);
    };
    if nn > 0 {
        if nb * nm * nk * nn >= PARALLEL_WORK && crate::kernels::threads() > 1 {
            c.par_chunks_mut(nn)
                .enumerate()
                .for_each(|(r, o)| row(r, o));
        } else {
            c.chunks_mut(nn).enumerate().for_each(|(r, o)| row(r, o));
        }
    }

    // `c` is [batch, m, n]; permute into the requested output order.
    let mut labels: Vec<u32> = batch.clone();
    labels.extend(&m);
    labels.extend(&n);
    let mut shape: Vec<usize> = batch.iter().map(|&l| a.shape()[pos(&ak, l)]).collect();
    shape.extend(m.iter().map(|&l| a.shape()[pos(&ak, l)]));
    shape.extend(n.iter().map(|&l| b.shape()[pos(&bk, l)]));
    let c = ArrayD::from_shape_vec(IxDyn(&shape), c).expect("c has the product of its lengths");
    let perm: Vec<usize> = out_idx.iter().map(|&l| pos(&labels, l)).collect();
    c.view()
        .permuted_axes(perm)
        .as_standard_layout()
        .into_owned()
}

/// `out[j] = ⊕_k (a_row[k] + b[k, j])` for a row-major `b` of `n` columns.
fn semiring_row<T: Scalar>(op: ReduceOp, a_row: &[T], b: &[T], n: usize, out: &mut [T]) {
    let max_plus = |out: &mut [T], pick: fn(T, T) -> T, init: f64| {
        out.fill(T::from_f64(init));
        for (kk, &x) in a_row.iter().enumerate() {
            for (o, &y) in out.iter_mut().zip(&b[kk * n..(kk + 1) * n]) {
                *o = pick(*o, x + y);
            }
        }
    };
    match op {
        ReduceOp::Max => max_plus(out, T::max2, f64::NEG_INFINITY),
        ReduceOp::Min => max_plus(out, T::min2, f64::INFINITY),
        ReduceOp::LogSumExp => {
            // Two passes: the max of each output, then the sum of exps shifted by it, so
            // nothing overflows. A non-finite max shifts by 0 (see `kernels::reduce`).
            max_plus(out, T::max2, f64::NEG_INFINITY);
            let shift: Vec<T> = out
                .iter()
                .map(|&m| if m.is_finite() { m } else { T::zero() })
                .collect();
            out.fill(T::zero());
            for (kk, &x) in a_row.iter().enumerate() {
                for ((o, &y), &s) in out.iter_mut().zip(&b[kk * n..(kk + 1) * n]).zip(&shift) {
                    *o += (x + y - s).exp();
                }
            }
            for (o, &s) in out.iter_mut().zip(&shift) {
                *o = s + o.ln();
            }
        }
        ReduceOp::Sum => unreachable!("checked by `contract`"),
    }
}

/// The elements of `v` (distinct labels `own`) in the order of the concatenated label
/// groups, row-major.
fn arrange<T: Scalar>(v: ArrayViewD<T>, own: &[u32], groups: &[&[u32]]) -> Vec<T> {
    let perm: Vec<usize> = groups
        .iter()
        .flat_map(|g| g.iter().map(|&l| pos(own, l)))
        .collect();
    v.permuted_axes(perm).iter().copied().collect()
}

fn pos(labels: &[u32], l: u32) -> usize {
    labels
        .iter()
        .position(|&x| x == l)
        .unwrap_or_else(|| panic!("label {l} is not among {labels:?}"))
}

/// `acc = acc ⊕ x`, elementwise (equal shapes), for combining the slices of a sliced
/// product.
pub fn accumulate<T: Scalar>(op: ReduceOp, acc: &mut ArrayD<T>, x: ArrayViewD<T>) {
    ndarray::Zip::from(acc).and(&x).for_each(|a, &y| {
        *a = match op {
            ReduceOp::Sum => *a + y,
            ReduceOp::Max => a.max2(y),
            ReduceOp::Min => a.min2(y),
            ReduceOp::LogSumExp => {
                let hi = a.max2(y);
                if hi.is_finite() {
                    hi + ((*a - hi).exp() + (y - hi).exp()).ln()
                } else {
                    hi
                }
            }
        }
    });
}
