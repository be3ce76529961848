//! Test kit for the e-graph pass: a program builder, a reference evaluator, and
//! [`check`], which verifies an optimised program, compares its values with the input's
//! on pseudo-random data, and re-optimises to check determinism.

use super::lang::{ENode, IrAnalysis};
use super::*;
use crate::ir::*;
use crate::verify::verify;
use egg::{EGraph, Id};
use einc_frontend::ein::ast::DType;
use einc_frontend::Span;
use std::collections::BTreeMap;

/// Hand-built programs.
#[derive(Default)]
pub(super) struct B(pub(super) Program);

impl B {
    pub(super) fn idx(&mut self, name: &str, size: u64) -> IndexId {
        self.0.indices.push(Index {
            name: name.into(),
            size,
            span: None,
        })
    }
    pub(super) fn input(&mut self, name: &str, axes: &[IndexId]) -> TensorId {
        self.tensor(name, axes, DType::F64, TensorKind::Input)
    }
    pub(super) fn tensor(
        &mut self,
        name: &str,
        axes: &[IndexId],
        dtype: DType,
        kind: TensorKind,
    ) -> TensorId {
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
    pub(super) fn add(&mut self, e: Expr) -> ExprId {
        let n = self.0.exprs.len();
        self.0.add_expr(e, Some(Span::new(n, n + 1)))
    }
    pub(super) fn r(&mut self, tensor: TensorId, indices: &[IndexId]) -> ExprId {
        self.add(Expr::Ref {
            tensor,
            indices: indices.to_vec(),
        })
    }
    pub(super) fn prod(&mut self, factors: &[ExprId], summed: &[IndexId]) -> ExprId {
        self.add(Expr::Product {
            factors: factors.to_vec(),
            summed: summed.to_vec(),
        })
    }
    pub(super) fn stmt(&mut self, name: &str, indices: &[IndexId], value: ExprId) -> TensorId {
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
pub(super) fn check(p: &Program, cfg: &OptimizeConfig) -> (Program, OptimizeReport) {
    verify(p, "test input").unwrap();
    let (out, report) = optimize(p, cfg);
    verify(&out, "optimize").unwrap_or_else(|e| panic!("{e}\n{out:#?}"));
    assert_eq!(
        (&out.indices, &out.tensors, &out.outputs),
        (&p.indices, &p.tensors, &p.outputs)
    );
    let (before, after) = (run(p), run(&out));
    // Statements folded into their readers may be gone; outputs never are.
    for o in &p.outputs {
        assert!(after.contains_key(o), "output {o:?} lost");
    }
    for s in p.stmts.iter().filter(|s| after.contains_key(&s.target)) {
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

pub(super) fn fired(r: &OptimizeReport, rule: &str) -> usize {
    r.rewrites_applied
        .iter()
        .find(|(n, _)| n == rule)
        .unwrap()
        .1
}

/// Saturates `p` with the pass's rules and returns the e-graph and statement roots.
pub(super) fn saturate(p: &Program) -> (EGraph<ENode, IrAnalysis>, Vec<Id>) {
    let (runner, encoded) = runner_for(p, &OptimizeConfig::default(), &[]);
    let runner = runner.run(&rules::rules());
    let roots = encoded
        .roots
        .iter()
        .map(|&r| runner.egraph.find(r))
        .collect();
    (runner.egraph, roots)
}

/// Product nodes of a class as (number of factors, summed indices).
pub(super) fn products(eg: &EGraph<ENode, IrAnalysis>, class: Id) -> Vec<(usize, Vec<IndexId>)> {
    eg[class]
        .nodes
        .iter()
        .filter_map(ENode::as_product)
        .map(|(f, s)| (f.len(), s.to_vec()))
        .collect()
}

/// Whether some product node of `class` has both references as direct factors.
pub(super) fn together(eg: &EGraph<ENode, IrAnalysis>, class: Id, x: ENode, y: ENode) -> bool {
    let (x, y) = (eg.lookup(x).unwrap(), eg.lookup(y).unwrap());
    eg[class]
        .nodes
        .iter()
        .filter_map(ENode::as_product)
        .any(|(f, _)| f.contains(&x) && f.contains(&y))
}

pub(super) fn ref_node(tensor: TensorId, indices: &[IndexId]) -> ENode {
    ENode::Ref {
        tensor,
        indices: indices.to_vec(),
    }
}

pub(super) fn product_of(p: &Program, e: ExprId) -> (&[ExprId], &[IndexId]) {
    match &p.exprs[e] {
        Expr::Product { factors, summed } => (factors, summed),
        other => panic!("expected a product, got {other:?}"),
    }
}

/// A small deterministic generator (no dependency, reproducible failures by seed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A random valid program: nested products (1-3 factors, random sums over their free
/// indices) of Refs, with repeated indices and reused subexpressions, over a pool of
/// five indices that every level reuses, so inner and outer sums often share a name.
pub(super) fn random_program(seed: u64) -> Program {
    let mut rng = Lcg(seed);
    let mut b = B::default();
    let pool: Vec<IndexId> = (0..5)
        .map(|k| b.idx(&format!("p{k}"), 2 + (k % 2) as u64))
        .collect();
    let mut built: Vec<ExprId> = Vec::new();
    fn gen(
        b: &mut B,
        rng: &mut Lcg,
        pool: &[IndexId],
        built: &mut Vec<ExprId>,
        depth: usize,
    ) -> ExprId {
        if !built.is_empty() && rng.below(7) == 0 {
            return built[rng.below(built.len())];
        }
        let e = if depth == 0 || rng.below(3) == 0 {
            let ix: Vec<IndexId> = (0..rng.below(4))
                .map(|_| pool[rng.below(pool.len())])
                .collect();
            let axes: Vec<IndexId> = ix
                .iter()
                .map(|&i| {
                    let size = b.0.size(i);
                    b.idx("ax", size)
                })
                .collect();
            let name = format!("T{}", b.0.tensors.len());
            let t = b.input(&name, &axes);
            b.r(t, &ix)
        } else {
            let factors: Vec<ExprId> = (0..1 + rng.below(3))
                .map(|_| gen(b, rng, pool, built, depth - 1))
                .collect();
            let free: Vec<IndexId> = union_free(&b.0, &factors);
            let summed: Vec<IndexId> = free.into_iter().filter(|_| rng.below(2) == 0).collect();
            b.prod(&factors, &summed)
        };
        built.push(e);
        e
    }
    for s in 0..1 + rng.below(3) {
        let v = gen(&mut b, &mut rng, &pool, &mut built, 4);
        let free = b.0.free(v);
        b.stmt(&format!("X{s}"), &free, v);
    }
    b.0
}

fn union_free(p: &Program, es: &[ExprId]) -> Vec<IndexId> {
    let mut v: Vec<IndexId> = es.iter().flat_map(|&e| p.free(e)).collect();
    v.sort();
    v.dedup();
    v
}
