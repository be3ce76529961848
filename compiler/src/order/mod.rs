//! Contraction-order search: which pairs of operands to contract, in which order.
//!
//! This is a pure function in the style of opt_einsum's path optimizers:
//! `(inputs, output, sizes, limits) -> path`. It never looks at tensor data,
//! only at index labels and their sizes, so it can run at compile time and its
//! result can be cached or compared against opt_einsum / cotengra output.
//!
//! Conventions (all chosen to match opt_einsum 3.4 so that numbers can be
//! compared with published references):
//!
//! * A [`Path`] is opt_einsum's *linear* format: each pair `(i, j)`, `i < j`,
//!   indexes the current operand list; both are removed and the result is
//!   appended at the end. [`linear_to_ssa`] / [`ssa_to_linear`] convert to and
//!   from the static-single-assignment format where input `k` has id `k` and the
//!   result of step `s` has id `n + s`.
//! * The labels kept by a pairwise step are those of `a ∪ b` that appear in the
//!   output or in any operand still waiting to be contracted. They are listed in
//!   order of first appearance in `a`, then `b`; the final step lists the output
//!   in the output's own order.
//! * `flops` follows opt_einsum's `opt_cost`: per step, the product of the sizes
//!   of all labels in `a ∪ b`, times 2 when at least one label is summed away.
//!   `cost` follows cotengra's `contraction_cost` (multiply-adds): the same
//!   product without the factor 2. `largest_intermediate` is the largest result
//!   of any step (inputs are not counted), as in opt_einsum's `PathInfo`.
//! * All costs are `f64`: products of sizes overflow `u64` on realistic
//!   networks, and relative precision is all that path comparison needs.
//!
//! Inputs must already be pre-processed so that no label repeats inside one
//! operand (diagonals are taken elsewhere); a label may appear in any number of
//! operands (hyperedges), in the output or not, and operands may be scalars.

mod cost;
mod driver;
mod greedy;
mod hyper;
mod optimal;
mod partition;
mod rgreedy;
pub(crate) mod rng;
mod slicing;
mod ssa;
mod sweep;
pub(crate) mod tree;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

pub use cost::evaluate;
pub use driver::{compile_budget, default_trials};
pub use optimal::MAX_OPTIMAL_INPUTS;
pub use slicing::Slicing;
pub use ssa::{linear_to_ssa, ssa_to_linear};
pub use sweep::{sweep, sweeps};

/// An index label; its extent is `sizes[label as usize]`.
pub type Label = u32;

/// Which search strategy to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// opt_einsum's greedy heuristic (`ssa_greedy_optimize`): fast, any size.
    Greedy,
    /// Exact minimum of `flops`: over every pairwise contraction tree up to
    /// [`AUTO_OPTIMAL_MAX_INPUTS`] inputs, above that over the trees whose
    /// intermediates are connected (opt_einsum `dp`'s space), which sparse
    /// networks of a few dozen tensors search in milliseconds.
    Optimal,
    /// Randomised search over many greedy and graph-partitioning trials,
    /// polished by exact subtree reconfiguration (cotengra's hyper search).
    Hyper,
    /// `Optimal` for small problems, `Hyper` with a size-scaled budget otherwise.
    Auto,
}

impl Optimizer {
    /// The lower-case name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Greedy => "greedy",
            Optimizer::Optimal => "optimal",
            Optimizer::Hyper => "hyper",
            Optimizer::Auto => "auto",
        }
    }

    /// Parses a name as produced by [`Optimizer::name`] (ASCII case-insensitive).
    pub fn parse(s: &str) -> Option<Optimizer> {
        [
            Optimizer::Greedy,
            Optimizer::Optimal,
            Optimizer::Hyper,
            Optimizer::Auto,
        ]
        .into_iter()
        .find(|o| o.name().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much work `Hyper` spends polishing its best trees once the trials are done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Polish {
    /// The eight best trees swept with subtrees of 8 tensors, the best four swept and
    /// reconfigured at random with subtrees of 10: what `search` does unless told
    /// otherwise (tuned on the path suite, `benches/paths.rs`).
    #[default]
    Full,
    /// The best two trees swept twice, then swept and reconfigured at random with
    /// subtrees of 8: about a tenth of the full polish's time on a 200-tensor lattice, for
    /// compiles ([`Budget::Compile`]).
    Light,
}

/// How `Hyper` (and `Auto` above [`AUTO_OPTIMAL_MAX_INPUTS`] tensors) sizes its work
/// when [`Limits::trials`] is not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// [`default_trials`] and the full polish: the search on its own (`search`'s default,
    /// `einc path`, `benches/paths.rs`).
    Search,
    /// [`compile_budget`]: scaled to what the contraction costs, so that a cheap
    /// contraction of many tensors is not searched for seconds (`plan`'s default).
    Compile,
}

/// Resource limits for the search.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Maximum number of elements of any intermediate (every step's result,
    /// the final one included). Inputs may be larger: they already exist.
    pub memory_limit: Option<f64>,
    /// Wall-clock budget. Past it, `Optimal` falls back to `Greedy` and
    /// `Hyper` stops starting trials; both say so in [`PathInfo::notes`].
    /// Greedy ignores it.
    pub time_limit: Option<Duration>,
    /// Seed of the randomised searches (`Hyper`, and `Auto` on large
    /// problems); a fixed seed and trial count give a fixed result.
    pub seed: u64,
    /// Number of `Hyper` trials (with the full polish); `None` lets `budget` decide.
    pub trials: Option<usize>,
    /// How the trials and the polish are chosen when `trials` is `None`; `None` means
    /// the caller's default: [`Budget::Search`] for [`search`], [`Budget::Compile`] for
    /// `plan::plan` (and so for every compile).
    pub budget: Option<Budget>,
    /// With a memory limit, a tree may also meet it by slicing indices: the
    /// contraction then runs once per slice ([`PathInfo::slicing`]). Off by
    /// default because executing a sliced tree needs an executor that loops
    /// over slices.
    pub allow_slicing: bool,
    /// Extra weight of a step that sums labels and also carries batch labels (labels of
    /// both operands and of its result): the exact all-subsets search counts its flops
    /// `1 + w` times. `None` means the caller's default: 0 for [`search`] (so `einc path`
    /// keeps opt_einsum's cost), [`EXEC_BATCH_WEIGHT`] for `plan::plan`, whose batched
    /// products run one small GEMM per batch entry, often after a copy that brings the
    /// batch labels outermost. Reported flops are always the true ones; the greedy,
    /// hyper and connected-subset searches ignore it.
    pub batch_weight: Option<f64>,
    /// Incremented once per finished `Hyper` trial, for progress displays.
    pub progress: Option<Arc<AtomicUsize>>,
}

/// [`Limits::batch_weight`] of execution plans: a tree with batched GEMMs must save a
/// fifth of its flops over one without. On `tfno_cp_r16` (`bixy,r,ir,or,xr,yr->boxy`)
/// the flop-optimal tree batches both large products over `y` and `x` (33.62 Mflop); the
/// tree with none (33.70 Mflop) runs in half the time (`docs/benchmarks.md`).
pub const EXEC_BATCH_WEIGHT: f64 = 0.25;

/// opt_einsum "linear" path: each pair `(i, j)` with `i < j` indexes the
/// current list of operands; both are removed and the result is appended.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Path {
    pub pairs: Vec<(usize, usize)>,
}

/// One pairwise contraction of a path.
#[derive(Clone, Debug, PartialEq)]
pub struct StepInfo {
    /// The linear pair, as in [`Path::pairs`].
    pub pair: (usize, usize),
    /// Labels of the two operands (the one at `pair.0` first).
    pub operands: [Vec<Label>; 2],
    /// Labels of the result (see the module docs for their order).
    pub result: Vec<Label>,
    /// Labels of `a ∪ b` summed away by this step.
    pub summed: Vec<Label>,
    /// opt_einsum `opt_cost` of this step.
    pub flops: f64,
    /// cotengra multiply-add cost of this step.
    pub cost: f64,
    /// Number of elements of the result.
    pub size: f64,
}

/// A path together with its costs.
#[derive(Clone, Debug)]
pub struct PathInfo {
    pub path: Path,
    /// The optimizer actually used: `Auto` resolves to `Greedy` or `Optimal`,
    /// and an `Optimal` search that gave up reports `Greedy`.
    pub optimizer: Optimizer,
    /// Sum of the steps' opt_einsum `opt_cost`.
    pub flops: f64,
    /// Sum of the steps' cotengra `contraction_cost`.
    pub cost: f64,
    /// Largest step result in elements; 0 when there is no step.
    pub largest_intermediate: f64,
    /// Sum of the steps' result sizes in elements (cotengra's
    /// `contraction_write`); times the element size, the bytes written.
    pub write: f64,
    pub steps: Vec<StepInfo>,
    /// Set when the tree meets the memory limit by slicing. `flops`, `cost`
    /// and `write` then add up all slices, while `largest_intermediate` and
    /// `steps` describe one slice.
    pub slicing: Option<Slicing>,
    /// Randomised trials run (0 for deterministic optimizers).
    pub trials: usize,
    /// Inputs whose private labels (held by no other input, not in the
    /// output) are summed by a single-operand step before any pair, as
    /// opt_einsum's `dp` may do; only `Auto`/`Hyper`/`Optimal` on small
    /// problems. The path and `steps` then act on the reduced inputs, and
    /// `flops`, `cost` and `write` include the reductions (2, 1 and the
    /// reduced size per element of each reduced input), so they exceed what
    /// `evaluate` gives for the path.
    pub pre_reduced: Vec<usize>,
    /// Human-readable remarks, e.g. why the exact search fell back to greedy.
    pub notes: Vec<String>,
}

/// Why a search or an evaluation could not produce a path.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderError {
    /// There is nothing to contract.
    NoInputs,
    /// A label has no entry in `sizes`.
    UnknownLabel { label: Label, sizes_len: usize },
    /// A label repeats inside one operand (`operand: None` means the output).
    RepeatedLabel {
        operand: Option<usize>,
        label: Label,
    },
    /// An output label appears in no input.
    OutputLabelNotInInputs { label: Label },
    /// The memory limit is NaN.
    InvalidMemoryLimit,
    /// No pairwise path keeps every intermediate within the memory limit
    /// (`needed` is a size that could not be avoided, when known).
    MemoryLimitImpossible { limit: f64, needed: Option<f64> },
    /// The given path does not fit the problem.
    BadPath { step: usize, reason: String },
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::NoInputs => f.write_str("contraction has no input operands"),
            OrderError::UnknownLabel { label, sizes_len } => write!(
                f,
                "label {label} has no size (only {sizes_len} sizes were given)"
            ),
            OrderError::RepeatedLabel {
                operand: Some(k),
                label,
            } => write!(f, "label {label} repeats in operand {k}"),
            OrderError::RepeatedLabel {
                operand: None,
                label,
            } => write!(f, "label {label} repeats in the output"),
            OrderError::OutputLabelNotInInputs { label } => {
                write!(f, "output label {label} appears in no input")
            }
            OrderError::InvalidMemoryLimit => f.write_str("memory limit is not a number"),
            OrderError::MemoryLimitImpossible {
                limit,
                needed: Some(n),
            } => write!(
                f,
                "no contraction path fits the memory limit of {limit} elements \
                 (an intermediate of {n} elements is unavoidable)"
            ),
            OrderError::MemoryLimitImpossible {
                limit,
                needed: None,
            } => write!(
                f,
                "no contraction path fits the memory limit of {limit} elements"
            ),
            OrderError::BadPath { step, reason } => {
                write!(f, "invalid contraction path at step {step}: {reason}")
            }
        }
    }
}

impl std::error::Error for OrderError {}

/// Problems with at most this many inputs are searched exactly by `Auto`.
/// The exact search visits about `3^n / 2` splits (0.8 M at 13 inputs, three
/// times more per extra input); measured worst cases on random 4-index
/// networks in a debug build were ~25 ms at 13 inputs and ~50 ms at 14.
/// A count rather than a clock keeps `Auto` deterministic.
pub const AUTO_OPTIMAL_MAX_INPUTS: usize = 13;

/// Finds a contraction path for `inputs -> output`.
///
/// Single-input problems get an empty path; `n` inputs get `n - 1` pairs
/// (disconnected parts are joined by outer products at the end). The result
/// is deterministic: the same arguments give the same path, byte for byte.
pub fn search(
    inputs: &[Vec<Label>],
    output: &[Label],
    sizes: &[u64],
    optimizer: Optimizer,
    limits: &Limits,
) -> Result<PathInfo, OrderError> {
    let problem = Problem::new(inputs, output, sizes)?;
    driver::run(&problem, optimizer, limits)
}

/// A validated problem with labels renumbered densely (`0..labels.len()`),
/// so that the search can use plain vectors and bitsets.
#[derive(Clone)]
pub(crate) struct Problem {
    /// Dense labels of each input, in the caller's order.
    pub inputs: Vec<Vec<usize>>,
    /// Dense labels of the output, in the caller's order.
    pub output: Vec<usize>,
    /// Size of each dense label.
    pub sizes: Vec<f64>,
    /// Whether each dense label is in the output.
    pub in_output: Vec<bool>,
    /// The caller's label for each dense label.
    pub labels: Vec<Label>,
}

impl Problem {
    pub fn new(inputs: &[Vec<Label>], output: &[Label], sizes: &[u64]) -> Result<Self, OrderError> {
        if inputs.is_empty() {
            return Err(OrderError::NoInputs);
        }
        // Labels index `sizes`, so a vector is the map (no hashing).
        let mut dense: Vec<usize> = vec![usize::MAX; sizes.len()];
        let mut labels = Vec::new();
        let mut dense_sizes = Vec::new();
        let mut seen_in = Vec::new(); // last operand (1-based) that used a dense label
        let mut conv = Vec::with_capacity(inputs.len());
        for (k, term) in inputs.iter().enumerate() {
            let mut d_term = Vec::with_capacity(term.len());
            for &l in term {
                let size = *sizes.get(l as usize).ok_or(OrderError::UnknownLabel {
                    label: l,
                    sizes_len: sizes.len(),
                })?;
                let slot = &mut dense[l as usize];
                if *slot == usize::MAX {
                    labels.push(l);
                    dense_sizes.push(size as f64);
                    seen_in.push(0);
                    *slot = labels.len() - 1;
                }
                let d = *slot;
                if seen_in[d] == k + 1 {
                    return Err(OrderError::RepeatedLabel {
                        operand: Some(k),
                        label: l,
                    });
                }
                seen_in[d] = k + 1;
                d_term.push(d);
            }
            conv.push(d_term);
        }
        let mut in_output = vec![false; labels.len()];
        let mut d_out = Vec::with_capacity(output.len());
        for &l in output {
            let d = dense
                .get(l as usize)
                .copied()
                .filter(|&d| d != usize::MAX)
                .ok_or(OrderError::OutputLabelNotInInputs { label: l })?;
            if in_output[d] {
                return Err(OrderError::RepeatedLabel {
                    operand: None,
                    label: l,
                });
            }
            in_output[d] = true;
            d_out.push(d);
        }
        Ok(Problem {
            inputs: conv,
            output: d_out,
            sizes: dense_sizes,
            in_output,
            labels,
        })
    }

    /// Number of elements of a tensor with these (distinct) dense labels.
    pub fn size_of(&self, labels: &[usize]) -> f64 {
        labels.iter().map(|&l| self.sizes[l]).product()
    }
}
