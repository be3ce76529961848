//! Pairwise contraction through batched GEMM.
//!
//! `a[a_idx] * b[b_idx] -> out[out_idx]` is rewritten as a batch of matrix
//! products: labels in a, b and out are the batch; labels in a and b only are
//! contracted (K); labels of only a (only b) kept in out form the rows M
//! (columns N). Labels of one operand that neither the other operand nor the
//! output has are summed out of that operand first.
//!
//! Each group of axes is folded into a single (length, stride) pair when its
//! strides allow (no copy, even for transposed views); otherwise the operand is
//! copied once into `[batch, rows, cols]` order where every group is contiguous.
//! An operand whose unit-stride axis is a batch axis is copied too, even when its
//! groups fold: each product would otherwise gather its matrices one element per
//! cache line.

use super::alloc;
use super::blas;
use super::gemv::{self, dot_body};
use super::scalar::{GemmCall, Scalar};
use super::simd;
use super::unary::{assert_distinct, to_standard, unary};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use rayon::prelude::*;

/// Up to this many multiply-adds per product a plain loop beats the setup
/// cost of a `gemm` call (this covers the Hadamard case m = n = k = 1).
const SMALL_GEMM: usize = 64;
/// Above this many multiply-adds per product, `gemm` parallelises internally.
const GEMM_PAR: usize = 1 << 20;
/// Total multiply-adds above which many small products run in parallel.
const BATCH_PAR_WORK: usize = 1 << 17;
/// From this many multiply-adds per product the system BLAS (when there is one) beats the
/// `gemm` crate on this machine; below, its per-call cost dominates.
const BLAS_MIN_WORK: usize = 1 << 12;

/// Contracts `a[a_idx]` with `b[b_idx]` into `out[out_idx]` (standard layout,
/// axes in `out_idx` order).
///
/// Labels are distinct within each of `a_idx`, `b_idx`, `out_idx`; every
/// output label belongs to `a` or `b`; a label in both operands has the same
/// length in both. Views may have any strides (including zero or negative).
///
/// # Panics
/// When that caller contract is broken.
pub fn contract_pair<T: Scalar>(
    a: ArrayViewD<T>,
    a_idx: &[u32],
    b: ArrayViewD<T>,
    b_idx: &[u32],
    out_idx: &[u32],
) -> ArrayD<T> {
    assert_eq!(a.ndim(), a_idx.len(), "one label per axis of a");
    assert_eq!(b.ndim(), b_idx.len(), "one label per axis of b");
    assert_distinct(a_idx, "labels of a");
    assert_distinct(b_idx, "labels of b");
    assert_distinct(out_idx, "output labels");
    for (ax, l) in a_idx.iter().enumerate() {
        if let Some(bx) = b_idx.iter().position(|x| x == l) {
            assert_eq!(
                a.shape()[ax],
                b.shape()[bx],
                "label {l} has different lengths in a and b"
            );
        }
    }

    // A tiny contraction (a 2×2 matmul) goes straight to plain loops: the groups, batch
    // walks and summed-away operands below cost more than its few multiply-adds.
    let len_of = |l: u32| match a_idx.iter().position(|&x| x == l) {
        Some(p) => a.shape()[p],
        None => b.shape()[pos(b_idx, l)],
    };
    let b_only = b_idx.iter().filter(|l| !a_idx.contains(l));
    let work = a
        .shape()
        .iter()
        .chain(b_only.clone().map(|&l| &b.shape()[pos(b_idx, l)]))
        .try_fold(1usize, |w, &n| w.checked_mul(n));
    if work.is_some_and(|w| w <= TINY_WORK) && out_idx.iter().all(|l| in_either(l, a_idx, b_idx)) {
        let out_shape: Vec<usize> = out_idx.iter().map(|&l| len_of(l)).collect();
        let k_l: Vec<u32> = a_idx
            .iter()
            .chain(b_only)
            .copied()
            .filter(|l| !out_idx.contains(l))
            .collect();
        return tiny_product(&a, a_idx, &b, b_idx, out_idx, &out_shape, &k_l);
    }

    // Sum away labels only one operand has and the output drops.
    let keep = |idx: &[u32], other: &[u32]| -> Vec<u32> {
        idx.iter()
            .copied()
            .filter(|l| other.contains(l) || out_idx.contains(l))
            .collect()
    };
    let (a_keep, b_keep) = (keep(a_idx, b_idx), keep(b_idx, a_idx));
    let a_red;
    let (a, a_idx) = if a_keep.len() < a_idx.len() {
        a_red = unary(a, a_idx, &a_keep);
        (a_red.view(), &a_keep[..])
    } else {
        (a, a_idx)
    };
    let b_red;
    let (b, b_idx) = if b_keep.len() < b_idx.len() {
        b_red = unary(b, b_idx, &b_keep);
        (b_red.view(), &b_keep[..])
    } else {
        (b, b_idx)
    };

    let in_a = |l: &u32| a_idx.contains(l);
    let in_b = |l: &u32| b_idx.contains(l);
    let pick = |f: &dyn Fn(&u32) -> bool| -> Vec<u32> {
        out_idx.iter().copied().filter(|l| f(l)).collect()
    };
    let batch = pick(&|l| in_a(l) && in_b(l));
    let m_l = pick(&|l| in_a(l) && !in_b(l));
    let n_l = pick(&|l| in_b(l) && !in_a(l));
    assert_eq!(
        batch.len() + m_l.len() + n_l.len(),
        out_idx.len(),
        "output labels {out_idx:?} must come from a {a_idx:?} or b {b_idx:?}"
    );
    let k_l = choose_k_order(&a, a_idx, &b, b_idx, out_idx);

    let out_shape: Vec<usize> = out_idx
        .iter()
        .map(|l| match a_idx.iter().position(|x| x == l) {
            Some(p) => a.shape()[p],
            None => b.shape()[b_idx.iter().position(|x| x == l).expect("checked above")],
        })
        .collect();
    let k: usize = dims_of(&a, a_idx, &k_l).iter().map(|d| d.0).product();
    if out_shape.contains(&0) || k == 0 {
        // Nothing to write, or every entry is an empty sum.
        return alloc::zeros(&out_shape);
    }
    if out_shape.iter().product::<usize>() * k <= TINY_WORK {
        return tiny_product(&a, a_idx, &b, b_idx, out_idx, &out_shape, &k_l);
    }
    if k == 1 {
        // Nothing to sum (Hadamard, outer and mixed products): one pass over the output in
        // its final layout beats a GEMM formulation, which would need k = 1 packing and,
        // when M or N do not merge in the output, a permuting copy.
        return broadcast_product(&a, a_idx, &b, b_idx, out_idx, &out_shape);
    }

    // M (N) labels whose group does not merge in a (b) or in the output become batch
    // loops (stride 0 in the other operand) instead of forcing a permuting copy of the
    // operand and of the result, as long as the GEMM left is large enough.
    let out_strides = standard_strides(&out_shape);
    let std_dims = |group: &[u32]| -> Vec<(usize, isize)> {
        group
            .iter()
            .map(|&l| {
                let p = pos(out_idx, l);
                (out_shape[p], out_strides[p])
            })
            .collect()
    };
    let size = |group: &[u32]| -> usize { std_dims(group).iter().map(|d| d.0).product() };
    let n_all = size(&n_l);
    let lib = blas::for_this_thread();
    // A long K goes to the BLAS as one large product after the copies; split into products
    // with short sides it would run on the gemm crate instead (`abcd,dcef->beaf`: 1024
    // products of 32×1024×32, 48 ms, against one copy and a 1024³ BLAS product, 35 ms).
    let min_side = if lib.is_some() && k >= BLAS_LONG_K {
        SPLIT_MIN_SIDE_BLAS
    } else {
        SPLIT_MIN_SIDE
    };
    let big = |m: usize, n: usize| {
        // A matrix-vector product packs nothing (`gemv`): loops cost only their calls.
        let gemv = m.min(n) == 1 && m * n * k >= GEMV_SPLIT_MIN_WORK;
        gemv || (m.min(n) >= min_side && m * n * k >= SPLIT_MIN_WORK)
    };
    let sm = split_group(&a, a_idx, &batch, &m_l, &std_dims, |inner| {
        big(size(inner), n_all)
    });
    let m_in = size(&m_l[sm..]);
    let sn = split_group(&b, b_idx, &batch, &n_l, &std_dims, |inner| {
        big(m_in, size(inner))
    });
    let (m_outer, m_l) = m_l.split_at(sm);
    let (n_outer, n_l) = n_l.split_at(sn);
    let batch_a = [&batch[..], m_outer].concat();
    let batch_b = [&batch[..], n_outer].concat();
    let loops = [&batch[..], m_outer, n_outer].concat();

    let (a, a_idx, am, ak) = as_matrix(a, a_idx, &batch_a, m_l, &k_l);
    let (b, b_idx, bk, bn) = as_matrix(b, b_idx, &batch_b, &k_l, n_l);
    // The output takes `out_idx` order directly when M and N merge there;
    // otherwise it is computed in [loops, M, N] order and permuted at the end.
    let (dst_idx, dst_shape, dm, dn) = match (merge(&std_dims(m_l)), merge(&std_dims(n_l))) {
        (Some(dm), Some(dn)) => (out_idx.to_vec(), out_shape.clone(), dm, dn),
        _ => {
            let idx: Vec<u32> = [&loops[..], m_l, n_l].concat();
            let shape: Vec<usize> = idx.iter().map(|l| out_shape[pos(out_idx, *l)]).collect();
            let st = standard_strides(&shape);
            let group = |g: &[u32]| -> Vec<(usize, isize)> {
                g.iter()
                    .map(|&l| {
                        let p = pos(&idx, l);
                        (shape[p], st[p])
                    })
                    .collect()
            };
            let dm = merge(&group(m_l)).expect("contiguous group");
            let dn = merge(&group(n_l)).expect("contiguous group");
            (idx, shape, dm, dn)
        }
    };
    let dst_strides = standard_strides(&dst_shape);
    let stride_of =
        |st: &[isize], idx: &[u32], l: u32| idx.iter().position(|&x| x == l).map_or(0, |p| st[p]);
    let walk = BatchWalk::new(
        loops
            .iter()
            .map(|&l| {
                let p = pos(&dst_idx, l);
                (
                    dst_shape[p],
                    [
                        stride_of(a.strides(), &a_idx, l),
                        stride_of(b.strides(), &b_idx, l),
                        dst_strides[p],
                    ],
                )
            })
            .collect(),
    );
    let job = |d: *mut T| Job {
        m: am.0,
        n: bn.0,
        k,
        a: a.as_ptr(),
        a_rs: am.1,
        a_cs: ak.1,
        b: b.as_ptr(),
        b_rs: bk.1,
        b_cs: bn.1,
        d,
        d_rs: dm.1,
        d_cs: dn.1,
        blas: lib,
    };
    debug_assert!(am.0 == dm.0 && bn.0 == dn.0 && ak.0 == k && bk.0 == k);

    let work = am.0 * bn.0 * k;
    let count = walk.count();
    // SAFETY: the walk visits every [loops] multi-index of dst once and each product
    // writes its whole m×n block (k >= 2 here: gemm, naive_gemm and dot all overwrite),
    // so every element of the fresh buffer is written; see `Job::run` for the rest.
    let dst = unsafe {
        alloc::uninit(&dst_shape, |d| {
            let job = job(d);
            if job.m == 1 && job.n == 1 && walk.lens.len() == 1 {
                // A dot product per batch along one axis (`bi,bi->b`): one loop over the
                // batches, not one call each (they cost as much as a 32-element dot).
                let [sa, sb, sd] = walk.strides[0];
                gemv::row_dots(
                    count,
                    k,
                    (job.a, sa, job.a_cs),
                    (job.b, sb, job.b_rs),
                    (d, sd),
                    super::threads(),
                );
            } else if threads_ok(count, work) {
                // Many small products: spread whole batches over threads.
                let threads = super::threads();
                let chunks = (4 * threads).min(count);
                let per = count.div_ceil(chunks);
                (0..chunks).into_par_iter().for_each(|c| {
                    let start = c * per;
                    let len = per.min(count.saturating_sub(start));
                    // See `Job::run`; distinct batch indices write disjoint parts of
                    // `dst`, so concurrent chunks never touch the same element.
                    walk.run(start, len, |off| job.run(off, gemm::Parallelism::None));
                });
            } else {
                // gemm's Rayon mode costs more than it saves in a one-thread pool.
                let par = if work >= GEMM_PAR && super::threads() > 1 {
                    gemm::Parallelism::Rayon(0)
                } else {
                    gemm::Parallelism::None
                };
                walk.run(0, count, |off| job.run(off, par));
            }
        })
    };

    if dst_idx == out_idx {
        dst
    } else {
        let perm: Vec<usize> = out_idx.iter().map(|&l| pos(&dst_idx, l)).collect();
        to_standard(dst.view().permuted_axes(perm))
    }
}

/// Up to this many multiply-adds a contraction is a plain loop: setting up GEMM groups,
/// batch walks and buffers costs microseconds, which is most of a 2×2 product's time.
const TINY_WORK: usize = 64;

/// `out[o] = Σ_k a[o, k] · b[o, k]` by plain loops over the output (row-major) and the
/// summed labels `k_l`; every label of a and b is in `out_idx` or `k_l`.
fn tiny_product<T: Scalar>(
    a: &ArrayViewD<T>,
    a_idx: &[u32],
    b: &ArrayViewD<T>,
    b_idx: &[u32],
    out_idx: &[u32],
    out_shape: &[usize],
    k_l: &[u32],
) -> ArrayD<T> {
    let stride = |v: &ArrayViewD<T>, idx: &[u32], l: u32| {
        idx.iter()
            .position(|&x| x == l)
            .map_or(0, |p| v.strides()[p])
    };
    let len = |l: u32| match a_idx.iter().position(|&x| x == l) {
        Some(p) => a.shape()[p],
        None => b.shape()[pos(b_idx, l)],
    };
    // (length, stride in a, stride in b) of every output axis, then every summed one.
    let axes = |ls: &[u32]| -> Vec<(usize, isize, isize)> {
        ls.iter()
            .map(|&l| (len(l), stride(a, a_idx, l), stride(b, b_idx, l)))
            .collect()
    };
    let (outer, inner) = (axes(out_idx), axes(k_l));
    let n_out: usize = out_shape.iter().product();
    let n_in: usize = inner.iter().map(|d| d.0).product();
    let offsets = |mut flat: usize, dims: &[(usize, isize, isize)]| -> (isize, isize) {
        let (mut oa, mut ob) = (0isize, 0isize);
        for &(n, sa, sb) in dims.iter().rev() {
            let i = (flat % n) as isize;
            flat /= n;
            oa += i * sa;
            ob += i * sb;
        }
        (oa, ob)
    };
    let mut out = alloc::vec_for(n_out);
    for o in 0..n_out {
        let (oa, ob) = offsets(o, &outer);
        let mut acc = T::zero();
        for k in 0..n_in {
            let (ka, kb) = offsets(k, &inner);
            // SAFETY: the offsets are Σ index·stride over in-range indices of each view's
            // own axes (stride 0 for labels it lacks), so they address elements of a and b.
            acc += unsafe { *a.as_ptr().offset(oa + ka) * *b.as_ptr().offset(ob + kb) };
        }
        out.push(acc);
    }
    ArrayD::from_shape_vec(IxDyn(out_shape), out).expect("n_out elements")
}

fn in_either(l: &u32, a_idx: &[u32], b_idx: &[u32]) -> bool {
    a_idx.contains(l) || b_idx.contains(l)
}

/// (length, stride) per axis of a group.
type Dims = Vec<(usize, isize)>;

/// Smallest m·n·k for which [`split_group`] prefers batch loops to a copy.
const SPLIT_MIN_WORK: usize = 1 << 15;
/// Smallest m·k of a matrix-vector product for which [`split_group`] prefers batch loops
/// to a copy (`...ij,...j->...i` with a broadcast batch axis outside a shared one: 512
/// products of 128×128 by a vector, where the copy moved the whole 32 MiB matrix).
const GEMV_SPLIT_MIN_WORK: usize = 1 << 10;
/// Smallest m and n for which [`split_group`] prefers batch loops to a copy: thinner
/// products leave gemm's microkernel mostly idle (e3nn_fctp's 1024×5×32 products ×1000
/// ran 1.4× slower than one copy and one 1024×5000×32 product).
const SPLIT_MIN_SIDE: usize = 16;

/// From this K on, a product without split loops is large enough for the BLAS.
const BLAS_LONG_K: usize = 256;
/// [`SPLIT_MIN_SIDE`] when the product would otherwise go to the BLAS with a long K.
const SPLIT_MIN_SIDE_BLAS: usize = 64;

/// How many leading labels of `group` (M or N, in output order) to run as batch loops:
/// 0 when the group merges in `v` and in the output already, else the fewest that leave
/// a suffix merging in both, provided `big_enough(suffix)`; 0 (copy instead) otherwise.
fn split_group<T>(
    v: &ArrayViewD<T>,
    idx: &[u32],
    batch: &[u32],
    group: &[u32],
    std_dims: &dyn Fn(&[u32]) -> Dims,
    big_enough: impl Fn(&[u32]) -> bool,
) -> usize {
    let merges = |g: &[u32]| merge(&dims_of(v, idx, g)).is_some() && merge(&std_dims(g)).is_some();
    if merges(group) || unit_stride_in(v, idx, batch) {
        // With the unit stride on a batch axis the operand is copied anyway (see
        // `as_matrix`), and the copy can make the group contiguous.
        return 0;
    }
    (1..group.len())
        .find(|&s| merges(&group[s..]))
        .filter(|&s| big_enough(&group[s..]))
        .unwrap_or(0)
}

/// Whether the products should be spread over threads whole (rather than each product
/// over all threads): with at least two per thread, whole products need no splitting
/// and no synchronisation inside. (This once also asked for products below `GEMM_PAR`,
/// and products of exactly `GEMM_PAR` multiply-adds then ran on one thread: 1024
/// products of 32×32×1024 in `abcd,dcef->beaf`.)
fn threads_ok(count: usize, work: usize) -> bool {
    let threads = super::threads();
    threads > 1 && count >= 2 * threads && count.saturating_mul(work) >= BATCH_PAR_WORK
}

/// Elements of output above which [`broadcast_product`] splits its rows over threads.
const BROADCAST_PAR: usize = 1 << 16;

/// `out[o] = a[o] * b[o]` where each operand is indexed by the output labels it has
/// (contracted labels of length 1 are fixed at 0), written in one pass over the output in
/// standard layout. Every output length is non-zero.
fn broadcast_product<T: Scalar>(
    a: &ArrayViewD<T>,
    a_idx: &[u32],
    b: &ArrayViewD<T>,
    b_idx: &[u32],
    out_idx: &[u32],
    out_shape: &[usize],
) -> ArrayD<T> {
    // An operand read across the row loop's cache lines (stride > 1 along the output's
    // innermost axis) is copied first into the output's axis order, when it is small
    // beside the output: bilinear's `ik,il->kli` (planned so for its GEMM) reads both
    // operands with stride 64 on every element, 1M times; the copies move 32K elements.
    let (a_copy, b_copy) = (
        in_output_order(a, a_idx, out_idx, out_shape),
        in_output_order(b, b_idx, out_idx, out_shape),
    );
    let ((a, a_idx), (b, b_idx)) = (copied(a, a_idx, &a_copy), copied(b, b_idx, &b_copy));
    let (a, b) = (&a, &b);
    let dst_strides = standard_strides(out_shape);
    let stride_of = |v: &ArrayViewD<T>, idx: &[u32], l: u32| {
        idx.iter()
            .position(|&x| x == l)
            .map_or(0, |p| v.strides()[p])
    };
    let walk = BatchWalk::new(
        out_idx
            .iter()
            .enumerate()
            .map(|(o, &l)| {
                (
                    out_shape[o],
                    [
                        stride_of(a, a_idx, l),
                        stride_of(b, b_idx, l),
                        dst_strides[o],
                    ],
                )
            })
            .collect(),
    );
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: the walk covers every output multi-index exactly once (all lengths > 0;
    // folding and dropping length-1 axes keep the set of offsets); each offset addresses
    // an element of a, of b (stride 0 for the labels it lacks, and its length-1 axes stay
    // at index 0) and of the fresh output, so every output element is written once.
    unsafe { alloc::uninit(out_shape, |d| product_rows(&walk, pa, pb, d)) }
}

/// Operands at most this fraction of the output are copied by [`in_output_order`].
const SMALL_OPERAND: usize = 8;

/// `v` copied into the output's axis order (its labels sorted by their place in
/// `out_idx`), where the output's innermost axis would read it with a stride other than
/// 0 or 1 (a negative one too) and it holds at most 1/[`SMALL_OPERAND`] of the output's
/// elements.
fn in_output_order<T: Scalar>(
    v: &ArrayViewD<T>,
    idx: &[u32],
    out_idx: &[u32],
    out_shape: &[usize],
) -> Option<(ArrayD<T>, Vec<u32>)> {
    let last = *out_idx.last()?;
    let p = idx.iter().position(|&l| l == last)?;
    let out_len: usize = out_shape.iter().product();
    if v.shape()[p] < 2 || matches!(v.strides()[p], 0 | 1) || v.len() * SMALL_OPERAND > out_len {
        return None;
    }
    // Contracted labels of length 1 (not in the output) go last; they are fixed at 0.
    let mut sorted = idx.to_vec();
    sorted.sort_by_key(|l| out_idx.iter().position(|x| x == l).unwrap_or(out_idx.len()));
    Some((unary(v.view(), idx, &sorted), sorted))
}

/// The copy [`in_output_order`] made, where it made one, else the operand itself.
fn copied<'v, T>(
    v: &ArrayViewD<'v, T>,
    idx: &'v [u32],
    copy: &'v Option<(ArrayD<T>, Vec<u32>)>,
) -> (ArrayViewD<'v, T>, &'v [u32]) {
    match copy {
        Some((c, i)) => (c.view(), i),
        None => (v.clone(), idx),
    }
}

/// Pointers shared by the threads of [`product_rows`].
#[derive(Clone, Copy)]
struct Ptrs<T> {
    a: *const T,
    b: *const T,
    d: *mut T,
}
// SAFETY: only the description of arrays that outlive the parallel loop; threads read a
// and b and write disjoint rows of d.
unsafe impl<T: Send> Send for Ptrs<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Ptrs<T> {}

/// `d[off2] = a[off0] * b[off1]` for every offset triple of `walk`, the innermost axis as
/// a (vectorised where unit-strided or broadcast) row loop, rows split over threads when
/// the output is large.
///
/// # Safety
/// Every offset of `walk` addresses an element of each array; distinct walk positions
/// have distinct destination offsets; `d` does not alias `a` or `b`.
unsafe fn product_rows<T: Scalar>(walk: &BatchWalk, a: *const T, b: *const T, d: *mut T) {
    let nd = walk.lens.len();
    if nd == 0 {
        // SAFETY: a single element at offset 0 of each array.
        unsafe { *d = *a * *b };
        return;
    }
    let (inner, st) = (walk.lens[nd - 1], walk.strides[nd - 1]);
    let outer = BatchWalk {
        lens: walk.lens[..nd - 1].to_vec(),
        strides: walk.strides[..nd - 1].to_vec(),
    };
    let p = Ptrs { a, b, d };
    let rows = outer.count();
    let wide = simd::avx2();
    // Elements `from..from + len` of the row at offsets `off`.
    let part = move |off: [isize; 3], from: usize, len: usize| {
        // Use `p` whole: capturing its raw-pointer fields one by one would not be `Sync`.
        let p = p;
        let at = |i: usize| off[i] + from as isize * st[i];
        let (a, b, d) = (
            p.a.wrapping_offset(at(0)),
            p.b.wrapping_offset(at(1)),
            p.d.wrapping_offset(at(2)),
        );
        // SAFETY: steps `from..from + len` (≤ `inner`) along the innermost axis stay
        // inside each array (the function's contract) and d never aliases a or b; the
        // wide copy runs only where the CPU has AVX2.
        unsafe {
            if wide {
                row_product_avx2(st, len, a, b, d)
            } else {
                row_product(st, len, a, b, d)
            }
        }
    };
    let row = move |off: [isize; 3]| part(off, 0, inner);
    let threads = super::threads();
    if threads > 1 && rows * inner >= BROADCAST_PAR {
        if rows >= 2 * threads {
            let chunks = (4 * threads).min(rows);
            let per = rows.div_ceil(chunks);
            (0..chunks).into_par_iter().for_each(|c| {
                let start = c * per;
                outer.run(start, per.min(rows.saturating_sub(start)), row);
            });
        } else {
            // Few long rows (`ij,ij->ij` folds into one): split the rows themselves.
            let pieces = (4 * threads).div_ceil(rows);
            let per = inner.div_ceil(pieces);
            (0..rows * pieces).into_par_iter().for_each(|t| {
                let from = (t % pieces) * per;
                if from < inner {
                    outer.run(t / pieces, 1, |off| part(off, from, per.min(inner - from)));
                }
            });
        }
    } else {
        outer.run(0, rows, row);
    }
}
simd::avx2_copy!(unsafe fn row_product_avx2<T: Scalar>(
    st: [isize; 3],
    inner: usize,
    a: *const T,
    b: *const T,
    d: *mut T,
) = row_product);

/// `d[i·st[2]] = a[i·st[0]] · b[i·st[1]]` for `i < inner`: one row of [`product_rows`].
///
/// # Safety
/// The `inner` elements addressed from each pointer lie inside their arrays; `d` does not
/// alias `a` or `b`.
#[inline(always)]
unsafe fn row_product<T: Scalar>(
    st: [isize; 3],
    inner: usize,
    a: *const T,
    b: *const T,
    d: *mut T,
) {
    // SAFETY: the contract above; slices are only formed for unit strides.
    unsafe {
        match st {
            [1, 1, 1] => {
                let (x, y) = (
                    std::slice::from_raw_parts(a, inner),
                    std::slice::from_raw_parts(b, inner),
                );
                let d = std::slice::from_raw_parts_mut(d, inner);
                for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
                    *d = x * y;
                }
            }
            [1, 0, 1] => {
                let (x, y) = (std::slice::from_raw_parts(a, inner), *b);
                let d = std::slice::from_raw_parts_mut(d, inner);
                for (d, &x) in d.iter_mut().zip(x) {
                    *d = x * y;
                }
            }
            [0, 1, 1] => {
                let (x, y) = (*a, std::slice::from_raw_parts(b, inner));
                let d = std::slice::from_raw_parts_mut(d, inner);
                for (d, &y) in d.iter_mut().zip(y) {
                    *d = x * y;
                }
            }
            _ => {
                for i in 0..inner as isize {
                    *d.offset(i * st[2]) = *a.offset(i * st[0]) * *b.offset(i * st[1]);
                }
            }
        }
    }
}

/// Row-major element strides of `shape`.
fn standard_strides(shape: &[usize]) -> Vec<isize> {
    let mut st = vec![1isize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        st[d] = st[d + 1] * shape[d + 1] as isize;
    }
    st
}

fn pos(idx: &[u32], l: u32) -> usize {
    idx.iter().position(|&x| x == l).expect("label present")
}

/// (length, stride) of the axes of `v` carrying `group`'s labels, in that order.
fn dims_of<T>(v: &ArrayViewD<T>, idx: &[u32], group: &[u32]) -> Vec<(usize, isize)> {
    group
        .iter()
        .map(|&l| {
            let p = pos(idx, l);
            (v.shape()[p], v.strides()[p])
        })
        .collect()
}

/// Folds axes (outer to inner) into one (length, stride) when walking them in
/// order is a single arithmetic progression. Length-1 axes are ignored.
/// Callers only pass non-empty groups.
fn merge(dims: &[(usize, isize)]) -> Option<(usize, isize)> {
    let mut len = 1usize;
    let mut inner: Option<isize> = None;
    for &(l, s) in dims.iter().filter(|d| d.0 != 1) {
        if let Some(prev) = inner {
            if prev != s * l as isize {
                return None;
            }
        }
        inner = Some(s);
        len *= l;
    }
    Some((len, inner.unwrap_or(1)))
}

/// Orders the contracted labels so that, if possible, both operands' K axes
/// merge: tries a's memory order, then b's.
fn choose_k_order<T>(
    a: &ArrayViewD<T>,
    a_idx: &[u32],
    b: &ArrayViewD<T>,
    b_idx: &[u32],
    out_idx: &[u32],
) -> Vec<u32> {
    let k_l: Vec<u32> = a_idx
        .iter()
        .copied()
        .filter(|l| b_idx.contains(l) && !out_idx.contains(l))
        .collect();
    let by_stride = |v: &ArrayViewD<T>, idx: &[u32]| {
        let mut o = k_l.clone();
        o.sort_by_key(|&l| std::cmp::Reverse(v.strides()[pos(idx, l)].unsigned_abs()));
        o
    };
    let score = |o: &[u32]| {
        merge(&dims_of(a, a_idx, o)).is_some() as u8 + merge(&dims_of(b, b_idx, o)).is_some() as u8
    };
    let (oa, ob) = (by_stride(a, a_idx), by_stride(b, b_idx));
    if score(&ob) > score(&oa) {
        ob
    } else {
        oa
    }
}

/// Whether an axis of `v` with unit stride (and length > 1) carries one of `labels`.
fn unit_stride_in<T>(v: &ArrayViewD<T>, idx: &[u32], labels: &[u32]) -> bool {
    (0..v.ndim()).any(|p| v.shape()[p] > 1 && v.strides()[p].abs() == 1 && labels.contains(&idx[p]))
}

/// Presents `v` (labels `idx` = batch ∪ rows ∪ cols) as a batch of matrices:
/// returns the data, its labels, and the merged (length, stride) of rows and
/// columns. Copies (in [`copy_order`]) only when a group's strides cannot be merged, or
/// when the matrices would have no unit stride because it lies on a batch axis.
#[allow(clippy::type_complexity)]
fn as_matrix<'a, T: Scalar>(
    v: ArrayViewD<'a, T>,
    idx: &[u32],
    batch: &[u32],
    rows: &[u32],
    cols: &[u32],
) -> (
    CowArray<'a, T, IxDyn>,
    Vec<u32>,
    (usize, isize),
    (usize, isize),
) {
    if let (Some(r), Some(c)) = (
        merge(&dims_of(&v, idx, rows)),
        merge(&dims_of(&v, idx, cols)),
    ) {
        // A matrix with no unit stride, where the operand's unit stride is a batch axis
        // (tfno's `bixy` in a product batched over y), makes every product gather one
        // element per cache line; one copy into [batch, rows, cols] order is cheaper
        // (tfno_cp_r16's `bxyr, orx -> boxy`, batched over x: 1.9 → 0.8 ms).
        let strided = r.0 > 1 && c.0 > 1 && r.1.abs() != 1 && c.1.abs() != 1;
        if !(strided && unit_stride_in(&v, idx, batch)) {
            return (v.into(), idx.to_vec(), r, c);
        }
    }
    let order = copy_order(&v, idx, batch, rows, cols);
    let perm: Vec<usize> = order.iter().map(|&l| pos(idx, l)).collect();
    let owned = to_standard(v.permuted_axes(perm));
    let r = merge(&dims_of(&owned.view(), &order, rows)).expect("contiguous group");
    let c = merge(&dims_of(&owned.view(), &order, cols)).expect("contiguous group");
    (owned.into(), order, r, c)
}

/// The axis order of the copy that [`as_matrix`] makes: rows and columns each contiguous
/// and one of them innermost; batch axes may sit between them. `[batch, rows, cols]`,
/// unless a batch axis is the source's unit stride (tfno's `[b,i,x,y]` batched over y,
/// rows (b, x), columns i): then batch axes whose source stride is below every stride of
/// the outer group go right after it, `[b,x,y,i]`, a transpose of runs of 1024 elements
/// (x and y stay together) written to nearby rows, where `[y,b,x,i]` writes each element
/// to a row 64 KiB from the previous one.
fn copy_order<T>(
    v: &ArrayViewD<T>,
    idx: &[u32],
    batch: &[u32],
    rows: &[u32],
    cols: &[u32],
) -> Vec<u32> {
    let stride = |l: u32| v.strides()[pos(idx, l)].unsigned_abs();
    if !unit_stride_in(v, idx, batch) || rows.is_empty() || cols.is_empty() {
        return [batch, rows, cols].concat();
    }
    let floor = rows.iter().map(|&l| stride(l)).min().unwrap_or(usize::MAX);
    let (outer, inner): (Vec<u32>, Vec<u32>) = batch.iter().partition(|&&l| stride(l) > floor);
    [&outer[..], rows, &inner[..], cols].concat()
}

/// Walks the batch multi-indices in row-major order, yielding the element
/// offsets `[a, b, dst]` of each batch's matrices.
struct BatchWalk {
    lens: Vec<usize>,
    strides: Vec<[isize; 3]>,
}

impl BatchWalk {
    /// `dims`: (length, strides in a, b, dst) per batch axis, all lengths > 0.
    fn new(dims: Vec<(usize, [isize; 3])>) -> Self {
        // Fold neighbouring axes that are one progression in all three arrays,
        // so a long Hadamard-like batch costs one counter, not several.
        let mut lens: Vec<usize> = Vec::new();
        let mut strides: Vec<[isize; 3]> = Vec::new();
        for (l, s) in dims.into_iter().filter(|d| d.0 != 1) {
            match (lens.last_mut(), strides.last_mut()) {
                (Some(pl), Some(ps)) if (0..3).all(|i| ps[i] == s[i] * l as isize) => {
                    *pl *= l;
                    *ps = s;
                }
                _ => {
                    lens.push(l);
                    strides.push(s);
                }
            }
        }
        BatchWalk { lens, strides }
    }

    fn count(&self) -> usize {
        self.lens.iter().product()
    }

    /// Calls `f` with the offsets of batches `start..start + len`.
    fn run(&self, start: usize, len: usize, mut f: impl FnMut([isize; 3])) {
        let nd = self.lens.len();
        let mut ix = vec![0usize; nd];
        let mut off = [0isize; 3];
        let mut rem = start;
        for d in (0..nd).rev() {
            ix[d] = rem % self.lens[d];
            rem /= self.lens[d];
            for (o, s) in off.iter_mut().zip(self.strides[d]) {
                *o += ix[d] as isize * s;
            }
        }
        for _ in 0..len {
            f(off);
            for d in (0..nd).rev() {
                ix[d] += 1;
                let s = self.strides[d];
                if ix[d] < self.lens[d] {
                    (0..3).for_each(|i| off[i] += s[i]);
                    break;
                }
                (0..3).for_each(|i| off[i] -= s[i] * (self.lens[d] - 1) as isize);
                ix[d] = 0;
            }
        }
    }
}

/// One batched product: base pointers and merged strides of the matrices.
struct Job<T> {
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    a_rs: isize,
    a_cs: isize,
    b: *const T,
    b_rs: isize,
    b_cs: isize,
    d: *mut T,
    d_rs: isize,
    d_cs: isize,
    /// The BLAS to use for large products, chosen on the calling thread.
    blas: Option<&'static blas::Blas>,
}

// SAFETY: a `Job` is only a description of memory owned by `contract_pair`'s
// arrays; threads only read `a`/`b` and write disjoint batches of `d` (see
// `Job::run`), and the arrays outlive the parallel loop.
unsafe impl<T: Send> Send for Job<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Job<T> {}

impl<T: Scalar> Job<T> {
    /// Computes the product of the batch at element offsets `off`.
    ///
    /// # Safety
    /// `off` must come from the `BatchWalk` built from these arrays' strides,
    /// so every matrix element addressed lies inside its array; the arrays
    /// must be alive; no other thread may process the same batch. `dst` is a
    /// fresh array whose axes carry distinct labels, so distinct (batch, row,
    /// col) triples are distinct elements and never alias `a` or `b`.
    unsafe fn run(&self, off: [isize; 3], parallelism: gemm::Parallelism) {
        let call = GemmCall {
            m: self.m,
            n: self.n,
            k: self.k,
            dst: self.d.wrapping_offset(off[2]),
            dst_rs: self.d_rs,
            dst_cs: self.d_cs,
            lhs: self.a.wrapping_offset(off[0]),
            lhs_rs: self.a_rs,
            lhs_cs: self.a_cs,
            rhs: self.b.wrapping_offset(off[1]),
            rhs_rs: self.b_rs,
            rhs_cs: self.b_cs,
            parallelism,
        };
        let threads = match parallelism {
            gemm::Parallelism::None => 1,
            _ => super::threads(),
        };
        let c = &call;
        // SAFETY: forwarded from this function's contract.
        unsafe {
            if self.m == 1 && self.n == 1 {
                // A dot product: gemm's packing is pure overhead for one output element.
                *c.dst = gemv::dot(c.lhs, c.lhs_cs, c.rhs, c.rhs_rs, c.k, threads)
            } else if self.m * self.n * self.k <= SMALL_GEMM {
                naive_gemm(c)
            } else if self.n == 1
                && gemv::gemv(
                    c.m,
                    c.k,
                    c.lhs,
                    (c.lhs_rs, c.lhs_cs),
                    c.rhs,
                    c.rhs_rs,
                    c.dst,
                    c.dst_rs,
                    threads,
                )
            {
                // A matrix times a vector (see `gemv` for why not the GEMM).
            } else if self.m == 1
                && gemv::gemv(
                    c.n,
                    c.k,
                    c.rhs,
                    (c.rhs_cs, c.rhs_rs),
                    c.lhs,
                    c.lhs_cs,
                    c.dst,
                    c.dst_cs,
                    threads,
                )
            {
                // A vector times a matrix: the same, with the matrix transposed.
            } else if let Some((lib, p)) = self
                .blas
                .filter(|_| self.m * self.n * self.k >= BLAS_MIN_WORK)
                .and_then(|lib| Some((lib, blas::col_major(c).filter(blas::worth_it)?)))
            {
                if !blas::run_blocks(lib, &p, threads) {
                    T::gemm(c)
                }
            } else {
                T::gemm(c)
            }
        }
    }
}

/// `dst = lhs × rhs` with plain loops, for tiny products.
///
/// # Safety
/// The contract of [`Scalar::gemm`].
unsafe fn naive_gemm<T: Scalar>(c: &GemmCall<T>) {
    // SAFETY: forwarded; the wide copy runs only where the CPU has AVX2.
    unsafe {
        if simd::avx2() {
            naive_gemm_avx2(c)
        } else {
            naive_gemm_body(c)
        }
    }
}

simd::avx2_copy!(unsafe fn naive_gemm_avx2<T: Scalar>(c: &GemmCall<T>) = naive_gemm_body);

/// [`naive_gemm`]'s loops.
///
/// # Safety
/// As [`naive_gemm`].
#[inline(always)]
unsafe fn naive_gemm_body<T: Scalar>(c: &GemmCall<T>) {
    for i in 0..c.m as isize {
        for j in 0..c.n as isize {
            // SAFETY: row i of lhs, column j of rhs and (i, j) of dst lie within the
            // m×k, k×n and m×n shapes the caller vouched for.
            unsafe {
                *c.dst.offset(i * c.dst_rs + j * c.dst_cs) = dot_body(
                    c.lhs.offset(i * c.lhs_rs),
                    c.lhs_cs,
                    c.rhs.offset(j * c.rhs_cs),
                    c.rhs_rs,
                    c.k,
                )
            };
        }
    }
}

#[cfg(test)]
mod tests;
