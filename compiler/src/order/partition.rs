//! A small multilevel hypergraph bisection (in the spirit of KaHyPar /
//! hMETIS), used by hyper search to split a tensor network recursively.
//!
//! Vertices are tensors, hyperedges are labels weighted by `log2(size)`:
//! a cut's weight is then the log of the extra size an intermediate built
//! from one side must carry, which is what a contraction tree pays for.
//! Coarsening merges pairs joined by heavy, small hyperedges; the coarsest
//! graph is split by several breadth-first growths, and every level is
//! refined by Fiduccia–Mattheyses passes under a balance constraint.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::rng::Rng;

pub(crate) struct Hypergraph {
    pub node_w: Vec<f64>,
    pub edges: Vec<Vec<u32>>,
    pub edge_w: Vec<f64>,
    pub node_edges: Vec<Vec<u32>>,
    /// Nodes that must stay on side 0 (a stand-in for the rest of the
    /// network, so that the part touching it stays in one piece).
    pub fixed: Vec<bool>,
}

impl Hypergraph {
    /// Drops edges with fewer than two pins and indexes edges by node.
    pub fn new(node_w: Vec<f64>, edges: Vec<Vec<u32>>, edge_w: Vec<f64>) -> Self {
        let mut node_edges = vec![Vec::new(); node_w.len()];
        let (mut es, mut ws) = (Vec::with_capacity(edges.len()), Vec::new());
        for (pins, w) in edges.into_iter().zip(edge_w) {
            if pins.len() < 2 {
                continue;
            }
            for &p in &pins {
                node_edges[p as usize].push(es.len() as u32);
            }
            es.push(pins);
            ws.push(w);
        }
        Hypergraph {
            fixed: vec![false; node_w.len()],
            node_w,
            edges: es,
            edge_w: ws,
            node_edges,
        }
    }

    fn n(&self) -> usize {
        self.node_w.len()
    }

    pub fn cut(&self, side: &[u8]) -> f64 {
        self.edges
            .iter()
            .zip(&self.edge_w)
            .filter(|(pins, _)| {
                let s = side[pins[0] as usize];
                pins.iter().any(|&p| side[p as usize] != s)
            })
            .map(|(_, &w)| w)
            .sum()
    }
}

/// Coarsest graphs are at most about this large.
const COARSE_N: usize = 48;
/// Edges with more pins are ignored when rating matches and updating gains.
const BIG_EDGE: usize = 48;

/// Splits `hg` in two; each side weighs at most `(1 + imbalance) / 2` of
/// the total (when the node weights allow it). Returns each node's side.
pub(crate) fn bisect(hg: &Hypergraph, imbalance: f64, rng: &mut Rng) -> Vec<u8> {
    let total: f64 = hg.node_w.iter().sum();
    // Heavy coarse nodes cannot meet a tight balance exactly: each level
    // allows one node's worth of slack, and finer levels restore balance.
    let heaviest = hg.node_w.iter().copied().fold(0.0, f64::max);
    let max_w = ((1.0 + imbalance) * total / 2.0).max(total / 2.0 + heaviest);
    if hg.n() <= COARSE_N {
        return initial(hg, max_w, rng);
    }
    let mut side = match coarsen(hg, total / 16.0, None, rng) {
        Some((coarse, map)) => {
            let cs = bisect(&coarse, imbalance, rng);
            let mut side: Vec<u8> = map.iter().map(|&c| cs[c as usize]).collect();
            fm(hg, &mut side, max_w, 4);
            side
        }
        None => initial(hg, max_w, rng),
    };
    // V-cycles: coarsen again within the sides found and refine on every
    // level; this escapes local optima that one refinement pass keeps.
    let mut cut = hg.cut(&side);
    for _ in 0..2 {
        let mut next = side.clone();
        vcycle(hg, &mut next, max_w, total / 16.0, rng);
        let c = hg.cut(&next);
        if c < cut - 1e-9 {
            cut = c;
            side = next;
        } else {
            break;
        }
    }
    side
}

fn vcycle(hg: &Hypergraph, side: &mut [u8], max_w: f64, max_node_w: f64, rng: &mut Rng) {
    if hg.n() > COARSE_N {
        if let Some((coarse, map)) = coarsen(hg, max_node_w, Some(side), rng) {
            let mut cs = vec![0u8; coarse.n()];
            for (v, &c) in map.iter().enumerate() {
                cs[c as usize] = side[v];
            }
            vcycle(&coarse, &mut cs, max_w, max_node_w, rng);
            for (v, &c) in map.iter().enumerate() {
                side[v] = cs[c as usize];
            }
        }
    }
    fm(hg, side, max_w, 4);
}

/// Heavy-edge matching; `None` when it barely shrinks the graph.
/// With `side`, only nodes on the same side are merged.
fn coarsen(
    hg: &Hypergraph,
    max_node_w: f64,
    side: Option<&[u8]>,
    rng: &mut Rng,
) -> Option<(Hypergraph, Vec<u32>)> {
    let n = hg.n();
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut map = vec![u32::MAX; n];
    let mut rating = vec![0.0f64; n];
    let mut touched = Vec::new();
    let mut next = 0u32;
    for &v in &order {
        if map[v] != u32::MAX {
            continue;
        }
        for &e in &hg.node_edges[v] {
            let pins = &hg.edges[e as usize];
            if pins.len() > BIG_EDGE {
                continue;
            }
            let r = hg.edge_w[e as usize] / (pins.len() - 1) as f64;
            for &u in pins {
                let u = u as usize;
                if u != v
                    && map[u] == u32::MAX
                    && hg.node_w[u] + hg.node_w[v] <= max_node_w
                    && side.is_none_or(|s| s[u] == s[v])
                {
                    if rating[u] == 0.0 {
                        touched.push(u);
                    }
                    rating[u] += r;
                }
            }
        }
        // Ratings favour light partners so that coarse nodes stay even.
        let best = touched
            .iter()
            .copied()
            .map(|u| (u, rating[u] / hg.node_w[u].max(1.0).sqrt()))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        for &u in &touched {
            rating[u] = 0.0;
        }
        touched.clear();
        map[v] = next;
        if let Some((u, _)) = best {
            map[u] = next;
        }
        next += 1;
    }
    let m = next as usize;
    if m as f64 > 0.92 * n as f64 {
        return None;
    }
    let mut node_w = vec![0.0; m];
    let mut fixed = vec![false; m];
    for v in 0..n {
        node_w[map[v] as usize] += hg.node_w[v];
        fixed[map[v] as usize] |= hg.fixed[v];
    }
    let edges: Vec<Vec<u32>> = hg
        .edges
        .iter()
        .map(|pins| {
            let mut c: Vec<u32> = pins.iter().map(|&p| map[p as usize]).collect();
            c.sort_unstable();
            c.dedup();
            c
        })
        .collect();
    let mut coarse = Hypergraph::new(node_w, edges, hg.edge_w.clone());
    coarse.fixed = fixed;
    Some((coarse, map))
}

/// Best of several breadth-first growths from random seeds, each refined.
fn initial(hg: &Hypergraph, max_w: f64, rng: &mut Rng) -> Vec<u8> {
    let n = hg.n();
    let total: f64 = hg.node_w.iter().sum();
    let mut best: Option<(f64, Vec<u8>)> = None;
    for _ in 0..6 {
        let mut side = vec![0u8; n];
        let mut w1 = 0.0;
        let mut queue = std::collections::VecDeque::new();
        let mut seen = vec![false; n];
        while w1 < total / 2.0 {
            let v = match queue.pop_front() {
                Some(v) => v,
                None => {
                    // A new component (or the first seed): a random unseen node.
                    let unseen: Vec<usize> = (0..n).filter(|&v| !seen[v] && !hg.fixed[v]).collect();
                    if unseen.is_empty() {
                        break;
                    }
                    let v = unseen[rng.below(unseen.len())];
                    seen[v] = true;
                    v
                }
            };
            if hg.fixed[v] || (w1 + hg.node_w[v] > max_w && w1 > 0.0) {
                continue;
            }
            side[v] = 1;
            w1 += hg.node_w[v];
            let mut nbrs: Vec<usize> = Vec::new();
            for &e in &hg.node_edges[v] {
                for &u in &hg.edges[e as usize] {
                    if !seen[u as usize] {
                        seen[u as usize] = true;
                        nbrs.push(u as usize);
                    }
                }
            }
            rng.shuffle(&mut nbrs);
            queue.extend(nbrs);
        }
        fm(hg, &mut side, max_w, 8);
        let cut = hg.cut(&side);
        if best.as_ref().is_none_or(|(c, _)| cut < *c) {
            best = Some((cut, side));
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| vec![0; n])
}

#[derive(PartialEq)]
struct Move {
    gain: f64,
    node: u32,
    version: u32,
}
impl Eq for Move {}
impl Ord for Move {
    fn cmp(&self, o: &Self) -> Ordering {
        self.gain.total_cmp(&o.gain).then(o.node.cmp(&self.node))
    }
}
impl PartialOrd for Move {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Fiduccia–Mattheyses refinement: moves nodes one at a time by best gain,
/// keeps the best prefix of each pass.
fn fm(hg: &Hypergraph, side: &mut [u8], max_w: f64, passes: usize) {
    let n = hg.n();
    let mut cnt: Vec<[u32; 2]> = hg
        .edges
        .iter()
        .map(|pins| {
            let mut c = [0u32; 2];
            for &p in pins {
                c[side[p as usize] as usize] += 1;
            }
            c
        })
        .collect();
    let mut w = [0.0f64; 2];
    for v in 0..n {
        w[side[v] as usize] += hg.node_w[v];
    }
    let gain = |v: usize, side: &[u8], cnt: &[[u32; 2]]| -> f64 {
        let s = side[v] as usize;
        hg.node_edges[v]
            .iter()
            .map(|&e| {
                let c = cnt[e as usize];
                let we = hg.edge_w[e as usize];
                let mut g = 0.0;
                if c[s] == 1 {
                    g += we;
                }
                if c[1 - s] == 0 {
                    g -= we;
                }
                g
            })
            .sum()
    };
    let mut version = vec![0u32; n];
    let mut locked = vec![false; n];
    let patience = 16 + n / 8;
    for _ in 0..passes {
        // One queue per side: a move blocked by balance now may be allowed
        // after a move the other way, so nothing is dropped.
        let mut heaps = [BinaryHeap::new(), BinaryHeap::new()];
        for v in (0..n).filter(|&v| !hg.fixed[v]) {
            version[v] += 1;
            heaps[side[v] as usize].push(Move {
                gain: gain(v, side, &cnt),
                node: v as u32,
                version: version[v],
            });
        }
        locked.iter_mut().for_each(|l| *l = false);
        let mut moves: Vec<usize> = Vec::new();
        let (mut delta, mut best_delta, mut best_len) = (0.0f64, 0.0f64, 0usize);
        // Prefix states rank by overweight first, then cut, then balance.
        let over = |w: &[f64; 2]| (w[0].max(w[1]) - max_w).max(0.0);
        let imbalance = |w: &[f64; 2]| (w[0] - w[1]).abs();
        let mut best_over = over(&w);
        let mut best_imb = imbalance(&w);
        loop {
            let mut pick: Option<(usize, f64)> = None;
            for (s, heap) in heaps.iter_mut().enumerate() {
                while let Some(m) = heap.peek() {
                    let v = m.node as usize;
                    if locked[v] || m.version != version[v] || side[v] as usize != s {
                        heap.pop();
                        continue;
                    }
                    let t = 1 - s;
                    let fits = w[t] + hg.node_w[v] <= max_w || w[t] + hg.node_w[v] <= w[s];
                    if fits && pick.is_none_or(|p| m.gain > p.1) {
                        pick = Some((s, m.gain));
                    }
                    break;
                }
            }
            let Some((s, g)) = pick else { break };
            let Some(m) = heaps[s].pop() else { break };
            let v = m.node as usize;
            let t = 1 - s;
            locked[v] = true;
            side[v] = t as u8;
            w[s] -= hg.node_w[v];
            w[t] += hg.node_w[v];
            delta -= g;
            moves.push(v);
            for &e in &hg.node_edges[v] {
                cnt[e as usize][s] -= 1;
                cnt[e as usize][t] += 1;
            }
            let (ov, imb) = (over(&w), imbalance(&w));
            let better = if (ov - best_over).abs() > 1e-9 {
                ov < best_over
            } else {
                delta < best_delta - 1e-9 || (delta <= best_delta + 1e-9 && imb < best_imb)
            };
            if better {
                best_delta = delta;
                best_len = moves.len();
                best_imb = imb;
                best_over = ov;
            }
            if moves.len() - best_len > patience {
                break;
            }
            for &e in &hg.node_edges[v] {
                let pins = &hg.edges[e as usize];
                // Pin gains change only when a side count crosses 0, 1 or 2.
                let c = cnt[e as usize];
                if pins.len() > BIG_EDGE || (c[t] > 2 && c[s] > 1) {
                    continue;
                }
                for &u in pins {
                    let u = u as usize;
                    if !locked[u] && !hg.fixed[u] {
                        version[u] += 1;
                        heaps[side[u] as usize].push(Move {
                            gain: gain(u, side, &cnt),
                            node: u as u32,
                            version: version[u],
                        });
                    }
                }
            }
        }
        for &v in moves[best_len..].iter().rev() {
            let (s, t) = (side[v] as usize, 1 - side[v] as usize);
            side[v] = t as u8;
            w[s] -= hg.node_w[v];
            w[t] += hg.node_w[v];
            for &e in &hg.node_edges[v] {
                cnt[e as usize][s] -= 1;
                cnt[e as usize][t] += 1;
            }
        }
        if best_len == 0 {
            break;
        }
    }
}
