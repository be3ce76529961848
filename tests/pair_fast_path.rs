//! `Expression::run` sends a single pairwise contraction straight to the kernel. It must
//! give exactly what the plan executor gives (the executor runs when stats are asked for),
//! take the path only for such plans, and still report bad operands as errors.

use einc::{DType, ExecOptions};
use ndarray::{ArrayD, IxDyn};
use num_complex::Complex32;

fn arange<T: From<f32>>(shape: &[usize], seed: f32) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n)
            .map(|x| T::from(((x as f32 * 0.37 + seed) % 2.0) - 1.0))
            .collect(),
    )
    .expect("shape")
}

/// Compiles `eq`, checks whether it takes the fast path, and compares the fast run with the
/// executor's and with the cached `einsum`.
fn check<T>(eq: &str, shapes: &[&[usize]], dtype: DType, pairwise: bool)
where
    T: einc::Element + From<f32> + PartialEq + std::fmt::Debug,
{
    let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
    let expr = einc::compile(eq, &shapes, &vec![dtype; shapes.len()]).expect("compiles");
    assert_eq!(expr.is_pairwise(), pairwise, "{eq}: pairwise?");
    let ops: Vec<ArrayD<T>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| arange(s, k as f32 * 0.61))
        .collect();
    let views: Vec<_> = ops.iter().map(|a| a.view()).collect();
    let fast = expr.run(&views).expect("runs");
    let slow = expr
        .clone()
        .with_options(ExecOptions {
            collect_stats: true,
            ..ExecOptions::default()
        })
        .run(&views)
        .expect("runs");
    assert_eq!(fast, slow, "{eq}");
    assert_eq!(
        einc::einsum(eq, &views).expect("runs"),
        slow,
        "{eq}: einsum"
    );
    // A wrong shape is an error on the fast path's expression too, not a panic.
    let mut bad_shape = shapes[0].clone();
    bad_shape[0] += 1;
    let bad: ArrayD<T> = arange(&bad_shape, 0.0);
    let mut bad_views = views.clone();
    bad_views[0] = bad.view();
    assert!(expr.run(&bad_views).is_err(), "{eq}: wrong shape accepted");
    assert!(
        expr.run(&views[..views.len() - 1]).is_err(),
        "{eq}: missing operand accepted"
    );
}

#[test]
fn pairwise_contractions_match_the_executor() {
    let cases: [(&str, &[&[usize]], bool); 12] = [
        ("ij,jk->ik", &[&[2, 2], &[2, 2]], true),
        ("ij,jk->ki", &[&[3, 4], &[4, 5]], true),
        ("ik,kj", &[&[3, 4], &[4, 5]], true),
        ("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]], true),
        ("abcd,dcef->beaf", &[&[2, 3, 4, 5], &[5, 4, 3, 2]], true),
        ("i,i->", &[&[7], &[7]], true),
        ("ij,ij->ij", &[&[3, 4], &[3, 4]], true),
        ("i,j->ij", &[&[3], &[4]], true),
        ("ijk,jl->il", &[&[2, 3, 4], &[3, 5]], false), // k summed in a step of its own
        ("ii,ij->j", &[&[3, 3], &[3, 4]], false),
        ("ij,jk,kl->il", &[&[2, 3], &[3, 4], &[4, 5]], false),
        ("ij->ji", &[&[2, 3]], false),
    ];
    for (eq, shapes, pairwise) in cases {
        check::<f64>(eq, shapes, DType::F64, pairwise);
        check::<f32>(eq, shapes, DType::F32, pairwise);
        check::<Complex32>(eq, shapes, DType::C64, pairwise);
    }
}

#[test]
fn broadcast_length_one_axes_leave_the_fast_path() {
    // numpy broadcasts a length-1 axis against its label's length; the kernel takes equal
    // lengths only, so such an expression runs through the executor.
    let Ok(expr) = einc::compile("ij,jk->ik", &[vec![2, 1], vec![3, 4]], &[DType::F64; 2]) else {
        return;
    };
    assert!(!expr.is_pairwise());
    let (a, b) = (arange::<f64>(&[2, 1], 0.0), arange::<f64>(&[3, 4], 0.5));
    let got = expr.run(&[a.view(), b.view()]).expect("runs");
    assert_eq!(got.shape(), &[2, 4]);
}

#[test]
fn options_that_need_the_executor_leave_the_fast_path() {
    let expr = einc::compile("ij,jk->ik", &[vec![30, 40], vec![40, 50]], &[DType::F64; 2])
        .expect("compiles");
    assert!(expr.is_pairwise());
    let (a, b) = (arange::<f64>(&[30, 40], 0.0), arange::<f64>(&[40, 50], 0.5));
    let want = expr.run(&[a.view(), b.view()]).expect("runs");
    let on_two = expr.clone().with_options(ExecOptions {
        threads: Some(2),
        ..ExecOptions::default()
    });
    let got = on_two.run(&[a.view(), b.view()]).expect("runs");
    let err = (&got - &want).mapv(f64::abs).fold(0.0f64, |m, &x| m.max(x));
    assert!(err < 1e-9, "threads = 2 differs by {err}");
}
