//! Expressions whose intermediates are large run in chunks of a result label
//! (`Expression::chunking`); through the public API the result must match the whole plan's,
//! on any thread count, and bad operands must still be errors.

use einc::{DType, ExecOptions};
use ndarray::{ArrayD, IxDyn};

fn arange(shape: &[usize], seed: f32) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n)
            .map(|x| ((x as f32 * 0.37 + seed) % 2.0) - 1.0)
            .collect(),
    )
    .expect("shape")
}

fn close(got: &ArrayD<f32>, want: &ArrayD<f32>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-4 * scale, "{what}: {g} against {w}");
    }
}

#[test]
fn large_intermediates_run_in_chunks() {
    // e3nn's tensor product with z = 203 (a 4 MB intermediate, a shorter last chunk) and
    // the product of two b×i arrays, contracted with a b×i×j one (a 2.6 MB intermediate;
    // three same-shaped factors alone are one pass, with nothing to chunk).
    let cases: [(&str, Vec<Vec<usize>>); 2] = [
        (
            "uvw,ijk,zui,zvj->zwk",
            vec![
                vec![32, 32, 32],
                vec![5, 5, 5],
                vec![203, 32, 5],
                vec![203, 32, 5],
            ],
        ),
        (
            "bi,bi,bij->bj",
            vec![vec![10007, 64], vec![10007, 64], vec![10007, 64, 3]],
        ),
    ];
    for (eq, shapes) in cases {
        let expr = einc::compile(eq, &shapes, &vec![DType::F32; shapes.len()]).expect("compiles");
        let (axis, size) = expr
            .chunking()
            .unwrap_or_else(|| panic!("{eq}: not chunked"));
        assert_eq!(axis, 0, "{eq}");
        assert!(size < shapes[shapes.len() - 1][0], "{eq}: one chunk");
        let ops: Vec<ArrayD<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| arange(s, k as f32 * 0.61))
            .collect();
        let views: Vec<_> = ops.iter().map(|a| a.view()).collect();
        let whole = expr.clone().without_chunks();
        assert_eq!(whole.chunking(), None);
        let want = whole.run(&views).expect("runs whole");
        close(&expr.run(&views).expect("runs"), &want, eq);
        close(&einc::einsum(eq, &views).expect("einsum"), &want, eq);
        for threads in [1, 2, 3] {
            let t = expr.clone().with_options(ExecOptions {
                threads: Some(threads),
                ..ExecOptions::default()
            });
            close(
                &t.run(&views).expect("runs"),
                &want,
                &format!("{eq} {threads}"),
            );
        }
        let mut bad_shape = shapes[shapes.len() - 1].clone();
        bad_shape[0] += 1;
        let bad = arange(&bad_shape, 0.0);
        let mut bad_views = views.clone();
        *bad_views.last_mut().expect("operands") = bad.view();
        assert!(expr.run(&bad_views).is_err(), "{eq}: wrong shape accepted");
        assert!(
            expr.run(&views[1..]).is_err(),
            "{eq}: missing operand accepted"
        );
    }
}
