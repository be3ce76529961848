//! The CPU executor of plans.
//!
//! Values live in a slot per SSA value and are dropped right after their last reader has
//! run, so peak memory follows the plan rather than the program length. Every argument
//! is cast to the step's dtype first (the compiler promotes; constants arrive as f64).

use crate::kernels::{self, Scalar};
use crate::value::TensorData;
use einc_compiler::ir::{MapOp, ReduceOp, TensorId, TensorKind};
use einc_compiler::plan::{ElemOp, Op, Plan};
use einc_frontend::ein::ast::DType;
use einc_frontend::einsum::fmt_shape;
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::borrow::Cow;
use std::sync::Arc;

/// A run-time failure: wrong inputs (count, shape), reported with names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError(pub String);

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ExecError {}

/// Input tensors of a plan's program, in arena order (for an einsum: operand order).
pub fn input_ids(plan: &Plan) -> Vec<TensorId> {
    plan.program.inputs().map(|(h, _)| h).collect()
}

/// Run `plan` on `inputs` (one per input tensor, in [`input_ids`] order); returns the
/// program's outputs in order.
pub fn execute(plan: &Plan, inputs: Vec<TensorData>) -> Result<Vec<TensorData>, ExecError> {
    let p = &plan.program;
    let ids = input_ids(plan);
    if ids.len() != inputs.len() {
        return Err(ExecError(format!(
            "expected {} input arrays, got {}",
            ids.len(),
            inputs.len()
        )));
    }
    let mut tensors: Vec<Option<Arc<TensorData>>> = vec![None; p.tensors.len()];
    for (&id, data) in ids.iter().zip(inputs) {
        let t = &p.tensors[id];
        let want: Vec<usize> = t.axes.iter().map(|&a| p.size(a) as usize).collect();
        if data.shape() != want.as_slice() {
            return Err(ExecError(format!(
                "input '{}' has shape {} but {} was expected",
                t.name,
                fmt_shape(data.shape()),
                fmt_shape(&want)
            )));
        }
        let data = if data.dtype() == t.dtype {
            data
        } else {
            data.cast(t.dtype)
        };
        tensors[id.index()] = Some(Arc::new(data));
    }

    check_memory(plan, max_bytes())?;

    // Last reader of each value, so it can be freed as soon as possible.
    let n = plan.steps.len();
    let mut last_use = vec![usize::MAX; n];
    for (k, s) in plan.steps.iter().enumerate() {
        for a in args(&s.op) {
            last_use[a] = k;
        }
    }
    let mut values: Vec<Option<Arc<TensorData>>> = vec![None; n];
    for (k, s) in plan.steps.iter().enumerate() {
        let get = |v: &einc_compiler::plan::ValueId| -> Result<Arc<TensorData>, ExecError> {
            values[v.0 as usize].clone().ok_or_else(|| {
                ExecError(format!(
                    "internal error: value %{} read after it was freed",
                    v.0
                ))
            })
        };
        let labels = |v: &einc_compiler::plan::ValueId| -> Vec<u32> {
            plan.steps[v.0 as usize]
                .indices
                .iter()
                .map(|i| i.0)
                .collect()
        };
        let out_idx: Vec<u32> = s.indices.iter().map(|i| i.0).collect();
        let result: Arc<TensorData> = match &s.op {
            Op::Load { tensor } => tensors[tensor.index()].clone().ok_or_else(|| {
                ExecError(format!(
                    "internal error: '{}' read before it was computed",
                    p.tensors[*tensor].name
                ))
            })?,
            Op::Const(x) => Arc::new(TensorData::F64(ArrayD::from_elem(IxDyn(&[]), *x))),
            Op::Unary { arg } => {
                let a = get(arg)?;
                let al = labels(arg);
                Arc::new(with_dtype(s.dtype, &[&a], Step::Unary(al, out_idx)))
            }
            Op::Contract { lhs, rhs } => {
                let (a, b) = (get(lhs)?, get(rhs)?);
                let (al, bl) = (labels(lhs), labels(rhs));
                Arc::new(with_dtype(
                    s.dtype,
                    &[&a, &b],
                    Step::Contract(al, bl, out_idx),
                ))
            }
            Op::Elementwise { op, args: vs } => {
                let datas = vs.iter().map(get).collect::<Result<Vec<_>, _>>()?;
                let refs: Vec<&TensorData> = datas.iter().map(|d| d.as_ref()).collect();
                let ls: Vec<Vec<u32>> = vs.iter().map(labels).collect();
                let kop = elem_op(*op);
                Arc::new(with_dtype(
                    s.dtype,
                    &refs,
                    Step::Elementwise(kop, ls, out_idx),
                ))
            }
            Op::Reduce { op, arg } => {
                let a = get(arg)?;
                let al = labels(arg);
                let kop = match op {
                    ReduceOp::Max => kernels::ReduceOp::Max,
                    ReduceOp::Min => kernels::ReduceOp::Min,
                    ReduceOp::LogSumExp => kernels::ReduceOp::LogSumExp,
                };
                Arc::new(with_dtype(s.dtype, &[&a], Step::Reduce(kop, al, out_idx)))
            }
            Op::Store { tensor, arg } => {
                let a = get(arg)?;
                tensors[tensor.index()] = Some(a.clone());
                a
            }
        };
        // A value nobody reads (a store's own slot) is not kept alive.
        if last_use[k] != usize::MAX {
            values[k] = Some(result);
        }
        for a in args(&s.op) {
            if last_use[a] == k {
                values[a] = None;
            }
        }
    }
    let mut outs = Vec::new();
    for &o in &p.outputs {
        let t = tensors[o.index()].take().ok_or_else(|| {
            ExecError(format!(
                "internal error: output '{}' was never computed",
                p.tensors[o].name
            ))
        })?;
        // Outputs that are also inputs or read twice are shared; copy only then.
        let t = Arc::try_unwrap(t).unwrap_or_else(|shared| (*shared).clone());
        let want = p.tensors[o].dtype;
        outs.push(
            if t.dtype() == want || p.tensors[o].kind == TensorKind::Input {
                t
            } else {
                t.cast(want)
            },
        );
        tensors[o.index()] = None;
    }
    Ok(outs)
}

/// Largest single array a plan may allocate, in bytes: `EINC_MAX_BYTES` or 16 GiB.
/// A plan over the limit is refused before anything is allocated, instead of aborting
/// the process when the allocation fails.
pub fn max_bytes() -> f64 {
    std::env::var("EINC_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(16.0 * (1u64 << 30) as f64)
}

fn dtype_bytes(d: DType) -> f64 {
    match d {
        DType::F32 => 4.0,
        DType::F64 | DType::C64 => 8.0,
        DType::C128 => 16.0,
    }
}

/// Refuse plans with a value larger than `limit` bytes (sizes in f64: no overflow).
pub fn check_memory(plan: &Plan, limit: f64) -> Result<(), ExecError> {
    let p = &plan.program;
    for s in &plan.steps {
        if matches!(s.op, Op::Load { .. } | Op::Store { .. }) {
            continue;
        }
        let elems: f64 = s.indices.iter().map(|&i| p.size(i) as f64).product();
        let bytes = elems * dtype_bytes(s.dtype);
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

fn args(op: &Op) -> Vec<usize> {
    match op {
        Op::Load { .. } | Op::Const(_) => vec![],
        Op::Unary { arg } | Op::Reduce { arg, .. } | Op::Store { arg, .. } => vec![arg.0 as usize],
        Op::Contract { lhs, rhs } => vec![lhs.0 as usize, rhs.0 as usize],
        Op::Elementwise { args, .. } => args.iter().map(|a| a.0 as usize).collect(),
    }
}

fn elem_op(op: ElemOp) -> kernels::MapOp {
    use kernels::MapOp as K;
    match op {
        ElemOp::Add => K::Add,
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

/// What to compute once the arguments have the step's dtype.
enum Step {
    Unary(Vec<u32>, Vec<u32>),
    Contract(Vec<u32>, Vec<u32>, Vec<u32>),
    Elementwise(kernels::MapOp, Vec<Vec<u32>>, Vec<u32>),
    Reduce(kernels::ReduceOp, Vec<u32>, Vec<u32>),
}

fn run<T: Scalar>(step: &Step, vs: &[ArrayViewD<'_, T>]) -> ArrayD<T> {
    match step {
        Step::Unary(al, out) => kernels::unary(vs[0].clone(), al, out),
        Step::Contract(al, bl, out) => {
            kernels::contract_pair(vs[0].clone(), al, vs[1].clone(), bl, out)
        }
        Step::Elementwise(op, ls, out) => {
            if vs.len() == 1 {
                // Unary maps keep their argument's labels; `out` equals them.
                kernels::map_unary(*op, vs[0].clone())
            } else {
                kernels::map_binary(*op, vs[0].clone(), &ls[0], vs[1].clone(), &ls[1], out)
            }
        }
        Step::Reduce(op, al, out) => kernels::reduce(*op, vs[0].clone(), al, out),
    }
}

/// Cast the arguments to `dtype` (borrowing when they already have it) and run the step.
fn with_dtype(dtype: DType, datas: &[&TensorData], step: Step) -> TensorData {
    let cast: Vec<Cow<TensorData>> = datas
        .iter()
        .map(|d| {
            if d.dtype() == dtype {
                Cow::Borrowed(*d)
            } else {
                Cow::Owned(d.cast(dtype))
            }
        })
        .collect();
    macro_rules! go {
        ($variant:ident) => {{
            let views: Vec<_> = cast
                .iter()
                .map(|c| match c.as_ref() {
                    TensorData::$variant(a) => a.view(),
                    _ => unreachable!("argument was cast to the step dtype"),
                })
                .collect();
            TensorData::$variant(run(&step, &views))
        }};
    }
    match dtype {
        DType::F32 => go!(F32),
        DType::F64 => go!(F64),
        DType::C64 => go!(C64),
        DType::C128 => go!(C128),
    }
}
