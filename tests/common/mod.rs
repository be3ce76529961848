//! Shared by the integration tests: a seeded generator and random tensor networks.
#![allow(dead_code)] // each test crate uses a different part

use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeMap;

/// splitmix64, so that the cases are the same on every run.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub struct Net {
    pub eq: String,
    pub labels: Vec<Vec<u32>>,
    pub out: Vec<u32>,
    pub sizes: BTreeMap<u32, usize>,
}

impl Net {
    pub fn shapes(&self) -> Vec<Vec<usize>> {
        self.labels
            .iter()
            .map(|t| t.iter().map(|l| self.sizes[l]).collect())
            .collect()
    }
}

/// A random network: `n` operands of rank 0..=3 over `n_labels` letters of
/// size 1..=3 (hyperedges, Hadamard products, outer products and scalars
/// all occur), output a random subset of the letters used.
pub fn random_net(rng: &mut Rng, n: usize, n_labels: u32) -> Net {
    let letters: Vec<char> = ('a'..='z').collect();
    let sizes: BTreeMap<u32, usize> = (0..n_labels)
        .map(|l| (l, 1 + rng.below(3) as usize))
        .collect();
    let mut labels = Vec::new();
    for _ in 0..n {
        let rank = rng.below(4) as usize;
        let mut t: Vec<u32> = Vec::new();
        while t.len() < rank.min(n_labels as usize) {
            let l = rng.below(n_labels as u64) as u32;
            if !t.contains(&l) {
                t.push(l);
            }
        }
        labels.push(t);
    }
    let mut used: Vec<u32> = labels.iter().flatten().copied().collect();
    used.sort_unstable();
    used.dedup();
    let out: Vec<u32> = used.iter().copied().filter(|_| rng.below(3) == 0).collect();
    // The reference sums over every label it is given: only the used ones.
    let sizes = used.iter().map(|l| (*l, sizes[l])).collect();
    let term = |t: &[u32]| t.iter().map(|&l| letters[l as usize]).collect::<String>();
    let eq = format!(
        "{}->{}",
        labels.iter().map(|t| term(t)).collect::<Vec<_>>().join(","),
        term(&out)
    );
    Net {
        eq,
        labels,
        out,
        sizes,
    }
}

pub fn values(shape: &[usize], k: usize) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|t| ((t * 5 + k * 3) % 7) as f64 - 3.0).collect(),
    )
    .expect("shape")
}

/// The deterministic operand arrays for `shapes` (operand `k` filled by `values(shape, k)`).
pub fn arrays(shapes: &[Vec<usize>]) -> Vec<ArrayD<f64>> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, s)| values(s, k))
        .collect()
}

/// Each array viewed with its labels, as the reference einsums take them.
pub fn labelled<'a>(
    arrays: &'a [ArrayD<f64>],
    labels: &[Vec<u32>],
) -> Vec<(ndarray::ArrayViewD<'a, f64>, Vec<u32>)> {
    arrays
        .iter()
        .zip(labels)
        .map(|(a, l)| (a.view(), l.clone()))
        .collect()
}

/// Same shape and every element within 1e-9 (relative, absolute below 1); a non-finite
/// expected value must be matched exactly.
pub fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    for (g, w) in got.iter().zip(want.iter()) {
        let ok = if w.is_finite() {
            (g - w).abs() <= 1e-9 * w.abs().max(1.0)
        } else {
            g == w
        };
        assert!(ok, "{what}: {g} vs {w}");
    }
}

/// Runs `expr` on `arrays` (as f64 operands) and checks the result against `want`.
pub fn run_and_check(
    expr: &einc::Expression,
    arrays: &[ArrayD<f64>],
    want: &ArrayD<f64>,
    what: &str,
) {
    let got = match expr
        .run_dyn(arrays.iter().cloned().map(einc::TensorData::F64).collect())
        .unwrap_or_else(|e| panic!("{what}: {}", e.render()))
    {
        einc::TensorData::F64(a) => a,
        other => panic!("{what}: f64 expected, got {:?}", other.dtype()),
    };
    assert_close(&got, want, what);
}

/// The reference result of the explicit einsum `eq` (one ASCII letter per label) on
/// `arrays`.
#[allow(dead_code)]
pub fn reference(eq: &str, arrays: &[ArrayD<f64>]) -> ArrayD<f64> {
    let (ins, out) = eq.split_once("->").expect("an explicit output");
    let letters = |s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>();
    let labels: Vec<Vec<u32>> = ins.split(',').map(letters).collect();
    let mut sizes = std::collections::BTreeMap::new();
    for (l, a) in labels.iter().zip(arrays) {
        for (&c, &n) in l.iter().zip(a.shape()) {
            sizes.insert(c, n);
        }
    }
    einc_runtime::reference::reference_einsum_f64(&labelled(arrays, &labels), &letters(out), &sizes)
}
