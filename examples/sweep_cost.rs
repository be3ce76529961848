//! Flops of a sweep path (`order::sweep`: one intermediate absorbing the inputs one at a
//! time) against the searched tree (compile budget, as plans search) on the paths suite's
//! MPS and lattice networks, and the plan's own memory choice for each (its `memory:`
//! note: a rotated tree or a sweep, with its flops against the plan's searched tree):
//! the figures behind `plan::SWEEP_FLOPS`.
//! Usage: `cargo run --release --example sweep_cost [SUITE]`
//! (default `../shared/paths/suite.json`).
use einc_compiler::order::{evaluate, search, sweep, Budget, Limits, Optimizer};
use einc_compiler::pipeline::{compile_einsum, CompileConfig};
use einc_frontend::ein::ast::DType;
use serde_json::Value;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/paths/suite.json".into());
    if let Err(e) = run(&path) {
        eprintln!("sweep_cost: {path}: {e}");
        std::process::exit(1);
    }
}

fn run(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let suite: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let cases = suite["cases"].as_array().ok_or("no \"cases\" array")?;
    for c in cases {
        let name = c["name"].as_str().unwrap_or("?");
        if !(name.contains("lattice") || name.contains("mps")) {
            continue;
        }
        let eq = c["eq"].as_str().ok_or("a case without \"eq\"")?;
        let (lhs, rhs) = eq.split_once("->").ok_or("an equation without \"->\"")?;
        let mut ids: Vec<char> = Vec::new();
        let mut label = |ch: char| -> u32 {
            let at = ids.iter().position(|&x| x == ch).unwrap_or_else(|| {
                ids.push(ch);
                ids.len() - 1
            });
            at as u32
        };
        let inputs: Vec<Vec<u32>> = lhs
            .split(',')
            .map(|t| t.chars().map(&mut label).collect())
            .collect();
        let output: Vec<u32> = rhs.chars().map(&mut label).collect();
        // The suite stores its size dictionaries as Python reprs.
        let dict: Value = match &c["size_dict"] {
            Value::String(x) => {
                serde_json::from_str(&x.replace('\'', "\"")).map_err(|e| e.to_string())?
            }
            v => v.clone(),
        };
        let sizes = ids
            .iter()
            .map(|ch| {
                dict[ch.to_string()]
                    .as_u64()
                    .ok_or(format!("{name}: no size for {ch}"))
            })
            .collect::<Result<Vec<u64>, String>>()?;
        let limits = Limits {
            budget: Some(Budget::Compile),
            ..Limits::default()
        };
        let tree = search(&inputs, &output, &sizes, Optimizer::Auto, &limits)
            .map_err(|e| e.to_string())?;
        let path = sweep(&inputs, &output, &sizes).map_err(|e| e.to_string())?;
        let swept = evaluate(&inputs, &output, &sizes, &path).map_err(|e| e.to_string())?;
        println!(
            "{name}: searched tree {:.4e} flops, sweep {:.4e} ({:.2}x)",
            tree.flops,
            swept.flops,
            swept.flops / tree.flops
        );
        let shapes: Vec<Vec<usize>> = inputs
            .iter()
            .map(|t| t.iter().map(|&l| sizes[l as usize] as usize).collect())
            .collect();
        let dtypes = vec![DType::F32; shapes.len()];
        let plan = compile_einsum(eq, &shapes, &dtypes, &CompileConfig::default())
            .map_err(|e| format!("{name}: {e}"))?
            .plan;
        let note = plan.notes.iter().find(|n| n.starts_with("memory:"));
        println!(
            "  plan: {}",
            note.map_or("the searched tree", |n| n.as_str())
        );
    }
    Ok(())
}
