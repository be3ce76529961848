//! The `.ein` index-notation language: syntax tree, parser and checker.
//!
//! `parse` turns source text into an [`ast::Program`]; `check` resolves names and
//! checks shapes, giving a [`Checked`] program for the compiler's lowering. Both report
//! the first problem as a [`Diagnostic`](crate::diag::Diagnostic). The language is
//! described in `docs/ein-language.md`.
pub mod ast;
pub mod check;
pub mod parse;
mod print;
#[cfg(test)]
pub(crate) mod testutil;

pub use check::{check, Checked, DimInfo, StmtInfo, TensorInfo, TensorKind};
pub use parse::parse;
