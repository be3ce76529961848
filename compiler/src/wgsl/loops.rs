//! Loop kernels: one invocation per output element (nested loops over the summed indices),
//! or one workgroup per output element with a tree reduction when outputs are few and the
//! reduction long. They compute every step kind, in every semiring and dtype.

use super::scalar::{self, combine, conv, identity, is_complex, lit, ty};
use super::{grid, At, EmitError, GpuCaps, Kernel, KernelKind, Layout};
use crate::ir::{IndexId, ReduceOp};
use crate::plan::{FusedNode, Op, Plan, Semiring};
use einc_frontend::ein::ast::DType;
use std::fmt::Write;

const WG: u64 = 256;

/// How the values of one iteration combine.
enum Body {
    /// `⊗` of all arguments (× for sum-product, + for the tropical and log semirings).
    Product { add: bool },
    /// A fused elementwise chain over the arguments.
    Nodes(Vec<FusedNode>),
}

/// The kernels for a compute step (not `Load`/`Store`/`Const`).
pub fn step(
    plan: &Plan,
    at: &At<'_>,
    out: &Layout,
    args: &[Layout],
    caps: &GpuCaps,
) -> Result<Vec<Kernel>, EmitError> {
    let s = at.step;
    let semi_fold = semiring_fold(plan.semiring);
    let semi_add = plan.semiring != Semiring::SumProduct;
    let (body, fold) = match &s.op {
        // A fused sum is a second pass on the GPU: one thread per element of the sum reads
        // its rows of the chain's value (the CPU adds it up inside the chain's pass).
        Op::Unary { .. } | Op::Contract { .. } | Op::FusedSum { .. } => {
            (Body::Product { add: semi_add }, semi_fold)
        }
        Op::Reduce { op, .. } => (Body::Product { add: false }, Some(*op)),
        Op::Elementwise { op, args } => {
            let mut nodes: Vec<FusedNode> = (0..args.len()).map(FusedNode::Arg).collect();
            nodes.push(FusedNode::Apply(*op, (0..args.len()).collect()));
            (Body::Nodes(nodes), None)
        }
        Op::Fused { nodes, .. } => (Body::Nodes(nodes.clone()), None),
        other => {
            return Err(EmitError(format!(
                "internal error: no GPU kernel for step {} ({other:?})",
                at.name
            )))
        }
    };
    let name = format!("{}_{}", at.name, op_name(&s.op));
    Ok(vec![kernel(plan, at, name, out, args, &body, fold, caps)?])
}

/// A copy of `arg` into the dense `out` (a stored result that is a view or a shared buffer).
pub fn copy(
    plan: &Plan,
    at: &At<'_>,
    out: &Layout,
    arg: &Layout,
    caps: &GpuCaps,
) -> Result<Vec<Kernel>, EmitError> {
    let body = Body::Nodes(vec![FusedNode::Arg(0)]);
    Ok(vec![kernel(
        plan,
        at,
        format!("{}_store", at.name),
        out,
        std::slice::from_ref(arg),
        &body,
        None,
        caps,
    )?])
}

/// `out[o] = out[o] ⊕ tmp[o]` over `total` dense elements: one slice of a sliced product
/// added into the running result, in the plan's semiring.
pub fn accumulate(
    plan: &Plan,
    name: &str,
    k: usize,
    out: &Layout,
    tmp: usize,
    total: u64,
    caps: &GpuCaps,
) -> Result<Kernel, EmitError> {
    let d = out.dtype;
    let t = ty(d);
    let dispatch = grid(total.div_ceil(WG), caps)?;
    let fold = semiring_fold(plan.semiring);
    let combined = if fold == Some(ReduceOp::LogSumExp) {
        let big = scalar::max_finite(d);
        format!("select(m + rlog(rexp(a - m) + rexp(b - m)), m, m < -{big} || m > {big})")
    } else {
        combine(fold, "a", "b", d)
    };
    let mut src = scalar::prelude(d);
    let _ = write!(
        src,
        "@group(0) @binding(0) var<storage, read_write> out: array<{t}>;\n\
         @group(0) @binding(1) var<storage, read> part: array<{t}>;\n\
         @compute @workgroup_size({WG})\n\
         fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{\n\
         \x20 let o = (wid.x + wid.y * {}u) * {WG}u + lid;\n\
         \x20 if (o >= {total}u) {{ return; }}\n\
         \x20 let a = out[o];\n\
         \x20 let b = part[o];\n\
         \x20 let m = max(a, b);\n\
         \x20 out[o] = {combined};\n}}\n",
        dispatch[0]
    );
    if is_complex(d) {
        // `max` above is unused for complex sums but must still type-check.
        src = src.replace("  let m = max(a, b);\n", "");
    }
    Ok(Kernel {
        name: name.to_string(),
        step: k,
        kind: KernelKind::Loop,
        source: src,
        entry_point: "main",
        bindings: super::bindings(out.buf, [tmp]),
        workgroup_size: [WG as u32, 1, 1],
        dispatch,
        dispatch_formula: format!("ceil({total} outputs / {WG})"),
        flops: total as f64,
    })
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Unary { .. } | Op::FusedSum { .. } => "unary",
        Op::Contract { .. } => "contract",
        Op::Reduce { .. } => "reduce",
        Op::Elementwise { .. } => "map",
        Op::Fused { .. } => "fused",
        _ => "step",
    }
}

/// `⊕` of a semiring as a reduction (`None`: a sum).
pub(crate) fn semiring_fold(s: Semiring) -> Option<ReduceOp> {
    match s {
        Semiring::SumProduct => None,
        Semiring::MaxPlus => Some(ReduceOp::Max),
        Semiring::MinPlus => Some(ReduceOp::Min),
        Semiring::LogSumExp => Some(ReduceOp::LogSumExp),
    }
}

fn var(i: IndexId) -> String {
    format!("x{}", i.index())
}

/// Binding declarations and one converting load function per argument.
pub(crate) fn header(out: &Layout, args: &[Layout]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "@group(0) @binding(0) var<storage, read_write> out: array<{}>;",
        ty(out.dtype)
    );
    for (j, a) in args.iter().enumerate() {
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read> a{j}: array<{}>;",
            j + 1,
            ty(a.dtype)
        );
        let _ = writeln!(
            s,
            "fn ld{j}(o: u32) -> {} {{ return {}; }}",
            ty(out.dtype),
            conv(&format!("a{j}[o]"), a.dtype, out.dtype)
        );
    }
    s
}

/// `sum(var(label) * stride)` over the positions of `a` whose label is in `among`.
fn offset(a: &Layout, among: &[IndexId]) -> String {
    let terms: Vec<String> = a
        .labels
        .iter()
        .zip(&a.strides)
        .filter(|(l, &st)| among.contains(l) && st != 0)
        .map(|(&l, &st)| {
            if st == 1 {
                var(l)
            } else {
                format!("{} * {st}u", var(l))
            }
        })
        .collect();
    if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    }
}

/// Statements computing `let v = <value of one iteration>;`.
fn body_stmts(body: &Body, args: &[Layout], d: DType, pad: &str) -> String {
    let mut s = String::new();
    match body {
        Body::Product { add } => {
            let mut v = String::new();
            for j in 0..args.len() {
                let x = format!("ld{j}(b{j} + s{j})");
                v = if j == 0 {
                    x
                } else if *add {
                    format!("({v} + {x})")
                } else {
                    scalar::mul(&v, &x, d)
                };
            }
            if args.is_empty() {
                v = lit(1.0, d);
            }
            let _ = writeln!(s, "{pad}let v = {v};");
        }
        Body::Nodes(nodes) => {
            for (n, node) in nodes.iter().enumerate() {
                let e = match node {
                    FusedNode::Arg(a) => format!("ld{a}(b{a} + s{a})"),
                    FusedNode::Apply(op, xs) => {
                        let xs: Vec<String> = xs.iter().map(|x| format!("n{x}")).collect();
                        scalar::elem(*op, &xs, d)
                    }
                };
                let _ = writeln!(s, "{pad}let n{n} = {e};");
            }
            let _ = writeln!(s, "{pad}let v = n{};", nodes.len().saturating_sub(1));
        }
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn kernel(
    plan: &Plan,
    at: &At<'_>,
    name: String,
    out: &Layout,
    args: &[Layout],
    body: &Body,
    fold: Option<ReduceOp>,
    caps: &GpuCaps,
) -> Result<Kernel, EmitError> {
    let p = &plan.program;
    let d = out.dtype;
    let out_sizes: Vec<u64> = out.labels.iter().map(|&i| p.size(i)).collect();
    let total: u64 = out_sizes.iter().product();
    let mut summed: Vec<IndexId> = Vec::new();
    for a in args {
        for &l in &a.labels {
            if !out.labels.contains(&l) && !summed.contains(&l) {
                summed.push(l);
            }
        }
    }
    let rtotal: u64 = summed.iter().map(|&i| p.size(i)).product();
    if total.max(rtotal) >= 1 << 31 {
        return Err(EmitError(format!(
            "step {} spans {} elements, beyond the GPU kernels' 32-bit indexing",
            at.name,
            total.max(rtotal)
        )));
    }
    if matches!(body, Body::Nodes(_)) && !summed.is_empty() {
        return Err(EmitError(format!(
            "internal error: elementwise step {} has indices outside its result",
            at.name
        )));
    }
    let lse = fold == Some(ReduceOp::LogSumExp);
    if lse && is_complex(d) {
        return Err(EmitError(format!(
            "step {}: log-sum-exp needs a real dtype, not {}",
            at.name,
            d.name()
        )));
    }
    let per_group = !lse && !summed.is_empty() && rtotal >= WG && total < 32768;
    let mut src = scalar::prelude(d);
    src.push_str(&header(out, args));
    let t = ty(d);
    let groups = if per_group { total } else { total.div_ceil(WG) };
    let dispatch = grid(groups, caps)?;
    if per_group {
        let _ = writeln!(src, "var<workgroup> red: array<{t}, {WG}>;");
    }
    let _ = writeln!(
        src,
        "@compute @workgroup_size({WG})\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{"
    );
    if per_group {
        let _ = writeln!(src, "  let o = wid.x + wid.y * {}u;", dispatch[0]);
    } else {
        let _ = writeln!(
            src,
            "  let o = (wid.x + wid.y * {}u) * {WG}u + lid;",
            dispatch[0]
        );
    }
    let _ = writeln!(src, "  if (o >= {total}u) {{ return; }}");
    // Output multi-index from the dense output position (row-major over out.labels).
    let mut div = 1u64;
    for (pos, &l) in out.labels.iter().enumerate().rev() {
        let size = out_sizes[pos].max(1);
        let _ = writeln!(src, "  let {} = (o / {div}u) % {size}u;", var(l));
        div *= size;
    }
    for (j, a) in args.iter().enumerate() {
        // A slice of a larger argument starts at its offset.
        let base = offset(a, &out.labels);
        if a.offset == 0 {
            let _ = writeln!(src, "  let b{j} = {base};");
        } else {
            let _ = writeln!(src, "  let b{j} = {}u + {base};", a.offset);
        }
    }
    let id = identity(fold, d);
    // Log-sum-exp keeps a running maximum `m` and a sum of exp(x - m) over the terms seen;
    // it never starts from -inf, and "is infinite" is tested against the largest finite
    // value (see `scalar::max_finite`). A single term is its own log-sum-exp.
    let lse = lse && !summed.is_empty();
    let big = scalar::max_finite(d);
    if lse {
        let zero = lit(0.0, d);
        let _ = writeln!(
            src,
            "  var seen = false;\n  var m = {zero};\n  var acc = {zero};"
        );
    } else {
        let _ = writeln!(src, "  var acc = {id};");
    }
    let fold_stmt = |pad: &str| -> String {
        if lse {
            format!(
                "{pad}if (!seen) {{ m = v; acc = 1.0; seen = true; }} else if (v > m) {{ acc = acc * rexp(m - v) + 1.0; m = v; }} else if (v >= -{big}) {{ acc = acc + rexp(v - m); }}\n"
            )
        } else if summed.is_empty() {
            format!("{pad}acc = v;\n")
        } else {
            format!("{pad}acc = {};\n", combine(fold, "acc", "v", d))
        }
    };
    if per_group {
        let _ = writeln!(src, "  for (var r = lid; r < {rtotal}u; r += {WG}u) {{");
        let mut div = 1u64;
        for &l in summed.iter().rev() {
            let size = p.size(l).max(1);
            let _ = writeln!(src, "    let {} = (r / {div}u) % {size}u;", var(l));
            div *= size;
        }
        for (j, a) in args.iter().enumerate() {
            let _ = writeln!(src, "    let s{j} = {};", offset(a, &summed));
        }
        src.push_str(&body_stmts(body, args, d, "    "));
        src.push_str(&fold_stmt("    "));
        src.push_str("  }\n  red[lid] = acc;\n  workgroupBarrier();\n");
        let _ = writeln!(
            src,
            "  for (var h = {}u; h > 0u; h = h >> 1u) {{\n    if (lid < h) {{ red[lid] = {}; }}\n    workgroupBarrier();\n  }}",
            WG / 2,
            combine(fold, "red[lid]", "red[lid + h]", d)
        );
        src.push_str("  if (lid == 0u) { out[o] = red[0]; }\n}\n");
    } else {
        let mut pad = String::from("  ");
        for &l in &summed {
            let _ = writeln!(
                src,
                "{pad}for (var {v} = 0u; {v} < {}u; {v}++) {{",
                p.size(l),
                v = var(l)
            );
            pad.push_str("  ");
        }
        for (j, a) in args.iter().enumerate() {
            let _ = writeln!(src, "{pad}let s{j} = {};", offset(a, &summed));
        }
        src.push_str(&body_stmts(body, args, d, &pad));
        src.push_str(&fold_stmt(&pad));
        for _ in &summed {
            pad.truncate(pad.len() - 2);
            let _ = writeln!(src, "{pad}}}");
        }
        if lse {
            let _ = writeln!(
                src,
                "  if (seen) {{ out[o] = select(m + rlog(acc), m, m < -{big} || m > {big}); }} else {{ out[o] = {id}; }}"
            );
        } else {
            src.push_str("  out[o] = acc;\n");
        }
        src.push_str("}\n");
    }
    let bindings = super::bindings(out.buf, args.iter().map(|a| a.buf));
    let formula = if per_group {
        format!("one workgroup per output element: {total}")
    } else {
        format!("ceil({total} outputs / {WG})")
    };
    Ok(Kernel {
        name,
        step: at.index,
        kind: if per_group {
            KernelKind::Reduce
        } else {
            KernelKind::Loop
        },
        source: src,
        entry_point: "main",
        bindings,
        workgroup_size: [WG as u32, 1, 1],
        dispatch: if total == 0 { [0, 1, 1] } else { dispatch },
        dispatch_formula: formula,
        // The plan counts a fused sum in its chain's pass; here it is a pass of its own.
        flops: match at.step.op {
            Op::FusedSum { .. } => args.first().map_or(0.0, |a| {
                a.labels
                    .iter()
                    .map(|&l| plan.program.size(l) as f64)
                    .product()
            }),
            _ => at.step.flops,
        },
    })
}
