//! The IR verifier, run after every pass (lowering, optimisation) in every build.
//!
//! Invariants of a [`Program`]:
//! 1. Every handle points into its arena; `expr_spans` is parallel to `exprs`.
//! 2. Every index has a size (sizes are `u64`, so "sized" means lowering bound it; an
//!    index of unknown size never reaches the IR).
//! 3. A `Ref` gives one index per axis of its tensor, and each index's size equals the
//!    size of the axis it labels (sizes consistent).
//! 4. A `Ref` reads an input, or the result of an earlier statement (the program is in
//!    dependency order; no cycles).
//! 5. A `Product` has at least one factor; its summed indices are distinct and each is
//!    free in at least one factor.
//! 6. A `Reduce` reduces over distinct indices that are free in its argument.
//! 7. A `Map` has exactly its op's arity of arguments; `Add` has at least one term.
//! 8. Ops that need an order (`max`, `min`, `relu`, reductions `max`/`min`) see real dtypes.
//! 9. A statement's left-hand indices are distinct, match the target's axes, and equal the
//!    free indices of its value (as sets).
//! 10. Each result tensor is defined by at most one statement (the e-graph pass drops a
//!     statement whose value it folded into its readers; invariant 4 and the output check
//!     make sure nothing reads an undefined result); every output is an input or a
//!     defined result; there is at least one output.
//! 11. A statement's target dtype is the promotion of its value's dtype.

use crate::ir::*;
use std::collections::BTreeSet;

/// A broken invariant: a compiler bug, reported with the pass that broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub pass: String,
    pub message: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "internal compiler error: IR invalid after pass '{}': {}",
            self.pass, self.message
        )
    }
}

impl std::error::Error for VerifyError {}

pub fn verify(p: &Program, pass: &str) -> Result<(), VerifyError> {
    let err = |m: String| VerifyError {
        pass: pass.to_string(),
        message: m,
    };
    if p.expr_spans.len() != p.exprs.len() {
        return Err(err("expr_spans is not parallel to exprs".into()));
    }
    let idx_ok = |i: IndexId| p.indices.get(i).is_some();
    for (h, t) in p.tensors.iter() {
        for &a in &t.axes {
            if !idx_ok(a) {
                return Err(err(format!(
                    "tensor {} axis index {:?} out of range",
                    t.name, a
                )));
            }
        }
        if let Some(l) = &t.layout {
            if l.order.iter().any(|&i| !idx_ok(i)) {
                return Err(err(format!("layout of {} names an unknown index", t.name)));
            }
        }
        if t.kind == TensorKind::Result && p.stmts.iter().filter(|s| s.target == h).count() > 1 {
            return Err(err(format!(
                "result tensor {} is defined by more than one statement",
                t.name
            )));
        }
    }

    // Tensors available at each point: inputs, then results as statements define them.
    let mut defined: BTreeSet<TensorId> = p.inputs().map(|(h, _)| h).collect();
    for s in &p.stmts {
        let Some(target) = p.tensors.get(s.target) else {
            return Err(err(format!("statement target {:?} out of range", s.target)));
        };
        if target.kind != TensorKind::Result {
            return Err(err(format!("statement assigns to input {}", target.name)));
        }
        check_expr(p, s.value, &defined, &err)?;
        let lhs: BTreeSet<IndexId> = s.indices.iter().copied().collect();
        if lhs.len() != s.indices.len() {
            return Err(err(format!(
                "left-hand side of {} repeats an index",
                target.name
            )));
        }
        if s.indices != target.axes {
            return Err(err(format!(
                "left-hand side of {} does not match its axes",
                target.name
            )));
        }
        let free: BTreeSet<IndexId> = p.free(s.value).into_iter().collect();
        if free != lhs {
            return Err(err(format!(
                "free indices of the value of {} ({}) differ from its left-hand side ({})",
                target.name,
                names(p, &free),
                names(p, &lhs)
            )));
        }
        let dt = p.dtype(s.value);
        if dt != target.dtype {
            return Err(err(format!(
                "{} is declared {} but its value has dtype {}",
                target.name,
                target.dtype.name(),
                dt.name()
            )));
        }
        defined.insert(s.target);
    }
    if p.outputs.is_empty() {
        return Err(err("program has no output".into()));
    }
    for &o in &p.outputs {
        if !defined.contains(&o) {
            return Err(err(format!(
                "output {:?} is neither an input nor a result",
                o
            )));
        }
    }
    Ok(())
}

fn names(p: &Program, s: &BTreeSet<IndexId>) -> String {
    s.iter()
        .map(|&i| p.indices[i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_expr(
    p: &Program,
    e: ExprId,
    defined: &BTreeSet<TensorId>,
    err: &dyn Fn(String) -> VerifyError,
) -> Result<(), VerifyError> {
    let Some(expr) = p.exprs.get(e) else {
        return Err(err(format!("expression {:?} out of range", e)));
    };
    let children: &[ExprId] = match expr {
        Expr::Ref { tensor, indices } => {
            let Some(t) = p.tensors.get(*tensor) else {
                return Err(err(format!(
                    "reference to tensor {:?} out of range",
                    tensor
                )));
            };
            if !defined.contains(tensor) {
                return Err(err(format!("{} is read before it is defined", t.name)));
            }
            if indices.len() != t.axes.len() {
                return Err(err(format!(
                    "{} has {} axes but is indexed with {}",
                    t.name,
                    t.axes.len(),
                    indices.len()
                )));
            }
            for (&i, &a) in indices.iter().zip(&t.axes) {
                if p.indices.get(i).is_none() {
                    return Err(err(format!("index {:?} out of range", i)));
                }
                if p.size(i) != p.size(a) {
                    return Err(err(format!(
                        "index {} (size {}) labels an axis of {} of size {}",
                        p.indices[i].name,
                        p.size(i),
                        t.name,
                        p.size(a)
                    )));
                }
            }
            return Ok(());
        }
        Expr::Const(_) => return Ok(()),
        Expr::Product { factors, summed } => {
            if factors.is_empty() {
                return Err(err("product without factors".into()));
            }
            let free: BTreeSet<IndexId> = factors.iter().flat_map(|&f| p.free(f)).collect();
            let set: BTreeSet<IndexId> = summed.iter().copied().collect();
            if set.len() != summed.len() {
                return Err(err("product sums an index twice".into()));
            }
            if let Some(i) = summed.iter().find(|i| !free.contains(i)) {
                return Err(err(format!(
                    "product sums index {} that no factor uses",
                    p.indices.get(*i).map(|x| x.name.as_str()).unwrap_or("?")
                )));
            }
            factors
        }
        Expr::Add(args) => {
            if args.is_empty() {
                return Err(err("empty add".into()));
            }
            args
        }
        Expr::Map { op, args } => {
            if args.len() != op.arity() {
                return Err(err(format!(
                    "{} takes {} arguments, got {}",
                    op.name(),
                    op.arity(),
                    args.len()
                )));
            }
            if op.needs_real() && args.iter().any(|&a| p.dtype(a).is_complex()) {
                return Err(err(format!("{} applied to a complex value", op.name())));
            }
            args
        }
        Expr::Reduce { op, indices, arg } => {
            let free: BTreeSet<IndexId> = p.free(*arg).into_iter().collect();
            let set: BTreeSet<IndexId> = indices.iter().copied().collect();
            if set.len() != indices.len() || !set.is_subset(&free) {
                return Err(err(format!(
                    "{} reduces over indices that are repeated or not free in its argument",
                    op.name()
                )));
            }
            if *op != ReduceOp::LogSumExp && p.dtype(*arg).is_complex() {
                return Err(err(format!("{} reduction of a complex value", op.name())));
            }
            std::slice::from_ref(arg)
        }
    };
    for &c in children {
        check_expr(p, c, defined, err)?;
    }
    Ok(())
}
