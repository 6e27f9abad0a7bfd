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
    /// Scans the file: for many diagnostics use a [`LineIndex`].
    pub fn line_col(&self, source: &str) -> Option<(usize, usize)> {
        Some(LineIndex::new(source).line_col(source, self.span.as_ref()?.start))
    }
}

/// Where each line of a file starts, so that many positions are turned
/// into lines and columns in time linear in the file, not quadratic.
#[derive(Debug, Clone, Default)]
pub struct LineIndex(Vec<usize>);

impl LineIndex {
    pub fn new(source: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.0.partition_point(|&s| s <= offset);
        let start = self.0[line - 1];
        (line, source[start..offset].chars().count() + 1)
    }

    /// Number of lines.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Byte range of 1-based line `line`, without its newline.
    pub fn line_range(&self, source: &str, line: usize) -> std::ops::Range<usize> {
        let start = self.0[line - 1];
        let end = self.0.get(line).map_or(source.len(), |&next| next - 1);
        start..end.max(start)
    }

    /// `line L, column C` of byte `offset`, for messages that point at a
    /// second place.
    pub fn at(&self, source: &str, offset: usize) -> String {
        let (l, c) = self.line_col(source, offset);
        format!("line {l}, column {c}")
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
        let src = "ab\n\ncdé\nx";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line_col(src, 0), (1, 1));
        assert_eq!(ix.line_col(src, 3), (2, 1));
        assert_eq!(ix.line_col(src, 8), (3, 4), "columns count characters");
        assert_eq!(ix.line_col(src, 7), (3, 3), "inside a character: its start");
        assert_eq!(ix.line_col(src, 99), (4, 2));
        assert_eq!(&src[ix.line_range(src, 3)], "cdé");
        assert_eq!(&src[ix.line_range(src, 2)], "");
    }
}
