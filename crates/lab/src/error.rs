use std::path::PathBuf;

/// Why a lab operation failed: what, on which object, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sys(#[from] weft_sys::Error),
    #[error("the kernel refused {what} in node {node}: {reason}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Kernel {
        node: String,
        what: String,
        reason: String,
        hint: Option<String>,
    },
    #[error("state file {}: {detail}", path.display())]
    State { path: PathBuf, detail: String },
    #[error("there is no lab named {0} on this machine (`weft status` lists the labs)")]
    NoLab(String),
    #[error("lab {lab} is built here as machine shares ({}): name one, like {}", .shares.join(", "), .shares[0])]
    OnlyShares { lab: String, shares: Vec<String> },
    #[error("lab {lab} has no node {node} (its nodes: {known})")]
    NoNode {
        lab: String,
        node: String,
        known: String,
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
        log: Vec<String>,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    /// A kernel refusal, with a hint for the errnos people actually meet.
    pub fn kernel(node: &str, what: String, errno: i32) -> Self {
        let hint = match errno {
            libc::EPERM | libc::EACCES => Some("weft needs CAP_NET_ADMIN: run it as root"),
            libc::EEXIST => Some("an object of that name already exists in the namespace; it is not weft's, or a previous run left it"),
            libc::EOPNOTSUPP | libc::EAFNOSUPPORT => Some("this kernel lacks the feature; see docs/topology.md for what needs which kernel option"),
            libc::ENETUNREACH | libc::ENETDOWN => Some("the route's gateway is not reachable through an interface that is up"),
            libc::ERANGE => Some("a bridge timer is out of the range the kernel accepts with STP on"),
            _ => None,
        };
        Error::Kernel {
            node: node.to_string(),
            what,
            reason: std::io::Error::from_raw_os_error(errno).to_string(),
            hint: hint.map(str::to_string),
        }
    }
}
