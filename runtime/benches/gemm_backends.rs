//! OpenBLAS (opened at run time) against the gemm crate on the same `contract_pair`
//! calls, f32 and f64, one thread, over a sweep of GEMM shapes: where the switch between
//! them belongs. Times are the calling thread's CPU time (median of runs after a warm-up),
//! so that a busy second core disturbs them less than wall-clock time.
//!
//! `cargo bench -p einc-runtime --bench gemm_backends [-- FILTER]`

use einc_runtime::kernels::{blas, contract_pair, Scalar};
use ndarray::{ArrayD, IxDyn};
use std::time::Instant;

#[cfg(target_os = "linux")]
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Elsewhere (no `libc` dependency there) wall-clock time stands in.
#[cfg(not(target_os = "linux"))]
fn thread_cpu_s() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let (start, mut v) = (Instant::now(), Vec::new());
    while v.len() < 5 || (start.elapsed().as_secs_f64() < 0.5 && v.len() < 200) {
        let t = thread_cpu_s();
        f();
        v.push((thread_cpu_s() - t) * 1e3);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `a[m,k] · b -> [m,n]`, where b is stored `[k,n]`, or `[n,k]` when `bt` (the
/// "NT" product of attention scores: both operands unit-stride along k).
fn case<T: Scalar>(name: &str, m: usize, k: usize, n: usize, bt: bool) {
    let a = ArrayD::from_shape_fn(IxDyn(&[m, k]), |i| {
        T::from_f64((i[0] * 7 + i[1]) as f64 % 5.0 - 2.0)
    });
    let (b_shape, b_idx) = if bt {
        ([n, k], [2, 1])
    } else {
        ([k, n], [1, 2])
    };
    let b = ArrayD::from_shape_fn(IxDyn(&b_shape), |i| {
        T::from_f64((i[0] + 3 * i[1]) as f64 % 3.0 - 1.0)
    });
    let run = || {
        let _ = contract_pair(a.view(), &[0, 1], b.view(), &b_idx, &[0, 2]);
    };
    let with = median_ms(|| blas::always(run));
    let without = median_ms(|| blas::without(run));
    let gflops = |ms: f64| 2.0 * (m * n * k) as f64 / ms / 1e6;
    println!(
        "| {name} | {} | {m}×{k}×{n} | {with:.3} | {without:.3} | {:.1} | {:.1} | {:.2} |",
        T::DTYPE_NAME,
        gflops(with),
        gflops(without),
        without / with
    );
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let Some(lib) = blas::blas() else {
        println!("SKIP: no OpenBLAS could be opened");
        return;
    };
    println!("OpenBLAS: {}\n", lib.name);
    println!("| shape | dtype | m×k×n | OpenBLAS ms | gemm crate ms | OpenBLAS GFLOP/s | gemm GFLOP/s | gemm / OpenBLAS time |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    let shapes: &[(&str, usize, usize, usize, bool)] = &[
        ("square", 16, 16, 16, false),
        ("square", 32, 32, 32, false),
        ("square", 64, 64, 64, false),
        ("square", 128, 128, 128, false),
        ("square", 256, 256, 256, false),
        ("square", 512, 512, 512, false),
        ("square", 1024, 1024, 1024, false),
        ("tall k64", 65536, 64, 64, false),
        ("tall k64", 8192, 64, 64, false),
        ("tall k32", 16384, 32, 512, false),
        ("k1024 small mn", 64, 1024, 64, false),
        ("wide", 64, 64, 65536, false),
        ("k64 square", 512, 64, 512, false),
        ("k256", 512, 256, 512, false),
        ("m16", 16, 512, 4096, false),
        ("NT k64", 256, 64, 256, true),
        ("NT k64", 16384, 64, 128, true),
        ("NT k64", 512, 64, 512, true),
    ];
    // One worker thread, which runs every call: its CPU time is the whole cost.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    pool.install(|| {
        for &(name, m, k, n, bt) in shapes {
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            case::<f32>(name, m, k, n, bt);
            case::<f64>(name, m, k, n, bt);
        }
    });
}
