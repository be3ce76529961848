//! `emit_wgsl`: a plan to WebGPU compute kernels, one or more per step, each validated by
//! naga before it leaves the compiler.
//!
//! Kernels are specialised to the plan's shapes: sizes and strides are WGSL constants, so
//! index arithmetic by constant divisors compiles to multiplies and shifts. Every value of
//! the plan lives in a [`BufferDesc`]: inputs and stored results in their own buffers,
//! intermediates in temporaries that are reused once their last reader has run (buffers of
//! exactly the same element type, largest size wins). A `Load` is not a kernel: it names the
//! tensor's buffer with its dense strides, so a repeated index (`T[i, i]`) becomes a diagonal
//! stride in whatever kernel reads it.
//!
//! Two kernel shapes cover every step (see [`loops`] and [`gemm`]):
//! - a *loop* kernel: one invocation per output element running nested loops over the
//!   summed indices (products, diagonals, traces, permutations, maps, fused chains, non-sum
//!   reductions, any semiring), or one workgroup per output element with a tree reduction
//!   when there are few outputs and a long reduction;
//! - a *tiled GEMM* kernel for sum-product pairwise contractions of real operands: batch, M,
//!   N and K index groups in any order and with any strides (addressing folded into the
//!   loads, no transpose pass), workgroup tiles in shared memory with register prefetch of
//!   the next tile, and a 4×4 or 8×8 register block per invocation read as `vec4`s.
//!
//! Invariants of the output (checked by the tests): every kernel parses and validates with
//! naga; barriers sit only in uniform control flow (a whole workgroup returns early or
//! none of it does); workgroup storage and invocations stay within [`GpuCaps`]; every
//! dispatch dimension is at most `max_workgroups_per_dim`; each kernel writes exactly one
//! buffer, binding 0.

mod gemm;
mod loops;
mod scalar;

use crate::ir::{IndexId, TensorId, TensorKind};
use crate::plan::{Op, Plan, Semiring, Step};
use einc_frontend::ein::ast::DType;
use std::fmt;

/// What the target adapter allows; codegen stays inside it.
#[derive(Clone, Debug)]
pub struct GpuCaps {
    pub f64: bool,
    pub max_workgroup_storage: u32,
    pub max_invocations: u32,
    pub max_workgroups_per_dim: u32,
    pub max_binding_bytes: u64,
    /// Tile override for experiments (`EINC_GPU_TILE`), e.g. `128x128x8` or `64x64x16`.
    pub tile: Option<(u32, u32, u32)>,
}

impl Default for GpuCaps {
    /// WebGPU's default limits with `SHADER_F64` assumed, for `--emit wgsl` without an
    /// adapter at hand.
    fn default() -> Self {
        GpuCaps {
            f64: true,
            max_workgroup_storage: 16384,
            max_invocations: 256,
            max_workgroups_per_dim: 65535,
            max_binding_bytes: 128 << 20,
            tile: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmitError(pub String);

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmitError {}

/// Who fills a buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum BufferRole {
    /// Uploaded from the caller's array for this input tensor.
    Input(TensorId),
    /// Holds a result tensor (read back when the tensor is a program output).
    Result(TensorId),
    /// A scalar constant, uploaded once.
    Const(f64),
    /// An intermediate, reused across values whose lifetimes don't overlap.
    Temp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BufferDesc {
    pub dtype: DType,
    /// Elements (at least 1, since bindings may not be empty).
    pub len: u64,
    pub role: BufferRole,
}

impl BufferDesc {
    pub fn bytes(&self) -> u64 {
        self.len * dtype_bytes(self.dtype)
    }
}

pub fn dtype_bytes(d: DType) -> u64 {
    match d {
        DType::F32 => 4,
        DType::F64 | DType::C64 => 8,
        DType::C128 => 16,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub binding: u32,
    pub buffer: usize,
    pub writable: bool,
}

/// Every kernel's bindings: the written buffer at 0, then the read ones from 1 in order.
fn bindings(out: usize, reads: impl IntoIterator<Item = usize>) -> Vec<Binding> {
    std::iter::once(Binding {
        binding: 0,
        buffer: out,
        writable: true,
    })
    .chain(reads.into_iter().enumerate().map(|(j, buffer)| Binding {
        binding: j as u32 + 1,
        buffer,
        writable: false,
    }))
    .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// One invocation per output element.
    Loop,
    /// One workgroup per output element, tree reduction.
    Reduce,
    /// Tiled pairwise contraction.
    Gemm,
}

impl KernelKind {
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Loop => "loop",
            KernelKind::Reduce => "reduce",
            KernelKind::Gemm => "gemm",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    /// The plan step it computes.
    pub step: usize,
    pub kind: KernelKind,
    pub source: String,
    pub entry_point: &'static str,
    /// Binding 0 is the output; the rest are read-only.
    pub bindings: Vec<Binding>,
    pub workgroup_size: [u32; 3],
    pub dispatch: [u32; 3],
    /// How `dispatch` follows from the shapes, for readers of the manifest.
    pub dispatch_formula: String,
    pub flops: f64,
}

/// A plan lowered to buffers and kernels, run in order.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuProgram {
    pub buffers: Vec<BufferDesc>,
    pub kernels: Vec<Kernel>,
    /// Program outputs and the buffer each is read back from.
    pub outputs: Vec<(TensorId, usize)>,
    /// Input tensors and their buffers.
    pub inputs: Vec<(TensorId, usize)>,
}

/// Where a plan value lives: a buffer and one stride (in elements) per index position.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub buf: usize,
    pub dtype: DType,
    pub labels: Vec<IndexId>,
    pub strides: Vec<u64>,
    /// Element offset of position 0 (a slice of a larger value).
    pub offset: u64,
}

impl Layout {
    /// A fresh row-major value of `step` in `buf`.
    fn dense(buf: usize, step: &Step, sizes: &[u64]) -> Layout {
        Layout {
            buf,
            dtype: step.dtype,
            labels: step.indices.clone(),
            strides: dense_strides(sizes),
            offset: 0,
        }
    }
}

/// The step a kernel computes: its plan position (for [`Kernel::step`]), the step itself
/// (a plan step or a step of a slice body) and the name prefix of its kernels.
pub(crate) struct At<'a> {
    pub index: usize,
    pub step: &'a Step,
    pub name: String,
}

/// Most kernels one sliced product may unroll into.
const MAX_SLICE_KERNELS: u64 = 4096;

/// Kernel emission with the buffers being assigned.
struct Emitter<'a> {
    plan: &'a Plan,
    caps: &'a GpuCaps,
    pool: &'a mut Pool,
    buffers: &'a mut Vec<BufferDesc>,
    kernels: &'a mut Vec<Kernel>,
}

impl<'a> At<'a> {
    /// Plan step `k`.
    fn step(k: usize, step: &'a Step) -> At<'a> {
        At {
            index: k,
            step,
            name: format!("s{k}"),
        }
    }
}

impl<'a> Emitter<'a> {
    fn new(
        plan: &'a Plan,
        caps: &'a GpuCaps,
        pool: &'a mut Pool,
        buffers: &'a mut Vec<BufferDesc>,
        kernels: &'a mut Vec<Kernel>,
    ) -> Emitter<'a> {
        Emitter {
            plan,
            caps,
            pool,
            buffers,
            kernels,
        }
    }

    /// Kernels computing `at.step` (a `Unary`, `Contract`, `Elementwise`, `Fused` or
    /// `Reduce`) from `args` into `out`.
    fn compute(&mut self, at: &At<'_>, out: &Layout, args: &[Layout]) -> Result<(), EmitError> {
        let (plan, caps) = (self.plan, self.caps);
        if matches!(at.step.op, Op::Contract { .. }) && plan.semiring == Semiring::SumProduct {
            if let Some(g) = gemm::contract(plan, at, out, &args[0], &args[1], caps)? {
                if g.splits > 1 {
                    let part = self.pool.take(self.buffers, out.dtype, g.splits * g.total);
                    let mut kern = g.kernel;
                    kern.bindings[0].buffer = part;
                    let sum =
                        gemm::reduce_splits(at, out.buf, part, g.total, g.splits, out.dtype, caps)?;
                    self.pool.free(part);
                    self.kernels.extend([kern, sum]);
                } else {
                    self.kernels.push(g.kernel);
                }
                return Ok(());
            }
        }
        self.kernels.extend(loops::step(plan, at, out, args, caps)?);
        Ok(())
    }

    /// Unrolls a sliced product: per slice, the body's kernels on the arguments offset to
    /// that slice, the last one writing into `out` (first slice) or a temporary combined
    /// into `out` with the semiring's `⊕`.
    fn slice_sum(
        &mut self,
        k: usize,
        out: &Layout,
        args: &[Layout],
        sliced: &[IndexId],
        body: &[Step],
    ) -> Result<(), EmitError> {
        let p = &self.plan.program;
        let extents: Vec<u64> = sliced.iter().map(|&i| p.size(i)).collect();
        let slices: u64 = extents.iter().product();
        if slices.saturating_mul(body.len() as u64 + 1) > MAX_SLICE_KERNELS {
            return Err(EmitError(format!(
                "this plan slices a product into {slices} parts, more than the GPU target \
                 unrolls (at most {MAX_SLICE_KERNELS} kernels); raise --memory-limit or use \
                 --target cpu"
            )));
        }
        let mut last_use = vec![None; body.len()];
        for (j, s) in body.iter().enumerate() {
            for a in s.op.args() {
                last_use[a.0 as usize] = Some(j);
            }
        }
        let total: u64 = out.labels.iter().map(|&i| p.size(i)).product();
        for slice in 0..slices {
            let mut rest = slice;
            let mut value = vec![0u64; extents.len()];
            for (v, &e) in value.iter_mut().zip(&extents).rev() {
                *v = rest % e;
                rest /= e;
            }
            let mut vals: Vec<Option<Layout>> = vec![None; body.len()];
            let mut tmp = None;
            for (j, bs) in body.iter().enumerate() {
                let at = At {
                    index: k,
                    step: bs,
                    name: format!("s{k}_x{slice}_b{j}"),
                };
                let layout = match &bs.op {
                    Op::Arg(a) => {
                        let src = args.get(*a).ok_or_else(|| {
                            EmitError(format!("internal error: slice argument {a} out of range"))
                        })?;
                        let mut l = src.clone();
                        l.labels.clear();
                        l.strides.clear();
                        for (&lab, &st) in src.labels.iter().zip(&src.strides) {
                            match sliced.iter().position(|&x| x == lab) {
                                Some(q) => l.offset += value[q] * st,
                                None => {
                                    l.labels.push(lab);
                                    l.strides.push(st);
                                }
                            }
                        }
                        l
                    }
                    Op::Unary { .. } | Op::Contract { .. } => {
                        let sizes: Vec<u64> = bs.indices.iter().map(|&i| p.size(i)).collect();
                        let len: u64 = sizes.iter().product();
                        let buf = if j + 1 == body.len() && slice == 0 {
                            out.buf
                        } else {
                            let b = self.pool.take(self.buffers, bs.dtype, len.max(1));
                            if j + 1 == body.len() {
                                tmp = Some(b);
                            }
                            b
                        };
                        let l = Layout::dense(buf, bs, &sizes);
                        let ins: Vec<Layout> = bs
                            .op
                            .args()
                            .iter()
                            .map(|v| {
                                vals[v.0 as usize].clone().ok_or_else(|| {
                                    EmitError("internal error: slice value missing".into())
                                })
                            })
                            .collect::<Result<_, _>>()?;
                        self.compute(&at, &l, &ins)?;
                        l
                    }
                    other => {
                        return Err(EmitError(format!(
                            "internal error: {other:?} in a slice body"
                        )))
                    }
                };
                vals[j] = Some(layout);
                for a in bs.op.args() {
                    let a = a.0 as usize;
                    if last_use[a] == Some(j) && !matches!(body[a].op, Op::Arg(_)) {
                        if let Some(l) = &vals[a] {
                            self.pool.free(l.buf);
                        }
                    }
                }
            }
            if let Some(t) = tmp {
                self.kernels.push(loops::accumulate(
                    self.plan,
                    &format!("s{k}_x{slice}_acc"),
                    k,
                    out,
                    t,
                    total,
                    self.caps,
                )?);
                self.pool.free(t);
            }
        }
        Ok(())
    }
}

pub(crate) fn dense_strides(sizes: &[u64]) -> Vec<u64> {
    let mut st = vec![0; sizes.len()];
    let mut acc = 1u64;
    for k in (0..sizes.len()).rev() {
        st[k] = acc;
        acc *= sizes[k];
    }
    st
}

/// Compiles `plan` into WGSL kernels for an adapter with `caps`.
pub fn emit_wgsl(plan: &Plan, caps: &GpuCaps) -> Result<GpuProgram, EmitError> {
    let p = &plan.program;
    let n = plan.steps.len();
    for s in &plan.steps {
        if matches!(s.dtype, DType::F64 | DType::C128) && !caps.f64 {
            return Err(EmitError(format!(
                "this program computes in {}, but the GPU adapter has no SHADER_F64 support; \
                 run it with --target cpu",
                s.dtype.name()
            )));
        }
    }
    let mut buffers: Vec<BufferDesc> = Vec::new();
    let mut tensor_buf: Vec<Option<usize>> = vec![None; p.tensors.len()];
    let mut inputs = Vec::new();
    for (id, t) in p.tensors.iter() {
        if t.kind == TensorKind::Input {
            let len: u64 = t.axes.iter().map(|&a| p.size(a)).product();
            tensor_buf[id.index()] = Some(buffers.len());
            inputs.push((id, buffers.len()));
            buffers.push(BufferDesc {
                dtype: t.dtype,
                len: len.max(1),
                role: BufferRole::Input(id),
            });
        }
    }
    let mut last_use = vec![None; n];
    for (k, s) in plan.steps.iter().enumerate() {
        for a in s.op.args() {
            last_use[a.0 as usize] = Some(k);
        }
    }
    let mut pool = Pool::default();
    let mut layouts: Vec<Option<Layout>> = vec![None; n];
    let mut kernels = Vec::new();
    for (k, s) in plan.steps.iter().enumerate() {
        let sizes: Vec<u64> = s.indices.iter().map(|&i| p.size(i)).collect();
        let len: u64 = sizes.iter().product();
        let get = |v: &crate::plan::ValueId| -> Result<Layout, EmitError> {
            layouts[v.0 as usize]
                .clone()
                .ok_or_else(|| EmitError(format!("internal error: value %{} has no buffer", v.0)))
        };
        let layout = match &s.op {
            Op::Load { tensor } => {
                let buf = tensor_buf[tensor.index()].ok_or_else(|| {
                    EmitError(format!(
                        "internal error: '{}' read before it was computed",
                        p.tensors[*tensor].name
                    ))
                })?;
                let t = &p.tensors[*tensor];
                let tsizes: Vec<u64> = t.axes.iter().map(|&a| p.size(a)).collect();
                Layout {
                    buf,
                    dtype: buffers[buf].dtype,
                    labels: s.indices.clone(),
                    strides: dense_strides(&tsizes),
                    offset: 0,
                }
            }
            Op::Const(x) => {
                buffers.push(BufferDesc {
                    dtype: s.dtype,
                    len: 1,
                    role: BufferRole::Const(*x),
                });
                Layout {
                    buf: buffers.len() - 1,
                    dtype: s.dtype,
                    labels: vec![],
                    strides: vec![],
                    offset: 0,
                }
            }
            Op::Store { tensor, arg } => {
                let a = get(arg)?;
                let dense = a.strides == dense_strides(&sizes)
                    && a.offset == 0
                    && a.labels == s.indices
                    && a.dtype == s.dtype
                    && buffers[a.buf].role == BufferRole::Temp;
                let buf = if dense {
                    // The value's own buffer becomes the tensor's; it is never reused.
                    pool.pin(a.buf);
                    a.buf
                } else {
                    buffers.push(BufferDesc {
                        dtype: s.dtype,
                        len: len.max(1),
                        role: BufferRole::Result(*tensor),
                    });
                    let out = Layout::dense(buffers.len() - 1, s, &sizes);
                    kernels.extend(loops::copy(plan, &At::step(k, s), &out, &a, caps)?);
                    out.buf
                };
                buffers[buf].role = BufferRole::Result(*tensor);
                tensor_buf[tensor.index()] = Some(buf);
                Layout::dense(buf, s, &sizes)
            }
            Op::SliceSum { args, sliced, body } => {
                let args: Vec<Layout> = args.iter().map(get).collect::<Result<_, _>>()?;
                let buf = pool.take(&mut buffers, s.dtype, len.max(1));
                let out = Layout::dense(buf, s, &sizes);
                Emitter::new(plan, caps, &mut pool, &mut buffers, &mut kernels)
                    .slice_sum(k, &out, &args, sliced, body)?;
                out
            }
            op => {
                let args: Vec<Layout> = op.args().iter().map(get).collect::<Result<_, _>>()?;
                let buf = pool.take(&mut buffers, s.dtype, len.max(1));
                let out = Layout::dense(buf, s, &sizes);
                Emitter::new(plan, caps, &mut pool, &mut buffers, &mut kernels).compute(
                    &At::step(k, s),
                    &out,
                    &args,
                )?;
                out
            }
        };
        if layout.strides.len() != layout.labels.len() {
            return Err(EmitError(format!(
                "internal error: value %{k} has {} strides for {} indices",
                layout.strides.len(),
                layout.labels.len()
            )));
        }
        layouts[k] = Some(layout);
        for a in s.op.args() {
            let a = a.0 as usize;
            if last_use[a] == Some(k) {
                if let Some(l) = &layouts[a] {
                    if !matches!(plan.steps[a].op, Op::Load { .. } | Op::Store { .. }) {
                        pool.free(l.buf);
                    }
                }
            }
        }
    }
    for b in &buffers {
        if b.bytes() > caps.max_binding_bytes {
            return Err(EmitError(format!(
                "a {} buffer of {} bytes exceeds the adapter's largest storage binding ({} bytes); \
                 splitting such plans on the GPU is not implemented yet, use --target cpu",
                b.dtype.name(),
                b.bytes(),
                caps.max_binding_bytes
            )));
        }
    }
    let outputs = p
        .outputs
        .iter()
        .map(|&t| {
            tensor_buf[t.index()].map(|b| (t, b)).ok_or_else(|| {
                EmitError(format!(
                    "internal error: output '{}' is never computed",
                    p.tensors[t].name
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    for kern in &kernels {
        validate(&kern.source).map_err(|e| {
            EmitError(format!(
                "internal error: kernel {} failed naga validation:\n{e}\n--- shader ---\n{}",
                kern.name, kern.source
            ))
        })?;
    }
    Ok(GpuProgram {
        buffers,
        kernels,
        outputs,
        inputs,
    })
}

/// Temporaries free for reuse, by element type.
#[derive(Default)]
struct Pool {
    free: Vec<usize>,
    pinned: Vec<usize>,
}

impl Pool {
    fn take(&mut self, buffers: &mut Vec<BufferDesc>, dtype: DType, len: u64) -> usize {
        // Best fit: the smallest free buffer that holds `len`, else the largest (grown).
        let mut best: Option<usize> = None;
        for (slot, &b) in self.free.iter().enumerate() {
            if buffers[b].dtype != dtype {
                continue;
            }
            let better = match best {
                None => true,
                Some(s) => {
                    let (cur, cand) = (buffers[self.free[s]].len, buffers[b].len);
                    if cur >= len {
                        cand >= len && cand < cur
                    } else {
                        cand > cur
                    }
                }
            };
            if better {
                best = Some(slot);
            }
        }
        if let Some(slot) = best {
            let b = self.free.swap_remove(slot);
            buffers[b].len = buffers[b].len.max(len);
            return b;
        }
        buffers.push(BufferDesc {
            dtype,
            len,
            role: BufferRole::Temp,
        });
        buffers.len() - 1
    }

    fn free(&mut self, b: usize) {
        if !self.pinned.contains(&b) && !self.free.contains(&b) {
            self.free.push(b);
        }
    }

    fn pin(&mut self, b: usize) {
        self.pinned.push(b);
    }
}

/// Parses and validates one WGSL module; the error is naga's rendered diagnostic.
pub fn validate(source: &str) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::FLOAT64,
    )
    .validate(&module)
    .map_err(|e| {
        let mut msg = e.emit_to_string(source);
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e.as_inner());
        while let Some(s) = src {
            msg.push_str(&format!("\ncaused by: {s}"));
            src = s.source();
        }
        msg
    })?;
    Ok((module, info))
}

/// Splits `groups` workgroups over (x, y) so neither exceeds the per-dimension limit.
pub(crate) fn grid(groups: u64, caps: &GpuCaps) -> Result<[u32; 3], EmitError> {
    let lim = caps.max_workgroups_per_dim as u64;
    if groups <= lim {
        return Ok([groups as u32, 1, 1]);
    }
    let y = groups.div_ceil(lim);
    if y > lim {
        return Err(EmitError(format!(
            "a kernel needs {groups} workgroups, more than this adapter can dispatch"
        )));
    }
    Ok([lim as u32, y as u32, 1])
}
