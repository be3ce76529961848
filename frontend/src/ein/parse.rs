//! Parser for `.ein` programs: source text to [`ast::Program`].
//!
//! Written with nom 8 over `&str`: every parser takes the unparsed rest and the byte
//! offset of a position is `source.len() - rest.len()`. The grammar is LL(1) apart from
//! a one-word lookahead at statement starts, so parsers commit early and report errors
//! as nom `Failure`s carrying a finished [`Diagnostic`]; the first error ends parsing.
//!
//! Statements end at a newline or `;`. A statement continues over newlines inside
//! `(...)` / `[...]` and after a token that cannot end it (`=`, `,`, a binary operator).
//! See `docs/ein-language.md` for the language reference.

mod expr;
mod lex;
#[cfg(test)]
mod tests;

use super::ast::{self, DType, DimDecl, Ident, InputDecl, Item, LayoutDecl, OutputDecl, Program};
use crate::diag::Diagnostic;
use crate::span::Span;
use lex::{Ctx, BUILTINS, KEYWORDS, R};
pub use lex::{MAX_NESTING, MAX_TREE_DEPTH};

/// Parse a whole `.ein` program. Never panics; the error is the first problem found.
pub fn parse(source: &str) -> Result<Program, Diagnostic> {
    let ctx = Ctx::new(source);
    match ctx.program(source) {
        Ok((_, program)) => Ok(program),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(ctx.diagnostic_of(e)),
        // Only streaming parsers report `Incomplete`; all of ours are `complete`.
        Err(nom::Err::Incomplete(_)) => Err(Diagnostic::new("unexpected end of input")),
    }
}

const STATEMENT: &str =
    "a statement (dim, input, layout, output, or an assignment such as `C[i] = ...`)";

impl<'s> Ctx<'s> {
    fn program(&self, i: &'s str) -> R<'s, Program> {
        let mut items = Vec::new();
        let mut rest = i;
        loop {
            rest = self.separators(rest);
            if rest.is_empty() {
                return Ok((rest, Program { items }));
            }
            let (after, item) = self.statement(rest)?;
            let after = self.sp(after);
            if !(after.is_empty() || after.starts_with('\n') || after.starts_with(';')) {
                // After an expression the statement could also have gone on with an operator.
                let what = match item {
                    Item::Assign(_) => "an operator or the end of the statement",
                    _ => "the end of the statement (a newline or ';')",
                };
                return self.fail(after, self.expected(after, what));
            }
            items.push(item);
            rest = after;
        }
    }

    /// Blank lines, comments and stray `;` between statements.
    fn separators(&self, mut i: &'s str) -> &'s str {
        loop {
            i = self.sp_nl(i);
            match self.eat(i, ';') {
                Some(rest) => i = rest,
                None => return i,
            }
        }
    }

    fn statement(&self, i: &'s str) -> R<'s, Item> {
        let Ok((rest, (word, word_span))) = self.ident(i) else {
            return self.fail(i, self.expected(i, STATEMENT));
        };
        let after = self.sp(rest);
        let is_kw = KEYWORDS.contains(&word);
        // `dim[i] = ...` / `input = ...`: the user meant a tensor named like a keyword.
        if is_kw && (after.starts_with('[') || after.starts_with('=')) {
            return self.fail(i, keyword_error(word, word_span, "a tensor name"));
        }
        let start = word_span.start;
        match word {
            "dim" => self.dim_decl(after),
            "input" => self.input_decl(start, after),
            "layout" => self.layout_decl(start, after),
            "output" => self.output_decl(start, after),
            _ => self.assign(i),
        }
    }

    /// A name that is not a keyword; for tensors, not a built-in function either.
    /// `role` completes "expected ...", e.g. "a tensor name".
    fn name(&self, i: &'s str, role: &str, tensor: bool) -> R<'s, Ident> {
        let Ok((rest, (word, span))) = self.ident(i) else {
            return self.fail(i, self.expected(i, role));
        };
        if KEYWORDS.contains(&word) {
            return self.fail(i, keyword_error(word, span, role));
        }
        if tensor && BUILTINS.contains(&word) {
            let d = Diagnostic::at(
                span,
                format!("'{word}' is a built-in function and cannot be used as {role}"),
                "built-in name",
            );
            return self.fail(i, d);
        }
        Ok((
            rest,
            Ident {
                name: word.to_string(),
                span,
            },
        ))
    }

    /// `[a, b, ...]` with `i` at the `[`; a trailing comma is allowed.
    fn index_list(&self, i: &'s str) -> R<'s, Vec<Ident>> {
        let open_at = self.off(i);
        let Some(rest) = self.eat(i, '[') else {
            return self.fail(i, self.expected(i, "'['"));
        };
        let open = Span::new(open_at, open_at + 1);
        let _open = self.open_bracket();
        let mut out = Vec::new();
        let mut rest = self.sp(rest);
        if let Some(after) = self.eat(rest, ']') {
            return Ok((after, out));
        }
        loop {
            let (after, index) = self.name(rest, "an index name", false)?;
            out.push(index);
            rest = self.sp(after);
            if let Some(after) = self.eat(rest, ',') {
                rest = self.sp(after);
                if let Some(after) = self.eat(rest, ']') {
                    return Ok((after, out));
                }
                continue;
            }
            if let Some(after) = self.eat(rest, ']') {
                return Ok((after, out));
            }
            let d = self.unclosed(rest, ']', "index list", open, "expected ',' or ']'");
            return self.fail(rest, d);
        }
    }

    /// `dim i = 64, j, k = 8`
    fn dim_decl(&self, mut i: &'s str) -> R<'s, Item> {
        let mut decls = Vec::new();
        loop {
            let (rest, name) = self.name(i, "a dim name", false)?;
            let rest = self.sp(rest);
            let (rest, size) = match self.eat(rest, '=') {
                Some(after) => {
                    let after = self.sp_nl(after);
                    let what = format!("a whole-number size for dim '{}'", name.name);
                    let (after, size) = self.integer(after, &what)?;
                    (after, Some(size))
                }
                None => (rest, None),
            };
            decls.push(DimDecl { name, size });
            let rest = self.sp(rest);
            match self.eat(rest, ',') {
                Some(after) => i = self.sp_nl(after),
                None => return Ok((rest, Item::Dim(decls))),
            }
        }
    }

    /// `input A[i, j]: f32`, `input s: f32`, `input s[]: f32`
    fn input_decl(&self, start: usize, i: &'s str) -> R<'s, Item> {
        let (rest, name) = self.name(i, "an input name", true)?;
        let rest = self.sp(rest);
        let (rest, indices) = if rest.starts_with('[') {
            self.index_list(rest)?
        } else {
            (rest, Vec::new())
        };
        let rest = self.sp(rest);
        let Some(rest) = self.eat(rest, ':') else {
            let d = self
                .expected(rest, "':' and a dtype")
                .with_note("inputs are declared like `input A[i, j]: f32`");
            return self.fail(rest, d);
        };
        let rest = self.sp(rest);
        let Ok((after, (word, dtype_span))) = self.ident(rest) else {
            return self.fail(rest, self.expected(rest, "a dtype (f32, f64, c64 or c128)"));
        };
        let Some(dtype) = DType::from_name(word) else {
            let d = Diagnostic::at(
                dtype_span,
                format!("unknown dtype '{word}'; expected one of f32, f64, c64, c128"),
                "unknown dtype",
            );
            return self.fail(rest, d);
        };
        let decl = InputDecl {
            name,
            indices,
            dtype,
            dtype_span,
            span: self.span_to(start, after),
        };
        Ok((after, Item::Input(decl)))
    }

    /// `layout A packed[i, j] slots=8192`
    fn layout_decl(&self, start: usize, i: &'s str) -> R<'s, Item> {
        let (rest, tensor) = self.name(i, "the name of an input to lay out", true)?;
        let rest = self.sp(rest);
        let (rest, kind) = self.name(rest, "a layout kind such as 'packed'", false)?;
        let rest = self.sp(rest);
        if !rest.starts_with('[') {
            let d = self.expected(rest, "'[' and the index order of the layout");
            return self.fail(rest, d);
        }
        let (mut rest, order) = self.index_list(rest)?;
        let mut options = Vec::new();
        loop {
            let at = self.sp(rest);
            let Ok((after, (word, key_span))) = self.ident(at) else {
                break;
            };
            let after = self.sp(after);
            let Some(after) = self.eat(after, '=') else {
                let d = self.expected(after, &format!("'=' after layout option '{word}'"));
                return self.fail(after, d);
            };
            let after = self.sp(after);
            let what = format!("a whole-number value for layout option '{word}'");
            let (after, (value, value_span)) = self.integer(after, &what)?;
            let key = Ident {
                name: word.to_string(),
                span: key_span,
            };
            options.push((key, value, key_span.to(value_span)));
            rest = after;
        }
        let decl = LayoutDecl {
            tensor,
            kind,
            order,
            options,
            span: self.span_to(start, rest),
        };
        Ok((rest, Item::Layout(decl)))
    }

    /// `output C, D`
    fn output_decl(&self, start: usize, mut i: &'s str) -> R<'s, Item> {
        let mut names = Vec::new();
        loop {
            let (rest, name) = self.name(i, "the name of an output tensor", true)?;
            names.push(name);
            let rest = self.sp(rest);
            match self.eat(rest, ',') {
                Some(after) => i = self.sp_nl(after),
                None => {
                    let span = self.span_to(start, rest);
                    return Ok((rest, Item::Output(OutputDecl { names, span })));
                }
            }
        }
    }

    /// `C[i, k] = expr` (or `x = expr` for a scalar result)
    fn assign(&self, i: &'s str) -> R<'s, Item> {
        let start = self.off(i);
        let (rest, target) = self.name(i, "a tensor name", true)?;
        let rest = self.sp(rest);
        let (rest, indices) = if rest.starts_with('[') {
            self.index_list(rest)?
        } else {
            (rest, Vec::new())
        };
        let lhs = self.span_to(start, rest);
        let rest = self.sp(rest);
        let Some(rest) = self.eat(rest, '=') else {
            let d = self
                .expected(rest, "'=' after the left-hand side")
                .with_secondary(lhs, "left-hand side of an assignment");
            return self.fail(rest, d);
        };
        let rest = self.sp_nl(rest);
        let (rest, value) = self.expr(rest)?;
        let assign = ast::Assign {
            span: Span::new(start, value.span.end),
            target,
            indices,
            value,
        };
        Ok((rest, Item::Assign(assign)))
    }
}

fn keyword_error(word: &str, span: Span, role: &str) -> Diagnostic {
    Diagnostic::at(
        span,
        format!("'{word}' is a keyword and cannot be used as {role}"),
        "keyword",
    )
    .with_note("the keywords dim, input, layout and output start declarations; pick another name")
}
