//! `ExecStats::peak_bytes` counts each live array once: a step's result and the operands
//! it reads, never the result twice.

use einc::{DType, ExecOptions, TensorView};
use ndarray::{ArrayD, IxDyn};

#[test]
fn chain_peak_is_operand_plus_result() {
    // ij,jk -> ik (2×40), then ik,kl -> il (2×3): at the second step both intermediates
    // live, 80 + 6 f64 = 688 bytes; the first step alone holds 640.
    let shapes = [vec![2, 50], vec![50, 40], vec![40, 3]];
    let e = einc::compile("ij,jk,kl->il", &shapes, &[DType::F64; 3])
        .expect("compiles")
        .with_options(ExecOptions {
            collect_stats: true,
            ..Default::default()
        });
    let plan = e.plan_text();
    assert!(
        plan.contains("-> [i, k]") && plan.contains("largest intermediate 80.0"),
        "{plan}"
    );
    let arrays: Vec<ArrayD<f64>> = shapes.iter().map(|s| ArrayD::ones(IxDyn(s))).collect();
    let views: Vec<TensorView<'_>> = arrays.iter().map(|a| TensorView::F64(a.view())).collect();
    let (out, stats) = e.run_with_stats(&views).expect("runs");
    assert_eq!(out.shape(), &[2, 3]);
    assert_eq!(stats.peak_bytes, (80 + 6) * 8);
}

#[test]
fn single_step_peak_is_its_result() {
    let e = einc::compile("ij,jk->ik", &[vec![3, 4], vec![4, 5]], &[DType::F32; 2])
        .expect("compiles")
        .with_options(ExecOptions {
            collect_stats: true,
            ..Default::default()
        });
    let a = ArrayD::<f32>::ones(IxDyn(&[3, 4]));
    let b = ArrayD::<f32>::ones(IxDyn(&[4, 5]));
    let (_, stats) = e
        .run_with_stats(&[TensorView::F32(a.view()), TensorView::F32(b.view())])
        .expect("runs");
    assert_eq!(stats.peak_bytes, 15 * 4);
}
