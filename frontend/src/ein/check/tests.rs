//! Checker tests: the corpus, the resolved tables, and every kind of error with its
//! labels.

use super::{check, closest, Checked, TensorKind};
use crate::diag::Diagnostic;
use crate::ein::ast::DType;
use crate::ein::parse::parse;
use crate::ein::testutil::{corpus, expectation};

fn parse_ok(src: &str) -> crate::ein::ast::Program {
    parse(src).unwrap_or_else(|d| panic!("parse failed: {}\n{}", d.message, d.render("t.ein", src)))
}

fn ok(src: &str) -> Checked {
    check(&parse_ok(src))
        .unwrap_or_else(|d| panic!("check failed: {}\n{}", d.message, d.render("t.ein", src)))
}

fn err(src: &str) -> Diagnostic {
    match check(&parse_ok(src)) {
        Ok(c) => panic!("expected a check error, got {c:?}"),
        Err(d) => d,
    }
}

fn text(src: &str, span: crate::span::Span) -> &str {
    &src[span.range()]
}

/// Asserts the message, and the text under the primary and (first) secondary labels.
fn expect(src: &str, message: &str, primary: &str, secondary: Option<&str>) {
    let d = err(src);
    assert!(
        d.message.contains(message),
        "{src:?}: got {:?}, want {message:?}",
        d.message
    );
    let p = d
        .primary
        .as_ref()
        .unwrap_or_else(|| panic!("{src:?}: no primary label"));
    assert_eq!(text(src, p.span), primary, "{src:?}: primary label");
    assert_eq!(
        d.secondary.first().map(|s| text(src, s.span)),
        secondary,
        "{src:?}: secondary label"
    );
}

#[test]
fn ok_corpus_checks() {
    for (name, src) in corpus("ok") {
        let program = parse_ok(&src);
        let c = check(&program).unwrap_or_else(|d| panic!("{name}: {}", d.render(&name, &src)));
        assert!(!c.outputs.is_empty(), "{name}: no outputs");
        assert!(
            c.dims.iter().all(|d| d.size.is_some_and(|n| n <= 16)),
            "{name}: unsized or large dim"
        );
        for (n, stmt) in c.stmts.iter().enumerate() {
            assert_eq!(
                c.tensors[stmt.target].kind,
                TensorKind::Result { stmt: n },
                "{name}"
            );
        }
    }
}

#[test]
fn err_corpus_check_phase() {
    for (name, src) in corpus("err") {
        let (phase, want) = expectation(&name, &src);
        if phase != "check" {
            continue;
        }
        let d = err(&src);
        assert!(
            d.message.contains(&want),
            "{name}: message {:?} lacks {want:?}",
            d.message
        );
        // Every error but the empty program has a place in the text.
        assert!(
            d.primary.is_some() || name == "empty_program.ein",
            "{name}: no primary label"
        );
        let rendered = d.render(&name, &src);
        assert!(rendered.contains(&d.message), "{name}: {rendered}");
    }
}

#[test]
fn tables_and_lookups() {
    let src =
        "dim i = 4, j = 3, k\ninput A[i, j]: f32\ninput s: c64\nlayout A packed[j, i] slots=16\n\
               C[i, k] = A[i, j] * B[j, k]\n";
    // `B` is undeclared: first make sure that is caught, then declare it.
    assert!(err(src).message.contains("unknown tensor 'B'"));
    let src = format!("{src}input B[j, k]: f64\nD[i] = sum[k](C[i, k]) + 2.5 * s\n");
    let c = ok(&src);
    assert_eq!(c.dim_by_name("k"), Some(2));
    assert_eq!(c.dims[2].size, None);
    assert_eq!(c.dims[0].size, Some(4));
    assert_eq!(text(&src, c.dims[1].span), "j");
    // Inputs first (declaration order), then results.
    let names: Vec<&str> = c.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["A", "s", "B", "C", "D"]);
    assert_eq!(c.inputs().collect::<Vec<_>>(), [0, 1, 2]);
    let a = &c.tensors[0];
    assert_eq!(
        (a.axes.as_slice(), a.dtype, a.kind),
        (&[0, 1][..], Some(DType::F32), TensorKind::Input)
    );
    assert!(a.layout.as_ref().is_some_and(|l| l.kind.name == "packed"));
    let cc = c.tensor_by_name("C").expect("C");
    assert_eq!(c.tensors[cc].dtype, None);
    assert_eq!(c.tensors[cc].kind, TensorKind::Result { stmt: 0 });
    assert_eq!(c.stmts[0].indices, [0, 2]);
    assert_eq!(c.stmts[1].target, c.tensor_by_name("D").expect("D"));
    assert_eq!(
        text(&src, c.stmts[1].span),
        "D[i] = sum[k](C[i, k]) + 2.5 * s"
    );
    assert_eq!(c.tensor_by_name("nope"), None);
    // No `output`: the last statement's result.
    assert_eq!(c.outputs, [c.tensor_by_name("D").expect("D")]);
}

#[test]
fn outputs_may_name_inputs_and_come_first() {
    let c = ok("output C, A\ndim i = 2\ninput A[i]: f32\nC[i] = A[i]\noutput C2\nC2 = C[i]");
    let ids: Vec<&str> = c
        .outputs
        .iter()
        .map(|&t| c.tensors[t].name.as_str())
        .collect();
    assert_eq!(ids, ["C", "A", "C2"]);
}

#[test]
fn name_errors() {
    expect(
        "dim i = 2, j = 2\ninput A[i, j]: f32\nB[i] = A[i, jj]",
        "unknown index 'jj'; did you mean 'j'?",
        "jj",
        None,
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB[i] = A[x]",
        "unknown index 'x'",
        "x",
        None,
    );
    assert!(!err("dim i = 2\ninput A[i]: f32\nB[i] = A[x]")
        .message
        .contains("did you mean"));
    expect(
        "dim i = 2\ninput Aa[i]: f32\nB[i] = A[i]",
        "unknown tensor 'A'; did you mean 'Aa'?",
        "A",
        None,
    );
    let d = err("dim i = 2\ninput A[i]: f32\nB[i] = i[i]");
    assert!(
        d.notes.iter().any(|n| n.contains("'i' is a dim")),
        "{:?}",
        d.notes
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nC[i] = D[i]\nD[i] = A[i]",
        "'D' is used before it is defined",
        "D",
        Some("D"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nC[i] = C[i] + A[i]",
        "'C' is used before it is defined",
        "C",
        Some("C"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB = einsum(\"i->\", Z)",
        "unknown tensor 'Z'",
        "Z",
        None,
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB = einsum(\"i->\", C)\nC = A[i]",
        "used before it is defined",
        "C",
        Some("C"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB[i] = einsum(\"i->i\", A)[q]",
        "unknown index 'q'",
        "q",
        None,
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB = sum[k](A[i])",
        "unknown index 'k'",
        "k",
        None,
    );
    expect(
        "dim i = 2\ninput A[q]: f32\nB = A[i]",
        "unknown index 'q'",
        "q",
        None,
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB[z] = A[i]",
        "unknown index 'z'",
        "z",
        None,
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB[i] = A[i]\noutput Q",
        "unknown output 'Q'",
        "Q",
        None,
    );
}

#[test]
fn duplicate_errors() {
    expect(
        "dim i = 2, j = 3, i = 4\ninput A[i]: f32\nB = A[i]",
        "duplicate dim 'i'",
        "i",
        Some("i"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\ninput A[i]: f64\nB = A[i]",
        "duplicate input 'A'",
        "A",
        Some("A"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nA[i] = A[i] * 2",
        "'A' is already declared as an input",
        "A",
        Some("A"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB = A[i]\nB = A[i]",
        "duplicate definition of 'B'",
        "B",
        Some("B"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB = A[i]\noutput B, B",
        "'B' is listed as an output twice",
        "B",
        Some("B"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nD[i, i] = A[i]",
        "index 'i' appears twice on the left-hand side",
        "i",
        Some("i"),
    );
    expect(
        "dim i = 2, j = 2\ninput A[i, j]: f32\nB = sum[i, j, i](A[i, j])",
        "index 'i' is listed twice in sum[...]",
        "i",
        Some("i"),
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB[i] = softmax[i, i](A[i])",
        "listed twice in softmax[...]",
        "i",
        Some("i"),
    );
    expect(
        "dim i = 0\ninput A[i]: f32\nB = A[i]",
        "dim 'i' has size 0",
        "0",
        None,
    );
}

#[test]
fn rank_and_size_errors() {
    let src = "dim i = 4, j = 4, k = 4\ninput A[i, j]: f32\nB[i] = A[i, j, k]";
    expect(
        src,
        "A has 2 axes but 3 indices are given",
        "A[i, j, k]",
        Some("A"),
    );
    expect(
        "dim i = 4\ninput A[i]: f32\nB[i] = A",
        "A has 1 axis but 0 indices are given",
        "A",
        Some("A"),
    );
    expect(
        "dim i = 4\ninput s: f32\nB[i] = s[i]",
        "s has 0 axes but 1 index is given",
        "s[i]",
        Some("s"),
    );
    expect(
        "dim i = 4\ninput A[i]: f32\nC[i] = A[i]\nD = C[i, i]",
        "C has 1 axis but 2 indices",
        "C[i, i]",
        Some("C"),
    );
    let src = "dim i = 4, j = 5, x = 3\ninput A[i, j]: f32\nB[x] = A[x, j]";
    expect(
        src,
        "index 'x' has size 3 here but axis 0 of A has size 4 (index 'i')",
        "x",
        Some("i"),
    );
    // A diagonal needs equal sizes; the result's own axes are checked the same way.
    expect(
        "dim i = 4, j = 5\ninput T[i, j]: f32\nd[i] = T[i, i]",
        "axis 1 of T has size 5 (index 'j')",
        "i",
        Some("j"),
    );
    expect(
        "dim i = 4, j = 5\ninput A[i]: f32\nC[i] = A[i]\nD[j] = C[j]",
        "axis 0 of C has size 4",
        "j",
        Some("i"),
    );
    // Unknown sizes never conflict.
    ok("dim i = 4, n\ninput A[i]: f32\nB[n] = A[n]");
}

#[test]
fn call_arity() {
    expect(
        "dim i = 2\ninput A[i]: f32\nB[i] = exp(A[i], 2)",
        "'exp' takes 1 argument but 2 were given",
        "exp(A[i], 2)",
        None,
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB[i] = max(A[i])",
        "'max' takes 2 arguments but 1 was given",
        "max(A[i])",
        None,
    );
    expect(
        "dim i = 2\ninput A[i]: f32\nB[i] = relu()",
        "'relu' takes 1 argument but 0 were given",
        "relu()",
        None,
    );
}

#[test]
fn layout_errors() {
    let base = "dim i = 4, j = 4, k = 2\ninput A[i, j]: f32\nB[i] = A[i, j]\n";
    let case = |layout: &str| format!("{base}{layout}");
    expect(
        &case("layout A packed[i]"),
        "the layout of A does not list index 'j'",
        "i",
        Some("j"),
    );
    expect(
        &case("layout A packed[i, j, k]"),
        "index 'k' is not an index of A",
        "k",
        Some("A"),
    );
    expect(
        &case("layout A packed[i, i]"),
        "index 'i' is listed twice in the layout of A",
        "i",
        Some("i"),
    );
    expect(
        &case("layout B packed[i]"),
        "layouts can only be declared for inputs",
        "B",
        Some("B"),
    );
    expect(&case("layout Q packed[i]"), "unknown input 'Q'", "Q", None);
    expect(
        &case("layout A dense[i, j]"),
        "unknown layout kind 'dense'",
        "dense",
        None,
    );
    expect(
        &case("layout A packed[i, j] slots=100"),
        "slots must be a power of two, but 100 is not",
        "slots=100",
        None,
    );
    expect(
        &case("layout A packed[i, j] slots=0"),
        "power of two",
        "slots=0",
        None,
    );
    expect(
        &case("layout A packed[i, j] slots=8"),
        "slots=8 is too small: A has 16 elements",
        "slots=8",
        Some("A"),
    );
    expect(
        &case("layout A packed[i, j] slots=16 slots=32"),
        "given twice",
        "slots=32",
        Some("slots=16"),
    );
    expect(
        &case("layout A packed[i, j] rows=4"),
        "unknown layout option 'rows'",
        "rows",
        None,
    );
    expect(
        &case("layout A packed[i, j]\nlayout A packed[j, i]"),
        "duplicate layout for 'A'",
        "layout A packed[j, i]",
        Some("layout A packed[i, j]"),
    );
    // A square matrix declared with one index twice lays out as that index twice.
    ok("dim i = 4\ninput S[i, i]: f32\nlayout S packed[i, i] slots=16\nB = S[i, i]");
    // Unknown sizes: the slot count is checked at run time.
    ok("dim i = 4, n\ninput A[i, n]: f32\nlayout A packed[n, i] slots=4\nB = A[i, n]");
}

#[test]
fn empty_program() {
    for src in ["", "# nothing", "dim i = 2\ninput A[i]: f32\noutput A"] {
        let d = err(src);
        assert_eq!(d.message, "the program has no statements");
    }
}

#[test]
fn suggestions() {
    assert_eq!(closest("jj", ["i", "j"]), Some("j"));
    assert_eq!(closest("x", ["i", "j"]), None);
    assert_eq!(closest("heads", ["head", "heads_"]), Some("head"));
    assert_eq!(closest("abcd", ["wxyz"]), None);
    assert_eq!(closest(&"a".repeat(10_000), ["a"]), None);
}
