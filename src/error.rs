//! The one public error type. Rendering (with carets under the source) happens once,
//! in [`Error::render`].

use einc_compiler::CompileError;
use einc_frontend::Diagnostic;

/// A diagnostic together with the text it points into.
#[derive(Clone, Debug)]
pub struct UserError {
    pub diagnostic: Diagnostic,
    pub source: String,
    /// File name (or "equation") shown in the rendering.
    pub name: String,
}

#[derive(Clone, Debug)]
pub enum Error {
    /// The input is wrong; the diagnostic points into the source text.
    User(Box<UserError>),
    /// Arrays do not fit the compiled expression, files cannot be read, ...
    Runtime(String),
    /// A compiler invariant broke: a bug in einc.
    Internal(String),
}

impl Error {
    pub(crate) fn from_compile(e: CompileError, name: &str, source: &str) -> Error {
        match e {
            CompileError::User(d) => Error::user(d, name, source),
            CompileError::Internal(m) => Error::Internal(m),
        }
    }

    /// A user error: `d` points into `source`, shown under the name `name`.
    pub fn user(d: Diagnostic, name: &str, source: &str) -> Error {
        Error::User(Box::new(UserError {
            diagnostic: d,
            source: source.to_string(),
            name: name.to_string(),
        }))
    }

    /// Human-readable report; for user errors, the source with carets under the problem.
    pub fn render(&self) -> String {
        match self {
            Error::User(u) => u.diagnostic.render(&u.name, &u.source),
            Error::Runtime(m) => format!("error: {m}\n"),
            Error::Internal(m) => {
                format!("error: {m}\nnote: this is a bug in einc; please report it\n")
            }
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::User(u) => write!(f, "{}", u.diagnostic.message),
            Error::Runtime(m) | Error::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
