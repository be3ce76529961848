//! The compiler driver: parse → check → lower → verify → optimize → verify → plan → verify.
//!
//! Passes are run in this one place so that every pass is followed by the verifier, as in
//! cranelift's `Context`.

use crate::ir::Program;
use crate::lower;
use crate::optimize::{self, OptimizeConfig, OptimizeReport};
use crate::plan::{self, Plan, PlanConfig};
use crate::verify::verify;
use einc_frontend::ein::ast::{self, DType};
use einc_frontend::ein::{self as ein, Checked};
use einc_frontend::{einsum, Diagnostic};
use std::collections::BTreeMap;

/// Everything the compiler produced, each stage kept for dumps.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub ir: Program,
    pub opt_ir: Program,
    pub report: Option<OptimizeReport>,
    pub plan: Plan,
}

/// A compile failure: either the user's input is wrong (a diagnostic against the source) or
/// the compiler broke an invariant (a bug, reported as such).
#[derive(Clone, Debug)]
pub enum CompileError {
    User(Diagnostic),
    Internal(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::User(d) => write!(f, "{}", d.message),
            CompileError::Internal(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for CompileError {}

impl From<Diagnostic> for CompileError {
    fn from(d: Diagnostic) -> Self {
        CompileError::User(d)
    }
}

#[derive(Clone, Debug, Default)]
pub struct CompileConfig {
    pub plan: PlanConfig,
    pub optimize: OptimizeConfig,
    /// Skip the e-graph pass (single einsums gain nothing from it).
    pub no_egraph: bool,
}

fn internal(e: impl std::fmt::Display) -> CompileError {
    CompileError::Internal(e.to_string())
}

/// Compile a lowered, verified program.
pub fn compile_program(ir: Program, cfg: &CompileConfig) -> Result<Compiled, CompileError> {
    verify(&ir, "lower").map_err(internal)?;
    // The e-graph's rewrites assume ordinary arithmetic; products alone need no rewriting
    // to be planned in another semiring.
    let skip = cfg.no_egraph || cfg.plan.semiring != crate::semiring::Semiring::SumProduct;
    let (opt_ir, report) = if skip {
        (ir.clone(), None)
    } else {
        // The e-graph prefers forms that fit the plan's memory limit, unless told another.
        let (o, r) =
            if cfg.optimize.memory_limit.is_none() && cfg.plan.limits.memory_limit.is_some() {
                let mut ocfg = cfg.optimize.clone();
                ocfg.memory_limit = cfg.plan.limits.memory_limit;
                optimize::optimize(&ir, &ocfg)
            } else {
                optimize::optimize(&ir, &cfg.optimize)
            };
        verify(&o, "optimize").map_err(internal)?;
        (o, Some(r))
    };
    let plan =
        plan::plan(&opt_ir, &cfg.plan).map_err(|e| CompileError::User(Diagnostic::new(e.0)))?;
    plan.verify().map_err(internal)?;
    Ok(Compiled {
        ir,
        opt_ir,
        report,
        plan,
    })
}

/// Compile a numpy einsum equation for operands of the given shapes and dtypes.
pub fn compile_einsum(
    equation: &str,
    shapes: &[Vec<usize>],
    dtypes: &[DType],
    cfg: &CompileConfig,
) -> Result<Compiled, CompileError> {
    let parsed = einsum::parse(equation)?;
    let resolved = einsum::resolve(&parsed, shapes)?;
    let ir = lower::lower_einsum(&resolved, dtypes);
    let cfg = CompileConfig {
        no_egraph: true,
        ..cfg.clone()
    };
    compile_program(ir, &cfg)
}

/// Parse and check a `.ein` source (no sizes needed yet).
pub fn check_ein(source: &str) -> Result<(ast::Program, Checked), Diagnostic> {
    let ast = ein::parse(source)?;
    let checked = ein::check(&ast)?;
    Ok((ast, checked))
}

/// Compile a checked `.ein` program; `bindings` sizes dims declared without one.
pub fn compile_ein(
    checked: &Checked,
    bindings: &BTreeMap<String, u64>,
    cfg: &CompileConfig,
) -> Result<Compiled, CompileError> {
    let ir = lower::lower_program(checked, bindings)?;
    compile_program(ir, cfg)
}
