//! One-operand einsum: permutations, diagonals, traces and partial sums, plus
//! broadcasting and scaling.

use super::{alloc, simd, Scalar};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, ShapeBuilder};
use rayon::prelude::*;

/// One-operand einsum `a[a_idx] -> out[out_idx]`.
///
/// `a_idx` may repeat labels (a diagonal such as `ii->i` or `ijji->ij`);
/// labels of `a` missing from `out_idx` are summed (traces, reductions).
/// Returns an array in standard layout with axes in `out_idx` order.
///
/// # Panics
/// On a broken caller contract: `a_idx.len() != a.ndim()`, a repeated label
/// with unequal axis lengths, a repeated label in `out_idx`, or an output label
/// that `a` does not have.
pub fn unary<T: Scalar>(a: ArrayViewD<T>, a_idx: &[u32], out_idx: &[u32]) -> ArrayD<T> {
    let (d, labels) = diagonal_view(a, a_idx);
    reduce_labels(d, &labels, out_idx, T::zero(), |acc, x| *acc += x)
}

/// Broadcasts `a` (labels `a_idx`, distinct, all in `out_idx`) to the array
/// with labels `out_idx` and shape `out_shape`. Axes of `a` may come in any
/// order; an axis of length 1 may also be stretched (numpy broadcasting).
///
/// # Panics
/// If a label of `a` is not in `out_idx`, or lengths are incompatible.
pub fn broadcast_to<T: Scalar>(
    a: ArrayViewD<T>,
    a_idx: &[u32],
    out_idx: &[u32],
    out_shape: &[usize],
) -> ArrayD<T> {
    assert_eq!(
        out_idx.len(),
        out_shape.len(),
        "one length per output label"
    );
    let v = align_to(a, a_idx, out_idx);
    let b = v.broadcast(IxDyn(out_shape)).unwrap_or_else(|| {
        panic!(
            "cannot broadcast shape {:?} (labels {a_idx:?}) to {out_shape:?} (labels {out_idx:?})",
            v.shape()
        )
    });
    to_standard(b)
}

/// `s * a` as a new standard-layout array.
pub fn scale<T: Scalar>(a: ArrayViewD<T>, s: T) -> ArrayD<T> {
    let mut out = to_standard(a);
    out.mapv_inplace(|x| x * s);
    out
}

/// Copies a view into a fresh array in standard layout.
pub(crate) fn to_standard<T: Scalar>(v: ArrayViewD<T>) -> ArrayD<T> {
    super::permute::to_standard(v)
}

/// Reorders the axes of `a` to follow `out_idx`, inserting length-1 axes for
/// the labels `a` lacks, so that the result broadcasts against `out_idx`.
pub(crate) fn align_to<'a, T>(
    a: ArrayViewD<'a, T>,
    a_idx: &[u32],
    out_idx: &[u32],
) -> ArrayViewD<'a, T> {
    assert_eq!(a.ndim(), a_idx.len(), "one label per axis");
    assert_distinct(a_idx, "operand labels");
    let order: Vec<usize> = out_idx
        .iter()
        .filter_map(|l| a_idx.iter().position(|x| x == l))
        .collect();
    assert_eq!(
        order.len(),
        a_idx.len(),
        "operand labels {a_idx:?} must all appear in {out_idx:?}"
    );
    let mut v = a.permuted_axes(order);
    // Inserting in increasing position keeps earlier positions valid.
    for (i, l) in out_idx.iter().enumerate() {
        if !a_idx.contains(l) {
            v = v.insert_axis(Axis(i));
        }
    }
    v
}

pub(crate) fn assert_distinct(labels: &[u32], what: &str) {
    for (i, l) in labels.iter().enumerate() {
        assert!(
            !labels[..i].contains(l),
            "{what} {labels:?} repeat label {l}"
        );
    }
}

/// Collapses repeated labels of `a` into one axis each (a generalised
/// diagonal), without copying. Returns the view and its distinct labels, in
/// order of first appearance.
///
/// # Panics
/// If `a_idx.len() != a.ndim()` or a repeated label has unequal lengths.
pub(crate) fn diagonal_view<'a, T>(
    a: ArrayViewD<'a, T>,
    a_idx: &[u32],
) -> (ArrayViewD<'a, T>, Vec<u32>) {
    assert_eq!(a.ndim(), a_idx.len(), "one label per axis");
    let mut labels: Vec<u32> = Vec::with_capacity(a_idx.len());
    let mut lens: Vec<usize> = Vec::with_capacity(a_idx.len());
    let mut strides: Vec<isize> = Vec::with_capacity(a_idx.len());
    for (ax, &l) in a_idx.iter().enumerate() {
        let (len, st) = (a.len_of(Axis(ax)), a.strides()[ax]);
        match labels.iter().position(|&x| x == l) {
            Some(p) => {
                assert_eq!(lens[p], len, "repeated label {l} has unequal axis lengths");
                // Stepping the diagonal moves along every axis carrying `l` at once.
                strides[p] += st;
            }
            None => {
                labels.push(l);
                lens.push(len);
                strides.push(st);
            }
        }
    }
    if labels.len() == a_idx.len() {
        return (a, labels);
    }
    if lens.contains(&0) {
        // No element is addressed, so a safe empty view of that shape will do.
        let empty =
            ArrayViewD::from_shape(IxDyn(&lens), &[]).expect("an empty shape fits an empty slice");
        return (empty, labels);
    }
    // `from_shape_ptr` wants non-negative strides: start from the lowest
    // address along each negative axis, and flip those axes back afterwards.
    let mut base = a.as_ptr();
    let mut flipped = Vec::new();
    for (i, st) in strides.iter_mut().enumerate() {
        if *st < 0 {
            base = base.wrapping_offset((lens[i] - 1) as isize * *st);
            *st = -*st;
            flipped.push(i);
        }
    }
    let ustrides: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
    // SAFETY: the diagonal element with distinct-label indices (i_1..i_r) is
    // the element of `a` whose every axis takes the index of its label, at
    // `a.as_ptr() + Σ_p i_p * strides_p` (with the original signed strides).
    // The rebased pointer and flipped strides address exactly the same set of
    // elements (all lengths are non-zero here), so every pointer the view can
    // form lies inside `a`'s data, which is shared-borrowed for `'a` and not
    // mutably aliased since `a` is a shared view. Offsets stay within one
    // allocation, so they cannot overflow `isize`.
    let mut v = unsafe { ArrayViewD::from_shape_ptr(IxDyn(&lens).strides(IxDyn(&ustrides)), base) };
    for i in flipped {
        v.invert_axis(Axis(i));
    }
    (v, labels)
}

/// Accumulator lanes of a reduced contiguous row in [`reduce_labels`].
const REDUCE_LANES: usize = 16;

/// Folds every axis of `d` (distinct `labels`) whose label is not in
/// `out_idx` into an output of `out_idx` order, starting from `init` and
/// combining with `f(acc, x)`. Standard-layout result; where the reduced set is
/// empty the result keeps `init`.
///
/// `f` must be associative and commutative with identity `init` (a sum from 0, a
/// max from -inf, a min from +inf): elements are folded in an unspecified order and
/// partial folds are combined with `f` itself.
pub(crate) fn reduce_labels<T: Scalar, F: Fn(&mut T, T) + Sync>(
    d: ArrayViewD<T>,
    labels: &[u32],
    out_idx: &[u32],
    init: T,
    f: F,
) -> ArrayD<T> {
    assert_eq!(d.ndim(), labels.len(), "one label per axis");
    assert_distinct(out_idx, "output labels");
    let pos: Vec<usize> = out_idx
        .iter()
        .map(|l| {
            labels.iter().position(|x| x == l).unwrap_or_else(|| {
                panic!("output label {l} is not among operand labels {labels:?}")
            })
        })
        .collect();
    if pos.len() == labels.len() {
        // Nothing to reduce: a pure permutation.
        return to_standard(d.permuted_axes(pos));
    }
    let out_shape: Vec<usize> = pos.iter().map(|&p| d.len_of(Axis(p))).collect();
    let mut out = alloc::filled(&out_shape, init);
    if out.is_empty() || d.is_empty() {
        return out;
    }
    // Stride in `out` of every axis of `d`; 0 for reduced axes, so that all
    // their indices land on the same accumulator.
    let mut acc_strides = vec![0usize; labels.len()];
    for (o, &p) in pos.iter().enumerate() {
        acc_strides[p] = out.strides()[o] as usize;
    }
    // Put the most contiguous axis of `d` last, then merge neighbouring axes that are
    // one progression in both `d` and the accumulator, so the inner loop is long.
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(d.strides()[i].unsigned_abs()));
    let mut dims: Vec<LoopDim> = Vec::new();
    for &i in &order {
        let (n, sd, so) = (d.len_of(Axis(i)), d.strides()[i], acc_strides[i] as isize);
        if n == 1 {
            continue;
        }
        match dims.last_mut() {
            Some((pn, psd, pso)) if *psd == sd * n as isize && *pso == so * n as isize => {
                *pn *= n;
                *psd = sd;
                *pso = so;
            }
            _ => dims.push((n, sd, so)),
        }
    }
    let src = d.as_ptr();
    let dst = out.as_mut_ptr();
    if dims.is_empty() {
        // Every axis has length 1: one element.
        // SAFETY: both arrays hold at least one element (checked non-empty above).
        unsafe { f(&mut *dst, *src) };
        return out;
    }
    let threads = super::threads();
    let total = d.len();
    if threads == 1 || total < REDUCE_PAR {
        // SAFETY: `dims` walks exactly the elements of `d` and, with accumulator strides,
        // of `out` (see `fold`); `out` is a fresh array written only here.
        unsafe { fold(src, dst, &dims, init, &f) };
        return out;
    }
    // Split the outermost axis that allows it over threads, so that each thread reads
    // long runs of the input: a kept axis (accumulator stride ≠ 0) gives each thread its
    // own accumulators; a reduced one, when the output is small, a private copy of the
    // output, the copies folded together after. (Splitting the longest kept axis instead
    // split `ijk->k`'s innermost axis: each thread read every row in part, and two threads
    // took 6.2 ms where one took 3.0.)
    let small_out = out.len() * threads * 8 <= total;
    let Some(axis) =
        (0..dims.len()).find(|&a| dims[a].0 >= threads && (dims[a].2 != 0 || small_out))
    else {
        // SAFETY: as above.
        unsafe { fold(src, dst, &dims, init, &f) };
        return out;
    };
    let private = dims[axis].2 == 0;
    let chunks = (4 * threads).min(dims[axis].0);
    let per = dims[axis].0.div_ceil(chunks);
    let len = dims[axis].0;
    let chunk_dims = |c: usize| -> Option<(Vec<LoopDim>, isize, isize)> {
        let start = c * per;
        (start < len).then(|| {
            let mut dd = dims.clone();
            dd[axis].0 = per.min(len - start);
            (
                dd,
                start as isize * dims[axis].1,
                start as isize * dims[axis].2,
            )
        })
    };
    let (src_p, dst_p) = (SendPtr(src as *mut T), SendPtr(dst));
    if !private {
        (0..chunks).into_par_iter().for_each(|c| {
            if let Some((dd, os, od)) = chunk_dims(c) {
                // SAFETY: the chunk walks a sub-range of `axis`, so its elements of `d` and
                // accumulators of `out` are within the arrays; chunks of a kept axis own
                // disjoint accumulators, so no two threads write one element.
                unsafe {
                    fold(
                        src_p.get().offset(os),
                        dst_p.get().offset(od),
                        &dd,
                        init,
                        &f,
                    )
                };
            }
        });
        return out;
    }
    let partials: Vec<ArrayD<T>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut part = alloc::filled(&out_shape, init);
            if let Some((dd, os, _)) = chunk_dims(c) {
                // SAFETY: as above; `part` has `out`'s shape and standard layout, so the
                // accumulator strides address it, and it belongs to this thread alone.
                unsafe { fold(src_p.get().offset(os), part.as_mut_ptr(), &dd, init, &f) };
            }
            part
        })
        .collect();
    let acc = out.as_slice_mut().expect("standard layout");
    for part in &partials {
        for (a, &x) in acc
            .iter_mut()
            .zip(part.as_slice().expect("standard layout"))
        {
            f(a, x);
        }
    }
    out
}

/// One loop of a reduction: (length, stride in the input, stride in the accumulators).
type LoopDim = (usize, isize, isize);

/// Elements of input above which [`reduce_labels`] splits its work over threads.
const REDUCE_PAR: usize = 1 << 16;

/// A raw pointer that the chunks of one parallel loop share across threads.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: used only by loops (`reduce_labels`, `permute::to_standard`) whose chunks read
// their input and write disjoint parts of the output (or private buffers), while both
// arrays outlive the parallel loop.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Folds the elements `src + Σ i_a·dims[a].1` into the accumulators `dst + Σ i_a·dims[a].2`
/// (`i_a < dims[a].0`), the last axis innermost.
///
/// # Safety
/// Every addressed element must lie in its array; `dst`'s accumulators must not be written
/// by anyone else during the call; `dims` is non-empty.
unsafe fn fold<T: Scalar, F: Fn(&mut T, T)>(
    src: *const T,
    dst: *mut T,
    dims: &[LoopDim],
    init: T,
    f: &F,
) {
    // SAFETY: the caller's contract; the wide copy runs only where the CPU has AVX2.
    unsafe {
        if simd::avx2() {
            fold_avx2(src, dst, dims, init, f)
        } else {
            fold_body(src, dst, dims, init, f)
        }
    }
}

simd::avx2_copy!(unsafe fn fold_avx2<T: Scalar, F: Fn(&mut T, T)>(
    src: *const T,
    dst: *mut T,
    dims: &[LoopDim],
    init: T,
    f: &F,
) = fold_body);

/// [`fold`]'s loops, inlined into its baseline and AVX2 copies.
///
/// # Safety
/// As [`fold`].
#[inline(always)]
unsafe fn fold_body<T: Scalar, F: Fn(&mut T, T)>(
    src: *const T,
    dst: *mut T,
    dims: &[LoopDim],
    init: T,
    f: &F,
) {
    let (inner, isd, iso) = dims[dims.len() - 1];
    let outer = &dims[..dims.len() - 1];
    let mut idx = vec![0usize; outer.len()];
    // SAFETY: the caller's contract.
    unsafe {
        loop {
            let (mut od, mut oo) = (0isize, 0isize);
            for (&i, &(_, sd, so)) in idx.iter().zip(outer) {
                od += i as isize * sd;
                oo += i as isize * so;
            }
            let (s, o) = (src.offset(od), dst.offset(oo));
            if iso == 0 {
                // Reduced inner axis: fold a row into one accumulator.
                let acc = &mut *o;
                if isd == 1 {
                    // Independent lanes: one running accumulator is bound by the latency
                    // of `f` per element; lanes vectorise. `f` is associative and
                    // commutative with identity `init`, so lanes fold into `acc` after.
                    let row = std::slice::from_raw_parts(s, inner);
                    let chunks = row.chunks_exact(REDUCE_LANES);
                    for &x in chunks.remainder() {
                        f(acc, x);
                    }
                    let mut lanes = [init; REDUCE_LANES];
                    for c in chunks {
                        for (l, &x) in lanes.iter_mut().zip(c) {
                            f(l, x);
                        }
                    }
                    for l in lanes {
                        f(acc, l);
                    }
                } else {
                    for j in 0..inner as isize {
                        f(acc, *s.offset(j * isd));
                    }
                }
            } else if isd == 1 && iso == 1 {
                // Kept inner axis, both contiguous: an elementwise row update.
                let row = std::slice::from_raw_parts_mut(o, inner);
                for (a, &x) in row.iter_mut().zip(std::slice::from_raw_parts(s, inner)) {
                    f(a, x);
                }
            } else {
                for j in 0..inner as isize {
                    f(&mut *o.offset(j * iso), *s.offset(j * isd));
                }
            }
            // Odometer over the outer axes.
            let mut a = outer.len();
            loop {
                if a == 0 {
                    return;
                }
                a -= 1;
                idx[a] += 1;
                if idx[a] < outer[a].0 {
                    break;
                }
                idx[a] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_close, embedded_view, random_storage, to_c64, Rng};
    use crate::reference::reference_einsum;
    use ndarray::{array, s, Array2};
    use num_complex::Complex64;
    use std::collections::BTreeMap;

    fn check_unary<T: Scalar>(rng: &mut Rng, tol: f64) {
        let nlab = rng.below(4);
        let sizes: BTreeMap<u32, usize> = (0..nlab as u32)
            .map(|l| (l, [0, 1, 2, 3, 2, 3][rng.below(6)]))
            .collect();
        let ndim = if nlab == 0 { 0 } else { rng.below(6) };
        let a_idx: Vec<u32> = (0..ndim).map(|_| rng.below(nlab) as u32).collect();
        let mut present: Vec<u32> = sizes
            .keys()
            .copied()
            .filter(|l| a_idx.contains(l))
            .collect();
        for i in (1..present.len()).rev() {
            present.swap(i, rng.below(i + 1));
        }
        let out_idx: Vec<u32> = present.into_iter().filter(|_| rng.below(2) == 0).collect();
        let shape: Vec<usize> = a_idx.iter().map(|l| sizes[l]).collect();
        let (st, emb) = random_storage::<T>(&shape, rng);
        let a = embedded_view(&st, &emb);
        let got = unary(a.view(), &a_idx, &out_idx);
        // The oracle sums over every label in `sizes`: keep only a's labels.
        let sizes: BTreeMap<u32, usize> = sizes
            .into_iter()
            .filter(|(l, _)| a_idx.contains(l))
            .collect();
        let want = reference_einsum(&[(to_c64(&a).view(), a_idx.clone())], &out_idx, &sizes);
        assert_close(&got, &want, tol);
    }

    #[test]
    fn random_configs_f64_c64_f32() {
        let mut rng = Rng(7);
        for _ in 0..400 {
            check_unary::<f64>(&mut rng, 1e-12);
            check_unary::<Complex64>(&mut rng, 1e-12);
            check_unary::<f32>(&mut rng, 1e-5);
        }
    }

    #[test]
    fn large_reductions_split_over_threads() {
        // Above REDUCE_PAR elements: a kept outer axis split over threads (ijk->i, ijk->ik),
        // a reduced outer axis split with private accumulators (ijk->k, ijk->, ij->j with
        // a short j), one
        // long row (i->), and a stepped, transposed view; in pools of 1, 2 and 3 threads,
        // against the oracle; and max with NaN through the private path.
        let mut rng = Rng(23);
        let a = ArrayD::from_shape_simple_fn(IxDyn(&[40, 30, 70]), || rng.scalar::<f64>());
        let sizes: BTreeMap<u32, usize> = [(0, 40), (1, 30), (2, 70)].into_iter().collect();
        let wide = ArrayD::from_shape_simple_fn(IxDyn(&[70000, 3]), || rng.scalar::<f64>());
        let wsizes: BTreeMap<u32, usize> = [(0, 70000), (1, 3)].into_iter().collect();
        let row = ArrayD::from_shape_simple_fn(IxDyn(&[100003]), || rng.scalar::<f64>());
        let rsizes: BTreeMap<u32, usize> = [(0, 100003)].into_iter().collect();
        for threads in [1, 2, 3] {
            crate::kernels::test_util::on_threads(threads, || {
                for out in [&[0u32][..], &[2], &[], &[2, 0], &[1]] {
                    let want =
                        reference_einsum(&[(to_c64(&a.view()).view(), vec![0, 1, 2])], out, &sizes);
                    assert_close(&unary(a.view(), &[0, 1, 2], out), &want, 1e-12);
                    let t = a.slice(s![..;2, .., ..]).reversed_axes().into_dyn();
                    let tsizes: BTreeMap<u32, usize> =
                        [(0, 70), (1, 30), (2, 20)].into_iter().collect();
                    let want =
                        reference_einsum(&[(to_c64(&t).view(), vec![0, 1, 2])], out, &tsizes);
                    assert_close(&unary(t.view(), &[0, 1, 2], out), &want, 1e-12);
                }
                let want =
                    reference_einsum(&[(to_c64(&wide.view()).view(), vec![0, 1])], &[1], &wsizes);
                assert_close(&unary(wide.view(), &[0, 1], &[1]), &want, 1e-10);
                let want = reference_einsum(&[(to_c64(&row.view()).view(), vec![0])], &[], &rsizes);
                assert_close(&unary(row.view(), &[0], &[]), &want, 1e-10);
                let mut nan = row.clone();
                nan[[77777]] = f64::NAN;
                let m =
                    crate::kernels::reduce(crate::kernels::ReduceOp::Max, nan.view(), &[0], &[]);
                assert!(m.iter().all(|x| x.is_nan()), "max over a NaN is NaN");
            });
        }
    }

    #[test]
    fn long_reduced_rows_in_lanes() {
        // Reduced contiguous rows longer than REDUCE_LANES (with a remainder), also
        // through a permuted and a stepped view, against the oracle; and max/min with
        // NaN and infinities in any lane.
        let mut rng = Rng(17);
        for &(n, m) in &[
            (3usize, 37usize),
            (1, 16),
            (5, 15),
            (2, 100),
            (0, 20),
            (4, 0),
        ] {
            let a = ArrayD::from_shape_simple_fn(IxDyn(&[n, m]), || rng.scalar::<f64>());
            let c = ArrayD::from_shape_simple_fn(IxDyn(&[n, m]), || rng.scalar::<Complex64>());
            let sizes: BTreeMap<u32, usize> = [(0, n), (1, m)].into_iter().collect();
            for (idx, out) in [(&[0u32, 1][..], &[0u32][..]), (&[0, 1], &[])] {
                let want =
                    reference_einsum(&[(to_c64(&a.view()).view(), idx.to_vec())], out, &sizes);
                assert_close(&unary(a.view(), idx, out), &want, 1e-12);
                let want =
                    reference_einsum(&[(to_c64(&c.view()).view(), idx.to_vec())], out, &sizes);
                assert_close(&unary(c.view(), idx, out), &want, 1e-12);
            }
            let stepped = a.slice(s![.., ..;2]).into_dyn();
            let sizes2: BTreeMap<u32, usize> = [(0, n), (1, m.div_ceil(2))].into_iter().collect();
            let want = reference_einsum(&[(to_c64(&stepped).view(), vec![0, 1])], &[0], &sizes2);
            assert_close(&unary(stepped.view(), &[0, 1], &[0]), &want, 1e-12);
        }
        for pos in [0usize, 5, 16, 33, 36] {
            let mut v = vec![1.0f64; 37];
            v[pos] = f64::NAN;
            let x = ArrayD::from_shape_vec(IxDyn(&[37]), v.clone()).unwrap();
            let mx = crate::kernels::reduce(crate::kernels::ReduceOp::Max, x.view(), &[0], &[]);
            assert!(mx[IxDyn(&[])].is_nan(), "NaN at {pos}");
            v[pos] = 7.0;
            let x = ArrayD::from_shape_vec(IxDyn(&[37]), v).unwrap();
            let mx = crate::kernels::reduce(crate::kernels::ReduceOp::Max, x.view(), &[0], &[]);
            assert_eq!(mx[IxDyn(&[])], 7.0);
            let mn = crate::kernels::reduce(crate::kernels::ReduceOp::Min, x.view(), &[0], &[]);
            assert_eq!(mn[IxDyn(&[])], 1.0);
        }
    }

    #[test]
    fn trace_diagonal_permutation() {
        let m = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
        assert_eq!(unary(m.view(), &[0, 0], &[])[IxDyn(&[])], 5.0);
        assert_eq!(unary(m.view(), &[0, 0], &[0]), array![1.0, 4.0].into_dyn());
        assert_eq!(
            unary(m.view(), &[0, 1], &[1, 0]),
            array![[1.0, 3.0], [2.0, 4.0]].into_dyn()
        );
        assert_eq!(unary(m.view(), &[0, 1], &[1]), array![4.0, 6.0].into_dyn());
        assert_eq!(unary(m.view(), &[0, 1], &[0, 1]), m);
    }

    #[test]
    fn diagonal_of_reversed_view() {
        // ijji->ij on a view with a reversed axis (negative stride).
        let base = ArrayD::from_shape_fn(IxDyn(&[3, 2, 2, 3]), |ix| {
            (1000 * ix[0] + 100 * ix[1] + 10 * ix[2] + ix[3]) as f64
        });
        let x = base.slice(s![..;-1, .., ..;-1, ..]).into_dyn();
        let got = unary(x.view(), &[0, 1, 1, 0], &[0, 1]);
        let want = Array2::from_shape_fn((3, 2), |(i, j)| x[[i, j, j, i]]).into_dyn();
        assert_eq!(got, want);
    }

    #[test]
    fn diagonal_of_broadcast_view() {
        // Row stride 0: the diagonal of v broadcast to a square is v itself.
        let v = array![1.0, 2.0, 3.0].into_dyn();
        let sq = v.broadcast(IxDyn(&[3, 3])).unwrap();
        assert_eq!(unary(sq.view(), &[4, 4], &[4]), v);
        assert_eq!(
            unary(sq.view(), &[4, 5], &[5]),
            array![3.0, 6.0, 9.0].into_dyn()
        );
    }

    #[test]
    fn empty_and_scalar() {
        let e = ArrayD::<f64>::zeros(IxDyn(&[0, 0]));
        assert_eq!(unary(e.view(), &[0, 0], &[])[IxDyn(&[])], 0.0);
        assert_eq!(unary(e.view(), &[0, 0], &[0]).shape(), &[0]);
        let z = ArrayD::<f64>::zeros(IxDyn(&[3, 0]));
        assert_eq!(unary(z.view(), &[0, 1], &[0]), ArrayD::zeros(IxDyn(&[3])));
        let s = ArrayD::from_elem(IxDyn(&[]), 2.5f64);
        assert_eq!(unary(s.view(), &[], &[])[IxDyn(&[])], 2.5);
    }

    #[test]
    fn broadcast_and_scale() {
        let v = array![[1.0, 2.0, 3.0]].into_dyn(); // labels (1, 0): lengths 1 and 3
        let b = broadcast_to(v.view(), &[1, 0], &[0, 2, 1], &[3, 2, 4]);
        assert!(b.is_standard_layout());
        assert_eq!(b.shape(), &[3, 2, 4]);
        assert_eq!(b[[2, 1, 3]], 3.0);
        let t = v.t();
        let sc = scale(t.view(), 2.0);
        assert!(sc.is_standard_layout());
        assert_eq!(sc, array![[2.0], [4.0], [6.0]].into_dyn());
    }

    /// The AVX2 copy of `fold` must give the baseline's bits: rows reduced into one
    /// accumulator (lanes and remainder), rows added into kept accumulators, and strided
    /// rows, in every dtype.
    #[test]
    fn wide_and_baseline_folds_agree() {
        if !crate::kernels::simd::avx2() {
            eprintln!("wide_and_baseline_folds_agree: skipped, this CPU has no AVX2");
            return;
        }
        fn check<T: Scalar>(rng: &mut Rng) {
            for &(rows, len) in &[(3usize, 133usize), (5, 16), (2, 7), (4, 64)] {
                let src = ArrayD::from_shape_simple_fn(IxDyn(&[rows, len]), || rng.scalar::<T>());
                let p = src.as_ptr();
                let (r, l) = (rows, len as isize);
                // (dims, accumulators): reduce each row; add rows into one row; a
                // transposed walk (stride `len` inner) into kept accumulators.
                let cases: [(Vec<LoopDim>, usize); 3] = [
                    (vec![(r, l, 1), (len, 1, 0)], rows),
                    (vec![(r, l, 0), (len, 1, 1)], len),
                    (vec![(len, 1, 1), (r, l, 0)], len),
                ];
                for (dims, n) in cases {
                    let (mut a, mut b) = (vec![T::zero(); n], vec![T::zero(); n]);
                    let add = |x: &mut T, y: T| *x += y;
                    // SAFETY: the walks stay inside `src` (rows × len) and the accumulators.
                    unsafe {
                        fold_body(p, a.as_mut_ptr(), &dims, T::zero(), &add);
                        fold_avx2(p, b.as_mut_ptr(), &dims, T::zero(), &add);
                    }
                    assert_eq!(a, b, "{dims:?}");
                }
            }
        }
        let mut rng = Rng(41);
        check::<f32>(&mut rng);
        check::<f64>(&mut rng);
        check::<num_complex::Complex32>(&mut rng);
        check::<Complex64>(&mut rng);
    }
}
