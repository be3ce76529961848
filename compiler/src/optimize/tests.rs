//! Tests of the e-graph pass. Every optimised program is verified, evaluated against its
//! input on random data, and re-optimised to check determinism (see [`check`]).

use super::lang::{encode, ENode, IrAnalysis};
use super::*;
use crate::ir::*;
use crate::verify::verify;
use egg::{EGraph, Id};
use einc_frontend::ein::ast::DType;
use einc_frontend::Span;
use std::collections::BTreeMap;
use std::time::Instant;

/// Hand-built programs.
#[derive(Default)]
struct B(Program);

impl B {
    fn idx(&mut self, name: &str, size: u64) -> IndexId {
        self.0.indices.push(Index {
            name: name.into(),
            size,
            span: None,
        })
    }
    fn input(&mut self, name: &str, axes: &[IndexId]) -> TensorId {
        self.tensor(name, axes, DType::F64, TensorKind::Input)
    }
    fn tensor(&mut self, name: &str, axes: &[IndexId], dtype: DType, kind: TensorKind) -> TensorId {
        self.0.tensors.push(Tensor {
            name: name.into(),
            axes: axes.to_vec(),
            dtype,
            kind,
            layout: None,
            span: None,
        })
    }
    /// Every hand-built expression gets a distinct span, to check spans survive.
    fn add(&mut self, e: Expr) -> ExprId {
        let n = self.0.exprs.len();
        self.0.add_expr(e, Some(Span::new(n, n + 1)))
    }
    fn r(&mut self, tensor: TensorId, indices: &[IndexId]) -> ExprId {
        self.add(Expr::Ref {
            tensor,
            indices: indices.to_vec(),
        })
    }
    fn prod(&mut self, factors: &[ExprId], summed: &[IndexId]) -> ExprId {
        self.add(Expr::Product {
            factors: factors.to_vec(),
            summed: summed.to_vec(),
        })
    }
    fn stmt(&mut self, name: &str, indices: &[IndexId], value: ExprId) -> TensorId {
        let dtype = self.0.dtype(value);
        let t = self.tensor(name, indices, dtype, TensorKind::Result);
        self.0.stmts.push(Stmt {
            target: t,
            indices: indices.to_vec(),
            value,
            span: None,
        });
        self.0.outputs.push(t);
        t
    }
}

/// A dense value: `data` is row-major over `axes`.
struct Val {
    axes: Vec<IndexId>,
    data: Vec<f64>,
}

impl Val {
    fn at(&self, p: &Program, assign: &[usize]) -> f64 {
        let off = self
            .axes
            .iter()
            .fold(0, |o, &i| o * p.size(i) as usize + assign[i.index()]);
        self.data[off]
    }
}

/// Calls `f` with every assignment of `axes` (row-major), as a per-`IndexId` vector.
fn each_assignment(p: &Program, axes: &[IndexId], mut f: impl FnMut(&[usize])) {
    let mut a = vec![0usize; p.indices.len()];
    loop {
        f(&a);
        let mut k = axes.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            let i = axes[k].index();
            a[i] += 1;
            if a[i] < p.size(axes[k]) as usize {
                break;
            }
            a[i] = 0;
        }
    }
}

/// Reference semantics of an expression; the result's axes are its free indices.
fn eval(p: &Program, e: ExprId, env: &BTreeMap<TensorId, Val>) -> Val {
    let (kids, bound): (Vec<Val>, &[IndexId]) = match &p.exprs[e] {
        Expr::Ref { tensor, indices } => {
            let t = &env[tensor];
            let axes = p.free(e);
            let mut data = Vec::new();
            each_assignment(p, &axes, |a| {
                let relabel: Vec<usize> = {
                    let mut v = vec![0; p.indices.len()];
                    for (&ax, &ix) in t.axes.iter().zip(indices) {
                        v[ax.index()] = a[ix.index()];
                    }
                    v
                };
                data.push(t.at(p, &relabel));
            });
            return Val { axes, data };
        }
        Expr::Const(c) => {
            return Val {
                axes: vec![],
                data: vec![*c],
            }
        }
        Expr::Product { factors, summed } => {
            (factors.iter().map(|&f| eval(p, f, env)).collect(), summed)
        }
        Expr::Add(args) | Expr::Map { args, .. } => {
            (args.iter().map(|&f| eval(p, f, env)).collect(), &[])
        }
        Expr::Reduce { arg, indices, .. } => (vec![eval(p, *arg, env)], indices),
    };
    let mut involved: Vec<IndexId> = kids.iter().flat_map(|k| k.axes.clone()).collect();
    involved.sort();
    involved.dedup();
    let axes: Vec<IndexId> = involved
        .iter()
        .copied()
        .filter(|i| !bound.contains(i))
        .collect();
    let out = Val {
        axes: axes.clone(),
        data: Vec::new(),
    };
    let n: usize = axes.iter().map(|&i| p.size(i) as usize).product();
    let init = match &p.exprs[e] {
        Expr::Reduce {
            op: ReduceOp::Max, ..
        } => f64::NEG_INFINITY,
        _ => 0.0,
    };
    let mut data = vec![init; n];
    each_assignment(p, &involved, |a| {
        let x: Vec<f64> = kids.iter().map(|k| k.at(p, a)).collect();
        let off = axes
            .iter()
            .fold(0, |o, &i| o * p.size(i) as usize + a[i.index()]);
        let slot = &mut data[off];
        match &p.exprs[e] {
            Expr::Product { .. } => *slot += x.iter().product::<f64>(),
            Expr::Add(_) => *slot = x.iter().sum(),
            Expr::Map { op: MapOp::Exp, .. } => *slot = x[0].exp(),
            Expr::Map { op: MapOp::Sub, .. } => *slot = x[0] - x[1],
            Expr::Map { op: MapOp::Div, .. } => *slot = x[0] / x[1],
            Expr::Reduce {
                op: ReduceOp::Max, ..
            } => *slot = slot.max(x[0]),
            other => panic!("test evaluator does not implement {other:?}"),
        }
    });
    Val { data, ..out }
}

/// Every statement's result, on deterministic pseudo-random inputs.
fn run(p: &Program) -> BTreeMap<TensorId, Val> {
    let mut env = BTreeMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for (h, t) in p.inputs() {
        let n: usize = t.axes.iter().map(|&i| p.size(i) as usize).product();
        let data = (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect();
        env.insert(
            h,
            Val {
                axes: t.axes.clone(),
                data,
            },
        );
    }
    for s in &p.stmts {
        let v = eval(p, s.value, &env);
        let mut data = Vec::new();
        each_assignment(p, &s.indices, |a| data.push(v.at(p, a)));
        env.insert(
            s.target,
            Val {
                axes: s.indices.clone(),
                data,
            },
        );
    }
    env
}

/// Optimises `p` and checks: the output verifies, computes the same results, and a second
/// run prints byte-for-byte the same program and report.
fn check(p: &Program, cfg: &OptimizeConfig) -> (Program, OptimizeReport) {
    verify(p, "test input").unwrap();
    let (out, report) = optimize(p, cfg);
    verify(&out, "optimize").unwrap_or_else(|e| panic!("{e}\n{out:#?}"));
    assert_eq!(
        (&out.indices, &out.tensors, &out.outputs),
        (&p.indices, &p.tensors, &p.outputs)
    );
    let (before, after) = (run(p), run(&out));
    for s in &p.stmts {
        for (x, y) in before[&s.target].data.iter().zip(&after[&s.target].data) {
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} != {y}");
        }
    }
    let (out2, report2) = optimize(p, cfg);
    assert_eq!(format!("{out:?}"), format!("{out2:?}"));
    assert_eq!(
        format!(
            "{:?}",
            (&report.rewrites_applied, report.nodes, report.cost_after)
        ),
        format!(
            "{:?}",
            (&report2.rewrites_applied, report2.nodes, report2.cost_after)
        )
    );
    assert!(report.cost_after <= report.cost_before);
    (out, report)
}

fn fired(r: &OptimizeReport, rule: &str) -> usize {
    r.rewrites_applied
        .iter()
        .find(|(n, _)| n == rule)
        .unwrap()
        .1
}

/// Saturates `p` with the pass's rules and returns the e-graph and statement roots.
fn saturate(p: &Program) -> (EGraph<ENode, IrAnalysis>, Vec<Id>) {
    let cfg = OptimizeConfig::default();
    let analysis = IrAnalysis {
        sizes: p.indices.iter().map(|(_, i)| i.size).collect(),
        tensor_dtypes: p.tensors.iter().map(|(_, t)| t.dtype).collect(),
    };
    let mut runner = egg::Runner::<ENode, IrAnalysis, ()>::new(analysis)
        .with_node_limit(cfg.node_limit)
        .with_iter_limit(cfg.iter_limit);
    let enc = encode(p, &mut runner.egraph);
    let runner = runner.run(&rules::rules());
    let roots = enc.roots.iter().map(|&r| runner.egraph.find(r)).collect();
    (runner.egraph, roots)
}

/// Product nodes of a class as (number of factors, summed indices).
fn products(eg: &EGraph<ENode, IrAnalysis>, class: Id) -> Vec<(usize, Vec<IndexId>)> {
    eg[class]
        .nodes
        .iter()
        .filter_map(ENode::as_product)
        .map(|(f, s)| (f.len(), s.to_vec()))
        .collect()
}

fn product_of(p: &Program, e: ExprId) -> (&[ExprId], &[IndexId]) {
    match &p.exprs[e] {
        Expr::Product { factors, summed } => (factors, summed),
        other => panic!("expected a product, got {other:?}"),
    }
}

#[test]
fn flatten_nested_product_with_inner_sum() {
    // X[i] = (sum_j A[i,j] B[j]) * C[i]: j is not used outside, so flattening is sound.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 4));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j]),
        b.input("C", &[i]),
    );
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j]), b.r(tc, &[i]));
    let inner = b.prod(&[a, bb], &[j]);
    let outer = b.prod(&[inner, c], &[]);
    b.stmt("X", &[i], outer);
    let (eg, roots) = saturate(&b.0);
    assert!(products(&eg, roots[0]).contains(&(3, vec![j])));
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    assert!(fired(&report, rules::FLATTEN) >= 1);
}

#[test]
fn flatten_chosen_when_inner_sums_nothing() {
    // (A[i] * B[i]) * C[i] costs the same either way; one flat product is fewer nodes.
    let mut b = B::default();
    let i = b.idx("i", 5);
    let ts: Vec<TensorId> = ["A", "B", "C"].iter().map(|n| b.input(n, &[i])).collect();
    let rs: Vec<ExprId> = ts.iter().map(|&t| b.r(t, &[i])).collect();
    let inner = b.prod(&rs[..2], &[]);
    let outer = b.prod(&[inner, rs[2]], &[]);
    b.stmt("X", &[i], outer);
    let (out, _) = check(&b.0, &OptimizeConfig::default());
    let (factors, summed) = product_of(&out, out.stmts[0].value);
    assert_eq!((factors.len(), summed.len()), (3, 0));
    assert!(factors
        .iter()
        .all(|&f| matches!(out.exprs[f], Expr::Ref { .. })));
}

#[test]
fn flatten_refused_when_inner_index_is_captured() {
    // X[i] = sum_j (sum_j A[i,j] B[j]) * C[j]: the two j's are different variables.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 4));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j]),
        b.input("C", &[j]),
    );
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j]), b.r(tc, &[j]));
    let inner = b.prod(&[a, bb], &[j]);
    let outer = b.prod(&[inner, c], &[j]);
    b.stmt("X", &[i], outer);
    let (eg, roots) = saturate(&b.0);
    assert!(products(&eg, roots[0]).iter().all(|(n, _)| *n == 2));
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(fired(&report, rules::FLATTEN), 0);
    assert_eq!(out.exprs.len(), b.0.exprs.len());
}

#[test]
fn two_inner_sums_over_the_same_index_do_not_merge() {
    // (sum_k A[i,k]) * (sum_k B[i,k]) is not sum_k A[i,k] B[i,k]: flattening both
    // factors at once must stop at the second.
    let mut b = B::default();
    let (i, k) = (b.idx("i", 3), b.idx("k", 4));
    let (ta, tb) = (b.input("A", &[i, k]), b.input("B", &[i, k]));
    let (a, bb) = (b.r(ta, &[i, k]), b.r(tb, &[i, k]));
    let (sa, sb) = (b.prod(&[a], &[k]), b.prod(&[bb], &[k]));
    let outer = b.prod(&[sa, sb], &[]);
    b.stmt("X", &[i], outer);
    let (eg, roots) = saturate(&b.0);
    assert!(!products(&eg, roots[0]).contains(&(2, vec![k])));
    check(&b.0, &OptimizeConfig::default());
}

#[test]
fn push_sum_separates_independent_sums() {
    // X[i] = sum_{j,k} A[i,j] B[j] C[k]  ->  (sum_j A[i,j] B[j]) * (sum_k C[k])
    let mut b = B::default();
    let (i, j, k) = (b.idx("i", 8), b.idx("j", 8), b.idx("k", 8));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j]),
        b.input("C", &[k]),
    );
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j]), b.r(tc, &[k]));
    let v = b.prod(&[a, bb, c], &[j, k]);
    b.stmt("X", &[i], v);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert!(fired(&report, rules::PUSH_SUM) >= 2);
    // flat: 8^3 * 2 = 1024; pushed: 8*8 (A.B) + 8 (sum C) + 8 (outer) = 80.
    assert_eq!((report.cost_before, report.cost_after), (1024.0, 80.0));
    let (factors, summed) = product_of(&out, out.stmts[0].value);
    assert!(summed.is_empty());
    let mut inner: Vec<(usize, Vec<IndexId>)> = factors
        .iter()
        .map(|&f| product_of(&out, f))
        .map(|(f, s)| (f.len(), s.to_vec()))
        .collect();
    inner.sort();
    assert_eq!(inner, vec![(1, vec![k]), (2, vec![j])]);
}

#[test]
fn push_sum_leaves_overlapping_sums_to_order_search() {
    // sum_{j,k} A[i,j] B[j,k] C[k,l]: j and k occur in overlapping factor sets; pushing
    // either would fix a contraction order.
    let mut b = B::default();
    let ix: Vec<IndexId> = ["i", "j", "k", "l"].iter().map(|n| b.idx(n, 4)).collect();
    let ts: Vec<TensorId> = (0..3)
        .map(|m| b.input(&format!("M{m}"), &ix[m..m + 2]))
        .collect();
    let rs: Vec<ExprId> = (0..3).map(|m| b.r(ts[m], &ix[m..m + 2])).collect();
    let v = b.prod(&rs, &ix[1..3]);
    b.stmt("X", &[ix[0], ix[3]], v);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(report.stop_reason, "saturated");
    assert_eq!(fired(&report, rules::PUSH_SUM), 0);
    assert_eq!(report.nodes, 4);
    assert_eq!(format!("{:?}", out.exprs), format!("{:?}", b.0.exprs));
}

#[test]
fn push_sum_does_many_independent_groups_in_one_node() {
    // X[i] = sum_{k1..k6} A1[i,k1] ... A6[i,k6]: six independent single-factor sums.
    // Pushed one at a time this would make 2^6 nodes in the root class.
    let mut b = B::default();
    let i = b.idx("i", 3);
    let mut rs = Vec::new();
    let mut ks = Vec::new();
    for m in 0..6 {
        let k = b.idx(&format!("k{m}"), 5);
        let t = b.input(&format!("A{m}"), &[i, k]);
        rs.push(b.r(t, &[i, k]));
        ks.push(k);
    }
    let v = b.prod(&rs, &ks);
    b.stmt("X", &[i], v);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(report.stop_reason, "saturated");
    assert!(report.nodes < 30, "{report:?}");
    let (factors, summed) = product_of(&out, out.stmts[0].value);
    assert_eq!((factors.len(), summed.len()), (6, 0));
}

#[test]
fn unit_product_is_its_factor() {
    // T[j,i] = A[i,j] written as a one-factor product: the Ref itself is the value.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 2), b.idx("j", 3));
    let ta = b.input("A", &[i, j]);
    let a = b.r(ta, &[i, j]);
    let v = b.prod(&[a], &[]);
    b.stmt("T", &[j, i], v);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(fired(&report, rules::UNIT), 1);
    assert_eq!(out.exprs.len(), 1);
    assert!(matches!(out.exprs[out.stmts[0].value], Expr::Ref { .. }));
    // The Ref is the original expression 0: its span is kept.
    assert_eq!(out.expr_spans, vec![Some(Span::new(0, 1))]);
}

#[test]
fn equal_products_in_two_statements_share_one_expr() {
    // X[i] = sum_j A[i,j] B[j];  Y[i] = sum_j B[j] A[i,j] (operands in the other order,
    // separate Ref expressions): one e-class, so one ExprId after extraction.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 4));
    let (ta, tb) = (b.input("A", &[i, j]), b.input("B", &[j]));
    let (a1, b1) = (b.r(ta, &[i, j]), b.r(tb, &[j]));
    let x = b.prod(&[a1, b1], &[j]);
    b.stmt("X", &[i], x);
    let (b2, a2) = (b.r(tb, &[j]), b.r(ta, &[i, j]));
    let y = b.prod(&[b2, a2], &[j]);
    b.stmt("Y", &[i], y);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(out.stmts[0].value, out.stmts[1].value);
    assert_eq!(out.exprs.len(), 3);
    assert_eq!(report.cost_before, 24.0);
    assert_eq!(report.cost_after, 12.0);
}

/// `n` matrices M_m[i_m, i_{m+1}] of size 4..: one flat einsum, or nested left-deep.
fn chain(n: usize, nested: bool) -> Program {
    let mut b = B::default();
    let ix: Vec<IndexId> = (0..=n)
        .map(|m| b.idx(&format!("i{m}"), 4 + m as u64))
        .collect();
    let rs: Vec<ExprId> = (0..n)
        .map(|m| {
            let t = b.input(&format!("M{m}"), &ix[m..m + 2]);
            b.r(t, &ix[m..m + 2])
        })
        .collect();
    let v = if nested {
        let mut acc = rs[0];
        for m in 1..n {
            acc = b.prod(&[acc, rs[m]], &[ix[m]]);
        }
        acc
    } else {
        b.prod(&rs, &ix[1..n])
    };
    b.stmt("X", &[ix[0], ix[n]], v);
    b.0
}

#[test]
fn twelve_factor_chain_is_fast_and_small() {
    for nested in [false, true] {
        let p = chain(12, nested);
        let t = Instant::now();
        let (_, report) = check(&p, &OptimizeConfig::default());
        let elapsed = t.elapsed();
        eprintln!("chain 12 nested={nested}: {report:?}, check() incl. 2 runs: {elapsed:?}");
        assert!(report.nodes < 5000, "{report:?}");
        assert_eq!(report.stop_reason, "saturated");
        let t = Instant::now();
        optimize(&p, &OptimizeConfig::default());
        assert!(t.elapsed().as_millis() < 1000, "{:?}", t.elapsed());
    }
}

#[test]
fn runner_limits_are_reported() {
    let p = chain(12, true);
    let tiny = OptimizeConfig {
        node_limit: 30,
        ..OptimizeConfig::default()
    };
    assert_eq!(check(&p, &tiny).1.stop_reason, "node limit 30");
    let one = OptimizeConfig {
        iter_limit: 1,
        ..OptimizeConfig::default()
    };
    let (_, r) = check(&p, &one);
    assert_eq!(
        (r.stop_reason.as_str(), r.iterations),
        ("iteration limit", 1)
    );
}

#[test]
fn softmax_shaped_program_passes_through() {
    // M[i] = max_j S[i,j]; E[i,j] = exp(S[i,j] - M[i]); Z[i] = sum_j E[i,j];
    // P[i,j] = E[i,j] / Z[i]; and O[i] = sum_j P[i,j] * 1.0 (a Const factor).
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 5));
    let ts = b.input("S", &[i, j]);
    let s = b.r(ts, &[i, j]);
    let mx = b.add(Expr::Reduce {
        op: ReduceOp::Max,
        indices: vec![j],
        arg: s,
    });
    let tm = b.stmt("M", &[i], mx);
    let m = b.r(tm, &[i]);
    let d = b.add(Expr::Map {
        op: MapOp::Sub,
        args: vec![s, m],
    });
    let e = b.add(Expr::Map {
        op: MapOp::Exp,
        args: vec![d],
    });
    let te = b.stmt("E", &[i, j], e);
    let e1 = b.r(te, &[i, j]);
    let z = b.prod(&[e1], &[j]);
    let tz = b.stmt("Z", &[i], z);
    let (e2, z1) = (b.r(te, &[i, j]), b.r(tz, &[i]));
    let div = b.add(Expr::Map {
        op: MapOp::Div,
        args: vec![e2, z1],
    });
    let tp = b.stmt("P", &[i, j], div);
    let (p1, one) = (b.r(tp, &[i, j]), b.add(Expr::Const(1.0)));
    let o = b.prod(&[p1, one], &[j]);
    let sum = b.add(Expr::Add(vec![o, z1]));
    b.stmt("O", &[i], sum);
    let (out, _) = check(&b.0, &OptimizeConfig::default());
    // E[i,j] is read twice; after hash-consing it is one expression.
    let refs_e = out
        .exprs
        .iter()
        .filter(|(_, x)| matches!(x, Expr::Ref { tensor, .. } if *tensor == te))
        .count();
    assert_eq!(refs_e, 1);
}
