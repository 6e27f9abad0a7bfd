//! Diff two labs into the operations that turn one into the other.
//!
//! A lab is flattened into resources (a namespace, a device, a veth pair, an
//! interface's settings, an address, a route, a sysctl), each with a key and
//! a value. The plan adds what is new, removes what is gone, and changes in
//! place what the kernel can change; a device whose creation-time settings
//! differ is removed and made again, together with what hangs on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::*;

/// What a resource is. The variant order is the order of creation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResKey {
    Netns {
        node: String,
    },
    /// A bridge, TUN or TAP device.
    Device {
        node: String,
        iface: String,
    },
    /// A veth pair, ends in canonical order.
    Veth {
        a: Endpoint,
        b: Endpoint,
    },
    /// MTU, MAC, master, bridge and port settings, link state.
    Attrs {
        node: String,
        iface: String,
    },
    Sysctl {
        node: String,
        key: String,
    },
    Addr {
        node: String,
        iface: String,
        addr: IpNet,
    },
    Route {
        node: String,
        route: Route,
    },
    /// weft's nftables table in the node (NAT and port forwards); last, as
    /// its rules name interfaces and addresses.
    Nat {
        node: String,
    },
    /// The lab's switch datapath process (`weft datapath LAB`), when the
    /// lab has switches or wires: after the kernel work that makes its
    /// ports.
    Datapath {
        lab: String,
    },
    /// A `kind = "switch"` node's settings in the datapath (VLANs, STP,
    /// static MACs, mirror, impairment, ports): changed in place on the
    /// running datapath.
    Switch {
        node: String,
    },
    /// The `weft tunnel` process at one end of a tunnel link, on the TUN or
    /// TAP device of that end.
    Tunnel {
        node: String,
        iface: String,
    },
    /// The node's name files (`/etc/netns/NETNS/hosts`, linked to the
    /// lab's hosts file).
    Names {
        node: String,
    },
    /// The lab's hosts file: every node's name and the address it stands
    /// for.
    Hosts {
        lab: String,
    },
    /// The node's private mount namespace with its binds.
    Mounts {
        node: String,
    },
    /// A service the node runs (or its container, as
    /// [`crate::workload::CONTAINER_SERVICE`]); last, once the network it
    /// uses is there.
    Service {
        node: String,
        service: String,
    },
}

impl ResKey {
    pub fn node(&self) -> &str {
        match self {
            ResKey::Netns { node }
            | ResKey::Device { node, .. }
            | ResKey::Attrs { node, .. }
            | ResKey::Sysctl { node, .. }
            | ResKey::Addr { node, .. }
            | ResKey::Route { node, .. }
            | ResKey::Nat { node }
            | ResKey::Switch { node }
            | ResKey::Tunnel { node, .. }
            | ResKey::Names { node }
            | ResKey::Mounts { node }
            | ResKey::Service { node, .. } => node,
            ResKey::Veth { a, .. } => &a.node,
            // Lab-wide: in no node.
            ResKey::Datapath { .. } | ResKey::Hosts { .. } => "",
        }
    }

    /// A process or file weft keeps beside the kernel objects (the
    /// datapath, a switch's settings in it, tunnel processes, name files,
    /// services), applied after the kernel work and removed before it.
    pub fn is_process(&self) -> bool {
        matches!(
            self,
            ResKey::Datapath { .. }
                | ResKey::Switch { .. }
                | ResKey::Tunnel { .. }
                | ResKey::Names { .. }
                | ResKey::Hosts { .. }
                | ResKey::Mounts { .. }
                | ResKey::Service { .. }
        )
    }
}

/// What a service resource runs: one of the node's services, or its
/// container, and the node's binds (a change of them remakes its mount
/// namespace, so its services restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub service: Option<crate::workload::Service>,
    pub container: Option<crate::workload::Container>,
    pub binds: Vec<crate::workload::Bind>,
}

/// Everything about an interface that can change without recreating it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub up: bool,
    pub master: Option<String>,
    pub port: PortOptions,
    pub bridge: Option<BridgeOptions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Res {
    Netns,
    /// The device's kind with its creation-time options.
    Device(IfaceKind),
    Veth,
    Attrs(Attrs),
    Sysctl(String),
    Addr,
    Route,
    Nat(crate::nat::Nat),
    /// The wires it carries (impaired kernel links), by wire node: a
    /// change is a live edit of the running datapath.
    Datapath(Box<BTreeMap<String, crate::wire::Wire>>),
    Switch(Box<SwitchOptions>),
    /// A wire's settings in the datapath (crate::wire), under its node's
    /// `ResKey::Switch`: a change is a live edit of the running datapath.
    Wire(Box<crate::wire::Wire>),
    /// The tunnel link the end belongs to.
    Tunnel(Box<TunnelLink>),
    Names,
    /// Name -> address, as the hosts file lists them.
    Hosts(BTreeMap<String, std::net::IpAddr>),
    Mounts(Vec<crate::workload::Bind>),
    Service(Box<Workload>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Add {
        key: ResKey,
        val: Res,
    },
    /// `implied` removals happen by themselves when something they live in
    /// goes (an address with its device, everything with its namespace); they
    /// are in the plan so that undoing it restores them.
    Remove {
        key: ResKey,
        val: Res,
        implied: bool,
    },
    Change {
        key: ResKey,
        from: Res,
        to: Res,
    },
}

impl Op {
    pub fn key(&self) -> &ResKey {
        match self {
            Op::Add { key, .. } | Op::Remove { key, .. } | Op::Change { key, .. } => key,
        }
    }

    /// The operation that undoes this one.
    pub fn inverse(&self) -> Op {
        match self.clone() {
            Op::Add { key, val } => Op::Remove {
                key,
                val,
                implied: false,
            },
            Op::Remove { key, val, .. } => Op::Add { key, val },
            Op::Change { key, from, to } => Op::Change {
                key,
                from: to,
                to: from,
            },
        }
    }
}

/// An ordered list of operations: removals first (innermost first), then
/// additions and changes in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub ops: Vec<Op>,
}

impl Plan {
    /// True when applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.ops
            .iter()
            .all(|o| matches!(o, Op::Remove { implied: true, .. }))
    }

    /// Counts of (added, changed, removed) objects the user would care about:
    /// implied removals, interface settings of new interfaces and the name
    /// files (which follow the nodes and their addresses) are not counted.
    pub fn summary(&self) -> (usize, usize, usize) {
        let (mut a, mut c, mut r) = (0, 0, 0);
        for o in &self.ops {
            if matches!(o.key(), ResKey::Names { .. } | ResKey::Hosts { .. }) {
                continue;
            }
            match o {
                Op::Add {
                    key: ResKey::Attrs { .. },
                    ..
                } => {}
                Op::Add { .. } => a += 1,
                Op::Change { .. } => c += 1,
                Op::Remove { implied: false, .. } => r += 1,
                Op::Remove { .. } => {}
            }
        }
        (a, c, r)
    }

    /// The plan that undoes this one once all of it has been applied; for a
    /// partial application, invert only the applied prefix.
    pub fn inverse_of(applied: &[Op]) -> Plan {
        Plan {
            ops: applied.iter().rev().map(Op::inverse).collect(),
        }
    }

    /// The user-facing lines of the plan (`+ netns ns1`, `~ ns1:eth0 mtu ...`).
    pub fn lines(&self) -> Vec<String> {
        self.ops
            .iter()
            .filter_map(|o| match o {
                Op::Remove { implied: true, .. } => None,
                _ if matches!(o.key(), ResKey::Names { .. } | ResKey::Hosts { .. }) => None,
                Op::Add {
                    key: ResKey::Attrs { .. },
                    ..
                } => None,
                Op::Add { key, val } => Some(format!("+ {}", describe(key, val))),
                Op::Remove { key, val, .. } => Some(format!("- {}", describe(key, val))),
                Op::Change { key, from, to } => {
                    Some(format!("~ {}", describe_change(key, from, to)))
                }
            })
            .collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.lines() {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

fn describe(key: &ResKey, val: &Res) -> String {
    match (key, val) {
        (ResKey::Netns { node }, _) => format!("node {node}"),
        (ResKey::Device { node, iface }, Res::Device(k)) => format!("{} {node}:{iface}", k.name()),
        (ResKey::Device { node, iface }, _) => format!("device {node}:{iface}"),
        (ResKey::Veth { a, b }, _) => format!("link {a} <-> {b}"),
        (ResKey::Attrs { node, iface }, _) => format!("settings of {node}:{iface}"),
        (ResKey::Sysctl { node, key }, Res::Sysctl(v)) => format!("sysctl {key}={v} in {node}"),
        (ResKey::Sysctl { node, key }, _) => format!("sysctl {key} in {node}"),
        (ResKey::Addr { node, iface, addr }, _) => format!("address {addr} on {node}:{iface}"),
        (ResKey::Route { node, route }, _) => format!("route {route} in {node}"),
        (ResKey::Nat { node }, Res::Nat(n)) => format!("nat in {node}: {n}"),
        (ResKey::Nat { node }, _) => format!("nat in {node}"),
        (ResKey::Switch { node }, Res::Wire(w)) => {
            format!("wire {node}: impair {}", w.impair.summary())
        }
        (ResKey::Switch { node }, _) => format!("switch settings of {node}"),
        (ResKey::Datapath { lab }, _) => format!("switch datapath of lab {lab}"),
        (ResKey::Tunnel { node, iface }, _) => format!("tunnel process on {node}:{iface}"),
        (ResKey::Names { node }, _) => format!("name files of {node}"),
        (ResKey::Hosts { lab }, _) => format!("hosts file of lab {lab}"),
        (ResKey::Mounts { node }, Res::Mounts(b)) => format!(
            "binds of {node}: {}",
            b.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (ResKey::Mounts { node }, _) => format!("binds of {node}"),
        (ResKey::Service { node, service }, _) if service == crate::workload::CONTAINER_SERVICE => {
            format!("container of {node}")
        }
        (ResKey::Service { node, service }, _) => format!("service {node}:{service}"),
    }
}

fn describe_change(key: &ResKey, from: &Res, to: &Res) -> String {
    match (key, from, to) {
        (ResKey::Attrs { node, iface }, Res::Attrs(a), Res::Attrs(b)) => {
            let mut parts = Vec::new();
            let opt = |x: &Option<u32>| x.map_or("default".to_string(), |v| v.to_string());
            if a.mtu != b.mtu {
                parts.push(format!("mtu {} -> {}", opt(&a.mtu), opt(&b.mtu)));
            }
            if a.mac != b.mac {
                let m = |x: &Option<Mac>| x.map_or("random".to_string(), |v| v.to_string());
                parts.push(format!("mac {} -> {}", m(&a.mac), m(&b.mac)));
            }
            if a.up != b.up {
                parts.push(format!("{} -> {}", updown(a.up), updown(b.up)));
            }
            if a.master != b.master {
                let m = |x: &Option<String>| x.clone().unwrap_or_else(|| "none".into());
                parts.push(format!("master {} -> {}", m(&a.master), m(&b.master)));
            }
            if a.port.hairpin != b.port.hairpin {
                parts.push(format!(
                    "hairpin {} -> {}",
                    onoff(a.port.hairpin),
                    onoff(b.port.hairpin)
                ));
            }
            if (a.port.cost, a.port.priority) != (b.port.cost, b.port.priority) {
                parts.push(format!("port {} -> {}", a.port, b.port));
            }
            if a.bridge != b.bridge {
                let br =
                    |x: &Option<BridgeOptions>| x.as_ref().map_or("none".into(), |o| o.to_string());
                parts.push(format!("bridge {} -> {}", br(&a.bridge), br(&b.bridge)));
            }
            format!("{node}:{iface} {}", parts.join(", "))
        }
        (ResKey::Sysctl { node, key }, Res::Sysctl(a), Res::Sysctl(b)) => {
            format!("sysctl {key} in {node}: {a} -> {b}")
        }
        (ResKey::Nat { node }, Res::Nat(a), Res::Nat(b)) => {
            let mut parts = Vec::new();
            if (&a.bridge, &a.subnets, &a.uplink) != (&b.bridge, &b.subnets, &b.uplink) {
                let nets = |n: &crate::nat::Nat| {
                    n.subnets
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                parts.push(format!(
                    "masquerade {} out of {} -> {} out of {}",
                    nets(a),
                    a.uplink,
                    nets(b),
                    b.uplink
                ));
            }
            if a.behaviour != b.behaviour {
                let show = |x: &Option<crate::nat::Behaviour>| {
                    x.as_ref()
                        .map_or("plain masquerade".to_string(), |x| x.to_string())
                };
                parts.push(format!("{} -> {}", show(&a.behaviour), show(&b.behaviour)));
            }
            for f in a.forwards.iter().filter(|f| !b.forwards.contains(f)) {
                parts.push(format!("- forward {f}"));
            }
            for f in b.forwards.iter().filter(|f| !a.forwards.contains(f)) {
                parts.push(format!("+ forward {f}"));
            }
            format!("nat in {node}: {}", parts.join(", "))
        }
        (ResKey::Switch { node }, Res::Wire(a), Res::Wire(b)) => {
            format!(
                "wire {node}: impair {} -> {}",
                a.impair.summary(),
                b.impair.summary()
            )
        }
        (ResKey::Switch { node }, Res::Switch(a), Res::Switch(b)) => {
            // Said like the wires' edits: the running datapath takes it.
            format!(
                "switch {node}: {} (in place)",
                switch_changes(a, b).join(", ")
            )
        }
        (ResKey::Tunnel { .. }, Res::Tunnel(a), Res::Tunnel(b)) => {
            let mut parts = Vec::new();
            if a.port != b.port {
                parts.push(format!("port {} -> {}", a.port, b.port));
            }
            if a.tcp != b.tcp {
                let t = |tcp: bool| if tcp { "tcp" } else { "udp" };
                parts.push(format!("{} -> {}", t(a.tcp), t(b.tcp)));
            }
            if a.ends != b.ends {
                parts.push("underlay addresses".into());
            }
            if a.impair != b.impair {
                let s = |i: &Option<crate::impair::Impairment>| {
                    i.as_ref().map_or("none".to_string(), |i| i.summary())
                };
                parts.push(format!("impair {} -> {}", s(&a.impair), s(&b.impair)));
            }
            if a.cipher != b.cipher {
                let c = |c: &Option<String>| c.clone().unwrap_or_else(|| "auto".into());
                parts.push(format!("cipher {} -> {}", c(&a.cipher), c(&b.cipher)));
            }
            if parts.is_empty() {
                parts.push("settings".into());
            }
            format!("{}: {}", describe(key, to), parts.join(", "))
        }
        (ResKey::Datapath { .. }, Res::Datapath(a), Res::Datapath(b)) => {
            let mut parts = Vec::new();
            for (w, x) in b.iter() {
                match a.get(w) {
                    None => parts.push(format!("+ wire {}", x.link[0])),
                    Some(y) if y != x => parts.push(format!("wire {}", x.link[0])),
                    Some(_) => {}
                }
            }
            for (w, y) in a.iter() {
                if !b.contains_key(w) {
                    parts.push(format!("- wire {}", y.link[0]));
                }
            }
            format!("{}: {} (in place)", describe(key, to), parts.join(", "))
        }
        (ResKey::Service { .. }, Res::Service(a), Res::Service(b)) => {
            let mut parts = Vec::new();
            if a.service != b.service || a.container != b.container {
                parts.push("definition");
            }
            if a.binds != b.binds {
                parts.push("binds");
            }
            format!(
                "{} ({} changed: restarts)",
                describe(key, to),
                parts.join(", ")
            )
        }
        _ => describe(key, to),
    }
}

/// What differs between two switch settings, by name.
fn switch_changes(a: &SwitchOptions, b: &SwitchOptions) -> Vec<String> {
    let mut parts = Vec::new();
    let opt = |x: Option<u32>| x.map_or("default".to_string(), |v| v.to_string());
    if a.stp != b.stp {
        parts.push(format!("stp {} -> {}", a.stp.name(), b.stp.name()));
    }
    if a.priority != b.priority {
        let p = |x: Option<u16>| x.map_or("default".to_string(), |v| v.to_string());
        parts.push(format!("priority {} -> {}", p(a.priority), p(b.priority)));
    }
    for (name, x, y) in [
        ("forward_delay_cs", a.forward_delay_cs, b.forward_delay_cs),
        ("hello_time_cs", a.hello_time_cs, b.hello_time_cs),
        ("max_age_cs", a.max_age_cs, b.max_age_cs),
        ("ageing_time_cs", a.ageing_time_cs, b.ageing_time_cs),
        ("fdb_size", a.fdb_size, b.fdb_size),
    ] {
        if x != y {
            parts.push(format!("{name} {} -> {}", opt(x), opt(y)));
        }
    }
    if a.mac != b.mac {
        parts.push("mac".into());
    }
    for (p, x) in &b.ports {
        match a.ports.get(p) {
            None => parts.push(format!("+ port {p}")),
            Some(w)
                if w.impair != x.impair
                    && (SwitchPort {
                        impair: None,
                        ..w.clone()
                    }) == (SwitchPort {
                        impair: None,
                        ..x.clone()
                    }) =>
            {
                parts.push(format!("impairment of port {p}"))
            }
            Some(w) if w != x => parts.push(format!("port {p}")),
            Some(_) => {}
        }
    }
    for p in a.ports.keys().filter(|p| !b.ports.contains_key(*p)) {
        parts.push(format!("- port {p}"));
    }
    if a.static_macs != b.static_macs {
        parts.push("static MACs".into());
    }
    if a.mirror != b.mirror {
        parts.push("mirror".into());
    }
    parts
}

fn onoff(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn updown(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

/// Flatten a lab into its resources.
pub fn resources(lab: &Lab) -> BTreeMap<ResKey, Res> {
    let mut out = BTreeMap::new();
    for n in lab.nodes.values() {
        let node = n.name.clone();
        out.insert(ResKey::Netns { node: node.clone() }, Res::Netns);
        for i in n.interfaces.values() {
            let iface = i.name.clone();
            match &i.kind {
                IfaceKind::Loopback => {}
                // A bridge's settings change in place (they are in its
                // Attrs); only TUN/TAP options need the device made again.
                IfaceKind::Bridge(_) => {
                    out.insert(
                        ResKey::Device {
                            node: node.clone(),
                            iface: iface.clone(),
                        },
                        Res::Device(IfaceKind::Bridge(BridgeOptions::default())),
                    );
                }
                IfaceKind::Veth { peer } => {
                    let me = Endpoint::new(&node, &iface);
                    if me < *peer {
                        out.insert(
                            ResKey::Veth {
                                a: me,
                                b: peer.clone(),
                            },
                            Res::Veth,
                        );
                    }
                }
                k => {
                    out.insert(
                        ResKey::Device {
                            node: node.clone(),
                            iface: iface.clone(),
                        },
                        Res::Device(k.clone()),
                    );
                }
            }
            let attrs = Attrs {
                mtu: i.mtu,
                mac: i.mac,
                up: i.up,
                master: i.master.clone(),
                port: i.port.clone(),
                bridge: match &i.kind {
                    IfaceKind::Bridge(b) => Some(b.clone()),
                    _ => None,
                },
            };
            out.insert(
                ResKey::Attrs {
                    node: node.clone(),
                    iface: iface.clone(),
                },
                Res::Attrs(attrs),
            );
            for a in &i.addresses {
                out.insert(
                    ResKey::Addr {
                        node: node.clone(),
                        iface: iface.clone(),
                        addr: *a,
                    },
                    Res::Addr,
                );
            }
        }
        for r in &n.routes {
            out.insert(
                ResKey::Route {
                    node: node.clone(),
                    route: r.clone(),
                },
                Res::Route,
            );
        }
        for (k, v) in &n.sysctls {
            out.insert(
                ResKey::Sysctl {
                    node: node.clone(),
                    key: k.clone(),
                },
                Res::Sysctl(v.clone()),
            );
        }
    }
    for (node, nat) in &lab.nat {
        out.insert(ResKey::Nat { node: node.clone() }, Res::Nat(nat.clone()));
    }
    for n in lab.nodes.values() {
        if let Some(sw) = &n.switch {
            out.insert(
                ResKey::Switch {
                    node: n.name.clone(),
                },
                Res::Switch(Box::new(sw.clone())),
            );
        }
        if let Some(w) = &n.wire {
            out.insert(
                ResKey::Switch {
                    node: n.name.clone(),
                },
                Res::Wire(Box::new(w.clone())),
            );
        }
    }
    process_resources(lab, &mut out);
    out
}

/// The processes and files of a lab beside its kernel objects.
fn process_resources(lab: &Lab, out: &mut BTreeMap<ResKey, Res>) {
    if lab
        .nodes
        .values()
        .any(|n| n.kind == NodeKind::Switch || n.wire.is_some())
    {
        let wires = lab
            .nodes
            .values()
            .filter_map(|n| Some((n.name.clone(), n.wire.clone()?)))
            .collect();
        out.insert(
            ResKey::Datapath {
                lab: lab.name.clone(),
            },
            Res::Datapath(Box::new(wires)),
        );
    }
    for t in &lab.tunnels {
        for e in &t.ends {
            // An end on another machine is that machine's.
            if lab.nodes.contains_key(&e.endpoint.node) {
                out.insert(
                    ResKey::Tunnel {
                        node: e.endpoint.node.clone(),
                        iface: e.endpoint.iface.clone(),
                    },
                    Res::Tunnel(Box::new(t.clone())),
                );
            }
        }
    }
    if lab.nodes.is_empty() {
        return;
    }
    let mut hosts: BTreeMap<String, std::net::IpAddr> = lab
        .nodes
        .values()
        .filter_map(|n| Some((n.name.clone(), crate::check::node_address(n)?)))
        .collect();
    hosts.extend(lab.remote_names.iter().map(|(k, v)| (k.clone(), *v)));
    out.insert(
        ResKey::Hosts {
            lab: lab.name.clone(),
        },
        Res::Hosts(hosts),
    );
    for n in lab.nodes.values() {
        out.insert(
            ResKey::Names {
                node: n.name.clone(),
            },
            Res::Names,
        );
        if !n.binds.is_empty() {
            out.insert(
                ResKey::Mounts {
                    node: n.name.clone(),
                },
                Res::Mounts(n.binds.clone()),
            );
        }
        let w = |service, container| {
            Res::Service(Box::new(Workload {
                service,
                container,
                binds: n.binds.clone(),
            }))
        };
        for (name, s) in &n.services {
            out.insert(
                ResKey::Service {
                    node: n.name.clone(),
                    service: name.clone(),
                },
                w(Some(s.clone()), None),
            );
        }
        if let Some(c) = &n.container {
            out.insert(
                ResKey::Service {
                    node: n.name.clone(),
                    service: crate::workload::CONTAINER_SERVICE.to_string(),
                },
                w(None, Some(c.clone())),
            );
        }
    }
}

/// The plan that turns `old` (what is built, `None` for nothing) into `new`.
pub fn plan(old: Option<&Lab>, new: &Lab) -> Plan {
    let before = old.map(resources).unwrap_or_default();
    let after = resources(new);
    diff(&before, &after)
}

/// The plan between two resource sets.
pub fn diff(before: &BTreeMap<ResKey, Res>, after: &BTreeMap<ResKey, Res>) -> Plan {
    let gone_nodes: BTreeSet<&str> = before
        .keys()
        .filter_map(|k| match k {
            ResKey::Netns { node } if !after.contains_key(k) => Some(node.as_str()),
            _ => None,
        })
        .collect();
    // Interfaces that are deleted (or deleted and made again): what hangs on
    // them goes with them.
    let mut gone_ifaces: BTreeSet<(String, String)> = BTreeSet::new();
    for (k, v) in before {
        let recreated = after.get(k).is_some_and(|w| w != v) && matches!(k, ResKey::Device { .. });
        if after.contains_key(k) && !recreated {
            continue;
        }
        match k {
            ResKey::Device { node, iface } => {
                gone_ifaces.insert((node.clone(), iface.clone()));
            }
            ResKey::Veth { a, b } => {
                gone_ifaces.insert((a.node.clone(), a.iface.clone()));
                gone_ifaces.insert((b.node.clone(), b.iface.clone()));
            }
            _ => {}
        }
    }
    let touched_nodes: BTreeSet<&str> = gone_ifaces.iter().map(|(n, _)| n.as_str()).collect();
    // A port whose bridge is made again must join the new one.
    let master_gone = |node: &str, v: Option<&Res>| match v {
        Some(Res::Attrs(a)) => a
            .master
            .as_ref()
            .is_some_and(|m| gone_ifaces.contains(&(node.to_string(), m.clone()))),
        _ => false,
    };
    let on_gone_iface = |k: &ResKey| match k {
        ResKey::Attrs { node, iface } => {
            gone_ifaces.contains(&(node.clone(), iface.clone())) || master_gone(node, after.get(k))
        }
        ResKey::Addr { node, iface, .. } => gone_ifaces.contains(&(node.clone(), iface.clone())),
        // A tunnel process on a device made again runs on the new one.
        ResKey::Tunnel { node, iface } => gone_ifaces.contains(&(node.clone(), iface.clone())),
        // The kernel drops a node's routes through a deleted device; re-add
        // all of the node's routes rather than guess which (adding replaces).
        ResKey::Route { node, .. } => touched_nodes.contains(node.as_str()),
        _ => false,
    };

    let mut removes = Vec::new();
    let mut adds = Vec::new();
    for (k, v) in before.iter().rev() {
        let node_gone = gone_nodes.contains(k.node());
        let keep = after.get(k);
        let recreate = match (k, keep) {
            (ResKey::Device { .. }, Some(w)) => w != v,
            (_, Some(_)) => on_gone_iface(k),
            (_, None) => false,
        };
        if keep.is_some() && !recreate {
            continue;
        }
        let implied = match k {
            ResKey::Netns { .. } => false,
            // Processes and files do not go by themselves with their
            // namespace or device: they are stopped and removed first.
            k if k.is_process() && !matches!(k, ResKey::Switch { .. }) => false,
            // A veth whose one end stays is deleted explicitly, so that its
            // name is free at once (namespaces die asynchronously).
            ResKey::Veth { a, b } => {
                gone_nodes.contains(a.node.as_str()) && gone_nodes.contains(b.node.as_str())
            }
            _ if node_gone => true,
            ResKey::Attrs { .. } => true,
            _ => on_gone_iface(k),
        };
        removes.push(Op::Remove {
            key: k.clone(),
            val: v.clone(),
            implied,
        });
    }
    for (k, v) in after {
        match before.get(k) {
            None => adds.push(Op::Add {
                key: k.clone(),
                val: v.clone(),
            }),
            Some(w) => {
                let recreate = matches!(k, ResKey::Device { .. }) && w != v || on_gone_iface(k);
                if recreate {
                    adds.push(Op::Add {
                        key: k.clone(),
                        val: v.clone(),
                    });
                } else if w != v {
                    adds.push(Op::Change {
                        key: k.clone(),
                        from: w.clone(),
                        to: v.clone(),
                    });
                }
            }
        }
    }
    removes.extend(adds);
    Plan { ops: removes }
}
