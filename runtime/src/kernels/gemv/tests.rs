use super::*;
use crate::kernels::test_util::{on_threads, Rng};
use num_complex::{Complex32, Complex64};

/// `Σ_p a[i·rs + p·cs] · x[p·xs]` in the oracle's precision.
fn naive<T: Scalar>(
    m: usize,
    k: usize,
    a: &[T],
    (rs, cs): (usize, usize),
    x: &[T],
    xs: usize,
) -> Vec<Complex64> {
    (0..m)
        .map(|i| {
            (0..k)
                .map(|p| a[i * rs + p * cs].to_c64() * x[p * xs].to_c64())
                .sum()
        })
        .collect()
}

fn assert_near<T: Scalar>(got: &[T], want: &[Complex64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f64, |s, z| s.max(z.norm()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let w = if T::IS_COMPLEX {
            *w
        } else {
            Complex64::new(w.re, 0.0)
        };
        let err = (g.to_c64() - w).norm();
        assert!(err <= tol * scale, "{what}: row {i}: got {g:?}, want {w:?}");
    }
}

/// Every layout [`gemv`] takes (rows contiguous, columns contiguous), strided vectors and
/// outputs, row counts around the four-row pass and the accumulator block, and splits
/// over two threads, against the naive sum; a matrix with no unit stride is refused.
fn check_gemv<T: Scalar>(rng: &mut Rng, tol: f64) {
    let block = BLOCK_BYTES / std::mem::size_of::<T>();
    let shapes = [
        (1, 5),
        (3, 7),
        (4, 8),
        (5, 17),
        (13, 40),
        (130, 301),
        (50, 2000),
        (block + 3, 3),
    ];
    for (m, k) in shapes {
        for columns in [false, true] {
            // Padded leading dimension, so that rows (columns) are not one run.
            let (rs, cs) = if columns { (1, m + 3) } else { (k + 2, 1) };
            let a: Vec<T> = (0..m * rs.max(1) + k * cs).map(|_| rng.scalar()).collect();
            for (xs, ds) in [(1usize, 1usize), (2, 3)] {
                let x: Vec<T> = (0..k * xs).map(|_| rng.scalar()).collect();
                let want = naive(m, k, &a, (rs, cs), &x, xs);
                for threads in [1, 2] {
                    let mut d = vec![T::zero(); m * ds];
                    let done = on_threads(2, || {
                        // SAFETY: m×k elements at (rs, cs) lie inside `a`, k at xs inside
                        // `x`, m at ds inside `d`; d is a separate buffer.
                        unsafe {
                            gemv(
                                m,
                                k,
                                a.as_ptr(),
                                (rs as isize, cs as isize),
                                x.as_ptr(),
                                xs as isize,
                                d.as_mut_ptr(),
                                ds as isize,
                                threads,
                            )
                        }
                    });
                    assert!(done, "a layout with a unit stride is taken");
                    let got: Vec<T> = d.iter().step_by(ds).copied().collect();
                    let what = format!("{m}×{k} columns={columns} xs={xs} ds={ds} t={threads}");
                    assert_near(&got, &want, tol, &what);
                }
            }
        }
    }
    let (a, x, mut d) = (vec![T::one(); 64], vec![T::one(); 8], vec![T::zero(); 4]);
    // SAFETY: 4×4 at strides (8, 2) reach element 30 of 64; the vector and output fit.
    let done = unsafe {
        gemv(
            4,
            4,
            a.as_ptr(),
            (8, 2),
            x.as_ptr(),
            1,
            d.as_mut_ptr(),
            1,
            1,
        )
    };
    assert!(
        !done && d.iter().all(|&v| v == T::zero()),
        "no unit stride: refused"
    );
}

#[test]
fn gemv_matches_the_naive_sum() {
    let mut rng = Rng(71);
    check_gemv::<f32>(&mut rng, 1e-4);
    check_gemv::<f64>(&mut rng, 1e-12);
    check_gemv::<Complex32>(&mut rng, 1e-4);
    check_gemv::<Complex64>(&mut rng, 1e-12);
}

/// A dot product per pair of rows (`bi,bi->b`), rows of either operand contiguous or
/// strided, enough rows to split over threads, against the naive sums; the AVX2 copy
/// gives the baseline's bits.
#[test]
fn row_dots_match_the_naive_sums() {
    let mut rng = Rng(76);
    let (n, k) = (PAR_WORK / 8 + 5, 13usize);
    let a: Vec<f64> = (0..2 * n * k).map(|_| rng.unit()).collect();
    let b: Vec<f64> = (0..2 * n * k).map(|_| rng.unit()).collect();
    // (row stride, column stride) of a and b.
    for ((ra, ca), (rb, cb)) in [((k, 1), (k, 1)), ((1, n), (2 * k, 2))] {
        let want: Vec<Complex64> = (0..n)
            .map(|r| {
                Complex64::from(
                    (0..k)
                        .map(|p| a[r * ra + p * ca] * b[r * rb + p * cb])
                        .sum::<f64>(),
                )
            })
            .collect();
        let (ma, mb) = (
            (a.as_ptr(), ra as isize, ca as isize),
            (b.as_ptr(), rb as isize, cb as isize),
        );
        for threads in [1, 2] {
            let mut d = vec![0.0; 2 * n];
            // SAFETY: n×k at these strides lie inside 2·n·k elements; n outputs at
            // stride 2 inside d.
            on_threads(2, || unsafe {
                let (ma, mb) = (
                    (a.as_ptr(), ra as isize, ca as isize),
                    (b.as_ptr(), rb as isize, cb as isize),
                );
                row_dots(n, k, ma, mb, (d.as_mut_ptr(), 2), threads)
            });
            let got: Vec<f64> = d.iter().step_by(2).copied().collect();
            assert_near(&got, &want, 1e-12, &format!("row dots t={threads}"));
        }
        if simd::avx2() {
            let (mut x, mut y) = (vec![0.0; n], vec![0.0; n]);
            // SAFETY: as above, outputs contiguous.
            unsafe {
                row_dots_body(n, k, ma, mb, (x.as_mut_ptr(), 1));
                row_dots_avx2(n, k, ma, mb, (y.as_mut_ptr(), 1));
            }
            assert_eq!(x, y, "wide and baseline row dots");
        }
    }
}

/// A dot product long enough to split over threads gives the sequential sum (up to
/// rounding), on unit and general strides.
#[test]
fn long_dot_split_over_threads() {
    let mut rng = Rng(72);
    let k = PAR_WORK + 7;
    let x: Vec<f64> = (0..2 * k).map(|_| rng.unit()).collect();
    let y: Vec<f64> = (0..3 * k).map(|_| rng.unit()).collect();
    for (sx, sy) in [(1usize, 1usize), (2, 3)] {
        let want: f64 = (0..k).map(|p| x[p * sx] * y[p * sy]).sum();
        for threads in [1, 2] {
            // SAFETY: k elements at sx (sy) lie inside x (y).
            let got = on_threads(2, || unsafe {
                dot(x.as_ptr(), sx as isize, y.as_ptr(), sy as isize, k, threads)
            });
            assert!(
                (got - want).abs() <= 1e-9 * k as f64,
                "{sx} {sy} t={threads}"
            );
        }
    }
}

/// The AVX2 copies of the dot product and of both matrix-vector forms give the baseline's
/// bits, in every dtype.
#[test]
fn wide_and_baseline_loops_agree() {
    if !simd::avx2() {
        eprintln!("gemv wide_and_baseline_loops_agree: skipped, this CPU has no AVX2");
        return;
    }
    fn check<T: Scalar>(rng: &mut Rng) {
        let x: Vec<T> = (0..400).map(|_| rng.scalar::<T>()).collect();
        let y: Vec<T> = (0..400).map(|_| rng.scalar::<T>()).collect();
        for inner in [1usize, 7, 16, 37, 100] {
            for (sx, sy) in [(1isize, 1isize), (2, 1), (1, 3)] {
                // SAFETY: strides ≤ 3 over ≤ 100 steps stay inside 400 elements.
                let (a, b) = unsafe {
                    (
                        dot_body(x.as_ptr(), sx, y.as_ptr(), sy, inner),
                        dot_avx2(x.as_ptr(), sx, y.as_ptr(), sy, inner),
                    )
                };
                assert_eq!(a, b, "dot {sx} {sy} × {inner}");
            }
        }
        // 9 rows (two four-row passes and a single row) of 37 and of FOUR_ROWS_MIN_K + 3,
        // then the same elements as columns of 9.
        for k in [37usize, FOUR_ROWS_MIN_K + 3] {
            let m = 9usize;
            let mat: Vec<T> = (0..m * k).map(|_| rng.scalar::<T>()).collect();
            let v: Vec<T> = (0..2 * k).map(|_| rng.scalar::<T>()).collect();
            for xs in [1isize, 2] {
                let (mut a, mut b) = (vec![T::zero(); m], vec![T::zero(); m]);
                let vec = (v.as_ptr(), xs);
                // SAFETY: m×k contiguous elements; k at stride ≤ 2 inside v.
                unsafe {
                    let rows = (mat.as_ptr(), k as isize);
                    rows_body(m, k, rows, vec, (a.as_mut_ptr(), 1));
                    rows_avx2(m, k, rows, vec, (b.as_mut_ptr(), 1));
                }
                assert_eq!(a, b, "rows xs={xs} k={k}");
                // SAFETY: as above, the same elements read column by column.
                unsafe {
                    let cols = (mat.as_ptr(), m as isize);
                    columns_body(m, k, cols, vec, (a.as_mut_ptr(), 1));
                    columns_avx2(m, k, cols, vec, (b.as_mut_ptr(), 1));
                }
                assert_eq!(a, b, "columns xs={xs} k={k}");
            }
        }
    }
    let mut rng = Rng(73);
    check::<f32>(&mut rng);
    check::<f64>(&mut rng);
    check::<Complex32>(&mut rng);
    check::<Complex64>(&mut rng);
}
