//! opt_einsum `dp`'s search: exact over trees whose intermediates are all
//! connected sets of inputs (see the parent module).
//!
//! Per connected component, sets of inputs are built by size: a set of `m`
//! inputs is any union of two disjoint, connected (sharing a label) sets of
//! `k` and `m - k` inputs already built. Only sets whose cheapest tree costs
//! at most a cap are kept; if the whole component is not reached the cap
//! grows and the search restarts. Every subtree of a tree costs at most the
//! tree, so the first cap that reaches the component gives its optimum over
//! connected trees. The components' results are then joined by the exact
//! all-subsets search on a problem of one operand per component.

use std::collections::HashMap;
use std::time::Instant;

use super::super::{greedy, Problem};
use super::{bits_size, Outcome, FULL_MAX_INPUTS, MAX_PAIRS};

/// Pairs examined between two looks at the clock.
const CLOCK_STRIDE: u64 = 1 << 14;

pub(super) fn connected(p: &Problem, limit: Option<f64>, deadline: Option<Instant>) -> Outcome {
    let n = p.inputs.len();
    let words = p.sizes.len().div_ceil(64).max(1);
    let mut holders = vec![0u64; p.sizes.len()];
    let mut out = vec![0u64; words];
    for (i, t) in p.inputs.iter().enumerate() {
        t.iter().for_each(|&l| holders[l] |= 1 << i);
    }
    for &l in &p.output {
        out[l / 64] |= 1 << (l % 64);
    }
    let mut s = Search {
        p,
        words,
        holders,
        out,
        limit,
        deadline,
        pairs: 0,
    };
    let mut path = Vec::with_capacity(n - 1);
    let mut next_id = n;
    // Per component: the SSA id of its result and that result's labels.
    let mut parts: Vec<(usize, Vec<usize>)> = Vec::new();
    for comp in components(p, &s.holders) {
        if comp.is_power_of_two() {
            let i = comp.trailing_zeros() as usize;
            parts.push((i, p.inputs[i].clone()));
            continue;
        }
        let table = match s.component(comp) {
            Ok(t) => t,
            Err(why) => return Outcome::GaveUp(why),
        };
        let id = table.emit(comp, &mut next_id, &mut path);
        let e = table.index[&comp] as usize;
        let labels = (0..p.sizes.len())
            .filter(|&l| table.legs[e * words + l / 64] >> (l % 64) & 1 == 1)
            .collect();
        parts.push((id, labels));
    }
    if parts.len() > 1 {
        // Components share no label: an exact (or, past a dozen components,
        // greedy) search over the outer products of their results.
        let joins = Problem {
            inputs: parts.iter().map(|(_, l)| l.clone()).collect(),
            ..p.clone()
        };
        let sub = if parts.len() <= FULL_MAX_INPUTS {
            match super::optimal(&joins, limit, deadline, 0.0) {
                Outcome::Found(sub) => sub,
                other => return other,
            }
        } else {
            match greedy::greedy(&joins, limit) {
                Ok(sub) => sub,
                Err(e) => return Outcome::GaveUp(e.to_string()),
            }
        };
        let k = parts.len();
        let mut ids: Vec<usize> = parts.iter().map(|&(id, _)| id).collect();
        for (a, b) in sub {
            path.push((ids[a], ids[b]));
            ids.push(next_id);
            next_id += 1;
        }
        debug_assert_eq!(ids.len(), 2 * k - 1);
    }
    Outcome::Found(path)
}

/// Connected components of the inputs (sharing a label connects), as masks
/// in order of their lowest input.
fn components(p: &Problem, holders: &[u64]) -> Vec<u64> {
    let n = p.inputs.len();
    let mut comps = Vec::new();
    let mut seen = 0u64;
    for start in 0..n {
        if seen >> start & 1 == 1 {
            continue;
        }
        let (mut comp, mut frontier) = (0u64, 1u64 << start);
        while frontier != 0 {
            comp |= frontier;
            let mut next = 0u64;
            let mut f = frontier;
            while f != 0 {
                let i = f.trailing_zeros() as usize;
                f &= f - 1;
                p.inputs[i].iter().for_each(|&l| next |= holders[l]);
            }
            frontier = next & !comp;
        }
        seen |= comp;
        comps.push(comp);
    }
    comps
}

struct Search<'a> {
    p: &'a Problem,
    words: usize,
    /// Inputs holding each label, as a mask.
    holders: Vec<u64>,
    out: Vec<u64>,
    limit: Option<f64>,
    deadline: Option<Instant>,
    pairs: u64,
}

/// The sets built under one cap: entry `e` has labels (legs)
/// `legs[e * words..]`, and `left` is the part of its last split that
/// holds its lowest input.
#[derive(Default)]
struct Table {
    mask: Vec<u64>,
    left: Vec<u64>,
    flops: Vec<f64>,
    largest: Vec<f64>,
    legs: Vec<u64>,
    index: HashMap<u64, u32>,
    /// Entries by number of inputs.
    layers: Vec<Vec<u32>>,
}

impl Table {
    fn emit(&self, s: u64, next_id: &mut usize, path: &mut Vec<(usize, usize)>) -> usize {
        if s.is_power_of_two() {
            return s.trailing_zeros() as usize;
        }
        let a = self.left[self.index[&s] as usize];
        let ia = self.emit(a, next_id, path);
        let ib = self.emit(s ^ a, next_id, path);
        path.push((ia, ib));
        *next_id += 1;
        *next_id - 1
    }
}

impl Search<'_> {
    /// The table whose entries include the whole component `comp`, built
    /// under the smallest cap of the sequence that reaches it.
    fn component(&mut self, comp: u64) -> Result<Table, String> {
        let p = self.p;
        let inputs = || (0..p.inputs.len()).filter(move |&i| comp >> i & 1 == 1);
        // Any tree contracts each input at some step costing at least its
        // size, so the largest input is a lower bound to start from.
        let mut cap = inputs()
            .map(|i| p.size_of(&p.inputs[i]))
            .fold(1.0, f64::max);
        let min_size = inputs()
            .flat_map(|i| p.inputs[i].iter().map(|&l| p.sizes[l]))
            .fold(f64::INFINITY, f64::min);
        let grow = min_size.max(2.0);
        loop {
            if self.deadline.is_some_and(|d| Instant::now() > d) {
                return Err(format!(
                    "time limit reached after {} candidate pairs",
                    self.pairs
                ));
            }
            let (table, capped) = self.build(comp, cap)?;
            if table.index.contains_key(&comp) {
                return Ok(table);
            }
            if !capped || cap == f64::INFINITY {
                return Err("no tree of connected intermediates fits the memory limit".to_string());
            }
            cap *= grow;
        }
    }

    /// All connected sets of `comp` with a tree of cost at most `cap` (and
    /// intermediates within the memory limit); also whether the cap cut off
    /// any set.
    fn build(&mut self, comp: u64, cap: f64) -> Result<(Table, bool), String> {
        let (p, w) = (self.p, self.words);
        let m_all = comp.count_ones() as usize;
        let mut t = Table {
            layers: vec![Vec::new(); m_all + 1],
            ..Table::default()
        };
        for i in (0..p.inputs.len()).filter(|&i| comp >> i & 1 == 1) {
            let e = t.mask.len() as u32;
            t.mask.push(1 << i);
            t.left.push(0);
            t.flops.push(0.0);
            t.largest.push(0.0);
            let at = t.legs.len();
            t.legs.resize(at + w, 0);
            p.inputs[i]
                .iter()
                .for_each(|&l| t.legs[at + l / 64] |= 1 << (l % 64));
            t.index.insert(1 << i, e);
            t.layers[1].push(e);
        }
        let mut capped = false;
        let mut kept = vec![0u64; w];
        let mut next_clock = self.pairs + CLOCK_STRIDE;
        for m in 2..=m_all {
            for k in 1..=m / 2 {
                let (la, lb) = (t.layers[k].clone(), t.layers[m - k].clone());
                for (ia, &a) in la.iter().enumerate() {
                    let from = if k == m - k { ia + 1 } else { 0 };
                    for &b in &lb[from..] {
                        self.pairs += 1;
                        if self.pairs >= next_clock {
                            next_clock = self.pairs + CLOCK_STRIDE;
                            if self.pairs > MAX_PAIRS {
                                return Err(format!("{} candidate pairs examined", self.pairs));
                            }
                            if self.deadline.is_some_and(|d| Instant::now() > d) {
                                return Err(format!(
                                    "time limit reached after {} candidate pairs",
                                    self.pairs
                                ));
                            }
                        }
                        let (a, b) = (a as usize, b as usize);
                        let (ma, mb) = (t.mask[a], t.mask[b]);
                        if ma & mb != 0 {
                            continue;
                        }
                        let (xa, xb) = (&t.legs[a * w..(a + 1) * w], &t.legs[b * w..(b + 1) * w]);
                        if xa.iter().zip(xb).all(|(x, y)| x & y == 0) {
                            continue; // not connected
                        }
                        let s = ma | mb;
                        let mut step = 1.0;
                        let mut size = 1.0;
                        let mut summed = false;
                        for j in 0..w {
                            let u = xa[j] | xb[j];
                            let mut keep = u & self.out[j];
                            let mut rest = u & !keep;
                            while rest != 0 {
                                let bit = rest.trailing_zeros() as usize;
                                rest &= rest - 1;
                                if self.holders[j * 64 + bit] & !s != 0 {
                                    keep |= 1 << bit;
                                }
                            }
                            kept[j] = keep;
                            summed |= keep != u;
                            step *= bits_size(p, j, u);
                            size *= bits_size(p, j, keep);
                        }
                        if summed {
                            step *= 2.0;
                        }
                        let total = t.flops[a] + t.flops[b] + step;
                        if total > cap {
                            capped = true;
                            continue;
                        }
                        if self.limit.is_some_and(|lim| size > lim) {
                            continue;
                        }
                        let largest = size.max(t.largest[a]).max(t.largest[b]);
                        // The part holding the lowest input is the left one.
                        let left = if ma.trailing_zeros() < mb.trailing_zeros() {
                            ma
                        } else {
                            mb
                        };
                        match t.index.get(&s) {
                            Some(&e) => {
                                let e = e as usize;
                                let better = total
                                    .total_cmp(&t.flops[e])
                                    .then(largest.total_cmp(&t.largest[e]))
                                    .is_lt();
                                if better {
                                    t.flops[e] = total;
                                    t.largest[e] = largest;
                                    t.left[e] = left;
                                }
                            }
                            None => {
                                let e = t.mask.len() as u32;
                                t.mask.push(s);
                                t.left.push(left);
                                t.flops.push(total);
                                t.largest.push(largest);
                                t.legs.extend_from_slice(&kept);
                                t.index.insert(s, e);
                                t.layers[m].push(e);
                            }
                        }
                    }
                }
            }
        }
        Ok((t, capped))
    }
}
