//! The GPU target: every plan lowered to WGSL, validated by naga (always) and executed
//! through wgpu against the CPU executor and the reference (where an adapter exists: on
//! CPU-only machines, Mesa's lavapipe; without one the execution tests print a SKIP line).

mod common;

use common::{random_net, Rng};
use einc::{CompileConfig, DType, TensorData};
use einc_compiler::wgsl::{emit_wgsl, GpuCaps, KernelKind};
use einc_runtime::gpu::{gpu, GpuExecutable};
use ndarray::{ArrayD, IxDyn};
use num_complex::Complex64;
use std::collections::BTreeMap;
use std::path::Path;

/// The GPU, or `None` after printing why the execution test is skipped.
fn device(test: &str) -> Option<std::sync::Arc<einc_runtime::gpu::Gpu>> {
    match gpu() {
        Ok(g) => {
            println!("{test}: running on {}", g.describe());
            Some(g)
        }
        Err(e) => {
            println!("SKIP {test}: no GPU adapter: {e}");
            eprintln!("SKIP {test}: no GPU adapter: {e}");
            None
        }
    }
}

fn filled(dtype: DType, shape: &[usize], seed: usize) -> TensorData {
    let n: usize = shape.iter().product();
    let v = |t: usize, j: usize| (((t * 7 + seed * 13 + j * 5) % 17) as f64 - 8.0) / 8.0;
    let re =
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|t| v(t, 0)).collect()).expect("shape");
    match dtype {
        DType::F64 => TensorData::F64(re),
        DType::F32 => TensorData::F64(re).cast(DType::F32),
        DType::C64 | DType::C128 => TensorData::C128(
            ArrayD::from_shape_vec(
                IxDyn(shape),
                (0..n).map(|t| Complex64::new(v(t, 0), v(t, 1))).collect(),
            )
            .expect("shape"),
        )
        .cast(dtype),
    }
}

/// One filled array per shape (operand `k` seeded with `k + seed`).
fn operands(dtype: DType, shapes: &[Vec<usize>], seed: usize) -> Vec<TensorData> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, s)| filled(dtype, s, k + seed))
        .collect()
}

/// Max |got - want| over max(1, max |want|), finite values only.
fn rel_err(got: &TensorData, want: &TensorData) -> f64 {
    let (g, w) = (got.as_c128(), want.as_c128());
    assert_eq!(g.shape(), w.shape());
    let scale = w
        .iter()
        .filter(|z| z.norm().is_finite())
        .fold(1.0f64, |m, z| m.max(z.norm()));
    g.iter()
        .zip(w.iter())
        .map(|(a, b)| {
            if a == b || (a.re.is_nan() && b.re.is_nan()) {
                0.0
            } else {
                (a - b).norm() / scale
            }
        })
        .fold(0.0, f64::max)
}

fn tol(d: DType) -> f64 {
    match d {
        DType::F32 | DType::C64 => 2e-5,
        _ => 1e-10,
    }
}

/// Compiles `eq` for `dtype`, runs it on CPU and GPU, compares.
fn check_einsum(
    g: &std::sync::Arc<einc_runtime::gpu::Gpu>,
    eq: &str,
    shapes: &[Vec<usize>],
    dtype: DType,
) {
    let dtypes = vec![dtype; shapes.len()];
    let expr =
        einc::compile(eq, shapes, &dtypes).unwrap_or_else(|e| panic!("{eq}: {}", e.render()));
    let inputs: Vec<TensorData> = operands(dtype, shapes, 0);
    let want = expr.run_dyn(inputs.clone()).expect("cpu run");
    let exe = GpuExecutable::new(g.clone(), &expr.compiled().plan)
        .unwrap_or_else(|e| panic!("{eq} {shapes:?} {dtype:?}: {e}"));
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let got = exe.run(&views).unwrap_or_else(|e| panic!("{eq}: {e}"));
    let err = rel_err(&got[0], &want);
    assert!(
        err <= tol(dtype),
        "{eq} {shapes:?} {dtype:?}: GPU differs from CPU by {err:e}"
    );
}

#[test]
fn gemm_kernels_on_odd_sizes_and_permuted_layouts() {
    let Some(g) = device("gemm_kernels_on_odd_sizes_and_permuted_layouts") else {
        return;
    };
    let cases: &[(&str, &[&[usize]])] = &[
        ("ik,kj->ij", &[&[67, 45], &[45, 70]]),
        ("ki,kj->ij", &[&[40, 129], &[40, 33]]),
        ("ik,jk->ij", &[&[130, 64], &[131, 64]]),
        ("ki,jk->ji", &[&[17, 64], &[64, 17]]),
        ("bij,bjk->bik", &[&[3, 40, 36], &[3, 36, 41]]),
        ("jib,kjb->bki", &[&[36, 40, 2], &[41, 36, 2]]),
        ("ijk,jkl->il", &[&[33, 5, 7], &[5, 7, 34]]),
        ("abc,bcd->dca", &[&[34, 3, 11], &[3, 11, 35]]),
        ("ik,kj->ij", &[&[256, 64], &[64, 256]]),
        ("aib,bkj->aijk", &[&[3, 40, 16], &[16, 5, 40]]),
        // Few tiles and a long K: split into K ranges and summed.
        ("ik,kj->ij", &[&[40, 2050], &[2050, 70]]),
        ("bik,bkj->bij", &[&[2, 33, 1500], &[2, 1500, 35]]),
    ];
    let mut gemms = 0;
    let mut split = 0;
    for (eq, shapes) in cases {
        let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
        for dtype in [DType::F32, DType::F64] {
            if dtype == DType::F64 && !g.caps().f64 {
                continue;
            }
            let expr = einc::compile(eq, &shapes, &vec![dtype; shapes.len()]).expect("compile");
            let prog = emit_wgsl(&expr.compiled().plan, g.caps()).expect("emit");
            gemms += prog
                .kernels
                .iter()
                .filter(|k| k.kind == KernelKind::Gemm)
                .count();
            split += prog
                .kernels
                .iter()
                .filter(|k| k.name.ends_with("splitsum"))
                .count();
            check_einsum(&g, eq, &shapes, dtype);
        }
    }
    assert!(gemms >= 10, "only {gemms} steps used the tiled kernel");
    assert!(split >= 2, "only {split} steps split K");
}

#[test]
fn random_networks_match_the_cpu() {
    let Some(g) = device("random_networks_match_the_cpu") else {
        return;
    };
    let mut rng = Rng(0x6e1c);
    let mut ran = 0;
    for case in 0..60 {
        let n = 1 + rng.below(4) as usize;
        let net = random_net(&mut rng, n, 5);
        let dtype = [DType::F32, DType::C64, DType::F64, DType::C128][case % 4];
        if matches!(dtype, DType::F64 | DType::C128) && !g.caps().f64 {
            continue;
        }
        check_einsum(&g, &net.eq, &net.shapes(), dtype);
        ran += 1;
    }
    assert!(ran >= 30);
}

#[test]
fn reductions_and_diagonals() {
    let Some(g) = device("reductions_and_diagonals") else {
        return;
    };
    for (eq, shapes) in [
        ("ij->", vec![vec![300, 500]]),
        ("ii->i", vec![vec![40, 40]]),
        ("iij->j", vec![vec![30, 30, 5]]),
        ("ijk->kji", vec![vec![7, 8, 9]]),
        ("i,i->", vec![vec![5000], vec![5000]]),
        ("ij,ij->ij", vec![vec![33, 65], vec![33, 65]]),
        ("i,j->ij", vec![vec![33], vec![65]]),
        ("ij,j->i", vec![vec![10, 4000], vec![4000]]),
        ("i->", vec![vec![0]]),
        ("i,j->ij", vec![vec![0], vec![3]]),
    ] {
        check_einsum(&g, eq, &shapes, DType::F32);
    }
}

#[test]
fn semirings_match_the_cpu() {
    // Single-term and short log-sum-exp folds in f64 (the software exp/log paths).
    if let Some(g) = device("semiring_probe") {
        if g.caps().f64 {
            let mut cfg = CompileConfig::default();
            cfg.plan.semiring = einc_compiler::plan::Semiring::LogSumExp;
            for (eq, vals) in [
                ("i->", vec![0.0]),
                ("i->", vec![0.0, 0.0]),
                ("i->", vec![1.0, 2.0]),
                ("i->", vec![-3.0, 0.5, 0.25]),
                ("i,i->", vec![1.0, -1.0]),
            ] {
                let shapes: Vec<Vec<usize>> = eq
                    .split("->")
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|_| vec![vals.len()])
                    .collect();
                let expr =
                    einc::compile_with_config(eq, &shapes, &vec![DType::F64; shapes.len()], &cfg)
                        .expect("compile");
                let ins: Vec<TensorData> = shapes
                    .iter()
                    .map(|_| {
                        TensorData::F64(
                            ArrayD::from_shape_vec(IxDyn(&[vals.len()]), vals.clone())
                                .expect("shape"),
                        )
                    })
                    .collect();
                let want = expr.run_dyn(ins.clone()).expect("cpu");
                let exe = GpuExecutable::new(g.clone(), &expr.compiled().plan).expect("gpu");
                let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
                let got = exe.run(&views).expect("run");
                assert!(rel_err(&got[0], &want) <= 1e-12, "{eq} {vals:?}");
            }
        }
    }
    let Some(g) = device("semirings_match_the_cpu") else {
        return;
    };
    let mut rng = Rng(0x5e41);
    for case in 0..24 {
        let net = random_net(&mut rng, 2 + case % 3, 5);
        let semiring = einc_compiler::plan::Semiring::ALL[1 + case % 3];
        let mut cfg = CompileConfig::default();
        cfg.plan.semiring = semiring;
        let shapes = net.shapes();
        let expr =
            einc::compile_with_config(&net.eq, &shapes, &vec![DType::F64; shapes.len()], &cfg)
                .expect("compile");
        let inputs: Vec<TensorData> = operands(DType::F64, &shapes, 0);
        let want = expr.run_dyn(inputs.clone()).expect("cpu");
        if !g.caps().f64 {
            continue;
        }
        let exe = GpuExecutable::new(g.clone(), &expr.compiled().plan).expect("gpu compile");
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        let got = exe.run(&views).expect("gpu run");
        let err = rel_err(&got[0], &want);
        assert!(
            err <= 1e-9,
            "{} {}: {err:e}\ngot  {:?}\nwant {:?}",
            net.eq,
            semiring.name(),
            got[0]
                .as_c128()
                .iter()
                .take(8)
                .map(|z| z.re)
                .collect::<Vec<_>>(),
            want.as_c128()
                .iter()
                .take(8)
                .map(|z| z.re)
                .collect::<Vec<_>>()
        );
    }
}

fn ok_programs() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ok");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("list ok programs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ein"))
        .collect();
    v.sort();
    v
}

fn compile_ok(path: &Path) -> einc_compiler::Compiled {
    let source = std::fs::read_to_string(path).expect("read");
    let program = einc::Program::parse("p.ein", &source).expect("parse");
    program
        .compile(&BTreeMap::new(), &CompileConfig::default())
        .expect("compile")
}

/// Every shader of every corpus program validates, with or without an adapter.
#[test]
fn every_ok_program_emits_valid_wgsl() {
    let mut kernels = 0;
    for path in ok_programs() {
        let compiled = compile_ok(&path);
        let prog = emit_wgsl(&compiled.plan, &GpuCaps::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for k in &prog.kernels {
            einc_compiler::wgsl::validate(&k.source).expect("validated");
            kernels += 1;
        }
    }
    assert!(kernels >= 30, "{kernels}");
}

#[test]
fn ok_programs_run_on_the_gpu() {
    let Some(g) = device("ok_programs_run_on_the_gpu") else {
        return;
    };
    for path in ok_programs() {
        let compiled = compile_ok(&path);
        let p = &compiled.plan.program;
        let inputs: Vec<TensorData> = p
            .inputs()
            .enumerate()
            .map(|(k, (_, t))| {
                let shape: Vec<usize> = t.axes.iter().map(|&a| p.size(a) as usize).collect();
                filled(t.dtype, &shape, k)
            })
            .collect();
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        let (want, _) =
            einc_runtime::execute_views(&compiled.plan, &views, &Default::default()).expect("cpu");
        let needs_f64 = compiled
            .plan
            .steps
            .iter()
            .any(|s| matches!(s.dtype, DType::F64 | DType::C128));
        if needs_f64 && !g.caps().f64 {
            println!(
                "{}: needs SHADER_F64, skipped on this adapter",
                path.display()
            );
            continue;
        }
        let exe = GpuExecutable::new(g.clone(), &compiled.plan)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got = exe
            .run(&views)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            let err = rel_err(a, b);
            let t = if matches!(b.dtype(), DType::F32 | DType::C64) {
                1e-4
            } else {
                1e-9
            };
            assert!(
                err <= t,
                "{} output {k}: GPU differs by {err:e}",
                path.display()
            );
        }
    }
}

fn einc_cmd() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_einc"))
}

/// `--emit wgsl` for every corpus program, snapshotted (manifest and shaders).
#[test]
fn emit_wgsl_snapshots() {
    for path in ok_programs() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rel = format!("tests/data/ok/{name}.ein");
        let out = einc_cmd()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["compile", &rel, "--emit", "wgsl"])
            .output()
            .expect("run einc");
        assert!(
            out.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        insta::assert_snapshot!(format!("{name}.wgsl"), String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn emit_wgsl_writes_a_directory_with_a_manifest() {
    let dir = std::env::temp_dir().join(format!("einc-wgsl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = einc_cmd()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "compile",
            "tests/data/ok/attention.ein",
            "--emit",
            "wgsl",
            "-o",
        ])
        .arg(&dir)
        .output()
        .expect("run einc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest written"),
    )
    .expect("manifest is JSON");
    let kernels = manifest["kernels"].as_array().expect("kernels");
    assert!(!kernels.is_empty());
    let n_buffers = manifest["buffers"].as_array().expect("buffers").len();
    for k in kernels {
        let file = dir.join(k["file"].as_str().expect("file"));
        let src = std::fs::read_to_string(&file).expect("kernel file written");
        einc_compiler::wgsl::validate(&src).expect("kernel validates");
        for b in k["bindings"].as_array().expect("bindings") {
            assert!((b["buffer"].as_u64().expect("buffer") as usize) < n_buffers);
        }
        assert_eq!(k["dispatch"].as_array().map(|d| d.len()), Some(3));
    }
    assert!(!manifest["outputs"].as_array().expect("outputs").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_runs_on_the_gpu() {
    if device("cli_runs_on_the_gpu").is_none() {
        return;
    }
    use ndarray_npy::{ReadNpyExt, WriteNpyExt};
    let dir = std::env::temp_dir().join(format!("einc-gpu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let a = ArrayD::from_shape_fn(IxDyn(&[40, 50]), |i| (i[0] * 3 + i[1]) as f32 % 7.0 - 3.0);
    let b = ArrayD::from_shape_fn(IxDyn(&[50, 60]), |i| (i[0] + 2 * i[1]) as f32 % 5.0 - 2.0);
    a.write_npy(std::fs::File::create(dir.join("a.npy")).expect("a"))
        .expect("write");
    b.write_npy(std::fs::File::create(dir.join("b.npy")).expect("b"))
        .expect("write");
    let out = einc_cmd()
        .args(["run", "-e", "ij,jk->ik", "--target", "gpu"])
        .arg(dir.join("a.npy"))
        .arg(dir.join("b.npy"))
        .arg("-o")
        .arg(dir.join("c.npy"))
        .output()
        .expect("run einc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c =
        ArrayD::<f32>::read_npy(std::fs::File::open(dir.join("c.npy")).expect("c")).expect("read");
    let a2 = a.into_dimensionality::<ndarray::Ix2>().expect("2d");
    let b2 = b.into_dimensionality::<ndarray::Ix2>().expect("2d");
    let want = a2.dot(&b2).into_dyn();
    assert_eq!(c, want);
    // A bad adapter name is a clear error, not a panic.
    let out = einc_cmd()
        .env("EINC_ADAPTER", "no-such-adapter-xyz")
        .args(["run", "-e", "ij,jk->ik", "--target", "gpu"])
        .arg(dir.join("a.npy"))
        .arg(dir.join("b.npy"))
        .output()
        .expect("run einc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("EINC_ADAPTER"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tiled GEMM kernel (plain, permuted/batched with guards, split K) is snapshotted
/// too: the corpus programs are too small to use it.
#[test]
fn gemm_kernel_snapshots() {
    for (name, eq, shapes) in [
        (
            "gemm_plain",
            "ik,kj->ij",
            vec![vec![256, 64], vec![64, 256]],
        ),
        (
            "gemm_batched_permuted",
            "jib,kjb->bki",
            vec![vec![36, 40, 2], vec![41, 36, 2]],
        ),
        (
            "gemm_split_k",
            "ik,kj->ij",
            vec![vec![40, 2050], vec![2050, 70]],
        ),
    ] {
        let expr = einc::compile(eq, &shapes, &vec![DType::F32; shapes.len()]).expect("compile");
        let prog = emit_wgsl(&expr.compiled().plan, &GpuCaps::default()).expect("emit");
        let mut text = String::new();
        for k in &prog.kernels {
            text.push_str(&format!(
                "// ---- {} ({}) workgroup {:?} dispatch {:?}: {}\n{}",
                k.name,
                k.kind.name(),
                k.workgroup_size,
                k.dispatch,
                k.dispatch_formula,
                k.source
            ));
        }
        assert!(
            prog.kernels.iter().any(|k| k.kind == KernelKind::Gemm),
            "{name}"
        );
        insta::assert_snapshot!(name, text);
    }
}

/// Products sliced under a memory limit run on the GPU as unrolled slices, in every
/// semiring.
#[test]
fn sliced_plans_run_on_the_gpu() {
    let Some(g) = device("sliced_plans_run_on_the_gpu") else {
        return;
    };
    let mut rng = Rng(0x511ce);
    let mut sliced = 0;
    for case in 0..40 {
        let net = random_net(&mut rng, 6 + case % 4, 7);
        let shapes = net.shapes();
        let free =
            einc::compile(&net.eq, &shapes, &vec![DType::F64; shapes.len()]).expect("compile");
        let mut cfg = CompileConfig::default();
        cfg.plan.limits.memory_limit = Some(
            (free.compiled().plan.largest_intermediate() / 4.0)
                .floor()
                .max(1.0),
        );
        cfg.plan.limits.allow_slicing = true;
        cfg.plan.semiring = einc_compiler::plan::Semiring::ALL[case % 4];
        let dtype = if case % 4 == 0 {
            DType::F32
        } else {
            DType::F64
        };
        if dtype == DType::F64 && !g.caps().f64 {
            continue;
        }
        let Ok(expr) =
            einc::compile_with_config(&net.eq, &shapes, &vec![dtype; shapes.len()], &cfg)
        else {
            continue; // no sliced plan meets a limit this small
        };
        let plan = &expr.compiled().plan;
        if !plan
            .steps
            .iter()
            .any(|s| matches!(s.op, einc_compiler::plan::Op::SliceSum { .. }))
        {
            continue;
        }
        sliced += 1;
        let inputs: Vec<TensorData> = operands(dtype, &shapes, 0);
        let want = expr.run_dyn(inputs.clone()).expect("cpu");
        let exe = GpuExecutable::new(g.clone(), plan).expect("gpu compile");
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        let got = exe.run(&views).expect("gpu run");
        let err = rel_err(&got[0], &want);
        assert!(err <= tol(dtype), "{} (case {case}): {err:e}", net.eq);
    }
    assert!(sliced >= 8, "only {sliced} sliced plans");
}

/// An intermediate larger than the adapter's largest storage binding is not an error:
/// the executor re-plans the product in slices (tested with an artificially low limit).
#[test]
fn intermediates_over_the_binding_limit_are_sliced() {
    let Some(g) = device("intermediates_over_the_binding_limit_are_sliced") else {
        return;
    };
    let mut replanned = 0;
    // Rank-3 tensors, each index on two of them: any pairwise contraction has rank 4,
    // larger than every input and output.
    for (eq, n) in [
        ("abc,ade,bdf,cef->", 8),
        ("abc,ade,bdf,cef->a", 7),
        ("abc,ade,bdf,cef->af", 6),
        ("abcd,aefg,behi,cfhj,dgij->", 4),
    ] {
        let (lhs, _) = eq.split_once("->").expect("explicit");
        let shapes: Vec<Vec<usize>> = lhs.split(',').map(|t| vec![n; t.len()]).collect();
        let expr = einc::compile(eq, &shapes, &vec![DType::F32; shapes.len()]).expect("compile");
        let plan = &expr.compiled().plan;
        let p = &plan.program;
        // Every input and output fits; the largest intermediate does not.
        let limit = p
            .tensors
            .iter()
            .map(|(_, t)| 4 * t.axes.iter().map(|&a| p.size(a)).product::<u64>())
            .max()
            .unwrap_or(4);
        assert!(4.0 * plan.largest_intermediate() > limit as f64, "{eq}");
        let exe = GpuExecutable::with_binding_limit(g.clone(), plan, Some(limit))
            .expect("fits after slicing");
        if exe
            .plan()
            .steps
            .iter()
            .any(|s| matches!(s.op, einc_compiler::plan::Op::SliceSum { .. }))
        {
            replanned += 1;
        }
        for b in &exe.program.buffers {
            assert!(b.bytes() <= limit, "{eq}: a {}-byte buffer", b.bytes());
        }
        let inputs: Vec<TensorData> = operands(DType::F32, &shapes, 0);
        let want = expr.run_dyn(inputs.clone()).expect("cpu");
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        let got = exe.run(&views).expect("gpu run");
        assert!(rel_err(&got[0], &want) <= tol(DType::F32), "{eq}");
    }
    assert_eq!(replanned, 4);
}

/// `einc::Expression` with the GPU target: compiled once, run many times on new arrays.
#[test]
fn expression_runs_repeatedly_on_the_gpu() {
    if device("expression_runs_repeatedly_on_the_gpu").is_none() {
        return;
    }
    let shapes = vec![vec![3, 40, 36], vec![3, 36, 41]];
    let expr = einc::compile("bij,bjk->bik", &shapes, &[DType::F32, DType::F32])
        .expect("compile")
        .with_options(einc::ExecOptions {
            target: einc::Target::Gpu,
            ..Default::default()
        });
    let cpu = einc::compile("bij,bjk->bik", &shapes, &[DType::F32, DType::F32]).expect("compile");
    for seed in 0..3 {
        let inputs: Vec<TensorData> = operands(DType::F32, &shapes, 3 * seed);
        let got = expr.run_dyn(inputs.clone()).expect("gpu run");
        let want = cpu.run_dyn(inputs).expect("cpu run");
        assert!(rel_err(&got, &want) <= tol(DType::F32));
    }
}
