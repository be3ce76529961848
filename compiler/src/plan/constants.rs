//! Which steps of a plan depend only on constant inputs (fixed weights, opt_einsum's
//! `constants=`): the runtime computes those once (`exec::prepare`), so a call pays only
//! for the others. The e-graph's cost model makes the same split (`optimize::extract`).

use super::{Op, Plan};
use crate::ir::TensorId;

impl Plan {
    /// Per step: whether it depends on the `constants` input tensors only. A tensor
    /// stored from constant values is itself constant for the statements that load it;
    /// `Const` literals are constant; `Arg` (inside a `SliceSum` body) is not.
    pub fn constant_steps(&self, constants: &[TensorId]) -> Vec<bool> {
        let mut tensor_const = vec![false; self.program.tensors.len()];
        for t in constants {
            tensor_const[t.index()] = true;
        }
        let mut out = vec![false; self.steps.len()];
        for (k, s) in self.steps.iter().enumerate() {
            out[k] = match &s.op {
                Op::Load { tensor } => tensor_const[tensor.index()],
                Op::Const(_) => true,
                Op::Store { tensor, arg } => {
                    let c = out[arg.0 as usize];
                    tensor_const[tensor.index()] |= c;
                    c
                }
                Op::Arg(_) => false,
                op => op.args().iter().all(|a| out[a.0 as usize]),
            };
        }
        out
    }

    /// Flops of one call when `constants` are precomputed: the steps that read a
    /// variable input. `contractions_only` keeps just the pairwise contractions (and
    /// sliced products), opt_einsum's `opt_cost` accounting; otherwise unary steps
    /// (permutations, diagonals, private sums), elementwise passes and reductions count
    /// one per element of each pass as in [`Plan::flops`] (see [`super::Step::flops`]).
    pub fn per_call_flops(&self, constants: &[TensorId], contractions_only: bool) -> f64 {
        let constant = self.constant_steps(constants);
        self.steps
            .iter()
            .zip(&constant)
            .filter(|(s, &c)| {
                !c && (!contractions_only
                    || matches!(s.op, Op::Contract { .. } | Op::SliceSum { .. }))
            })
            .map(|(s, _)| s.flops)
            .sum()
    }
}
