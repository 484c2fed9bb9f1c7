//! What was written where: the error that names a file, line and column, and the [`Validator`]
//! that turns a TOML span into one. The scenario's tables and the description language
//! (`describe`) both read TOML through it, so neither needs the other to say where a mistake is.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

/// A scenario error a person can act on: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// 1-based line, 0 when the error has no position (e.g. the file cannot be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ScenarioError {}

/// Turns spans into lines and columns while validating.
pub struct Validator<'a> {
    /// The file, for the error's name.
    pub path: &'a Path,
    /// Its text, for turning byte offsets into lines and columns.
    pub text: &'a str,
}

impl Validator<'_> {
    pub fn error_at(&self, offset: usize, message: String) -> ScenarioError {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ScenarioError {
            file: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    pub fn err<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> ScenarioError {
        self.error_at(at.span().start, message.into())
    }

    pub fn duration(&self, s: &Spanned<String>) -> Result<Duration, ScenarioError> {
        humantime::parse_duration(s.get_ref()).map_err(|e| {
            self.err(
                s,
                format!(
                    "{:?} is not a duration ({e}); write e.g. \"500ms\", \"5s\", \"2m\"",
                    s.get_ref()
                ),
            )
        })
    }

    pub fn opt_duration(
        &self,
        s: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ScenarioError> {
        s.as_ref().map_or(Ok(default), |s| self.duration(s))
    }
}
