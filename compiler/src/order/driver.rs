//! `search` itself: resolves the optimizer, runs it, applies the memory
//! limit (by constrained search or by slicing) and reports costs through
//! `evaluate`, so that every number is the one `evaluate` gives.

use std::time::Instant;

use super::hyper::{self, HyperBudget, HyperOptions};
use super::slicing::{self, Slicing};
use super::tree::{Ctx, Tree};
use super::{
    cost, greedy, optimal, ssa_to_linear, Budget, Limits, Optimizer, OrderError, PathInfo, Polish,
    Problem, AUTO_OPTIMAL_MAX_INPUTS,
};

type Ssa = Vec<(usize, usize)>;

/// Hyper trials when none are asked for. A trial costs roughly 15-25 µs per
/// tensor (plus the final polish), so up to a few hundred tensors this is a
/// few seconds at most; very large networks get fewer trials so that one
/// search stays within tens of seconds. Small networks get many: measured on
/// the suite, 512 trials still left them a few percent above cotengra.
pub fn default_trials(n: usize) -> usize {
    match n {
        0..=100 => 2048,
        101..=400 => 512,
        401..=700 => 128,
        _ => 32,
    }
}

/// Tensors × trials that a compile's hyper search runs at least ([`compile_budget`]).
const COMPILE_WORK: f64 = 4096.0;
/// Flops of the contraction (opt_einsum greedy's tree) that buy one more tensor × trial.
const COMPILE_FLOPS_PER_WORK: f64 = 1.5e6;
/// Tensors × trials that a compile's hyper search runs at most, however costly the
/// contraction: the e-graph issue asks any 200-tensor network to compile in under a second
/// (8192 is 40 trials there). `einc path` and an explicit `--optimizer hyper` keep the
/// whole search ([`Budget::Search`](super::Budget::Search)).
const COMPILE_MAX_WORK: f64 = 8192.0;
/// The fewest trials a compile's hyper search runs.
const COMPILE_MIN_TRIALS: usize = 8;
/// Networks of at most this many tensors keep the full polish in a compile.
const COMPILE_FULL_POLISH_MAX_N: usize = 40;

/// The hyper trials and polish of [`Budget::Compile`], for `n` tensors whose contraction
/// by opt_einsum's greedy tree costs `greedy_flops`.
///
/// The search is worth what the contraction would cost without it: it runs `trials × n ≈
/// greedy_flops / 1.5e6` tensor-trials, at least 4096 (with the light polish, about 0.3 s
/// on a 200-tensor lattice on a loaded 2-core machine) and at most 8192, so that a compile
/// stays under a second however costly the network (randreg3_n200, whose greedy tree costs
/// 3.5e15 flops, took 5–7 s with the whole 512-trial search). One tensor-trial takes some
/// 20-50 µs. Networks small enough get the whole [`default_trials`] search with the full
/// polish, as `search` gives on its own. Measured on the path suite, most cheap networks
/// lose nothing against the full search, a few up to 1.5x (docs/benchmarks.md, e-graph
/// section). A function of the problem alone, never of the clock: plans stay
/// deterministic.
pub fn compile_budget(n: usize, greedy_flops: f64) -> (usize, Polish) {
    let full = default_trials(n);
    // No greedy tree (NaN: none met the memory limit) buys the most work.
    let work = if greedy_flops.is_nan() {
        COMPILE_MAX_WORK
    } else {
        (greedy_flops / COMPILE_FLOPS_PER_WORK).clamp(COMPILE_WORK, COMPILE_MAX_WORK)
    };
    let trials = ((work / n.max(1) as f64) as usize).clamp(COMPILE_MIN_TRIALS, full);
    let polish = if trials >= full || n <= COMPILE_FULL_POLISH_MAX_N {
        Polish::Full
    } else {
        Polish::Light
    };
    (trials, polish)
}

/// Size of the subtrees that hyper search re-optimises exactly.
const RECONF_K: usize = 8;

pub(crate) fn run(
    problem: &Problem,
    optimizer: Optimizer,
    limits: &Limits,
) -> Result<PathInfo, OrderError> {
    let info = run_pairwise(problem, optimizer, limits)?;
    // opt_einsum's `dp` may sum an operand's private labels in a step of its
    // own before any pair; on small problems `auto` and `hyper` try that too
    // so that they never lose to it.
    let small = problem.inputs.len() <= AUTO_OPTIMAL_MAX_INPUTS;
    let exact_kind = matches!(
        optimizer,
        Optimizer::Auto | Optimizer::Hyper | Optimizer::Optimal
    );
    if !(small && exact_kind && limits.memory_limit.is_none()) {
        return Ok(info);
    }
    let Some((reduced, which)) = pre_reduce(problem) else {
        return Ok(info);
    };
    let mut alt = run_pairwise(&reduced, optimizer, limits)?;
    for &k in &which {
        let size = problem.size_of(&problem.inputs[k]);
        alt.flops += 2.0 * size;
        alt.cost += size;
        alt.write += reduced.size_of(&reduced.inputs[k]);
    }
    if alt.flops < info.flops {
        alt.pre_reduced = which;
        Ok(alt)
    } else {
        Ok(info)
    }
}

/// The problem with every label that only one input holds (and the output
/// does not) removed from that input, and which inputs changed.
fn pre_reduce(problem: &Problem) -> Option<(Problem, Vec<usize>)> {
    if problem.inputs.len() < 2 {
        return None;
    }
    let mut count = vec![0usize; problem.sizes.len()];
    for t in &problem.inputs {
        t.iter().for_each(|&l| count[l] += 1);
    }
    let mut reduced = problem.clone();
    let mut which = Vec::new();
    for (k, t) in reduced.inputs.iter_mut().enumerate() {
        let before = t.len();
        t.retain(|&l| count[l] > 1 || problem.in_output[l]);
        if t.len() < before {
            which.push(k);
        }
    }
    (!which.is_empty()).then_some((reduced, which))
}

fn run_pairwise(
    problem: &Problem,
    optimizer: Optimizer,
    limits: &Limits,
) -> Result<PathInfo, OrderError> {
    let limit = match limits.memory_limit {
        Some(l) if l.is_nan() => return Err(OrderError::InvalidMemoryLimit),
        // opt_einsum too treats an infinite limit as no limit.
        Some(l) if l == f64::INFINITY => None,
        other => other,
    };
    let n = problem.inputs.len();
    let small = n <= AUTO_OPTIMAL_MAX_INPUTS;
    let resolved = match optimizer {
        Optimizer::Auto | Optimizer::Hyper if small => Optimizer::Optimal,
        Optimizer::Auto => Optimizer::Hyper,
        other => other,
    };
    if let Some(limit) = limit {
        // The final result is the output itself: nothing can make it smaller.
        let out = problem.size_of(&problem.output);
        if n >= 2 && out > limit {
            return Err(OrderError::MemoryLimitImpossible {
                limit,
                needed: Some(out),
            });
        }
    }
    let slice = limit.is_some() && limits.allow_slicing;
    let search_limit = if slice { None } else { limit };
    let deadline = limits.time_limit.map(|t| Instant::now() + t);
    let mut notes = Vec::new();
    let mut trials = 0;
    let (candidates, used): (Vec<Ssa>, Optimizer) = match resolved {
        Optimizer::Optimal => match optimal::optimal(
            problem,
            search_limit,
            deadline,
            limits.batch_weight.unwrap_or(0.0),
        ) {
            optimal::Outcome::Found(p) => (vec![p], Optimizer::Optimal),
            optimal::Outcome::Infeasible => {
                return Err(OrderError::MemoryLimitImpossible {
                    limit: limit.unwrap_or(f64::INFINITY),
                    needed: None,
                })
            }
            optimal::Outcome::GaveUp(why) => {
                notes.push(format!("optimal search gave up ({why}); used greedy"));
                (
                    vec![greedy::greedy(problem, search_limit)?],
                    Optimizer::Greedy,
                )
            }
        },
        Optimizer::Hyper => {
            let ctx = Ctx::new(problem);
            let budget = match (limits.trials, limits.budget) {
                (Some(t), _) => HyperBudget::Fixed(t, Polish::Full),
                (None, None | Some(Budget::Search)) => {
                    HyperBudget::Fixed(default_trials(n), Polish::Full)
                }
                (None, Some(Budget::Compile)) => HyperBudget::Compile,
            };
            let r = hyper::hyper(
                problem,
                &ctx,
                &HyperOptions {
                    seed: limits.seed,
                    budget,
                    deadline,
                    limit: search_limit,
                    slice_limit: if slice { limit } else { None },
                    reconf_k: RECONF_K,
                    progress: limits.progress.clone(),
                },
            );
            trials = r.trials_run;
            notes.push(format!(
                "hyper: {} trials, best tree from {}",
                r.trials_run, r.best_method
            ));
            if r.hit_deadline {
                notes.push(format!(
                    "hyper search hit the time limit after {} of {} trials; \
                     the result depends on timing",
                    r.trials_run, r.trials_wanted
                ));
            }
            let feasible: Vec<Ssa> = r
                .trees
                .iter()
                .filter(|t| search_limit.is_none_or(|l| t.largest() <= l))
                .map(Tree::to_ssa)
                .collect();
            if feasible.is_empty() {
                return Err(OrderError::MemoryLimitImpossible {
                    limit: limit.unwrap_or(f64::INFINITY),
                    needed: None,
                });
            }
            (feasible, Optimizer::Hyper)
        }
        _ => (
            vec![greedy::greedy(problem, search_limit)?],
            Optimizer::Greedy,
        ),
    };
    let (ssa, sliced) = match (slice, limit) {
        (true, Some(limit)) => pick_sliced(problem, &candidates, limit, resolved)?,
        _ => (candidates.into_iter().next().unwrap_or_default(), None),
    };
    let path = ssa_to_linear(n, &ssa)?;
    let mut info = match sliced {
        None => cost::evaluate_problem(problem, &path)?,
        Some(labels) => sliced_info(problem, &path, &labels)?,
    };
    info.optimizer = used;
    info.notes = notes;
    info.trials = trials;
    Ok(info)
}

/// Among the candidate trees, sliced where needed, and the constrained
/// greedy tree, the cheapest in total flops.
fn pick_sliced(
    problem: &Problem,
    candidates: &[Ssa],
    limit: f64,
    optimizer: Optimizer,
) -> Result<(Ssa, Option<Vec<usize>>), OrderError> {
    let ctx = Ctx::new(problem);
    let mut best: Option<(f64, Ssa, Option<Vec<usize>>)> = None;
    let mut consider = |total: f64, ssa: Ssa, labels: Option<Vec<usize>>| {
        if best.as_ref().is_none_or(|b| total < b.0) {
            best = Some((total, ssa, labels));
        }
    };
    for ssa in candidates {
        let tree = Tree::from_ssa(&ctx, ssa);
        if tree.largest() <= limit {
            consider(tree.total_flops(), ssa.clone(), None);
            continue;
        }
        let reconf = optimizer != Optimizer::Greedy;
        if let Some((labels, _, t)) = slicing::slice_tree(&ctx, &tree, limit, reconf) {
            let slices: f64 = labels.iter().map(|&l| ctx.sizes[l as usize]).product();
            let labels = labels.iter().map(|&l| l as usize).collect();
            consider(slices * t.total_flops(), t.to_ssa(), Some(labels));
        }
    }
    if let Ok(ssa) = greedy::greedy(problem, Some(limit)) {
        let t = Tree::from_ssa(&ctx, &ssa);
        consider(t.total_flops(), ssa, None);
    }
    let Some((_, ssa, labels)) = best else {
        return Err(OrderError::MemoryLimitImpossible {
            limit,
            needed: None,
        });
    };
    Ok((ssa, labels.filter(|l| !l.is_empty())))
}

/// Costs of a sliced path: per-slice steps, totals over all slices.
fn sliced_info(
    problem: &Problem,
    path: &super::Path,
    labels: &[usize],
) -> Result<PathInfo, OrderError> {
    let unsliced = cost::evaluate_problem(problem, path)?;
    let mut per = problem.clone();
    for &l in labels {
        per.sizes[l] = 1.0;
    }
    let mut info = cost::evaluate_problem(&per, path)?;
    let slices: f64 = labels.iter().map(|&l| problem.sizes[l]).product();
    let s = Slicing {
        labels: labels.iter().map(|&l| problem.labels[l]).collect(),
        sizes: labels.iter().map(|&l| problem.sizes[l] as u64).collect(),
        slices,
        per_slice_flops: info.flops,
        per_slice_cost: info.cost,
        unsliced_flops: unsliced.flops,
        unsliced_cost: unsliced.cost,
        overhead: slices * info.flops / unsliced.flops,
    };
    info.flops *= slices;
    info.cost *= slices;
    info.write *= slices;
    info.slicing = Some(s);
    Ok(info)
}
