//! Parser tests: the corpus, precedence and spans, error messages, round trips through
//! the printer, and a deterministic "never panics" sweep.

use super::parse;
use crate::diag::Diagnostic;
use crate::ein::ast::{BinOp, Expr, ExprKind, Func, Item, Program, ReduceOp};
use crate::ein::check::check;
use crate::ein::testutil::{corpus, expectation};

fn ok(src: &str) -> Program {
    parse(src).unwrap_or_else(|d| panic!("parse failed: {}\n{}", d.message, d.render("t.ein", src)))
}

fn err(src: &str) -> Diagnostic {
    match parse(src) {
        Ok(p) => panic!("expected a parse error, got {p:?}"),
        Err(d) => d,
    }
}

/// The text a span covers.
fn text(src: &str, span: crate::span::Span) -> &str {
    &src[span.range()]
}

/// The right-hand side of the only assignment in `src`.
fn rhs(src: &str) -> Expr {
    ok(src)
        .items
        .into_iter()
        .find_map(|item| match item {
            Item::Assign(a) => Some(a.value),
            _ => None,
        })
        .expect("an assignment")
}

fn print_expr(src: &str) -> String {
    rhs(src).to_string()
}

#[test]
fn ok_corpus_parses() {
    let files = corpus("ok");
    assert!(files.len() >= 14, "only {} ok programs", files.len());
    for (name, src) in &files {
        if let Err(d) = parse(src) {
            panic!("{name}: {}", d.render(name, src));
        }
    }
}

#[test]
fn err_corpus_parse_phase() {
    let files = corpus("err");
    assert!(files.len() >= 12, "only {} err programs", files.len());
    for (name, src) in &files {
        let (phase, want) = expectation(name, src);
        match (phase.as_str(), parse(src)) {
            ("parse", Ok(_)) => panic!("{name}: parsed but should not"),
            ("parse", Err(d)) => assert!(
                d.message.contains(&want),
                "{name}: message {:?} lacks {want:?}",
                d.message
            ),
            ("check", Err(d)) => panic!("{name}: should parse: {}", d.render(name, src)),
            ("check", Ok(_)) => {}
            (other, _) => panic!("{name}: unknown phase {other}"),
        }
    }
}

#[test]
fn printed_corpus_round_trips() {
    for (name, src) in corpus("ok") {
        let once = ok(&src).to_string();
        let twice = parse(&once)
            .unwrap_or_else(|d| panic!("{name}: reprint does not parse: {}\n{once}", d.message))
            .to_string();
        assert_eq!(once, twice, "{name}");
    }
}

#[test]
fn prints_minimal_parentheses() {
    let cases = [
        ("x = a - (b - c)", "a - (b - c)"),
        ("x = (a - b) - c", "a - b - c"),
        ("x = (a + b) * c", "(a + b) * c"),
        ("x = a + b * c", "a + b * c"),
        ("x = a / (b * c)", "a / (b * c)"),
        ("x = -a * b", "-a * b"),
        ("x = -(a * b)", "-(a * b)"),
        ("x = - - a", "--a"),
        ("x = 2 * 1e-3 + .5", "2.0 * 0.001 + 0.5"),
        (
            "x = max[j](A[i, j]) + max(a, b)",
            "max[j](A[i, j]) + max(a, b)",
        ),
        (
            "x = einsum(\"ij,jk->ik\", A, B)[i, k] * s[]",
            "einsum(\"ij,jk->ik\", A, B)[i, k] * s",
        ),
        ("x = softmax[j,k,](S[i,j,k])", "softmax[j, k](S[i, j, k])"),
    ];
    for (src, want) in cases {
        assert_eq!(print_expr(src), want, "{src}");
    }
}

#[test]
fn precedence_and_associativity() {
    let e = rhs("x = a - b - c * d / -e");
    let ExprKind::Binary {
        op: BinOp::Sub,
        lhs,
        rhs,
    } = e.kind
    else {
        panic!("top is not a subtraction")
    };
    assert!(matches!(lhs.kind, ExprKind::Binary { op: BinOp::Sub, .. }));
    let ExprKind::Binary {
        op: BinOp::Div,
        lhs: prod,
        rhs: neg,
    } = rhs.kind
    else {
        panic!("right operand is not a division")
    };
    assert!(matches!(prod.kind, ExprKind::Binary { op: BinOp::Mul, .. }));
    assert!(matches!(neg.kind, ExprKind::Neg(_)));
}

#[test]
fn spans_point_at_source_text() {
    let src = "dim i = 4, j\ninput A[i, j]: f64\nC[i] = sum[j](A[i, j]) + 2.5 * s\n";
    let p = ok(src);
    let Item::Dim(dims) = &p.items[0] else {
        panic!()
    };
    assert_eq!(text(src, dims[0].name.span), "i");
    assert_eq!(dims[0].size.map(|(n, s)| (n, text(src, s))), Some((4, "4")));
    assert_eq!(dims[1].size, None);
    let Item::Input(input) = &p.items[1] else {
        panic!()
    };
    assert_eq!(text(src, input.span), "input A[i, j]: f64");
    assert_eq!(text(src, input.dtype_span), "f64");
    let Item::Assign(a) = &p.items[2] else {
        panic!()
    };
    assert_eq!(text(src, a.span), "C[i] = sum[j](A[i, j]) + 2.5 * s");
    assert_eq!(text(src, a.value.span), "sum[j](A[i, j]) + 2.5 * s");
    let ExprKind::Binary { lhs, rhs, .. } = &a.value.kind else {
        panic!()
    };
    assert_eq!(text(src, lhs.span), "sum[j](A[i, j])");
    let ExprKind::Reduce {
        op,
        op_span,
        indices,
        arg,
    } = &lhs.kind
    else {
        panic!()
    };
    assert_eq!((*op, text(src, *op_span)), (ReduceOp::Sum, "sum"));
    assert_eq!(text(src, indices[0].span), "j");
    assert_eq!(text(src, arg.span), "A[i, j]");
    assert_eq!(text(src, rhs.span), "2.5 * s");
    // Parentheses are part of the span of what they enclose.
    let paren = "x = (a + b) * c";
    assert_eq!(text(paren, rhs_span(paren)), "(a + b) * c");
}

fn rhs_span(src: &str) -> crate::span::Span {
    rhs(src).span
}

#[test]
fn reductions_calls_and_einsum() {
    assert!(matches!(
        rhs("x = max[j](A[j])").kind,
        ExprKind::Reduce {
            op: ReduceOp::Max,
            ..
        }
    ));
    assert!(matches!(
        rhs("x = max(a, b)").kind,
        ExprKind::Call { func: Func::Max, ref args, .. } if args.len() == 2
    ));
    // Arity is the checker's business: the parser keeps every argument.
    assert!(matches!(
        rhs("x = exp(a, b, c)").kind,
        ExprKind::Call { func: Func::Exp, ref args, .. } if args.len() == 3
    ));
    assert!(matches!(rhs("x = exp()").kind, ExprKind::Call { ref args, .. } if args.is_empty()));
    let ExprKind::Einsum {
        equation,
        operands,
        output,
        ..
    } = rhs("F[i] = einsum( \"ij,jk->ik\" , A ,B )[i, k]").kind
    else {
        panic!()
    };
    assert_eq!(equation, "ij,jk->ik");
    assert_eq!(operands.len(), 2);
    assert_eq!(output.map(|o| o.len()), Some(2));
    assert!(matches!(
        rhs("E = einsum(\"i->\", A)").kind,
        ExprKind::Einsum { output: None, .. }
    ));
    assert!(
        matches!(rhs("x = s").kind, ExprKind::Tensor { ref indices, .. } if indices.is_empty())
    );
    assert!(
        matches!(rhs("x = s[]").kind, ExprKind::Tensor { ref indices, .. } if indices.is_empty())
    );
}

#[test]
fn statements_and_continuations() {
    let p = ok("dim i = 2; dim j = 3;;\n\n  C[i] = A[i] +\n  B[i]; output C");
    assert_eq!(p.items.len(), 4);
    // Newlines inside brackets and parentheses are whitespace.
    ok("C[i,\n  j] = exp(\n A[i, j]\n ) * sum[\nk\n](B[\ni, k])\n");
    ok("dim i = 4,\n    j = 2\noutput A,\n  B\n");
    // Windows line endings and comments of both kinds.
    ok("dim i = 4 // size\r\n# comment\r\nC[i] = A[i] # trailing\r\n");
    // `//` is always a comment, never two divisions.
    assert_eq!(print_expr("x = a // b\n"), "a");
    // A newline outside brackets ends the statement.
    let d = err("C[i] = A[i]\n  * B[i]");
    assert!(d.message.contains("expected a statement"), "{}", d.message);
    // The specification's syntax example, with an unsized dim.
    ok(
        "dim i = 64, j = 32, k\ndim batch = 8, head=4\ninput A[i, j]: f32\ninput s: f32\n\
        layout A packed[i, j] slots=8192\nC[i, k] = A[i, j] * B[j, k]\n",
    );
    assert_eq!(ok("").items.len(), 0);
    assert_eq!(ok("# only a comment").items.len(), 0);
}

#[test]
fn numbers() {
    for (src, want) in [
        ("1", 1.0),
        ("2.5", 2.5),
        (".5", 0.5),
        ("2.", 2.0),
        ("1e-3", 1e-3),
        ("6.02E+2", 602.0),
    ] {
        let e = rhs(&format!("x = {src}"));
        assert!(
            matches!(e.kind, ExprKind::Number(v) if v == want),
            "{src}: {e:?}"
        );
    }
    assert!(err("x = 1e999").message.contains("out of range"));
    assert!(err("x = 2x")
        .message
        .contains("invalid number literal '2x'"));
    assert!(err("x = 1e")
        .message
        .contains("invalid number literal '1e'"));
    assert!(err("dim i = 2.5")
        .message
        .contains("whole-number size for dim 'i'"));
    assert!(err("dim i = 99999999999999999999999")
        .message
        .contains("too large"));
}

#[test]
fn unclosed_bracket_points_at_both_ends() {
    let src = "C[i, k] = A[i, j * B[j, k]";
    let d = err(src);
    assert!(
        d.message
            .starts_with("expected ']' to close the index list, found '*'"),
        "{}",
        d.message
    );
    assert_eq!(text(src, d.primary.as_ref().expect("primary").span), "*");
    assert_eq!(d.secondary.len(), 1);
    assert_eq!(d.secondary[0].span.start, 11);
    assert_eq!(text(src, d.secondary[0].span), "[");
    assert_eq!(d.secondary[0].message, "index list opened here");
    let rendered = d.render("t.ein", src);
    assert!(rendered.contains("index list opened here"), "{rendered}");

    let d = err("x = (a + b");
    assert!(
        d.message
            .contains("expected ')' to close the parenthesis, found end of input"),
        "{}",
        d.message
    );
    let d = err("x = exp(a, b");
    assert!(
        d.message.contains("argument list of 'exp'"),
        "{}",
        d.message
    );
    let d = err("x = sum[j](a b)");
    assert!(
        d.message
            .contains("expected ')' to close the operand of sum"),
        "{}",
        d.message
    );
    let d = err("x = einsum(\"i->\", A B)");
    assert!(
        d.message.contains("to close the einsum call"),
        "{}",
        d.message
    );
}

#[test]
fn syntax_error_messages() {
    let cases = [
        (
            "C[i] A[i]",
            "expected '=' after the left-hand side, found 'A'",
        ),
        (
            "C[i] = A[i] B[i]",
            "expected an operator or the end of the statement, found 'B'",
        ),
        ("C[i] = A[i] $", "unexpected character '$'"),
        ("C[i] = ", "expected an expression, found end of input"),
        (
            "C[i] = A[i] *\n",
            "expected an expression, found end of input",
        ),
        ("C[i,] = A[1]", "expected an index name, found '1'"),
        ("123 = x", "expected a statement"),
        ("input A[i]", "expected ':' and a dtype, found end of input"),
        ("input A[i]: float", "unknown dtype 'float'"),
        (
            "input dim[i]: f32",
            "'dim' is a keyword and cannot be used as an input name",
        ),
        (
            "input exp[i]: f32",
            "'exp' is a built-in function and cannot be used as an input name",
        ),
        (
            "output[i] = A[i]",
            "'output' is a keyword and cannot be used as a tensor name",
        ),
        ("layout = A[i]", "'layout' is a keyword"),
        (
            "x = A[i] + dim",
            "'dim' is a keyword and cannot be used as a tensor name",
        ),
        (
            "x = A[input]",
            "'input' is a keyword and cannot be used as an index name",
        ),
        ("dim = 4", "'dim' is a keyword"),
        (
            "dim i = 4 j = 3",
            "expected the end of the statement (a newline or ';'), found 'j'",
        ),
        (
            "sum[i] = A[i]",
            "'sum' is a built-in function and cannot be used as a tensor name",
        ),
        (
            "x = sum(A[i])",
            "'sum' needs the list of indices it reduces over",
        ),
        (
            "x = softmax(A[i])",
            "'softmax' needs the list of indices it normalises over",
        ),
        (
            "x = exp[i](A[i])",
            "'exp' is an elementwise function, not a reduction",
        ),
        (
            "x = exp + 1",
            "expected '(' after function 'exp', found '+'",
        ),
        ("x = foo(A[i])", "unknown function 'foo'"),
        (
            "x = sigmod(a)",
            "unknown function 'sigmod'; did you mean 'sigmoid'?",
        ),
        ("x = \"ij\"", "a string can only be the equation of einsum"),
        (
            "x = einsum(A, B)",
            "expected the einsum equation as a string",
        ),
        (
            "x = einsum(\"ij\", A[i, j])",
            "einsum operands are plain tensor names",
        ),
        ("x = einsum(\"ij)", "unterminated string"),
        (
            "x = einsum(\"ij\")",
            "einsum needs at least one operand tensor",
        ),
        (
            "layout A packed slots=8",
            "expected '[' and the index order of the layout, found 'slots'",
        ),
        (
            "layout A packed[i] slots 8",
            "expected '=' after layout option 'slots', found '8'",
        ),
        (
            "layout A packed[i] slots=1.5",
            "a whole-number value for layout option 'slots'",
        ),
        ("x = A[i] \u{00e9}", "unexpected character '\u{00e9}'"),
        ("x = a\u{0}", "unexpected character '\\0'"),
    ];
    for (src, want) in cases {
        let d = err(src);
        assert!(
            d.message.contains(want),
            "{src:?}: got {:?}, want {want:?}",
            d.message
        );
        assert!(d.primary.is_some(), "{src:?}: no primary label");
    }
}

fn nested(depth: usize) -> String {
    format!("x = {}a{}", "(".repeat(depth), ")".repeat(depth))
}

#[test]
fn nesting_limit() {
    // One level goes to the statement's own expression.
    ok(&nested(super::MAX_NESTING - 1));
    let d = err(&nested(super::MAX_NESTING));
    assert!(d.message.contains("nested too deeply"), "{}", d.message);
    for src in [
        nested(100_000),
        format!("x = {}a", "-".repeat(100_000)),
        format!("x = {}a", "exp(".repeat(100_000)),
        format!("x = {}a", "sum[i](".repeat(100_000)),
        format!("x = {}a", "[".repeat(100_000)),
        format!("C[{}", "[".repeat(100_000)),
    ] {
        let d = err(&src);
        assert!(d.primary.is_some(), "{}", d.message);
    }
}

#[test]
fn long_chains_are_bounded() {
    let chain = |n: usize| format!("x = a{}", " + a".repeat(n));
    // A leaf has depth 1, so a chain of n operators has depth n + 1.
    ok(&chain(super::MAX_TREE_DEPTH - 1));
    assert!(err(&chain(super::MAX_TREE_DEPTH))
        .message
        .contains("too deep"));
    let d = err(&chain(100_000));
    assert!(
        d.message.contains("expression is too deep"),
        "{}",
        d.message
    );
    let d = err(&format!(
        "x = a{}",
        " * (a".repeat(60) + &" + a".repeat(300) + &")".repeat(60)
    ));
    assert!(d.message.contains("too deep"), "{}", d.message);
}

/// Deterministic pseudo-random numbers (no dependency needed for a test sweep).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

/// Parse, check, render and round-trip `src`; any panic fails the test.
fn exercise(src: &str) {
    match parse(src) {
        Ok(program) => {
            let printed = program.to_string();
            if let Err(d) = parse(&printed) {
                panic!(
                    "reprint of {src:?} does not parse: {}\n{printed}",
                    d.message
                );
            }
            if let Err(d) = check(&program) {
                let _ = d.render("fuzz.ein", src);
            }
        }
        Err(d) => {
            let _ = d.render("fuzz.ein", src);
        }
    }
}

#[test]
fn never_panics_on_prefixes_and_mutations() {
    const PIECES: [&str; 24] = [
        "[",
        "]",
        "(",
        ")",
        ",",
        ";",
        ":",
        "=",
        "+",
        "-",
        "*",
        "/",
        "\"",
        "#",
        "\n",
        "i",
        "A",
        "1e5",
        ".",
        "\u{e9}",
        "\u{1F600}",
        "\0",
        "sum[",
        "max(",
    ];
    let mut rng = Lcg(0x5eed);
    let mut runs = 0;
    for (_, src) in corpus("ok").iter().chain(corpus("err").iter()) {
        let bounds: Vec<usize> = src.char_indices().map(|(k, _)| k).collect();
        for &end in &bounds {
            exercise(&src[..end]);
            runs += 1;
        }
        for _ in 0..300 {
            let mut s = src.clone();
            for _ in 0..1 + rng.next() % 3 {
                let cuts: Vec<usize> = s.char_indices().map(|(k, _)| k).chain([s.len()]).collect();
                let at = cuts[rng.next() % cuts.len()];
                match rng.next() % 3 {
                    0 => s.insert_str(at, PIECES[rng.next() % PIECES.len()]),
                    1 => {
                        if let Some(c) = s[at..].chars().next() {
                            s.replace_range(at..at + c.len_utf8(), "");
                        }
                    }
                    _ => {
                        if let Some(c) = s[at..].chars().next() {
                            s.replace_range(
                                at..at + c.len_utf8(),
                                PIECES[rng.next() % PIECES.len()],
                            );
                        }
                    }
                }
            }
            exercise(&s);
            runs += 1;
        }
    }
    assert!(runs > 10_000, "only {runs} runs");
}
