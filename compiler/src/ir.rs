//! The sum-product IR: statements over named, sized indices.
//!
//! A [`Program`] owns three arenas (indices, tensors, expressions) addressed by typed
//! handles, like naga's. Expressions form a DAG: a handle may be used by several parents
//! (softmax's argument is used by its max and by its exponential), and the e-graph pass
//! shares equal subterms across statements.
//!
//! The core node is [`Expr::Product`]: an n-ary product of factors with a set of summed
//! indices — one einsum. Its operand order carries no meaning; the contraction order is
//! chosen later by `order::search`, never by rewriting. Maps, non-sum reductions and `Add`
//! wrap products for the `.ein` language (attention's softmax, normalisers).
//!
//! Invariants are listed and checked in `verify.rs`.

use einc_frontend::ein::ast::DType;
use einc_frontend::Span;

macro_rules! handle {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

handle!(IndexId, "Handle of an index in [`Program::indices`].");

/// Index ids as the plain `u32` labels the kernels take, without copying.
pub fn labels(ids: &[IndexId]) -> &[u32] {
    // SAFETY: `IndexId` is `repr(transparent)` over `u32`, so a slice of one has the
    // layout of a slice of the other; the lifetime is carried over unchanged.
    unsafe { std::slice::from_raw_parts(ids.as_ptr().cast::<u32>(), ids.len()) }
}
handle!(TensorId, "Handle of a tensor in [`Program::tensors`].");
handle!(ExprId, "Handle of an expression in [`Program::exprs`].");

/// A typed arena: items are never removed, handles stay valid.
#[derive(Clone, Debug, PartialEq)]
pub struct Arena<H, T> {
    items: Vec<T>,
    _h: std::marker::PhantomData<H>,
}

impl<H, T> Default for Arena<H, T> {
    fn default() -> Self {
        Arena {
            items: Vec::new(),
            _h: std::marker::PhantomData,
        }
    }
}

pub trait Handle: Copy {
    fn from_usize(i: usize) -> Self;
    fn to_usize(self) -> usize;
}

macro_rules! impl_handle {
    ($($name:ident),*) => {$(
        impl Handle for $name {
            fn from_usize(i: usize) -> Self {
                $name(u32::try_from(i).expect("arena larger than u32::MAX items"))
            }
            fn to_usize(self) -> usize {
                self.0 as usize
            }
        }
    )*};
}
impl_handle!(IndexId, TensorId, ExprId);

impl<H: Handle, T> Arena<H, T> {
    pub fn push(&mut self, item: T) -> H {
        self.items.push(item);
        H::from_usize(self.items.len() - 1)
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn get(&self, h: H) -> Option<&T> {
        self.items.get(h.to_usize())
    }
    pub fn iter(&self) -> impl Iterator<Item = (H, &T)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, t)| (H::from_usize(i), t))
    }
}

impl<H: Handle, T> std::ops::Index<H> for Arena<H, T> {
    type Output = T;
    fn index(&self, h: H) -> &T {
        &self.items[h.to_usize()]
    }
}

impl<H: Handle, T> std::ops::IndexMut<H> for Arena<H, T> {
    fn index_mut(&mut self, h: H) -> &mut T {
        &mut self.items[h.to_usize()]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Index {
    pub name: String,
    pub size: u64,
    /// Where the index was declared, if anywhere.
    pub span: Option<Span>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    Input,
    /// Defined by a statement.
    Result,
}

/// FHE-style packing of an input into slot vectors; parsed and carried, lowered later.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub kind: String,
    pub order: Vec<IndexId>,
    pub options: Vec<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    /// One index per axis; gives the axis sizes (and names for dumps).
    pub axes: Vec<IndexId>,
    pub dtype: DType,
    pub kind: TensorKind,
    pub layout: Option<Layout>,
    pub span: Option<Span>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapOp {
    Neg,
    Sub,
    Div,
    Exp,
    Log,
    Sqrt,
    Tanh,
    Abs,
    Relu,
    Sigmoid,
    Max,
    Min,
}

impl MapOp {
    pub fn name(self) -> &'static str {
        match self {
            MapOp::Neg => "neg",
            MapOp::Sub => "sub",
            MapOp::Div => "div",
            MapOp::Exp => "exp",
            MapOp::Log => "log",
            MapOp::Sqrt => "sqrt",
            MapOp::Tanh => "tanh",
            MapOp::Abs => "abs",
            MapOp::Relu => "relu",
            MapOp::Sigmoid => "sigmoid",
            MapOp::Max => "max",
            MapOp::Min => "min",
        }
    }

    pub fn arity(self) -> usize {
        match self {
            MapOp::Sub | MapOp::Div | MapOp::Max | MapOp::Min => 2,
            _ => 1,
        }
    }

    /// Ops that need an ordering and so reject complex operands.
    pub fn needs_real(self) -> bool {
        matches!(self, MapOp::Relu | MapOp::Max | MapOp::Min)
    }
}

/// Non-sum reductions (a sum is a [`Expr::Product`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReduceOp {
    Max,
    Min,
    LogSumExp,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::LogSumExp => "logsumexp",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `A[i, j]`; indices may repeat (diagonal); one per axis of the tensor.
    Ref {
        tensor: TensorId,
        indices: Vec<IndexId>,
    },
    /// A real scalar literal.
    Const(f64),
    /// `sum_{summed} prod(factors)`: one einsum. Summed indices are bound here.
    Product {
        factors: Vec<ExprId>,
        summed: Vec<IndexId>,
    },
    /// Elementwise sum of terms, broadcasting by index name.
    Add(Vec<ExprId>),
    /// Elementwise function of its arguments, broadcasting by index name.
    Map { op: MapOp, args: Vec<ExprId> },
    /// Reduce `arg` over `indices`.
    Reduce {
        op: ReduceOp,
        indices: Vec<IndexId>,
        arg: ExprId,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub target: TensorId,
    /// The left-hand side's indices (distinct), in the order of the target's axes.
    pub indices: Vec<IndexId>,
    pub value: ExprId,
    pub span: Option<Span>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    pub indices: Arena<IndexId, Index>,
    pub tensors: Arena<TensorId, Tensor>,
    pub exprs: Arena<ExprId, Expr>,
    /// Span of each expression (parallel to `exprs`), `None` where synthesised.
    pub expr_spans: Vec<Option<Span>>,
    pub stmts: Vec<Stmt>,
    pub outputs: Vec<TensorId>,
}

impl Program {
    pub fn add_expr(&mut self, e: Expr, span: Option<Span>) -> ExprId {
        self.expr_spans.push(span);
        self.exprs.push(e)
    }

    pub fn size(&self, i: IndexId) -> u64 {
        self.indices[i].size
    }

    /// Free indices of an expression, sorted by id (deduplicated).
    pub fn free(&self, e: ExprId) -> Vec<IndexId> {
        let mut out = match &self.exprs[e] {
            Expr::Ref { indices, .. } => indices.clone(),
            Expr::Const(_) => Vec::new(),
            Expr::Product { factors, summed } => {
                let mut v: Vec<IndexId> = factors.iter().flat_map(|&f| self.free(f)).collect();
                v.retain(|i| !summed.contains(i));
                v
            }
            Expr::Add(args) | Expr::Map { args, .. } => {
                args.iter().flat_map(|&a| self.free(a)).collect()
            }
            Expr::Reduce { indices, arg, .. } => {
                let mut v = self.free(*arg);
                v.retain(|i| !indices.contains(i));
                v
            }
        };
        out.sort();
        out.dedup();
        out
    }

    /// dtype of an expression: numpy promotion over the tensors it reads.
    pub fn dtype(&self, e: ExprId) -> DType {
        let children: Vec<ExprId> = match &self.exprs[e] {
            Expr::Ref { tensor, .. } => return self.tensors[*tensor].dtype,
            Expr::Const(_) => return DType::F32,
            Expr::Product { factors, .. } => factors.clone(),
            Expr::Add(args) | Expr::Map { args, .. } => args.clone(),
            Expr::Reduce { arg, .. } => vec![*arg],
        };
        children
            .iter()
            .map(|&c| self.dtype(c))
            .reduce(DType::promote)
            .unwrap_or(DType::F32)
    }

    pub fn tensor_by_name(&self, name: &str) -> Option<TensorId> {
        self.tensors
            .iter()
            .find(|(_, t)| t.name == name)
            .map(|(h, _)| h)
    }

    pub fn inputs(&self) -> impl Iterator<Item = (TensorId, &Tensor)> {
        self.tensors
            .iter()
            .filter(|(_, t)| t.kind == TensorKind::Input)
    }

    pub fn stmt_of(&self, t: TensorId) -> Option<&Stmt> {
        self.stmts.iter().find(|s| s.target == t)
    }
}
