//! Matrix-vector and dot products: the pairwise steps whose GEMM has one side of length 1
//! (`ij,j->i`, `i,ij->j`, the batched `...ij,...j->...i`, `i,i->`, `bi,bi->b`).
//!
//! A GEMM packs its operands into blocks so that each packed element is used for many
//! outputs. With one side of length 1 every element of the matrix is used once, so the
//! packing only copies the matrix: a 4096×4096 f32 matrix times a vector took 12 ms
//! through the GEMM, where numpy's one pass over the matrix (sgemv) takes about 3. These
//! loops read the matrix once, in its memory order, with the vector and the accumulators
//! in cache; the work is bound by memory, and large products split their rows over threads.

use super::scalar::Scalar;
use super::simd;
use super::unary::SendPtr;
use rayon::prelude::*;

/// Independent accumulators of [`dot`]: a single running sum is bound by the latency of
/// one add per element; several let the loop vectorise.
const DOT_LANES: usize = 8;

/// Multiply-adds from which a matrix-vector product or a dot product is split over
/// threads (below, waking the pool costs more than the pass saves).
const PAR_WORK: usize = 1 << 16;

/// Bytes of accumulators per row block of the column form (in the L2 cache). Long
/// blocks pay: each column segment is one run of reads, and the prefetcher restarts at
/// every run (`i,ij->j`, 4096² f32, one thread: 4.7 ms with 4 KiB blocks, 3.8 with 8 KiB,
/// 3.2 with whole 16 KiB columns).
const BLOCK_BYTES: usize = 256 << 10;

/// `d[i·ds] = Σ_p a[i·rs + p·cs] · x[p·xs]` for `i < m`, `p < k`, on up to `threads`
/// threads. Returns false, having written nothing, when the matrix has a unit stride
/// along neither axis (the caller then runs a GEMM).
///
/// # Safety
/// Every element addressed from `a` (m×k), `x` (k) and `d` (m) lies inside its array; `d`
/// aliases neither `a` nor `x`, and nobody else writes it during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemv<T: Scalar>(
    m: usize,
    k: usize,
    a: *const T,
    (rs, cs): (isize, isize),
    x: *const T,
    xs: isize,
    d: *mut T,
    ds: isize,
    threads: usize,
) -> bool {
    let form = match (rs, cs) {
        (_, 1) => Form::Rows,
        (1, _) => Form::Columns,
        _ => return false,
    };
    // The row split: for the rows form, 4 parts a thread (whole rows, balanced as threads
    // free up); for the columns form, one part a thread, so that each reads its strip of
    // every column in runs as long as possible, in multiples of 16 rows (a line of f32).
    let (unit, parts) = match form {
        Form::Rows => (1, 4 * threads),
        Form::Columns => (16, threads),
    };
    let p = Ptrs {
        a: SendPtr(a as *mut T),
        x: SendPtr(x as *mut T),
        d: SendPtr(d),
    };
    // Rows `r0..r1`: a contiguous part of the output.
    let part = move |r0: usize, r1: usize| {
        let p = p;
        let (a, x, d) = (p.a.get() as *const T, p.x.get() as *const T, p.d.get());
        // SAFETY: rows r0..r1 < m of the caller's arrays; parts are disjoint in d.
        unsafe {
            let a = a.offset(r0 as isize * rs);
            let d = d.offset(r0 as isize * ds);
            match (form, simd::avx2()) {
                (Form::Rows, true) => rows_avx2(r1 - r0, k, (a, rs), (x, xs), (d, ds)),
                (Form::Rows, false) => rows_body(r1 - r0, k, (a, rs), (x, xs), (d, ds)),
                (Form::Columns, true) => columns_avx2(r1 - r0, k, (a, cs), (x, xs), (d, ds)),
                (Form::Columns, false) => columns_body(r1 - r0, k, (a, cs), (x, xs), (d, ds)),
            }
        }
    };
    split_rows(m, k, (unit, parts), threads, part);
    true
}

/// Calls `part(r0, r1)` over `0..n` rows of `k` multiply-adds each: once for all rows, or,
/// when there are threads and enough work, over the pool in up to `parts` contiguous
/// parts of whole `unit`s of rows.
fn split_rows(
    n: usize,
    k: usize,
    (unit, parts): (usize, usize),
    threads: usize,
    part: impl Fn(usize, usize) + Sync + Send,
) {
    let units = n.div_ceil(unit);
    if threads > 1 && units >= 2 && n.saturating_mul(k) >= PAR_WORK {
        let chunks = parts.min(units);
        let per = units.div_ceil(chunks) * unit;
        (0..chunks).into_par_iter().for_each(|c| {
            let r0 = (c * per).min(n);
            part(r0, (r0 + per).min(n));
        });
    } else {
        part(0, n);
    }
}

/// Which axis of the matrix has the unit stride.
#[derive(Clone, Copy)]
enum Form {
    /// Rows are contiguous: one dot product per row.
    Rows,
    /// Columns are contiguous: each column, scaled, is added to a block of accumulators.
    Columns,
}

/// The arrays of one [`gemv`] call (`x` the vector) or [`row_dots`] call (`x` the second
/// matrix), shared by its threads.
#[derive(Clone, Copy)]
struct Ptrs<T> {
    a: SendPtr<T>,
    x: SendPtr<T>,
    d: SendPtr<T>,
}

simd::avx2_copy!(unsafe fn rows_avx2<T: Scalar>(
    m: usize,
    k: usize,
    a: (*const T, isize),
    x: (*const T, isize),
    d: (*mut T, isize),
) = rows_body);

/// [`gemv`] for contiguous rows (`cs == 1`): a dot product per row.
///
/// # Safety
/// As [`gemv`], for `m` rows.
#[inline(always)]
unsafe fn rows_body<T: Scalar>(
    m: usize,
    k: usize,
    a: (*const T, isize),
    x: (*const T, isize),
    d: (*mut T, isize),
) {
    let ((a, rs), (x, xs), (d, ds)) = (a, x, d);
    let mut i = 0;
    if xs == 1 && k >= FOUR_ROWS_MIN_K {
        // Long rows, four a pass: four streams of reads in flight (one row at a time left
        // the memory idle between its misses), and each load of the vector serves four
        // rows. Short rows stay one a pass: there the loop's speed counts, and this one
        // runs slower than `dot_body` (`...ij,...j->...i` with rows of 128: 1.6 → 3.4 ms).
        // SAFETY: the vector's k elements are contiguous (xs == 1).
        let xv = unsafe { std::slice::from_raw_parts(x, k) };
        let full = k - k % ROW_LANES;
        while i + 4 <= m {
            // SAFETY: rows i..i+4 lie inside the matrix, each k contiguous elements.
            let row = |j: usize| unsafe {
                std::slice::from_raw_parts(a.offset((i + j) as isize * rs), k)
            };
            let rows = [row(0), row(1), row(2), row(3)];
            let mut s = [[T::zero(); ROW_LANES]; 4];
            let c = |j: usize| rows[j][..full].chunks_exact(ROW_LANES);
            let cx = xv[..full].chunks_exact(ROW_LANES);
            for ((((a0, a1), a2), a3), xx) in c(0).zip(c(1)).zip(c(2)).zip(c(3)).zip(cx) {
                for l in 0..ROW_LANES {
                    let v = xx[l];
                    s[0][l] += a0[l] * v;
                    s[1][l] += a1[l] * v;
                    s[2][l] += a2[l] * v;
                    s[3][l] += a3[l] * v;
                }
            }
            for (j, (lanes, row)) in s.iter().zip(rows).enumerate() {
                let mut acc = T::zero();
                for p in full..k {
                    acc += row[p] * xv[p];
                }
                let sum = lanes.iter().fold(acc, |t, &l| t + l);
                // SAFETY: output i + j < m.
                unsafe { *d.offset((i + j) as isize * ds) = sum };
            }
            i += 4;
        }
    }
    for i in i as isize..m as isize {
        // SAFETY: row i and the vector lie inside their arrays (the caller's contract).
        unsafe { *d.offset(i * ds) = dot_body(a.offset(i * rs), 1, x, xs, k) };
    }
}

/// Shortest rows that [`rows_body`] reads four at a time (4096² f32, `ij,j->i`: 3.75 →
/// 3.40 ms).
const FOUR_ROWS_MIN_K: usize = 1024;

/// Lanes per row of the four-row pass of [`rows_body`] (one 256-bit register of f32).
const ROW_LANES: usize = 8;

simd::avx2_copy!(unsafe fn columns_avx2<T: Scalar>(
    m: usize,
    k: usize,
    a: (*const T, isize),
    x: (*const T, isize),
    d: (*mut T, isize),
) = columns_body);

/// [`gemv`] for contiguous columns (`rs == 1`): for each block of rows, the columns
/// scaled by the vector are summed into accumulators, four columns a pass (the
/// accumulators are loaded and stored once per four columns).
///
/// # Safety
/// As [`gemv`], for `m` rows.
#[inline(always)]
unsafe fn columns_body<T: Scalar>(
    m: usize,
    k: usize,
    a: (*const T, isize),
    x: (*const T, isize),
    d: (*mut T, isize),
) {
    let ((a, cs), (x, xs), (d, ds)) = (a, x, d);
    let block = (BLOCK_BYTES / std::mem::size_of::<T>()).max(1);
    let mut acc = vec![T::zero(); block.min(m)];
    for r0 in (0..m).step_by(block) {
        let n = block.min(m - r0);
        let acc = &mut acc[..n];
        acc.fill(T::zero());
        // SAFETY: column p's rows r0..r0+n and x[p] lie inside the arrays for p < k.
        unsafe {
            let col =
                |p: usize| std::slice::from_raw_parts(a.offset(p as isize * cs + r0 as isize), n);
            let s = |p: usize| *x.offset(p as isize * xs);
            let full = k - k % 8;
            for p in (0..full).step_by(8) {
                let (c0, c1, c2, c3) = (col(p), col(p + 1), col(p + 2), col(p + 3));
                let (c4, c5, c6, c7) = (col(p + 4), col(p + 5), col(p + 6), col(p + 7));
                let (s0, s1, s2, s3) = (s(p), s(p + 1), s(p + 2), s(p + 3));
                let (s4, s5, s6, s7) = (s(p + 4), s(p + 5), s(p + 6), s(p + 7));
                for r in 0..n {
                    acc[r] += ((s0 * c0[r] + s1 * c1[r]) + (s2 * c2[r] + s3 * c3[r]))
                        + ((s4 * c4[r] + s5 * c5[r]) + (s6 * c6[r] + s7 * c7[r]));
                }
            }
            for p in full..k {
                let (c, sp) = (col(p), s(p));
                for r in 0..n {
                    acc[r] += sp * c[r];
                }
            }
            for (r, &v) in acc.iter().enumerate() {
                *d.offset((r0 + r) as isize * ds) = v;
            }
        }
    }
}

/// `d[r·ds] = Σ_p a[r·ra + p·ca] · b[r·rb + p·cb]` for `r < n`, `p < k`: a dot product
/// per pair of rows, the rows split over up to `threads` threads when there is enough work.
///
/// # Safety
/// Every element addressed from `a`, `b` (n×k each) and `d` (n) lies inside its array; `d`
/// aliases neither `a` nor `b`, and nobody else writes it during the call.
pub(super) unsafe fn row_dots<T: Scalar>(
    n: usize,
    k: usize,
    (a, ra, ca): (*const T, isize, isize),
    (b, rb, cb): (*const T, isize, isize),
    (d, ds): (*mut T, isize),
    threads: usize,
) {
    let p = Ptrs {
        a: SendPtr(a as *mut T),
        x: SendPtr(b as *mut T),
        d: SendPtr(d),
    };
    let part = move |r0: usize, r1: usize| {
        let p = p;
        let r = r0 as isize;
        let (a, b, d) = (
            (p.a.get().wrapping_offset(r * ra) as *const T, ra, ca),
            (p.x.get().wrapping_offset(r * rb) as *const T, rb, cb),
            (p.d.get().wrapping_offset(r * ds), ds),
        );
        // SAFETY: rows r0..r1 < n of the caller's arrays; parts are disjoint in d.
        unsafe {
            if simd::avx2() {
                row_dots_avx2(r1 - r0, k, a, b, d)
            } else {
                row_dots_body(r1 - r0, k, a, b, d)
            }
        }
    };
    split_rows(n, k, (1, 4 * threads), threads, part);
}

simd::avx2_copy!(unsafe fn row_dots_avx2<T: Scalar>(
    n: usize,
    k: usize,
    a: (*const T, isize, isize),
    b: (*const T, isize, isize),
    d: (*mut T, isize),
) = row_dots_body);

/// [`row_dots`]'s loop, on one thread.
///
/// # Safety
/// As [`row_dots`].
#[inline(always)]
unsafe fn row_dots_body<T: Scalar>(
    n: usize,
    k: usize,
    (a, ra, ca): (*const T, isize, isize),
    (b, rb, cb): (*const T, isize, isize),
    (d, ds): (*mut T, isize),
) {
    for r in 0..n as isize {
        // SAFETY: row r of each matrix and output r lie inside the arrays.
        unsafe { *d.offset(r * ds) = dot_body(a.offset(r * ra), ca, b.offset(r * rb), cb, k) };
    }
}

/// `Σ_p x[p·sx] · y[p·sy]` for `p < k`, split over up to `threads` threads when long.
/// The split depends only on `k` and `threads`, so a call's result does not depend on
/// the threads' timing.
///
/// # Safety
/// The `k` elements addressed from each base pointer are readable.
pub(super) unsafe fn dot<T: Scalar>(
    x: *const T,
    sx: isize,
    y: *const T,
    sy: isize,
    k: usize,
    threads: usize,
) -> T {
    // SAFETY: forwarded; the wide copy runs only where the CPU has AVX2.
    let run = |x: *const T, y: *const T, k: usize| unsafe {
        if simd::avx2() {
            dot_avx2(x, sx, y, sy, k)
        } else {
            dot_body(x, sx, y, sy, k)
        }
    };
    if threads < 2 || k < PAR_WORK {
        return run(x, y, k);
    }
    let per = k.div_ceil(threads);
    let (px, py) = (SendPtr(x as *mut T), SendPtr(y as *mut T));
    let parts: Vec<T> = (0..threads)
        .into_par_iter()
        .map(|t| {
            let (px, py) = (px, py);
            let p0 = (t * per).min(k);
            let off = p0 as isize;
            run(
                px.get().wrapping_offset(off * sx),
                py.get().wrapping_offset(off * sy),
                per.min(k - p0),
            )
        })
        .collect();
    parts.into_iter().fold(T::zero(), |s, v| s + v)
}

simd::avx2_copy!(unsafe fn dot_avx2<T: Scalar>(
    x: *const T,
    sx: isize,
    y: *const T,
    sy: isize,
    k: usize,
) -> T = dot_body);

/// [`dot`]'s loops, on one thread.
///
/// # Safety
/// As [`dot`].
#[inline(always)]
pub(super) unsafe fn dot_body<T: Scalar>(
    x: *const T,
    sx: isize,
    y: *const T,
    sy: isize,
    k: usize,
) -> T {
    let mut lanes = [T::zero(); DOT_LANES];
    let mut acc = T::zero();
    if sx == 1 && sy == 1 {
        // SAFETY: k consecutive elements from each base (the caller's contract).
        let (x, y) = unsafe {
            (
                std::slice::from_raw_parts(x, k),
                std::slice::from_raw_parts(y, k),
            )
        };
        let (xc, yc) = (x.chunks_exact(DOT_LANES), y.chunks_exact(DOT_LANES));
        for (&u, &v) in xc.remainder().iter().zip(yc.remainder()) {
            acc += u * v;
        }
        for (u, v) in xc.zip(yc) {
            for l in 0..DOT_LANES {
                lanes[l] += u[l] * v[l];
            }
        }
    } else {
        let full = k - k % DOT_LANES;
        for p0 in (0..full).step_by(DOT_LANES) {
            for (l, lane) in lanes.iter_mut().enumerate() {
                let p = (p0 + l) as isize;
                // SAFETY: p < k.
                unsafe { *lane += *x.offset(p * sx) * *y.offset(p * sy) };
            }
        }
        for p in full as isize..k as isize {
            // SAFETY: p < k.
            unsafe { acc += *x.offset(p * sx) * *y.offset(p * sy) };
        }
    }
    lanes.iter().fold(acc, |s, &l| s + l)
}

#[cfg(test)]
mod tests;
