//! Comparisons with opt_einsum 3.4 / cotengra numbers in `shared/paths` and
//! `shared/conformance` (skipped, loudly, when the files are absent).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use super::super::*;

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/paths/suite.json");
const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/paths/reference.jsonl"
);
const CONFORMANCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/conformance.jsonl"
);

fn read(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            println!("SKIP: cannot read {path}: {e}");
            None
        }
    }
}

/// A problem in this module's terms, from an einsum equation.
struct Case {
    name: String,
    inputs: Vec<Vec<Label>>,
    output: Vec<Label>,
    sizes: Vec<u64>,
    /// An operand repeated a label; it was deduplicated, as opt_einsum's
    /// `contract_path` does with its index sets.
    had_repeats: bool,
}

/// Every char is one label (opt_einsum's rule), numbered by first use.
/// `size` gives each label's extent; an implicit output is the labels seen
/// exactly once. Returns `None` for ellipses.
fn parse(name: &str, eq: &str, size: impl Fn(char) -> Option<u64>) -> Option<Case> {
    let eq: String = eq.chars().filter(|&c| c != ' ').collect();
    if eq.contains('.') {
        return None;
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let mut ids: HashMap<char, Label> = HashMap::new();
    let mut sizes = Vec::new();
    let mut uses: HashMap<char, usize> = HashMap::new();
    let mut had_repeats = false;
    let mut inputs = Vec::new();
    for term in lhs.split(',') {
        let mut t = Vec::new();
        for c in term.chars() {
            *uses.entry(c).or_default() += 1;
            let next = ids.len() as Label;
            let id = *ids.entry(c).or_insert(next);
            if id == next {
                sizes.push(size(c)?);
            }
            if t.contains(&id) {
                had_repeats = true;
            } else {
                t.push(id);
            }
        }
        inputs.push(t);
    }
    let output = match rhs {
        Some(r) => r
            .chars()
            .map(|c| ids.get(&c).copied())
            .collect::<Option<_>>()?,
        None => {
            let mut once: Vec<char> = uses.iter().filter(|e| *e.1 == 1).map(|e| *e.0).collect();
            once.sort_unstable();
            once.iter().map(|c| ids[c]).collect()
        }
    };
    Some(Case {
        name: name.to_string(),
        inputs,
        output,
        sizes,
        had_repeats,
    })
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_f64(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// A reference path if it is a complete sequence of pairs (single-operand
/// steps, as opt_einsum's `dp` emits for labels private to one operand, and
/// sliced cotengra paths cannot be replayed pairwise).
fn pairwise_path(row: &Value, n: usize) -> Option<Path> {
    let steps = row.get("path")?.as_array()?;
    let mut pairs = Vec::new();
    for s in steps {
        let s = s.as_array()?;
        if s.len() != 2 {
            return None;
        }
        let (i, j) = (s[0].as_u64()? as usize, s[1].as_u64()? as usize);
        pairs.push((i.min(j), i.max(j)));
    }
    (pairs.len() + 1 == n).then_some(Path { pairs })
}

type Rows = HashMap<(String, String), Value>;

fn load_suite() -> Option<(Vec<Case>, Rows)> {
    let suite: Value = serde_json::from_str(&read(SUITE)?).ok()?;
    let reference = read(REFERENCE)?;
    let mut problems = Vec::new();
    for case in suite.get("cases")?.as_array()? {
        let name = case.get("name")?.as_str()?;
        let dims = case.get("size_dict")?.as_object()?;
        let size = |c: char| dims.get(&c.to_string())?.as_u64();
        problems.push(parse(name, case.get("eq")?.as_str()?, size)?);
    }
    let mut rows = HashMap::new();
    for line in reference.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).ok()?;
        let key = (
            row.get("case")?.as_str()?.to_string(),
            row.get("optimizer")?.as_str()?.to_string(),
        );
        rows.insert(key, row);
    }
    Some((problems, rows))
}

fn ok_row<'a>(rows: &'a Rows, case: &str, optimizer: &str) -> Option<&'a Value> {
    let row = rows.get(&(case.to_string(), optimizer.to_string()))?;
    (row.get("status")?.as_str()? == "ok").then_some(row)
}

/// Our `evaluate` reproduces the published costs of every replayable path,
/// which pins down the `flops`, `cost` and `largest_intermediate` conventions.
#[test]
fn evaluate_matches_published_costs() {
    let Some((problems, rows)) = load_suite() else {
        return;
    };
    let mut checked = 0;
    for p in &problems {
        for ((case, opt), row) in &rows {
            if case != &p.name || row.get("status").and_then(Value::as_str) != Some("ok") {
                continue;
            }
            let Some(path) = pairwise_path(row, p.inputs.len()) else {
                continue;
            };
            let info = evaluate(&p.inputs, &p.output, &p.sizes, &path)
                .unwrap_or_else(|e| panic!("{case}/{opt}: {e}"));
            let want = |k: &str| row.get(k).and_then(num);
            let what = format!("{case}/{opt}");
            assert!(
                close(info.flops, want("oe_opt_cost").unwrap()),
                "{what} flops"
            );
            // cotengra takes diagonals of repeated labels as separate steps.
            if !p.had_repeats {
                assert!(close(info.cost, want("ctg_cost").unwrap()), "{what} cost");
            }
            let largest = want("oe_largest_intermediate").unwrap();
            assert!(close(info.largest_intermediate, largest), "{what} largest");
            checked += 1;
        }
    }
    println!("replayed {checked} published paths exactly");
    assert!(checked > 100);
}

/// `optimal` is never worse than any published pairwise path on problems of
/// up to 12 tensors, and equals opt_einsum's `optimal`/`dp` wherever those
/// are themselves optimal.
#[test]
fn optimal_against_opt_einsum() {
    let Some((problems, rows)) = load_suite() else {
        return;
    };
    // Per reference (oe_optimal, oe_dp): equal, lower, higher.
    let (mut tally, mut higher, mut cases) = ([[0; 3]; 2], Vec::new(), 0);
    println!(
        "{:<28} {:>3} {:>14} {:>14} {:>14} {:>9}",
        "case", "n", "ours", "oe_optimal", "oe_dp", "time"
    );
    for p in problems.iter().filter(|p| p.inputs.len() <= 20) {
        let oe_opt = ok_row(&rows, &p.name, "oe_optimal");
        let oe_dp = ok_row(&rows, &p.name, "oe_dp");
        if oe_opt.is_none() && oe_dp.is_none() {
            continue;
        }
        cases += 1;
        let t = Instant::now();
        let ours = search(
            &p.inputs,
            &p.output,
            &p.sizes,
            Optimizer::Optimal,
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let elapsed = t.elapsed();
        assert_eq!(ours.optimizer, Optimizer::Optimal);
        let cost = |r: Option<&Value>| r.and_then(|r| r.get("oe_opt_cost")).and_then(num);
        let (c_opt, c_dp) = (cost(oe_opt), cost(oe_dp));
        let fmt = |c: Option<f64>| c.map_or("-".to_string(), |c| c.to_string());
        println!(
            "{:<28} {:>3} {:>14} {:>14} {:>14} {:>9.2?}{}",
            p.name,
            p.inputs.len(),
            ours.flops,
            fmt(c_opt),
            fmt(c_dp),
            elapsed,
            if p.had_repeats {
                "  (repeated labels)"
            } else {
                ""
            }
        );
        // Any replayable published path is an upper bound on the optimum.
        for ((case, opt), row) in &rows {
            if case != &p.name || row.get("status").and_then(Value::as_str) != Some("ok") {
                continue;
            }
            if let Some(path) = pairwise_path(row, p.inputs.len()) {
                let theirs = evaluate(&p.inputs, &p.output, &p.sizes, &path)
                    .unwrap()
                    .flops;
                assert!(
                    ours.flops <= theirs * (1.0 + 1e-9),
                    "{case}: {opt} is cheaper"
                );
            }
        }
        for (k, c) in [c_opt, c_dp].into_iter().enumerate() {
            let Some(c) = c else { continue };
            if close(ours.flops, c) {
                tally[k][0] += 1;
            } else if ours.flops < c {
                tally[k][1] += 1;
            } else {
                tally[k][2] += 1;
                higher.push(format!("{} ({})", p.name, ["oe_optimal", "oe_dp"][k]));
            }
        }
    }
    for (k, name) in ["oe_optimal", "oe_dp"].into_iter().enumerate() {
        let [e, b, h] = tally[k];
        println!("optimal vs {name}: {e} equal, {b} lower, {h} higher");
    }
    println!("optimal: {cases} cases; higher: {higher:?}");
    // opt_einsum's `dp` may sum an operand's private labels in a step of
    // its own (oet_acdf_jbje); `optimal` tries that pre-reduction too.
    assert!(higher.is_empty(), "optimal above opt_einsum: {higher:?}");
}

/// The case where opt_einsum's `dp` beat a purely pairwise optimum by
/// reducing a private label first.
#[test]
fn optimal_matches_dp_with_private_labels() {
    let Some((problems, rows)) = load_suite() else {
        return;
    };
    let p = problems.iter().find(|p| p.name == "oet_acdf_jbje").unwrap();
    let dp = ok_row(&rows, &p.name, "oe_dp")
        .and_then(|r| r.get("oe_opt_cost"))
        .and_then(num)
        .unwrap();
    let ours = search(
        &p.inputs,
        &p.output,
        &p.sizes,
        Optimizer::Optimal,
        &Limits::default(),
    )
    .unwrap();
    assert!(ours.flops <= dp * (1.0 + 1e-9), "{} > {dp}", ours.flops);
    assert!(!ours.pre_reduced.is_empty());
}

/// `greedy` reproduces opt_einsum's greedy: never more flops, same path
/// wherever opt_einsum's bookkeeping is followed to the letter.
#[test]
fn greedy_against_opt_einsum() {
    let Some((problems, rows)) = load_suite() else {
        return;
    };
    let (mut better, mut equal, mut same_path, mut worse) = (0, 0, 0, Vec::new());
    for p in &problems {
        let Some(row) = ok_row(&rows, &p.name, "oe_greedy") else {
            continue;
        };
        let theirs = row.get("oe_opt_cost").and_then(num).unwrap();
        let t = Instant::now();
        let ours = search(
            &p.inputs,
            &p.output,
            &p.sizes,
            Optimizer::Greedy,
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let elapsed = t.elapsed();
        let again = evaluate(&p.inputs, &p.output, &p.sizes, &ours.path).unwrap();
        assert_eq!(again.steps, ours.steps, "{}", p.name);
        if pairwise_path(row, p.inputs.len()).as_ref() == Some(&ours.path) {
            same_path += 1;
        }
        if close(ours.flops, theirs) {
            equal += 1;
        } else if ours.flops < theirs {
            better += 1;
        } else {
            worse.push(format!("{}: {} > {theirs}", p.name, ours.flops));
        }
        if p.inputs.len() >= 100 {
            println!("greedy {:<28} n={:<4} {elapsed:?}", p.name, p.inputs.len());
        }
    }
    println!(
        "greedy: {equal} equal, {better} better, {} worse than oe_greedy; {same_path} identical paths",
        worse.len()
    );
    assert!(worse.is_empty(), "worse than opt_einsum greedy: {worse:#?}");
}

/// Conformance cases carry opt_einsum greedy flops for their shapes.
#[test]
fn greedy_against_conformance() {
    let Some(text) = read(CONFORMANCE) else {
        return;
    };
    let (mut checked, mut skipped, mut worse) = (0, 0, Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(row) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(true), Some(want), Some(eq), Some(shapes)) = (
            row.get("valid").and_then(Value::as_bool),
            row.get("oe_greedy_flops").and_then(num),
            row.get("eq").and_then(Value::as_str),
            row.get("shapes").and_then(Value::as_array),
        ) else {
            continue;
        };
        let Some(p) = conformance_problem(eq, shapes) else {
            skipped += 1;
            continue;
        };
        if p.had_repeats || p.inputs.len() < 2 {
            skipped += 1;
            continue;
        }
        let ours = search(
            &p.inputs,
            &p.output,
            &p.sizes,
            Optimizer::Greedy,
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{eq}: {e}"));
        if !close(ours.flops, want) {
            worse.push(format!("{eq}: {} vs {want}", ours.flops));
        }
        if let Some(largest) = row.get("oe_greedy_largest_intermediate").and_then(num) {
            assert!(close(ours.largest_intermediate, largest), "{eq} largest");
        }
        checked += 1;
    }
    println!("conformance: {checked} greedy costs equal, {skipped} skipped");
    assert!(worse.is_empty(), "{worse:#?}");
    assert!(checked > 100);
}

/// Label sizes from operand shapes; a size-1 dimension broadcasts, so a
/// size first seen as 1 takes the next extent (opt_einsum's `contract_path`).
fn conformance_problem(eq: &str, shapes: &[Value]) -> Option<Case> {
    let eq_nospace: String = eq.chars().filter(|&c| c != ' ').collect();
    let lhs = eq_nospace.split("->").next()?;
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != shapes.len() {
        return None;
    }
    let mut dims: HashMap<char, u64> = HashMap::new();
    for (term, shape) in terms.iter().zip(shapes) {
        let shape = shape.as_array()?;
        if term.chars().count() != shape.len() {
            return None;
        }
        for (c, d) in term.chars().zip(shape) {
            let d = d.as_u64()?;
            let e = dims.entry(c).or_insert(d);
            if *e == 1 {
                *e = d;
            }
        }
    }
    parse(eq, eq, |c| dims.get(&c).copied())
}
