//! Address drawing: hosts with `attach` get a port on their bridge or
//! switch and the next free address of its `subnet`, keeping the addresses
//! the lab as built already gave them.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::expand::new_veth;
use super::validate::check_iface_name;
use super::{de, Cx};
use crate::model::*;
use crate::route::parse_route;

impl Cx<'_> {
    pub(super) fn attach_hosts(&mut self, lab: &mut Lab) {
        let attached = std::mem::take(&mut self.attached);
        let mut used: HashSet<IpAddr> = lab
            .nodes
            .values()
            .flat_map(|n| n.interfaces.values())
            .flat_map(|i| i.addresses.iter().map(|a| a.addr()))
            .collect();
        let mut next: HashMap<IpNet, u128> = HashMap::new();
        // Addresses hosts already have keep them: reserve those first, so a
        // new host cannot take one.
        let mut sticky: HashMap<String, Vec<IpNet>> = HashMap::new();
        if let Some(prev) = self.previous {
            for (host, bridge, _, _) in &attached {
                let explicit = lab
                    .nodes
                    .get(host)
                    .and_then(|n| n.interfaces.get("eth0"))
                    .is_some_and(|i| !i.addresses.is_empty());
                let had = prev.nodes.get(host).and_then(|n| n.interfaces.get("eth0"));
                let (Some(had), false) = (had, explicit) else {
                    continue;
                };
                if !matches!(&had.kind, IfaceKind::Veth { peer } if peer.node == *bridge) {
                    continue;
                }
                for a in &had.addresses {
                    if used.insert(a.addr()) {
                        sticky.entry(host.clone()).or_default().push(*a);
                    }
                }
            }
        }
        for (host, bridge, span, default_route) in attached {
            let Some(br) = lab.nodes.get(&bridge) else {
                self.err(
                    Some(span),
                    format!(
                        "node `{host}`: attach names `{}`, which is not a node",
                        de::esc(&bridge)
                    ),
                    format!(
                        "declare [nodes.{}] with kind = \"bridge\"",
                        de::esc(&bridge)
                    ),
                );
                continue;
            };
            if br.kind == NodeKind::Host {
                self.err(
                    Some(span),
                    format!(
                        "node `{host}`: attach names `{bridge}`, which is a host, not a bridge or switch"
                    ),
                    format!("give `{bridge}` kind = \"bridge\", or write a [[links]] entry"),
                );
                continue;
            }
            if check_iface_name(&host).is_err() {
                self.err(Some(span), format!("node `{host}`: the bridge port for it would be named `{host}`, over 15 bytes"), "shorten the node name, or cable it with an explicit [[links]] entry");
                continue;
            }
            let on_switch = br.kind == NodeKind::Switch;
            // The port may be declared on the bridge or switch under the
            // host's name, like any other port, to give it settings (VLAN,
            // trunk, cost, priority, impair): `attach` then cables it.
            let declared = match br.interfaces.get(&host) {
                None => None,
                Some(i) => {
                    let why = match &i.kind {
                        IfaceKind::Veth { peer } if !peer.node.is_empty() => {
                            Some(format!("which is already cabled to `{peer}`"))
                        }
                        IfaceKind::Veth { .. } if !i.addresses.is_empty() => {
                            Some("which has addresses, and a port has none".to_string())
                        }
                        IfaceKind::Veth { .. } if !on_switch && i.master.is_none() => {
                            Some("which has port = false, and attach makes a port".to_string())
                        }
                        IfaceKind::Veth { .. } => None,
                        other => Some(format!("which is a {}", other.name())),
                    };
                    if let Some(why) = why {
                        let what = if on_switch { "switch" } else { "bridge" };
                        self.err(
                            Some(span),
                            format!("node `{host}`: {what} `{bridge}` already has an interface `{host}`, {why}"),
                            format!("[nodes.{bridge}.interfaces.{host}] may only hold the port's settings (vlan, trunk, native, cost, priority, edge, impair) for the attached host; rename one of them otherwise"),
                        );
                        continue;
                    }
                    Some(i.clone())
                }
            };
            // Where addresses come from: the bridge's own addresses (which
            // are also the gateway), or a `subnet` on the bridge or switch
            // (whose `gateway`, on a switch, is then the default route).
            let (segment, seg_gw) = self.segments.get(&bridge).copied().unwrap_or((None, None));
            let subnets: Vec<IpNet> = match (on_switch, segment) {
                (_, Some(n)) => vec![IpNet::new(seg_gw.unwrap_or(n.addr()), n.prefix_len())
                    .expect("a subnet's prefix")],
                (true, None) => Vec::new(),
                (false, None) => {
                    let b = &br.interfaces[&bridge];
                    let v4 = b.addresses.iter().find(|a| a.addr().is_ipv4());
                    let v6 = b.addresses.iter().find(|a| a.addr().is_ipv6());
                    v4.into_iter().chain(v6).copied().collect()
                }
            };
            // The default route goes to the gateway: the bridge's address, or
            // a switch's `gateway`; a bare subnet has none.
            let route_via_subnet = !(segment.is_some() && seg_gw.is_none());
            if let Some(g) = seg_gw {
                used.insert(g);
            }
            let h = lab.nodes.get_mut(&host).unwrap();
            let eth0 = h
                .interfaces
                .entry("eth0".into())
                .or_insert_with(|| new_veth("eth0"));
            if let IfaceKind::Veth { peer } = &eth0.kind {
                if !peer.node.is_empty() {
                    self.err(Some(span), format!("node `{host}`: `attach` cables eth0, which is already in a link to `{peer}`"), "remove the link or the attach");
                    continue;
                }
            } else {
                self.err(
                    Some(span),
                    format!(
                        "node `{host}`: `attach` cables eth0, which is a {}",
                        eth0.kind.name()
                    ),
                    "rename that interface",
                );
                continue;
            }
            eth0.kind = IfaceKind::Veth {
                peer: Endpoint::new(&bridge, &host),
            };
            let explicit = !eth0.addresses.is_empty();
            let mut gateways = Vec::new();
            for net in &subnets {
                if !explicit {
                    let kept = sticky
                        .get(&host)
                        .and_then(|v| {
                            v.iter().find(|a| {
                                a.trunc() == net.trunc() && a.prefix_len() == net.prefix_len()
                            })
                        })
                        .copied();
                    if let Some(a) = kept {
                        eth0.addresses.push(a);
                        if route_via_subnet && via_gateway(&eth0.addresses, net.addr()) {
                            gateways.push(net.addr());
                        }
                        continue;
                    }
                    let cursor = next.entry(net.trunc()).or_insert(1);
                    match allocate(net, cursor, &used) {
                        Some(a) => {
                            used.insert(a.addr());
                            eth0.addresses.push(a);
                        }
                        None => {
                            self.err(Some(span.clone()), format!("node `{host}`: bridge `{bridge}`'s subnet {} has no free address left", net.trunc()), "use a larger subnet on the bridge");
                            continue;
                        }
                    }
                }
                if route_via_subnet && via_gateway(&eth0.addresses, net.addr()) {
                    gateways.push(net.addr());
                }
            }
            if default_route {
                for gw in gateways {
                    h.routes
                        .push(parse_route(&format!("default via {gw}")).expect("a valid route"));
                }
            }
            self.iface_span
                .insert((host.clone(), "eth0".into()), span.clone());
            self.iface_span
                .entry((bridge.clone(), host.clone()))
                .or_insert(span.clone());
            let had_settings = declared.is_some();
            let mut port = declared.unwrap_or_else(|| new_veth(&host));
            if let Some(raw) = self.attach_ports.get(&host).cloned() {
                self.attach_port(&bridge, on_switch, &host, &raw, had_settings, &mut port);
            }
            port.kind = IfaceKind::Veth {
                peer: Endpoint::new(&host, "eth0"),
            };
            // A kernel bridge takes the port as master; a weft switch's
            // ports are plain veth ends its datapath serves.
            if !on_switch {
                port.master = Some(bridge.clone());
            }
            lab.nodes
                .get_mut(&bridge)
                .unwrap()
                .interfaces
                .insert(host.clone(), port);
        }
    }
}

/// Whether a host with these addresses routes by default via `gw`: one
/// of them is in its subnet, and none is `gw` itself (the router holding
/// the gateway address would otherwise route via itself).
fn via_gateway(addresses: &[IpNet], gw: IpAddr) -> bool {
    addresses.iter().any(|a| a.contains(&gw)) && !addresses.iter().any(|a| a.addr() == gw)
}

/// The next free host address of `net`, from offset `*cursor` on, keeping the
/// subnet's prefix length.
fn allocate(net: &IpNet, cursor: &mut u128, used: &HashSet<IpAddr>) -> Option<IpNet> {
    let base = net.trunc();
    let (start, last): (u128, u128) = match base {
        IpNet::V4(n) => {
            let s = u32::from(n.network()) as u128;
            let b = u32::from(n.broadcast()) as u128;
            // A /31 or /32 has no network or broadcast address to skip.
            if n.prefix_len() >= 31 {
                (s, b)
            } else {
                (s, b - 1)
            }
        }
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    };
    loop {
        let v = start.checked_add(*cursor)?;
        if v > last {
            return None;
        }
        *cursor += 1;
        let addr = match base {
            IpNet::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(v as u32)),
            IpNet::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(v)),
        };
        if !used.contains(&addr) {
            return IpNet::new(addr, net.prefix_len()).ok();
        }
    }
}
