//! Hyper search: many randomised trials of two tree builders, the best few
//! trees polished by subtree reconfiguration, exhaustive sweeps first and
//! then randomly grown subtrees ([`Tree::reconfigure_random`]).
//!
//! * `greedy` trials run [`random_greedy`] with a sampled cost modifier and
//!   Boltzmann temperature;
//! * `partition` trials bisect the network's hypergraph recursively
//!   ([`partition::bisect`]) with a sampled imbalance and edge weighting, and
//!   solve the parts of at most `cutoff` tensors exactly (or greedily).
//!
//! Parameters start uniformly random; later trials of a method mostly
//! perturb that method's best parameters so far, and the method whose best
//! tree is cheaper gets two trials in three. opt_einsum's own greedy is
//! always one of the candidates, so hyper never does worse than it. Every
//! trial draws from its own stream `(seed, trial)`, so a fixed seed and trial
//! count give the same tree whatever the machine's speed.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Instant;

use super::partition::{self, Hypergraph};
use super::rgreedy::{random_greedy, GreedyParams};
use super::rng::Rng;
use super::slicing;
use super::tree::{Ctx, SubDp, Tree};
use super::{compile_budget, greedy, Polish, Problem};

/// Parts of at most this many tensors are solved exactly.
const EXACT_PART: usize = 8;
/// Subtree size of the quick reconfiguration of every trial's tree.
const TRIAL_RECONF_K: usize = 6;
/// How many of the best trees are kept for the final polish.
const KEEP: usize = 8;
/// Randomised reconfiguration is limited to one tree on networks of more than
/// this many tensors (each costs seconds there).
const RANDOM_RECONF_MAX_N: usize = 700;
/// Rounds of randomised reconfiguration per tree, and how many rounds in a
/// row without improvement end it early.
const RANDOM_RECONF_ROUNDS: usize = 3000;
const RANDOM_RECONF_PATIENCE: usize = 400;

#[derive(Clone, Copy, Debug)]
pub(crate) struct PartParams {
    pub cutoff: usize,
    /// Parts of the whole network (fewer for smaller groups, by
    /// `parts_decay`), combined exactly.
    pub parts: usize,
    pub parts_decay: f64,
    /// How the imbalance changes with group size (cotengra's rule).
    pub imbalance_decay: f64,
    /// Tie the labels leaving a group to a fixed node on one side, so that
    /// side peels the group from its boundary.
    pub fix_output: bool,
    pub imbalance: f64,
    pub log_weights: bool,
    pub greedy: GreedyParams,
}

/// The work of the final polish, by [`Polish`] level.
struct PolishPlan {
    /// Kept trees swept at `reconf_k`, and the most sweeps each.
    keep: usize,
    sweeps: usize,
    /// Trees that get the wide sweep and randomised reconfiguration.
    random_trees: usize,
    /// Subtree size of the wide sweeps and of the randomised reconfiguration.
    final_k: usize,
}

impl PolishPlan {
    fn of(polish: Polish) -> PolishPlan {
        match polish {
            Polish::Full => PolishPlan {
                keep: KEEP,
                sweeps: 16,
                random_trees: 4,
                final_k: 10,
            },
            // Measured on a 200-tensor lattice: the randomised reconfiguration of the best
            // two trees does nearly all of the full polish's work (1.6664e6 flops either
            // way) at a tenth of its time; subtrees of 8 rather than 10 tensors cost about
            // a third as much per sweep.
            Polish::Light => PolishPlan {
                keep: 2,
                sweeps: 2,
                random_trees: 2,
                final_k: 8,
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Params {
    Greedy(GreedyParams),
    Partition(PartParams),
}

/// How many trials, and which polish.
#[derive(Clone, Copy, Debug)]
pub(crate) enum HyperBudget {
    Fixed(usize, Polish),
    /// [`compile_budget`] of the network and its opt_einsum greedy tree.
    Compile,
}

pub(crate) struct HyperOptions {
    pub seed: u64,
    pub budget: HyperBudget,
    pub deadline: Option<Instant>,
    /// Largest intermediate a tree may have (constrained search).
    pub limit: Option<f64>,
    /// Memory limit to be met by slicing: trials are ranked by their cost
    /// once sliced.
    pub slice_limit: Option<f64>,
    /// Size of the subtrees re-optimised exactly at the end.
    pub reconf_k: usize,
    pub progress: Option<Arc<AtomicUsize>>,
}

pub(crate) struct HyperResult {
    /// The best trees found, best first (at least one).
    pub trees: Vec<Tree>,
    pub trials_run: usize,
    pub trials_wanted: usize,
    pub hit_deadline: bool,
    pub best_method: &'static str,
}

fn sample_greedy(rng: &mut Rng) -> GreedyParams {
    GreedyParams {
        // Large modifiers favour absorbing big tensors, which is what
        // sweeps over lattices need.
        costmod: if rng.f64() < 0.5 {
            rng.uniform(0.0, 2.0)
        } else {
            rng.log_uniform(2.0, 20.0)
        },
        temperature: if rng.f64() < 0.15 {
            0.0
        } else {
            rng.log_uniform(0.01, 2.0)
        },
    }
}

fn perturb_greedy(g: GreedyParams, rng: &mut Rng) -> GreedyParams {
    GreedyParams {
        costmod: (g.costmod * rng.log_uniform(0.8, 1.25) + rng.uniform(-0.1, 0.1)).clamp(0.0, 20.0),
        temperature: if g.temperature == 0.0 {
            rng.log_uniform(0.01, 0.1)
        } else {
            (g.temperature * rng.log_uniform(0.6, 1.6)).clamp(0.005, 2.0)
        },
    }
}

fn sample_part(rng: &mut Rng) -> PartParams {
    PartParams {
        cutoff: 3 + rng.below(22),
        parts: 2 + rng.below(7),
        parts_decay: rng.f64(),
        imbalance_decay: rng.uniform(-5.0, 5.0),
        // Measured on the suite: fixing the boundary helps rarely.
        fix_output: rng.f64() < 0.2,
        imbalance: rng.log_uniform(0.01, 1.0),
        log_weights: rng.f64() < 0.7,
        greedy: sample_greedy(rng),
    }
}

fn perturb_part(p: PartParams, rng: &mut Rng) -> PartParams {
    let step = |x: usize, lo: i64, hi: i64, rng: &mut Rng| {
        (x as i64 + rng.below(5) as i64 - 2).clamp(lo, hi) as usize
    };
    PartParams {
        cutoff: step(p.cutoff, 3, 24, rng),
        parts: step(p.parts, 2, 8, rng),
        parts_decay: (p.parts_decay + rng.uniform(-0.1, 0.1)).clamp(0.0, 1.0),
        imbalance_decay: (p.imbalance_decay + rng.uniform(-0.5, 0.5)).clamp(-5.0, 5.0),
        fix_output: if rng.f64() < 0.9 {
            p.fix_output
        } else {
            !p.fix_output
        },
        imbalance: (p.imbalance * rng.log_uniform(0.5, 2.0)).clamp(0.005, 1.0),
        log_weights: if rng.f64() < 0.85 {
            p.log_weights
        } else {
            !p.log_weights
        },
        greedy: perturb_greedy(p.greedy, rng),
    }
}

/// A trial's tree score: flops; a tree over the limit scores above every
/// feasible one, by how far it is over (reconfiguration under the limit may
/// still repair it).
pub(crate) fn score(t: &Tree, limit: Option<f64>) -> f64 {
    match limit {
        Some(l) if t.largest() > l => INFEASIBLE * (t.largest() / l).min(1e50),
        _ => t.total_flops(),
    }
}

/// With slicing allowed: the total flops of the tree sliced (quickly,
/// without reconfiguration) down to `limit`.
fn sliced_score(ctx: &Ctx, t: &Tree, limit: f64) -> f64 {
    if t.largest() <= limit {
        return t.total_flops();
    }
    match slicing::slice_tree(ctx, t, limit, false) {
        Some((labels, _, st)) => {
            let slices: f64 = labels.iter().map(|&l| ctx.sizes[l as usize]).product();
            slices * st.total_flops()
        }
        None => INFEASIBLE,
    }
}

/// Scores at or above this are trees over the memory limit.
pub(crate) const INFEASIBLE: f64 = 1e250;

pub(crate) fn hyper(p: &Problem, ctx: &Ctx, opts: &HyperOptions) -> HyperResult {
    let mut kept: Vec<(f64, Tree, &'static str)> = Vec::new();
    let offer = |t: Tree, method: &'static str, kept: &mut Vec<(f64, Tree, &'static str)>| {
        let s = match opts.slice_limit {
            Some(l) => sliced_score(ctx, &t, l),
            None => score(&t, opts.limit),
        };
        if kept.iter().any(|k| k.0 == s) {
            return s;
        }
        kept.push((s, t, method));
        kept.sort_by(|a, b| a.0.total_cmp(&b.0));
        kept.truncate(KEEP);
        s
    };
    let mut greedy_flops = f64::NAN;
    if let Ok(ssa) = greedy::greedy(p, opts.limit) {
        let t = Tree::from_ssa(ctx, &ssa);
        greedy_flops = t.total_flops();
        offer(t, "opt_einsum-greedy", &mut kept);
    }
    let (trials, polish) = match opts.budget {
        HyperBudget::Fixed(t, polish) => (t, polish),
        HyperBudget::Compile => compile_budget(ctx.n, greedy_flops),
    };
    let plan = PolishPlan::of(polish);
    let mut best: [Option<(f64, Params)>; 2] = [None, None];
    let mut trials_run = 0;
    let mut hit_deadline = false;
    for trial in 0..trials {
        if opts.deadline.is_some_and(|d| Instant::now() > d) {
            hit_deadline = true;
            break;
        }
        let mut rng = Rng::stream(opts.seed, trial as u64);
        let method = if trial < 4 {
            trial % 2
        } else {
            let (g, q) = (
                best[0].map_or(f64::INFINITY, |b| b.0),
                best[1].map_or(f64::INFINITY, |b| b.0),
            );
            let favour = if q <= g { 1 } else { 0 };
            if rng.below(3) < 2 {
                favour
            } else {
                1 - favour
            }
        };
        let explore = trial < 8 || rng.f64() < 0.3;
        let params = match (method, best[method].filter(|_| !explore)) {
            (0, Some((_, Params::Greedy(g)))) => Params::Greedy(perturb_greedy(g, &mut rng)),
            (0, _) => Params::Greedy(sample_greedy(&mut rng)),
            (_, Some((_, Params::Partition(q)))) => Params::Partition(perturb_part(q, &mut rng)),
            _ => Params::Partition(sample_part(&mut rng)),
        };
        let (ssa, name) = match params {
            Params::Greedy(g) => (random_greedy(ctx, g, &mut rng), "greedy"),
            Params::Partition(q) => (partition_ssa(ctx, &q, &mut rng), "partition"),
        };
        let mut tree = Tree::from_ssa(ctx, &ssa);
        if opts.reconf_k >= 3 {
            // A quick polish before ranking: raw scores predict poorly
            // which trees reconfigure well.
            tree.reconfigure(ctx, TRIAL_RECONF_K, 1, opts.limit);
        }
        let s = offer(tree, name, &mut kept);
        if best[method].is_none_or(|b| s < b.0) {
            best[method] = Some((s, params));
        }
        trials_run += 1;
        if let Some(p) = &opts.progress {
            p.fetch_add(1, AtomicOrdering::Relaxed);
        }
    }
    // Past the deadline the kept trees keep their trial polish only: the sweeps below
    // take seconds on networks of hundreds of tensors.
    let polish = opts.reconf_k >= 3
        && opts.slice_limit.is_none()
        && opts.deadline.is_none_or(|d| Instant::now() <= d);
    let mut polished: Vec<(f64, Tree, &'static str)> = kept
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut t, m))| {
            // Trees ranked by sliced cost are polished while being sliced.
            if polish && i < plan.keep {
                t.reconfigure(ctx, opts.reconf_k, plan.sweeps, opts.limit);
            }
            (score(&t, opts.limit), t, m)
        })
        .collect();
    polished.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The best few trees get a wider sweep, then reconfiguration of random
    // subtrees (measured on the suite: this closes most of the gap to
    // cotengra that more trials did not), and the winner a last sweep.
    if polish {
        let trees = if ctx.n <= RANDOM_RECONF_MAX_N {
            plan.random_trees
        } else {
            1
        };
        for (i, best) in polished.iter_mut().take(trees).enumerate() {
            // Its own stream, so that the trial count alone fixes the result.
            let mut rng = Rng::stream(opts.seed ^ 0x5EED, i as u64);
            best.1.reconfigure(ctx, plan.final_k, 4, opts.limit);
            best.1.reconfigure_random(
                ctx,
                plan.final_k,
                RANDOM_RECONF_ROUNDS,
                RANDOM_RECONF_PATIENCE,
                opts.limit,
                &mut rng,
            );
            best.0 = score(&best.1, opts.limit);
        }
        polished.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(best) = polished.first_mut() {
            best.1.reconfigure(ctx, plan.final_k, 4, opts.limit);
            best.0 = score(&best.1, opts.limit);
        }
    }
    let best_method = polished.first().map_or("none", |b| b.2);
    HyperResult {
        trees: polished.into_iter().map(|k| k.1).collect(),
        trials_run,
        trials_wanted: trials,
        hit_deadline,
        best_method,
    }
}

/// One divide-and-conquer tree: recursive bisection down to parts of at most
/// `cutoff` tensors, each contracted exactly or greedily.
pub(crate) fn partition_ssa(ctx: &Ctx, q: &PartParams, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut b = Builder {
        ctx,
        q,
        path: Vec::with_capacity(ctx.n.saturating_sub(1)),
        next: ctx.n,
        dp: SubDp::default(),
    };
    let all: Vec<usize> = (0..ctx.n).collect();
    b.build(&all, rng);
    b.path
}

struct Builder<'a> {
    ctx: &'a Ctx,
    q: &'a PartParams,
    path: Vec<(usize, usize)>,
    next: usize,
    dp: SubDp,
}

impl Builder<'_> {
    fn push(&mut self, a: usize, b: usize) -> usize {
        self.path.push((a, b));
        self.next += 1;
        self.next - 1
    }

    fn build(&mut self, group: &[usize], rng: &mut Rng) -> usize {
        if group.len() == 1 {
            return group[0];
        }
        if group.len() <= self.q.cutoff.max(2) {
            return self.leaf(group, rng);
        }
        // cotengra's schedule: fewer parts and a different imbalance for
        // smaller groups.
        let frac = group.len() as f64 / self.ctx.n as f64;
        let k = ((frac.powf(self.q.parts_decay) * self.q.parts as f64) as usize).max(2);
        let d = self.q.imbalance_decay;
        let imbalance = if d >= 0.0 {
            frac.powf(d) * self.q.imbalance
        } else {
            1.0 - frac.powf(-d) * (1.0 - self.q.imbalance)
        };
        let mut parts = Vec::new();
        self.split(group, k, imbalance.clamp(0.001, 1.0), rng, &mut parts);
        let ids: Vec<usize> = parts.iter().map(|p| self.build(p, rng)).collect();
        if ids.len() == 2 {
            return self.push(ids[0], ids[1]);
        }
        // Several parts: the cheapest order to join them, exactly.
        let legs: Vec<_> = parts.iter().map(|p| self.ctx.group_legs(p)).collect();
        let refs: Vec<&[(u32, u32)]> = legs.iter().map(|l| &l[..]).collect();
        let out = self.ctx.group_legs(group);
        let mut ids = ids;
        if self.dp.solve(self.ctx, &refs, &out, None).is_some() {
            for (a, b) in self.dp.ssa(parts.len()) {
                let id = self.push(ids[a], ids[b]);
                ids.push(id);
            }
            *ids.last().expect("parts are not empty")
        } else {
            let mut acc = ids[0];
            for &r in &ids[1..] {
                acc = self.push(acc, r);
            }
            acc
        }
    }

    /// Recursive bisection of `group` into `k` parts (fewer when small).
    fn split(
        &mut self,
        group: &[usize],
        k: usize,
        imbalance: f64,
        rng: &mut Rng,
        out: &mut Vec<Vec<usize>>,
    ) {
        if k < 2 || group.len() < 2 {
            out.push(group.to_vec());
            return;
        }
        let hg = self.hypergraph(group);
        let side = partition::bisect(&hg, imbalance, rng);
        let (mut a, mut b): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        for (i, &g) in group.iter().enumerate() {
            if side.get(i) == Some(&0) {
                a.push(g)
            } else {
                b.push(g)
            }
        }
        if a.is_empty() || b.is_empty() {
            // Nothing to cut (e.g. one hyperedge holds everything): halve.
            let (x, y) = group.split_at(group.len() / 2);
            a = x.to_vec();
            b = y.to_vec();
        }
        self.split(&a, k / 2, imbalance, rng, out);
        self.split(&b, k - k / 2, imbalance, rng, out);
    }

    fn hypergraph(&self, group: &[usize]) -> Hypergraph {
        let mut pins: Vec<(u32, u32)> = Vec::new();
        for (i, &g) in group.iter().enumerate() {
            for &l in &self.ctx.inputs[g] {
                pins.push((l, i as u32));
            }
        }
        pins.sort_unstable();
        let (mut edges, mut weights) = (Vec::new(), Vec::new());
        let dummy = group.len() as u32;
        let mut i = 0;
        while i < pins.len() {
            let l = pins[i].0;
            let mut e = Vec::new();
            while i < pins.len() && pins[i].0 == l {
                e.push(pins[i].1);
                i += 1;
            }
            let external =
                self.ctx.in_output[l as usize] || (e.len() as u32) < self.ctx.total[l as usize];
            if self.q.fix_output && external {
                e.push(dummy);
            }
            if e.len() >= 2 {
                let size = self.ctx.sizes[l as usize];
                weights.push(if self.q.log_weights {
                    size.log2().max(0.1)
                } else {
                    1.0
                });
                edges.push(e);
            }
        }
        if self.q.fix_output {
            let mut w = vec![1.0; group.len()];
            w.push(0.0);
            let mut hg = Hypergraph::new(w, edges, weights);
            hg.fixed[group.len()] = true;
            hg
        } else {
            Hypergraph::new(vec![1.0; group.len()], edges, weights)
        }
    }

    fn leaf(&mut self, group: &[usize], rng: &mut Rng) -> usize {
        let sub = self.ctx.sub(group);
        let local = if group.len() <= EXACT_PART {
            let legs: Vec<_> = (0..sub.n).map(|i| sub.leaf_legs(i)).collect();
            let refs: Vec<&[(u32, u32)]> = legs.iter().map(|l| &l[..]).collect();
            match self.dp.solve(&sub, &refs, &sub.output_legs(), None) {
                Some(_) => self.dp.ssa(sub.n),
                None => random_greedy(&sub, self.q.greedy, rng),
            }
        } else {
            random_greedy(&sub, self.q.greedy, rng)
        };
        let mut ids: Vec<usize> = group.to_vec();
        for (a, b) in local {
            let id = self.push(ids[a], ids[b]);
            ids.push(id);
        }
        *ids.last().expect("a group is not empty")
    }
}
