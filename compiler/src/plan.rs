//! `plan`: IR to an SSA list of executable steps.
//!
//! Each product node becomes: per-factor unary steps (diagonals, and sums over indices
//! private to that factor), then the pairwise contractions chosen by `order::search`, each a
//! GEMM-shaped step. Maps, adds and reductions become one step each. Values are labelled by
//! index ids, so a step's axis order is explicit in `Step::indices`; the statement's last
//! step permutes into the left-hand side's order.
//!
//! Invariants (checked by `Plan::verify`): every step reads only earlier values; every
//! value's indices are distinct except for `Load` (a reference like `T[i, i]`); a
//! `Contract` step's indices are a subset of its operands' union; `Unary`/`Reduce` steps'
//! indices are a subset of their argument's; `Store` writes each result once.

use crate::ir::*;
use crate::order::{self, Limits, Optimizer};
use einc_frontend::ein::ast::DType;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemOp {
    Add,
    Map(MapOp),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The array of a tensor (an input, or a result stored earlier), its axes labelled by
    /// the step's indices (which may repeat).
    Load { tensor: TensorId },
    /// A real scalar, cast to whatever dtype reads it.
    Const(f64),
    /// One-operand einsum: diagonal, trace, sum over indices not kept, permutation.
    Unary { arg: ValueId },
    /// Pairwise contraction: indices of both operands missing from the result are summed.
    Contract { lhs: ValueId, rhs: ValueId },
    /// Elementwise op over the union of the arguments' indices (broadcasting by label).
    Elementwise { op: ElemOp, args: Vec<ValueId> },
    /// Non-sum reduction over the argument's indices missing from the result.
    Reduce { op: ReduceOp, arg: ValueId },
    /// Make `arg` the value of result tensor `tensor` (indices equal the tensor's axes).
    Store { tensor: TensorId, arg: ValueId },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub out: ValueId,
    pub op: Op,
    pub indices: Vec<IndexId>,
    pub dtype: DType,
    /// opt_einsum opt_cost convention for contractions; elements touched otherwise.
    pub flops: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub program: Program,
    pub steps: Vec<Step>,
    pub optimizer: Optimizer,
    /// Order-search notes (fallbacks), for dumps.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct PlanConfig {
    pub optimizer: Optimizer,
    pub limits: Limits,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            optimizer: Optimizer::Auto,
            limits: Limits::default(),
        }
    }
}

/// Why a plan could not be built (order search refused, e.g. under a memory limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError(pub String);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for PlanError {}

pub fn plan(p: &Program, cfg: &PlanConfig) -> Result<Plan, PlanError> {
    let mut b = Builder {
        p,
        cfg,
        steps: Vec::new(),
        memo: BTreeMap::new(),
        permuted: Vec::new(),
        root: None,
        notes: Vec::new(),
    };
    for s in &p.stmts {
        let dtype = p.tensors[s.target].dtype;
        // The statement's root product writes its last contraction straight in the
        // left-hand side's order, saving a permutation pass over the result.
        b.root = Some((s.value, s.indices.clone()));
        let v = b.expr(s.value)?;
        let v = b.permute(v, &s.indices, dtype);
        b.push(
            Op::Store {
                tensor: s.target,
                arg: v,
            },
            s.indices.clone(),
            dtype,
            0.0,
        );
    }
    Ok(Plan {
        program: p.clone(),
        steps: b.steps,
        optimizer: cfg.optimizer,
        notes: b.notes,
    })
}

struct Builder<'a> {
    p: &'a Program,
    cfg: &'a PlanConfig,
    steps: Vec<Step>,
    memo: BTreeMap<ExprId, ValueId>,
    /// The statement root being planned and the axis order its result should have.
    root: Option<(ExprId, Vec<IndexId>)>,
    /// Permutations already emitted: (value, wanted indices, dtype) → value.
    permuted: Vec<(ValueId, Vec<IndexId>, DType, ValueId)>,
    notes: Vec<String>,
}

impl Builder<'_> {
    fn push(&mut self, op: Op, indices: Vec<IndexId>, dtype: DType, flops: f64) -> ValueId {
        let out = ValueId(self.steps.len() as u32);
        self.steps.push(Step {
            out,
            op,
            indices,
            dtype,
            flops,
        });
        out
    }

    fn value(&self, v: ValueId) -> &Step {
        &self.steps[v.0 as usize]
    }

    fn elements(&self, idx: &[IndexId]) -> f64 {
        idx.iter().map(|&i| self.p.size(i) as f64).product()
    }

    /// A unary step to `want` (distinct indices), unless `v` already is exactly that.
    fn permute(&mut self, v: ValueId, want: &[IndexId], dtype: DType) -> ValueId {
        let have = &self.value(v).indices;
        if have == want && self.value(v).dtype == dtype {
            return v;
        }
        if let Some(&(.., done)) = self
            .permuted
            .iter()
            .find(|(a, w, d, _)| *a == v && w == want && *d == dtype)
        {
            return done;
        }
        let flops = self.elements(&self.value(v).indices.clone());
        let out = self.push(Op::Unary { arg: v }, want.to_vec(), dtype, flops);
        self.permuted.push((v, want.to_vec(), dtype, out));
        out
    }

    fn expr(&mut self, e: ExprId) -> Result<ValueId, PlanError> {
        if let Some(&v) = self.memo.get(&e) {
            return Ok(v);
        }
        let dtype = self.p.dtype(e);
        let v = match &self.p.exprs[e] {
            Expr::Ref { tensor, indices } => self.push(
                Op::Load { tensor: *tensor },
                indices.clone(),
                self.p.tensors[*tensor].dtype,
                0.0,
            ),
            Expr::Const(x) => self.push(Op::Const(*x), vec![], dtype, 0.0),
            Expr::Product { factors, summed } => {
                let vals = factors
                    .iter()
                    .map(|&f| self.expr(f))
                    .collect::<Result<Vec<_>, _>>()?;
                let free = self.p.free(e);
                let want = match &self.root {
                    Some((r, w)) if *r == e => Some(w.clone()),
                    _ => None,
                };
                self.product(&vals, summed, &free, dtype, want.as_deref())?
            }
            Expr::Add(args) => {
                let vals = args
                    .iter()
                    .map(|&f| self.expr(f))
                    .collect::<Result<Vec<_>, _>>()?;
                self.elementwise(ElemOp::Add, vals, dtype)
            }
            Expr::Map { op, args } => {
                let vals = args
                    .iter()
                    .map(|&f| self.expr(f))
                    .collect::<Result<Vec<_>, _>>()?;
                self.elementwise(ElemOp::Map(*op), vals, dtype)
            }
            Expr::Reduce { op, arg, .. } => {
                let a = self.expr(*arg)?;
                let free = self.p.free(e);
                let flops = self.elements(&self.value(a).indices.clone());
                self.push(Op::Reduce { op: *op, arg: a }, free, dtype, flops)
            }
        };
        self.memo.insert(e, v);
        Ok(v)
    }

    fn elementwise(&mut self, op: ElemOp, vals: Vec<ValueId>, dtype: DType) -> ValueId {
        // Repeated labels (a bare `T[i,i]` in a map) are taken as diagonals first.
        let vals: Vec<ValueId> = vals
            .into_iter()
            .map(|v| {
                let idx = self.value(v).indices.clone();
                let d = dedup(&idx);
                if d.len() != idx.len() {
                    let dt = self.value(v).dtype;
                    self.permute(v, &d, dt)
                } else {
                    v
                }
            })
            .collect();
        let mut out: Vec<IndexId> = vals
            .iter()
            .flat_map(|&v| self.value(v).indices.clone())
            .collect();
        out = dedup(&out);
        let flops = self.elements(&out) * (vals.len().max(2) - 1) as f64;
        if op == ElemOp::Add && vals.len() > 2 {
            // n-ary add as a left fold of binary adds.
            let mut acc = vals[0];
            for &v in &vals[1..] {
                let mut idx = self.value(acc).indices.clone();
                idx.extend(self.value(v).indices.clone());
                let idx = dedup(&idx);
                let f = self.elements(&idx);
                acc = self.push(
                    Op::Elementwise {
                        op,
                        args: vec![acc, v],
                    },
                    idx,
                    dtype,
                    f,
                );
            }
            return acc;
        }
        self.push(Op::Elementwise { op, args: vals }, out, dtype, flops)
    }

    fn product(
        &mut self,
        vals: &[ValueId],
        summed: &[IndexId],
        free: &[IndexId],
        dtype: DType,
        want: Option<&[IndexId]>,
    ) -> Result<ValueId, PlanError> {
        // Per-factor preprocessing: drop repeated labels (diagonal) and sum indices that
        // are summed here and used by no other factor.
        let mut ops: Vec<ValueId> = Vec::with_capacity(vals.len());
        for (k, &v) in vals.iter().enumerate() {
            let idx = self.value(v).indices.clone();
            let keep: Vec<IndexId> = dedup(&idx)
                .into_iter()
                .filter(|i| {
                    !summed.contains(i)
                        || vals
                            .iter()
                            .enumerate()
                            .any(|(j, &w)| j != k && self.value(w).indices.contains(i))
                })
                .collect();
            if keep != idx || self.value(v).dtype != dtype {
                let flops = self.elements(&dedup(&idx));
                ops.push(self.push(Op::Unary { arg: v }, keep, dtype, flops));
            } else {
                ops.push(v);
            }
        }
        if ops.len() == 1 {
            return Ok(ops[0]);
        }
        let inputs: Vec<Vec<u32>> = ops
            .iter()
            .map(|&v| self.value(v).indices.iter().map(|i| i.0).collect())
            .collect();
        let output: Vec<u32> = free.iter().map(|i| i.0).collect();
        let sizes: Vec<u64> = self.p.indices.iter().map(|(_, i)| i.size).collect();
        let info = order::search(
            &inputs,
            &output,
            &sizes,
            self.cfg.optimizer,
            &self.cfg.limits,
        )
        .map_err(|e| PlanError(format!("contraction-order search failed: {e}")))?;
        self.notes.extend(info.notes.iter().cloned());
        let mut live = ops;
        for (k, &(a, b)) in info.path.pairs.iter().enumerate() {
            let (a, b) = (a.min(b), a.max(b));
            if b >= live.len() {
                return Err(PlanError(format!(
                    "order search returned an invalid pair ({a}, {b})"
                )));
            }
            let vb = live.remove(b);
            let va = live.remove(a);
            let mut keep: Vec<IndexId> = Vec::new();
            for i in self.value(va).indices.iter().chain(&self.value(vb).indices) {
                if keep.contains(i) {
                    continue;
                }
                let needed =
                    free.contains(i) || live.iter().any(|&w| self.value(w).indices.contains(i));
                if needed {
                    keep.push(*i);
                }
            }
            // The last contraction of a statement's root writes in the wanted order.
            if live.is_empty() {
                if let Some(w) = want {
                    if w.len() == keep.len() && w.iter().all(|i| keep.contains(i)) {
                        keep = w.to_vec();
                    }
                }
            }
            let flops = info.steps.get(k).map(|s| s.flops).unwrap_or(0.0);
            let v = self.push(Op::Contract { lhs: va, rhs: vb }, keep, dtype, flops);
            live.push(v);
        }
        match live.as_slice() {
            [v] => Ok(*v),
            _ => Err(PlanError("order search returned an incomplete path".into())),
        }
    }
}

fn dedup(idx: &[IndexId]) -> Vec<IndexId> {
    let mut out: Vec<IndexId> = Vec::with_capacity(idx.len());
    for &i in idx {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

impl Plan {
    /// Check the plan invariants listed in the module doc.
    pub fn verify(&self) -> Result<(), PlanError> {
        let err =
            |s: &Step, m: &str| Err(PlanError(format!("invalid plan at step %{}: {m}", s.out.0)));
        let mut stored = Vec::new();
        for (k, s) in self.steps.iter().enumerate() {
            if s.out.0 as usize != k {
                return err(s, "value numbering is not sequential");
            }
            let earlier = |v: &ValueId| (v.0 as usize) < k;
            let sub = |a: &[IndexId], of: &[IndexId]| a.iter().all(|i| of.contains(i));
            if !matches!(s.op, Op::Load { .. }) && dedup(&s.indices).len() != s.indices.len() {
                return err(s, "repeated index in a computed value");
            }
            match &s.op {
                Op::Load { .. } | Op::Const(_) => {}
                Op::Unary { arg } | Op::Reduce { arg, .. } => {
                    if !earlier(arg) || !sub(&s.indices, &self.steps[arg.0 as usize].indices) {
                        return err(s, "unary/reduce reads a later value or invents an index");
                    }
                }
                Op::Contract { lhs, rhs } => {
                    if !earlier(lhs) || !earlier(rhs) {
                        return err(s, "contraction reads a later value");
                    }
                    let mut u = self.steps[lhs.0 as usize].indices.clone();
                    u.extend(self.steps[rhs.0 as usize].indices.iter().copied());
                    if !sub(&s.indices, &u) {
                        return err(s, "contraction invents an index");
                    }
                }
                Op::Elementwise { args, .. } => {
                    if !args.iter().all(earlier) {
                        return err(s, "elementwise step reads a later value");
                    }
                }
                Op::Store { tensor, arg } => {
                    if !earlier(arg) || stored.contains(tensor) {
                        return err(s, "store of a later value, or a second store");
                    }
                    if self.program.tensors[*tensor].axes != s.indices {
                        return err(s, "store does not match the tensor's axes");
                    }
                    stored.push(*tensor);
                }
            }
        }
        Ok(())
    }

    /// Total flops (opt_cost convention for contractions).
    pub fn flops(&self) -> f64 {
        self.steps.iter().map(|s| s.flops).sum()
    }

    /// Largest computed value, in elements.
    pub fn largest_intermediate(&self) -> f64 {
        self.steps
            .iter()
            .filter(|s| !matches!(s.op, Op::Load { .. } | Op::Store { .. }))
            .map(|s| {
                s.indices
                    .iter()
                    .map(|&i| self.program.size(i) as f64)
                    .product::<f64>()
            })
            .fold(0.0, f64::max)
    }
}
