//! `einc path`: contraction-order search from the command line, for an einsum
//! equation with shapes or an einsum-benchmark instance file; text or JSON
//! output, and the contraction tree as Graphviz DOT or SVG.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use einc::{Error, Optimizer};
use einc_compiler::dump;
use einc_compiler::order::{self, Label, Limits, PathInfo};
use einc_frontend::einsum;

#[derive(Clone, Copy, ValueEnum)]
pub enum PathOpt {
    Greedy,
    Optimal,
    Hyper,
    Auto,
}

impl PathOpt {
    fn get(self) -> Optimizer {
        match self {
            PathOpt::Greedy => Optimizer::Greedy,
            PathOpt::Optimal => Optimizer::Optimal,
            PathOpt::Hyper => Optimizer::Hyper,
            PathOpt::Auto => Optimizer::Auto,
        }
    }
}

#[derive(Args)]
pub struct PathArgs {
    /// The einsum equation (omit with --instance).
    #[arg(allow_hyphen_values = true, required_unless_present = "instance")]
    equation: Option<String>,
    /// Operand shapes: `2x3,3x4` (an empty entry is a scalar).
    #[arg(long, required_unless_present = "instance")]
    shapes: Option<String>,
    /// An einsum-benchmark instance: a JSON object with "format_string" and
    /// "shapes"; every character of the format string is one index.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["equation", "shapes"])]
    instance: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    optimizer: PathOpt,
    /// Largest intermediate allowed, in elements. Met by slicing indices
    /// (the tree then runs once per slice) or by a constrained search,
    /// whichever costs less.
    #[arg(long)]
    memory_limit: Option<f64>,
    /// Meet --memory-limit by constrained search only, never by slicing.
    #[arg(long)]
    no_slicing: bool,
    /// Seed of the randomised (hyper) search.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of hyper-search trials (default: by network size).
    #[arg(long)]
    trials: Option<usize>,
    /// Wall-clock budget of the search, in seconds.
    #[arg(long, value_name = "SECONDS")]
    time_limit: Option<f64>,
    #[arg(long)]
    json: bool,
    /// Write the contraction tree as Graphviz DOT.
    #[arg(long, value_name = "FILE")]
    dot: Option<PathBuf>,
    /// Write the contraction tree as SVG (needs Graphviz's `dot` program).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// A problem in the order search's terms, with printable label names.
struct Network {
    title: String,
    inputs: Vec<Vec<Label>>,
    output: Vec<Label>,
    sizes: Vec<u64>,
    names: Vec<String>,
}

pub fn run(a: PathArgs) -> Result<(), Error> {
    let net = match (&a.instance, &a.equation, &a.shapes) {
        (Some(file), _, _) => read_instance(file)?,
        (None, Some(eq), Some(shapes)) => from_equation(eq, shapes)?,
        _ => {
            return Err(Error::Runtime(
                "give an equation with --shapes, or --instance FILE.json".into(),
            ))
        }
    };
    let time_limit = match a.time_limit {
        Some(t) if !(t.is_finite() && t >= 0.0) => {
            return Err(Error::Runtime(format!(
                "--time-limit {t}: expected a non-negative number of seconds"
            )))
        }
        t => t.map(Duration::from_secs_f64),
    };
    let optimizer = a.optimizer.get();
    let progress = Arc::new(AtomicUsize::new(0));
    let limits = Limits {
        memory_limit: a.memory_limit,
        time_limit,
        seed: a.seed,
        trials: a.trials,
        budget: None,
        batch_weight: None,
        allow_slicing: !a.no_slicing,
        progress: Some(progress.clone()),
    };
    let n = net.inputs.len();
    let wanted = a.trials.unwrap_or_else(|| order::default_trials(n));
    let t0 = Instant::now();
    let info = with_progress(&progress, wanted, || {
        order::search(&net.inputs, &net.output, &net.sizes, optimizer, &limits)
    })
    .map_err(|e| Error::Runtime(e.to_string()))?;
    let secs = t0.elapsed().as_secs_f64();
    if a.dot.is_some() || a.svg.is_some() {
        let dot = to_dot(&net, &info);
        if let Some(p) = &a.dot {
            write(p, dot.as_bytes())?;
        }
        if let Some(p) = &a.svg {
            write(p, &render_svg(&dot)?)?;
        }
    }
    let sliced: Vec<&str> = info
        .slicing
        .iter()
        .flat_map(|s| s.labels.iter().map(|&l| net.names[l as usize].as_str()))
        .collect();
    let slices = info.slicing.as_ref().map_or(1.0, |s| s.slices);
    if a.json {
        let path: Vec<serde_json::Value> = info
            .path
            .pairs
            .iter()
            .map(|&(x, y)| serde_json::json!([x, y]))
            .collect();
        let obj = serde_json::json!({
            "equation": net.title,
            "optimizer": info.optimizer.name(),
            "path": path,
            "flops": info.flops,
            "cost": info.cost,
            "largest_intermediate": info.largest_intermediate,
            "write": info.write,
            "slices": slices,
            "sliced_indices": sliced,
            "slicing_overhead": info.slicing.as_ref().map_or(1.0, |s| s.overhead),
            "trials": info.trials,
            "pre_reduced": info.pre_reduced,
            "seed": a.seed,
            "notes": info.notes,
            "search_seconds": secs,
        });
        println!("{obj}");
    } else {
        println!("equation: {}", net.title);
        println!("optimizer: {}", info.optimizer.name());
        let pairs: Vec<String> = info
            .path
            .pairs
            .iter()
            .map(|(x, y)| format!("({x}, {y})"))
            .collect();
        println!("path: [{}]", pairs.join(", "));
        println!("flops: {}", dump::fmt_num(info.flops));
        println!("cost (multiply-adds): {}", dump::fmt_num(info.cost));
        println!(
            "largest intermediate: {}",
            dump::fmt_num(info.largest_intermediate)
        );
        if let Some(s) = &info.slicing {
            println!(
                "slices: {} over [{}] (overhead {:.3}x the same tree unsliced)",
                dump::fmt_num(s.slices),
                sliced.join(", "),
                s.overhead
            );
        }
        if !info.pre_reduced.is_empty() {
            println!(
                "inputs reduced first (private indices summed): {:?}",
                info.pre_reduced
            );
        }
        if info.trials > 0 {
            println!("trials: {} (seed {})", info.trials, a.seed);
        }
        for note in &info.notes {
            println!("note: {note}");
        }
        println!("search seconds: {secs:.6}");
    }
    Ok(())
}

/// Runs `f`, showing a progress bar on stderr if it takes over a second and
/// stderr is a terminal.
fn with_progress<T: Send>(done: &AtomicUsize, total: usize, f: impl FnOnce() -> T + Send) -> T {
    if !std::io::stderr().is_terminal() {
        return f();
    }
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            let mut bar: Option<indicatif::ProgressBar> = None;
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if bar.is_none() && start.elapsed() > Duration::from_secs(1) {
                    let b = indicatif::ProgressBar::new(total as u64);
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{elapsed} [{bar:40}] {pos}/{len} trials",
                    ) {
                        b.set_style(style);
                    }
                    bar = Some(b);
                }
                if let Some(b) = &bar {
                    b.set_position(done.load(Ordering::Relaxed) as u64);
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        let r = f();
        finished.store(true, Ordering::Relaxed);
        r
    })
}

fn write(p: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(p, bytes)
        .map_err(|e| Error::Runtime(format!("cannot write {}: {e}", p.display())))
}

/// The tree as DOT: leaves are the inputs with their indices, inner nodes
/// the steps with their result indices and cost, edges point to the result.
/// The tree is a petgraph graph; petgraph writes its nodes and edges, and the
/// graph attributes (bottom-to-top layout, monospace font) are added here.
fn to_dot(net: &Network, info: &PathInfo) -> String {
    use petgraph::dot::{Config, Dot};
    use petgraph::graph::DiGraph;
    let label = |ls: &[Label]| {
        let v: Vec<&str> = ls.iter().map(|&l| net.names[l as usize].as_str()).collect();
        v.concat()
    };
    // Node weight: (shape, indices, flops of the step for inner nodes).
    let mut g: DiGraph<(&str, String, Option<f64>), ()> = DiGraph::new();
    let mut ids = Vec::new();
    for (k, t) in net.inputs.iter().enumerate() {
        ids.push(g.add_node(("box", format!("{k}: {}", label(t)), None)));
    }
    let n = net.inputs.len();
    let ssa = order::linear_to_ssa(n, &info.path).unwrap_or_default();
    for ((a, b), step) in ssa.iter().zip(&info.steps) {
        let id = g.add_node(("ellipse", label(&step.result), Some(step.flops)));
        for &child in [a, b] {
            if let Some(&c) = ids.get(child) {
                g.add_edge(c, id, ());
            }
        }
        ids.push(id);
    }
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let edge_attrs = |_, _| String::new();
    let node_attrs = |_, (_, (shape, text, flops)): (_, &(&str, String, Option<f64>))| {
        let cost = flops.map_or(String::new(), |f| format!("\\nflops {f:.3e}"));
        format!("shape={shape}, label=\"{}{cost}\"", esc(text))
    };
    let body = Dot::with_attr_getters(
        &g,
        &[
            Config::GraphContentOnly,
            Config::NodeNoLabel,
            Config::EdgeNoLabel,
        ],
        &edge_attrs,
        &node_attrs,
    );
    format!("digraph contraction {{\n  rankdir=BT;\n  node [fontname=\"monospace\"];\n{body:?}}}\n")
}

fn render_svg(dot: &str) -> Result<Vec<u8>, Error> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Runtime(
                "--svg needs Graphviz's `dot` program, which is not installed \
                 (e.g. `apt-get install graphviz`); --dot FILE writes the DOT source instead"
                    .into(),
            ))
        }
        Err(e) => return Err(Error::Runtime(format!("cannot run `dot`: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot.as_bytes())
            .map_err(|e| Error::Runtime(format!("cannot feed `dot`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Runtime(format!("`dot` failed: {e}")))?;
    if !out.status.success() {
        return Err(Error::Runtime(format!(
            "`dot` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

fn from_equation(eq: &str, shapes: &str) -> Result<Network, Error> {
    let shapes = parse_shapes(shapes)?;
    let parsed = einsum::parse(eq).map_err(|d| Error::user(d, "equation", eq))?;
    let r = einsum::resolve(&parsed, &shapes).map_err(|d| Error::user(d, "equation", eq))?;
    // Each operand's distinct labels, as opt_einsum's contract_path sees them, so that
    // flops follow its opt_cost convention (indices private to one operand are summed in
    // that operand's first contraction).
    let inputs: Vec<Vec<u32>> = r
        .operands
        .iter()
        .map(|ops| {
            let mut v: Vec<u32> = Vec::new();
            for &i in ops {
                if !v.contains(&(i as u32)) {
                    v.push(i as u32);
                }
            }
            v
        })
        .collect();
    Ok(Network {
        title: eq.to_string(),
        inputs,
        output: r.output.iter().map(|&i| i as u32).collect(),
        sizes: r.indices.iter().map(|i| i.size as u64).collect(),
        names: r.indices.iter().map(|i| i.name.clone()).collect(),
    })
}

/// An einsum-benchmark instance: every character of the format string is one
/// index (opt_einsum's symbols, raw code points, never normalised), operands
/// are separated by `,`, the output follows `->`.
fn read_instance(file: &Path) -> Result<Network, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Runtime(format!("cannot read {}: {e}", file.display())))?;
    let bad = |why: String| Error::Runtime(format!("{}: {why}", file.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let fs = v
        .get("format_string")
        .and_then(|f| f.as_str())
        .ok_or_else(|| bad("no \"format_string\" string".into()))?;
    let shapes: Vec<Vec<u64>> = v
        .get("shapes")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .ok_or_else(|| bad("\"shapes\" is not a list of lists of sizes".into()))?;
    let (lhs, rhs) = fs
        .split_once("->")
        .ok_or_else(|| bad("the format string has no \"->\"".into()))?;
    if rhs.contains("->") {
        return Err(bad("the format string has two \"->\"".into()));
    }
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != shapes.len() {
        return Err(bad(format!(
            "{} operands in the format string, {} shapes",
            terms.len(),
            shapes.len()
        )));
    }
    let mut ids: std::collections::HashMap<char, Label> = Default::default();
    let (mut sizes, mut names, mut inputs) = (Vec::new(), Vec::new(), Vec::new());
    for (k, (term, shape)) in terms.iter().zip(&shapes).enumerate() {
        let chars: Vec<char> = term.chars().collect();
        if chars.len() != shape.len() {
            return Err(bad(format!(
                "operand {k} has {} indices but shape {shape:?}",
                chars.len()
            )));
        }
        let mut t = Vec::new();
        for (&c, &d) in chars.iter().zip(shape) {
            let next = ids.len() as Label;
            let id = *ids.entry(c).or_insert(next);
            if id == next {
                sizes.push(d);
                names.push(c.to_string());
            } else if sizes[id as usize] != d {
                return Err(bad(format!(
                    "index {c:?} (U+{:04X}) has sizes {} and {d}",
                    c as u32, sizes[id as usize]
                )));
            }
            // A repeated index is a diagonal: one label, as in opt_einsum.
            if !t.contains(&id) {
                t.push(id);
            }
        }
        inputs.push(t);
    }
    let mut output = Vec::new();
    for c in rhs.chars() {
        let id = *ids.get(&c).ok_or_else(|| {
            bad(format!(
                "output index {c:?} (U+{:04X}) is in no operand",
                c as u32
            ))
        })?;
        if output.contains(&id) {
            return Err(bad(format!("output index {c:?} repeats")));
        }
        output.push(id);
    }
    Ok(Network {
        title: file.display().to_string(),
        inputs,
        output,
        sizes,
        names,
    })
}

fn parse_shapes(s: &str) -> Result<Vec<Vec<usize>>, Error> {
    s.split(',')
        .map(|t| {
            let t = t.trim();
            if t.is_empty() {
                return Ok(Vec::new());
            }
            t.split(['x', 'X', '×'])
                .map(|d| {
                    d.trim().parse::<usize>().map_err(|_| {
                        Error::Runtime(format!("--shapes: '{d}' in '{t}' is not a dimension size"))
                    })
                })
                .collect()
        })
        .collect()
}
