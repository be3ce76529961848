//! Run-time choice of AVX2 for the plain loops.
//!
//! The crates are built for the x86-64 baseline, so the loops the compiler vectorises
//! (reductions, Hadamard rows, dot products) use 128-bit SSE2 registers. Each such loop
//! is an `#[inline(always)]` body with a second copy compiled under
//! `#[target_feature(enable = "avx2")]`; the caller runs that copy when [`avx2`] says the
//! CPU has it. On this project's machines the wide copy reads memory-bound sums about
//! 15–20% faster (fewer load instructions per byte; see `docs/benchmarks.md`).
//!
//! Both copies perform the same operations in the same order (FMA is not enabled, and
//! floating-point operations are never reassociated), so results are bit-identical;
//! the kernel tests compare the two copies bit for bit.
//!
//! `EINC_NO_AVX2=1` (read once) keeps the baseline copies, for A/B measurements.

use std::sync::OnceLock;

/// Whether the AVX2 copies may run: the CPU has AVX2 and `EINC_NO_AVX2` is unset.
#[inline]
pub(crate) fn avx2() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let off = std::env::var_os("EINC_NO_AVX2").is_some_and(|v| !v.is_empty() && v != "0");
        !off && detected()
    })
}

#[cfg(target_arch = "x86_64")]
fn detected() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> bool {
    false
}

/// `$wide` is `$body` compiled with AVX2: declares
/// `unsafe fn $wide<generics>(args) -> ret { $body(args) }` under the target feature.
/// Off x86-64 the wide copy is the body itself (never chosen, since [`avx2`] is false).
macro_rules! avx2_copy {
    (unsafe fn $wide:ident<$($g:ident: $bound:path),*>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $wide<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: the body's contract, forwarded; the caller checked `simd::avx2()`.
            unsafe { $body($($arg),*) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unsafe fn $wide<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: the body's contract, forwarded.
            unsafe { $body($($arg),*) }
        }
    };
}
pub(crate) use avx2_copy;
