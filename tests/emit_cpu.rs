//! `einc compile --emit cpu`: the emitted Rust source of every real-valued `tests/data/ok`
//! program compiles with `rustc` and computes what the IR oracle computes.

use einc::{CompileConfig, DType, TensorData};
use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use einc_compiler::emit_cpu::ident;

/// The same deterministic inputs for the emitted program and the oracle.
fn value(t: usize, seed: usize) -> f64 {
    (((t * 7 + seed * 13) % 17) as f64 - 8.0) / 8.0
}

#[test]
fn emitted_cpu_source_compiles_and_matches_the_oracle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ok");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("ok dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let tmp = std::env::temp_dir().join(format!("einc-emit-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let mut checked = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path).expect("read");
        let program = einc::Program::parse(&path.display().to_string(), &source).expect("parses");
        let compiled = program
            .compile(&BTreeMap::new(), &CompileConfig::default())
            .expect("compiles");
        let plan = &compiled.plan;
        let p = &plan.program;
        if p.tensors.iter().any(|(_, t)| t.dtype.is_complex()) {
            continue;
        }
        let code = einc_compiler::emit_cpu::emit_cpu(plan, "test").expect("emits");
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (got, oracle_inputs) = run_emitted(&tmp, &name, &code, plan);
        check_against_oracle(&name, &got, &compiled, &oracle_inputs);
        checked.push(name);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("emitted, compiled and checked: {}", checked.join(", "));
    assert!(
        checked.len() >= 5,
        "only {} programs checked",
        checked.len()
    );
}

/// Appends a `main` that feeds the deterministic inputs to every output function of the
/// emitted `code`, compiles it with rustc, runs it, and returns the printed outputs (in
/// output order) with the inputs as arrays for the oracle.
fn run_emitted(
    tmp: &Path,
    name: &str,
    code: &str,
    plan: &einc_compiler::plan::Plan,
) -> (Vec<f64>, Vec<TensorData>) {
    let (main, oracle_inputs) = main_for(code, plan);
    let src = tmp.join(format!("{name}.rs"));
    std::fs::write(&src, format!("{code}{main}")).expect("write");
    let exe = tmp.join(name);
    let out = Command::new("rustc")
        .args(["--edition", "2021", "-O", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("rustc runs");
    assert!(
        out.status.success(),
        "{name}: emitted source does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (run_printed(&exe, name), oracle_inputs)
}

/// Runs an emitted program's executable; the numbers it printed.
fn run_printed(exe: &Path, name: &str) -> Vec<f64> {
    let run = Command::new(exe).output().expect("run emitted");
    assert!(run.status.success(), "{name}: emitted program failed");
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("number"))
        .collect()
}

/// A `main` calling every output function of `code` on the deterministic inputs, and the
/// same inputs as arrays.
fn main_for(code: &str, plan: &einc_compiler::plan::Plan) -> (String, Vec<TensorData>) {
    let p = &plan.program;
    let mut main = String::from("\nfn main() {\n");
    let mut oracle_inputs = Vec::new();
    for (k, (_, t)) in p.inputs().enumerate() {
        let shape: Vec<usize> = t.axes.iter().map(|&a| p.size(a) as usize).collect();
        let n: usize = shape.iter().product();
        let ty = if t.dtype == DType::F32 { "f32" } else { "f64" };
        let vals: Vec<String> = (0..n).map(|i| format!("{:?}", value(i, k))).collect();
        let _ = writeln!(
            main,
            "    let {}: Vec<{ty}> = vec![{}];",
            ident(&t.name),
            vals.iter()
                .map(|v| format!("{v} as {ty}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let data: Vec<f64> = (0..n).map(|i| value(i, k)).collect();
        let arr = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape");
        oracle_inputs.push(if t.dtype == DType::F32 {
            TensorData::F32(arr.mapv(|x| x as f32))
        } else {
            TensorData::F64(arr)
        });
    }
    for &o in &p.outputs {
        let t = &p.tensors[o];
        let n: u64 = t.axes.iter().map(|&a| p.size(a)).product();
        let ty = if t.dtype == DType::F32 { "f32" } else { "f64" };
        let f = ident(&t.name);
        // Only the inputs the output needs are parameters: find them in the signature.
        let sig = code
            .lines()
            .find(|l| l.starts_with(&format!("pub fn {f}(")))
            .expect("function");
        let args: Vec<String> = sig
            .trim_start_matches(&format!("pub fn {f}("))
            .split(", ")
            .filter_map(|a| a.split(':').next())
            .filter(|a| *a != "out")
            .map(|a| format!("&{a}"))
            .collect();
        let _ = writeln!(main, "    let mut r_{f} = vec![0.0 as {ty}; {n}];");
        let mut call_args = args.clone();
        call_args.push(format!("&mut r_{f}"));
        let _ = writeln!(main, "    {f}({});", call_args.join(", "));
        let _ = writeln!(main, "    for x in &r_{f} {{ println!(\"{{:e}}\", x); }}");
    }
    main.push_str("}\n");
    (main, oracle_inputs)
}

/// `--emit cpu --gemm`: every real `ok` program, built as one cargo project that depends on
/// the `gemm` crate (offline, from the registry cache the workspace already uses), agrees
/// with the IR oracle.
#[test]
fn emitted_gemm_source_builds_with_the_gemm_crate_and_matches_the_oracle() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("emit-gemm");
    let bins = root.join("src/bin");
    let _ = std::fs::remove_dir_all(&bins);
    std::fs::create_dir_all(&bins).expect("project dir");
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"emit-gemm\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         [dependencies]\ngemm = { version = \"0.19\", default-features = false, features = [\"std\"] }\n\
         [workspace]\n",
    )
    .expect("Cargo.toml");
    // The workspace's lock pins the same gemm version the tests were built with.
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
    std::fs::copy(&lock, root.join("Cargo.lock")).expect("Cargo.lock");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ok");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("ok dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    let mut gemm_calls = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).expect("read");
        let program = einc::Program::parse(&path.display().to_string(), &source).expect("parses");
        let compiled = program
            .compile(&BTreeMap::new(), &CompileConfig::default())
            .expect("compiles");
        if compiled
            .plan
            .program
            .tensors
            .iter()
            .any(|(_, t)| t.dtype.is_complex())
        {
            continue;
        }
        let opts = einc_compiler::emit_cpu::EmitOptions { gemm: true };
        let code =
            einc_compiler::emit_cpu::emit_cpu_with(&compiled.plan, "test", &opts).expect("emits");
        gemm_calls += code.matches("gemm::gemm(").count();
        let (main, inputs) = main_for(&code, &compiled.plan);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default();
        std::fs::write(bins.join(format!("{name}.rs")), format!("{code}{main}")).expect("bin");
        cases.push((name, compiled, inputs));
    }
    assert!(gemm_calls >= 5, "only {gemm_calls} gemm calls emitted");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "emitted --gemm sources do not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, compiled, inputs) in &cases {
        let got = run_printed(&root.join("target/debug").join(name), name);
        check_against_oracle(name, &got, compiled, inputs);
    }
    println!("--gemm: {} programs, {gemm_calls} gemm calls", cases.len());
}

/// In the other semirings the emitted loops fold with max, min or a running log-sum-exp;
/// they must agree with the executor (itself checked against the semiring reference).
#[test]
fn emitted_semiring_source_matches_the_executor() {
    use einc_compiler::plan::{PlanConfig, Semiring};
    let tmp = std::env::temp_dir().join(format!("einc-emit-semi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let cases: [(&str, &[&[usize]]); 4] = [
        ("ij,jk,kl->il", &[&[3, 4], &[4, 2], &[2, 5]]),
        ("iij,jk->ik", &[&[3, 3, 4], &[4, 2]]),
        ("ijk,ik->j", &[&[2, 3, 4], &[2, 4]]),
        ("ab,bc,ca->", &[&[3, 2], &[2, 4], &[4, 3]]),
    ];
    for semiring in [Semiring::MaxPlus, Semiring::MinPlus, Semiring::LogSumExp] {
        for (c, (eq, shapes)) in cases.iter().enumerate() {
            let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
            let cfg = CompileConfig {
                plan: PlanConfig {
                    semiring,
                    ..PlanConfig::default()
                },
                ..CompileConfig::default()
            };
            let expr =
                einc::compile_with_config(eq, &shapes, &vec![DType::F64; shapes.len()], &cfg)
                    .expect("compiles");
            let plan = &expr.compiled().plan;
            let code = einc_compiler::emit_cpu::emit_cpu(plan, eq).expect("emits");
            let name = format!("semi_{}_{c}", semiring.name().replace('-', "_"));
            let (got, inputs) = run_emitted(&tmp, &name, &code, plan);
            let want = match expr.run_dyn(inputs).expect("runs") {
                TensorData::F64(a) => a.iter().copied().collect::<Vec<f64>>(),
                other => panic!("f64 expected, got {:?}", other.dtype()),
            };
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-10 * w.abs().max(1.0),
                    "{name} {eq}: {g} vs {w}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The printed outputs of an emitted program against the IR oracle on the same inputs:
/// within 1e-4 (f32 programs) or 1e-10 of the largest finite value; NaN matches NaN.
fn check_against_oracle(
    name: &str,
    got: &[f64],
    compiled: &einc_compiler::Compiled,
    inputs: &[TensorData],
) {
    let want: Vec<f64> = einc_runtime::oracle::evaluate(&compiled.ir, inputs)
        .iter()
        .flat_map(|a| a.iter().map(|z| z.re).collect::<Vec<_>>())
        .collect();
    assert_eq!(got.len(), want.len(), "{name}: output sizes");
    let p = &compiled.plan.program;
    let tol = if p.tensors.iter().any(|(_, t)| t.dtype == DType::F32) {
        1e-4
    } else {
        1e-10
    };
    let scale = want
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f64, |m, x| m.max(x.abs()));
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g == w || (g - w).abs() <= tol * scale || (g.is_nan() && w.is_nan()),
            "{name}: {g} vs oracle {w}"
        );
    }
}
