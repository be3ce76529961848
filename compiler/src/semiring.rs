//! The semiring a plan's products are evaluated in.
//!
//! An einsum is `⊕` over the summed indices of `⊗` over the factors. The ordinary
//! sum-product semiring is the default; tensor-network users also contract in the tropical
//! semirings (MAP inference, shortest paths) and in log space. Every contraction order is
//! valid in every commutative semiring, so the order search and the plan are the same; only
//! the arithmetic of `Unary` reductions, `Contract` steps and slice sums changes.

use crate::ir::ReduceOp;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Semiring {
    /// `⊕ = +`, `⊗ = ×`: ordinary einsum.
    #[default]
    SumProduct,
    /// `⊕ = max`, `⊗ = +` (tropical, e.g. MAP / Viterbi scores).
    MaxPlus,
    /// `⊕ = min`, `⊗ = +` (tropical, e.g. shortest paths).
    MinPlus,
    /// `⊕ = log(exp a + exp b)`, `⊗ = +`: sum-product on log-values, computed stably.
    LogSumExp,
}

impl Semiring {
    pub const ALL: [Semiring; 4] = [
        Semiring::SumProduct,
        Semiring::MaxPlus,
        Semiring::MinPlus,
        Semiring::LogSumExp,
    ];

    /// The name used on command lines and in dumps.
    pub fn name(self) -> &'static str {
        match self {
            Semiring::SumProduct => "sum-product",
            Semiring::MaxPlus => "max-plus",
            Semiring::MinPlus => "min-plus",
            Semiring::LogSumExp => "log-sum-exp",
        }
    }

    pub fn parse(s: &str) -> Option<Semiring> {
        Semiring::ALL.into_iter().find(|r| r.name() == s)
    }

    /// The reduction that is this semiring's `⊕` (whose `⊗` is then `+`), or `None` for
    /// sum-product.
    pub fn add_op(self) -> Option<ReduceOp> {
        match self {
            Semiring::SumProduct => None,
            Semiring::MaxPlus => Some(ReduceOp::Max),
            Semiring::MinPlus => Some(ReduceOp::Min),
            Semiring::LogSumExp => Some(ReduceOp::LogSumExp),
        }
    }
}

impl std::fmt::Display for Semiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
