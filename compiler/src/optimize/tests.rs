//! Tests of the e-graph pass. Every optimised program goes through
//! [`check`](super::testkit::check): verified, evaluated against its input, re-optimised
//! for determinism.

use super::testkit::*;
use super::*;
use crate::ir::*;
use einc_frontend::Span;
use std::time::Instant;

#[test]
fn flatten_nested_product_with_inner_sum() {
    // X[i] = (sum_j A[i,j] B[j]) * C[i]: j is not used outside, so flattening is sound.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 4));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j]),
        b.input("C", &[i]),
    );
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j]), b.r(tc, &[i]));
    let inner = b.prod(&[a, bb], &[j]);
    let outer = b.prod(&[inner, c], &[]);
    b.stmt("X", &[i], outer);
    let (eg, roots) = saturate(&b.0);
    assert!(products(&eg, roots[0]).contains(&(3, vec![j])));
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    assert!(fired(&report, rules::FLATTEN) >= 1);
}

#[test]
fn flatten_chosen_when_inner_sums_nothing() {
    // (A[i] * B[i]) * C[i] costs the same either way; one flat product is fewer nodes.
    let mut b = B::default();
    let i = b.idx("i", 5);
    let ts: Vec<TensorId> = ["A", "B", "C"].iter().map(|n| b.input(n, &[i])).collect();
    let rs: Vec<ExprId> = ts.iter().map(|&t| b.r(t, &[i])).collect();
    let inner = b.prod(&rs[..2], &[]);
    let outer = b.prod(&[inner, rs[2]], &[]);
    b.stmt("X", &[i], outer);
    let (out, _) = check(&b.0, &OptimizeConfig::default());
    let (factors, summed) = product_of(&out, out.stmts[0].value);
    assert_eq!((factors.len(), summed.len()), (3, 0));
    assert!(factors
        .iter()
        .all(|&f| matches!(out.exprs[f], Expr::Ref { .. })));
}

#[test]
fn flatten_refused_when_inner_index_is_captured() {
    // X[i] = sum_j (sum_j A[i,j] B[j]) * C[j]: the two j's are different variables.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 4));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j]),
        b.input("C", &[j]),
    );
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j]), b.r(tc, &[j]));
    let inner = b.prod(&[a, bb], &[j]);
    let outer = b.prod(&[inner, c], &[j]);
    b.stmt("X", &[i], outer);
    let (eg, roots) = saturate(&b.0);
    // Sound rewrites exist ((sum_j A B) * (sum_j C), then flattening only the first sum),
    // but A[i,j] and C[j] never meet in one product: that would merge the two j's.
    assert!(products(&eg, roots[0]).contains(&(2, vec![])));
    assert!(!together(
        &eg,
        roots[0],
        ref_node(ta, &[i, j]),
        ref_node(tc, &[j])
    ));
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    // (sum_j A B) = 3*4*2 = 24, then C's private j summed by a unary step (4) and the
    // product over i (3): the planner sums C first in either form.
    assert_eq!((report.cost_before, report.cost_after), (31.0, 31.0));
}

#[test]
fn two_inner_sums_over_the_same_index_do_not_merge() {
    // (sum_k A[i,k]) * (sum_k B[i,k]) is not sum_k A[i,k] B[i,k]: flattening both
    // factors at once must stop at the second.
    let mut b = B::default();
    let (i, k) = (b.idx("i", 3), b.idx("k", 4));
    let (ta, tb) = (b.input("A", &[i, k]), b.input("B", &[i, k]));
    let (a, bb) = (b.r(ta, &[i, k]), b.r(tb, &[i, k]));
    let (sa, sb) = (b.prod(&[a], &[k]), b.prod(&[bb], &[k]));
    let outer = b.prod(&[sa, sb], &[]);
    b.stmt("X", &[i], outer);
    let (eg, roots) = saturate(&b.0);
    // Flattening one of them is sound: sum_k A[i,k] * (sum_k B[i,k]).
    assert!(products(&eg, roots[0]).contains(&(2, vec![k])));
    assert!(!together(
        &eg,
        roots[0],
        ref_node(ta, &[i, k]),
        ref_node(tb, &[i, k])
    ));
    check(&b.0, &OptimizeConfig::default());
}

#[test]
fn push_sum_separates_independent_sums() {
    // X[i] = sum_{j,k} A[i,j] B[j] C[k]  ->  (sum_j A[i,j] B[j]) * (sum_k C[k])
    let mut b = B::default();
    let (i, j, k) = (b.idx("i", 8), b.idx("j", 8), b.idx("k", 8));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j]),
        b.input("C", &[k]),
    );
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j]), b.r(tc, &[k]));
    let v = b.prod(&[a, bb, c], &[j, k]);
    b.stmt("X", &[i], v);
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    assert!(fired(&report, rules::PUSH_SUM) >= 2);
    // The pushed form is in the e-graph: (sum_j A B) * (sum_k C) over i.
    let (eg, roots) = saturate(&b.0);
    assert!(products(&eg, roots[0]).contains(&(2, vec![])));
    // The planner sums C's private k by a unary step before any pair in both forms, so
    // both cost 8*8*2 (A.B) + 8 (sum C) + 8 (outer) = 144 and the flat one (fewer nodes)
    // stays.
    assert_eq!((report.cost_before, report.cost_after), (144.0, 144.0));
}

#[test]
fn push_sum_leaves_overlapping_sums_to_order_search() {
    // sum_{j,k} A[i,j] B[j,k] C[k,l]: j and k occur in overlapping factor sets; pushing
    // either would fix a contraction order.
    let mut b = B::default();
    let ix: Vec<IndexId> = ["i", "j", "k", "l"].iter().map(|n| b.idx(n, 4)).collect();
    let ts: Vec<TensorId> = (0..3)
        .map(|m| b.input(&format!("M{m}"), &ix[m..m + 2]))
        .collect();
    let rs: Vec<ExprId> = (0..3).map(|m| b.r(ts[m], &ix[m..m + 2])).collect();
    let v = b.prod(&rs, &ix[1..3]);
    b.stmt("X", &[ix[0], ix[3]], v);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(report.stop_reason, "saturated");
    assert_eq!(fired(&report, rules::PUSH_SUM), 0);
    // Three Refs and the product, plus the read X[i, l] unioned with the product.
    assert_eq!(report.nodes, 5);
    assert_eq!(format!("{:?}", out.exprs), format!("{:?}", b.0.exprs));
}

#[test]
fn push_sum_does_many_independent_groups_in_one_node() {
    // X[i] = sum_{k1..k6} A1[i,k1] ... A6[i,k6]: six independent single-factor sums.
    // Pushed one at a time this would make 2^6 nodes in the root class.
    let mut b = B::default();
    let i = b.idx("i", 3);
    let mut rs = Vec::new();
    let mut ks = Vec::new();
    for m in 0..6 {
        let k = b.idx(&format!("k{m}"), 5);
        let t = b.input(&format!("A{m}"), &[i, k]);
        rs.push(b.r(t, &[i, k]));
        ks.push(k);
    }
    let v = b.prod(&rs, &ks);
    b.stmt("X", &[i], v);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(report.stop_reason, "saturated");
    assert!(report.nodes < 30, "{report:?}");
    // All six sums pushed in one node; the flat product costs the same to the planner
    // (it sums private indices first) and has fewer nodes.
    let (eg, roots) = saturate(&b.0);
    assert!(products(&eg, roots[0]).contains(&(6, vec![])));
    let (factors, summed) = product_of(&out, out.stmts[0].value);
    assert_eq!((factors.len(), summed.len()), (6, 6));
}

#[test]
fn unit_product_is_its_factor() {
    // T[j,i] = A[i,j] written as a one-factor product: the Ref itself is the value.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 2), b.idx("j", 3));
    let ta = b.input("A", &[i, j]);
    let a = b.r(ta, &[i, j]);
    let v = b.prod(&[a], &[]);
    b.stmt("T", &[j, i], v);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(fired(&report, rules::UNIT), 1);
    assert_eq!(out.exprs.len(), 1);
    assert!(matches!(out.exprs[out.stmts[0].value], Expr::Ref { .. }));
    // The Ref is the original expression 0: its span is kept.
    assert_eq!(out.expr_spans, vec![Some(Span::new(0, 1))]);
}

#[test]
fn equal_products_in_two_statements_share_one_expr() {
    // X[i] = sum_j A[i,j] B[j];  Y[i] = sum_j B[j] A[i,j] (operands in the other order,
    // separate Ref expressions): one e-class, so one ExprId after extraction.
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 4));
    let (ta, tb) = (b.input("A", &[i, j]), b.input("B", &[j]));
    let (a1, b1) = (b.r(ta, &[i, j]), b.r(tb, &[j]));
    let x = b.prod(&[a1, b1], &[j]);
    b.stmt("X", &[i], x);
    let (b2, a2) = (b.r(tb, &[j]), b.r(ta, &[i, j]));
    let y = b.prod(&[b2, a2], &[j]);
    b.stmt("Y", &[i], y);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(out.stmts[0].value, out.stmts[1].value);
    assert_eq!(out.exprs.len(), 3);
    // 3*4*2 per product: computed twice before, once after.
    assert_eq!(report.cost_before, 48.0);
    assert_eq!(report.cost_after, 24.0);
}

/// `n` matrices M_m[i_m, i_{m+1}]: one flat einsum, or nested left-deep. Sizes 2 and 3
/// alternate, so the reference evaluator's loop over all 13 indices of the flat einsum
/// stays small (2^7 * 3^6 points).
fn chain(n: usize, nested: bool) -> Program {
    let mut b = B::default();
    let ix: Vec<IndexId> = (0..=n)
        .map(|m| b.idx(&format!("i{m}"), 2 + (m % 2) as u64))
        .collect();
    let rs: Vec<ExprId> = (0..n)
        .map(|m| {
            let t = b.input(&format!("M{m}"), &ix[m..m + 2]);
            b.r(t, &ix[m..m + 2])
        })
        .collect();
    let v = if nested {
        let mut acc = rs[0];
        for m in 1..n {
            acc = b.prod(&[acc, rs[m]], &[ix[m]]);
        }
        acc
    } else {
        b.prod(&rs, &ix[1..n])
    };
    b.stmt("X", &[ix[0], ix[n]], v);
    b.0
}

#[test]
fn twelve_factor_chain_is_fast_and_small() {
    for nested in [false, true] {
        let p = chain(12, nested);
        let t = Instant::now();
        let (_, report) = check(&p, &OptimizeConfig::default());
        let elapsed = t.elapsed();
        eprintln!("chain 12 nested={nested}: {report:?}, check() incl. 2 runs: {elapsed:?}");
        assert!(report.nodes < 5000, "{report:?}");
        assert_eq!(report.stop_reason, "saturated");
        let t = Instant::now();
        optimize(&p, &OptimizeConfig::default());
        eprintln!("chain 12 nested={nested}: optimize alone {:?}", t.elapsed());
        assert!(t.elapsed().as_millis() < 1000, "{:?}", t.elapsed());
    }
}

#[test]
fn runner_limits_are_reported() {
    let p = chain(12, true);
    let tiny = OptimizeConfig {
        node_limit: 30,
        ..OptimizeConfig::default()
    };
    assert_eq!(check(&p, &tiny).1.stop_reason, "node limit 30");
    let one = OptimizeConfig {
        iter_limit: 1,
        ..OptimizeConfig::default()
    };
    let (_, r) = check(&p, &one);
    assert_eq!(
        (r.stop_reason.as_str(), r.iterations),
        ("iteration limit", 1)
    );
}

#[test]
fn softmax_shaped_program_passes_through() {
    // M[i] = max_j S[i,j]; E[i,j] = exp(S[i,j] - M[i]); Z[i] = sum_j E[i,j];
    // P[i,j] = E[i,j] / Z[i]; and O[i] = sum_j P[i,j] * 1.0 (a Const factor).
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 5));
    let ts = b.input("S", &[i, j]);
    let s = b.r(ts, &[i, j]);
    let mx = b.add(Expr::Reduce {
        op: ReduceOp::Max,
        indices: vec![j],
        arg: s,
    });
    let tm = b.stmt("M", &[i], mx);
    let m = b.r(tm, &[i]);
    let d = b.add(Expr::Map {
        op: MapOp::Sub,
        args: vec![s, m],
    });
    let e = b.add(Expr::Map {
        op: MapOp::Exp,
        args: vec![d],
    });
    let te = b.stmt("E", &[i, j], e);
    let e1 = b.r(te, &[i, j]);
    let z = b.prod(&[e1], &[j]);
    let tz = b.stmt("Z", &[i], z);
    let (e2, z1) = (b.r(te, &[i, j]), b.r(tz, &[i]));
    let div = b.add(Expr::Map {
        op: MapOp::Div,
        args: vec![e2, z1],
    });
    let tp = b.stmt("P", &[i, j], div);
    let (p1, one) = (b.r(tp, &[i, j]), b.add(Expr::Const(1.0)));
    let o = b.prod(&[p1, one], &[j]);
    let sum = b.add(Expr::Add(vec![o, z1]));
    b.stmt("O", &[i], sum);
    let (out, _) = check(&b.0, &OptimizeConfig::default());
    // E[i,j] is read twice; after hash-consing it is one expression.
    let refs_e = out
        .exprs
        .iter()
        .filter(|(_, x)| matches!(x, Expr::Ref { tensor, .. } if *tensor == te))
        .count();
    assert_eq!(refs_e, 1);
}

#[test]
fn random_programs_keep_their_values() {
    let (mut max_nodes, mut improved, mut saturated) = (0, 0, 0);
    for seed in 0..300 {
        let p = random_program(seed);
        let (_, r) = check(&p, &OptimizeConfig::default());
        max_nodes = max_nodes.max(r.nodes);
        improved += usize::from(r.cost_after < r.cost_before);
        saturated += usize::from(r.stop_reason == "saturated");
    }
    eprintln!(
        "random programs: max nodes {max_nodes}, cheaper after {improved}, saturated {saturated} of 300"
    );
    assert!(improved > 0);
}

#[test]
fn random_programs_keep_their_values_with_the_lp_extractor() {
    // Every candidate is checked (values, determinism); the integer program must solve
    // each graph in time and never end worse than the greedy extraction.
    let lp = OptimizeConfig {
        extractor: Extractor::Lp,
        ..OptimizeConfig::default()
    };
    let (mut won, mut proven) = (0, 0);
    for seed in 0..100 {
        let p = random_program(seed);
        let (_, greedy) = check(&p, &OptimizeConfig::default());
        let (_, r) = check(&p, &lp);
        let status = r.lp.as_deref().unwrap_or("not run");
        assert!(
            status == "solved" || status.starts_with("best found"),
            "seed {seed}: {status}"
        );
        proven += usize::from(status == "solved");
        assert!(
            (r.cost_after, r.once_after) <= (greedy.cost_after, greedy.once_after),
            "seed {seed}: lp {} > greedy {}",
            r.cost_after,
            greedy.cost_after
        );
        won += usize::from(r.extraction == "lp");
    }
    eprintln!("random programs: lp proven optimal {proven} of 100, its selection won {won}");
}

#[test]
fn balanced_hadamard_tree_stays_small() {
    // 32 vectors multiplied as a balanced binary tree, no sums: flattening one factor at
    // a time would give each class every mix of flattened children (doubly exponential).
    let mut b = B::default();
    let i = b.idx("i", 3);
    let mut level: Vec<ExprId> = (0..32)
        .map(|m| {
            let t = b.input(&format!("V{m}"), &[i]);
            b.r(t, &[i])
        })
        .collect();
    while level.len() > 1 {
        level = level.chunks(2).map(|c| b.prod(c, &[])).collect();
    }
    b.stmt("X", &[i], level[0]);
    let (out, r) = check(&b.0, &OptimizeConfig::default());
    eprintln!("hadamard tree of 32: {r:?}");
    assert!(r.nodes < 500, "{r:?}");
    assert_eq!(product_of(&out, out.stmts[0].value).0.len(), 32);
}

#[test]
fn random_programs_with_constant_inputs_keep_their_values() {
    // Every other input a fixed weight: constant folding and the per-call/once split of
    // the cost model get random shapes too.
    let mut folded = 0;
    for seed in 0..100 {
        let p = random_program(seed);
        let constants = p
            .inputs()
            .enumerate()
            .filter(|(k, _)| k % 2 == 0)
            .map(|(_, (_, t))| t.name.clone())
            .collect();
        let cfg = OptimizeConfig {
            constants,
            ..OptimizeConfig::default()
        };
        let (_, r) = check(&p, &cfg);
        folded += fired(&r, constants::FOLD);
        assert!((r.cost_after, r.once_after) <= (r.cost_before, r.once_before));
    }
    assert!(folded > 0);
}

#[test]
fn the_model_counts_elements_written_and_values_over_the_memory_limit() {
    // X[i, l] = sum_jk A[i, j] B[j, k] C[k, l], sizes 10 x 20 x 3 x 40: the best path
    // contracts A B first (an intermediate of i·k = 30 elements), then C (i·l = 400).
    let mut b = B::default();
    let (i, j, k, l) = (
        b.idx("i", 10),
        b.idx("j", 20),
        b.idx("k", 3),
        b.idx("l", 40),
    );
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j, k]),
        b.input("C", &[k, l]),
    );
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j, k]), b.r(tc, &[k, l]));
    let x = b.prod(&[a, bb, c], &[j, k]);
    b.stmt("X", &[i, l], x);
    let (eg, roots) = saturate(&b.0);
    let root = eg.find(roots[0]);
    let flat = eg[root]
        .nodes
        .iter()
        .find(|n| n.as_product().is_some_and(|(f, _)| f.len() == 3))
        .expect("the flat product")
        .clone();
    let free = cost::CostModel::new(None).node(&eg, root, &flat);
    assert_eq!(free.written, 30.0 + 400.0);
    assert_eq!(free.over, 0.0);
    // Under a limit of 500 elements every value fits; the flops are the same.
    let fits = cost::CostModel::new(Some(500.0)).node(&eg, root, &flat);
    assert_eq!(fits, free);
    // Under 300 the result itself (400 elements) is over, and only it.
    let tight = cost::CostModel::new(Some(300.0)).node(&eg, root, &flat);
    assert_eq!(tight.over, 400.0, "{tight:?}");
    assert_eq!(tight.per_call, free.per_call);
}
