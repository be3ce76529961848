//! The e-graph workloads of issue 6 (`shared/workloads/egraph_workloads.json`: CP and
//! Tucker layers, a shared prefix, a factorable sum, a pushable sum, 2-simplicial
//! attention, a cycle and a chain), on small random sizes: the optimised plan, run by the
//! executor with its constant part precomputed, must agree with the oracle's evaluation
//! of the unoptimised IR, and so must the optimised IR itself.

use einc_compiler::ir::TensorId;
use einc_compiler::pipeline::{self, CompileConfig};
use einc_runtime::exec::{self, ExecOptions};
use einc_runtime::oracle;
use einc_runtime::value::{TensorData, TensorView};
use ndarray::{ArrayD, IxDyn};
use num_complex::Complex64;
use std::collections::BTreeMap;

mod common;
use common::Rng;

/// (name, inputs as `name:indices`, constants, statements), as in the workload file.
type Workload = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const PROGRAMS: &[Workload] = &[
    (
        "tfno_cp",
        &["X:bixy", "lam:r", "A:ir", "B:or", "C:xr", "E:yr"],
        &["lam", "A", "B", "C", "E"],
        &[
            "W[i,o,x,y] = lam[r]*A[i,r]*B[o,r]*C[x,r]*E[y,r]",
            "Y[b,o,x,y] = X[b,i,x,y]*W[i,o,x,y]",
        ],
    ),
    (
        "tfno_tucker",
        &["X:bixy", "G:acef", "U:ia", "V:oc", "P:xe", "Q:yf"],
        &["G", "U", "V", "P", "Q"],
        &[
            "W[i,o,x,y] = G[a,c,e,f]*U[i,a]*V[o,c]*P[x,e]*Q[y,f]",
            "Y[b,o,x,y] = X[b,i,x,y]*W[i,o,x,y]",
        ],
    ),
    (
        "cp_linear",
        &["X:nabc", "A:ar", "B:br", "C:cr", "D:dr", "E:er", "F:fr"],
        &[],
        &[
            "W[a,b,c,d,e,f] = A[a,r]*B[b,r]*C[c,r]*D[d,r]*E[e,r]*F[f,r]",
            "Y[n,d,e,f] = X[n,a,b,c]*W[a,b,c,d,e,f]",
        ],
    ),
    (
        "shared_prefix",
        &["A:ij", "B:jk", "C:kl", "D:km"],
        &[],
        &[
            "T1[i,l] = A[i,j]*B[j,k]*C[k,l]",
            "T2[i,m] = A[i,j]*B[j,k]*D[k,m]",
        ],
    ),
    (
        "factor_sum",
        &["A:ij", "B:jk", "C:jk"],
        &[],
        &["Y[i,k] = A[i,j]*B[j,k] + A[i,j]*C[j,k]"],
    ),
    (
        "push_sum",
        &["A:ij", "B:j", "C:k"],
        &[],
        &["y[i] = A[i,j]*B[j]*C[k]"],
    ),
    (
        "simplicial_attention",
        &["Q:id", "K1:jd", "K2:kd", "V1:jd", "V2:kd"],
        &[],
        &[
            "S[i,j,k] = Q[i,d]*K1[j,d]*K2[k,d]",
            "P[i,j,k] = softmax[j,k](S[i,j,k])",
            "O[i,d] = P[i,j,k]*V1[j,d]*V2[k,d]",
        ],
    ),
    (
        "cycle5_diag",
        &["M0:ab", "M1:bc", "M2:cd", "M3:de", "M4:ea"],
        &[],
        &["Y[a] = M0[a,b]*M1[b,c]*M2[c,d]*M3[d,e]*M4[e,a]"],
    ),
    (
        "path_features",
        &["M0:ab", "M1:bc", "M2:cd", "M3:dk"],
        &[],
        &["Y[a,k] = M0[a,b]*M1[b,c]*M2[c,d]*M3[d,k]"],
    ),
];

/// The program as `.ein` with random sizes 1..=4; outputs: targets no later statement
/// reads.
fn source(inputs: &[&str], stmts: &[&str], rng: &mut Rng) -> String {
    let mut dims: Vec<char> = inputs
        .iter()
        .flat_map(|s| s.split(':').nth(1).unwrap_or("").chars())
        .collect();
    dims.sort();
    dims.dedup();
    let mut s = String::new();
    for d in dims {
        s.push_str(&format!("dim {d} = {}\n", 1 + rng.below(4)));
    }
    for i in inputs {
        let (name, idx) = i.split_once(':').expect("name:indices");
        let idx: Vec<String> = idx.chars().map(String::from).collect();
        s.push_str(&format!("input {name}[{}]: f64\n", idx.join(", ")));
    }
    let targets: Vec<&str> = stmts
        .iter()
        .map(|st| st.split('[').next().expect("target"))
        .collect();
    for st in stmts {
        s.push_str(st);
        s.push('\n');
    }
    let outputs: Vec<&str> = targets
        .iter()
        .enumerate()
        .filter(|(k, t)| {
            !stmts[k + 1..]
                .iter()
                .any(|st| st.contains(&format!("{t}[")))
        })
        .map(|(_, t)| *t)
        .collect();
    s.push_str(&format!("output {}\n", outputs.join(", ")));
    s
}

fn close(a: &ArrayD<Complex64>, b: &ArrayD<Complex64>, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).norm() <= 1e-9 * x.norm().max(1.0),
            "{what}: {x} != {y}"
        );
    }
}

#[test]
fn optimised_workloads_agree_with_the_oracle_on_random_sizes() {
    for (name, inputs, constants, stmts) in PROGRAMS {
        for seed in 0..12u64 {
            let mut rng = Rng(seed * 1000 + name.len() as u64);
            let src = source(inputs, stmts, &mut rng);
            let (_, checked) =
                pipeline::check_ein(&src).unwrap_or_else(|d| panic!("{name}: {}", d.message));
            let mut cfg = CompileConfig::default();
            cfg.optimize.constants = constants.iter().map(|c| c.to_string()).collect();
            let c = pipeline::compile_ein(&checked, &BTreeMap::new(), &cfg)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let what = format!("{name} seed {seed}\n{src}");
            let data: Vec<TensorData> = c
                .ir
                .inputs()
                .map(|(_, t)| {
                    let shape: Vec<usize> = t.axes.iter().map(|&i| c.ir.size(i) as usize).collect();
                    let n = shape.iter().product();
                    let v: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
                    TensorData::F64(ArrayD::from_shape_vec(IxDyn(&shape), v).expect("shape"))
                })
                .collect();
            let want = oracle::evaluate(&c.ir, &data);
            let opt = oracle::evaluate(&c.opt_ir, &data);
            for (w, o) in want.iter().zip(&opt) {
                close(w, o, &format!("opt-ir, {what}"));
            }
            // The plan, with the constant inputs precomputed as `compile_with_constants`
            // does.
            let ids = exec::input_ids(&c.plan);
            let views: Vec<(TensorId, TensorView<'_>)> =
                ids.iter().zip(&data).map(|(&t, d)| (t, d.view())).collect();
            let is_const =
                |t: &TensorId| constants.contains(&c.plan.program.tensors[*t].name.as_str());
            let consts: Vec<(TensorId, TensorView<'_>)> = views
                .iter()
                .filter(|(t, _)| is_const(t))
                .map(|(t, v)| (*t, v.reborrow()))
                .collect();
            let vars: Vec<TensorView<'_>> = views
                .iter()
                .filter(|(t, _)| !is_const(t))
                .map(|(_, v)| v.reborrow())
                .collect();
            let opts = ExecOptions::default();
            let prepared = exec::prepare(&c.plan, &consts, &opts).expect("prepare");
            let (got, _) =
                exec::execute_prepared(&c.plan, &prepared, &vars, &opts).expect("execute");
            for (w, g) in want.iter().zip(&got) {
                close(w, &g.as_c128(), &format!("plan, {what}"));
            }
        }
    }
}
