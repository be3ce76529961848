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
}

/// A product as the order search sees it: (operand index lists, output, which operands
/// are constant).
type ProductKey = (Vec<Vec<u32>>, Vec<u32>, Vec<bool>);

/// Memoised cost of product nodes.
#[derive(Default)]
pub struct CostModel {
    memo: HashMap<ProductKey, NodeCost>,
}

fn elements(idx: &[IndexId], sizes: &[u64]) -> f64 {
    idx.iter().map(|i| sizes[i.index()] as f64).product()
}

impl CostModel {
    /// The cost of `node`, a node of class `class`, children excluded.
    pub fn node(&mut self, eg: &EG, class: Id, node: &ENode) -> NodeCost {
        let sizes = &eg.analysis.sizes;
        let data = |c: Id| &eg[c].data;
        let split = |flops: f64, constant: bool| {
            if constant {
                NodeCost {
                    per_call: 0.0,
                    once: flops,
                }
            } else {
                NodeCost {
                    per_call: flops,
                    once: 0.0,
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
                }
            }
            inputs.push(keep.iter().map(|i| i.0).collect());
            consts.push(d.constant);
        }
        if factors.len() < 2 {
            return cost;
        }
        let output: Vec<u32> = eg[class].data.free.iter().map(|i| i.0).collect();
        let key = (inputs, output, consts);
        if let Some(c) = self.memo.get(&key) {
            return NodeCost {
                per_call: cost.per_call + c.per_call,
                once: cost.once + c.once,
            };
        }
        let c = path_cost(&key.0, &key.1, &key.2, sizes);
        self.memo.insert(key, c);
        NodeCost {
            per_call: cost.per_call + c.per_call,
            once: cost.once + c.once,
        }
    }
}

/// The per-call and once flops of the path the planner would choose: a pairwise step
/// whose two operands depend on constants only is precomputed.
fn path_cost(inputs: &[Vec<u32>], output: &[u32], consts: &[bool], sizes: &[u64]) -> NodeCost {
    let optimizer = if inputs.len() > EXACT_MAX_FACTORS {
        Optimizer::Greedy
    } else {
        Optimizer::Auto
    };
    let Ok(info) = order::search(inputs, output, sizes, optimizer, &Limits::default()) else {
        // Every product the verifier accepts has a path; price a failure out of reach.
        return NodeCost {
            per_call: f64::INFINITY,
            once: 0.0,
        };
    };
    let mut live: Vec<bool> = consts.to_vec();
    let mut cost = NodeCost::default();
    for step in &info.steps {
        let (i, j) = step.pair;
        let c = live[i] && live[j];
        if c {
            cost.once += step.flops;
        } else {
            cost.per_call += step.flops;
        }
        live.remove(j);
        live.remove(i);
        live.push(c);
    }
    cost
}
