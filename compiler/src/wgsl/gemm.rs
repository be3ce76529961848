//! The tiled GEMM kernel for sum-product pairwise contractions of real operands.
//!
//! Indices split into groups: batch (both operands and the result), M (left operand and
//! result), N (right operand and result), K (both operands, summed). Each group's addressing
//! is a generated function from the group's linear position to an element offset, so any
//! permutation and any strides are read in place. A workgroup computes a BM×BN tile of one
//! batch entry, stepping over K in BK slices staged in workgroup memory; the next slice is
//! fetched into registers while the current one is multiplied, and each invocation keeps
//! a TM×TN block of accumulators (`vec4` rows), reading its operands as `vec4`s.

use super::loops::header;
use super::scalar::ty;
use super::{At, EmitError, GpuCaps, Kernel, KernelKind, Layout};
use crate::ir::IndexId;
use crate::plan::Plan;
use einc_frontend::ein::ast::DType;
use std::fmt::Write;

/// Tile shape: workgroup tile BM×BN over BK, register block TM×TN (multiples of 4).
#[derive(Clone, Copy, Debug)]
struct Tile {
    bm: u64,
    bn: u64,
    bk: u64,
    tm: u64,
    tn: u64,
}

fn has_dups(l: &[IndexId]) -> bool {
    l.iter().enumerate().any(|(i, x)| l[..i].contains(x))
}

/// A tiled kernel; with `splits > 1` it writes `splits` partial results (K split into
/// ranges), one after another in a temporary of `splits × total` elements that the caller
/// binds at 0 and sums with [`reduce_splits`].
pub struct Gemm {
    pub kernel: Kernel,
    pub splits: u64,
    pub total: u64,
}

/// Workgroups a GEMM should have to fill a large GPU (a few per multiprocessor on a
/// 132-SM card); fewer tiles than this split K.
const TARGET_GROUPS: u64 = 512;

/// `Some(kernel)` when the step is GEMM-shaped enough to tile; `None` sends it to a loop
/// kernel.
pub fn contract(
    plan: &Plan,
    at: &At<'_>,
    out: &Layout,
    lhs: &Layout,
    rhs: &Layout,
    caps: &GpuCaps,
) -> Result<Option<Gemm>, EmitError> {
    let p = &plan.program;
    let d = out.dtype;
    if !matches!(d, DType::F32 | DType::F64) || lhs.dtype != d || rhs.dtype != d {
        return Ok(None);
    }
    if has_dups(&lhs.labels) || has_dups(&rhs.labels) || has_dups(&out.labels) {
        return Ok(None);
    }
    // The operand whose result indices include the result's fastest one plays B, so
    // stores run along N.
    let (a, b) = match out.labels.last() {
        Some(l) if lhs.labels.contains(l) && !rhs.labels.contains(l) => (rhs, lhs),
        _ => (lhs, rhs),
    };
    let (mut bg, mut mg, mut ng) = (vec![], vec![], vec![]);
    for &l in &out.labels {
        match (a.labels.contains(&l), b.labels.contains(&l)) {
            (true, true) => bg.push(l),
            (true, false) => mg.push(l),
            (false, true) => ng.push(l),
            (false, false) => return Ok(None),
        }
    }
    let mut kg = vec![];
    for &l in &a.labels {
        if !out.labels.contains(&l) {
            if !b.labels.contains(&l) {
                return Ok(None);
            }
            kg.push(l);
        }
    }
    if b.labels
        .iter()
        .any(|l| !out.labels.contains(l) && !a.labels.contains(l))
    {
        return Ok(None);
    }
    let size = |g: &[IndexId]| -> u64 { g.iter().map(|&i| p.size(i)).product() };
    let (bs, ms, ns, ks) = (size(&bg), size(&mg), size(&ng), size(&kg));
    if ms < 32 || ns < 32 || ks < 8 {
        return Ok(None);
    }
    let esize = super::dtype_bytes(d);
    let pick = |t: Tile| -> bool {
        let threads = (t.bm / t.tm) * (t.bn / t.tn);
        threads <= caps.max_invocations as u64
            && (t.bm + t.bn) * t.bk * esize <= caps.max_workgroup_storage as u64
    };
    let big = Tile {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    };
    let small = Tile {
        bm: 64,
        bn: 64,
        bk: 8,
        tm: 4,
        tn: 4,
    };
    let mut tile = if ms >= 128 && ns >= 128 && ms.div_ceil(128) * ns.div_ceil(128) * bs >= 256 {
        big
    } else {
        small
    };
    if let Some((bm, bn, bk)) = caps.tile {
        let (bm, bn, bk) = (bm as u64, bn as u64, bk as u64);
        let (tm, tn) = if bm >= 128 { (8, 8) } else { (4, 4) };
        let want = Tile { bm, bn, bk, tm, tn };
        if pick(want) {
            tile = want;
        }
    }
    if !pick(tile) {
        tile = small;
        if !pick(tile) {
            return Ok(None);
        }
    }
    let mt = ms.div_ceil(tile.bm);
    let nt = ns.div_ceil(tile.bn);
    let lim = caps.max_workgroups_per_dim as u64;
    if nt > lim {
        return Ok(None);
    }
    // Split K when the tiles alone leave the GPU idle and each split still has a long
    // K range.
    let groups = mt * nt * bs;
    let mut splits = if groups < TARGET_GROUPS / 2 && ks >= 1024 {
        (TARGET_GROUPS / groups).clamp(1, ks / 256)
    } else {
        1
    };
    // The partial results must fit one storage binding.
    splits = splits.min((caps.max_binding_bytes / (ms * ns * bs * esize).max(1)).max(1));
    let kchunk = ks.div_ceil(splits).div_ceil(tile.bk) * tile.bk;
    splits = ks.div_ceil(kchunk);
    let rows = mt * bs * splits;
    let dy = rows.min(lim);
    let dz = rows.div_ceil(dy);
    if dz > lim || ms.max(ns).max(ks).max(bs) >= 1 << 31 {
        return Ok(None);
    }
    let src = source(
        plan,
        out,
        a,
        b,
        [&bg, &mg, &ng, &kg],
        [bs, ms, ns, ks],
        tile,
        (dy, splits, kchunk, ms * ns * bs),
        d,
    );
    let bindings = super::bindings(out.buf, [a.buf, b.buf]);
    let kernel = Kernel {
        name: format!("{}_gemm", at.name),
        step: at.index,
        kind: KernelKind::Gemm,
        source: src,
        entry_point: "main",
        bindings,
        workgroup_size: [((tile.bm / tile.tm) * (tile.bn / tile.tn)) as u32, 1, 1],
        dispatch: [nt as u32, dy as u32, dz as u32],
        dispatch_formula: format!(
            "(ceil(N={ns} / {}), ceil(M={ms} / {}) * batch={bs} * k-splits={splits}) with y capped at {lim}",
            tile.bn, tile.bm
        ),
        flops: at.step.flops,
    };
    Ok(Some(Gemm {
        kernel,
        splits,
        total: ms * ns * bs,
    }))
}

/// `out[o] = Σ_s part[s·total + o]`: the sum of a split GEMM's partial results.
pub fn reduce_splits(
    at: &At<'_>,
    out: usize,
    part: usize,
    total: u64,
    splits: u64,
    d: DType,
    caps: &GpuCaps,
) -> Result<Kernel, EmitError> {
    let t = ty(d);
    let dispatch = super::grid(total.div_ceil(256), caps)?;
    let source = format!(
        "@group(0) @binding(0) var<storage, read_write> out: array<{t}>;\n\
         @group(0) @binding(1) var<storage, read> part: array<{t}>;\n\
         @compute @workgroup_size(256)\n\
         fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{\n\
         \x20 let o = (wid.x + wid.y * {}u) * 256u + lid;\n\
         \x20 if (o >= {total}u) {{ return; }}\n\
         \x20 var acc = part[o];\n\
         \x20 for (var s = 1u; s < {splits}u; s++) {{ acc = acc + part[s * {total}u + o]; }}\n\
         \x20 out[o] = acc;\n}}\n",
        dispatch[0]
    );
    Ok(Kernel {
        name: format!("{}_splitsum", at.name),
        step: at.index,
        kind: KernelKind::Loop,
        source,
        entry_point: "main",
        bindings: super::bindings(out, [part]),
        workgroup_size: [256, 1, 1],
        dispatch,
        dispatch_formula: format!("ceil({total} outputs / 256), summing {splits} partials"),
        flops: (total * splits) as f64,
    })
}

/// `fn NAME(v: u32) -> u32`: offset of linear position `v` of a group in a layout.
fn group_fn(name: &str, plan: &Plan, group: &[IndexId], l: &Layout) -> String {
    let p = &plan.program;
    let mut s = format!("fn {name}(v: u32) -> u32 {{\n");
    if group.is_empty() {
        s.push_str("  return 0u;\n}\n");
        return s;
    }
    let stride = |i: IndexId| -> u64 {
        l.labels
            .iter()
            .zip(&l.strides)
            .filter(|(x, _)| **x == i)
            .map(|(_, &st)| st)
            .sum()
    };
    // (size, stride) per index, fastest last, with neighbours merged where the layout
    // stores them as one run (stride of the outer = size × stride of the inner), so a
    // contiguous group costs no division.
    let mut dims: Vec<(u64, u64)> = Vec::new();
    for &i in group {
        let (n, st) = (p.size(i), stride(i));
        match dims.last_mut() {
            Some((pn, pst)) if *pst == n * st => {
                *pn *= n;
                *pst = st;
            }
            _ => dims.push((n, st)),
        }
    }
    let mut terms = vec![];
    let mut div = 1u64;
    for (pos, &(n, st)) in dims.iter().enumerate().rev() {
        let idx = if dims.len() == 1 {
            "v".to_string()
        } else if pos == 0 {
            format!("(v / {div}u)")
        } else if div == 1 {
            format!("(v % {n}u)")
        } else {
            format!("((v / {div}u) % {n}u)")
        };
        if st != 0 {
            terms.push(if st == 1 {
                idx
            } else {
                format!("{idx} * {st}u")
            });
        }
        div *= n;
    }
    if terms.is_empty() {
        terms.push("0u".into());
    }
    let _ = writeln!(s, "  return {};\n}}", terms.join(" + "));
    s
}

fn fast(plan: &Plan, group: &[IndexId], l: &Layout) -> bool {
    let _ = plan;
    match group.last() {
        Some(&i) => l
            .labels
            .iter()
            .zip(&l.strides)
            .any(|(&x, &st)| x == i && st == 1),
        None => false,
    }
}

/// One operand's tile traffic: global → registers (`load`), registers → workgroup
/// memory (`store`).
struct Side {
    reg: &'static str,
    shared: &'static str,
    buf: &'static str,
    base: &'static str,
    rows_fn: &'static str,
    k_fn: &'static str,
    origin: &'static str,
    /// BM or BN.
    tile: u64,
    /// Elements each invocation moves per K slice.
    count: u64,
    /// K has unit stride in this operand: consecutive invocations walk K.
    kfast: bool,
    /// The M or N extent when it is not a multiple of the tile.
    extent: Option<u64>,
}

impl Side {
    /// (row, k) of element `i` of this invocation's share of the tile.
    fn coords(&self, i: u64, bk: u64, threads: u64) -> (String, String) {
        let e = format!("(lid + {}u)", i * threads);
        if self.kfast {
            (format!("{e} / {bk}u"), format!("{e} % {bk}u"))
        } else {
            (
                format!("{e} % {}u", self.tile),
                format!("{e} / {}u", self.tile),
            )
        }
    }

    fn load(&self, bk: u64, threads: u64, kcheck: bool, zero: &str) -> String {
        let mut out = String::new();
        let Side {
            reg,
            buf,
            base,
            rows_fn,
            k_fn,
            origin,
            ..
        } = self;
        for i in 0..self.count {
            let (r, k) = self.coords(i, bk, threads);
            let mut conds = vec![];
            if let Some(n) = self.extent {
                conds.push(format!("{origin} + {reg}r{i} < {n}u"));
            }
            if kcheck {
                conds.push(format!("kq + {reg}k{i} < kend"));
            }
            let _ = writeln!(out, "    let {reg}r{i} = {r};\n    let {reg}k{i} = {k};");
            let rd =
                format!("{buf}[{base} + {rows_fn}({origin} + {reg}r{i}) + {k_fn}(kq + {reg}k{i})]");
            if conds.is_empty() {
                let _ = writeln!(out, "    {reg}{i} = {rd};");
            } else {
                let _ = writeln!(
                    out,
                    "    if ({}) {{ {reg}{i} = {rd}; }} else {{ {reg}{i} = {zero}; }}",
                    conds.join(" && ")
                );
            }
        }
        out
    }

    fn store(&self, bk: u64, threads: u64) -> String {
        let mut out = String::new();
        for i in 0..self.count {
            let (r, k) = self.coords(i, bk, threads);
            let _ = writeln!(
                out,
                "    {{ let r = {r}; let k = {k}; {}[k * {}u + r / 4u][r % 4u] = {}{i}; }}",
                self.shared,
                self.tile / 4,
                self.reg
            );
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn source(
    plan: &Plan,
    out: &Layout,
    a: &Layout,
    b: &Layout,
    groups: [&Vec<IndexId>; 4],
    sizes: [u64; 4],
    t: Tile,
    (dy, splits, kchunk, total): (u64, u64, u64, u64),
    d: DType,
) -> String {
    let [bg, mg, ng, kg] = groups;
    let [_bs, ms, ns, ks] = sizes;
    let tt = ty(d);
    let threads = (t.bm / t.tm) * (t.bn / t.tn);
    let (hm, hn) = (t.tm / 4, t.tn / 4);
    let (tyn, txn) = (t.bm / t.tm, t.bn / t.tn);
    let la = t.bm * t.bk / threads;
    let lb = t.bn * t.bk / threads;
    let mt = ms.div_ceil(t.bm);
    let mut s = String::new();
    // Bindings in A, B order (header names them a0, a1).
    s.push_str(&header(out, &[a.clone(), b.clone()]));
    for (name, g, l) in [
        ("a_b", bg, a),
        ("a_m", mg, a),
        ("a_k", kg, a),
        ("b_b", bg, b),
        ("b_n", ng, b),
        ("b_k", kg, b),
        ("o_b", bg, out),
        ("o_m", mg, out),
        ("o_n", ng, out),
    ] {
        s.push_str(&group_fn(name, plan, g, l));
    }
    let _ = writeln!(
        s,
        "var<workgroup> As: array<vec4<{tt}>, {}>;\nvar<workgroup> Bs: array<vec4<{tt}>, {}>;",
        t.bk * t.bm / 4,
        t.bk * t.bn / 4
    );
    let _ = writeln!(
        s,
        "@compute @workgroup_size({threads})\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{"
    );
    let rows = mt * _bs;
    let _ = writeln!(
        s,
        "  let wy = wid.y + wid.z * {dy}u;\n  if (wy >= {}u) {{ return; }}",
        rows * splits
    );
    // Workgroup row → (K split, batch entry, M tile); the split's K range is uniform.
    let _ = writeln!(
        s,
        "  let sp = wy / {rows}u;\n  let wr = wy % {rows}u;\n  let kbeg = sp * {kchunk}u;\n  let kend = min(kbeg + {kchunk}u, {ks}u);"
    );
    let _ = writeln!(
        s,
        "  let m0 = (wr % {mt}u) * {}u;\n  let bb = wr / {mt}u;\n  let n0 = wid.x * {}u;",
        t.bm, t.bn
    );
    let _ = writeln!(s, "  let tx = lid % {txn}u;\n  let ty = lid / {txn}u;");
    // A slice of a larger operand starts at its offset.
    let start = |o: u64| {
        if o == 0 {
            String::new()
        } else {
            format!("{o}u + ")
        }
    };
    let _ = writeln!(
        s,
        "  let abase = {}a_b(bb);\n  let bbase = {}b_b(bb);",
        start(a.offset),
        start(b.offset)
    );
    let zero = format!("{tt}(0.0)");
    for i in 0..la {
        let _ = writeln!(s, "  var ra{i} = {zero};");
    }
    for i in 0..lb {
        let _ = writeln!(s, "  var rb{i} = {zero};");
    }
    for h in 0..hm {
        for r in 0..4 {
            for g in 0..hn {
                let _ = writeln!(s, "  var c{h}_{r}_{g} = vec4<{tt}>({zero});");
            }
        }
    }
    // Which of (m, k) runs fastest in A's tile load follows A's unit stride, so a warp
    // reads consecutive addresses; likewise (n, k) for B.
    let a_kfast = fast(plan, kg, a) && !fast(plan, mg, a);
    let b_kfast = fast(plan, kg, b) && !fast(plan, ng, b);
    let mcheck = ms % t.bm != 0;
    let ncheck = ns % t.bn != 0;
    let kcheck = ks % t.bk != 0 || splits > 1;
    let sides = [
        Side {
            reg: "ra",
            shared: "As",
            buf: "a0",
            base: "abase",
            rows_fn: "a_m",
            k_fn: "a_k",
            origin: "m0",
            tile: t.bm,
            count: la,
            kfast: a_kfast,
            extent: mcheck.then_some(ms),
        },
        Side {
            reg: "rb",
            shared: "Bs",
            buf: "a1",
            base: "bbase",
            rows_fn: "b_n",
            k_fn: "b_k",
            origin: "n0",
            tile: t.bn,
            count: lb,
            kfast: b_kfast,
            extent: ncheck.then_some(ns),
        },
    ];
    let load: String = sides
        .iter()
        .map(|sd| sd.load(t.bk, threads, kcheck, &zero))
        .collect();
    // Prefetch the first slice.
    let _ = writeln!(s, "  {{\n    let kq = kbeg;\n{load}  }}");
    let _ = writeln!(
        s,
        "  for (var kt = kbeg; kt < kend; kt += {}u) {{\n    workgroupBarrier();",
        t.bk
    );
    for sd in &sides {
        s.push_str(&sd.store(t.bk, threads));
    }
    s.push_str("    workgroupBarrier();\n");
    let _ = writeln!(
        s,
        "    if (kt + {}u < kend) {{\n      let kq = kt + {}u;\n{}    }}",
        t.bk,
        t.bk,
        load.replace("\n    ", "\n      ")
            .replacen("    ", "      ", 1)
    );
    let _ = writeln!(s, "    for (var kk = 0u; kk < {}u; kk++) {{", t.bk);
    for h in 0..hm {
        let _ = writeln!(
            s,
            "      let va{h} = As[kk * {}u + {}u + ty];",
            t.bm / 4,
            h * tyn
        );
    }
    for g in 0..hn {
        let _ = writeln!(
            s,
            "      let vb{g} = Bs[kk * {}u + {}u + tx];",
            t.bn / 4,
            g * txn
        );
    }
    let comp = ["x", "y", "z", "w"];
    for h in 0..hm {
        for (r, c) in comp.iter().enumerate() {
            for g in 0..hn {
                let _ = writeln!(
                    s,
                    "      c{h}_{r}_{g} = fma(vec4<{tt}>(va{h}.{c}), vb{g}, c{h}_{r}_{g});"
                );
            }
        }
    }
    s.push_str("    }\n  }\n");
    let _ = writeln!(s, "  let obase = o_b(bb) + sp * {total}u;");
    for h in 0..hm {
        for r in 0..4 {
            let _ = writeln!(
                s,
                "  {{\n    let m = m0 + {}u + ty * 4u + {r}u;",
                h * (t.bm / hm)
            );
            if mcheck {
                let _ = writeln!(s, "    if (m < {ms}u) {{");
            } else {
                s.push_str("    {\n");
            }
            s.push_str("    let om = obase + o_m(m);\n");
            for g in 0..hn {
                for (cc, c) in comp.iter().enumerate() {
                    let n = format!("n0 + {}u + tx * 4u + {cc}u", g * (t.bn / hn));
                    if ncheck {
                        let _ = writeln!(
                            s,
                            "    {{ let n = {n}; if (n < {ns}u) {{ out[om + o_n(n)] = c{h}_{r}_{g}.{c}; }} }}"
                        );
                    } else {
                        let _ = writeln!(s, "    out[om + o_n({n})] = c{h}_{r}_{g}.{c};");
                    }
                }
            }
            s.push_str("    }\n  }\n");
        }
    }
    s.push_str("}\n");
    s
}
