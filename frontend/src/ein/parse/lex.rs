//! Tokens, whitespace and the error plumbing shared by the statement and expression
//! parsers.
//!
//! The parsers work directly on `&str` with nom combinators; there is no separate token
//! stream. A byte offset is always `src.len() - rest.len()`, because every `rest` the
//! parsers see is a suffix of the source.

use crate::diag::Diagnostic;
use crate::span::Span;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, digit0, digit1, one_of, satisfy};
use nom::combinator::opt;
use nom::error::{ErrorKind, ParseError};
use nom::multi::many0_count;
use nom::{IResult, Parser};
use std::cell::Cell;

/// Deepest nesting of parentheses, calls, reductions and unary minus. Keeps the
/// recursive-descent parser (and every recursive pass after it) far from the stack limit.
pub const MAX_NESTING: usize = 64;

/// Deepest expression tree. A flat chain `a + b + c + ...` is a left-deep tree, and the
/// checker, the printer and `Drop` all recurse over it, so its length is bounded too.
pub const MAX_TREE_DEPTH: usize = 256;

/// Statement keywords. They are recognised only at the start of a statement but are
/// reserved everywhere, so that `dim[i] = ...` gets a clear message instead of a confusing one.
pub(crate) const KEYWORDS: [&str; 4] = ["dim", "input", "layout", "output"];

/// Names that mean a built-in in expression position and so cannot name a tensor
/// (`max[j](x)` would otherwise be ambiguous with a tensor called `max`).
pub(crate) const BUILTINS: [&str; 13] = [
    "exp",
    "log",
    "sqrt",
    "tanh",
    "abs",
    "relu",
    "sigmoid",
    "max",
    "min",
    "sum",
    "logsumexp",
    "softmax",
    "einsum",
];

/// The parser's error. `Error` (backtrackable) values usually carry no diagnostic: they
/// only say "this alternative does not start here". `Failure` values always carry the
/// diagnostic to report, built where the most context is available.
#[derive(Debug)]
pub(crate) struct PError {
    /// Length of the unparsed rest at the failure point (offset = src.len() - rest_len).
    pub rest_len: usize,
    pub diag: Option<Box<Diagnostic>>,
}

impl ParseError<&str> for PError {
    fn from_error_kind(input: &str, _kind: ErrorKind) -> Self {
        PError {
            rest_len: input.len(),
            diag: None,
        }
    }

    fn append(_input: &str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) type R<'s, T> = IResult<&'s str, T, PError>;

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Characters that can begin some token of the language; anything else is reported as
/// "unexpected character" rather than "expected X, found Y".
fn is_token_start(c: char) -> bool {
    is_ident_start(c)
        || c.is_ascii_digit()
        || c.is_ascii_whitespace()
        || "[](),;:=+-*/.\"#".contains(c)
}

/// Decrements a counter when dropped, so that nesting bookkeeping stays right on every
/// early return (`?`) out of a nested construct.
pub(crate) struct Guard<'c>(&'c Cell<usize>);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Parser state: the whole source (for offsets) and two counters.
pub(crate) struct Ctx<'s> {
    pub src: &'s str,
    /// Open `(` / `[` around the current position; inside them newlines are whitespace.
    open: Cell<usize>,
    /// Current expression nesting, bounded by [`MAX_NESTING`].
    nesting: Cell<usize>,
}

impl<'s> Ctx<'s> {
    pub fn new(src: &'s str) -> Ctx<'s> {
        Ctx {
            src,
            open: Cell::new(0),
            nesting: Cell::new(0),
        }
    }

    pub fn off(&self, rest: &str) -> usize {
        self.src.len().saturating_sub(rest.len())
    }

    /// Span from `start` up to where `rest` begins.
    pub fn span_to(&self, start: usize, rest: &str) -> Span {
        Span::new(start, self.off(rest))
    }

    pub fn fail<T>(&self, rest: &str, diag: Diagnostic) -> R<'s, T> {
        Err(nom::Err::Failure(PError {
            rest_len: rest.len(),
            diag: Some(Box::new(diag)),
        }))
    }

    /// Turn any error that escaped to the top into a diagnostic.
    pub fn diagnostic_of(&self, e: PError) -> Diagnostic {
        match e.diag {
            Some(d) => *d,
            None => {
                let rest = self.src.get(self.off_from_len(e.rest_len)..).unwrap_or("");
                self.expected(rest, "valid syntax")
            }
        }
    }

    fn off_from_len(&self, rest_len: usize) -> usize {
        self.src.len().saturating_sub(rest_len)
    }

    /// Marks one more open bracket until the guard is dropped.
    pub fn open_bracket(&self) -> Guard<'_> {
        self.open.set(self.open.get() + 1);
        Guard(&self.open)
    }

    /// Enters one more nesting level, or fails when the limit is reached.
    pub fn nest(&self, at: &'s str) -> Result<Guard<'_>, nom::Err<PError>> {
        if self.nesting.get() >= MAX_NESTING {
            let (_, span) = self.describe(at);
            let d = Diagnostic::at(
                span,
                format!(
                    "expression is nested too deeply (more than {MAX_NESTING} levels of \
                     parentheses, calls, reductions or unary minus)"
                ),
                "nesting limit reached here",
            )
            .with_note("split the expression into several statements");
            return Err(nom::Err::Failure(PError {
                rest_len: at.len(),
                diag: Some(Box::new(d)),
            }));
        }
        self.nesting.set(self.nesting.get() + 1);
        Ok(Guard(&self.nesting))
    }

    /// Fails when an expression tree would become deeper than [`MAX_TREE_DEPTH`].
    pub fn check_tree_depth(&self, depth: usize, at: &'s str, span: Span) -> R<'s, ()> {
        if depth > MAX_TREE_DEPTH {
            let d = Diagnostic::at(
                span,
                format!("expression is too deep (more than {MAX_TREE_DEPTH} nested operations)"),
                "this expression",
            )
            .with_note("split the expression into several statements");
            return self.fail(at, d);
        }
        Ok((at, ()))
    }

    /// Skips spaces, tabs, carriage returns and comments (`# ...`, `// ...`); newlines
    /// too while inside brackets, which is how statements continue over several lines.
    pub fn sp(&self, i: &'s str) -> &'s str {
        if self.open.get() > 0 {
            self.sp_nl(i)
        } else {
            skip(i, false)
        }
    }

    /// Skips whitespace including newlines: used after tokens that cannot end a
    /// statement (`=`, `,`, binary operators).
    pub fn sp_nl(&self, i: &'s str) -> &'s str {
        skip(i, true)
    }

    /// Consumes `c` if it is the next character.
    pub fn eat(&self, i: &'s str, c: char) -> Option<&'s str> {
        char::<_, PError>(c).parse(i).ok().map(|(rest, _)| rest)
    }

    /// A raw identifier `[A-Za-z_][A-Za-z0-9_]*` (no keyword handling).
    pub fn ident(&self, i: &'s str) -> R<'s, (&'s str, Span)> {
        let start = self.off(i);
        let (rest, word) = consumed(i, (satisfy(is_ident_start), take_while(is_ident_continue)))?;
        Ok((rest, (word, self.span_to(start, rest))))
    }

    /// A numeric literal: `64`, `2.5`, `.5`, `1e-3`, `6.02E+23`.
    pub fn number(&self, i: &'s str) -> R<'s, (f64, Span)> {
        let start = self.off(i);
        let (rest, text) = match number_text(i) {
            Ok(ok) => ok,
            Err(_) => return self.fail(i, self.expected(i, "an expression")),
        };
        // `2x` or `1e` are not a number followed by a name: almost surely a typo.
        let (after, junk) = take_while::<_, _, PError>(is_ident_continue)
            .parse(rest)
            .unwrap_or((rest, ""));
        if !junk.is_empty() {
            let span = self.span_to(start, after);
            let word = i.get(..i.len() - after.len()).unwrap_or("");
            return self.fail(
                i,
                Diagnostic::at(
                    span,
                    format!("invalid number literal '{word}'"),
                    "not a number",
                ),
            );
        }
        let span = self.span_to(start, rest);
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok((rest, (v, span))),
            _ => self.fail(
                i,
                Diagnostic::at(
                    span,
                    format!("number literal '{text}' is out of range"),
                    "too large",
                ),
            ),
        }
    }

    /// A whole number (dim sizes, layout options). `what` names it for messages.
    pub fn integer(&self, i: &'s str, what: &str) -> R<'s, (u64, Span)> {
        let start = self.off(i);
        let Ok((rest, digits)) = digit1::<_, PError>(i) else {
            return self.fail(i, self.expected(i, what));
        };
        let (after, junk) = take_while::<_, _, PError>(|c: char| is_ident_continue(c) || c == '.')
            .parse(rest)
            .unwrap_or((rest, ""));
        if !junk.is_empty() {
            let span = self.span_to(start, after);
            return self.fail(
                i,
                Diagnostic::at(span, format!("expected {what}"), "not a whole number"),
            );
        }
        let span = self.span_to(start, rest);
        match digits.parse::<u64>() {
            Ok(v) => Ok((rest, (v, span))),
            Err(_) => self.fail(
                i,
                Diagnostic::at(span, format!("number '{digits}' is too large"), "too large"),
            ),
        }
    }

    /// A string literal without escapes, on one line: the einsum equation.
    pub fn string(&self, i: &'s str) -> R<'s, (String, Span)> {
        let start = self.off(i);
        let (body, _) = char('"').parse(i)?;
        let (rest, text) = take_while::<_, _, PError>(|c| c != '"' && c != '\n')
            .parse(body)
            .unwrap_or((body, ""));
        match self.eat(rest, '"') {
            Some(after) => Ok((after, (text.to_string(), self.span_to(start, after)))),
            None => self.fail(
                rest,
                Diagnostic::at(
                    self.span_to(start, rest),
                    "unterminated string",
                    "this string has no closing '\"' on its line",
                ),
            ),
        }
    }

    /// What the next token is, for "found ..." in messages, and where it is.
    pub fn describe(&self, rest: &str) -> (String, Span) {
        let at = self.off(rest);
        let Some(c) = rest.chars().next() else {
            return ("end of input".to_string(), Span::new(at, at));
        };
        if c == '\n' {
            return ("end of line".to_string(), Span::new(at, at + 1));
        }
        if is_ident_start(c) || c.is_ascii_digit() {
            let len = rest
                .find(|c: char| !(is_ident_continue(c) || c == '.'))
                .unwrap_or(rest.len());
            let word = rest.get(..len).unwrap_or("");
            return (format!("'{word}'"), Span::new(at, at + len));
        }
        (
            format!("'{}'", c.escape_debug()),
            Span::new(at, at + c.len_utf8()),
        )
    }

    /// "expected X, found Y" pointing at the next token.
    pub fn expected(&self, rest: &str, what: &str) -> Diagnostic {
        let (found, span) = self.describe(rest);
        match rest.chars().next() {
            Some(c) if !is_token_start(c) => Diagnostic::at(
                span,
                format!("unexpected character {found}"),
                format!("expected {what}"),
            ),
            _ => Diagnostic::at(
                span,
                format!("expected {what}, found {found}"),
                format!("expected {what}"),
            ),
        }
    }

    /// "expected ')' to close the X" with a secondary label at the opening bracket.
    pub fn unclosed(
        &self,
        rest: &str,
        closer: char,
        what: &str,
        open: Span,
        hint: &str,
    ) -> Diagnostic {
        let (found, span) = self.describe(rest);
        Diagnostic::at(
            span,
            format!("expected '{closer}' to close the {what}, found {found}"),
            hint.to_string(),
        )
        .with_secondary(open, format!("{what} opened here"))
    }
}

/// The text of a numeric literal (its value is parsed by `str::parse`).
fn number_text(i: &str) -> IResult<&str, &str, PError> {
    let mantissa = alt((
        (digit1, opt((char('.'), digit0))).map(|_| ()),
        (char('.'), digit1).map(|_| ()),
    ));
    let exponent = opt((one_of("eE"), opt(one_of("+-")), digit1));
    consumed(i, (mantissa, exponent))
}

/// Runs `p` and returns the text it consumed, like nom's `recognize`. `recognize`
/// finds that text by pointer offset, which nom 8.0 gets wrong when a parser hits the
/// end of input (`digit0` returns an empty rest that is not a suffix of its input);
/// lengths are always right.
fn consumed<'a, O>(
    i: &'a str,
    mut p: impl Parser<&'a str, Output = O, Error = PError>,
) -> IResult<&'a str, &'a str, PError> {
    let (rest, _) = p.parse(i)?;
    Ok((rest, i.get(..i.len() - rest.len()).unwrap_or("")))
}

/// Whitespace and comments; `newlines` says whether `\n` counts as whitespace.
fn skip(i: &str, newlines: bool) -> &str {
    let blank =
        take_while1(move |c: char| c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n'));
    let comment = (alt((tag("#"), tag("//"))), take_while(|c| c != '\n')).map(|_| "");
    let r: IResult<&str, usize, PError> = many0_count(alt((blank, comment))).parse(i);
    r.map(|(rest, _)| rest).unwrap_or(i)
}
