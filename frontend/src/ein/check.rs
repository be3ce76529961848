//! Name resolution and static checks for `.ein` programs.
//!
//! Turns an [`ast::Program`] into [`Checked`]: dims, tensors and statements numbered and
//! cross-referenced by id. Every check reports the first problem as a [`Diagnostic`]
//! pointing at the offending text, with a secondary label at the related declaration.
//!
//! Deliberately *not* done here: deciding where Einstein summations go, free-index
//! analysis, dtype inference for results and einsum equation validation. Those belong to
//! the compiler's lowering, which works on the resolved ids this module produces.
//!
//! Declarations (`dim`, `input`, `layout`, `output`) may appear anywhere in the file;
//! statements are ordered: a statement may only read inputs and earlier results.

#[cfg(test)]
mod tests;

pub use super::ast::DType;
use super::ast::{self, Expr, ExprKind, Ident, Item, Program};
use crate::diag::Diagnostic;
use crate::span::Span;
use std::collections::HashMap;

/// A checked program: everything resolved to ids (indices into the vectors).
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub dims: Vec<DimInfo>,
    /// Inputs first, in declaration order, then statement results in statement order.
    pub tensors: Vec<TensorInfo>,
    pub stmts: Vec<StmtInfo>,
    /// Tensor ids of the program's outputs, in the order given.
    pub outputs: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimInfo {
    pub name: String,
    /// `None` when bound from input shapes at run time.
    pub size: Option<u64>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    Input,
    /// Computed by statement number `stmt` (an index into [`Checked::stmts`]).
    Result {
        stmt: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dim id of each axis, outermost first. May repeat (`input T[i, i]`).
    pub axes: Vec<usize>,
    /// `None` for statement results until lowering infers it.
    pub dtype: Option<DType>,
    pub kind: TensorKind,
    /// The name in its declaration (input) or on the left-hand side (result).
    pub span: Span,
    pub layout: Option<ast::LayoutDecl>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StmtInfo {
    /// Tensor id of the result.
    pub target: usize,
    /// Dim ids of the left-hand side (all distinct).
    pub indices: Vec<usize>,
    pub value: Expr,
    pub span: Span,
}

impl Checked {
    pub fn dim_by_name(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|d| d.name == name)
    }

    pub fn tensor_by_name(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }

    /// Tensor ids of all inputs, in declaration order.
    pub fn inputs(&self) -> impl Iterator<Item = usize> + '_ {
        self.tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == TensorKind::Input)
            .map(|(id, _)| id)
    }
}

/// Resolve names and run the static checks listed in the module documentation.
pub fn check(program: &Program) -> Result<Checked, Diagnostic> {
    Checker::default().run(program)
}

#[derive(Default)]
struct Checker {
    dims: Vec<DimInfo>,
    tensors: Vec<TensorInfo>,
    /// Span of each axis's index in the tensor's declaration, for secondary labels.
    axis_spans: Vec<Vec<Span>>,
    stmts: Vec<StmtInfo>,
    dim_ids: HashMap<String, usize>,
    /// Tensors visible so far: all inputs, plus the results of statements already checked.
    tensor_ids: HashMap<String, usize>,
    /// First definition of every statement target, to explain use-before-definition.
    targets: HashMap<String, Span>,
}

impl Checker {
    fn run(mut self, program: &Program) -> Result<Checked, Diagnostic> {
        let assigns: Vec<&ast::Assign> = program
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Assign(a) => Some(a),
                _ => None,
            })
            .collect();
        if assigns.is_empty() {
            return Err(Diagnostic::new("the program has no statements").with_note(
                "a program needs at least one assignment, such as `C[i] = A[i, j] * B[j]`",
            ));
        }
        for item in &program.items {
            if let Item::Dim(decls) = item {
                for decl in decls {
                    self.dim(decl)?;
                }
            }
        }
        for item in &program.items {
            if let Item::Input(decl) = item {
                self.input(decl)?;
            }
        }
        for a in &assigns {
            self.targets
                .entry(a.target.name.clone())
                .or_insert(a.target.span);
        }
        let mut layouts: HashMap<usize, Span> = HashMap::new();
        for item in &program.items {
            if let Item::Layout(decl) = item {
                self.layout(decl, &mut layouts)?;
            }
        }
        for (n, a) in assigns.iter().enumerate() {
            self.assign(n, a)?;
        }
        let outputs = self.outputs(program)?;
        Ok(Checked {
            dims: self.dims,
            tensors: self.tensors,
            stmts: self.stmts,
            outputs,
        })
    }

    fn dim(&mut self, decl: &ast::DimDecl) -> Result<(), Diagnostic> {
        let name = &decl.name;
        if let Some(&first) = self.dim_ids.get(&name.name) {
            return Err(Diagnostic::at(
                name.span,
                format!("duplicate dim '{}'", name.name),
                "declared again here",
            )
            .with_secondary(self.dims[first].span, "first declared here"));
        }
        if let Some((0, span)) = decl.size {
            return Err(Diagnostic::at(
                span,
                format!("dim '{}' has size 0; sizes must be at least 1", name.name),
                "zero size",
            ));
        }
        self.dim_ids.insert(name.name.clone(), self.dims.len());
        self.dims.push(DimInfo {
            name: name.name.clone(),
            size: decl.size.map(|(size, _)| size),
            span: name.span,
        });
        Ok(())
    }

    fn input(&mut self, decl: &ast::InputDecl) -> Result<(), Diagnostic> {
        let name = &decl.name;
        if let Some(&first) = self.tensor_ids.get(&name.name) {
            return Err(Diagnostic::at(
                name.span,
                format!("duplicate input '{}'", name.name),
                "declared again here",
            )
            .with_secondary(self.tensors[first].span, "first declared here"));
        }
        let axes = self.resolve_dims(&decl.indices)?;
        self.add_tensor(
            TensorInfo {
                name: name.name.clone(),
                axes,
                dtype: Some(decl.dtype),
                kind: TensorKind::Input,
                span: name.span,
                layout: None,
            },
            &decl.indices,
        );
        Ok(())
    }

    fn add_tensor(&mut self, info: TensorInfo, indices: &[Ident]) -> usize {
        let id = self.tensors.len();
        self.tensor_ids.insert(info.name.clone(), id);
        self.tensors.push(info);
        self.axis_spans
            .push(indices.iter().map(|ix| ix.span).collect());
        id
    }

    fn layout(
        &mut self,
        decl: &ast::LayoutDecl,
        seen: &mut HashMap<usize, Span>,
    ) -> Result<(), Diagnostic> {
        let name = &decl.tensor;
        // Only inputs are in `tensor_ids` at this point.
        let Some(&t) = self.tensor_ids.get(&name.name) else {
            if let Some(&def) = self.targets.get(&name.name) {
                return Err(Diagnostic::at(
                    name.span,
                    format!(
                        "layouts can only be declared for inputs, and '{}' is computed",
                        name.name
                    ),
                    "not an input",
                )
                .with_secondary(def, "computed here"));
            }
            return Err(self.unknown_tensor(name, "unknown input", "an input"));
        };
        if let Some(&first) = seen.get(&t) {
            return Err(Diagnostic::at(
                decl.span,
                format!("duplicate layout for '{}'", name.name),
                "second layout",
            )
            .with_secondary(first, "first layout here"));
        }
        seen.insert(t, decl.span);
        if decl.kind.name != "packed" {
            return Err(Diagnostic::at(
                decl.kind.span,
                format!(
                    "unknown layout kind '{}'; the only kind is 'packed'",
                    decl.kind.name
                ),
                "unknown layout kind",
            ));
        }
        let order = self.resolve_dims(&decl.order)?;
        self.check_permutation(t, decl, &order)?;
        self.check_layout_options(t, decl)?;
        self.tensors[t].layout = Some(decl.clone());
        Ok(())
    }

    /// The layout's index order must list each of the input's axes exactly once.
    fn check_permutation(
        &self,
        t: usize,
        decl: &ast::LayoutDecl,
        order: &[usize],
    ) -> Result<(), Diagnostic> {
        let info = &self.tensors[t];
        let count = |ids: &[usize], id: usize| ids.iter().filter(|&&x| x == id).count();
        for (k, (&id, ix)) in order.iter().zip(&decl.order).enumerate() {
            let in_axes = count(&info.axes, id);
            if in_axes == 0 {
                return Err(Diagnostic::at(
                    ix.span,
                    format!("index '{}' is not an index of {}", ix.name, info.name),
                    "not an axis of the input",
                )
                .with_secondary(
                    info.span,
                    format!(
                        "{} is declared with indices {}",
                        info.name,
                        self.index_names(&info.axes)
                    ),
                ));
            }
            if count(&order[..=k], id) > in_axes {
                let first = order
                    .iter()
                    .position(|&x| x == id)
                    .map_or(ix.span, |p| decl.order[p].span);
                return Err(Diagnostic::at(
                    ix.span,
                    format!(
                        "index '{}' is listed twice in the layout of {}",
                        ix.name, info.name
                    ),
                    "listed again",
                )
                .with_secondary(first, "first listed here"));
            }
        }
        for (&id, axis_span) in info.axes.iter().zip(&self.axis_spans[t]) {
            if count(order, id) < count(&info.axes, id) {
                let list = match (decl.order.first(), decl.order.last()) {
                    (Some(a), Some(b)) => a.span.to(b.span),
                    _ => decl.kind.span,
                };
                return Err(Diagnostic::at(
                    list,
                    format!(
                        "the layout of {} does not list index '{}'",
                        info.name, self.dims[id].name
                    ),
                    "must be a permutation of the input's indices",
                )
                .with_secondary(*axis_span, "this axis is missing from the layout"));
            }
        }
        Ok(())
    }

    /// `[i, j]` for messages.
    fn index_names(&self, axes: &[usize]) -> String {
        let names: Vec<&str> = axes.iter().map(|&d| self.dims[d].name.as_str()).collect();
        format!("[{}]", names.join(", "))
    }

    fn check_layout_options(&self, t: usize, decl: &ast::LayoutDecl) -> Result<(), Diagnostic> {
        let info = &self.tensors[t];
        let mut slots_seen: Option<Span> = None;
        for (key, value, span) in &decl.options {
            if key.name != "slots" {
                return Err(Diagnostic::at(
                    key.span,
                    format!(
                        "unknown layout option '{}'; the only option is 'slots'",
                        key.name
                    ),
                    "unknown option",
                ));
            }
            if let Some(first) = slots_seen {
                return Err(
                    Diagnostic::at(*span, "layout option 'slots' is given twice", "again")
                        .with_secondary(first, "first given here"),
                );
            }
            slots_seen = Some(*span);
            if !value.is_power_of_two() {
                return Err(Diagnostic::at(
                    *span,
                    format!("slots must be a power of two, but {value} is not"),
                    "not a power of two",
                ));
            }
            // Only when every axis size is known; otherwise the runtime checks it.
            let sizes: Option<Vec<u64>> = info.axes.iter().map(|&d| self.dims[d].size).collect();
            if let Some(sizes) = sizes {
                let elements = sizes.iter().try_fold(1u64, |acc, &s| acc.checked_mul(s));
                if elements.is_none_or(|n| n > *value) {
                    let shown = elements.map_or("more than 2^64".to_string(), |n| n.to_string());
                    return Err(Diagnostic::at(
                        *span,
                        format!(
                            "slots={value} is too small: {} has {shown} elements and needs at least that many slots",
                            info.name
                        ),
                        "too few slots",
                    )
                    .with_secondary(info.span, format!("{} declared here", info.name)));
                }
            }
        }
        Ok(())
    }

    fn assign(&mut self, n: usize, a: &ast::Assign) -> Result<(), Diagnostic> {
        let target = &a.target;
        if let Some(&prev) = self.tensor_ids.get(&target.name) {
            let prev = &self.tensors[prev];
            let (message, label) = match prev.kind {
                TensorKind::Input => (
                    format!("'{}' is already declared as an input", target.name),
                    "declared here",
                ),
                TensorKind::Result { .. } => (
                    format!("duplicate definition of '{}'", target.name),
                    "first defined here",
                ),
            };
            return Err(Diagnostic::at(target.span, message, "defined again here")
                .with_secondary(prev.span, label)
                .with_note(
                    "every tensor is assigned exactly once; give the new result another name",
                ));
        }
        let axes = self.resolve_dims(&a.indices)?;
        for (k, &id) in axes.iter().enumerate() {
            if let Some(first) = axes[..k].iter().position(|&x| x == id) {
                return Err(Diagnostic::at(
                    a.indices[k].span,
                    format!("index '{}' appears twice on the left-hand side", a.indices[k].name),
                    "repeated index",
                )
                .with_secondary(a.indices[first].span, "first here")
                .with_note("a result cannot be written as a diagonal; read one with `T[i, i]` on the right"));
            }
        }
        self.expr(&a.value)?;
        let id = self.add_tensor(
            TensorInfo {
                name: target.name.clone(),
                axes: axes.clone(),
                dtype: None,
                kind: TensorKind::Result { stmt: n },
                span: target.span,
                layout: None,
            },
            &a.indices,
        );
        self.stmts.push(StmtInfo {
            target: id,
            indices: axes,
            value: a.value.clone(),
            span: a.span,
        });
        Ok(())
    }

    fn expr(&self, e: &Expr) -> Result<(), Diagnostic> {
        match &e.kind {
            ExprKind::Tensor { name, indices } => self.tensor_use(name, indices, e.span),
            ExprKind::Number(_) => Ok(()),
            ExprKind::Neg(x) => self.expr(x),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs)?;
                self.expr(rhs)
            }
            ExprKind::Call { func, args, .. } => {
                let want = func.arity();
                if args.len() != want {
                    return Err(Diagnostic::at(
                        e.span,
                        format!(
                            "'{}' takes {} but {} given",
                            func.name(),
                            plural(want, "argument", "arguments"),
                            were(args.len())
                        ),
                        format!("{} here", plural(args.len(), "argument", "arguments")),
                    ));
                }
                args.iter().try_for_each(|a| self.expr(a))
            }
            ExprKind::Reduce {
                op, indices, arg, ..
            } => {
                self.index_set(indices, op.name())?;
                self.expr(arg)
            }
            ExprKind::Softmax { indices, arg } => {
                self.index_set(indices, "softmax")?;
                self.expr(arg)
            }
            ExprKind::Einsum {
                operands, output, ..
            } => {
                for operand in operands {
                    self.tensor_id(operand)?;
                }
                if let Some(output) = output {
                    self.resolve_dims(output)?;
                }
                Ok(())
            }
        }
    }

    /// `A[x, y]`: the name, each index, the rank, and sizes against the declaration.
    fn tensor_use(&self, name: &Ident, indices: &[Ident], span: Span) -> Result<(), Diagnostic> {
        let t = self.tensor_id(name)?;
        let info = &self.tensors[t];
        let used = self.resolve_dims(indices)?;
        if used.len() != info.axes.len() {
            return Err(Diagnostic::at(
                span,
                format!(
                    "{} has {} but {} given",
                    info.name,
                    plural(info.axes.len(), "axis", "axes"),
                    match used.len() {
                        1 => "1 index is".to_string(),
                        n => format!("{n} indices are"),
                    }
                ),
                format!("{} here", plural(used.len(), "index", "indices")),
            )
            .with_secondary(
                info.span,
                format!(
                    "{} declared here with {}",
                    info.name,
                    plural(info.axes.len(), "axis", "axes")
                ),
            ));
        }
        for (pos, ((&x, &a), ix)) in used.iter().zip(&info.axes).zip(indices).enumerate() {
            if let (Some(sx), Some(sa)) = (self.dims[x].size, self.dims[a].size) {
                if sx != sa {
                    let axis = &self.dims[a].name;
                    return Err(Diagnostic::at(
                        ix.span,
                        format!(
                            "index '{}' has size {sx} here but axis {pos} of {} has size {sa} (index '{axis}')",
                            ix.name, info.name
                        ),
                        format!("size {sx}"),
                    )
                    .with_secondary(self.axis_spans[t][pos], format!("axis {pos} of {} is '{axis}' (size {sa})", info.name)));
                }
            }
        }
        Ok(())
    }

    /// A tensor visible at this point: an input or an earlier statement's result.
    fn tensor_id(&self, name: &Ident) -> Result<usize, Diagnostic> {
        if let Some(&id) = self.tensor_ids.get(&name.name) {
            return Ok(id);
        }
        if let Some(&def) = self.targets.get(&name.name) {
            return Err(Diagnostic::at(
                name.span,
                format!("'{}' is used before it is defined", name.name),
                "used here",
            )
            .with_secondary(def, "defined here")
            .with_note(
                "statements run in order: a statement can only read inputs and earlier results",
            ));
        }
        Err(self.unknown_tensor(name, "unknown tensor", "a tensor"))
    }

    fn unknown_tensor(&self, name: &Ident, what: &str, kind: &str) -> Diagnostic {
        let candidates = self.tensors.iter().map(|t| t.name.as_str());
        let message = match closest(&name.name, candidates) {
            Some(best) => format!("{what} '{}'; did you mean '{best}'?", name.name),
            None => format!("{what} '{}'", name.name),
        };
        let d = Diagnostic::at(name.span, message, format!("not {kind}"));
        if self.dim_ids.contains_key(&name.name) {
            d.with_note(format!("'{}' is a dim (an index), not a tensor", name.name))
        } else {
            d.with_note("tensors are declared with `input` or computed by an earlier statement")
        }
    }

    /// The index list of a reduction or softmax: declared and distinct.
    fn index_set(&self, indices: &[Ident], op: &str) -> Result<(), Diagnostic> {
        let ids = self.resolve_dims(indices)?;
        for (k, &id) in ids.iter().enumerate() {
            if let Some(first) = ids[..k].iter().position(|&x| x == id) {
                return Err(Diagnostic::at(
                    indices[k].span,
                    format!("index '{}' is listed twice in {op}[...]", indices[k].name),
                    "repeated index",
                )
                .with_secondary(indices[first].span, "first listed here"));
            }
        }
        Ok(())
    }

    fn resolve_dims(&self, indices: &[Ident]) -> Result<Vec<usize>, Diagnostic> {
        indices.iter().map(|ix| self.resolve_dim(ix)).collect()
    }

    fn resolve_dim(&self, ix: &Ident) -> Result<usize, Diagnostic> {
        if let Some(&id) = self.dim_ids.get(&ix.name) {
            return Ok(id);
        }
        let candidates = self.dims.iter().map(|d| d.name.as_str());
        let message = match closest(&ix.name, candidates) {
            Some(best) => format!("unknown index '{}'; did you mean '{best}'?", ix.name),
            None => format!("unknown index '{}'", ix.name),
        };
        Err(Diagnostic::at(ix.span, message, "not a declared dim")
            .with_note("every index must be declared with `dim`, e.g. `dim i = 4`"))
    }

    fn outputs(&self, program: &Program) -> Result<Vec<usize>, Diagnostic> {
        let mut outputs = Vec::new();
        let mut spans: Vec<Span> = Vec::new();
        let mut declared = false;
        for item in &program.items {
            let Item::Output(decl) = item else { continue };
            declared = true;
            for name in &decl.names {
                let Some(&id) = self.tensor_ids.get(&name.name) else {
                    return Err(self.unknown_tensor(name, "unknown output", "a tensor"));
                };
                if let Some(k) = outputs.iter().position(|&o| o == id) {
                    return Err(Diagnostic::at(
                        name.span,
                        format!("'{}' is listed as an output twice", name.name),
                        "listed again",
                    )
                    .with_secondary(spans[k], "first listed here"));
                }
                outputs.push(id);
                spans.push(name.span);
            }
        }
        if !declared {
            // Without `output`, the last statement's result is the program's result.
            if let Some(last) = self.stmts.last() {
                outputs.push(last.target);
            }
        }
        Ok(outputs)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn were(n: usize) -> String {
    if n == 1 {
        "1 was".to_string()
    } else {
        format!("{n} were")
    }
}

/// The candidate closest to `name` by edit distance, if within 2 edits and not a
/// complete rewrite (so `x` does not suggest `i`, but `jj` suggests `j`). Ties go to
/// the first candidate, which keeps messages deterministic.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for cand in candidates {
        let Some(d) = edit_distance(name, cand, 2) else {
            continue;
        };
        let longest = name.chars().count().max(cand.chars().count());
        if d < longest && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    best.map(|(_, cand)| cand)
}

/// Levenshtein distance over chars, or `None` when it is certainly above `limit`
/// (cheap rejections keep this linear-ish on long fuzzed names).
fn edit_distance(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit || a.len().max(b.len()) > 64 {
        return None;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev.last().copied().filter(|&d| d <= limit)
}
