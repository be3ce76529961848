//! The fast path of a single pairwise contraction (`ij,jk->ik`, `bij,bjk->bik`, …), the
//! commonest einsum: the result is one call of the contraction kernel on the operands.
//! Going through the plan executor instead (input matching, value tables, last-use
//! bookkeeping, the output's dtype check) cost about as much again as the kernel of a
//! 2×2 matmul.

use einc_compiler::ir::labels;
use einc_compiler::plan::{Op, Plan, Step};
use einc_compiler::semiring::Semiring;
use einc_frontend::ein::ast::DType;

/// `load A; load B; contract(A, B); store`, with no repeated label in an operand (which
/// would need a diagonal step), every operand axis as long as its label (no broadcast
/// length-1 axis) and one dtype throughout.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PairPlan {
    /// Positions of the two operands among the plan's inputs.
    pub lhs: usize,
    pub rhs: usize,
    pub lhs_labels: Vec<u32>,
    pub rhs_labels: Vec<u32>,
    pub out_labels: Vec<u32>,
    pub dtype: DType,
}

/// `shapes`: the operands' shapes the plan was compiled for.
pub(crate) fn pair_plan(plan: &Plan, shapes: &[Vec<usize>]) -> Option<PairPlan> {
    let [a, b, c, st] = &plan.steps[..] else {
        return None;
    };
    let (Op::Load { tensor: ta }, Op::Load { tensor: tb }) = (&a.op, &b.op) else {
        return None;
    };
    let Op::Contract { lhs, rhs } = c.op else {
        return None;
    };
    let Op::Store { arg, .. } = st.op else {
        return None;
    };
    let distinct = |l: &[u32]| (0..l.len()).all(|i| !l[..i].contains(&l[i]));
    let ok = plan.semiring == Semiring::SumProduct
        && plan.program.outputs.len() == 1
        && arg == c.out
        && st.indices == c.indices
        && [a.dtype, b.dtype, st.dtype].iter().all(|&d| d == c.dtype)
        && [a, b, c].iter().all(|s| distinct(labels(&s.indices)))
        // Refused by the executor's memory check: leave the error to it.
        && einc_runtime::exec::check_memory(plan, einc_runtime::exec::max_bytes()).is_ok();
    if !ok {
        return None;
    }
    let inputs = einc_runtime::input_ids(plan);
    let input_of = |v: einc_compiler::plan::ValueId| -> Option<(usize, &Step)> {
        let (step, tensor) = if v == a.out {
            (a, ta)
        } else if v == b.out {
            (b, tb)
        } else {
            return None;
        };
        Some((inputs.iter().position(|t| t == tensor)?, step))
    };
    let ((l, sl), (r, sr)) = (input_of(lhs)?, input_of(rhs)?);
    // Both operands are inputs of the call (not constants, not the same load twice).
    if l == r || inputs.len() != 2 || shapes.len() != 2 {
        return None;
    }
    let p = &plan.program;
    let full = |k: usize, step: &Step| {
        shapes[k].len() == step.indices.len()
            && shapes[k]
                .iter()
                .zip(&step.indices)
                .all(|(&n, &i)| n as u64 == p.size(i))
    };
    if !full(l, sl) || !full(r, sr) {
        return None;
    }
    Some(PairPlan {
        lhs: l,
        rhs: r,
        lhs_labels: labels(&sl.indices).to_vec(),
        rhs_labels: labels(&sr.indices).to_vec(),
        out_labels: labels(&c.indices).to_vec(),
        dtype: c.dtype,
    })
}
