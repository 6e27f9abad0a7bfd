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
    /// A file or socket operation of weft itself failed.
    #[error("{action}")]
    Io {
        /// What weft was doing ("reading state file ...").
        action: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An error of the OS layer (netlink, namespaces, processes).
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
        /// The node whose namespace the operation was in.
        node: String,
        /// The operation, as the `ip` command it equals.
        what: String,
        /// The kernel's answer (`libc::EEXIST`, ...); [`Error::help`] reads it.
        errno: i32,
    },
    /// Another VXLAN device of this machine's namespace uses the VNI and
    /// port (the kernel answers EEXIST).
    #[error("the kernel refused {what} in node {node}: VNI {vni} on UDP port {port} is taken")]
    VniTaken {
        /// The node the VXLAN end was to be made in.
        node: String,
        /// The operation, as the `ip` command it equals.
        what: String,
        /// The VXLAN network identifier.
        vni: u32,
        /// The UDP port.
        port: u16,
    },
    /// A lab's state file could not be read, parsed or written.
    #[error("state file {}: {detail}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// No lab of this name is built on this machine.
    #[error("there is no lab named {0} on this machine")]
    NoLab(String),
    /// The lab is built here only as shares of machines (`LAB@MACHINE`):
    /// name one of them.
    #[error("lab {lab} is built here as machine shares ({})", .shares.join(", "))]
    OnlyShares {
        /// The lab's name.
        lab: String,
        /// The shares built here.
        shares: Vec<String>,
    },
    /// The lab has no node of this name.
    #[error("lab {lab} has no node {node} (its nodes: {known})")]
    NoNode {
        /// The lab.
        lab: String,
        /// The name asked for.
        node: String,
        /// The lab's nodes, for the message.
        known: String,
    },
    /// A named interface is not there (not in the file, or removed by hand).
    #[error("node {node}: interface {iface} is not there{}", if .known.is_empty() { String::new() } else { format!(" (its interfaces: {})", .known) })]
    NoInterface {
        /// The node.
        node: String,
        /// The name asked for.
        iface: String,
        /// The node's interfaces, for the message (may be empty).
        known: String,
    },
    /// A network namespace the lab needs exists and is not this lab's.
    #[error("{}", crate::owner::taken_message(.node, .netns, .lab, .owner.as_deref()))]
    NamespaceTaken {
        /// The lab being built.
        lab: String,
        /// The node that needs the namespace.
        node: String,
        /// The namespace's name.
        netns: String,
        /// The weft lab that owns it, when it carries a weft tag.
        owner: Option<String>,
    },
    /// Something weft waits for did not happen in time.
    #[error("{what} did not happen within {secs:.1} s: {detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long weft waited.
        secs: f64,
        /// What was seen instead.
        detail: String,
    },
    /// A service or container that did not start or become ready.
    #[error(
        "node {node}, service {service}: {detail}{}",
        log_tail(lab, node, service, log)
    )]
    Service {
        /// The lab the service belongs to.
        lab: String,
        /// The node the service runs in.
        node: String,
        /// The service's name in the file.
        service: String,
        /// What went wrong (its exit status, the readiness check that failed).
        detail: String,
        /// Its log's last lines as the service wrote them (the message
        /// adds the `weft logs` command that shows it all).
        log: Box<[String]>,
    },
    /// A node's private files (its mount namespace and binds) could not
    /// be set up.
    #[error("node {node}: setting up its private files (binds)")]
    NodeFiles {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: Box<weft_sys::Error>,
    },
    /// The lab's service supervisor exited while weft waited for it.
    #[error("the service supervisor of lab {lab} (pid {pid}) exited{}", if .log_tail.is_empty() { String::new() } else { format!(": {}", .log_tail) })]
    SupervisorExited {
        /// The lab.
        lab: String,
        /// The supervisor's process id.
        pid: u32,
        /// The end of its log, when there is one.
        log_tail: String,
    },
    /// The lab was built but did not become usable in time: ports not
    /// forwarding, carriers not up, addresses tentative.
    #[error("lab {lab} did not become usable within {secs:.1} s: still waiting for {}", .waiting.join(", "))]
    NotReady {
        /// The lab.
        lab: String,
        /// How long weft waited (`--ready-timeout`).
        secs: f64,
        /// What was still not ready, one entry each.
        waiting: Vec<String>,
    },
    /// Health checks failed after the lab was built.
    #[error("{}", failed_lines(.failed))]
    ChecksFailed {
        /// The lab.
        lab: String,
        /// Only the failed ones.
        failed: Vec<CheckResult>,
        /// Warnings that may explain them (a foreign nftables chain).
        warnings: Vec<String>,
    },
    /// The switch datapath process of the lab is not running.
    #[error("the switch datapath of lab {lab} is not running")]
    DatapathNotRunning {
        /// The lab.
        lab: String,
    },
    /// The switch datapath exited while weft waited for it.
    #[error("the switch datapath of lab {lab} exited{}", if .log_tail.is_empty() { String::new() } else { format!(": {}", .log_tail) })]
    DatapathExited {
        /// The lab.
        lab: String,
        /// The end of its log, when there is one.
        log_tail: String,
    },
    /// The switch datapath refused a request, or answered with something
    /// else than was asked.
    #[error("the switch datapath of lab {lab}: {detail}")]
    Datapath {
        /// The lab.
        lab: String,
        /// What it said, or what was wrong with the answer.
        detail: String,
    },
    /// `nft` is missing or refused weft's table.
    #[error("node {node}: {detail}")]
    Nft {
        /// The node whose NAT table it was.
        node: String,
        /// What `nft` said.
        detail: String,
    },
    /// A program weft runs, or a file it needs, is not there.
    #[error("{what}")]
    Missing {
        /// What is missing.
        what: String,
        /// How to get it.
        help: String,
    },
    /// A request that names things which do not fit (a link that is not
    /// there, a capture point of the wrong kind, a bad impairment).
    #[error("{what}")]
    Invalid {
        /// What does not fit.
        what: String,
        /// What to ask instead, when there is something to say.
        help: Option<String>,
    },
    /// A machine of a lab that spans machines is misconfigured.
    #[error("machine `{machine}`: {detail}")]
    Machine {
        /// The machine's name in the file.
        machine: String,
        /// What is wrong.
        detail: String,
    },
    /// A capture socket could not be opened on a capture point.
    #[error("capturing on {point}")]
    Capture {
        /// The capture point (`node:iface`).
        point: String,
        /// Why the socket could not be opened.
        #[source]
        source: weft_sys::Error,
    },
    /// A topology file that does not pass the checks.
    #[error(transparent)]
    File(Box<crate::FileError>),
    /// `weft up` failed; `outcome` says what became of the lab.
    #[error("{}", outcome.describe(.lab))]
    Up {
        /// The lab.
        lab: String,
        /// The error that made it fail.
        #[source]
        error: Box<Error>,
        /// What became of the lab.
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
    RollbackFailed {
        /// Why undoing failed.
        error: String,
        /// The plan lines that were not undone.
        left: Vec<String>,
    },
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

/// The lines of a service's log below its failure, indented, after the
/// command that prints the whole log; nothing when the log is empty.
fn log_tail(lab: &str, node: &str, service: &str, log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    let mut s = format!("\nits last log lines (weft logs {lab} {node}:{service}):");
    for l in log {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
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
    /// An [`Error::Io`]: `action` says what weft was doing.
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
            // Without root the user sees only labs built in their own user
            // namespace: root's lab of that name exists, and is not theirs.
            Error::NoLab(_) if weft_sys::userns::inside() => {
                "`weft status` lists your labs; without root weft sees only the labs you built, not root's or other users'".into()
            }
            Error::NoLab(_) => "it is not up: `weft up FILE` builds it; `weft status` lists the labs that are".into(),
            Error::VniTaken { .. } => "another VXLAN device of this machine's namespace already uses it (another lab, or `ip -d link show type vxlan`); give the link another `vni` or `port`".into(),
            Error::OnlyShares { shares, .. } => format!("name one, like {}", shares[0]),
            // One the node never had (a typo): the message lists its
            // interfaces, and "removed by hand" would mislead.
            Error::NoInterface { iface, known, .. }
                if !known.is_empty() && !known.split(", ").any(|k| k == iface) =>
            {
                return None
            }
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
            Error::Topo(e) => return e.help(),
            Error::Up { lab, outcome: Outcome::RollbackFailed { .. }, .. } => {
                format!("`weft down {lab}` removes the lab")
            }
            Error::Up { error, .. } => return error.help(),
            // The two ways podman's runtime fails on some machines
            // (sandboxes, cgroups v1/v2 hybrids): the log says so, but
            // not that a containers.conf fixes it.
            Error::Service { log, .. }
                if log.iter().any(|l| {
                    l.contains("error setting rlimit") || (l.contains("crun") && l.contains("cgroup"))
                }) =>
            {
                "podman's runtime cannot start containers on this machine: use runc and lower limits in a containers.conf named by CONTAINERS_CONF (docs/topology.md, Containers: `image`)".into()
            }
            // chown to a uid the user namespace does not map fails with
            // EINVAL: only the user's own uid exists in weft's user
            // namespace without root (FRR's daemons chown to frr).
            Error::Service { log, .. }
                if log.iter().any(|l| l.contains("chown") && l.contains("Invalid argument")) =>
            {
                "the user it gives files to does not exist in this user namespace: without root, weft's holds only you, so daemons that chown to their own user (FRR's) cannot run; run weft as root for this lab (docs/library.md, Without root)".into()
            }
            // Exit status 0 is no crash: the command did its work and
            // ended, which a shell without a terminal does at once.
            Error::Service { node, service, detail, .. }
                if detail.contains("(exit status: 0) before it was ready") =>
            {
                if service == weft_topo::workload::CONTAINER_SERVICE {
                    format!("a container's command must keep running until `weft down` (an image's shell ends at once without a terminal): give the node one that does, e.g. command = [\"sleep\", \"infinity\"] under [nodes.{node}]")
                } else {
                    "a service's command must keep running until `weft down`: run one that stays in the foreground (a daemon's `-d`/`--foreground` option, not its forking mode)".into()
                }
            }
            _ => return None,
        })
    }
}

/// The help for what people meet as users (newuser pass): one
/// constructor for a failed service, so that a field added to
/// `Error::Service` is added once here.
#[cfg(test)]
mod help_tests {
    use super::*;

    fn service(node: &str, service: &str, detail: &str, log: &[&str]) -> Error {
        Error::Service {
            lab: "lab".into(),
            node: node.into(),
            service: service.into(),
            detail: detail.into(),
            log: log.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn a_chown_refused_by_the_user_namespace_says_to_be_root() {
        let e = service(
            "r1",
            "zebra",
            "it exited (exit status: 1) before it was ready",
            &["chown: changing ownership of '/run/frr': Invalid argument"],
        );
        let h = e.help().unwrap();
        assert!(h.contains("run weft as root") && h.contains("FRR"), "{h}");
    }

    #[test]
    fn a_command_that_ends_at_once_is_told_to_keep_running() {
        let detail = "it exited (exit status: 0) before it was ready";
        let h = service("client1", "container", detail, &[]).help().unwrap();
        assert!(
            h.contains("command = [\"sleep\", \"infinity\"] under [nodes.client1]"),
            "{h}"
        );
        let h = service("client1", "web", detail, &[]).help().unwrap();
        assert!(
            h.contains("keep running") && !h.contains("nodes.client1"),
            "{h}"
        );
    }

    #[test]
    fn an_interface_the_node_never_had_is_not_said_removed_by_hand() {
        let e = |iface: &str| Error::NoInterface {
            node: "ns1".into(),
            iface: iface.into(),
            known: "lo, tap1".into(),
        };
        assert_eq!(e("eth9").help(), None);
        assert!(e("tap1")
            .help()
            .is_some_and(|h| h.contains("removed by hand")));
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

    #[test]
    fn a_container_the_runtime_refuses_points_to_containers_conf() {
        let e = |line: &str| Error::Service {
            lab: "po".into(),
            node: "web".into(),
            service: "container".into(),
            detail: "it exited (exit status: 126) before it was ready".into(),
            log: vec![line.to_string()].into(),
        };
        let h = e("Error: runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied").help();
        assert!(h.is_some_and(|h| h.contains("CONTAINERS_CONF")));
        assert_eq!(e("httpd: bind: Address in use").help(), None);
    }

    #[test]
    fn a_failed_service_keeps_its_log_lines_raw_and_says_them_indented() {
        let e = |log: &[&str]| Error::Service {
            lab: "po".into(),
            node: "r1".into(),
            service: "zebra".into(),
            detail: "it exited (exit status: 1) before it was ready".into(),
            log: log.iter().map(|l| l.to_string()).collect(),
        };
        let lines = ["zebra: starting", "zebra: no config"];
        let Error::Service { log, .. } = e(&lines) else {
            unreachable!()
        };
        assert_eq!(&log[..], lines);
        assert_eq!(
            e(&lines).to_string(),
            "node r1, service zebra: it exited (exit status: 1) before it was ready\n\
             its last log lines (weft logs po r1:zebra):\n  zebra: starting\n  zebra: no config"
        );
        assert_eq!(
            e(&[]).to_string(),
            "node r1, service zebra: it exited (exit status: 1) before it was ready"
        );
    }
}
