//! The CPU executor of plans.
//!
//! Inputs are borrowed, never copied (a `Load` yields a view). Computed values live in a
//! slot per SSA value and are dropped right after their last reader has run, so peak
//! memory follows the plan rather than the program length. Every argument is cast to the
//! step's dtype first (the compiler promotes; constants arrive as f64).

use crate::fused;
use crate::inplace;
use crate::kernels::{self, Scalar};
use crate::semiring;
use crate::value::{dtype_size, TensorData, TensorView};
use einc_compiler::ir::{labels as ir_labels, MapOp, ReduceOp, TensorId};
use einc_compiler::plan::{ElemOp, FusedNode, Op, Plan};
use einc_frontend::ein::ast::DType;
use einc_frontend::einsum::fmt_shape;
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A run-time failure: wrong inputs (count, shape), a plan too large for memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError(pub String);

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ExecError {}

/// How to run a plan.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Worker threads for GEMMs and batch loops; `None`: rayon's global pool (all cores).
    pub threads: Option<usize>,
    /// Record per-step times (costs one clock read per step).
    pub collect_stats: bool,
    /// Where the plan runs.
    pub target: Target,
    /// Whether contractions may be computed in the buffer of an operand they consume.
    pub in_place: InPlaceMode,
}

/// When the CPU executor computes a contraction in the buffer of the operand it consumes
/// (see `inplace.rs`: block by block, each block through a scratch of at most 1 MiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InPlaceMode {
    /// Where a step would otherwise hold more computed values than the plan's largest
    /// intermediate (its operand and its result at once, in a chain of large steps).
    #[default]
    Auto,
    /// Never: every step writes a fresh buffer.
    Never,
}

/// The device a plan runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The CPU executor (this module).
    #[default]
    Cpu,
    /// WGSL kernels through wgpu ([`crate::gpu`]).
    Gpu,
}

/// What a run cost, for `einc run --stats`.
#[derive(Clone, Debug, Default)]
pub struct ExecStats {
    /// Per step: (step index, wall time, flops from the plan, bytes of the result).
    pub steps: Vec<(usize, Duration, f64, usize)>,
    /// Largest sum of live computed values at any point, in bytes (inputs excluded: they
    /// are borrowed).
    pub peak_bytes: usize,
    pub input_bytes: usize,
    /// Steps computed in the buffer of the operand they consume ([`crate::inplace`]).
    pub in_place_steps: usize,
    /// Largest scratch block of those steps, in bytes: kernel workspace, like a GEMM's
    /// packing buffers, and not part of `peak_bytes`.
    pub workspace_bytes: usize,
    pub total: Duration,
}

/// Input tensors of a plan's program, in arena order (for an einsum: operand order).
pub fn input_ids(plan: &Plan) -> Vec<TensorId> {
    plan.program.inputs().map(|(h, _)| h).collect()
}

/// Run `plan` on owned inputs (one per input tensor, in [`input_ids`] order).
pub fn execute(plan: &Plan, inputs: Vec<TensorData>) -> Result<Vec<TensorData>, ExecError> {
    let views: Vec<TensorView<'_>> = inputs.iter().map(|t| t.view()).collect();
    execute_views(plan, &views, &ExecOptions::default()).map(|(o, _)| o)
}

/// A value during a run: a borrowed input or a computed array.
#[derive(Clone)]
enum Slot<'a> {
    View(TensorView<'a>),
    Owned(Arc<TensorData>),
}

impl Slot<'_> {
    fn view(&self) -> TensorView<'_> {
        match self {
            Slot::View(v) => v.reborrow(),
            Slot::Owned(t) => t.view(),
        }
    }
    fn owned_bytes(&self) -> usize {
        match self {
            Slot::View(_) => 0,
            Slot::Owned(t) => t.nbytes(),
        }
    }
}

/// Thread pools already built, by thread count.
type Pools = Vec<(usize, Arc<rayon::ThreadPool>)>;

fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(Vec::new()));
    let mut guard = pools.lock().ok()?;
    if let Some((_, p)) = guard.iter().find(|(n, _)| *n == threads) {
        return Some(p.clone());
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .ok()?,
    );
    guard.push((threads, p.clone()));
    Some(p)
}

/// Run `plan` on borrowed inputs; returns the program's outputs in order and the stats.
pub fn execute_views(
    plan: &Plan,
    inputs: &[TensorView<'_>],
    opts: &ExecOptions,
) -> Result<(Vec<TensorData>, ExecStats), ExecError> {
    if opts.target == Target::Gpu {
        let start = Instant::now();
        let outs = crate::gpu::execute_gpu(plan, inputs)?;
        let stats = ExecStats {
            total: start.elapsed(),
            ..Default::default()
        };
        return Ok((outs, stats));
    }
    let ids = input_ids(plan);
    let given = match_inputs(&ids, inputs)?;
    in_pool(opts, plan, || {
        run_plan(plan, given, opts, Mode::Full).map(|r| (r.0, r.1))
    })
}

/// The values of a plan that depend only on its constant inputs (opt_einsum's
/// `constants=`), computed once by [`prepare`] and reused by every [`execute_prepared`].
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    /// Input tensors supplied at preparation, in [`input_ids`] order.
    constants: Vec<TensorId>,
    /// Per step: whether it depends on constant inputs only.
    constant_step: Vec<bool>,
    /// Per step: the value, for constant steps that a non-constant step reads (or that
    /// store an output).
    values: Vec<Option<Arc<TensorData>>>,
}

impl Prepared {
    /// Input tensors still to be given at run time, in [`input_ids`] order.
    pub fn variable_inputs(&self, plan: &Plan) -> Vec<TensorId> {
        input_ids(plan)
            .into_iter()
            .filter(|t| !self.constants.contains(t))
            .collect()
    }

    /// Bytes held by the precomputed values.
    pub fn nbytes(&self) -> usize {
        self.values.iter().flatten().map(|v| v.nbytes()).sum()
    }
}

/// Runs every step of `plan` that depends only on `constants` (input tensors with their
/// arrays) and keeps the values later steps need.
pub fn prepare(
    plan: &Plan,
    constants: &[(TensorId, TensorView<'_>)],
    opts: &ExecOptions,
) -> Result<Prepared, ExecError> {
    let p = &plan.program;
    let ids = input_ids(plan);
    for (t, _) in constants {
        if !ids.contains(t) {
            return Err(ExecError(format!(
                "'{}' is not an input, so it cannot be a constant",
                p.tensors[*t].name
            )));
        }
    }
    let constant_ids: Vec<TensorId> = ids
        .iter()
        .copied()
        .filter(|t| constants.iter().any(|(c, _)| c == t))
        .collect();
    let constant_step = constant_steps(plan, &constant_ids);
    // Kept: constant values a variable step reads, and constant stores of outputs.
    let mut keep = vec![false; plan.steps.len()];
    for (k, s) in plan.steps.iter().enumerate() {
        if !constant_step[k] {
            for a in reads(&s.op) {
                keep[a] |= constant_step[a];
            }
        } else if let Op::Store { tensor, .. } = s.op {
            keep[k] = p.outputs.contains(&tensor);
        }
    }
    let given = constants.iter().map(|(t, v)| (*t, v.reborrow())).collect();
    let mode = Mode::Prepare {
        constant_step: &constant_step,
        keep: &keep,
    };
    let (_, _, values) = in_pool(opts, plan, || run_plan(plan, given, opts, mode))?;
    Ok(Prepared {
        constants: constant_ids,
        constant_step,
        values,
    })
}

/// Run `plan` with its constant part taken from `prepared`; `inputs` are the variable
/// inputs only ([`Prepared::variable_inputs`]).
pub fn execute_prepared(
    plan: &Plan,
    prepared: &Prepared,
    inputs: &[TensorView<'_>],
    opts: &ExecOptions,
) -> Result<(Vec<TensorData>, ExecStats), ExecError> {
    if opts.target == Target::Gpu {
        return Err(ExecError(
            "constant operands are pre-contracted on the CPU; the GPU target does not take \
             them yet (use --target cpu)"
                .into(),
        ));
    }
    let ids = prepared.variable_inputs(plan);
    let given = match_inputs(&ids, inputs)?;
    in_pool(opts, plan, || {
        run_plan(plan, given, opts, Mode::Prepared(prepared)).map(|r| (r.0, r.1))
    })
}

/// Runs `f` (a run of `plan`) as [`ExecOptions::threads`] asks, except that a plan too
/// small for any kernel's parallel loop runs on this thread: handing it to a pool would
/// only add the hand-off (see [`kernels::one_thread`]).
fn in_pool<R: Send>(opts: &ExecOptions, plan: &Plan, f: impl FnOnce() -> R + Send) -> R {
    let small = plan.flops() < SMALL_PLAN as f64 && plan.largest_intermediate() < SMALL_PLAN as f64;
    if small && opts.threads.is_some() {
        return kernels::one_thread(f);
    }
    with_threads(opts.threads, f)
}

/// Flops and elements below which no kernel splits its work over threads (the smallest
/// threshold of a parallel loop is 2^15 elements, the fused pass's).
const SMALL_PLAN: usize = 1 << 15;

/// Runs `f` with `threads` workers: on this thread for one (see
/// [`kernels::one_thread`]) or when it is a worker of a pool of that many, else on a pool
/// of that many (created once per count and kept); on the current pool for `None`. How
/// callers outside the executor honour [`ExecOptions::threads`].
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    match threads {
        None => f(),
        Some(1) => kernels::one_thread(f),
        // Already on a worker of a pool of that size.
        Some(n) if rayon::current_thread_index().is_some() && n == kernels::threads() => f(),
        Some(n) => match pool(n) {
            Some(p) => p.install(f),
            None => f(),
        },
    }
}

fn match_inputs<'a>(
    ids: &[TensorId],
    inputs: &[TensorView<'a>],
) -> Result<Vec<(TensorId, TensorView<'a>)>, ExecError> {
    if ids.len() != inputs.len() {
        return Err(ExecError(format!(
            "expected {} input arrays, got {}",
            ids.len(),
            inputs.len()
        )));
    }
    Ok(ids.iter().copied().zip(inputs.iter().cloned()).collect())
}

/// Which steps depend on the `constants` input tensors only: the compiler's
/// [`Plan::constant_steps`], so its per-call cost model and this executor agree.
fn constant_steps(plan: &Plan, constants: &[TensorId]) -> Vec<bool> {
    plan.constant_steps(constants)
}

/// What `run_plan` does with each step.
#[derive(Clone, Copy)]
enum Mode<'p> {
    /// Every step.
    Full,
    /// Only constant steps; `keep` values survive to be returned.
    Prepare {
        constant_step: &'p [bool],
        keep: &'p [bool],
    },
    /// Every step but the constant ones, whose values come from the preparation.
    Prepared(&'p Prepared),
}

type RunResult = (Vec<TensorData>, ExecStats, Vec<Option<Arc<TensorData>>>);

fn run_plan<'a>(
    plan: &Plan,
    inputs: Vec<(TensorId, TensorView<'a>)>,
    opts: &ExecOptions,
    mode: Mode<'_>,
) -> Result<RunResult, ExecError> {
    let start = Instant::now();
    let p = &plan.program;
    check_memory(plan, max_bytes())?;
    let mut stats = ExecStats::default();
    let mut tensors: Vec<Option<Slot<'a>>> = vec![None; p.tensors.len()];
    for (id, data) in inputs {
        let t = &p.tensors[id];
        let fits = data.shape().len() == t.axes.len()
            && data
                .shape()
                .iter()
                .zip(&t.axes)
                .all(|(&n, &a)| n as u64 == p.size(a));
        if !fits {
            let want: Vec<usize> = t.axes.iter().map(|&a| p.size(a) as usize).collect();
            return Err(ExecError(format!(
                "input '{}' has shape {} but {} was expected",
                t.name,
                fmt_shape(data.shape()),
                fmt_shape(&want)
            )));
        }
        stats.input_bytes += data.shape().iter().product::<usize>() * dtype_size(data.dtype());
        tensors[id.index()] = Some(if data.dtype() == t.dtype {
            Slot::View(data)
        } else {
            Slot::Owned(Arc::new(data.cast(t.dtype)))
        });
    }

    // Last reader of each value, so it can be freed as soon as possible.
    let n = plan.steps.len();
    let mut last_use = vec![usize::MAX; n];
    for (k, s) in plan.steps.iter().enumerate() {
        for a in reads(&s.op) {
            last_use[a] = k;
        }
    }
    let semi = semiring_op(plan);
    // The fused sum each fused pass also computes.
    let mut side_sum: Vec<Option<usize>> = vec![None; n];
    for (k, s) in plan.steps.iter().enumerate() {
        if let Op::FusedSum { of } = s.op {
            side_sum[of.0 as usize] = Some(k);
        }
    }
    // Steps run in place, and buffers allocated with room for that; not while preparing
    // constants, whose values are kept.
    let in_place = match mode {
        Mode::Prepare { .. } => inplace::Choice::default(),
        _ if opts.in_place == InPlaceMode::Never || inplace::disabled() => {
            inplace::Choice::default()
        }
        _ => inplace::choose(plan, &last_use),
    };
    // Capacity of each live value's buffer beyond its elements, in bytes.
    let mut spare = vec![0usize; n];
    let mut values: Vec<Option<Slot<'a>>> = vec![None; n];
    for (k, s) in plan.steps.iter().enumerate() {
        match mode {
            Mode::Full => {}
            Mode::Prepare { constant_step, .. } if !constant_step[k] => continue,
            Mode::Prepare { .. } => {}
            Mode::Prepared(pre) if pre.constant_step[k] => {
                if let Some(v) = &pre.values[k] {
                    let slot = Slot::Owned(v.clone());
                    if let Op::Store { tensor, .. } = s.op {
                        tensors[tensor.index()] = Some(slot.clone());
                    }
                    values[k] = Some(slot);
                }
                continue;
            }
            Mode::Prepared(_) => {}
        }
        let t0 = opts.collect_stats.then(Instant::now);
        // Transient bytes a slice body held at once (0 for other steps).
        let mut body_peak = 0;
        // The result is also a later step's value (a fused pass's sum), counted there.
        let mut counted_later = false;
        let labels = |v: &einc_compiler::plan::ValueId| -> &[u32] {
            ir_labels(&plan.steps[v.0 as usize].indices)
        };
        let out_idx: &[u32] = ir_labels(&s.indices);
        // Bytes that may coexist with the step's values for a moment (a buffer that grew).
        let mut transient = 0;
        let mut done = None;
        if let (Some(how), Op::Contract { lhs, rhs }) =
            (in_place.steps.get(k).copied().flatten(), &s.op)
        {
            let (a, b) = if how.operand == 0 {
                (lhs.0 as usize, rhs.0 as usize)
            } else {
                (rhs.0 as usize, lhs.0 as usize)
            };
            if let Some(Slot::Owned(arc)) = values[a].take_if(|v| matches!(v, Slot::Owned(_))) {
                match Arc::try_unwrap(arc) {
                    Ok(data) => {
                        let bv = values[b].as_ref().map(|x| x.view()).ok_or_else(|| {
                            ExecError(format!(
                                "internal error: value %{b} read after it was freed"
                            ))
                        })?;
                        let c_shape: Vec<usize> =
                            s.indices.iter().map(|&i| p.size(i) as usize).collect();
                        let al = ir_labels(&plan.steps[a].indices);
                        let bl = ir_labels(&plan.steps[b].indices);
                        match inplace::contract(
                            semi,
                            data,
                            how.operand == 0,
                            al,
                            bv,
                            bl,
                            out_idx,
                            &c_shape,
                            (how.np, how.nq),
                        ) {
                            Ok((c, held)) => {
                                stats.in_place_steps += 1;
                                stats.workspace_bytes = stats.workspace_bytes.max(held.workspace);
                                // Keep only the room later steps of the chain grow into.
                                let keep = in_place.capacity[k];
                                let (c, extra) = inplace::fit(c, keep, false);
                                spare[k] = extra;
                                spare[a] = 0;
                                transient = held.grown_from;
                                done = Some(Slot::Owned(Arc::new(c)));
                            }
                            Err(data) => values[a] = Some(Slot::Owned(Arc::new(data))),
                        }
                    }
                    Err(shared) => values[a] = Some(Slot::Owned(shared)),
                }
            }
        }
        // Room for a later in-place step to grow this value without reallocating.
        let room = in_place.capacity.get(k).copied().unwrap_or(0);
        let elems: usize = s.indices.iter().map(|&i| p.size(i) as usize).product();
        let result: Slot<'a> = if let Some(r) = done {
            r
        } else {
            let get = |v: &einc_compiler::plan::ValueId| -> Result<&Slot<'a>, ExecError> {
                values[v.0 as usize].as_ref().ok_or_else(|| {
                    ExecError(format!(
                        "internal error: value %{} read after it was freed",
                        v.0
                    ))
                })
            };
            match &s.op {
                Op::Load { tensor } => tensors[tensor.index()].clone().ok_or_else(|| {
                    ExecError(format!(
                        "internal error: '{}' read before it was computed",
                        p.tensors[*tensor].name
                    ))
                })?,
                Op::Const(x) => {
                    Slot::Owned(Arc::new(TensorData::F64(ArrayD::from_elem(IxDyn(&[]), *x))))
                }
                Op::Unary { arg } => {
                    let a = get(arg)?;
                    // A diagonal of an input that keeps a unit-stride axis is a view of
                    // it: the consumer reads its rows where they are (trace_diag's
                    // `iij->ij`: 512 rows of 64) instead of a copy. One with no unit
                    // stride (`jkk->jk`: a line per element) is still gathered: the
                    // copy runs on all threads, a GEMM's packing of the view on one.
                    // `inplace::choose` still counts the diagonal as a buffer: a step it
                    // picked to consume one writes a fresh result instead, never holding
                    // more than the model counted.
                    let diagonal = match a {
                        Slot::View(v) if v.dtype() == s.dtype && room <= elems => {
                            v.diagonal(labels(arg), out_idx).filter(|d| {
                                d.shape()
                                    .iter()
                                    .zip(d.strides())
                                    .any(|(&n, &s)| n > 1 && s == 1)
                            })
                        }
                        _ => None,
                    };
                    if let Some(d) = diagonal {
                        Slot::View(d)
                    } else {
                        let r = kernels::with_capacity(elems, room, || {
                            with_dtype(s.dtype, &[a.view()], unary_step(semi, labels(arg), out_idx))
                        });
                        Slot::Owned(Arc::new(with_room(
                            r,
                            room > elems,
                            in_place.release,
                            &mut spare[k],
                        )))
                    }
                }
                Op::Contract { lhs, rhs } => {
                    let (a, b) = (get(lhs)?, get(rhs)?);
                    let r = kernels::with_capacity(elems, room, || {
                        with_dtype(
                            s.dtype,
                            &[a.view(), b.view()],
                            contract_step(semi, labels(lhs), labels(rhs), out_idx),
                        )
                    });
                    Slot::Owned(Arc::new(with_room(
                        r,
                        room > elems,
                        in_place.release,
                        &mut spare[k],
                    )))
                }
                Op::Elementwise { op, args: vs } => {
                    let slots = vs.iter().map(get).collect::<Result<Vec<_>, _>>()?;
                    let views: Vec<TensorView<'_>> = slots.iter().map(|d| d.view()).collect();
                    let ls: Vec<&[u32]> = vs.iter().map(labels).collect();
                    Slot::Owned(Arc::new(with_dtype(
                        s.dtype,
                        &views,
                        Step::Elementwise(elem_op(*op), ls, out_idx),
                    )))
                }
                Op::Fused { args: vs, nodes } => {
                    let slots = vs.iter().map(get).collect::<Result<Vec<_>, _>>()?;
                    let views: Vec<TensorView<'_>> = slots.iter().map(|d| d.view()).collect();
                    let ls: Vec<&[u32]> = vs.iter().map(labels).collect();
                    let nodes: Vec<fused::Node> = nodes
                        .iter()
                        .map(|nd| match nd {
                            FusedNode::Arg(a) => fused::Node::Arg(*a),
                            FusedNode::Apply(op, xs) => {
                                fused::Node::Apply(elem_op(*op), xs.clone())
                            }
                        })
                        .collect();
                    // A value nobody reads but its sum (`reads` leaves fused sums out) is
                    // not written at all.
                    let unread = last_use[k] == usize::MAX
                        && !matches!(mode, Mode::Prepare { keep, .. } if keep[k]);
                    match side_sum[k] {
                        Some(j) if unread => {
                            let keep = plan.steps[j].indices.len();
                            let step = Step::SumOnly(nodes, ls, out_idx, keep);
                            let sum = Slot::Owned(Arc::new(with_dtype(s.dtype, &views, step)));
                            values[j] = Some(sum.clone());
                            counted_later = true;
                            sum
                        }
                        Some(j) => {
                            let keep = plan.steps[j].indices.len();
                            let step = Step::FusedSum(nodes, ls, out_idx, keep);
                            let (value, sum) = with_dtype_both(s.dtype, &views, step);
                            let sum = sum.ok_or_else(|| {
                                ExecError(format!("internal error: fused pass %{k} gave no sum"))
                            })?;
                            values[j] = Some(Slot::Owned(Arc::new(sum)));
                            Slot::Owned(Arc::new(value))
                        }
                        None => Slot::Owned(Arc::new(with_dtype(
                            s.dtype,
                            &views,
                            Step::Fused(nodes, ls, out_idx),
                        ))),
                    }
                }
                // Computed by the pass of the fused step it sums (`side_sum`).
                Op::FusedSum { .. } => values[k].take().ok_or_else(|| {
                    ExecError(format!(
                        "internal error: fused sum %{k} was not computed by its pass"
                    ))
                })?,
                Op::Reduce { op, arg } => {
                    let a = get(arg)?;
                    let kop = match op {
                        ReduceOp::Max => kernels::ReduceOp::Max,
                        ReduceOp::Min => kernels::ReduceOp::Min,
                        ReduceOp::LogSumExp => kernels::ReduceOp::LogSumExp,
                    };
                    Slot::Owned(Arc::new(with_dtype(
                        s.dtype,
                        &[a.view()],
                        Step::Reduce(kop, labels(arg), out_idx),
                    )))
                }
                Op::SliceSum {
                    args: vs,
                    sliced,
                    body,
                } => {
                    let slots = vs.iter().map(get).collect::<Result<Vec<_>, _>>()?;
                    let views: Vec<TensorView<'_>> = slots.iter().map(|d| d.view()).collect();
                    let ls: Vec<&[u32]> = vs.iter().map(labels).collect();
                    let (sum, peak) = slice_sum(plan, &views, &ls, ir_labels(sliced), body)?;
                    body_peak = peak;
                    Slot::Owned(Arc::new(sum))
                }
                Op::Arg(_) => {
                    return Err(ExecError(
                        "internal error: a slice argument outside a slice body".into(),
                    ))
                }
                Op::Store { tensor, arg } => {
                    let a = get(arg)?.clone();
                    tensors[tensor.index()] = Some(a.clone());
                    a
                }
            }
        };
        let bytes = if matches!(s.op, Op::Load { .. } | Op::Store { .. }) {
            0
        } else {
            result.owned_bytes()
        };
        // A value nobody reads (a store's own slot) is not kept alive, unless a
        // preparation returns it.
        let returned = matches!(mode, Mode::Prepare { keep, .. } if keep[k]);
        let kept = last_use[k] != usize::MAX || returned;
        if kept {
            values[k] = Some(result);
        }
        if let Some(t0) = t0 {
            stats.steps.push((k, t0.elapsed(), s.flops, bytes));
            // Measured before this step's arguments are freed: they coexist with the result,
            // which `live_bytes` already counts when it was kept in its slot.
            let unkept = if kept || counted_later { 0 } else { bytes };
            stats.peak_bytes = stats
                .peak_bytes
                .max(live_bytes(&values, &tensors, &spare) + unkept + body_peak + transient);
        }
        for a in reads(&s.op) {
            let returned = matches!(mode, Mode::Prepare { keep, .. } if keep[a]);
            if last_use[a] == k && !returned {
                values[a] = None;
                spare[a] = 0;
            }
        }
    }
    if let Mode::Prepare { keep, .. } = mode {
        let kept = values
            .into_iter()
            .zip(keep)
            .map(|(v, &keep)| match v {
                Some(Slot::Owned(a)) if keep => Some(a),
                // A constant input read as is: copied, since the preparation outlives
                // the arrays it was given.
                Some(Slot::View(v)) if keep => Some(Arc::new(v.to_owned())),
                _ => None,
            })
            .collect();
        return Ok((Vec::new(), stats, kept));
    }
    let mut outs = Vec::new();
    for &o in &p.outputs {
        let t = tensors[o.index()].clone().ok_or_else(|| {
            ExecError(format!(
                "internal error: output '{}' was never computed",
                p.tensors[o].name
            ))
        })?;
        let want = p.tensors[o].dtype;
        let t = match t {
            Slot::View(v) => v.cast(want),
            Slot::Owned(a) => {
                // Drop the table's reference so the last one can be unwrapped, not copied.
                tensors[o.index()] = None;
                let a = Arc::try_unwrap(a).unwrap_or_else(|shared| (*shared).clone());
                // A buffer an in-place step shrank keeps its old capacity until here.
                let a = if stats.in_place_steps > 0 {
                    inplace::fit(a, 0, false).0
                } else {
                    a
                };
                if a.dtype() == want {
                    a
                } else {
                    a.cast(want)
                }
            }
        };
        outs.push(t);
    }
    stats.total = start.elapsed();
    Ok((outs, stats, Vec::new()))
}

/// `r`, and (when a later step grows it in place) the bytes its buffer's capacity beyond
/// its elements costs, stored in `spare`; `release`: that room goes back to the system
/// until the chain grows into it (`inplace::fit`).
fn with_room(r: TensorData, asked: bool, release: bool, spare: &mut usize) -> TensorData {
    if !asked {
        return r;
    }
    let (r, extra) = inplace::fit(r, usize::MAX, release);
    *spare = extra;
    r
}

/// Bytes held by computed arrays (each array once, however many slots share it), with
/// the spare capacity of values' buffers.
fn live_bytes<'a>(
    values: &[Option<Slot<'a>>],
    tensors: &[Option<Slot<'a>>],
    spare: &[usize],
) -> usize {
    let mut seen: Vec<*const TensorData> = Vec::new();
    let mut total: usize = values
        .iter()
        .zip(spare)
        .filter(|(v, _)| matches!(v, Some(Slot::Owned(_))))
        .map(|(_, &x)| x)
        .sum();
    for slot in values.iter().chain(tensors).flatten() {
        if let Slot::Owned(t) = slot {
            let ptr = Arc::as_ptr(t);
            if !seen.contains(&ptr) {
                seen.push(ptr);
                total += t.nbytes();
            }
        }
    }
    total
}

/// Largest single array a plan may allocate, in bytes: `EINC_MAX_BYTES` or 16 GiB.
/// A plan over the limit is refused before anything is allocated, instead of aborting
/// the process when the allocation fails.
pub fn max_bytes() -> f64 {
    // Read once: the environment lookup would otherwise cost every cached call.
    static LIMIT: OnceLock<f64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("EINC_MAX_BYTES")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(16.0 * (1u64 << 30) as f64)
    })
}

/// Refuse plans with a value larger than `limit` bytes (sizes in f64: no overflow).
pub fn check_memory(plan: &Plan, limit: f64) -> Result<(), ExecError> {
    check_steps(plan, &plan.steps, limit)
}

fn check_steps(
    plan: &Plan,
    steps: &[einc_compiler::plan::Step],
    limit: f64,
) -> Result<(), ExecError> {
    let p = &plan.program;
    for s in steps {
        if let Op::SliceSum { body, .. } = &s.op {
            check_steps(plan, body, limit)?;
        }
        if matches!(s.op, Op::Load { .. } | Op::Store { .. } | Op::Arg(_)) {
            continue;
        }
        let elems: f64 = s.indices.iter().map(|&i| p.size(i) as f64).product();
        let bytes = elems * dtype_size(s.dtype) as f64;
        if bytes > limit {
            let names: Vec<String> = s
                .indices
                .iter()
                .map(|&i| format!("{}={}", p.indices[i].name, p.size(i)))
                .collect();
            return Err(ExecError(format!(
                "the plan needs an intermediate of {elems:.0} elements ({:.1} GiB) over [{}], more than the memory limit of {:.1} GiB (set EINC_MAX_BYTES to change it)",
                bytes / (1u64 << 30) as f64,
                names.join(", "),
                limit / (1u64 << 30) as f64
            )));
        }
    }
    Ok(())
}

/// Indices of the values `op` reads (the plan's [`Op::args`]).
/// The values a step needs alive when it runs. A fused sum needs none: its fused step's
/// pass computed it, so that step's value can be freed by its other readers.
fn reads(op: &Op) -> impl Iterator<Item = usize> + '_ {
    // A fused sum reads nothing itself: its pass computes it.
    let skip = matches!(op, Op::FusedSum { .. });
    op.arg_iter().filter(move |_| !skip).map(|v| v.0 as usize)
}

/// Runs a `SliceSum` body once per slice and adds up its results. Returns the sum and the
/// most bytes the body's own values held at once (the sum's buffer excluded).
fn slice_sum(
    plan: &Plan,
    args: &[TensorView<'_>],
    arg_labels: &[&[u32]],
    sliced: &[u32],
    body: &[einc_compiler::plan::Step],
) -> Result<(TensorData, usize), ExecError> {
    let p = &plan.program;
    let semi = semiring_op(plan);
    let internal = |m: &str| ExecError(format!("internal error in a sliced product: {m}"));
    let extents: Vec<usize> = sliced
        .iter()
        .map(|&l| p.indices[einc_compiler::ir::IndexId(l)].size as usize)
        .collect();
    let slices = extents
        .iter()
        .try_fold(1usize, |n, &e| n.checked_mul(e))
        .ok_or_else(|| ExecError("a sliced product has more slices than fit in memory".into()))?;
    let mut last_use = vec![usize::MAX; body.len()];
    for (k, s) in body.iter().enumerate() {
        for a in reads(&s.op) {
            last_use[a] = k;
        }
    }
    let mut sum: Option<TensorData> = None;
    let mut peak = 0usize;
    let mut value = vec![0usize; sliced.len()];
    for slice in 0..slices {
        let mut rest = slice;
        for (v, &e) in value.iter_mut().zip(&extents).rev() {
            *v = rest % e;
            rest /= e;
        }
        let fixed: Vec<TensorView<'_>> = args
            .iter()
            .zip(arg_labels)
            .map(|(a, ls)| {
                let axes: Vec<(usize, usize)> = ls
                    .iter()
                    .enumerate()
                    .filter_map(|(axis, l)| {
                        let j = sliced.iter().position(|s| s == l)?;
                        Some((axis, value[j]))
                    })
                    .collect();
                a.fix_axes(&axes)
            })
            .collect();
        let mut values: Vec<Option<Slot<'_>>> = vec![None; body.len()];
        for (k, s) in body.iter().enumerate() {
            let get = |v: &einc_compiler::plan::ValueId| {
                values[v.0 as usize]
                    .as_ref()
                    .ok_or_else(|| internal("a value was read after it was freed"))
            };
            let lab = |v: &einc_compiler::plan::ValueId| ir_labels(&body[v.0 as usize].indices);
            let out = ir_labels(&s.indices);
            let r = match &s.op {
                Op::Arg(a) => Slot::View(
                    fixed
                        .get(*a)
                        .ok_or_else(|| internal("argument out of range"))?
                        .reborrow(),
                ),
                Op::Unary { arg } => Slot::Owned(Arc::new(with_dtype(
                    s.dtype,
                    &[get(arg)?.view()],
                    unary_step(semi, lab(arg), out),
                ))),
                Op::Contract { lhs, rhs } => Slot::Owned(Arc::new(with_dtype(
                    s.dtype,
                    &[get(lhs)?.view(), get(rhs)?.view()],
                    contract_step(semi, lab(lhs), lab(rhs), out),
                ))),
                _ => return Err(internal("unexpected step in a slice body")),
            };
            values[k] = Some(r);
            let held: usize = values.iter().flatten().map(|v| v.owned_bytes()).sum();
            peak = peak.max(held);
            for a in reads(&s.op) {
                if last_use[a] == k {
                    values[a] = None;
                }
            }
        }
        let last = values
            .last()
            .and_then(|v| v.as_ref())
            .ok_or_else(|| internal("empty body"))?;
        let view = last.view();
        match &mut sum {
            None => {
                let first = if view.dtype() == body[body.len() - 1].dtype {
                    view.to_owned()
                } else {
                    view.cast(body[body.len() - 1].dtype)
                };
                sum = Some(first);
            }
            Some(acc) => combine(semi, acc, &view)
                .ok_or_else(|| internal("slice results differ in shape or dtype"))?,
        }
    }
    sum.map(|s| (s, peak))
        .ok_or_else(|| ExecError("a sliced product has no slices (an index of size 0)".into()))
}

fn elem_op(op: ElemOp) -> kernels::MapOp {
    use kernels::MapOp as K;
    match op {
        ElemOp::Add => K::Add,
        ElemOp::Mul => K::Mul,
        ElemOp::Map(m) => match m {
            MapOp::Neg => K::Neg,
            MapOp::Sub => K::Sub,
            MapOp::Div => K::Div,
            MapOp::Exp => K::Exp,
            MapOp::Log => K::Log,
            MapOp::Sqrt => K::Sqrt,
            MapOp::Tanh => K::Tanh,
            MapOp::Abs => K::Abs,
            MapOp::Relu => K::Relu,
            MapOp::Sigmoid => K::Sigmoid,
            MapOp::Max => K::Max,
            MapOp::Min => K::Min,
        },
    }
}

/// The plan's semiring as the reduction that is its `⊕`; `None` for sum-product.
fn semiring_op(plan: &Plan) -> Option<kernels::ReduceOp> {
    plan.semiring.add_op().map(|op| match op {
        ReduceOp::Max => kernels::ReduceOp::Max,
        ReduceOp::Min => kernels::ReduceOp::Min,
        ReduceOp::LogSumExp => kernels::ReduceOp::LogSumExp,
    })
}

/// A one-operand einsum: sum-product's, or a `⊕`-reduction in another semiring.
fn unary_step<'s>(semi: Option<kernels::ReduceOp>, a: &'s [u32], out: &'s [u32]) -> Step<'s> {
    match semi {
        None => Step::Unary(a, out),
        Some(op) => Step::Reduce(op, a, out),
    }
}

fn contract_step<'s>(
    semi: Option<kernels::ReduceOp>,
    a: &'s [u32],
    b: &'s [u32],
    out: &'s [u32],
) -> Step<'s> {
    match semi {
        None => Step::Contract(a, b, out),
        Some(op) => Step::SemiringContract(op, a, b, out),
    }
}

/// `acc = acc ⊕ x` for the slices of a sliced product; `None` on a dtype or shape mismatch.
fn combine(
    semi: Option<kernels::ReduceOp>,
    acc: &mut TensorData,
    x: &TensorView<'_>,
) -> Option<()> {
    let Some(op) = semi else {
        return acc.add_assign(x);
    };
    if acc.shape() != x.shape() {
        return None;
    }
    match (acc, x) {
        (TensorData::F32(a), TensorView::F32(b)) => semiring::accumulate(op, a, b.view()),
        (TensorData::F64(a), TensorView::F64(b)) => semiring::accumulate(op, a, b.view()),
        (TensorData::C64(a), TensorView::C64(b)) => semiring::accumulate(op, a, b.view()),
        (TensorData::C128(a), TensorView::C128(b)) => semiring::accumulate(op, a, b.view()),
        _ => return None,
    }
    Some(())
}

/// What to compute once the arguments have the step's dtype.
enum Step<'s> {
    Unary(&'s [u32], &'s [u32]),
    Contract(&'s [u32], &'s [u32], &'s [u32]),
    SemiringContract(kernels::ReduceOp, &'s [u32], &'s [u32], &'s [u32]),
    Fused(Vec<fused::Node>, Vec<&'s [u32]>, &'s [u32]),
    /// A fused pass that also sums its value over all but the first `keep` axes.
    FusedSum(Vec<fused::Node>, Vec<&'s [u32]>, &'s [u32], usize),
    /// That sum alone, the value not written.
    SumOnly(Vec<fused::Node>, Vec<&'s [u32]>, &'s [u32], usize),
    Elementwise(kernels::MapOp, Vec<&'s [u32]>, &'s [u32]),
    Reduce(kernels::ReduceOp, &'s [u32], &'s [u32]),
}

fn run<T: Scalar>(step: &Step<'_>, vs: &[ArrayViewD<'_, T>]) -> (ArrayD<T>, Option<ArrayD<T>>) {
    let one = match step {
        Step::FusedSum(nodes, ls, out, keep) => {
            let (v, s) = fused::eval_with_sum(nodes, vs, ls, out, *keep);
            return (v, Some(s));
        }
        Step::SumOnly(nodes, ls, out, keep) => fused::sum_only(nodes, vs, ls, out, *keep),
        Step::Unary(al, out) => kernels::unary(vs[0].clone(), al, out),
        Step::Contract(al, bl, out) => {
            kernels::contract_pair(vs[0].clone(), al, vs[1].clone(), bl, out)
        }
        Step::Elementwise(op, ls, out) => {
            if vs.len() == 1 {
                // Unary maps keep their argument's labels; `out` equals them.
                kernels::map_unary(*op, vs[0].clone())
            } else {
                kernels::map_binary(*op, vs[0].clone(), ls[0], vs[1].clone(), ls[1], out)
            }
        }
        Step::Reduce(op, al, out) => kernels::reduce(*op, vs[0].clone(), al, out),
        Step::Fused(nodes, ls, out) => fused::eval(nodes, vs, ls, out),
        Step::SemiringContract(op, al, bl, out) => {
            semiring::contract(*op, vs[0].clone(), al, vs[1].clone(), bl, out)
        }
    };
    (one, None)
}

/// Cast the arguments to `dtype` (borrowing when they already have it) and run the step.
fn with_dtype(dtype: DType, views: &[TensorView<'_>], step: Step<'_>) -> TensorData {
    with_dtype_both(dtype, views, step).0
}

/// [`with_dtype`], with the second result of a step that has one (a fused pass's sum).
fn with_dtype_both(
    dtype: DType,
    views: &[TensorView<'_>],
    step: Step<'_>,
) -> (TensorData, Option<TensorData>) {
    let cast: Vec<Option<TensorData>> = views
        .iter()
        .map(|v| (v.dtype() != dtype).then(|| v.cast(dtype)))
        .collect();
    let all: Vec<TensorView<'_>> = views
        .iter()
        .zip(&cast)
        .map(|(v, c)| c.as_ref().map_or_else(|| v.reborrow(), |c| c.view()))
        .collect();
    macro_rules! go {
        ($variant:ident) => {{
            let typed: Vec<_> = all
                .iter()
                .map(|c| match c {
                    TensorView::$variant(a) => a.clone(),
                    _ => unreachable!("argument was cast to the step dtype"),
                })
                .collect();
            let (a, b) = run(&step, &typed);
            (TensorData::$variant(a), b.map(TensorData::$variant))
        }};
    }
    match dtype {
        DType::F32 => go!(F32),
        DType::F64 => go!(F64),
        DType::C64 => go!(C64),
        DType::C128 => go!(C128),
    }
}
