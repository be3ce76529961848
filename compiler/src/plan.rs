//! `plan`: IR to an SSA list of executable steps.
//!
//! Each product node becomes: per-factor unary steps (diagonals, and sums over indices
//! private to that factor), then the pairwise contractions chosen by `order::search`, each a
//! GEMM-shaped step. Maps, adds and reductions become one step each. Values are labelled by
//! index ids, so a step's axis order is explicit in `Step::indices`; the statement's last
//! step permutes into the left-hand side's order.
//!
//! Invariants (checked by `Plan::verify`): every step reads only earlier values; every
//! value's indices are distinct except for `Load` and `Arg` (a reference like `T[i, i]`); a
//! `Contract` step's indices are a subset of its operands' union; `Unary`/`Reduce` steps'
//! indices are a subset of their argument's; `Store` writes each result once. A `SliceSum`
//! body obeys the same rules on its own numbering, holds only `Arg`/`Unary`/`Contract`
//! steps, never mentions a sliced index, and its last step has the `SliceSum`'s indices;
//! `Arg` appears nowhere else. A `FusedSum` reads an earlier `Fused` step, keeps a proper
//! prefix of its indices in the same order and its dtype, is the only one of that step,
//! and occurs in sum-product plans only.

use crate::ir::*;
use crate::order::{self, Budget, Limits, Optimizer};
pub use crate::semiring::Semiring;
use einc_frontend::ein::ast::DType;
pub use memory::SWEEP_FLOPS;
use memory::{low_memory_order, shared_ends};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemOp {
    Add,
    /// Only from a product whose factors all hold the same indices ([`Builder::hadamard`]):
    /// the language's own products are einsums.
    Mul,
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
    /// A product sliced to meet a memory limit: `body` runs once per combination of values
    /// of the `sliced` indices (summed by the product, none kept in the result), reading
    /// `args` through [`Op::Arg`], and the results of its last step are added up.
    /// Body steps are numbered from 0 and see only `Arg`, `Unary` and `Contract`.
    SliceSum {
        args: Vec<ValueId>,
        sliced: Vec<IndexId>,
        body: Vec<Step>,
    },
    /// Inside a `SliceSum` body only: argument `k` of the enclosing step with its sliced
    /// axes fixed to the current slice (so its indices are the argument's minus those).
    Arg(usize),
    /// A chain of elementwise steps evaluated in one pass over the result (see
    /// [`fuse`]): `nodes` in evaluation order, the last one the value; broadcasting by
    /// label as for `Elementwise`.
    Fused {
        args: Vec<ValueId>,
        nodes: Vec<FusedNode>,
    },
    /// The sum of the `Fused` step `of` over its trailing indices (those missing from this
    /// step's, which are a proper prefix of `of`'s), accumulated in that step's own pass
    /// instead of a second pass re-reading its value (see [`fuse`]). Sum-product only.
    FusedSum { of: ValueId },
}

/// A node of a fused elementwise chain.
#[derive(Clone, Debug, PartialEq)]
pub enum FusedNode {
    /// Argument `k` of the step.
    Arg(usize),
    /// An operation on earlier nodes.
    Apply(ElemOp, Vec<usize>),
}

impl Op {
    /// The values this step reads.
    pub fn args(&self) -> Vec<ValueId> {
        self.arg_iter().collect()
    }

    /// [`Op::args`] without allocating (the executor walks them on every call).
    pub fn arg_iter(&self) -> impl Iterator<Item = ValueId> + '_ {
        let (pair, rest): ([Option<ValueId>; 2], &[ValueId]) = match self {
            Op::Load { .. } | Op::Const(_) | Op::Arg(_) => ([None, None], &[]),
            Op::Unary { arg } | Op::Reduce { arg, .. } | Op::Store { arg, .. } => {
                ([Some(*arg), None], &[])
            }
            Op::FusedSum { of } => ([Some(*of), None], &[]),
            Op::Contract { lhs, rhs } => ([Some(*lhs), Some(*rhs)], &[]),
            Op::Elementwise { args, .. } | Op::SliceSum { args, .. } | Op::Fused { args, .. } => {
                ([None, None], args)
            }
        };
        pair.into_iter().flatten().chain(rest.iter().copied())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub out: ValueId,
    pub op: Op,
    pub indices: Vec<IndexId>,
    pub dtype: DType,
    /// opt_einsum opt_cost convention for contractions; otherwise one per element of each
    /// pass over the data: a unary, elementwise or reduction step one per element it
    /// reads or writes (the larger), a `Fused` chain one per element of its one pass
    /// however many operations it applies, and a `FusedSum` nothing (its additions ride
    /// on the `Fused` pass). The workload file's reference costs count the same way.
    pub flops: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub program: Program,
    pub steps: Vec<Step>,
    pub optimizer: Optimizer,
    /// The arithmetic of `Unary` reductions, `Contract` steps and slice sums.
    pub semiring: Semiring,
    /// Order-search notes (fallbacks), for dumps.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct PlanConfig {
    pub optimizer: Optimizer,
    pub limits: Limits,
    pub semiring: Semiring,
    /// How many times the searched tree's flops a plan may cost to stay within its
    /// largest intermediate plus its result (a rotated tree or a sweep, see
    /// `plan/memory.rs`); [`SWEEP_FLOPS`] by default, 1 or less keeps the searched tree.
    pub memory_flops: f64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            optimizer: Optimizer::Auto,
            limits: Limits::default(),
            semiring: Semiring::SumProduct,
            memory_flops: SWEEP_FLOPS,
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
    check_semiring(p, cfg.semiring)?;
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
        // left-hand side's order, saving a permutation pass over the result (unless
        // `orient::turn` lays it out for its GEMM; then this permutes it).
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
        steps: fuse::fuse_sums(fuse::fuse_elementwise(b.steps), cfg.semiring),
        optimizer: cfg.optimizer,
        semiring: cfg.semiring,
        notes: b.notes,
    })
}

/// A semiring other than sum-product gives meaning only to products (its `⊕` over summed
/// indices and its `⊗` between factors) of real tensors: constants, additions, maps and
/// reductions would be ambiguous (is `a + b` then `max(a, b)`?), so they are refused.
fn check_semiring(p: &Program, semiring: Semiring) -> Result<(), PlanError> {
    if semiring == Semiring::SumProduct {
        return Ok(());
    }
    if let Some((_, t)) = p
        .tensors
        .iter()
        .find(|(_, t)| matches!(t.dtype, DType::C64 | DType::C128))
    {
        return Err(PlanError(format!(
            "the {semiring} semiring needs real tensors; '{}' is {}",
            t.name,
            t.dtype.name()
        )));
    }
    for s in &p.stmts {
        let mut stack = vec![s.value];
        while let Some(e) = stack.pop() {
            let what = match &p.exprs[e] {
                Expr::Ref { .. } => continue,
                Expr::Product { factors, .. } => {
                    stack.extend(factors.iter().copied());
                    continue;
                }
                Expr::Const(_) => "a constant",
                Expr::Add(_) => "an addition",
                Expr::Map { .. } => "an elementwise function",
                Expr::Reduce { .. } => "a reduction",
            };
            return Err(PlanError(format!(
                "the {semiring} semiring applies to products of tensors only, but the \
                 statement for '{}' uses {what}",
                p.tensors[s.target].name
            )));
        }
    }
    Ok(())
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

    /// Orders each intermediate of the pairwise steps from `first` on for the step that
    /// reads it, root first: the labels that step keeps, in its result's order, then the
    /// ones it sums, in the other operand's order. The kernels then walk both operands of
    /// a Hadamard or broadcast step in the same direction (`bxyr ⊙ xyr`, not `⊙ xry`,
    /// whose inner loop gathers) and find a GEMM operand's groups already contiguous.
    ///
    /// A new order is taken only when it keeps the producing step's own label classes
    /// (left only, right only, both) each in one run, so that the producer's result
    /// stays a plain matrix (or batch of matrices) for its GEMM.
    ///
    /// Except where the executor will compute a step in the buffer of the operand it
    /// consumes (runtime `inplace.rs`): where its computed operands and its result
    /// together exceed the product's largest intermediate plus `slack` (the statement's
    /// result, held at the end anyway; a result counted with the room its in-place chain
    /// needs later, when below `FREE_ROOM`, so that a chain that grows runs in place from
    /// its start). There the operand takes [`shared_ends`]'s order, so that
    /// it shares its leading and trailing labels with the result, whatever its GEMM.
    ///
    /// And except for the last step of a statement's root product (`root`), which
    /// [`orient::turn`] may lay out, with its operand, for an NN GEMM; the statement's
    /// closing permutation then puts the result in the wanted order.
    fn relayout(&mut self, first: usize, slack: f64, root: bool) {
        let size = |b: &Self, v: ValueId| b.elements(&b.value(v).indices);
        let largest = (first..self.steps.len())
            .map(|k| size(self, ValueId(k as u32)))
            .fold(0.0, f64::max);
        // Room (elements) each value's buffer needs for the later steps of its in-place
        // chain that grow it (as the runtime's `inplace::choose` counts it): a step that
        // writes such a buffer fresh holds the room beside its operands.
        let mut room = vec![0.0f64; self.steps.len()];
        for c in (first..self.steps.len()).rev() {
            let Op::Contract { lhs, rhs } = self.steps[c].op else {
                continue;
            };
            // Elements the step holds when it writes a fresh result (inputs are borrowed).
            let held = |b: &Self, v: ValueId| match b.value(v).op {
                Op::Load { .. } | Op::Const(_) | Op::Arg(_) => 0.0,
                _ => size(b, v),
            };
            // Room of at least `FREE_ROOM` costs nothing until written (the runtime gives
            // its pages back), as the peak model counts it.
            let own = size(self, ValueId(c as u32));
            let full = own.max(room[c]);
            let result = if full - own < memory::FREE_ROOM {
                full
            } else {
                own
            };
            let holds = held(self, lhs) + held(self, rhs) + result;
            let mut consumed: Option<ValueId> = None;
            for v in [lhs, rhs] {
                let own = v.0 as usize >= first
                    && lhs != rhs
                    && matches!(self.value(v).op, Op::Contract { .. });
                if own
                    && holds > largest + slack
                    && consumed.is_none_or(|w| size(self, v) > size(self, w))
                {
                    consumed = Some(v);
                }
            }
            // The turn's gain was measured on real sum-product GEMMs; the other semirings'
            // kernels copy operands to standard order anyway.
            let gemm = self.cfg.semiring == Semiring::SumProduct
                && matches!(self.steps[c].dtype, DType::F32 | DType::F64);
            if root && gemm && consumed.is_none() && c + 1 == self.steps.len() {
                let len = |i: IndexId| self.p.size(i) as f64;
                if let Some(t) = orient::turn(&self.steps, c, first, len) {
                    self.steps[t.x].indices = t.x_indices;
                    self.steps[c].indices = t.result;
                    continue;
                }
            }
            for (x, other) in [(lhs, rhs), (rhs, lhs)] {
                let xi = x.0 as usize;
                if xi < first {
                    continue;
                }
                if consumed == Some(x) {
                    if full > size(self, x) {
                        room[xi] = room[xi].max(full);
                    }
                    // The labels `x` carries over from the operand its own step likely
                    // consumes (the larger computed one): kept together at one end, they
                    // let that step run in place too.
                    let carried = match self.steps[xi].op {
                        Op::Contract { lhs: pl, rhs: pr } => {
                            let pick = if held(self, pr) > held(self, pl) {
                                pr
                            } else {
                                pl
                            };
                            self.value(pick).indices.clone()
                        }
                        _ => Vec::new(),
                    };
                    let new = shared_ends(
                        &self.steps[xi].indices,
                        &self.steps[c].indices,
                        &self.steps[other.0 as usize].indices,
                        &carried,
                    );
                    self.steps[xi].indices = new;
                    continue;
                }
                if !matches!(self.steps[xi].op, Op::Contract { .. }) {
                    continue;
                }
                let cur = &self.steps[xi].indices;
                let (out, oth) = (
                    &self.steps[c].indices,
                    &self.steps[other.0 as usize].indices,
                );
                let key = |i: &IndexId| match out.iter().position(|j| j == i) {
                    Some(p) => p,
                    None => out.len() + oth.iter().position(|j| j == i).unwrap_or(oth.len()),
                };
                let mut new = cur.clone();
                new.sort_by_key(key);
                if new == *cur || (cur.iter().any(|i| !out.contains(i)) && gemm_ready(cur, out)) {
                    continue;
                }
                if orient::keeps_classes(&self.steps, xi, &new) {
                    self.steps[xi].indices = new;
                }
            }
        }
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
        // are summed here and used by no other factor. Only decided here; the unary steps
        // are emitted once slicing is known, since a sliced factor is reduced per slice.
        let mut prep: Vec<(ValueId, Vec<IndexId>, bool)> = Vec::with_capacity(vals.len());
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
            let needs_unary = keep != idx || self.value(v).dtype != dtype;
            prep.push((v, keep, needs_unary));
        }
        if let [(v, keep, needs_unary)] = prep.as_slice() {
            return Ok(if *needs_unary {
                self.reduce_factor(*v, keep, dtype)
            } else {
                *v
            });
        }
        if let Some(v) = self.hadamard(&prep, free, dtype, want) {
            return Ok(v);
        }
        let inputs: Vec<Vec<u32>> = prep
            .iter()
            .map(|(_, keep, _)| keep.iter().map(|i| i.0).collect())
            .collect();
        let output: Vec<u32> = free.iter().map(|i| i.0).collect();
        let sizes: Vec<u64> = self.p.indices.iter().map(|(_, i)| i.size).collect();
        // A compile's search is sized to the contraction unless the caller chose (a budget,
        // or `hyper` by name: then the whole search, as `einc path` runs it).
        let default = match self.cfg.optimizer {
            Optimizer::Hyper => Budget::Search,
            _ => Budget::Compile,
        };
        let limits = Limits {
            budget: Some(self.cfg.limits.budget.unwrap_or(default)),
            batch_weight: Some(
                self.cfg
                    .limits
                    .batch_weight
                    .unwrap_or(order::EXEC_BATCH_WEIGHT),
            ),
            ..self.cfg.limits.clone()
        };
        let info = order::search(&inputs, &output, &sizes, self.cfg.optimizer, &limits)
            .map_err(|e| PlanError(format!("contraction-order search failed: {e}")))?;
        self.notes.extend(info.notes.iter().cloned());
        // A statement's result is held at the end anyway: the executor's in-place bound
        // allows it on top of the largest intermediate.
        let slack = if want.is_some() {
            output.iter().map(|&l| sizes[l as usize] as f64).product()
        } else {
            0.0
        };
        let info = if info.slicing.is_none() && info.pre_reduced.is_empty() {
            self.within_largest(info, &inputs, &output, &sizes, slack)
        } else {
            info
        };
        // A sliced tree runs inside a `SliceSum`: its steps go to a body of their own, on
        // arguments that no longer hold the sliced indices. A factor whose reduction keeps
        // a sliced index is reduced inside the body, one slice at a time, so that no
        // intermediate outside the body is larger than the limit wants.
        let sliced: Vec<IndexId> = info
            .slicing
            .as_ref()
            .map(|s| s.labels.iter().map(|&l| IndexId(l)).collect())
            .unwrap_or_default();
        let mut args: Vec<(ValueId, bool)> = Vec::with_capacity(prep.len());
        for (v, keep, needs_unary) in &prep {
            let inner = *needs_unary && keep.iter().any(|i| sliced.contains(i));
            if *needs_unary && !inner {
                args.push((self.reduce_factor(*v, keep, dtype), false));
            } else {
                args.push((*v, inner));
            }
        }
        let outer = (!sliced.is_empty()).then(|| std::mem::take(&mut self.steps));
        let mut live: Vec<ValueId> = match &outer {
            None => args.iter().map(|&(v, _)| v).collect(),
            Some(saved) => {
                let mut live = Vec::with_capacity(args.len());
                for (k, (&(v, inner), (_, keep, _))) in args.iter().zip(&prep).enumerate() {
                    let st = &saved[v.0 as usize];
                    let idx: Vec<IndexId> = st
                        .indices
                        .iter()
                        .filter(|i| !sliced.contains(i))
                        .copied()
                        .collect();
                    let dt = st.dtype;
                    let a = self.push(Op::Arg(k), idx.clone(), dt, 0.0);
                    live.push(if inner {
                        let kept = keep.iter().filter(|i| !sliced.contains(i)).copied();
                        let flops = self.elements(&dedup(&idx));
                        self.push(Op::Unary { arg: a }, kept.collect(), dtype, flops)
                    } else {
                        a
                    });
                }
                live
            }
        };
        let (pairs, step_flops) = low_memory_order(&info, live.len());
        let first_pair = self.steps.len();
        for (k, &(a, b)) in pairs.iter().enumerate() {
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
            // The last contraction of a statement's root writes in the wanted order
            // (unless `relayout` turns it).
            if live.is_empty() {
                if let Some(w) = want {
                    if w.len() == keep.len() && w.iter().all(|i| keep.contains(i)) {
                        keep = w.to_vec();
                    }
                }
            }
            let flops = step_flops.get(k).copied().unwrap_or(0.0);
            let v = self.push(Op::Contract { lhs: va, rhs: vb }, keep, dtype, flops);
            live.push(v);
        }
        let v = match live.as_slice() {
            [v] => *v,
            _ => return Err(PlanError("order search returned an incomplete path".into())),
        };
        self.relayout(first_pair, slack, want.is_some());
        let Some(saved) = outer else {
            return Ok(v);
        };
        let body = std::mem::replace(&mut self.steps, saved);
        let indices = body[v.0 as usize].indices.clone();
        let slices: f64 = sliced.iter().map(|&i| self.p.size(i) as f64).product();
        let flops = slices * body.iter().map(|s| s.flops).sum::<f64>();
        let args = args.into_iter().map(|(v, _)| v).collect();
        Ok(self.push(Op::SliceSum { args, sliced, body }, indices, dtype, flops))
    }
}

impl Builder<'_> {
    /// A factor's unary step before its product: its diagonal, its indices summed by
    /// the product and used by no other factor, its dtype; `keep` is what stays.
    fn reduce_factor(&mut self, v: ValueId, keep: &[IndexId], dtype: DType) -> ValueId {
        let flops = self.elements(&dedup(&self.value(v).indices));
        self.push(Op::Unary { arg: v }, keep.to_vec(), dtype, flops)
    }

    /// A product of at least three factors that all hold the same indices once reduced
    /// (`bi,bi,bi->b`) as one elementwise pass: a chain of multiplications, which
    /// `fuse_elementwise` makes one `Fused` step, and, where the product sums some of
    /// the indices, a sum over them that `fuse_sums` adds up inside that pass. Pairwise
    /// steps would write a Hadamard intermediate as large as a factor and read it again
    /// (`bi,bi,bi->b`: 2.5 array passes instead of 1.5 more over memory). Two factors stay a
    /// contraction, whose batched dot product reads each once already.
    ///
    /// Sum-product and real dtypes only: the pass multiplies with `*` and adds with `+`.
    /// `None` where the product is not of this form.
    fn hadamard(
        &mut self,
        prep: &[(ValueId, Vec<IndexId>, bool)],
        free: &[IndexId],
        dtype: DType,
        want: Option<&[IndexId]>,
    ) -> Option<ValueId> {
        let first = &prep.first()?.1;
        let same = prep
            .iter()
            .all(|(_, k, _)| k.len() == first.len() && k.iter().all(|i| first.contains(i)));
        let real = matches!(dtype, DType::F32 | DType::F64);
        if prep.len() < 3 || !same || !real || self.cfg.semiring != Semiring::SumProduct {
            return None;
        }
        // The kept indices lead, in the statement's order where this is its root, so
        // the sum keeps a prefix of the pass's indices (what `fuse_sums` needs).
        let kept: Vec<IndexId> = match want {
            Some(w) if w.len() == free.len() && w.iter().all(|i| free.contains(i)) => w.to_vec(),
            _ => free.to_vec(),
        };
        let mut idx = kept.clone();
        idx.extend(first.iter().filter(|i| !kept.contains(i)));
        let n = self.elements(&idx);
        let mut args = Vec::with_capacity(prep.len());
        for (v, keep, needs_unary) in prep {
            args.push(if *needs_unary {
                self.reduce_factor(*v, keep, dtype)
            } else {
                *v
            });
        }
        let mut acc = args[0];
        for &a in &args[1..] {
            let op = Op::Elementwise {
                op: ElemOp::Mul,
                args: vec![acc, a],
            };
            acc = self.push(op, idx.clone(), dtype, n);
        }
        if kept.len() == idx.len() {
            return Some(acc);
        }
        Some(self.push(Op::Unary { arg: acc }, kept, dtype, n))
    }
}

/// Whether `x`, an operand of a contraction with result labels `out`, is already a
/// matrix for it: the labels it keeps form one run in `out`'s order and the labels it
/// sums one run, either first. Reordering such an operand gains its GEMM nothing, and
/// costs its producer a transposed write.
fn gemm_ready(x: &[IndexId], out: &[IndexId]) -> bool {
    let kept: Vec<bool> = x.iter().map(|i| out.contains(i)).collect();
    let switches = kept.windows(2).filter(|w| w[0] != w[1]).count();
    let order: Vec<usize> = x
        .iter()
        .filter_map(|i| out.iter().position(|j| j == i))
        .collect();
    switches <= 1 && order.windows(2).all(|w| w[0] < w[1])
}

/// The plan invariants over one step list: the plan's own (`body: None`) or a `SliceSum`
/// body (`body: Some((argument indices, sliced indices))`).
fn verify_steps(
    plan: &Plan,
    steps: &[Step],
    body: Option<(&[Vec<IndexId>], &[IndexId])>,
    stored: &mut Vec<TensorId>,
) -> Result<(), PlanError> {
    let err = |s: &Step, m: &str| {
        let place = if body.is_some() {
            " of a slice body"
        } else {
            ""
        };
        Err(PlanError(format!(
            "invalid plan at step %{}{place}: {m}",
            s.out.0
        )))
    };
    for (k, s) in steps.iter().enumerate() {
        if s.out.0 as usize != k {
            return err(s, "value numbering is not sequential");
        }
        let earlier = |v: &ValueId| (v.0 as usize) < k;
        let sub = |a: &[IndexId], of: &[IndexId]| a.iter().all(|i| of.contains(i));
        if !matches!(s.op, Op::Load { .. } | Op::Arg(_))
            && dedup(&s.indices).len() != s.indices.len()
        {
            return err(s, "repeated index in a computed value");
        }
        if let Some((_, sliced)) = body {
            if !matches!(s.op, Op::Arg(_) | Op::Unary { .. } | Op::Contract { .. }) {
                return err(
                    s,
                    "a slice body may only hold arg, unary and contract steps",
                );
            }
            if s.indices.iter().any(|i| sliced.contains(i)) {
                return err(s, "a slice body value keeps a sliced index");
            }
        }
        match &s.op {
            Op::Load { .. } | Op::Const(_) => {}
            Op::Arg(a) => {
                let Some((args, sliced)) = body else {
                    return err(s, "arg outside a slice body");
                };
                let Some(idx) = args.get(*a) else {
                    return err(s, "arg of a missing argument");
                };
                let want: Vec<IndexId> = idx
                    .iter()
                    .filter(|i| !sliced.contains(i))
                    .copied()
                    .collect();
                if s.indices != want {
                    return err(
                        s,
                        "arg indices are not the argument's minus the sliced ones",
                    );
                }
            }
            Op::Unary { arg } | Op::Reduce { arg, .. } => {
                if !earlier(arg) || !sub(&s.indices, &steps[arg.0 as usize].indices) {
                    return err(s, "unary/reduce reads a later value or invents an index");
                }
            }
            Op::Contract { lhs, rhs } => {
                if !earlier(lhs) || !earlier(rhs) {
                    return err(s, "contraction reads a later value");
                }
                let mut u = steps[lhs.0 as usize].indices.clone();
                u.extend(steps[rhs.0 as usize].indices.iter().copied());
                if !sub(&s.indices, &u) {
                    return err(s, "contraction invents an index");
                }
            }
            Op::Elementwise { args, .. } => {
                if !args.iter().all(earlier) {
                    return err(s, "elementwise step reads a later value");
                }
            }
            Op::Fused { args, nodes } => {
                if !args.iter().all(earlier) {
                    return err(s, "fused step reads a later value");
                }
                let ok = nodes.iter().enumerate().all(|(j, nd)| match nd {
                    FusedNode::Arg(a) => *a < args.len(),
                    FusedNode::Apply(_, xs) => !xs.is_empty() && xs.iter().all(|&x| x < j),
                });
                if !ok || nodes.is_empty() {
                    return err(s, "fused node reads a later node or a missing argument");
                }
                let mut u: Vec<IndexId> = Vec::new();
                for a in args {
                    u.extend(steps[a.0 as usize].indices.iter().copied());
                }
                if !sub(&s.indices, &u) {
                    return err(s, "fused step invents an index");
                }
            }
            Op::FusedSum { of } => {
                let Some(f) = steps.get(of.0 as usize).filter(|_| earlier(of)) else {
                    return err(s, "fused sum of a later value");
                };
                let prefix = s.indices.len() < f.indices.len()
                    && f.indices[..s.indices.len()] == s.indices[..];
                if !matches!(f.op, Op::Fused { .. })
                    || !prefix
                    || f.dtype != s.dtype
                    || plan.semiring != Semiring::SumProduct
                {
                    return err(
                        s,
                        "fused sum not of a fused step, not over a suffix of its indices, \
                         of another dtype, or outside sum-product",
                    );
                }
                let twice = steps[..k]
                    .iter()
                    .any(|o| matches!(o.op, Op::FusedSum { of: o2 } if o2 == *of));
                if twice {
                    return err(s, "a second fused sum of one fused step");
                }
            }
            Op::SliceSum {
                args,
                sliced,
                body: inner,
            } => {
                if !args.iter().all(earlier) {
                    return err(s, "slice sum reads a later value");
                }
                if sliced.is_empty() || s.indices.iter().any(|i| sliced.contains(i)) {
                    return err(s, "slice sum without sliced indices, or keeping one");
                }
                let arg_idx: Vec<Vec<IndexId>> = args
                    .iter()
                    .map(|a| steps[a.0 as usize].indices.clone())
                    .collect();
                if !sliced.iter().all(|i| arg_idx.iter().any(|a| a.contains(i))) {
                    return err(s, "a sliced index is held by no argument");
                }
                match inner.last() {
                    Some(last) if last.indices == s.indices => {}
                    _ => return err(s, "slice body does not end in the step's indices"),
                }
                verify_steps(plan, inner, Some((&arg_idx, sliced)), stored)?;
            }
            Op::Store { tensor, arg } => {
                if !earlier(arg) || stored.contains(tensor) {
                    return err(s, "store of a later value, or a second store");
                }
                if plan.program.tensors[*tensor].axes != s.indices {
                    return err(s, "store does not match the tensor's axes");
                }
                stored.push(*tensor);
            }
        }
    }
    Ok(())
}

fn elements(p: &Program, idx: &[IndexId]) -> f64 {
    idx.iter().map(|&i| p.size(i) as f64).product()
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
        let mut stored = Vec::new();
        verify_steps(self, &self.steps, None, &mut stored)
    }

    /// Total flops (opt_cost convention for contractions).
    pub fn flops(&self) -> f64 {
        self.steps.iter().map(|s| s.flops).sum()
    }

    /// Largest computed value, in elements.
    pub fn largest_intermediate(&self) -> f64 {
        fn walk(p: &Program, steps: &[Step]) -> f64 {
            steps
                .iter()
                .map(|s| match &s.op {
                    Op::Load { .. } | Op::Store { .. } | Op::Arg(_) => 0.0,
                    Op::SliceSum { body, .. } => walk(p, body).max(elements(p, &s.indices)),
                    _ => elements(p, &s.indices),
                })
                .fold(0.0, f64::max)
        }
        walk(&self.program, &self.steps)
    }
}

mod constants;
mod fuse;
mod memory;
mod orient;
mod rotate;
#[cfg(test)]
mod tests;
