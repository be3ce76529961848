//! The `.ein` corpus under `tests/data/`: snapshots of every stage's dump for the `ok`
//! programs, snapshots of the rendered diagnostics for the `err` programs, and execution of
//! every `ok` program against the IR oracle.

use einc::{CompileConfig, DType, TensorData};
use einc_compiler::dump;
use ndarray::{ArrayD, IxDyn};
use num_complex::{Complex32, Complex64};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ein"))
        .collect();
    v.sort();
    v
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rel(p: &Path) -> String {
    format!(
        "tests/data/{}/{}",
        p.parent()
            .and_then(|d| d.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        p.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}

#[test]
fn ok_programs_snapshot_every_stage() {
    let ok = files("ok");
    assert!(
        ok.len() >= 12,
        "expected at least 12 ok programs, found {}",
        ok.len()
    );
    for path in ok {
        let source = std::fs::read_to_string(&path).expect("read");
        let name = stem(&path);
        let program =
            einc::Program::parse(&rel(&path), &source).unwrap_or_else(|e| panic!("{}", e.render()));
        let compiled = program
            .compile(&BTreeMap::new(), &CompileConfig::default())
            .unwrap_or_else(|e| panic!("{}", e.render()));
        insta::assert_snapshot!(format!("{name}.ast"), format!("{:#?}", program.ast()));
        insta::assert_snapshot!(format!("{name}.ir"), dump::dump_program(&compiled.ir));
        let mut opt = dump::dump_program(&compiled.opt_ir);
        if let Some(r) = &compiled.report {
            opt.push_str(&dump::dump_report(r));
        }
        insta::assert_snapshot!(format!("{name}.opt-ir"), opt);
        insta::assert_snapshot!(format!("{name}.plan"), dump::dump_plan(&compiled.plan));
    }
}

/// The e-graph workloads (`tests/data/egraph`, from `shared/workloads/egraph_workloads.json`
/// at their real sizes; compiled only): a snapshot of `--emit egraph` (statistics, cost
/// per statement, chosen form) for each, and the plan's per-call contraction flops
/// (opt_cost; steps on the `# constants:` inputs alone excluded) within the best known
/// cost that the file's header gives.
#[test]
fn egraph_workloads_snapshot_and_cost() {
    let programs = files("egraph");
    assert!(programs.len() >= 11, "found {}", programs.len());
    for path in programs {
        let source = std::fs::read_to_string(&path).expect("read");
        let name = stem(&path);
        let header = |key: &str| -> Option<String> {
            source.lines().find_map(|l| {
                l.strip_prefix("# ")
                    .and_then(|l| l.split_once(key))
                    .map(|(_, rest)| rest.trim().to_string())
            })
        };
        let constants: Vec<String> = header("constants:")
            .map(|c| c.split(',').map(|x| x.trim().to_string()).collect())
            .unwrap_or_default();
        let best: f64 = header("best known")
            .and_then(|b| b.split_whitespace().next().and_then(|x| x.parse().ok()))
            .unwrap_or_else(|| panic!("{name}: no best known cost in the header"));
        let program =
            einc::Program::parse(&rel(&path), &source).unwrap_or_else(|e| panic!("{}", e.render()));
        let mut cfg = CompileConfig::default();
        cfg.optimize.constants = constants.clone();
        let compiled = program
            .compile(&BTreeMap::new(), &cfg)
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let report = compiled.report.as_ref().expect("the e-graph ran");
        insta::assert_snapshot!(
            format!("{name}.egraph"),
            dump::dump_egraph(report, &compiled.opt_ir)
        );
        let ids: Vec<einc_compiler::ir::TensorId> = constants
            .iter()
            .filter_map(|c| compiled.plan.program.tensor_by_name(c))
            .collect();
        assert_eq!(ids.len(), constants.len(), "{name}: unknown constant");
        // Every step of a call counts: contractions, and the elementwise and reduction
        // passes (one per element per pass, as the reference counts them).
        let einc = compiled.plan.per_call_flops(&ids, false);
        assert!(einc <= best, "{name}: einc {einc:e} > best known {best:e}");
        // The integer-programming extractor solves every one of them and never does worse.
        cfg.optimize.extractor = einc::Extractor::Lp;
        let lp = program
            .compile(&BTreeMap::new(), &cfg)
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let lp_report = lp.report.as_ref().expect("the e-graph ran");
        assert_eq!(lp_report.lp.as_deref(), Some("solved"), "{name}");
        assert!(
            (lp_report.cost_after, lp_report.once_after) <= (report.cost_after, report.once_after),
            "{name}: lp {} > greedy {}",
            lp_report.cost_after,
            report.cost_after
        );
    }
}

#[test]
fn err_programs_snapshot_diagnostics() {
    let err = files("err");
    assert!(
        err.len() >= 10,
        "expected at least 10 err programs, found {}",
        err.len()
    );
    for path in err {
        let source = std::fs::read_to_string(&path).expect("read");
        let name = stem(&path);
        let result = einc::Program::parse(&rel(&path), &source).and_then(|p| {
            p.compile(&BTreeMap::new(), &CompileConfig::default())
                .map(|_| ())
        });
        let e = match result {
            Ok(()) => panic!("{} compiled but should fail", path.display()),
            Err(e) => e,
        };
        assert!(
            matches!(e, einc::Error::User(_)),
            "{}: not a user error: {e}",
            path.display()
        );
        let text = e.render();
        assert!(text.contains("error"), "{text}");
        insta::assert_snapshot!(format!("{name}.diag"), text);
    }
}

/// Deterministic small values (|v| <= 1), different per input and element.
fn input_for(dtype: DType, shape: &[usize], seed: usize) -> TensorData {
    let n: usize = shape.iter().product();
    let v = |t: usize, j: usize| (((t * 7 + seed * 13 + j * 5) % 17) as f64 - 8.0) / 8.0;
    let sh = IxDyn(shape);
    match dtype {
        DType::F32 => TensorData::F32(
            ArrayD::from_shape_vec(sh, (0..n).map(|t| v(t, 0) as f32).collect()).expect("shape"),
        ),
        DType::F64 => TensorData::F64(
            ArrayD::from_shape_vec(sh, (0..n).map(|t| v(t, 0)).collect()).expect("shape"),
        ),
        DType::C64 => TensorData::C64(
            ArrayD::from_shape_vec(
                sh,
                (0..n)
                    .map(|t| Complex32::new(v(t, 0) as f32, v(t, 1) as f32))
                    .collect(),
            )
            .expect("shape"),
        ),
        DType::C128 => TensorData::C128(
            ArrayD::from_shape_vec(
                sh,
                (0..n).map(|t| Complex64::new(v(t, 0), v(t, 1))).collect(),
            )
            .expect("shape"),
        ),
    }
}

#[test]
fn ok_programs_match_the_oracle() {
    for path in files("ok") {
        let source = std::fs::read_to_string(&path).expect("read");
        let program =
            einc::Program::parse(&rel(&path), &source).unwrap_or_else(|e| panic!("{}", e.render()));
        let compiled = program
            .compile(&BTreeMap::new(), &CompileConfig::default())
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let p = &compiled.plan.program;
        let mut inputs = BTreeMap::new();
        let mut ordered = Vec::new();
        for (k, (_, t)) in p.inputs().enumerate() {
            let shape: Vec<usize> = t.axes.iter().map(|&a| p.size(a) as usize).collect();
            let data = input_for(t.dtype, &shape, k);
            inputs.insert(t.name.clone(), data.clone());
            ordered.push(data);
        }
        // The oracle evaluates the unoptimised IR: it checks optimisation and planning too.
        let want = einc_runtime::oracle::evaluate(&compiled.ir, &ordered);
        let got = program
            .run(inputs, BTreeMap::new(), &CompileConfig::default())
            .unwrap_or_else(|e| panic!("{}", e.render()));
        assert_eq!(got.len(), want.len());
        for ((name, g), w) in got.iter().zip(&want) {
            let tol = match g.dtype() {
                DType::F32 | DType::C64 => 1e-4,
                _ => 1e-10,
            };
            let g = g.as_c128();
            assert_eq!(g.shape(), w.shape(), "{}: output {name}", path.display());
            // Scale by the finite values only, or one inf would excuse every mismatch.
            let scale = w
                .iter()
                .filter(|z| z.norm().is_finite())
                .fold(1.0f64, |m, z| m.max(z.norm()));
            for (a, b) in g.iter().zip(w.iter()) {
                assert!(
                    a == b || (a - b).norm() <= tol * scale || (a.re.is_nan() && b.re.is_nan()),
                    "{}: output {name}: {a} vs oracle {b}",
                    path.display()
                );
            }
        }
    }
}
