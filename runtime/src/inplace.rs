//! Pairwise contractions computed in the buffer of the operand they consume.
//!
//! Why: a step normally holds its operands and its result at once, so a chain of steps
//! whose intermediates are all about the largest size (an MPS sweep, a lattice's
//! boundary absorbing one site after another) peaks at about twice the largest
//! intermediate. When the consumed operand `A` and the result `C` share their leading
//! labels `P` and their trailing labels `Q`, none of which the other operand `B` has,
//! then `C[p, ·, q]` depends on `A[p, ·, q]` alone. The step then runs block by block:
//! each block of `C` is computed from its block of `A` into a small scratch and copied
//! over `A`'s storage, which already served.
//!
//! Why the copies never clobber an unread element, with `Y` and `X` the elements of one
//! `(p, q)` block of `A` and of `C` (both are standard layout, so an element `(p, y, q)`
//! of `A` sits at `(p·Y + y)·|Q| + q` and an element `(p, x, q)` of `C` at
//! `(p·X + x)·|Q| + q`):
//! - a write for `q` lands on the same residue modulo `|Q|`, so only on `A`'s elements of
//!   that same `q`;
//! - when `X ≤ Y` the blocks of `p` run upwards: the writes for `p < p1` end below
//!   `p1·X ≤ p1·Y`, where the unread rows `p ≥ p1` start;
//! - when `X > Y` they run downwards in a buffer grown to `|C|` first: the writes for
//!   `p ≥ p0` start at `p0·X ≥ p0·Y`, above the unread rows `p < p0`, which end at `p0·Y`.
//!
//! A block (a range of `p` and a range of `q`) is read whole before it is written. A
//! result of at most 64 KiB is one block: computed whole, then copied.
//!
//! Which steps run this way is decided per plan ([`choose`]): only those whose normal
//! run would hold more computed values than the plan's largest intermediate plus its
//! outputs (which the run holds at its end anyway). The others keep their full-size
//! kernels, which are faster than many block-sized calls. The planner lays out the
//! intermediates of such steps so that they share their ends with the result
//! (`plan.rs`, `relayout`).

use crate::kernels::{self, Scalar};
use crate::semiring;
use crate::value::{dtype_size, TensorData, TensorView};
use einc_compiler::ir::{labels as ir_labels, IndexId};
use einc_compiler::plan::{Op, Plan};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, ShapeBuilder};

/// Largest scratch block, in bytes: a block's result is computed here before it is
/// copied into place. Like a GEMM's packing buffers, it is kernel workspace; a step
/// also keeps it to at most a quarter of its result, so that the saving is real.
const BLOCK_BYTES: usize = 1 << 20;

/// A result of at most this many bytes is computed whole into the scratch, then copied
/// over the consumed operand: one kernel call, where blocks of a few KiB would each
/// pay a call's fixed cost (blocks of 256 elements made a 20-site MPS chain with bond
/// 32 run 3x slower). The scratch stays kernel workspace of at most 64 KiB.
const WHOLE_BYTES: usize = 64 << 10;

/// How step `k` runs in place: which operand it consumes (0 left, 1 right), how many
/// leading (`np`) and trailing (`nq`) labels that operand shares with the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InPlace {
    pub operand: usize,
    pub np: usize,
    pub nq: usize,
}

/// The in-place steps of a plan, and for each value the capacity (elements) its buffer
/// needs because later in-place steps grow it: its producer allocates that much, and an
/// in-place step that shrinks its buffer gives back the rest. 0: just its elements.
#[derive(Clone, Debug, Default)]
pub(crate) struct Choice {
    pub steps: Vec<Option<InPlace>>,
    pub capacity: Vec<usize>,
    /// Whether a fresh result's room goes back to the system until its chain grows into
    /// it ([`fit`]). Only where that brings the run within its bound: the chain then
    /// faults those pages in again one at a time (on the paths suite's 5x5 lattice with
    /// bond 8, 0.43 ms of 2.66 for its 1 MiB boundary).
    pub release: bool,
}

/// `EINC_NO_IN_PLACE=1` turns in-place steps off in every run (for A/B timings of one
/// binary; `ExecOptions::in_place` does it per run).
pub(crate) fn disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("EINC_NO_IN_PLACE").is_some_and(|v| v != "0"))
}

/// The shared leading and trailing labels of `a` and `c` that `b` lacks, when they
/// split the step into at least two blocks; `None` otherwise (or when a label repeats).
pub(crate) fn split(
    a: &[u32],
    b: &[u32],
    c: &[u32],
    len: impl Fn(u32) -> usize,
) -> Option<(usize, usize)> {
    let distinct = |x: &[u32]| x.iter().enumerate().all(|(i, l)| !x[..i].contains(l));
    if !distinct(a) || !distinct(c) {
        return None;
    }
    let ok = |l: u32| !b.contains(&l);
    let np = a
        .iter()
        .zip(c)
        .take_while(|(x, y)| x == y && ok(**x))
        .count();
    let room = a.len().min(c.len()) - np;
    let nq = a
        .iter()
        .rev()
        .zip(c.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y && ok(**x))
        .count();
    let blocks: usize = a[..np]
        .iter()
        .chain(&a[a.len() - nq..])
        .map(|&l| len(l))
        .product();
    (blocks >= 2).then_some((np, nq))
}

/// Picks the steps to run in place: walking the plan in order with the bytes of the
/// computed values alive, a contraction whose result would bring them above the
/// plan's largest intermediate plus its outputs consumes, in place, an operand that
/// dies there (the larger one, when both could). Its buffer then holds the larger of
/// the two sizes. The choice is dropped when, all told, it would not lower the peak.
pub(crate) fn choose(plan: &Plan, last_use: &[usize]) -> Choice {
    let p = &plan.program;
    let n = plan.steps.len();
    let products = plan
        .steps
        .iter()
        .filter(|s| matches!(s.op, Op::Contract { .. }))
        .count();
    if products < 2 {
        // One product reads only inputs: nothing to consume.
        return Choice::default();
    }
    let elements = |k: usize| -> usize {
        plan.steps[k]
            .indices
            .iter()
            .map(|&i| p.size(i) as usize)
            .product()
    };
    let owned = |k: usize| {
        !matches!(
            plan.steps[k].op,
            Op::Load { .. } | Op::Store { .. } | Op::Const(_) | Op::Arg(_)
        )
    };
    let bytes = |k: usize| {
        if owned(k) {
            elements(k) * dtype_size(plan.steps[k].dtype)
        } else {
            0
        }
    };
    // The acceptance bound of a run: its largest value, plus the outputs, which the
    // run holds at its end anyway.
    let outputs: usize = plan
        .steps
        .iter()
        .filter_map(|s| match s.op {
            Op::Store { tensor, arg } if p.outputs.contains(&tensor) => Some(bytes(arg.0 as usize)),
            _ => None,
        })
        .sum();
    let bound = (0..n).map(bytes).max().unwrap_or(0) + outputs;
    let mut choice = Choice {
        steps: vec![None; n],
        capacity: vec![0; n],
        release: false,
    };
    // The operand step `k` (reading `l` and `r`) can consume in place, and how: one that
    // dies there, is computed, and shares its ends with the result (the larger of two).
    let in_place_operand = |k: usize, l: usize, r: usize| -> Option<(usize, InPlace)> {
        let s = &plan.steps[k];
        let label_len = |x: u32| p.size(IndexId(x)) as usize;
        let mut best: Option<(usize, usize, InPlace)> = None;
        for (operand, a, b) in [(0, l, r), (1, r, l)] {
            let fits = last_use[a] == k
                && owned(a)
                && !matches!(plan.steps[a].op, Op::SliceSum { .. })
                && plan.steps[a].dtype == s.dtype;
            if !fits {
                continue;
            }
            let (al, bl) = (
                ir_labels(&plan.steps[a].indices),
                ir_labels(&plan.steps[b].indices),
            );
            let Some((np, nq)) = split(al, bl, ir_labels(&s.indices), label_len) else {
                continue;
            };
            if best.is_none_or(|(_, bb, _)| bytes(a) > bb) {
                best = Some((a, bytes(a), InPlace { operand, np, nq }));
            }
        }
        best.map(|(a, _, how)| (a, how))
    };
    // Buffer capacity (elements) of each live value, as far as known going forwards.
    let mut cap = vec![0usize; n];
    let mut live = vec![0usize; n];
    for (k, s) in plan.steps.iter().enumerate() {
        cap[k] = elements(k);
        let before: usize = live.iter().sum();
        let mut taken = None;
        if let Op::Contract { lhs, rhs } = s.op {
            let (l, r) = (lhs.0 as usize, rhs.0 as usize);
            if l != r && before + bytes(k) > bound {
                if let Some((a, how)) = in_place_operand(k, l, r) {
                    choice.steps[k] = Some(how);
                    taken = Some(a);
                    cap[k] = cap[a].max(elements(k));
                }
            }
        }
        if let Some(a) = taken {
            live[a] = 0;
            live[k] = cap[k] * dtype_size(s.dtype);
        } else {
            live[k] = bytes(k);
        }
        if last_use[k] == usize::MAX {
            live[k] = 0;
        }
        for a in s.op.arg_iter() {
            if last_use[a.0 as usize] == k {
                live[a.0 as usize] = 0;
            }
        }
    }
    // Backwards: a buffer needs room for every later step of its in-place chain. A step
    // that writes such a buffer fresh holds the room beside its operands; where that
    // alone passes the bound (and the room is too small to give back), it runs in place
    // too, so that the chain starts (and takes its room) where its operands are inputs
    // or small (a lattice's sweep grows its boundary from one site to 2^(width+1)
    // elements, every step in place).
    for k in (0..n).rev() {
        if choice.steps[k].is_none() && choice.capacity[k] > elements(k) {
            if let Op::Contract { lhs, rhs } = plan.steps[k].op {
                let (l, r) = (lhs.0 as usize, rhs.0 as usize);
                let room = choice.capacity[k] * dtype_size(plan.steps[k].dtype);
                // Room that can go back to the system until written costs nothing there
                // (`fit`); the chain may start fresh.
                let costs = kernels::room_costs(room - bytes(k));
                if l != r && costs && bytes(l) + bytes(r) + room > bound {
                    choice.steps[k] = in_place_operand(k, l, r).map(|(_, how)| how);
                }
            }
        }
        let Some(how) = choice.steps[k] else {
            continue;
        };
        let Op::Contract { lhs, rhs } = plan.steps[k].op else {
            continue;
        };
        let a = if how.operand == 0 { lhs } else { rhs }.0 as usize;
        let need = choice.capacity[k].max(elements(k));
        if need > elements(a) {
            choice.capacity[a] = choice.capacity[a].max(need);
        }
    }
    // Room asked of a producer that is not itself in place is held at its step next to
    // that step's operands; growing a buffer without room instead reallocates it, which
    // may hold both sizes for a moment. Keep whichever holds less, if it holds less than
    // running every step out of place.
    let mut no_room = choice.clone();
    for (k, c) in no_room.capacity.iter_mut().enumerate() {
        if choice.steps[k].is_none() {
            *c = 0;
        }
    }
    let none = peak(plan, last_use, &Choice::default(), &bytes);
    let with_room = peak(plan, last_use, &choice, &bytes);
    let without = peak(plan, last_use, &no_room, &bytes);
    // Giving room back is simulated only for a run that misses its bound otherwise.
    let released = (with_room.min(without) > bound)
        .then(|| Choice {
            release: true,
            ..choice.clone()
        })
        .filter(|r| peak(plan, last_use, r, &bytes) <= bound);
    if let Some(released) = released {
        released
    } else if with_room.min(without) >= none {
        Choice::default()
    } else if with_room <= without {
        choice
    } else {
        no_room
    }
}

/// The most bytes of computed values a run holds with `choice` (as the executor counts
/// them: a step's result with every value alive, buffers by their capacity where spare
/// capacity cannot be given back to the system).
fn peak(plan: &Plan, last_use: &[usize], choice: &Choice, bytes: &dyn Fn(usize) -> usize) -> usize {
    let n = plan.steps.len();
    // Bytes each live value's buffer costs.
    let mut live = vec![0usize; n];
    let mut most = 0;
    // Capacity of each value's buffer, in bytes.
    let mut room = vec![0usize; n];
    for (k, s) in plan.steps.iter().enumerate() {
        let size = dtype_size(s.dtype);
        room[k] = bytes(k).max(choice.capacity.get(k).copied().unwrap_or(0) * size);
        // Spare capacity costs memory unless it is a fresh result's room given back
        // (`fit`).
        let fresh = choice.steps.get(k).copied().flatten().is_none();
        let own = if choice.release && fresh && !kernels::room_costs(room[k] - bytes(k)) {
            bytes(k)
        } else {
            room[k]
        };
        let total: usize = live.iter().sum();
        let during = match (choice.steps.get(k).copied().flatten(), &s.op) {
            (Some(how), Op::Contract { lhs, rhs }) => {
                let a = if how.operand == 0 { lhs } else { rhs }.0 as usize;
                let have = live[a];
                live[a] = 0;
                if bytes(k) > room[a] {
                    // A buffer without room grows by reallocation, which may copy.
                    total + bytes(k)
                } else {
                    total - have + have.max(own)
                }
            }
            _ => total + own,
        };
        live[k] = own;
        most = most.max(during).max(live.iter().sum::<usize>());
        if last_use[k] == usize::MAX {
            live[k] = 0;
        }
        for a in s.op.arg_iter() {
            if last_use[a.0 as usize] == k {
                live[a.0 as usize] = 0;
            }
        }
    }
    most
}

/// Computes the contraction of `a` (consumed) with `b` into `a`'s buffer, as described
/// in the module doc. `a_first`: `a` is the step's left operand. Returns the result and
/// what the run held, or gives `a` back when it is not a plain standard-layout array.
#[allow(clippy::too_many_arguments)]
pub(crate) fn contract(
    semi: Option<kernels::ReduceOp>,
    a: TensorData,
    a_first: bool,
    al: &[u32],
    b: TensorView<'_>,
    bl: &[u32],
    cl: &[u32],
    c_shape: &[usize],
    (np, nq): (usize, usize),
) -> Result<(TensorData, Blocks), TensorData> {
    let dtype = a.dtype();
    let cast = (b.dtype() != dtype).then(|| b.cast(dtype));
    let b = cast.as_ref().map_or_else(|| b.reborrow(), |c| c.view());
    macro_rules! go {
        ($v:ident) => {
            match (a, b) {
                (TensorData::$v(a), TensorView::$v(b)) => {
                    blocks(semi, a, a_first, al, b, bl, cl, c_shape, np, nq)
                        .map(|(c, w)| (TensorData::$v(c), w))
                        .map_err(TensorData::$v)
                }
                (a, _) => Err(a),
            }
        };
    }
    match dtype {
        einc_frontend::ein::ast::DType::F32 => go!(F32),
        einc_frontend::ein::ast::DType::F64 => go!(F64),
        einc_frontend::ein::ast::DType::C64 => go!(C64),
        einc_frontend::ein::ast::DType::C128 => go!(C128),
    }
}

/// Memory an in-place step held besides its result's elements, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Blocks {
    /// The largest scratch block.
    pub workspace: usize,
    /// The operand's bytes when its buffer had to grow (a reallocation, which may copy).
    pub grown_from: usize,
}

/// A standard-layout array of `shape` whose elements start at `off` in `v` (how
/// `into_raw_vec_and_offset` left them).
fn rebuild<T: Scalar>(v: Vec<T>, off: Option<usize>, shape: &[usize]) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let off = off.unwrap_or(0);
    let all = ndarray::Array1::from_vec(v);
    all.slice_move(ndarray::s![off..off + n])
        .into_shape_with_order(IxDyn(shape))
        .unwrap_or_else(|_| unreachable!("a contiguous run of the shape's elements"))
}

/// `t` with its buffer's capacity beyond `keep` elements (and beyond its own) given
/// back, and the bytes of memory that the capacity it keeps beyond its elements still
/// costs. Shrinking a block in place, the allocator does not copy it; `usize::MAX`
/// keeps it all.
///
/// `give_back`: the kept room's whole pages go back to the system until a step writes
/// them ([`kernels::release`]). Callers ask it for a fresh result's room (nothing was
/// ever written there) in a run that gives room back ([`Choice`]). The room of a buffer
/// that a chain shrank is kept as it is and counts: that chain grows into it again, and
/// pages given back would fault in again one at a time (on the paths suite's periodic
/// MPS, whose chain grows and shrinks at every site, that made the run 1.16x slower).
pub(crate) fn fit(t: TensorData, keep: usize, give_back: bool) -> (TensorData, usize) {
    fn go<T: Scalar>(a: ArrayD<T>, keep: usize, give_back: bool) -> (ArrayD<T>, usize) {
        if !a.is_standard_layout() {
            return (a, 0);
        }
        let shape = a.shape().to_vec();
        let (mut v, off) = a.into_raw_vec_and_offset();
        if v.capacity() > v.len().max(keep) {
            v.shrink_to(keep);
        }
        let size = std::mem::size_of::<T>();
        let room = (v.capacity() - v.len()) * size;
        let given = if give_back {
            kernels::release(v.spare_capacity_mut().as_mut_ptr().cast(), room)
        } else {
            0
        };
        (rebuild(v, off, &shape), room - given)
    }
    macro_rules! each {
        ($($v:ident),*) => {
            match t {
                $(TensorData::$v(a) => {
                    let (a, x) = go(a, keep, give_back);
                    (TensorData::$v(a), x)
                })*
            }
        };
    }
    each!(F32, F64, C64, C128)
}

/// Standard strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn blocks<T: Scalar>(
    semi: Option<kernels::ReduceOp>,
    a: ArrayD<T>,
    a_first: bool,
    al: &[u32],
    b: ArrayViewD<'_, T>,
    bl: &[u32],
    cl: &[u32],
    c_shape: &[usize],
    np: usize,
    nq: usize,
) -> Result<(ArrayD<T>, Blocks), ArrayD<T>> {
    let (na, nc) = (al.len(), cl.len());
    if !a.is_standard_layout() || a.ndim() != na || c_shape.len() != nc || np + nq > na.min(nc) {
        return Err(a);
    }
    let a_shape = a.shape().to_vec();
    let (a_mid, c_mid) = (&a_shape[np..na - nq], &c_shape[np..nc - nq]);
    let pn: usize = a_shape[..np].iter().product();
    let qn: usize = a_shape[na - nq..].iter().product();
    let (y, x): (usize, usize) = (a_mid.iter().product(), c_mid.iter().product());
    let total = pn * x * qn;
    let (mut v, offset) = a.into_raw_vec_and_offset();
    if offset.unwrap_or(0) != 0 || v.len() != pn * y * qn {
        return Err(rebuild(v, offset, &a_shape));
    }
    // Two labels for the flattened P and Q axes, distinct from every real one.
    let fresh = al.iter().chain(bl).chain(cl).max().map_or(0, |m| m + 1);
    let (pl, ql) = (fresh, fresh + 1);
    let with_pq = |mid: &[u32]| -> Vec<u32> {
        let mut l = vec![pl];
        l.extend_from_slice(mid);
        l.push(ql);
        l
    };
    let (al_b, cl_b) = (with_pq(&al[np..na - nq]), with_pq(&cl[np..nc - nq]));

    // Block: `rp` values of p by `rq` values of q, its result at most BLOCK_BYTES and a
    // quarter of the whole (one (p, q) pair at least), or the whole of a small result.
    let size = std::mem::size_of::<T>();
    let target = if total * size <= WHOLE_BYTES {
        total.max(1)
    } else {
        (BLOCK_BYTES / size).min(total.div_ceil(4)).max(1)
    };
    let (rp, rq) = if x * qn <= target {
        ((target / (x * qn).max(1)).clamp(1, pn), qn)
    } else {
        (1, (target / x.max(1)).clamp(1, qn))
    };
    let mut held = Blocks::default();
    if total > v.capacity() {
        held.grown_from = v.len() * size;
    }
    if total > v.len() {
        v.reserve_exact(total - v.len());
    }
    let base = v.as_mut_ptr();
    let mut p_starts: Vec<usize> = (0..pn).step_by(rp).collect();
    if x > y {
        p_starts.reverse();
    }
    for p0 in p_starts {
        let p1 = (p0 + rp).min(pn);
        for q0 in (0..qn).step_by(rq) {
            let q1 = (q0 + rq).min(qn);
            let block = |mid: &[usize], row: usize| -> (Vec<usize>, Vec<usize>, usize) {
                let mut dims = vec![p1 - p0];
                dims.extend_from_slice(mid);
                dims.push(q1 - q0);
                let mut full = vec![pn];
                full.extend_from_slice(mid);
                full.push(qn);
                (dims, strides(&full), p0 * row * qn + q0)
            };
            let c_block = {
                let (dims, st, off) = block(a_mid, y);
                // SAFETY: the view addresses elements of the block (p0..p1, all of the
                // middle, q0..q1) of `a` in its standard layout, all inside the `v.len()`
                // initialised elements of the buffer, none written yet (module doc); no
                // mutable access to the buffer exists while it lives.
                let av = unsafe {
                    ArrayViewD::from_shape_ptr(IxDyn(&dims).strides(IxDyn(&st)), base.add(off))
                };
                let (l, lv, r, rv) = if a_first {
                    (&al_b[..], av, bl, b.view())
                } else {
                    (bl, b.view(), &al_b[..], av)
                };
                match semi {
                    None => kernels::contract_pair(lv, l, rv, r, &cl_b),
                    Some(op) => semiring::contract(op, lv, l, rv, r, &cl_b),
                }
            };
            held.workspace = held.workspace.max(c_block.len() * size);
            let (dims, st, off) = block(c_mid, x);
            // SAFETY: the view addresses the block's elements of `c` in its standard layout,
            // within the capacity `total` reserved above; the elements of `a` there were
            // all read (module doc), and no other view of the buffer is alive.
            let mut cv = unsafe {
                ArrayViewMutD::from_shape_ptr(IxDyn(&dims).strides(IxDyn(&st)), base.add(off))
            };
            cv.assign(&c_block);
        }
    }
    if total > v.len() {
        // SAFETY: the blocks wrote every one of the `total` elements of `c` (they tile
        // p × middle × q), within the reserved capacity; `T` is `Copy`.
        unsafe { v.set_len(total) };
    } else {
        v.truncate(total);
    }
    let c = ArrayD::from_shape_vec(IxDyn(c_shape), v)
        .unwrap_or_else(|_| unreachable!("the buffer holds the result's elements"));
    Ok((c, held))
}

#[cfg(test)]
mod tests;
