//! The cost model, extraction from the e-graph, and rebuilding a [`Program`].

use super::lang::{union_sorted, ENode, IrAnalysis};
use crate::ir::{Arena, Expr, ExprId, IndexId, Program, Stmt};
use egg::{CostFunction, EGraph, Extractor, Id, Language};
use einc_frontend::Span;
use std::collections::{BTreeMap, HashMap};

/// What one node of a kind costs, given the indices it touches (`involved`: every index
/// free in one of its operands, so for a product free ∪ summed) and its operand count.
///
/// A product or an n-ary add is one pass over the iteration space of all its indices per
/// pairwise step (`max(1, n - 1)`); maps and reductions are one pass; leaves are free.
/// This is an estimate for choosing between equal terms; the real contraction order is
/// chosen later, by `order::search`.
fn node_work(kind: Kind, involved: &[IndexId], arity: usize, sizes: &[u64]) -> f64 {
    let volume = || {
        involved
            .iter()
            .map(|i| sizes[i.index()] as f64)
            .product::<f64>()
    };
    match kind {
        Kind::Leaf => 0.0,
        Kind::Pairwise => volume() * arity.saturating_sub(1).max(1) as f64,
        Kind::Pass => volume(),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Leaf,
    Pairwise,
    Pass,
}

fn enode_kind(n: &ENode) -> Kind {
    match n {
        ENode::Ref { .. } | ENode::Const(_) => Kind::Leaf,
        ENode::Product { .. } | ENode::Add(_) => Kind::Pairwise,
        ENode::Map { .. } | ENode::Reduce { .. } => Kind::Pass,
    }
}

/// Extraction cost: the work of the model, then the node count to break ties (fewer
/// kernels, e.g. one flat product rather than a nest that sums nothing inside). Derived
/// `PartialOrd` compares lexicographically.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
pub struct Cost {
    pub work: f64,
    pub nodes: u64,
}

/// Tree cost over the e-graph (egg's greedy extractor counts a shared child once per use;
/// the rebuilt program shares it anyway).
pub struct ContractionCost<'a> {
    pub egraph: &'a EGraph<ENode, IrAnalysis>,
}

impl CostFunction<ENode> for ContractionCost<'_> {
    type Cost = Cost;

    fn cost<C: FnMut(Id) -> Cost>(&mut self, enode: &ENode, mut costs: C) -> Cost {
        let eg = self.egraph;
        let involved = union_sorted(enode.children().iter().map(|&c| &eg[c].data.free[..]));
        let mut total = Cost {
            work: node_work(
                enode_kind(enode),
                &involved,
                enode.len(),
                &eg.analysis.sizes,
            ),
            nodes: 1,
        };
        for &c in enode.children() {
            let child = costs(c);
            total.work += child.work;
            total.nodes = total.nodes.saturating_add(child.nodes);
        }
        total
    }
}

/// The model's total over a program, as a DAG: each expression reachable from a
/// statement counts once, however many parents use it.
pub fn program_cost(p: &Program) -> f64 {
    let sizes: Vec<u64> = p.indices.iter().map(|(_, i)| i.size).collect();
    let mut free: Vec<Option<Vec<IndexId>>> = vec![None; p.exprs.len()];
    p.stmts
        .iter()
        .map(|s| expr_cost(p, s.value, &sizes, &mut free))
        .sum()
}

/// Cost of `e` and of its not yet counted descendants; fills `free` (the memo, which
/// doubles as the "already counted" mark).
fn expr_cost(p: &Program, e: ExprId, sizes: &[u64], free: &mut [Option<Vec<IndexId>>]) -> f64 {
    if free[e.index()].is_some() {
        return 0.0;
    }
    let (kind, children, bound): (Kind, &[ExprId], &[IndexId]) = match &p.exprs[e] {
        Expr::Ref { indices, .. } => {
            free[e.index()] = Some(union_sorted([&indices[..]]));
            return 0.0;
        }
        Expr::Const(_) => {
            free[e.index()] = Some(Vec::new());
            return 0.0;
        }
        Expr::Product { factors, summed } => (Kind::Pairwise, factors, summed),
        Expr::Add(args) => (Kind::Pairwise, args, &[]),
        Expr::Map { args, .. } => (Kind::Pass, args, &[]),
        Expr::Reduce { arg, indices, .. } => (Kind::Pass, std::slice::from_ref(arg), indices),
    };
    let below: f64 = children.iter().map(|&c| expr_cost(p, c, sizes, free)).sum();
    let involved = union_sorted(children.iter().map(|c| {
        free[c.index()]
            .as_deref()
            .expect("children are costed first")
    }));
    let own = node_work(kind, &involved, children.len(), sizes);
    let mut f = involved;
    f.retain(|i| !bound.contains(i));
    free[e.index()] = Some(f);
    own + below
}

/// Builds the output program: the input's indices, tensors, statement targets and
/// outputs, and a fresh expression arena holding the cheapest term of each statement's
/// class. All statement roots are extracted into one DAG: an e-class used in several
/// places (across statements too) becomes one `ExprId`.
pub fn rebuild<'a>(
    p: &Program,
    egraph: &'a EGraph<ENode, IrAnalysis>,
    extractor: &Extractor<'a, ContractionCost<'a>, ENode, IrAnalysis>,
    roots: &[Id],
    spans: &BTreeMap<ENode, Span>,
) -> Program {
    let mut b = Builder {
        egraph,
        extractor,
        spans,
        out: Program {
            indices: p.indices.clone(),
            tensors: p.tensors.clone(),
            exprs: Arena::default(),
            expr_spans: Vec::new(),
            stmts: Vec::new(),
            outputs: p.outputs.clone(),
        },
        memo: HashMap::new(),
    };
    for (s, &root) in p.stmts.iter().zip(roots) {
        let value = b.build(root);
        b.out.stmts.push(Stmt { value, ..s.clone() });
    }
    b.out
}

struct Builder<'a, 'b> {
    egraph: &'a EGraph<ENode, IrAnalysis>,
    extractor: &'b Extractor<'a, ContractionCost<'a>, ENode, IrAnalysis>,
    spans: &'b BTreeMap<ENode, Span>,
    out: Program,
    /// e-class → its expression in `out` (only looked up, never iterated).
    memo: HashMap<Id, ExprId>,
}

impl Builder<'_, '_> {
    /// Children first, so the arena is in dependency order. Terminates: the extractor's
    /// choices are acyclic because every non-leaf node costs at least one node more than
    /// each of its children.
    fn build(&mut self, class: Id) -> ExprId {
        let class = self.egraph.find(class);
        if let Some(&e) = self.memo.get(&class) {
            return e;
        }
        let node = self.extractor.find_best_node(class).clone();
        let kids: Vec<ExprId> = node.children().iter().map(|&c| self.build(c)).collect();
        let expr = match &node {
            ENode::Ref { tensor, indices } => Expr::Ref {
                tensor: *tensor,
                indices: indices.clone(),
            },
            ENode::Const(bits) => Expr::Const(f64::from_bits(*bits)),
            ENode::Product { summed, .. } => Expr::Product {
                factors: kids,
                summed: summed.clone(),
            },
            ENode::Add(_) => Expr::Add(kids),
            ENode::Map { op, .. } => Expr::Map {
                op: *op,
                args: kids,
            },
            ENode::Reduce { op, indices, .. } => Expr::Reduce {
                op: *op,
                indices: indices.clone(),
                arg: kids[0],
            },
        };
        let canonical = node.map_children(|c| self.egraph.find(c));
        let span = self.spans.get(&canonical).copied();
        let e = self.out.add_expr(expr, span);
        self.memo.insert(class, e);
        e
    }
}
