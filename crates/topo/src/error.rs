//! Diagnostics that point into the topology file.

use std::ops::Range;

/// Why the model refused a value, a name or a request made outside a file
/// (`weft impair` options, `--machine`, a resolver's answer). Problems in a
/// file are [`Diagnostic`]s instead, which carry the same messages with
/// their position.
///
/// Variants are for callers to match on; each carries the value it is
/// about, and its message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value not written the way its setting wants: `what` is the form
    /// expected ("a duration", "a rate", "a MAC address", "a prefix"),
    /// `help` how to write one.
    #[error("`{value}` is not {what}: {help}")]
    Malformed {
        what: &'static str,
        value: String,
        help: String,
    },
    /// A value of the right form outside the range its setting accepts;
    /// `range` is the range in the setting's own units ("0 to 60s").
    #[error("`{value}` is out of range: write {range}")]
    OutOfRange { value: String, range: &'static str },
    /// A word that is not one of a fixed set (a preset, a NAT type, a
    /// direction); `choices` lists the accepted ones.
    #[error("{what} `{value}` is not known: write {choices}")]
    Unknown {
        what: &'static str,
        value: String,
        choices: String,
    },
    /// A prefix with host bits set (`10.0.0.1/24`), which the kernel
    /// refuses as a route's destination.
    #[error("`{value}` has host bits set: the kernel would refuse it; write `{network}`")]
    HostBits {
        value: String,
        network: ipnet::IpNet,
    },
    /// Impairment settings that contradict each other (a jitter larger
    /// than the delay, a queue without a rate); `key` is the setting the
    /// message asks to change.
    #[error("{why}")]
    Impair { key: &'static str, why: String },
    /// A route option whose argument is not an IP address (`via`, `src`).
    #[error("`{key} {value}`: `{value}` is not an IP address")]
    BadAddress { key: &'static str, value: String },
    /// A route option written without its argument.
    #[error("`{key}` needs {what} after it")]
    NeedsValue { key: String, what: &'static str },
    /// A route `ip route add` would refuse, or one weft does not build;
    /// `why` says which rule it breaks and what to write.
    #[error("{why}")]
    Route { route: String, why: String },
    /// A name that breaks the rule for its kind (the kernel's for
    /// interfaces, weft's for labs and nodes, `/proc/sys`'s for sysctls).
    #[error("{rule}")]
    BadName {
        kind: NameKind,
        name: String,
        rule: String,
    },
    /// A path inside a node a bind may not cover.
    #[error("{why}")]
    BindTarget { target: String, why: String },
    /// A NAT port forward that is not `PORT[/PROTO] -> NODE[:PORT]`.
    #[error("forward `{forward}`: {why}")]
    Forward { forward: String, why: String },
    /// `nft -j list chains` printed something weft cannot read.
    #[error("nft -j list chains printed {what}")]
    NftOutput { what: String },
    /// `--machine` was given for a lab that declares no machines.
    #[error("lab {lab} declares no machines, so it is built whole: leave out --machine (or add [machines.{machine}] and machine = \"{machine}\" on its nodes)")]
    NoMachines { lab: String, machine: String },
    /// `--machine` names a machine the lab does not declare.
    #[error("lab {lab} has no machine `{machine}`; its machines are {known}")]
    NoMachine {
        lab: String,
        machine: String,
        known: String,
    },
    /// A lab that spans machines was built without saying which one this is.
    #[error("lab {lab} spans the machines {known}: say which one this is, e.g. `weft up FILE --machine {first}`, and run it on each machine")]
    MachineNeeded {
        lab: String,
        known: String,
        first: String,
    },
    /// A machine's underlay name did not resolve; `detail` is the
    /// resolver's answer.
    #[error("machine `{machine}`: its underlay name `{host}` does not resolve: {detail}; check the name (a pod's name is POD.SERVICE) or wait until the machine exists")]
    Unresolved {
        machine: String,
        host: String,
        detail: String,
    },
    /// A machine's underlay name resolved to an address no underlay can
    /// have (unspecified, multicast, loopback).
    #[error("machine `{machine}`: its underlay name `{host}` resolves to {addr}, which cannot be an underlay address")]
    BadUnderlay {
        machine: String,
        host: String,
        addr: std::net::IpAddr,
    },
    /// Two machines of a lab on one underlay address.
    #[error("machines `{first}` and `{second}` have the same underlay address {addr}")]
    SameUnderlay {
        first: String,
        second: String,
        addr: std::net::IpAddr,
    },
    /// A VXLAN link between machines of different IP versions.
    #[error("vxlan link {end}: machine `{machine}`'s underlay {local} and `{peer}`'s {remote} are not of one IP version")]
    UnderlayFamilies {
        end: String,
        machine: String,
        local: std::net::IpAddr,
        peer: String,
        remote: std::net::IpAddr,
    },
    /// `--machines` for a lab whose file places its nodes itself.
    #[error("lab {lab} declares its machines ([machines.*]): leave out --machines, or remove them to have weft place the nodes")]
    MachinesDeclared { lab: String },
    /// `--machines K` with K not from 1 to the number of nodes.
    #[error("--machines {asked}: lab {lab} has {nodes} node(s); give 1 to {} machines", (*.nodes).max(1))]
    MachineCount {
        lab: String,
        asked: usize,
        nodes: usize,
    },
    /// `--machines K` would name a machine with a name weft refuses.
    #[error("--machines {asked}: machine name `{machine}`: {}", .why.to_string().replace("lab name", "name"))]
    MachineName {
        asked: usize,
        machine: String,
        why: Box<Error>,
    },
}

/// The kinds of names [`Error::BadName`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Lab,
    Node,
    Interface,
    SysctlKey,
}

impl Error {
    /// What a person can do about it, where the message does not say so
    /// already.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            Error::NoMachine { machine, .. } => format!(
                "check the spelling, or declare the machine in the file: [machines.{machine}]"
            ),
            Error::BadUnderlay { machine, .. } => format!(
                "give machine `{machine}` an underlay name that resolves to its address on the underlay network, or its address itself"
            ),
            Error::SameUnderlay { .. } => {
                "each machine needs its own underlay address: check [machines.*] underlay".into()
            }
            Error::UnderlayFamilies { .. } => {
                "give both machines underlay addresses of one IP version".into()
            }
            Error::MachineName { .. } => {
                "machines are named LAB-N, which must pass the rules for lab names: shorten the lab's name".into()
            }
            Error::NftOutput { .. } => {
                "check that `nft -j list chains` prints JSON on this machine".into()
            }
            _ => return None,
        })
    }

    /// The setting an [`Error::Impair`] is about (`jitter`, `queue`, ...),
    /// for pointing at it in a file or on a command line.
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            Error::Impair { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The same error about a differently named setting: `mapping` or
    /// `filtering` for a NAT behaviour word, which [`Error::Unknown`]
    /// otherwise calls by its kind.
    pub fn named(self, setting: &'static str) -> Error {
        match self {
            Error::Unknown { value, choices, .. } => Error::Unknown {
                what: setting,
                value,
                choices,
            },
            other => other,
        }
    }
}

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
