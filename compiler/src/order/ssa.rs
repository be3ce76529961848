//! Conversions between opt_einsum's linear path format and SSA ids.
//!
//! In SSA form input `k` has id `k` and the result of step `s` has id
//! `n_inputs + s`; ids are never reused, which makes paths easy to reason
//! about. The linear operand list is always sorted by SSA id (inputs first,
//! results appended in creation order), so a linear position is the number of
//! live ids below an id. A Fenwick tree over live ids gives both directions in
//! `O(log n)` per step instead of opt_einsum's `O(n)` list shuffling, which
//! matters for paths with thousands of steps.

use super::{OrderError, Path};

/// Counts live ids; supports "how many live ids are below `id`" and "which id
/// is the `k`-th live one".
struct Live {
    tree: Vec<usize>,
}

impl Live {
    fn new(capacity: usize, live: usize) -> Self {
        // The Fenwick tree of `live` ones, built in linear time.
        let mut tree = vec![0; capacity + 1];
        for i in 1..tree.len() {
            tree[i] += usize::from(i <= live);
            let parent = i + (i & i.wrapping_neg());
            if parent < tree.len() {
                tree[parent] += tree[i];
            }
        }
        Live { tree }
    }

    fn add(&mut self, id: usize, delta: isize) {
        let mut i = id + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Number of live ids strictly below `id`.
    fn rank(&self, id: usize) -> usize {
        let mut i = id;
        let mut total = 0;
        while i > 0 {
            total += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        total
    }

    /// The live id at position `k` (0-based); the caller checks `k` is in range.
    fn select(&self, k: usize) -> usize {
        let mut pos = 0;
        let mut rest = k + 1;
        let mut step = (self.tree.len() - 1).next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] < rest {
                pos = next;
                rest -= self.tree[next];
            }
            step >>= 1;
        }
        pos // 1-based index `pos + 1`, i.e. id `pos`
    }
}

/// Converts a linear path into SSA pairs `(a, b)` with `a < b`.
///
/// The path may be partial. Fails on a pair that is not `i < j < len`, where
/// `len` is the current number of operands.
pub fn linear_to_ssa(n_inputs: usize, path: &Path) -> Result<Vec<(usize, usize)>, OrderError> {
    let mut live = Live::new(n_inputs + path.pairs.len(), n_inputs);
    let mut len = n_inputs;
    let mut out = Vec::with_capacity(path.pairs.len());
    for (step, &(i, j)) in path.pairs.iter().enumerate() {
        if i >= j || j >= len {
            return Err(OrderError::BadPath {
                step,
                reason: format!("pair ({i}, {j}) is not i < j < {len}"),
            });
        }
        let a = live.select(i);
        let b = live.select(j);
        live.add(a, -1);
        live.add(b, -1);
        live.add(n_inputs + step, 1);
        len -= 1;
        out.push((a, b));
    }
    Ok(out)
}

/// Converts SSA pairs into a linear path; each linear pair is sorted.
///
/// Fails when a pair names an id that does not exist yet, was already
/// consumed, or names the same id twice.
pub fn ssa_to_linear(n_inputs: usize, ssa: &[(usize, usize)]) -> Result<Path, OrderError> {
    let capacity = n_inputs + ssa.len();
    let mut live = Live::new(capacity, n_inputs);
    let mut alive = vec![false; capacity];
    alive[..n_inputs].fill(true);
    let mut pairs = Vec::with_capacity(ssa.len());
    for (step, &(a, b)) in ssa.iter().enumerate() {
        let next = n_inputs + step;
        for id in [a, b] {
            if id >= next || !alive[id] {
                return Err(OrderError::BadPath {
                    step,
                    reason: format!("SSA id {id} is not a live operand"),
                });
            }
        }
        if a == b {
            return Err(OrderError::BadPath {
                step,
                reason: format!("SSA id {a} is used twice"),
            });
        }
        let (i, j) = (live.rank(a), live.rank(b));
        pairs.push((i.min(j), i.max(j)));
        alive[a] = false;
        alive[b] = false;
        alive[next] = true;
        live.add(a, -1);
        live.add(b, -1);
        live.add(next, 1);
    }
    Ok(Path { pairs })
}
