//! The `einc` command line: `compile`, `run`, `path`.

use clap::{Parser, Subcommand, ValueEnum};
use einc::{Error, ExecOptions, Optimizer, TensorData};
use einc_compiler::dump;
use einc_compiler::optimize::Extractor;
use einc_compiler::order::Limits;
use einc_compiler::pipeline::CompileConfig;
use einc_compiler::plan::{PlanConfig, Semiring};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod npy;
mod path_cmd;
mod stats;
mod wgsl_out;

#[derive(Parser)]
#[command(
    name = "einc",
    version,
    about = "einsum / tensor-network contraction compiler"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Ast,
    Ir,
    OptIr,
    Plan,
    /// Self-contained Rust source with one function per output (see docs/emit-cpu.md).
    Cpu,
    /// WGSL compute kernels and a manifest.json (with -o DIR; see docs/emit-wgsl.md).
    Wgsl,
    /// The e-graph pass: classes, nodes, iterations, stop reason, rewrites, and per
    /// statement its cost before and after and the chosen form.
    Egraph,
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    /// The CPU executor (GEMM-backed, multithreaded).
    Cpu,
    /// WGSL kernels through wgpu on the best adapter (`EINC_ADAPTER` picks one by name).
    Gpu,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptArg {
    Greedy,
    Optimal,
    Hyper,
    Auto,
}

/// How the e-graph's classes are chosen.
#[derive(Clone, Copy, ValueEnum)]
enum ExtractorArg {
    /// Greedy tree costs (plain and with shared parts discounted), polished by DAG cost.
    Greedy,
    /// Also an integer program for the cheapest DAG (graphs with heavy sharing).
    Lp,
}

impl ExtractorArg {
    fn get(self) -> Extractor {
        match self {
            ExtractorArg::Greedy => Extractor::Greedy,
            ExtractorArg::Lp => Extractor::Lp,
        }
    }
}

/// How products are evaluated: `⊕` over summed indices of `⊗` over factors.
#[derive(Clone, Copy, ValueEnum)]
enum SemiringArg {
    /// Ordinary einsum: sum of products.
    SumProduct,
    /// max over summed indices of sums (tropical).
    MaxPlus,
    /// min over summed indices of sums (tropical).
    MinPlus,
    /// log of the sum of exp of sums: sum-product on log-values, computed stably.
    LogSumExp,
}

impl SemiringArg {
    fn get(self) -> Semiring {
        match self {
            SemiringArg::SumProduct => Semiring::SumProduct,
            SemiringArg::MaxPlus => Semiring::MaxPlus,
            SemiringArg::MinPlus => Semiring::MinPlus,
            SemiringArg::LogSumExp => Semiring::LogSumExp,
        }
    }
}

impl OptArg {
    fn get(self) -> Optimizer {
        match self {
            OptArg::Greedy => Optimizer::Greedy,
            OptArg::Optimal => Optimizer::Optimal,
            OptArg::Hyper => Optimizer::Hyper,
            OptArg::Auto => Optimizer::Auto,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile a .ein program and print a dump of one stage.
    Compile {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "plan")]
        emit: Emit,
        /// Write the dump here instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Size for a dim declared without one: `--dim n=64` (repeatable).
        #[arg(long = "dim", value_name = "NAME=SIZE")]
        dims: Vec<String>,
        #[arg(long, value_enum, default_value = "auto")]
        optimizer: OptArg,
        /// Largest intermediate allowed, in elements; products over it are sliced.
        #[arg(long, value_name = "ELEMENTS")]
        memory_limit: Option<f64>,
        /// How many times the searched tree's flops a plan may cost to stay within its
        /// largest intermediate plus its result (a rotated tree or a sweep path; 1 keeps
        /// the searched tree).
        #[arg(long, value_name = "FACTOR", default_value_t = einc_compiler::plan::SWEEP_FLOPS)]
        memory_flops: f64,
        /// The semiring of every product (programs of products only, real dtypes).
        #[arg(long, value_enum, default_value = "sum-product")]
        semiring: SemiringArg,
        /// With `--emit cpu`: pairwise contractions call the `gemm` crate.
        #[arg(long)]
        gemm: bool,
        /// An input that is a fixed weight (repeatable): work on weights alone is paid
        /// once, so the e-graph weighs forms by their cost per call.
        #[arg(long = "constant", value_name = "INPUT")]
        constants: Vec<String>,
        /// How the e-graph optimizer extracts the program.
        #[arg(long, value_enum, default_value = "greedy")]
        extractor: ExtractorArg,
    },
    /// Run a .ein program, or a bare einsum with -e, on .npy files.
    Run {
        /// The .ein program (omit with -e).
        file: Option<PathBuf>,
        /// A numpy einsum equation; the positional arguments are then the operand files.
        #[arg(short = 'e', long = "equation", allow_hyphen_values = true)]
        equation: Option<String>,
        /// Operand .npy files for -e.
        #[arg(trailing_var_arg = false)]
        operands: Vec<PathBuf>,
        /// `NAME=PATH.npy` for each input of the program.
        #[arg(long = "input", value_name = "NAME=PATH")]
        inputs: Vec<String>,
        /// `NAME=PATH.npy` for outputs of the program; with -e, use -o.
        #[arg(long = "output", value_name = "NAME=PATH")]
        outputs: Vec<String>,
        /// Result file for -e.
        #[arg(short = 'o')]
        out: Option<PathBuf>,
        #[arg(long = "dim", value_name = "NAME=SIZE")]
        dims: Vec<String>,
        #[arg(long, value_enum, default_value = "auto")]
        optimizer: OptArg,
        /// Largest intermediate allowed, in elements; products over it run in slices
        /// (default: as many as `EINC_MAX_BYTES`, 16 GiB, holds).
        #[arg(long, value_name = "ELEMENTS")]
        memory_limit: Option<f64>,
        /// How many times the searched tree's flops a plan may cost to stay within its
        /// largest intermediate plus its result (a rotated tree or a sweep path; 1 keeps
        /// the searched tree).
        #[arg(long, value_name = "FACTOR", default_value_t = einc_compiler::plan::SWEEP_FLOPS)]
        memory_flops: f64,
        /// The semiring of every product (programs of products only, real dtypes).
        #[arg(long, value_enum, default_value = "sum-product")]
        semiring: SemiringArg,
        /// Print per-step time and flops, and peak memory, to stderr.
        #[arg(long)]
        stats: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Where to run.
        #[arg(long, value_enum, default_value = "cpu")]
        target: TargetArg,
        /// An input that is a fixed weight (repeatable): the e-graph weighs forms by their
        /// cost per call, work on weights alone being paid once.
        #[arg(long = "constant", value_name = "INPUT")]
        constants: Vec<String>,
        /// How the e-graph optimizer extracts the program.
        #[arg(long, value_enum, default_value = "greedy")]
        extractor: ExtractorArg,
    },
    /// Find a contraction order for an einsum equation or an einsum-benchmark instance.
    Path(path_cmd::PathArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Usage errors are user errors: exit 1 like every other (help/version: 0).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = write!(std::io::stderr(), "{}", e.render());
            ExitCode::from(1)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<(), Error> {
    match cmd {
        Cmd::Compile {
            file,
            emit,
            output,
            dims,
            optimizer,
            memory_limit,
            memory_flops,
            semiring,
            gemm,
            constants,
            extractor,
        } => {
            let mut cfg = config(optimizer.get(), memory_limit, memory_flops, semiring.get())?;
            cfg.optimize.constants = constants;
            cfg.optimize.extractor = extractor.get();
            if let (Emit::Wgsl, Some(dir)) = (emit, output.as_deref()) {
                let (name, compiled) = compile_file(&file, &dims, &cfg)?;
                return wgsl_out::write_dir(&compiled.plan, &name, dir);
            }
            let text = compile_cmd(&file, emit, &dims, &cfg, gemm)?;
            write_text(output.as_deref(), &text)
        }
        Cmd::Run {
            file,
            equation,
            operands,
            inputs,
            outputs,
            out,
            dims,
            optimizer,
            memory_limit,
            memory_flops,
            semiring,
            stats,
            threads,
            target,
            constants,
            extractor,
        } => {
            let mut config = config(optimizer.get(), memory_limit, memory_flops, semiring.get())?;
            config.optimize.constants = constants;
            config.optimize.extractor = extractor.get();
            let opts = RunOpts {
                config,
                exec: ExecOptions {
                    threads,
                    collect_stats: stats,
                    target: match target {
                        TargetArg::Cpu => einc::Target::Cpu,
                        TargetArg::Gpu => einc::Target::Gpu,
                    },
                    ..Default::default()
                },
            };
            match (equation, file) {
                (Some(eq), file) => {
                    // With -e every positional argument is an operand file.
                    let mut ops: Vec<PathBuf> = file.into_iter().collect();
                    ops.extend(operands);
                    run_equation(&eq, &ops, out.as_deref(), &opts)
                }
                (None, Some(file)) => run_program(&file, &inputs, &outputs, &dims, &opts),
                (None, None) => Err(Error::Runtime(
                    "give a .ein file or an equation with -e".into(),
                )),
            }
        }
        Cmd::Path(args) => path_cmd::run(args),
    }
}

fn read_source(file: &Path) -> Result<String, Error> {
    std::fs::read_to_string(file)
        .map_err(|e| Error::Runtime(format!("cannot read {}: {e}", file.display())))
}

fn write_text(path: Option<&Path>, text: &str) -> Result<(), Error> {
    match path {
        Some(p) => std::fs::write(p, text)
            .map_err(|e| Error::Runtime(format!("cannot write {}: {e}", p.display()))),
        None => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(())
        }
    }
}

fn parse_dims(dims: &[String]) -> Result<BTreeMap<String, u64>, Error> {
    let mut out = BTreeMap::new();
    for d in dims {
        let (name, size) = d
            .split_once('=')
            .ok_or_else(|| Error::Runtime(format!("--dim '{d}': expected NAME=SIZE")))?;
        let size: u64 = size.trim().parse().map_err(|_| {
            Error::Runtime(format!(
                "--dim '{d}': '{size}' is not a non-negative integer"
            ))
        })?;
        out.insert(name.trim().to_string(), size);
    }
    Ok(out)
}

fn config(
    optimizer: Optimizer,
    memory_limit: Option<f64>,
    memory_flops: f64,
    semiring: Semiring,
) -> Result<CompileConfig, Error> {
    if memory_flops.is_nan() || memory_flops < 1.0 {
        return Err(Error::Runtime(format!(
            "--memory-flops {memory_flops}: expected a factor of at least 1"
        )));
    }
    if let Some(m) = memory_limit {
        if m.is_nan() || m < 1.0 {
            return Err(Error::Runtime(format!(
                "--memory-limit {m}: expected a number of elements, at least 1"
            )));
        }
    }
    Ok(CompileConfig {
        plan: PlanConfig {
            optimizer,
            limits: Limits {
                memory_limit,
                allow_slicing: memory_limit.is_some(),
                ..Limits::default()
            },
            semiring,
            memory_flops,
        },
        ..CompileConfig::default()
    })
}

fn compile_file(
    file: &Path,
    dims: &[String],
    cfg: &CompileConfig,
) -> Result<(String, einc_compiler::Compiled), Error> {
    let source = read_source(file)?;
    let name = file.display().to_string();
    let program = einc::Program::parse(&name, &source)?;
    let compiled = program.compile(&parse_dims(dims)?, cfg)?;
    Ok((name, compiled))
}

fn compile_cmd(
    file: &Path,
    emit: Emit,
    dims: &[String],
    cfg: &CompileConfig,
    gemm: bool,
) -> Result<String, Error> {
    if gemm && !matches!(emit, Emit::Cpu) {
        return Err(Error::Runtime("--gemm applies to --emit cpu only".into()));
    }
    let source = read_source(file)?;
    let name = file.display().to_string();
    let program = einc::Program::parse(&name, &source)?;
    if let Emit::Ast = emit {
        return Ok(format!("{:#?}\n", program.ast()));
    }
    let compiled = program.compile(&parse_dims(dims)?, cfg)?;
    Ok(match emit {
        Emit::Wgsl => wgsl_out::render(&compiled.plan, &name)?,
        Emit::Ast => unreachable!("handled above"),
        Emit::Ir => dump::dump_program(&compiled.ir),
        Emit::OptIr => {
            let mut s = dump::dump_program(&compiled.opt_ir);
            if let Some(r) = &compiled.report {
                s.push_str(&dump::dump_report(r));
            }
            s
        }
        Emit::Plan => dump::dump_plan(&compiled.plan),
        Emit::Egraph => match &compiled.report {
            Some(r) => dump::dump_egraph(r, &compiled.opt_ir),
            None => {
                "egraph: not run (a single einsum, or a semiring other than sum-product)\n".into()
            }
        },
        Emit::Cpu => {
            let opts = einc_compiler::emit_cpu::EmitOptions { gemm };
            einc_compiler::emit_cpu::emit_cpu_with(&compiled.plan, &name, &opts)
                .map_err(|e| Error::Runtime(e.to_string()))?
        }
    })
}

/// Options shared by both forms of `einc run`.
struct RunOpts {
    config: CompileConfig,
    exec: ExecOptions,
}

fn run_equation(
    eq: &str,
    ops: &[PathBuf],
    out: Option<&Path>,
    opts: &RunOpts,
) -> Result<(), Error> {
    let arrays: Vec<TensorData> = ops.iter().map(|p| npy::read(p)).collect::<Result<_, _>>()?;
    let shapes: Vec<Vec<usize>> = arrays.iter().map(|a| a.shape().to_vec()).collect();
    let dtypes: Vec<einc::DType> = arrays.iter().map(|a| a.dtype()).collect();
    let expr = einc::compile_with_config(eq, &shapes, &dtypes, &opts.config)?
        .with_options(opts.exec.clone());
    let views: Vec<einc::TensorView<'_>> = arrays.iter().map(|a| a.view()).collect();
    let (result, stats) = expr.run_with_stats(&views)?;
    if opts.exec.collect_stats {
        eprint!("{}", stats::render(&expr.compiled().plan, &stats));
    }
    match out {
        Some(p) => npy::write(p, &result),
        None => {
            println!("{}", npy::format(&result));
            Ok(())
        }
    }
}

fn run_program(
    file: &Path,
    inputs: &[String],
    outputs: &[String],
    dims: &[String],
    opts: &RunOpts,
) -> Result<(), Error> {
    let source = read_source(file)?;
    let program = einc::Program::parse(&file.display().to_string(), &source)?;
    let mut arrays = BTreeMap::new();
    for spec in inputs {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| Error::Runtime(format!("--input '{spec}': expected NAME=PATH.npy")))?;
        arrays.insert(name.to_string(), npy::read(Path::new(path))?);
    }
    let (results, stats, compiled) =
        program.run_with(arrays, parse_dims(dims)?, &opts.config, &opts.exec)?;
    if opts.exec.collect_stats {
        eprint!("{}", stats::render(&compiled.plan, &stats));
    }
    let mut wanted: BTreeMap<String, PathBuf> = BTreeMap::new();
    for spec in outputs {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| Error::Runtime(format!("--output '{spec}': expected NAME=PATH.npy")))?;
        if !results.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Runtime(format!(
                "--output '{name}': not an output of the program (outputs: {})",
                names.join(", ")
            )));
        }
        wanted.insert(name.to_string(), PathBuf::from(path));
    }
    for (name, data) in &results {
        match wanted.get(name) {
            Some(p) => npy::write(p, data)?,
            None if outputs.is_empty() => println!("{name} = {}", npy::format(data)),
            None => {}
        }
    }
    Ok(())
}
