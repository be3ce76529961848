//! einc's middle: IR, passes, contraction-order search, planning.
//!
//! Passes are verbs: `lower`, `optimize`, `plan`; `verify` runs after each (see
//! `pipeline`). `order` is a pure function `(inputs, output, sizes, limits) -> path`,
//! independent of everything else here.
pub mod dump;
pub mod emit_cpu;
pub mod ir;
pub mod lower;
pub mod optimize;
pub mod order;
pub mod pipeline;
pub mod plan;
pub mod semiring;
pub mod verify;
pub mod wgsl;

pub use pipeline::{
    compile_ein, compile_einsum, compile_program, CompileConfig, CompileError, Compiled,
};
