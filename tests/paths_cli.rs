//! Contraction-order search end to end: every optimizer's tree computes the
//! reference result through the public API, sliced trees add up to the
//! unsliced result, and `einc path` (optimizers, seeds, memory limits and
//! slicing, instances, DOT/SVG) behaves as documented.

use std::path::PathBuf;
use std::process::{Command, Output};

use einc::{CompileConfig, DType, Optimizer};
use einc_compiler::order::{self, Limits};
use einc_compiler::plan::PlanConfig;
use einc_runtime::reference::reference_einsum_f64;
use ndarray::ArrayD;

mod common;
use common::{arrays, labelled, random_net, run_and_check, Net, Rng};

fn reference(net: &Net, arrays: &[ArrayD<f64>]) -> ArrayD<f64> {
    reference_einsum_f64(&labelled(arrays, &net.labels), &net.out, &net.sizes)
}

fn check_optimizers(net: &Net, trials: usize) {
    let shapes = net.shapes();
    let arrays = arrays(&shapes);
    let want = reference(net, &arrays);
    for optimizer in [
        Optimizer::Greedy,
        Optimizer::Optimal,
        Optimizer::Hyper,
        Optimizer::Auto,
    ] {
        let cfg = CompileConfig {
            plan: PlanConfig {
                optimizer,
                limits: Limits {
                    trials: Some(trials),
                    seed: 7,
                    ..Limits::default()
                },
                ..PlanConfig::default()
            },
            ..CompileConfig::default()
        };
        let dtypes = vec![DType::F64; shapes.len()];
        let expr = einc::compile_with_config(&net.eq, &shapes, &dtypes, &cfg)
            .unwrap_or_else(|e| panic!("{} {optimizer}: {}", net.eq, e.render()));
        run_and_check(&expr, &arrays, &want, &format!("{} {optimizer}", net.eq));
    }
}

#[test]
fn every_optimizer_matches_the_reference_on_small_networks() {
    let mut rng = Rng(1);
    for _ in 0..60 {
        let n = 2 + rng.below(6) as usize;
        let labels = 2 + rng.below(7) as u32;
        let net = random_net(&mut rng, n, labels);
        check_optimizers(&net, 8);
    }
}

#[test]
fn every_optimizer_matches_the_reference_on_hyper_sized_networks() {
    // Past the exact-search threshold, so `hyper` and `auto` run real trials.
    let mut rng = Rng(2);
    for _ in 0..6 {
        let n = order::AUTO_OPTIMAL_MAX_INPUTS + 1 + rng.below(5) as usize;
        let net = random_net(&mut rng, n, 12);
        check_optimizers(&net, 6);
    }
}

/// `Slicing` means: fix every sliced label to each value combination, run
/// the rest, add up. The order search's sliced trees are checked for their
/// accounting, and the same limit through `einc` must give a plan that keeps
/// every intermediate under it, runs its products in slices, and computes the
/// reference result.
#[test]
fn sliced_plans_run_and_match_the_reference() {
    let mut rng = Rng(3);
    let (mut sliced_trees, mut sliced_plans) = (0, 0);
    for _ in 0..40 {
        let n = 6 + rng.below(4) as usize;
        let net = random_net(&mut rng, n, 7);
        let inputs = net.labels.clone();
        let sizes: Vec<u64> = (0..7)
            .map(|l| net.sizes.get(&l).map_or(1, |&s| s as u64))
            .collect();
        let free = order::search(
            &inputs,
            &net.out,
            &sizes,
            Optimizer::Greedy,
            &Limits::default(),
        )
        .expect("search");
        let limit = (free.largest_intermediate / 4.0).floor();
        let limits = Limits {
            memory_limit: Some(limit),
            allow_slicing: true,
            trials: Some(8),
            ..Limits::default()
        };
        let Ok(info) = order::search(&inputs, &net.out, &sizes, Optimizer::Hyper, &limits) else {
            continue; // e.g. the output itself is over the limit
        };
        assert!(info.largest_intermediate <= limit, "{}", net.eq);
        if let Some(s) = &info.slicing {
            sliced_trees += 1;
            assert!(s.overhead >= 1.0 - 1e-12);
            assert!((info.flops - s.slices * s.per_slice_flops).abs() <= 1e-9 * info.flops);
            for l in &s.labels {
                assert!(!net.out.contains(l), "{}: output label sliced", net.eq);
            }
        }

        let shapes = net.shapes();
        let arrays = arrays(&shapes);
        let want = reference(&net, &arrays);
        for optimizer in [Optimizer::Greedy, Optimizer::Hyper] {
            let cfg = CompileConfig {
                plan: PlanConfig {
                    optimizer,
                    limits: limits.clone(),
                    ..PlanConfig::default()
                },
                ..CompileConfig::default()
            };
            let dtypes = vec![DType::F64; shapes.len()];
            let Ok(expr) = einc::compile_with_config(&net.eq, &shapes, &dtypes, &cfg) else {
                continue; // the plan's own pre-processing may need more than the limit
            };
            let plan = &expr.compiled().plan;
            assert!(plan.verify().is_ok());
            // A factor reduced outside the body (no sliced index) is never larger
            // than the input it comes from.
            let largest_input = shapes
                .iter()
                .map(|s| s.iter().product::<usize>() as f64)
                .fold(0.0, f64::max);
            assert!(
                plan.largest_intermediate() <= limit.max(largest_input),
                "{} {optimizer}",
                net.eq
            );
            if plan
                .steps
                .iter()
                .any(|s| matches!(s.op, einc_compiler::plan::Op::SliceSum { .. }))
            {
                sliced_plans += 1;
            }
            run_and_check(&expr, &arrays, &want, &format!("{} {optimizer}", net.eq));
        }
    }
    assert!(sliced_trees >= 5, "only {sliced_trees} sliced trees");
    assert!(sliced_plans >= 10, "only {sliced_plans} sliced plans");
}

fn einc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_einc"))
        .args(args)
        .output()
        .expect("run einc")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("einc-paths-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

/// A 4x4 periodic lattice with bond 4: big enough for hyper and slicing.
fn lattice_eq() -> (String, String) {
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        .chars()
        .collect();
    let (w, h) = (4, 4);
    let mut terms = vec![String::new(); w * h];
    let mut k = 0;
    for y in 0..h {
        for x in 0..w {
            for (nx, ny) in [((x + 1) % w, y), (x, (y + 1) % h)] {
                terms[y * w + x].push(letters[k]);
                terms[ny * w + nx].push(letters[k]);
                k += 1;
            }
        }
    }
    let shapes: Vec<String> = terms.iter().map(|t| vec!["4"; t.len()].join("x")).collect();
    (format!("{}->", terms.join(",")), shapes.join(","))
}

#[test]
fn hyper_json_is_deterministic_and_has_the_new_keys() {
    let (eq, shapes) = lattice_eq();
    let args = [
        "path",
        &eq,
        "--shapes",
        &shapes,
        "--optimizer",
        "hyper",
        "--seed",
        "3",
        "--trials",
        "12",
        "--json",
    ];
    let a = json(&einc(&args));
    let b = json(&einc(&args));
    assert_eq!(a["path"], b["path"]);
    assert_eq!(a["flops"], b["flops"]);
    assert_eq!(a["optimizer"], "hyper");
    assert_eq!(a["trials"], 12);
    assert_eq!(a["slices"], 1.0);
    assert_eq!(a["sliced_indices"], serde_json::json!([]));
    assert!(a["cost"].as_f64().unwrap() * 2.0 >= a["flops"].as_f64().unwrap() * 0.999);
    let greedy = json(&einc(&[
        "path",
        &eq,
        "--shapes",
        &shapes,
        "--optimizer",
        "greedy",
        "--json",
    ]));
    assert!(a["flops"].as_f64() <= greedy["flops"].as_f64());
}

#[test]
fn memory_limit_slices_or_constrains() {
    let (eq, shapes) = lattice_eq();
    let free = json(&einc(&[
        "path", &eq, "--shapes", &shapes, "--trials", "8", "--json",
    ]));
    let largest = free["largest_intermediate"].as_f64().unwrap();
    let limit = (largest / 64.0).to_string();
    let sliced = json(&einc(&[
        "path",
        &eq,
        "--shapes",
        &shapes,
        "--trials",
        "8",
        "--memory-limit",
        &limit,
        "--json",
    ]));
    assert!(sliced["largest_intermediate"].as_f64().unwrap() <= largest / 64.0);
    let slices = sliced["slices"].as_f64().unwrap();
    let labels = sliced["sliced_indices"].as_array().unwrap();
    if slices > 1.0 {
        assert!(!labels.is_empty());
        assert!(sliced["slicing_overhead"].as_f64().unwrap() >= 1.0);
    }
    // Without slicing the limit may be impossible (every pair of neighbours
    // already exceeds it); either way it is never broken.
    let o = einc(&[
        "path",
        &eq,
        "--shapes",
        &shapes,
        "--trials",
        "8",
        "--memory-limit",
        &limit,
        "--no-slicing",
        "--json",
    ]);
    if o.status.success() {
        let constrained = json(&o);
        assert_eq!(constrained["slices"], 1.0);
        assert!(constrained["largest_intermediate"].as_f64().unwrap() <= largest / 64.0);
    } else {
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("memory limit"));
    }
    // Text output names the slicing.
    let o = einc(&[
        "path",
        &eq,
        "--shapes",
        &shapes,
        "--trials",
        "8",
        "--memory-limit",
        &limit,
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    if slices > 1.0 {
        assert!(text.contains("slices:"), "{text}");
    }
}

#[test]
fn instances_with_unicode_digits_diagonals_and_hyperedges() {
    let d = tmp("instance");
    let file = d.join("inst.json");
    // `é` and a combining mark are separate indices, `0` is an index, `a`
    // repeats in one operand (a diagonal) and `b` is a hyperedge.
    let inst = serde_json::json!({
        "format_string": "aab,b0,bé\u{301},\u{301}0->é",
        "shapes": [[2, 2, 3], [3, 4], [3, 5, 6], [6, 4]],
    });
    std::fs::write(&file, inst.to_string()).unwrap();
    let f = file.display().to_string();
    for opt in ["greedy", "optimal", "hyper", "auto"] {
        let v = json(&einc(&[
            "path",
            "--instance",
            &f,
            "--optimizer",
            opt,
            "--json",
        ]));
        assert_eq!(v["path"].as_array().map(|p| p.len()), Some(3), "{opt}");
    }
    for (bad, why) in [
        (
            serde_json::json!({"format_string": "ab,bc->ac", "shapes": [[2, 3]]}),
            "shapes",
        ),
        (
            serde_json::json!({"format_string": "ab,bc->ac", "shapes": [[2, 3], [4, 5]]}),
            "sizes",
        ),
        (
            serde_json::json!({"format_string": "ab,bc", "shapes": [[2, 3], [3, 5]]}),
            "->",
        ),
        (
            serde_json::json!({"format_string": "ab,bc->z", "shapes": [[2, 3], [3, 5]]}),
            "no operand",
        ),
        (serde_json::json!({"shapes": []}), "format_string"),
    ] {
        std::fs::write(&file, bad.to_string()).unwrap();
        let o = einc(&["path", "--instance", &f]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(why) && !e.contains("panicked"), "{bad}: {e}");
    }
    std::fs::write(&file, "not json").unwrap();
    assert_eq!(einc(&["path", "--instance", &f]).status.code(), Some(1));
}

#[test]
fn dot_and_svg_drawings() {
    let d = tmp("dot");
    let dot = d.join("tree.dot");
    let svg = d.join("tree.svg");
    let o = einc(&[
        "path",
        "ij,jk,kl->il",
        "--shapes",
        "2x3,3x4,4x5",
        "--dot",
        &dot.display().to_string(),
    ]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(
        text.starts_with("digraph")
            && text.contains("0 -> 3")
            && text.contains("3 -> 4")
            && text.contains("label=\"il\\nflops"),
        "{text}"
    );
    let o = einc(&[
        "path",
        "ij,jk,kl->il",
        "--shapes",
        "2x3,3x4,4x5",
        "--svg",
        &svg.display().to_string(),
    ]);
    let has_dot = Command::new("dot").arg("-V").output().is_ok();
    if has_dot {
        assert!(o.status.success());
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    } else {
        assert_eq!(o.status.code(), Some(1));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("Graphviz") && e.contains("--dot"), "{e}");
    }
}

#[test]
fn bad_search_options_are_user_errors() {
    for args in [
        vec![
            "path",
            "ij,jk->ik",
            "--shapes",
            "2x3,3x4",
            "--time-limit",
            "-1",
        ],
        vec![
            "path",
            "ij,jk->ik",
            "--shapes",
            "2x3,3x4",
            "--optimizer",
            "dp",
        ],
        vec![
            "path",
            "ij,jk->ik",
            "--shapes",
            "2x3,3x4",
            "--memory-limit",
            "1",
        ],
        vec!["path", "ij,jk->ik"],
    ] {
        let o = einc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
}
