//! The greedy search as it stood before its speed-up, kept verbatim (test
//! only) so that the optimised one can be pinned to it path for path.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::super::Problem;

type SsaPath = Vec<(usize, usize)>;

/// The old `greedy(p, None)`.
pub(super) fn greedy_ref(p: &Problem) -> SsaPath {
    if p.inputs.len() < 2 {
        return Vec::new();
    }
    Greedy::new(p).run()
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

/// A random network that exercises what the greedy's bookkeeping handles:
/// hyperedges, size-1 labels, repeated operands (Hadamard merges), scalars,
/// labels common to all inputs, and outputs.
fn random_network(rng: &mut super::Rng) -> (Vec<Vec<u32>>, Vec<u32>, Vec<u64>) {
    let n = rng.range(2, 80) as usize;
    let n_labels = rng.range(1, 2 * n as u64 + 2) as usize;
    let big = rng.range(0, 1) == 1;
    let sizes: Vec<u64> = (0..n_labels)
        .map(|_| match rng.range(0, 9) {
            0 => 1,
            _ if big => rng.range(2, 1 << 12),
            _ => rng.range(2, 6),
        })
        .collect();
    let max_rank = rng.range(1, 6);
    let mut inputs: Vec<Vec<u32>> = Vec::with_capacity(n);
    for _ in 0..n {
        if !inputs.is_empty() && rng.range(0, 9) == 0 {
            let k = rng.range(0, inputs.len() as u64 - 1) as usize;
            inputs.push(inputs[k].clone());
            continue;
        }
        let rank = rng.range(0, max_rank.min(n_labels as u64)) as usize;
        let mut term: Vec<u32> = Vec::new();
        while term.len() < rank {
            let l = rng.range(0, n_labels as u64 - 1) as u32;
            if !term.contains(&l) {
                term.push(l);
            }
        }
        inputs.push(term);
    }
    if rng.range(0, 4) == 0 {
        let common = rng.range(0, n_labels as u64 - 1) as u32;
        for t in &mut inputs {
            if !t.contains(&common) {
                t.push(common);
            }
        }
    }
    let mut present: Vec<u32> = inputs.iter().flatten().copied().collect();
    present.sort_unstable();
    present.dedup();
    let output = present
        .into_iter()
        .filter(|_| rng.range(0, 5) == 0)
        .collect();
    (inputs, output, sizes)
}

#[test]
fn greedy_paths_equal_reference_implementation() {
    let mut rng = super::Rng::new(0x6EED);
    for case in 0..1500 {
        let (inputs, output, sizes) = random_network(&mut rng);
        let p = Problem::new(&inputs, &output, &sizes).unwrap();
        let fast = super::super::greedy::greedy(&p, None).unwrap();
        assert_eq!(
            fast,
            greedy_ref(&p),
            "case {case}: {inputs:?} -> {output:?} sizes {sizes:?}"
        );
    }
}
