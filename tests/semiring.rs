//! `--semiring`: every plan of a product runs in max-plus, min-plus and log-sum-exp and
//! matches the naive semiring reference, whichever optimizer ordered it and whether or not
//! it was sliced; programs the semiring gives no meaning to are refused with a message.

use einc::{CompileConfig, DType, Optimizer};
use einc_compiler::order::Limits;
use einc_compiler::plan::{PlanConfig, Semiring};
use einc_runtime::kernels::ReduceOp;
use einc_runtime::reference::reference_semiring;
use std::process::Command;

mod common;
use common::{arrays, labelled, random_net, run_and_check, Net, Rng};

fn add_op(r: Semiring) -> ReduceOp {
    match r {
        Semiring::SumProduct => ReduceOp::Sum,
        Semiring::MaxPlus => ReduceOp::Max,
        Semiring::MinPlus => ReduceOp::Min,
        Semiring::LogSumExp => ReduceOp::LogSumExp,
    }
}

/// Compiles `net` (operands of `shapes`) in `semiring`, runs it and compares with the
/// semiring reference; returns whether the plan was sliced.
fn check(
    net: &Net,
    shapes: &[Vec<usize>],
    semiring: Semiring,
    optimizer: Optimizer,
    limits: &Limits,
) -> bool {
    let arrays = arrays(shapes);
    let ops = labelled(&arrays, &net.labels);
    let want = reference_semiring(&ops, &net.out, &net.sizes, add_op(semiring));
    let cfg = CompileConfig {
        plan: PlanConfig {
            optimizer,
            limits: limits.clone(),
            semiring,
            ..PlanConfig::default()
        },
        ..CompileConfig::default()
    };
    let dtypes = vec![DType::F64; shapes.len()];
    let Ok(expr) = einc::compile_with_config(&net.eq, shapes, &dtypes, &cfg) else {
        // Only a memory limit below the output's size may refuse.
        assert!(limits.memory_limit.is_some(), "{} {semiring}", net.eq);
        return false;
    };
    let sliced = expr
        .compiled()
        .plan
        .steps
        .iter()
        .any(|s| matches!(s.op, einc_compiler::plan::Op::SliceSum { .. }));
    run_and_check(
        &expr,
        &arrays,
        &want,
        &format!("{} {semiring} {optimizer}", net.eq),
    );
    sliced
}

#[test]
fn every_semiring_matches_the_reference() {
    let mut rng = Rng(11);
    let mut sliced = 0;
    for case in 0..90 {
        let n = 1 + rng.below(7) as usize;
        let labels = 2 + rng.below(6) as u32;
        let net = random_net(&mut rng, n, labels);
        for semiring in [Semiring::MaxPlus, Semiring::MinPlus, Semiring::LogSumExp] {
            let optimizer = [Optimizer::Greedy, Optimizer::Optimal, Optimizer::Hyper][case % 3];
            let limits = Limits {
                trials: Some(4),
                ..Limits::default()
            };
            check(&net, &net.shapes(), semiring, optimizer, &limits);
            // The same under a small memory limit: sliced products combine their
            // slices with the semiring's ⊕.
            let small = Limits {
                memory_limit: Some(2.0),
                allow_slicing: true,
                trials: Some(4),
                ..Limits::default()
            };
            sliced += check(&net, &net.shapes(), semiring, Optimizer::Greedy, &small) as usize;
        }
    }
    assert!(sliced >= 20, "only {sliced} sliced runs");
}

#[test]
fn semirings_refuse_what_they_do_not_define() {
    let cfg = |semiring| CompileConfig {
        plan: PlanConfig {
            semiring,
            ..PlanConfig::default()
        },
        ..CompileConfig::default()
    };
    let e = einc::compile_with_config(
        "ij,jk->ik",
        &[vec![2, 2], vec![2, 2]],
        &[DType::C128, DType::C128],
        &cfg(Semiring::MaxPlus),
    )
    .expect_err("complex max-plus");
    assert!(e.render().contains("real"), "{}", e.render());
    let p = einc::Program::parse(
        "t.ein",
        "dim i = 3\ninput a[i]: f64\ninput b[i]: f64\nC[i] = a[i] + b[i]\n",
    )
    .expect("parses");
    let e = p
        .compile(&Default::default(), &cfg(Semiring::MinPlus))
        .expect_err("additions are refused");
    assert!(e.render().contains("an addition"), "{}", e.render());
}

#[test]
fn cli_runs_shortest_paths_in_min_plus() {
    // Two relaxation steps of a 3-node graph: d2[i,k] = min_j (w[i,j] + w[j,k]).
    let d = std::env::temp_dir().join(format!("einc-semiring-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp");
    let w = ndarray::array![[0.0, 1.0, 5.0], [1.0, 0.0, 1.0], [5.0, 1.0, 0.0]].into_dyn();
    let f = d.join("w.npy");
    ndarray_npy::WriteNpyExt::write_npy(&w, std::fs::File::create(&f).expect("w")).expect("write");
    let f = f.display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_einc"))
        .args(["run", "-e", "ij,jk->ik", &f, &f, "--semiring", "min-plus"])
        .output()
        .expect("run einc");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // 0 -> 2 costs 2 through node 1, not 5.
    assert!(out.contains("[[0, 1, 2],"), "{out}");
    let o = Command::new(env!("CARGO_BIN_EXE_einc"))
        .args(["run", "-e", "ij,jk->ik", &f, &f, "--semiring", "plus-times"])
        .output()
        .expect("run einc");
    assert_eq!(o.status.code(), Some(1));
}

/// Repeated labels (diagonals), traces and size-1 broadcasting, which the random networks
/// above never produce.
#[test]
fn diagonals_and_broadcasting_in_every_semiring() {
    // (equation, shapes, labels per operand, output labels)
    type Case<'a> = (&'a str, &'a [&'a [usize]], &'a [&'a [u32]], &'a [u32]);
    let cases: [Case; 5] = [
        (
            "iij,jk->ik",
            &[&[3, 3, 4], &[4, 2]],
            &[&[0, 0, 1], &[1, 2]],
            &[0, 2],
        ),
        ("ii->", &[&[4, 4]], &[&[0, 0]], &[]),
        ("ij,j->i", &[&[3, 4], &[1]], &[&[0, 1], &[1]], &[0]),
        (
            "ij,ij->ji",
            &[&[3, 4], &[3, 4]],
            &[&[0, 1], &[0, 1]],
            &[1, 0],
        ),
        ("i,j->", &[&[0], &[3]], &[&[0], &[1]], &[]),
    ];
    for semiring in [Semiring::MaxPlus, Semiring::MinPlus, Semiring::LogSumExp] {
        for (eq, shapes, labels, out) in cases {
            let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
            let mut sizes = std::collections::BTreeMap::new();
            for (s, l) in shapes.iter().zip(labels) {
                for (&n, &l) in s.iter().zip(l.iter()) {
                    let e = sizes.entry(l).or_insert(n);
                    *e = (*e).max(n);
                }
            }
            let net = Net {
                eq: eq.to_string(),
                labels: labels.iter().map(|l| l.to_vec()).collect(),
                out: out.to_vec(),
                sizes,
            };
            // `Net::shapes` derives shapes from sizes; broadcasting needs the given ones.
            check(&net, &shapes, semiring, Optimizer::Auto, &Limits::default());
        }
    }
}
