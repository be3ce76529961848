//! Results that are views of an operand. numpy.einsum returns a view, not a copy, when
//! the result only relabels its one operand: a permutation (`ijk->kji`), a diagonal
//! (`ii->i`, `iij->ji`) or the identity. [`crate::Expression::run_cow`] does the same, so
//! such calls cost microseconds instead of a pass over memory.

use einc_compiler::plan::{Op, Plan};
use einc_runtime::{TensorData, TensorView};

/// How the result of a plan is a view of one input: output axis `o` walks input axes
/// `axes[o]` together.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ViewPlan {
    /// Position of the operand among the plan's inputs.
    pub input: usize,
    pub axes: Vec<Vec<usize>>,
}

/// Recognises `load A; unary*; store` where no unary step sums an index, with the stored value's dtype
/// that of `A`.
pub(crate) fn view_plan(plan: &Plan) -> Option<ViewPlan> {
    let steps = &plan.steps;
    let (load, store) = (steps.first()?, steps.last()?);
    let Op::Load { tensor } = load.op else {
        return None;
    };
    let input = einc_runtime::input_ids(plan)
        .iter()
        .position(|&t| t == tensor)?;
    let Op::Store { arg, .. } = store.op else {
        return None;
    };
    // A chain of unary steps (a diagonal, then the final permutation, say), each reading
    // the previous value and summing nothing: labels carry through, so the first and last
    // label lists describe the whole chain.
    let mut out = load;
    for step in &steps[1..steps.len() - 1] {
        match step.op {
            Op::Unary { arg: a }
                if a == out.out
                    && step.dtype == load.dtype
                    && out.indices.iter().all(|i| step.indices.contains(i)) =>
            {
                out = step
            }
            _ => return None,
        }
    }
    if arg != out.out {
        return None;
    }
    if plan.program.outputs.len() != 1 || out.dtype != load.dtype || store.dtype != load.dtype {
        return None;
    }
    // No index summed away, none repeated in the result.
    if load.indices.iter().any(|i| !out.indices.contains(i)) {
        return None;
    }
    let axes: Vec<Vec<usize>> = out
        .indices
        .iter()
        .map(|o| {
            (0..load.indices.len())
                .filter(|&p| load.indices[p] == *o)
                .collect()
        })
        .collect();
    if axes.iter().any(|g: &Vec<usize>| g.is_empty()) {
        return None;
    }
    Some(ViewPlan { input, axes })
}

/// A result that borrows an operand ([`TensorCow::Borrowed`]) or owns its data.
#[derive(Clone, Debug)]
pub enum TensorCow<'a> {
    Borrowed(TensorView<'a>),
    Owned(TensorData),
}

impl<'a> TensorCow<'a> {
    /// Whether no data was copied.
    pub fn is_view(&self) -> bool {
        matches!(self, TensorCow::Borrowed(_))
    }

    pub fn view(&self) -> TensorView<'_> {
        match self {
            TensorCow::Borrowed(v) => v.reborrow(),
            TensorCow::Owned(t) => t.view(),
        }
    }

    /// The data as an owned array (copied if it was a view).
    pub fn into_owned(self) -> TensorData {
        match self {
            TensorCow::Borrowed(v) => v.to_owned(),
            TensorCow::Owned(t) => t,
        }
    }
}
