//! The element types the kernels work on: `f32`, `f64`, `Complex<f32>`, `Complex<f64>`.
//!
//! [`Scalar`] collects the arithmetic the kernels need, the elementwise math of
//! the `.ein` language, conversions through `Complex<f64>` (the oracle's type),
//! and a hook into the `gemm` crate.

use num_complex::{Complex, Complex64};
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// One call to a dense matrix product `dst = lhs × rhs` on strided memory.
///
/// `dst` is `m × n`, `lhs` is `m × k`, `rhs` is `k × n`; every matrix is given
/// by a pointer to its element `(0, 0)` and a row stride (`*_rs`) and column
/// stride (`*_cs`) counted in elements (may be zero or negative).
#[derive(Clone, Copy, Debug)]
pub struct GemmCall<T> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dst: *mut T,
    pub dst_rs: isize,
    pub dst_cs: isize,
    pub lhs: *const T,
    pub lhs_rs: isize,
    pub lhs_cs: isize,
    pub rhs: *const T,
    pub rhs_rs: isize,
    pub rhs_cs: isize,
    pub parallelism: gemm::Parallelism,
}

/// An element type of einc arrays.
pub trait Scalar:
    super::blas::BlasScalar
    + Copy
    + Send
    + Sync
    + Debug
    + PartialEq
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// Whether the type is complex.
    const IS_COMPLEX: bool;
    /// The dtype name used in plans and `.npy` metadata: "f32", "f64", "c64", "c128".
    const DTYPE_NAME: &'static str;

    fn zero() -> Self;
    fn one() -> Self;
    fn from_f64(x: f64) -> Self;
    fn to_c64(self) -> Complex64;
    /// Converts from `Complex<f64>`; real types drop the imaginary part.
    fn from_c64(z: Complex64) -> Self;

    fn exp(self) -> Self;
    /// Natural logarithm (principal branch for complex).
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    /// Absolute value; for complex the modulus, returned with zero imaginary part.
    fn abs(self) -> Self;
    /// numpy's `maximum`: NaN propagates; complex compares the real part, then
    /// the imaginary part.
    fn max2(self, other: Self) -> Self;
    /// numpy's `minimum`, see [`Scalar::max2`].
    fn min2(self, other: Self) -> Self;
    /// True when no component is infinite or NaN.
    fn is_finite(self) -> bool;

    /// Runs `dst = lhs × rhs` (overwriting `dst`) with the `gemm` crate.
    ///
    /// # Safety
    /// Every pointer must address, through the given shape and strides, memory
    /// valid for the whole call: `lhs`/`rhs` readable, `dst` writable, and no
    /// two distinct `(row, col)` positions of `dst` may alias each other or any
    /// element of `lhs`/`rhs`. With `m`, `n` or `k` equal to zero nothing is
    /// read; callers here skip such calls anyway.
    unsafe fn gemm(call: &GemmCall<Self>);
}

macro_rules! gemm_impl {
    ($t:ty) => {
        unsafe fn gemm(c: &GemmCall<Self>) {
            // SAFETY: the caller upholds the memory contract documented on
            // `Scalar::gemm`, which is exactly what `gemm::gemm` requires.
            // `$t` is one of the four types `gemm::gemm` dispatches on (its
            // `c32`/`c64` are aliases of `num_complex::Complex32/64`, so no
            // layout conversion is involved). `read_dst = false` with
            // alpha = 0, beta = 1 computes `dst = lhs × rhs` without reading
            // the previous contents of `dst`.
            unsafe {
                gemm::gemm::<$t>(
                    c.m,
                    c.n,
                    c.k,
                    c.dst,
                    c.dst_cs,
                    c.dst_rs,
                    false,
                    c.lhs,
                    c.lhs_cs,
                    c.lhs_rs,
                    c.rhs,
                    c.rhs_cs,
                    c.rhs_rs,
                    <$t as Scalar>::zero(),
                    <$t as Scalar>::one(),
                    false,
                    false,
                    false,
                    c.parallelism,
                )
            }
        }
    };
}

/// numpy-style maximum for reals: NaN wins over everything.
macro_rules! real_minmax {
    ($a:expr, $b:expr, $cmp:tt) => {{
        let (a, b) = ($a, $b);
        if a.is_nan() || a $cmp b {
            a
        } else {
            b
        }
    }};
}

macro_rules! real_scalar {
    ($t:ty, $name:literal) => {
        impl Scalar for $t {
            const IS_COMPLEX: bool = false;
            const DTYPE_NAME: &'static str = $name;
            fn zero() -> Self {
                0.0
            }
            fn one() -> Self {
                1.0
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_c64(self) -> Complex64 {
                Complex64::new(self as f64, 0.0)
            }
            fn from_c64(z: Complex64) -> Self {
                z.re as $t
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn max2(self, other: Self) -> Self {
                // `b.is_nan()` falls through to `b` because NaN comparisons are false.
                real_minmax!(self, other, >=)
            }
            fn min2(self, other: Self) -> Self {
                real_minmax!(self, other, <=)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            gemm_impl!($t);
        }
    };
}

macro_rules! complex_scalar {
    ($f:ty, $name:literal) => {
        impl Scalar for Complex<$f> {
            const IS_COMPLEX: bool = true;
            const DTYPE_NAME: &'static str = $name;
            fn zero() -> Self {
                Complex::new(0.0, 0.0)
            }
            fn one() -> Self {
                Complex::new(1.0, 0.0)
            }
            fn from_f64(x: f64) -> Self {
                Complex::new(x as $f, 0.0)
            }
            fn to_c64(self) -> Complex64 {
                Complex64::new(self.re as f64, self.im as f64)
            }
            fn from_c64(z: Complex64) -> Self {
                Complex::new(z.re as $f, z.im as $f)
            }
            fn exp(self) -> Self {
                Complex::exp(self)
            }
            fn ln(self) -> Self {
                Complex::ln(self)
            }
            fn sqrt(self) -> Self {
                Complex::sqrt(self)
            }
            fn tanh(self) -> Self {
                Complex::tanh(self)
            }
            fn abs(self) -> Self {
                Complex::new(self.norm(), 0.0)
            }
            fn max2(self, other: Self) -> Self {
                if self.is_nan() {
                    return self;
                }
                if other.is_nan() {
                    return other;
                }
                // Lexicographic on (re, im), as numpy orders complex numbers.
                let ge = self.re > other.re || (self.re == other.re && self.im >= other.im);
                if ge {
                    self
                } else {
                    other
                }
            }
            fn min2(self, other: Self) -> Self {
                if self.is_nan() {
                    return self;
                }
                if other.is_nan() {
                    return other;
                }
                let le = self.re < other.re || (self.re == other.re && self.im <= other.im);
                if le {
                    self
                } else {
                    other
                }
            }
            fn is_finite(self) -> bool {
                Complex::is_finite(self)
            }
            gemm_impl!(Complex<$f>);
        }
    };
}

real_scalar!(f32, "f32");
real_scalar!(f64, "f64");
complex_scalar!(f32, "c64");
complex_scalar!(f64, "c128");

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex32;

    #[test]
    fn names_and_flags() {
        assert_eq!(f32::DTYPE_NAME, "f32");
        assert_eq!(f64::DTYPE_NAME, "f64");
        assert_eq!(Complex32::DTYPE_NAME, "c64");
        assert_eq!(Complex64::DTYPE_NAME, "c128");
        const { assert!(!f64::IS_COMPLEX && Complex32::IS_COMPLEX) };
    }

    #[test]
    fn conversions() {
        let z = Complex64::new(1.5, -2.0);
        assert_eq!(f64::from_c64(z), 1.5);
        assert_eq!(Complex32::from_c64(z), Complex32::new(1.5, -2.0));
        assert_eq!(3.0f32.to_c64(), Complex64::new(3.0, 0.0));
        assert_eq!(Complex64::from_f64(2.0), Complex64::new(2.0, 0.0));
    }

    #[test]
    fn real_min_max_nan() {
        assert_eq!(1.0f64.max2(2.0), 2.0);
        assert_eq!(1.0f64.min2(2.0), 1.0);
        assert!(f64::NAN.max2(2.0).is_nan());
        assert!(2.0f64.max2(f64::NAN).is_nan());
        assert!(2.0f32.min2(f32::NAN).is_nan());
        assert_eq!(f64::NEG_INFINITY.max2(-3.0), -3.0);
    }

    #[test]
    fn complex_min_max_lexicographic() {
        let a = Complex64::new(1.0, 5.0);
        let b = Complex64::new(1.0, 2.0);
        let c = Complex64::new(0.0, 9.0);
        assert_eq!(a.max2(b), a);
        assert_eq!(a.min2(b), b);
        assert_eq!(a.max2(c), a);
        assert_eq!(c.min2(a), c);
        assert!(Complex64::new(f64::NAN, 0.0).max2(a).re.is_nan());
    }

    #[test]
    fn complex_math() {
        let z = Complex64::new(3.0, 4.0);
        assert_eq!(Scalar::abs(z), Complex64::new(5.0, 0.0));
        let e = Scalar::exp(Complex64::new(0.0, std::f64::consts::PI));
        assert!((e - Complex64::new(-1.0, 0.0)).norm() < 1e-12);
        assert!(
            (Scalar::ln(Scalar::exp(z)) - Complex64::new(3.0, 4.0 - 2.0 * std::f64::consts::PI))
                .norm()
                < 1e-12
        );
        assert!(Scalar::is_finite(z) && !Scalar::is_finite(Complex64::new(f64::INFINITY, 0.0)));
    }

    #[test]
    fn gemm_hook_row_and_col_major() {
        // [[1,2],[3,4]] × [[5,6],[7,8]] = [[19,22],[43,50]]
        let lhs = [1.0f64, 2.0, 3.0, 4.0];
        let rhs_t = [5.0f64, 7.0, 6.0, 8.0]; // column-major storage of rhs
        let mut dst = [0.0f64; 4];
        let call = GemmCall {
            m: 2,
            n: 2,
            k: 2,
            dst: dst.as_mut_ptr(),
            dst_rs: 2,
            dst_cs: 1,
            lhs: lhs.as_ptr(),
            lhs_rs: 2,
            lhs_cs: 1,
            rhs: rhs_t.as_ptr(),
            rhs_rs: 1,
            rhs_cs: 2,
            parallelism: gemm::Parallelism::None,
        };
        // SAFETY: all three buffers hold 4 elements and the strides above stay
        // inside them; `dst` is a distinct local buffer.
        unsafe { f64::gemm(&call) };
        assert_eq!(dst, [19.0, 22.0, 43.0, 50.0]);
    }
}
