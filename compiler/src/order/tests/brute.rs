//! `optimal` against an independent brute force over every sequence of pair
//! choices, and `evaluate` against what `search` reports.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::super::optimal;
use super::super::*;
use super::Rng;

/// A random network: up to `max_n` tensors over labels `0..max_labels` with
/// sizes 1..=5, hyperedges and scalars allowed, and a random output subset.
pub(super) fn random_problem(
    rng: &mut Rng,
    max_n: u64,
    max_labels: u64,
) -> (Vec<Vec<Label>>, Vec<Label>, Vec<u64>) {
    let n = rng.range(1, max_n) as usize;
    let n_labels = rng.range(1, max_labels) as usize;
    let sizes: Vec<u64> = (0..n_labels).map(|_| rng.range(1, 5)).collect();
    let mut inputs = Vec::with_capacity(n);
    for _ in 0..n {
        let rank = rng.range(0, 4.min(n_labels as u64)) as usize;
        let mut term: Vec<Label> = Vec::new();
        while term.len() < rank {
            let l = rng.range(0, n_labels as u64 - 1) as Label;
            if !term.contains(&l) {
                term.push(l);
            }
        }
        inputs.push(term);
    }
    let present: BTreeSet<Label> = inputs.iter().flatten().copied().collect();
    let output = present
        .into_iter()
        .filter(|_| rng.range(0, 3) == 0)
        .collect();
    (inputs, output, sizes)
}

/// Minimum opt_einsum flops over all pair sequences whose intermediates fit
/// `limit`; `None` when none fits. Written from the definitions, sharing no
/// code with the optimizers.
pub(super) fn brute_force(
    inputs: &[Vec<Label>],
    output: &[Label],
    sizes: &[u64],
    limit: Option<f64>,
) -> Option<f64> {
    brute(inputs, output, sizes, limit, false)
}

/// The same over opt_einsum `dp`'s trees: while two operands share a label
/// only such pairs are taken, outer products only once none does.
pub(super) fn brute_force_connected(
    inputs: &[Vec<Label>],
    output: &[Label],
    sizes: &[u64],
    limit: Option<f64>,
) -> Option<f64> {
    brute(inputs, output, sizes, limit, true)
}

fn brute(
    inputs: &[Vec<Label>],
    output: &[Label],
    sizes: &[u64],
    limit: Option<f64>,
    connected: bool,
) -> Option<f64> {
    let output: BTreeSet<Label> = output.iter().copied().collect();
    let size = |s: &BTreeSet<Label>| s.iter().map(|&l| sizes[l as usize] as f64).product::<f64>();
    fn rec(
        ops: Vec<BTreeSet<Label>>,
        acc: f64,
        best: &mut Option<f64>,
        output: &BTreeSet<Label>,
        size: &dyn Fn(&BTreeSet<Label>) -> f64,
        limit: Option<f64>,
        connected: bool,
    ) {
        if ops.len() <= 1 {
            if best.is_none_or(|b| acc < b) {
                *best = Some(acc);
            }
            return;
        }
        let shares = |i: usize, j: usize| !ops[i].is_disjoint(&ops[j]);
        let any_shared = (0..ops.len()).any(|i| (i + 1..ops.len()).any(|j| shares(i, j)));
        for i in 0..ops.len() {
            for j in i + 1..ops.len() {
                if connected && any_shared && !shares(i, j) {
                    continue;
                }
                let others: Vec<BTreeSet<Label>> = ops
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != i && k != j)
                    .map(|(_, t)| t.clone())
                    .collect();
                let union: BTreeSet<Label> = ops[i].union(&ops[j]).copied().collect();
                let keep: BTreeSet<Label> = union
                    .iter()
                    .copied()
                    .filter(|l| output.contains(l) || others.iter().any(|t| t.contains(l)))
                    .collect();
                if limit.is_some_and(|lim| size(&keep) > lim) {
                    continue;
                }
                let factor = if keep.len() < union.len() { 2.0 } else { 1.0 };
                let mut next = others;
                next.push(keep);
                let acc = acc + factor * size(&union);
                rec(next, acc, best, output, size, limit, connected);
            }
        }
    }
    let ops = inputs.iter().map(|t| t.iter().copied().collect()).collect();
    let mut best = None;
    rec(ops, 0.0, &mut best, &output, &size, limit, connected);
    best
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// `evaluate` of the returned path must reproduce the returned `PathInfo`. With inputs
/// reduced first (`pre_reduced`: their private labels summed by a unary step), the path
/// and steps act on the reduced inputs, and the totals add the reductions.
fn check_evaluate(inputs: &[Vec<Label>], output: &[Label], sizes: &[u64], info: &PathInfo) {
    let reduced: Vec<Vec<Label>> = inputs
        .iter()
        .enumerate()
        .map(|(k, t)| {
            if !info.pre_reduced.contains(&k) {
                return t.clone();
            }
            t.iter()
                .copied()
                .filter(|l| {
                    output.contains(l)
                        || inputs
                            .iter()
                            .enumerate()
                            .any(|(j, u)| j != k && u.contains(l))
                })
                .collect()
        })
        .collect();
    let again = evaluate(&reduced, output, sizes, &info.path).unwrap();
    assert_eq!(again.steps, info.steps);
    assert_eq!(again.largest_intermediate, info.largest_intermediate);
    assert_eq!(info.steps.len(), inputs.len() - 1);
    if info.pre_reduced.is_empty() {
        assert_eq!(again.flops, info.flops);
        assert_eq!(again.cost, info.cost);
    } else {
        assert!(info.flops >= again.flops && info.cost >= again.cost);
    }
}

#[test]
fn optimal_equals_brute_force() {
    let mut rng = Rng::new(0x5EED);
    let (mut checked, mut capped, mut infeasible) = (0, 0, 0);
    for case in 0..400 {
        let (inputs, output, sizes) = random_problem(&mut rng, 6, 8);
        let what = format!("case {case}: {inputs:?} -> {output:?} sizes {sizes:?}");
        let expected = brute_force(&inputs, &output, &sizes, None).unwrap();
        let info = search(
            &inputs,
            &output,
            &sizes,
            Optimizer::Optimal,
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        if info.pre_reduced.is_empty() {
            assert!(
                close(info.flops, expected),
                "{what}: {} vs {expected}",
                info.flops
            );
            check_evaluate(&inputs, &output, &sizes, &info);
        } else {
            // Summing private labels first (as opt_einsum's `dp` may) is
            // only taken when it beats every pairwise tree.
            assert!(
                info.flops < expected,
                "{what}: {} vs {expected}",
                info.flops
            );
        }
        let greedy = search(
            &inputs,
            &output,
            &sizes,
            Optimizer::Greedy,
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(greedy.flops >= info.flops * (1.0 - 1e-12), "{what}");
        check_evaluate(&inputs, &output, &sizes, &greedy);
        checked += 1;

        // Cap memory between the output's size and the free optimum's largest.
        if inputs.len() >= 3 {
            let out_size: f64 = output.iter().map(|&l| sizes[l as usize] as f64).product();
            let share = (info.largest_intermediate * rng.range(1, 4) as f64 / 4.0).floor();
            let limit = share.max(out_size);
            let limits = Limits {
                memory_limit: Some(limit),
                ..Limits::default()
            };
            let expected = brute_force(&inputs, &output, &sizes, Some(limit));
            let got = search(&inputs, &output, &sizes, Optimizer::Optimal, &limits);
            match (expected, got) {
                (Some(e), Ok(info)) => {
                    assert!(close(info.flops, e), "{what} limit {limit}");
                    assert!(info.largest_intermediate <= limit, "{what}");
                    capped += 1;
                }
                (None, Err(OrderError::MemoryLimitImpossible { .. })) => infeasible += 1,
                (e, g) => panic!("{what} limit {limit}: brute {e:?}, optimal {g:?}"),
            }
            if let Ok(g) = search(&inputs, &output, &sizes, Optimizer::Greedy, &limits) {
                assert!(g.largest_intermediate <= limit, "{what}");
                check_evaluate(&inputs, &output, &sizes, &g);
            }
        }
    }
    println!("brute force: {checked} free, {capped} capped, {infeasible} infeasible caps");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary labels, sizes (0 and huge included), limits and paths:
    /// errors are fine, panics are not, and good results are consistent.
    #[test]
    fn never_panics(
        inputs in prop::collection::vec(prop::collection::vec(0u32..10, 0..5), 0..9),
        output in prop::collection::vec(0u32..10, 0..4),
        sizes in prop::collection::vec(prop_oneof![0u64..4, Just(u64::MAX)], 0..10),
        limit in prop::option::of(prop_oneof![Just(0.0), 1.0f64..1e6, Just(f64::INFINITY)]),
        pairs in prop::collection::vec((0usize..9, 0usize..9), 0..9),
        which in 0usize..3,
    ) {
        let optimizer = [Optimizer::Greedy, Optimizer::Optimal, Optimizer::Auto][which];
        let limits = Limits { memory_limit: limit, ..Limits::default() };
        if let Ok(info) = search(&inputs, &output, &sizes, optimizer, &limits) {
            check_evaluate(&inputs, &output, &sizes, &info);
        }
        let _ = evaluate(&inputs, &output, &sizes, &Path { pairs: pairs.clone() });
        let _ = linear_to_ssa(inputs.len(), &Path { pairs: pairs.clone() });
        let _ = ssa_to_linear(inputs.len(), &pairs);
    }
}

/// A network of two or three parts that share no label (each part random).
fn disconnected_problem(rng: &mut Rng) -> (Vec<Vec<Label>>, Vec<Label>, Vec<u64>) {
    // At most six tensors in all: the brute force is factorial.
    let parts = rng.range(2, 3);
    let per = if parts == 2 { 3 } else { 2 };
    let (mut inputs, mut output, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..parts {
        let (i, o, s) = random_problem(rng, per, 5);
        let base = sizes.len() as Label;
        inputs.extend(
            i.into_iter()
                .map(|t: Vec<Label>| t.into_iter().map(|l| l + base).collect()),
        );
        output.extend(o.into_iter().map(|l| l + base));
        sizes.extend(s);
    }
    (inputs, output, sizes)
}

/// The connected-subset search (used above 13 inputs) against the brute
/// force over the same trees, on small networks, disconnected ones and
/// memory caps included.
#[test]
fn connected_search_equals_brute_force() {
    let mut rng = Rng::new(0xC0DE);
    let (mut free, mut capped, mut infeasible) = (0, 0, 0);
    for case in 0..500 {
        let (inputs, output, sizes) = if case % 3 == 0 {
            disconnected_problem(&mut rng)
        } else {
            random_problem(&mut rng, 6, 9)
        };
        let what = format!("case {case}: {inputs:?} -> {output:?} sizes {sizes:?}");
        let p = Problem::new(&inputs, &output, &sizes).unwrap();
        let flops_of = |ssa: &[(usize, usize)]| {
            let path = ssa_to_linear(inputs.len(), ssa).unwrap();
            evaluate(&inputs, &output, &sizes, &path).unwrap()
        };
        let expected = brute_force_connected(&inputs, &output, &sizes, None).unwrap();
        let optimal::Outcome::Found(ssa) = optimal::optimal_connected(&p, None, None) else {
            panic!("{what}: no tree");
        };
        let info = flops_of(&ssa);
        assert!(
            close(info.flops, expected),
            "{what}: {} vs {expected}",
            info.flops
        );
        // Never better than the optimum over all trees.
        let all = brute_force(&inputs, &output, &sizes, None).unwrap();
        assert!(info.flops >= all * (1.0 - 1e-9), "{what}");
        free += 1;
        if inputs.len() >= 3 {
            let out_size: f64 = output.iter().map(|&l| sizes[l as usize] as f64).product();
            let share = (info.largest_intermediate * rng.range(1, 4) as f64 / 4.0).floor();
            let limit = share.max(out_size);
            let expected = brute_force_connected(&inputs, &output, &sizes, Some(limit));
            match (expected, optimal::optimal_connected(&p, Some(limit), None)) {
                (Some(e), optimal::Outcome::Found(ssa)) => {
                    let got = flops_of(&ssa);
                    assert!(
                        close(got.flops, e),
                        "{what} limit {limit}: {} vs {e}",
                        got.flops
                    );
                    assert!(got.largest_intermediate <= limit, "{what}");
                    capped += 1;
                }
                (None, optimal::Outcome::GaveUp(_) | optimal::Outcome::Infeasible) => {
                    infeasible += 1
                }
                (e, _) => panic!("{what} limit {limit}: brute {e:?}, connected disagrees"),
            }
        }
    }
    println!("connected: {free} free, {capped} capped, {infeasible} infeasible caps");
}

/// Sparse networks far beyond the all-subsets search's reach are solved
/// exactly and quickly.
#[test]
fn optimal_on_sparse_networks_of_30() {
    // A ring and a ladder (an MPS norm) of 30 tensors.
    let ring: Vec<Vec<Label>> = (0..30).map(|k| vec![k, (k + 1) % 30]).collect();
    let mut ladder = Vec::new();
    for k in 0..15u32 {
        // bra bond k, ket bond 100 + k, physical 200 + k
        ladder.push(vec![k, k + 1, 200 + k]);
        ladder.push(vec![100 + k, 101 + k, 200 + k]);
    }
    let sizes: Vec<u64> = (0..300).map(|l| if l >= 200 { 2 } else { 8 }).collect();
    for inputs in [ring, ladder] {
        let output: Vec<Label> = Vec::new();
        let t = std::time::Instant::now();
        let info = search(
            &inputs,
            &output,
            &sizes,
            Optimizer::Optimal,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(info.optimizer, Optimizer::Optimal, "{:?}", info.notes);
        let greedy = search(
            &inputs,
            &output,
            &sizes,
            Optimizer::Greedy,
            &Limits::default(),
        )
        .unwrap();
        assert!(info.flops <= greedy.flops);
        println!(
            "optimal on {} sparse tensors: {:?}",
            inputs.len(),
            t.elapsed()
        );
    }
}
