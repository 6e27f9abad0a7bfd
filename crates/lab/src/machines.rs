//! Labs that span machines, on one machine: each machine's share is a lab
//! of its own here, under the state key `LAB@MACHINE` (so shares of two
//! machines built on one host, as the tests do, never share state), built
//! in the network namespace `weft up` was started in, which is taken to
//! be the machine's underlay.

use weft_topo::machines::{share_name, split_share_name};
use weft_topo::{IfaceKind, Lab};

use crate::{state, Error};

/// A lab name or a share's state key (`LAB@MACHINE`), checked before it
/// becomes part of a path.
pub fn check_key(key: &str) -> Result<(), Error> {
    let (lab, machine) = split_share_name(key);
    weft_topo::file::check_lab_name(lab).map_err(Error::Other)?;
    if let Some(m) = machine {
        weft_topo::file::check_lab_name(m)
            .map_err(|e| Error::Other(format!("machine: {}", e.replace("lab name", "name"))))?;
    }
    Ok(())
}

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
    Err(Error::Other(format!(
        "this is to be machine `{m}` of lab {name}, whose underlay address is {}, but the network namespace weft runs in has no such address (it has {}); run `weft up FILE --machine {m}` on machine {m}, or correct `underlay` under [machines.{m}]",
        machine.underlay,
        if have.is_empty() { "none".to_string() } else { have.join(", ") }
    )))
}
