//! The e-graph language mirroring the IR, its analysis, and the encoding of a [`Program`].
//!
//! One e-node per IR expression kind. The node carries its non-child data (tensor,
//! indices, op) inline, so two `Ref`s of the same tensor with the same indices, or two
//! products of the same factors over the same summed indices, hash-cons into one e-class:
//! that is where common-subexpression sharing across statements comes from.

use crate::ir::{Expr, ExprId, IndexId, MapOp, Program, ReduceOp, TensorId};
use egg::{Analysis, DidMerge, EGraph, Id, Language};
use einc_frontend::ein::ast::DType;
use einc_frontend::Span;

/// An IR expression as an e-node.
///
/// `Product` is n-ary with its factor list kept sorted by e-class id (see
/// [`Language::update_children`] below): operand order carries no meaning in the IR, and
/// a canonical order makes commutativity free without a rewrite rule (saturating
/// commutativity/associativity is exponential in the number of operands).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ENode {
    Ref {
        tensor: TensorId,
        indices: Vec<IndexId>,
    },
    /// The literal's bit pattern, so the node is `Eq + Hash` (`0.0` and `-0.0` stay
    /// distinct, which only loses sharing, never soundness).
    Const(u64),
    /// `summed` is sorted and distinct.
    Product {
        summed: Vec<IndexId>,
        factors: Vec<Id>,
    },
    /// Terms in source order: not reordered, so float summation order is kept.
    Add(Vec<Id>),
    Map {
        op: MapOp,
        args: Vec<Id>,
    },
    /// `indices` is sorted and distinct; `arg` is an array so `children` can borrow it.
    Reduce {
        op: ReduceOp,
        indices: Vec<IndexId>,
        arg: [Id; 1],
    },
}

impl ENode {
    /// The factors and summed indices of a product node.
    pub fn as_product(&self) -> Option<(&[Id], &[IndexId])> {
        match self {
            ENode::Product { summed, factors } => Some((factors, summed)),
            _ => None,
        }
    }
}

impl Language for ENode {
    type Discriminant = std::mem::Discriminant<ENode>;

    fn discriminant(&self) -> Self::Discriminant {
        std::mem::discriminant(self)
    }

    fn matches(&self, other: &Self) -> bool {
        use ENode::*;
        match (self, other) {
            (Ref { .. }, Ref { .. }) | (Const(_), Const(_)) => self == other,
            (
                Product {
                    summed: s1,
                    factors: f1,
                },
                Product {
                    summed: s2,
                    factors: f2,
                },
            ) => s1 == s2 && f1.len() == f2.len(),
            (Add(a), Add(b)) => a.len() == b.len(),
            (Map { op: o1, args: a1 }, Map { op: o2, args: a2 }) => {
                o1 == o2 && a1.len() == a2.len()
            }
            (
                Reduce {
                    op: o1,
                    indices: i1,
                    ..
                },
                Reduce {
                    op: o2,
                    indices: i2,
                    ..
                },
            ) => o1 == o2 && i1 == i2,
            _ => false,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            ENode::Ref { .. } | ENode::Const(_) => &[],
            ENode::Product { factors, .. } => factors,
            ENode::Add(args) | ENode::Map { args, .. } => args,
            ENode::Reduce { arg, .. } => arg,
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            ENode::Ref { .. } | ENode::Const(_) => &mut [],
            ENode::Product { factors, .. } => factors,
            ENode::Add(args) | ENode::Map { args, .. } => args,
            ENode::Reduce { arg, .. } => arg,
        }
    }

    /// egg canonicalises every node through this method (on `add`, `lookup` and in
    /// `rebuild`), so re-sorting the factors here keeps products canonical even after
    /// unions change their children's ids.
    fn update_children<F: FnMut(Id) -> Id>(&mut self, mut f: F) {
        for c in self.children_mut() {
            *c = f(*c);
        }
        if let ENode::Product { factors, .. } = self {
            factors.sort_unstable();
        }
    }
}

/// Per-class facts: the free indices (sorted, distinct) and the dtype, both invariant
/// under every rewrite (which `merge` checks in debug builds), and whether the value
/// depends on constant inputs (fixed weights) only. A class is constant as soon as one of
/// its nodes is: all nodes denote the same value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub free: Vec<IndexId>,
    pub dtype: DType,
    pub constant: bool,
}

/// The analysis also owns the program facts that `make` and the cost model need.
#[derive(Clone, Debug, Default)]
pub struct IrAnalysis {
    /// Size of each index, by `IndexId`.
    pub sizes: Vec<u64>,
    /// dtype of each tensor, by `TensorId`.
    pub tensor_dtypes: Vec<DType>,
    /// Per tensor: an input declared constant (a weight whose precomputation is paid
    /// once), or a result computed from constants only. Results are marked while the
    /// program is encoded, before any later statement reads them.
    pub constant_tensors: Vec<bool>,
    /// The classes of the statements' values (possibly stale ids: compare through
    /// `find`), for rules that relate whole statements.
    pub statement_roots: Vec<Id>,
}

/// Sorted, deduplicated union of sorted index lists.
pub fn union_sorted<'a>(lists: impl IntoIterator<Item = &'a [IndexId]>) -> Vec<IndexId> {
    let mut v: Vec<IndexId> = lists.into_iter().flatten().copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl Analysis<ENode> for IrAnalysis {
    type Data = Data;

    fn make(egraph: &mut EGraph<ENode, Self>, enode: &ENode, _id: Id) -> Data {
        let data = |c: &Id| &egraph[*c].data;
        let children_free = || union_sorted(enode.children().iter().map(|c| &data(c).free[..]));
        let children_constant = || enode.children().iter().all(|c| data(c).constant);
        let children_dtype = || {
            enode
                .children()
                .iter()
                .map(|c| data(c).dtype)
                .reduce(DType::promote)
                .unwrap_or(DType::F32)
        };
        match enode {
            ENode::Ref { tensor, indices } => Data {
                free: union_sorted([&indices[..]]),
                dtype: egraph.analysis.tensor_dtypes[tensor.index()],
                constant: egraph.analysis.constant_tensors[tensor.index()],
            },
            ENode::Const(_) => Data {
                free: Vec::new(),
                dtype: DType::F32,
                constant: true,
            },
            ENode::Product { summed, .. }
            | ENode::Reduce {
                indices: summed, ..
            } => {
                let mut free = children_free();
                free.retain(|i| summed.binary_search(i).is_err());
                Data {
                    free,
                    dtype: children_dtype(),
                    constant: children_constant(),
                }
            }
            ENode::Add(_) | ENode::Map { .. } => Data {
                free: children_free(),
                dtype: children_dtype(),
                constant: children_constant(),
            },
        }
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        // Every rewrite preserves free indices and dtype; a mismatch is an unsound rule.
        debug_assert_eq!(
            a.free, b.free,
            "merged e-classes with different free indices"
        );
        debug_assert_eq!(a.dtype, b.dtype, "merged e-classes with different dtypes");
        let (was_a, was_b) = (a.constant, b.constant);
        a.constant |= b.constant;
        DidMerge(a.constant != was_a, a.constant != was_b)
    }
}

/// The input program inside an e-graph.
pub struct Encoded {
    /// The e-class of each statement's value, in statement order.
    pub roots: Vec<Id>,
    /// Result tensors whose reads `T[L]` (with exactly the statement's left-hand side
    /// `L`) were unioned with the statement's value: the class then holds both the
    /// stored tensor and the expression defining it, so later rewrites can inline the
    /// definition (the factorised form) or keep it (the materialised form). Extraction
    /// never picks such a `Ref` node; `rebuild` writes it back where the statement is
    /// kept.
    pub inlined: Vec<TensorId>,
    /// Each reachable original expression as a node, with its span, in encoding order:
    /// used to give extracted nodes that are unchanged their original span back.
    pub originals: Vec<(ENode, Option<Span>)>,
    /// Per input expression: its e-class and its node (children as encoded), for
    /// costing the input program as it is.
    pub expr_class: Vec<Option<Id>>,
    pub expr_node: Vec<Option<ENode>>,
}

/// Adds every statement's value to `egraph` (one e-graph for the whole program, so equal
/// subterms of different statements land in the same class).
pub fn encode(p: &Program, egraph: &mut EGraph<ENode, IrAnalysis>) -> Encoded {
    let mut memo: Vec<Option<Id>> = vec![None; p.exprs.len()];
    let mut nodes: Vec<Option<ENode>> = vec![None; p.exprs.len()];
    let mut originals = Vec::new();
    let mut roots = Vec::with_capacity(p.stmts.len());
    let mut inlined = Vec::new();
    for s in &p.stmts {
        let root = encode_expr(p, s.value, egraph, &mut memo, &mut nodes, &mut originals);
        roots.push(root);
        let root = egraph.find(root);
        if egraph[root].data.constant {
            egraph.analysis.constant_tensors[s.target.index()] = true;
        }
        // Sound: the statement stores exactly this value under these indices, so the
        // read `T[L]` and the value are equal terms with the same free indices. A read
        // with other indices (a transpose, a diagonal) would need renaming and stays a
        // plain leaf; so does a target whose declared dtype differs from the value's.
        let t = &p.tensors[s.target];
        if t.dtype == egraph[root].data.dtype {
            let read = egraph.add(ENode::Ref {
                tensor: s.target,
                indices: s.indices.clone(),
            });
            egraph.union(read, root);
            inlined.push(s.target);
        }
    }
    egraph.rebuild();
    egraph.analysis.statement_roots = roots.clone();
    Encoded {
        roots,
        inlined,
        originals,
        expr_class: memo,
        expr_node: nodes,
    }
}

fn encode_expr(
    p: &Program,
    e: ExprId,
    egraph: &mut EGraph<ENode, IrAnalysis>,
    memo: &mut [Option<Id>],
    nodes: &mut [Option<ENode>],
    originals: &mut Vec<(ENode, Option<Span>)>,
) -> Id {
    if let Some(id) = memo[e.index()] {
        return id;
    }
    let mut enc = |c: &ExprId| encode_expr(p, *c, egraph, memo, nodes, originals);
    let sorted = |v: &[IndexId]| union_sorted([v]);
    let node = match &p.exprs[e] {
        Expr::Ref { tensor, indices } => ENode::Ref {
            tensor: *tensor,
            indices: indices.clone(),
        },
        Expr::Const(c) => ENode::Const(c.to_bits()),
        Expr::Product { factors, summed } => ENode::Product {
            summed: sorted(summed),
            factors: factors.iter().map(&mut enc).collect(),
        },
        Expr::Add(args) => ENode::Add(args.iter().map(&mut enc).collect()),
        Expr::Map { op, args } => ENode::Map {
            op: *op,
            args: args.iter().map(&mut enc).collect(),
        },
        Expr::Reduce { op, indices, arg } => ENode::Reduce {
            op: *op,
            indices: sorted(indices),
            arg: [enc(arg)],
        },
    };
    let id = egraph.add(node.clone());
    originals.push((node.clone(), p.expr_spans.get(e.index()).copied().flatten()));
    nodes[e.index()] = Some(node);
    memo[e.index()] = Some(id);
    id
}
