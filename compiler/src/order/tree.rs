//! Contraction trees as the searches see them, and subtree reconfiguration.
//!
//! A node's labels depend only on the set of inputs below it: a label stays
//! while it is in the output or some input outside the set holds it. Each
//! node therefore carries its labels with the number of inputs below holding
//! them ([`Legs`]), so merging two nodes is a linear walk, and replacing the
//! inside of a subtree never changes anything outside it.

use super::rng::Rng;
use super::Problem;

/// `(dense label, inputs below the node holding it)`, sorted by label.
pub(crate) type Legs = Vec<(u32, u32)>;

/// What every search needs to know about a problem, in dense terms.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub n: usize,
    /// Each input's labels, sorted.
    pub inputs: Vec<Vec<u32>>,
    pub sizes: Vec<f64>,
    /// Number of inputs holding each label.
    pub total: Vec<u32>,
    pub in_output: Vec<bool>,
}

impl Ctx {
    pub fn new(p: &Problem) -> Ctx {
        let mut total = vec![0u32; p.sizes.len()];
        let inputs: Vec<Vec<u32>> = p
            .inputs
            .iter()
            .map(|t| {
                let mut v: Vec<u32> = t.iter().map(|&l| l as u32).collect();
                v.sort_unstable();
                for &l in &v {
                    total[l as usize] += 1;
                }
                v
            })
            .collect();
        Ctx {
            n: inputs.len(),
            inputs,
            sizes: p.sizes.clone(),
            total,
            in_output: p.in_output.clone(),
        }
    }

    /// The sub-network of `members`, relabelled densely; labels needed
    /// outside it (or in the output) are its output.
    pub fn sub(&self, members: &[usize]) -> Ctx {
        let mut labels: Vec<u32> = members
            .iter()
            .flat_map(|&m| self.inputs[m].iter().copied())
            .collect();
        labels.sort_unstable();
        let mut count = Vec::new();
        let mut uniq: Vec<u32> = Vec::new();
        for l in labels {
            if uniq.last() == Some(&l) {
                *count.last_mut().expect("pushed with the label") += 1;
            } else {
                uniq.push(l);
                count.push(1u32);
            }
        }
        let inputs = members
            .iter()
            .map(|&m| {
                self.inputs[m]
                    .iter()
                    .map(|l| uniq.binary_search(l).expect("collected above") as u32)
                    .collect()
            })
            .collect();
        Ctx {
            n: members.len(),
            inputs,
            sizes: uniq.iter().map(|&l| self.sizes[l as usize]).collect(),
            in_output: uniq
                .iter()
                .zip(&count)
                .map(|(&l, &c)| self.in_output[l as usize] || c < self.total[l as usize])
                .collect(),
            total: count,
        }
    }

    /// Legs of the tensor that contracts the inputs `members`.
    pub fn group_legs(&self, members: &[usize]) -> Legs {
        let mut labels: Vec<u32> = members
            .iter()
            .flat_map(|&m| self.inputs[m].iter().copied())
            .collect();
        labels.sort_unstable();
        let mut out: Legs = Vec::new();
        for l in labels {
            match out.last_mut() {
                Some(last) if last.0 == l => last.1 += 1,
                _ => out.push((l, 1)),
            }
        }
        out.retain(|&(l, c)| self.in_output[l as usize] || c < self.total[l as usize]);
        out
    }

    /// Output labels as legs (counts are irrelevant to the DP).
    pub fn output_legs(&self) -> Legs {
        (0..self.sizes.len() as u32)
            .filter(|&l| self.in_output[l as usize])
            .map(|l| (l, 0))
            .collect()
    }

    pub fn leaf_legs(&self, i: usize) -> Legs {
        self.inputs[i].iter().map(|&l| (l, 1)).collect()
    }

    pub fn legs_size(&self, legs: &[(u32, u32)]) -> f64 {
        legs.iter().map(|&(l, _)| self.sizes[l as usize]).product()
    }

    /// The result of contracting `a` with `b` into `out`; returns the step's
    /// opt_einsum flops and the result's size.
    pub fn merge(&self, a: &[(u32, u32)], b: &[(u32, u32)], out: &mut Legs) -> (f64, f64) {
        out.clear();
        let (mut i, mut j) = (0, 0);
        let (mut union, mut size, mut summed) = (1.0, 1.0, false);
        while i < a.len() || j < b.len() {
            let (l, c) = match (a.get(i), b.get(j)) {
                (Some(&(x, cx)), Some(&(y, cy))) if x == y => {
                    i += 1;
                    j += 1;
                    (x, cx + cy)
                }
                (Some(&(x, cx)), Some(&(y, _))) if x < y => {
                    i += 1;
                    (x, cx)
                }
                (Some(&(x, cx)), None) => {
                    i += 1;
                    (x, cx)
                }
                (_, Some(&(y, cy))) => {
                    j += 1;
                    (y, cy)
                }
                (None, None) => break,
            };
            let s = self.sizes[l as usize];
            union *= s;
            if self.in_output[l as usize] || c < self.total[l as usize] {
                out.push((l, c));
                size *= s;
            } else {
                summed = true;
            }
        }
        (if summed { 2.0 * union } else { union }, size)
    }
}

/// A full binary contraction tree over `n` inputs in an arena: nodes
/// `0..n` are the inputs, `n..2n-1` the contractions (in no particular order).
#[derive(Clone)]
pub(crate) struct Tree {
    pub n: usize,
    /// Children of node `n + i`.
    pub kids: Vec<(u32, u32)>,
    pub legs: Vec<Legs>,
    /// Result size of every node.
    pub size: Vec<f64>,
    /// Step flops of node `n + i`.
    pub flops: Vec<f64>,
    pub root: usize,
}

impl Tree {
    /// Builds the tree of a complete SSA path (`n - 1` pairs of valid ids).
    pub fn from_ssa(ctx: &Ctx, ssa: &[(usize, usize)]) -> Tree {
        let n = ctx.n;
        debug_assert_eq!(ssa.len() + 1, n.max(1));
        let mut t = Tree {
            n,
            kids: Vec::with_capacity(n.saturating_sub(1)),
            legs: (0..n).map(|i| ctx.leaf_legs(i)).collect(),
            size: (0..n).map(|i| ctx.legs_size(&ctx.leaf_legs(i))).collect(),
            flops: Vec::with_capacity(n.saturating_sub(1)),
            root: n.saturating_sub(1) + ssa.len(),
        };
        if n == 0 {
            t.root = 0;
        }
        for &(a, b) in ssa {
            let mut legs = Vec::new();
            let (flops, size) = ctx.merge(&t.legs[a], &t.legs[b], &mut legs);
            t.kids.push((a as u32, b as u32));
            t.legs.push(legs);
            t.size.push(size);
            t.flops.push(flops);
        }
        t
    }

    pub fn total_flops(&self) -> f64 {
        self.flops.iter().sum()
    }

    pub fn largest(&self) -> f64 {
        self.size[self.n..].iter().copied().fold(0.0, f64::max)
    }

    /// The SSA path in post-order (the child holding more leaves first is
    /// not implied; the left child is emitted first).
    pub fn to_ssa(&self) -> Vec<(usize, usize)> {
        let n = self.n;
        let mut path = Vec::with_capacity(n.saturating_sub(1));
        if n < 2 {
            return path;
        }
        // Iterative post-order: (node, children done?).
        let mut ids = vec![usize::MAX; 2 * n - 1];
        (0..n).for_each(|i| ids[i] = i);
        let mut stack = vec![(self.root, false)];
        while let Some((x, done)) = stack.pop() {
            if x < n {
                continue;
            }
            let (a, b) = self.kids[x - n];
            if done {
                ids[x] = n + path.len();
                path.push((ids[a as usize], ids[b as usize]));
            } else {
                stack.push((x, true));
                stack.push((b as usize, false));
                stack.push((a as usize, false));
            }
        }
        path
    }

    pub(crate) fn set(&mut self, ctx: &Ctx, x: usize, a: usize, b: usize) {
        let mut legs = std::mem::take(&mut self.legs[x]);
        let (flops, size) = ctx.merge(&self.legs[a], &self.legs[b], &mut legs);
        self.legs[x] = legs;
        self.kids[x - self.n] = (a as u32, b as u32);
        self.size[x] = size;
        self.flops[x - self.n] = flops;
    }

    /// cotengra's `subtree_reconfigure`: re-optimises, exactly, the subtree
    /// of up to `k` frontier nodes below every contraction, most expensive
    /// first, for up to `passes` passes or until a pass changes nothing.
    /// With `limit`, no new intermediate exceeds it. Returns whether the
    /// tree improved.
    pub fn reconfigure(&mut self, ctx: &Ctx, k: usize, passes: usize, limit: Option<f64>) -> bool {
        let n = self.n;
        if n < 3 {
            return false;
        }
        let mut improved = false;
        let mut dp = SubDp::default();
        for _ in 0..passes {
            let mut order: Vec<usize> = (n..2 * n - 1).collect();
            order.sort_by(|&x, &y| self.flops[y - n].total_cmp(&self.flops[x - n]));
            let mut changed = false;
            for x in order {
                changed |= self.reconfigure_at(ctx, x, k, limit, &mut dp, None);
            }
            improved |= changed;
            if !changed {
                break;
            }
        }
        improved
    }

    /// Reconfiguration of randomly grown subtrees ("forested" in
    /// cotengra): roots are drawn in proportion to their flops and frontier
    /// nodes are expanded at random, so subtrees that the deterministic
    /// sweep never forms get optimised too. Stops after `patience`
    /// consecutive rounds without improvement or `rounds` rounds in all.
    pub fn reconfigure_random(
        &mut self,
        ctx: &Ctx,
        k: usize,
        rounds: usize,
        patience: usize,
        limit: Option<f64>,
        rng: &mut Rng,
    ) -> bool {
        let n = self.n;
        if n < 3 {
            return false;
        }
        let mut dp = SubDp::default();
        let mut improved = false;
        let mut idle = 0;
        for _ in 0..rounds {
            if idle >= patience {
                break;
            }
            // Roots weighted by flops^(1/2): expensive regions first, but
            // cheap ones still get visits.
            let w: Vec<f64> = self.flops.iter().map(|f| f.sqrt()).collect();
            let total: f64 = w.iter().sum();
            let mut r = rng.f64() * total;
            let mut x = 2 * n - 2;
            for (i, wi) in w.iter().enumerate() {
                r -= wi;
                if r <= 0.0 {
                    x = n + i;
                    break;
                }
            }
            let kk = 4 + rng.below(k.saturating_sub(3).max(1));
            if self.reconfigure_at(ctx, x, kk, limit, &mut dp, Some(rng)) {
                improved = true;
                idle = 0;
            } else {
                idle += 1;
            }
        }
        improved
    }

    fn reconfigure_at(
        &mut self,
        ctx: &Ctx,
        x: usize,
        k: usize,
        limit: Option<f64>,
        dp: &mut SubDp,
        mut rng: Option<&mut Rng>,
    ) -> bool {
        let n = self.n;
        let (a, b) = self.kids[x - n];
        let mut frontier = vec![a as usize, b as usize];
        let mut expanded = vec![x];
        while frontier.len() < k {
            let pick = match rng.as_deref_mut() {
                Some(rng) => {
                    let inner: Vec<usize> =
                        (0..frontier.len()).filter(|&i| frontier[i] >= n).collect();
                    (!inner.is_empty()).then(|| inner[rng.below(inner.len())])
                }
                None => frontier
                    .iter()
                    .enumerate()
                    .filter(|&(_, &f)| f >= n)
                    .max_by(|p, q| self.flops[p.1 - n].total_cmp(&self.flops[q.1 - n]))
                    .map(|(i, _)| i),
            };
            let Some(i) = pick else { break };
            let f = frontier.swap_remove(i);
            let (c, d) = self.kids[f - n];
            frontier.push(c as usize);
            frontier.push(d as usize);
            expanded.push(f);
        }
        if frontier.len() < 3 {
            return false;
        }
        frontier.sort_unstable();
        let current: f64 = expanded.iter().map(|&e| self.flops[e - n]).sum();
        let over = |s: f64| limit.is_some_and(|l| s > l);
        let current_ok = !expanded[1..].iter().any(|&e| over(self.size[e]));
        let legs: Vec<&[(u32, u32)]> = frontier.iter().map(|&f| &self.legs[f][..]).collect();
        let Some(best) = dp.solve(ctx, &legs, &self.legs[x], limit) else {
            return false;
        };
        let better = if current_ok {
            best < current * (1.0 - 1e-12)
        } else {
            true
        };
        if !better {
            return false;
        }
        let mut rb = Rebuild {
            frontier: &frontier,
            split: &dp.split,
            free: expanded[1..].to_vec(),
            root: x,
            full: (1usize << frontier.len()) - 1,
        };
        self.emit(ctx, rb.full, &mut rb);
        true
    }

    /// Builds subset `s` of the frontier by the DP's splits, reusing the
    /// ids of the replaced inner nodes; the whole frontier keeps `root`'s id.
    fn emit(&mut self, ctx: &Ctx, s: usize, rb: &mut Rebuild) -> usize {
        if s.is_power_of_two() {
            return rb.frontier[s.trailing_zeros() as usize];
        }
        let a = rb.split[s] as usize;
        let ia = self.emit(ctx, a, rb);
        let ib = self.emit(ctx, s ^ a, rb);
        let id = if s == rb.full {
            rb.root
        } else {
            rb.free
                .pop()
                .expect("a subtree of k leaves has k - 2 inner nodes")
        };
        self.set(ctx, id, ia, ib);
        id
    }
}

struct Rebuild<'a> {
    frontier: &'a [usize],
    split: &'a [u32],
    free: Vec<usize>,
    root: usize,
    full: usize,
}

/// Exact DP over the subsets of a frontier of at most 16 nodes whose labels
/// fit in 128 bits; tables are reused between calls.
#[derive(Default)]
pub(crate) struct SubDp {
    labels: Vec<u32>,
    lab: Vec<u128>,
    legs: Vec<u128>,
    size: Vec<f64>,
    best: Vec<f64>,
    split: Vec<u32>,
}

impl SubDp {
    /// Cheapest flops to build `x` from `frontier`, or `None` when the
    /// labels do not fit or the limit cannot be met.
    pub fn solve(
        &mut self,
        ctx: &Ctx,
        frontier: &[&[(u32, u32)]],
        out_legs: &[(u32, u32)],
        limit: Option<f64>,
    ) -> Option<f64> {
        let m = frontier.len();
        if m > 16 {
            return None;
        }
        self.labels.clear();
        for f in frontier {
            self.labels.extend(f.iter().map(|&(l, _)| l));
        }
        self.labels.sort_unstable();
        self.labels.dedup();
        if self.labels.len() > 128 {
            return None;
        }
        let bit = |labels: &[u32], l: u32| -> u128 {
            1u128 << labels.binary_search(&l).expect("label of the frontier")
        };
        let mut out = 0u128;
        for &(l, _) in out_legs {
            if let Ok(i) = self.labels.binary_search(&l) {
                out |= 1 << i;
            }
        }
        let subsets = 1usize << m;
        let full = subsets - 1;
        self.lab.clear();
        self.lab.resize(subsets, 0);
        for (i, f) in frontier.iter().enumerate() {
            self.lab[1 << i] = f.iter().fold(0, |acc, &(l, _)| acc | bit(&self.labels, l));
        }
        for s in 1..subsets {
            let low = s & s.wrapping_neg();
            if low != s {
                self.lab[s] = self.lab[low] | self.lab[s ^ low];
            }
        }
        let sizes: Vec<f64> = self.labels.iter().map(|&l| ctx.sizes[l as usize]).collect();
        let prod = |mut bits: u128| {
            let mut p = 1.0;
            while bits != 0 {
                p *= sizes[bits.trailing_zeros() as usize];
                bits &= bits - 1;
            }
            p
        };
        self.legs.clear();
        self.legs.resize(subsets, 0);
        self.size.clear();
        self.size.resize(subsets, 0.0);
        for s in 1..subsets {
            self.legs[s] = if s.is_power_of_two() {
                self.lab[s]
            } else {
                self.lab[s] & (out | self.lab[full ^ s])
            };
            self.size[s] = prod(self.legs[s]);
        }
        self.best.clear();
        self.best.resize(subsets, f64::INFINITY);
        self.split.clear();
        self.split.resize(subsets, 0);
        for i in 0..m {
            self.best[1 << i] = 0.0;
        }
        for s in 1..subsets {
            let low = s & s.wrapping_neg();
            if low == s || (s != full && limit.is_some_and(|l| self.size[s] > l)) {
                continue;
            }
            let rest = s ^ low;
            let mut sub = rest;
            while sub != 0 {
                sub = (sub - 1) & rest;
                let a = low | sub;
                let b = s ^ a;
                let base = self.best[a] + self.best[b];
                if base >= self.best[s] {
                    continue;
                }
                let u = self.legs[a] | self.legs[b];
                // |a ∪ b| from the cached sizes: the shared legs are few.
                let mut step = self.size[a] * self.size[b] / prod(self.legs[a] & self.legs[b]);
                if u != self.legs[s] {
                    step *= 2.0;
                }
                if base + step < self.best[s] {
                    self.best[s] = base + step;
                    self.split[s] = a as u32;
                }
            }
        }
        self.best[full].is_finite().then_some(self.best[full])
    }

    /// The SSA path of the last solution over `m` frontier nodes.
    pub fn ssa(&self, m: usize) -> Vec<(usize, usize)> {
        fn rec(s: usize, split: &[u32], next: &mut usize, path: &mut Vec<(usize, usize)>) -> usize {
            if s.is_power_of_two() {
                return s.trailing_zeros() as usize;
            }
            let a = split[s] as usize;
            let ia = rec(a, split, next, path);
            let ib = rec(s ^ a, split, next, path);
            path.push((ia, ib));
            *next += 1;
            *next - 1
        }
        let mut path = Vec::with_capacity(m.saturating_sub(1));
        if m >= 2 {
            let mut next = m;
            rec((1 << m) - 1, &self.split, &mut next, &mut path);
        }
        path
    }
}
