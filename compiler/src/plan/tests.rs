//! Sliced plans (built under a memory limit, checked by `Plan::verify`, and refused by it
//! when a slice body breaks an invariant), fused chains, the search budget, and the layout
//! of intermediates.

use super::*;
use crate::pipeline::{compile_einsum, CompileConfig};

fn sliced(eq: &str, shapes: &[Vec<usize>], limit: f64) -> Plan {
    let cfg = CompileConfig {
        plan: PlanConfig {
            optimizer: Optimizer::Greedy,
            limits: Limits {
                memory_limit: Some(limit),
                allow_slicing: true,
                ..Limits::default()
            },
            ..PlanConfig::default()
        },
        ..CompileConfig::default()
    };
    let dtypes = vec![DType::F64; shapes.len()];
    compile_einsum(eq, shapes, &dtypes, &cfg)
        .expect("compiles")
        .plan
}

fn slice_sum(plan: &Plan) -> &Step {
    plan.steps
        .iter()
        .find(|s| matches!(s.op, Op::SliceSum { .. }))
        .expect("a sliced product")
}

#[test]
fn a_ring_over_the_limit_is_sliced_and_verifies() {
    let n = 30;
    let plan = sliced("ij,jk,kl,li->", &vec![vec![n, n]; 4], 100.0);
    plan.verify().expect("valid plan");
    assert!(plan.largest_intermediate() <= 100.0);
    let s = slice_sum(&plan);
    let Op::SliceSum { args, sliced, body } = &s.op else {
        unreachable!()
    };
    assert_eq!(args.len(), 4);
    assert!(!sliced.is_empty());
    let slices: f64 = sliced
        .iter()
        .map(|&i| plan.program.size(i) as f64)
        .product();
    let per_slice: f64 = body.iter().map(|b| b.flops).sum();
    assert_eq!(s.flops, slices * per_slice);
    let text = crate::dump::dump_plan(&plan);
    assert!(text.contains("slice_sum over ["), "{text}");
    assert!(text.contains("    %0 = arg 0"), "{text}");
}

#[test]
fn a_factor_reduced_over_a_sliced_index_is_reduced_per_slice() {
    // `x` is private to the first factor: its reduction keeps i and j, so when either is
    // sliced the reduction must run inside the body, not materialise ij outside.
    let n = 30;
    let mut shapes = vec![vec![n, n, 7]];
    shapes.extend(vec![vec![n, n]; 3]);
    let plan = sliced("ijx,jk,kl,li->", &shapes, 100.0);
    plan.verify().expect("valid plan");
    assert!(
        plan.largest_intermediate() <= 100.0,
        "{}",
        crate::dump::dump_plan(&plan)
    );
    let Op::SliceSum { body, .. } = &slice_sum(&plan).op else {
        unreachable!()
    };
    assert!(body.iter().any(|b| matches!(b.op, Op::Unary { .. })));
}

#[test]
fn verify_refuses_broken_slice_bodies() {
    let plan = sliced("ij,jk,kl,li->", &vec![vec![20, 20]; 4], 50.0);
    let k = plan
        .steps
        .iter()
        .position(|s| matches!(s.op, Op::SliceSum { .. }))
        .expect("sliced");
    let edit = |f: &dyn Fn(&mut Step)| {
        let mut p = plan.clone();
        f(&mut p.steps[k]);
        p.verify().expect_err("must be refused").0
    };
    let e = edit(&|s| {
        if let Op::SliceSum { body, sliced, .. } = &mut s.op {
            let i = sliced[0];
            body.last_mut().expect("body").indices.push(i);
        }
    });
    assert!(e.contains("sliced index") || e.contains("indices"), "{e}");
    let e = edit(&|s| {
        if let Op::SliceSum { body, .. } = &mut s.op {
            body[0].op = Op::Const(1.0);
        }
    });
    assert!(e.contains("slice body may only hold"), "{e}");
    let e = edit(&|s| {
        if let Op::SliceSum { sliced, .. } = &mut s.op {
            sliced.clear();
        }
    });
    assert!(e.contains("without sliced indices"), "{e}");
    let mut p = plan.clone();
    p.steps[0].op = Op::Arg(0);
    assert!(p
        .verify()
        .expect_err("arg at top level")
        .0
        .contains("outside"));
}

#[test]
fn elementwise_chains_fuse_and_the_plan_stays_valid() {
    use crate::pipeline::{check_ein, compile_ein};
    let src = "dim i = 4, j = 3\ninput a[i, j]: f64\ninput b[j]: f64\n\
               Y[i, j] = exp(tanh(a[i, j]) - b[j]) / (1 + abs(a[i, j]))\n\
               Z[i, j] = Y[i, j] + Y[i, j]\noutput Y, Z\n";
    let (_, checked) = check_ein(src).expect("checks");
    let plan = compile_ein(&checked, &Default::default(), &CompileConfig::default())
        .expect("compiles")
        .plan;
    plan.verify().expect("valid after fusion");
    let fused: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.op, Op::Fused { .. }))
        .collect();
    assert_eq!(fused.len(), 1, "{}", crate::dump::dump_plan(&plan));
    let Op::Fused { nodes, .. } = &fused[0].op else {
        unreachable!()
    };
    // tanh, sub, exp, abs, add, div on top of their leaves; `b` is broadcast and stays a
    // leaf, and `Y`, read twice by `Z`, is not absorbed into it.
    assert!(nodes.len() >= 9, "{nodes:?}");
    assert!(!plan.steps.iter().any(|s| matches!(
        &s.op,
        Op::Elementwise {
            op: ElemOp::Map(MapOp::Tanh),
            ..
        }
    )));
}

fn ein_plan(src: &str) -> Plan {
    use crate::pipeline::{check_ein, compile_ein};
    let (_, checked) = check_ein(src).expect("checks");
    compile_ein(&checked, &Default::default(), &CompileConfig::default())
        .expect("compiles")
        .plan
}

#[test]
fn a_softmax_normaliser_is_summed_in_the_exp_pass() {
    let plan = ein_plan(
        "dim i = 8, j = 16, d = 4\ninput S[i, j]: f64\ninput V[j, d]: f64\n\
         P[i, j] = softmax[j](S[i, j])\nO[i, d] = P[i, j] * V[j, d]\noutput O\n",
    );
    plan.verify().expect("valid");
    let text = crate::dump::dump_plan(&plan);
    let sums: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.op, Op::FusedSum { .. }))
        .collect();
    assert_eq!(sums.len(), 1, "{text}");
    let Op::FusedSum { of } = sums[0].op else {
        unreachable!()
    };
    let pass = &plan.steps[of.0 as usize];
    assert!(matches!(pass.op, Op::Fused { .. }), "{text}");
    assert_eq!(sums[0].flops, 0.0);
    // One per element of the pass (exp and the subtraction of the max together).
    assert_eq!(pass.flops, 8.0 * 16.0, "{text}");
    assert!(
        !plan.steps.iter().any(|s| matches!(s.op, Op::Unary { .. })),
        "{text}"
    );
}

/// `E = exp(S)` and its sum keeping `kept`, as two statements.
fn exp_and_sum(kept: &str) -> Plan {
    ein_plan(&format!(
        "dim i = 8, j = 16\ninput S[i, j]: f64\nE[i, j] = exp(S[i, j])\n\
         Z[{kept}] = E[i, j]\noutput E, Z\n"
    ))
}

fn has_fused_sum(plan: &Plan) -> bool {
    plan.verify().expect("valid");
    plan.steps
        .iter()
        .any(|s| matches!(s.op, Op::FusedSum { .. }))
}

#[test]
fn a_sum_that_keeps_a_trailing_index_stays_a_second_pass() {
    // Summing `i` (the pass's first index) out of `exp(S)[i, j]` keeps `[j]`, not a prefix:
    // rows of the pass would fall into every element of the sum.
    let plan = exp_and_sum("j");
    assert!(!has_fused_sum(&plan), "{}", crate::dump::dump_plan(&plan));
    // Kept `[i]`: fused through the store and load of `E`, and the single `exp` step
    // became a one-node chain.
    let plan = exp_and_sum("i");
    assert!(has_fused_sum(&plan), "{}", crate::dump::dump_plan(&plan));
}

#[test]
fn verify_refuses_a_fused_sum_that_is_not_one_prefix_of_a_fused_pass() {
    let plan = exp_and_sum("i");
    let k = plan
        .steps
        .iter()
        .position(|s| matches!(s.op, Op::FusedSum { .. }))
        .expect("a fused sum");
    let Op::FusedSum { of } = plan.steps[k].op else {
        unreachable!()
    };
    let refused = |p: &Plan| p.verify().expect_err("must be refused").0;
    // Keeping the trailing index instead of the leading one.
    let mut p = plan.clone();
    p.steps[k].indices = vec![plan.steps[of.0 as usize].indices[1]];
    assert!(refused(&p).contains("fused sum not of a fused step"));
    // Summing a value that is not a fused pass (its load).
    let mut p = plan.clone();
    let load = plan
        .steps
        .iter()
        .position(|s| matches!(s.op, Op::Load { .. }))
        .expect("a load");
    p.steps[k].op = Op::FusedSum {
        of: ValueId(load as u32),
    };
    assert!(refused(&p).contains("fused sum not of a fused step"));
    // Two sums of one pass.
    let mut p = plan.clone();
    let mut twin = p.steps[k].clone();
    twin.out = ValueId(p.steps.len() as u32);
    p.steps.push(twin);
    assert!(refused(&p).contains("a second fused sum"));
    // Outside sum-product.
    let mut p = plan.clone();
    p.semiring = Semiring::MaxPlus;
    assert!(refused(&p).contains("outside sum-product"));
}

/// An einsum over a `w × h` open lattice of bond-2 tensors, contracted to a scalar.
fn lattice_einsum(w: usize, h: usize) -> (String, Vec<Vec<usize>>) {
    let mut labels = (0..)
        .filter_map(char::from_u32)
        .filter(|c| c.is_alphabetic());
    let mut terms: Vec<String> = vec![String::new(); w * h];
    for y in 0..h {
        for x in 0..w {
            let k = y * w + x;
            if x + 1 < w {
                let c = labels.next().expect("enough labels");
                terms[k].push(c);
                terms[k + 1].push(c);
            }
            if y + 1 < h {
                let c = labels.next().expect("enough labels");
                terms[k].push(c);
                terms[k + w].push(c);
            }
        }
    }
    let shapes = terms.iter().map(|t| vec![2; t.chars().count()]).collect();
    (format!("{}->", terms.join(",")), shapes)
}

#[test]
fn a_compile_sizes_the_order_search_to_the_contraction() {
    let (eq, shapes) = lattice_einsum(10, 6);
    let dtypes = vec![DType::F64; shapes.len()];
    let cfg = CompileConfig::default();
    let a = compile_einsum(&eq, &shapes, &dtypes, &cfg).expect("compiles");
    // A few thousand flops: the compile budget's floor of 4096 tensor-trials, not the
    // search's own default of 2048 trials.
    let trials = format!("hyper: {} trials", 4096 / 60);
    assert!(
        a.plan.notes.iter().any(|n| n.starts_with(&trials)),
        "{:?}",
        a.plan.notes
    );
    let b = compile_einsum(&eq, &shapes, &dtypes, &cfg).expect("compiles");
    assert_eq!(a.plan, b.plan, "deterministic");
    // A caller's choice stands.
    let mut fixed = CompileConfig::default();
    fixed.plan.limits.trials = Some(2);
    let c = compile_einsum(&eq, &shapes, &dtypes, &fixed).expect("compiles");
    assert!(c
        .plan
        .notes
        .iter()
        .any(|n| n.starts_with("hyper: 2 trials")));
}

#[test]
fn hyper_by_name_runs_the_whole_search() {
    // `--optimizer hyper` asks for the search `einc path` runs, not the compile budget.
    let (eq, shapes) = lattice_einsum(4, 4);
    let dtypes = vec![DType::F64; shapes.len()];
    let auto = compile_einsum(&eq, &shapes, &dtypes, &CompileConfig::default()).expect("compiles");
    let want = format!("hyper: {} trials", 4096 / 16);
    assert!(
        auto.plan.notes.iter().any(|n| n.starts_with(&want)),
        "{:?}",
        auto.plan.notes
    );
    let mut cfg = CompileConfig::default();
    cfg.plan.optimizer = crate::order::Optimizer::Hyper;
    let hyper = compile_einsum(&eq, &shapes, &dtypes, &cfg).expect("compiles");
    let want = format!("hyper: {} trials", crate::order::default_trials(16));
    assert!(
        hyper.plan.notes.iter().any(|n| n.starts_with(&want)),
        "{:?}",
        hyper.plan.notes
    );
}

// Layout of intermediates (`Planner::relayout`).

fn contract_plan(eq: &str, shapes: &[Vec<usize>], cfg: &CompileConfig) -> Plan {
    let dtypes = vec![DType::F32; shapes.len()];
    let plan = compile_einsum(eq, shapes, &dtypes, cfg)
        .expect("compiles")
        .plan;
    plan.verify().expect("valid plan");
    plan
}

/// Every contraction step: its result's labels and, per operand, its labels and whether
/// a contraction computed it (an intermediate, whose layout the plan chose).
type Operand = (Vec<IndexId>, bool);
fn contractions(plan: &Plan) -> Vec<(Vec<IndexId>, [Operand; 2])> {
    let operand = |v: ValueId| {
        let s = &plan.steps[v.0 as usize];
        (s.indices.clone(), matches!(s.op, Op::Contract { .. }))
    };
    plan.steps
        .iter()
        .filter_map(|s| match s.op {
            Op::Contract { lhs, rhs } => Some((s.indices.clone(), [operand(lhs), operand(rhs)])),
            _ => None,
        })
        .collect()
}

#[test]
fn intermediates_are_laid_out_for_the_step_that_reads_them() {
    let tfno = [
        vec![8, 64, 32, 32],
        vec![16],
        vec![64, 16],
        vec![64, 16],
        vec![32, 16],
        vec![32, 16],
    ];
    let plan = contract_plan("bixy,r,ir,or,xr,yr->boxy", &tfno, &CompileConfig::default());
    // The execution weight picks the tree without batched GEMMs ...
    assert_eq!(
        plan.steps.iter().map(|s| s.flops).sum::<f64>(),
        33_702_400.0
    );
    // ... and its broadcast and Hadamard steps read their operands in their own order
    // (`bxyr ⊙ xyr`, where the search order alone gives `xry`).
    let mut hadamards = 0;
    for (out, [(l, _), (r, _)]) in contractions(&plan) {
        let summed = l.iter().chain(&r).any(|i| !out.contains(i));
        if !summed && l.len() + r.len() > out.len() {
            hadamards += 1;
            for x in [&l, &r] {
                let pos: Vec<usize> = x
                    .iter()
                    .map(|i| out.iter().position(|j| j == i).expect("kept"))
                    .collect();
                assert!(pos.windows(2).all(|w| w[0] < w[1]), "{x:?} for {out:?}");
            }
        }
    }
    assert!(hadamards >= 1);
    let mut cfg = CompileConfig::default();
    cfg.plan.limits.batch_weight = Some(0.0);
    let plain = contract_plan("bixy,r,ir,or,xr,yr->boxy", &tfno, &cfg);
    assert_eq!(
        plain.steps.iter().map(|s| s.flops).sum::<f64>(),
        33_620_480.0
    );

    // Every intermediate a GEMM reads is already a matrix for it: its kept labels one run
    // in the result's order, its summed labels another. Before, tucker's `[a, b, c, l]`
    // reached `kc,abcl->kabl` with c in the middle of the kept labels.
    let cases: [(&str, Vec<Vec<usize>>); 4] = [
        (
            "abcd,ia,jb,kc,ld->ijkl",
            [
                vec![16; 4],
                vec![48, 16],
                vec![48, 16],
                vec![48, 16],
                vec![48, 16],
            ]
            .to_vec(),
        ),
        ("id,jd,kd->ijk", vec![vec![128, 64]; 3]),
        (
            "ab,bc,cd,de,ef,fg,gh,hi->ai",
            [
                vec![300, 20],
                vec![20, 500],
                vec![500, 40],
                vec![40, 400],
                vec![400, 30],
                vec![30, 600],
                vec![600, 50],
                vec![50, 200],
            ]
            .to_vec(),
        ),
        ("bixy,r,ir,or,xr,yr->boxy", tfno.to_vec()),
    ];
    for (eq, shapes) in &cases {
        let plan = contract_plan(eq, shapes, &CompileConfig::default());
        for (out, operands) in contractions(&plan) {
            let summed = operands
                .iter()
                .any(|(x, _)| x.iter().any(|i| !out.contains(i)));
            for (x, computed) in operands.iter().filter(|_| summed) {
                if *computed {
                    assert!(
                        !x.iter().any(|i| !out.contains(i)) || gemm_ready(x, &out),
                        "{eq}: {x:?} read by a product into {out:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn gemm_ready_operands() {
    let ids = |v: &[u32]| v.iter().map(|&i| IndexId(i)).collect::<Vec<_>>();
    let out = ids(&[0, 1, 2]);
    assert!(gemm_ready(&ids(&[0, 1, 5]), &out));
    assert!(gemm_ready(&ids(&[5, 6, 0, 2]), &out));
    assert!(
        !gemm_ready(&ids(&[0, 5, 1]), &out),
        "summed label inside the kept run"
    );
    assert!(
        !gemm_ready(&ids(&[1, 0, 5]), &out),
        "kept labels out of the result's order"
    );
    assert!(gemm_ready(&ids(&[0, 2]), &out));
}

/// A tree whose search order runs the subtree with the large result first: the memory
/// order runs the other subtree (peak 500 elements, result 5) first, so the large result
/// never waits beside it (1006 elements alive at most instead of 1505).
#[test]
fn the_subtree_that_needs_more_memory_runs_first() {
    let step = |size: f64, flops: f64| order::StepInfo {
        pair: (0, 1),
        operands: [Vec::new(), Vec::new()],
        result: Vec::new(),
        summed: Vec::new(),
        flops,
        cost: flops / 2.0,
        size,
    };
    let ssa = [(0, 1), (2, 3), (6, 4), (5, 7)];
    let info = order::PathInfo {
        path: order::ssa_to_linear(5, &ssa).unwrap(),
        optimizer: Optimizer::Optimal,
        flops: 10.0,
        cost: 5.0,
        largest_intermediate: 1000.0,
        write: 1506.0,
        steps: vec![
            step(1000.0, 1.0),
            step(500.0, 2.0),
            step(5.0, 3.0),
            step(1.0, 4.0),
        ],
        slicing: None,
        trials: 0,
        pre_reduced: Vec::new(),
        notes: Vec::new(),
    };
    let (pairs, flops) = low_memory_order(&info, 5);
    let want = order::ssa_to_linear(5, &[(2, 3), (5, 4), (0, 1), (7, 6)]).unwrap();
    assert_eq!(pairs, want.pairs);
    assert_eq!(flops, vec![2.0, 3.0, 1.0, 4.0]);
    // Given in that order already, the tree stays as it is.
    let info = order::PathInfo {
        path: order::ssa_to_linear(5, &[(2, 3), (5, 4), (0, 1), (6, 7)]).unwrap(),
        steps: vec![
            step(500.0, 2.0),
            step(5.0, 3.0),
            step(1000.0, 1.0),
            step(1.0, 4.0),
        ],
        ..info
    };
    let (pairs, flops) = low_memory_order(&info, 5);
    assert_eq!(pairs, info.path.pairs);
    assert_eq!(flops, vec![2.0, 3.0, 1.0, 4.0]);
}

/// The plan's steps other than loads and stores, as their dump names.
fn step_kinds(plan: &Plan) -> Vec<&'static str> {
    plan.steps
        .iter()
        .filter_map(|s| match s.op {
            Op::Contract { .. } => Some("contract"),
            Op::Fused { .. } => Some("fused"),
            Op::FusedSum { .. } => Some("sum"),
            Op::Elementwise { .. } => Some("elementwise"),
            Op::Unary { .. } => Some("unary"),
            _ => None,
        })
        .collect()
}

#[test]
fn a_product_of_same_shaped_factors_is_one_pass() {
    let cfg = CompileConfig::default();
    let compile = |eq: &str, shapes: &[Vec<usize>], dtype: DType, cfg: &CompileConfig| {
        let dtypes = vec![dtype; shapes.len()];
        let plan = compile_einsum(eq, shapes, &dtypes, cfg)
            .expect("compiles")
            .plan;
        plan.verify().expect("valid plan");
        plan
    };
    let three = vec![vec![50, 8]; 3];
    // Summed trailing index: the multiplications and the sum in one pass that writes
    // nothing but the sum.
    let plan = compile("bi,bi,bi->b", &three, DType::F32, &cfg);
    assert_eq!(step_kinds(&plan), ["fused", "sum"]);
    let text = crate::dump::dump_plan(&plan);
    assert!(text.contains("mul(mul($0, $1), $2)"), "{text}");
    // A summed leading index: the pass runs over [m, i] so that the sum keeps a prefix.
    let plan = compile("im,im,im,im->m", &vec![vec![50, 8]; 4], DType::F64, &cfg);
    assert_eq!(step_kinds(&plan), ["fused", "sum"]);
    let pass = plan.steps.iter().find(|s| matches!(s.op, Op::Fused { .. }));
    let labels = |s: &Step| -> Vec<String> {
        s.indices
            .iter()
            .map(|&i| plan.program.indices[i].name.clone())
            .collect()
    };
    assert_eq!(labels(pass.expect("a pass")), ["m", "i"]);
    // Nothing summed, transposed factors, a diagonal: one pass after the diagonal.
    let plan = compile(
        "ij,ji,ij->ij",
        &[vec![6, 6], vec![6, 6], vec![6, 6]],
        DType::F64,
        &cfg,
    );
    assert_eq!(step_kinds(&plan), ["fused"]);
    let plan = compile(
        "ij,ij,iij->i",
        &[vec![6, 5], vec![6, 5], vec![6, 6, 5]],
        DType::F64,
        &cfg,
    );
    assert_eq!(step_kinds(&plan), ["unary", "fused", "sum"]);
    // Not of the form: two factors (a batched dot product already reads each once), a
    // factor with other indices, complex dtypes, another semiring.
    for (eq, shapes, dtype) in [
        ("bi,bi->b", vec![vec![50, 8]; 2], DType::F32),
        ("bi,bi,bj->bj", vec![vec![50, 8]; 3], DType::F32),
        ("bi,bi,bi->b", three.clone(), DType::C64),
    ] {
        let plan = compile(eq, &shapes, dtype, &cfg);
        assert!(step_kinds(&plan).contains(&"contract"), "{eq} {dtype:?}");
    }
    let tropical = CompileConfig {
        plan: PlanConfig {
            semiring: Semiring::MaxPlus,
            ..PlanConfig::default()
        },
        ..CompileConfig::default()
    };
    let plan = compile("bi,bi,bi->b", &three, DType::F32, &tropical);
    assert!(step_kinds(&plan).contains(&"contract"));
}
