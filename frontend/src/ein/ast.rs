//! Abstract syntax of `.ein` programs, exactly as written (no name resolution yet).
//!
//! Every node carries the [`Span`] of its text. Names are kept as strings here; the
//! checker (`check.rs`) resolves them and reports unknown or inconsistent ones.

use crate::span::Span;

/// An identifier with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DType {
    F32,
    F64,
    C64,
    C128,
}

impl DType {
    pub const ALL: [DType; 4] = [DType::F32, DType::F64, DType::C64, DType::C128];

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::C64 => "c64",
            DType::C128 => "c128",
        }
    }

    pub fn is_complex(self) -> bool {
        matches!(self, DType::C64 | DType::C128)
    }

    /// numpy's result type of combining two dtypes.
    pub fn promote(self, other: DType) -> DType {
        use DType::*;
        match (self, other) {
            (F32, F32) => F32,
            (F32 | F64, F32 | F64) => F64,
            (C64, F32) | (F32, C64) | (C64, C64) => C64,
            _ => C128,
        }
    }
}

/// `dim i = 64, j, k = 8` — one item per declared index; `size` is `None` when the size
/// is bound later from input shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct DimDecl {
    pub name: Ident,
    pub size: Option<(u64, Span)>,
}

/// `input A[i, j]: f32`
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub name: Ident,
    pub indices: Vec<Ident>,
    pub dtype: DType,
    pub dtype_span: Span,
    pub span: Span,
}

/// `layout A packed[i, k] slots=8192` — how an input is packed into slot vectors
/// (FHE-style). Kept as metadata; lowering to rotations comes later.
#[derive(Clone, Debug, PartialEq)]
pub struct LayoutDecl {
    pub tensor: Ident,
    /// The layout kind, e.g. `packed`.
    pub kind: Ident,
    /// Index order inside the slot vector, outermost first.
    pub order: Vec<Ident>,
    /// `key=value` options such as `slots=8192`, in source order.
    pub options: Vec<(Ident, u64, Span)>,
    pub span: Span,
}

/// `X[i, k] = expr`
#[derive(Clone, Debug, PartialEq)]
pub struct Assign {
    pub target: Ident,
    pub indices: Vec<Ident>,
    pub value: Expr,
    pub span: Span,
}

/// `output O, P`
#[derive(Clone, Debug, PartialEq)]
pub struct OutputDecl {
    pub names: Vec<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Dim(Vec<DimDecl>),
    Input(InputDecl),
    Layout(LayoutDecl),
    Assign(Assign),
    Output(OutputDecl),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub items: Vec<Item>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

/// Elementwise functions. `Max`/`Min` here are the two-argument elementwise forms
/// (`max(a, b)`); reductions are [`ReduceOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
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

impl Func {
    /// Every elementwise function, in the order the documentation lists them.
    pub const ALL: [Func; 9] = [
        Func::Exp,
        Func::Log,
        Func::Sqrt,
        Func::Tanh,
        Func::Abs,
        Func::Relu,
        Func::Sigmoid,
        Func::Max,
        Func::Min,
    ];

    pub fn arity(self) -> usize {
        match self {
            Func::Max | Func::Min => 2,
            _ => 1,
        }
    }

    /// The name as written in source.
    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Sqrt => "sqrt",
            Func::Tanh => "tanh",
            Func::Abs => "abs",
            Func::Relu => "relu",
            Func::Sigmoid => "sigmoid",
            Func::Max => "max",
            Func::Min => "min",
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Reductions over a named index set: `sum[j](e)`, `max[j,k](e)`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
    LogSumExp,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 4] = [
        ReduceOp::Sum,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::LogSumExp,
    ];

    /// The name as written in source (`sum[j](...)`).
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::LogSumExp => "logsumexp",
        }
    }

    pub fn from_name(name: &str) -> Option<ReduceOp> {
        ReduceOp::ALL.into_iter().find(|r| r.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// `A[i, j]` (indices may repeat: `T[i, i]` is a diagonal); a scalar tensor is `s[]` or `s`.
    Tensor { name: Ident, indices: Vec<Ident> },
    /// Numeric literal.
    Number(f64),
    /// `-e`
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `exp(e)`, `max(a, b)`, ...
    Call {
        func: Func,
        func_span: Span,
        args: Vec<Expr>,
    },
    /// `sum[j, k](e)` and friends; the listed indices are bound (not free in the result).
    Reduce {
        op: ReduceOp,
        op_span: Span,
        indices: Vec<Ident>,
        arg: Box<Expr>,
    },
    /// `softmax[j, k](e)`: normalise `exp(e)` over the listed indices; they stay free.
    Softmax { indices: Vec<Ident>, arg: Box<Expr> },
    /// `einsum("ij,jk->ik", A, B)` optionally followed by `[i, k]` naming its output axes.
    /// Without the brackets its axes bind positionally to the left-hand side's indices.
    Einsum {
        equation: String,
        equation_span: Span,
        operands: Vec<Ident>,
        output: Option<Vec<Ident>>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}
