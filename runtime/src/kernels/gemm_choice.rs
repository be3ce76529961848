//! Which library runs a product BLAS can express: OpenBLAS or the `gemm` crate.
//!
//! Neither wins everywhere, and where each wins depends on the CPU. On AVX2 machines
//! OpenBLAS's kernels beat the gemm crate's on long sums and when C's unit-stride side
//! is much the longer one ([`avx2_rule`]). On AVX-512 machines the gemm crate runs its
//! `x86-v4` kernels and is the faster on most shapes (1024³ f32: 106.7 against 99.9
//! GFLOP/s), but OpenBLAS still wins by up to 11x where both operands are unit-stride
//! along the sum (e.g. `ikl,jkl->ij`) and the sum is long, and by 1.3–2x
//! on f64 results with a few long rows. Those regions are not simple enough for a
//! formula, so AVX-512 machines read a table measured on a grid of shapes
//! ([`AVX512_TABLE`], written by `cargo bench -p einc-runtime --bench gemm_backends --
//! grid`); a product takes the cell nearest its shape in log scale.
//!
//! Complex products keep [`avx2_rule`] everywhere: the grid measures f32 and f64 only.

use super::blas::ColMajor;

/// Sides (the rows and the columns of a row-major result) of [`AVX512_TABLE`]'s grid.
pub const GRID_SIDES: [usize; 6] = [8, 24, 64, 200, 512, 2048];
/// Lengths of the sum of [`AVX512_TABLE`]'s grid.
pub const GRID_K: [usize; 4] = [32, 128, 512, 2048];

/// `[dtype (f32, f64)][layout][k]`: one word per row count of a row-major result (in
/// [`GRID_SIDES`] order), one letter per column count: `o` where OpenBLAS took less than
/// 1/1.03 of the gemm crate's time, `g` otherwise. Layouts, as BLAS's column-major
/// transpose flags of its two operands: (N, N), (N, T), (T, N), (T, T); for the grid's
/// row-major `a · b`, a stored [m, k] or [k, m] and b stored [k, n] or [n, k].
/// Measured on one thread of a 2-vCPU AMD EPYC VM with AVX-512, 2026-12-07.
const AVX512_TABLE: [[[&str; 4]; 4]; 2] = [
    [
        [
            "gooooo goooog oooogg oooggg oogggg oggggg",
            "ooooog oooogg oooggg oogggg oggggg gggggg",
            "oooogg oogggg oogggg oggggg gggggg gggggg",
            "oogggg oggggg gggggg gggggg gggggg gggggg",
        ],
        [
            "goooog ooooog oooogg oooggg oogggg oggggg",
            "ooooog oooogg oooggg oogggg oggogg oggggg",
            "oooogg oogggg oogggg oggggg gggggg oggggg",
            "oogggg oggggg gggggg gggggg gggggg oogggg",
        ],
        [
            "gooooo oogogg oogggg oggggg gggggg oggggg",
            "gooooo oooooo oogoog oggggg gggggg gggggg",
            "ggoooo gooooo oooooo gooooo ggoooo gggggg",
            "ggoooo gooooo oooooo gooooo ggoooo gggggo",
        ],
        [
            "gooooo ooogog oooogg oogggg oogggg oggggg",
            "oooooo oooooo oooogg oogggg oggogg oggogg",
            "oooooo oooooo oooooo oooooo gggooo oggoog",
            "oooooo oooooo oooooo gooooo ggoooo oogogg",
        ],
    ],
    [
        [
            "gooooo oooogg oooogg oooggg gogggg oggggg",
            "ooooog gogggg ogoggg gogggg gggggg gggggg",
            "ogoogg oggggg oggggo oggggg gggggg gggggg",
            "oggggo gggggo gggggg gggggg gggggg gggggg",
        ],
        [
            "gooogg ogoogg oooogg oooggg oogggg oggggg",
            "oooogg oogogg oooggg oogggg oggggg gggggg",
            "oogogg oggggg oogggg oggggo gggggg gggggg",
            "oogggo oggggo gggggg gggggg gggggg oggggg",
        ],
        [
            "ggoooo gogggg oggggg gggggg gggggg gggggg",
            "ggoooo goggoo oggggg gggggg gggggg gggggo",
            "ggoooo gooooo ggoooo gggooo gggggg gggggg",
            "ggoooo gooooo ggoooo ggggoo gggggo gggggg",
        ],
        [
            "gooooo ooooog oooogg oooggg oogggg oggggg",
            "oooooo oooooo oooggo oogggg oggggg gggggg",
            "oooooo oooooo oooooo oggooo gggggg gggggg",
            "oooooo oooooo ggoooo gggooo gggggg gggggg",
        ],
    ],
];
/// The element types the table covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Real {
    F32,
    F64,
}

/// Whether OpenBLAS should run `p` rather than the gemm crate, for a product of
/// element type `real` (`None`: complex).
pub fn prefer_openblas<T>(p: &ColMajor<T>, real: Option<Real>) -> bool {
    match real {
        Some(real) if avx512() => from_table(p, real),
        _ => avx2_rule(p),
    }
}

/// The gemm crate picks its `x86-v4` kernels where the CPU has AVX-512F (its own
/// run-time detection); the table describes those.
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The rule measured on the AVX2 benchmark machine (docs/benchmarks.md): OpenBLAS for
/// long sums (k ≥ 256) on a result of some size, and when the unit-stride side of C is
/// much the longer one (OpenBLAS's kernels stream along it; 16×512×4096 row-major ran
/// 2.5–3× faster there). Otherwise, e.g. row-major tall-skinny products with short
/// sums, the gemm crate is as fast or faster (65536×64×64 f32: 0.7×).
fn avx2_rule<T>(p: &ColMajor<T>) -> bool {
    (p.k >= 256 && p.m * p.n >= 1 << 14) || (p.m >= 2 * p.n && p.k >= 32)
}

fn from_table<T>(p: &ColMajor<T>, real: Real) -> bool {
    // Column-major C is m×n with m unit-stride: the row-major result the grid measured,
    // transposed, whose first operand is the grid's right one (transposed when that is
    // stored [n, k]) and whose second is the grid's left (transposed when stored [k, m]).
    // Every product of some size asks, so this is a few integer comparisons.
    let (rows, cols) = (p.n, p.m);
    let layout = usize::from(p.trans_a) * 2 + usize::from(p.trans_b);
    let cells = AVX512_TABLE[real as usize][layout][nearest(&GRID_K, p.k)].as_bytes();
    let at = nearest(&GRID_SIDES, rows) * (GRID_SIDES.len() + 1) + nearest(&GRID_SIDES, cols);
    cells.get(at) == Some(&b'o')
}

/// Index of the entry of `sides` (ascending) nearest `x` in log scale: past the entries
/// whose geometric mean with the next is below `x` (on a tie, the lower entry).
fn nearest(sides: &[usize], x: usize) -> usize {
    let x2 = (x as u128) * (x as u128);
    sides
        .windows(2)
        .take_while(|w| x2 > w[0] as u128 * w[1] as u128)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_cell_in_log_scale() {
        assert_eq!(nearest(&GRID_SIDES, 1), 0);
        assert_eq!(nearest(&GRID_SIDES, 13), 0);
        assert_eq!(nearest(&GRID_SIDES, 15), 1);
        assert_eq!(nearest(&GRID_SIDES, 256), 3);
        assert_eq!(nearest(&GRID_SIDES, 330), 4);
        assert_eq!(nearest(&GRID_SIDES, 1 << 20), 5);
        assert_eq!(nearest(&GRID_K, 4096), 3);
        // Ties (x at the geometric mean of two entries) go to the lower one.
        assert_eq!(nearest(&GRID_SIDES, 1024), 4);
        assert_eq!(nearest(&GRID_K, 64), 0);
        // The same cells as the distance of logarithms, away from ties.
        for x in 1..5000usize {
            let by_log = |sides: &[usize]| {
                let d = |i: usize| (x as f64 / sides[i] as f64).ln().abs();
                (0..sides.len()).min_by(|&a, &b| d(a).total_cmp(&d(b)))
            };
            for sides in [&GRID_SIDES[..], &GRID_K[..]] {
                let tie = sides.windows(2).any(|w| x * x == w[0] * w[1]);
                if !tie {
                    assert_eq!(Some(nearest(sides, x)), by_log(sides), "{x}");
                }
            }
        }
    }

    /// The column-major problem BLAS would get for a row-major `m×n` result of `a · b`, a
    /// stored `[m, k]` (or `[k, m]` when `at`), b stored `[k, n]` (or `[n, k]` when `bt`),
    /// as the grid benchmark lays them out.
    fn row_major(m: usize, k: usize, n: usize, at: bool, bt: bool) -> ColMajor<f32> {
        let (lhs_rs, lhs_cs) = if at { (1, m as isize) } else { (k as isize, 1) };
        let (rhs_rs, rhs_cs) = if bt { (1, k as isize) } else { (n as isize, 1) };
        let call = crate::kernels::GemmCall::<f32> {
            m,
            n,
            k,
            dst: std::ptr::null_mut(),
            dst_rs: n as isize,
            dst_cs: 1,
            lhs: std::ptr::null(),
            lhs_rs,
            lhs_cs,
            rhs: std::ptr::null(),
            rhs_rs,
            rhs_cs,
            parallelism: gemm::Parallelism::None,
        };
        crate::kernels::blas::col_major(&call).expect("expressible")
    }

    /// Each grid layout reads its own part of the table: a cell per layout, with the
    /// measured gemm-crate / OpenBLAS time beside it.
    #[test]
    fn grid_layouts_read_their_own_cells() {
        let cases = [
            // (m, k, n, at, bt, real, OpenBLAS?)
            (64, 2048, 512, false, true, Real::F32, true), // both along k: 2.15
            (64, 2048, 512, true, true, Real::F32, true),  // 2.18
            (64, 2048, 512, true, false, Real::F32, false), // 0.91
            (1024, 1024, 1024, false, false, Real::F32, false), // cell 512³: 0.92
            (8, 512, 512, false, true, Real::F64, true),   // 2.37
            (2048, 512, 8, false, false, Real::F64, false), // 0.39
        ];
        for (m, k, n, at, bt, real, want) in cases {
            let p = row_major(m, k, n, at, bt);
            assert_eq!(
                from_table(&p, real),
                want,
                "{m}×{k}×{n} at={at} bt={bt} {real:?}"
            );
        }
    }

    #[test]
    fn table_has_a_letter_per_cell() {
        for words in AVX512_TABLE.iter().flatten().flatten() {
            let words: Vec<&str> = words.split(' ').collect();
            assert_eq!(words.len(), GRID_SIDES.len());
            for w in words {
                assert_eq!(w.len(), GRID_SIDES.len());
                assert!(w.bytes().all(|b| b == b'o' || b == b'g'), "{w}");
            }
        }
    }
}
