//! Canonical source text for ASTs (`Display`), used for debug dumps and for round-trip
//! tests: printing a parsed program and parsing it again gives the same program.
//!
//! Expressions are printed with the fewest parentheses that keep the tree's shape under
//! the grammar's precedence and left associativity.

use super::ast::{BinOp, Expr, ExprKind, Ident, Item, Program};
use std::fmt::{self, Display, Formatter};

impl Display for Ident {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `[a, b]`, or nothing for an empty list when `bare_if_empty` (scalars).
struct Indices<'a>(&'a [Ident], bool);

impl Display for Indices<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() && self.1 {
            return Ok(());
        }
        f.write_str("[")?;
        for (k, ix) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{ix}")?;
        }
        f.write_str("]")
    }
}

impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            writeln!(f, "{item}")?;
        }
        Ok(())
    }
}

impl Display for Item {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Item::Dim(decls) => {
                f.write_str("dim ")?;
                for (k, d) in decls.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", d.name)?;
                    if let Some((size, _)) = d.size {
                        write!(f, " = {size}")?;
                    }
                }
                Ok(())
            }
            Item::Input(d) => write!(
                f,
                "input {}{}: {}",
                d.name,
                Indices(&d.indices, true),
                d.dtype.name()
            ),
            Item::Layout(l) => {
                write!(
                    f,
                    "layout {} {}{}",
                    l.tensor,
                    l.kind,
                    Indices(&l.order, false)
                )?;
                for (key, value, _) in &l.options {
                    write!(f, " {key}={value}")?;
                }
                Ok(())
            }
            Item::Assign(a) => {
                write!(f, "{}{} = {}", a.target, Indices(&a.indices, true), a.value)
            }
            Item::Output(o) => {
                f.write_str("output ")?;
                for (k, name) in o.names.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}")?;
                }
                Ok(())
            }
        }
    }
}

/// Binding strength: sums < products < unary minus < everything else.
fn precedence(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary {
            op: BinOp::Add | BinOp::Sub,
            ..
        } => 1,
        ExprKind::Binary { .. } => 2,
        ExprKind::Neg(_) => 3,
        _ => 4,
    }
}

/// `e`, parenthesised when it binds weaker than `min`.
struct Operand<'a>(&'a Expr, u8);

impl Display for Operand<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if precedence(self.0) < self.1 {
            write!(f, "({})", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Tensor { name, indices } => write!(f, "{name}{}", Indices(indices, true)),
            // `{:?}` always prints a form the lexer reads back (`2.0`, `1e-7`).
            ExprKind::Number(v) => write!(f, "{v:?}"),
            ExprKind::Neg(x) => write!(f, "-{}", Operand(x, 3)),
            ExprKind::Binary { op, lhs, rhs } => {
                let p = precedence(self);
                // Left-associative: an equally strong right operand needs parentheses.
                write!(
                    f,
                    "{} {} {}",
                    Operand(lhs, p),
                    op.symbol(),
                    Operand(rhs, p + 1)
                )
            }
            ExprKind::Call { func, args, .. } => {
                write!(f, "{}(", func.name())?;
                for (k, a) in args.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            ExprKind::Reduce {
                op, indices, arg, ..
            } => write!(f, "{}{}({arg})", op.name(), Indices(indices, false)),
            ExprKind::Softmax { indices, arg } => {
                write!(f, "softmax{}({arg})", Indices(indices, false))
            }
            ExprKind::Einsum {
                equation,
                operands,
                output,
                ..
            } => {
                write!(f, "einsum(\"{equation}\"")?;
                for o in operands {
                    write!(f, ", {o}")?;
                }
                f.write_str(")")?;
                if let Some(out) = output {
                    write!(f, "{}", Indices(out, false))?;
                }
                Ok(())
            }
        }
    }
}
