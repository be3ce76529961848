//! opt_einsum's greedy path search, reproduced step for step.
//!
//! Without a memory limit this is `ssa_greedy_optimize` from opt_einsum 3.4
//! with its default `memory-removed` cost, so that its paths (not only their
//! costs) can be compared with opt_einsum's:
//!
//! 1. labels shared by *all* inputs are treated as output labels (they can
//!    only be summed by the very last step);
//! 2. inputs with identical label sets are merged eagerly (Hadamard products);
//! 3. pairs sharing a contractible label are taken greedily by
//!    `size(result) - size(a) - size(b)`, ties broken by SSA ids; for each
//!    tensor only its best partner is queued, and a queued pair is still taken
//!    later if both label sets are live, exactly as opt_einsum does (its
//!    queue is keyed by label sets, not by tensors);
//! 4. what is left is joined by outer products, smallest first.
//!
//! One deliberate difference: if the queue runs dry while two live tensors
//! still share a contractible label (opt_einsum would then pair them in the
//! outer-product phase), the queue is refilled instead.
//!
//! With a memory limit opt_einsum switches to `branch-1`; here the capped
//! variant likewise scans every pair at each step (connected pairs first) and
//! skips pairs whose result would exceed the limit.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::{OrderError, Problem};

type SsaPath = Vec<(usize, usize)>;

pub(crate) fn greedy(p: &Problem, limit: Option<f64>) -> Result<SsaPath, OrderError> {
    if p.inputs.len() < 2 {
        return Ok(Vec::new());
    }
    match limit {
        None => Ok(Greedy::new(p).run()),
        Some(limit) => capped(p, limit),
    }
}

/// A queued pair; ordered like opt_einsum's `(cost, id2, id1)` tuples.
struct Cand {
    cost: f64,
    id2: usize,
    id1: usize,
    k1: usize,
    k2: usize,
    k12: usize,
}

impl Cand {
    fn key(&self) -> (f64, usize, usize, usize, usize) {
        (self.cost, self.id2, self.id1, self.k1, self.k2)
    }
}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.key(), other.key());
        a.0.total_cmp(&b.0)
            .then_with(|| (a.1, a.2, a.3, a.4).cmp(&(b.1, b.2, b.3, b.4)))
    }
}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Cand {}

struct Greedy<'a> {
    p: &'a Problem,
    /// Output labels plus labels common to every input.
    out: Vec<bool>,
    /// Interned label sets ("keys", sorted dense labels) and their sizes.
    key_labels: Vec<Vec<usize>>,
    key_size: Vec<f64>,
    key_index: HashMap<Vec<usize>, usize, BuildHasherDefault<FxHasher>>,
    /// SSA id of the live tensor holding each key (opt_einsum's `remaining`).
    live: Vec<Option<usize>>,
    /// Live keys holding each non-output label (`dim_to_keys`).
    dim_keys: Vec<Vec<usize>>,
    queue: BinaryHeap<Reverse<Cand>>,
    path: SsaPath,
    next_id: usize,
    stamp: Vec<usize>,
    stamp_gen: usize,
    /// Scratch buffers reused across steps.
    cur: Vec<usize>,
    k2s: Vec<usize>,
}

impl<'a> Greedy<'a> {
    fn new(p: &'a Problem) -> Self {
        let n_labels = p.sizes.len();
        let mut common = vec![0usize; n_labels];
        for term in &p.inputs {
            for &l in term {
                common[l] += 1;
            }
        }
        let n = p.inputs.len();
        let out = (0..n_labels)
            .map(|l| p.in_output[l] || common[l] == n)
            .collect();
        Greedy {
            p,
            out,
            key_labels: Vec::new(),
            key_size: Vec::new(),
            key_index: HashMap::with_capacity_and_hasher(4 * n, Default::default()),
            live: Vec::new(),
            dim_keys: vec![Vec::new(); n_labels],
            queue: BinaryHeap::new(),
            path: Vec::new(),
            next_id: n,
            stamp: Vec::new(),
            stamp_gen: 0,
            cur: Vec::new(),
            k2s: Vec::new(),
        }
    }

    fn intern(&mut self, mut labels: Vec<usize>) -> usize {
        labels.sort_unstable();
        if let Some(&k) = self.key_index.get(&labels) {
            return k;
        }
        let k = self.key_labels.len();
        self.key_size.push(self.p.size_of(&labels));
        self.key_index.insert(labels.clone(), k);
        self.key_labels.push(labels);
        self.live.push(None);
        self.stamp.push(0);
        k
    }

    fn add_to_dims(&mut self, k: usize) {
        for &l in &self.key_labels[k] {
            if !self.out[l] {
                self.dim_keys[l].push(k);
            }
        }
    }

    fn remove_from_dims(&mut self, k: usize) {
        for &l in &self.key_labels[k] {
            if !self.out[l] {
                let keys = &mut self.dim_keys[l];
                if let Some(pos) = keys.iter().position(|&x| x == k) {
                    keys.swap_remove(pos);
                }
            }
        }
    }

    fn id(&self, k: usize) -> usize {
        self.live[k].unwrap_or(usize::MAX)
    }

    /// opt_einsum's `_get_candidate`: the result keeps output labels, shared
    /// labels still held by a third key, and one-sided labels held elsewhere.
    fn candidate(&self, k1: usize, k2: usize, k12: &mut Vec<usize>) -> Cand {
        let (a, b) = (&self.key_labels[k1], &self.key_labels[k2]);
        k12.clear();
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let (l, both) = match (a.get(i), b.get(j)) {
                (Some(&x), Some(&y)) if x == y => {
                    i += 1;
                    j += 1;
                    (x, true)
                }
                (Some(&x), Some(&y)) if x < y => {
                    i += 1;
                    (x, false)
                }
                (Some(&x), None) => {
                    i += 1;
                    (x, false)
                }
                (_, Some(&y)) => {
                    j += 1;
                    (y, false)
                }
                (None, None) => break,
            };
            let refs = self.dim_keys[l].len();
            if self.out[l] || refs >= if both { 3 } else { 2 } {
                k12.push(l);
            }
        }
        let cost = self.p.size_of(k12) - self.key_size[k1] - self.key_size[k2];
        let (mut k1, mut k2) = (k1, k2);
        let (mut id1, mut id2) = (self.id(k1), self.id(k2));
        if id1 > id2 {
            std::mem::swap(&mut k1, &mut k2);
            std::mem::swap(&mut id1, &mut id2);
        }
        Cand {
            cost,
            id2,
            id1,
            k1,
            k2,
            k12: usize::MAX,
        }
    }

    /// Queues the best pair of `k1` with any of `k2s` (`_push_candidate`).
    fn push_best(&mut self, k1: usize, k2s: &[usize]) {
        // Two buffers swapped on improvement: no allocation per candidate.
        let mut cur = std::mem::take(&mut self.cur);
        let mut best_labels = Vec::new();
        let mut best: Option<Cand> = None;
        for &k2 in k2s {
            let c = self.candidate(k1, k2, &mut cur);
            if best.as_ref().is_none_or(|b| c < *b) {
                best = Some(c);
                std::mem::swap(&mut cur, &mut best_labels);
            }
        }
        self.cur = cur;
        if let Some(mut cand) = best {
            cand.k12 = self.intern(best_labels);
            self.queue.push(Reverse(cand));
        }
    }

    /// Queues candidates along every contractible label, as opt_einsum does
    /// before its main loop. Returns whether anything was queued.
    fn push_all_dims(&mut self) -> bool {
        let mut pushed = false;
        for l in 0..self.dim_keys.len() {
            let mut keys = self.dim_keys[l].clone();
            keys.sort_unstable_by_key(|&k| self.id(k));
            for i in 0..keys.len().saturating_sub(1) {
                self.push_best(keys[i], &keys[i + 1..]);
                pushed = true;
            }
        }
        pushed
    }

    fn run(mut self) -> SsaPath {
        // Hadamard-deduplicate identical inputs, in input order.
        for (ssa, term) in self.p.inputs.iter().enumerate() {
            let k = self.intern(term.clone());
            match self.live[k] {
                Some(prev) => {
                    self.path.push((prev, ssa));
                    self.live[k] = Some(self.next_id);
                    self.next_id += 1;
                }
                None => {
                    self.live[k] = Some(ssa);
                    self.add_to_dims(k);
                }
            }
        }
        while self.push_all_dims() {
            self.contract_queue();
        }
        self.outer_products();
        self.path
    }

    fn contract_queue(&mut self) {
        while let Some(Reverse(c)) = self.queue.pop() {
            let (Some(s1), Some(s2)) = (self.live[c.k1], self.live[c.k2]) else {
                continue; // obsolete
            };
            self.live[c.k1] = None;
            self.live[c.k2] = None;
            self.remove_from_dims(c.k1);
            self.remove_from_dims(c.k2);
            self.path.push((s1, s2));
            let new = self.next_id;
            self.next_id += 1;
            let k12 = c.k12;
            match self.live[k12] {
                Some(prev) => {
                    // Same labels as a live tensor: multiply them right away.
                    self.path.push((prev, new));
                    self.live[k12] = Some(self.next_id);
                    self.next_id += 1;
                }
                None => {
                    self.live[k12] = Some(new);
                    self.add_to_dims(k12);
                }
            }
            self.stamp_gen += 1;
            self.stamp[k12] = self.stamp_gen;
            let mut k2s = std::mem::take(&mut self.k2s);
            k2s.clear();
            for &l in &self.key_labels[k12] {
                for &k in &self.dim_keys[l] {
                    if self.stamp[k] != self.stamp_gen {
                        self.stamp[k] = self.stamp_gen;
                        k2s.push(k);
                    }
                }
            }
            if !k2s.is_empty() {
                self.push_best(k12, &k2s);
            }
            self.k2s = k2s;
        }
    }

    /// Joins the remaining tensors pairwise, smallest (output part) first.
    fn outer_products(&mut self) {
        let mut queue: BinaryHeap<Reverse<(OrdF64, usize, Vec<usize>)>> = BinaryHeap::new();
        for (k, ssa) in self.live.iter().enumerate() {
            if let Some(ssa) = *ssa {
                let kept: Vec<usize> = self.key_labels[k]
                    .iter()
                    .copied()
                    .filter(|&l| self.out[l])
                    .collect();
                queue.push(Reverse((OrdF64(self.p.size_of(&kept)), ssa, kept)));
            }
        }
        let Some(Reverse((_, mut id1, mut k1))) = queue.pop() else {
            return;
        };
        while let Some(Reverse((_, id2, k2))) = queue.pop() {
            self.path.push((id1.min(id2), id1.max(id2)));
            let k12 = union_sorted(&k1, &k2);
            let size = self.p.size_of(&k12);
            let id12 = self.next_id;
            self.next_id += 1;
            queue.push(Reverse((OrdF64(size), id12, k12)));
            let Some(Reverse((_, i, k))) = queue.pop() else {
                return;
            };
            id1 = i;
            k1 = k;
        }
    }
}

/// The Fx hash (as in rustc): label sets are short runs of small integers,
/// for which SipHash's DoS resistance only costs time.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Union of two sorted label lists, sorted.
fn union_sorted(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// `f64` with a total order, for heaps.
#[derive(Clone, Copy, Debug)]
struct OrdF64(f64);
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for OrdF64 {}

/// Greedy under a memory cap: at each step, the pair with the smallest
/// `size(result) - size(a) - size(b)` among pairs whose result fits, trying
/// pairs that share a label before outer products.
fn capped(p: &Problem, limit: f64) -> Result<SsaPath, OrderError> {
    let n = p.inputs.len();
    let mut tensors: Vec<Vec<usize>> = p.inputs.clone();
    let mut sizes: Vec<f64> = tensors.iter().map(|t| p.size_of(t)).collect();
    let mut holders: Vec<Vec<usize>> = vec![Vec::new(); p.sizes.len()];
    for (id, t) in tensors.iter().enumerate() {
        for &l in t {
            holders[l].push(id);
        }
    }
    let mut live: Vec<usize> = (0..n).collect();
    let mut path = Vec::with_capacity(n - 1);
    let mut stamp: Vec<usize> = vec![0; 2 * n];
    let mut stamp_gen = 0;
    let mut in_pair = vec![0u8; p.sizes.len()];
    let mut largest = 0.0f64;
    while live.len() > 1 {
        // Best feasible pair: (heuristic cost, flops, largest so far, a, b).
        let mut best: Option<(f64, f64, f64, usize, usize, Vec<usize>)> = None;
        let consider = |a: usize, b: usize, best: &mut Option<_>, in_pair: &mut Vec<u8>| {
            let (ta, tb) = (&tensors[a], &tensors[b]);
            for &l in ta.iter().chain(tb) {
                in_pair[l] += 1;
            }
            let mut union = Vec::with_capacity(ta.len() + tb.len());
            union.extend(ta.iter().copied());
            union.extend(tb.iter().copied().filter(|&l| in_pair[l] == 1));
            let result: Vec<usize> = union
                .iter()
                .copied()
                .filter(|&l| p.in_output[l] || holders[l].len() > in_pair[l] as usize)
                .collect();
            for &l in ta.iter().chain(tb) {
                in_pair[l] = 0;
            }
            let size = p.size_of(&result);
            if size > limit {
                return;
            }
            let full = p.size_of(&union);
            let flops = if result.len() < union.len() {
                2.0 * full
            } else {
                full
            };
            let key = (size - sizes[a] - sizes[b], flops, largest.max(size), a, b);
            let better = match best {
                None => true,
                Some((c, f, m, x, y, _)) => {
                    let ord = key.0.total_cmp(c).then(key.1.total_cmp(f));
                    ord.then(key.2.total_cmp(m)).then((a, b).cmp(&(*x, *y))) == Ordering::Less
                }
            };
            if better {
                *best = Some((key.0, key.1, key.2, a, b, result));
            }
        };
        for &a in &live {
            stamp_gen += 1;
            for &l in &tensors[a] {
                for &b in &holders[l] {
                    if b > a && stamp[b] != stamp_gen {
                        stamp[b] = stamp_gen;
                        consider(a, b, &mut best, &mut in_pair);
                    }
                }
            }
        }
        if best.is_none() {
            for (i, &a) in live.iter().enumerate() {
                for &b in &live[i + 1..] {
                    consider(a, b, &mut best, &mut in_pair);
                }
            }
        }
        let Some((_, _, _, a, b, result)) = best else {
            return Err(OrderError::MemoryLimitImpossible {
                limit,
                needed: None,
            });
        };
        let id = tensors.len();
        for t in [a, b] {
            for &l in &tensors[t] {
                holders[l].retain(|&x| x != t);
            }
        }
        for &l in &result {
            holders[l].push(id);
        }
        let size = p.size_of(&result);
        largest = largest.max(size);
        live.retain(|&x| x != a && x != b);
        live.push(id);
        tensors.push(result);
        sizes.push(size);
        path.push((a, b));
    }
    Ok(path)
}
