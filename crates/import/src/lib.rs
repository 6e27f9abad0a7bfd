//! `weft import`: bring existing labs in.
//!
//! [`script`] reads a shell script of `ip`, `brctl`, `tunctl`, `vconfig`,
//! `ovs-vsctl` and `sysctl` commands, replays it on a model of namespaces
//! and devices (never on the kernel), and writes the weft lab file that
//! builds the same network. [`clab`] does the same for a containerlab
//! topology. The file written is then checked by `weft-topo` like any other,
//! and its problems are reported at the line of the script (or YAML) that
//! caused them.
//!
//! Pure: the caller passes the text in and gets the text out; `ip -batch`
//! files are read through a closure the caller provides.

use std::fmt;
use std::ops::Range;

pub mod clab;
mod emit;
pub mod model;
pub mod shell;

/// Where a value of the output came from: a line of the script (`file` is
/// None) or of a file it reads (`ip -batch FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Option<String>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file} line {}", self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// Why an import failed, at the line of the input that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", origin.as_ref().map(|o| format!("{o}: ")).unwrap_or_default())]
pub struct ImportError {
    pub origin: Option<Origin>,
    pub message: String,
    pub help: Option<String>,
}

/// Every problem found; never empty.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s), first: {}", .0.len(), .0[0])]
pub struct ImportErrors(pub Vec<ImportError>);

impl From<ImportError> for ImportErrors {
    fn from(e: ImportError) -> Self {
        ImportErrors(vec![e])
    }
}

/// Something imported differently from the input, or left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A command kept as a comment in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub origin: Origin,
    pub text: String,
    pub why: String,
    /// Whether a warning was given for it (it changed something weft could
    /// not express), as opposed to a command that only shows or tests.
    pub warned: bool,
}

/// The lab file written, and what the reader should know about it.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The weft lab file (TOML); it passed `weft_topo::parse`.
    pub toml: String,
    pub warnings: Vec<Warning>,
}

/// Import a shell script. `lab` is the lab's name; `batch` reads the files
/// named by `ip -batch FILE` (None when it cannot).
pub fn script(
    source: &str,
    lab: &str,
    batch: &dyn Fn(&str) -> Option<String>,
) -> Result<Imported, ImportErrors> {
    let stmts = shell::parse(source, None).map_err(|e| ImportError {
        origin: Some(Origin {
            file: None,
            line: e.line,
        }),
        message: e.message,
        help: Some("weft import reads a subset of sh: see docs/import.md".into()),
    })?;
    let mut m = model::Model::new(batch);
    m.run(&stmts, model::ROOT)?;
    let mut imported = emit::finish(m, lab, "script")?;
    // First: it explains the warnings about `$` that follow.
    if let Some(w) = prompt_warning(source, stmts.is_empty()) {
        imported.warnings.insert(0, w);
    }
    Ok(imported)
}

/// Commands copied from an article or a terminal with their prompt
/// (`# ip link add ...` as root, `$ ip ...`): `#` makes the line a
/// comment, so a script of them imports as an empty lab without a word,
/// and `$` reads as a program. Said once, at the first such line. A `#`
/// line is taken for a prompt only when the input has no command at all
/// (scripts keep commands commented out on purpose, as the seed's own).
fn prompt_warning(source: &str, no_commands: bool) -> Option<Warning> {
    const PROGRAMS: &[&str] = &[
        "ip",
        "brctl",
        "tunctl",
        "vconfig",
        "ovs-vsctl",
        "sysctl",
        "ifconfig",
        "echo",
        "sudo",
    ];
    source.lines().enumerate().find_map(|(i, l)| {
        let l = l.trim_start();
        let (prompt, rest) = l.split_at_checked(1)?;
        let program = rest.strip_prefix(' ')?.split_whitespace().next()?;
        let counts = match prompt {
            "$" => true,
            "#" => no_commands,
            _ => false,
        };
        (counts && PROGRAMS.contains(&program)).then(|| Warning {
            origin: Some(Origin {
                file: None,
                line: i + 1,
            }),
            message: format!(
                "`{}` looks like a command copied with its shell prompt `{prompt} `: weft import \
                 reads a `#` line as a comment and `$` as a program, so nothing of such lines \
                 is imported; remove the prompts (`sed 's/^[#$] //' FILE`) and import again",
                l.chars().take(40).collect::<String>()
            ),
        })
    })
}

/// Import a containerlab topology (`*.clab.yml`). The lab keeps the
/// topology's `name` unless `lab` is given.
pub fn clab(source: &str, lab: Option<&str>) -> Result<Imported, ImportErrors> {
    clab::import(source, lab)
}

/// A lab name weft accepts, made from a file name: lower case, other
/// characters as `-`, at most 32.
pub fn lab_name_from(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches(|c| c == '-' || c == '_').to_string();
    s.truncate(32);
    if s.is_empty() {
        "imported".into()
    } else {
        s
    }
}

/// The byte range of a 1-based line of `text` (without its newline), for
/// pointing at it.
pub fn line_span(text: &str, line: usize) -> Option<Range<usize>> {
    let mut start = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            let len = l.trim_end_matches('\n').len();
            return Some(start..start + len.max(1));
        }
        start += l.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(source: &str) -> Vec<String> {
        script(source, "p", &|_| None)
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn commands_copied_with_a_root_prompt_are_said_to_be() {
        // Seed 002 prints its commands so: every line a comment.
        let w = warnings("# ip link add veth0 type veth peer name veth1\n# ip link set veth0 up\n");
        assert!(
            w.iter().any(
                |w| w.starts_with("line 1: `# ip link add veth0 type veth pe")
                    && w.contains("shell prompt `# `")
            ),
            "{w:?}"
        );
    }

    #[test]
    fn a_dollar_prompt_is_said_even_among_commands() {
        let w = warnings("ip netns add a\n$ ip netns add b\n");
        assert!(
            w.iter()
                .any(|w| w.starts_with("line 2: `$ ip netns add b`") && w.contains("prompt `$ `")),
            "{w:?}"
        );
    }

    #[test]
    fn commands_commented_out_beside_real_ones_are_left_alone() {
        let w = warnings("ip netns add ns1\n# ip netns exec ns1 ifconfig lo up\n# a comment\n");
        assert!(!w.iter().any(|w| w.contains("prompt")), "{w:?}");
    }
}
