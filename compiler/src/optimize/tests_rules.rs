//! Tests of the algebraic rewrites (factor, distribute, shared sub-products, deferred
//! division, constant folding) and of statement inlining. Every optimised program goes
//! through [`check`](super::testkit::check): verified, evaluated against its input,
//! re-optimised for determinism.

use super::testkit::*;
use super::*;
use crate::ir::*;

fn div(b: &mut B, x: ExprId, z: ExprId) -> ExprId {
    b.add(Expr::Map {
        op: MapOp::Div,
        args: vec![x, z],
    })
}

fn count(p: &Program, f: impl Fn(&Expr) -> bool) -> usize {
    p.exprs.iter().filter(|(_, e)| f(e)).count()
}

#[test]
fn factor_takes_the_common_operand_out_of_a_sum() {
    // Y[i,k] = sum_j A[i,j] B[j,k] + sum_j A[i,j] C[j,k]  ->  sum_j A[i,j] (B + C)[j,k]
    let mut b = B::default();
    let (i, j, k) = (b.idx("i", 6), b.idx("j", 5), b.idx("k", 4));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j, k]),
        b.input("C", &[j, k]),
    );
    let (a1, bb, a2, c) = (
        b.r(ta, &[i, j]),
        b.r(tb, &[j, k]),
        b.r(ta, &[i, j]),
        b.r(tc, &[j, k]),
    );
    let (p1, p2) = (b.prod(&[a1, bb], &[j]), b.prod(&[a2, c], &[j]));
    let sum = b.add(Expr::Add(vec![p1, p2]));
    b.stmt("Y", &[i, k], sum);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert!(fired(&report, factor::FACTOR) >= 1);
    // Two GEMMs (6*5*4*2 each) and an add over [i,k] before; one GEMM and an add over
    // [j,k] after.
    assert_eq!(report.cost_before, 2.0 * 240.0 + 24.0);
    assert_eq!(report.cost_after, 240.0 + 20.0);
    let (factors, summed) = product_of(&out, out.stmts[0].value);
    assert_eq!((factors.len(), summed), (2, &[j][..]));
    assert_eq!(count(&out, |e| matches!(e, Expr::Add(_))), 1);
}

#[test]
fn factor_refused_over_different_sums() {
    // sum_j A[i,j] B[j,k] + A[i,j] C[j,k] (the second sums nothing, so its j is free and
    // broadcast): A is not common to two products over the same sum.
    let mut b = B::default();
    let (i, j, k) = (b.idx("i", 3), b.idx("j", 2), b.idx("k", 2));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j, k]),
        b.input("C", &[i, j, k]),
    );
    let (a1, bb, a2, c) = (
        b.r(ta, &[i, j]),
        b.r(tb, &[j, k]),
        b.r(ta, &[i, j]),
        b.r(tc, &[i, j, k]),
    );
    let p1 = b.prod(&[a1, bb], &[j]);
    let p2 = b.prod(&[a2, c], &[]);
    let sum = b.add(Expr::Add(vec![p1, p2]));
    b.stmt("Y", &[i, j, k], sum);
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(fired(&report, factor::FACTOR), 0);
}

#[test]
fn distribute_pushes_a_sum_into_the_terms_of_an_addition() {
    // Y[i,k] = sum_j (A[i,j] B[j,k] + A[i,j] C[j,k]): the `.ein` lowering's shape of a
    // sum of products. Distributing the sum gives the two GEMMs, factoring gives one.
    let mut b = B::default();
    let (i, j, k) = (b.idx("i", 6), b.idx("j", 5), b.idx("k", 4));
    let (ta, tb, tc) = (
        b.input("A", &[i, j]),
        b.input("B", &[j, k]),
        b.input("C", &[j, k]),
    );
    let (a1, bb, a2, c) = (
        b.r(ta, &[i, j]),
        b.r(tb, &[j, k]),
        b.r(ta, &[i, j]),
        b.r(tc, &[j, k]),
    );
    let (p1, p2) = (b.prod(&[a1, bb], &[]), b.prod(&[a2, c], &[]));
    let sum = b.add(Expr::Add(vec![p1, p2]));
    let v = b.prod(&[sum], &[j]);
    b.stmt("Y", &[i, k], v);
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    assert!(fired(&report, factor::DISTRIBUTE) >= 1);
    let (eg, roots) = saturate(&b.0);
    assert!(eg[roots[0]]
        .nodes
        .iter()
        .any(|n| matches!(n, lang::ENode::Add(t) if t.len() == 2)));
    assert_eq!(report.cost_after, 240.0 + 20.0);
}

#[test]
fn distribute_refused_when_a_term_lacks_the_summed_index() {
    // sum_j (A[i,j] + c[i]) is not sum_j A[i,j] + sum_j c[i] as IR products (the second
    // would sum over an index it does not have: |j| c[i]).
    let mut b = B::default();
    let (i, j) = (b.idx("i", 3), b.idx("j", 4));
    let (ta, tc) = (b.input("A", &[i, j]), b.input("c", &[i]));
    let (a, c) = (b.r(ta, &[i, j]), b.r(tc, &[i]));
    let sum = b.add(Expr::Add(vec![a, c]));
    let v = b.prod(&[sum], &[j]);
    b.stmt("Y", &[i], v);
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(fired(&report, factor::DISTRIBUTE), 0);
}

#[test]
fn two_statements_share_a_common_sub_product() {
    // T1 = A B C, T2 = A B D (sums over j, k): A B summed over j is computed once.
    let mut b = B::default();
    let n = 6;
    let ix: Vec<IndexId> = ["i", "j", "k", "l", "m"]
        .iter()
        .map(|s| b.idx(s, n))
        .collect();
    let (i, j, k, l, m) = (ix[0], ix[1], ix[2], ix[3], ix[4]);
    let ta = b.input("A", &[i, j]);
    let tb = b.input("B", &[j, k]);
    let tc = b.input("C", &[k, l]);
    let td = b.input("D", &[k, m]);
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j, k]), b.r(tc, &[k, l]));
    let t1 = b.prod(&[a, bb, c], &[j, k]);
    b.stmt("T1", &[i, l], t1);
    let (a, bb, d) = (b.r(ta, &[i, j]), b.r(tb, &[j, k]), b.r(td, &[k, m]));
    let t2 = b.prod(&[a, bb, d], &[j, k]);
    b.stmt("T2", &[i, m], t2);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert!(fired(&report, share::SHARE) >= 2);
    let gemm = 2.0 * (n * n * n) as f64;
    assert_eq!(report.cost_before, 4.0 * gemm);
    assert_eq!(report.cost_after, 3.0 * gemm);
    assert_eq!(report.extraction, "shared");
    // One product over j, used by both statements.
    let over_j = count(
        &out,
        |e| matches!(e, Expr::Product { summed, .. } if summed == &[j]),
    );
    assert_eq!(over_j, 1);
}

#[test]
fn share_refused_when_the_inner_index_is_used_elsewhere() {
    // T1 = sum_{j,k} A[i,j] B[j,k] C[k,j]: j reaches C, so A B cannot be summed over j
    // first; nothing is shared with T2 = sum_{j,k} A B D.
    let mut b = B::default();
    let ix: Vec<IndexId> = ["i", "j", "k", "m"].iter().map(|s| b.idx(s, 3)).collect();
    let (i, j, k, m) = (ix[0], ix[1], ix[2], ix[3]);
    let ta = b.input("A", &[i, j]);
    let tb = b.input("B", &[j, k]);
    let tc = b.input("C", &[k, j]);
    let td = b.input("D", &[k, m]);
    let (a, bb, c) = (b.r(ta, &[i, j]), b.r(tb, &[j, k]), b.r(tc, &[k, j]));
    let t1 = b.prod(&[a, bb, c], &[j, k]);
    b.stmt("T1", &[i], t1);
    let (a, bb, d) = (b.r(ta, &[i, j]), b.r(tb, &[j, k]), b.r(td, &[k, m]));
    let t2 = b.prod(&[a, bb, d], &[j, k]);
    b.stmt("T2", &[i, m], t2);
    let (_, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(fired(&report, share::SHARE), 0);
}

/// E[i,j] = exp(S[i,j]); O[i,d] = sum_j (E[i,j] / Z) V[j,d] with Z summed over j (`z_j`
/// false: Z[i] = sum_j E[i,j]) or a per-j normaliser (`z_j` true: Z[j] = sum_i E[i,j]).
fn attention(z_j: bool) -> Program {
    let mut b = B::default();
    let (i, j, d) = (b.idx("i", 4), b.idx("j", 6), b.idx("d", 3));
    let (ts, tv) = (b.input("S", &[i, j]), b.input("V", &[j, d]));
    let s = b.r(ts, &[i, j]);
    let e = b.add(Expr::Map {
        op: MapOp::Exp,
        args: vec![s],
    });
    let z = b.prod(&[e], &[if z_j { i } else { j }]);
    let p = div(&mut b, e, z);
    let v = b.r(tv, &[j, d]);
    let o = b.prod(&[p, v], &[j]);
    b.stmt("O", &[i, d], o);
    b.0
}

#[test]
fn defer_division_divides_the_contracted_result() {
    let (out, report) = check(&attention(false), &OptimizeConfig::default());
    assert!(fired(&report, softmax::DEFER_DIV) >= 1);
    // The division now reads the [i, d] result, not the [i, j] probabilities.
    assert!(matches!(
        &out.exprs[out.stmts[0].value],
        Expr::Map { op: MapOp::Div, .. }
    ));
    assert!(report.cost_after < report.cost_before);
}

#[test]
fn defer_division_refused_when_the_normaliser_varies_with_the_sum() {
    let (_, report) = check(&attention(true), &OptimizeConfig::default());
    assert_eq!(fired(&report, softmax::DEFER_DIV), 0);
}

/// Y[b,o] = sum_{i,r} X[b,i] A[i,r] B[o,r] with A, B constant (rank `r`).
fn low_rank_layer(rank: u64, constants: bool) -> (Program, OptimizeConfig) {
    let mut b = B::default();
    let (bi, i, o, r) = (
        b.idx("b", 8),
        b.idx("i", 6),
        b.idx("o", 5),
        b.idx("r", rank),
    );
    let (tx, ta, tb) = (
        b.input("X", &[bi, i]),
        b.input("A", &[i, r]),
        b.input("B", &[o, r]),
    );
    let (x, a, bb) = (b.r(tx, &[bi, i]), b.r(ta, &[i, r]), b.r(tb, &[o, r]));
    let v = b.prod(&[x, a, bb], &[i, r]);
    b.stmt("Y", &[bi, o], v);
    let cfg = OptimizeConfig {
        constants: if constants {
            vec!["A".into(), "B".into()]
        } else {
            vec![]
        },
        ..OptimizeConfig::default()
    };
    (b.0, cfg)
}

#[test]
fn fold_constants_precomputes_the_weight_when_that_pays_per_call() {
    // Rank 12 > i, o: X (A B^T) is one small GEMM per call, A B^T paid once.
    let (p, cfg) = low_rank_layer(12, true);
    let (out, report) = check(&p, &cfg);
    assert!(fired(&report, constants::FOLD) >= 1);
    assert_eq!(report.cost_after, 2.0 * 8.0 * 6.0 * 5.0);
    assert_eq!(report.once_after, 2.0 * 6.0 * 5.0 * 12.0);
    // Here the order search alone already contracts A B first (it is also the cheapest
    // path in total), so the flat product stays; the folded node matters where the
    // cheapest total path is not the cheapest per call (the CP layer in
    // `tests/egraph_crossover.rs`).
    assert_eq!(product_of(&out, out.stmts[0].value).0.len(), 3);
    // Without constants nothing is free, and the rule does not apply.
    let (p, cfg) = low_rank_layer(12, false);
    let (_, report) = check(&p, &cfg);
    assert_eq!(fired(&report, constants::FOLD), 0);
}

#[test]
fn inlined_statement_is_dropped_when_its_readers_factorise_it() {
    // W[i,o] = sum_r A[i,r] B[o,r] (not an output); Y[b,o] = sum_i X[b,i] W[i,o].
    // Rank 1: X A then B costs far less than building W; W's statement goes away.
    let mut b = B::default();
    let (bi, i, o, r) = (b.idx("b", 8), b.idx("i", 6), b.idx("o", 5), b.idx("r", 1));
    let (tx, ta, tb) = (
        b.input("X", &[bi, i]),
        b.input("A", &[i, r]),
        b.input("B", &[o, r]),
    );
    let (a, bb) = (b.r(ta, &[i, r]), b.r(tb, &[o, r]));
    let w = b.prod(&[a, bb], &[r]);
    let tw = b.tensor(
        "W",
        &[i, o],
        einc_frontend::ein::ast::DType::F64,
        TensorKind::Result,
    );
    b.0.stmts.push(Stmt {
        target: tw,
        indices: vec![i, o],
        value: w,
        span: None,
    });
    let (x, wr) = (b.r(tx, &[bi, i]), b.r(tw, &[i, o]));
    let y = b.prod(&[x, wr], &[i]);
    b.stmt("Y", &[bi, o], y);
    let (out, report) = check(&b.0, &OptimizeConfig::default());
    assert_eq!(out.stmts.len(), 1, "{out:?}");
    assert!(report.cost_after < report.cost_before);
    let (factors, _) = product_of(&out, out.stmts[0].value);
    assert_eq!(factors.len(), 3);
}
