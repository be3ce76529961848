//! The library API: one-shot [`einsum`], compile-once [`compile`] / [`Expression`], and
//! `.ein` programs through [`Program`].

use crate::chunk::{chunk_plan, ChunkPlan, Limits};
use crate::pair::{pair_plan, PairPlan};
use crate::view::{view_plan, TensorCow, ViewPlan};
use crate::{Element, Error};
use einc_compiler::dump;
use einc_compiler::pipeline::{self, CompileConfig, Compiled};
use einc_frontend::ein::ast::DType;
use einc_frontend::ein::Checked;
use einc_runtime::{execute_views, ExecOptions, ExecStats, TensorData, TensorView};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Evaluate a numpy-style einsum on arrays of one element type.
///
/// Plans are cached (see [`crate::cache`]): repeated calls with the same equation, shapes
/// and dtype skip parsing and planning.
pub fn einsum<T: Element>(
    equation: &str,
    operands: &[ArrayViewD<'_, T>],
) -> Result<ArrayD<T>, Error> {
    let expr = cached_expression(equation, operands.iter().map(|a| a.shape()), |_| T::DTYPE)?;
    expr.run(operands)
}

/// [`einsum`] that returns a view of the operand instead of a copy when the result only
/// permutes its axes or takes a diagonal (`ijk->kji`, `ii->i`), as numpy.einsum does.
pub fn einsum_cow<'a, T: Element>(
    equation: &str,
    operands: &[ArrayViewD<'a, T>],
) -> Result<CowArray<'a, T, IxDyn>, Error> {
    let expr = cached_expression(equation, operands.iter().map(|a| a.shape()), |_| T::DTYPE)?;
    expr.run_cow(operands)
}

/// Evaluate an einsum on arrays of possibly different dtypes; the result has numpy's
/// result type (f32 stays f32, real with complex becomes complex).
pub fn einsum_dyn(equation: &str, operands: Vec<TensorData>) -> Result<TensorData, Error> {
    let dtypes: Vec<DType> = operands.iter().map(|a| a.dtype()).collect();
    let expr = cached_expression(equation, operands.iter().map(|a| a.shape()), |k| dtypes[k])?;
    let views: Vec<TensorView<'_>> = operands.iter().map(|t| t.view()).collect();
    expr.run_views(&views)
}

fn cached_expression<'s>(
    equation: &str,
    shapes: impl Iterator<Item = &'s [usize]>,
    dtype: impl Fn(usize) -> DType,
) -> Result<Arc<Expression>, Error> {
    let mut key = crate::cache::Key::new(equation);
    for (k, s) in shapes.enumerate() {
        key.push_operand(s, dtype(k));
    }
    crate::cache::get_or_compile(key, |shapes, dtypes| compile(equation, shapes, dtypes))
}

/// Compile an einsum for fixed operand shapes and dtypes.
pub fn compile(
    equation: &str,
    shapes: &[Vec<usize>],
    dtypes: &[DType],
) -> Result<Expression, Error> {
    compile_with(equation, shapes, dtypes, &CompileConfig::default())
}

/// [`compile`] with explicit compiler settings (optimizer, limits).
pub fn compile_with(
    equation: &str,
    shapes: &[Vec<usize>],
    dtypes: &[DType],
    cfg: &CompileConfig,
) -> Result<Expression, Error> {
    let mut expr = compile_plain(equation, shapes, dtypes, cfg)?;
    expr.chunk = chunk_plan(&expr, equation, shapes, dtypes, cfg, &Limits::DEFAULT).map(Arc::new);
    Ok(expr)
}

/// [`compile_with`] without the choice of chunked execution (what each chunk runs).
pub(crate) fn compile_plain(
    equation: &str,
    shapes: &[Vec<usize>],
    dtypes: &[DType],
    cfg: &CompileConfig,
) -> Result<Expression, Error> {
    let compiled = fit_memory(cfg, |cfg| {
        pipeline::compile_einsum(equation, shapes, dtypes, cfg)
            .map_err(|e| Error::from_compile(e, "equation", equation))
    })?;
    Ok(Expression {
        view: view_plan(&compiled.plan),
        pair: pair_plan(&compiled.plan, shapes),
        chunk: None,
        compiled,
        shapes: shapes.to_vec(),
        options: ExecOptions::default(),
        prepared: None,
        gpu: Default::default(),
    })
}

/// Compiles with `cfg`; when the plan would need an intermediate larger than the executor's
/// memory budget ([`einc_runtime::exec::max_bytes`]) and the caller set no memory limit,
/// compiles again with that budget as the limit and slicing allowed, so the product runs
/// in slices instead of being refused. If no sliced plan fits either, the first plan is
/// kept and the executor reports the intermediate that does not fit.
fn fit_memory(
    cfg: &CompileConfig,
    compile: impl Fn(&CompileConfig) -> Result<Compiled, Error>,
) -> Result<Compiled, Error> {
    let compiled = compile(cfg)?;
    if cfg.plan.limits.memory_limit.is_some() {
        return Ok(compiled);
    }
    let budget = einc_runtime::exec::max_bytes();
    let elem = compiled
        .plan
        .steps
        .iter()
        .map(|s| einc_runtime::value::dtype_size(s.dtype))
        .max()
        .unwrap_or(8) as f64;
    if compiled.plan.largest_intermediate() * elem <= budget {
        return Ok(compiled);
    }
    let mut sliced = cfg.clone();
    sliced.plan.limits.memory_limit = Some((budget / elem).floor());
    sliced.plan.limits.allow_slicing = true;
    Ok(compile(&sliced).unwrap_or(compiled))
}

/// [`compile_with`] where some operands are constants (opt_einsum's `constants=`): given
/// here as `(operand position, array)`, every part of the plan that depends on constants
/// only is computed now, once, and the expression is then run with the other operands
/// alone, in their order. `shapes`/`dtypes` still list every operand.
pub fn compile_with_constants(
    equation: &str,
    shapes: &[Vec<usize>],
    dtypes: &[DType],
    cfg: &CompileConfig,
    constants: &[(usize, TensorView<'_>)],
) -> Result<Expression, Error> {
    for (k, c) in constants {
        let (Some(shape), Some(dtype)) = (shapes.get(*k), dtypes.get(*k)) else {
            return Err(Error::Runtime(format!(
                "constant operand {k} does not exist: the equation has {} operands",
                shapes.len()
            )));
        };
        if c.shape() != shape.as_slice() || c.dtype() != *dtype {
            return Err(Error::Runtime(format!(
                "constant operand {k} is a {} array of shape {}, but {} of shape {} was declared",
                c.dtype().name(),
                einc_frontend::einsum::fmt_shape(c.shape()),
                dtype.name(),
                einc_frontend::einsum::fmt_shape(shape)
            )));
        }
        if constants.iter().filter(|(j, _)| j == k).count() > 1 {
            return Err(Error::Runtime(format!(
                "constant operand {k} is given twice"
            )));
        }
    }
    // A prepared expression always runs the whole plan, so no chunk plan is built.
    let mut expr = compile_plain(equation, shapes, dtypes, cfg)?;
    let plan = &expr.compiled.plan;
    let ids = einc_runtime::input_ids(plan);
    let given: Vec<_> = constants
        .iter()
        .map(|(k, v)| (ids[*k], v.reborrow()))
        .collect();
    let prepared = einc_runtime::exec::prepare(plan, &given, &expr.options)
        .map_err(|e| Error::Runtime(e.0))?;
    expr.shapes = shapes
        .iter()
        .enumerate()
        .filter(|(k, _)| !constants.iter().any(|(c, _)| c == k))
        .map(|(_, s)| s.clone())
        .collect();
    expr.prepared = Some(Arc::new(prepared));
    Ok(expr)
}

/// The result as an array of `T`, cast when the plan's result dtype differs.
fn typed<T: Element>(out: TensorData) -> Result<ArrayD<T>, Error> {
    let dt = out.dtype();
    T::unwrap(if dt == T::DTYPE {
        out
    } else {
        out.cast(T::DTYPE)
    })
    .ok_or_else(|| {
        Error::Internal(format!(
            "result dtype {} is not {}",
            dt.name(),
            T::DTYPE.name()
        ))
    })
}

/// A compiled einsum: planned once, run many times.
#[derive(Clone, Debug)]
pub struct Expression {
    compiled: Compiled,
    /// Shapes of the operands `run` takes (constants excluded).
    shapes: Vec<Vec<usize>>,
    options: ExecOptions,
    /// The constant part, computed at compile time ([`compile_with_constants`]).
    prepared: Option<Arc<einc_runtime::exec::Prepared>>,
    /// The GPU executable (kernels, pipelines, buffers), built on the first GPU run and
    /// kept by every clone.
    gpu: Arc<std::sync::OnceLock<Arc<einc_runtime::gpu::GpuExecutable>>>,
    /// Set when the result is a relabelling of one operand ([`Expression::run_cow`]).
    view: Option<ViewPlan>,
    /// Set when the plan is one pairwise contraction of the two operands.
    pair: Option<PairPlan>,
    /// Set when the expression runs in chunks of a result label ([`crate::chunk`]).
    chunk: Option<Arc<ChunkPlan>>,
}

impl Expression {
    /// Run on arrays of one element type (other input dtypes are not involved: the result
    /// is `T`).
    pub fn run<T: Element>(&self, operands: &[ArrayViewD<'_, T>]) -> Result<ArrayD<T>, Error> {
        if let Some(out) = self.run_pair(operands) {
            return Ok(out);
        }
        let views: Vec<TensorView<'_>> = operands.iter().map(|a| T::wrap_view(a.view())).collect();
        typed(self.run_views(&views)?)
    }

    /// Whether the expression is one pairwise contraction of its two operands, which
    /// [`Expression::run`] sends straight to the contraction kernel (unless the options ask
    /// for threads, stats or the GPU).
    pub fn is_pairwise(&self) -> bool {
        self.pair.is_some()
    }

    /// Whether the result is a relabelling of one operand (see [`Expression::run_cow`]).
    pub fn is_view(&self) -> bool {
        self.view.is_some()
    }

    /// The result label [`Expression::run`] cuts the work along, as (axis of the result,
    /// chunk length), when the plan's intermediates are large enough for chunks that stay
    /// in cache to pay (see the `chunk` module); runs with stats, constants or the GPU do
    /// not use it.
    pub fn chunking(&self) -> Option<(usize, usize)> {
        self.chunk.as_ref().map(|c| (c.out_axis, c.size))
    }

    /// The same expression without chunked execution.
    pub fn without_chunks(mut self) -> Expression {
        self.chunk = None;
        self
    }

    /// A single pairwise contraction straight through the kernel, when the expression is
    /// one, the operands fit and the options ask for nothing the executor adds (threads,
    /// stats, the GPU); `None` sends the call through the executor, which also reports
    /// the errors.
    fn run_pair<T: Element>(&self, operands: &[ArrayViewD<'_, T>]) -> Option<ArrayD<T>> {
        let pp = self.pair.as_ref()?;
        let plain = self.prepared.is_none()
            && self.options.threads.is_none()
            && !self.options.collect_stats
            && self.options.target == einc_runtime::Target::Cpu
            && pp.dtype == T::DTYPE
            && operands.len() == self.shapes.len()
            && operands
                .iter()
                .zip(&self.shapes)
                .all(|(o, s)| o.shape() == &s[..]);
        plain.then(|| {
            einc_runtime::kernels::contract_pair(
                operands[pp.lhs].view(),
                &pp.lhs_labels,
                operands[pp.rhs].view(),
                &pp.rhs_labels,
                &pp.out_labels,
            )
        })
    }

    /// [`Expression::run`], returning a view of the operand (no copy) when the result only
    /// permutes its axes or takes a diagonal, as numpy.einsum does; otherwise an owned
    /// array.
    pub fn run_cow<'a, T: Element>(
        &self,
        operands: &[ArrayViewD<'a, T>],
    ) -> Result<CowArray<'a, T, IxDyn>, Error> {
        let views: Vec<TensorView<'a>> = operands.iter().map(|a| T::wrap_view(a.clone())).collect();
        match self.run_views_cow(&views)? {
            TensorCow::Borrowed(v) => T::unwrap_view(v).map(CowArray::from).ok_or_else(|| {
                Error::Internal(format!("a view's dtype is not {}", T::DTYPE.name()))
            }),
            TensorCow::Owned(t) => typed(t).map(CowArray::from),
        }
    }

    /// [`Expression::run_views`], returning a view of the operand when the result only
    /// relabels it (see [`Expression::run_cow`]).
    pub fn run_views_cow<'a>(&self, operands: &[TensorView<'a>]) -> Result<TensorCow<'a>, Error> {
        if let Some(vp) = self.view.as_ref().filter(|_| self.prepared.is_none()) {
            check_shapes(&self.shapes, operands)?;
            if let Some(v) = operands.get(vp.input).and_then(|o| o.relabel(&vp.axes)) {
                return Ok(TensorCow::Borrowed(v));
            }
        }
        self.run_views(operands).map(TensorCow::Owned)
    }

    pub fn run_dyn(&self, operands: Vec<TensorData>) -> Result<TensorData, Error> {
        let views: Vec<TensorView<'_>> = operands.iter().map(|t| t.view()).collect();
        self.run_views(&views)
    }

    /// Run on borrowed arrays of any dtypes.
    pub fn run_views(&self, operands: &[TensorView<'_>]) -> Result<TensorData, Error> {
        self.run_with_stats(operands).map(|(t, _)| t)
    }

    /// Run and report per-step times, flops and peak memory (stats are collected only
    /// when the options ask for them; see [`Expression::with_options`]).
    pub fn run_with_stats(
        &self,
        operands: &[TensorView<'_>],
    ) -> Result<(TensorData, ExecStats), Error> {
        check_shapes(&self.shapes, operands)?;
        if let Some(cp) = &self.chunk {
            if self.prepared.is_none()
                && !self.options.collect_stats
                && self.options.target == einc_runtime::Target::Cpu
            {
                let start = std::time::Instant::now();
                let out =
                    einc_runtime::exec::with_threads(self.options.threads, || cp.run(operands))?;
                let stats = ExecStats {
                    total: start.elapsed(),
                    ..Default::default()
                };
                return Ok((out, stats));
            }
        }
        let plan = &self.compiled.plan;
        let (mut outs, stats) = match &self.prepared {
            None if self.options.target == einc_runtime::Target::Gpu => self.run_gpu(operands),
            None => execute_views(plan, operands, &self.options),
            Some(pre) => einc_runtime::exec::execute_prepared(plan, pre, operands, &self.options),
        }
        .map_err(|e| Error::Runtime(e.0))?;
        let out = outs
            .pop()
            .ok_or_else(|| Error::Internal("einsum plan produced no output".into()))?;
        Ok((out, stats))
    }

    /// Runs on the GPU, building the executable on the first call.
    fn run_gpu(
        &self,
        operands: &[TensorView<'_>],
    ) -> Result<(Vec<TensorData>, ExecStats), einc_runtime::ExecError> {
        let start = std::time::Instant::now();
        let exe = match self.gpu.get() {
            Some(e) => e.clone(),
            None => {
                let gpu = einc_runtime::gpu::gpu()?;
                let e = Arc::new(einc_runtime::gpu::GpuExecutable::new(
                    gpu,
                    &self.compiled.plan,
                )?);
                self.gpu.get_or_init(|| e).clone()
            }
        };
        let outs = exe.run(operands)?;
        let stats = ExecStats {
            total: start.elapsed(),
            ..Default::default()
        };
        Ok((outs, stats))
    }

    /// The same expression with other execution options (threads, stats).
    pub fn with_options(mut self, options: ExecOptions) -> Expression {
        self.options = options;
        self
    }

    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The plan as stable text.
    pub fn plan_text(&self) -> String {
        dump::dump_plan(&self.compiled.plan)
    }
}

fn check_shapes(want: &[Vec<usize>], got: &[TensorView<'_>]) -> Result<(), Error> {
    if want.len() != got.len() {
        return Err(Error::Runtime(format!(
            "the expression was compiled for {} operands, {} given",
            want.len(),
            got.len()
        )));
    }
    for (k, (w, g)) in want.iter().zip(got).enumerate() {
        if w.as_slice() != g.shape() {
            return Err(Error::Runtime(format!(
                "operand {k} has shape {} but the expression was compiled for {}",
                einc_frontend::einsum::fmt_shape(g.shape()),
                einc_frontend::einsum::fmt_shape(w)
            )));
        }
    }
    Ok(())
}

/// Outputs by name, the run's stats, and the compiled program that produced them.
pub type NamedOutputs = (Vec<(String, TensorData)>, ExecStats, Compiled);

/// A parsed and checked `.ein` program.
#[derive(Clone, Debug)]
pub struct Program {
    name: String,
    source: String,
    ast: einc_frontend::ein::ast::Program,
    checked: Checked,
}

impl Program {
    /// Parse and check `source`; `name` labels diagnostics (usually the file path).
    pub fn parse(name: &str, source: &str) -> Result<Program, Error> {
        let (ast, checked) =
            pipeline::check_ein(source).map_err(|d| Error::user(d, name, source))?;
        Ok(Program {
            name: name.to_string(),
            source: source.to_string(),
            ast,
            checked,
        })
    }

    pub fn ast(&self) -> &einc_frontend::ein::ast::Program {
        &self.ast
    }

    pub fn checked(&self) -> &Checked {
        &self.checked
    }

    /// Names of the inputs, in declaration order.
    pub fn input_names(&self) -> Vec<String> {
        self.checked
            .tensors
            .iter()
            .filter(|t| t.kind == einc_frontend::ein::check::TensorKind::Input)
            .map(|t| t.name.clone())
            .collect()
    }

    /// Compile with sizes for dims declared without one.
    pub fn compile(
        &self,
        bindings: &BTreeMap<String, u64>,
        cfg: &CompileConfig,
    ) -> Result<Compiled, Error> {
        fit_memory(cfg, |cfg| {
            pipeline::compile_ein(&self.checked, bindings, cfg)
                .map_err(|e| Error::from_compile(e, &self.name, &self.source))
        })
    }

    /// Bind unsized dims from the inputs' shapes, compile and run. Returns the outputs by
    /// name, in the program's output order.
    pub fn run(
        &self,
        inputs: BTreeMap<String, TensorData>,
        bindings: BTreeMap<String, u64>,
        cfg: &CompileConfig,
    ) -> Result<Vec<(String, TensorData)>, Error> {
        self.run_with(inputs, bindings, cfg, &ExecOptions::default())
            .map(|(o, _, _)| o)
    }

    /// [`Program::run`] with execution options; also returns the run's stats and the
    /// compiled plan (for `einc run --stats`).
    pub fn run_with(
        &self,
        inputs: BTreeMap<String, TensorData>,
        bindings: BTreeMap<String, u64>,
        cfg: &CompileConfig,
        exec: &ExecOptions,
    ) -> Result<NamedOutputs, Error> {
        let names = self.input_names();
        if let Some(extra) = inputs.keys().find(|k| !names.contains(k)) {
            return Err(Error::Runtime(format!(
                "'{extra}' is not an input of this program (inputs: {})",
                names.join(", ")
            )));
        }
        if let Some(missing) = names.iter().find(|n| !inputs.contains_key(*n)) {
            return Err(Error::Runtime(format!("missing input '{missing}'")));
        }
        let shapes: BTreeMap<String, Vec<usize>> = inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.shape().to_vec()))
            .collect();
        let bindings = einc_compiler::lower::bind_dims(&self.checked, &shapes, bindings)
            .map_err(|d| Error::user(d, &self.name, &self.source))?;
        let compiled = self.compile(&bindings, cfg)?;
        let plan = &compiled.plan;
        let mut inputs = inputs;
        let ordered: Vec<TensorData> = plan
            .program
            .inputs()
            .map(|(_, t)| {
                inputs
                    .remove(&t.name)
                    .ok_or_else(|| Error::Runtime(format!("missing input '{}'", t.name)))
            })
            .collect::<Result<_, _>>()?;
        let views: Vec<TensorView<'_>> = ordered.iter().map(|t| t.view()).collect();
        let (outs, stats) = execute_views(plan, &views, exec).map_err(|e| Error::Runtime(e.0))?;
        let named = plan
            .program
            .outputs
            .iter()
            .map(|&o| plan.program.tensors[o].name.clone())
            .zip(outs)
            .collect();
        Ok((named, stats, compiled))
    }
}

/// numpy's sublist form (`np.einsum(a, [0, 1], b, [1, 2], [0, 2])`) as an equation string:
/// integers 0..52 map to `A`–`Z`, `a`–`z`; `None` stands for `...`.
pub fn sublist_equation(
    inputs: &[Vec<Option<usize>>],
    output: Option<&[Option<usize>]>,
) -> Result<String, Error> {
    einc_frontend::einsum::from_sublists(inputs, output).map_err(|d| Error::Runtime(d.message))
}
