//! CPU execution benchmark: every case of `../shared/workloads/cpu_suite.json` through a
//! compiled `einc::Expression` at 1 and 2 threads (median of several runs after warm-up),
//! the `gemm` crate alone on the GEMM-shaped cases, and the cached-call overhead of
//! `einc::einsum` on a 2×2 matmul. Prints one JSON object per line, for
//! `benches/cpu.sh` to join with the Python peers' numbers.
//!
//! `cargo bench --bench cpu [-- FILTER]`; `EINC_BENCH_SUITE=FILE` for another suite (the
//! MPS and lattice networks of `../shared/paths/suite.json`, for their peak memory).

use einc::{DType, ExecOptions, TensorData, TensorView};
use ndarray::{ArrayD, IxDyn};
use num_complex::Complex32;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The global allocator with a byte count: the memory check below measures every heap
/// allocation of a run (kernel temporaries and copies included), not only the arrays the
/// executor accounts for. OpenBLAS's own packing buffers (its memory pool) are outside it.
struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes allocated at the peak of `f`, beyond what was allocated before it.
fn heap_peak(f: impl FnOnce()) -> usize {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed) - before
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` until `min_runs` runs and `min_time` have passed (after one warm-up); median ms.
fn time_ms(mut f: impl FnMut(), min_runs: usize, min_time: Duration) -> f64 {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < min_runs || (start.elapsed() < min_time && times.len() < 1000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(times)
}

fn values(n: usize, seed: usize) -> Vec<f64> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ seed as u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect()
}

/// `v` moved into memory allocated as numpy allocates its arrays: from 4 MiB up, advised
/// to use transparent huge pages (numpy's `madvise_hugepage`, on by default on Linux).
/// The peers' inputs are numpy arrays (torch's share their memory), so einc's inputs are
/// made the same way: streaming over 4 KiB pages is slower (the prefetcher stops at each
/// page), and it was the peers' advantage on the memory-bound cases. `EINC_BENCH_PLAIN_INPUTS=1`
/// keeps plain allocations.
fn like_numpy<T: Copy>(v: Vec<T>) -> Vec<T> {
    let bytes = std::mem::size_of_val(&v[..]);
    if bytes < 1 << 22 || std::env::var("EINC_BENCH_PLAIN_INPUTS").as_deref() == Ok("1") {
        return v;
    }
    let mut w: Vec<T> = Vec::with_capacity(v.len());
    einc_runtime::kernels::advise_huge(w.as_mut_ptr().cast(), bytes);
    w.extend_from_slice(&v);
    w
}

/// A buffer of `n` elements, uninitialised, allocated as `einc_runtime` allocates results.
fn uninit_like_einc<T: Copy>(n: usize) -> Vec<T> {
    let mut w: Vec<T> = Vec::with_capacity(n);
    einc_runtime::kernels::advise_huge(w.as_mut_ptr().cast(), n * std::mem::size_of::<T>());
    // SAFETY: floats have no invalid bit patterns, and gemm is called with `read_dst`
    // false, so it writes every element before anything reads it.
    unsafe { w.set_len(n) };
    w
}

fn make(shape: &[usize], dtype: DType, seed: usize) -> TensorData {
    let n: usize = shape.iter().product();
    let v = values(n * 2, seed);
    let sh = IxDyn(shape);
    match dtype {
        DType::F32 => TensorData::F32(
            ArrayD::from_shape_vec(sh, like_numpy(v[..n].iter().map(|&x| x as f32).collect()))
                .expect("shape"),
        ),
        DType::F64 => {
            TensorData::F64(ArrayD::from_shape_vec(sh, like_numpy(v[..n].to_vec())).expect("shape"))
        }
        DType::C64 => TensorData::C64(
            ArrayD::from_shape_vec(
                sh,
                like_numpy(
                    (0..n)
                        .map(|i| Complex32::new(v[i] as f32, v[n + i] as f32))
                        .collect(),
                ),
            )
            .expect("shape"),
        ),
        DType::C128 => TensorData::C128(
            ArrayD::from_shape_vec(
                sh,
                like_numpy(
                    (0..n)
                        .map(|i| num_complex::Complex64::new(v[i], v[n + i]))
                        .collect(),
                ),
            )
            .expect("shape"),
        ),
    }
}

/// Operand shapes of a case: explicit `shapes`, or from `sizes` by label (the note of
/// `broadcast_ellipsis` spells its shapes out).
fn shapes(case: &Value) -> Vec<Vec<usize>> {
    if let Some(s) = case.get("shapes").and_then(|s| s.as_array()) {
        return s
            .iter()
            .map(|d| {
                d.as_array()
                    .map(|d| {
                        d.iter()
                            .filter_map(|x| x.as_u64())
                            .map(|x| x as usize)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
    }
    let eq = case["eq"].as_str().unwrap_or("");
    if eq.contains("...") {
        // "shapes [16,8,64,64] and [8,64,64]: ellipsis broadcasting"
        let note = case["note"].as_str().unwrap_or("");
        return note
            .split('[')
            .skip(1)
            .filter_map(|p| p.split(']').next())
            .map(|p| p.split(',').filter_map(|d| d.trim().parse().ok()).collect())
            .collect();
    }
    let sizes = &case["sizes"];
    let lhs = eq.split("->").next().unwrap_or("");
    lhs.split(',')
        .map(|t| {
            t.chars()
                .map(|c| sizes[c.to_string()].as_u64().unwrap_or(1) as usize)
                .collect()
        })
        .collect()
}

fn dtype(case: &Value) -> DType {
    match case["dtype"].as_str().unwrap_or("f32") {
        "f64" => DType::F64,
        "c64" => DType::C64,
        "c128" => DType::C128,
        _ => DType::F32,
    }
}

/// The gemm crate alone on `batch` distinct m×k · k×n products (distinct, so that a
/// batched case pays for reading every batch as einc does).
/// The gemm crate alone on the case's matrices, median ms: with the output buffer reused
/// across calls (`fresh` false), or allocated for every call as einc allocates its result
/// (`fresh`: uninitialised, huge-page advice from 4 MiB, as `einc_runtime`'s buffers), so
/// that both sides pay for the result's first-touch page faults.
fn gemm_baseline(
    m: usize,
    k: usize,
    n: usize,
    batch: usize,
    threads: usize,
    dt: DType,
    fresh: bool,
) -> f64 {
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    macro_rules! go {
        ($t:ty) => {{
            let a: Vec<$t> = values(batch * m * k, 1).iter().map(|&x| x as $t).collect();
            let b: Vec<$t> = values(batch * k * n, 2).iter().map(|&x| x as $t).collect();
            let mut kept: Vec<$t> = vec![0.0; batch * m * n];
            time_ms(
                || {
                    let mut new_buf: Vec<$t>;
                    let c: &mut Vec<$t> = if fresh {
                        new_buf = uninit_like_einc(batch * m * n);
                        &mut new_buf
                    } else {
                        &mut kept
                    };
                    for t in 0..batch {
                        // SAFETY: `batch` row-major m×k, k×n and m×n matrices, back to back
                        // in buffers of exactly those sizes.
                        unsafe {
                            gemm::gemm(
                                m,
                                n,
                                k,
                                c.as_mut_ptr().add(t * m * n),
                                1,
                                n as isize,
                                false,
                                a.as_ptr().add(t * m * k),
                                1,
                                k as isize,
                                b.as_ptr().add(t * k * n),
                                1,
                                n as isize,
                                0.0,
                                1.0,
                                false,
                                false,
                                false,
                                par,
                            )
                        }
                    }
                    std::hint::black_box(&c);
                },
                5,
                Duration::from_millis(500),
            )
        }};
    }
    match dt {
        DType::F64 => go!(f64),
        _ => go!(f32),
    }
}

/// The cached `einc::einsum` call on a 2×2 f64 matmul, against a compiled `Expression` and
/// the kernel alone.
fn cached_call() {
    let a = ndarray::Array2::<f64>::ones((2, 2)).into_dyn();
    let b = ndarray::Array2::<f64>::ones((2, 2)).into_dyn();
    let us = time_ms(
        || {
            let _ = einc::einsum("ij,jk->ik", &[a.view(), b.view()]);
        },
        2000,
        Duration::from_millis(300),
    ) * 1e3;
    // The same work without the cache lookup, and the kernel alone: what the cache and
    // the executor add on top of the 2×2 GEMM.
    let expr =
        einc::compile("ij,jk->ik", &[vec![2, 2], vec![2, 2]], &[DType::F64; 2]).expect("compiles");
    let us_expr = time_ms(
        || {
            let _ = expr.run(&[a.view(), b.view()]);
        },
        2000,
        Duration::from_millis(300),
    ) * 1e3;
    let us_kernel = time_ms(
        || {
            let _ =
                einc_runtime::kernels::contract_pair(a.view(), &[0, 1], b.view(), &[1, 2], &[0, 2]);
        },
        2000,
        Duration::from_millis(300),
    ) * 1e3;
    println!(
        "{}",
        json!({"kind": "cached_call_2x2", "us_per_call": us, "us_compiled_expression": us_expr, "us_kernel_only": us_kernel, "us_overhead_beyond_kernel": us - us_kernel})
    );
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // EINC_BENCH_THREADS=1,2 (the default): the thread counts to time each case at.
    let thread_counts: Vec<usize> = std::env::var("EINC_BENCH_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 2]);
    // EINC_BENCH_SUITE=FILE runs another suite of the same shape (cases with "name", "eq"
    // and "shapes" or "sizes"), e.g. ../shared/paths/suite.json for the peak memory of its
    // MPS and lattice networks; dtype f32 unless a case says otherwise.
    let default = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/workloads/cpu_suite.json"
    );
    let path = std::env::var("EINC_BENCH_SUITE").unwrap_or_else(|_| default.to_string());
    let path = path.as_str();
    let suite: Value = match std::fs::read_to_string(path).map(|t| serde_json::from_str(&t)) {
        Ok(Ok(v)) => v,
        _ => {
            eprintln!("SKIP: {path} not found");
            return;
        }
    };
    // Which GEMM the large products go to: the system OpenBLAS (opened at run time) or the
    // gemm crate.
    let backend =
        einc_runtime::kernels::blas::blas().map_or("gemm crate".to_string(), |b| b.name.clone());
    println!("{}", json!({"kind": "einc_env", "gemm_backend": backend}));
    // Cached-call overhead: a 2×2 matmul through einc::einsum, plan cache hot.
    // EINC_BENCH_CACHED=0 leaves out the cached-call measurement (benches/cpu.sh runs it
    // once, not with every case).
    if std::env::var("EINC_BENCH_CACHED").as_deref() != Ok("0") {
        cached_call();
    }

    // The suite is a list of cases (or an object with "cases").
    let cases = suite
        .as_array()
        .or_else(|| suite["cases"].as_array())
        .cloned()
        .unwrap_or_default();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?").to_string();
        // FILTER: cases whose name contains it; `=NAME`: that case only.
        if filter.as_ref().is_some_and(|f| match f.strip_prefix('=') {
            Some(exact) => name != exact,
            None => !name.contains(f.as_str()),
        }) {
            continue;
        }
        let eq = case["eq"].as_str().unwrap_or("");
        let shapes = shapes(&case);
        let dt = dtype(&case);
        let inputs: Vec<TensorData> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| make(s, dt, k))
            .collect();
        let views: Vec<TensorView<'_>> = inputs.iter().map(|t| t.view()).collect();
        let expr = match einc::compile(eq, &shapes, &vec![dt; shapes.len()]) {
            Ok(e) => e,
            Err(e) => {
                println!(
                    "{}",
                    json!({"kind": "case", "name": name, "error": e.to_string()})
                );
                continue;
            }
        };
        let flops = expr.compiled().plan.flops();
        // Peak memory of one run against the plan's bound: its largest intermediate plus
        // the inputs and the output.
        let one = expr.clone().with_options(ExecOptions {
            threads: Some(1),
            collect_stats: true,
            ..ExecOptions::default()
        });
        let _ = one.run_with_stats(&views); // warm: thread pool, BLAS, caches
        let mut result = None;
        let heap = heap_peak(|| result = Some(one.run_with_stats(&views)));
        let (out, stats) = match result.expect("ran") {
            Ok(r) => r,
            Err(e) => {
                println!(
                    "{}",
                    json!({"kind": "case", "name": name, "error": e.to_string()})
                );
                continue;
            }
        };
        // EINC_BENCH_STEPS=N: each step's time in a warm run on N threads, on stderr.
        if let Some(n) = std::env::var("EINC_BENCH_STEPS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            let plan = &expr.compiled().plan;
            let on_n = expr.clone().with_options(ExecOptions {
                threads: Some(n),
                collect_stats: true,
                ..ExecOptions::default()
            });
            let _ = on_n.run_with_stats(&views);
            let Ok((_, stats)) = on_n.run_with_stats(&views) else {
                continue;
            };
            for (k, t, flops, bytes) in &stats.steps {
                let s = &plan.steps[*k];
                eprintln!(
                    "{name} %{k} {:?} -> {:?}: {:.3} ms, {flops:.3e} flops, {bytes} bytes",
                    s.op.args(),
                    s.indices,
                    t.as_secs_f64() * 1e3
                );
            }
        }
        let elem = einc_runtime::value::dtype_size(dt) as f64;
        let bound = expr.compiled().plan.largest_intermediate() * elem
            + stats.input_bytes as f64
            + out.nbytes() as f64;
        // What any executor needs that keeps a step's operands while it writes the result:
        // the largest working set of one step (its result and the arguments it reads that
        // were computed, not loaded) plus the inputs and the output. A chain step of MPS or
        // a lattice's boundary holds two intermediates of about the largest size at once.
        let plan = &expr.compiled().plan;
        let len = |v: einc_compiler::plan::ValueId| {
            let st = &plan.steps[v.0 as usize];
            let computed = !matches!(
                st.op,
                einc_compiler::plan::Op::Load { .. } | einc_compiler::plan::Op::Store { .. }
            );
            let n: f64 = st
                .indices
                .iter()
                .map(|&i| plan.program.size(i) as f64)
                .product();
            if computed {
                n
            } else {
                0.0
            }
        };
        let step_set = plan
            .steps
            .iter()
            .map(|st| len(st.out) + st.op.arg_iter().map(len).sum::<f64>())
            .fold(0.0, f64::max);
        let step_bound = step_set * elem + stats.input_bytes as f64 + out.nbytes() as f64;
        // Peak counts intermediates and outputs; inputs are borrowed, so add them back.
        let peak = (stats.peak_bytes + stats.input_bytes) as f64;
        let heap_total = (heap + stats.input_bytes) as f64;
        // A chunked expression runs its chunks, not the plan, when no stats are asked for:
        // the heap peak of that run too (one thread).
        let chunked_heap = expr.chunking().map(|_| {
            let plain = expr.clone().with_options(ExecOptions {
                threads: Some(1),
                ..ExecOptions::default()
            });
            let _ = plain.run_views(&views);
            (heap_peak(|| {
                let _ = plain.run_views(&views);
            }) + stats.input_bytes) as f64
        });
        println!(
            "{}",
            json!({"kind": "memory", "name": name, "peak_bytes": peak, "heap_peak_bytes": heap_total, "bound_bytes": bound, "step_bound_bytes": step_bound, "chunked_heap_peak_bytes": chunked_heap})
        );
        for &threads in &thread_counts {
            let ex = expr.clone().with_options(ExecOptions {
                threads: Some(threads),
                ..ExecOptions::default()
            });
            let ms = time_ms(
                || {
                    let _ = ex.run_views_cow(&views);
                },
                5,
                Duration::from_millis(1000),
            );
            let mut row = json!({"kind": "case", "name": name, "threads": threads, "einc_ms": ms, "flops": flops, "chunks": expr.chunking()});
            let gemm_shape = match name.as_str() {
                "matmul_1024_f32" | "matmul_1024_f64" | "matmul_tall_skinny" => {
                    Some((shapes[0][0], shapes[0][1], shapes[1][1], 1))
                }
                "batched_matmul" => Some((shapes[0][1], shapes[0][2], shapes[1][2], shapes[0][0])),
                "tensordot_3" => Some((shapes[0][0], shapes[0][1] * shapes[0][2], shapes[1][2], 1)),
                _ => None,
            };
            if let Some((m, k, n, batch)) = gemm_shape {
                let g = gemm_baseline(m, k, n, batch, threads, dt, false);
                row["gemm_crate_ms"] = json!(g);
                let g = gemm_baseline(m, k, n, batch, threads, dt, true);
                row["gemm_crate_fresh_ms"] = json!(g);
            }
            println!("{row}");
        }
    }
}
