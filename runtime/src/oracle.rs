//! The oracle for whole programs: evaluates the IR directly, node by node, in complex128
//! with plain loops (products through [`reference_einsum`]). It never sees a plan, so it
//! checks lowering-independent parts (planning, order search, kernels, the e-graph pass)
//! against the meaning of the IR.

use crate::reference::reference_einsum;
use crate::value::TensorData;
use einc_compiler::ir::{Expr, ExprId, MapOp, Program, ReduceOp, TensorId};
use ndarray::{ArrayD, Dimension, IxDyn};
use num_complex::Complex64;
use std::collections::BTreeMap;

type Labelled = (ArrayD<Complex64>, Vec<u32>);

/// Evaluate `p` on `inputs` (arena order of input tensors); returns the outputs in
/// complex128. Meant for small sizes: products cost the product of all their index sizes.
pub fn evaluate(p: &Program, inputs: &[TensorData]) -> Vec<ArrayD<Complex64>> {
    let mut tensors: BTreeMap<TensorId, ArrayD<Complex64>> = BTreeMap::new();
    for ((id, _), data) in p.inputs().zip(inputs) {
        tensors.insert(id, data.as_c128());
    }
    for s in &p.stmts {
        let mut memo = BTreeMap::new();
        let (a, labels) = eval(p, s.value, &tensors, &mut memo);
        let want: Vec<u32> = s.indices.iter().map(|i| i.0).collect();
        let mut r = permute(p, &a, &labels, &want);
        if !p.tensors[s.target].dtype.is_complex() {
            r.mapv_inplace(|z| Complex64::new(z.re, 0.0));
        }
        tensors.insert(s.target, r);
    }
    p.outputs.iter().map(|o| tensors[o].clone()).collect()
}

fn sizes_of(p: &Program, labels: impl IntoIterator<Item = u32>) -> BTreeMap<u32, usize> {
    labels
        .into_iter()
        .map(|l| (l, p.indices[einc_compiler::ir::IndexId(l)].size as usize))
        .collect()
}

fn permute(p: &Program, a: &ArrayD<Complex64>, labels: &[u32], want: &[u32]) -> ArrayD<Complex64> {
    let sizes = sizes_of(p, labels.iter().copied());
    reference_einsum(&[(a.view(), labels.to_vec())], want, &sizes)
}

fn eval(
    p: &Program,
    e: ExprId,
    tensors: &BTreeMap<TensorId, ArrayD<Complex64>>,
    memo: &mut BTreeMap<ExprId, Labelled>,
) -> Labelled {
    if let Some(v) = memo.get(&e) {
        return v.clone();
    }
    let free: Vec<u32> = p.free(e).iter().map(|i| i.0).collect();
    let v = match &p.exprs[e] {
        Expr::Ref { tensor, indices } => {
            let labels: Vec<u32> = indices.iter().map(|i| i.0).collect();
            let sizes = sizes_of(p, labels.iter().copied());
            let a = reference_einsum(&[(tensors[tensor].view(), labels)], &free, &sizes);
            (a, free)
        }
        Expr::Const(x) => (
            ArrayD::from_elem(IxDyn(&[]), Complex64::new(*x, 0.0)),
            vec![],
        ),
        Expr::Product { factors, .. } => {
            let vals: Vec<Labelled> = factors.iter().map(|&f| eval(p, f, tensors, memo)).collect();
            let ops: Vec<_> = vals.iter().map(|(a, l)| (a.view(), l.clone())).collect();
            let sizes = sizes_of(p, vals.iter().flat_map(|(_, l)| l.iter().copied()));
            (reference_einsum(&ops, &free, &sizes), free)
        }
        Expr::Add(args) => {
            let vals: Vec<Labelled> = args.iter().map(|&f| eval(p, f, tensors, memo)).collect();
            (pointwise(p, &vals, &free, |xs| xs.iter().sum()), free)
        }
        Expr::Map { op, args } => {
            let vals: Vec<Labelled> = args.iter().map(|&f| eval(p, f, tensors, memo)).collect();
            let op = *op;
            // Real programs use real arithmetic: exp overflow gives inf, not inf+NaN·i,
            // and log of a negative number is NaN as in numpy.
            let real = !p.dtype(e).is_complex();
            (pointwise(p, &vals, &free, |xs| apply(op, xs, real)), free)
        }
        Expr::Reduce { op, arg, .. } => {
            let (a, labels) = eval(p, *arg, tensors, memo);
            (reduce(p, *op, &a, &labels, &free), free)
        }
    };
    // Complex arithmetic on real values turns inf into inf+NaN·i, which then leaks into
    // real parts; real expressions drop the imaginary part after every node.
    let v = if p.dtype(e).is_complex() {
        v
    } else {
        (v.0.mapv(|z| Complex64::new(z.re, 0.0)), v.1)
    };
    memo.insert(e, v.clone());
    v
}

fn real_cmp(a: &Complex64, b: &Complex64) -> std::cmp::Ordering {
    a.re.total_cmp(&b.re).then(a.im.total_cmp(&b.im))
}

fn apply(op: MapOp, xs: &[Complex64], real: bool) -> Complex64 {
    if real {
        return Complex64::new(
            apply_real(op, xs[0].re, xs.get(1).map_or(0.0, |y| y.re)),
            0.0,
        );
    }
    let x = xs[0];
    match op {
        MapOp::Neg => -x,
        MapOp::Sub => x - xs[1],
        MapOp::Div => x / xs[1],
        MapOp::Exp => x.exp(),
        MapOp::Log => x.ln(),
        MapOp::Sqrt => x.sqrt(),
        MapOp::Tanh => x.tanh(),
        MapOp::Abs => Complex64::new(x.norm(), 0.0),
        MapOp::Relu => Complex64::new(x.re.max(0.0), 0.0),
        MapOp::Sigmoid => Complex64::new(1.0, 0.0) / (Complex64::new(1.0, 0.0) + (-x).exp()),
        MapOp::Max => {
            if real_cmp(&x, &xs[1]).is_ge() {
                x
            } else {
                xs[1]
            }
        }
        MapOp::Min => {
            if real_cmp(&x, &xs[1]).is_le() {
                x
            } else {
                xs[1]
            }
        }
    }
}

fn apply_real(op: MapOp, x: f64, y: f64) -> f64 {
    match op {
        MapOp::Neg => -x,
        MapOp::Sub => x - y,
        MapOp::Div => x / y,
        MapOp::Exp => x.exp(),
        MapOp::Log => x.ln(),
        MapOp::Sqrt => x.sqrt(),
        MapOp::Tanh => x.tanh(),
        MapOp::Abs => x.abs(),
        MapOp::Relu => x.max(0.0),
        MapOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        MapOp::Max => {
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else {
                x.max(y)
            }
        }
        MapOp::Min => {
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else {
                x.min(y)
            }
        }
    }
}

/// Odometer over `out` labels; each argument is read at its labels' coordinates.
fn pointwise(
    p: &Program,
    vals: &[Labelled],
    out: &[u32],
    f: impl Fn(&[Complex64]) -> Complex64,
) -> ArrayD<Complex64> {
    let shape: Vec<usize> = out
        .iter()
        .map(|&l| p.indices[einc_compiler::ir::IndexId(l)].size as usize)
        .collect();
    let mut res = ArrayD::zeros(IxDyn(&shape));
    let pos: Vec<Vec<usize>> = vals
        .iter()
        .map(|(_, l)| {
            l.iter()
                .map(|x| out.iter().position(|o| o == x).unwrap_or(0))
                .collect()
        })
        .collect();
    let mut xs = vec![Complex64::new(0.0, 0.0); vals.len()];
    for (coord, r) in res.indexed_iter_mut() {
        for (k, (a, _)) in vals.iter().enumerate() {
            let c: Vec<usize> = pos[k].iter().map(|&i| coord[i]).collect();
            xs[k] = a[IxDyn(&c)];
        }
        *r = f(&xs);
    }
    res
}

fn reduce(
    p: &Program,
    op: ReduceOp,
    a: &ArrayD<Complex64>,
    labels: &[u32],
    out: &[u32],
) -> ArrayD<Complex64> {
    let shape: Vec<usize> = out
        .iter()
        .map(|&l| p.indices[einc_compiler::ir::IndexId(l)].size as usize)
        .collect();
    let pos: Vec<usize> = out
        .iter()
        .map(|o| labels.iter().position(|l| l == o).unwrap_or(0))
        .collect();
    let mut groups: BTreeMap<Vec<usize>, Vec<Complex64>> = BTreeMap::new();
    for (coord, &x) in a.indexed_iter() {
        let key: Vec<usize> = pos.iter().map(|&i| coord[i]).collect();
        groups.entry(key).or_default().push(x);
    }
    let mut res = ArrayD::zeros(IxDyn(&shape));
    for (coord, r) in res.indexed_iter_mut() {
        let key: Vec<usize> = coord.as_array_view().to_vec();
        let xs = groups.get(&key).cloned().unwrap_or_default();
        *r = match op {
            ReduceOp::Max => xs
                .into_iter()
                .max_by(real_cmp)
                .unwrap_or(Complex64::new(f64::NEG_INFINITY, 0.0)),
            ReduceOp::Min => xs
                .into_iter()
                .min_by(real_cmp)
                .unwrap_or(Complex64::new(f64::INFINITY, 0.0)),
            ReduceOp::LogSumExp => xs.iter().map(|x| x.exp()).sum::<Complex64>().ln(),
        };
    }
    res
}
