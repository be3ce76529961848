//! Sweep paths: one intermediate that absorbs the inputs one at a time.
//!
//! Why: a contraction tree whose branches meet in the middle (two zippers along an MPS,
//! two halves of a lattice) holds one branch's result while the other branch runs, so
//! no executor can keep such a plan within its largest intermediate. A sweep holds a
//! single intermediate, which the executor updates in place, so its peak is its
//! largest intermediate. It may cost more flops (a lattice's boundary grows from a
//! corner), so the planner takes it only when that costs little ([`crate::plan`]).
//!
//! [`sweep`] starts from the cheapest pair (then the one with the smallest result) and
//! then absorbs, each time, the input that costs the fewest flops (then gives the
//! smallest result, then has the lowest index): along an MPS, the next site of the ket
//! and of the bra in turn. (By result size alone it would follow the ket, whose bonds it
//! removes, and build the whole state vector.) It misses what a searched tree does at an
//! MPS's ends, where it contracts a few ket sites together while 2^sites < bond: 1.42x
//! the tree's flops on a 20-site chain with bond 32 (the plan's `note: memory:` line).
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
        let (next, ..) = self.join(&cur, &self.p.inputs[t]);
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

/// A sweep path for `inputs -> output` in opt_einsum's linear format.
pub fn sweep(inputs: &[Vec<Label>], output: &[Label], sizes: &[u64]) -> Result<Path, OrderError> {
    let p = Problem::new(inputs, output, sizes)?;
    let n = p.inputs.len();
    if n < 2 {
        return Ok(Path::default());
    }
    let mut st = State::new(&p);
    // The cheapest pair to start from.
    let mut best: Option<((f64, f64), usize, usize)> = None;
    for i in 0..n {
        for j in i + 1..n {
            let (_, size, flops) = st.join(&p.inputs[i], &p.inputs[j]);
            if best.is_none_or(|(b, ..)| (flops, size) < b) {
                best = Some(((flops, size), i, j));
            }
        }
    }
    let Some((_, i, j)) = best else {
        return Ok(Path::default());
    };
    st.absorb(i);
    st.absorb(j);
    st.absorb_all((0..n).filter(|&k| k != i && k != j).collect());
    Ok(Path { pairs: st.pairs })
}
