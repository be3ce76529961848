//! The system's OpenBLAS, loaded at run time, for large matrix products.
//!
//! Why: on AVX2 machines the `gemm` crate reaches 0.7–0.8× of OpenBLAS's hand-written
//! Haswell/Zen kernels (docs/benchmarks.md), and those are what numpy and torch call. The
//! library is opened with `dlopen`, not linked, so einc builds and runs where no BLAS is
//! installed: every product then goes to the `gemm` crate, as it does for the strides
//! BLAS cannot express (zero, negative, or no unit stride).
//!
//! Which library: `EINC_BLAS` names a file to open, or `off` to use none; by default the
//! threaded OpenBLAS (`openblas-pthread/libopenblas.so.0` under the multiarch directory),
//! else the single-threaded one (`openblas-serial/`), else whatever `libopenblas.so.0`
//! resolves to. einc threads itself (batches, chunks and row/column blocks of large
//! products over its rayon pool), so the library is set to one thread when it is opened
//! and called from several threads at once.
//!
//! Only a threaded build may be called that way: Debian's serial OpenBLAS 0.3.21 (built
//! without `USE_LOCKING`) shares its packing buffers between concurrent calls, and two
//! threads each running 256×256×128 products got wrong results in 3 of 4000 calls. A
//! library whose `openblas_get_parallel()` says it is sequential is therefore called by one
//! thread at a time ([`run_blocks`]): a product that finds it busy, or that wants several
//! threads, goes to the `gemm` crate instead.
//!
//! Only LP64 builds (32-bit `int` dimensions) are used; a dimension or leading dimension
//! above `i32::MAX` falls back to the `gemm` crate.

use super::gemm_choice::{self, Real};
use super::scalar::GemmCall;
use num_complex::Complex;
use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::OnceLock;

const COL_MAJOR: c_int = 102;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// `cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`
/// with elements `E` and scalars (alpha, beta) passed as `S`: by value for the real types,
/// by pointer for the complex ones.
type Gemm<E, S> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    S,
    *const E,
    c_int,
    *const E,
    c_int,
    S,
    *mut E,
    c_int,
);
type RealGemm<T> = Gemm<T, T>;
type ComplexGemm = Gemm<c_void, *const c_void>;

/// The four `cblas_?gemm` entry points of an opened library.
pub struct Blas {
    sgemm: RealGemm<f32>,
    dgemm: RealGemm<f64>,
    cgemm: ComplexGemm,
    zgemm: ComplexGemm,
    /// What the library says of itself (`openblas_get_config`), or its file name.
    pub name: String,
    /// Whether concurrent calls are safe: a threaded build (`openblas_get_parallel() > 0`).
    pub concurrent: bool,
}

/// Held while a sequential (not [`Blas::concurrent`]) library runs a product.
static SEQUENTIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The process-wide BLAS, opened on first use; `None` when there is none or `EINC_BLAS=off`.
pub fn blas() -> Option<&'static Blas> {
    static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
    BLAS.get_or_init(|| match std::env::var("EINC_BLAS") {
        Ok(v) if matches!(v.as_str(), "off" | "0" | "none" | "") => None,
        Ok(path) => {
            let found = open(&path);
            if found.is_none() {
                // Once per process: the user asked for this file and gets the gemm crate.
                eprintln!(
                    "einc: EINC_BLAS={path}: no OpenBLAS cblas_?gemm there; using the gemm crate"
                );
            }
            found
        }
        Err(_) => default_candidates().iter().find_map(|p| open(p)),
    })
    .as_ref()
}

/// BLAS calls made so far (all threads), for tests that check the path was taken.
static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many BLAS calls this process has made.
pub fn calls() -> usize {
    CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    /// Set by [`without`]: the calling thread's products use the `gemm` crate.
    static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set by [`always`]: every product BLAS can express goes to it.
    static ALWAYS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with [`worth_it`] answering yes on this thread, so that the benchmark that
/// places the switch can time OpenBLAS on every shape.
pub fn always<R>(f: impl FnOnce() -> R) -> R {
    let before = ALWAYS.with(|c| c.replace(true));
    let r = f();
    ALWAYS.with(|c| c.set(before));
    r
}

/// [`blas`] unless the calling thread is inside [`without`]. Read on the thread that
/// starts a contraction (its worker threads inherit the decision through the job).
pub fn for_this_thread() -> Option<&'static Blas> {
    if OFF.with(|c| c.get()) {
        None
    } else {
        blas()
    }
}

/// Runs `f` with the BLAS path switched off on this thread, so that tests can check the
/// `gemm` crate path in a process that has a BLAS.
pub fn without<R>(f: impl FnOnce() -> R) -> R {
    let before = OFF.with(|c| c.replace(true));
    let r = f();
    OFF.with(|c| c.set(before));
    r
}

fn default_candidates() -> Vec<String> {
    let triple = match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    vec![
        format!("/usr/lib/{triple}/openblas-pthread/libopenblas.so.0"),
        format!("/usr/lib/{triple}/openblas-serial/libopenblas.so.0"),
        "libopenblas.so.0".to_string(),
        "libopenblas.so".to_string(),
    ]
}

#[cfg(target_os = "linux")]
fn open(path: &str) -> Option<Blas> {
    let cpath = CString::new(path).ok()?;
    // SAFETY: dlopen with a NUL-terminated path; the handle is never closed, so symbols
    // taken from it stay valid for the life of the process.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return None;
    }
    let sym = |name: &CStr| -> Option<*mut c_void> {
        // SAFETY: a valid handle and a NUL-terminated name.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    // Only OpenBLAS: a reference BLAS would be far slower than the gemm crate.
    let config = sym(c"openblas_get_config")?;
    // SAFETY: the pointers come from dlsym of these exact C prototypes
    // (`char *openblas_get_config(void)`, `void openblas_set_num_threads(int)`, cblas.h's
    // `cblas_?gemm`), all with the C ABI.
    unsafe {
        let config: unsafe extern "C" fn() -> *const libc::c_char = std::mem::transmute(config);
        let name = CStr::from_ptr(config()).to_string_lossy().into_owned();
        if name.contains("USE64BITINT") {
            return None;
        }
        if let Some(set) = sym(c"openblas_set_num_threads") {
            let set: unsafe extern "C" fn(c_int) = std::mem::transmute(set);
            set(1);
        }
        // `int openblas_get_parallel(void)`: 0 sequential, 1 pthreads, 2 OpenMP.
        let concurrent = sym(c"openblas_get_parallel").is_some_and(|f| {
            let f: unsafe extern "C" fn() -> c_int = std::mem::transmute(f);
            f() > 0
        });
        Some(Blas {
            sgemm: std::mem::transmute::<*mut c_void, RealGemm<f32>>(sym(c"cblas_sgemm")?),
            dgemm: std::mem::transmute::<*mut c_void, RealGemm<f64>>(sym(c"cblas_dgemm")?),
            cgemm: std::mem::transmute::<*mut c_void, ComplexGemm>(sym(c"cblas_cgemm")?),
            zgemm: std::mem::transmute::<*mut c_void, ComplexGemm>(sym(c"cblas_zgemm")?),
            name,
            concurrent,
        })
    }
}

#[cfg(not(target_os = "linux"))]
fn open(_path: &str) -> Option<Blas> {
    None
}

/// A product in column-major BLAS terms: `C (m×n, ldc, unit row stride) = op(A) op(B)`.
#[derive(Debug, PartialEq)]
pub struct ColMajor<T> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: *const T,
    pub trans_a: bool,
    pub lda: usize,
    pub b: *const T,
    pub trans_b: bool,
    pub ldb: usize,
    pub c: *mut T,
    pub ldc: usize,
}

// Manual impls: the derives would require `T: Copy`, but only pointers are copied.
impl<T> Clone for ColMajor<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ColMajor<T> {}

/// How a `rows × cols` matrix with strides `(rs, cs)` is passed to BLAS:
/// `(transposed, leading dimension)`, or `None` when no unit stride fits.
fn operand(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<(bool, usize)> {
    // A length-1 side's stride is never followed, so any value serves.
    let rs = if rows == 1 { 1 } else { rs };
    let cs = if cols == 1 { rows.max(1) as isize } else { cs };
    if rs == 1 && cs >= rows.max(1) as isize {
        Some((false, cs as usize))
    } else {
        let rs = if rows == 1 { cols.max(1) as isize } else { rs };
        let cs = if cols == 1 { 1 } else { cs };
        (cs == 1 && rs >= cols.max(1) as isize).then_some((true, rs as usize))
    }
}

/// Expresses `call` as a column-major BLAS product, transposing the whole problem
/// (`Cᵀ = Bᵀ Aᵀ`) when `dst` is row-major. `None` when some stride does not fit.
pub fn col_major<T>(call: &GemmCall<T>) -> Option<ColMajor<T>> {
    let c = call;
    let fits = |x: usize| x <= i32::MAX as usize;
    if ![c.m, c.n, c.k].iter().all(|&x| fits(x) && x > 0) {
        return None;
    }
    let direct = |m, n, a, a_rs, a_cs, b, b_rs, b_cs, d_rs, d_cs| -> Option<ColMajor<T>> {
        let (trans_a, lda) = operand(m, c.k, a_rs, a_cs)?;
        let (trans_b, ldb) = operand(c.k, n, b_rs, b_cs)?;
        let (false, ldc) = operand(m, n, d_rs, d_cs)? else {
            return None;
        };
        [lda, ldb, ldc]
            .iter()
            .all(|&l| fits(l))
            .then_some(ColMajor {
                m,
                n,
                k: c.k,
                a,
                trans_a,
                lda,
                b,
                trans_b,
                ldb,
                c: c.dst,
                ldc,
            })
    };
    let dst_col = operand(c.m, c.n, c.dst_rs, c.dst_cs).is_some_and(|(t, _)| !t);
    if dst_col {
        direct(
            c.m, c.n, c.lhs, c.lhs_rs, c.lhs_cs, c.rhs, c.rhs_rs, c.rhs_cs, c.dst_rs, c.dst_cs,
        )
    } else {
        direct(
            c.n, c.m, c.rhs, c.rhs_cs, c.rhs_rs, c.lhs, c.lhs_cs, c.lhs_rs, c.dst_cs, c.dst_rs,
        )
    }
}

/// Whether OpenBLAS is expected to beat the gemm crate on `p`: see
/// [`super::gemm_choice`], which measured where each wins.
pub fn worth_it<T: BlasScalar>(p: &ColMajor<T>) -> bool {
    ALWAYS.with(|c| c.get()) || gemm_choice::prefer_openblas(p, T::REAL)
}

/// An element type OpenBLAS has a `?gemm` for.
pub trait BlasScalar: Sized {
    /// The real type [`gemm_choice`]'s table covers, or `None` (complex).
    const REAL: Option<Real>;
    /// Runs `p` (overwriting `C`).
    ///
    /// # Safety
    /// `p` must describe matrices valid for the whole call, `C` not aliasing `A` or `B`.
    unsafe fn run(blas: &Blas, p: &ColMajor<Self>);
}

fn flag(t: bool) -> c_int {
    if t {
        TRANS
    } else {
        NO_TRANS
    }
}

/// Calls `f` on `p` with alpha = `one`, beta = `zero`.
///
/// # Safety
/// As [`BlasScalar::run`]; `f` is the `cblas_?gemm` of `E`'s element type.
unsafe fn call<E, S>(f: Gemm<E, S>, p: &ColMajor<E>, one: S, zero: S) {
    // SAFETY: the caller's contract; dimensions were checked to fit c_int.
    unsafe {
        f(
            COL_MAJOR,
            flag(p.trans_a),
            flag(p.trans_b),
            p.m as c_int,
            p.n as c_int,
            p.k as c_int,
            one,
            p.a,
            p.lda as c_int,
            p.b,
            p.ldb as c_int,
            zero,
            p.c,
            p.ldc as c_int,
        )
    }
}

impl<T> ColMajor<T> {
    /// The same product over untyped memory (complex elements go to cblas as `void *`).
    fn untyped(&self) -> ColMajor<c_void> {
        ColMajor {
            m: self.m,
            n: self.n,
            k: self.k,
            a: self.a.cast(),
            trans_a: self.trans_a,
            lda: self.lda,
            b: self.b.cast(),
            trans_b: self.trans_b,
            ldb: self.ldb,
            c: self.c.cast(),
            ldc: self.ldc,
        }
    }
}

macro_rules! real_blas {
    ($t:ty, $f:ident, $real:expr) => {
        impl BlasScalar for $t {
            const REAL: Option<Real> = Some($real);
            unsafe fn run(blas: &Blas, p: &ColMajor<Self>) {
                // SAFETY: the caller's contract.
                unsafe { call(blas.$f, p, 1.0, 0.0) }
            }
        }
    };
}

macro_rules! complex_blas {
    ($t:ty, $f:ident) => {
        impl BlasScalar for Complex<$t> {
            const REAL: Option<Real> = None;
            unsafe fn run(blas: &Blas, p: &ColMajor<Self>) {
                let (one, zero) = (Complex::<$t>::new(1.0, 0.0), Complex::<$t>::new(0.0, 0.0));
                let ptr = |z: &Complex<$t>| (z as *const Complex<$t>).cast::<c_void>();
                // SAFETY: the caller's contract; `Complex` is `repr(C)` {re, im}, the
                // layout cblas expects; alpha and beta are passed by pointer and outlive
                // the call.
                unsafe { call(blas.$f, &p.untyped(), ptr(&one), ptr(&zero)) }
            }
        }
    };
}

real_blas!(f32, sgemm, Real::F32);
real_blas!(f64, dgemm, Real::F64);
complex_blas!(f32, cgemm);
complex_blas!(f64, zgemm);

/// Runs `p` on `threads` threads of the current rayon pool: column blocks of `C` (or row
/// blocks when `n` is small), each a BLAS call of its own. Returns false, having done
/// nothing, when a sequential library cannot take the product: it would need several
/// threads, or another thread is using the library (the caller then runs the `gemm`
/// crate).
///
/// # Safety
/// As [`BlasScalar::run`].
#[must_use]
pub unsafe fn run_blocks<T: BlasScalar + Send + Sync>(
    blas: &Blas,
    p: &ColMajor<T>,
    threads: usize,
) -> bool {
    // Blocks below this many columns (rows) lose more to repacking the shared operand
    // than the extra thread gains.
    const MIN_BLOCK: usize = 64;
    let by_cols = p.n >= p.m || p.m < 2 * MIN_BLOCK;
    let side = if by_cols { p.n } else { p.m };
    let blocks = threads.min(side / MIN_BLOCK).max(1);
    if !blas.concurrent {
        if blocks > 1 {
            return false;
        }
        let Ok(_only) = SEQUENTIAL.try_lock() else {
            return false;
        };
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded; the lock keeps every other thread out of the library.
        unsafe { T::run(blas, p) };
        return true;
    }
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if blocks == 1 {
        // SAFETY: forwarded.
        unsafe { T::run(blas, p) };
        return true;
    }
    let per = side.div_ceil(blocks);
    let p = Shared(*p);
    rayon::scope(|s| {
        for i in 0..blocks {
            let p = &p;
            s.spawn(move |_| {
                let p = p.get();
                let start = i * per;
                let len = per.min(side - start);
                let part = if by_cols {
                    // Columns start..start+len of op(B) and C.
                    let off = if p.trans_b { start } else { start * p.ldb };
                    ColMajor {
                        n: len,
                        b: p.b.wrapping_add(off),
                        c: p.c.wrapping_add(start * p.ldc),
                        ..p
                    }
                } else {
                    let off = if p.trans_a { start * p.lda } else { start };
                    ColMajor {
                        m: len,
                        a: p.a.wrapping_add(off),
                        c: p.c.wrapping_add(start),
                        ..p
                    }
                };
                // SAFETY: each block is a sub-matrix of the caller's valid matrices, and
                // the blocks of C are disjoint; the library takes concurrent calls.
                unsafe { T::run(blas, &part) };
            });
        }
    });
    true
}

/// Lets the block closures share the raw pointers of one product.
struct Shared<T>(ColMajor<T>);
// SAFETY: the pointers describe memory the caller keeps alive for the whole `rayon::scope`;
// blocks only read A and B and write disjoint parts of C.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn get(&self) -> ColMajor<T> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::Rng;

    fn call(m: usize, n: usize, k: usize, s: [isize; 6]) -> GemmCall<f64> {
        GemmCall {
            m,
            n,
            k,
            dst: std::ptr::null_mut(),
            dst_rs: s[0],
            dst_cs: s[1],
            lhs: std::ptr::null(),
            lhs_rs: s[2],
            lhs_cs: s[3],
            rhs: std::ptr::null(),
            rhs_rs: s[4],
            rhs_cs: s[5],
            parallelism: gemm::Parallelism::None,
        }
    }

    #[test]
    fn strides_map_to_blas_operands() {
        // Row-major everywhere: the transposed problem Cᵀ = Bᵀ Aᵀ with nothing transposed.
        let p = col_major(&call(3, 4, 5, [4, 1, 5, 1, 4, 1])).expect("row-major fits");
        assert_eq!((p.m, p.n, p.k), (4, 3, 5));
        assert_eq!(
            (p.trans_a, p.lda, p.trans_b, p.ldb, p.ldc),
            (false, 4, false, 5, 4)
        );
        // Column-major dst, transposed lhs.
        let p = col_major(&call(3, 4, 5, [1, 3, 1, 3, 1, 5])).expect("fits");
        assert_eq!((p.m, p.n), (3, 4));
        assert_eq!(
            (p.trans_a, p.lda, p.trans_b, p.ldb, p.ldc),
            (false, 3, false, 5, 3)
        );
        let p = col_major(&call(3, 4, 5, [1, 3, 5, 1, 1, 5])).expect("fits");
        assert_eq!((p.trans_a, p.lda), (true, 5));
        // Padded leading dimensions are kept.
        let p = col_major(&call(3, 4, 5, [1, 8, 1, 7, 1, 9])).expect("fits");
        assert_eq!((p.lda, p.ldb, p.ldc), (7, 9, 8));
    }

    #[test]
    fn unfit_strides_fall_back() {
        // No unit stride in lhs.
        assert!(col_major(&call(3, 4, 5, [4, 1, 10, 2, 4, 1])).is_none());
        // A broadcast (zero) stride.
        assert!(col_major(&call(3, 4, 5, [4, 1, 0, 1, 4, 1])).is_none());
        // Negative strides.
        assert!(col_major(&call(3, 4, 5, [4, 1, -5, 1, 4, 1])).is_none());
        // Overlapping rows: leading dimension below the row length.
        assert!(col_major(&call(3, 4, 5, [4, 1, 2, 1, 4, 1])).is_none());
    }

    #[test]
    fn vectors_take_any_stride_on_their_unit_side() {
        // m = 1: a row vector times a matrix; the row stride of lhs and dst is never used,
        // so dst is a 1×4 column-major matrix with unit leading dimension.
        let p = col_major(&call(1, 4, 5, [0, 1, 0, 1, 4, 1])).expect("fits");
        assert_eq!((p.m, p.n, p.k), (1, 4, 5));
        // n = 1 with a strided dst column: as the transposed problem it is a 1×m row with
        // leading dimension 7.
        let p = col_major(&call(3, 1, 5, [7, 0, 5, 1, 1, 0])).expect("fits");
        assert_eq!((p.m, p.n, p.ldc), (1, 3, 7));
        // A column whose elements are 7 apart cannot be the unit-stride side of lhs.
        assert!(col_major(&call(3, 4, 1, [4, 1, 7, 7, 4, 1])).is_some());
        assert!(col_major(&call(3, 4, 2, [4, 1, 7, 3, 4, 1])).is_none());
    }

    /// The opened library, or a visible note; CI sets `EINC_REQUIRE_BLAS=1` so that a
    /// missing OpenBLAS fails there instead of silently testing only the fallback.
    fn library() -> Option<&'static Blas> {
        let lib = blas();
        match lib {
            Some(b) => eprintln!("BLAS: {}", b.name),
            None if std::env::var_os("EINC_REQUIRE_BLAS").is_some() => {
                panic!("EINC_REQUIRE_BLAS is set but no OpenBLAS could be opened")
            }
            None => eprintln!("SKIP: no OpenBLAS on this machine; BLAS path not tested"),
        }
        lib
    }

    fn check_blocks<T: BlasScalar + crate::kernels::Scalar>(lib: &Blas, rng: &mut Rng) {
        for threads in [1, 2, 3] {
            let (m, n, k) = (65 + rng.below(150), 65 + rng.below(150), 1 + rng.below(40));
            // Random storage orders: row- or column-major operands and result.
            let lay = |r: usize, c: usize, col: bool| {
                if col {
                    (1, r as isize)
                } else {
                    (c as isize, 1)
                }
            };
            let (ta, tb, tc) = (rng.below(2) == 1, rng.below(2) == 1, rng.below(2) == 1);
            let a: Vec<T> = (0..m * k).map(|_| rng.scalar()).collect();
            let b: Vec<T> = (0..k * n).map(|_| rng.scalar()).collect();
            let mut c = vec![T::from_f64(f64::NAN); m * n];
            let ((ars, acs), (brs, bcs), (crs, ccs)) =
                (lay(m, k, ta), lay(k, n, tb), lay(m, n, tc));
            let call = GemmCall {
                m,
                n,
                k,
                dst: c.as_mut_ptr(),
                dst_rs: crs,
                dst_cs: ccs,
                lhs: a.as_ptr(),
                lhs_rs: ars,
                lhs_cs: acs,
                rhs: b.as_ptr(),
                rhs_rs: brs,
                rhs_cs: bcs,
                parallelism: gemm::Parallelism::None,
            };
            let p = col_major(&call).expect("dense layouts fit BLAS");
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            // SAFETY: the three vectors hold the m×k, k×n and m×n matrices the strides
            // describe, and c is distinct from a and b.
            let p = Shared(p);
            let mut ran = pool.install(|| unsafe { run_blocks(lib, &p.get(), threads) });
            // A sequential library declines products that want several threads, and any
            // while another test's product holds it: retry a one-thread product until it
            // is free, so that the library's result is checked on both kinds.
            for _ in 0..1000 {
                if ran || lib.concurrent || threads > 1 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
                ran = pool.install(|| unsafe { run_blocks(lib, &p.get(), threads) });
            }
            assert!(
                ran || !lib.concurrent,
                "{}: a threaded build declined",
                lib.name
            );
            assert!(ran || threads > 1, "{}: never free", lib.name);
            if !ran {
                continue;
            }
            for i in 0..m {
                for j in 0..n {
                    let mut want = num_complex::Complex64::new(0.0, 0.0);
                    for q in 0..k {
                        let x = a[(i as isize * ars + q as isize * acs) as usize].to_c64();
                        let y = b[(q as isize * brs + j as isize * bcs) as usize].to_c64();
                        want += x * y;
                    }
                    let got = c[(i as isize * crs + j as isize * ccs) as usize].to_c64();
                    let tol = if T::DTYPE_NAME == "f32" || T::DTYPE_NAME == "c64" {
                        1e-4
                    } else {
                        1e-10
                    };
                    assert!(
                        (got - want).norm() <= tol * (1.0 + want.norm()),
                        "{m}x{n}x{k} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Two threads running BLAS-sized products at once (as chunks and batch loops do) must
    /// each get the right result; the serial library once shared buffers between them.
    #[test]
    fn concurrent_products_agree() {
        let Some(lib) = library() else { return };
        let (m, k, n) = (256, 256, 128);
        let a = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[m, k]), |ix| {
            ((ix[0] * 7 + ix[1] * 3) % 11) as f32 - 5.0
        });
        let b = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[k, n]), |ix| {
            ((ix[0] * 5 + ix[1]) % 13) as f32 - 6.0
        });
        // Small integers: every order of summation gives the exact result.
        let want =
            crate::kernels::contract::contract_pair(a.view(), &[0, 1], b.view(), &[1, 2], &[0, 2]);
        let before = calls();
        std::thread::scope(|s| {
            for threads in [1, 2] {
                let (a, b, want) = (&a, &b, &want);
                s.spawn(move || {
                    // One call on one thread, the other in two blocks at once (which a
                    // sequential library declines).
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .expect("pool");
                    pool.install(|| {
                        for _ in 0..3000 {
                            let got = crate::kernels::contract::contract_pair(
                                a.view(),
                                &[0, 1],
                                b.view(),
                                &[1, 2],
                                &[0, 2],
                            );
                            assert_eq!(&got, want, "{}", lib.name);
                        }
                    });
                });
            }
        });
        assert!(calls() > before, "the products went to the BLAS");
    }

    #[test]
    fn blocked_products_match_loops_in_every_dtype() {
        let Some(lib) = library() else { return };
        let mut rng = Rng(41);
        check_blocks::<f32>(lib, &mut rng);
        check_blocks::<f64>(lib, &mut rng);
        check_blocks::<Complex<f32>>(lib, &mut rng);
        check_blocks::<Complex<f64>>(lib, &mut rng);
    }
}
