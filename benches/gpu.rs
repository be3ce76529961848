//! GPU execution benchmark: the workloads of `gpu_suite.json` through the wgpu executor
//! (f32), one JSON object per line: plan flops, median kernel time (inputs resident on the
//! device, every kernel of the plan recorded back to back in one submission, median of
//! several submissions after warm-up), and the largest relative error of sampled output
//! entries against an f64 loop over the summed indices on the CPU.
//!
//! `cargo bench --bench gpu -- SUITE.json [FILTER]`; `EINC_GPU_TILE=128x128x8` overrides
//! the GEMM tile (for tuning). `scripts/gpu_bench.sh` runs it beside torch.einsum.

use einc::{DType, TensorData};
use einc_runtime::gpu::{gpu, GpuExecutable};
use ndarray::{ArrayD, IxDyn};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
        })
        .collect()
}

/// Output entry at `pos` (row-major position) by a loop over the summed indices, in f64.
fn sample(eq: &str, sizes: &BTreeMap<char, usize>, ins: &[ArrayD<f32>], pos: usize) -> f64 {
    let (lhs, out) = eq.split_once("->").expect("explicit output");
    let ops: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let out: Vec<char> = out.chars().collect();
    let mut summed: Vec<char> = ops.iter().flatten().copied().collect();
    summed.sort_unstable();
    summed.dedup();
    summed.retain(|c| !out.contains(c));
    // Label values in a flat table indexed by the label's byte.
    let mut val = [0usize; 128];
    let mut rem = pos;
    for &c in out.iter().rev() {
        val[c as usize] = rem % sizes[&c];
        rem /= sizes[&c];
    }
    let total: usize = summed.iter().map(|c| sizes[c]).product();
    let flat: Vec<&[f32]> = ins
        .iter()
        .map(|a| a.as_slice().expect("standard layout"))
        .collect();
    let terms: Vec<Vec<(usize, usize)>> = ops
        .iter()
        .map(|t| {
            let mut st = vec![(0, 0); t.len()];
            let mut acc = 1;
            for k in (0..t.len()).rev() {
                st[k] = (t[k] as usize, acc);
                acc *= sizes[&t[k]];
            }
            st
        })
        .collect();
    let ssz: Vec<(usize, usize)> = summed.iter().map(|&c| (c as usize, sizes[&c])).collect();
    let mut acc = 0.0f64;
    for r in 0..total {
        let mut rem = r;
        for &(c, n) in ssz.iter().rev() {
            val[c] = rem % n;
            rem /= n;
        }
        let mut prod = 1.0f64;
        for (j, t) in terms.iter().enumerate() {
            let off: usize = t.iter().map(|&(c, s)| val[c] * s).sum();
            prod *= flat[j][off] as f64;
        }
        acc += prod;
    }
    acc
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let suite_path = args
        .first()
        .cloned()
        .unwrap_or_else(|| "../shared/workloads/gpu_suite.json".into());
    let filter = args.get(1).cloned().unwrap_or_default();
    let text = std::fs::read_to_string(&suite_path)
        .unwrap_or_else(|e| panic!("cannot read {suite_path}: {e}"));
    let suite: Vec<Value> = serde_json::from_str(&text).expect("suite is JSON");
    let g = match gpu() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("adapter: {}", g.describe());
    println!(
        "{}",
        json!({"adapter": g.describe(), "tile": std::env::var("EINC_GPU_TILE").ok()})
    );
    for case in &suite {
        let name = case["name"].as_str().unwrap_or("?");
        if !name.contains(&filter) {
            continue;
        }
        let eq = case["eq"].as_str().expect("eq");
        let sizes: BTreeMap<char, usize> = case["sizes"]
            .as_object()
            .expect("sizes")
            .iter()
            .map(|(k, v)| {
                (
                    k.chars().next().expect("label"),
                    v.as_u64().expect("size") as usize,
                )
            })
            .collect();
        let (lhs, _) = eq.split_once("->").expect("explicit output");
        let shapes: Vec<Vec<usize>> = lhs
            .split(',')
            .map(|t| t.chars().map(|c| sizes[&c]).collect())
            .collect();
        let t0 = std::time::Instant::now();
        let expr = einc::compile(eq, &shapes, &vec![DType::F32; shapes.len()])
            .unwrap_or_else(|e| panic!("{name}: {}", e.render()));
        let plan = &expr.compiled().plan;
        let exe = match GpuExecutable::new(g.clone(), plan) {
            Ok(x) => x,
            Err(e) => {
                println!("{}", json!({"name": name, "error": e.0}));
                continue;
            }
        };
        let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
        let ins: Vec<ArrayD<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let n: usize = s.iter().product();
                ArrayD::from_shape_vec(IxDyn(s), values(n, k as u64 + 1)).expect("shape")
            })
            .collect();
        let data: Vec<TensorData> = ins.iter().map(|a| TensorData::F32(a.clone())).collect();
        let views: Vec<_> = data.iter().map(|t| t.view()).collect();
        let out = exe.run(&views).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = match &out[0] {
            TensorData::F32(a) => a.clone(),
            _ => panic!("f32 result expected"),
        };
        // Enough back-to-back repetitions per submission for ≥ 20 ms, after ≥ 0.3 s of
        // warm-up (an idle H200 drops to a low clock and takes a while to come back).
        let once = exe.run_kernels_n(1).expect("run").as_secs_f64();
        let reps = ((0.02 / once.max(1e-6)).ceil() as usize).clamp(1, 200);
        let warm = std::time::Instant::now();
        while warm.elapsed().as_secs_f64() < 0.3 {
            exe.run_kernels_n(reps).expect("run");
        }
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = exe.run_kernels_n(reps).expect("run").as_secs_f64();
            times.push(t * 1e3 / reps as f64);
        }
        let ms = median(times);
        let n_out = got.len();
        let mut worst = 0.0f64;
        let mut scale = 0.0f64;
        let samples = 48;
        let mut refs = Vec::new();
        for s in 0..samples {
            let pos = (s * 7919 + 13) * 104729 % n_out.max(1);
            let want = sample(eq, &sizes, &ins, pos);
            let have = got.as_slice().expect("standard")[pos] as f64;
            scale = scale.max(want.abs());
            refs.push((want, have));
        }
        for (w, h) in refs {
            worst = worst.max((w - h).abs() / scale.max(1e-30));
        }
        let flops = plan.steps.iter().map(|s| s.flops).sum::<f64>();
        let kinds: Vec<String> = exe
            .program
            .kernels
            .iter()
            .map(|k| format!("{}:{}", k.name, k.kind.name()))
            .collect();
        println!(
            "{}",
            json!({
                "name": name, "eq": eq, "ms": ms, "flops": flops,
                "tflops": flops / ms / 1e9, "compile_ms": compile_ms,
                "max_rel_err": worst, "samples": samples, "kernels": kinds,
            })
        );
        eprintln!(
            "{name}: {ms:.3} ms, {:.2} TFLOP/s, sample err {worst:.1e}",
            flops / ms / 1e9
        );
    }
}
