//! Tests of the contraction-order search: API and edge cases here, exactness
//! against brute force in `brute`, published opt_einsum numbers in `reference`.

mod brute;
mod greedy_ref;
mod hyper;
mod reference;

use std::time::Duration;

use super::*;

/// splitmix64: a tiny deterministic generator, so tests need no `rand`.
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn labels(s: &str) -> Vec<Label> {
    s.bytes().map(|b| (b - b'a') as Label).collect()
}

/// Parses an ASCII einsum like `ab,bc->ac` (lower-case letters only).
fn eq(s: &str) -> (Vec<Vec<Label>>, Vec<Label>) {
    let (lhs, rhs) = s.split_once("->").expect("test equations are explicit");
    (lhs.split(',').map(labels).collect(), labels(rhs))
}

fn no_limits() -> Limits {
    Limits::default()
}

/// Hyper search with a small budget, to keep debug-build tests quick.
fn few_trials() -> Limits {
    Limits {
        trials: Some(16),
        ..Limits::default()
    }
}

#[test]
fn optimizer_names_round_trip() {
    for o in [
        Optimizer::Greedy,
        Optimizer::Optimal,
        Optimizer::Hyper,
        Optimizer::Auto,
    ] {
        assert_eq!(Optimizer::parse(o.name()), Some(o));
        assert_eq!(o.to_string(), o.name());
    }
    assert_eq!(Optimizer::parse("OPTIMAL"), Some(Optimizer::Optimal));
    assert_eq!(Optimizer::parse("dp"), None);
}

#[test]
fn ssa_conversions_match_opt_einsum_docstrings() {
    // opt_einsum: ssa_to_linear([(0, 3), (2, 4), (1, 5)]) == [(0, 3), (1, 2), (0, 1)]
    let linear = ssa_to_linear(4, &[(0, 3), (2, 4), (1, 5)]).unwrap();
    assert_eq!(linear.pairs, vec![(0, 3), (1, 2), (0, 1)]);
    assert_eq!(
        linear_to_ssa(4, &linear).unwrap(),
        vec![(0, 3), (2, 4), (1, 5)]
    );
    // Reversed SSA pairs give sorted linear pairs.
    assert_eq!(ssa_to_linear(2, &[(1, 0)]).unwrap().pairs, vec![(0, 1)]);
}

#[test]
fn ssa_conversions_reject_malformed_paths() {
    assert!(ssa_to_linear(3, &[(0, 0)]).is_err());
    assert!(ssa_to_linear(3, &[(0, 3)]).is_err()); // id 3 does not exist yet
    assert!(ssa_to_linear(3, &[(0, 1), (0, 2)]).is_err()); // 0 consumed
    let bad = |pairs: Vec<(usize, usize)>| linear_to_ssa(3, &Path { pairs }).is_err();
    assert!(bad(vec![(1, 1)]));
    assert!(bad(vec![(2, 1)]));
    assert!(bad(vec![(0, 3)]));
    assert!(bad(vec![(0, 1), (0, 2)])); // only two operands left
}

#[test]
fn greedy_matches_opt_einsum_docstring() {
    // opt_einsum: greedy([abd, ac, bdc], '', {a:1, b:2, c:3, d:4}) == [(0, 2), (0, 1)]
    let (inputs, output) = eq("abd,ac,bdc->");
    let sizes = [1, 2, 3, 4];
    for o in [Optimizer::Greedy, Optimizer::Optimal] {
        let info = search(&inputs, &output, &sizes, o, &no_limits()).unwrap();
        assert_eq!(info.path.pairs, vec![(0, 2), (0, 1)], "{o}");
    }
}

#[test]
fn matrix_chain_clrs() {
    // CLRS 15.2: dimensions 30 35 15 5 10 20 25, optimum 15125 multiplications.
    let (inputs, output) = eq("ab,bc,cd,de,ef,fg->ag");
    let sizes = [30, 35, 15, 5, 10, 20, 25];
    let info = search(&inputs, &output, &sizes, Optimizer::Optimal, &no_limits()).unwrap();
    assert_eq!(info.cost, 15125.0);
    assert_eq!(info.flops, 30250.0);
    assert_eq!(info.optimizer, Optimizer::Optimal);
    let auto = search(&inputs, &output, &sizes, Optimizer::Auto, &no_limits()).unwrap();
    assert_eq!(auto.optimizer, Optimizer::Optimal);
    assert_eq!(auto.path, info.path);
}

#[test]
fn step_details() {
    let (inputs, output) = eq("ab,bc->ac");
    let info = search(
        &inputs,
        &output,
        &[2, 3, 4],
        Optimizer::Greedy,
        &no_limits(),
    )
    .unwrap();
    assert_eq!(info.steps.len(), 1);
    let s = &info.steps[0];
    assert_eq!(s.pair, (0, 1));
    assert_eq!(s.operands, [labels("ab"), labels("bc")]);
    assert_eq!(s.result, labels("ac"));
    assert_eq!(s.summed, labels("b"));
    assert_eq!((s.flops, s.cost, s.size), (48.0, 24.0, 8.0));
    assert_eq!(info.largest_intermediate, 8.0);
    // Intermediate results keep first-appearance order; the last one follows the output.
    let (inputs, output) = eq("ba,cb,dc->da");
    let path = Path {
        pairs: vec![(0, 1), (0, 1)],
    };
    let info = evaluate(&inputs, &output, &[2, 3, 4, 5], &path).unwrap();
    assert_eq!(info.steps[0].result, labels("ac"));
    assert_eq!(info.steps[1].result, labels("da"));
}

#[test]
fn small_and_degenerate_problems() {
    let lim = no_limits();
    // Single input: nothing to do.
    let info = search(
        &[labels("ab")],
        &labels("a"),
        &[2, 3],
        Optimizer::Auto,
        &lim,
    )
    .unwrap();
    assert!(info.path.pairs.is_empty() && info.steps.is_empty());
    assert_eq!((info.flops, info.largest_intermediate), (0.0, 0.0));
    // Scalars only: opt_einsum counts one flop per product (conformance `,,->` = 2).
    let scalars = vec![vec![], vec![], vec![]];
    for o in [Optimizer::Greedy, Optimizer::Optimal] {
        let info = search(&scalars, &[], &[], o, &lim).unwrap();
        assert_eq!(info.path.pairs.len(), 2);
        assert_eq!(info.flops, 2.0);
    }
    // Disconnected parts end with outer products and still give a full path.
    let (inputs, output) = eq("ab,bc,de,ef->");
    for o in [Optimizer::Greedy, Optimizer::Optimal] {
        let info = search(&inputs, &output, &[2; 6], o, &lim).unwrap();
        assert_eq!(info.path.pairs.len(), 3, "{o}");
    }
    // Zero-sized labels are legal and cost nothing.
    let (inputs, output) = eq("ab,bc,cd->ad");
    for o in [Optimizer::Greedy, Optimizer::Optimal] {
        let info = search(&inputs, &output, &[3, 0, 4, 5], o, &lim).unwrap();
        assert_eq!(info.path.pairs.len(), 2);
    }
    // Products beyond u64 (and even f64) must not panic.
    let big = [u64::MAX; 4];
    for o in [Optimizer::Greedy, Optimizer::Optimal] {
        let info = search(&inputs, &output, &big, o, &lim).unwrap();
        assert!(info.flops > 1e38);
    }
    let wide: Vec<Vec<Label>> = (0..6).map(|k| (0..40).map(|l| l + k).collect()).collect();
    for o in [Optimizer::Greedy, Optimizer::Optimal] {
        let info = search(&wide, &[], &[u64::MAX; 46], o, &lim).unwrap();
        assert_eq!(info.path.pairs.len(), 5);
    }
}

#[test]
fn invalid_problems_are_errors() {
    let lim = no_limits();
    let s = [2, 2, 2];
    let err = |i: &[Vec<Label>], o: &[Label]| search(i, o, &s, Optimizer::Auto, &lim).unwrap_err();
    assert_eq!(err(&[], &[]), OrderError::NoInputs);
    assert!(matches!(
        err(&[vec![0, 7]], &[]),
        OrderError::UnknownLabel { label: 7, .. }
    ));
    assert!(matches!(
        err(&[vec![0], vec![1, 1]], &[]),
        OrderError::RepeatedLabel {
            operand: Some(1),
            label: 1
        }
    ));
    assert!(matches!(
        err(&[vec![0, 1]], &[0, 0]),
        OrderError::RepeatedLabel { operand: None, .. }
    ));
    assert!(matches!(
        err(&[vec![0]], &[2]),
        OrderError::OutputLabelNotInInputs { label: 2 }
    ));
    let nan = Limits {
        memory_limit: Some(f64::NAN),
        ..Limits::default()
    };
    let r = search(&[vec![0], vec![0]], &[], &s, Optimizer::Greedy, &nan);
    assert_eq!(r.unwrap_err(), OrderError::InvalidMemoryLimit);
    for e in [OrderError::NoInputs, OrderError::InvalidMemoryLimit] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn evaluate_rejects_bad_paths() {
    let (inputs, output) = eq("ab,bc,cd->ad");
    let sizes = [2, 3, 4, 5];
    let bad = |pairs: Vec<(usize, usize)>| {
        let e = evaluate(&inputs, &output, &sizes, &Path { pairs }).unwrap_err();
        assert!(matches!(e, OrderError::BadPath { .. }), "{e}");
    };
    bad(vec![]);
    bad(vec![(0, 1)]);
    bad(vec![(0, 1), (0, 1), (0, 1)]);
    bad(vec![(1, 0), (0, 1)]);
    bad(vec![(0, 3), (0, 1)]);
    bad(vec![(0, 1), (0, 2)]);
}

#[test]
fn memory_limit_is_respected_or_reported() {
    // A chain where the cheapest path builds a big intermediate.
    let (inputs, output) = eq("ab,bc,cd,de->ae");
    let sizes = [2, 50, 2, 50, 2];
    for o in [Optimizer::Greedy, Optimizer::Optimal] {
        let free = search(&inputs, &output, &sizes, o, &no_limits()).unwrap();
        let limit = Limits {
            memory_limit: Some(100.0),
            ..Limits::default()
        };
        let capped = search(&inputs, &output, &sizes, o, &limit).unwrap();
        assert!(capped.largest_intermediate <= 100.0, "{o}");
        assert!(capped.flops >= free.flops);
        let tiny = Limits {
            memory_limit: Some(3.0),
            ..Limits::default()
        };
        let e = search(&inputs, &output, &sizes, o, &tiny).unwrap_err();
        assert!(matches!(e, OrderError::MemoryLimitImpossible { .. }), "{o}");
    }
}

/// A ring of `n` matrices with random sizes.
fn ring(n: usize, seed: u64) -> (Vec<Vec<Label>>, Vec<u64>) {
    let mut rng = Rng::new(seed);
    let inputs = (0..n as Label)
        .map(|k| vec![k, (k + 1) % n as Label])
        .collect();
    let sizes = (0..n).map(|_| rng.range(2, 9)).collect();
    (inputs, sizes)
}

#[test]
fn optimal_gives_up_cleanly() {
    let (inputs, sizes) = ring(16, 1);
    let limits = Limits {
        time_limit: Some(Duration::ZERO),
        ..Limits::default()
    };
    let info = search(&inputs, &[], &sizes, Optimizer::Optimal, &limits).unwrap();
    assert_eq!(info.optimizer, Optimizer::Greedy);
    assert!(info.notes[0].contains("time limit"), "{:?}", info.notes);
    let (inputs, sizes) = ring(MAX_OPTIMAL_INPUTS + 1, 2);
    let info = search(&inputs, &[], &sizes, Optimizer::Optimal, &no_limits()).unwrap();
    assert_eq!(info.optimizer, Optimizer::Greedy);
    assert!(info.notes[0].contains("maximum"), "{:?}", info.notes);
    let auto = search(&inputs, &[], &sizes, Optimizer::Auto, &few_trials()).unwrap();
    assert_eq!(auto.optimizer, Optimizer::Hyper);
    assert!(auto.flops <= info.flops);
}

#[test]
fn auto_switches_on_input_count() {
    for (n, expected) in [
        (AUTO_OPTIMAL_MAX_INPUTS, Optimizer::Optimal),
        (AUTO_OPTIMAL_MAX_INPUTS + 1, Optimizer::Hyper),
    ] {
        let (inputs, sizes) = ring(n, 7);
        let info = search(&inputs, &[], &sizes, Optimizer::Auto, &few_trials()).unwrap();
        assert_eq!(info.optimizer, expected, "{n} inputs");
    }
}

#[test]
fn infinite_memory_limit_means_none() {
    let (inputs, sizes) = ring(20, 3);
    let free = search(&inputs, &[], &sizes, Optimizer::Greedy, &no_limits()).unwrap();
    let inf = Limits {
        memory_limit: Some(f64::INFINITY),
        ..Limits::default()
    };
    let same = search(&inputs, &[], &sizes, Optimizer::Greedy, &inf).unwrap();
    assert_eq!(free.path, same.path);
}

#[test]
fn search_is_deterministic() {
    for seed in 0..20 {
        let (inputs, output, sizes) = brute::random_problem(&mut Rng::new(seed), 8, 12);
        for o in [Optimizer::Greedy, Optimizer::Optimal] {
            let a = search(&inputs, &output, &sizes, o, &no_limits()).unwrap();
            let b = search(&inputs, &output, &sizes, o, &no_limits()).unwrap();
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }
}

#[test]
fn exact_search_timing() {
    // Not an assertion on speed (debug builds on busy machines vary), a record.
    for n in [10, 12, 14] {
        let (inputs, sizes) = ring(n, n as u64);
        let t = std::time::Instant::now();
        let info = search(&inputs, &[], &sizes, Optimizer::Optimal, &no_limits()).unwrap();
        assert_eq!(info.optimizer, Optimizer::Optimal);
        println!("optimal on a {n}-ring: {:?}", t.elapsed());
    }
}

/// tfno_cp_r16's contraction: the flop-optimal tree batches both large products (over y,
/// then x); a batch weight makes the exact search prefer the tree without batched GEMMs,
/// while the reported flops stay the true ones and the default keeps opt_einsum's cost.
#[test]
fn batch_weight_steers_the_exact_search_away_from_batched_products() {
    let (inputs, output) = eq("bixy,r,ir,or,xr,yr->boxy");
    let mut sizes = vec![1u64; 26];
    for (c, n) in [
        ('b', 8),
        ('i', 64),
        ('o', 64),
        ('x', 32),
        ('y', 32),
        ('r', 16),
    ] {
        sizes[(c as u8 - b'a') as usize] = n;
    }
    // Labels summed by a step, and whether it also keeps a label of both operands.
    let batched_sums = |info: &PathInfo| {
        let mut live = inputs.clone();
        let mut n = 0;
        for &(a, b) in &info.path.pairs {
            let (x, y) = (live[a].clone(), live[b].clone());
            live.remove(b);
            live.remove(a);
            let needed = |l: &Label| output.contains(l) || live.iter().any(|t| t.contains(l));
            let both: Vec<Label> = x.iter().filter(|l| y.contains(l)).copied().collect();
            if both.iter().any(|l| !needed(l)) && both.iter().any(needed) {
                n += 1;
            }
            let mut kept: Vec<Label> = Vec::new();
            for &l in x.iter().chain(&y) {
                if needed(&l) && !kept.contains(&l) {
                    kept.push(l);
                }
            }
            live.push(kept);
        }
        n
    };
    let plain = search(&inputs, &output, &sizes, Optimizer::Optimal, &no_limits()).unwrap();
    assert_eq!(plain.flops, 33_620_480.0);
    assert_eq!(batched_sums(&plain), 2);
    for w in [0.01, EXEC_BATCH_WEIGHT, 1.0] {
        let lim = Limits {
            batch_weight: Some(w),
            ..Limits::default()
        };
        let info = search(&inputs, &output, &sizes, Optimizer::Optimal, &lim).unwrap();
        assert_eq!(info.flops, 33_702_400.0, "weight {w}");
        assert_eq!(batched_sums(&info), 0, "weight {w}");
    }
    // A batched product with no alternative keeps its tree.
    let (inputs, output) = eq("bij,bjk->bik");
    let lim = Limits {
        batch_weight: Some(1.0),
        ..Limits::default()
    };
    let info = search(&inputs, &output, &[4; 26], Optimizer::Optimal, &lim).unwrap();
    assert_eq!(info.path.pairs, vec![(0, 1)]);
}

#[test]
fn sweep_absorbs_an_mps_site_by_site() {
    // <ψ|ψ> of a 5-site open MPS, bond 8, physical 2: the sweep holds one intermediate,
    // alternating ket and bra sites (ket-first would build the 2^5 state vector).
    let (inputs, output) = eq("ab,ac,bde,cdf,egh,fgi,hjk,ijl,km,lm->");
    let mut sizes = vec![8u64; 26];
    for &l in &labels("adgjm") {
        sizes[l as usize] = 2;
    }
    let path = sweep(&inputs, &output, &sizes).expect("valid problem");
    assert_eq!(path.pairs.len(), inputs.len() - 1);
    let info = evaluate(&inputs, &output, &sizes, &path).expect("a full path");
    // Every step after the first reads the previous result (the last operand).
    for (k, &(i, j)) in path.pairs.iter().enumerate().skip(1) {
        assert_eq!(j, inputs.len() - 1 - k, "step {k}: {:?}", path.pairs);
        assert!(i < j);
    }
    // Intermediates stay at bond² × physical at most.
    assert_eq!(info.largest_intermediate, 128.0);
    // Disconnected inputs are joined last, by outer products.
    let (inputs, output) = eq("ab,bc,d->acd");
    let path = sweep(&inputs, &output, &[3; 26]).expect("valid problem");
    let info = evaluate(&inputs, &output, &[3; 26], &path).expect("a full path");
    assert_eq!(info.steps[0].operands, [labels("ab"), labels("bc")]);
}
