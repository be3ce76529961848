//! Elementwise fusion: a chain of elementwise steps whose intermediate results have no
//! other reader becomes one `Fused` step, evaluated in one pass over its result instead of
//! writing and re-reading every intermediate array.
//!
//! A step is absorbed into its reader only when that reader is its single reader (a value
//! read twice would be recomputed), both compute in the same dtype (the fused pass computes
//! in the reader's), and it has the reader's indices (a broadcast value would be recomputed
//! for every element it is broadcast over). Absorbed steps are removed and the plan renumbered.

use super::{FusedNode, Op, Semiring, Step, ValueId};

/// A step's elementwise computation as fused nodes over its own arguments.
type Chain = (Vec<ValueId>, Vec<FusedNode>);

pub(super) fn fuse_elementwise(steps: Vec<Step>) -> Vec<Step> {
    let n = steps.len();
    let mut readers = vec![0usize; n];
    for s in &steps {
        for a in s.op.args() {
            readers[a.0 as usize] += 1;
        }
    }
    let mut chains: Vec<Option<Chain>> = steps
        .iter()
        .map(|s| match &s.op {
            Op::Elementwise { op, args } => {
                let mut nodes: Vec<FusedNode> = (0..args.len()).map(FusedNode::Arg).collect();
                nodes.push(FusedNode::Apply(*op, (0..args.len()).collect()));
                Some((args.clone(), nodes))
            }
            _ => None,
        })
        .collect();
    let mut dead = vec![false; n];
    for k in 0..n {
        let Some((args, _)) = chains[k].clone() else {
            continue;
        };
        for a in args {
            let ai = a.0 as usize;
            // A value broadcast in its reader would be recomputed for every broadcast
            // element: only same-shaped values are absorbed.
            let same_shape = steps[ai].indices.len() == steps[k].indices.len()
                && steps[ai]
                    .indices
                    .iter()
                    .all(|i| steps[k].indices.contains(i));
            let fusable = readers[ai] == 1
                && chains[ai].is_some()
                && steps[ai].dtype == steps[k].dtype
                && same_shape;
            if !fusable {
                continue;
            }
            let (Some(inner), Some(outer)) = (chains[ai].take(), chains[k].take()) else {
                continue;
            };
            chains[k] = Some(inline(outer, a, &inner));
            dead[ai] = true;
        }
    }
    // Renumber the surviving steps.
    let mut new_id = vec![ValueId(u32::MAX); n];
    let mut next = 0u32;
    for k in 0..n {
        if !dead[k] {
            new_id[k] = ValueId(next);
            next += 1;
        }
    }
    let map = |v: &ValueId| new_id[v.0 as usize];
    let mut out = Vec::with_capacity(next as usize);
    for (k, mut s) in steps.into_iter().enumerate() {
        if dead[k] {
            continue;
        }
        s.out = new_id[k];
        s.op = match (s.op, chains[k].take()) {
            (Op::Elementwise { .. }, Some((args, nodes))) if nodes.len() > args.len() + 1 => {
                Op::Fused {
                    args: args.iter().map(map).collect(),
                    nodes,
                }
            }
            (op, _) => remap(op, &map),
        };
        out.push(s);
    }
    out
}

/// A sum of a fused chain's value over its trailing indices becomes a `FusedSum`, added up
/// row by row in the chain's own pass, instead of a `Unary` step that re-reads the whole
/// value afterwards (softmax's normaliser `Z = sum_jk exp(S - max)` next to the `exp`
/// array a contraction reads).
///
/// Sound when: the plan is sum-product (a fused pass adds with `+`, another semiring's
/// `Unary` would use its own `⊕`); the `Unary` reads the chain's value and keeps a proper
/// prefix of its indices, in the same order, so every row of the pass falls into one
/// element of the sum; the dtypes agree (the pass sums in the chain's dtype); and the
/// chain has no other fused sum. The `Unary` may also read a result tensor stored from the
/// chain, loaded under the chain's own labels (the sum in a statement of its own). A
/// single `Elementwise` step is turned into a one-node
/// chain first. Steps are neither removed nor renumbered.
pub(super) fn fuse_sums(mut steps: Vec<Step>, semiring: Semiring) -> Vec<Step> {
    if semiring != Semiring::SumProduct {
        return steps;
    }
    let mut has_sum = vec![false; steps.len()];
    // The step each result tensor was stored from, so that a later statement's read of
    // it (`load`) under the same labels can be traced back to the pass that wrote it.
    let mut stored_from = std::collections::BTreeMap::new();
    for k in 0..steps.len() {
        if let Op::Store { tensor, arg } = steps[k].op {
            stored_from.insert(tensor, arg);
        }
        let Op::Unary { arg } = steps[k].op else {
            continue;
        };
        let arg = match steps[arg.0 as usize].op {
            Op::Load { tensor } => match stored_from.get(&tensor) {
                Some(&v) if steps[v.0 as usize].indices == steps[arg.0 as usize].indices => v,
                _ => arg,
            },
            _ => arg,
        };
        let a = arg.0 as usize;
        let (kept, of) = (&steps[k].indices, &steps[a].indices);
        let prefix = kept.len() < of.len() && of[..kept.len()] == kept[..];
        let chain = matches!(steps[a].op, Op::Fused { .. } | Op::Elementwise { .. });
        if !chain || !prefix || has_sum[a] || steps[a].dtype != steps[k].dtype {
            continue;
        }
        if let Op::Elementwise { op, args } = &steps[a].op {
            let mut nodes: Vec<FusedNode> = (0..args.len()).map(FusedNode::Arg).collect();
            nodes.push(FusedNode::Apply(*op, (0..args.len()).collect()));
            steps[a].op = Op::Fused {
                args: args.clone(),
                nodes,
            };
        }
        has_sum[a] = true;
        steps[k].op = Op::FusedSum { of: arg };
        steps[k].flops = 0.0;
    }
    steps
}

/// `outer` with every leaf reading `value` replaced by the nodes of `inner`.
fn inline(outer: Chain, value: ValueId, inner: &Chain) -> Chain {
    let (outer_args, outer_nodes) = outer;
    let mut args: Vec<ValueId> = Vec::new();
    let arg_of = |v: ValueId, args: &mut Vec<ValueId>| match args.iter().position(|&x| x == v) {
        Some(p) => p,
        None => {
            args.push(v);
            args.len() - 1
        }
    };
    let mut nodes: Vec<FusedNode> = Vec::new();
    let mut at: Vec<usize> = Vec::with_capacity(outer_nodes.len());
    for node in outer_nodes {
        match node {
            FusedNode::Arg(j) if outer_args[j] == value => {
                let base = nodes.len();
                for nd in &inner.1 {
                    nodes.push(match nd {
                        FusedNode::Arg(t) => FusedNode::Arg(arg_of(inner.0[*t], &mut args)),
                        FusedNode::Apply(op, xs) => {
                            FusedNode::Apply(*op, xs.iter().map(|x| base + x).collect())
                        }
                    });
                }
                at.push(nodes.len() - 1);
            }
            FusedNode::Arg(j) => {
                nodes.push(FusedNode::Arg(arg_of(outer_args[j], &mut args)));
                at.push(nodes.len() - 1);
            }
            FusedNode::Apply(op, xs) => {
                nodes.push(FusedNode::Apply(op, xs.iter().map(|&x| at[x]).collect()));
                at.push(nodes.len() - 1);
            }
        }
    }
    (args, nodes)
}

fn remap(op: Op, map: &impl Fn(&ValueId) -> ValueId) -> Op {
    match op {
        Op::Unary { arg } => Op::Unary { arg: map(&arg) },
        Op::Reduce { op, arg } => Op::Reduce { op, arg: map(&arg) },
        Op::Store { tensor, arg } => Op::Store {
            tensor,
            arg: map(&arg),
        },
        Op::Contract { lhs, rhs } => Op::Contract {
            lhs: map(&lhs),
            rhs: map(&rhs),
        },
        Op::Elementwise { op, args } => Op::Elementwise {
            op,
            args: args.iter().map(map).collect(),
        },
        Op::SliceSum { args, sliced, body } => Op::SliceSum {
            args: args.iter().map(map).collect(),
            sliced,
            body,
        },
        Op::Fused { args, nodes } => Op::Fused {
            args: args.iter().map(map).collect(),
            nodes,
        },
        Op::FusedSum { of } => Op::FusedSum { of: map(&of) },
        op @ (Op::Load { .. } | Op::Const(_) | Op::Arg(_)) => op,
    }
}
