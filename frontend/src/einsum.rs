//! numpy-style einsum equations: `parse` the subscripts string, then `resolve` it against
//! operand shapes.
//!
//! Acceptance follows numpy's C `einsum` for ASCII equations and opt_einsum for non-ASCII
//! ones (numpy refuses those outright):
//! - ASCII letters are indices; every non-ASCII code point is one index, whatever its
//!   Unicode category (opt_einsum hands out `×`, `÷`, combining marks past 52 indices);
//!   labels are raw code points, never normalised;
//! - ASCII spaces are ignored anywhere; other ASCII characters besides `,`, `->` and `...`
//!   are errors;
//! - `...` may appear once per term and stands for the operand's remaining axes,
//!   broadcast numpy-style (right-aligned, size 1 stretches);
//! - a labelled axis of size 1 also broadcasts against the same label elsewhere (numpy's
//!   iterator does this), but repeated labels inside one operand must match exactly;
//! - implicit output: the broadcast axes first, then every label that occurs exactly
//!   once, sorted by code point;
//! - an explicit output without `...` is an error when any operand's ellipsis covers
//!   axes (numpy C rejects `...a->` on a 2-d operand even if the extra axis has size 1).

use crate::diag::Diagnostic;
use crate::span::Span;
use std::collections::BTreeMap;

/// One subscript of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscript {
    Label(char, Span),
    Ellipsis(Span),
}

/// The subscripts of one operand (or of the output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub subscripts: Vec<Subscript>,
    pub span: Span,
}

impl Term {
    fn labels(&self) -> impl Iterator<Item = (char, Span)> + '_ {
        self.subscripts.iter().filter_map(|s| match *s {
            Subscript::Label(c, sp) => Some((c, sp)),
            Subscript::Ellipsis(_) => None,
        })
    }

    fn ellipsis(&self) -> Option<Span> {
        self.subscripts.iter().find_map(|s| match *s {
            Subscript::Ellipsis(sp) => Some(sp),
            Subscript::Label(..) => None,
        })
    }
}

/// A parsed equation, before any shape is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equation {
    pub inputs: Vec<Term>,
    /// `None` for the implicit form (no `->`).
    pub output: Option<Term>,
    /// The whole text, for spans that cover everything.
    pub span: Span,
}

/// Parse a subscripts string. Errors point into `eq`.
pub fn parse(eq: &str) -> Result<Equation, Diagnostic> {
    let mut inputs = Vec::new();
    let mut output = None;
    let mut cur = TermBuilder::new(0);
    let mut in_output = false;
    let chars: Vec<(usize, char)> = eq.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (pos, c) = chars[k];
        match c {
            ',' if !in_output => {
                inputs.push(cur.finish(pos));
                cur = TermBuilder::new(pos + 1);
            }
            ',' => {
                return Err(Diagnostic::at(
                    Span::new(pos, pos + 1),
                    "the output of an einsum equation cannot contain ','",
                    "',' after '->'",
                ))
            }
            '-' => {
                let next = chars.get(k + 1).map(|&(_, c)| c);
                if next != Some('>') {
                    return Err(invalid_char(pos, c));
                }
                if in_output {
                    return Err(Diagnostic::at(
                        Span::new(pos, pos + 2),
                        "einsum equation contains more than one '->'",
                        "second '->'",
                    ));
                }
                inputs.push(cur.finish(pos));
                cur = TermBuilder::new(pos + 2);
                in_output = true;
                k += 1;
            }
            '.' => {
                let dots = chars[k..]
                    .iter()
                    .take(3)
                    .filter(|&&(_, c)| c == '.')
                    .count();
                let contiguous = dots == 3 && chars[k..k + 3].iter().all(|&(_, c)| c == '.');
                if !contiguous {
                    return Err(Diagnostic::at(
                        Span::new(pos, pos + 1),
                        "einsum equation contains a '.' that is not part of an ellipsis ('...')",
                        "stray '.'",
                    ));
                }
                let sp = Span::new(pos, pos + 3);
                if let Some(first) = cur.ellipsis {
                    return Err(Diagnostic::at(
                        sp,
                        "a term of an einsum equation may contain only one ellipsis ('...')",
                        "second ellipsis",
                    )
                    .with_secondary(first, "first ellipsis"));
                }
                cur.ellipsis = Some(sp);
                cur.subs.push(Subscript::Ellipsis(sp));
                k += 2;
            }
            ' ' => {}
            c if c.is_ascii_alphabetic() || !c.is_ascii() => {
                cur.subs
                    .push(Subscript::Label(c, Span::new(pos, pos + c.len_utf8())));
            }
            c => return Err(invalid_char(pos, c)),
        }
        k += 1;
    }
    let last = cur.finish(eq.len());
    if in_output {
        output = Some(last);
    } else {
        inputs.push(last);
    }
    Ok(Equation {
        inputs,
        output,
        span: Span::new(0, eq.len()),
    })
}

fn invalid_char(pos: usize, c: char) -> Diagnostic {
    Diagnostic::at(
        Span::new(pos, pos + c.len_utf8()),
        format!("invalid subscript '{c}' in einsum equation: subscripts must be letters"),
        "not a letter",
    )
    .with_note("indices are ASCII letters or any non-ASCII character; use ',' between operands, '->' before the output and '...' for broadcast axes")
}

struct TermBuilder {
    start: usize,
    subs: Vec<Subscript>,
    ellipsis: Option<Span>,
}

impl TermBuilder {
    fn new(start: usize) -> TermBuilder {
        TermBuilder {
            start,
            subs: Vec::new(),
            ellipsis: None,
        }
    }
    fn finish(self, end: usize) -> Term {
        Term {
            subscripts: self.subs,
            span: Span::new(self.start, end),
        }
    }
}

/// An index of a resolved equation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    /// The label as written (`"i"`, `"α"`), `"…0"`, `"…1"` for broadcast (ellipsis) axes,
    /// or `"_1"`-style names for size-1 axes that broadcast against a larger size.
    pub name: String,
    pub size: usize,
    pub kind: IndexKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// A label written in the equation.
    Label,
    /// One axis covered by `...` (numbered left to right in the broadcast shape).
    Ellipsis,
    /// A size-1 operand axis that numpy broadcasts against a larger size: the operand does
    /// not depend on the index there, so it gets a private size-1 index that is summed
    /// away (a no-op) before anything else.
    Broadcast,
}

/// An equation bound to shapes: every operand axis carries an index id into `indices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub indices: Vec<IndexInfo>,
    /// Per operand, per axis: index id. Ids may repeat within an operand (diagonals).
    pub operands: Vec<Vec<usize>>,
    pub output: Vec<usize>,
}

impl Resolved {
    pub fn output_shape(&self) -> Vec<usize> {
        self.output.iter().map(|&i| self.indices[i].size).collect()
    }

    /// Sizes by index id.
    pub fn sizes(&self) -> Vec<usize> {
        self.indices.iter().map(|i| i.size).collect()
    }
}

/// Bind an equation to operand shapes, checking everything numpy checks.
pub fn resolve(eq: &Equation, shapes: &[Vec<usize>]) -> Result<Resolved, Diagnostic> {
    let n = eq.inputs.len();
    if shapes.len() != n {
        let what = if shapes.len() < n { "fewer" } else { "more" };
        return Err(Diagnostic::at(
            eq.span,
            format!(
                "{what} operands given than the einsum equation specifies: the equation has {n} operand term{}, {} operand{} given",
                if n == 1 { "" } else { "s" },
                shapes.len(),
                if shapes.len() == 1 { " was" } else { "s were" }
            ),
            format!("{n} term{}", if n == 1 { "" } else { "s" }),
        ));
    }

    // Labels in order of first appearance; counts over all operands (repeats count).
    let mut label_ids: BTreeMap<char, usize> = BTreeMap::new();
    let mut order: Vec<char> = Vec::new();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    let mut covered = Vec::with_capacity(n); // axes covered by each operand's ellipsis
    for (k, (term, shape)) in eq.inputs.iter().zip(shapes).enumerate() {
        let nlabels = term.labels().count();
        match term.ellipsis() {
            None if nlabels != shape.len() => {
                let msg = if nlabels > shape.len() {
                    format!("einsum equation has too many subscripts for operand {k}: {nlabels} given, but the operand has {} dimension{}", shape.len(), plural(shape.len()))
                } else {
                    format!("operand {k} has more dimensions ({}) than subscripts given ({nlabels}) and no '...' to cover the extra dimensions", shape.len())
                };
                return Err(Diagnostic::at(
                    term.span,
                    msg,
                    format!("operand {k} has shape {}", fmt_shape(shape)),
                ));
            }
            Some(_) if nlabels > shape.len() => {
                return Err(Diagnostic::at(
                    term.span,
                    format!("einsum equation has too many subscripts for operand {k}: {nlabels} labels besides '...', but the operand has {} dimension{}", shape.len(), plural(shape.len())),
                    format!("operand {k} has shape {}", fmt_shape(shape)),
                ));
            }
            _ => {}
        }
        covered.push(shape.len() - nlabels);
        for (c, _) in term.labels() {
            if let std::collections::btree_map::Entry::Vacant(v) = label_ids.entry(c) {
                v.insert(order.len());
                order.push(c);
            }
            *counts.entry(c).or_insert(0) += 1;
        }
    }
    let nbroadcast = covered.iter().copied().max().unwrap_or(0);

    // Output.
    let out_terms: Vec<OutSub> = match &eq.output {
        Some(term) => {
            let mut seen: BTreeMap<char, Span> = BTreeMap::new();
            let mut out = Vec::new();
            for s in &term.subscripts {
                match *s {
                    Subscript::Label(c, sp) => {
                        if let Some(&first) = seen.get(&c) {
                            return Err(Diagnostic::at(
                                sp,
                                format!("output subscript '{c}' appears more than once"),
                                "repeated here",
                            )
                            .with_secondary(first, "first here"));
                        }
                        if !label_ids.contains_key(&c) {
                            return Err(Diagnostic::at(
                                sp,
                                format!("output index '{c}' does not appear in any input"),
                                "not in any input",
                            ));
                        }
                        seen.insert(c, sp);
                        out.push(OutSub::Label(c));
                    }
                    Subscript::Ellipsis(_) => out.push(OutSub::Ellipsis),
                }
            }
            if term.ellipsis().is_none() && nbroadcast > 0 {
                let (k, _) = covered
                    .iter()
                    .enumerate()
                    .max_by_key(|&(k, &c)| (c, std::cmp::Reverse(k)))
                    .unwrap_or((0, &0));
                return Err(Diagnostic::at(
                    term.span,
                    format!("the output has no '...' but the inputs' ellipses cover {nbroadcast} dimension{}", plural(nbroadcast)),
                    "no '...' here",
                )
                .with_secondary(
                    eq.inputs[k].ellipsis().unwrap_or(eq.inputs[k].span),
                    format!("covers {} dimension{} of operand {k}", covered[k], plural(covered[k])),
                )
                .with_note("write '...' in the output to keep the broadcast dimensions"));
            }
            out
        }
        None => {
            let mut out = vec![OutSub::Ellipsis];
            // BTreeMap<char,_> iterates in code-point order: numpy/opt_einsum's sort.
            out.extend(
                counts
                    .iter()
                    .filter(|&(_, &n)| n == 1)
                    .map(|(&c, _)| OutSub::Label(c)),
            );
            out
        }
    };

    // Sizes of labels: repeats within an operand must match exactly; across operands a
    // size of 1 broadcasts.
    let mut size: Vec<Option<(usize, usize, Span)>> = vec![None; order.len()]; // (size, operand, span)
    for (k, (term, shape)) in eq.inputs.iter().zip(shapes).enumerate() {
        let axes = axis_labels(term, covered[k]);
        let mut local: BTreeMap<char, (usize, Span)> = BTreeMap::new();
        for (ax, a) in axes.iter().enumerate() {
            let AxisSub::Label(c, sp) = *a else { continue };
            let d = shape[ax];
            if let Some(&(d0, sp0)) = local.get(&c) {
                if d0 != d {
                    return Err(Diagnostic::at(
                        sp,
                        format!("dimensions in operand {k} for repeated index '{c}' do not match ({d0} != {d})"),
                        format!("size {d} here"),
                    )
                    .with_secondary(sp0, format!("size {d0} here")));
                }
                continue;
            }
            local.insert(c, (d, sp));
            let id = label_ids[&c];
            match size[id] {
                None => size[id] = Some((d, k, sp)),
                Some((d0, k0, sp0)) => {
                    if d0 == d || d == 1 {
                    } else if d0 == 1 {
                        size[id] = Some((d, k, sp));
                    } else {
                        return Err(Diagnostic::at(
                            sp,
                            format!("index '{c}' has size {d} in operand {k} but size {d0} in operand {k0}"),
                            format!("size {d} here"),
                        )
                        .with_secondary(sp0, format!("size {d0} here")));
                    }
                }
            }
        }
    }

    // Broadcast (ellipsis) shape, right-aligned.
    let mut bshape = vec![1usize; nbroadcast];
    let mut bsrc: Vec<Option<usize>> = vec![None; nbroadcast];
    for (k, (term, shape)) in eq.inputs.iter().zip(shapes).enumerate() {
        let Some(start) = term
            .subscripts
            .iter()
            .position(|s| matches!(s, Subscript::Ellipsis(_)))
        else {
            continue;
        };
        let c = covered[k];
        for j in 0..c {
            let d = shape[start + j];
            let b = nbroadcast - c + j;
            if d == bshape[b] || d == 1 {
                continue;
            }
            if bshape[b] == 1 {
                bshape[b] = d;
                bsrc[b] = Some(k);
                continue;
            }
            let k0 = bsrc[b].unwrap_or(0);
            return Err(Diagnostic::at(
                term.ellipsis().unwrap_or(term.span),
                format!(
                    "operands could not be broadcast together: broadcast dimension {b} has size {d} in operand {k} but {} in operand {k0}",
                    bshape[b]
                ),
                format!("operand {k} has shape {}", fmt_shape(shape)),
            )
            .with_secondary(
                eq.inputs[k0].ellipsis().unwrap_or(eq.inputs[k0].span),
                format!("operand {k0} has shape {}", fmt_shape(&shapes[k0])),
            ));
        }
    }

    // Index table: labels in first-appearance order, then broadcast axes.
    let mut indices: Vec<IndexInfo> = order
        .iter()
        .map(|&c| IndexInfo {
            name: c.to_string(),
            size: size[label_ids[&c]].map(|s| s.0).unwrap_or(0),
            kind: IndexKind::Label,
        })
        .collect();
    let bbase = indices.len();
    for (b, &d) in bshape.iter().enumerate() {
        indices.push(IndexInfo {
            name: format!("…{b}"),
            size: d,
            kind: IndexKind::Ellipsis,
        });
    }
    let mut operands = Vec::with_capacity(n);
    for (k, (term, shape)) in eq.inputs.iter().zip(shapes).enumerate() {
        let axes = axis_labels(term, covered[k]);
        let mut ids = Vec::with_capacity(axes.len());
        for (ax, a) in axes.iter().enumerate() {
            let global = match *a {
                AxisSub::Label(c, _) => label_ids[&c],
                AxisSub::Ellipsis(j) => bbase + nbroadcast - covered[k] + j,
            };
            if shape[ax] == 1 && indices[global].size != 1 {
                ids.push(indices.len());
                indices.push(IndexInfo {
                    name: format!("_{}", indices.len()),
                    size: 1,
                    kind: IndexKind::Broadcast,
                });
            } else {
                ids.push(global);
            }
        }
        operands.push(ids);
    }
    let mut output = Vec::new();
    for o in out_terms {
        match o {
            OutSub::Label(c) => output.push(label_ids[&c]),
            OutSub::Ellipsis => output.extend(bbase..bbase + nbroadcast),
        }
    }
    Ok(Resolved {
        indices,
        operands,
        output,
    })
}

enum OutSub {
    Label(char),
    Ellipsis,
}

#[derive(Clone, Copy)]
enum AxisSub {
    Label(char, Span),
    /// j-th axis covered by this operand's ellipsis.
    Ellipsis(usize),
}

fn axis_labels(term: &Term, covered: usize) -> Vec<AxisSub> {
    let mut out = Vec::new();
    for s in &term.subscripts {
        match *s {
            Subscript::Label(c, sp) => out.push(AxisSub::Label(c, sp)),
            Subscript::Ellipsis(_) => out.extend((0..covered).map(AxisSub::Ellipsis)),
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// numpy's sublist form: `einsum(op0, [0, 1], op1, [1, 2], [0, 2])`. Integers 0..52 map
/// to `A`–`Z`, `a`–`z`; `None` entries are `...`.
pub fn from_sublists(
    inputs: &[Vec<Option<usize>>],
    output: Option<&[Option<usize>]>,
) -> Result<String, Diagnostic> {
    fn term(subs: &[Option<usize>]) -> Result<String, Diagnostic> {
        let mut s = String::new();
        for sub in subs {
            match *sub {
                None => s.push_str("..."),
                Some(i) if i < 26 => s.push((b'A' + i as u8) as char),
                Some(i) if i < 52 => s.push((b'a' + (i - 26) as u8) as char),
                Some(i) => {
                    return Err(Diagnostic::new(format!(
                        "sublist subscript {i} is not within the valid range [0, 52)"
                    )))
                }
            }
        }
        Ok(s)
    }
    let mut eq = inputs
        .iter()
        .map(|t| term(t))
        .collect::<Result<Vec<_>, _>>()?
        .join(",");
    if let Some(o) = output {
        eq.push_str("->");
        eq.push_str(&term(o)?);
    }
    Ok(eq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(eq: &str, shapes: &[&[usize]]) -> Result<Resolved, Diagnostic> {
        let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
        resolve(&parse(eq)?, &shapes)
    }

    fn out_names(r: &Resolved) -> String {
        r.output
            .iter()
            .map(|&i| r.indices[i].name.clone())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn implicit_output_sorted_by_code_point() {
        let r = res("aB", &[&[2, 3]]).unwrap();
        assert_eq!(out_names(&r), "B a");
        let r = res("ij,jk", &[&[2, 3], &[3, 4]]).unwrap();
        assert_eq!(out_names(&r), "i k");
        let r = res("ii", &[&[3, 3]]).unwrap();
        assert_eq!(out_names(&r), "");
        let r = res("Àa,aà", &[&[2, 3], &[3, 4]]).unwrap();
        assert_eq!(out_names(&r), "À à");
    }

    #[test]
    fn ellipsis_broadcasts_right_aligned() {
        let r = res("...ij,...jk->...ik", &[&[2, 1, 3, 4], &[5, 4, 2]]).unwrap();
        assert_eq!(r.output_shape(), vec![2, 5, 3, 2]);
        let r = res("...ij,...jk", &[&[2, 1, 3, 4], &[5, 4, 2]]).unwrap();
        assert_eq!(r.output_shape(), vec![2, 5, 3, 2]);
    }

    #[test]
    fn size_one_labels_broadcast() {
        let r = res("ij,jk->ik", &[&[2, 1], &[3, 4]]).unwrap();
        assert_eq!(r.output_shape(), vec![2, 4]);
        assert_eq!(r.indices[r.operands[0][1]].kind, IndexKind::Broadcast);
        assert!(res("ab,bc->ac", &[&[2, 0], &[3, 4]]).is_err());
        let r = res("ab,bc->ac", &[&[2, 0], &[1, 4]]).unwrap();
        assert_eq!(r.output_shape(), vec![2, 4]);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = res("ij,jk->ikl", &[&[2, 3], &[3, 4]]).unwrap_err();
        assert!(
            e.message
                .contains("output index 'l' does not appear in any input"),
            "{}",
            e.message
        );
        assert!(res("ii", &[&[2, 3]])
            .unwrap_err()
            .message
            .contains("repeated index 'i'"));
        assert!(res("i->ii", &[&[2]])
            .unwrap_err()
            .message
            .contains("more than once"));
        assert!(res("...->", &[&[1]])
            .unwrap_err()
            .message
            .contains("no '...'"));
        assert!(res(". ..", &[&[2]]).is_err());
        assert!(res("a->1", &[&[2]]).is_err());
        assert!(res("ij", &[&[2]]).is_err());
        assert!(res("i", &[&[2, 3]]).is_err());
        assert!(res("", &[&[2], &[2]]).is_err());
        assert!(res("ij,jk", &[&[2, 3]]).is_err());
        assert!(res("ij->ik->k", &[&[2, 3]]).is_err());
        assert!(res("i...i...", &[&[2, 2, 2]]).is_err());
        let e = res("ij,jk->ik", &[&[2, 3], &[4, 5]]).unwrap_err();
        assert!(
            e.message
                .contains("index 'j' has size 4 in operand 1 but size 3 in operand 0"),
            "{}",
            e.message
        );
        assert!(e.primary.is_some() && e.secondary.len() == 1);
    }

    #[test]
    fn sublists() {
        assert_eq!(
            from_sublists(
                &[vec![Some(0), Some(27)], vec![Some(27), Some(2)]],
                Some(&[Some(0), Some(2)])
            )
            .unwrap(),
            "Ab,bC->AC"
        );
        assert!(from_sublists(&[vec![Some(52)]], None).is_err());
    }

    /// Random strings over the equation alphabet, with random shapes: errors, never panics,
    /// and every diagnostic renders.
    #[test]
    fn never_panics_on_random_equations() {
        let alphabet: Vec<char> = "abcij.,->  Aα😀0%".chars().collect();
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as usize
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = next() % 12;
            let eq: String = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            let shapes: Vec<Vec<usize>> = (0..1 + next() % 4)
                .map(|_| (0..next() % 5).map(|_| next() % 4).collect())
                .collect();
            match parse(&eq).and_then(|p| resolve(&p, &shapes)) {
                Ok(r) => {
                    accepted += 1;
                    assert_eq!(r.operands.len(), shapes.len());
                }
                Err(d) => {
                    assert!(!d.render("equation", &eq).is_empty());
                }
            }
        }
        assert!(accepted > 0);
    }
}
