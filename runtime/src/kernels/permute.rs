//! Materialising a strided view in standard layout, fast.
//!
//! ndarray's generic copy walks a permuted dynamic-rank view element by element; a
//! 64⁴ transpose took 0.6 s that way. Here adjacent axes that are contiguous together are
//! merged first, rows whose source is contiguous are copied with `copy_from_slice`, and
//! otherwise the output's last axis and the source's most contiguous axis are transposed
//! in cache-sized tiles.

use super::{alloc, Scalar};
use ndarray::{ArrayD, ArrayViewD};

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
    let r = dims.len();
    // SAFETY (all unsafe blocks below): every source offset is Σ i_a·stride_a with
    // 0 ≤ i_a < n_a, an element of `v`; every destination offset is the row-major index
    // of the same element, < the buffer's length; each destination element is written
    // exactly once, as `alloc::uninit` requires.
    let fill = |dst: *mut T| unsafe {
        if r == 0 {
            *dst = *src;
        } else if dims[r - 1].1 == 1 && (dims[r - 1].0 >= SHORT_ROW || r < 3) {
            // Contiguous rows: odometer over the outer axes, memcpy each row.
            let (row, _) = dims[r - 1];
            let outer = &dims[..r - 1];
            let mut idx = vec![0usize; outer.len()];
            let mut d = 0usize;
            loop {
                let off: isize = idx
                    .iter()
                    .zip(outer)
                    .map(|(&i, &(_, s))| i as isize * s)
                    .sum();
                std::ptr::copy_nonoverlapping(src.offset(off), dst.add(d), row);
                d += row;
                if !advance(&mut idx, outer) {
                    break;
                }
            }
        } else if dims[r - 1].1 == 1 {
            // Short contiguous rows (a transpose of blocks, e.g. [u,w,z,j] -> [z,u,w,j]
            // with j = 5): one row per step of an odometer costs more than the copy, and
            // consecutive rows come from far apart. Tile the other axes as below, moving a
            // whole row per element.
            tiled(src, dst, &dims[..r - 1], dims[r - 1].0);
        } else if r == 1 {
            // One strided axis (a diagonal, a reversed or stepped vector): a gather.
            let (n, st) = dims[0];
            for i in 0..n {
                *dst.add(i) = *src.offset(i as isize * st);
            }
        } else {
            tiled(src, dst, &dims, 1);
        }
    };
    // SAFETY: `fill` writes every element (see above).
    unsafe { alloc::uninit(&shape, fill) }
}

/// Rows of at most this many contiguous elements are moved as blocks of a tiled transpose.
const SHORT_ROW: usize = 16;

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
