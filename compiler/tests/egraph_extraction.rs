//! Extraction on a program with heavy sharing (`tests/data/ok/shared_subexpr.ein`): four
//! statements read `sum_j A[i,j] B[j,k]`. The sharing-discounted selection alone picks a
//! sum over the outer product `A B` there (the same flops as the contraction, but one
//! more kernel and an 8x larger intermediate); the DAG polish must leave the plain
//! contraction, computed once.

use einc_compiler::ir::Expr;
use einc_compiler::pipeline::{self, CompileConfig};
use std::collections::BTreeMap;

#[test]
fn shared_product_is_one_plain_contraction() {
    let src = include_str!("../../tests/data/ok/shared_subexpr.ein");
    let (_, checked) = pipeline::check_ein(src).unwrap_or_else(|d| panic!("{}", d.message));
    let c = pipeline::compile_ein(&checked, &BTreeMap::new(), &CompileConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let p = &c.opt_ir;
    // No product that sums nothing over two factors (the outer product A B).
    let outer = p.exprs.iter().any(
        |(_, e)| matches!(e, Expr::Product { factors, summed } if summed.is_empty() && factors.len() == 2),
    );
    assert!(!outer, "{}", einc_compiler::dump::dump_program(p));
    // A B over j is one expression, read by all four statements.
    let over_j: Vec<_> = p
        .exprs
        .iter()
        .filter(|(_, e)| matches!(e, Expr::Product { factors, summed } if factors.len() == 2 && summed.len() == 1 && p.indices[summed[0]].name == "j"))
        .collect();
    assert_eq!(over_j.len(), 1, "{}", einc_compiler::dump::dump_program(p));
    let report = c.report.as_ref().expect("e-graph ran");
    assert!(report.cost_after < report.cost_before);
    assert_eq!(c.plan.largest_intermediate(), 64.0);
}
