//! The factorised-vs-materialised choice for CP and Tucker layers (issue 6): sweeping the
//! rank, the e-graph must pick the factorised form exactly while it is cheaper per call
//! than applying the precomputed dense weight, and the materialised form from the
//! crossover on. Both forms are planned on their own (no e-graph) to know the answer.

use einc_compiler::ir::TensorId;
use einc_compiler::pipeline::{self, CompileConfig, Compiled};
use std::collections::BTreeMap;

fn compile(src: &str, egraph: bool, constants: &[&str]) -> Compiled {
    let (_, checked) = pipeline::check_ein(src).unwrap_or_else(|d| panic!("{}", d.message));
    let mut cfg = CompileConfig {
        no_egraph: !egraph,
        ..CompileConfig::default()
    };
    cfg.optimize.constants = constants.iter().map(|s| s.to_string()).collect();
    pipeline::compile_ein(&checked, &BTreeMap::new(), &cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn per_call(c: &Compiled, constants: &[&str]) -> f64 {
    let ids: Vec<TensorId> = constants
        .iter()
        .filter_map(|n| c.plan.program.tensor_by_name(n))
        .collect();
    c.plan.per_call_flops(&ids, false)
}

/// For one size: plans the factorised form (`Y` as one product of `X` and the factors)
/// and the materialised one (`W` a statement of its own, constant, so precomputed)
/// without the e-graph, then the user's two-statement program with it, and checks that
/// the e-graph chose the cheaper form per call. Returns whether it kept `W`.
fn check_choice(header: &str, weight: &str, constants: &[&str], what: &str) -> bool {
    let user = format!(
        "{header}W[i, o, x, y] = {weight}\n\
         Y[b, o, x, y] = X[b, i, x, y] * W[i, o, x, y]\noutput Y\n"
    );
    let factorised = format!("{header}Y[b, o, x, y] = X[b, i, x, y] * {weight}\noutput Y\n");
    let f = per_call(&compile(&factorised, false, constants), constants);
    let m = per_call(&compile(&user, false, constants), constants);
    let chosen = compile(&user, true, constants);
    let got = per_call(&chosen, constants);
    // The materialised form keeps the statement for W; the factorised one drops it.
    let keeps_w = chosen
        .opt_ir
        .stmts
        .iter()
        .any(|s| chosen.opt_ir.tensors[s.target].name == "W");
    assert_eq!(
        keeps_w,
        m < f,
        "{what}: factorised {f:e}, materialised {m:e}, chose {got:e}"
    );
    assert_eq!(got, f.min(m), "{what}");
    keeps_w
}

const CP: [&str; 5] = ["lam", "A", "B", "C", "E"];

fn cp_header(r: u64) -> String {
    format!(
        "dim b = 8, i = 64, o = 64, x = 32, y = 32, r = {r}\n\
         input X[b, i, x, y]: f64\ninput lam[r]: f64\ninput A[i, r]: f64\n\
         input B[o, r]: f64\ninput C[x, r]: f64\ninput E[y, r]: f64\n"
    )
}

#[test]
fn cp_layer_switches_form_exactly_at_the_crossover() {
    let weight = "lam[r] * A[i, r] * B[o, r] * C[x, r] * E[y, r]";
    let mut kept = Vec::new();
    for r in (1..=160).step_by(3) {
        kept.push(check_choice(
            &cp_header(r),
            weight,
            &CP,
            &format!("CP rank {r}"),
        ));
    }
    // Factorised for the low ranks, materialised for the high ones, one switch.
    assert!(!kept[0] && kept[kept.len() - 1], "{kept:?}");
    assert_eq!(
        kept.windows(2).filter(|w| w[0] != w[1]).count(),
        1,
        "{kept:?}"
    );
}

#[test]
fn tucker_layer_switches_form_with_the_core_size() {
    let weight = "G[a, c, e, f] * U[i, a] * V[o, c] * P[x, e] * Q[y, f]";
    let constants = ["G", "U", "V", "P", "Q"];
    let mut kept = Vec::new();
    for t in [2u64, 4, 8, 12, 16, 24, 32, 48] {
        let header = format!(
            "dim b = 8, i = 64, o = 64, x = 32, y = 32, a = {t}, c = {t}, e = {e}, f = {e}\n\
             input X[b, i, x, y]: f64\ninput G[a, c, e, f]: f64\ninput U[i, a]: f64\n\
             input V[o, c]: f64\ninput P[x, e]: f64\ninput Q[y, f]: f64\n",
            e = t / 2
        );
        kept.push(check_choice(
            &header,
            weight,
            &constants,
            &format!("Tucker {t}"),
        ));
    }
    assert!(!kept[0] && kept[kept.len() - 1], "{kept:?}");
}

#[test]
fn cp_layer_written_as_one_product_gets_the_materialised_form_too() {
    // The same layer in one statement: at a high rank, folding the constant factors into
    // a precomputed dense weight is cheaper per call than the factorised contraction.
    let one = format!(
        "{}Y[b, o, x, y] = X[b, i, x, y] * lam[r] * A[i, r] * B[o, r] * C[x, r] * E[y, r]\n\
         output Y\n",
        cp_header(128)
    );
    let flat = per_call(&compile(&one, false, &CP), &CP);
    let opt = per_call(&compile(&one, true, &CP), &CP);
    let dense = 2.0 * 8.0 * 64.0 * 64.0 * 32.0 * 32.0;
    assert!(flat > dense, "{flat:e}");
    assert_eq!(opt, dense);
}
