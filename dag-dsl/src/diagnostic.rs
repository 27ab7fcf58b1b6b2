//! Errors found in a workflow file, each with its place (file:line:column and a field path).

use std::fmt;

/// One error in a workflow file.
///
/// Displayed as `FILE:LINE:COLUMN: error: PATH: MESSAGE`, followed by `  help: HELP` when
/// there is a hint (a "did you mean" suggestion, the accepted values, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to [`crate::compile`].
    pub file: String,
    /// 1-based line; 0 when the error has no place in the text (e.g. the file is unreadable).
    pub line: usize,
    /// 1-based column in characters; 0 when the error has no place in the text.
    pub column: usize,
    /// Field path of the offending value, like `tasks.load.needs[1]`; empty for the whole file.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
    /// An optional hint.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: error: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every error found in one file, sorted by position (line, then column, then path).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.0 {
            writeln!(f, "{diagnostic}")?;
        }
        let count = self.0.len();
        write!(
            f,
            "{count} error{} found",
            if count == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    /// Whether no error was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}
