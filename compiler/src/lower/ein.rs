//! A checked `.ein` program becomes IR.
//!
//! The Einstein convention: an index that occurs free on the right of a statement but not
//! on its left is summed. The sum is placed at the lowest common ancestor of the index's
//! occurrences, lifted out of any non-linear position (a function argument, a reduction's
//! argument, a softmax's argument, a denominator) so that `D[i] = exp(S[i,j])` means
//! `sum_j exp(S)`, never `exp(sum_j S)`, while `D[i] = A[i,j]*B[j] + c[i]` means
//! `(sum_j A*B) + c`. docs/ein-language.md states the same rule for users.

use crate::ir::*;
use einc_frontend::ein::ast::{self, BinOp, DType, ExprKind, Func};
use einc_frontend::ein::check::{Checked, TensorKind as CheckedKind};
use einc_frontend::{einsum, Diagnostic, Span};
use std::collections::BTreeMap;

/// Sizes for every dim: declared ones, overridden or completed by `bindings`
/// (from `--dim` flags or from input shapes via [`bind_dims`]).
fn dim_sizes(c: &Checked, bindings: &BTreeMap<String, u64>) -> Result<Vec<u64>, Diagnostic> {
    c.dims
        .iter()
        .map(|d| match (d.size, bindings.get(&d.name)) {
            (Some(s), Some(&b)) if s != b => Err(Diagnostic::at(
                d.span,
                format!("dimension '{}' is declared with size {s} but bound to {b}", d.name),
                format!("declared {s} here"),
            )),
            (Some(s), _) => Ok(s),
            (None, Some(&b)) => Ok(b),
            (None, None) => Err(Diagnostic::at(
                d.span,
                format!("dimension '{}' has no size", d.name),
                "declared without a size",
            )
            .with_note(format!(
                "give it one with `dim {} = N`, with `--dim {}=N`, or by passing an input that has this axis",
                d.name, d.name
            ))),
        })
        .collect()
}

/// Bind unsized dims from the shapes of the inputs, checking every declared size.
/// `shapes` maps input names to their array shapes.
pub fn bind_dims(
    c: &Checked,
    shapes: &BTreeMap<String, Vec<usize>>,
    mut bindings: BTreeMap<String, u64>,
) -> Result<BTreeMap<String, u64>, Diagnostic> {
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for t in &c.tensors {
        if t.kind != CheckedKind::Input {
            continue;
        }
        let Some(shape) = shapes.get(&t.name) else {
            continue;
        };
        if shape.len() != t.axes.len() {
            return Err(Diagnostic::at(
                t.span,
                format!(
                    "input '{}' is declared with {} axes but the array given has shape {}",
                    t.name,
                    t.axes.len(),
                    einsum::fmt_shape(shape)
                ),
                "declared here",
            ));
        }
        for (&d, &n) in t.axes.iter().zip(shape) {
            let dim = &c.dims[d];
            let n = n as u64;
            let known = dim.size.or_else(|| bindings.get(&dim.name).copied());
            match known {
                Some(s) if s != n => {
                    let from = origin
                        .get(&dim.name)
                        .map(|o| format!(" (from input '{o}')"))
                        .unwrap_or_default();
                    return Err(Diagnostic::at(
                        t.span,
                        format!(
                            "input '{}' has shape {} but its axis '{}' has size {s}{from}",
                            t.name,
                            einsum::fmt_shape(shape),
                            dim.name
                        ),
                        "declared here",
                    )
                    .with_secondary(dim.span, format!("'{}' declared here", dim.name)));
                }
                Some(_) => {}
                None => {
                    bindings.insert(dim.name.clone(), n);
                    origin.insert(dim.name.clone(), t.name.clone());
                }
            }
        }
    }
    Ok(bindings)
}

/// Lower a checked program. `bindings` gives sizes to dims declared without one.
pub fn lower_program(c: &Checked, bindings: &BTreeMap<String, u64>) -> Result<Program, Diagnostic> {
    let sizes = dim_sizes(c, bindings)?;
    let mut p = Program::default();
    let dims: Vec<IndexId> = c
        .dims
        .iter()
        .zip(&sizes)
        .map(|(d, &s)| {
            p.indices.push(Index {
                name: d.name.clone(),
                size: s,
                span: Some(d.span),
            })
        })
        .collect();
    let mut tensor_ids: Vec<Option<TensorId>> = vec![None; c.tensors.len()];
    for (k, t) in c.tensors.iter().enumerate() {
        if t.kind != CheckedKind::Input {
            continue;
        }
        let layout = t.layout.as_ref().map(|l| Layout {
            kind: l.kind.name.clone(),
            order: l
                .order
                .iter()
                .filter_map(|o| {
                    c.dims
                        .iter()
                        .position(|d| d.name == o.name)
                        .map(|d| dims[d])
                })
                .collect(),
            options: l
                .options
                .iter()
                .map(|(k, v, _)| (k.name.clone(), *v))
                .collect(),
        });
        tensor_ids[k] = Some(p.tensors.push(Tensor {
            name: t.name.clone(),
            axes: t.axes.iter().map(|&a| dims[a]).collect(),
            dtype: t.dtype.unwrap_or(DType::F32),
            kind: TensorKind::Input,
            layout,
            span: Some(t.span),
        }));
    }
    for s in &c.stmts {
        let lhs: Vec<IndexId> = s.indices.iter().map(|&d| dims[d]).collect();
        let mut cx = Lower {
            c,
            p: &mut p,
            dims: &dims,
            tensor_ids: &tensor_ids,
            lhs: &lhs,
            placements: BTreeMap::new(),
            next: 0,
            muls: Default::default(),
            parents: BTreeMap::new(),
        };
        let value = cx.statement(&s.value)?;
        let free = p.free(value);
        if let Some(&missing) = lhs.iter().find(|i| !free.contains(i)) {
            return Err(Diagnostic::at(
                s.span,
                format!(
                    "index '{}' on the left-hand side does not appear free on the right-hand side",
                    p.indices[missing].name
                ),
                "in this statement",
            )
            .with_note("every index of the left-hand side must come from the right-hand side (einsum forbids output indices that no input has)"));
        }
        let dtype = p.dtype(value);
        let name = &c.tensors[s.target].name;
        let target = p.tensors.push(Tensor {
            name: name.clone(),
            axes: lhs.clone(),
            dtype,
            kind: TensorKind::Result,
            layout: None,
            span: Some(s.span),
        });
        tensor_ids[s.target] = Some(target);
        p.stmts.push(Stmt {
            target,
            indices: lhs,
            value,
            span: Some(s.span),
        });
    }
    for &o in &c.outputs {
        match tensor_ids.get(o).copied().flatten() {
            Some(t) => p.outputs.push(t),
            None => {
                return Err(Diagnostic::new(format!(
                    "output '{}' is not defined",
                    c.tensors.get(o).map(|t| t.name.as_str()).unwrap_or("?")
                )))
            }
        }
    }
    Ok(p)
}

/// The way from the root to one occurrence of an index: per node, (pre-order number, child
/// taken, whether that edge is non-linear); the last element is the occurrence itself.
type OccPath = Vec<(usize, usize, bool)>;

/// Edges below which an implicit sum may not be placed.
fn nonlinear_child(kind: &ExprKind, child: usize) -> bool {
    match kind {
        ExprKind::Call { .. } | ExprKind::Reduce { .. } | ExprKind::Softmax { .. } => true,
        ExprKind::Binary { op: BinOp::Div, .. } => child == 1,
        _ => false,
    }
}

fn children(e: &ast::Expr) -> Vec<&ast::Expr> {
    match &e.kind {
        ExprKind::Tensor { .. } | ExprKind::Number(_) | ExprKind::Einsum { .. } => vec![],
        ExprKind::Neg(a) => vec![a],
        ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        ExprKind::Call { args, .. } => args.iter().collect(),
        ExprKind::Reduce { arg, .. } | ExprKind::Softmax { arg, .. } => vec![arg],
    }
}

struct Lower<'a> {
    c: &'a Checked,
    p: &'a mut Program,
    dims: &'a [IndexId],
    tensor_ids: &'a [Option<TensorId>],
    lhs: &'a [IndexId],
    /// Pre-order node number → implicit sums placed there.
    placements: BTreeMap<usize, Vec<IndexId>>,
    next: usize,
    /// Pre-order numbers of `*` nodes, and each node's parent (pass 1).
    muls: std::collections::BTreeSet<usize>,
    parents: BTreeMap<usize, usize>,
}

impl Lower<'_> {
    fn dim(&self, id: &ast::Ident) -> Result<IndexId, Diagnostic> {
        self.c
            .dims
            .iter()
            .position(|d| d.name == id.name)
            .map(|d| self.dims[d])
            .ok_or_else(|| {
                Diagnostic::at(
                    id.span,
                    format!("unknown index '{}'", id.name),
                    "not declared",
                )
            })
    }

    fn statement(&mut self, e: &ast::Expr) -> Result<ExprId, Diagnostic> {
        // Pass 1: free occurrences (pre-order number path) of every index.
        let mut occ: BTreeMap<IndexId, Vec<OccPath>> = BTreeMap::new();
        let mut path = Vec::new();
        let mut counter = 0;
        self.occurrences(e, &mut path, &mut counter, &[], &mut occ)?;
        for (idx, paths) in occ {
            if self.lhs.contains(&idx) {
                continue;
            }
            // Longest common prefix of the occurrence paths; each path element is
            // (node number, child position taken from it).
            let mut lca: OccPath = paths[0].clone();
            for q in &paths[1..] {
                let n = lca.iter().zip(q).take_while(|(a, b)| a == b).count();
                lca.truncate(n);
            }
            // The node where the sum goes: the LCA node itself, unless the way down to it
            // crosses a non-linear edge, in which case the outermost such edge's parent.
            let target = {
                let mut t = None;
                for &(node, _, nonlinear) in &lca {
                    if nonlinear {
                        t = Some(node);
                        break;
                    }
                }
                match t {
                    Some(n) => n,
                    None => {
                        // LCA node: the node after the common prefix. When every path has
                        // the common prefix, it is the first node they diverge at or the
                        // leaf itself; its number is recorded as the path's next node.
                        lca_node(&paths, lca.len())
                    }
                }
            };
            // A chain `a * b * c` is one n-ary product: a sum placed on an inner `*` of
            // the chain belongs to the chain's root, or the product would be split.
            let mut target = target;
            while self.muls.contains(&target) {
                match self.parents.get(&target) {
                    Some(p) if self.muls.contains(p) => target = *p,
                    _ => break,
                }
            }
            self.placements.entry(target).or_default().push(idx);
        }
        self.next = 0;
        self.lower(e)
    }

    fn occurrences(
        &mut self,
        e: &ast::Expr,
        path: &mut OccPath,
        counter: &mut usize,
        bound: &[IndexId],
        occ: &mut BTreeMap<IndexId, Vec<OccPath>>,
    ) -> Result<(), Diagnostic> {
        let me = *counter;
        *counter += 1;
        if let Some(&(parent, _, _)) = path.last() {
            self.parents.insert(me, parent);
        }
        if let ExprKind::Binary { op: BinOp::Mul, .. } = e.kind {
            self.muls.insert(me);
        }
        let mut record = |i: IndexId, path: &OccPath| {
            if !bound.contains(&i) {
                let mut p = path.clone();
                p.push((me, usize::MAX, false));
                occ.entry(i).or_default().push(p);
            }
        };
        match &e.kind {
            ExprKind::Tensor { indices, .. } => {
                for id in indices {
                    record(self.dim(id)?, path);
                }
            }
            ExprKind::Einsum {
                output: Some(out), ..
            } => {
                for id in out {
                    record(self.dim(id)?, path);
                }
            }
            _ => {}
        }
        let mut inner_bound = bound.to_vec();
        if let ExprKind::Reduce { indices, .. } = &e.kind {
            for id in indices {
                inner_bound.push(self.dim(id)?);
            }
        }
        for (k, ch) in children(e).into_iter().enumerate() {
            path.push((me, k, nonlinear_child(&e.kind, k)));
            self.occurrences(ch, path, counter, &inner_bound, occ)?;
            path.pop();
        }
        Ok(())
    }

    fn lower(&mut self, e: &ast::Expr) -> Result<ExprId, Diagnostic> {
        let me = self.next;
        self.next += 1;
        let span = Some(e.span);
        let v = match &e.kind {
            ExprKind::Tensor { name, indices } => {
                let k = self
                    .c
                    .tensors
                    .iter()
                    .position(|t| t.name == name.name)
                    .ok_or_else(|| {
                        Diagnostic::at(
                            name.span,
                            format!("unknown tensor '{}'", name.name),
                            "not defined",
                        )
                    })?;
                let t = self.tensor_ids[k].ok_or_else(|| {
                    Diagnostic::at(
                        name.span,
                        format!("'{}' is used before it is defined", name.name),
                        "used here",
                    )
                })?;
                let idx = indices
                    .iter()
                    .map(|i| self.dim(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let axes = self.p.tensors[t].axes.clone();
                if axes.len() != idx.len() {
                    return Err(Diagnostic::at(
                        e.span,
                        format!(
                            "'{}' has {} axes but {} indices are given",
                            name.name,
                            axes.len(),
                            idx.len()
                        ),
                        "here",
                    ));
                }
                for ((&i, &a), id) in idx.iter().zip(&axes).zip(indices) {
                    if self.p.size(i) != self.p.size(a) {
                        return Err(Diagnostic::at(
                            id.span,
                            format!(
                                "index '{}' has size {} here but this axis of '{}' has size {} (index '{}')",
                                id.name,
                                self.p.size(i),
                                name.name,
                                self.p.size(a),
                                self.p.indices[a].name
                            ),
                            format!("size {}", self.p.size(i)),
                        ));
                    }
                }
                self.p.add_expr(
                    Expr::Ref {
                        tensor: t,
                        indices: idx,
                    },
                    span,
                )
            }
            ExprKind::Number(x) => self.p.add_expr(Expr::Const(*x), span),
            ExprKind::Neg(a) => {
                let a = self.lower(a)?;
                self.p.add_expr(
                    Expr::Map {
                        op: MapOp::Neg,
                        args: vec![a],
                    },
                    span,
                )
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.lower(lhs)?;
                let b = self.lower(rhs)?;
                match op {
                    BinOp::Mul => {
                        let mut factors = Vec::new();
                        for x in [a, b] {
                            match &self.p.exprs[x] {
                                // Flatten plain (sum-free) products: one n-ary node.
                                Expr::Product { factors: f, summed } if summed.is_empty() => {
                                    factors.extend(f.clone())
                                }
                                _ => factors.push(x),
                            }
                        }
                        self.p.add_expr(
                            Expr::Product {
                                factors,
                                summed: vec![],
                            },
                            span,
                        )
                    }
                    BinOp::Add => {
                        let mut terms = Vec::new();
                        for x in [a, b] {
                            match &self.p.exprs[x] {
                                Expr::Add(t) => terms.extend(t.clone()),
                                _ => terms.push(x),
                            }
                        }
                        self.p.add_expr(Expr::Add(terms), span)
                    }
                    BinOp::Sub => self.p.add_expr(
                        Expr::Map {
                            op: MapOp::Sub,
                            args: vec![a, b],
                        },
                        span,
                    ),
                    BinOp::Div => self.p.add_expr(
                        Expr::Map {
                            op: MapOp::Div,
                            args: vec![a, b],
                        },
                        span,
                    ),
                }
            }
            ExprKind::Call {
                func,
                func_span,
                args,
            } => {
                let args = args
                    .iter()
                    .map(|a| self.lower(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let op = match func {
                    Func::Exp => MapOp::Exp,
                    Func::Log => MapOp::Log,
                    Func::Sqrt => MapOp::Sqrt,
                    Func::Tanh => MapOp::Tanh,
                    Func::Abs => MapOp::Abs,
                    Func::Relu => MapOp::Relu,
                    Func::Sigmoid => MapOp::Sigmoid,
                    Func::Max => MapOp::Max,
                    Func::Min => MapOp::Min,
                };
                if args.len() != op.arity() {
                    return Err(Diagnostic::at(
                        *func_span,
                        format!(
                            "{} takes {} argument(s), {} given",
                            op.name(),
                            op.arity(),
                            args.len()
                        ),
                        "called here",
                    ));
                }
                if op.needs_real() && args.iter().any(|&a| self.p.dtype(a).is_complex()) {
                    return Err(Diagnostic::at(
                        *func_span,
                        format!(
                            "{} needs real values, but its argument is complex",
                            op.name()
                        ),
                        "complex argument",
                    ));
                }
                self.p.add_expr(Expr::Map { op, args }, span)
            }
            ExprKind::Reduce {
                op,
                op_span,
                indices,
                arg,
            } => {
                let x = self.lower(arg)?;
                let idx = self.reduce_indices(indices, x, *op_span)?;
                match op {
                    ast::ReduceOp::Sum => self.p.add_expr(
                        Expr::Product {
                            factors: vec![x],
                            summed: idx,
                        },
                        span,
                    ),
                    other => {
                        let op = match other {
                            ast::ReduceOp::Max => ReduceOp::Max,
                            ast::ReduceOp::Min => ReduceOp::Min,
                            _ => ReduceOp::LogSumExp,
                        };
                        if op != ReduceOp::LogSumExp && self.p.dtype(x).is_complex() {
                            return Err(Diagnostic::at(
                                *op_span,
                                format!(
                                    "{} reduction needs real values, but its argument is complex",
                                    op.name()
                                ),
                                "complex argument",
                            ));
                        }
                        self.p.add_expr(
                            Expr::Reduce {
                                op,
                                indices: idx,
                                arg: x,
                            },
                            span,
                        )
                    }
                }
            }
            ExprKind::Softmax { indices, arg } => {
                let x = self.lower(arg)?;
                let idx = self.reduce_indices(indices, x, e.span)?;
                if self.p.dtype(x).is_complex() {
                    return Err(Diagnostic::at(
                        e.span,
                        "softmax needs real values, but its argument is complex",
                        "complex argument",
                    ));
                }
                // softmax(x) = exp(x - max x) / sum exp(x - max x): the shift keeps exp finite.
                let m = self.p.add_expr(
                    Expr::Reduce {
                        op: ReduceOp::Max,
                        indices: idx.clone(),
                        arg: x,
                    },
                    span,
                );
                let d = self.p.add_expr(
                    Expr::Map {
                        op: MapOp::Sub,
                        args: vec![x, m],
                    },
                    span,
                );
                let ex = self.p.add_expr(
                    Expr::Map {
                        op: MapOp::Exp,
                        args: vec![d],
                    },
                    span,
                );
                let s = self.p.add_expr(
                    Expr::Product {
                        factors: vec![ex],
                        summed: idx,
                    },
                    span,
                );
                self.p.add_expr(
                    Expr::Map {
                        op: MapOp::Div,
                        args: vec![ex, s],
                    },
                    span,
                )
            }
            ExprKind::Einsum {
                equation,
                equation_span,
                operands,
                output,
            } => self.einsum(
                equation,
                *equation_span,
                operands,
                output.as_deref(),
                e.span,
            )?,
        };
        // Implicit sums placed at this node.
        Ok(match self.placements.remove(&me) {
            Some(mut idx) => {
                idx.sort();
                match self.p.exprs[v].clone() {
                    Expr::Product {
                        factors,
                        mut summed,
                    } => {
                        summed.extend(idx);
                        self.p.add_expr(Expr::Product { factors, summed }, span)
                    }
                    _ => self.p.add_expr(
                        Expr::Product {
                            factors: vec![v],
                            summed: idx,
                        },
                        span,
                    ),
                }
            }
            None => v,
        })
    }

    fn reduce_indices(
        &self,
        indices: &[ast::Ident],
        x: ExprId,
        span: Span,
    ) -> Result<Vec<IndexId>, Diagnostic> {
        let free = self.p.free(x);
        let mut out = Vec::new();
        for id in indices {
            let i = self.dim(id)?;
            if !free.contains(&i) {
                return Err(Diagnostic::at(
                    id.span,
                    format!(
                        "index '{}' is reduced but does not appear free in the argument",
                        id.name
                    ),
                    "not in the argument",
                )
                .with_secondary(span, "in this reduction"));
            }
            out.push(i);
        }
        Ok(out)
    }

    fn einsum(
        &mut self,
        equation: &str,
        eq_span: Span,
        operands: &[ast::Ident],
        output: Option<&[ast::Ident]>,
        span: Span,
    ) -> Result<ExprId, Diagnostic> {
        // Diagnostics from the einsum parser point into the string: shift them to the
        // string literal's place in the file (+1 for the opening quote).
        let shift = |mut d: Diagnostic| {
            let base = eq_span.start + 1;
            if let Some(l) = d.primary.as_mut() {
                l.span = Span::new(l.span.start + base, l.span.end + base);
            }
            for l in &mut d.secondary {
                l.span = Span::new(l.span.start + base, l.span.end + base);
            }
            d
        };
        let parsed = einsum::parse(equation).map_err(shift)?;
        let mut tensors = Vec::new();
        let mut shapes = Vec::new();
        for o in operands {
            let k = self
                .c
                .tensors
                .iter()
                .position(|t| t.name == o.name)
                .ok_or_else(|| {
                    Diagnostic::at(
                        o.span,
                        format!("unknown tensor '{}'", o.name),
                        "not defined",
                    )
                })?;
            let t = self.tensor_ids[k].ok_or_else(|| {
                Diagnostic::at(
                    o.span,
                    format!("'{}' is used before it is defined", o.name),
                    "used here",
                )
            })?;
            shapes.push(
                self.p.tensors[t]
                    .axes
                    .iter()
                    .map(|&a| self.p.size(a) as usize)
                    .collect::<Vec<_>>(),
            );
            tensors.push(t);
        }
        let r = einsum::resolve(&parsed, &shapes).map_err(shift)?;
        let names: Vec<IndexId> = match output {
            Some(out) => out.iter().map(|i| self.dim(i)).collect::<Result<_, _>>()?,
            None => self.lhs.to_vec(),
        };
        if names.len() != r.output.len() {
            return Err(Diagnostic::at(
                span,
                format!(
                    "this einsum produces {} axes but {} index names bind them",
                    r.output.len(),
                    names.len()
                ),
                if output.is_some() {
                    "name each output axis in [...]"
                } else {
                    "bound positionally to the left-hand side"
                },
            ));
        }
        // Output axes take the given names; every other index is private to this einsum.
        let mut map: BTreeMap<usize, IndexId> = BTreeMap::new();
        for (&o, &n) in r.output.iter().zip(&names) {
            let want = r.indices[o].size as u64;
            if self.p.size(n) != want {
                return Err(Diagnostic::at(
                    span,
                    format!(
                        "einsum output axis '{}' has size {want} but is bound to index '{}' of size {}",
                        r.indices[o].name,
                        self.p.indices[n].name,
                        self.p.size(n)
                    ),
                    "size mismatch",
                ));
            }
            map.insert(o, n);
        }
        let mut summed = Vec::new();
        for (k, info) in r.indices.iter().enumerate() {
            if let std::collections::btree_map::Entry::Vacant(v) = map.entry(k) {
                let id = self.p.indices.push(Index {
                    name: format!("{}'{}", info.name, self.p.indices.len()),
                    size: info.size as u64,
                    span: Some(eq_span),
                });
                v.insert(id);
                summed.push(id);
            }
        }
        let mut factors = Vec::new();
        for (t, axes) in tensors.iter().zip(&r.operands) {
            let idx = axes.iter().map(|a| map[a]).collect();
            factors.push(self.p.add_expr(
                Expr::Ref {
                    tensor: *t,
                    indices: idx,
                },
                Some(span),
            ));
        }
        // Private indices no factor uses cannot occur: every resolved index labels an axis.
        summed.retain(|i| factors.iter().any(|&f| self.p.free(f).contains(i)));
        Ok(self
            .p
            .add_expr(Expr::Product { factors, summed }, Some(span)))
    }
}

/// The pre-order number of the node where all `paths` meet after a common prefix of
/// length `n`: the next node on the (shared) path.
fn lca_node(paths: &[OccPath], n: usize) -> usize {
    match paths[0].get(n) {
        // Diverging at element n means element n's node is shared but the child differs.
        Some(&(node, _, _)) => node,
        None => paths[0].last().map(|&(node, _, _)| node).unwrap_or(0),
    }
}
