//! Expressions: precedence climbing by hand over nom token parsers.
//!
//! ```text
//! expr    = term { ("+" | "-") term }
//! term    = unary { ("*" | "/") unary }
//! unary   = "-" unary | primary
//! primary = number | "(" expr ")" | tensor | call | reduce | softmax | einsum
//! ```
//!
//! Every parser returns the expression together with its tree depth, so that the depth
//! can be bounded while building (see [`MAX_TREE_DEPTH`](super::lex::MAX_TREE_DEPTH)).

use super::keyword_error;
use super::lex::{is_ident_start, Ctx, PError, KEYWORDS, R};
use crate::diag::Diagnostic;
use crate::ein::ast::{BinOp, Expr, ExprKind, Func, ReduceOp};
use crate::ein::check::closest;
use crate::span::Span;
use nom::character::complete::{char, one_of};
use nom::Parser;

/// An expression and the depth of its tree.
type Deep = (Expr, usize);

const FUNCTIONS: &str = "exp, log, sqrt, tanh, abs, relu, sigmoid, max, min";

impl<'s> Ctx<'s> {
    pub(super) fn expr(&self, i: &'s str) -> R<'s, Expr> {
        let (rest, (e, _)) = self.expr_deep(i)?;
        Ok((rest, e))
    }

    fn expr_deep(&self, i: &'s str) -> R<'s, Deep> {
        let _level = self.nest(i)?;
        self.additive(i)
    }

    fn additive(&self, i: &'s str) -> R<'s, Deep> {
        self.binary_chain(i, "+-", Ctx::term)
    }

    fn term(&self, i: &'s str) -> R<'s, Deep> {
        // `//` never reaches here as division: `sp` has already eaten it as a comment.
        self.binary_chain(i, "*/", Ctx::unary)
    }

    /// A left-associative chain `operand { op operand }` with `ops` drawn from `ops`.
    fn binary_chain(
        &self,
        i: &'s str,
        ops: &'static str,
        operand: fn(&Ctx<'s>, &'s str) -> R<'s, Deep>,
    ) -> R<'s, Deep> {
        let (mut rest, (mut lhs, mut depth)) = operand(self, i)?;
        loop {
            let at = self.sp(rest);
            let Ok((after, c)) = one_of::<_, _, PError>(ops).parse(at) else {
                return Ok((rest, (lhs, depth)));
            };
            let op = match c {
                '+' => BinOp::Add,
                '-' => BinOp::Sub,
                '*' => BinOp::Mul,
                _ => BinOp::Div,
            };
            // A line ending in an operator continues on the next line.
            let after = self.sp_nl(after);
            let (after, (rhs, rhs_depth)) = operand(self, after)?;
            let span = lhs.span.to(rhs.span);
            depth = depth.max(rhs_depth) + 1;
            self.check_tree_depth(depth, after, span)?;
            lhs = Expr {
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
            };
            rest = after;
        }
    }

    fn unary(&self, i: &'s str) -> R<'s, Deep> {
        let i = self.sp(i);
        let start = self.off(i);
        if let Ok((after, _)) = char::<_, PError>('-').parse(i) {
            // Counted as nesting: `- - - ... x` recurses once per minus.
            let _level = self.nest(i)?;
            let (rest, (e, depth)) = self.unary(after)?;
            let span = Span::new(start, e.span.end);
            let neg = Expr {
                kind: ExprKind::Neg(Box::new(e)),
                span,
            };
            return Ok((rest, (neg, depth + 1)));
        }
        self.primary(i)
    }

    fn primary(&self, i: &'s str) -> R<'s, Deep> {
        match i.chars().next() {
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let (rest, (v, span)) = self.number(i)?;
                let e = Expr {
                    kind: ExprKind::Number(v),
                    span,
                };
                Ok((rest, (e, 1)))
            }
            Some('(') => self.paren(i),
            Some(c) if is_ident_start(c) => self.named(i),
            Some('"') => {
                let (_, span) = self.string(i).map(|(r, s)| (r, s.1)).unwrap_or_else(|_| {
                    let at = self.off(i);
                    (i, Span::new(at, at + 1))
                });
                let d = Diagnostic::at(
                    span,
                    "a string can only be the equation of einsum(...)",
                    "unexpected string",
                );
                self.fail(i, d)
            }
            _ => self.fail(i, self.expected(i, "an expression")),
        }
    }

    /// `( expr )`; the result's span includes the parentheses.
    fn paren(&self, i: &'s str) -> R<'s, Deep> {
        let start = self.off(i);
        let open = Span::new(start, start + 1);
        let Some(rest) = self.eat(i, '(') else {
            return self.fail(i, self.expected(i, "'('"));
        };
        let _open = self.open_bracket();
        let rest = self.sp(rest);
        let (rest, (inner, depth)) = self.expr_deep(rest)?;
        let rest = self.sp(rest);
        let Some(after) = self.eat(rest, ')') else {
            let d = self.unclosed(
                rest,
                ')',
                "parenthesis",
                open,
                "expected an operator or ')'",
            );
            return self.fail(rest, d);
        };
        let e = Expr {
            kind: inner.kind,
            span: self.span_to(start, after),
        };
        Ok((after, (e, depth)))
    }

    /// Everything that starts with a name: tensors, calls, reductions, softmax, einsum.
    fn named(&self, i: &'s str) -> R<'s, Deep> {
        let (rest, (word, word_span)) = self.ident(i)?;
        let after = self.sp(rest);
        let bracket = after.starts_with('[');
        let paren = after.starts_with('(');
        if word == "einsum" {
            return self.einsum(word_span, after);
        }
        if word == "softmax" {
            if !bracket {
                return self.fail(i, needs_indices(word, word_span, "normalises over"));
            }
            let (rest, indices) = self.index_list(after)?;
            let (rest, (arg, depth)) = self.single_arg(rest, word)?;
            let kind = ExprKind::Softmax {
                indices,
                arg: Box::new(arg),
            };
            return self.finish(word_span.start, rest, kind, depth + 1);
        }
        if let Some(op) = ReduceOp::from_name(word) {
            // `max[j](x)` reduces; `max(a, b)` is the elementwise function below.
            if bracket {
                let (rest, indices) = self.index_list(after)?;
                let (rest, (arg, depth)) = self.single_arg(rest, word)?;
                let kind = ExprKind::Reduce {
                    op,
                    op_span: word_span,
                    indices,
                    arg: Box::new(arg),
                };
                return self.finish(word_span.start, rest, kind, depth + 1);
            }
            if Func::from_name(word).is_none() {
                return self.fail(i, needs_indices(word, word_span, "reduces over"));
            }
        }
        if let Some(func) = Func::from_name(word) {
            if bracket {
                let d = Diagnostic::at(
                    word_span,
                    format!("'{word}' is an elementwise function, not a reduction"),
                    "not a reduction",
                )
                .with_note("the reductions are sum, max, min and logsumexp: `sum[j](...)`");
                return self.fail(i, d);
            }
            if !paren {
                let d = self.expected(after, &format!("'(' after function '{word}'"));
                return self.fail(after, d);
            }
            return self.call(func, word_span, after);
        }
        if KEYWORDS.contains(&word) {
            return self.fail(i, keyword_error(word, word_span, "a tensor name"));
        }
        if paren {
            let mut d = Diagnostic::at(
                word_span,
                format!("unknown function '{word}'"),
                "not a function",
            );
            let names: Vec<&str> = FUNCTIONS.split(", ").collect();
            if let Some(best) = closest(word, names.iter().copied()) {
                d.message = format!("unknown function '{word}'; did you mean '{best}'?");
            }
            return self.fail(i, d.with_note(format!("the functions are {FUNCTIONS}")));
        }
        let name = crate::ein::ast::Ident {
            name: word.to_string(),
            span: word_span,
        };
        // A bare name is a scalar reference (`s` means `s[]`).
        let (rest, indices) = if bracket {
            self.index_list(after)?
        } else {
            (rest, Vec::new())
        };
        self.finish(word_span.start, rest, ExprKind::Tensor { name, indices }, 1)
    }

    fn finish(&self, start: usize, rest: &'s str, kind: ExprKind, depth: usize) -> R<'s, Deep> {
        let span = self.span_to(start, rest);
        self.check_tree_depth(depth, rest, span)?;
        Ok((rest, (Expr { kind, span }, depth)))
    }

    /// The parenthesised operand of a reduction or softmax: `(expr)`.
    fn single_arg(&self, i: &'s str, op: &str) -> R<'s, Deep> {
        let i = self.sp(i);
        let start = self.off(i);
        let Some(rest) = self.eat(i, '(') else {
            let d = self.expected(i, &format!("'(' and the operand of {op}[...]"));
            return self.fail(i, d);
        };
        let open = Span::new(start, start + 1);
        let _open = self.open_bracket();
        let rest = self.sp(rest);
        let (rest, arg) = self.expr_deep(rest)?;
        let rest = self.sp(rest);
        match self.eat(rest, ')') {
            Some(after) => Ok((after, arg)),
            None => {
                let what = format!("operand of {op}");
                let d = self.unclosed(rest, ')', &what, open, "expected an operator or ')'");
                self.fail(rest, d)
            }
        }
    }

    /// `f(a, b, ...)`; the argument count is checked later, by the checker.
    fn call(&self, func: Func, func_span: Span, i: &'s str) -> R<'s, Deep> {
        let start = self.off(i);
        let open = Span::new(start, start + 1);
        let Some(rest) = self.eat(i, '(') else {
            return self.fail(i, self.expected(i, "'('"));
        };
        let _open = self.open_bracket();
        let mut rest = self.sp(rest);
        let mut args = Vec::new();
        let mut depth = 0;
        if let Some(after) = self.eat(rest, ')') {
            let kind = ExprKind::Call {
                func,
                func_span,
                args,
            };
            return self.finish(func_span.start, after, kind, 1);
        }
        loop {
            let (after, (arg, d)) = self.expr_deep(rest)?;
            depth = depth.max(d);
            args.push(arg);
            rest = self.sp(after);
            if let Some(after) = self.eat(rest, ',') {
                rest = self.sp(after);
                continue;
            }
            if let Some(after) = self.eat(rest, ')') {
                let kind = ExprKind::Call {
                    func,
                    func_span,
                    args,
                };
                return self.finish(func_span.start, after, kind, depth + 1);
            }
            let what = format!("argument list of '{}'", func.name());
            let d = self.unclosed(rest, ')', &what, open, "expected an operator, ',' or ')'");
            return self.fail(rest, d);
        }
    }

    /// `einsum("ij,jk->ik", A, B)` with an optional `[i, k]` naming the output axes.
    fn einsum(&self, word_span: Span, i: &'s str) -> R<'s, Deep> {
        let start = self.off(i);
        let open = Span::new(start, start + 1);
        let Some(rest) = self.eat(i, '(') else {
            return self.fail(i, self.expected(i, "'(' after 'einsum'"));
        };
        let guard = self.open_bracket();
        let rest = self.sp(rest);
        if !rest.starts_with('"') {
            let d = self.expected(rest, "the einsum equation as a string, e.g. \"ij,jk->ik\"");
            return self.fail(rest, d);
        }
        let (mut rest, (equation, equation_span)) = self.string(rest)?;
        let mut operands = Vec::new();
        loop {
            rest = self.sp(rest);
            if let Some(after) = self.eat(rest, ',') {
                let after = self.sp(after);
                let (after, operand) = self.name(after, "an operand tensor name", true)?;
                let next = self.sp(after);
                if next.starts_with('[') || next.starts_with('(') {
                    let d = Diagnostic::at(
                        operand.span,
                        "einsum operands are plain tensor names",
                        "operand",
                    )
                    .with_note("the equation string gives the operands' indices");
                    return self.fail(next, d);
                }
                operands.push(operand);
                rest = after;
                continue;
            }
            if let Some(after) = self.eat(rest, ')') {
                rest = after;
                break;
            }
            let d = self.unclosed(rest, ')', "einsum call", open, "expected ',' or ')'");
            return self.fail(rest, d);
        }
        drop(guard);
        if operands.is_empty() {
            let d = Diagnostic::at(
                self.span_to(word_span.start, rest),
                "einsum needs at least one operand tensor",
                "no operands",
            );
            return self.fail(rest, d);
        }
        let at = self.sp(rest);
        let (rest, output) = if at.starts_with('[') {
            let (after, names) = self.index_list(at)?;
            (after, Some(names))
        } else {
            (rest, None)
        };
        let kind = ExprKind::Einsum {
            equation,
            equation_span,
            operands,
            output,
        };
        self.finish(word_span.start, rest, kind, 1)
    }
}

fn needs_indices(word: &str, span: Span, verb: &str) -> Diagnostic {
    Diagnostic::at(
        span,
        format!("'{word}' needs the list of indices it {verb}"),
        format!("write {word}[j](...)"),
    )
}
