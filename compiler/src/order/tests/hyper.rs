//! Hyper search, trees, reconfiguration, partitioning and slicing.

use super::super::hyper::{partition_ssa, PartParams};
use super::super::partition::{bisect, Hypergraph};
use super::super::rgreedy::{random_greedy, GreedyParams};
use super::super::rng::Rng as SearchRng;
use super::super::tree::{Ctx, Tree};
use super::super::*;
use super::brute::random_problem;
use super::Rng;

fn limits(trials: usize, seed: u64) -> Limits {
    Limits {
        trials: Some(trials),
        seed,
        ..Limits::default()
    }
}

/// A `w x h` lattice (periodic when asked) with bond size `d`.
fn lattice(w: usize, h: usize, d: u64, periodic: bool) -> (Vec<Vec<Label>>, Vec<u64>) {
    let mut inputs: Vec<Vec<Label>> = vec![Vec::new(); w * h];
    let mut n = 0;
    for y in 0..h {
        for x in 0..w {
            let mut link = |a: usize, b: usize| {
                inputs[a].push(n);
                inputs[b].push(n);
                n += 1;
            };
            if x + 1 < w || periodic {
                link(y * w + x, y * w + (x + 1) % w);
            }
            if y + 1 < h || periodic {
                link(y * w + x, ((y + 1) % h) * w + x);
            }
        }
    }
    (inputs, vec![d; n as usize])
}

fn ctx_of(inputs: &[Vec<Label>], output: &[Label], sizes: &[u64]) -> Ctx {
    Ctx::new(&Problem::new(inputs, output, sizes).unwrap())
}

#[test]
fn tree_round_trips_and_matches_evaluate() {
    for seed in 0..30 {
        let (inputs, output, sizes) = random_problem(&mut Rng::new(seed), 12, 10);
        let info = search(
            &inputs,
            &output,
            &sizes,
            Optimizer::Greedy,
            &Limits::default(),
        )
        .unwrap();
        let n = inputs.len();
        let ctx = ctx_of(&inputs, &output, &sizes);
        let ssa = linear_to_ssa(n, &info.path).unwrap();
        let tree = Tree::from_ssa(&ctx, &ssa);
        let again = evaluate(
            &inputs,
            &output,
            &sizes,
            &ssa_to_linear(n, &tree.to_ssa()).unwrap(),
        )
        .unwrap();
        assert!((tree.total_flops() - info.flops).abs() <= 1e-9 * info.flops.max(1.0));
        assert!((again.flops - info.flops).abs() <= 1e-9 * info.flops.max(1.0));
        assert_eq!(tree.largest(), info.largest_intermediate);
    }
}

#[test]
fn reconfiguration_never_hurts_and_keeps_a_valid_tree() {
    for seed in 0..30 {
        let (inputs, output, sizes) = random_problem(&mut Rng::new(100 + seed), 14, 12);
        let n = inputs.len();
        let ctx = ctx_of(&inputs, &output, &sizes);
        let mut rng = SearchRng::stream(seed, 0);
        let ssa = random_greedy(
            &ctx,
            GreedyParams {
                costmod: 1.0,
                temperature: 1.0,
            },
            &mut rng,
        );
        let mut tree = Tree::from_ssa(&ctx, &ssa);
        let before = tree.total_flops();
        tree.reconfigure(&ctx, 8, 8, None);
        let after = tree.total_flops();
        assert!(after <= before * (1.0 + 1e-12), "{after} > {before}");
        let info = evaluate(
            &inputs,
            &output,
            &sizes,
            &ssa_to_linear(n, &tree.to_ssa()).unwrap(),
        )
        .unwrap();
        assert!((info.flops - after).abs() <= 1e-9 * after.max(1.0));
        // A tree with at most 8 inputs reconfigured as a whole is optimal.
        if n <= 8 {
            let opt = search(
                &inputs,
                &output,
                &sizes,
                Optimizer::Optimal,
                &Limits::default(),
            )
            .unwrap();
            assert!(
                (opt.flops - after).abs() <= 1e-9 * after.max(1.0),
                "seed {seed}"
            );
        }
    }
}

#[test]
fn random_reconfiguration_never_hurts_and_respects_the_limit() {
    for seed in 0..20 {
        let (inputs, output, sizes) = random_problem(&mut Rng::new(300 + seed), 16, 12);
        let n = inputs.len();
        let ctx = ctx_of(&inputs, &output, &sizes);
        let mut rng = SearchRng::stream(seed, 0);
        let params = GreedyParams {
            costmod: 1.0,
            temperature: 1.0,
        };
        let ssa = random_greedy(&ctx, params, &mut rng);
        let mut tree = Tree::from_ssa(&ctx, &ssa);
        let (before, largest) = (tree.total_flops(), tree.largest());
        tree.reconfigure_random(&ctx, 8, 200, 50, Some(largest), &mut rng);
        let after = tree.total_flops();
        assert!(after <= before * (1.0 + 1e-12), "{after} > {before}");
        assert!(tree.largest() <= largest);
        let info = evaluate(
            &inputs,
            &output,
            &sizes,
            &ssa_to_linear(n, &tree.to_ssa()).unwrap(),
        )
        .unwrap();
        assert!((info.flops - after).abs() <= 1e-9 * after.max(1.0));
    }
}

#[test]
fn builders_give_complete_paths_on_awkward_networks() {
    // Scalars, disconnected parts, hyperedges, labels shared by everything.
    for seed in 0..40 {
        let (mut inputs, output, mut sizes) = random_problem(&mut Rng::new(200 + seed), 30, 16);
        if seed % 4 == 0 {
            sizes.push(2);
            let everywhere = sizes.len() as Label - 1;
            inputs.iter_mut().for_each(|t| t.push(everywhere));
        }
        let ctx = ctx_of(&inputs, &output, &sizes);
        let n = inputs.len();
        let mut rng = SearchRng::stream(seed, 1);
        let q = PartParams {
            cutoff: 2 + seed as usize % 8,
            parts: 2 + seed as usize % 5,
            parts_decay: 0.5,
            imbalance_decay: 0.0,
            fix_output: seed % 2 == 0,
            imbalance: 0.2,
            log_weights: seed % 3 == 0,
            greedy: GreedyParams {
                costmod: 1.0,
                temperature: 0.1,
            },
        };
        for ssa in [
            partition_ssa(&ctx, &q, &mut rng),
            random_greedy(&ctx, q.greedy, &mut rng),
        ] {
            assert_eq!(ssa.len() + 1, n.max(1), "seed {seed}");
            ssa_to_linear(n, &ssa).expect("valid SSA path");
        }
    }
}

#[test]
fn bisection_respects_balance_and_finds_the_obvious_cut() {
    // Two 20-cliques joined by one edge: the cut must be that edge.
    let mut edges = Vec::new();
    for part in 0..2u32 {
        for i in 0..20u32 {
            for j in i + 1..20 {
                edges.push(vec![part * 20 + i, part * 20 + j]);
            }
        }
    }
    edges.push(vec![0, 20]);
    let m = edges.len();
    let hg = Hypergraph::new(vec![1.0; 40], edges, vec![1.0; m]);
    for seed in 0..5 {
        let side = bisect(&hg, 0.05, &mut SearchRng::stream(seed, 0));
        assert_eq!(hg.cut(&side), 1.0, "seed {seed}");
        let ones = side.iter().filter(|&&s| s == 1).count();
        assert_eq!(ones, 20);
    }
}

#[test]
fn hyper_is_deterministic_per_seed_and_never_worse_than_greedy() {
    let (inputs, sizes) = lattice(6, 6, 3, false);
    let a = search(&inputs, &[], &sizes, Optimizer::Hyper, &limits(24, 5)).unwrap();
    let b = search(&inputs, &[], &sizes, Optimizer::Hyper, &limits(24, 5)).unwrap();
    assert_eq!(a.path, b.path);
    assert_eq!(a.trials, 24);
    assert_eq!(a.optimizer, Optimizer::Hyper);
    let greedy = search(&inputs, &[], &sizes, Optimizer::Greedy, &Limits::default()).unwrap();
    assert!(a.flops <= greedy.flops);
    // A lattice is contracted far better by a sweep than by opt_einsum's greedy.
    assert!(
        a.flops < greedy.flops / 2.0,
        "{} vs {}",
        a.flops,
        greedy.flops
    );
    for seed in 0..4 {
        let r = search(&inputs, &[], &sizes, Optimizer::Hyper, &limits(8, seed)).unwrap();
        assert!(r.flops <= greedy.flops);
    }
}

#[test]
fn hyper_on_small_problems_is_exact() {
    for seed in 0..20 {
        let (inputs, output, sizes) = random_problem(&mut Rng::new(300 + seed), 10, 10);
        let h = search(&inputs, &output, &sizes, Optimizer::Hyper, &limits(4, 0)).unwrap();
        let o = search(
            &inputs,
            &output,
            &sizes,
            Optimizer::Optimal,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(h.flops, o.flops);
    }
}

#[test]
fn hyper_time_limit_is_reported() {
    let (inputs, sizes) = lattice(8, 8, 2, true);
    let l = Limits {
        trials: Some(1_000_000),
        time_limit: Some(std::time::Duration::from_millis(50)),
        ..Limits::default()
    };
    let r = search(&inputs, &[], &sizes, Optimizer::Hyper, &l).unwrap();
    assert!(r.trials < 1_000_000);
    assert!(
        r.notes.iter().any(|n| n.contains("time limit")),
        "{:?}",
        r.notes
    );
}

#[test]
fn constrained_hyper_respects_the_memory_limit() {
    // A 6x6 open lattice of bond 2 can be swept with a boundary of 7 bonds.
    let (inputs, sizes) = lattice(6, 6, 2, false);
    let l = Limits {
        memory_limit: Some(128.0),
        ..limits(16, 0)
    };
    let r = search(&inputs, &[], &sizes, Optimizer::Hyper, &l).unwrap();
    assert!(r.largest_intermediate <= 128.0);
    assert!(r.slicing.is_none());
    // With a boundary of 5 bonds (32 elements) no tree exists.
    let l = Limits {
        memory_limit: Some(32.0),
        ..limits(16, 0)
    };
    let e = search(&inputs, &[], &sizes, Optimizer::Hyper, &l).unwrap_err();
    assert!(matches!(e, OrderError::MemoryLimitImpossible { .. }));
}

#[test]
fn slicing_meets_the_limit_and_accounts_for_its_overhead() {
    let (inputs, sizes) = lattice(6, 6, 4, true);
    let free = search(&inputs, &[], &sizes, Optimizer::Hyper, &limits(16, 0)).unwrap();
    let limit = free.largest_intermediate / 64.0;
    let l = Limits {
        memory_limit: Some(limit),
        allow_slicing: true,
        ..limits(16, 0)
    };
    let r = search(&inputs, &[], &sizes, Optimizer::Hyper, &l).unwrap();
    assert!(r.largest_intermediate <= limit);
    let s = r
        .slicing
        .as_ref()
        .expect("a periodic lattice needs slicing here");
    assert_eq!(s.slices, s.sizes.iter().map(|&x| x as f64).product::<f64>());
    assert!((r.flops - s.slices * s.per_slice_flops).abs() <= 1e-9 * r.flops);
    assert!(s.overhead >= 1.0 - 1e-12);
    // The per-slice steps are those of the path with the sliced labels at size 1.
    let mut sliced_sizes = sizes.clone();
    for &lab in &s.labels {
        sliced_sizes[lab as usize] = 1;
    }
    let per = evaluate(&inputs, &[], &sliced_sizes, &r.path).unwrap();
    assert!((per.flops - s.per_slice_flops).abs() <= 1e-9 * per.flops);
    assert_eq!(per.largest_intermediate, r.largest_intermediate);
    // Slice values enumerate every combination once.
    let mut seen = std::collections::BTreeSet::new();
    for k in 0..s.slices as u64 {
        seen.insert(s.slice_values(k));
    }
    assert_eq!(seen.len() as f64, s.slices);
    // Greedy slices too (without reconfiguration).
    let g = search(&inputs, &[], &sizes, Optimizer::Greedy, &l).unwrap();
    assert!(g.largest_intermediate <= limit);
}

#[test]
fn slicing_never_touches_output_labels() {
    // Every label is in the output: nothing can be sliced, and the output
    // itself is over the limit.
    let inputs = vec![vec![0, 1], vec![1, 2]];
    let l = Limits {
        memory_limit: Some(4.0),
        allow_slicing: true,
        ..Limits::default()
    };
    let e = search(&inputs, &[0, 1, 2], &[3, 3, 3], Optimizer::Hyper, &l).unwrap_err();
    assert!(matches!(e, OrderError::MemoryLimitImpossible { .. }));
}

#[test]
fn compile_budget_is_bounded_and_grows_with_the_contraction() {
    for n in [14, 20, 40, 41, 100, 200, 400, 700, 1000, 3000] {
        let full = default_trials(n);
        let mut last = 0;
        for flops in [
            0.0,
            1e3,
            1e6,
            1e8,
            1e9,
            1e10,
            1e11,
            1e12,
            1e14,
            1e20,
            f64::INFINITY,
        ] {
            let (trials, polish) = compile_budget(n, flops);
            assert_eq!(compile_budget(n, flops), (trials, polish), "deterministic");
            assert!(
                (8.min(full)..=full).contains(&trials),
                "n {n}, {flops}: {trials}"
            );
            assert!(trials >= last, "more flops never buy fewer trials");
            last = trials;
            if trials < full && n > 40 {
                assert_eq!(polish, Polish::Light);
            } else {
                assert_eq!(polish, Polish::Full);
            }
        }
        // Cheap contractions: about 4096 tensor-trials; expensive ones (or no greedy
        // tree): at most 8192, which is the whole search only for small networks.
        assert_eq!(compile_budget(n, 1e6).0, (4096 / n).clamp(8, full));
        let most = (8192 / n).clamp(8, full);
        assert_eq!(compile_budget(n, 1e30).0, most);
        assert_eq!(compile_budget(n, f64::NAN).0, most);
        if most == full {
            assert_eq!(compile_budget(n, 1e30).1, Polish::Full);
        }
    }
}

#[test]
fn compile_budget_search_is_deterministic_and_reports_its_trials() {
    let (inputs, sizes) = lattice(10, 6, 2, false);
    let compile = Limits {
        budget: Some(Budget::Compile),
        ..Limits::default()
    };
    let a = search(&inputs, &[], &sizes, Optimizer::Auto, &compile).unwrap();
    let b = search(&inputs, &[], &sizes, Optimizer::Auto, &compile).unwrap();
    assert_eq!(a.path, b.path);
    // A cheap contraction (a few thousand flops): the floor of 4096 tensor-trials.
    assert_eq!(a.trials, 4096 / 60);
    // Explicit trials win over the budget.
    let fixed = Limits {
        trials: Some(3),
        ..compile.clone()
    };
    let c = search(&inputs, &[], &sizes, Optimizer::Auto, &fixed).unwrap();
    assert_eq!(c.trials, 3);
    // Never worse than opt_einsum's greedy, which hyper always offers.
    let g = search(&inputs, &[], &sizes, Optimizer::Greedy, &Limits::default()).unwrap();
    assert!(a.flops <= g.flops);
}
