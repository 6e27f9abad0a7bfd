//! Labs that span machines, on one machine: each machine's share is a lab
//! of its own here, under the state key `LAB@MACHINE` (so shares of two
//! machines built on one host, as the tests do, never share state), built
//! in the network namespace `weft up` was started in, which is taken to
//! be the machine's underlay.

use weft_topo::machines::{share_name, split_share_name};
use weft_topo::{IfaceKind, Lab};

use crate::{state, Error};

pub use crate::state::check_key;

/// The state key `weft down/status LAB --machine M` means.
pub fn key(lab: &str, machine: Option<&str>) -> String {
    match machine {
        Some(m) => share_name(lab, m),
        None => lab.to_string(),
    }
}

/// The shares of `lab` built on this host (`LAB@a`, `LAB@b`, ...).
pub fn shares_of(lab: &str) -> Vec<String> {
    let prefix = format!("{lab}@");
    state::labs()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect()
}

/// A share needs this machine to be the one it names: its VXLAN and tunnel
/// ends use the machine's underlay address as their source, so that address
/// must be on the namespace weft runs in. Checked before anything is built.
pub fn check_underlay(lab: &Lab) -> Result<(), Error> {
    let Some(m) = &lab.machine else {
        return Ok(());
    };
    let uses = lab.tunnels.iter().any(|t| t.across)
        || lab
            .nodes
            .values()
            .flat_map(|n| n.interfaces.values())
            .any(|i| matches!(i.kind, IfaceKind::Vxlan(_)));
    let Some(machine) = lab.machines.get(m) else {
        return Ok(());
    };
    if !uses {
        return Ok(());
    }
    // The keys of tunnel ends between machines, before anything is built.
    for t in lab.tunnels.iter().filter(|t| t.across) {
        if t.ends
            .iter()
            .any(|e| lab.nodes.contains_key(&e.endpoint.node))
        {
            let path = machine.private_key.as_deref().ok_or_else(|| {
                Error::Machine {
                    machine: m.clone(),
                    detail: format!("needs private_key = \"FILE\" under [machines.{m}]: a tunnel link joins it to another machine (make the key with `weft keygen FILE`; the line it prints is the machine's public_key)"),
                }
            })?;
            check_key_pair(m, path, machine.public_key.as_deref().unwrap_or_default())?;
        }
    }
    // A program holding the VXLAN port would make the devices fail only
    // when set up, half-way through the build: refused before.
    let ports: std::collections::BTreeSet<u16> = lab
        .nodes
        .values()
        .flat_map(|n| n.interfaces.values())
        .filter_map(|i| match &i.kind {
            IfaceKind::Vxlan(o) => Some(o.port),
            _ => None,
        })
        .collect();
    for port in ports {
        let holder = weft_sys::udp_port_holder(port)
            .map_err(|e| Error::io("listing the UDP sockets of weft's own namespace", e))?;
        if let Some((inode, pid)) = holder {
            return Err(Error::Machine {
                machine: m.clone(),
                detail: format!(
                    "UDP port {port}, the port of the lab's vxlan links, is held by process {pid} in this machine's network namespace (socket inode {inode}; `ss -ulpn sport = :{port}` names it): set vxlan_port = PORT at the top of the lab file to a free port, or stop that program"
                ),
            });
        }
    }
    let mut nl = weft_sys::netlink::Netlink::open()
        .map_err(|e| Error::io("opening a netlink socket in weft's own namespace", e))?;
    let addrs = nl
        .addresses()
        .map_err(|e| Error::io("listing the addresses of weft's own namespace", e))?;
    if addrs.iter().any(|a| a.net.addr() == machine.underlay) {
        return Ok(());
    }
    let (name, _) = split_share_name(&lab.name);
    let have: Vec<String> = addrs
        .iter()
        .filter(|a| !a.net.addr().is_loopback() && !a.link_local)
        .map(|a| a.net.addr().to_string())
        .collect();
    Err(Error::Machine {
        machine: m.to_string(),
        detail: format!(
            "this is to be machine `{m}` of lab {name}, whose underlay address is {}, but the network namespace weft runs in has no such address (it has {}); run `weft up FILE --machine {m}` on machine {m}, or correct `underlay` under [machines.{m}]",
            machine.underlay,
            if have.is_empty() { "none".to_string() } else { have.join(", ") }
        ),
    })
}

/// The `weft tunnel` command lines of this machine's ends of a tunnel link
/// between machines: each runs in weft's own namespace (the underlay, where
/// its socket must be), opens its device in the node (`--netns`), and uses
/// the machines' keys from the file.
pub(crate) fn tunnel_ends(
    lab: &Lab,
    t: &weft_topo::TunnelLink,
    d: &std::path::Path,
    exe: &str,
) -> Result<Vec<(String, Vec<String>)>, Error> {
    use crate::tunnels::stem;
    let mut out = Vec::new();
    for i in 0..2 {
        let (me, peer) = (&t.ends[i], &t.ends[1 - i]);
        let Some(node) = lab.nodes.get(&me.endpoint.node) else {
            continue;
        };
        let m = node.machine.as_deref().unwrap_or_default();
        let mine = &lab.machines[m];
        let peer_machine = lab
            .machines
            .iter()
            .find(|(_, x)| x.underlay == peer.underlay)
            .map(|(n, x)| (n.clone(), x.clone()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "tunnel {}: no machine has the underlay address {}",
                    me.endpoint, peer.underlay
                ))
            })?;
        let key = mine.private_key.clone().ok_or_else(|| {
            Error::Machine {
                machine: m.to_string(),
                detail: format!(
                    "tunnel {} <-> {}: needs private_key = \"FILE\" under [machines.{m}] (its key from `weft keygen FILE`, whose public half is the machine's public_key)",
                    me.endpoint, peer.endpoint
                ),
            }
        })?;
        check_key_pair(m, &key, mine.public_key.as_deref().unwrap_or_default())?;
        let peer_key = peer_machine.1.public_key.clone().unwrap_or_default();
        let mtu = node
            .interfaces
            .get(&me.endpoint.iface)
            .and_then(|i| i.mtu)
            .unwrap_or(1400);
        let st = stem(&me.endpoint);
        let prefix = vec![
            exe.into(),
            "tunnel".into(),
            "--netns".into(),
            node.netns.clone(),
        ];
        let a = crate::tunnels::tunnel_args(
            &lab.name,
            prefix,
            t,
            (me, peer),
            key,
            peer_key,
            mtu,
            &d.join(format!("{st}.json")),
        );
        out.push((st, a));
    }
    Ok(out)
}

/// The machine's private key file is there and is the half of its
/// `public_key`: a mismatch would only show as a handshake that never
/// completes.
fn check_key_pair(machine: &str, path: &str, public: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Machine {
            machine: machine.to_string(),
            detail: format!("reading its private key {path}: {e} (make one with `weft keygen {path}` and put the line it prints in public_key)"),
        }
    })?;
    let k = weft_tunnel::PrivateKey::from_base64(&text).map_err(|e| Error::Machine {
        machine: machine.to_string(),
        detail: format!("the private key {path}: {e}"),
    })?;
    let have = k.public_key().to_base64();
    if have != public.trim() {
        return Err(Error::Machine {
            machine: machine.to_string(),
            detail: format!("the private key {path} belongs to the public key {have}, but [machines.{machine}] says public_key = \"{public}\"; this may not be machine {machine}, or the file's key is stale"),
        });
    }
    Ok(())
}

/// What `weft up --machine M [--machines N]` and `weft agent` build from a
/// parsed file: the lab spread over `spread` machines when asked
/// ([`weft_topo::placement::spread`]), machines' underlay names resolved
/// with the system's resolver (`/etc/hosts`, then DNS), MTUs fitted to the
/// underlay interface, then this machine's share, with key files relative
/// to `key_dir` (the topology file's folder). Nothing is built.
pub fn prepare(
    lab: &Lab,
    machine: Option<&str>,
    spread: Option<usize>,
    key_dir: &std::path::Path,
) -> Result<Lab, Error> {
    let mut lab = lab.clone();
    if let Some(k) = spread {
        weft_topo::placement::spread(&mut lab, k)?;
    }
    if machine.is_some() || lab.machines.len() == 1 {
        weft_topo::machines::resolve(&mut lab, &mut lookup)?;
        let local = machine
            .and_then(|m| lab.machines.get(m))
            .map(|m| m.underlay);
        let mtu = match local {
            Some(a) => underlay_mtu(a)?,
            None => None,
        };
        weft_topo::machines::fit_mtus(&mut lab, mtu);
    }
    let mut lab = weft_topo::machines::select(&lab, machine)?;
    for m in lab.machines.values_mut() {
        if let Some(k) = &mut m.private_key {
            *k = key_dir.join(&*k).display().to_string();
        }
    }
    Ok(lab)
}

/// The system resolver's address for a name: an IPv4 one when there is
/// one (VXLAN's overhead is smaller), else the first.
pub fn lookup(name: &str) -> std::io::Result<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::IpAddr> = (name, 0).to_socket_addrs()?.map(|s| s.ip()).collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

/// The MTU of the interface of weft's own namespace that holds `addr`
/// (None when no interface does: [`check_underlay`] then refuses the
/// share with the addresses it found).
pub fn underlay_mtu(addr: std::net::IpAddr) -> Result<Option<u32>, Error> {
    let mut nl = weft_sys::netlink::Netlink::open()
        .map_err(|e| Error::io("opening a netlink socket in weft's own namespace", e))?;
    let addrs = nl
        .addresses()
        .map_err(|e| Error::io("listing the addresses of weft's own namespace", e))?;
    let Some(index) = addrs.iter().find(|a| a.net.addr() == addr).map(|a| a.index) else {
        return Ok(None);
    };
    let links = nl
        .links()
        .map_err(|e| Error::io("listing the links of weft's own namespace", e))?;
    Ok(links.iter().find(|l| l.index == index).map(|l| l.mtu))
}
