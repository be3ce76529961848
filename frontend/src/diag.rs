//! The one error type of the frontend (and of everything downstream that reports against
//! user source), and its rendering.
//!
//! Errors are values with spans; they are rendered exactly once, at the edge (CLI or a
//! `Display` of the public API), with carets under the offending text.

use crate::span::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

/// One labelled place in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// A user-facing error: a message, a primary place, optional secondary places and notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// Where the problem is. `None` for errors that have no place in the text
    /// (for example "2 operands given but the equation names 3").
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Error pointing at `span` with an inline label.
    pub fn at(span: Span, message: impl Into<String>, label: impl Into<String>) -> Diagnostic {
        Diagnostic::new(message).with_primary(span, label)
    }

    pub fn with_primary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.primary = Some(Label {
            span,
            message: label.into(),
        });
        self
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            span,
            message: label.into(),
        });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Render with carets under the labelled text, without colour (stable for snapshots).
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let file = SimpleFile::new(file_name, source);
        let mut labels = Vec::new();
        if let Some(p) = &self.primary {
            labels.push(CsLabel::primary((), clamp(p.span, source)).with_message(&p.message));
        }
        for s in &self.secondary {
            labels.push(CsLabel::secondary((), clamp(s.span, source)).with_message(&s.message));
        }
        let diag = CsDiagnostic::error()
            .with_message(&self.message)
            .with_labels(labels)
            .with_notes(self.notes.clone());
        // `emit_to_io_write` writes plain text (no colour codes); going through bytes and
        // `from_utf8_lossy` avoids the `expect` inside codespan's string helper.
        let mut buf: Vec<u8> = Vec::new();
        let config = Config::default();
        if term::emit_to_io_write(&mut buf, &config, &file, &diag).is_err() {
            return format!("error: {}", self.message);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Spans must land on char boundaries inside the text, or the renderer refuses them.
fn clamp(span: Span, source: &str) -> std::ops::Range<usize> {
    let fix = |mut i: usize| {
        i = i.min(source.len());
        while !source.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let s = fix(span.start);
    let e = fix(span.end).max(s);
    s..e
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for Diagnostic {}
