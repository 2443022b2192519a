//! Config errors users can act on: `file:line:column: stage "id": message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a pipeline file; line 0 means "not from the file" (e.g. a `--set` override).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line, or 0 when unknown.
    pub line: u64,
    /// 1-based column, or 0 when unknown.
    pub column: u64,
}

impl Pos {
    /// A position in the file.
    pub fn new(line: u64, column: u64) -> Self {
        Pos { line, column }
    }
}

/// One problem in a pipeline file, with where it is and which component it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The pipeline file.
    pub file: PathBuf,
    /// Where in it.
    pub pos: Pos,
    /// The component concerned, as `stage "lineart"`, when there is one.
    pub subject: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// A problem at `pos` in `file`.
    pub fn new(file: &Path, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic { file: file.to_owned(), pos, subject: None, message: message.into() }
    }

    /// The same problem, attributed to a component (`role` is source/stage/sink).
    pub fn about(mut self, role: &str, id: &str) -> Self {
        self.subject = Some(format!("{role} \"{id}\""));
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.pos.line > 0 {
            write!(f, ":{}:{}", self.pos.line, self.pos.column)?;
        } else {
            write!(f, " (command line)")?;
        }
        if let Some(subject) = &self.subject {
            write!(f, ": {subject}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a pipeline file; `validate` prints them all at once.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
