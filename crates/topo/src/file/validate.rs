//! Validation: the checks that need the whole expanded lab (addresses
//! used twice, bridge masters, routes) and the rules for names and keys.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{de, Cx};
use crate::error::{Diagnostic, Error, NameKind};
use crate::model::*;

impl Cx<'_> {
    pub(super) fn check(&mut self, lab: &Lab) {
        let mut owners: HashMap<IpAddr, (Endpoint, IpNet)> = HashMap::new();
        for n in lab.nodes.values() {
            for i in n.interfaces.values() {
                let ispan = self
                    .iface_span
                    .get(&(n.name.clone(), i.name.clone()))
                    .cloned();
                if let IfaceKind::Veth { peer } = &i.kind {
                    let broken = self.broken_ends.contains(&(n.name.clone(), i.name.clone()));
                    if peer.node.is_empty() && !broken {
                        self.err(ispan.clone(), format!("node `{}`: interface `{}` is a veth end, but no link uses it", n.name, i.name), format!("add a [[links]] entry with \"{}:{}\", or give it kind = \"tun\", \"tap\" or \"bridge\"", n.name, i.name));
                    }
                }
                if let Some(m) = &i.master {
                    let mspan = self
                        .master_span
                        .get(&(n.name.clone(), i.name.clone()))
                        .cloned()
                        .or(ispan.clone());
                    match n.interfaces.get(m) {
                        Some(b) if matches!(b.kind, IfaceKind::Bridge(_)) => {}
                        Some(b) => self.err(mspan, format!("node `{}`: `{}` has master `{m}`, which is a {}, not a bridge", n.name, i.name, b.kind.name()), ""),
                        None => self.err(mspan, format!("node `{}`: `{}` has master `{m}`, but the node has no interface `{m}`", n.name, i.name), "a port's bridge must be in the same node"),
                    }
                    if !i.addresses.is_empty() {
                        let mut w = Diagnostic::new(format!("node `{}`: `{}` is a port of bridge `{m}`, so the stack never sees its addresses ({}); they are useless there", n.name, i.name, list(&i.addresses)), ispan.clone());
                        w = w.help(format!("move the addresses to the bridge `{m}`"));
                        self.warnings.push(w);
                    }
                }
                for a in &i.addresses {
                    let aspan = self
                        .addr_span
                        .get(&(n.name.clone(), i.name.clone(), *a))
                        .cloned()
                        .or(ispan.clone());
                    let me = Endpoint::new(&n.name, &i.name);
                    if let Some((other, _)) = owners.get(&a.addr()) {
                        self.err(
                            aspan,
                            format!(
                                "address {} is used twice: on `{other}` and on `{me}`",
                                a.addr()
                            ),
                            "each address may be on one interface only",
                        );
                    } else {
                        owners.insert(a.addr(), (me, *a));
                    }
                    if a.addr().is_unspecified() || a.addr().is_multicast() {
                        self.err(
                            self.addr_span
                                .get(&(n.name.clone(), i.name.clone(), *a))
                                .cloned(),
                            format!("{} cannot be an interface address", a.addr()),
                            "",
                        );
                    }
                }
            }
            self.check_routes(lab, n);
        }
    }

    pub(super) fn check_routes(&mut self, lab: &Lab, n: &Node) {
        for (idx, r) in n.routes.iter().enumerate() {
            let rspan = self.route_span.get(&(n.name.clone(), idx)).cloned();
            if let Some(dev) = &r.dev {
                if !n.interfaces.contains_key(dev) {
                    let elsewhere: Vec<&str> = lab
                        .nodes
                        .values()
                        .filter(|o| o.interfaces.contains_key(dev))
                        .map(|o| o.name.as_str())
                        .collect();
                    let help = if elsewhere.is_empty() {
                        format!(
                            "`{}` has the interfaces {}",
                            n.name,
                            n.interfaces
                                .keys()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        format!("`{dev}` is an interface of {}, and a route can only use the node's own interfaces", elsewhere.join(", "))
                    };
                    self.err(rspan.clone(), format!("node `{}`: route `{r}` uses dev `{dev}`, but node `{}` has no interface `{dev}`", n.name, n.name), help);
                    continue;
                }
            }
            if let (Some(gw), false) = (r.via, r.onlink) {
                let candidates: Vec<&Interface> = match &r.dev {
                    Some(d) => n.interfaces.get(d).into_iter().collect(),
                    None => n.interfaces.values().collect(),
                };
                let reachable = candidates.iter().any(|i| {
                    i.addresses
                        .iter()
                        .any(|a| a.contains(&gw) && a.prefix_len() < a.max_prefix_len())
                });
                if !reachable {
                    let on = r
                        .dev
                        .as_ref()
                        .map(|d| format!(" on `{d}`"))
                        .unwrap_or_default();
                    self.err(rspan, format!("node `{}`: route `{r}`: gateway {gw} is not in any subnet of the node{on}", n.name), "give the node an address in the gateway's subnet, or add `onlink` if the gateway really is on the link");
                }
            }
        }
    }
}

fn list(a: &[IpNet]) -> String {
    a.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lab names become part of namespace names (`weft-LAB.NODE`) and journal
/// paths, so they are kept to a safe alphabet, without `.`: that ends the
/// lab's part of a namespace name (see [`netns_name`]).
pub fn check_lab_name(name: &str) -> Result<(), Error> {
    let bad = |rule: String| Error::BadName {
        kind: NameKind::Lab,
        name: name.into(),
        rule,
    };
    if name.is_empty() || name.len() > 32 {
        return Err(bad(format!(
            "lab name `{}` must be 1 to 32 characters",
            de::esc(name)
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        || !name.as_bytes()[0].is_ascii_alphanumeric()
    {
        return Err(bad(format!(
            "lab name `{}` may use only a-z, 0-9, '-' and '_', starting with a letter or digit",
            de::esc(name)
        )));
    }
    Ok(())
}

pub(super) fn check_node_name(name: &str) -> Result<(), Error> {
    let bad = |rule: &str| Error::BadName {
        kind: NameKind::Node,
        name: name.into(),
        rule: rule.into(),
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("a node name must be 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad("a node name may use only letters, digits, '-' and '_'"));
    }
    Ok(())
}

/// The kernel's own rule (`dev_valid_name`): at most 15 bytes, not `.` or
/// `..`, and no `/`, `:` or white space.
pub fn check_iface_name(name: &str) -> Result<(), Error> {
    let bad = |rule: String| Error::BadName {
        kind: NameKind::Interface,
        name: name.into(),
        rule,
    };
    if name.is_empty() {
        return Err(bad("an interface name cannot be empty".into()));
    }
    if name.len() > 15 {
        return Err(bad(format!(
            "`{}` is {} bytes; the kernel allows at most 15",
            de::esc(name),
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(bad("`.` and `..` are not valid interface names".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(bad(format!(
            "the kernel refuses the character {c:?} in an interface name"
        )));
    }
    Ok(())
}

/// Only per-namespace keys (`net.`) are accepted, so a lab file can never
/// change a setting of the machine itself; and since `/` in a component
/// stands for `.` in the path (`eth0/10` is `eth0.10`), no component may
/// come out as `.` or `..`. The same rule as `weft_sys::sysctl::validate_key`,
/// here so the file check refuses with the position.
pub fn check_sysctl_key(key: &str) -> Result<(), Error> {
    let bad = |rule: String| Error::BadName {
        kind: NameKind::SysctlKey,
        name: key.into(),
        rule,
    };
    if !key.starts_with("net.") {
        return Err(bad("only `net.` sysctls can be set: they are per network namespace, others would change the whole machine".into()));
    }
    for part in key.split('.') {
        if part.is_empty() {
            return Err(bad("a sysctl key cannot have empty components".into()));
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-/@:".contains(c))
        {
            return Err(bad(format!(
                "the component `{}` has a character sysctl keys do not use",
                de::esc(part)
            )));
        }
        let mapped = part.replace('/', ".");
        if mapped == "." || mapped == ".." {
            return Err(bad(format!(
                "the component `{part}` would be `{mapped}` in /proc/sys (a `/` there stands for `.`), which leaves the setting's directory"
            )));
        }
    }
    Ok(())
}
