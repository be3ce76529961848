//! The `einc` command line: exit codes, dumps, `path --json`, `.ein` runs with `.npy` files,
//! and errors that are rendered, never panics.

use ndarray::{array, ArrayD};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn einc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_einc"))
        .args(args)
        .output()
        .expect("run einc")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("einc-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn no_panic(o: &Output) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !e.contains("panicked") && !e.contains("RUST_BACKTRACE"),
        "panic: {e}"
    );
}

fn data(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

#[test]
fn path_json_has_the_documented_keys() {
    let o = einc(&["path", "ij,jk,kl->il", "--shapes", "2x3,3x4,4x5", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    for k in [
        "equation",
        "optimizer",
        "path",
        "flops",
        "largest_intermediate",
        "search_seconds",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert_eq!(v["path"].as_array().map(|a| a.len()), Some(2));
    // opt_einsum: (ij,jk) costs 2*3*4*2 = 48, then (ik,kl) 2*4*5*2 = 80 → 128 optimal.
    assert_eq!(v["flops"].as_f64(), Some(128.0));
    assert_eq!(v["largest_intermediate"].as_f64(), Some(10.0));
}

#[test]
fn path_rejects_bad_input_with_exit_1() {
    for args in [
        vec!["path", "ij,jk->ikl", "--shapes", "2x3,3x4"],
        vec!["path", "ij,jk->ik", "--shapes", "2x3,4x4"],
        vec!["path", "ij,jk->ik", "--shapes", "2x3,zz"],
        vec!["path", "ij,jk->ik", "--shapes", "2x3"],
    ] {
        let o = einc(&args);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(!o.stderr.is_empty());
    }
    let o = einc(&["path", "ij,jk->ikl", "--shapes", "2x3,3x4"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("output index 'l' does not appear in any input") && e.contains('^'),
        "{e}"
    );
}

#[test]
fn run_equation_writes_npy_with_numpy_result_type() {
    let d = tmp("run-e");
    let a: ArrayD<f32> = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
    let b: ArrayD<f32> = array![[5.0f32, 6.0], [7.0, 8.0]].into_dyn();
    a.write_npy(std::fs::File::create(d.join("a.npy")).expect("a"))
        .expect("write");
    b.write_npy(std::fs::File::create(d.join("b.npy")).expect("b"))
        .expect("write");
    let out = d.join("c.npy");
    let o = einc(&[
        "run",
        "-e",
        "ij,jk->ik",
        &d.join("a.npy").display().to_string(),
        &d.join("b.npy").display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let c = ArrayD::<f32>::read_npy(std::fs::File::open(&out).expect("c")).expect("f32 output");
    assert_eq!(c, array![[19.0f32, 22.0], [43.0, 50.0]].into_dyn());
}

#[test]
fn run_reports_missing_files_and_bad_shapes() {
    let o = einc(&[
        "run",
        "-e",
        "ij,jk->ik",
        "/nonexistent/a.npy",
        "/nonexistent/b.npy",
    ]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/a.npy"));
    let o = einc(&["compile", "/nonexistent/x.ein"]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn run_program_with_named_inputs_and_outputs() {
    let d = tmp("run-ein");
    let src = d.join("mm.ein");
    std::fs::write(&src, "dim i = 2, j = 2, k\ninput A[i, j]: f64\ninput B[j, k]: f64\nC[i, k] = A[i, j] * B[j, k]\noutput C\n").expect("src");
    let a: ArrayD<f64> = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
    let b: ArrayD<f64> = array![[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]].into_dyn();
    a.write_npy(std::fs::File::create(d.join("a.npy")).expect("a"))
        .expect("write");
    b.write_npy(std::fs::File::create(d.join("b.npy")).expect("b"))
        .expect("write");
    let out = d.join("c.npy");
    // Plain, then with a weight marked constant and the integer-programming extractor:
    // the same result.
    for extra in [&[][..], &["--constant", "B", "--extractor", "lp"][..]] {
        let mut args = vec![
            "run".to_string(),
            src.display().to_string(),
            "--input".into(),
            format!("A={}", d.join("a.npy").display()),
            "--input".into(),
            format!("B={}", d.join("b.npy").display()),
            "--output".into(),
            format!("C={}", out.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = einc(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{extra:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let c = ArrayD::<f64>::read_npy(std::fs::File::open(&out).expect("c")).expect("f64");
        assert_eq!(c, array![[1.0, 2.0, 8.0], [3.0, 4.0, 18.0]].into_dyn());
    }

    // Shape that contradicts a declared size: a diagnostic pointing at the declaration.
    let bad: ArrayD<f64> = ndarray::Array2::zeros((3, 2)).into_dyn();
    bad.write_npy(std::fs::File::create(d.join("bad.npy")).expect("bad"))
        .expect("write");
    let o = einc(&[
        "run",
        &src.display().to_string(),
        "--input",
        &format!("A={}", d.join("bad.npy").display()),
        "--input",
        &format!("B={}", d.join("b.npy").display()),
    ]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("'i'") && e.contains('^'), "{e}");
}

#[test]
fn compile_emits_every_stage() {
    let f = data("examples/simplicial_attention.ein");
    for emit in ["ast", "ir", "opt-ir", "plan"] {
        let o = einc(&["compile", &f, "--emit", emit]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{emit}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stdout.is_empty());
    }
    let o = einc(&["compile", &f, "--emit", "opt-ir"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("stop reason"));
}

#[test]
fn compile_emits_the_egraph_report_and_takes_constants() {
    // The rank-128 CP layer: with its factors constant the dense weight is precomputed and
    // kept; without, the factorised form wins and W is folded into Y.
    let f = data("tests/data/egraph/tfno_cp_r128.ein");
    let mut args = vec!["compile", f.as_str(), "--emit", "egraph"];
    let o = einc(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("stop reason: saturated"), "{text}");
    assert!(
        text.contains("W: ") && text.contains("folded into its readers"),
        "{text}"
    );
    for c in ["lam", "A", "B", "C", "E"] {
        args.extend(["--constant", c]);
    }
    let o = einc(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("per call; once:"), "{text}");
    assert!(!text.contains("folded into its readers"), "{text}");
    assert!(
        text.contains("Y[b, o, x, y]: f64 = sum[i](W[i, o, x, y] * X[b, i, x, y])"),
        "{text}"
    );
    // The integer-programming extractor reports how it ended and keeps the same form.
    args.extend(["--extractor", "lp"]);
    let o = einc(&args);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("lp extractor: solved"), "{text}");
    assert!(
        text.contains("Y[b, o, x, y]: f64 = sum[i](W[i, o, x, y] * X[b, i, x, y])"),
        "{text}"
    );
    let o = einc(&["compile", f.as_str(), "--extractor", "ilp"]);
    assert_eq!(o.status.code(), Some(1));
    // Under a memory limit below the dense weight (64·64·32·32 = 4194304 elements), the
    // factorised form, whose values all fit (at most 8·32·32·128 = 1048576), wins although
    // it costs more flops per call.
    for (extractor, limit, folded) in [
        ("greedy", "2000000", true),
        ("lp", "2000000", true),
        ("greedy", "5000000", false),
    ] {
        let mut a = args[..args.len() - 2].to_vec();
        a.extend(["--extractor", extractor, "--memory-limit", limit]);
        let o = einc(&a);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(
            text.contains("W: 0.0 (+1074270208.0 once) -> folded into its readers"),
            folded,
            "{extractor} {limit}: {text}"
        );
    }
}

#[test]
fn oversized_plans_are_refused_before_allocating() {
    let d = tmp("huge");
    let src = d.join("huge.ein");
    std::fs::write(
        &src,
        "dim i = 200000, j = 200000\ninput a[i]: f64\ninput b[j]: f64\nC[i, j] = a[i] * b[j]\n",
    )
    .expect("src");
    let a: ArrayD<f64> = ndarray::Array1::zeros(200000).into_dyn();
    a.write_npy(std::fs::File::create(d.join("a.npy")).expect("a"))
        .expect("write");
    let o = einc(&[
        "run",
        &src.display().to_string(),
        "--input",
        &format!("a={}", d.join("a.npy").display()),
        "--input",
        &format!("b={}", d.join("a.npy").display()),
    ]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("memory limit"), "{e}");
}

#[test]
fn run_stats_reports_steps_and_peak_memory() {
    let d = tmp("stats");
    let a: ArrayD<f64> =
        ndarray::Array2::from_shape_fn((8, 16), |(i, j)| (i + j) as f64).into_dyn();
    let b: ArrayD<f64> =
        ndarray::Array2::from_shape_fn((16, 4), |(i, j)| (i * j) as f64).into_dyn();
    a.write_npy(std::fs::File::create(d.join("a.npy")).expect("a"))
        .expect("write");
    b.write_npy(std::fs::File::create(d.join("b.npy")).expect("b"))
        .expect("write");
    let o = einc(&[
        "run",
        "-e",
        "ij,jk->ki",
        &d.join("a.npy").display().to_string(),
        &d.join("b.npy").display().to_string(),
        "-o",
        &d.join("c.npy").display().to_string(),
        "--stats",
        "--threads",
        "1",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("contract") && e.contains("peak memory"), "{e}");
    // The result (4x8 f64 = 256 bytes) plus the GEMM output before the permutation.
    let c = ArrayD::<f64>::read_npy(std::fs::File::open(d.join("c.npy")).expect("c")).expect("f64");
    assert_eq!(
        c,
        a.into_dimensionality::<ndarray::Ix2>()
            .expect("2d")
            .dot(&b.into_dimensionality::<ndarray::Ix2>().expect("2d"))
            .t()
            .to_owned()
            .into_dyn()
    );
}

/// A ring `ij,jk,kl,li->` of 40x40 matrices needs a 40x40 intermediate (1600 elements)
/// unless its products run in slices: with `--memory-limit`, or with an `EINC_MAX_BYTES`
/// budget below that, the plan slices and still returns trace(ABCD).
#[test]
fn products_over_the_memory_limit_run_in_slices() {
    let d = tmp("sliced");
    let n = 40;
    let mats: Vec<ndarray::Array2<f64>> = (0..4)
        .map(|k| {
            ndarray::Array2::from_shape_fn((n, n), |(i, j)| {
                ((i * 7 + j * 3 + k * 5) % 11) as f64 - 5.0
            })
        })
        .collect();
    let mut files = Vec::new();
    for (k, m) in mats.iter().enumerate() {
        let f = d.join(format!("m{k}.npy"));
        m.write_npy(std::fs::File::create(&f).expect("npy"))
            .expect("write");
        files.push(f.display().to_string());
    }
    let want = mats[0]
        .dot(&mats[1])
        .dot(&mats[2])
        .dot(&mats[3])
        .diag()
        .sum();
    let out = d.join("out.npy").display().to_string();
    let mut args = vec!["run", "-e", "ij,jk,kl,li->"];
    args.extend(files.iter().map(|s| s.as_str()));
    args.extend(["-o", &out, "--stats"]);
    let check = |o: &Output| {
        no_panic(o);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{e}");
        assert!(e.contains("slice_sum"), "not sliced: {e}");
        let got = ArrayD::<f64>::read_npy(std::fs::File::open(&out).expect("out")).expect("f64");
        assert!(
            (got.sum() - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    };
    let mut explicit = args.clone();
    explicit.extend(["--memory-limit", "500"]);
    check(&einc(&explicit));
    let budget = Command::new(env!("CARGO_BIN_EXE_einc"))
        .args(&args)
        .env("EINC_MAX_BYTES", "4000")
        .output()
        .expect("run einc");
    check(&budget);
    // A limit below the output's own size, or not a positive number, is refused.
    for bad in [
        "--memory-limit=0",
        "--memory-limit=nan",
        "--memory-limit=-3",
    ] {
        let mut a = args.clone();
        a.push(bad);
        let o = einc(&a);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("memory-limit"),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `--memory-flops` sets how much a plan may pay to stay within its largest intermediate:
/// a periodic MPS (12 sites, bond 6) is swept by default and keeps its searched tree at 1;
/// a factor below 1 (or NaN) is refused with the flag named.
#[test]
fn memory_flops_is_a_plan_choice_and_is_checked() {
    let d = tmp("memflops");
    let mut names = ('a'..='z').chain('A'..='Z').chain('à'..='ÿ');
    let mut label = || names.next().expect("enough labels");
    let n = 12;
    let bonds: Vec<(char, char)> = (0..n).map(|_| (label(), label())).collect();
    let mut terms = Vec::new();
    for i in 0..n {
        let s = label();
        let ((kl, bl), (kr, br)) = (bonds[(i + n - 1) % n], bonds[i]);
        terms.push(format!("{kl}{s}{kr}"));
        terms.push(format!("{bl}{s}{br}"));
    }
    let mut src = String::new();
    for (k, t) in terms.iter().enumerate() {
        let idx: Vec<String> = t.chars().map(|c| format!("i{}", c as u32)).collect();
        src.push_str(&format!("input T{k}[{}]: f32\n", idx.join(", ")));
    }
    let dims: Vec<String> = bonds
        .iter()
        .flat_map(|&(k, b)| [k, b])
        .map(|c| format!("i{} = 6", c as u32))
        .collect();
    let phys: Vec<String> = terms
        .iter()
        .step_by(2)
        .map(|t| format!("i{} = 2", t.chars().nth(1).expect("three labels") as u32))
        .collect();
    let body: Vec<String> = terms
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let idx: Vec<String> = t.chars().map(|c| format!("i{}", c as u32)).collect();
            format!("T{k}[{}]", idx.join(", "))
        })
        .collect();
    let program = format!(
        "dim {}, {}\n{src}Y[] = {}\noutput Y\n",
        dims.join(", "),
        phys.join(", "),
        body.join(" * ")
    );
    let f = d.join("ring.ein");
    std::fs::write(&f, program).expect("write");
    let f = f.to_string_lossy().into_owned();
    let plan_of = |extra: &[&str]| {
        let mut a = vec!["compile", f.as_str(), "--emit", "plan"];
        a.extend(extra);
        let o = einc(&a);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "{err}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(plan_of(&[]).contains("memory: a sweep"), "{}", plan_of(&[]));
    assert!(!plan_of(&["--memory-flops", "1"]).contains("memory:"));
    for bad in ["0.5", "NaN"] {
        let o = einc(&["compile", &f, "--memory-flops", bad]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("--memory-flops"), "{err}");
    }
}
