//! Questions about built labs: which exists, where a node's commands run,
//! ping and neighbour lookups, the health checks.

use std::path::PathBuf;

use crate::apply::{self, NsHandle};
use crate::state::{self, State};
use crate::{checks, machines, services, topo, CheckResult, Error};

/// Warnings about foreign nftables chains in the NAT nodes of a built lab.
pub(crate) fn nat_warnings(lab: &topo::Lab) -> Vec<String> {
    let mut out = Vec::new();
    for (node, n) in &lab.nat {
        let netns = &lab.nodes[node].netns;
        match apply::nat::foreign_drops(&lab.name, node, netns, n) {
            Ok(w) => out.extend(w),
            Err(e) => out.push(e.to_string()),
        }
    }
    out
}

/// The outcome of `weft check`.
#[derive(Debug)]
pub struct CheckReport {
    /// One result per check of the file, passed or failed.
    pub results: Vec<CheckResult>,
    /// Things that may explain a failure (a foreign nftables chain that
    /// drops forwarded packets).
    pub warnings: Vec<String>,
}

/// Run a built lab's health checks now.
pub fn check(name: &str) -> Result<CheckReport, Error> {
    machines::check_key(name)?;
    weft_sys::caps::require_admin("weft check")?;
    let st = built(name)?;
    Ok(CheckReport {
        warnings: nat_warnings(&st.lab),
        results: checks::run_all(&st.lab),
    })
}

/// The lab as last applied, or an error naming the labs that exist.
pub fn built(name: &str) -> Result<State, Error> {
    if let Some(st) = state::load(name)? {
        return Ok(st);
    }
    let shares = machines::shares_of(name);
    if shares.is_empty() {
        Err(Error::NoLab(name.to_string()))
    } else {
        Err(Error::OnlyShares {
            lab: name.to_string(),
            shares,
        })
    }
}

/// The built lab that has `node`: `lab` itself, or for a lab built here as
/// machine shares, the share (`LAB@MACHINE`) that has the node.
pub fn built_with(lab: &str, node: &str) -> Result<State, Error> {
    if !lab.contains('@') && state::load(lab)?.is_none() {
        for key in machines::shares_of(lab) {
            if let Some(st) = state::load(&key)?.filter(|s| s.lab.nodes.contains_key(node)) {
                return Ok(st);
            }
        }
    }
    built(lab)
}

/// The namespace of a node of a built lab (see [`built_with`]).
pub fn node_netns(lab: &str, node: &str) -> Result<String, Error> {
    let st = built_with(lab, node)?;
    st.lab
        .nodes
        .get(node)
        .map(|n| n.netns.clone())
        .ok_or_else(|| Error::NoNode {
            lab: lab.to_string(),
            node: node.to_string(),
            known: st.lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
        })
}

/// Where `weft exec LAB NODE` runs a command.
#[derive(Debug, Clone)]
pub enum ExecTarget {
    /// The node's network namespace, with a private view of files.
    Netns(String),
    /// The node's network namespace and its mount namespace file (binds).
    Node {
        /// The network namespace (`weft-LAB.NODE`).
        netns: String,
        /// The file holding the node's mount namespace.
        mntns: PathBuf,
    },
    /// Inside the node's container (`podman exec`).
    Container(String),
}

/// Where a command run in a node of a built lab runs.
pub fn exec_target(lab: &str, node: &str) -> Result<ExecTarget, Error> {
    let netns = node_netns(lab, node)?;
    let st = built_with(lab, node)?;
    let n = &st.lab.nodes[node];
    if n.container.is_some() {
        return Ok(ExecTarget::Container(services::container_name(&netns)));
    }
    let holder = services::mntns_path(&netns);
    if !n.binds.is_empty() && weft_sys::mntns::exists(&holder) {
        return Ok(ExecTarget::Node {
            netns,
            mntns: holder,
        });
    }
    Ok(ExecTarget::Netns(netns))
}

/// Resolve a ping target: an IP address, or a node name (the address
/// [`weft_topo::check::node_address`] picks, as the hosts files list it).
pub fn resolve_target(lab: &topo::Lab, target: &str) -> Result<std::net::IpAddr, Error> {
    if let Ok(ip) = target.parse() {
        return Ok(ip);
    }
    if let Some(a) = lab.remote_names.get(target) {
        return Ok(*a);
    }
    let node = lab.nodes.get(target).ok_or_else(|| Error::NoNode {
        lab: lab.name.clone(),
        node: target.to_string(),
        known: lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    weft_topo::check::node_address(node).ok_or_else(|| {
        Error::invalid_help(
            format!("node {target} has no address to ping"),
            "give one of its interfaces an address, or ping an IP",
        )
    })
}

/// ICMP echo from inside a node, with weft's own sockets.
pub fn ping(
    lab: &str,
    node: &str,
    target: std::net::IpAddr,
    opts: &weft_sys::ping::PingOptions,
    on_event: impl FnMut(weft_sys::ping::PingEvent) + Send,
) -> Result<weft_sys::ping::PingSummary, Error> {
    let ns = node_netns(lab, node)?;
    let opts = opts.clone();
    Ok(weft_sys::netns::run_in_named(&ns, move || {
        weft_sys::ping::ping(target, &opts, on_event)
    })??)
}

/// The neighbour-cache entry a node has for an address, with the name of
/// the interface it is on: `("veth0", "incomplete")`.
pub fn neighbour(
    lab: &str,
    node: &str,
    addr: std::net::IpAddr,
) -> Result<Option<(String, String)>, Error> {
    let ns = node_netns(lab, node)?;
    let mut h = NsHandle::open(node, &ns)?;
    let neigh =
        h.nl.neighbours()
            .map_err(|e| Error::io(format!("reading the neighbour table of {node}"), e))?;
    let Some(n) = neigh.into_iter().find(|n| n.addr == addr) else {
        return Ok(None);
    };
    let name = h
        .index
        .iter()
        .find(|(_, &i)| i == n.index)
        .map(|(k, _)| k.clone())
        .unwrap_or_default();
    Ok(Some((name, n.state.to_string())))
}
