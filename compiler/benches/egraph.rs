//! The e-graph optimizer on the multi-statement workloads of
//! `../shared/workloads/egraph_workloads.json` (issue 6): per program, the naive and the
//! best known per-call cost (opt_einsum's `opt_cost`, constants' precomputation not
//! counted), einc's per-call plan cost and the optimizer's time (e-graph, order search
//! and planning), as a markdown table. Also times a 200-tensor network, where the
//! e-graph must step aside for the order search, and the path suite's 200-tensor networks
//! compiled as einsums, each with the compile budget (the default) and the order search's
//! own budget.
//!
//! `cargo bench -p einc-compiler --bench egraph` (set `EINC_SHARED` to the shared
//! directory when it is not `../shared` from the repository root).

use einc_compiler::dump;
use einc_compiler::ir::TensorId;
use einc_compiler::optimize;
use einc_compiler::order::{Budget, Optimizer};
use einc_compiler::pipeline::{self, CompileConfig};
use einc_frontend::ein::ast::DType;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

fn shared_dir() -> String {
    std::env::var("EINC_SHARED")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").into())
}

/// A workload as `.ein` source: dims, inputs (f64), statements, and every statement
/// target that no later statement reads as an output.
fn ein_source(w: &Value) -> String {
    let mut s = String::new();
    for (d, n) in w["sizes"].as_object().expect("sizes") {
        let _ = writeln!(s, "dim {d} = {n}");
    }
    for (name, idx) in w["inputs"].as_object().expect("inputs") {
        let idx: Vec<String> = idx
            .as_str()
            .expect("index string")
            .chars()
            .map(String::from)
            .collect();
        let _ = writeln!(s, "input {name}[{}]: f64", idx.join(", "));
    }
    let stmts: Vec<&str> = w["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|x| x.as_str().expect("statement"))
        .collect();
    let targets: Vec<&str> = stmts
        .iter()
        .map(|st| st.split('[').next().expect("target").trim())
        .collect();
    for st in &stmts {
        let _ = writeln!(s, "{st}");
    }
    let outputs: Vec<&str> = targets
        .iter()
        .enumerate()
        .filter(|(k, t)| {
            !stmts[k + 1..].iter().any(|st| {
                st.split('=')
                    .nth(1)
                    .is_some_and(|rhs| rhs.contains(&format!("{t}[")))
            })
        })
        .map(|(_, t)| *t)
        .collect();
    let _ = writeln!(s, "output {}", outputs.join(", "));
    s
}

fn main() {
    let path = format!("{}/workloads/egraph_workloads.json", shared_dir());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let workloads: Vec<Value> = serde_json::from_str(&text).expect("workload JSON");
    println!(
        "| program | naive | best known | einc per call | einc / best | einc contractions only | precomputed once | optimizer time | with --extractor lp: per call, time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in &workloads {
        let name = w["name"].as_str().expect("name");
        let src = ein_source(w);
        let (_, checked) =
            pipeline::check_ein(&src).unwrap_or_else(|d| panic!("{name}: {}", d.message));
        let constants: Vec<String> = w["constants"]
            .as_array()
            .expect("constants")
            .iter()
            .map(|c| c.as_str().expect("constant name").to_string())
            .collect();
        let mut cfg = CompileConfig::default();
        cfg.optimize.constants = constants.clone();
        // Best of 5 for the time; the plan is deterministic.
        let mut best_time = f64::INFINITY;
        let mut compiled = None;
        for _ in 0..5 {
            let t = Instant::now();
            let c = pipeline::compile_ein(&checked, &BTreeMap::new(), &cfg)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            best_time = best_time.min(t.elapsed().as_secs_f64());
            compiled = Some(c);
        }
        let c = compiled.expect("compiled at least once");
        if std::env::var("EINC_DUMP").is_ok_and(|d| d == name) {
            eprintln!("{}", dump::dump_program(&c.opt_ir));
            if let Some(r) = &c.report {
                eprintln!("{}", dump::dump_report(r));
            }
            eprintln!("{}", dump::dump_plan(&c.plan));
        }
        let ids: Vec<TensorId> = constants
            .iter()
            .map(|n| {
                c.plan
                    .program
                    .tensor_by_name(n)
                    .expect("constant is an input")
            })
            .collect();
        let contractions = c.plan.per_call_flops(&ids, true);
        let all = c.plan.per_call_flops(&ids, false);
        let once = c.plan.flops() - all;
        let naive = w["naive_cost"].as_f64().expect("naive_cost");
        let best = w["best_known_cost"].as_f64().expect("best_known_cost");
        // The same with the integer-programming extractor (best of 5 again).
        cfg.optimize.extractor = einc_compiler::optimize::Extractor::Lp;
        let mut lp_time = f64::INFINITY;
        let mut lp_flops = 0.0;
        for _ in 0..5 {
            let t = Instant::now();
            let c = pipeline::compile_ein(&checked, &BTreeMap::new(), &cfg)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            lp_time = lp_time.min(t.elapsed().as_secs_f64());
            lp_flops = c.plan.per_call_flops(&ids, false);
        }
        println!(
            "| {name} | {naive:.4e} | {best:.4e} | {all:.4e} | {:.3} | {contractions:.4e} | {once:.3e} | {:.2} ms | {lp_flops:.4e}, {:.2} ms |",
            all / best,
            best_time * 1e3,
            lp_time * 1e3
        );
    }
    lattice(10, 20);
    suite_networks(200);
}

/// The path suite's networks of `n` tensors (`../shared/paths/suite.json`), compiled as
/// einsums (what `einc::einsum` / `Expression` do): the compile budget (the default) and
/// the order search's own budget, with their plans' flops.
fn suite_networks(n: usize) {
    let path = format!("{}/paths/suite.json", shared_dir());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let suite: Value = serde_json::from_str(&text).expect("suite JSON");
    println!("\n| {n}-tensor network | compile budget: time | trials | plan flops | search budget: time | plan flops |");
    println!("|---|---:|---:|---:|---:|---:|");
    for case in suite["cases"].as_array().expect("cases") {
        let eq = case["eq"].as_str().expect("eq");
        let shapes: Vec<Vec<usize>> =
            serde_json::from_value(case["shapes"].clone()).expect("shapes");
        if shapes.len() != n {
            continue;
        }
        let name = case["name"].as_str().expect("name");
        let dtypes = vec![DType::F64; n];
        let mut row = format!("| {name} |");
        for (budget, repeat) in [(None, 3), (Some(Budget::Search), 1)] {
            let mut cfg = CompileConfig::default();
            cfg.plan.limits.budget = budget;
            let mut best_time = f64::INFINITY;
            let mut plan = None;
            for _ in 0..repeat {
                let t = Instant::now();
                let c = pipeline::compile_einsum(eq, &shapes, &dtypes, &cfg)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                best_time = best_time.min(t.elapsed().as_secs_f64());
                plan = Some(c.plan);
            }
            let plan = plan.expect("compiled at least once");
            let trials = plan
                .notes
                .iter()
                .find_map(|n| n.strip_prefix("hyper: ")?.split(' ').next())
                .unwrap_or("-");
            if budget.is_none() {
                let _ = write!(row, " {:.0} ms | {trials} |", best_time * 1e3);
            } else {
                let _ = write!(row, " {:.0} ms |", best_time * 1e3);
            }
            let _ = write!(row, " {:.4e} |", plan.flops());
        }
        println!("{row}");
    }
}

/// A `rows × cols` 2D lattice of tensors with bond dimension 2, contracted to one open
/// index: a single product of `rows * cols` factors.
fn lattice(rows: usize, cols: usize) {
    let mut s = String::from("dim x = 2\n");
    let h = |r: usize, c: usize| format!("h{r}_{c}");
    let v = |r: usize, c: usize| format!("v{r}_{c}");
    let mut factors = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            let mut idx = Vec::new();
            if r == 0 && c == 0 {
                idx.push("x".to_string());
            }
            if c + 1 < cols {
                idx.push(h(r, c));
            }
            if c > 0 {
                idx.push(h(r, c - 1));
            }
            if r + 1 < rows {
                idx.push(v(r, c));
            }
            if r > 0 {
                idx.push(v(r - 1, c));
            }
            for i in &idx {
                if i != "x" && !s.contains(&format!("dim {i} ")) {
                    let _ = writeln!(s, "dim {i} = 2");
                }
            }
            let _ = writeln!(s, "input T{r}_{c}[{}]: f64", idx.join(", "));
            factors.push(format!("T{r}_{c}[{}]", idx.join(", ")));
        }
    }
    let _ = writeln!(s, "Y[x] = {}", factors.join(" * "));
    let _ = writeln!(s, "output Y");
    let (_, checked) = pipeline::check_ein(&s).unwrap_or_else(|d| panic!("lattice: {}", d.message));
    // The default compile: hyper with the compile budget (`order::compile_budget`: a
    // few thousand tensor-trials and the light polish for a contraction this cheap);
    // the order search's own default (512 trials and the full polish at this size),
    // which is what the compile ran before the budget; opt_einsum's greedy.
    let runs = [
        ("auto, compile budget (the default)", Optimizer::Auto, None),
        ("auto, search budget", Optimizer::Auto, Some(Budget::Search)),
        ("greedy", Optimizer::Greedy, None),
    ];
    for (label, optimizer, budget) in runs {
        let mut cfg = CompileConfig::default();
        cfg.plan.optimizer = optimizer;
        cfg.plan.limits.budget = budget;
        let mut best_time = f64::INFINITY;
        let mut egraph_time = f64::INFINITY;
        let mut flops = 0.0;
        let mut stop = String::new();
        let mut notes = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let c = pipeline::compile_ein(&checked, &BTreeMap::new(), &cfg)
                .unwrap_or_else(|e| panic!("lattice: {e}"));
            best_time = best_time.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let (_, r) = optimize::optimize(&c.ir, &cfg.optimize);
            egraph_time = egraph_time.min(t.elapsed().as_secs_f64());
            flops = c.plan.flops();
            notes = c.plan.notes;
            stop = r.stop_reason;
        }
        println!(
            "\n{rows}x{cols} lattice ({} tensors, bond 2), order search {label}: \
             optimizer time {:.1} ms (e-graph pass {:.2} ms: {stop}), plan flops {flops:.4e} {notes:?}",
            rows * cols,
            best_time * 1e3,
            egraph_time * 1e3,
        );
    }
}
