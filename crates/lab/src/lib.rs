//! Build, inspect and tear down Linux virtual network labs.
//!
//! For tests of networked programs, [`Lab`] builds a lab from a topology
//! file or in code, hands out nodes to run code and programs in, links to
//! take down and impair, captures; and removes it on drop (docs/library.md):
//!
//! ```no_run
//! let lab = weft::Lab::from_file("examples/bridge.toml").unwrap();
//! assert!(lab.ping("ns1", "ns2").unwrap());
//! let l = lab.node("ns2").unwrap().run(|| std::net::TcpListener::bind("0.0.0.0:7000"));
//! # drop(l);
//! ```
//!
//! [`up`], [`down`] and [`status()`] are what the `weft` command runs.

// Every public item says what it is for; the CLI-only modules below are
// hidden instead (missing_docs does not look into them).
#![warn(missing_docs)]

// The library's own surface (docs/library.md), documented throughout.
mod builder;
mod context;
mod handle;
mod reap;
mod rootless;

mod apply;
mod checks;
mod down;
mod error;
mod lookup;
mod owner;
mod running;
pub mod status;
mod up;

// Modules the weft command drives: public for it, hidden from the
// library's documented surface.
#[doc(hidden)]
pub mod agent;
#[doc(hidden)]
pub mod capture;
#[doc(hidden)]
pub mod datapath;
#[doc(hidden)]
pub mod drawing;
#[doc(hidden)]
pub mod events;
#[doc(hidden)]
pub mod machines;
#[doc(hidden)]
pub mod names;
#[doc(hidden)]
pub mod runtime;
#[doc(hidden)]
pub mod services;
#[doc(hidden)]
pub mod state;
#[doc(hidden)]
pub mod trace;
#[doc(hidden)]
pub mod tunnels;

use std::path::{Path, PathBuf};

pub use builder::{Builder, Impair, NodeSpec, SwitchSpec};
pub use checks::CheckResult;
pub use context::Context;
pub use down::{down, DownOptions, DownReport, Ended};
pub use error::{Error, Outcome};
pub use handle::{Address, CaptureHandle, Lab, LinkHandle, NodeHandle, Process};
pub use lookup::{
    built, built_with, check, exec_target, neighbour, node_netns, ping, resolve_target,
    CheckReport, ExecTarget,
};
pub use reap::{reap_orphans, Reaped};
pub use running::Running;
pub use status::{status, LabStatus};
pub use up::{up, UpOptions, UpReport};
pub use weft_topo as topo;
use weft_topo::{Diagnostics, Parsed};

/// Progress of a long operation, for a progress bar.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new stage; `total` steps follow (0 when not counted).
    Stage {
        /// What the stage does ("starting services").
        what: &'static str,
        /// How many [`Event::Step`]s follow.
        total: usize,
    },
    /// One step of the current stage is done.
    Step,
    /// A line about the current stage (what a wait is still waiting for).
    Note(String),
}

/// A file that failed to parse: the diagnostics and the text they point in.
#[derive(thiserror::Error)]
#[error("{}: {}", path.display(), diagnostics)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Its text, which the diagnostics' byte spans point into.
    pub source_text: String,
    /// Every problem found, in file order.
    pub diagnostics: Diagnostics,
}

/// What `?` in a test returning `Result` and `unwrap()` print: every
/// problem at its line (`<toml>` for a lab built from text or a builder,
/// whose text `Builder::to_toml` shows), not the file's whole text.
impl std::fmt::Debug for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        writeln!(f, "{path}: {} problem(s):", self.diagnostics.0.len())?;
        for d in &self.diagnostics.0 {
            match d.line_col(&self.source_text) {
                Some((line, col)) => write!(f, "  {path}:{line}:{col}: {}", d.message)?,
                None => write!(f, "  {path}: {}", d.message)?,
            }
            if let Some(h) = &d.help {
                write!(f, " (help: {h})")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Read and check a topology file.
pub fn parse_file(path: impl AsRef<Path>) -> Result<Parsed, Box<FileError>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Box::new(FileError {
            path: path.to_path_buf(),
            source_text: String::new(),
            diagnostics: Diagnostics(vec![weft_topo::Diagnostic::new(
                format!("cannot read the file: {e}"),
                None,
            )]),
        })
    })?;
    let err = |d| {
        Box::new(FileError {
            path: path.to_path_buf(),
            source_text: text.clone(),
            diagnostics: d,
        })
    };
    // Bind sources are relative to the file's directory, made absolute
    // here so that the lab does not depend on where `weft up` ran.
    let dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let exists = |p: &Path| p.exists();
    let at = || {
        Some(weft_topo::FileDir {
            dir: &dir,
            exists: &exists,
        })
    };
    let parsed = weft_topo::parse_at(&text, None, at()).map_err(err)?;
    // A lab that is built keeps the addresses its hosts have.
    match state::load(&parsed.lab.name) {
        Ok(Some(st)) => weft_topo::parse_at(&text, Some(&st.lab), at()).map_err(err),
        _ => Ok(parsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_errors_debug_lists_each_problem_at_its_line_not_the_text() {
        let text = "name = \"x\"\n[nodes.a.interfaces.e]\nadresses = [\"10.0.0.1/24\"]\n";
        let diagnostics = weft_topo::parse(text).unwrap_err();
        let e = FileError {
            path: PathBuf::from("<toml>"),
            source_text: text.to_string(),
            diagnostics,
        };
        let d = format!("{e:?}");
        assert!(d.contains("<toml>:3:1: unknown key `adresses`"), "{d}");
        assert!(d.contains("did you mean `addresses`"), "{d}");
        assert!(!d.contains("10.0.0.1/24"), "the text is not dumped: {d}");
    }
}
