//! The rewrites over products, as custom egg searchers/appliers.
//!
//! Products are variadic with canonically sorted operands, which egg's patterns cannot
//! match usefully, and every soundness condition below needs the free-index analysis of
//! several classes at once. So the searcher only selects e-classes holding a product
//! node, and each applier inspects the class's product nodes, checks its condition and
//! unions what it builds with the class. The Runner counts one application per union
//! that changed the e-graph.
//!
//! There is deliberately no commutativity/associativity rule: sorted operands make
//! commutativity free, and saturating associativity over n-ary products is exponential
//! (523k nodes / 44 s for 12 operands). Contraction order is `order::search`'s job.

use super::lang::{union_sorted, ENode, IrAnalysis};
use super::{constants, factor, share, softmax};
use crate::ir::IndexId;
use egg::{Applier, EGraph, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use std::collections::BTreeMap;

pub(super) type EG = EGraph<ENode, IrAnalysis>;

/// For a product that sums something: its summed indices, and for each factor (in
/// order) whose class holds a node `pick` accepts, the other factors and what `pick`
/// returned. Factors are canonical ids. The rules that rewrite one factor of a summing
/// product (`distribute`, `defer-division`) try these candidates in turn.
pub(super) type FactorCandidate<T> = (Vec<Id>, T);

pub(super) fn summing_factor_candidates<T>(
    eg: &EG,
    node: &ENode,
    pick: impl Fn(&ENode) -> Option<T>,
) -> Option<(Vec<IndexId>, Vec<FactorCandidate<T>>)> {
    let (factors, summed) = node.as_product()?;
    if summed.is_empty() {
        return None;
    }
    let factors: Vec<Id> = factors.iter().map(|&f| eg.find(f)).collect();
    let candidates = factors
        .iter()
        .enumerate()
        .filter_map(|(k, &f)| {
            let hit = eg[f].nodes.iter().find_map(&pick)?;
            let rest = factors
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != k)
                .map(|(_, &c)| c)
                .collect();
            Some((rest, hit))
        })
        .collect();
    Some((summed.to_vec(), candidates))
}

pub const FLATTEN: &str = "flatten-product";
pub const PUSH_SUM: &str = "push-sum";
pub const UNIT: &str = "unit-product";

/// Above this many independent summed-index groups in one product, [`push_sum`] pushes
/// them all in one node instead of one node per group: one at a time, iteration would
/// build every subset of pushed groups (2^k nodes).
const MAX_SEPARATE_PUSHES: usize = 3;

/// The rule set, in the order the report lists them.
pub fn rules() -> Vec<Rewrite<ENode, IrAnalysis>> {
    let rule = |name: &str, filter: NodeFilter, apply: NodeRewrite| {
        Rewrite::new(name, NodeClasses(filter), NodeApplier(apply))
            .expect("custom rules bind no pattern variables")
    };
    vec![
        rule(
            FLATTEN,
            |n| n.as_product().is_some(),
            |eg, c, n| on_product(eg, c, n, flatten),
        ),
        rule(
            PUSH_SUM,
            |n| {
                n.as_product()
                    .is_some_and(|(f, s)| f.len() >= 2 && !s.is_empty())
            },
            |eg, c, n| on_product(eg, c, n, push_sum),
        ),
        rule(
            UNIT,
            |n| {
                n.as_product()
                    .is_some_and(|(f, s)| f.len() == 1 && s.is_empty())
            },
            |eg, c, n| on_product(eg, c, n, unit),
        ),
        rule(factor::FACTOR, factor::factor_filter, factor::factor),
        rule(
            factor::DISTRIBUTE,
            factor::distribute_filter,
            factor::distribute,
        ),
        rule(share::SHARE, share::filter, share::share),
        rule(softmax::DEFER_DIV, softmax::filter, softmax::defer_division),
        rule(constants::FOLD, constants::filter, constants::fold),
    ]
}

/// Which nodes a rule may apply to; a cheap pre-filter.
pub(super) type NodeFilter = fn(&ENode) -> bool;

/// Given a node of e-class `class`, adds equal nodes and returns their classes, to be
/// unioned with `class`.
pub(super) type NodeRewrite = fn(&mut EG, Id, &ENode) -> Vec<Id>;

/// Given a product node (factors, summed) of e-class `class`, adds equal nodes.
type ProductRewrite = fn(&mut EG, Id, &[Id], &[IndexId]) -> Vec<Id>;

fn on_product(eg: &mut EG, class: Id, node: &ENode, f: ProductRewrite) -> Vec<Id> {
    match node.as_product() {
        Some((factors, summed)) => f(eg, class, factors, summed),
        None => Vec::new(),
    }
}

/// Matches each e-class that holds a node accepted by the filter.
struct NodeClasses(NodeFilter);

impl Searcher<ENode, IrAnalysis> for NodeClasses {
    fn search_eclass_with_limit(
        &self,
        egraph: &EG,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, ENode>> {
        let hit = limit > 0 && egraph[eclass].nodes.iter().any(|n| (self.0)(n));
        hit.then(|| SearchMatches {
            eclass,
            substs: vec![Subst::with_capacity(0)],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        Vec::new()
    }
}

/// Runs a [`NodeRewrite`] on every node of the matched class that the filter accepts.
struct NodeApplier(NodeRewrite);

impl Applier<ENode, IrAnalysis> for NodeApplier {
    fn apply_one(
        &self,
        egraph: &mut EG,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<ENode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        // An earlier rule in this iteration may have merged the class: work on its root.
        let class = egraph.find(eclass);
        let nodes = egraph[class].nodes.clone();
        let mut changed = Vec::new();
        for node in &nodes {
            for id in (self.0)(egraph, class, node) {
                if egraph.union(class, id) {
                    changed.push(egraph.find(id));
                }
            }
        }
        changed
    }
}

/// The flattest product node of a class (most factors; the least node among equals, for
/// determinism). Rules that build sub-products from a product (`share`, `constants`)
/// start only from it: the nodes they build are less flat, so they never seed further
/// applications, which keeps those rules to a few nodes per class.
pub(super) fn flattest(eg: &EG, class: Id) -> Option<ENode> {
    eg[class]
        .nodes
        .iter()
        .filter_map(|n| n.as_product().map(|(f, _)| (f.len(), n)))
        .max_by(|(fa, a), (fb, b)| fa.cmp(fb).then_with(|| b.cmp(a)))
        .map(|(_, n)| n.clone())
}

pub(super) fn frees(egraph: &EG, factors: &[Id]) -> Vec<Vec<IndexId>> {
    factors
        .iter()
        .map(|&f| egraph[f].data.free.clone())
        .collect()
}

/// The indices of `summed` free in some factor of `group` and in no factor of `others`:
/// those a sub-product of `group` can sum on its own (constant folding, sharing).
pub(super) fn private_sums(
    egraph: &EG,
    summed: &[IndexId],
    group: &[Id],
    others: &[Id],
) -> Vec<IndexId> {
    let (g_free, o_free) = (frees(egraph, group), frees(egraph, others));
    let in_any = |fr: &[Vec<IndexId>], s: &IndexId| fr.iter().any(|f| f.binary_search(s).is_ok());
    summed
        .iter()
        .copied()
        .filter(|s| in_any(&g_free, s) && !in_any(&o_free, s))
        .collect()
}

/// Rule 1, flatten nested products:
/// `Product{[Product{F1, S1}, F2...], S2}  =  Product{[F1..., F2...], S1 ∪ S2}`.
///
/// Sound only when the inner sum captures nothing: no index of `S1` is free in any
/// other factor (`F2`) nor summed outside (`S2`). Otherwise the inner index is a
/// different variable that happens to share a name, e.g.
/// `(sum_j A[i,j] B[j]) * (sum_j C[j])` is not `sum_j A[i,j] B[j] C[j]`.
///
/// All factors are flattened in one new node (one at a time, iteration would build every
/// subset of flattened factors). For each factor the flattest sound product node of its
/// class is used; flattening the i-th factor is checked against the summed set grown by
/// the factors already flattened, so two inner sums over the same index never merge.
/// Nodes that mention their own class or the outer class (cycles left by other unions)
/// are skipped: flattening them would only rebuild the same equation.
fn flatten(egraph: &mut EG, class: Id, factors: &[Id], summed: &[IndexId]) -> Vec<Id> {
    let factors: Vec<Id> = factors.iter().map(|&f| egraph.find(f)).collect();
    let frees = frees(egraph, &factors);
    let mut new_summed = summed.to_vec();
    let mut new_factors = Vec::new();
    let mut changed = false;
    for (i, &f) in factors.iter().enumerate() {
        let captures = |s: &IndexId| {
            new_summed.contains(s)
                || frees
                    .iter()
                    .enumerate()
                    .any(|(k, fr)| k != i && fr.binary_search(s).is_ok())
        };
        let best = egraph[f]
            .nodes
            .iter()
            .filter_map(ENode::as_product)
            .filter(|(f1, s1)| {
                !f1.iter().any(|&c| [f, class].contains(&egraph.find(c)))
                    && !s1.iter().any(captures)
            })
            // Most factors first; among equals the smallest node, for determinism.
            .max_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| b.cmp(a)));
        match best {
            Some((f1, s1)) => {
                new_factors.extend_from_slice(f1);
                new_summed.extend_from_slice(s1);
                changed = true;
            }
            None => new_factors.push(f),
        }
    }
    if !changed {
        return Vec::new();
    }
    new_summed.sort_unstable();
    vec![egraph.add(ENode::Product {
        summed: new_summed,
        factors: new_factors,
    })]
}

fn is_subset(a: &[usize], b: &[usize]) -> bool {
    a.iter().all(|x| b.binary_search(x).is_ok())
}

fn disjoint(a: &[usize], b: &[usize]) -> bool {
    a.iter().all(|x| b.binary_search(x).is_err())
}

/// Rule 2, push a sum inward: in `Product{F, S}`, the summed indices that occur (are
/// free) only in the factors `G ⊂ F` can be summed before multiplying by the rest:
/// `Product{F, S}  =  Product{[Product{G, S_G}] ++ (F \ G), S \ S_G}`.
///
/// Sound because every index of `S_G` occurs in `G` only, so the other factors are
/// constants for that sum (distributivity); `S_G` contains *all* summed indices whose
/// occurrences lie within `G`, so each outer summed index still occurs in an outer factor.
///
/// To keep the e-graph small and leave contraction order to `order::search`:
/// - summed indices are grouped by the exact set of factors they occur in, and only a
///   group's set `G` that is a strict subset of the factors is pushed, with at most one
///   new node per group;
/// - `G` must nest with every other group's set (contain it, lie inside it or be disjoint
///   from it). Sets that overlap partially (a chain `A[i,j] B[j,k] C[k,l]`) mean a choice
///   of contraction order, which is not this pass's to make;
/// - only maximal such sets are pushed here (the nested ones are pushed inside the new
///   sub-product), and past [`MAX_SEPARATE_PUSHES`] groups all are pushed in one node.
fn push_sum(egraph: &mut EG, _class: Id, factors: &[Id], summed: &[IndexId]) -> Vec<Id> {
    let n = factors.len();
    let frees = frees(egraph, factors);
    let mut groups: BTreeMap<Vec<usize>, Vec<IndexId>> = BTreeMap::new();
    for &s in summed {
        let occ = (0..n)
            .filter(|&k| frees[k].binary_search(&s).is_ok())
            .collect();
        groups.entry(occ).or_default().push(s);
    }
    let sets: Vec<&[usize]> = groups
        .keys()
        .map(|g| &g[..])
        .filter(|g| !g.is_empty())
        .collect();
    let nests = |g: &[usize], h: &[usize]| is_subset(g, h) || is_subset(h, g) || disjoint(g, h);
    let pushable: Vec<&[usize]> = sets
        .iter()
        .copied()
        .filter(|g| g.len() < n && sets.iter().all(|h| nests(g, h)))
        .collect();
    let maximal: Vec<&[usize]> = pushable
        .iter()
        .copied()
        .filter(|g| {
            !pushable
                .iter()
                .any(|h| h.len() > g.len() && is_subset(g, h))
        })
        .collect();
    let plans: Vec<Vec<&[usize]>> = if maximal.len() <= MAX_SEPARATE_PUSHES {
        maximal.iter().map(|g| vec![*g]).collect()
    } else {
        vec![maximal]
    };

    let mut out = Vec::new();
    for plan in plans {
        let mut outer_factors = Vec::new();
        let mut pushed_sums = Vec::new();
        let mut pushed = vec![false; n];
        for g in plan {
            let inner_summed = union_sorted(
                groups
                    .iter()
                    .filter(|(h, _)| !h.is_empty() && is_subset(h, g))
                    .map(|(_, s)| &s[..]),
            );
            pushed_sums.extend_from_slice(&inner_summed);
            for &k in g {
                pushed[k] = true;
            }
            outer_factors.push(egraph.add(ENode::Product {
                summed: inner_summed,
                factors: g.iter().map(|&k| factors[k]).collect(),
            }));
        }
        outer_factors.extend((0..n).filter(|&k| !pushed[k]).map(|k| factors[k]));
        let outer_summed = summed
            .iter()
            .filter(|s| !pushed_sums.contains(s))
            .copied()
            .collect();
        out.push(egraph.add(ENode::Product {
            summed: outer_summed,
            factors: outer_factors,
        }));
    }
    out
}

/// Rule 3, a product of one factor summing nothing is that factor:
/// `Product{[x], {}}  =  x`. Always sound (same value, free indices and dtype).
fn unit(_egraph: &mut EG, _class: Id, factors: &[Id], summed: &[IndexId]) -> Vec<Id> {
    match (factors, summed) {
        ([x], []) => vec![*x],
        _ => Vec::new(),
    }
}
