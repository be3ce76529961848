//! `einc run --stats`: per-step time, flops and throughput, and peak memory.

use einc::ExecStats;
use einc_compiler::plan::{Op, Plan};
use std::fmt::Write;

pub fn render(plan: &Plan, stats: &ExecStats) -> String {
    let p = &plan.program;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>6}  {:<28} {:>10} {:>12} {:>9} {:>12}",
        "step", "op", "ms", "flops", "GFLOP/s", "bytes"
    );
    for &(k, t, flops, bytes) in &stats.steps {
        let step = &plan.steps[k];
        let op = match &step.op {
            Op::Load { tensor } => format!("load {}", p.tensors[*tensor].name),
            Op::Const(_) => "const".to_string(),
            Op::Unary { .. } => "unary".to_string(),
            Op::FusedSum { of } => format!("sum of %{} (in its pass)", of.0),
            Op::Contract { .. } => "contract".to_string(),
            Op::Elementwise { .. } => "elementwise".to_string(),
            Op::Fused { nodes, .. } => format!("fused x{}", nodes.len()),
            Op::Reduce { op, .. } => format!("reduce.{}", op.name()),
            Op::Store { tensor, .. } => format!("store {}", p.tensors[*tensor].name),
            Op::SliceSum { sliced, .. } => {
                let n: f64 = sliced.iter().map(|&i| p.size(i) as f64).product();
                format!("slice_sum x{n}")
            }
            Op::Arg(k) => format!("arg {k}"),
        };
        let idx: Vec<&str> = step
            .indices
            .iter()
            .map(|&i| p.indices[i].name.as_str())
            .collect();
        let label = format!("{op} [{}]", idx.join(","));
        let ms = t.as_secs_f64() * 1e3;
        let gflops = if t.as_secs_f64() > 0.0 {
            flops / t.as_secs_f64() / 1e9
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "{:>6}  {:<28} {:>10.3} {:>12.0} {:>9.2} {:>12}",
            format!("%{k}"),
            label,
            ms,
            flops,
            gflops,
            bytes
        );
    }
    let _ = writeln!(
        s,
        "total {:.3} ms; flops {:.0}; peak memory of intermediates and outputs {} bytes ({:.2} MiB); inputs {} bytes",
        stats.total.as_secs_f64() * 1e3,
        plan.flops(),
        stats.peak_bytes,
        stats.peak_bytes as f64 / (1 << 20) as f64,
        stats.input_bytes
    );
    if stats.in_place_steps > 0 {
        let _ = writeln!(
            s,
            "{} steps computed in the buffer of the operand they consume (scratch blocks up to {} bytes)",
            stats.in_place_steps, stats.workspace_bytes
        );
    }
    s
}
