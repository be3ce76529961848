//! Chunked execution over an output label: `uvw,ijk,zui,zvj->zwk` with z = 1000 runs as 77
//! einsums of 13 `z` (the last of 12), in parallel, each writing its slab of the result.
//!
//! A label of the result is never summed, so the einsum of the operands cut to a range of
//! that label is the same range of the result, exactly, whatever the plan and the semiring.
//! When the plan's intermediates are large (e3nn_fctp's `[u,w,z,j]`: 20 MB, written by one
//! product, copied and read back by the next) every step of the whole plan streams
//! through memory; on chunks the intermediates stay in cache, and the chunks are
//! independent work for the threads. A chunk runs a plan compiled for the chunk's shapes
//! (the contraction order may differ from the whole plan's).
//!
//! Taken only where it pays by a rough count of memory traffic: the intermediates' writes
//! and reads saved must be at least twice what the chunks add (the result copied into
//! place, operands without the label read again by every chunk unless they stay in
//! cache); the largest intermediate must reach [`Limits::min_bytes`]; steps that do not
//! involve the label (and so run again on every chunk) must be worth little
//! ([`Limits::max_extra_flops`]);
//! products must keep sides of useful length ([`min_chunk`]); and the plan must be an
//! einsum of loads, contractions and one-operand steps. `id,jd,kd->ijk` (a 4 MB
//! intermediate, an 8 MB result) and `ik,jkl,il->ij` were 20-35% slower in chunks.

use crate::api::{compile_plain, Expression};
use crate::{Element, Error};
use einc_compiler::pipeline::CompileConfig;
use einc_compiler::plan::Op;
use einc_frontend::ein::ast::DType;
use einc_runtime::{TensorData, TensorView};
use ndarray::{ArrayD, Axis};
use rayon::prelude::*;

/// The sizes the choice weighs (bytes); [`Limits::DEFAULT`] in use, smaller ones in the
/// tests so that small arrays run in chunks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The largest intermediate that carries the label must reach this for chunks to pay:
    /// below it the intermediates already sit in the caches.
    pub min_bytes: f64,
    /// Aim for chunks whose largest intermediate is about this size (within L2).
    pub target_bytes: f64,
    /// Operands up to this size are taken to stay in cache between chunks.
    pub cached_bytes: f64,
    /// Products keep M and N sides of at least this length (see [`min_chunk`]).
    pub min_side: usize,
    /// Chunked flops (all chunks: steps without the label run again on each) may exceed
    /// the whole plan's by this factor at most.
    pub max_extra_flops: f64,
    /// The memory traffic chunks save must be at least this many times what they add.
    pub min_gain: f64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        min_bytes: (1 << 20) as f64,
        target_bytes: (256 << 10) as f64,
        cached_bytes: (256 << 10) as f64,
        min_side: 64,
        max_extra_flops: 1.05,
        min_gain: 2.0,
    };
}

/// Larger networks are not chunked: each label tried compiles the equation once or twice
/// more, and their order search can take seconds (tensor networks, whose results are
/// mostly small anyway).
const MAX_OPERANDS: usize = 8;
/// Labels tried, longest first: each costs a compilation or two.
const MAX_CANDIDATES: usize = 3;

/// How an expression runs in chunks.
#[derive(Clone, Debug)]
pub(crate) struct ChunkPlan {
    /// Axis of the result that is cut.
    pub out_axis: usize,
    /// Per operand: its axis carrying the label, if it has one of full length.
    pub in_axes: Vec<Option<usize>>,
    /// The label's length and the chunks' (the last may be shorter).
    pub len: usize,
    pub size: usize,
    /// Compiled for chunks of `size`, and for the shorter last one.
    pub body: Box<Expression>,
    pub tail: Option<Box<Expression>>,
    pub dtype: DType,
}

/// A chunk plan for `expr` (an einsum `equation` compiled for `shapes`), or `None` where
/// chunks would not pay (see the module doc).
pub(crate) fn chunk_plan(
    expr: &Expression,
    equation: &str,
    shapes: &[Vec<usize>],
    dtypes: &[DType],
    cfg: &CompileConfig,
    limits: &Limits,
) -> Option<ChunkPlan> {
    let plan = &expr.compiled().plan;
    let p = &plan.program;
    if p.outputs.len() != 1 || expr.is_pairwise() || expr.is_view() {
        return None;
    }
    let mut store_arg = None;
    for s in &plan.steps {
        match s.op {
            Op::Load { .. } | Op::Unary { .. } | Op::Contract { .. } => {}
            Op::Store { arg, .. } => store_arg = Some(arg),
            _ => return None,
        }
    }
    let store_arg = store_arg?;
    let dtype = plan.steps.last()?.dtype;
    let elem = einc_runtime::value::dtype_size(dtype) as f64;
    let bytes = |idx: &[einc_compiler::ir::IndexId]| -> f64 {
        idx.iter().map(|&i| p.size(i) as f64).product::<f64>() * elem
    };
    let inter: Vec<&[einc_compiler::ir::IndexId]> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.op, Op::Unary { .. } | Op::Contract { .. }) && s.out != store_arg)
        .map(|s| &s.indices[..])
        .collect();
    // Intermediates that carry `label` are the ones chunks make smaller.
    let cut = |label| inter.iter().filter(move |idx| idx.contains(&label));
    let out_axes = &p.tensors[p.outputs[0]].axes;
    // Paid: the result copied from the chunks into place.
    let out_copy = 2.0 * bytes(out_axes);
    let inputs = einc_runtime::input_ids(plan);
    if inputs.len() != shapes.len() || inputs.len() > MAX_OPERANDS {
        return None;
    }
    // Candidates: result labels that no operand repeats (a diagonal would be cut on one
    // axis only), longest first.
    let mut cands: Vec<(usize, usize)> = out_axes
        .iter()
        .enumerate()
        .filter(|(_, &l)| {
            inputs
                .iter()
                .all(|&t| p.tensors[t].axes.iter().filter(|&&a| a == l).count() <= 1)
        })
        .map(|(o, &l)| (o, p.size(l) as usize))
        .filter(|&(_, n)| n >= 2)
        .collect();
    cands.sort_by_key(|&(o, n)| (std::cmp::Reverse(n), o));
    cands.truncate(MAX_CANDIDATES);
    let threads = einc_runtime::kernels::threads().max(2);
    let mut best: Option<(f64, ChunkPlan)> = None;
    for (o, n) in cands {
        let label = out_axes[o];
        let largest = cut(label).map(|idx| bytes(idx)).fold(0.0, f64::max);
        if largest < limits.min_bytes {
            continue;
        }
        // Memory traffic saved: each of them written and read back once.
        let saved = 2.0 * cut(label).map(|idx| bytes(idx)).sum::<f64>();
        let in_axes: Vec<Option<usize>> = inputs
            .iter()
            .zip(shapes)
            .map(|(&t, s)| {
                let ax = p.tensors[t].axes.iter().position(|&a| a == label)?;
                // A broadcast length-1 axis is not cut: every chunk reads it whole.
                (s.get(ax) == Some(&n)).then_some(ax)
            })
            .collect();
        let want = (largest / limits.target_bytes).ceil() as usize;
        let chunks = want.max(2 * threads).min(n);
        let size = n
            .div_ceil(chunks)
            .max(min_chunk(plan, label, n, limits.min_side));
        if size * 2 > n {
            continue;
        }
        // Paid too: every chunk reads again the operands without the label, unless they
        // stay in cache (`ik,jkl,il->ij` cut along i reads jkl, 16 MB, once per chunk).
        let rereads: f64 = inputs
            .iter()
            .zip(&in_axes)
            .filter(|(_, ax)| ax.is_none())
            .map(|(&t, _)| bytes(&p.tensors[t].axes))
            .filter(|&b| b > limits.cached_bytes)
            .sum::<f64>()
            * (n.div_ceil(size) - 1) as f64;
        if saved < limits.min_gain * (out_copy + rereads) {
            continue;
        }
        let shaped = |len: usize| -> Vec<Vec<usize>> {
            shapes
                .iter()
                .zip(&in_axes)
                .map(|(s, ax)| {
                    let mut s = s.clone();
                    if let Some(a) = ax {
                        s[*a] = len;
                    }
                    s
                })
                .collect()
        };
        let Ok(body) = compile_plain(equation, &shaped(size), dtypes, cfg) else {
            continue;
        };
        let rest = n % size;
        let tail = if rest == 0 {
            None
        } else {
            match compile_plain(equation, &shaped(rest), dtypes, cfg) {
                Ok(t) => Some(Box::new(t)),
                Err(_) => continue,
            }
        };
        let flops = body.compiled().plan.flops() * (n / size) as f64
            + tail.as_ref().map_or(0.0, |t| t.compiled().plan.flops());
        if flops > limits.max_extra_flops * plan.flops() {
            continue;
        }
        if best.as_ref().is_none_or(|(f, _)| flops < *f) {
            best = Some((
                flops,
                ChunkPlan {
                    out_axis: o,
                    in_axes,
                    len: n,
                    size,
                    body: Box::new(body),
                    tail,
                    dtype,
                },
            ));
        }
    }
    best.map(|(_, c)| c)
}

/// The shortest chunk of `label` (length `n`) that leaves every product of `plan` whose M
/// or N side carries the label a side of at least `min_side` (or its whole length, when
/// shorter): `ik,jkl,il->ij` cut to 4 values of i made its 256-row GEMM one of 4 rows,
/// 50% slower in all.
fn min_chunk(
    plan: &einc_compiler::plan::Plan,
    label: einc_compiler::ir::IndexId,
    n: usize,
    min_side: usize,
) -> usize {
    let p = &plan.program;
    let indices = |v: einc_compiler::plan::ValueId| {
        plan.steps
            .iter()
            .find(|s| s.out == v)
            .map_or(&[][..], |s| &s.indices[..])
    };
    let mut need = 1;
    for s in &plan.steps {
        let Op::Contract { lhs, rhs } = s.op else {
            continue;
        };
        let (a, b) = (indices(lhs), indices(rhs));
        // The side of the product holding `label`: kept indices of that operand alone.
        let side = if a.contains(&label) && !b.contains(&label) {
            a
        } else if b.contains(&label) && !a.contains(&label) {
            b
        } else {
            continue;
        };
        let other = if std::ptr::eq(side, a) { b } else { a };
        let full: usize = side
            .iter()
            .filter(|i| s.indices.contains(i) && !other.contains(i))
            .map(|&i| p.size(i) as usize)
            .product();
        let want = full.min(min_side);
        // chunk/n of the side must stay >= want.
        need = need.max((n * want).div_ceil(full.max(1)));
    }
    need
}

impl ChunkPlan {
    /// Runs every chunk (in parallel on the current pool) and assembles the result.
    pub(crate) fn run(&self, operands: &[TensorView<'_>]) -> Result<TensorData, Error> {
        match self.dtype {
            DType::F32 => self.run_typed::<f32>(operands),
            DType::F64 => self.run_typed::<f64>(operands),
            DType::C64 => self.run_typed::<num_complex::Complex32>(operands),
            DType::C128 => self.run_typed::<num_complex::Complex64>(operands),
        }
    }

    fn run_typed<T: Element>(&self, operands: &[TensorView<'_>]) -> Result<TensorData, Error> {
        let shape = {
            let p = &self.body.compiled().plan.program;
            let mut s: Vec<usize> = p.tensors[p.outputs[0]]
                .axes
                .iter()
                .map(|&a| p.size(a) as usize)
                .collect();
            s[self.out_axis] = self.len;
            s
        };
        let mut out = einc_runtime::kernels::zeros::<T>(&shape);
        let slabs: Vec<_> = out
            .axis_chunks_iter_mut(Axis(self.out_axis), self.size)
            .enumerate()
            .collect();
        let run = |(c, mut slab): (usize, ndarray::ArrayViewMut<'_, T, ndarray::IxDyn>)| {
            let start = c * self.size;
            let len = slab.len_of(Axis(self.out_axis));
            let views: Vec<TensorView<'_>> = operands
                .iter()
                .zip(&self.in_axes)
                .map(|(v, ax)| match ax {
                    Some(a) => v.slice_axis(*a, start, len),
                    None => v.reborrow(),
                })
                .collect();
            let expr = match &self.tail {
                Some(t) if len != self.size => t,
                _ => &self.body,
            };
            let part: ArrayD<T> = T::unwrap(expr.run_views(&views)?)
                .ok_or_else(|| Error::Internal("a chunk's result has another dtype".into()))?;
            slab.assign(&part);
            Ok::<(), Error>(())
        };
        // One thread (`one_thread`) runs the chunks in order on this thread: rayon would
        // run them on the global pool's workers, outside the one-thread setting.
        if einc_runtime::kernels::threads() > 1 {
            slabs.into_par_iter().try_for_each(run)?;
        } else {
            slabs.into_iter().try_for_each(run)?;
        }
        Ok(T::wrap(out))
    }
}

#[cfg(test)]
mod tests;
