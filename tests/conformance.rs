//! The shared einsum conformance corpus (`../shared/conformance/conformance.jsonl`), run
//! through the library and through the CLI's `run -e`.
//!
//! Valid cases must match the expected shape, values (exactly, or to 1e-12 relative), sum,
//! weighted sum and sha256; invalid ones must be rejected with an error, never a panic.

use einc::TensorData;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn corpus() -> Option<Vec<Value>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/conformance.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            println!(
                "SKIP: conformance corpus not found at {}: {e}",
                path.display()
            );
            return None;
        }
    };
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
            .collect(),
    )
}

fn shapes(case: &Value) -> Vec<Vec<usize>> {
    case["shapes"]
        .as_array()
        .expect("shapes")
        .iter()
        .map(|s| {
            s.as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect()
        })
        .collect()
}

/// The corpus' input rules (see shared/README.md).
fn make_input(rule: &str, k: usize, shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let data: Vec<f64> = match rule {
        "mod11" => {
            let m = (k % 10 + 1) as i64;
            let c = ((3 * k + 1) % 11) as i64;
            (0..n as i64)
                .map(|t| ((m * t + c).rem_euclid(11) - 5) as f64)
                .collect()
        }
        "func01" => {
            if shape.is_empty() {
                vec![1.0]
            } else {
                let d_last = shape[shape.len() - 1];
                let mut out = Vec::with_capacity(n);
                for t in 0..n {
                    // Unravel t in C order.
                    let mut rem = t;
                    let mut idx = vec![0usize; shape.len()];
                    for ax in (0..shape.len()).rev() {
                        idx[ax] = rem % shape[ax];
                        rem /= shape[ax];
                    }
                    let last = idx[shape.len() - 1];
                    let others: usize = idx[..shape.len() - 1].iter().sum();
                    out.push(if last == (others + k) % d_last {
                        1.0
                    } else {
                        0.0
                    });
                }
                out
            }
        }
        other => panic!("unknown input rule {other}"),
    };
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches data")
}

fn check_result(case: &Value, got: &ArrayD<f64>, how: &str) -> Result<(), String> {
    let id = case["id"].as_str().unwrap_or("?");
    let want_shape: Vec<usize> = case["out_shape"]
        .as_array()
        .expect("out_shape")
        .iter()
        .map(|d| d.as_u64().unwrap_or(0) as usize)
        .collect();
    if got.shape() != want_shape.as_slice() {
        return Err(format!(
            "{id} ({how}): shape {:?}, expected {:?}",
            got.shape(),
            want_shape
        ));
    }
    let flat: Vec<f64> = got.iter().map(|&x| x + 0.0).collect();
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    if let Some(vals) = case["expected_values"].as_array() {
        for (t, (g, w)) in flat.iter().zip(vals).enumerate() {
            let w = w.as_f64().unwrap_or(f64::NAN);
            if !close(*g, w) {
                return Err(format!("{id} ({how}): element {t} is {g}, expected {w}"));
            }
        }
    }
    let sum: f64 = flat.iter().sum();
    let wsum: f64 = flat
        .iter()
        .enumerate()
        .map(|(t, &r)| r * ((t % 7) + 1) as f64)
        .sum();
    let es = case["expected_sum"].as_f64().unwrap_or(f64::NAN);
    let ew = case["expected_wsum"].as_f64().unwrap_or(f64::NAN);
    if !close(sum, es) || !close(wsum, ew) {
        return Err(format!(
            "{id} ({how}): sum {sum} / wsum {wsum}, expected {es} / {ew}"
        ));
    }
    let mut h = Sha256::new();
    for x in &flat {
        h.update(x.to_le_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if hex != case["expected_sha256"].as_str().unwrap_or("") {
        return Err(format!("{id} ({how}): sha256 differs"));
    }
    Ok(())
}

fn as_f64(t: TensorData) -> ArrayD<f64> {
    match t {
        TensorData::F64(a) => a,
        other => other.as_c128().mapv(|z| z.re),
    }
}

#[test]
fn conformance_library() {
    let Some(cases) = corpus() else { return };
    let (mut passed, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let eq = case["eq"].as_str().expect("eq");
        let shapes = shapes(case);
        let rule = case["inputs_rule"].as_str().unwrap_or("mod11");
        let inputs: Vec<TensorData> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| TensorData::F64(make_input(rule, k, s)))
            .collect();
        let valid = case["valid"].as_bool().expect("valid");
        let result = std::panic::catch_unwind(|| einc::einsum_dyn(eq, inputs));
        match (valid, result) {
            (_, Err(_)) => failures.push(format!("{}: PANIC on {eq:?}", case["id"])),
            (true, Ok(Ok(r))) => match check_result(case, &as_f64(r), "library") {
                Ok(()) => passed += 1,
                Err(e) => failures.push(e),
            },
            (true, Ok(Err(e))) => failures.push(format!("{}: {eq:?} rejected: {e}", case["id"])),
            (false, Ok(Ok(_))) => failures.push(format!(
                "{}: {eq:?} {:?} should be rejected",
                case["id"], shapes
            )),
            (false, Ok(Err(e))) => {
                assert!(!e.to_string().is_empty());
                rejected += 1
            }
        }
    }
    println!("conformance (library): {passed} valid cases passed, {rejected} invalid cases rejected, {} failures", failures.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn conformance_cli() {
    let Some(cases) = corpus() else { return };
    let dir = std::env::temp_dir().join(format!("einc-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = env!("CARGO_BIN_EXE_einc");
    let (mut passed, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let eq = case["eq"].as_str().expect("eq");
        let shapes = shapes(case);
        let rule = case["inputs_rule"].as_str().unwrap_or("mod11");
        let mut args: Vec<String> = vec!["run".into(), "-e".into(), eq.into()];
        for (k, s) in shapes.iter().enumerate() {
            let p = dir.join(format!("c{n}_in{k}.npy"));
            let f = std::fs::File::create(&p).expect("create npy");
            make_input(rule, k, s).write_npy(f).expect("write npy");
            args.push(p.display().to_string());
        }
        let out = dir.join(format!("c{n}_out.npy"));
        args.push("-o".into());
        args.push(out.display().to_string());
        let res = std::process::Command::new(exe)
            .args(&args)
            .output()
            .expect("run einc");
        let stderr = String::from_utf8_lossy(&res.stderr);
        if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            failures.push(format!("{}: CLI panicked on {eq:?}: {stderr}", case["id"]));
            continue;
        }
        let valid = case["valid"].as_bool().expect("valid");
        match (valid, res.status.code()) {
            (true, Some(0)) => {
                let f = std::fs::File::open(&out).expect("output written");
                let got = ArrayD::<f64>::read_npy(f).expect("output is f64 npy");
                match check_result(case, &got, "cli") {
                    Ok(()) => passed += 1,
                    Err(e) => failures.push(e),
                }
            }
            (true, code) => failures.push(format!(
                "{}: CLI exit {code:?} on valid {eq:?}: {stderr}",
                case["id"]
            )),
            (false, Some(1)) if !stderr.trim().is_empty() => rejected += 1,
            (false, code) => failures.push(format!(
                "{}: CLI exit {code:?} on invalid {eq:?}, stderr {stderr:?}",
                case["id"]
            )),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("conformance (cli): {passed} valid cases passed, {rejected} invalid cases rejected, {} failures", failures.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// numpy's sublist call form: the corpus gives the sublists and numpy's letter spelling.
#[test]
fn conformance_sublists() {
    let Some(cases) = corpus() else { return };
    let mut checked = 0;
    for case in cases.iter().filter(|c| c.get("sublist").is_some()) {
        let n_ops = case["shapes"].as_array().map_or(0, |s| s.len());
        let lists: Vec<Vec<Option<i64>>> = case["sublist"]
            .as_array()
            .expect("sublist")
            .iter()
            .map(|l| {
                l.as_array()
                    .expect("list")
                    .iter()
                    .map(|x| x.as_i64())
                    .collect()
            })
            .collect();
        let conv = |l: &Vec<Option<i64>>| -> Vec<Option<usize>> {
            l.iter().map(|x| x.map(|v| v as usize)).collect()
        };
        let inputs: Vec<Vec<Option<usize>>> = lists.iter().take(n_ops).map(conv).collect();
        let output: Option<Vec<Option<usize>>> = lists.get(n_ops).map(conv);
        let in_range = lists
            .iter()
            .flatten()
            .flatten()
            .all(|&v| (0..52).contains(&v));
        let got = einc::sublist_equation(&inputs, output.as_deref());
        if in_range {
            assert_eq!(
                got.expect("in-range sublist"),
                case["eq"].as_str().expect("eq"),
                "{}",
                case["id"]
            );
        } else {
            assert!(
                got.is_err(),
                "{}: labels outside [0, 52) must be rejected",
                case["id"]
            );
        }
        checked += 1;
    }
    println!("sublist cases checked: {checked}");
    assert!(checked > 0);
}

/// Every valid case in f32 on the GPU executor (lavapipe in CI), against the expected
/// values to f32 accuracy. Without an adapter it prints a SKIP line.
#[test]
fn conformance_gpu() {
    let Some(cases) = corpus() else { return };
    let g = match einc_runtime::gpu::gpu() {
        Ok(g) => g,
        Err(e) => {
            println!("SKIP conformance_gpu: no GPU adapter: {e}");
            eprintln!("SKIP conformance_gpu: no GPU adapter: {e}");
            return;
        }
    };
    let (mut passed, mut failures) = (0, Vec::new());
    for case in cases.iter().filter(|c| c["valid"].as_bool() == Some(true)) {
        let eq = case["eq"].as_str().expect("eq");
        let shapes = shapes(case);
        let rule = case["inputs_rule"].as_str().unwrap_or("mod11");
        let inputs: Vec<TensorData> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| TensorData::F64(make_input(rule, k, s)).cast(einc::DType::F32))
            .collect();
        let dtypes = vec![einc::DType::F32; shapes.len()];
        let id = case["id"].as_str().unwrap_or("?");
        let run = || -> Result<ArrayD<f64>, String> {
            let expr = einc::compile(eq, &shapes, &dtypes).map_err(|e| e.to_string())?;
            let exe = einc_runtime::gpu::GpuExecutable::new(g.clone(), &expr.compiled().plan)
                .map_err(|e| e.0)?;
            let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
            let mut out = exe.run(&views).map_err(|e| e.0)?;
            Ok(as_f64(out.pop().ok_or("no output")?))
        };
        match run() {
            Err(e) => failures.push(format!("{id} {eq:?}: {e}")),
            Ok(got) => {
                let want: Vec<f64> = match case["expected_values"].as_array() {
                    Some(v) => v.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect(),
                    None => {
                        // Large results carry only sums: compare those.
                        let sum: f64 = got.iter().sum();
                        let es = case["expected_sum"].as_f64().unwrap_or(f64::NAN);
                        let scale: f64 = got.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
                        if (sum - es).abs() <= 1e-5 * scale {
                            passed += 1;
                        } else {
                            failures.push(format!("{id} {eq:?}: sum {sum}, expected {es}"));
                        }
                        continue;
                    }
                };
                let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                let bad = got
                    .iter()
                    .zip(&want)
                    .position(|(g, w)| (g - w).abs() > 1e-5 * scale);
                match bad {
                    None if got.len() == want.len() => passed += 1,
                    _ => failures.push(format!("{id} {eq:?}: values differ ({bad:?})")),
                }
            }
        }
    }
    println!(
        "conformance (gpu, f32, {}): {passed} valid cases passed, {} failures",
        g.describe(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
