//! Property tests: the GEMM-based kernels against the naive reference oracle.

use einc_runtime::kernels::{contract_pair, unary, Scalar};
use einc_runtime::reference::reference_einsum;
use ndarray::{ArrayD, ArrayViewD, IxDyn, Slice};
use num_complex::{Complex32, Complex64};
use proptest::prelude::*;
use std::collections::BTreeMap;

mod common;
use common::Rng;

/// Storage holding a logical array of `shape` behind a random axis
/// permutation and random ±1/±2 steps, so the view is usually non-contiguous.
struct Strided<T> {
    storage: ArrayD<T>,
    perm: Vec<usize>,
    steps: Vec<isize>,
}

impl<T: Scalar> Strided<T> {
    fn new(shape: &[usize], rng: &mut Rng) -> Self {
        let mut perm: Vec<usize> = (0..shape.len()).collect();
        rng.shuffle(&mut perm);
        let steps: Vec<isize> = shape.iter().map(|_| [1, 2, -1, -2][rng.below(4)]).collect();
        let st_shape: Vec<usize> = (0..shape.len())
            .map(|i| shape[perm[i]] * steps[i].unsigned_abs())
            .collect();
        let storage = ArrayD::from_shape_simple_fn(IxDyn(&st_shape), || {
            T::from_c64(Complex64::new(rng.unit(), rng.unit()))
        });
        Strided {
            storage,
            perm,
            steps,
        }
    }

    fn view(&self) -> ArrayViewD<'_, T> {
        let v = self
            .storage
            .slice_each_axis(|ax| Slice::new(0, None, self.steps[ax.axis.index()]));
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        v.permuted_axes(inv)
    }
}

fn to_c64<T: Scalar>(a: &ArrayViewD<T>) -> ArrayD<Complex64> {
    a.mapv(|x| x.to_c64())
}

fn assert_close<T: Scalar>(
    got: &ArrayD<T>,
    want: &ArrayD<Complex64>,
    tol: f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape());
    prop_assert!(got.is_standard_layout());
    let scale = want.iter().fold(1.0f64, |m, z| m.max(z.norm()));
    for (g, w) in got.iter().zip(want.iter()) {
        let w = if T::IS_COMPLEX {
            *w
        } else {
            Complex64::new(w.re, 0.0)
        };
        prop_assert!(
            (g.to_c64() - w).norm() <= tol * scale,
            "got {:?}, want {:?}",
            g,
            w
        );
    }
    Ok(())
}

/// Label roles: 0 batch, 1 contracted, 2 free in a, 3 free in b,
/// 4 summed out of a only, 5 summed out of b only.
fn roles() -> impl Strategy<Value = Vec<(u8, usize)>> {
    prop::collection::vec(
        (0u8..6, prop_oneof![1 => Just(0usize), 8 => 1usize..5]),
        0..=6,
    )
}

fn check_pair<T: Scalar>(roles: &[(u8, usize)], seed: u64, tol: f64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let (mut ai, mut bi, mut oi) = (vec![], vec![], vec![]);
    let mut sizes = BTreeMap::new();
    for (l, &(role, size)) in roles.iter().enumerate() {
        let l = l as u32;
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
    rng.shuffle(&mut ai);
    rng.shuffle(&mut bi);
    rng.shuffle(&mut oi);
    let shape = |idx: &[u32]| idx.iter().map(|l| sizes[l]).collect::<Vec<_>>();
    let sa = Strided::<T>::new(&shape(&ai), &mut rng);
    let sb = Strided::<T>::new(&shape(&bi), &mut rng);
    let (a, b) = (sa.view(), sb.view());
    let got = contract_pair(a.view(), &ai, b.view(), &bi, &oi);
    let (ca, cb) = (to_c64(&a), to_c64(&b));
    let want = reference_einsum(&[(ca.view(), ai), (cb.view(), bi)], &oi, &sizes);
    assert_close(&got, &want, tol)
}

fn check_unary<T: Scalar>(
    axes: &[usize],
    sizes: &[usize],
    keep: &[bool],
    seed: u64,
    tol: f64,
) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    // Axis labels index into `sizes`, so repeats give diagonals.
    let a_idx: Vec<u32> = axes.iter().map(|&x| (x % sizes.len()) as u32).collect();
    let mut present: Vec<u32> = (0..sizes.len() as u32)
        .filter(|l| a_idx.contains(l))
        .collect();
    let size_map: BTreeMap<u32, usize> = present.iter().map(|&l| (l, sizes[l as usize])).collect();
    rng.shuffle(&mut present);
    let out_idx: Vec<u32> = present.into_iter().filter(|&l| keep[l as usize]).collect();
    let shape: Vec<usize> = a_idx.iter().map(|l| size_map[l]).collect();
    let sa = Strided::<T>::new(&shape, &mut rng);
    let a = sa.view();
    let got = unary(a.view(), &a_idx, &out_idx);
    let want = reference_einsum(&[(to_c64(&a).view(), a_idx)], &out_idx, &size_map);
    assert_close(&got, &want, tol)
}

proptest! {
    #[test]
    fn contract_pair_f64(roles in roles(), seed in any::<u64>()) {
        check_pair::<f64>(&roles, seed, 1e-12)?;
    }

    #[test]
    fn contract_pair_c128(roles in roles(), seed in any::<u64>()) {
        check_pair::<Complex64>(&roles, seed, 1e-12)?;
    }

    #[test]
    fn contract_pair_f32_c64(roles in roles(), seed in any::<u64>()) {
        check_pair::<f32>(&roles, seed, 1e-5)?;
        check_pair::<Complex32>(&roles, seed, 1e-5)?;
    }

    #[test]
    fn unary_matches_reference(
        axes in prop::collection::vec(0usize..4, 0..=5),
        sizes in prop::collection::vec(0usize..5, 4),
        keep in prop::collection::vec(any::<bool>(), 4),
        seed in any::<u64>(),
    ) {
        check_unary::<f64>(&axes, &sizes, &keep, seed, 1e-12)?;
        check_unary::<Complex64>(&axes, &sizes, &keep, seed, 1e-12)?;
        check_unary::<f32>(&axes, &sizes, &keep, seed, 1e-5)?;
    }
}
