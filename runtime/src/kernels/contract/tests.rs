use super::*;
use crate::kernels::blas;
use crate::kernels::test_util::{
    assert_close, embedded_view, on_threads, random_storage, to_c64, Rng,
};
use crate::reference::reference_einsum;
use ndarray::{Array2, Array3, Axis, Ix2, Slice};
use num_complex::{Complex32, Complex64};
use std::collections::BTreeMap;

fn shuffled(mut v: Vec<u32>, rng: &mut Rng) -> Vec<u32> {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

/// A random label configuration: each label gets a role (batch,
/// contracted, M, N, summed from a, summed from b) and a size.
fn check_random<T: Scalar>(rng: &mut Rng, max_labels: usize, size_pool: &[usize], tol: f64) {
    check_roles::<T>(rng, max_labels, size_pool, &[0, 1, 2, 3, 4, 5], false, tol)
}

/// Like `check_random`, with each label's role drawn from `roles`; `plain` operands
/// are standard-layout arrays instead of strided views.
fn check_roles<T: Scalar>(
    rng: &mut Rng,
    max_labels: usize,
    size_pool: &[usize],
    roles: &[usize],
    plain: bool,
    tol: f64,
) {
    let nlab = rng.below(max_labels + 1) as u32;
    let (mut ai, mut bi, mut oi) = (vec![], vec![], vec![]);
    let mut sizes = BTreeMap::new();
    for l in 0..nlab {
        let role = roles[rng.below(roles.len())];
        // A contracted label of length 1 keeps the product free of sums.
        let size = if role == 1 && !roles.contains(&4) {
            1
        } else {
            size_pool[rng.below(size_pool.len())]
        };
        sizes.insert(l, size);
        if matches!(role, 0 | 1 | 2 | 4) {
            ai.push(l);
        }
        if matches!(role, 0 | 1 | 3 | 5) {
            bi.push(l);
        }
        if matches!(role, 0 | 2 | 3) {
            oi.push(l);
        }
    }
    let (ai, bi, oi) = (shuffled(ai, rng), shuffled(bi, rng), shuffled(oi, rng));
    let shape = |idx: &[u32]| idx.iter().map(|l| sizes[l]).collect::<Vec<_>>();
    let (sa, ea) = random_storage::<T>(&shape(&ai), rng);
    let (sb, eb) = random_storage::<T>(&shape(&bi), rng);
    let owned: (ArrayD<T>, ArrayD<T>);
    let (a, b) = if plain {
        let mut fill =
            |idx: &[u32]| ArrayD::from_shape_simple_fn(IxDyn(&shape(idx)), || rng.scalar::<T>());
        owned = (fill(&ai), fill(&bi));
        (owned.0.view(), owned.1.view())
    } else {
        (embedded_view(&sa, &ea), embedded_view(&sb, &eb))
    };
    let got = contract_pair(a.view(), &ai, b.view(), &bi, &oi);
    let (ca, cb) = (to_c64(&a), to_c64(&b));
    let want = reference_einsum(
        &[(ca.view(), ai.clone()), (cb.view(), bi.clone())],
        &oi,
        &sizes,
    );
    assert_close(&got, &want, tol);
}

#[test]
fn random_small_configs() {
    let mut rng = Rng(42);
    let pool = [0, 1, 2, 3, 4, 2, 3, 1, 2, 3];
    for _ in 0..300 {
        check_random::<f64>(&mut rng, 6, &pool, 1e-12);
        check_random::<Complex64>(&mut rng, 6, &pool, 1e-12);
        check_random::<f32>(&mut rng, 6, &pool, 1e-5);
    }
}

#[test]
fn random_products_without_sums() {
    // Batch, M and N labels only (plus contracted labels of length 1): the one-pass
    // broadcast product, with lengths that reach its vectorised rows and, with more
    // than one thread, its parallel split.
    let mut rng = Rng(21);
    let pool = [0, 1, 1, 2, 5, 16, 33, 64];
    for i in 0..300 {
        let plain = i % 2 == 0;
        check_roles::<f32>(&mut rng, 4, &pool, &[0, 1, 2, 3], plain, 1e-5);
        check_roles::<f64>(&mut rng, 4, &pool, &[0, 1, 2, 3], plain, 1e-12);
        check_roles::<Complex64>(&mut rng, 4, &pool, &[0, 2, 3], plain, 1e-12);
        check_roles::<Complex32>(&mut rng, 4, &pool, &[0, 2, 3], plain, 1e-5);
    }
}

#[test]
fn random_dot_products() {
    // Batch and contracted labels only: m = n = 1, the lane-split dot product, over
    // short and long sums, strided and contiguous.
    let mut rng = Rng(23);
    let pool = [0, 1, 3, 8, 17, 40];
    for i in 0..200 {
        let plain = i % 2 == 0;
        check_roles::<f32>(&mut rng, 3, &pool, &[0, 1], plain, 1e-5);
        check_roles::<f64>(&mut rng, 3, &pool, &[0, 1], plain, 1e-12);
        check_roles::<Complex64>(&mut rng, 3, &pool, &[0, 1], plain, 1e-12);
    }
}

/// `a[ai] * b[bi] -> out[oi]` with the given label sizes, on random strided views
/// (or standard arrays when `plain`), against the oracle.
fn check_case<T: Scalar>(
    rng: &mut Rng,
    ai: &[u32],
    bi: &[u32],
    oi: &[u32],
    sizes: &BTreeMap<u32, usize>,
    plain: bool,
    tol: f64,
) {
    let shape = |idx: &[u32]| idx.iter().map(|l| sizes[l]).collect::<Vec<_>>();
    let (sa, ea) = random_storage::<T>(&shape(ai), rng);
    let (sb, eb) = random_storage::<T>(&shape(bi), rng);
    let owned: (ArrayD<T>, ArrayD<T>);
    let (a, b) = if plain {
        owned = (
            embedded_view(&sa, &ea).as_standard_layout().into_owned(),
            embedded_view(&sb, &eb).as_standard_layout().into_owned(),
        );
        (owned.0.view(), owned.1.view())
    } else {
        (embedded_view(&sa, &ea), embedded_view(&sb, &eb))
    };
    let got = contract_pair(a.view(), ai, b.view(), bi, oi);
    // The oracle sums over every label of `sizes`: keep only the operands' labels.
    let sizes: BTreeMap<u32, usize> = sizes
        .iter()
        .filter(|(l, _)| ai.contains(l) || bi.contains(l))
        .map(|(&l, &n)| (l, n))
        .collect();
    let want = reference_einsum(
        &[
            (to_c64(&a).view(), ai.to_vec()),
            (to_c64(&b).view(), bi.to_vec()),
        ],
        oi,
        &sizes,
    );
    assert_close(&got, &want, tol);
}

#[test]
fn unmergeable_groups_become_batch_loops() {
    // M or N labels that do not merge in the output (or operand) run as batch loops
    // over a GEMM big enough for it (m·n·k >= SPLIT_MIN_WORK), instead of copies.
    let sizes: BTreeMap<u32, usize> = [(0, 9), (1, 30), (2, 33), (3, 40), (4, 3)]
        .into_iter()
        .collect();
    let cases: [(&[u32], &[u32], &[u32]); 5] = [
        (&[0, 3, 2], &[1, 3], &[0, 1, 2]), // id k, jd -> ijk: M = (i, k) split
        (&[0, 3], &[1, 3, 2], &[1, 0, 2]), // N = (j, k) split by i in between
        (&[4, 0, 3, 2], &[4, 1, 3], &[4, 0, 1, 2]), // with a true batch label
        (&[2, 3, 0], &[3, 1], &[0, 1, 2]), // M reversed relative to the output
        (&[0, 3, 2], &[3, 1], &[2, 1, 0]), // output transposed
    ];
    let mut rng = Rng(29);
    for (ai, bi, oi) in cases {
        for plain in [true, false] {
            check_case::<f32>(&mut rng, ai, bi, oi, &sizes, plain, 1e-4);
            check_case::<f64>(&mut rng, ai, bi, oi, &sizes, plain, 1e-12);
            check_case::<Complex64>(&mut rng, ai, bi, oi, &sizes, plain, 1e-12);
        }
    }
}

#[test]
fn unit_stride_batch_operands_are_copied() {
    // The operand's unit stride is a batch label (tfno's `bixy, iry -> bxyr` batched over
    // y; `bxyr, orx -> boxy` over x): the operand is copied into [batch, rows, cols] order
    // rather than gathered by strided products, and the result must not change.
    let sizes: BTreeMap<u32, usize> = [(0, 3), (1, 17), (2, 9), (3, 20), (4, 6), (5, 11)]
        .into_iter()
        .collect();
    let cases: [(&[u32], &[u32], &[u32]); 4] = [
        (&[0, 1, 2, 3], &[1, 4, 3], &[0, 2, 3, 4]), // b i x y, i r y -> b x y r
        (&[0, 2, 3, 4], &[5, 4, 2], &[0, 5, 2, 3]), // b x y r, o r x -> b o x y
        (&[1, 3], &[3, 1], &[3]),                   // a dot product per batch (no copy)
        (&[1, 2, 3], &[2, 4, 3], &[3, 1, 4]),       // i k y, k j y -> y i j
    ];
    assert!(unit_stride_in(
        &ArrayD::<f32>::zeros(IxDyn(&[3, 17, 9, 20])).view(),
        &[0, 1, 2, 3],
        &[3]
    ));
    let mut rng = Rng(41);
    for (ai, bi, oi) in cases {
        check_case::<f32>(&mut rng, ai, bi, oi, &sizes, true, 1e-4);
        check_case::<f64>(&mut rng, ai, bi, oi, &sizes, true, 1e-12);
        check_case::<Complex64>(&mut rng, ai, bi, oi, &sizes, true, 1e-12);
        check_case::<f64>(&mut rng, ai, bi, oi, &sizes, false, 1e-12);
    }
}

#[test]
fn random_configs_reaching_gemm() {
    // Fewer, longer labels so that m·n·k usually exceeds SMALL_GEMM and
    // the gemm crate sees transposed and reversed strides.
    let mut rng = Rng(5);
    let pool = [5, 6, 7, 8];
    for _ in 0..60 {
        check_random::<f64>(&mut rng, 4, &pool, 1e-12);
        check_random::<Complex64>(&mut rng, 4, &pool, 1e-12);
        check_random::<f32>(&mut rng, 4, &pool, 1e-5);
    }
}

#[test]
fn products_large_enough_for_blas() {
    // Products the BLAS takes (k ≥ 32 with the result's unit-stride side ≥ 2× the other, or
    // k ≥ 256), on plain and randomly strided views, with batch labels and sums, in every
    // dtype: once through the system BLAS (when this machine has one) and once through the
    // gemm crate.
    let sizes: BTreeMap<u32, usize> = [(0, 150), (1, 40), (2, 9), (3, 3), (4, 300)]
        .into_iter()
        .collect();
    let cases: [(&[u32], &[u32], &[u32]); 5] = [
        (&[0, 1], &[1, 2], &[2, 0]), // C row-major 9×150: BLAS sees m = 150, n = 9
        (&[1, 0], &[2, 1], &[2, 0]), // both operands transposed
        (&[3, 0, 1], &[3, 1, 2], &[3, 2, 0]), // with a batch label
        (&[2, 4], &[4, 3], &[2, 3]), // k = 300, small result
        (&[0, 4], &[4, 1], &[0, 1]), // k = 300
    ];
    for use_blas in [true, false] {
        let mut rng = Rng(17);
        let before = blas::calls();
        let mut run = || {
            for (ai, bi, oi) in cases {
                for plain in [true, false] {
                    check_case::<f64>(&mut rng, ai, bi, oi, &sizes, plain, 1e-11);
                    check_case::<f32>(&mut rng, ai, bi, oi, &sizes, plain, 1e-4);
                    check_case::<Complex32>(&mut rng, ai, bi, oi, &sizes, plain, 1e-4);
                    check_case::<Complex64>(&mut rng, ai, bi, oi, &sizes, plain, 1e-11);
                }
            }
        };
        if use_blas {
            run()
        } else {
            blas::without(run)
        }
        if use_blas && blas::blas().is_some() {
            assert!(blas::calls() > before, "no product went to the BLAS");
        }
    }
}

#[test]
fn zero_strided_operand() {
    // a[i, j] = v[j] as a broadcast view (row stride 0) into gemm.
    let v = ArrayD::from_shape_fn(IxDyn(&[16]), |ix| ix[0] as f64 - 3.0);
    let a = v.broadcast(IxDyn(&[20, 16])).unwrap();
    let b = Array2::from_shape_fn((16, 12), |(j, k)| (j * 12 + k) as f64 * 0.5).into_dyn();
    let got = contract_pair(a.view(), &[0, 1], b.view(), &[1, 2], &[2, 0]);
    let a2 = a.to_owned().into_dimensionality::<Ix2>().unwrap();
    let want = a2
        .dot(&b.into_dimensionality::<Ix2>().unwrap())
        .reversed_axes();
    assert_eq!(got, want.as_standard_layout().into_owned().into_dyn());
}

#[test]
fn large_matmul_uses_parallel_gemm() {
    let mut rng = Rng(9);
    let a = Array2::from_shape_simple_fn((130, 120), || rng.unit());
    let b = Array2::from_shape_simple_fn((120, 140), || rng.unit());
    let got = contract_pair(
        a.view().into_dyn(),
        &[0, 1],
        b.t().into_dyn(),
        &[2, 1],
        &[0, 2],
    );
    let want = a.dot(&b);
    let err = (&got.into_dimensionality::<Ix2>().unwrap() - &want).mapv(f64::abs);
    assert!(err.iter().all(|&e| e < 1e-10));
}

#[test]
fn many_small_batches_in_parallel() {
    let mut rng = Rng(13);
    // bij,bjk->kbi with 600 batches of 8×8×8.
    let a = Array3::from_shape_simple_fn((600, 8, 8), || rng.unit());
    let b = Array3::from_shape_simple_fn((600, 8, 8), || rng.unit());
    let got = contract_pair(
        a.view().into_dyn(),
        &[0, 1, 2],
        b.view().into_dyn(),
        &[0, 2, 3],
        &[3, 0, 1],
    );
    assert_eq!(got.shape(), &[8, 600, 8]);
    for bt in [0, 17, 599] {
        let want = a.index_axis(Axis(0), bt).dot(&b.index_axis(Axis(0), bt));
        for i in 0..8 {
            for k in 0..8 {
                assert!((got[[k, bt, i]] - want[[i, k]]).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn edge_shapes() {
    let s = |x: f64| ArrayD::from_elem(IxDyn(&[]), x);
    // Scalar times scalar.
    assert_eq!(
        contract_pair(s(2.0).view(), &[], s(3.0).view(), &[], &[])[IxDyn(&[])],
        6.0
    );
    // Outer product (k empty) and pure Hadamard.
    let v = ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, 3.0]).unwrap();
    let outer = contract_pair(v.view(), &[0], v.view(), &[1], &[1, 0]);
    assert_eq!(outer[[2, 1]], 6.0);
    let had = contract_pair(v.view(), &[0], v.view(), &[0], &[0]);
    assert_eq!(had.as_slice().unwrap(), &[1.0, 4.0, 9.0]);
    // Dot product, and a contraction over an empty axis.
    assert_eq!(
        contract_pair(v.view(), &[0], v.view(), &[0], &[])[IxDyn(&[])],
        14.0
    );
    let e = ArrayD::<f64>::zeros(IxDyn(&[2, 0]));
    let f = ArrayD::<f64>::zeros(IxDyn(&[0, 4]));
    assert_eq!(
        contract_pair(e.view(), &[0, 1], f.view(), &[1, 2], &[0, 2]),
        ArrayD::zeros(IxDyn(&[2, 4]))
    );
    // Empty output.
    assert_eq!(
        contract_pair(e.view(), &[0, 1], v.view(), &[2], &[2, 1]).shape(),
        &[3, 0]
    );
}

/// The AVX2 copies of the row product and the small-matrix loops must give the
/// baseline's bits (the dot product's: `gemv`'s tests), in every dtype, on unit, broadcast and general strides.
#[test]
fn wide_and_baseline_loops_agree() {
    if !simd::avx2() {
        eprintln!("wide_and_baseline_loops_agree: skipped, this CPU has no AVX2");
        return;
    }
    fn check<T: Scalar>(rng: &mut Rng) {
        let x: Vec<T> = (0..300).map(|_| rng.scalar::<T>()).collect();
        let y: Vec<T> = (0..300).map(|_| rng.scalar::<T>()).collect();
        for inner in [1usize, 7, 16, 37, 100] {
            for st in [[1, 1, 1], [1, 0, 1], [0, 1, 1], [2, 3, 1], [1, 1, 2]] {
                let (mut a, mut b) = (vec![T::zero(); 2 * inner], vec![T::zero(); 2 * inner]);
                // SAFETY: strides ≤ 3 over ≤ 100 steps stay inside 300 elements, and ≤ 2
                // inside the 2·inner outputs.
                unsafe {
                    row_product(st, inner, x.as_ptr(), y.as_ptr(), a.as_mut_ptr());
                    row_product_avx2(st, inner, x.as_ptr(), y.as_ptr(), b.as_mut_ptr());
                }
                assert_eq!(a, b, "row {st:?} × {inner}");
            }
        }
        let (m, n, k) = (3usize, 5usize, 9usize);
        let (mut a, mut b) = (vec![T::zero(); m * n], vec![T::zero(); m * n]);
        for (dst, wide) in [(&mut a, false), (&mut b, true)] {
            let call = GemmCall {
                m,
                n,
                k,
                dst: dst.as_mut_ptr(),
                dst_rs: n as isize,
                dst_cs: 1,
                lhs: x.as_ptr(),
                lhs_rs: k as isize,
                lhs_cs: 1,
                rhs: y.as_ptr(),
                rhs_rs: 1,
                rhs_cs: k as isize,
                parallelism: gemm::Parallelism::None,
            };
            // SAFETY: m×k, k×n (column-major) and m×n all fit in their buffers.
            unsafe {
                if wide {
                    naive_gemm_avx2(&call)
                } else {
                    naive_gemm_body(&call)
                }
            }
        }
        assert_eq!(a, b, "small product");
    }
    let mut rng = Rng(43);
    check::<f32>(&mut rng);
    check::<f64>(&mut rng);
    check::<Complex32>(&mut rng);
    check::<Complex64>(&mut rng);
}

/// A pairwise case: operands and their labels, then the output labels.
type Pair<'a> = (
    ArrayViewD<'a, f64>,
    Vec<u32>,
    ArrayViewD<'a, f64>,
    Vec<u32>,
    Vec<u32>,
);

/// Matrix-vector products (`gemv`) in every operand order and layout, large enough to
/// split over two threads, and a batched one whose matrix has a broadcast label outside
/// the shared one (`...ij,...j->...i`: batch loops, not a copy), against the reference.
#[test]
fn matrix_vector_products() {
    let mut rng = Rng(74);
    let (m, k) = (300usize, 257usize);
    let sizes = BTreeMap::from([(0, m), (1, k), (2, 3), (3, 5)]);
    let mat = ArrayD::from_shape_simple_fn(IxDyn(&[m, k]), || rng.scalar::<f64>());
    let vec = ArrayD::from_shape_simple_fn(IxDyn(&[k]), || rng.scalar::<f64>());
    let batched = ArrayD::from_shape_simple_fn(IxDyn(&[3, 5, m, k]), || rng.scalar::<f64>());
    let vecs = ArrayD::from_shape_simple_fn(IxDyn(&[5, k]), || rng.scalar::<f64>());
    let t = mat.t().as_standard_layout().into_owned();
    let long = ArrayD::from_shape_simple_fn(IxDyn(&[2 * k]), || rng.scalar::<f64>());
    let wide = ArrayD::from_shape_simple_fn(IxDyn(&[2 * m, 2 * k]), || rng.scalar::<f64>());
    let cases: Vec<Pair<'_>> = vec![
        // ij,j->i (rows contiguous) and j,ij->i
        (mat.view(), vec![0, 1], vec.view(), vec![1], vec![0]),
        (vec.view(), vec![1], mat.view(), vec![0, 1], vec![0]),
        // the transposed matrix: columns contiguous
        (t.view(), vec![1, 0], vec.view(), vec![1], vec![0]),
        (vec.view(), vec![1], t.view(), vec![1, 0], vec![0]),
        // reversed rows and a strided vector; a matrix with no unit stride (the GEMM)
        (
            mat.slice_each_axis(|ax| {
                Slice::new(0, None, if ax.axis.index() == 0 { -1 } else { 1 })
            }),
            vec![0, 1],
            long.slice_each_axis(|_| Slice::new(0, None, 2)),
            vec![1],
            vec![0],
        ),
        (
            wide.slice_each_axis(|_| Slice::new(0, None, 2)),
            vec![0, 1],
            vec.view(),
            vec![1],
            vec![0],
        ),
        // abij,bj->abi
        (
            batched.view(),
            vec![2, 3, 0, 1],
            vecs.view(),
            vec![3, 1],
            vec![2, 3, 0],
        ),
    ];
    on_one_and_two_threads(cases, &sizes, 1e-12);
}

/// Products without sums whose output folds into fewer rows than threads (`ij,ij->ij`
/// is one row; `ij,j->ij` with 3 rows; a broadcast `i,i->i`): the rows themselves are
/// split over two threads, against the reference.
#[test]
fn few_long_rows_split_over_threads() {
    let mut rng = Rng(75);
    let (r, n) = (3usize, 70_001usize);
    let a = ArrayD::from_shape_simple_fn(IxDyn(&[r, n]), || rng.scalar::<f64>());
    let b = ArrayD::from_shape_simple_fn(IxDyn(&[r, n]), || rng.scalar::<f64>());
    let v = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || rng.scalar::<f64>());
    let sizes = BTreeMap::from([(0, r), (1, n)]);
    let cases: Vec<Pair<'_>> = vec![
        (a.view(), vec![0, 1], b.view(), vec![0, 1], vec![0, 1]),
        (a.view(), vec![0, 1], v.view(), vec![1], vec![0, 1]),
        (v.view(), vec![1], v.view(), vec![1], vec![1]),
    ];
    on_one_and_two_threads(cases, &sizes, 1e-14);
}

/// Each case on one and on two threads against the reference (`sizes` may hold labels a
/// case lacks).
fn on_one_and_two_threads(cases: Vec<Pair<'_>>, sizes: &BTreeMap<u32, usize>, tol: f64) {
    for (a, ai, b, bi, oi) in cases {
        // The reference sums over every label it is given: only this case's.
        let mut used = sizes.clone();
        used.retain(|l, _| ai.contains(l) || bi.contains(l));
        let want = reference_einsum(
            &[
                (to_c64(&a).view(), ai.clone()),
                (to_c64(&b).view(), bi.clone()),
            ],
            &oi,
            &used,
        );
        for threads in [1, 2] {
            let got = on_threads(threads, || contract_pair(a.view(), &ai, b.view(), &bi, &oi));
            assert_close(&got, &want, tol);
        }
    }
}
