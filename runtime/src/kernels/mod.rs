//! Numeric kernels of the CPU executor.
//!
//! Arrays are labelled: an `ndarray::ArrayViewD<T>` plus one `u32` label per
//! axis. Every kernel accepts arbitrary strided views (transposed, sliced with
//! steps, reversed, broadcast) and returns an owned array in standard (C)
//! layout whose axes follow the requested output labels.
//!
//! * [`scalar`]: the [`Scalar`] element trait (`f32`, `f64`, `c64`, `c128`).
//! * [`contract`]: pairwise contraction through batched GEMM.
//! * `gemv`: matrix-vector and dot products (GEMM steps with a side of length 1).
//! * [`blas`]: the system OpenBLAS, opened at run time, for large products.
//! * [`gemm_choice`]: which of OpenBLAS and the `gemm` crate runs a product.
//! * [`unary`]: one-operand einsum (permutation, diagonal, trace, partial sums).
//! * [`elementwise`]: the `.ein` language's maps and reductions.
//! * `alloc`: output buffers (huge pages for large ones: first-touch faults dominate
//!   memory-bound kernels otherwise).

mod alloc;
pub mod blas;
pub mod contract;
pub mod elementwise;
pub mod gemm_choice;
mod gemv;
pub mod permute;
pub mod scalar;
pub(crate) mod simd;
pub mod unary;

pub use alloc::{advise_huge, zeros};

use std::cell::Cell;

thread_local! {
    /// Set while this thread runs a one-thread call (see [`one_thread`]).
    static ONE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The threads the kernels may use: 1 inside [`one_thread`], else the current rayon
/// pool's. Every parallel loop of the executor asks this first.
pub fn threads() -> usize {
    if ONE_THREAD.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `f` on this thread with [`threads`] = 1. Sending a call to a one-thread pool
/// instead costs a hand-off to its worker, which waking from sleep took about 20 µs on
/// the benchmark VM: most of the time of a small contraction (`ij,jk->ik`, 8³: 28 µs).
pub fn one_thread<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag when `f` returns or unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ONE_THREAD.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(ONE_THREAD.with(|c| c.replace(true)));
    f()
}
pub(crate) use alloc::{release, room_costs, with_capacity};
pub use contract::contract_pair;
pub use elementwise::{map_binary, map_unary, reduce, MapOp, ReduceOp};
pub use scalar::{GemmCall, Scalar};
pub use unary::{broadcast_to, scale, unary};

/// Helpers shared by the unit tests of the kernel modules.
#[cfg(test)]
pub(crate) mod test_util {
    use super::Scalar;
    use ndarray::{ArrayD, ArrayViewD, IxDyn, Slice};
    use num_complex::Complex64;

    /// Runs `f` on a fresh rayon pool of `threads` workers.
    pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(f)
    }

    /// SplitMix64: a tiny deterministic generator, so tests need no extra crate.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in `0..n` (`n > 0`).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        /// Uniform in `[-1, 1)`.
        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
        pub fn scalar<T: Scalar>(&mut self) -> T {
            T::from_c64(Complex64::new(self.unit(), self.unit()))
        }
    }

    /// How a logical array is embedded in a bigger storage array: storage axis
    /// `i` holds logical axis `perm[i]`, sampled with step `steps[i]`.
    pub struct Embedding {
        perm: Vec<usize>,
        steps: Vec<isize>,
    }

    /// Random storage for a logical array of `shape`, with a random axis
    /// permutation, steps of ±1/±2 and random contents, so that views taken
    /// through [`embedded_view`] are generally non-contiguous.
    pub fn random_storage<T: Scalar>(shape: &[usize], rng: &mut Rng) -> (ArrayD<T>, Embedding) {
        let nd = shape.len();
        let mut perm: Vec<usize> = (0..nd).collect();
        for i in (1..nd).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        let steps: Vec<isize> = (0..nd).map(|_| [1, 2, -1, -2][rng.below(4)]).collect();
        let st_shape: Vec<usize> = (0..nd)
            .map(|i| shape[perm[i]] * steps[i].unsigned_abs())
            .collect();
        let storage = ArrayD::from_shape_simple_fn(IxDyn(&st_shape), || rng.scalar());
        (storage, Embedding { perm, steps })
    }

    /// The logical view described by `emb` into `storage`.
    pub fn embedded_view<'a, T>(storage: &'a ArrayD<T>, emb: &Embedding) -> ArrayViewD<'a, T> {
        let v = storage.slice_each_axis(|ax| Slice::new(0, None, emb.steps[ax.axis.index()]));
        let mut inv = vec![0; emb.perm.len()];
        for (i, &p) in emb.perm.iter().enumerate() {
            inv[p] = i;
        }
        v.permuted_axes(inv)
    }

    /// Converts any view to the oracle's element type.
    pub fn to_c64<T: Scalar>(a: &ArrayViewD<T>) -> ArrayD<Complex64> {
        a.mapv(|x| x.to_c64())
    }

    /// Max-norm closeness with a relative tolerance.
    pub fn assert_close<T: Scalar>(got: &ArrayD<T>, want: &ArrayD<Complex64>, tol: f64) {
        assert_eq!(got.shape(), want.shape(), "shape mismatch");
        assert!(
            got.is_standard_layout(),
            "kernel output must be standard layout"
        );
        let scale = want.iter().fold(1.0f64, |m, z| m.max(z.norm()));
        for (g, w) in got.iter().zip(want.iter()) {
            let w = if T::IS_COMPLEX {
                *w
            } else {
                Complex64::new(w.re, 0.0)
            };
            let err = (g.to_c64() - w).norm();
            assert!(err <= tol * scale, "got {g:?}, want {w:?} (err {err})");
        }
    }
}

#[cfg(test)]
mod thread_tests {
    use super::{one_thread, threads};
    use crate::exec::with_threads;

    /// One thread runs on the calling thread with `threads() == 1`, restored after (also
    /// after a panic); other counts run where the pool has that many.
    #[test]
    fn thread_setting() {
        let me = std::thread::current().id();
        let (count, id) = with_threads(Some(1), || (threads(), std::thread::current().id()));
        assert_eq!((count, id), (1, me), "one thread: this thread, seen as one");
        assert_eq!(with_threads(Some(3), threads), 3);
        assert_eq!(with_threads(Some(1), || with_threads(Some(3), threads)), 3);
        assert_eq!(with_threads(Some(3), || with_threads(Some(1), threads)), 1);
        let outside = rayon::current_num_threads();
        assert_eq!(threads(), outside, "the flag is restored");
        let r = std::panic::catch_unwind(|| one_thread(|| panic!("in a kernel")));
        assert!(r.is_err());
        assert_eq!(threads(), outside, "restored after a panic");
    }
}
