//! One pass over the result of a fused elementwise chain.
//!
//! The result is written row by row (its last axis); each row is cut into blocks of
//! [`BLOCK`] elements and the chain's nodes are evaluated block by block, so intermediate
//! values live in small per-thread buffers instead of whole arrays, and each operation
//! still runs as a tight loop over a block.

use crate::kernels::{elementwise::sigmoid, simd, MapOp, Scalar};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

const BLOCK: usize = 256;
/// Below this many result elements the pass stays on the calling thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// A node of the chain: an argument, or an operation on earlier nodes.
#[derive(Clone, Debug)]
pub enum Node {
    Arg(usize),
    Apply(MapOp, Vec<usize>),
}

/// Evaluates `nodes` (last = result) over `args` (one label per axis; repeated labels read
/// a diagonal; axes of length 1 broadcast) into an array of `out_idx` order.
///
/// # Panics
/// If an output label is in no argument, a label count differs from an argument's rank,
/// or a node reads a later node or a missing argument.
pub fn eval<T: Scalar>(
    nodes: &[Node],
    args: &[ArrayViewD<'_, T>],
    arg_idx: &[&[u32]],
    out_idx: &[u32],
) -> ArrayD<T> {
    let (out, _, _) = pass(nodes, args, arg_idx, out_idx, Mode::Value);
    out.expect("the value was written")
}

/// What a pass produces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Value,
    ValueAndRowSums,
    /// Row sums without writing the value: the chain's value has no reader but its sum.
    RowSums,
}

/// [`eval`], and the sum of the result over all but its first `keep` axes, added up in
/// the same pass (each row's sum while its blocks are still in cache): the result and
/// an array of the result's first `keep` axes.
///
/// # Panics
/// As [`eval`], and if `keep` is not below the result's rank.
pub fn eval_with_sum<T: Scalar>(
    nodes: &[Node],
    args: &[ArrayViewD<'_, T>],
    arg_idx: &[&[u32]],
    out_idx: &[u32],
    keep: usize,
) -> (ArrayD<T>, ArrayD<T>) {
    let (out, sum) = with_sum(nodes, args, arg_idx, out_idx, keep, Mode::ValueAndRowSums);
    (out.expect("the value was written"), sum)
}

/// Only the sum of [`eval_with_sum`], without writing the chain's value anywhere.
///
/// # Panics
/// As [`eval_with_sum`].
pub fn sum_only<T: Scalar>(
    nodes: &[Node],
    args: &[ArrayViewD<'_, T>],
    arg_idx: &[&[u32]],
    out_idx: &[u32],
    keep: usize,
) -> ArrayD<T> {
    with_sum(nodes, args, arg_idx, out_idx, keep, Mode::RowSums).1
}

fn with_sum<T: Scalar>(
    nodes: &[Node],
    args: &[ArrayViewD<'_, T>],
    arg_idx: &[&[u32]],
    out_idx: &[u32],
    keep: usize,
    mode: Mode,
) -> (Option<ArrayD<T>>, ArrayD<T>) {
    assert!(keep < out_idx.len(), "a fused sum keeps a proper prefix");
    let (out, shape, row_sums) = pass(nodes, args, arg_idx, out_idx, mode);
    let kept = &shape[..keep];
    let groups: usize = kept.iter().product();
    let mut sum = ArrayD::from_elem(IxDyn(kept), T::zero());
    if groups > 0 && !row_sums.is_empty() {
        // Rows are in the result's order, so the rows of one kept element are adjacent.
        let per = row_sums.len() / groups;
        let flat = sum
            .as_slice_mut()
            .expect("a new array is in standard layout");
        for (s, rows) in flat.iter_mut().zip(row_sums.chunks(per)) {
            *s = rows.iter().fold(T::zero(), |a, &b| a + b);
        }
    }
    (out, sum)
}

/// The pass itself: the value (unless `mode` is `RowSums`), its shape, and every row's
/// sum in row order (unless `mode` is `Value`).
fn pass<T: Scalar>(
    nodes: &[Node],
    args: &[ArrayViewD<'_, T>],
    arg_idx: &[&[u32]],
    out_idx: &[u32],
    mode: Mode,
) -> (Option<ArrayD<T>>, Vec<usize>, Vec<T>) {
    let row_sums = mode != Mode::Value;
    let shape: Vec<usize> = out_idx
        .iter()
        .map(|l| {
            args.iter()
                .zip(arg_idx)
                .flat_map(|(a, idx)| {
                    idx.iter()
                        .zip(a.shape())
                        .filter(move |(x, _)| *x == l)
                        .map(|(_, &n)| n)
                })
                // A length-1 axis broadcasts against any other length, 0 included (the
                // largest would turn an empty axis into one of length 1).
                .reduce(|a, b| if a == 1 { b } else { a })
                .unwrap_or_else(|| panic!("output label {l} is in no argument"))
        })
        .collect();
    // Per argument, its stride along each output axis: the sum over its axes with that
    // label (a diagonal), 0 where it lacks the label or broadcasts a length-1 axis.
    let strides: Vec<Vec<isize>> = args
        .iter()
        .zip(arg_idx)
        .map(|(a, idx)| {
            assert_eq!(a.ndim(), idx.len(), "one label per axis");
            out_idx
                .iter()
                .zip(&shape)
                .map(|(l, &n)| {
                    idx.iter()
                        .enumerate()
                        .filter(|(ax, x)| *x == l && (a.shape()[*ax] == n || n == 0))
                        .map(|(ax, _)| a.strides()[ax])
                        .sum()
                })
                .collect()
        })
        .collect();
    let total: usize = shape.iter().product();
    let mut out = (mode != Mode::RowSums).then(|| ArrayD::from_elem(IxDyn(&shape), T::zero()));
    if total == 0 {
        return (out, shape, Vec::new());
    }
    let rank = shape.len();
    let inner = if rank == 0 { 1 } else { shape[rank - 1] };
    let rows = total / inner;
    let inner_strides: Vec<isize> = strides
        .iter()
        .map(|s| if rank == 0 { 0 } else { s[rank - 1] })
        .collect();
    // Short rows that follow each other in every argument (`bi,bi,bi->b` over rows of 64)
    // are evaluated several to a block: each node's loop then runs over the whole block
    // instead of paying its dispatch for every row. Rows follow each other along the
    // axes before the last whose stride, in every argument, continues the axes after
    // them; a group never crosses the end of such a run (where a broadcast argument's
    // value changes), so its size divides the run's length.
    let mut run = 1usize;
    for d in (0..rank.saturating_sub(1)).rev() {
        let step = shape[d + 1] as isize;
        if !strides.iter().all(|s| s[d] == step * s[d + 1]) {
            break;
        }
        run *= shape[d];
    }
    let most = (BLOCK / inner).max(1);
    let group = (1..=most.min(run))
        .rev()
        .find(|g| run.is_multiple_of(*g))
        .unwrap_or(1);
    let ptrs: Vec<usize> = args.iter().map(|a| a.as_ptr() as usize).collect();
    let write = mode != Mode::RowSums;
    // Rows `first .. first + count` (`count` is 1 unless rows follow each other): their
    // values into `dst` (unless only summed) and each row's sum into `sums` (if summed).
    let rows_at =
        |first: usize, count: usize, dst: &mut [T], sums: &mut [T], sc: &mut Scratch<T>| {
            // Offset of the first row's first element in every argument.
            let mut rest = first;
            sc.base.iter_mut().for_each(|b| *b = 0);
            for d in (0..rank.saturating_sub(1)).rev() {
                let i = (rest % shape[d]) as isize;
                rest /= shape[d];
                for (b, s) in sc.base.iter_mut().zip(&strides) {
                    *b += i * s[d];
                }
            }
            let width = count * inner;
            let mut start = 0;
            let mut sum = T::zero();
            while start < width {
                let len = BLOCK.min(width - start);
                for (j, node) in nodes.iter().enumerate() {
                    let buf = &mut sc.bufs[j][..len];
                    sc.src[j] = match node {
                        Node::Arg(a) => {
                            let p = ptrs[*a] as *const T;
                            let (b0, st) = (sc.base[*a], inner_strides[*a]);
                            // SAFETY (all three): an offset `b0 + (start + i) · st` for i < len
                            // is Σ index·stride over in-range indices of the argument's own
                            // axes (0 for broadcast ones; rows that follow each other continue
                            // the last axis's stride), so it addresses an element of the view,
                            // which outlives this call.
                            match st {
                                // A contiguous row is read where it is (a short-row pass,
                                // `bi,bi,bi->b`, is bound by memory: a copy would cost a third).
                                1 => unsafe { p.offset(b0 + start as isize) },
                                0 => {
                                    buf.fill(unsafe { *p.offset(b0) });
                                    buf.as_ptr()
                                }
                                _ => {
                                    for (i, x) in buf.iter_mut().enumerate() {
                                        let off = b0 + (start + i) as isize * st;
                                        *x = unsafe { *p.offset(off) };
                                    }
                                    buf.as_ptr()
                                }
                            }
                        }
                        Node::Apply(op, xs) => {
                            // SAFETY: `src` of an earlier node points at `len` elements, of
                            // an argument's view or of that node's own buffer, which no later
                            // node writes (each node writes only its own).
                            let read =
                                |k: usize| unsafe { std::slice::from_raw_parts(sc.src[k], len) };
                            apply(*op, read(xs[0]), xs.get(1).map(|&k| read(k)), buf);
                            buf.as_ptr()
                        }
                    };
                }
                // SAFETY: as above, for the last node.
                let last = unsafe { std::slice::from_raw_parts(sc.src[nodes.len() - 1], len) };
                if write {
                    dst[start..start + len].copy_from_slice(last);
                }
                if row_sums {
                    if count == 1 {
                        sum += block_sum(last);
                    } else {
                        // Several rows in one block (`width` ≤ BLOCK, so this is the only one).
                        for (s, r) in sums.iter_mut().zip(last.chunks_exact(inner)) {
                            *s = block_sum(r);
                        }
                    }
                }
                start += len;
            }
            if row_sums && count == 1 {
                sums[0] = sum;
            }
        };
    let fresh = || Scratch {
        bufs: vec![vec![T::zero(); BLOCK]; nodes.len()],
        src: vec![std::ptr::null(); nodes.len()],
        base: vec![0; args.len()],
    };
    let mut sums = vec![T::zero(); if row_sums { rows } else { 0 }];
    let flat = out
        .as_mut()
        .map(|o| o.as_slice_mut().expect("a new array is in standard layout"));
    // Every group's slice of the value and of the sums (empty where not kept).
    let mut none: [T; 0] = [];
    let dsts: &mut [T] = flat.unwrap_or(&mut none);
    let groups = rows.div_ceil(group);
    let eval_group = |(g, (dst, sums)): (usize, (&mut [T], &mut [T])), sc: &mut Scratch<T>| {
        let first = g * group;
        rows_at(first, group.min(rows - first), dst, sums, sc);
    };
    // A `chunks_mut` of an empty slice yields nothing: pad with empty slices.
    let pad = |n: usize| std::iter::repeat_with(|| &mut [][..]).take(n);
    if total >= PARALLEL_ELEMENTS && crate::kernels::threads() > 1 {
        let d: Vec<&mut [T]> = if write {
            dsts.chunks_mut(group * inner).collect()
        } else {
            pad(groups).collect()
        };
        let s: Vec<&mut [T]> = if row_sums {
            sums.chunks_mut(group).collect()
        } else {
            pad(groups).collect()
        };
        d.into_par_iter()
            .zip(s)
            .enumerate()
            .for_each_init(fresh, |sc, item| eval_group(item, sc));
    } else {
        let mut sc = fresh();
        let d: Box<dyn Iterator<Item = &mut [T]>> = if write {
            Box::new(dsts.chunks_mut(group * inner))
        } else {
            Box::new(pad(groups))
        };
        let s: Box<dyn Iterator<Item = &mut [T]>> = if row_sums {
            Box::new(sums.chunks_mut(group))
        } else {
            Box::new(pad(groups))
        };
        for item in d.zip(s).enumerate() {
            eval_group(item, &mut sc);
        }
    }
    (out, shape, sums)
}

/// A thread's buffers for [`pass`]: a block per node, where each node's block of values
/// is (an argument's row or the node's buffer), and each argument's row offset.
struct Scratch<T> {
    bufs: Vec<Vec<T>>,
    src: Vec<*const T>,
    base: Vec<isize>,
}

/// The sum of a block, in eight interleaved partial sums so the additions vectorise
/// instead of waiting on each other; in AVX2 registers where the CPU has them (the same
/// additions in the same order, so the same result).
fn block_sum<T: Scalar>(x: &[T]) -> T {
    // SAFETY: the wide copy runs only where the CPU has AVX2.
    unsafe {
        if simd::avx2() {
            block_sum_avx2(x)
        } else {
            block_sum_body(x)
        }
    }
}

simd::avx2_copy!(unsafe fn block_sum_avx2<T: Scalar>(x: &[T]) -> T = block_sum_body);

/// # Safety
/// None beyond the caller's (safe) contract; `unsafe` for [`simd::avx2_copy`].
#[inline(always)]
unsafe fn block_sum_body<T: Scalar>(x: &[T]) -> T {
    const LANES: usize = 8;
    let mut acc = [T::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let head = acc.iter().fold(T::zero(), |s, &a| s + a);
    rest.iter().fold(head, |s, &v| s + v)
}

/// `out = op(x, y)` over one block (unary ops read `x` only); the loops in AVX2
/// registers where the CPU has them, as [`block_sum`].
fn apply<T: Scalar>(op: MapOp, x: &[T], y: Option<&[T]>, out: &mut [T]) {
    // SAFETY: the wide copy runs only where the CPU has AVX2.
    unsafe {
        if simd::avx2() {
            apply_avx2(op, x, y, out)
        } else {
            apply_body(op, x, y, out)
        }
    }
}

simd::avx2_copy!(unsafe fn apply_avx2<T: Scalar>(
    op: MapOp,
    x: &[T],
    y: Option<&[T]>,
    out: &mut [T],
) = apply_body);

/// # Safety
/// None beyond the caller's (safe) contract; `unsafe` for [`simd::avx2_copy`].
#[inline(always)]
unsafe fn apply_body<T: Scalar>(op: MapOp, x: &[T], y: Option<&[T]>, out: &mut [T]) {
    let un = |out: &mut [T], f: fn(T) -> T| {
        for (o, &a) in out.iter_mut().zip(x) {
            *o = f(a);
        }
    };
    let bin = |out: &mut [T], f: fn(T, T) -> T| {
        let y = y.expect("a binary node has two operands");
        for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
            *o = f(a, b);
        }
    };
    match op {
        MapOp::Add => bin(out, |a, b| a + b),
        MapOp::Sub => bin(out, |a, b| a - b),
        MapOp::Mul => bin(out, |a, b| a * b),
        MapOp::Div => bin(out, |a, b| a / b),
        MapOp::Max => bin(out, T::max2),
        MapOp::Min => bin(out, T::min2),
        MapOp::Neg => un(out, |a| -a),
        MapOp::Exp => un(out, T::exp),
        MapOp::Log => un(out, T::ln),
        MapOp::Sqrt => un(out, T::sqrt),
        MapOp::Tanh => un(out, T::tanh),
        MapOp::Abs => un(out, T::abs),
        MapOp::Relu => un(out, |a| a.max2(T::zero())),
        MapOp::Sigmoid => un(out, sigmoid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{map_binary, map_unary};
    use ndarray::{Array2, Array3, Axis};

    /// exp(tanh(a) - b) * max(d, a), with `a` transposed, `b` broadcast from length 1
    /// along `i`, and `d` the diagonal of a cube: against the unfused kernels.
    #[test]
    fn a_chain_matches_the_step_by_step_kernels() {
        let (ni, nj) = (37, 300); // rows longer than one block
        let a_t =
            Array2::from_shape_fn((nj, ni), |(j, i)| ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0);
        let a = a_t.view().reversed_axes().into_dyn(); // labels [i, j], strided
        let b = Array2::from_shape_fn((1, nj), |(_, j)| (j % 5) as f64 / 3.0).into_dyn();
        let d = Array3::from_shape_fn((ni, ni, nj), |(x, y, j)| (x * 2 + y + j) as f64 / 100.0)
            .into_dyn();
        let (al, bl, dl, out): (&[u32], &[u32], &[u32], &[u32]) =
            (&[0, 1], &[0, 1], &[0, 0, 1], &[0, 1]);
        let nodes = vec![
            Node::Arg(0),
            Node::Arg(1),
            Node::Arg(2),
            Node::Apply(MapOp::Tanh, vec![0]),
            Node::Apply(MapOp::Sub, vec![3, 1]),
            Node::Apply(MapOp::Exp, vec![4]),
            Node::Apply(MapOp::Max, vec![2, 0]),
            Node::Apply(MapOp::Mul, vec![5, 6]),
        ];
        let got = eval(&nodes, &[a.view(), b.view(), d.view()], &[al, bl, dl], out);
        let t = map_unary(MapOp::Tanh, a.view());
        let s = map_binary(MapOp::Sub, t.view(), out, b.view(), bl, out);
        let e = map_unary(MapOp::Exp, s.view());
        let diag = Array2::from_shape_fn((ni, nj), |(i, j)| d[[i, i, j]]).into_dyn();
        let m = map_binary(MapOp::Max, diag.view(), out, a.view(), al, out);
        let want = map_binary(MapOp::Mul, e.view(), out, m.view(), out, out);
        assert_eq!(got.shape(), &[ni, nj]);
        assert!(got
            .iter()
            .zip(want.iter())
            .all(|(g, w)| (g - w).abs() <= 1e-12));
        // Large enough for the parallel path too.
        let big =
            Array3::from_shape_fn((64, 32, 40), |(x, y, z)| (x + y * z) as f64 / 7.0).into_dyn();
        let nodes = vec![
            Node::Arg(0),
            Node::Apply(MapOp::Sqrt, vec![0]),
            Node::Apply(MapOp::Neg, vec![1]),
        ];
        let got = eval(&nodes, &[big.view()], &[&[0, 1, 2]], &[2, 0, 1]);
        let want = big.view().permuted_axes(vec![2, 0, 1]).mapv(|x| -x.sqrt());
        assert_eq!(got, want);
        assert_eq!(got.len_of(Axis(0)), 40);
    }

    /// The AVX2 copies of the block loops give the baseline copies' results bit for bit.
    #[test]
    fn the_wide_block_loops_match_the_baseline_bit_for_bit() {
        if !simd::avx2() {
            eprintln!("the_wide_block_loops_match_the_baseline_bit_for_bit: no AVX2, skipped");
            return;
        }
        let x: Vec<f32> = (0..253)
            .map(|i| ((i * 37) % 101) as f32 / 7.0 - 6.0)
            .collect();
        let y: Vec<f32> = (0..253)
            .map(|i| ((i * 11) % 23) as f32 / 3.0 + 0.5)
            .collect();
        // SAFETY: the CPU has AVX2 (checked above); the bodies have no other contract.
        unsafe {
            assert_eq!(block_sum_avx2(&x).to_bits(), block_sum_body(&x).to_bits());
            for op in [MapOp::Mul, MapOp::Sub, MapOp::Div, MapOp::Exp, MapOp::Tanh] {
                let (mut wide, mut base) = (vec![0f32; 253], vec![0f32; 253]);
                apply_avx2(op, &x, Some(&y), &mut wide);
                apply_body(op, &x, Some(&y), &mut base);
                let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&wide), bits(&base), "{op:?}");
            }
        }
    }

    /// The pass's own sums against the chain's value summed afterwards: every kept
    /// prefix, a broadcast argument, below and above the parallel threshold, and empty.
    #[test]
    fn a_pass_sums_its_rows_into_a_kept_prefix() {
        use crate::kernels::unary;
        let nodes = vec![
            Node::Arg(0),
            Node::Arg(1),
            Node::Apply(MapOp::Sub, vec![0, 1]),
            Node::Apply(MapOp::Exp, vec![2]),
        ];
        for shape in [
            [3usize, 5, 7],
            [16, 64, 40],
            [4, 0, 3],
            [3, 16, 5],
            [2, 600, 3],
        ] {
            let s = Array3::from_shape_fn(shape, |(i, j, k)| {
                ((i * 13 + j * 7 + k * 3) % 17) as f64 / 8.0 - 1.0
            })
            .into_dyn();
            let m = Array2::from_shape_fn((shape[0], 1), |(i, _)| i as f64 / 4.0).into_dyn();
            let (sl, ml, out): (&[u32], &[u32], &[u32]) = (&[0, 1, 2], &[0, 1], &[0, 1, 2]);
            let args = [s.view(), m.view()];
            let plain = eval(&nodes, &args, &[sl, ml], out);
            // Against the step-by-step kernels: short rows share a block, which must not
            // cross the rows where `m`'s value changes.
            let diff = map_binary(MapOp::Sub, s.view(), sl, m.view(), ml, out);
            assert_eq!(plain, map_unary(MapOp::Exp, diff.view()), "{shape:?}");
            for keep in 0..3 {
                let (value, sum) = eval_with_sum(&nodes, &args, &[sl, ml], out, keep);
                assert_eq!(value, plain);
                assert_eq!(sum_only(&nodes, &args, &[sl, ml], out, keep), sum);
                let want = unary(plain.view(), out, &out[..keep]);
                assert_eq!(sum.shape(), &shape[..keep]);
                let tol = 1e-12 * plain.len().max(1) as f64;
                assert!(
                    sum.iter()
                        .zip(want.iter())
                        .all(|(a, b)| (a - b).abs() <= tol),
                    "{shape:?} keep {keep}"
                );
            }
        }
    }
}
