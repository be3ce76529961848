//! Costs of a given path, with opt_einsum's and cotengra's conventions.
//!
//! Every optimizer's result goes through [`evaluate_problem`], so the numbers
//! reported by `search` are by construction the ones `evaluate` gives for the
//! same path, whatever internal bookkeeping the optimizer used.

use super::{ssa, Label, Optimizer, OrderError, Path, PathInfo, Problem, StepInfo};

/// Costs of `path` for `inputs -> output`.
///
/// The path must be complete (`n - 1` pairs for `n` inputs) and each pair
/// `(i, j)` must satisfy `i < j < current operand count`. The returned
/// `optimizer` field is meaningless here and set to `Auto`.
pub fn evaluate(
    inputs: &[Vec<Label>],
    output: &[Label],
    sizes: &[u64],
    path: &Path,
) -> Result<PathInfo, OrderError> {
    let problem = Problem::new(inputs, output, sizes)?;
    evaluate_problem(&problem, path)
}

pub(crate) fn evaluate_problem(p: &Problem, path: &Path) -> Result<PathInfo, OrderError> {
    let n = p.inputs.len();
    let expected = n - 1;
    if path.pairs.len() != expected {
        return Err(OrderError::BadPath {
            step: path.pairs.len().min(expected),
            reason: format!(
                "a full path for {n} inputs has {expected} pairs, this one has {}",
                path.pairs.len()
            ),
        });
    }
    let ssa_pairs = ssa::linear_to_ssa(n, path)?;

    // `count[l]`: live operands holding label `l`; `stamp` dedups `a ∪ b`.
    let mut count = vec![0usize; p.sizes.len()];
    for term in &p.inputs {
        for &l in term {
            count[l] += 1;
        }
    }
    let mut stamp = vec![usize::MAX; p.sizes.len()];
    // Results' labels back to back (`spans[id - n]`), so that a step costs
    // no allocation beyond the labels `StepInfo` hands out.
    let mut arena: Vec<usize> = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(expected);
    let (mut union, mut result) = (Vec::new(), Vec::new());

    let mut info = PathInfo {
        path: path.clone(),
        optimizer: Optimizer::Auto,
        flops: 0.0,
        cost: 0.0,
        largest_intermediate: 0.0,
        write: 0.0,
        steps: Vec::with_capacity(expected),
        slicing: None,
        trials: 0,
        pre_reduced: Vec::new(),
        notes: Vec::new(),
    };
    let to_labels = |v: &[usize]| v.iter().map(|&l| p.labels[l]).collect::<Vec<_>>();
    for (step, (&pair, &(a, b))) in path.pairs.iter().zip(&ssa_pairs).enumerate() {
        let term = |id: usize| -> &[usize] {
            match id.checked_sub(n) {
                None => &p.inputs[id],
                Some(r) => &arena[spans[r].0..spans[r].0 + spans[r].1],
            }
        };
        let (ta, tb) = (term(a), term(b));
        union.clear();
        for &l in ta.iter().chain(tb) {
            count[l] -= 1;
            if stamp[l] != step {
                stamp[l] = step;
                union.push(l);
            }
        }
        let operands = [to_labels(ta), to_labels(tb)];
        let last = step + 1 == expected;
        result.clear();
        if last {
            // Nothing else is live, so the kept labels are exactly the output.
            result.extend_from_slice(&p.output);
        } else {
            result.extend(
                union
                    .iter()
                    .copied()
                    .filter(|&l| p.in_output[l] || count[l] > 0),
            );
        }
        for &l in &result {
            count[l] += 1;
        }
        let summed: Vec<Label> = union
            .iter()
            .filter(|&&l| !(p.in_output[l] || count[l] > 0))
            .map(|&l| p.labels[l])
            .collect();
        let cost = p.size_of(&union);
        let flops = if summed.is_empty() { cost } else { 2.0 * cost };
        let size = p.size_of(&result);
        info.flops += flops;
        info.cost += cost;
        info.largest_intermediate = info.largest_intermediate.max(size);
        info.write += size;
        info.steps.push(StepInfo {
            pair,
            operands,
            result: to_labels(&result),
            summed,
            flops,
            cost,
            size,
        });
        spans.push((arena.len(), result.len()));
        arena.extend_from_slice(&result);
    }
    Ok(info)
}
