//! Random einsum equations (up to 6 operands, repeated indices, ellipsis broadcasting,
//! size-1 broadcasting, implicit and explicit outputs) agree between the CPU executor and
//! the naive reference. The expected labels are built by the generator itself, not by
//! einc's resolver, so resolution is under test too.

use einc::TensorData;
use einc_runtime::reference::reference_einsum;
use ndarray::{ArrayD, IxDyn};
use num_complex::Complex64;
use proptest::prelude::*;
use std::collections::BTreeMap;

const LETTERS: &[char] = &['a', 'b', 'c', 'd', 'e', 'F', 'g'];

#[derive(Clone, Debug)]
struct Case {
    sizes: Vec<usize>,                // per letter
    ops: Vec<Vec<usize>>,             // letter positions per operand
    ell: Vec<Option<(usize, usize)>>, // (position in term, ellipsis rank)
    bsizes: Vec<usize>,               // broadcast shape (right-aligned)
    shrink: Vec<Vec<bool>>,           // per operand axis: use size 1 (numpy broadcast) when allowed
    explicit: Option<Vec<usize>>, // explicit output letters (ellipsis appended first when present)
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..=6,
        prop::collection::vec(1usize..=3, LETTERS.len()),
        prop::collection::vec(1usize..=3, 2),
    )
        .prop_flat_map(|(n, sizes, bsizes)| {
            let ops = prop::collection::vec(prop::collection::vec(0usize..LETTERS.len(), 0..=4), n);
            let ell =
                prop::collection::vec(prop::option::weighted(0.3, (0usize..=4, 0usize..=2)), n);
            let shrink =
                prop::collection::vec(prop::collection::vec(prop::bool::weighted(0.1), 6), n);
            let explicit =
                prop::option::weighted(0.6, prop::collection::vec(0usize..LETTERS.len(), 0..=4));
            (Just(sizes), ops, ell, Just(bsizes), shrink, explicit)
        })
        .prop_map(|(sizes, ops, ell, bsizes, shrink, explicit)| {
            let ell = ell
                .into_iter()
                .zip(&ops)
                .map(|(e, o)| e.map(|(p, r)| (p.min(o.len()), r)))
                .collect();
            Case {
                sizes,
                ops,
                ell,
                bsizes,
                shrink,
                explicit,
            }
        })
}

struct Built {
    eq: String,
    shapes: Vec<Vec<usize>>,
    labels: Vec<Vec<u32>>,
    out: Vec<u32>,
    sizes: BTreeMap<u32, usize>,
}

/// Broadcast labels are 100 + position in the broadcast shape.
fn build(c: &Case) -> Option<Built> {
    let nb = c.ell.iter().flatten().map(|&(_, r)| r).max().unwrap_or(0);
    let mut terms = Vec::new();
    let mut shapes = Vec::new();
    let mut labels = Vec::new();
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (k, op) in c.ops.iter().enumerate() {
        let mut term = String::new();
        let mut shape = Vec::new();
        let mut lab = Vec::new();
        let mut seen_here: BTreeMap<usize, usize> = BTreeMap::new();
        for pos in 0..=op.len() {
            if let Some((p, r)) = c.ell[k] {
                if p == pos {
                    term.push_str("...");
                    for j in 0..r {
                        let b = nb - r + j;
                        let ax = shape.len();
                        let sz = if c.shrink[k].get(ax).copied().unwrap_or(false) {
                            1
                        } else {
                            c.bsizes[b % 2]
                        };
                        shape.push(sz);
                        lab.push(100 + b as u32);
                    }
                }
            }
            if pos == op.len() {
                break;
            }
            let l = op[pos];
            term.push(LETTERS[l]);
            *counts.entry(l).or_insert(0) += 1;
            let ax = shape.len();
            // Repeated labels inside one operand must keep equal lengths.
            let sz = match seen_here.get(&l) {
                Some(&s) => s,
                None if c.shrink[k].get(ax).copied().unwrap_or(false) => 1,
                None => c.sizes[l],
            };
            seen_here.insert(l, sz);
            shape.push(sz);
            lab.push(l as u32);
        }
        terms.push(term);
        shapes.push(shape);
        labels.push(lab);
    }
    // Effective sizes: the max over occurrences (size 1 broadcasts).
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for (lab, shape) in labels.iter().zip(&shapes) {
        for (&l, &s) in lab.iter().zip(shape) {
            let e = sizes.entry(l).or_insert(1);
            *e = (*e).max(s);
        }
    }
    let bcast: Vec<u32> = (0..nb)
        .map(|b| 100 + b as u32)
        .filter(|l| sizes.contains_key(l))
        .collect();
    let mut eq = terms.join(",");
    let out: Vec<u32> = match &c.explicit {
        Some(o) => {
            let mut letters: Vec<usize> = Vec::new();
            for &l in o {
                if counts.contains_key(&l) && !letters.contains(&l) {
                    letters.push(l);
                }
            }
            eq.push_str("->");
            if nb > 0 {
                eq.push_str("...");
            }
            eq.extend(letters.iter().map(|&l| LETTERS[l]));
            bcast
                .iter()
                .copied()
                .chain(letters.iter().map(|&l| l as u32))
                .collect()
        }
        None => {
            let mut once: Vec<usize> = counts
                .iter()
                .filter(|&(_, &n)| n == 1)
                .map(|(&l, _)| l)
                .collect();
            once.sort_by_key(|&l| LETTERS[l]);
            bcast
                .iter()
                .copied()
                .chain(once.iter().map(|&l| l as u32))
                .collect()
        }
    };
    if nb > bcast.len() {
        return None; // a broadcast position nobody covers cannot happen with right alignment
    }
    Some(Built {
        eq,
        shapes,
        labels,
        out,
        sizes,
    })
}

fn values(shape: &[usize], k: usize) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|t| ((t * 5 + k * 3) % 7) as f64 - 3.0).collect(),
    )
    .expect("shape")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_equations_match_reference(c in case()) {
        let Some(b) = build(&c) else { return Ok(()) };
        let inputs: Vec<ArrayD<f64>> = b.shapes.iter().enumerate().map(|(k, s)| values(s, k)).collect();
        let ops: Vec<_> = inputs.iter().zip(&b.labels).map(|(a, l)| (a.mapv(|x| Complex64::new(x, 0.0)), l.clone())).collect();
        let views: Vec<_> = ops.iter().map(|(a, l)| (a.view(), l.clone())).collect();
        let want = reference_einsum(&views, &b.out, &b.sizes);
        let got = einc::einsum_dyn(&b.eq, inputs.into_iter().map(TensorData::F64).collect());
        let got = match got {
            Ok(g) => g.as_c128(),
            Err(e) => return Err(TestCaseError::fail(format!("{} {:?} rejected: {e}", b.eq, b.shapes))),
        };
        prop_assert_eq!(got.shape(), want.shape(), "{} {:?}", b.eq, b.shapes);
        for (g, w) in got.iter().zip(want.iter()) {
            prop_assert!((g - w).norm() <= 1e-9 * w.norm().max(1.0), "{} {:?}: {} vs {}", b.eq, b.shapes, g, w);
        }
    }
}
