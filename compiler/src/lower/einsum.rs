//! A resolved einsum equation becomes a one-statement program: `out[output] = Product`.

use crate::ir::*;
use einc_frontend::ein::ast::DType;
use einc_frontend::einsum::Resolved;

/// Lower `resolved` with operand dtypes `dtypes` (one per operand). Operand tensors are
/// named `op0`, `op1`, ...; the result is `out`.
pub fn lower_einsum(resolved: &Resolved, dtypes: &[DType]) -> Program {
    let mut p = Program::default();
    let ids: Vec<IndexId> = resolved
        .indices
        .iter()
        .map(|i| {
            p.indices.push(Index {
                name: i.name.clone(),
                size: i.size as u64,
                span: None,
            })
        })
        .collect();
    let mut factors = Vec::new();
    for (k, axes) in resolved.operands.iter().enumerate() {
        let axes: Vec<IndexId> = axes.iter().map(|&a| ids[a]).collect();
        let t = p.tensors.push(Tensor {
            name: format!("op{k}"),
            axes: axes.clone(),
            dtype: dtypes.get(k).copied().unwrap_or(DType::F64),
            kind: TensorKind::Input,
            layout: None,
            span: None,
        });
        factors.push(p.add_expr(
            Expr::Ref {
                tensor: t,
                indices: axes,
            },
            None,
        ));
    }
    let output: Vec<IndexId> = resolved.output.iter().map(|&o| ids[o]).collect();
    let mut summed: Vec<IndexId> = resolved
        .operands
        .iter()
        .flatten()
        .map(|&a| ids[a])
        .filter(|i| !output.contains(i))
        .collect();
    summed.sort();
    summed.dedup();
    let dtype = dtypes
        .iter()
        .copied()
        .reduce(DType::promote)
        .unwrap_or(DType::F64);
    let value = p.add_expr(Expr::Product { factors, summed }, None);
    let out = p.tensors.push(Tensor {
        name: "out".into(),
        axes: output.clone(),
        dtype,
        kind: TensorKind::Result,
        layout: None,
        span: None,
    });
    p.stmts.push(Stmt {
        target: out,
        indices: output,
        value,
        span: None,
    });
    p.outputs.push(out);
    p
}
