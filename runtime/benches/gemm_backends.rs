//! OpenBLAS (opened at run time) against the gemm crate on the same `contract_pair`
//! calls, f32 and f64, one thread, over a sweep of GEMM shapes: where the switch between
//! them belongs. Times are the calling thread's CPU time (median of runs after a warm-up),
//! so that a busy second core disturbs them less than wall-clock time.
//!
//! `cargo bench -p einc-runtime --bench gemm_backends [-- FILTER]`

use einc_runtime::kernels::{blas, contract_pair, gemm_choice, Scalar};
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
    let budget = if GRID.with(|g| g.get()) { 0.1 } else { 0.5 };
    let (start, mut v) = (Instant::now(), Vec::new());
    while v.len() < 5 || (start.elapsed().as_secs_f64() < budget && v.len() < 200) {
        let t = thread_cpu_s();
        f();
        v.push((thread_cpu_s() - t) * 1e3);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `a · b -> [m,n]`, where a is stored `[m,k]`, or `[k,m]` when `at`, and b is stored
/// `[k,n]`, or `[n,k]` when `bt` (the "NT" product of attention scores: both operands
/// unit-stride along k). Times the shape both ways, prints its row and returns gemm-crate
/// time / OpenBLAS time.
fn case<T: Scalar>(name: &str, m: usize, k: usize, n: usize, at: bool, bt: bool) -> f64 {
    let (a_shape, a_idx) = if at {
        ([k, m], [1, 0])
    } else {
        ([m, k], [0, 1])
    };
    let a = ArrayD::from_shape_fn(IxDyn(&a_shape), |i| {
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
        let _ = contract_pair(a.view(), &a_idx, b.view(), &b_idx, &[0, 2]);
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
    without / with
}

thread_local! {
    /// Set in grid mode: shorter timings, one line per shape.
    static GRID: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `-- grid`: every (m, k, n, layout, dtype) of the grid that `blas::worth_it`'s table
/// for AVX-512 machines is indexed by (`gemm_choice::GRID_SIDES`, `gemm_choice::GRID_K`),
/// then that table as Rust source: `o` where OpenBLAS took less than 1/1.03 of the gemm
/// crate's time. A row-major result is BLAS's column-major `Cᵀ = Bᵀ Aᵀ`, so b stored
/// `[n,k]` is BLAS's transposed first operand and a stored `[k,m]` its transposed second.
fn grid() {
    GRID.with(|g| g.set(true));
    let ks = gemm_choice::GRID_K.len();
    let mut table = vec![String::new(); 2 * 4 * ks];
    for (ki, &k) in gemm_choice::GRID_K.iter().enumerate() {
        for &m in &gemm_choice::GRID_SIDES {
            for &n in &gemm_choice::GRID_SIDES {
                for layout in 0..4 {
                    let (bt, at) = (layout >= 2, layout % 2 == 1);
                    let name = ["grid NN", "grid TN", "grid NT", "grid TT"][layout];
                    let r32 = case::<f32>(name, m, k, n, at, bt);
                    let r64 = case::<f64>(name, m, k, n, at, bt);
                    for (di, r) in [(0, r32), (1, r64)] {
                        let cell = &mut table[(di * 4 + layout) * ks + ki];
                        if n == gemm_choice::GRID_SIDES[0] && m != gemm_choice::GRID_SIDES[0] {
                            cell.push(' ');
                        }
                        cell.push(if r > 1.03 { 'o' } else { 'g' });
                    }
                }
            }
        }
    }
    println!("\nconst AVX512_TABLE: [[[&str; {ks}]; 4]; 2] = [");
    for di in 0..2 {
        println!("    [");
        for layout in 0..4 {
            println!("        [");
            for ki in 0..ks {
                println!("            \"{}\",", table[(di * 4 + layout) * ks + ki]);
            }
            println!("        ],");
        }
        println!("    ],");
    }
    println!("];");
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
        // Long sums on small results: bilinear's `ikl,jkl->ij` step is NT 256×4096×256.
        ("long k", 256, 4096, 256, false),
        ("long k NT", 256, 4096, 256, true),
        // The same with a stored [k, m]. Bilinear's product as planned before
        // `plan/orient.rs` is "long k NT" and turned it is "long k" (NN); "TN long k NT"
        // is its intermediate laid out [K, i] without turning the result.
        ("TN long k", 256, 4096, 256, false),
        ("TN long k NT", 256, 4096, 256, true),
        ("long k NT", 64, 1024, 64, true),
        ("long k NT", 512, 1024, 512, true),
        ("long k NT", 1024, 1024, 1024, true),
        ("long k", 512, 1024, 512, false),
        ("long k", 32, 8192, 32, false),
        ("n16", 4096, 512, 16, false),
        ("few rows", 32, 512, 4096, false),
        ("few rows", 8, 512, 4096, false),
        ("few rows", 16, 128, 4096, false),
        ("few rows", 16, 2048, 1024, false),
        // e3nn_fctp's last product, column-major C (5 × 416) with a 5 × 25 operand.
        ("TN e3nn", 416, 25, 5, false),
        ("TN e3nn", 512, 32, 8, false),
        ("TN e3nn", 32000, 25, 5, false),
    ];
    // One worker thread, which runs every call: its CPU time is the whole cost.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    if filter.as_deref() == Some("grid") {
        pool.install(grid);
        return;
    }
    pool.install(|| {
        for &(name, m, k, n, bt) in shapes {
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let _ = case::<f32>(name, m, k, n, name.starts_with("TN"), bt);
            let _ = case::<f64>(name, m, k, n, name.starts_with("TN"), bt);
        }
    });
}
