//! einc's executors: the naive reference oracle and the CPU executor of plans.
//!
//! - [`reference`]: naive einsum over complex128, the correctness oracle for kernels;
//! - [`oracle`]: evaluates IR programs directly with the reference, the oracle for plans;
//! - [`kernels`]: GEMM-backed pairwise contraction, unary einsum, elementwise ops;
//! - [`fused`]: one-pass evaluation of fused elementwise chains;
//! - [`semiring`]: max-plus, min-plus and log-sum-exp contractions;
//! - [`exec`]: runs a `Plan` on [`TensorData`] arrays;
//! - `inplace`: contractions computed in the buffer of the operand they consume.
pub mod exec;
pub mod fused;
pub mod gpu;
mod inplace;
pub mod kernels;
pub mod oracle;
pub mod reference;
pub mod semiring;
pub mod value;

pub use exec::{
    execute, execute_views, input_ids, ExecError, ExecOptions, ExecStats, InPlaceMode, Target,
};
pub use value::{TensorData, TensorView};
