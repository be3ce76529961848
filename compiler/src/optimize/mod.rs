//! `optimize`: equality saturation over the sum-product IR with egg.
//!
//! The values of all statements go into ONE e-graph (`lang`), so equal subterms of
//! different statements share an e-class (common-subexpression elimination by
//! hash-consing). Products are single n-ary nodes with sorted operands and their summed
//! indices inline, and an analysis tracks each class's free indices and dtype. A few
//! bounded rewrites (`rules`) flatten nested products, push sums inward and drop
//! trivial products; a contraction-cost model picks the cheapest equal term, and all
//! statements are extracted together into one DAG (`extract`).
//!
//! Contraction order inside a product is deliberately *not* explored here (no
//! associativity rule): `order::search` chooses it later.
//!
//! Summed indices keep the user's names: no renaming pass runs before encoding. The rules
//! that move a term under a binder (flatten, push-sum, share, inlining a definition) check
//! instead that nothing is captured (`rules::private_sums`). Renaming every binder by its
//! shape was tried (2026-11-28) and dropped. A read `T[L]` is offered the definition of
//! `T` only under `T`'s own left-hand indices, so renaming a sum over a read's index lost
//! the factorised forms of the CP/Tucker layers; exempting such sums kept them, but the
//! `share` rule finds a sub-product common to two statements by its indices, and the two
//! products of `shared_prefix` (different shapes, so different names) no longer shared
//! their prefix (8.05e8 -> 1.07e9 flops). Renaming only the binders that clash within one
//! statement was tried next and dropped too: a subterm under two binders of the same
//! indices, softmax's `exp(S[i, j, k] - max)` under both the value sum and the normaliser
//! `sum[j, k]`, then reads `S[i, j', k']` in one and `S[i, j, k]` in the other, so it is
//! computed twice (`simplicial_attention_n1024`: 2.7716e11 -> 2.7823e11 per call).

mod constants;
mod cost;
mod extract;
mod factor;
mod lang;
mod lp;
mod rules;
mod share;
mod softmax;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rules;

use crate::ir::{Expr, Program, TensorId, TensorKind};
use egg::{EGraph, Runner, SimpleScheduler, StopReason};
use extract::{Rebuild, Selection};
use lang::{ENode, IrAnalysis};
use std::collections::BTreeMap;
use std::time::Duration;

pub use extract::{program_cost, statement_costs};

/// Bounds on the equality-saturation run, and what the cost model needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizeConfig {
    pub node_limit: usize,
    pub iter_limit: usize,
    pub time_limit: Duration,
    /// Names of the input tensors that are fixed weights: work on them alone is paid
    /// once (precomputed), not per call, so it does not count in the per-call cost.
    pub constants: Vec<String>,
    /// A program with a product of more factors than this skips the e-graph: its cost is
    /// the contraction order, which `order::search` finds on its own, and costing every
    /// variant of such a product would take longer than the search itself.
    pub max_product_factors: usize,
    /// How classes are chosen: greedy tree-cost selections (the default), or also an
    /// exact DAG selection by integer programming for graphs with heavy sharing.
    pub extractor: Extractor,
    /// Time allowed to the integer-programming solver of [`Extractor::Lp`].
    pub lp_time_limit: Duration,
    /// Largest intermediate wanted, in elements: forms whose values fit are preferred to
    /// any that do not, whatever their flops (`None`: the plan's memory limit, if any).
    pub memory_limit: Option<f64>,
}

/// The extraction strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Extractor {
    /// Bottom-up tree costs, plain and with shared children discounted, then polished by
    /// DAG cost.
    #[default]
    Greedy,
    /// As `Greedy`, and an integer program whose optimum is the cheapest DAG (`lp`); the
    /// cheapest of all is kept.
    Lp,
}

impl Default for OptimizeConfig {
    fn default() -> Self {
        OptimizeConfig {
            node_limit: 10_000,
            iter_limit: 16,
            time_limit: Duration::from_millis(200),
            constants: Vec::new(),
            max_product_factors: 32,
            extractor: Extractor::Greedy,
            lp_time_limit: Duration::from_secs(2),
            memory_limit: None,
        }
    }
}

/// What the run did, for `--emit egraph` / `opt-ir` reporting and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizeReport {
    /// e-classes and e-nodes when the run stopped.
    pub classes: usize,
    pub nodes: usize,
    pub iterations: usize,
    /// "saturated", "node limit N", "iteration limit", "time limit", "skipped: ...", or
    /// egg's message.
    pub stop_reason: String,
    /// Every rule with the number of unions it caused (0 if it never fired), in a fixed
    /// order.
    pub rewrites_applied: Vec<(String, usize)>,
    /// Per-call [`program_cost`] of the input and of the returned program.
    pub cost_before: f64,
    pub cost_after: f64,
    /// The cost paid once, on constant inputs alone, before and after.
    pub once_before: f64,
    pub once_after: f64,
    /// Which extraction won: "plain", "shared" (children discounted by the statements
    /// sharing them), "lp" (integer programming) or "input" (nothing cheaper was found).
    pub extraction: String,
    /// With [`Extractor::Lp`]: how the integer program ended ("solved", or why it gave
    /// no selection, e.g. the time limit).
    pub lp: Option<String>,
    /// Per input statement, in order: its target's name, its (per call, once) cost in
    /// the input, and in the output (`None` when its value was folded into its readers
    /// and the statement dropped). Work shared by statements counts in the first.
    pub statements: Vec<StatementReport>,
}

/// One statement's line of [`OptimizeReport::statements`].
#[derive(Clone, Debug, PartialEq)]
pub struct StatementReport {
    pub target: String,
    pub before: (f64, f64),
    pub after: Option<(f64, f64)>,
}

/// `before`: [`statement_costs`] of `p`.
fn statement_reports(
    p: &Program,
    before: Vec<(f64, f64)>,
    out: &Program,
    constants: &[TensorId],
) -> Vec<StatementReport> {
    let after = statement_costs(out, constants);
    p.stmts
        .iter()
        .zip(before)
        .map(|(s, b)| StatementReport {
            target: p.tensors[s.target].name.clone(),
            before: b,
            after: out
                .stmts
                .iter()
                .position(|o| o.target == s.target)
                .map(|k| after[k]),
        })
        .collect()
}

/// The constant inputs named in `cfg` (unknown names and results are ignored).
fn constant_ids(p: &Program, cfg: &OptimizeConfig) -> Vec<TensorId> {
    p.inputs()
        .filter(|(_, t)| cfg.constants.contains(&t.name))
        .map(|(h, _)| h)
        .collect()
}

/// An e-graph holding `p`'s statements, nothing rewritten yet.
fn encoded_graph(
    p: &Program,
    constants: &[TensorId],
) -> (EGraph<ENode, IrAnalysis>, lang::Encoded) {
    let mut eg = EGraph::new(analysis(p, constants));
    let enc = lang::encode(p, &mut eg);
    (eg, enc)
}

fn analysis(p: &Program, constants: &[TensorId]) -> IrAnalysis {
    IrAnalysis {
        sizes: p.indices.iter().map(|(_, i)| i.size).collect(),
        tensor_dtypes: p.tensors.iter().map(|(_, t)| t.dtype).collect(),
        constant_tensors: p
            .tensors
            .iter()
            .map(|(h, t)| t.kind == TensorKind::Input && constants.contains(&h))
            .collect(),
        statement_roots: Vec::new(),
    }
}

/// The largest product of `p`, in factors.
fn widest_product(p: &Program) -> usize {
    p.exprs
        .iter()
        .map(|(_, e)| match e {
            Expr::Product { factors, .. } => factors.len(),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Optimises `p` by equality saturation bounded by `cfg`, returning an equivalent program
/// (same indices, tensors and outputs; statements whose value was folded into their
/// readers dropped; a new expression arena) and a report. Deterministic: the same input
/// gives byte-for-byte the same output.
pub fn optimize(p: &Program, cfg: &OptimizeConfig) -> (Program, OptimizeReport) {
    let constants = constant_ids(p, cfg);
    let before = statement_costs(p, &constants);
    let (cost_before, once_before) = before
        .iter()
        .fold((0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1));
    let rules = rules::rules();
    let mut report = OptimizeReport {
        classes: 0,
        nodes: 0,
        iterations: 0,
        stop_reason: String::new(),
        rewrites_applied: rules.iter().map(|r| (r.name.to_string(), 0)).collect(),
        cost_before,
        cost_after: cost_before,
        once_before,
        once_after: once_before,
        extraction: "input".into(),
        lp: None,
        statements: Vec::new(),
    };
    let widest = widest_product(p);
    if widest > cfg.max_product_factors {
        report.stop_reason = format!(
            "skipped: a product of {widest} factors (over {}), left to the order search",
            cfg.max_product_factors
        );
        report.statements = p
            .stmts
            .iter()
            .zip(before)
            .map(|(s, b)| StatementReport {
                target: p.tensors[s.target].name.clone(),
                before: b,
                after: Some(b),
            })
            .collect();
        return (p.clone(), report);
    }

    let (runner, encoded) = runner_for(p, cfg, &constants);
    let runner = runner.run(&rules);
    let egraph = &runner.egraph;

    // Original nodes, canonicalised against the final e-graph, keep their spans. The
    // first expression (in encoding order) wins, for determinism.
    let mut spans = BTreeMap::new();
    for (node, span) in &encoded.originals {
        if let Some(span) = span {
            let canonical = egg::Language::map_children(node.clone(), |c| egraph.find(c));
            spans.entry(canonical).or_insert(*span);
        }
    }
    // A read `T[L]` of an inlined statement is never chosen: the class's other nodes
    // are its value, and `Rebuild` writes the read back where the statement is kept.
    let excluded_reads: Vec<ENode> = encoded
        .inlined
        .iter()
        .filter_map(|t| p.stmt_of(*t))
        .map(|s| ENode::Ref {
            tensor: s.target,
            indices: s.indices.clone(),
        })
        .collect();
    let excluded = |n: &ENode| excluded_reads.contains(n);
    let mut model = cost::CostModel::new(cfg.memory_limit);
    let costed = extract::Costed::new(egraph, &mut model, &excluded);
    let output_roots: Vec<egg::Id> = p
        .stmts
        .iter()
        .zip(&encoded.roots)
        .filter(|(s, _)| p.outputs.contains(&s.target))
        .map(|(_, &r)| r)
        .collect();
    let counts = extract::reach_counts(egraph, &costed, &output_roots);
    let rebuild = Rebuild {
        p,
        egraph,
        roots: &encoded.roots,
        inlined: &encoded.inlined,
        spans: &spans,
    };
    // The statements every extracted program keeps (see `Rebuild`): outputs, and those
    // whose target no other statement reads or that were not inlined.
    let kept_roots: Vec<egg::Id> = p
        .stmts
        .iter()
        .zip(&encoded.roots)
        .filter(|(s, _)| {
            p.outputs.contains(&s.target)
                || !encoded.inlined.contains(&s.target)
                || !p
                    .exprs
                    .iter()
                    .any(|(_, e)| matches!(e, Expr::Ref { tensor, .. } if *tensor == s.target))
        })
        .map(|(_, &r)| r)
        .collect();
    let mut best: Option<(extract::Cost, Program, &str)> = None;
    let plain = extract::select(egraph, &costed, None);
    let mut candidates = vec![
        ("plain", plain.clone()),
        ("shared", extract::select(egraph, &costed, Some(&counts))),
    ];
    if cfg.extractor == Extractor::Lp {
        // The plain selection is the warm start when it is one (acyclic from the roots).
        let empty = Selection::new();
        let hint = if extract::acyclic(egraph, &plain, &kept_roots) {
            &plain
        } else {
            &empty
        };
        match lp::select(egraph, &costed, &kept_roots, hint, cfg.lp_time_limit) {
            Ok((mut sel, outcome)) => {
                // Statements that are not kept still need a choice for `Rebuild`.
                for (c, n) in &plain {
                    sel.entry(*c).or_insert_with(|| n.clone());
                }
                report.lp = Some(match outcome {
                    lp::Outcome::Optimal => "solved".into(),
                    lp::Outcome::NodeLimit => format!(
                        "best found in {} branch-and-bound nodes (not proven optimal)",
                        lp::NODE_LIMIT
                    ),
                });
                candidates.push(("lp", sel));
            }
            Err(why) => report.lp = Some(format!("no selection: {why}")),
        }
    }
    for (name, sel) in candidates {
        if !extract::acyclic(egraph, &sel, &encoded.roots) {
            continue;
        }
        let sel = extract::polish(egraph, &costed, sel, &kept_roots);
        let out = rebuild.run(&sel);
        let rank = extract::program_rank(&out, &constants, cfg.memory_limit);
        if best.as_ref().is_none_or(|b| rank < b.0) {
            best = Some((rank, out, name));
        }
    }
    // Never make it worse than the input (as the model prices both).
    let input_rank = extract::program_rank(p, &constants, cfg.memory_limit);
    let out = match best {
        Some((rank, out, name)) if rank <= input_rank => {
            report.cost_after = rank.per_call;
            report.once_after = rank.once;
            report.extraction = name.into();
            out
        }
        _ => p.clone(),
    };

    for it in &runner.iterations {
        for (name, n) in &it.applied {
            if let Some(slot) = report
                .rewrites_applied
                .iter_mut()
                .find(|(r, _)| r.as_str() == name.as_str())
            {
                slot.1 += n;
            }
        }
    }
    report.classes = egraph.number_of_classes();
    report.nodes = egraph.total_number_of_nodes();
    report.iterations = runner.iterations.len();
    report.stop_reason = stop_text(runner.stop_reason.as_ref(), cfg);
    report.statements = statement_reports(p, before, &out, &constants);
    (out, report)
}

/// A runner bounded by `cfg` whose e-graph holds the values of all of `p`'s statements.
fn runner_for(
    p: &Program,
    cfg: &OptimizeConfig,
    constants: &[TensorId],
) -> (Runner<ENode, IrAnalysis>, lang::Encoded) {
    // The rules are bounded by construction, so egg's default backoff scheduler (which
    // bans a rule for a while once it matches > 1000 classes) would only delay them on
    // big programs; the node/iteration/time limits bound the run.
    let mut runner = Runner::<ENode, IrAnalysis, ()>::new(analysis(p, constants))
        .with_scheduler(SimpleScheduler)
        .with_node_limit(cfg.node_limit)
        .with_iter_limit(cfg.iter_limit)
        .with_time_limit(cfg.time_limit);
    let encoded = lang::encode(p, &mut runner.egraph);
    (runner, encoded)
}

fn stop_text(reason: Option<&StopReason>, cfg: &OptimizeConfig) -> String {
    match reason {
        Some(StopReason::Saturated) => "saturated".into(),
        // egg reports the e-graph's size here; the configured limit reads better.
        Some(StopReason::NodeLimit(_)) => format!("node limit {}", cfg.node_limit),
        Some(StopReason::IterationLimit(_)) => "iteration limit".into(),
        Some(StopReason::TimeLimit(_)) => "time limit".into(),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".into(),
    }
}
