//! einc's frontend: einsum strings and `.ein` programs to checked ASTs, with diagnostics.
pub mod diag;
pub mod ein;
pub mod einsum;
pub mod span;

pub use diag::Diagnostic;
pub use span::Span;
