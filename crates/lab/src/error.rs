use std::path::PathBuf;

use crate::checks::CheckResult;

/// Why a lab operation failed: what, on which object, and what to do.
///
/// Variants are for programs to match on (`NamespaceTaken`,
/// `ChecksFailed`, `Up { outcome: Outcome::RollbackFailed { .. }, .. }`);
/// [`Error::help`] says what a person can do about it. An error that wraps
/// another keeps it as its `source` and does not repeat its text, so a
/// renderer that walks the chain prints each cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sys(#[from] weft_sys::Error),
    /// A value, name or request the topology model refuses outside a
    /// file (`--machine`, `--machines`, a machine's underlay name, an
    /// impairment value); match on the inner [`weft_topo::Error`].
    #[error(transparent)]
    Topo(Box<weft_topo::Error>),
    /// The kernel refused an operation (`what`, the `ip` command it
    /// equals) on an object of `node`.
    #[error("the kernel refused {what} in node {node}: {}", std::io::Error::from_raw_os_error(*.errno))]
    Kernel {
        node: String,
        what: String,
        errno: i32,
    },
    /// Another VXLAN device of this machine's namespace uses the VNI and
    /// port (the kernel answers EEXIST).
    #[error("the kernel refused {what} in node {node}: VNI {vni} on UDP port {port} is taken")]
    VniTaken {
        node: String,
        what: String,
        vni: u32,
        port: u16,
    },
    #[error("state file {}: {detail}", path.display())]
    State { path: PathBuf, detail: String },
    #[error("there is no lab named {0} on this machine")]
    NoLab(String),
    #[error("lab {lab} is built here as machine shares ({})", .shares.join(", "))]
    OnlyShares { lab: String, shares: Vec<String> },
    #[error("lab {lab} has no node {node} (its nodes: {known})")]
    NoNode {
        lab: String,
        node: String,
        known: String,
    },
    /// A named interface is not there (not in the file, or removed by hand).
    #[error("node {node}: interface {iface} is not there{}", if .known.is_empty() { String::new() } else { format!(" (its interfaces: {})", .known) })]
    NoInterface {
        node: String,
        iface: String,
        known: String,
    },
    /// A network namespace the lab needs exists and is not this lab's.
    #[error("{}", crate::owner::taken_message(.node, .netns, .lab, .owner.as_deref()))]
    NamespaceTaken {
        lab: String,
        node: String,
        netns: String,
        /// The weft lab that owns it, when it carries a weft tag.
        owner: Option<String>,
    },
    #[error("{what} did not happen within {secs:.1} s: {detail}")]
    Timeout {
        what: String,
        secs: f64,
        detail: String,
    },
    /// A service or container that did not start or become ready.
    #[error("node {node}, service {service}: {detail}{}", if log.is_empty() { String::new() } else { format!("\nits last log lines (weft logs LAB {node}:{service}):\n  {}", log.join("\n  ")) })]
    Service {
        node: String,
        service: String,
        detail: String,
        log: Box<[String]>,
    },
    /// A node's private files (its mount namespace and binds) could not
    /// be set up.
    #[error("node {node}: setting up its private files (binds)")]
    NodeFiles {
        node: String,
        #[source]
        source: Box<weft_sys::Error>,
    },
    /// The lab's service supervisor exited while weft waited for it.
    #[error("the service supervisor of lab {lab} (pid {pid}) exited{}", if .log_tail.is_empty() { String::new() } else { format!(": {}", .log_tail) })]
    SupervisorExited {
        lab: String,
        pid: u32,
        log_tail: String,
    },
    /// The lab was built but did not become usable in time: ports not
    /// forwarding, carriers not up, addresses tentative.
    #[error("lab {lab} did not become usable within {secs:.1} s: still waiting for {}", .waiting.join(", "))]
    NotReady {
        lab: String,
        secs: f64,
        waiting: Vec<String>,
    },
    /// Health checks failed after the lab was built.
    #[error("{}", failed_lines(.failed))]
    ChecksFailed {
        lab: String,
        /// Only the failed ones.
        failed: Vec<CheckResult>,
        /// Warnings that may explain them (a foreign nftables chain).
        warnings: Vec<String>,
    },
    /// The switch datapath process of the lab is not running.
    #[error("the switch datapath of lab {lab} is not running")]
    DatapathNotRunning { lab: String },
    /// The switch datapath exited while weft waited for it.
    #[error("the switch datapath of lab {lab} exited{}", if .log_tail.is_empty() { String::new() } else { format!(": {}", .log_tail) })]
    DatapathExited { lab: String, log_tail: String },
    /// The switch datapath refused a request, or answered with something
    /// else than was asked.
    #[error("the switch datapath of lab {lab}: {detail}")]
    Datapath { lab: String, detail: String },
    /// `nft` is missing or refused weft's table.
    #[error("node {node}: {detail}")]
    Nft { node: String, detail: String },
    /// A program weft runs, or a file it needs, is not there.
    #[error("{what}")]
    Missing { what: String, help: String },
    /// A request that names things which do not fit (a link that is not
    /// there, a capture point of the wrong kind, a bad impairment).
    #[error("{what}")]
    Invalid { what: String, help: Option<String> },
    /// A machine of a lab that spans machines is misconfigured.
    #[error("machine `{machine}`: {detail}")]
    Machine { machine: String, detail: String },
    /// A capture socket could not be opened on a capture point.
    #[error("capturing on {point}")]
    Capture {
        point: String,
        #[source]
        source: weft_sys::Error,
    },
    /// A topology file that does not pass the checks.
    #[error(transparent)]
    File(Box<crate::FileError>),
    /// `weft up` failed; `outcome` says what became of the lab.
    #[error("{}", outcome.describe(.lab))]
    Up {
        lab: String,
        #[source]
        error: Box<Error>,
        outcome: Outcome,
    },
}

/// What a failed `weft up` left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Nothing was changed yet (refused before applying).
    Untouched,
    /// The lab was restored to its state before this run.
    Restored,
    /// The lab was new: everything this run made was removed.
    Removed,
    /// `--keep-on-error`: left as applied; the next `up` finishes or
    /// replaces it.
    Kept,
    /// Undoing failed too: `error` says why, `left` what was not undone.
    RollbackFailed { error: String, left: Vec<String> },
}

impl Outcome {
    /// One sentence about lab `lab`.
    pub fn describe(&self, lab: &str) -> String {
        match self {
            Outcome::Untouched => format!("lab {lab} was not changed"),
            Outcome::Restored => {
                format!("lab {lab} was restored to its state before this `weft up`")
            }
            Outcome::Removed => format!("lab {lab} was new, so it was removed"),
            Outcome::Kept => format!("lab {lab} was left as applied (--keep-on-error)"),
            Outcome::RollbackFailed { error, left } => {
                let mut s = format!(
                    "restoring lab {lab} to its state before this `weft up` failed: {error}"
                );
                if !left.is_empty() {
                    s += &format!(
                        "; not restored ({} step(s)): {}",
                        left.len(),
                        left.join("; ")
                    );
                }
                s
            }
        }
    }
}

fn failed_lines(failed: &[CheckResult]) -> String {
    failed
        .iter()
        .map(|r| format!("{} failed: {}", r.check, r.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<weft_topo::Error> for Error {
    fn from(e: weft_topo::Error) -> Self {
        Error::Topo(Box::new(e))
    }
}

impl Error {
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    /// A kernel refusal of `what` (an `ip` command) in `node`.
    pub fn kernel(node: &str, what: String, errno: i32) -> Self {
        Error::Kernel {
            node: node.to_string(),
            what,
            errno,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            help: None,
        }
    }

    pub(crate) fn invalid_help(what: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            help: Some(help.into()),
        }
    }

    /// The innermost error of a failed `up` (the one that made it fail).
    pub fn cause(&self) -> &Error {
        match self {
            Error::Up { error, .. } => error.cause(),
            e => e,
        }
    }

    /// What a person can do about it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            Error::Kernel { errno, .. } => match *errno {
                libc::EPERM | libc::EACCES => "weft needs CAP_NET_ADMIN: run it as root".into(),
                libc::EEXIST => "an object of that name already exists in the namespace; it is not weft's, or a previous run left it".into(),
                libc::EOPNOTSUPP | libc::EAFNOSUPPORT => "this kernel lacks the feature; see docs/topology.md for what needs which kernel option".into(),
                libc::ENETUNREACH | libc::ENETDOWN => "the route's gateway is not reachable through an interface that is up".into(),
                libc::ERANGE => "a bridge timer is out of the range the kernel accepts with STP on".into(),
                _ => return None,
            },
            Error::NoLab(_) => "`weft status` lists the labs".into(),
            Error::VniTaken { .. } => "another VXLAN device of this machine's namespace already uses it (another lab, or `ip -d link show type vxlan`); give the link another `vni` or `port`".into(),
            Error::OnlyShares { shares, .. } => format!("name one, like {}", shares[0]),
            Error::NoInterface { .. } => {
                "was it removed by hand? `weft up` recreates what the file says".into()
            }
            Error::NotReady { lab, .. } => format!(
                "`weft status {lab}` shows the ports; `weft up --ready-timeout SECS` waits longer"
            ),
            Error::ChecksFailed { warnings, .. } if !warnings.is_empty() => {
                format!("warning: {}", warnings.join("\nwarning: "))
            }
            Error::DatapathNotRunning { .. } => "`weft up` starts it again".into(),
            Error::Missing { help, .. } => help.clone(),
            Error::Invalid { help, .. } => return help.clone(),
            Error::Up { lab, outcome: Outcome::RollbackFailed { .. }, .. } => {
                format!("`weft down {lab}` removes the lab")
            }
            Error::Up { error, .. } => return error.help(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wrapped model error is the model error: its text once, no
    /// second cause for a renderer to repeat, and callers can match it.
    #[test]
    fn a_topo_error_is_wrapped_without_repeating_it() {
        let inner = weft_topo::impair::parse_percent("200%").unwrap_err();
        let e = Error::from(inner.clone());
        assert_eq!(e.to_string(), "`200%` is out of range: write 0% to 100%");
        assert_eq!(e.to_string(), inner.to_string());
        assert!(std::error::Error::source(&e).is_none());
        assert!(matches!(
            &e,
            Error::Topo(t) if matches!(**t, weft_topo::Error::OutOfRange { .. })
        ));
    }
}
