//! Contraction-order benchmark against opt_einsum and cotengra.
//!
//! Runs every problem of `../shared/paths/suite.json` and `instances.jsonl`
//! with einc's `greedy`, `hyper`, `auto` (and `optimal` up to 20 inputs),
//! prints cost (log10 flops, opt_einsum `opt_cost`) and search time next to
//! the reference columns, checks the acceptance points of the order-search
//! issue and prints a summary, plus a memory-limit (slicing) section.
//!
//! `cargo bench --bench paths -- [--filter SUBSTR] [--trials N]
//! [--time-limit SECONDS] [--repeat R] [--seed S] [--markdown FILE]`

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use einc_compiler::order::{default_trials, search, Label, Limits, Optimizer, PathInfo};
use serde_json::Value;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/paths");

struct Problem {
    name: String,
    source: &'static str,
    inputs: Vec<Vec<Label>>,
    output: Vec<Label>,
    sizes: Vec<u64>,
    /// Best cost (log10 opt_cost) of any opt_einsum optimizer, and which.
    oe_best: Option<(f64, String)>,
    oe_greedy: Option<(f64, f64)>,
    /// Exact optimum from opt_einsum `optimal`/`dp`, when one finished.
    oe_exact: Option<f64>,
    /// cotengra hyper (best row): log10 cost and search seconds.
    ctg: Option<(f64, f64)>,
    /// Reference costs are exact (suite) rather than log10 rounded to 4
    /// decimals (instances): sets the comparison tolerance.
    exact: bool,
}

struct Args {
    filter: Option<String>,
    trials: Option<usize>,
    time_limit: f64,
    repeat: usize,
    seed: u64,
    markdown: Option<String>,
    skip_memory: bool,
    /// Time only `greedy` (hyper and auto become a single trial).
    greedy_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        filter: None,
        trials: None,
        time_limit: 30.0,
        repeat: 3,
        seed: 0,
        markdown: None,
        skip_memory: false,
        greedy_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match k.as_str() {
            "--filter" => a.filter = Some(val()),
            "--trials" => a.trials = val().parse().ok(),
            "--time-limit" => a.time_limit = val().parse().unwrap_or(a.time_limit),
            "--repeat" => a.repeat = val().parse().unwrap_or(a.repeat).max(1),
            "--seed" => a.seed = val().parse().unwrap_or(0),
            "--markdown" => a.markdown = Some(val()),
            "--no-memory" => a.skip_memory = true,
            "--greedy-only" => {
                a.greedy_only = true;
                a.skip_memory = true;
                a.trials = Some(1);
            }
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

/// Inputs, output and sizes of a parsed equation.
type Parsed = (Vec<Vec<Label>>, Vec<Label>, Vec<u64>);

/// Every char is one label (opt_einsum's rule); repeated labels within an
/// operand are deduplicated as opt_einsum's `contract_path` does.
fn parse_eq(eq: &str, size: impl Fn(usize, usize, char) -> Option<u64>) -> Option<Parsed> {
    let (lhs, rhs) = eq.split_once("->")?;
    let mut ids: HashMap<char, Label> = HashMap::new();
    let mut sizes = Vec::new();
    let mut inputs = Vec::new();
    for (k, term) in lhs.split(',').enumerate() {
        let mut t = Vec::new();
        for (j, c) in term.chars().enumerate() {
            let next = ids.len() as Label;
            let id = *ids.entry(c).or_insert(next);
            if id == next {
                sizes.push(size(k, j, c)?);
            }
            if !t.contains(&id) {
                t.push(id);
            }
        }
        inputs.push(t);
    }
    let output = rhs
        .chars()
        .map(|c| ids.get(&c).copied())
        .collect::<Option<_>>()?;
    Some((inputs, output, sizes))
}

fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        other => other.as_f64(),
    }
}

fn load() -> Vec<Problem> {
    let mut out = Vec::new();
    let suite: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{SHARED}/suite.json")).expect("suite.json"),
    )
    .expect("suite.json is JSON");
    let mut rows: HashMap<(String, String), Value> = HashMap::new();
    for line in std::fs::read_to_string(format!("{SHARED}/reference.jsonl"))
        .expect("reference.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let r: Value = serde_json::from_str(line).expect("reference row");
        let key = (
            r["case"].as_str().unwrap_or("").to_string(),
            r["optimizer"].as_str().unwrap_or("").to_string(),
        );
        rows.insert(key, r);
    }
    let ok = |case: &str, opt: &str| {
        rows.get(&(case.to_string(), opt.to_string()))
            .filter(|r| r["status"].as_str() == Some("ok"))
    };
    for case in suite["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("").to_string();
        let dims = case["size_dict"].as_object().expect("size_dict");
        let eq: String = case["eq"]
            .as_str()
            .unwrap_or("")
            .chars()
            .filter(|&c| c != ' ')
            .collect();
        let Some((inputs, output, sizes)) =
            parse_eq(&eq, |_, _, c| dims.get(&c.to_string())?.as_u64())
        else {
            eprintln!("skip {name}: cannot parse");
            continue;
        };
        let mut oe_best: Option<(f64, String)> = None;
        for opt in ["oe_greedy", "oe_dp", "oe_optimal", "oe_branch2"] {
            // Exact costs (strings in the file), not the rounded log10 column.
            if let Some(c) = ok(&name, opt).and_then(|r| Some(num(r.get("oe_opt_cost"))?.log10())) {
                if oe_best.as_ref().is_none_or(|b| c < b.0) {
                    oe_best = Some((c, opt.to_string()));
                }
            }
        }
        let oe_greedy = ok(&name, "oe_greedy").and_then(|r| {
            Some((
                num(r.get("oe_opt_cost"))?.log10(),
                num(r.get("search_time_s"))?,
            ))
        });
        let oe_exact = ["oe_optimal", "oe_dp"]
            .iter()
            .filter_map(|o| ok(&name, o).and_then(|r| Some(num(r.get("oe_opt_cost"))?.log10())))
            .reduce(f64::min);
        let mut ctg: Option<(f64, f64)> = None;
        for opt in ["ctg_hyper_greedy_labels", "ctg_hyper_greedy_kahypar"] {
            if let Some(r) = ok(&name, opt) {
                let (Some(c), Some(t)) = (
                    num(r.get("oe_opt_cost")).map(f64::log10),
                    num(r.get("search_time_s")),
                ) else {
                    continue;
                };
                if ctg.is_none_or(|b| c < b.0) {
                    ctg = Some((c, t));
                }
            }
        }
        out.push(Problem {
            name,
            source: "suite",
            inputs,
            output,
            sizes,
            oe_best,
            oe_greedy,
            oe_exact,
            ctg,
            exact: true,
        });
    }
    for line in std::fs::read_to_string(format!("{SHARED}/instances.jsonl"))
        .expect("instances.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let r: Value = serde_json::from_str(line).expect("instance row");
        let name = r["name"].as_str().unwrap_or("").to_string();
        let shapes: Vec<Vec<u64>> = serde_json::from_value(r["shapes"].clone()).expect("shapes");
        let Some((inputs, output, sizes)) =
            parse_eq(r["format_string"].as_str().unwrap_or(""), |k, j, _| {
                shapes.get(k)?.get(j).copied()
            })
        else {
            eprintln!("skip {name}: cannot parse");
            continue;
        };
        let rf = &r["reference"];
        let g = num(rf.get("greedy_flops_log10"));
        let ctg = if rf["ctg_status"].as_str() == Some("ok") {
            num(rf.get("ctg_flops_log10")).zip(num(rf.get("ctg_time_s")))
        } else {
            None
        };
        out.push(Problem {
            name,
            source: "instances",
            inputs,
            output,
            sizes,
            oe_best: g.map(|g| (g, "oe_greedy".to_string())),
            oe_greedy: g.zip(num(rf.get("greedy_time_s"))),
            oe_exact: None,
            ctg,
            exact: false,
        });
    }
    out
}

/// Runs a search `repeat` times after one warm-up; returns the result and
/// the median time. Slow searches (over 2 s) are timed once.
fn timed(p: &Problem, o: Optimizer, limits: &Limits, repeat: usize) -> (PathInfo, f64) {
    let run = || {
        let t = Instant::now();
        let r = search(&p.inputs, &p.output, &p.sizes, o, limits)
            .unwrap_or_else(|e| panic!("{} {o}: {e}", p.name));
        (r, t.elapsed().as_secs_f64())
    };
    let (first, t0) = run();
    if t0 > 2.0 || repeat == 1 {
        return (first, t0);
    }
    let mut times: Vec<f64> = (0..repeat).map(|_| run().1).collect();
    times.sort_by(f64::total_cmp);
    (first, times[times.len() / 2])
}

fn geomean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn main() {
    let a = args();
    let problems: Vec<Problem> = load()
        .into_iter()
        .filter(|p| {
            a.filter
                .as_ref()
                .is_none_or(|f| f.split(',').any(|f| p.name.contains(f)))
        })
        .collect();
    let mut md = String::new();
    let header = String::from(
        "| problem | n | oe best | oe greedy s | ctg hyper | ctg s | einc greedy | s | einc hyper | s | trials | einc auto | s | optimal | checks |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    println!("{header}");
    md.push_str(&header);
    md.push('\n');
    let lg = |x: f64| x.log10();
    let (mut auto_ok, mut auto_checked, mut auto_miss) = (0, 0, Vec::new());
    let (mut ratio_cost, mut ratio_time, mut hyper_rows) = (Vec::new(), Vec::new(), Vec::new());
    let (mut greedy_fast, mut greedy_checked, mut greedy_slow) = (0, 0, Vec::new());
    let (mut opt_eq, mut opt_checked, mut opt_miss) = (0, 0, Vec::new());
    for p in &problems {
        let n = p.inputs.len();
        let base = Limits {
            seed: a.seed,
            ..Limits::default()
        };
        // Greedy searches take micro- to milliseconds: a median of many runs keeps one
        // scheduler hiccup from deciding the comparison.
        let (g, tg) = timed(p, Optimizer::Greedy, &base, a.repeat.max(21));
        let hl = Limits {
            trials: Some(a.trials.unwrap_or_else(|| default_trials(n))),
            time_limit: Some(Duration::from_secs_f64(a.time_limit)),
            ..base.clone()
        };
        let (h, th) = if a.greedy_only {
            (g.clone(), tg)
        } else {
            timed(p, Optimizer::Hyper, &hl, a.repeat)
        };
        let (au, ta) = if a.greedy_only {
            (h.clone(), th)
        } else {
            timed(p, Optimizer::Auto, &base, a.repeat)
        };
        let opt = (n <= 20 && !a.greedy_only).then(|| {
            let l = Limits {
                time_limit: Some(Duration::from_secs(60)),
                ..base.clone()
            };
            timed(p, Optimizer::Optimal, &l, 1)
        });
        let mut checks = Vec::new();
        // Acceptance 1: auto <= best opt_einsum and <= 1.02 x cotengra.
        let c_auto = lg(au.flops);
        let tol = if p.exact { 1e-9 } else { 5e-5 };
        let mut ok = true;
        if let Some((b, _)) = &p.oe_best {
            ok &= c_auto <= b + tol;
        }
        if let Some((c, _)) = p.ctg {
            ok &= c_auto <= c + 1.02f64.log10() + tol;
        }
        auto_checked += 1;
        if ok {
            auto_ok += 1;
        } else {
            auto_miss.push(format!(
                "{} (auto {:.3} vs oe {:.3} / ctg {})",
                p.name,
                c_auto,
                p.oe_best.as_ref().map_or(f64::NAN, |b| b.0),
                p.ctg.map_or("-".into(), |c| format!("{:.3}", c.0))
            ));
            checks.push("AUTO-MISS");
        }
        // Acceptance 2 rows: cotengra beats opt_einsum greedy.
        if let (Some((c, ct)), Some((gr, _))) = (p.ctg, p.oe_greedy) {
            if c < gr - tol {
                ratio_cost.push(10f64.powf(lg(h.flops) - c));
                ratio_time.push(th / ct);
                hyper_rows.push(p.name.clone());
                if lg(h.flops) > c + tol {
                    checks.push("hyper>ctg");
                }
                if th > ct / 5.0 {
                    checks.push("hyper-slow");
                }
            }
        }
        // Acceptance 3: greedy speed on 50+ tensors.
        if let Some((_, gt)) = p.oe_greedy.filter(|_| n >= 50) {
            greedy_checked += 1;
            if tg <= gt / 10.0 {
                greedy_fast += 1;
            } else {
                greedy_slow.push(format!("{} ({:.4} s vs oe {:.4} s)", p.name, tg, gt));
                checks.push("greedy-slow");
            }
        }
        // Acceptance 4: optimal equals opt_einsum's exact optimizers.
        if let (Some((o, _)), Some(e)) = (&opt, p.oe_exact) {
            opt_checked += 1;
            let c = lg(o.flops);
            if (c - e).abs() <= 1e-5 {
                opt_eq += 1;
            } else if c < e {
                opt_eq += 1;
                checks.push("optimal<oe");
            } else {
                opt_miss.push(format!("{} ({c:.5} vs {e:.5})", p.name));
                checks.push("OPT-MISS");
            }
        }
        let f = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |x| format!("{x:.d$}"));
        let row = format!(
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.4} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {} | {} |",
            p.name,
            n,
            f(p.oe_best.as_ref().map(|b| b.0), 3),
            f(p.oe_greedy.map(|g| g.1), 4),
            f(p.ctg.map(|c| c.0), 3),
            f(p.ctg.map(|c| c.1), 2),
            lg(g.flops),
            tg,
            lg(h.flops),
            th,
            h.trials,
            c_auto,
            ta,
            f(opt.as_ref().map(|o| lg(o.0.flops)), 3),
            checks.join(" ")
        );
        println!("{row}");
        md.push_str(&row);
        md.push('\n');
        let _ = p.source;
    }
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "\nsum of log10(hyper / cotengra) over those rows: {:.3}",
        ratio_cost.iter().map(|r| r.log10()).sum::<f64>()
    );
    let _ = writeln!(summary, "\nSummary ({} problems):", problems.len());
    let _ = writeln!(
        summary,
        "- auto <= best opt_einsum and <= 1.02 x cotengra hyper: {auto_ok}/{auto_checked}; misses: {auto_miss:?}"
    );
    let _ = writeln!(
        summary,
        "- hyper vs cotengra hyper on the {} problems where cotengra beats opt_einsum greedy: geomean cost ratio {:.4}, geomean time ratio {:.4}; cost <= ctg on {}, time <= 1/5 on {}",
        hyper_rows.len(),
        geomean(&ratio_cost),
        geomean(&ratio_time),
        ratio_cost.iter().filter(|&&r| r <= 1.0 + 1e-6).count(),
        ratio_time.iter().filter(|&&r| r <= 0.2).count(),
    );
    if let Some((i, w)) = ratio_cost
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
    {
        let _ = writeln!(summary, "  worst cost ratio {w:.4} ({})", hyper_rows[i]);
    }
    if let Some((i, w)) = ratio_time
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
    {
        let _ = writeln!(summary, "  worst time ratio {w:.4} ({})", hyper_rows[i]);
    }
    let _ = writeln!(
        summary,
        "- greedy <= 1/10 of opt_einsum greedy time on 50+ tensors: {greedy_fast}/{greedy_checked}; slow: {greedy_slow:?}"
    );
    let _ = writeln!(
        summary,
        "- optimal == opt_einsum optimal/dp (or lower): {opt_eq}/{opt_checked}; misses: {opt_miss:?}"
    );
    print!("{summary}");
    md.push_str(&summary);
    if !a.skip_memory {
        let mem = memory_section(&problems, &a);
        print!("{mem}");
        md.push_str(&mem);
    }
    if let Some(path) = &a.markdown {
        std::fs::write(path, md).expect("write markdown");
    }
}

/// Slicing at 2^6 below the unconstrained largest intermediate.
fn memory_section(problems: &[Problem], a: &Args) -> String {
    let wanted = [
        "lattice_10x10_D4",
        "peps_norm_10x10_D2",
        "randreg3_n250",
        "str_lattice_15x37_d2-4_s0",
        "str_lattice_6x6x6_cyclic_d2_s0",
        "rnd_regular_n200_r3_d2-3_s0",
    ];
    let mut s = String::from(
        "\nMemory limit (2^6 below the unconstrained largest intermediate, hyper + slicing):\n\n\
         | problem | unsliced log10 flops | log2 largest | limit log2 | sliced total log10 flops | log2 largest | slices | sliced labels | overhead vs same tree | vs unsliced best | s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in problems
        .iter()
        .filter(|p| wanted.contains(&p.name.as_str()))
    {
        let base = Limits {
            seed: a.seed,
            trials: a.trials,
            ..Limits::default()
        };
        let free = search(&p.inputs, &p.output, &p.sizes, Optimizer::Hyper, &base)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let limit = free.largest_intermediate / 64.0;
        let l = Limits {
            memory_limit: Some(limit),
            allow_slicing: true,
            ..base.clone()
        };
        let t = Instant::now();
        let r = search(&p.inputs, &p.output, &p.sizes, Optimizer::Hyper, &l)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let secs = t.elapsed().as_secs_f64();
        let (slices, nl, over) = r
            .slicing
            .as_ref()
            .map_or((1.0, 0, 1.0), |s| (s.slices, s.labels.len(), s.overhead));
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.1} | {:.1} | {:.3} | {:.1} | {} | {} | {:.3} | {:.3} | {:.2} |",
            p.name,
            free.flops.log10(),
            free.largest_intermediate.log2(),
            limit.log2(),
            r.flops.log10(),
            r.largest_intermediate.log2(),
            slices,
            nl,
            over,
            r.flops / free.flops,
            secs
        );
    }
    s
}
