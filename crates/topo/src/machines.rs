//! Labs that span machines: `[machines.NAME]` tables, `machine = "NAME"`
//! on nodes, and each machine's share of the lab (what `weft up FILE
//! --machine NAME` builds there).
//!
//! Every machine parses the whole file, so anything planned from it (VXLAN
//! network identifiers, MTUs, addresses of attached hosts) comes out the
//! same on all of them; the share is then cut from the whole lab.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::*;

/// A machine the lab spans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Its address on the network between the machines: the outer source
    /// of its VXLAN and tunnel packets, and where the others send.
    pub underlay: IpAddr,
    /// The MTU of the underlay path from this machine (default 1500).
    pub underlay_mtu: u32,
    /// Public key of the `weft tunnel` ends it runs (tunnel links across
    /// machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Its private key file (`weft keygen`), read only on this machine;
    /// relative paths are relative to the topology file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

/// The state key (and lab name as built) of one machine's share:
/// `LAB@MACHINE`. Lab and machine names never contain `@`.
pub fn share_name(lab: &str, machine: &str) -> String {
    format!("{lab}@{machine}")
}

/// The lab name and machine of a state key (`LAB` or `LAB@MACHINE`).
pub fn split_share_name(key: &str) -> (&str, Option<&str>) {
    match key.split_once('@') {
        Some((l, m)) => (l, Some(m)),
        None => (key, None),
    }
}

/// Bytes VXLAN adds: outer IP (20 or 40), UDP (8), VXLAN (8) and the inner
/// Ethernet header (14).
pub fn vxlan_overhead(v6: bool) -> u32 {
    if v6 {
        70
    } else {
        50
    }
}

/// The VNI a `kind = "vxlan"` link gets when the file names none: a hash
/// of the lab's name and the link's ends (FNV-1a, so every machine and
/// every weft version computes the same), in 1..=16777215. Two labs on one
/// underlay rarely collide; [`crate::file`] then probes past VNIs taken in
/// the same file.
pub fn auto_vni(lab: &str, a: &Endpoint, b: &Endpoint) -> u32 {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let mut h: u32 = 0x811c_9dc5;
    for byte in format!("{lab}\0{a}\0{b}").bytes() {
        h ^= byte as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    // Fold to 24 bits; 0 is not a usable VNI.
    let v = (h >> 24) ^ (h & 0x00ff_ffff);
    if v == 0 {
        1
    } else {
        v
    }
}

/// The machines of a lab, or an error saying how to pick one.
fn check_machine(lab: &Lab, machine: &str) -> Result<(), String> {
    if lab.machines.is_empty() {
        return Err(format!(
            "lab {} declares no machines, so it is built whole: leave out --machine (or add [machines.{machine}] and machine = \"{machine}\" on its nodes)",
            lab.name
        ));
    }
    if !lab.machines.contains_key(machine) {
        return Err(format!(
            "lab {} has no machine `{machine}`; its machines are {}",
            lab.name,
            names(lab)
        ));
    }
    Ok(())
}

fn names(lab: &Lab) -> String {
    lab.machines
        .keys()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one `weft up` builds: the whole lab when `machine` is `None` and
/// the lab declares at most one machine, else one machine's share.
pub fn select(lab: &Lab, machine: Option<&str>) -> Result<Lab, String> {
    match machine {
        Some(m) => share(lab, m),
        None if lab.machines.len() > 1 => Err(format!(
            "lab {} spans the machines {}: say which one this is, e.g. `weft up FILE --machine {}`, and run it on each machine",
            lab.name,
            names(lab),
            lab.machines.keys().next().expect("machines")
        )),
        None => Ok(lab.clone()),
    }
}

/// One machine's share: its nodes (with the VXLAN ends and tunnel ends
/// they hold), NAT and checks of those nodes, named `LAB@MACHINE` so that
/// two shares built on one host (tests do that) keep separate state.
pub fn share(lab: &Lab, machine: &str) -> Result<Lab, String> {
    check_machine(lab, machine)?;
    let mut out = lab.clone();
    out.name = share_name(&lab.name, machine);
    out.machine = Some(machine.to_string());
    out.remote_names = lab
        .nodes
        .values()
        .filter(|n| n.machine.as_deref() != Some(machine))
        .filter_map(|n| Some((n.name.clone(), crate::check::node_address(n)?)))
        .collect();
    out.nodes
        .retain(|_, n| n.machine.as_deref() == Some(machine));
    let local: BTreeSet<String> = out.nodes.keys().cloned().collect();
    out.nat.retain(|n, _| local.contains(n));
    out.checks.retain(|c| local.contains(&c.from));
    out.tunnels
        .retain(|t| t.ends.iter().any(|e| local.contains(&e.endpoint.node)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_vni_is_stable_symmetric_and_in_range() {
        let (a, b) = (Endpoint::new("h1", "vx0"), Endpoint::new("h2", "vx0"));
        let v = auto_vni("demo", &a, &b);
        assert_eq!(v, auto_vni("demo", &b, &a));
        assert!((1..=0xff_ffff).contains(&v));
        assert_ne!(v, auto_vni("demo2", &a, &b));
        // Fixed here so that a change to the hash (which would make two
        // weft versions disagree across machines) fails this test.
        // (FNV-1a of "demo\0h1:vx0\0h2:vx0" is 0x357c7af5, computed apart.)
        assert_eq!(v, 0x7c_7ac0, "{v:#x}");
    }

    #[test]
    fn share_names_split_back() {
        assert_eq!(share_name("lab", "a"), "lab@a");
        assert_eq!(split_share_name("lab@a"), ("lab", Some("a")));
        assert_eq!(split_share_name("lab"), ("lab", None));
    }
}
