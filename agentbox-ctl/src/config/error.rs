//! Config errors: each [`Diagnostic`] has a position, and a [`ConfigError`] is every one
//! found in a file, printed as `file:line:col: message` lines.

use std::path::PathBuf;

use super::yaml::Pos;

/// One error in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where (line 0 when the whole file is concerned).
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Why a config did not load: every error found, each with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The errors, in file order.
    pub errors: Vec<Diagnostic>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if d.pos.line == 0 {
                write!(f, "{}: {}", self.file.display(), d.message)?;
            } else {
                write!(
                    f,
                    "{}:{}:{}: {}",
                    self.file.display(),
                    d.pos.line,
                    d.pos.col,
                    d.message
                )?;
            }
        }
        Ok(())
    }
}
