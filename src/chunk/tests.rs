//! Chunked runs against the reference einsum and the unchunked executor. Limits far below
//! the real ones make small arrays run in chunks, so that every case (a shorter last
//! chunk, the label on an inner axis of the result, broadcast and ellipsis operands, steps
//! without the label, every dtype, one and two threads) is checked exactly.

use super::*;
use crate::api::compile_plain;
use einc_runtime::reference::reference_einsum;
use einc_runtime::ExecOptions;
use num_complex::Complex64;
use std::collections::BTreeMap;

const SMALL: Limits = Limits {
    min_bytes: 1.0,
    target_bytes: 64.0,
    cached_bytes: 0.0,
    min_side: 1,
    max_extra_flops: 4.0,
    min_gain: 0.0,
};

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn data(shape: &[usize], dtype: DType, seed: u64) -> TensorData {
    let n: usize = shape.iter().product();
    let re = ArrayD::from_shape_vec(ndarray::IxDyn(shape), values(n, seed)).expect("shape");
    let im = ArrayD::from_shape_vec(ndarray::IxDyn(shape), values(n, seed + 99)).expect("shape");
    match dtype {
        DType::F32 => TensorData::F32(re.mapv(|x| x as f32)),
        DType::F64 => TensorData::F64(re),
        DType::C64 => TensorData::C64(
            ndarray::Zip::from(&re)
                .and(&im)
                .map_collect(|&a, &b| num_complex::Complex32::new(a as f32, b as f32)),
        ),
        DType::C128 => TensorData::C128(
            ndarray::Zip::from(&re)
                .and(&im)
                .map_collect(|&a, &b| Complex64::new(a, b)),
        ),
    }
}

/// The reference result of an equation without ellipsis.
fn reference(eq: &str, ops: &[TensorData]) -> ArrayD<Complex64> {
    let (ins, out) = eq.split_once("->").expect("explicit output");
    let labels = |s: &str| s.chars().map(|c| c as u32).collect::<Vec<u32>>();
    let owned: Vec<ArrayD<Complex64>> = ops.iter().map(|t| t.as_c128()).collect();
    let mut sizes = BTreeMap::new();
    let operands: Vec<(ndarray::ArrayViewD<Complex64>, Vec<u32>)> = ins
        .split(',')
        .zip(&owned)
        .map(|(s, a)| {
            let l = labels(s);
            for (&c, &n) in l.iter().zip(a.shape()) {
                let e = sizes.entry(c).or_insert(n);
                *e = (*e).max(n);
            }
            (a.view(), l)
        })
        .collect();
    reference_einsum(&operands, &labels(out), &sizes)
}

fn close(got: &ArrayD<Complex64>, want: &ArrayD<Complex64>, tol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let scale = want.iter().map(|z| z.norm()).fold(1.0, f64::max);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).norm() <= tol * scale, "{what}: {g} against {w}");
    }
}

/// Chunks `eq` with the small limits, checks the plan cuts `want_axis` of the result (when
/// given), and compares the chunked result with the reference and with the whole plan.
fn check(eq: &str, shapes: &[&[usize]], dtype: DType, want_axis: Option<usize>) {
    check_with(eq, shapes, dtype, want_axis, None);
}

/// [`check`], with chunks of `size` instead of the chosen length when given.
fn check_with(
    eq: &str,
    shapes: &[&[usize]],
    dtype: DType,
    want_axis: Option<usize>,
    size: Option<usize>,
) -> ChunkPlan {
    let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
    let dtypes = vec![dtype; shapes.len()];
    let cfg = CompileConfig::default();
    let expr = compile_plain(eq, &shapes, &dtypes, &cfg).expect("compiles");
    let mut cp = chunk_plan(&expr, eq, &shapes, &dtypes, &cfg, &SMALL)
        .unwrap_or_else(|| panic!("{eq}: no chunk plan"));
    if let Some(size) = size {
        let shaped = |len: usize| -> Vec<Vec<usize>> {
            let mut s = shapes.clone();
            for (s, ax) in s.iter_mut().zip(&cp.in_axes) {
                if let Some(a) = ax {
                    s[*a] = len;
                }
            }
            s
        };
        cp.size = size;
        cp.body = Box::new(compile_plain(eq, &shaped(size), &dtypes, &cfg).expect("body"));
        cp.tail = (cp.len % size != 0).then(|| {
            Box::new(compile_plain(eq, &shaped(cp.len % size), &dtypes, &cfg).expect("tail"))
        });
    }
    if let Some(a) = want_axis {
        assert_eq!(cp.out_axis, a, "{eq}: cut axis");
    }
    assert!(cp.size < cp.len, "{eq}: one chunk");
    let ops: Vec<TensorData> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| data(s, dtype, k as u64 + 1))
        .collect();
    let views: Vec<TensorView<'_>> = ops.iter().map(|t| t.view()).collect();
    let whole = expr
        .clone()
        .with_options(ExecOptions {
            collect_stats: true,
            ..ExecOptions::default()
        })
        .run_views(&views)
        .expect("whole plan runs");
    let tol = match dtype {
        DType::F32 | DType::C64 => 1e-5,
        _ => 1e-12,
    };
    for threads in [1, 2] {
        let got =
            einc_runtime::exec::with_threads(Some(threads), || cp.run(&views)).expect("chunks run");
        assert_eq!(got.dtype(), whole.dtype(), "{eq}: dtype");
        let what = format!("{eq} {dtype:?} {threads} threads");
        close(&got.as_c128(), &whole.as_c128(), tol, &what);
        if !eq.contains("...") {
            close(&got.as_c128(), &reference(eq, &ops), tol, &what);
        }
    }
    cp
}

#[test]
fn chunked_runs_match_the_reference() {
    for dtype in [DType::F32, DType::F64, DType::C64, DType::C128] {
        // e3nn's product; chunks of 2 of z = 7 leave a shorter last one.
        let e3nn_shapes: [&[usize]; 4] = [&[4, 4, 4], &[3, 3, 3], &[7, 4, 3], &[7, 4, 3]];
        let cp = check_with(
            "uvw,ijk,zui,zvj->zwk",
            &e3nn_shapes,
            dtype,
            Some(0),
            Some(2),
        );
        assert!(cp.tail.is_some(), "a shorter last chunk");
        check("uvw,ijk,zui,zvj->zwk", &e3nn_shapes, dtype, Some(0));
        // (Three same-shaped factors alone are one pass, with nothing to chunk.)
        check(
            "bi,bi,bij->bj",
            &[&[13, 5], &[13, 5], &[13, 5, 3]],
            dtype,
            Some(0),
        );
    }
    // The label on the last axis of the result, and inside the operands.
    check(
        "uvw,zui,zvj->wjz",
        &[&[4, 5, 6], &[9, 4, 3], &[9, 5, 2]],
        DType::F64,
        None,
    );
    check(
        "ib,ib,ibj->bj",
        &[&[5, 11], &[5, 11], &[5, 11, 3]],
        DType::F64,
        Some(0),
    );
    // An MPS step in complex; the tfno product, whose factor steps lack the cut label.
    check(
        "abc,bde,cdf->aef",
        &[&[6, 4, 5], &[4, 2, 3], &[5, 2, 4]],
        DType::C128,
        None,
    );
    check(
        "bixy,r,ir,or,xr,yr->boxy",
        &[&[5, 4, 3, 3], &[2], &[4, 2], &[3, 2], &[3, 2], &[3, 2]],
        DType::F64,
        None,
    );
    // A broadcast length-1 axis is read whole by every chunk; ellipsis operands.
    check_with(
        "bi,bi,bij->bj",
        &[&[9, 4], &[1, 4], &[9, 4, 3]],
        DType::F64,
        Some(0),
        Some(4),
    );
    check(
        "...i,...i,...i->...",
        &[&[6, 5, 4], &[6, 5, 4], &[5, 4]],
        DType::F64,
        None,
    );
    // A repeated label is never the cut one (its diagonal would be cut on one axis).
    let shapes = [vec![8, 8], vec![8, 6], vec![6, 5]];
    let dt = vec![DType::F64; 3];
    let cfg = CompileConfig::default();
    let expr = compile_plain("zz,zi,ij->zj", &shapes, &dt, &cfg).expect("compiles");
    if let Some(cp) = chunk_plan(&expr, "zz,zi,ij->zj", &shapes, &dt, &cfg, &SMALL) {
        assert_eq!(cp.out_axis, 1, "z is repeated in an operand");
    }
}

#[test]
fn default_limits_leave_small_and_unsuitable_plans_whole() {
    let cfg = CompileConfig::default();
    let plain = |eq: &str, shapes: &[Vec<usize>]| {
        let dt = vec![DType::F32; shapes.len()];
        let expr = compile_plain(eq, shapes, &dt, &cfg).expect("compiles");
        chunk_plan(&expr, eq, shapes, &dt, &cfg, &Limits::DEFAULT)
    };
    // Small intermediates.
    assert!(plain("bi,bi,bi->b", &[vec![100, 8], vec![100, 8], vec![100, 8]]).is_none());
    // One product: nothing intermediate.
    assert!(plain("ij,jk->ik", &[vec![512, 512], vec![512, 512]]).is_none());
    // jkl (16 MB) would be read again by every chunk of i.
    let s = [vec![256, 64], vec![256, 64, 64], vec![256, 64]];
    assert!(plain("ik,jkl,il->ij", &s).is_none());
    // The result (8 MB) copied into place costs more than the 4 MB intermediate saves.
    let s = [vec![128, 64], vec![128, 64], vec![128, 64]];
    assert!(plain("id,jd,kd->ijk", &s).is_none());
    // e3nn's 20 MB intermediate: chunks along z.
    let s = [
        vec![32, 32, 32],
        vec![5, 5, 5],
        vec![1000, 32, 5],
        vec![1000, 32, 5],
    ];
    let cp = plain("uvw,ijk,zui,zvj->zwk", &s).expect("chunks");
    assert_eq!(cp.out_axis, 0);
    assert!(cp.size >= 2 && cp.size < 1000);
}
