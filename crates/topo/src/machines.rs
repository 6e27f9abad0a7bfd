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
use crate::Error;

/// A machine the lab spans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Its address on the network between the machines: the outer source
    /// of its VXLAN and tunnel packets, and where the others send. With
    /// `underlay_name`, unspecified (0.0.0.0) until [`resolve`] fills it.
    pub underlay: IpAddr,
    /// The DNS name the file gave as `underlay` (`lab-0.lab`), resolved at
    /// `up` and again by `weft agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_name: Option<String>,
    /// The MTU of the underlay path from this machine (default 1500).
    pub underlay_mtu: u32,
    /// The file wrote no `underlay_mtu`: it is the MTU of the interface
    /// that holds the underlay address, found at `up` ([`fit_mtus`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mtu_from_interface: bool,
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

/// The MAC of a VXLAN end the file gives none: locally administered,
/// unicast, from FNV-1a of the lab, node and interface names, so the end
/// keeps it when it is made again.
pub fn vxlan_mac(lab: &str, node: &str, iface: &str) -> crate::model::Mac {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("vxlan\0{lab}\0{node}\0{iface}").bytes() {
        h ^= byte as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    crate::model::Mac([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
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

/// Fills in the addresses of machines whose `underlay` is a name, with
/// `lookup` (the resolver; `weft up` uses the system's, so `/etc/hosts`
/// and DNS both work), then every address planned from them: the VXLAN
/// ends' local and remote addresses and the underlay of tunnel ends
/// between machines. Refused, naming the machine: a name that does not
/// resolve, an address that cannot be an underlay, two machines on one
/// address, a VXLAN link between an IPv4 and an IPv6 machine.
pub fn resolve(
    lab: &mut Lab,
    lookup: &mut dyn FnMut(&str) -> std::io::Result<IpAddr>,
) -> Result<(), Error> {
    let mut seen: std::collections::BTreeMap<IpAddr, String> = Default::default();
    for (name, m) in lab.machines.iter_mut() {
        if let Some(host) = &m.underlay_name {
            let a = lookup(host).map_err(|e| Error::Unresolved {
                machine: name.clone(),
                host: host.clone(),
                detail: e.to_string(),
            })?;
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(Error::BadUnderlay {
                    machine: name.clone(),
                    host: host.clone(),
                    addr: a,
                });
            }
            m.underlay = a;
        }
        if let Some(other) = seen.insert(m.underlay, name.clone()) {
            return Err(Error::SameUnderlay {
                first: other,
                second: name.clone(),
                addr: m.underlay,
            });
        }
    }
    let machine_of = |lab: &Lab, node: &str| lab.nodes.get(node).and_then(|n| n.machine.clone());
    let lab_name = crate::machines::split_share_name(&lab.name).0.to_string();
    let mut ends = Vec::new();
    for n in lab.nodes.values() {
        for i in n.interfaces.values() {
            if let IfaceKind::Vxlan(o) = &i.kind {
                ends.push((n.name.clone(), i.name.clone(), o.peer.node.clone()));
            }
        }
    }
    for (node, iface, peer) in ends {
        let (Some(m), Some(p)) = (machine_of(lab, &node), machine_of(lab, &peer)) else {
            continue;
        };
        let (local, remote) = (lab.machines[&m].underlay, lab.machines[&p].underlay);
        if local.is_ipv6() != remote.is_ipv6() {
            return Err(Error::UnderlayFamilies {
                end: format!("{node}:{iface}"),
                machine: m,
                local,
                peer: p,
                remote,
            });
        }
        let i = lab
            .nodes
            .get_mut(&node)
            .and_then(|n| n.interfaces.get_mut(&iface))
            .expect("listed above");
        if let IfaceKind::Vxlan(o) = &mut i.kind {
            o.local = local;
            o.remote = remote;
        }
        // A VXLAN end is replaced when a peer's address changes; with the
        // same MAC, the neighbours on its segment need not learn it anew.
        if i.mac.is_none() {
            i.mac = Some(vxlan_mac(&lab_name, &node, &iface));
        }
    }
    let tunnels = std::mem::take(&mut lab.tunnels);
    lab.tunnels = tunnels
        .into_iter()
        .map(|mut t| {
            if t.across {
                for e in &mut t.ends {
                    if let Some(m) = machine_of(lab, &e.endpoint.node) {
                        e.underlay = lab.machines[&m].underlay;
                    }
                }
            }
            t
        })
        .collect();
    Ok(())
}

/// MTUs of VXLAN ends the file left to weft, once addresses are known:
/// machines without `underlay_mtu` take `local_mtu` (the MTU of this
/// machine's underlay interface; in a cluster every pod's interface has
/// the network plugin's one MTU, so a machine takes its own for its
/// peers too), and each such end gets the smaller of its two machines'
/// MTUs less VXLAN's overhead.
pub fn fit_mtus(lab: &mut Lab, local_mtu: Option<u32>) {
    if let Some(mtu) = local_mtu {
        for m in lab.machines.values_mut() {
            if m.mtu_from_interface {
                m.underlay_mtu = mtu;
            }
        }
    }
    let machines = lab.machines.clone();
    let machine_of: std::collections::BTreeMap<String, Option<String>> = lab
        .nodes
        .values()
        .map(|n| (n.name.clone(), n.machine.clone()))
        .collect();
    for n in lab.nodes.values_mut() {
        for i in n.interfaces.values_mut() {
            let IfaceKind::Vxlan(o) = &i.kind else {
                continue;
            };
            if !o.auto_mtu {
                continue;
            }
            let mine = n.machine.as_ref().and_then(|m| machines.get(m));
            let theirs = machine_of
                .get(&o.peer.node)
                .cloned()
                .flatten()
                .and_then(|m| machines.get(&m));
            if let (Some(a), Some(b)) = (mine, theirs) {
                let u = a.underlay_mtu.min(b.underlay_mtu);
                i.mtu = Some(u.saturating_sub(vxlan_overhead(o.local.is_ipv6())).max(68));
            }
        }
    }
}

/// The machines of a lab, or an error saying how to pick one.
fn check_machine(lab: &Lab, machine: &str) -> Result<(), Error> {
    if lab.machines.is_empty() {
        return Err(Error::NoMachines {
            lab: lab.name.clone(),
            machine: machine.into(),
        });
    }
    if !lab.machines.contains_key(machine) {
        return Err(Error::NoMachine {
            lab: lab.name.clone(),
            machine: machine.into(),
            known: names(lab),
        });
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
pub fn select(lab: &Lab, machine: Option<&str>) -> Result<Lab, Error> {
    match machine {
        Some(m) => share(lab, m),
        None if lab.machines.len() > 1 => Err(Error::MachineNeeded {
            lab: lab.name.clone(),
            known: names(lab),
            first: lab.machines.keys().next().expect("machines").clone(),
        }),
        None => Ok(lab.clone()),
    }
}

/// One machine's share: its nodes (with the VXLAN ends and tunnel ends
/// they hold), NAT and checks of those nodes, named `LAB@MACHINE` so that
/// two shares built on one host (tests do that) keep separate state.
pub fn share(lab: &Lab, machine: &str) -> Result<Lab, Error> {
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
