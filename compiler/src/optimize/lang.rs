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

/// Per-class facts: the free indices (sorted, distinct) and the dtype. Both are
/// invariant under every rewrite, which `merge` checks in debug builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub free: Vec<IndexId>,
    pub dtype: DType,
}

/// The analysis also owns the program facts that `make` and the cost model need.
#[derive(Clone, Debug, Default)]
pub struct IrAnalysis {
    /// Size of each index, by `IndexId`.
    pub sizes: Vec<u64>,
    /// dtype of each tensor, by `TensorId`.
    pub tensor_dtypes: Vec<DType>,
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
            },
            ENode::Const(_) => Data {
                free: Vec::new(),
                dtype: DType::F32,
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
                }
            }
            ENode::Add(_) | ENode::Map { .. } => Data {
                free: children_free(),
                dtype: children_dtype(),
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
        DidMerge(false, false)
    }
}

/// The input program inside an e-graph.
pub struct Encoded {
    /// The e-class of each statement's value, in statement order.
    pub roots: Vec<Id>,
    /// Each reachable original expression as a node, with its span, in encoding order:
    /// used to give extracted nodes that are unchanged their original span back.
    pub originals: Vec<(ENode, Option<Span>)>,
}

/// Adds every statement's value to `egraph` (one e-graph for the whole program, so equal
/// subterms of different statements land in the same class).
pub fn encode(p: &Program, egraph: &mut EGraph<ENode, IrAnalysis>) -> Encoded {
    let mut memo: Vec<Option<Id>> = vec![None; p.exprs.len()];
    let mut originals = Vec::new();
    let roots = p
        .stmts
        .iter()
        .map(|s| encode_expr(p, s.value, egraph, &mut memo, &mut originals))
        .collect();
    Encoded { roots, originals }
}

fn encode_expr(
    p: &Program,
    e: ExprId,
    egraph: &mut EGraph<ENode, IrAnalysis>,
    memo: &mut [Option<Id>],
    originals: &mut Vec<(ENode, Option<Span>)>,
) -> Id {
    if let Some(id) = memo[e.index()] {
        return id;
    }
    let mut enc = |c: &ExprId| encode_expr(p, *c, egraph, memo, originals);
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
    originals.push((node, p.expr_spans.get(e.index()).copied().flatten()));
    memo[e.index()] = Some(id);
    id
}
