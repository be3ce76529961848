//! Sweep paths: one intermediate that absorbs the inputs one at a time.
//!
//! Why: a contraction tree whose branches meet in the middle (two zippers along an MPS,
//! two halves of a lattice) holds one branch's result while the other branch runs, so
//! no executor can keep such a plan within its largest intermediate. A sweep holds a
//! single intermediate, which the executor updates in place, so its peak is its
//! largest intermediate. It may cost more flops (a lattice's boundary grows from a
//! corner), so the planner takes it only when that costs little ([`crate::plan`]).
//!
//! [`sweep`] starts from a pair (the cheapest, or a neighbour of one of a few inputs; it
//! keeps the cheapest of these sweeps) and then absorbs, each time, the input that costs
//! the fewest flops (then gives the smallest result, then has the lowest index): along an
//! MPS, the next site of the ket and of the bra in turn. (By result size alone it would
//! follow the ket, whose bonds it removes, and build the whole state vector.) It misses
//! what a searched tree does at an MPS's ends, where it contracts a few ket sites together
//! while 2^sites < bond: 1.42x the tree's flops on a 20-site chain with bond 32 (the plan's
//! `note: memory:` line).
//! Following the searched tree instead (sweep the larger child, then absorb the other
//! child's inputs) was tried in a version not kept and cost more there: absorbing the
//! far end's ket sites one by one into the boundary grows a leg per site that the
//! tree's own order (from the chain's end) never holds.

use super::{Label, OrderError, Path, Problem};

/// The intermediate of a sweep and the inputs not yet absorbed.
struct State<'p> {
    p: &'p Problem,
    /// Operands (inputs not yet absorbed, and the intermediate) holding each label.
    count: Vec<usize>,
    /// Labels of the intermediate; `None` before the first input.
    cur: Option<Vec<usize>>,
    /// Current linear operand list: `Some(input)`, or `None` for the intermediate.
    list: Vec<Option<usize>>,
    pairs: Vec<(usize, usize)>,
    /// Multiply-adds of the absorptions so far (cotengra's cost).
    cost: f64,
}

impl<'p> State<'p> {
    fn new(p: &'p Problem) -> Self {
        let mut count = vec![0usize; p.sizes.len()];
        for term in &p.inputs {
            for &l in term {
                count[l] += 1;
            }
        }
        State {
            p,
            count,
            cur: None,
            list: (0..p.inputs.len()).map(Some).collect(),
            pairs: Vec::new(),
            cost: 0.0,
        }
    }

    /// Result labels, elements and flops of contracting `a` with `b`.
    fn join(&self, a: &[usize], b: &[usize]) -> (Vec<usize>, f64, f64) {
        let mut union: Vec<usize> = a.to_vec();
        union.extend(b.iter().filter(|l| !a.contains(l)));
        let shared = |l: usize| usize::from(a.contains(&l)) + usize::from(b.contains(&l));
        let kept: Vec<usize> = union
            .iter()
            .copied()
            .filter(|&l| self.p.in_output[l] || self.count[l] > shared(l))
            .collect();
        let size: f64 = kept.iter().map(|&l| self.p.sizes[l]).product();
        let all: f64 = union.iter().map(|&l| self.p.sizes[l]).product();
        (kept, size, all)
    }

    /// (flops, result size) of absorbing input `t`; the first input costs nothing.
    fn cost(&self, t: usize) -> (f64, f64) {
        match &self.cur {
            None => (0.0, 0.0),
            Some(cur) => {
                let (_, size, flops) = self.join(cur, &self.p.inputs[t]);
                (flops, size)
            }
        }
    }

    fn absorb(&mut self, t: usize) {
        let pos = |list: &[Option<usize>], x: Option<usize>| list.iter().position(|&y| y == x);
        let Some(cur) = self.cur.take() else {
            // The first input becomes the intermediate where it stands.
            if let Some(i) = pos(&self.list, Some(t)) {
                self.list[i] = None;
            }
            self.cur = Some(self.p.inputs[t].clone());
            return;
        };
        let (next, _, cost) = self.join(&cur, &self.p.inputs[t]);
        self.cost += cost;
        for &l in cur.iter().chain(&self.p.inputs[t]) {
            self.count[l] -= 1;
        }
        for &l in &next {
            self.count[l] += 1;
        }
        let (Some(i), Some(j)) = (pos(&self.list, Some(t)), pos(&self.list, None)) else {
            return;
        };
        self.pairs.push((i.min(j), i.max(j)));
        self.list.retain(|&x| x != Some(t) && x.is_some());
        self.list.push(None);
        self.cur = Some(next);
    }

    /// Absorbs every input of `group`, cheapest first (ties: smaller result, lower
    /// index).
    fn absorb_all(&mut self, mut group: Vec<usize>) {
        while !group.is_empty() {
            let mut best: Option<((f64, f64), usize)> = None;
            for (k, &t) in group.iter().enumerate() {
                let c = self.cost(t);
                if best.is_none_or(|(b, _)| c < b) {
                    best = Some((c, k));
                }
            }
            let Some((_, k)) = best else { break };
            let t = group.remove(k);
            self.absorb(t);
        }
    }
}

/// A sweep path for `inputs -> output` in opt_einsum's linear format: the cheapest of
/// [`sweeps`].
pub fn sweep(inputs: &[Vec<Label>], output: &[Label], sizes: &[u64]) -> Result<Path, OrderError> {
    let cheapest = sweeps(inputs, output, sizes)?
        .into_iter()
        .min_by(|a, b| a.0.total_cmp(&b.0));
    Ok(cheapest.map(|(_, p)| p).unwrap_or_default())
}

/// The greedy sweep from each of [`starts`], with its multiply-adds, in the order of the
/// starts. The cheapest need not be the one that holds least: the planner weighs them.
pub fn sweeps(
    inputs: &[Vec<Label>],
    output: &[Label],
    sizes: &[u64],
) -> Result<Vec<(f64, Path)>, OrderError> {
    let p = Problem::new(inputs, output, sizes)?;
    if p.inputs.len() < 2 {
        return Ok(vec![(0.0, Path::default())]);
    }
    let mut out: Vec<(f64, Path)> = Vec::new();
    for (i, j) in starts(&p) {
        let mut st = State::new(&p);
        st.absorb(i);
        st.absorb(j);
        st.absorb_all((0..p.inputs.len()).filter(|&k| k != i && k != j).collect());
        if !out.iter().any(|(_, q)| q.pairs == st.pairs) {
            out.push((st.cost, Path { pairs: st.pairs }));
        }
    }
    Ok(out)
}

/// How many inputs, evenly spread, a sweep also starts from (with each neighbour).
const START_SAMPLE: usize = 8;

/// Above this many inputs only the cheapest pair starts a sweep: each sweep costs
/// O(inputs²) joins, and a plan tries every one.
const MANY_INPUTS: usize = 256;

/// The pairs a sweep starts from: the cheapest pair (fewest flops, then the smallest
/// result), and, up to [`MANY_INPUTS`] inputs, every pair of a neighbour with one of
/// [`START_SAMPLE`] inputs spread over the list. The cheapest pair alone fails around a
/// ring: on a periodic MPS it is two ket sites, and from there each next ket site costs
/// fewer flops than opening the bra, so the sweep builds the state vector (1.9e13 flops on
/// the paths suite's 30-site ring with bond 16, 119235x the searched tree). Starting from a
/// site's ket and bra, it zips around the ring.
fn starts(p: &Problem) -> Vec<(usize, usize)> {
    let n = p.inputs.len();
    let st = State::new(p);
    let mut cheapest: Option<((f64, f64), usize, usize)> = None;
    for i in 0..n {
        for j in i + 1..n {
            let (_, size, flops) = st.join(&p.inputs[i], &p.inputs[j]);
            if cheapest.is_none_or(|(b, ..)| (flops, size) < b) {
                cheapest = Some(((flops, size), i, j));
            }
        }
    }
    let mut out: Vec<(usize, usize)> = cheapest.map(|(_, i, j)| (i, j)).into_iter().collect();
    let shares = |i: usize, j: usize| p.inputs[i].iter().any(|l| p.inputs[j].contains(l));
    let sample = if n > MANY_INPUTS {
        0
    } else {
        START_SAMPLE.min(n)
    };
    for k in 0..sample {
        let i = k * n / sample;
        for j in (0..n).filter(|&j| j != i && shares(i, j)) {
            let pair = (i.min(j), i.max(j));
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}
