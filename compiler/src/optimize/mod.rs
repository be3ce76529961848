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

mod extract;
mod lang;
mod rules;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use crate::ir::Program;
use egg::{Extractor, Runner, SimpleScheduler, StopReason};
use lang::{ENode, IrAnalysis};
use std::collections::BTreeMap;
use std::time::Duration;

pub use extract::program_cost;

/// Bounds on the equality-saturation run.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizeConfig {
    pub node_limit: usize,
    pub iter_limit: usize,
    pub time_limit: Duration,
}

impl Default for OptimizeConfig {
    fn default() -> Self {
        OptimizeConfig {
            node_limit: 10_000,
            iter_limit: 16,
            time_limit: Duration::from_millis(200),
        }
    }
}

/// What the run did, for `--stats`-style reporting and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizeReport {
    /// e-classes and e-nodes when the run stopped.
    pub classes: usize,
    pub nodes: usize,
    pub iterations: usize,
    /// "saturated", "node limit N", "iteration limit", "time limit", or egg's message.
    pub stop_reason: String,
    /// Every rule with the number of unions it caused (0 if it never fired), in a fixed
    /// order.
    pub rewrites_applied: Vec<(String, usize)>,
    /// [`program_cost`] of the input and of the returned program.
    pub cost_before: f64,
    pub cost_after: f64,
}

/// Optimises `p` by equality saturation bounded by `cfg`, returning an equivalent program
/// (same indices, tensors, statement targets and outputs; a new expression arena) and a
/// report. Deterministic: the same input gives byte-for-byte the same output.
pub fn optimize(p: &Program, cfg: &OptimizeConfig) -> (Program, OptimizeReport) {
    let (runner, encoded) = runner_for(p, cfg);
    let rules = rules::rules();
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
    let extractor = Extractor::new(egraph, extract::ContractionCost { egraph });
    let extracted = extract::rebuild(p, egraph, &extractor, &encoded.roots, &spans);

    let cost_before = program_cost(p);
    let mut cost_after = program_cost(&extracted);
    // Extraction minimises tree cost per class; on an input that already shares
    // subterms the DAG total could in principle come out higher. Never make it worse.
    let out = if cost_after > cost_before {
        cost_after = cost_before;
        p.clone()
    } else {
        extracted
    };

    let mut applied: Vec<(String, usize)> = rules.iter().map(|r| (r.name.to_string(), 0)).collect();
    for it in &runner.iterations {
        for (name, n) in &it.applied {
            if let Some(slot) = applied
                .iter_mut()
                .find(|(r, _)| r.as_str() == name.as_str())
            {
                slot.1 += n;
            }
        }
    }
    let report = OptimizeReport {
        classes: egraph.number_of_classes(),
        nodes: egraph.total_number_of_nodes(),
        iterations: runner.iterations.len(),
        stop_reason: stop_text(runner.stop_reason.as_ref(), cfg),
        rewrites_applied: applied,
        cost_before,
        cost_after,
    };
    (out, report)
}

/// A runner bounded by `cfg` whose e-graph holds the values of all of `p`'s statements.
fn runner_for(p: &Program, cfg: &OptimizeConfig) -> (Runner<ENode, IrAnalysis>, lang::Encoded) {
    let analysis = IrAnalysis {
        sizes: p.indices.iter().map(|(_, i)| i.size).collect(),
        tensor_dtypes: p.tensors.iter().map(|(_, t)| t.dtype).collect(),
    };
    // The rules are bounded by construction, so egg's default backoff scheduler (which
    // bans a rule for a while once it matches > 1000 classes) would only delay them on
    // big programs; the node/iteration/time limits bound the run.
    let mut runner = Runner::<ENode, IrAnalysis, ()>::new(analysis)
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
