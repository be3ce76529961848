//! Extraction: choosing one node per e-class by cost, and rebuilding a [`Program`].
//!
//! Costs come from [`CostModel`] (the order search's cost for products, per call and
//! once). Two selections are made, both by a bottom-up fixpoint over tree costs:
//! - plain: a child costs its full tree cost in every parent (egg's greedy extractor);
//! - shared: a child reachable from `k` statements costs `1/k` of it in each, so a
//!   sub-product that several statements could share (a common prefix) is preferred
//!   when sharing it pays off.
//!
//! Each selection is rebuilt into a program, and `optimize` keeps the one whose DAG cost
//! (each expression counted once, [`program_cost`]) is lowest. A selection with a cycle
//! (possible only with the shared discounts) is dropped.

use super::cost::{CostModel, NodeCost};
use super::lang::{ENode, IrAnalysis};
use crate::ir::{Arena, Expr, ExprId, IndexId, Program, Stmt, TensorId};
use egg::{EGraph, Id, Language};
use einc_frontend::Span;
use std::collections::{BTreeMap, HashMap, HashSet};

type EG = EGraph<ENode, IrAnalysis>;

/// Extraction cost, compared lexicographically in field order: elements over the memory
/// limit, per-call flops, flops paid once, elements written per call, then the node
/// count (fewer kernels).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Cost {
    pub over: f64,
    pub per_call: f64,
    pub once: f64,
    pub written: f64,
    pub nodes: f64,
}

impl Cost {
    fn add(&mut self, c: &NodeCost) {
        self.over += c.over;
        self.per_call += c.per_call;
        self.once += c.once;
        self.written += c.written;
    }
}

/// Bounds the fixpoint; tree costs without discounts settle in (depth) passes.
const MAX_PASSES: usize = 64;

/// The chosen node of each class reachable from the roots.
pub type Selection = HashMap<Id, ENode>;

/// Every non-excluded node's own cost, per class.
pub struct Costed {
    own: HashMap<Id, Vec<(ENode, NodeCost)>>,
}

impl Costed {
    pub fn new(eg: &EG, model: &mut CostModel, excluded: &dyn Fn(&ENode) -> bool) -> Self {
        let mut own = HashMap::new();
        for class in eg.classes() {
            let nodes = class
                .nodes
                .iter()
                .filter(|n| !excluded(n))
                .map(|n| (n.clone(), model.node(eg, class.id, n)))
                .collect();
            own.insert(class.id, nodes);
        }
        Costed { own }
    }

    /// Given costs, for tests of the selections on hand-made graphs.
    #[cfg(test)]
    pub fn from_costs(own: HashMap<Id, Vec<(ENode, NodeCost)>>) -> Self {
        Costed { own }
    }

    /// Every class, in no particular order.
    pub fn classes(&self) -> impl Iterator<Item = Id> + '_ {
        self.own.keys().copied()
    }

    /// The class's nodes that may be chosen, with their own costs.
    pub fn nodes(&self, class: Id) -> &[(ENode, NodeCost)] {
        self.own.get(&class).map_or(&[], |v| v)
    }
}

/// How many of `roots` reach each class (through any node that is not excluded).
pub fn reach_counts(eg: &EG, costed: &Costed, roots: &[Id]) -> HashMap<Id, f64> {
    let mut counts: HashMap<Id, f64> = HashMap::new();
    let distinct: HashSet<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    let mut distinct: Vec<Id> = distinct.into_iter().collect();
    distinct.sort();
    for r in distinct {
        let mut seen = HashSet::new();
        let mut stack = vec![r];
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue;
            }
            *counts.entry(c).or_insert(0.0) += 1.0;
            for (n, _) in &costed.own[&c] {
                stack.extend(n.children().iter().map(|&k| eg.find(k)));
            }
        }
    }
    counts
}

/// The cheapest node of every class by tree cost; with `share`, a child's cost is
/// divided among the roots that reach it (`counts`).
pub fn select(eg: &EG, costed: &Costed, share: Option<&HashMap<Id, f64>>) -> Selection {
    let mut best: HashMap<Id, (Cost, ENode)> = HashMap::new();
    let mut classes: Vec<Id> = costed.own.keys().copied().collect();
    classes.sort();
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for &class in &classes {
            for (node, own) in &costed.own[&class] {
                let mut cost = Cost {
                    nodes: 1.0,
                    ..Cost::default()
                };
                cost.add(own);
                let mut ok = true;
                for &c in node.children() {
                    let c = eg.find(c);
                    let Some((cc, _)) = best.get(&c) else {
                        ok = false;
                        break;
                    };
                    let k = share
                        .and_then(|m| m.get(&c).copied())
                        .unwrap_or(1.0)
                        .max(1.0);
                    cost.over += cc.over / k;
                    cost.per_call += cc.per_call / k;
                    cost.once += cc.once / k;
                    cost.written += cc.written / k;
                    cost.nodes += cc.nodes;
                }
                if !ok {
                    continue;
                }
                let better = match best.get(&class) {
                    None => true,
                    Some((old, _)) => cost < *old,
                };
                if better {
                    best.insert(class, (cost, node.clone()));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best.into_iter().map(|(c, (_, n))| (c, n)).collect()
}

/// Whether following the selection from `roots` never revisits a class on the current
/// path, and every class reached has a choice.
pub fn acyclic(eg: &EG, sel: &Selection, roots: &[Id]) -> bool {
    // 0 = unseen, 1 = on the path, 2 = done.
    let mut state: HashMap<Id, u8> = HashMap::new();
    fn visit(eg: &EG, sel: &Selection, c: Id, state: &mut HashMap<Id, u8>) -> bool {
        match state.get(&c) {
            Some(1) => return false,
            Some(_) => return true,
            None => {}
        }
        let Some(node) = sel.get(&c) else {
            return false;
        };
        state.insert(c, 1);
        for &k in node.children() {
            if !visit(eg, sel, eg.find(k), state) {
                return false;
            }
        }
        state.insert(c, 2);
        true
    }
    roots
        .iter()
        .all(|&r| visit(eg, sel, eg.find(r), &mut state))
}

/// DAG cost of a selection from `roots`: every reached class's own cost once, `nodes`
/// the number of classes reached. `None` for a cyclic or partial selection.
pub(super) fn dag_cost(eg: &EG, costed: &Costed, sel: &Selection, roots: &[Id]) -> Option<Cost> {
    if !acyclic(eg, sel, roots) {
        return None;
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    let mut cost = Cost::default();
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        let node = sel.get(&c)?;
        let own = costed.own[&c].iter().find(|(n, _)| n == node)?.1;
        cost.add(&own);
        cost.nodes += 1.0;
        stack.extend(node.children().iter().map(|&k| eg.find(k)));
    }
    Some(cost)
}

/// Local improvement of a selection by its DAG cost: one class at a time, another node
/// whose children all have a choice replaces the chosen one when the whole DAG from
/// `roots` gets cheaper, or as cheap with fewer classes. Tree-cost extraction, above all
/// with sharing discounts, can leave a needless split (a sum over an outer product where
/// the plain contraction costs the same); this removes it. Bounded passes.
pub fn polish(eg: &EG, costed: &Costed, mut sel: Selection, roots: &[Id]) -> Selection {
    const MAX_POLISH_PASSES: usize = 4;
    let Some(mut best) = dag_cost(eg, costed, &sel, roots) else {
        return sel;
    };
    for _ in 0..MAX_POLISH_PASSES {
        let mut improved = false;
        let mut classes: Vec<Id> = sel.keys().copied().collect();
        classes.sort();
        for class in classes {
            for (node, _) in &costed.own[&class] {
                if sel.get(&class) == Some(node)
                    || !node
                        .children()
                        .iter()
                        .all(|&k| sel.contains_key(&eg.find(k)))
                {
                    continue;
                }
                let old = sel.insert(class, node.clone());
                match dag_cost(eg, costed, &sel, roots) {
                    Some(c) if c < best => {
                        best = c;
                        improved = true;
                    }
                    _ => {
                        if let Some(o) = old {
                            sel.insert(class, o);
                        }
                    }
                }
            }
        }
        if !improved {
            break;
        }
    }
    sel
}

/// The model's total over a program, as a DAG: every expression reachable from a
/// statement counts once however many parents use it; `(per call, once)`. Reads of
/// results are free (their statements are counted themselves). `constants` are the
/// constant inputs.
pub fn program_cost(p: &Program, constants: &[TensorId]) -> (f64, f64) {
    statement_costs(p, constants)
        .iter()
        .fold((0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1))
}

/// [`program_cost`] split by statement, in statement order: an expression shared by
/// several statements counts in the first one.
pub fn statement_costs(p: &Program, constants: &[TensorId]) -> Vec<(f64, f64)> {
    statement_node_costs(p, constants, None)
        .iter()
        .map(|c| (c.per_call, c.once))
        .collect()
}

/// Every term of the model over a whole program (DAG, as [`program_cost`]) under a
/// memory limit, `nodes` left at 0: what `optimize` compares its candidates by.
pub fn program_rank(p: &Program, constants: &[TensorId], memory_limit: Option<f64>) -> Cost {
    let mut total = Cost::default();
    for c in statement_node_costs(p, constants, memory_limit) {
        total.add(&c);
    }
    total
}

fn statement_node_costs(
    p: &Program,
    constants: &[TensorId],
    memory_limit: Option<f64>,
) -> Vec<NodeCost> {
    let (mut eg, enc) = super::encoded_graph(p, constants);
    eg.rebuild();
    let mut model = CostModel::new(memory_limit);
    let mut seen = vec![false; p.exprs.len()];
    let mut out = Vec::with_capacity(p.stmts.len());
    for s in &p.stmts {
        let mut total = NodeCost::default();
        let mut stack = vec![s.value];
        while let Some(e) = stack.pop() {
            if std::mem::replace(&mut seen[e.index()], true) {
                continue;
            }
            let (Some(class), Some(node)) = (enc.expr_class[e.index()], &enc.expr_node[e.index()])
            else {
                continue;
            };
            let class = eg.find(class);
            let node = node.clone().map_children(|c| eg.find(c));
            total += model.node(&eg, class, &node);
            match &p.exprs[e] {
                Expr::Product { factors: k, .. } | Expr::Add(k) | Expr::Map { args: k, .. } => {
                    stack.extend(k.iter().copied())
                }
                Expr::Reduce { arg, .. } => stack.push(*arg),
                Expr::Ref { .. } | Expr::Const(_) => {}
            }
        }
        out.push(total);
    }
    out
}

/// Builds the output program from a selection: the input's indices, tensors and
/// outputs, and a fresh expression arena. Statements are kept unless their target was
/// inlined ([`super::lang::Encoded::inlined`]), is no output, is read by the input
/// program, and no kept statement uses its value any more (its definition was folded into
/// its readers, e.g. a factorised weight). Where a kept statement's value is used by a
/// later one, the later one reads the stored tensor (`T[L]`), as the user wrote it.
pub struct Rebuild<'a> {
    pub p: &'a Program,
    pub egraph: &'a EG,
    pub roots: &'a [Id],
    pub inlined: &'a [TensorId],
    pub spans: &'a BTreeMap<ENode, Span>,
}

impl Rebuild<'_> {
    pub fn run(&self, sel: &Selection) -> Program {
        let p = self.p;
        let eg = self.egraph;
        let roots: Vec<Id> = self.roots.iter().map(|&r| eg.find(r)).collect();
        let read: HashSet<TensorId> = p
            .exprs
            .iter()
            .filter_map(|(_, e)| match e {
                Expr::Ref { tensor, .. } => Some(*tensor),
                _ => None,
            })
            .collect();
        let droppable: Vec<bool> = p
            .stmts
            .iter()
            .map(|s| {
                self.inlined.contains(&s.target)
                    && !p.outputs.contains(&s.target)
                    && read.contains(&s.target)
            })
            .collect();
        // Which droppable statement (the first) has each root class.
        let mut by_root: HashMap<Id, usize> = HashMap::new();
        for (k, &r) in roots.iter().enumerate() {
            if self.inlined.contains(&p.stmts[k].target) {
                by_root.entry(r).or_insert(k);
            }
        }
        let mut kept: Vec<bool> = droppable.iter().map(|d| !d).collect();
        let mut stack: Vec<Id> = (0..roots.len())
            .filter(|&k| kept[k])
            .map(|k| roots[k])
            .collect();
        let mut seen = HashSet::new();
        while let Some(c) = stack.pop() {
            if !seen.insert(c) {
                continue;
            }
            if let Some(&k) = by_root.get(&c) {
                kept[k] = true;
            }
            if let Some(node) = sel.get(&c) {
                stack.extend(node.children().iter().map(|&k| eg.find(k)));
            }
        }
        let mut b = Builder {
            egraph: eg,
            sel,
            spans: self.spans,
            out: Program {
                indices: p.indices.clone(),
                tensors: p.tensors.clone(),
                exprs: Arena::default(),
                expr_spans: Vec::new(),
                stmts: Vec::new(),
                outputs: p.outputs.clone(),
            },
            memo: HashMap::new(),
            stored: HashMap::new(),
            reads: HashMap::new(),
        };
        for (k, s) in p.stmts.iter().enumerate() {
            if !kept[k] {
                continue;
            }
            let root = roots[k];
            let value = match b.memo.get(&root) {
                Some(&e) => e,
                None => b.build(root),
            };
            b.out.stmts.push(Stmt { value, ..s.clone() });
            if self.inlined.contains(&s.target) {
                b.stored
                    .entry(root)
                    .or_insert((s.target, s.indices.clone()));
            }
        }
        b.out
    }
}

struct Builder<'a> {
    egraph: &'a EG,
    sel: &'a Selection,
    spans: &'a BTreeMap<ENode, Span>,
    out: Program,
    /// e-class → its expression in `out` (only looked up, never iterated).
    memo: HashMap<Id, ExprId>,
    /// e-class → the kept statement already written that stores it.
    stored: HashMap<Id, (TensorId, Vec<IndexId>)>,
    /// e-class → the read of its stored tensor.
    reads: HashMap<Id, ExprId>,
}

impl Builder<'_> {
    /// Children first, so the arena is in dependency order. Terminates: `optimize` only
    /// rebuilds selections that [`acyclic`] accepted.
    fn build(&mut self, class: Id) -> ExprId {
        let class = self.egraph.find(class);
        if let Some((tensor, indices)) = self.stored.get(&class).cloned() {
            if let Some(&e) = self.reads.get(&class) {
                return e;
            }
            let node = ENode::Ref {
                tensor,
                indices: indices.clone(),
            };
            let span = self.spans.get(&node).copied();
            let e = self.out.add_expr(Expr::Ref { tensor, indices }, span);
            self.reads.insert(class, e);
            return e;
        }
        if let Some(&e) = self.memo.get(&class) {
            return e;
        }
        let node = self.sel[&class].clone();
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
