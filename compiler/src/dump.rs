//! Stable text dumps of the IR and of plans (`einc compile --emit ir|opt-ir|plan`).
//!
//! Byte-deterministic: everything is printed in arena or step order; expressions used more
//! than once (shared subexpressions) are printed once as `let %N = ...` before the first
//! statement that needs them.

use crate::ir::*;
use crate::plan::{ElemOp, Op, Plan};
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn dump_program(p: &Program) -> String {
    let mut s = String::new();
    s.push_str("indices:\n");
    for (_, i) in p.indices.iter() {
        let _ = writeln!(s, "  {} = {}", i.name, i.size);
    }
    s.push_str("tensors:\n");
    for (_, t) in p.tensors.iter() {
        let kind = match t.kind {
            TensorKind::Input => "input",
            TensorKind::Result => "result",
        };
        let _ = write!(
            s,
            "  {kind} {}[{}]: {}",
            t.name,
            idx_list(p, &t.axes),
            t.dtype.name()
        );
        if let Some(l) = &t.layout {
            let _ = write!(s, "  layout {}[{}]", l.kind, idx_list(p, &l.order));
            for (k, v) in &l.options {
                let _ = write!(s, " {k}={v}");
            }
        }
        s.push('\n');
    }
    // Count uses to find shared subexpressions.
    let mut uses: BTreeMap<ExprId, usize> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for st in &p.stmts {
        count_uses(p, st.value, &mut uses, &mut seen);
        *uses.entry(st.value).or_insert(0) += 1;
    }
    let mut printer = Printer {
        p,
        uses,
        named: BTreeMap::new(),
    };
    s.push_str("statements:\n");
    for st in &p.stmts {
        let mut lets = Vec::new();
        let body = printer.expr(st.value, true, &mut lets);
        for l in lets {
            let _ = writeln!(s, "  {l}");
        }
        let t = &p.tensors[st.target];
        let _ = writeln!(
            s,
            "  {}[{}]: {} = {}",
            t.name,
            idx_list(p, &st.indices),
            t.dtype.name(),
            body
        );
    }
    let outs: Vec<&str> = p
        .outputs
        .iter()
        .map(|&o| p.tensors[o].name.as_str())
        .collect();
    let _ = writeln!(s, "outputs: {}", outs.join(", "));
    s
}

fn count_uses(
    p: &Program,
    e: ExprId,
    uses: &mut BTreeMap<ExprId, usize>,
    seen: &mut std::collections::BTreeSet<ExprId>,
) {
    if !seen.insert(e) {
        return;
    }
    for c in children(&p.exprs[e]) {
        *uses.entry(c).or_insert(0) += 1;
        count_uses(p, c, uses, seen);
    }
}

fn children(e: &Expr) -> Vec<ExprId> {
    match e {
        Expr::Ref { .. } | Expr::Const(_) => vec![],
        Expr::Product { factors, .. } => factors.clone(),
        Expr::Add(a) | Expr::Map { args: a, .. } => a.clone(),
        Expr::Reduce { arg, .. } => vec![*arg],
    }
}

fn idx_list(p: &Program, idx: &[IndexId]) -> String {
    idx.iter()
        .map(|&i| p.indices[i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn fmt_num(x: f64) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

struct Printer<'a> {
    p: &'a Program,
    uses: BTreeMap<ExprId, usize>,
    named: BTreeMap<ExprId, String>,
}

impl Printer<'_> {
    fn expr(&mut self, e: ExprId, root: bool, lets: &mut Vec<String>) -> String {
        if let Some(n) = self.named.get(&e) {
            return n.clone();
        }
        let p = self.p;
        let text = match &p.exprs[e] {
            Expr::Ref { tensor, indices } => {
                if indices.is_empty() {
                    p.tensors[*tensor].name.clone()
                } else {
                    format!("{}[{}]", p.tensors[*tensor].name, idx_list(p, indices))
                }
            }
            Expr::Const(x) => fmt_num(*x),
            Expr::Product { factors, summed } => {
                let parts: Vec<String> =
                    factors.iter().map(|&f| self.expr(f, false, lets)).collect();
                let body = parts.join(" * ");
                if summed.is_empty() {
                    format!("({body})")
                } else {
                    format!("sum[{}]({body})", idx_list(p, summed))
                }
            }
            Expr::Add(args) => {
                let parts: Vec<String> = args.iter().map(|&f| self.expr(f, false, lets)).collect();
                format!("({})", parts.join(" + "))
            }
            Expr::Map { op, args } => {
                let parts: Vec<String> = args.iter().map(|&f| self.expr(f, false, lets)).collect();
                format!("{}({})", op.name(), parts.join(", "))
            }
            Expr::Reduce { op, indices, arg } => {
                let a = self.expr(*arg, false, lets);
                format!("{}[{}]({a})", op.name(), idx_list(p, indices))
            }
        };
        let shared = self.uses.get(&e).copied().unwrap_or(0) > 1;
        let leaf = matches!(p.exprs[e], Expr::Ref { .. } | Expr::Const(_));
        if shared && !leaf && !root {
            let name = format!("%{}", e.0);
            lets.push(format!("let {name}[{}] = {text}", idx_list(p, &p.free(e))));
            self.named.insert(e, name.clone());
            name
        } else {
            text
        }
    }
}

pub fn dump_plan(plan: &Plan) -> String {
    let p = &plan.program;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan: optimizer {}{}, {} steps, flops {}, largest intermediate {}",
        plan.optimizer.name(),
        match plan.semiring {
            crate::semiring::Semiring::SumProduct => String::new(),
            r => format!(", semiring {r}"),
        },
        plan.steps.len(),
        fmt_num(plan.flops()),
        fmt_num(plan.largest_intermediate())
    );
    for n in &plan.notes {
        let _ = writeln!(s, "note: {n}");
    }
    dump_steps(&mut s, p, &plan.steps, 1);
    s
}

fn dump_steps(s: &mut String, p: &crate::ir::Program, steps: &[crate::plan::Step], depth: usize) {
    let pad = "  ".repeat(depth);
    for st in steps {
        let v = |x: &crate::plan::ValueId| format!("%{}", x.0);
        let vs = |xs: &[crate::plan::ValueId]| xs.iter().map(v).collect::<Vec<_>>().join(", ");
        let op = match &st.op {
            Op::Load { tensor } => format!("load {}", p.tensors[*tensor].name),
            Op::Const(x) => format!("const {}", fmt_num(*x)),
            Op::Unary { arg } => format!("unary {}", v(arg)),
            Op::FusedSum { of } => format!("sum {} (in its pass)", v(of)),
            Op::Contract { lhs, rhs } => format!("contract {}, {}", v(lhs), v(rhs)),
            Op::Elementwise { op, args } => {
                let name = match op {
                    ElemOp::Add => "add",
                    ElemOp::Mul => "mul",
                    ElemOp::Map(m) => m.name(),
                };
                format!("{name} {}", vs(args))
            }
            Op::Reduce { op, arg } => format!("reduce.{} {}", op.name(), v(arg)),
            Op::Store { tensor, arg } => format!("store {} {}", p.tensors[*tensor].name, v(arg)),
            Op::Arg(k) => format!("arg {k}"),
            Op::Fused { args, nodes } => {
                // The chain as one expression over its arguments `$0, $1, ...`.
                let mut text: Vec<String> = Vec::new();
                for nd in nodes {
                    text.push(match nd {
                        crate::plan::FusedNode::Arg(j) => format!("${j}"),
                        crate::plan::FusedNode::Apply(op, xs) => {
                            let name = match op {
                                ElemOp::Add => "add",
                                ElemOp::Mul => "mul",
                                ElemOp::Map(m) => m.name(),
                            };
                            let inner: Vec<&str> = xs.iter().map(|&x| text[x].as_str()).collect();
                            format!("{name}({})", inner.join(", "))
                        }
                    });
                }
                format!(
                    "fused {} of {}",
                    text.last().map_or("", |t| t.as_str()),
                    vs(args)
                )
            }
            Op::SliceSum { args, sliced, .. } => {
                let slices: f64 = sliced.iter().map(|&i| p.size(i) as f64).product();
                format!(
                    "slice_sum over [{}] ({} slices) of {}",
                    idx_list(p, sliced),
                    fmt_num(slices),
                    vs(args)
                )
            }
        };
        let _ = write!(
            s,
            "{pad}%{} = {op} -> [{}]: {}",
            st.out.0,
            idx_list(p, &st.indices),
            st.dtype.name()
        );
        if st.flops > 0.0 {
            let _ = write!(s, "  ; flops {}", fmt_num(st.flops));
        }
        s.push('\n');
        if let Op::SliceSum { body, .. } = &st.op {
            dump_steps(s, p, body, depth + 1);
        }
    }
}

/// The e-graph pass's statistics, appended to `--emit opt-ir`. Times are left out so the
/// text stays byte-deterministic. Costs are the cost model's flops per call (work on
/// constant inputs alone is paid once and listed separately when there is any).
pub fn dump_report(r: &crate::optimize::OptimizeReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "egraph: {} classes, {} nodes, {} iterations, stop reason: {}",
        r.classes, r.nodes, r.iterations, r.stop_reason
    );
    let fired: Vec<String> = r
        .rewrites_applied
        .iter()
        .map(|(n, k)| format!("{n}={k}"))
        .collect();
    let _ = writeln!(s, "rewrites: {}", fired.join(", "));
    let _ = write!(
        s,
        "cost: {} -> {}",
        fmt_num(r.cost_before),
        fmt_num(r.cost_after)
    );
    if r.once_before != 0.0 || r.once_after != 0.0 {
        let _ = write!(
            s,
            " per call; once: {} -> {}",
            fmt_num(r.once_before),
            fmt_num(r.once_after)
        );
    }
    s.push('\n');
    s
}

/// `--emit egraph`: the pass's statistics, then per statement its cost before and after
/// (per call, and once where constants are involved) and what became of it, then the
/// chosen program.
pub fn dump_egraph(r: &crate::optimize::OptimizeReport, opt: &Program) -> String {
    let mut s = dump_report(r);
    let _ = writeln!(s, "extraction: {}", r.extraction);
    if let Some(lp) = &r.lp {
        let _ = writeln!(s, "lp extractor: {lp}");
    }
    s.push_str("statements:\n");
    for st in &r.statements {
        let before = fmt_pair(st.before);
        match st.after {
            Some(after) => {
                let _ = writeln!(s, "  {}: {before} -> {}", st.target, fmt_pair(after));
            }
            None => {
                let _ = writeln!(
                    s,
                    "  {}: {before} -> folded into its readers (not stored)",
                    st.target
                );
            }
        }
    }
    s.push_str("chosen form:\n");
    s.push_str(&dump_program(opt));
    s
}

fn fmt_pair((per_call, once): (f64, f64)) -> String {
    if once == 0.0 {
        fmt_num(per_call)
    } else {
        format!("{} (+{} once)", fmt_num(per_call), fmt_num(once))
    }
}
