//! The crate-wide error type. Every variant says what failed, on which
//! object, and (where there is one) what the user can do about it.

use std::io;

/// Errors from weft's OS primitives.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed. `action` names the operation and its object
    /// ("creating network namespace weft-x-ns1"), `hint` what to do.
    #[error("{action}: {err}{}", hint_suffix(.hint))]
    Os {
        action: String,
        err: io::Error,
        hint: Option<String>,
    },

    /// `/run/netns/NAME` is already there, so `ip netns add` semantics
    /// forbid taking it over.
    #[error(
        "creating network namespace {name}: /run/netns/{name} already exists and is not weft's; \
         remove it with `ip netns del {name}` or pick another lab name"
    )]
    NetnsExists { name: String },

    /// The named namespace is not in `/run/netns`.
    #[error(
        "network namespace {name} does not exist (no /run/netns/{name}); \
         is the lab up? (`ip netns list` shows the existing ones)"
    )]
    NetnsMissing { name: String },

    /// A namespace name that cannot be a file name in `/run/netns`.
    #[error("invalid network namespace name {name:?}: {reason}")]
    NetnsName { name: String, reason: &'static str },

    /// The caller's `setup` closure failed inside a new namespace.
    #[error("setting up network namespace {name}: {source}")]
    Setup {
        name: String,
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The kernel rejected or garbled a netlink exchange.
    #[error("{action}: {detail}")]
    Netlink { action: String, detail: String },

    /// Waiting for something the kernel does asynchronously took too long.
    #[error("{what}: no answer from the kernel within {timeout:?}{}", hint_suffix(.hint))]
    Timeout {
        what: String,
        timeout: std::time::Duration,
        hint: Option<String>,
    },

    /// A sysctl key weft refuses to touch or cannot parse.
    #[error("invalid sysctl key {key:?}: {reason}")]
    SysctlKey {
        key: String,
        reason: crate::sysctl::BadKey,
    },

    /// The sysctl file is not there in the calling thread's namespace.
    #[error(
        "sysctl {key} does not exist in this namespace (a per-interface key needs the \
         interface to exist; some net.core keys exist only in the host namespace)"
    )]
    SysctlMissing { key: String },

    /// `/dev/net/tun` is missing.
    #[error("creating {what} {name}: the kernel has no TUN/TAP support (/dev/net/tun is missing; try `modprobe tun`)")]
    NoTun { what: &'static str, name: String },

    /// The process lacks the capabilities an action needs.
    #[error("{action} needs {missing}: run it as root (e.g. with sudo), or as a user without WEFT_ROOTLESS=0 (weft then builds in a user namespace of its own)")]
    NotAdmin { action: String, missing: String },

    /// Running without root: weft's user namespace could not be made or
    /// entered, or the lab needs what only root may do.
    #[error("{what}; {help}")]
    Rootless { what: String, help: String },

    /// A caller-supplied argument is unusable.
    #[error("{0}")]
    Invalid(String),
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("; {h}"),
        None => String::new(),
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failed system call without a hint.
    pub(crate) fn os(action: impl Into<String>, err: impl Into<io::Error>) -> Self {
        Error::Os {
            action: action.into(),
            err: err.into(),
            hint: None,
        }
    }

    /// A failed system call with advice for the user.
    pub(crate) fn os_hint(
        action: impl Into<String>,
        err: impl Into<io::Error>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Os {
            action: action.into(),
            err: err.into(),
            hint: Some(hint.into()),
        }
    }

    /// The OS error number behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_names_action_errno_and_hint() {
        let e = Error::os_hint(
            "mounting /run/netns",
            io::Error::from_raw_os_error(libc::EPERM),
            "run as root",
        );
        let s = e.to_string();
        assert!(s.starts_with("mounting /run/netns: "), "{s}");
        assert!(s.contains("Operation not permitted"), "{s}");
        assert!(s.ends_with("; run as root"), "{s}");
        assert_eq!(e.errno(), Some(libc::EPERM));
    }

    #[test]
    fn exists_error_tells_what_to_do() {
        let s = Error::NetnsExists {
            name: "weft-x-ns1".into(),
        }
        .to_string();
        assert!(s.contains("/run/netns/weft-x-ns1 already exists"), "{s}");
        assert!(s.contains("ip netns del weft-x-ns1"), "{s}");
    }
}
