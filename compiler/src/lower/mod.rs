//! `lower`: checked frontend input (a resolved einsum, or a checked `.ein` program) to IR.
//!
//! Lowering is where the Einstein convention becomes explicit: every summation is a
//! `Product` node with its summed indices; softmax becomes max/sub/exp/sum/div.
pub mod ein;
pub mod einsum;

pub use ein::{bind_dims, lower_program};
pub use einsum::lower_einsum;
