//! Elementwise maps and labelled reductions of the `.ein` language.

use super::unary::{align_to, assert_distinct, diagonal_view, reduce_labels};
use super::{alloc, Scalar};
use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

/// An elementwise operation. `Add`..`Min` are binary, the rest unary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapOp {
    Add,
    Sub,
    Mul,
    Div,
    /// numpy's `maximum` (NaN propagates; complex: lexicographic).
    Max,
    /// numpy's `minimum`.
    Min,
    Neg,
    Exp,
    Log,
    Sqrt,
    Tanh,
    Abs,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl MapOp {
    /// Number of operands the operation takes (1 or 2).
    pub fn arity(self) -> usize {
        use MapOp::*;
        match self {
            Add | Sub | Mul | Div | Max | Min => 2,
            Neg | Exp | Log | Sqrt | Tanh | Abs | Relu | Sigmoid => 1,
        }
    }
}

/// A reduction over labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    /// Maximum; `-inf` over an empty set.
    Max,
    /// Minimum; `+inf` over an empty set.
    Min,
    /// `log Σ exp(x)`, computed stably by shifting with the maximum; `-inf`
    /// over an empty set.
    LogSumExp,
}

/// Applies a unary [`MapOp`] to every element. Standard-layout result.
///
/// # Panics
/// If `op` is binary (`op.arity() == 2`).
pub fn map_unary<T: Scalar>(op: MapOp, a: ArrayViewD<T>) -> ArrayD<T> {
    // One monomorphised loop per operation: no dispatch inside the loop.
    match op {
        MapOp::Neg => map_with(a, |x| -x),
        MapOp::Exp => map_with(a, T::exp),
        MapOp::Log => map_with(a, T::ln),
        MapOp::Sqrt => map_with(a, T::sqrt),
        MapOp::Tanh => map_with(a, T::tanh),
        MapOp::Abs => map_with(a, T::abs),
        MapOp::Relu => map_with(a, |x| x.max2(T::zero())),
        MapOp::Sigmoid => map_with(a, sigmoid),
        MapOp::Add | MapOp::Sub | MapOp::Mul | MapOp::Div | MapOp::Max | MapOp::Min => {
            panic!("{op:?} is a binary operation; use map_binary")
        }
    }
}

fn map_with<T: Scalar>(a: ArrayViewD<T>, f: impl Fn(T) -> T) -> ArrayD<T> {
    let mut out = alloc::zeros::<T>(a.shape());
    Zip::from(&mut out).and(&a).for_each(|o, &x| *o = f(x));
    out
}

pub(crate) fn sigmoid<T: Scalar>(x: T) -> T {
    // exp(-x) overflows for very negative x; exp(x) / (1 + exp(x)) does not.
    if x.to_c64().re >= 0.0 {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// Applies a binary [`MapOp`] with broadcasting by label.
///
/// `out_idx` lists every label of `a` and `b` (each once) in the output order.
/// A label's length comes from whichever operand has it; when both do, the
/// lengths must agree or one of them be 1 (numpy broadcasting).
///
/// # Panics
/// If `op` is unary, labels repeat, an operand label is missing from
/// `out_idx` (or vice versa), or lengths are incompatible.
pub fn map_binary<T: Scalar>(
    op: MapOp,
    a: ArrayViewD<T>,
    a_idx: &[u32],
    b: ArrayViewD<T>,
    b_idx: &[u32],
    out_idx: &[u32],
) -> ArrayD<T> {
    assert_distinct(out_idx, "output labels");
    let out_shape: Vec<usize> = out_idx
        .iter()
        .map(|l| {
            let la = a_idx.iter().position(|x| x == l).map(|p| a.shape()[p]);
            let lb = b_idx.iter().position(|x| x == l).map(|p| b.shape()[p]);
            match (la, lb) {
                (Some(x), Some(y)) if x == y || y == 1 => x,
                (Some(1), Some(y)) => y,
                (Some(x), None) => x,
                (None, Some(y)) => y,
                (Some(x), Some(y)) => panic!("label {l} has incompatible lengths {x} and {y}"),
                (None, None) => panic!("output label {l} is in neither operand"),
            }
        })
        .collect();
    let shape = IxDyn(&out_shape);
    let av = align_to(a, a_idx, out_idx);
    let bv = align_to(b, b_idx, out_idx);
    let av = av.broadcast(shape.clone()).expect("lengths checked above");
    let bv = bv.broadcast(shape.clone()).expect("lengths checked above");
    let mut out = alloc::zeros::<T>(&out_shape);
    let mut zip = |f: fn(T, T) -> T| {
        Zip::from(&mut out)
            .and(&av)
            .and(&bv)
            .for_each(|o, &x, &y| *o = f(x, y))
    };
    match op {
        MapOp::Add => zip(|x, y| x + y),
        MapOp::Sub => zip(|x, y| x - y),
        MapOp::Mul => zip(|x, y| x * y),
        MapOp::Div => zip(|x, y| x / y),
        MapOp::Max => zip(T::max2),
        MapOp::Min => zip(T::min2),
        _ => panic!("{op:?} is a unary operation; use map_unary"),
    }
    out
}

/// Reduces every label of `a` missing from `out_idx` with `op`; the result has
/// axes in `out_idx` order, standard layout. `a_idx` may repeat a label (the
/// diagonal is taken first).
///
/// # Panics
/// If `a_idx.len() != a.ndim()`, `out_idx` repeats a label or names one `a`
/// lacks, or repeated labels have unequal lengths.
pub fn reduce<T: Scalar>(
    op: ReduceOp,
    a: ArrayViewD<T>,
    a_idx: &[u32],
    out_idx: &[u32],
) -> ArrayD<T> {
    let (d, labels) = diagonal_view(a, a_idx);
    match op {
        ReduceOp::Sum => reduce_labels(d, &labels, out_idx, T::zero(), |acc, x| *acc += x),
        ReduceOp::Max => reduce_labels(
            d,
            &labels,
            out_idx,
            T::from_f64(f64::NEG_INFINITY),
            |acc, x| *acc = acc.max2(x),
        ),
        ReduceOp::Min => {
            reduce_labels(d, &labels, out_idx, T::from_f64(f64::INFINITY), |acc, x| {
                *acc = acc.min2(x)
            })
        }
        ReduceOp::LogSumExp => logsumexp(d, &labels, out_idx),
    }
}

fn logsumexp<T: Scalar>(d: ArrayViewD<T>, labels: &[u32], out_idx: &[u32]) -> ArrayD<T> {
    let max = reduce_labels(
        d.view(),
        labels,
        out_idx,
        T::from_f64(f64::NEG_INFINITY),
        |acc, x| *acc = acc.max2(x),
    );
    // Shifting by the max keeps exp from overflowing. A non-finite max would
    // make `x - max` NaN (inf - inf), so shift by 0 there: the sum of exps is
    // then 0, inf or NaN and the log gives the right -inf, inf or NaN.
    let shift = max.mapv(|m| if m.is_finite() { m } else { T::zero() });
    let sv = align_to(shift.view(), out_idx, labels);
    let sv = sv.broadcast(d.raw_dim()).expect("shift has d's lengths");
    let mut e = ArrayD::from_elem(d.raw_dim(), T::zero());
    Zip::from(&mut e)
        .and(&d)
        .and(&sv)
        .for_each(|o, &x, &s| *o = (x - s).exp());
    let mut sum = reduce_labels(e.view(), labels, out_idx, T::zero(), |acc, x| *acc += x);
    Zip::from(&mut sum)
        .and(&shift)
        .for_each(|o, &s| *o = s + o.ln());
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{embedded_view, random_storage, Rng};
    use ndarray::{array, Array3, Axis};
    use num_complex::Complex64;

    const UNARY: [MapOp; 8] = [
        MapOp::Neg,
        MapOp::Exp,
        MapOp::Log,
        MapOp::Sqrt,
        MapOp::Tanh,
        MapOp::Abs,
        MapOp::Relu,
        MapOp::Sigmoid,
    ];
    const BINARY: [MapOp; 6] = [
        MapOp::Add,
        MapOp::Sub,
        MapOp::Mul,
        MapOp::Div,
        MapOp::Max,
        MapOp::Min,
    ];

    fn scalar_op<T: Scalar>(op: MapOp, x: T, y: T) -> T {
        match op {
            MapOp::Add => x + y,
            MapOp::Sub => x - y,
            MapOp::Mul => x * y,
            MapOp::Div => x / y,
            MapOp::Max => x.max2(y),
            MapOp::Min => x.min2(y),
            MapOp::Neg => -x,
            MapOp::Exp => x.exp(),
            MapOp::Log => x.ln(),
            MapOp::Sqrt => x.sqrt(),
            MapOp::Tanh => x.tanh(),
            MapOp::Abs => x.abs(),
            MapOp::Relu => x.max2(T::zero()),
            MapOp::Sigmoid => T::one() / (T::one() + (-x).exp()),
        }
    }

    fn close<T: Scalar>(x: T, y: T) -> bool {
        let (x, y) = (x.to_c64(), y.to_c64());
        (x.re.is_nan() && y.re.is_nan()) || x == y || (x - y).norm() <= 1e-12 * (1.0 + y.norm())
    }

    fn check_maps<T: Scalar>(rng: &mut Rng) {
        let (st, emb) = random_storage::<T>(&[3, 4, 2], rng);
        let a = embedded_view(&st, &emb);
        for op in UNARY {
            let got = map_unary(op, a.view());
            assert!(got.is_standard_layout());
            for (g, &x) in got.iter().zip(a.iter()) {
                assert!(close(*g, scalar_op(op, x, x)), "{op:?}({x:?}) = {g:?}");
            }
        }
        // b has labels (2, 0) of lengths (2, 1): label 0 broadcasts from 1 to 3.
        let (stb, embb) = random_storage::<T>(&[2, 1], rng);
        let b = embedded_view(&stb, &embb);
        for op in BINARY {
            let got = map_binary(op, a.view(), &[0, 1, 2], b.view(), &[2, 0], &[1, 2, 0]);
            assert_eq!(got.shape(), &[4, 2, 3]);
            assert!(got.is_standard_layout());
            for ((j, k, i), g) in got
                .into_dimensionality::<ndarray::Ix3>()
                .unwrap()
                .indexed_iter()
            {
                let want = scalar_op(op, a[[i, j, k]], b[[k, 0]]);
                assert!(close(*g, want), "{op:?}");
            }
        }
    }

    #[test]
    fn maps_against_loops() {
        let mut rng = Rng(11);
        check_maps::<f64>(&mut rng);
        check_maps::<Complex64>(&mut rng);
    }

    #[test]
    fn reductions_against_loops() {
        let mut rng = Rng(3);
        let (st, emb) = random_storage::<f64>(&[3, 4, 5], &mut rng);
        let a = embedded_view(&st, &emb);
        let a3 = a.view().into_dimensionality::<ndarray::Ix3>().unwrap();
        // Keep label 2 then 0: reduce axis 1.
        for op in [
            ReduceOp::Sum,
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::LogSumExp,
        ] {
            let got = reduce(op, a.view(), &[0, 1, 2], &[2, 0]);
            assert_eq!(got.shape(), &[5, 3]);
            for k in 0..5 {
                for i in 0..3 {
                    let lane = a3.index_axis(Axis(2), k).index_axis(Axis(0), i).to_vec();
                    let want = match op {
                        ReduceOp::Sum => lane.iter().sum::<f64>(),
                        ReduceOp::Max => lane.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                        ReduceOp::Min => lane.iter().cloned().fold(f64::INFINITY, f64::min),
                        ReduceOp::LogSumExp => lane.iter().map(|x| x.exp()).sum::<f64>().ln(),
                    };
                    assert!((got[[k, i]] - want).abs() < 1e-12, "{op:?}");
                }
            }
        }
        let total = reduce(ReduceOp::Sum, a.view(), &[0, 1, 2], &[])[IxDyn(&[])];
        assert!((total - a.sum()).abs() < 1e-12);
    }

    #[test]
    fn logsumexp_is_stable_and_handles_infinities() {
        let x = array![[1000.0, 1000.0], [-1000.0, -1000.0]].into_dyn();
        let got = reduce(ReduceOp::LogSumExp, x.view(), &[0, 1], &[0]);
        assert!((got[[0]] - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert!((got[[1]] - (-1000.0 + 2f64.ln())).abs() < 1e-9);
        let inf = array![[f64::NEG_INFINITY, f64::NEG_INFINITY], [f64::INFINITY, 0.0]].into_dyn();
        let got = reduce(ReduceOp::LogSumExp, inf.view(), &[0, 1], &[0]);
        assert_eq!(got, array![f64::NEG_INFINITY, f64::INFINITY].into_dyn());
        // No reduced label: logsumexp of one element is the element.
        let got = reduce(ReduceOp::LogSumExp, x.view(), &[0, 1], &[1, 0]);
        assert_eq!(got, x.t().to_owned());
    }

    #[test]
    fn empty_reductions() {
        let e = Array3::<f64>::zeros((2, 0, 3)).into_dyn();
        let r = |op| reduce(op, e.view(), &[0, 1, 2], &[2]);
        assert_eq!(r(ReduceOp::Sum), ArrayD::zeros(IxDyn(&[3])));
        assert!(r(ReduceOp::Max).iter().all(|&x| x == f64::NEG_INFINITY));
        assert!(r(ReduceOp::Min).iter().all(|&x| x == f64::INFINITY));
        assert!(r(ReduceOp::LogSumExp)
            .iter()
            .all(|&x| x == f64::NEG_INFINITY));
        assert_eq!(
            reduce(ReduceOp::Max, e.view(), &[0, 1, 2], &[1]).shape(),
            &[0]
        );
    }

    #[test]
    fn nan_propagates_and_diagonal_reduce() {
        let x = array![[1.0, f64::NAN], [3.0, 4.0]].into_dyn();
        let mx = reduce(ReduceOp::Max, x.view(), &[0, 1], &[0]);
        assert!(mx[[0]].is_nan() && mx[[1]] == 4.0);
        assert_eq!(
            reduce(ReduceOp::Max, x.view(), &[0, 0], &[])[IxDyn(&[])],
            4.0
        );
        let s = map_unary(MapOp::Sigmoid, array![-800.0, 0.0, 800.0].into_dyn().view());
        assert_eq!(s, array![0.0, 0.5, 1.0].into_dyn());
    }
}
