//! A product's last GEMM whose input operand is stored with its summed labels last is
//! planned NN (`plan/orient.rs`): the intermediate laid out `[summed, kept]`, the result
//! `[input's kept, intermediate's kept]` and permuted at the end where the statement wants
//! another order. The shapes here are the smallest the planner turns (summed length 256,
//! sides 64), so that the turned plans, and the runtime's copy of small strided operands
//! in the outer product that feeds them, are checked against the reference.

use einc::{DType, TensorData};
use einc_compiler::plan::{Op, Plan};

mod common;
use common::{arrays, assert_close, reference};

/// Whether the plan's last contraction reads an intermediate laid out summed labels first.
fn turned(plan: &Plan) -> bool {
    let Some(last) = plan
        .steps
        .iter()
        .rev()
        .find(|s| matches!(s.op, Op::Contract { .. }))
    else {
        return false;
    };
    let Op::Contract { lhs, rhs } = last.op else {
        unreachable!()
    };
    [lhs, rhs].iter().any(|v| {
        let x = &plan.steps[v.0 as usize];
        matches!(x.op, Op::Contract { .. })
            && x.indices.first().is_some_and(|i| !last.indices.contains(i))
    })
}

fn check(eq: &str, shapes: &[Vec<usize>], want_turned: bool) {
    let arrays = arrays(shapes);
    let want = reference(eq, &arrays);
    for dtype in [DType::F64, DType::F32] {
        let expr = einc::compile(eq, shapes, &vec![dtype; shapes.len()]).expect("compiles");
        assert_eq!(
            turned(&expr.compiled().plan),
            want_turned,
            "{eq} {dtype:?}: turned?"
        );
        let inputs: Vec<TensorData> = arrays
            .iter()
            .map(|a| match dtype {
                DType::F32 => TensorData::F32(a.mapv(|x| x as f32)),
                _ => TensorData::F64(a.clone()),
            })
            .collect();
        let got = match expr.run_dyn(inputs).expect("runs") {
            TensorData::F64(a) => a,
            TensorData::F32(a) => a.mapv(f64::from),
            other => panic!("{eq}: unexpected {:?}", other.dtype()),
        };
        if dtype == DType::F64 {
            assert_close(&got, &want, eq);
        } else {
            // f32 sums of 256 products of small integers are exact up to 2^24.
            let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 * scale, "{eq} f32: {g} vs {w}");
            }
        }
    }
}

#[test]
fn bilinear_forms_are_turned_and_match_the_reference() {
    let (i, j, k, l) = (64, 64, 16, 16);
    // The statement wants `ij`, the turned product writes `ji`: a closing permutation.
    check(
        "ik,jkl,il->ij",
        &[vec![i, k], vec![j, k, l], vec![i, l]],
        true,
    );
    // The statement's own order is the turned one: no permutation.
    check(
        "ik,jkl,il->ji",
        &[vec![i, k], vec![j, k, l], vec![i, l]],
        true,
    );
    // Summed labels in another order in the input: the intermediate follows it.
    check(
        "ik,jlk,il->ij",
        &[vec![i, k], vec![j, l, k], vec![i, l]],
        true,
    );
    // Two kept labels on the intermediate's side.
    check(
        "iak,jkl,ial->aij",
        &[vec![8, 8, k], vec![j, k, l], vec![8, 8, l]],
        true,
    );
}

#[test]
fn small_or_already_nn_products_keep_their_layout() {
    // A sum of 64: below the turn's threshold.
    check(
        "ik,jkl,il->ij",
        &[vec![64, 8], vec![64, 8, 8], vec![64, 8]],
        false,
    );
    // Complex: the turn's gain was measured on real GEMMs only.
    let shapes = [vec![64, 16], vec![64, 16, 16], vec![64, 16]];
    let expr = einc::compile("ik,jkl,il->ij", &shapes, &[DType::C64; 3]).expect("compiles");
    assert!(!turned(&expr.compiled().plan), "complex turned");
    // The input has its summed labels first: the plain order is NN already.
    check(
        "ik,klj,il->ij",
        &[vec![64, 16], vec![16, 16, 64], vec![64, 16]],
        false,
    );
}
