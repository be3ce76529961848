//! `compile_with_constants` (opt_einsum's `constants=`): the constant part of a plan is
//! computed once at compile time, runs take the other operands only, and results match
//! the reference whichever operands are constant.

use einc::{CompileConfig, DType, ExecOptions, TensorData, TensorView};
use einc_runtime::reference::reference_einsum_f64;

mod common;
use common::{arrays, assert_close, labelled, random_net, Rng};

#[test]
fn any_subset_of_constants_gives_the_reference_result() {
    let mut rng = Rng(21);
    let mut precomputed = 0;
    for _ in 0..80 {
        let n = 2 + rng.below(6) as usize;
        let labels = 2 + rng.below(6) as u32;
        let net = random_net(&mut rng, n, labels);
        let shapes = net.shapes();
        let arrays = arrays(&shapes);
        let ops = labelled(&arrays, &net.labels);
        let want = reference_einsum_f64(&ops, &net.out, &net.sizes);
        let constant: Vec<usize> = (0..n).filter(|_| rng.below(2) == 0).collect();
        let consts: Vec<(usize, TensorView<'_>)> = constant
            .iter()
            .map(|&k| (k, TensorView::F64(arrays[k].view())))
            .collect();
        let expr = einc::compile_with_constants(
            &net.eq,
            &shapes,
            &vec![DType::F64; n],
            &CompileConfig::default(),
            &consts,
        )
        .unwrap_or_else(|e| panic!("{}: {}", net.eq, e.render()));
        let rest: Vec<TensorView<'_>> = (0..n)
            .filter(|k| !constant.contains(k))
            .map(|k| TensorView::F64(arrays[k].view()))
            .collect();
        // Twice: the precomputed part must survive a run.
        for _ in 0..2 {
            let got = match expr.run_views(&rest).expect("runs") {
                TensorData::F64(a) => a,
                other => panic!("f64 expected, got {:?}", other.dtype()),
            };
            assert_close(&got, &want, &net.eq);
        }
        let (_, stats) = expr
            .clone()
            .with_options(ExecOptions {
                collect_stats: true,
                ..ExecOptions::default()
            })
            .run_with_stats(&rest)
            .expect("runs");
        let all = expr.compiled().plan.steps.len();
        precomputed += (stats.steps.len() < all) as usize;
    }
    assert!(
        precomputed >= 30,
        "only {precomputed} plans had a constant part"
    );
}

#[test]
fn constant_contractions_run_once_at_compile_time() {
    // With i much larger than j, k, l the best order contracts the two constant matrices
    // first; each run then does one contraction, not two.
    let shapes = vec![vec![500, 4], vec![4, 3], vec![3, 2]];
    let w1 = ndarray::Array2::from_shape_fn((4, 3), |(a, b)| (a * 3 + b) as f64).into_dyn();
    let w2 = ndarray::Array2::from_shape_fn((3, 2), |(a, b)| (a + 2 * b) as f64).into_dyn();
    let x = ndarray::Array2::from_shape_fn((500, 4), |(a, b)| ((a + b) % 5) as f64).into_dyn();
    let expr = einc::compile_with_constants(
        "ij,jk,kl->il",
        &shapes,
        &[DType::F64; 3],
        &CompileConfig::default(),
        &[
            (1, TensorView::F64(w1.view())),
            (2, TensorView::F64(w2.view())),
        ],
    )
    .expect("compiles")
    .with_options(ExecOptions {
        collect_stats: true,
        ..ExecOptions::default()
    });
    let (got, stats) = expr
        .run_with_stats(&[TensorView::F64(x.view())])
        .expect("runs");
    let plan = &expr.compiled().plan;
    let contracts = stats
        .steps
        .iter()
        .filter(|(k, ..)| matches!(plan.steps[*k].op, einc_compiler::plan::Op::Contract { .. }))
        .count();
    assert_eq!(contracts, 1, "{}", expr.plan_text());
    let x2 = x.into_dimensionality::<ndarray::Ix2>().expect("2d");
    let w = w1
        .into_dimensionality::<ndarray::Ix2>()
        .expect("2d")
        .dot(&w2.into_dimensionality::<ndarray::Ix2>().expect("2d"));
    assert_eq!(got, TensorData::F64(x2.dot(&w).into_dyn()));
}

#[test]
fn bad_constants_are_refused() {
    let a = ndarray::Array2::<f64>::zeros((2, 3)).into_dyn();
    let shapes = vec![vec![2, 3], vec![3, 4]];
    let dtypes = [DType::F64; 2];
    let cfg = CompileConfig::default();
    let err = |consts: &[(usize, TensorView<'_>)]| {
        einc::compile_with_constants("ij,jk->ik", &shapes, &dtypes, &cfg, consts)
            .expect_err("refused")
            .render()
    };
    assert!(err(&[(5, TensorView::F64(a.view()))]).contains("does not exist"));
    assert!(err(&[(1, TensorView::F64(a.view()))]).contains("shape"));
    assert!(err(&[
        (0, TensorView::F64(a.view())),
        (0, TensorView::F64(a.view()))
    ])
    .contains("twice"));
}
