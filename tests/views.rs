//! `run_cow` / `einsum_cow`: results that relabel one operand come back as views of it
//! (numpy.einsum's behaviour), everything else as owned arrays, and both equal `run`.

use einc::{DType, TensorCow, TensorView};
use ndarray::{ArrayD, IxDyn, ShapeBuilder, Slice};
use num_complex::Complex64;

mod common;

fn arange(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|x| x as f64 * 0.5 - 3.0).collect())
        .expect("shape")
}

/// `run_cow` agrees with `run` and is a view exactly when `view` says so.
fn check(eq: &str, a: ndarray::ArrayViewD<'_, f64>, view: bool) {
    let expr = einc::compile(eq, &[a.shape().to_vec()], &[DType::F64]).expect("compiles");
    let want = expr.run(std::slice::from_ref(&a)).expect("runs");
    let got = expr.run_cow(std::slice::from_ref(&a)).expect("runs");
    assert_eq!(got.is_view(), view, "{eq}: view?");
    assert_eq!(got.to_owned(), want, "{eq}");
    let once = einc::einsum_cow(eq, std::slice::from_ref(&a)).expect("runs");
    assert_eq!(once.is_view(), view, "{eq}: einsum_cow view?");
    assert_eq!(once.to_owned(), want, "{eq}");
    if view {
        // No copy: every element of the result is an element of the operand's memory.
        let own: std::collections::HashSet<*const f64> =
            a.iter().map(|x| x as *const f64).collect();
        assert!(
            got.iter().all(|x| own.contains(&(x as *const f64))),
            "{eq}: not a view"
        );
    }
}

#[test]
fn permutations_and_diagonals_are_views() {
    let a4 = arange(&[3, 4, 5, 6]);
    check("ijkl->ljki", a4.view(), true);
    check("ijkl->ijkl", a4.view(), true);
    check("ijkl", a4.view(), true);
    check("...l->l...", a4.view(), true);
    let sq = arange(&[5, 5]);
    check("ii->i", sq.view(), true);
    check("ij->ji", sq.view(), true);
    let c = arange(&[4, 4, 3, 4]);
    check("iiji->ji", c.view(), true);
    check("iiji->ij", c.view(), true);
    // Transposed and stepped operands.
    check("ii->i", sq.t().into_dyn(), true);
    let stepped = a4.slice_each_axis(|ax| {
        if ax.axis.index() == 1 {
            Slice::new(0, None, 2)
        } else {
            Slice::from(..)
        }
    });
    check("ijkl->lkji", stepped.view(), true);
    let cube = arange(&[4, 4, 4]);
    check("iii->i", cube.view(), true);
}

#[test]
fn sums_and_reversed_diagonals_copy() {
    let sq = arange(&[5, 5]);
    check("ii->", sq.view(), false);
    check("ij->i", sq.view(), false);
    check("ij->", sq.view(), false);
    // A diagonal of a reversed view would need a negative stride: copied.
    let rev = sq.slice_each_axis(|_| Slice::new(0, None, -1));
    check("ii->i", rev.view(), false);
    // A permutation of a reversed view is still a view.
    check("ij->ji", rev.view(), true);
    // Empty diagonals are copied (nothing to point at).
    let empty = ArrayD::<f64>::zeros(IxDyn(&[0, 0]));
    check("ii->i", empty.view(), false);
}

#[test]
fn multi_operand_results_are_owned() {
    let a = arange(&[3, 4]);
    let b = arange(&[4, 2]);
    let expr =
        einc::compile("ij,jk->ik", &[vec![3, 4], vec![4, 2]], &[DType::F64; 2]).expect("compiles");
    let got = expr.run_cow(&[a.view(), b.view()]).expect("runs");
    assert!(!got.is_view());
    let a2 = a
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("2-d");
    let b2 = b
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("2-d");
    assert_eq!(got.to_owned(), a2.dot(&b2).into_dyn());
}

#[test]
fn dyn_views_keep_dtype_and_check_shapes() {
    let z = ArrayD::from_shape_fn(IxDyn(&[3, 3]).f(), |i| {
        Complex64::new(i[0] as f64, i[1] as f64)
    });
    let expr = einc::compile("ii->i", &[vec![3, 3]], &[DType::C128]).expect("compiles");
    let got = expr
        .run_views_cow(&[TensorView::C128(z.view())])
        .expect("runs");
    assert!(got.is_view());
    match &got {
        TensorCow::Borrowed(TensorView::C128(v)) => {
            assert_eq!(
                v.iter().copied().collect::<Vec<_>>(),
                (0..3)
                    .map(|i| Complex64::new(i as f64, i as f64))
                    .collect::<Vec<_>>()
            )
        }
        other => panic!("expected a c128 view, got {other:?}"),
    }
    // A wrong shape is the same error as for `run`.
    let bad = ArrayD::from_elem(IxDyn(&[3, 4]), Complex64::new(0.0, 0.0));
    assert!(expr.run_views_cow(&[TensorView::C128(bad.view())]).is_err());
    let owned = got.into_owned();
    assert_eq!(owned.shape(), &[3]);
}

/// A diagonal of an input that keeps a unit-stride axis is passed to the next step as a
/// view of the input (exec's `Op::Unary`); the steps that read it must see the same
/// elements as a copy would give them.
#[test]
fn diagonals_read_in_place_by_later_steps_match_the_reference() {
    let cases: [(&str, &[&[usize]]); 5] = [
        ("iij,jkk->ik", &[&[9, 9, 7], &[7, 5, 5]]),
        ("iij,jk->ik", &[&[33, 33, 20], &[20, 17]]),
        ("aabc,cd->abd", &[&[6, 6, 5, 4], &[4, 3]]),
        ("iij,ij->ij", &[&[12, 12, 10], &[12, 10]]),
        ("iij,kj,k->ik", &[&[8, 8, 70], &[6, 70], &[6]]),
    ];
    for (eq, shapes) in cases {
        let arrays: Vec<ArrayD<f64>> = shapes.iter().map(|s| arange(s)).collect();
        let want = common::reference(eq, &arrays);
        let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
        let expr = einc::compile(eq, &shapes, &vec![DType::F64; shapes.len()]).expect("compiles");
        let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
        let got = expr.run(&views).expect("runs");
        assert_eq!(got.shape(), want.shape(), "{eq}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{eq}: {g} vs {w}");
        }
        // The diagonal step holds no bytes of its own: it was a view.
        let tviews: Vec<TensorView<'_>> =
            arrays.iter().map(|a| TensorView::F64(a.view())).collect();
        let (_, stats) = expr
            .clone()
            .with_options(einc::ExecOptions {
                collect_stats: true,
                ..einc::ExecOptions::default()
            })
            .run_with_stats(&tviews)
            .expect("runs");
        let plan = &expr.compiled().plan;
        let viewed = stats.steps.iter().any(|&(k, _, _, bytes)| {
            matches!(plan.steps[k].op, einc_compiler::plan::Op::Unary { .. }) && bytes == 0
        });
        assert!(viewed, "{eq}: no diagonal was passed on as a view");
    }
}
