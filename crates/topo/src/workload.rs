//! What runs inside nodes: services (`[nodes.X.services.NAME]`), the
//! node's private files (`binds`) and a container image (`image`).
//!
//! Plain data like the rest of the model; the lab crate starts, watches and
//! stops them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Lab;

/// Time a service may take to become ready when the file gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// The service name a node's container runs under (`image = ...`): its
/// log is `weft logs LAB NODE:container`.
pub const CONTAINER_SERVICE: &str = "container";

/// A long-running program in a node, started by `weft up` and stopped by
/// `weft down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    pub ready: Ready,
    /// Services that must be ready before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<ServiceRef>,
    pub restart: Restart,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Runs as this user (name or uid) instead of root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Time from start to ready.
    pub timeout_ms: u64,
}

/// When a started service counts as ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Ready {
    /// Once it has run for a moment without exiting.
    Started,
    /// A TCP connection to this port on 127.0.0.1 in the node is accepted.
    Tcp { port: u16 },
    /// This program, run in the node, exits 0 (tried again until it does).
    Command { argv: Vec<String> },
    /// This long after the start, if it is still running.
    Delay { ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

/// `node:service`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceRef {
    pub node: String,
    pub service: String,
}

impl ServiceRef {
    pub fn new(node: &str, service: &str) -> Self {
        ServiceRef {
            node: node.into(),
            service: service.into(),
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.service)
    }
}

/// A path in the node's private mount namespace that shows something else
/// than the machine's: a host directory or file, or a fresh tmpfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Absolute host path, or `None` for a tmpfs.
    pub source: Option<String>,
    /// Absolute path in the node.
    pub target: String,
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{s}:{}", self.target),
            None => write!(f, "tmpfs:{}", self.target),
        }
    }
}

/// A container image run in the node's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub image: String,
    /// The image's own command when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Paths a bind may not cover: the node would lose the machine's view of
/// itself (`/proc`, `/sys`, `/dev`) or everything (`/`).
pub const FORBIDDEN_TARGETS: [&str; 4] = ["/", "/proc", "/sys", "/dev"];

/// Why a bind target is refused, if it is.
pub fn check_bind_target(target: &str) -> Result<(), crate::Error> {
    let bad = |why: String| crate::Error::BindTarget {
        target: target.into(),
        why,
    };
    if !target.starts_with('/') {
        return Err(bad(format!(
            "the path in the node `{target}` must be absolute (start with /)"
        )));
    }
    let norm = normalize(target);
    if norm.split('/').any(|c| c == "..") {
        return Err(bad(format!(
            "the path in the node `{target}` may not contain .."
        )));
    }
    for f in FORBIDDEN_TARGETS {
        if norm == f {
            return Err(bad(format!(
                "a bind onto `{f}` would hide the machine's {}",
                if f == "/" {
                    "whole file system".to_string()
                } else {
                    format!("{f} from the node's programs")
                }
            )));
        }
    }
    Ok(())
}

/// `/a//b/./c/` -> `/a/b/c`.
pub fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Every service of the lab, keyed by `node:service` (containers are not
/// in it: the lab crate runs them as [`CONTAINER_SERVICE`]).
pub fn all_services(lab: &Lab) -> BTreeMap<ServiceRef, &Service> {
    let mut out = BTreeMap::new();
    for n in lab.nodes.values() {
        for (s, svc) in &n.services {
            out.insert(ServiceRef::new(&n.name, s), svc);
        }
    }
    out
}

/// Services in an order where each comes after everything in its `after`;
/// `Err` holds one cycle, first element repeated at the end.
pub fn start_order(
    services: &BTreeMap<ServiceRef, &Service>,
) -> Result<Vec<ServiceRef>, Vec<ServiceRef>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        at: &ServiceRef,
        services: &BTreeMap<ServiceRef, &Service>,
        marks: &mut BTreeMap<ServiceRef, Mark>,
        stack: &mut Vec<ServiceRef>,
        out: &mut Vec<ServiceRef>,
    ) -> Result<(), Vec<ServiceRef>> {
        match marks.get(at).copied().unwrap_or(Mark::New) {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let from = stack.iter().position(|s| s == at).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(at.clone());
                return Err(cycle);
            }
            Mark::New => {}
        }
        marks.insert(at.clone(), Mark::Open);
        stack.push(at.clone());
        if let Some(svc) = services.get(at) {
            for dep in &svc.after {
                if services.contains_key(dep) {
                    visit(dep, services, marks, stack, out)?;
                }
            }
        }
        stack.pop();
        marks.insert(at.clone(), Mark::Done);
        out.push(at.clone());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for s in services.keys() {
        visit(s, services, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// The services whose definition differs between two labs, and everything
/// that runs after one of them (it is restarted with it), plus services
/// whose node's binds or image changed.
pub fn changed_services(old: &Lab, new: &Lab) -> BTreeSet<ServiceRef> {
    let (a, b) = (all_services(old), all_services(new));
    let mut changed: BTreeSet<ServiceRef> = b
        .iter()
        .filter(|(k, v)| {
            let node_same = match (old.nodes.get(&k.node), new.nodes.get(&k.node)) {
                (Some(o), Some(n)) => o.binds == n.binds && o.container == n.container,
                _ => false,
            };
            !node_same || a.get(*k) != Some(*v)
        })
        .map(|(k, _)| k.clone())
        .collect();
    loop {
        let more: Vec<ServiceRef> = b
            .iter()
            .filter(|(k, v)| !changed.contains(*k) && v.after.iter().any(|d| changed.contains(d)))
            .map(|(k, _)| k.clone())
            .collect();
        if more.is_empty() {
            return changed;
        }
        changed.extend(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(after: &[(&str, &str)]) -> Service {
        Service {
            command: vec!["true".into()],
            ready: Ready::Started,
            after: after.iter().map(|(n, s)| ServiceRef::new(n, s)).collect(),
            restart: Restart::No,
            env: BTreeMap::new(),
            user: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    #[test]
    fn order_puts_dependencies_first_and_finds_cycles() {
        let (a, b, c) = (svc(&[("n", "b")]), svc(&[("n", "c")]), svc(&[]));
        let mut m = BTreeMap::new();
        m.insert(ServiceRef::new("n", "a"), &a);
        m.insert(ServiceRef::new("n", "b"), &b);
        m.insert(ServiceRef::new("n", "c"), &c);
        let order: Vec<String> = start_order(&m)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(order, ["n:c", "n:b", "n:a"]);
        let c2 = svc(&[("n", "a")]);
        m.insert(ServiceRef::new("n", "c"), &c2);
        let cycle: Vec<String> = start_order(&m)
            .unwrap_err()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(cycle, ["n:a", "n:b", "n:c", "n:a"]);
    }

    #[test]
    fn bind_targets() {
        assert!(check_bind_target("/etc/frr").is_ok());
        for bad in ["/", "//", "/proc", "/sys/", "/./dev", "etc", "/a/../b"] {
            assert!(check_bind_target(bad).is_err(), "{bad}");
        }
        assert!(check_bind_target("/proc2").is_ok());
    }
}
