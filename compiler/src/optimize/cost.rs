//! The cost model of extraction: what one e-node costs per call and once.
//!
//! A product node costs what the planner will spend on it: the unary steps that sum each
//! factor's private indices (one per element), then the pairwise contractions of the
//! path `order::search` returns for its factors (opt_einsum's `opt_cost`), memoised by
//! (operands, output indices, which operands are constant) since many nodes share them.
//! Adds, maps and reductions cost one per element of what they read or write, as the
//! planner counts them. Work on constant inputs only (weights) is paid once, not per call:
//! it goes to the second component, so that extraction minimises the per-call cost first
//! and the precomputation second. Leaves are free.
//!
//! Two more terms rank nodes, as `extract::Cost` orders them:
//! - `over`: under a memory limit, the elements of every value (a node's result, or an
//!   intermediate of its contraction path) that exceed it; first of all, so a form that
//!   fits is preferred to any that does not. A product is searched under the limit, and
//!   only a product with no fitting path is priced by its unlimited path plus `over`.
//! - `written`: elements written per call (results and path intermediates, cotengra's
//!   `contraction_write`), which breaks ties between forms of equal flops in favour of
//!   the one that moves less memory.

use super::lang::{ENode, IrAnalysis};
use crate::ir::IndexId;
use crate::order::{self, Limits, Optimizer, AUTO_OPTIMAL_MAX_INPUTS};
use egg::{EGraph, Id, Language};
use std::collections::HashMap;

type EG = EGraph<ENode, IrAnalysis>;

/// Above this many factors the model searches orders with opt_einsum's greedy instead of
/// `Auto` (whose exact search grows as 3^n): the cost must stay cheap to evaluate for
/// every product node of the e-graph.
const EXACT_MAX_FACTORS: usize = AUTO_OPTIMAL_MAX_INPUTS;

/// The cost of one node, its children excluded.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeCost {
    /// Flops of every call.
    pub per_call: f64,
    /// Flops paid once, on constant inputs only.
    pub once: f64,
    /// Elements written by every call.
    pub written: f64,
    /// Elements of values over the memory limit (0 without one).
    pub over: f64,
}

impl std::ops::AddAssign for NodeCost {
    fn add_assign(&mut self, o: NodeCost) {
        self.per_call += o.per_call;
        self.once += o.once;
        self.written += o.written;
        self.over += o.over;
    }
}

/// A product as the order search sees it: (operand index lists, output, which operands
/// are constant).
type ProductKey = (Vec<Vec<u32>>, Vec<u32>, Vec<bool>);

/// Memoised cost of product nodes, under an optional memory limit (elements).
#[derive(Default)]
pub struct CostModel {
    memo: HashMap<ProductKey, NodeCost>,
    memory_limit: Option<f64>,
}

fn elements(idx: &[IndexId], sizes: &[u64]) -> f64 {
    idx.iter().map(|i| sizes[i.index()] as f64).product()
}

impl CostModel {
    pub fn new(memory_limit: Option<f64>) -> Self {
        CostModel {
            memo: HashMap::new(),
            memory_limit,
        }
    }

    /// Elements of a value of `size` beyond the memory limit.
    fn over(&self, size: f64) -> f64 {
        match self.memory_limit {
            Some(limit) if size > limit => size,
            _ => 0.0,
        }
    }

    /// The cost of `node`, a node of class `class`, children excluded.
    pub fn node(&mut self, eg: &EG, class: Id, node: &ENode) -> NodeCost {
        let mut cost = self.node_work(eg, class, node);
        if !matches!(node, ENode::Ref { .. } | ENode::Const(_)) {
            let size = elements(&eg[class].data.free, &eg.analysis.sizes);
            cost.over += self.over(size);
        }
        cost
    }

    /// [`Self::node`] without the result's own `over`.
    fn node_work(&mut self, eg: &EG, class: Id, node: &ENode) -> NodeCost {
        let sizes = &eg.analysis.sizes;
        let data = |c: Id| &eg[c].data;
        let result = elements(&data(class).free, sizes);
        let split = |flops: f64, constant: bool| {
            if constant {
                NodeCost {
                    once: flops,
                    ..NodeCost::default()
                }
            } else {
                NodeCost {
                    per_call: flops,
                    written: result,
                    ..NodeCost::default()
                }
            }
        };
        let constant = node.children().iter().all(|&c| data(c).constant);
        match node {
            ENode::Ref { .. } | ENode::Const(_) => NodeCost::default(),
            ENode::Add(args) => {
                // A left fold of binary adds, each over the union of its operands.
                let mut acc: Vec<IndexId> = Vec::new();
                let mut flops = 0.0;
                for (k, &a) in args.iter().enumerate() {
                    acc = super::lang::union_sorted([&acc[..], &data(a).free[..]]);
                    if k > 0 {
                        flops += elements(&acc, sizes);
                    }
                }
                split(flops, constant)
            }
            ENode::Map { args, .. } => {
                let out = &data(class).free;
                split(
                    elements(out, sizes) * (args.len().max(2) - 1) as f64,
                    constant,
                )
            }
            ENode::Reduce { arg, .. } => split(elements(&data(arg[0]).free, sizes), constant),
            ENode::Product { factors, summed } => self.product(eg, class, factors, summed),
        }
    }

    fn product(&mut self, eg: &EG, class: Id, factors: &[Id], summed: &[IndexId]) -> NodeCost {
        let sizes = &eg.analysis.sizes;
        let mut cost = NodeCost::default();
        let mut inputs: Vec<Vec<u32>> = Vec::with_capacity(factors.len());
        let mut consts: Vec<bool> = Vec::with_capacity(factors.len());
        for (k, &f) in factors.iter().enumerate() {
            let d = &eg[f].data;
            // Summed indices no other factor holds are summed by a unary step first.
            let keep: Vec<IndexId> = d
                .free
                .iter()
                .copied()
                .filter(|i| {
                    summed.binary_search(i).is_err()
                        || factors
                            .iter()
                            .enumerate()
                            .any(|(j, &g)| j != k && eg[g].data.free.binary_search(i).is_ok())
                })
                .collect();
            if keep.len() != d.free.len() {
                let e = elements(&d.free, sizes);
                if d.constant {
                    cost.once += e;
                } else {
                    cost.per_call += e;
                    cost.written += elements(&keep, sizes);
                }
            }
            inputs.push(keep.iter().map(|i| i.0).collect());
            consts.push(d.constant);
        }
        if factors.len() < 2 {
            return cost;
        }
        let output: Vec<u32> = eg[class].data.free.iter().map(|i| i.0).collect();
        let consts_all = consts.iter().all(|&c| c);
        let key = (inputs, output, consts);
        let c = match self.memo.get(&key) {
            Some(c) => *c,
            None => {
                let c = path_cost(&key.0, &key.1, &key.2, sizes, self.memory_limit);
                self.memo.insert(key, c);
                c
            }
        };
        cost += c;
        if !consts_all {
            cost.written += elements(&eg[class].data.free, sizes);
        }
        cost
    }
}

/// The per-call and once flops of the path the planner would choose: a pairwise step
/// whose two operands depend on constants only is precomputed. Under a memory limit the
/// path is searched within it; where none fits, the unlimited path's intermediates over
/// the limit count in `over`. The final step's result is the node's own (counted by
/// [`CostModel::node`]), so it is not counted here.
fn path_cost(
    inputs: &[Vec<u32>],
    output: &[u32],
    consts: &[bool],
    sizes: &[u64],
    memory_limit: Option<f64>,
) -> NodeCost {
    let optimizer = if inputs.len() > EXACT_MAX_FACTORS {
        Optimizer::Greedy
    } else {
        Optimizer::Auto
    };
    let limited = memory_limit.and_then(|m| {
        let limits = Limits {
            memory_limit: Some(m),
            ..Limits::default()
        };
        order::search(inputs, output, sizes, optimizer, &limits).ok()
    });
    let fits = limited.is_some();
    let Some(info) = limited
        .or_else(|| order::search(inputs, output, sizes, optimizer, &Limits::default()).ok())
    else {
        // Every product the verifier accepts has a path; price a failure out of reach.
        return NodeCost {
            per_call: f64::INFINITY,
            ..NodeCost::default()
        };
    };
    let mut live: Vec<bool> = consts.to_vec();
    let mut cost = NodeCost::default();
    let last = info.steps.len().saturating_sub(1);
    for (k, step) in info.steps.iter().enumerate() {
        let (i, j) = step.pair;
        let c = live[i] && live[j];
        if c {
            cost.once += step.flops;
        } else {
            cost.per_call += step.flops;
            if k < last {
                cost.written += step.size;
            }
        }
        if let (Some(m), false) = (memory_limit, fits) {
            if k < last && step.size > m {
                cost.over += step.size;
            }
        }
        live.remove(j);
        live.remove(i);
        live.push(c);
    }
    cost
}
