//! Materialising a strided view in standard layout, fast.
//!
//! ndarray's generic copy walks a permuted dynamic-rank view element by element; a
//! 64⁴ transpose took 0.6 s that way. Here adjacent axes that are contiguous together are
//! merged first, rows whose source is contiguous are copied with `copy_from_slice`, and
//! otherwise the output's last axis and the source's most contiguous axis are transposed
//! in cache-sized tiles.

use super::{alloc, Scalar};
use ndarray::{ArrayD, ArrayViewD};

const TILE: usize = 32;

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
        } else if dims[r - 1].1 == 1 {
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
        } else if r == 1 {
            // One strided axis (a diagonal, a reversed or stepped vector): a gather.
            let (n, st) = dims[0];
            for i in 0..n {
                *dst.add(i) = *src.offset(i as isize * st);
            }
        } else {
            // Tile the output's last axis (L) against the source's most contiguous other
            // axis (P); r >= 2 here, so P is not L.
            let (nl, sl) = dims[r - 1];
            let p = (0..r - 1)
                .min_by_key(|&a| dims[a].1.unsigned_abs())
                .unwrap_or(0);
            let (np, sp) = dims[p];
            // Destination strides (row-major over `dims`).
            let mut dstr = vec![1usize; r];
            for a in (0..r - 1).rev() {
                dstr[a] = dstr[a + 1] * dims[a + 1].0;
            }
            let outer: Vec<(usize, isize)> =
                (0..r - 1).filter(|&a| a != p).map(|a| dims[a]).collect();
            let outer_d: Vec<usize> = (0..r - 1).filter(|&a| a != p).map(|a| dstr[a]).collect();
            let dp = dstr[p];
            let mut idx = vec![0usize; outer.len()];
            loop {
                let so: isize = idx
                    .iter()
                    .zip(&outer)
                    .map(|(&i, &(_, s))| i as isize * s)
                    .sum();
                let dof: usize = idx.iter().zip(&outer_d).map(|(&i, &s)| i * s).sum();
                for p0 in (0..np).step_by(TILE) {
                    for l0 in (0..nl).step_by(TILE) {
                        for ip in p0..(p0 + TILE).min(np) {
                            let s_row = src.offset(so + ip as isize * sp);
                            let d_row = dst.add(dof + ip * dp);
                            for il in l0..(l0 + TILE).min(nl) {
                                *d_row.add(il) = *s_row.offset(il as isize * sl);
                            }
                        }
                    }
                }
                if !advance(&mut idx, &outer) {
                    break;
                }
            }
        }
    };
    // SAFETY: `fill` writes every element (see above).
    unsafe { alloc::uninit(&shape, fill) }
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
