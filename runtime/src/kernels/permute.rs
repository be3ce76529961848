//! Materialising a strided view in standard layout, fast.
//!
//! ndarray's generic copy walks a permuted dynamic-rank view element by element; a
//! 64⁴ transpose took 0.6 s that way. Here adjacent axes that are contiguous together are
//! merged first, rows whose source is contiguous are copied with `copy_from_slice`, and
//! otherwise the output's last axis and the source's most contiguous axis are transposed
//! in cache-sized tiles.

use super::unary::SendPtr;
use super::{alloc, Scalar};
use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

/// Tile length along the source's most contiguous axis (P in [`tiled`]).
const TILE_P: usize = 32;
/// Tile length along the output's last axis (L), whose source elements lie a stride apart:
/// no more than a cache's associativity (8 ways here), because with power-of-two strides
/// every one of them falls in the same cache set. 32 thrashed: transposing tfno's
/// `[b,i,x,y]` (2 MiB, i 4 KiB apart) into `[y,b,x,i]` took 1.3 ms with 32, 0.37 ms with 8;
/// a 64⁴ `ijkl->ljki` 56 → 36 ms.
const TILE_L: usize = 8;

/// `v` copied into a new standard-layout array of the same shape.
pub fn to_standard<T: Scalar>(v: ArrayViewD<T>) -> ArrayD<T> {
    if v.len() < 64 {
        return v.as_standard_layout().into_owned();
    }
    let shape = v.shape().to_vec();
    if let Some(s) = v.as_slice() {
        // SAFETY: the closure copies all `s.len()` elements into the fresh buffer.
        return unsafe {
            alloc::uninit(&shape, |d| {
                std::ptr::copy_nonoverlapping(s.as_ptr(), d, s.len())
            })
        };
    }
    // Merge output-adjacent axes that are also adjacent in memory; drop length-1 axes.
    let mut dims: Vec<(usize, isize)> = Vec::new();
    for (&n, &s) in shape.iter().zip(v.strides()) {
        if n == 1 {
            continue;
        }
        match dims.last_mut() {
            Some((pn, ps)) if *ps == s * n as isize => {
                *pn *= n;
                *ps = s;
            }
            _ => dims.push((n, s)),
        }
    }
    let src = v.as_ptr();
    let threads = super::threads();
    // Source bytes the copy moves: a line per element where `copy_dims` gathers (no axis
    // steps by less than a line: a diagonal, `jkk->jk`, reads 64 B for each 4 B it
    // keeps), so that such a gather, bound by memory latency, is split over threads as
    // early as a plain copy of as many lines (trace_diag's jkk diagonal: 32K elements,
    // 2 MiB of lines). A transpose's tiles reuse each line: its bytes are its elements'.
    let size = std::mem::size_of::<T>();
    let bytes = v.len()
        * if gathers::<T>(&dims) {
            LINE.max(size)
        } else {
            size
        };
    let fill = |dst: *mut T| {
        if threads > 1 && bytes >= PAR_COPY_BYTES && dims.len() >= 2 && dims[0].0 >= 2 * threads {
            // Split the first output axis over the pool: a permuting copy is bound by
            // latency and TLB misses more than by bandwidth, so a second core helps, and
            // a large copy feeds a contraction that is itself parallel.
            let (n0, s0) = dims[0];
            let row: usize = dims[1..].iter().map(|d| d.0).product();
            let chunks = (4 * threads).min(n0);
            let per = n0.div_ceil(chunks);
            let (sp, dp) = (SendPtr(src.cast_mut()), SendPtr(dst));
            (0..chunks).into_par_iter().for_each(|c| {
                let start = c * per;
                if start < n0 {
                    let mut sub = dims.clone();
                    sub[0].0 = per.min(n0 - start);
                    // SAFETY: the chunk's elements are those of `v` with first index in
                    // start..start+len, and their destinations the matching rows of the
                    // buffer, disjoint from every other chunk's.
                    unsafe {
                        copy_dims(
                            sp.get().offset(start as isize * s0),
                            dp.get().add(start * row),
                            &sub,
                        )
                    };
                }
            });
        } else {
            // SAFETY: `dims` walks exactly the elements of `v`; the buffer holds them all.
            unsafe { copy_dims(src, dst, &dims) };
        }
    };
    // SAFETY: `fill` writes every element (see `copy_dims`).
    unsafe { alloc::uninit(&shape, fill) }
}

/// Copies that move at least this many source bytes are split over threads.
const PAR_COPY_BYTES: usize = 1 << 20;

/// Writes the elements `src + Σ i_a·dims[a].1` to `dst` in row-major order over `dims`,
/// choosing the loop by the layout: contiguous rows are copied whole, short ones moved as
/// blocks of a tiled transpose, isolated elements gathered, the rest tiled.
///
/// # Safety
/// Every source offset (0 ≤ i_a < n_a) lies in the source array; `dst` holds `Π dims`
/// elements, each of which is written exactly once.
unsafe fn copy_dims<T: Copy>(src: *const T, dst: *mut T, dims: &[(usize, isize)]) {
    let r = dims.len();
    // SAFETY (all unsafe blocks below): every source offset is Σ i_a·stride_a with
    // 0 ≤ i_a < n_a, an element of the source; every destination offset is the row-major
    // index of the same element, < `dst`'s length.
    unsafe {
        if r == 0 {
            *dst = *src;
        } else if dims[r - 1].1 == 1 && (dims[r - 1].0 >= SHORT_ROW || r < 3) {
            // Contiguous rows: odometer over the outer axes, memcpy each row.
            rows(src, dst, dims, |s, d, n, _| {
                std::ptr::copy_nonoverlapping(s, d, n)
            });
        } else if dims[r - 1].1 == 1 {
            // Short contiguous rows (a transpose of blocks, e.g. [u,w,z,j] -> [z,u,w,j]
            // with j = 5): one row per step of an odometer costs more than the copy, and
            // consecutive rows come from far apart. Tile the other axes as below, moving a
            // whole row per element.
            tiled(src, dst, &dims[..r - 1], dims[r - 1].0);
        } else if gathers::<T>(dims) {
            // Every source element on its own cache line (a diagonal such as `jkk->jk`, a
            // stepped view): tiles would reuse nothing and only spread the reads over more
            // pages at once, so gather in output order, rows along the last axis.
            gather(src, dst, dims);
        } else {
            tiled(src, dst, dims, 1);
        }
    }
}

/// Rows of at most this many contiguous elements are moved as blocks of a tiled transpose.
const SHORT_ROW: usize = 16;

/// Bytes of a cache line.
const LINE: usize = 64;

/// Whether [`copy_dims`] gathers `dims` element by element: the innermost axis is not
/// unit-stride and no other steps by less than a cache line.
fn gathers<T>(dims: &[(usize, isize)]) -> bool {
    match dims.split_last() {
        Some((last, outer)) => last.1 != 1 && (outer.is_empty() || !shares_lines::<T>(outer)),
        None => false,
    }
}

/// Whether some axis of `outer` steps by less than a cache line, so that a tile along it
/// reads each source line more than once (what makes [`tiled`] pay).
fn shares_lines<T>(outer: &[(usize, isize)]) -> bool {
    outer
        .iter()
        .any(|&(_, s)| s.unsigned_abs() * std::mem::size_of::<T>() < LINE)
}

/// Copies `src + Σ i_a·dims[a].1` to `dst` in row-major order over `dims`, a strided row
/// along the last axis at a time. In the jkk diagonal of `iij,jkk->ik` (j 1 MiB apart, k
/// 2 KiB apart) this took 0.088 ms where the tiles took 0.111.
///
/// # Safety
/// As [`rows`].
unsafe fn gather<T: Copy>(src: *const T, dst: *mut T, dims: &[(usize, isize)]) {
    // SAFETY: the caller's contract; `row` reads n elements `st` apart from `s`.
    unsafe {
        rows(src, dst, dims, |s, d, n, st| {
            for i in 0..n {
                *d.add(i) = *s.offset(i as isize * st);
            }
        })
    }
}

/// Calls `row(source, destination, length, source stride)` for each row along the last
/// axis of `dims`, in row-major order (an odometer over the other axes), destinations
/// packed one after the other from `dst`.
///
/// # Safety
/// Every source offset `Σ i_a·dims[a].1` lies in the source array; `dst` holds `Π dims`
/// elements; `dims` is not empty.
unsafe fn rows<T>(
    src: *const T,
    dst: *mut T,
    dims: &[(usize, isize)],
    row: impl Fn(*const T, *mut T, usize, isize),
) {
    let r = dims.len();
    let (n, st) = dims[r - 1];
    let outer = &dims[..r - 1];
    let mut idx = vec![0usize; outer.len()];
    let mut d = 0usize;
    loop {
        let off: isize = idx
            .iter()
            .zip(outer)
            .map(|(&i, &(_, s))| i as isize * s)
            .sum();
        // The caller's contract keeps both pointers in bounds.
        row(src.wrapping_offset(off), dst.wrapping_add(d), n, st);
        d += n;
        if !advance(&mut idx, outer) {
            break;
        }
    }
}

/// Copies the elements `src + Σ i_a·dims[a].1` (each a block of `blk` contiguous elements)
/// to `dst` in row-major order over `dims` (then the block): tiles the output's last axis
/// (L) against the source's most contiguous other axis (P), so that both sides of a tile
/// stay in cache.
///
/// # Safety
/// Every source block lies in the source array; `dst` holds `Π dims · blk` elements;
/// `dims.len() >= 2`.
unsafe fn tiled<T: Copy>(src: *const T, dst: *mut T, dims: &[(usize, isize)], blk: usize) {
    let r = dims.len();
    let (nl, sl) = dims[r - 1];
    let p = (0..r - 1)
        .min_by_key(|&a| dims[a].1.unsigned_abs())
        .unwrap_or(0);
    let (np, sp) = dims[p];
    // Destination strides in elements (row-major over `dims`, then the block).
    let mut dstr = vec![blk; r];
    for a in (0..r - 1).rev() {
        dstr[a] = dstr[a + 1] * dims[a + 1].0;
    }
    let outer: Vec<(usize, isize)> = (0..r - 1).filter(|&a| a != p).map(|a| dims[a]).collect();
    let outer_d: Vec<usize> = (0..r - 1).filter(|&a| a != p).map(|a| dstr[a]).collect();
    let dp = dstr[p];
    let mut idx = vec![0usize; outer.len()];
    // SAFETY: the caller's contract: offsets stay within both arrays.
    unsafe {
        loop {
            let so: isize = idx
                .iter()
                .zip(&outer)
                .map(|(&i, &(_, s))| i as isize * s)
                .sum();
            let dof: usize = idx.iter().zip(&outer_d).map(|(&i, &s)| i * s).sum();
            for p0 in (0..np).step_by(TILE_P) {
                for l0 in (0..nl).step_by(TILE_L) {
                    for ip in p0..(p0 + TILE_P).min(np) {
                        let s_row = src.offset(so + ip as isize * sp);
                        let d_row = dst.add(dof + ip * dp);
                        if blk == 1 {
                            for il in l0..(l0 + TILE_L).min(nl) {
                                *d_row.add(il) = *s_row.offset(il as isize * sl);
                            }
                        } else {
                            for il in l0..(l0 + TILE_L).min(nl) {
                                copy_block(
                                    s_row.offset(il as isize * sl),
                                    d_row.add(il * blk),
                                    blk,
                                );
                            }
                        }
                    }
                }
            }
            if !advance(&mut idx, &outer) {
                break;
            }
        }
    }
}

/// Copies `n < SHORT_ROW` contiguous elements. A call to `memcpy` per short block cost more
/// than the bytes (it was a third of `e3nn_fctp`'s time); fixed-size array moves compile
/// to a few vector loads and stores.
///
/// # Safety
/// `n` elements readable at `src`, writable at `dst`, not overlapping.
#[inline(always)]
unsafe fn copy_block<T: Copy>(src: *const T, dst: *mut T, n: usize) {
    macro_rules! fixed {
        ($($k:literal)*) => {
            match n {
                // SAFETY (every arm): the caller's contract; unaligned array moves.
                $($k => unsafe {
                    std::ptr::write_unaligned(
                        dst.cast::<[T; $k]>(),
                        std::ptr::read_unaligned(src.cast::<[T; $k]>()),
                    )
                },)*
                // SAFETY: the caller's contract.
                _ => unsafe { std::ptr::copy_nonoverlapping(src, dst, n) },
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
}

/// Odometer step over `dims`; false when it wraps around.
fn advance(idx: &mut [usize], dims: &[(usize, isize)]) -> bool {
    for a in (0..idx.len()).rev() {
        idx[a] += 1;
        if idx[a] < dims[a].0 {
            return true;
        }
        idx[a] = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, Axis, IxDyn, Slice};

    #[test]
    fn matches_ndarray_on_permuted_sliced_views() {
        let a = Array::from_shape_fn(IxDyn(&[5, 7, 3, 66]), |ix| {
            (ix[0] * 10000 + ix[1] * 1000 + ix[2] * 100 + ix[3]) as f64
        });
        let perms: [[usize; 4]; 5] = [
            [3, 2, 1, 0],
            [0, 3, 1, 2],
            [1, 0, 2, 3],
            [2, 3, 0, 1],
            [3, 0, 2, 1],
        ];
        for perm in perms {
            let v = a.view().permuted_axes(IxDyn(&perm));
            assert_eq!(to_standard(v.clone()), v.as_standard_layout().into_owned());
            let mut w = v.slice_each_axis(|ax| {
                Slice::new(0, None, if ax.axis.index() == 1 { 2 } else { 1 })
            });
            w.invert_axis(Axis(0));
            assert_eq!(to_standard(w.clone()), w.as_standard_layout().into_owned());
        }
        // A diagonal of a square matrix: one strided axis (this once wrote out of bounds).
        let sq = Array::from_shape_fn(IxDyn(&[300, 300]), |ix| (ix[0] * 1000 + ix[1]) as f64);
        let diag = crate::kernels::unary::unary(sq.view(), &[0, 0], &[0]);
        assert_eq!(
            diag.iter().copied().collect::<Vec<_>>(),
            (0..300).map(|i| (i * 1001) as f64).collect::<Vec<_>>()
        );
        let rev = sq
            .slice(ndarray::s![.., 5])
            .into_dyn()
            .slice_each_axis(|_| Slice::new(0, None, -3))
            .to_owned();
        let rv = sq.slice(ndarray::s![.., 5]).into_dyn();
        let rv = rv.slice_each_axis(|_| Slice::new(0, None, -3));
        assert_eq!(to_standard(rv), rev);
        let b = Array::from_shape_fn(IxDyn(&[1, 40, 1, 50]), |ix| (ix[1] * 100 + ix[3]) as f32);
        let v = b.view().permuted_axes(IxDyn(&[3, 2, 1, 0]));
        assert_eq!(to_standard(v.clone()), v.as_standard_layout().into_owned());
    }

    /// Copies of at least `PAR_COPY_BYTES` split their first axis over the pool's threads;
    /// views whose every axis steps a cache line or more are gathered in output order
    /// (`jkk -> jk`). Each against ndarray's own copy, on one to three threads.
    #[test]
    fn large_copies_and_gathers_match_ndarray() {
        let a = Array::from_shape_fn(IxDyn(&[37, 64, 64, 2]), |ix| {
            (ix[0] * 100000 + ix[1] * 1000 + ix[2] * 10 + ix[3]) as f64
        });
        assert!(a.len() * 8 >= PAR_COPY_BYTES);
        let d = Array::from_shape_fn(IxDyn(&[9, 130, 130]), |ix| {
            (ix[0] * 100000 + ix[1] * 1000 + ix[2]) as f32
        });
        for threads in [1, 2, 3] {
            crate::kernels::test_util::on_threads(threads, || {
                for perm in [[1, 0, 3, 2], [3, 2, 1, 0], [2, 0, 1, 3]] {
                    let v = a.view().permuted_axes(IxDyn(&perm));
                    assert_eq!(to_standard(v.clone()), v.as_standard_layout().into_owned());
                }
                let diag = crate::kernels::unary::unary(d.view(), &[0, 1, 1], &[0, 1]);
                let want = Array::from_shape_fn(IxDyn(&[9, 130]), |ix| d[[ix[0], ix[1], ix[1]]]);
                assert_eq!(diag, want);
                let diag_t = crate::kernels::unary::unary(d.view(), &[0, 1, 1], &[1, 0]);
                assert_eq!(diag_t, want.t().into_owned().into_dyn());
                // A line per element (step 17 × 4 B): 19200 elements move 1.2 MB of
                // lines, so the gather takes the split path (checked against ndarray there).
                let g = Array::from_shape_fn(IxDyn(&[64, 17 * 300]), |ix| {
                    (ix[0] * 10000 + ix[1]) as f32
                });
                let v = g.slice_axis(Axis(1), Slice::new(0, None, 17));
                let dims = [(64, 17 * 300), (300, 17)];
                assert!(gathers::<f32>(&dims) && v.len() * LINE >= PAR_COPY_BYTES);
                assert!(
                    !gathers::<f32>(&[(256, 1), (256, 256)]),
                    "a transpose is tiled"
                );
                assert_eq!(to_standard(v.clone()), v.as_standard_layout().into_owned());
            });
        }
    }

    #[test]
    fn short_rows_move_as_blocks() {
        // [u, w, z, j] -> [z, u, w, j] with a short contiguous j, and variants with a
        // reversed or stepped outer axis and rows of 1..SHORT_ROW elements.
        for j in [1usize, 2, 5, 15, 16] {
            let a = Array::from_shape_fn(IxDyn(&[6, 7, 40, j]), |ix| {
                (ix[0] * 100000 + ix[1] * 1000 + ix[2] * 10 + ix[3]) as f32
            });
            for perm in [[2, 0, 1, 3], [1, 2, 0, 3], [2, 1, 0, 3]] {
                let v = a.view().permuted_axes(IxDyn(&perm));
                assert_eq!(to_standard(v.clone()), v.as_standard_layout().into_owned());
                let mut w = v.slice_each_axis(|ax| {
                    Slice::new(0, None, if ax.axis.index() == 0 { 3 } else { 1 })
                });
                w.invert_axis(Axis(1));
                assert_eq!(to_standard(w.clone()), w.as_standard_layout().into_owned());
            }
        }
    }

    /// Random ranks, lengths, permutations and steps (±1, ±2), large enough to take the
    /// fast paths, against ndarray's own copy.
    #[test]
    fn random_strided_views_match_ndarray() {
        use crate::kernels::test_util::{embedded_view, random_storage, Rng};
        let mut rng = Rng(7);
        for _ in 0..400 {
            let rank = 1 + rng.below(4);
            let shape: Vec<usize> = (0..rank).map(|_| 1 + rng.below(12)).collect();
            let (st, emb) = random_storage::<f64>(&shape, &mut rng);
            let v = embedded_view(&st, &emb);
            assert_eq!(
                to_standard(v.clone()),
                v.as_standard_layout().into_owned(),
                "shape {shape:?}"
            );
        }
    }
}
