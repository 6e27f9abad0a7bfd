//! Diagnostics that point into the topology file.

use std::ops::Range;

/// One problem found in a topology file, with the byte range it is about.
///
/// A file is checked completely before anything is built, so callers get
/// every problem at once rather than one per run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Diagnostic {
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where in the file (byte offsets), when known.
    pub span: Option<Range<usize>>,
    /// What to change to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column of the start of the span in `source`.
    pub fn line_col(&self, source: &str) -> Option<(usize, usize)> {
        let start = self.span.as_ref()?.start.min(source.len());
        let before = &source[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some((line, col))
    }
}

/// Every problem found in a file; never empty.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in the topology file, first: {}", .0.len(), .0[0])]
pub struct Diagnostics(pub Vec<Diagnostic>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let d = Diagnostic::new("x", Some(7..9));
        assert_eq!(d.line_col("abc\ndef\nghi"), Some((2, 4)));
        assert_eq!(Diagnostic::new("x", Some(0..1)).line_col("a"), Some((1, 1)));
    }
}
