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

/// `refs` of a label that is always kept (output, or common to all inputs).
const KEEP: u32 = u32::MAX;

/// No live tensor holds the key.
const DEAD: usize = usize::MAX;

/// End of a `key_next` chain.
const NONE: u32 = u32::MAX;

/// A queued pair; ordered like opt_einsum's `(cost, id2, id1)` tuples, as
/// integers: `cost` as `total_order_bits` of the f64 cost, `ids` as
/// `id2 << 32 | id1`. Equal `(cost, id2, id1)` means the same two tensors,
/// so nothing else needs comparing.
struct Cand {
    cost: u64,
    ids: u64,
    k1: u32,
    k2: u32,
    /// Where the result's labels start in `Greedy::res_labels`, how many.
    res: u32,
    res_len: u32,
    res_size: f64,
}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.cost, self.ids).cmp(&(other.cost, other.ids))
    }
}

/// Maps an f64 to a u64 whose unsigned order is `f64::total_cmp`'s.
fn total_order_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
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

/// Fast path of opt_einsum's greedy. Its choices, and so its paths, are
/// those of the straightforward version kept in `tests/greedy_ref.rs`; what
/// differs is bookkeeping: label sets ("keys") live in one flat arena, a
/// candidate's cost is computed without materialising its labels, and a
/// result's labels are interned only when the pair is actually contracted
/// (most queued pairs never are).
struct Greedy<'a> {
    p: &'a Problem,
    /// Live keys holding each label, or `KEEP` for output-like labels: a
    /// label is kept by a pair iff a third (shared) or second (one-sided)
    /// key still holds it.
    refs: Vec<u32>,
    /// Sorted labels of every key, back to back; `key_at[k]..key_at[k + 1]`.
    key_labels: Vec<u32>,
    key_at: Vec<u32>,
    key_size: Vec<f64>,
    /// First key with a given hash of its labels; `key_next` chains the rest
    /// (no label set is ever copied into a map).
    key_index: HashMap<u64, u32, BuildHasherDefault<FxHasher>>,
    key_next: Vec<u32>,
    /// SSA id of the live tensor holding each key (opt_einsum's `remaining`),
    /// or `DEAD`.
    live: Vec<usize>,
    /// Live keys holding each non-output label (`dim_to_keys`): `dim_len[l]`
    /// keys from `dim_at[l]` in `dim_flat`. A label never has more holders
    /// than the inputs that hold it (a result replaces two tensors), so each
    /// label gets that many slots once.
    dim_flat: Vec<u32>,
    dim_at: Vec<u32>,
    dim_len: Vec<u32>,
    queue: BinaryHeap<Reverse<Cand>>,
    /// Result labels of queued pairs, back to back.
    res_labels: Vec<u32>,
    path: SsaPath,
    next_id: usize,
    stamp: Vec<u32>,
    stamp_gen: u32,
    k2s: Vec<u32>,
    scratch: Vec<u32>,
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
        let mut dim_at = Vec::with_capacity(n_labels);
        let mut slots = 0u32;
        for &c in &common {
            dim_at.push(slots);
            slots += c as u32;
        }
        let refs = (0..n_labels)
            .map(|l| {
                if p.in_output[l] || common[l] == n {
                    KEEP
                } else {
                    0
                }
            })
            .collect();
        let labels: usize = p.inputs.iter().map(Vec::len).sum();
        Greedy {
            p,
            refs,
            key_labels: Vec::with_capacity(2 * labels),
            key_at: vec![0],
            key_size: Vec::with_capacity(2 * n),
            key_index: HashMap::with_capacity_and_hasher(2 * n, Default::default()),
            key_next: Vec::with_capacity(2 * n),
            live: Vec::with_capacity(2 * n),
            dim_flat: vec![0; slots as usize],
            dim_at,
            dim_len: vec![0; n_labels],
            queue: BinaryHeap::with_capacity(2 * n),
            res_labels: Vec::with_capacity(2 * labels),
            path: Vec::with_capacity(n - 1),
            next_id: n,
            stamp: Vec::with_capacity(2 * n),
            stamp_gen: 0,
            k2s: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn labels(&self, k: u32) -> &[u32] {
        let k = k as usize;
        &self.key_labels[self.key_at[k] as usize..self.key_at[k + 1] as usize]
    }

    fn dim_keys(&self, l: usize) -> &[u32] {
        let at = self.dim_at[l] as usize;
        &self.dim_flat[at..at + self.dim_len[l] as usize]
    }

    /// The key of a sorted label set, created on first sight.
    fn intern(&mut self, labels: &[u32], size: f64) -> u32 {
        let mut h = FxHasher::default();
        for &l in labels {
            h.write_u64(l as u64);
        }
        let hash = h.finish();
        let k = self.key_size.len() as u32;
        let mut next = NONE;
        if let Some(&first) = self.key_index.get(&hash) {
            let mut at = first;
            while at != NONE {
                if self.labels(at) == labels {
                    return at;
                }
                at = self.key_next[at as usize];
            }
            next = first;
        }
        self.key_index.insert(hash, k);
        self.key_next.push(next);
        self.key_labels.extend_from_slice(labels);
        self.key_at.push(self.key_labels.len() as u32);
        self.key_size.push(size);
        self.live.push(DEAD);
        self.stamp.push(0);
        k
    }

    fn make_live(&mut self, k: u32, id: usize) {
        self.live[k as usize] = id;
        let (s, e) = (self.key_at[k as usize], self.key_at[k as usize + 1]);
        for i in s..e {
            let l = self.key_labels[i as usize] as usize;
            if self.refs[l] != KEEP {
                self.refs[l] += 1;
                self.dim_flat[(self.dim_at[l] + self.dim_len[l]) as usize] = k;
                self.dim_len[l] += 1;
            }
        }
    }

    fn kill(&mut self, k: u32) {
        self.live[k as usize] = DEAD;
        let (s, e) = (self.key_at[k as usize], self.key_at[k as usize + 1]);
        for i in s..e {
            let l = self.key_labels[i as usize] as usize;
            if self.refs[l] != KEEP {
                self.refs[l] -= 1;
                let (at, len) = (self.dim_at[l] as usize, self.dim_len[l] as usize);
                let keys = &mut self.dim_flat[at..at + len];
                if let Some(pos) = keys.iter().position(|&x| x == k) {
                    keys.swap(pos, len - 1);
                    self.dim_len[l] -= 1;
                }
            }
        }
    }

    /// Size of the result of `a` with `b` (opt_einsum's `_get_candidate`:
    /// it keeps output labels, shared labels still held by a third key and
    /// one-sided labels held elsewhere), multiplied in label order as the
    /// reference does so that costs agree to the last bit. With `out`, also
    /// collects the kept labels.
    #[inline]
    fn result(&self, a: &[u32], b: &[u32], mut out: Option<&mut Vec<u32>>) -> f64 {
        let (refs, sizes) = (&self.refs, &self.p.sizes);
        let mut size = 1.0;
        let mut keep = |l: u32, need: u32| {
            if refs[l as usize] >= need {
                size *= sizes[l as usize];
                if let Some(o) = out.as_deref_mut() {
                    o.push(l);
                }
            }
        };
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            match x.cmp(&y) {
                Ordering::Equal => {
                    keep(x, 3);
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    keep(x, 2);
                    i += 1;
                }
                Ordering::Greater => {
                    keep(y, 2);
                    j += 1;
                }
            }
        }
        for &x in &a[i..] {
            keep(x, 2);
        }
        for &y in &b[j..] {
            keep(y, 2);
        }
        size
    }

    /// Queues the best pair of `k1` with any of `k2s` (`_push_candidate`).
    fn push_best(&mut self, k1: u32, k2s: &[u32]) {
        let a = self.labels(k1);
        let id_a = self.live[k1 as usize] as u32;
        let size_a = self.key_size[k1 as usize];
        // (cost, id2, id1, k1, k2) of the best so far, compared as `Cand`s.
        let mut best: Option<(f64, u32, u32, u32, u32, f64)> = None;
        for &k2 in k2s {
            let size = self.result(a, self.labels(k2), None);
            let cost = size - size_a - self.key_size[k2 as usize];
            let id_b = self.live[k2 as usize] as u32;
            let (x1, x2, i1, i2) = if id_a > id_b {
                (k2, k1, id_b, id_a)
            } else {
                (k1, k2, id_a, id_b)
            };
            let better = best.is_none_or(|b| {
                cost.total_cmp(&b.0)
                    .then_with(|| (i2, i1, x1, x2).cmp(&(b.1, b.2, b.3, b.4)))
                    .is_lt()
            });
            if better {
                best = Some((cost, i2, i1, x1, x2, size));
            }
        }
        let Some((cost, id2, id1, x1, x2, res_size)) = best else {
            return;
        };
        let res = self.res_labels.len() as u32;
        let mut out = std::mem::take(&mut self.res_labels);
        self.result(self.labels(x1), self.labels(x2), Some(&mut out));
        let res_len = out.len() as u32 - res;
        self.res_labels = out;
        self.queue.push(Reverse(Cand {
            cost: total_order_bits(cost),
            ids: (id2 as u64) << 32 | id1 as u64,
            k1: x1,
            k2: x2,
            res,
            res_len,
            res_size,
        }));
    }

    /// Queues candidates along every contractible label, as opt_einsum does
    /// before its main loop. Returns whether anything was queued.
    fn push_all_dims(&mut self) -> bool {
        let mut pushed = false;
        let mut keys = std::mem::take(&mut self.scratch);
        for l in 0..self.dim_len.len() {
            keys.clear();
            keys.extend_from_slice(self.dim_keys(l));
            keys.sort_unstable_by_key(|&k| self.live[k as usize]);
            for i in 0..keys.len().saturating_sub(1) {
                self.push_best(keys[i], &keys[i + 1..]);
                pushed = true;
            }
        }
        self.scratch = keys;
        pushed
    }

    fn run(mut self) -> SsaPath {
        // Hadamard-deduplicate identical inputs, in input order.
        let mut term = Vec::new();
        for (ssa, t) in self.p.inputs.iter().enumerate() {
            term.clear();
            term.extend(t.iter().map(|&l| l as u32));
            term.sort_unstable();
            // In label order, like every key size, for bit-identical costs.
            let size = term.iter().map(|&l| self.p.sizes[l as usize]).product();
            let k = self.intern(&term, size);
            match self.live[k as usize] {
                DEAD => self.make_live(k, ssa),
                prev => {
                    self.path.push((prev, ssa));
                    self.live[k as usize] = self.next_id;
                    self.next_id += 1;
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
        let mut res = Vec::new();
        while let Some(Reverse(c)) = self.queue.pop() {
            let (s1, s2) = (self.live[c.k1 as usize], self.live[c.k2 as usize]);
            if s1 == DEAD || s2 == DEAD {
                continue; // obsolete
            }
            self.kill(c.k1);
            self.kill(c.k2);
            self.path.push((s1, s2));
            let new = self.next_id;
            self.next_id += 1;
            res.clear();
            res.extend_from_slice(&self.res_labels[c.res as usize..(c.res + c.res_len) as usize]);
            let k12 = self.intern(&res, c.res_size);
            match self.live[k12 as usize] {
                DEAD => self.make_live(k12, new),
                prev => {
                    // Same labels as a live tensor: multiply them right away.
                    self.path.push((prev, new));
                    self.live[k12 as usize] = self.next_id;
                    self.next_id += 1;
                }
            }
            self.stamp_gen += 1;
            let gen = self.stamp_gen;
            self.stamp[k12 as usize] = gen;
            let mut k2s = std::mem::take(&mut self.k2s);
            k2s.clear();
            let (s, e) = (self.key_at[k12 as usize], self.key_at[k12 as usize + 1]);
            for &l in &self.key_labels[s as usize..e as usize] {
                let at = self.dim_at[l as usize] as usize;
                for &k in &self.dim_flat[at..at + self.dim_len[l as usize] as usize] {
                    if self.stamp[k as usize] != gen {
                        self.stamp[k as usize] = gen;
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
        for (k, &ssa) in self.live.iter().enumerate() {
            if ssa != DEAD {
                let kept: Vec<usize> = self
                    .labels(k as u32)
                    .iter()
                    .map(|&l| l as usize)
                    .filter(|&l| self.refs[l] == KEEP)
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
        // `[u32]` hashes as its raw bytes: take them eight at a time.
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
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
