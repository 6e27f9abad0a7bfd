//! The topology file: its serde shape, expansion into a [`Lab`], and every
//! check that must pass before anything is built.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Diagnostic, Diagnostics, LineIndex};
use crate::model::*;
use crate::route::parse_route;

mod de;
mod machines;
pub use machines::VXLAN_PORT;
mod services;
mod tunnel;

type Span = Range<usize>;

mod switch;
use switch::StpKey;

macro_rules! bridge_keys {
    ($r:expr) => {
        RawBridge {
            stp: StpKey::as_bool(&$r.stp),
            forward_delay: $r.forward_delay.clone(),
            hello_time: $r.hello_time.clone(),
            max_age: $r.max_age.clone(),
            ageing_time: $r.ageing_time.clone(),
            priority: $r.priority.clone(),
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLab {
    name: Spanned<String>,
    #[serde(default)]
    nodes: BTreeMap<Spanned<String>, RawNode>,
    #[serde(default)]
    links: Vec<Spanned<RawLink>>,
    #[serde(default)]
    nat: BTreeMap<Spanned<String>, crate::nat::RawNat>,
    allow_host_interfaces: Option<bool>,
    #[serde(default)]
    checks: Vec<Spanned<crate::check::RawCheck>>,
    #[serde(default)]
    machines: BTreeMap<Spanned<String>, machines::RawMachine>,
    /// UDP port of vxlan links that name none.
    vxlan_port: Option<Spanned<u16>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    kind: Option<Spanned<String>>,
    count: Option<Spanned<u32>>,
    attach: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    #[serde(default)]
    sysctls: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    interfaces: BTreeMap<Spanned<String>, RawIface>,
    mtu: Option<Spanned<u32>>,
    mac: Option<Spanned<String>>,
    /// `true`/`false` on a bridge; also `"rstp"`, `"stp"`, `"off"` on a switch.
    stp: Option<Spanned<toml::Value>>,
    forward_delay: Option<Spanned<toml::Value>>,
    hello_time: Option<Spanned<toml::Value>>,
    max_age: Option<Spanned<toml::Value>>,
    ageing_time: Option<Spanned<toml::Value>>,
    priority: Option<Spanned<u32>>,
    fdb_size: Option<Spanned<u32>>,
    /// Bridge or switch: the network `attach` draws host addresses from.
    subnet: Option<Spanned<String>>,
    /// Switch: the router on its segment, the attached hosts' default route.
    gateway: Option<Spanned<String>>,
    /// The machine the node is built on (labs that span machines).
    machine: Option<Spanned<String>>,
    /// Switch: configured FDB entries.
    #[serde(default)]
    static_macs: Vec<Spanned<switch::RawStaticMac>>,
    /// Switch: port mirroring.
    mirror: Option<Spanned<switch::RawMirror>>,
    /// With `attach`: the settings of the port it makes on the bridge or
    /// switch (for every member of a `count` group).
    port: Option<Spanned<switch::RawAttachPort>>,
    /// Programs run in the node.
    #[serde(default)]
    services: BTreeMap<Spanned<String>, Spanned<services::RawService>>,
    /// `"./host:/in/node"` or `"tmpfs:/in/node"`.
    #[serde(default)]
    binds: Vec<Spanned<String>>,
    /// A container image run in the node.
    image: Option<Spanned<String>>,
    /// The container's command (with `image`).
    command: Option<Spanned<Vec<String>>>,
    /// The container's environment (with `image`).
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// Whose STP timers are being read: a kernel bridge's or a weft switch's
/// (messages name which, and the reason for a bound differs).
pub(super) enum Timers<'a> {
    Bridge(&'a str),
    Switch(&'a str),
}

impl std::fmt::Display for Timers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timers::Bridge(w) => write!(f, "bridge `{w}`"),
            Timers::Switch(w) => write!(f, "switch `{w}`"),
        }
    }
}

/// The bridge keys of a node or interface, gathered (serde's `flatten`
/// would lose the positions and the unknown-key check).
#[derive(Default)]
struct RawBridge {
    stp: Option<Spanned<bool>>,
    forward_delay: Option<Spanned<toml::Value>>,
    hello_time: Option<Spanned<toml::Value>>,
    max_age: Option<Spanned<toml::Value>>,
    ageing_time: Option<Spanned<toml::Value>>,
    priority: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIface {
    kind: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    mtu: Option<Spanned<u32>>,
    mac: Option<Spanned<String>>,
    up: Option<bool>,
    master: Option<Spanned<String>>,
    port: Option<bool>,
    cost: Option<Spanned<u32>>,
    owner: Option<Spanned<u32>>,
    group: Option<Spanned<u32>>,
    multi_queue: Option<bool>,
    pi: Option<bool>,
    vnet_hdr: Option<bool>,
    host_interface: Option<Spanned<String>>,
    stp: Option<Spanned<bool>>,
    forward_delay: Option<Spanned<toml::Value>>,
    hello_time: Option<Spanned<toml::Value>>,
    max_age: Option<Spanned<toml::Value>>,
    ageing_time: Option<Spanned<toml::Value>>,
    priority: Option<Spanned<u32>>,
    vlan: Option<Spanned<u32>>,
    trunk: Option<Spanned<Vec<u32>>>,
    native: Option<Spanned<u32>>,
    edge: Option<Spanned<bool>>,
    impair: Option<Spanned<switch::RawImpair>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    endpoints: [Spanned<String>; 2],
    mtu: Option<Spanned<u32>>,
    kind: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    underlay: Option<Spanned<Vec<Spanned<String>>>>,
    port: Option<Spanned<u16>>,
    transport: Option<Spanned<String>>,
    /// VXLAN network identifier of a `kind = "vxlan"` link.
    vni: Option<Spanned<u32>>,
    impair: Option<Spanned<switch::RawImpair>>,
}

/// A checked, expanded lab and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub lab: Lab,
    pub warnings: Vec<Diagnostic>,
}

/// Largest `count` accepted: far above what a 2-core machine builds quickly,
/// low enough to catch a typo before it creates a million namespaces.
pub const MAX_COUNT: u32 = 10_000;

/// Parse, expand and check a topology file. Every problem is reported, each
/// with its position; nothing here touches the system.
pub fn parse(source: &str) -> Result<Parsed, Diagnostics> {
    parse_with(source, None)
}

/// [`parse`], keeping the addresses `attach` gave hosts in `previous` (the
/// lab as built), so that an edit never renumbers hosts it did not touch.
pub fn parse_with(source: &str, previous: Option<&Lab>) -> Result<Parsed, Diagnostics> {
    parse_at(source, previous, None)
}

/// Where a file is, for the host paths of `binds`: relative ones are taken
/// from `dir`, and each must pass `exists` (the caller's look at the disk;
/// this crate touches nothing).
pub struct FileDir<'a> {
    pub dir: &'a std::path::Path,
    pub exists: &'a dyn Fn(&std::path::Path) -> bool,
}

/// [`parse_with`] for a file in a directory (see [`FileDir`]). Without
/// one, relative bind sources are kept as written and not looked at.
pub fn parse_at(
    source: &str,
    previous: Option<&Lab>,
    dir: Option<FileDir>,
) -> Result<Parsed, Diagnostics> {
    let (raw, shape) = de::read::<RawLab>(source).map_err(sorted)?;
    let mut cx = Cx {
        previous,
        source,
        dir,
        lines: LineIndex::new(source),
        ..Cx::default()
    };
    let lab = cx.expand(raw);
    // What the checks say about a value the shape reading replaced with a
    // stand-in follows from that one problem: leave it out.
    cx.errors
        .retain(|d| d.span.as_ref().is_none_or(|s| !shape.covers(s)));
    cx.errors.extend(shape.errors);
    if cx.errors.is_empty() {
        Ok(Parsed {
            lab,
            warnings: cx.warnings,
        })
    } else {
        Err(sorted(cx.errors))
    }
}

/// Problems in file order (those without a position last).
fn sorted(mut errors: Vec<Diagnostic>) -> Diagnostics {
    errors.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    Diagnostics(errors)
}

#[derive(Default)]
struct Cx<'p> {
    previous: Option<&'p Lab>,
    dir: Option<FileDir<'p>>,
    /// Positions of services and their `after` entries, for the checks
    /// that need every node.
    service_spans: services::Spans,
    source: &'p str,
    lines: LineIndex,
    /// `allow_host_interfaces = true`: the file may use the machine's own
    /// interfaces (macvlan uplinks).
    allow_host: bool,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    node_span: HashMap<String, Span>,
    iface_span: HashMap<(String, String), Span>,
    addr_span: HashMap<(String, String, IpNet), Span>,
    route_span: HashMap<(String, usize), Span>,
    master_span: HashMap<(String, String), Span>,
    /// Groups written with `count`: name -> the nodes they became.
    groups: HashMap<String, (u32, Span)>,
    /// Hosts with `attach`, in the order they get addresses.
    attached: Vec<(String, String, Span, bool)>,
    /// `subnet` and `gateway` of bridge and switch nodes, for `attach`.
    segments: HashMap<String, (Option<IpNet>, Option<IpAddr>)>,
    /// Port settings written on interfaces of switch nodes.
    switch_ports: HashMap<(String, String), switch::RawPort>,
    /// `port = {..}` of attached hosts, by host.
    attach_ports: HashMap<String, Spanned<switch::RawAttachPort>>,
    /// Positions of `port = {..}` tables already checked (a group shares one).
    attach_port_seen: HashSet<usize>,
    /// Static MACs and mirrors of switch nodes, checked once ports are known.
    switch_extra: HashMap<String, switch::RawExtra>,
    /// Positions of each tunnel link's two underlay addresses.
    tunnel_spans: Vec<[Span; 2]>,
    machines: machines::MachinesCx,
    /// Set by `link_impair` for a link with two kernel ends.
    kernel_link_impair: Option<crate::impair::Impairment>,
    /// Ends of links refused for their other end (not reported as unlinked).
    broken_ends: HashSet<(String, String)>,
}

impl Cx<'_> {
    fn err(&mut self, span: Option<Span>, msg: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        let mut d = Diagnostic::new(msg, span);
        if !help.is_empty() {
            d = d.help(help);
        }
        self.errors.push(d);
    }

    /// `line L, column C` of a byte offset, for a second place in a message.
    fn at(&self, offset: usize) -> String {
        self.lines.at(self.source, offset)
    }

    fn expand(&mut self, raw: RawLab) -> Lab {
        let name = raw.name.get_ref().clone();
        if let Err(why) = check_lab_name(&name) {
            self.err(Some(raw.name.span()), why, "");
        }
        let mut lab = Lab::empty(&name);
        self.allow_host = raw.allow_host_interfaces == Some(true);
        match &raw.vxlan_port {
            Some(p) if *p.get_ref() == 0 => self.err(
                Some(p.span()),
                "vxlan_port: 0 is not a UDP port",
                format!("leave it out for {}, VXLAN's port", machines::VXLAN_PORT),
            ),
            Some(p) => lab.vxlan_port = Some(*p.get_ref()),
            None => {}
        }
        self.add_machines(&mut lab, &raw.machines);
        for (key, rn) in &raw.nodes {
            self.add_node(&mut lab, key, rn);
        }
        for link in &raw.links {
            self.add_link(&mut lab, link);
        }
        self.attach_hosts(&mut lab);
        self.switch_ports(&mut lab);
        self.check(&lab);
        let mut more = Vec::new();
        let (spans, ispans) = (&self.addr_span, &self.iface_span);
        crate::nat::check_overlaps(
            &lab,
            &|n, i, a| {
                let k = (n.to_string(), i.to_string());
                spans
                    .get(&(k.0.clone(), k.1.clone(), *a))
                    .or(ispans.get(&k))
                    .cloned()
            },
            &mut more,
        );
        crate::nat::expand(&mut lab, &raw.nat, &mut more);
        crate::check::expand(&mut lab, &raw.checks, self.source, &self.lines, &mut more);
        self.errors.extend(more);
        self.check_tunnels(&lab);
        self.finish_vxlan(&mut lab);
        self.check_machines(&lab);
        self.check_services(&lab);
        lab
    }

    fn add_node(&mut self, lab: &mut Lab, key: &Spanned<String>, rn: &RawNode) {
        let base = key.get_ref();
        let span = key.span();
        if let Err(why) = check_node_name(base) {
            self.err(
                Some(span.clone()),
                format!("node name `{}`: {why}", de::esc(base)),
                "",
            );
            return;
        }
        let kind = match rn.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("host") => NodeKind::Host,
            Some("bridge") => NodeKind::Bridge,
            Some("switch") => NodeKind::Switch,
            Some(other) => {
                self.err(
                    rn.kind.as_ref().map(|k| k.span()),
                    format!("node `{base}`: unknown kind `{other}`"),
                    "write kind = \"host\" (the default), kind = \"bridge\" or kind = \"switch\"",
                );
                return;
            }
        };
        self.segment_keys(base, kind, rn);
        let names: Vec<String> = match &rn.count {
            None => vec![base.clone()],
            Some(c) => {
                let n = *c.get_ref();
                if !(1..=MAX_COUNT).contains(&n) {
                    self.err(
                        Some(c.span()),
                        format!("node `{base}`: count {n} is out of range"),
                        format!("write a count from 1 to {MAX_COUNT}"),
                    );
                    return;
                }
                if kind != NodeKind::Host || rn.attach.is_none() {
                    self.err(
                        Some(c.span()),
                        format!(
                            "node `{base}`: `count` makes hosts on a bridge and needs `attach`"
                        ),
                        "add attach = \"BRIDGE\" naming a node of kind bridge",
                    );
                    return;
                }
                if !rn.addresses.is_empty() {
                    self.err(
                        Some(rn.addresses[0].span()),
                        format!("node `{base}`: a group made with `count` cannot list addresses"),
                        "leave addresses out: each host gets one from the bridge's subnet",
                    );
                }
                self.groups.insert(base.clone(), (n, span.clone()));
                (1..=n).map(|i| format!("{base}{i}")).collect()
            }
        };
        let switch_opts = self.switch_node(base, kind, rn);
        if kind == NodeKind::Bridge {
            self.stp_is_bool(base, rn);
        }
        let bridge_opts = match kind {
            NodeKind::Bridge => Some(self.bridge_options(base, &bridge_keys!(rn))),
            NodeKind::Switch => None,
            NodeKind::Host => {
                self.no_bridge_keys(base, &bridge_keys!(rn), "is not a bridge: bridge settings go on a node of kind \"bridge\" or an interface of kind \"bridge\"");
                None
            }
        };
        if kind == NodeKind::Host && (rn.mtu.is_some() || rn.mac.is_some()) {
            let s = rn
                .mtu
                .as_ref()
                .map(|m| m.span())
                .or(rn.mac.as_ref().map(|m| m.span()));
            self.err(
                s,
                format!("node `{base}`: `mtu` and `mac` belong on an interface of a host"),
                format!("write them under [nodes.{base}.interfaces.NAME]"),
            );
        }
        if kind == NodeKind::Host && rn.attach.is_none() && !rn.addresses.is_empty() {
            self.err(
                Some(rn.addresses[0].span()),
                format!("node `{base}`: addresses of a host belong on one of its interfaces"),
                format!("write them under [nodes.{base}.interfaces.NAME] addresses = [...], or attach the host to a bridge"),
            );
        }
        if let (Some(p), None) = (&rn.port, &rn.attach) {
            self.err(
                Some(p.span()),
                format!("node `{base}`: `port` holds the settings of the port `attach` makes, and the node has no `attach`"),
                "add attach = \"SWITCH\", or write the settings on the interface of the switch the node is cabled to",
            );
        }
        if kind == NodeKind::Bridge && rn.attach.is_some() {
            self.err(
                rn.attach.as_ref().map(|a| a.span()),
                format!("node `{base}`: a bridge cannot be attached to another bridge this way"),
                "write a [[links]] entry between the two bridges",
            );
        }
        let mut routes = Vec::new();
        for r in &rn.routes {
            match parse_route(r.get_ref()) {
                Ok(route) => routes.push((route, r.span())),
                Err(why) => self.err(
                    Some(r.span()),
                    format!("node `{base}`: route `{}`: {why}", r.get_ref()),
                    "",
                ),
            }
        }
        let mut sysctls = BTreeMap::new();
        for (k, v) in &rn.sysctls {
            if let toml::Value::Table(t) = v.get_ref() {
                // `net.ipv4.ip_forward = 1` unquoted is three nested tables.
                let (path, leaf) = first_leaf(k.get_ref(), t);
                self.err(
                    Some(k.span()),
                    format!("node `{base}`: sysctl `{}` is written without quotes, so TOML reads its dots as nested tables", de::esc(&path)),
                    format!("write the key in quotes: \"{}\" = {leaf}", de::esc(&path)),
                );
                continue;
            }
            if let Err(why) = check_sysctl_key(k.get_ref()) {
                self.err(
                    Some(k.span()),
                    format!("node `{base}`: sysctl `{}`: {why}", de::esc(k.get_ref())),
                    "",
                );
                continue;
            }
            let value = match v.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => u8::from(*b).to_string(),
                _ => {
                    self.err(
                        Some(v.span()),
                        format!(
                            "node `{base}`: sysctl `{}` takes a number, a boolean or a string",
                            k.get_ref()
                        ),
                        "",
                    );
                    continue;
                }
            };
            sysctls.insert(k.get_ref().clone(), value);
        }
        let machine = self.node_machine(lab, base, &span, rn);
        let workload = self.node_workload(base, rn);
        for name in names {
            if let Some(prev) = self.node_span.get(&name) {
                let prev = prev.clone();
                self.err(
                    Some(span.clone()),
                    format!("node name `{name}` is used twice"),
                    format!(
                        "rename one of them (the other is at {})",
                        self.at(prev.start)
                    ),
                );
                continue;
            }
            self.node_span.insert(name.clone(), span.clone());
            let (services, binds, container) = self.workload_for(&name, &workload);
            // A node already built keeps its namespace: one built before
            // the name changed to `weft-LAB.NODE` is still found.
            let netns = self
                .previous
                .and_then(|p| p.nodes.get(&name))
                .map_or_else(|| netns_name(&lab.name, &name), |n| n.netns.clone());
            let mut node = Node {
                netns,
                name: name.clone(),
                kind,
                interfaces: BTreeMap::new(),
                routes: Vec::new(),
                sysctls: sysctls.clone(),
                switch: switch_opts.clone(),
                wire: None,
                machine: machine.clone(),
                services,
                binds,
                container,
            };
            // Keyed by the place in the node's routes, which skips routes
            // that did not parse, not by the place in the file's list.
            for (route, rspan) in &routes {
                self.route_span
                    .insert((name.clone(), node.routes.len()), rspan.clone());
                node.routes.push(route.clone());
            }
            let mut lo = Interface {
                name: "lo".into(),
                kind: IfaceKind::Loopback,
                addresses: vec![],
                mtu: None,
                mac: None,
                up: true,
                master: None,
                port: PortOptions::default(),
            };
            if let Some(opts) = &bridge_opts {
                if let Err(why) = check_iface_name(&name) {
                    self.err(Some(span.clone()), format!("bridge node `{name}`: the bridge device takes the node's name, and {why}"), "choose a bridge node name of at most 15 bytes");
                }
                let mut br = Interface {
                    name: name.clone(),
                    kind: IfaceKind::Bridge(opts.clone()),
                    addresses: vec![],
                    mtu: rn.mtu.as_ref().map(|m| *m.get_ref()),
                    mac: None,
                    up: true,
                    master: None,
                    port: PortOptions::default(),
                };
                if let Some(m) = &rn.mtu {
                    self.check_mtu(&name, m);
                }
                br.mac = rn.mac.as_ref().and_then(|m| self.mac(&name, m));
                br.addresses = self.addresses(&name, &name, &rn.addresses);
                self.iface_span
                    .insert((name.clone(), name.clone()), span.clone());
                node.interfaces.insert(name.clone(), br);
            }
            for (ikey, ri) in &rn.interfaces {
                let iname = ikey.get_ref();
                if let Err(why) = check_iface_name(iname) {
                    self.err(
                        Some(ikey.span()),
                        format!("node `{name}`: interface name `{}`: {why}", de::esc(iname)),
                        "",
                    );
                    continue;
                }
                if node.interfaces.contains_key(iname) {
                    self.err(
                        Some(ikey.span()),
                        format!("node `{name}`: interface `{iname}` is the bridge itself"),
                        "give the port another name, or put bridge settings on the node",
                    );
                    continue;
                }
                self.iface_span
                    .insert((name.clone(), iname.clone()), ikey.span());
                if iname == "lo" {
                    if ri.kind.is_some()
                        || ri.mtu.is_some()
                        || ri.mac.is_some()
                        || ri.master.is_some()
                    {
                        self.err(Some(ikey.span()), format!("node `{name}`: `lo` is the loopback device and takes only addresses"), "");
                    }
                    lo.addresses = self.addresses(&name, "lo", &ri.addresses);
                    continue;
                }
                if let Some(iface) = self.iface(&name, kind, ikey, ri) {
                    node.interfaces.insert(iname.clone(), iface);
                }
            }
            node.interfaces.insert("lo".into(), lo);
            if let Some(a) = &rn.attach {
                self.attached.push((
                    name.clone(),
                    a.get_ref().clone(),
                    a.span(),
                    rn.routes.is_empty(),
                ));
                if let Some(p) = &rn.port {
                    self.attach_ports.insert(name.clone(), p.clone());
                }
                if rn.count.is_none() && !rn.addresses.is_empty() {
                    let addrs = self.addresses(&name, "eth0", &rn.addresses);
                    let eth0 = node
                        .interfaces
                        .entry("eth0".into())
                        .or_insert_with(|| new_veth("eth0"));
                    eth0.addresses.extend(addrs);
                }
            }
            lab.nodes.insert(name, node);
        }
    }

    /// `subnet` (bridge or switch) and `gateway` (switch): where attached
    /// hosts get their addresses and default route.
    fn segment_keys(&mut self, node: &str, kind: NodeKind, rn: &RawNode) {
        if rn.subnet.is_none() && rn.gateway.is_none() {
            return;
        }
        if kind == NodeKind::Host {
            let s = rn.subnet.as_ref().or(rn.gateway.as_ref()).map(|x| x.span());
            self.err(s, format!("node `{node}`: `subnet` and `gateway` belong on a node of kind \"bridge\" or \"switch\""), "give the host an address on an interface, or attach it to a bridge or switch");
            return;
        }
        let subnet = rn
            .subnet
            .as_ref()
            .and_then(|sn| match sn.get_ref().parse::<IpNet>() {
                Ok(n) if n.trunc() == n => Some(n),
                Ok(n) => {
                    self.err(
                        Some(sn.span()),
                        format!("node `{node}`: subnet `{}` has host bits set", sn.get_ref()),
                        format!("write `{}`", n.trunc()),
                    );
                    None
                }
                Err(_) => {
                    self.err(
                        Some(sn.span()),
                        format!("node `{node}`: `{}` is not a subnet", sn.get_ref()),
                        "write a network with its prefix length, like 10.0.0.0/24",
                    );
                    None
                }
            });
        let gateway = rn.gateway.as_ref().and_then(|g| {
            if kind != NodeKind::Switch {
                self.err(Some(g.span()), format!("node `{node}`: `gateway` is for a switch; a bridge's own address is its hosts' gateway"), "give the bridge an address in the subnet instead");
                return None;
            }
            match g.get_ref().parse::<IpAddr>() {
                Ok(a) if subnet.is_some_and(|n| n.contains(&a)) => Some(a),
                Ok(a) => {
                    self.err(Some(g.span()), format!("node `{node}`: gateway {a} is not in the switch's subnet"), "add a subnet that contains it");
                    None
                }
                Err(_) => {
                    self.err(Some(g.span()), format!("node `{node}`: `{}` is not an address", g.get_ref()), "");
                    None
                }
            }
        });
        self.segments.insert(node.to_string(), (subnet, gateway));
    }

    fn iface(
        &mut self,
        node: &str,
        node_kind: NodeKind,
        key: &Spanned<String>,
        ri: &RawIface,
    ) -> Option<Interface> {
        let iname = key.get_ref();
        let kspan = ri.kind.as_ref().map(|k| k.span()).unwrap_or(key.span());
        let tun = TunOptions {
            owner: ri.owner.as_ref().map(|o| *o.get_ref()),
            group: ri.group.as_ref().map(|o| *o.get_ref()),
            multi_queue: ri.multi_queue.unwrap_or(false),
            pi: ri.pi.unwrap_or(false),
            vnet_hdr: ri.vnet_hdr.unwrap_or(false),
        };
        let kind = match ri.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("veth") => IfaceKind::Veth {
                peer: Endpoint::new("", ""),
            },
            Some("tun") => IfaceKind::Tun(tun.clone()),
            Some("tap") => IfaceKind::Tap(tun.clone()),
            Some("bridge") => {
                if node_kind == NodeKind::Bridge {
                    self.err(Some(kspan), format!("node `{node}`: a bridge node holds one bridge; interface `{iname}` cannot be another"), "make a separate node of kind \"bridge\"");
                    return None;
                }
                IfaceKind::Bridge(
                    self.bridge_options(&format!("{node}:{iname}"), &bridge_keys!(ri)),
                )
            }
            Some("macvlan") => {
                let Some(h) = &ri.host_interface else {
                    self.err(Some(kspan), format!("node `{node}`: macvlan `{iname}` needs host_interface, the machine's interface it sits on"), "add host_interface = \"eth0\" (and allow_host_interfaces = true at the top of the file)");
                    return None;
                };
                if let Err(why) = check_iface_name(h.get_ref()) {
                    self.err(
                        Some(h.span()),
                        format!("node `{node}`: host_interface: {why}"),
                        "",
                    );
                    return None;
                }
                if !self.allow_host {
                    self.err(Some(h.span()), format!("node `{node}`: `{iname}` would put a macvlan on the machine's own interface `{}`, and this file does not allow that", h.get_ref()), "add allow_host_interfaces = true at the top of the file if you mean it: the lab then sends and receives on a real network");
                    return None;
                }
                IfaceKind::Macvlan {
                    host: h.get_ref().clone(),
                }
            }
            Some(other) => {
                self.err(
                    Some(kspan),
                    format!("node `{node}`: interface `{iname}` has unknown kind `{other}`"),
                    "write veth (the default, made by a link), tun, tap, bridge or macvlan",
                );
                return None;
            }
        };
        self.switch_iface_keys(node, node_kind, key, ri, &kind);
        if let (Some(h), false) = (
            &ri.host_interface,
            matches!(kind, IfaceKind::Macvlan { .. }),
        ) {
            self.err(
                Some(h.span()),
                format!(
                    "node `{node}`: host_interface belongs to an interface of kind \"macvlan\""
                ),
                "add kind = \"macvlan\" or remove host_interface",
            );
        }
        let is_tun = matches!(kind, IfaceKind::Tun(_) | IfaceKind::Tap(_));
        if !is_tun
            && (ri.owner.is_some()
                || ri.group.is_some()
                || ri.multi_queue.is_some()
                || ri.pi.is_some()
                || ri.vnet_hdr.is_some())
        {
            self.err(Some(key.span()), format!("node `{node}`: interface `{iname}` is a {}, and owner, group, multi_queue, pi and vnet_hdr are TUN/TAP settings", kind.name()), "remove them or give the interface kind = \"tun\" or \"tap\"");
        }
        let is_bridge = matches!(kind, IfaceKind::Bridge(_));
        if !is_bridge {
            let msg = format!("is a {}, not a bridge", kind.name());
            self.no_bridge_keys(
                &format!("{node}:{iname}"),
                &RawBridge {
                    priority: None,
                    ..bridge_keys!(ri)
                },
                &msg,
            );
        }
        let master = match (&ri.master, ri.port) {
            (Some(m), Some(false)) => {
                self.err(
                    Some(m.span()),
                    format!(
                        "node `{node}`: interface `{iname}` has both `master` and port = false"
                    ),
                    "keep one of them",
                );
                None
            }
            (Some(m), _) => {
                self.master_span
                    .insert((node.to_string(), iname.clone()), m.span());
                Some(m.get_ref().clone())
            }
            (None, Some(false)) => None,
            (None, _) if node_kind == NodeKind::Bridge => Some(node.to_string()),
            (None, _) => None,
        };
        if is_bridge && master.is_some() {
            self.err(
                Some(key.span()),
                format!("node `{node}`: bridge `{iname}` cannot be a port of another bridge"),
                "join bridges with a veth link instead",
            );
        }
        let mut port = PortOptions::default();
        if let Some(c) = &ri.cost {
            if master.is_none() && node_kind != NodeKind::Switch {
                self.err(Some(c.span()), format!("node `{node}`: `cost` is a bridge port setting, and `{iname}` is not a bridge port"), "set master = \"BRIDGE\" or remove cost");
            } else if node_kind != NodeKind::Switch && !(1..=65535).contains(c.get_ref()) {
                self.err(
                    Some(c.span()),
                    format!("node `{node}`: port cost {} is out of range", c.get_ref()),
                    "write a cost from 1 to 65535",
                );
            }
            port.cost = Some(*c.get_ref());
        }
        if !is_bridge {
            if let Some(p) = &ri.priority {
                if master.is_none() && node_kind != NodeKind::Switch {
                    self.err(Some(p.span()), format!("node `{node}`: `priority` on `{iname}` is a bridge port setting, and `{iname}` is not a bridge port"), "set master = \"BRIDGE\" or remove priority");
                } else if *p.get_ref() > 63 {
                    self.err(
                        Some(p.span()),
                        format!(
                            "node `{node}`: port priority {} is out of range",
                            p.get_ref()
                        ),
                        "write a port priority from 0 to 63",
                    );
                }
                port.priority = Some(*p.get_ref() as u16);
            }
        }
        if let Some(m) = &ri.mtu {
            self.check_mtu(node, m);
        }
        let mac = ri.mac.as_ref().and_then(|m| self.mac(node, m));
        if mac.is_some() && matches!(kind, IfaceKind::Tun(_)) {
            self.err(ri.mac.as_ref().map(|m| m.span()), format!("node `{node}`: `{iname}` is a TUN device, which carries IP packets and has no MAC address"), "remove mac, or use kind = \"tap\"");
        }
        let addresses = self.addresses(node, iname, &ri.addresses);
        Some(Interface {
            name: iname.clone(),
            kind,
            addresses,
            mtu: ri.mtu.as_ref().map(|m| *m.get_ref()),
            mac,
            up: ri.up.unwrap_or(true),
            master,
            port,
        })
    }

    fn bridge_options(&mut self, who: &str, rb: &RawBridge) -> BridgeOptions {
        let stp = rb.stp.as_ref().is_some_and(|s| *s.get_ref());
        let fd_min = if stp { 2.0 } else { 0.0 };
        let w = Timers::Bridge(who);
        BridgeOptions {
            stp,
            forward_delay_cs: self.seconds(&w, "forward_delay", &rb.forward_delay, fd_min, 30.0),
            hello_time_cs: self.seconds(&w, "hello_time", &rb.hello_time, 1.0, 10.0),
            max_age_cs: self.seconds(&w, "max_age", &rb.max_age, 6.0, 40.0),
            ageing_time_cs: self.seconds(&w, "ageing_time", &rb.ageing_time, 0.0, 1_000_000.0),
            priority: rb.priority.as_ref().and_then(|p| {
                if *p.get_ref() > 65535 {
                    self.err(
                        Some(p.span()),
                        format!("bridge `{who}`: priority {} is out of range", p.get_ref()),
                        "write a bridge priority from 0 to 65535 (lower wins the root election)",
                    );
                    None
                } else {
                    Some(*p.get_ref() as u16)
                }
            }),
        }
    }

    fn seconds(
        &mut self,
        who: &Timers<'_>,
        key: &str,
        v: &Option<Spanned<toml::Value>>,
        min: f64,
        max: f64,
    ) -> Option<u32> {
        let v = v.as_ref()?;
        let secs = match v.get_ref() {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => {
                self.err(
                    Some(v.span()),
                    format!("{who}: `{key}` is a number of seconds"),
                    format!("write for example {key} = 2"),
                );
                return None;
            }
        };
        if !(min..=max).contains(&secs) {
            // Say why only for the bound that has a reason beyond the range.
            let why = match who {
                Timers::Bridge(_) if key == "forward_delay" && min > 0.0 && secs < min => {
                    " (with STP on, the kernel refuses less)"
                }
                Timers::Switch(_) if key == "forward_delay" && min > 0.0 && secs < min => {
                    " (with spanning tree on, 802.1D allows no less)"
                }
                _ => "",
            };
            self.err(
                Some(v.span()),
                format!("{who}: {key} = {secs} s is out of range{why}"),
                format!("write {key} between {min} and {max} seconds"),
            );
            return None;
        }
        Some((secs * 100.0).round() as u32)
    }

    fn no_bridge_keys(&mut self, who: &str, rb: &RawBridge, why: &str) {
        let spans = [
            rb.stp.as_ref().map(|s| s.span()),
            rb.forward_delay.as_ref().map(|s| s.span()),
            rb.hello_time.as_ref().map(|s| s.span()),
            rb.max_age.as_ref().map(|s| s.span()),
            rb.ageing_time.as_ref().map(|s| s.span()),
            rb.priority.as_ref().map(|s| s.span()),
        ];
        if let Some(s) = spans.into_iter().flatten().next() {
            self.err(Some(s), format!("`{who}` {why}"), "");
        }
    }

    fn check_mtu(&mut self, who: &str, m: &Spanned<u32>) {
        if !(68..=65535).contains(m.get_ref()) {
            self.err(
                Some(m.span()),
                format!("node `{who}`: MTU {} is out of range", m.get_ref()),
                "write an MTU from 68 to 65535",
            );
        }
    }

    fn mac(&mut self, who: &str, m: &Spanned<String>) -> Option<Mac> {
        match m.get_ref().parse::<Mac>() {
            Ok(mac) if mac.0[0] & 1 == 1 => {
                self.err(Some(m.span()), format!("node `{who}`: {mac} is a multicast address and cannot be an interface's MAC"), "clear the lowest bit of the first byte (02:... is a safe locally administered prefix)");
                None
            }
            Ok(mac) if mac.0 == [0; 6] => {
                self.err(
                    Some(m.span()),
                    format!("node `{who}`: 00:00:00:00:00:00 cannot be an interface's MAC"),
                    "",
                );
                None
            }
            Ok(mac) => Some(mac),
            Err(why) => {
                self.err(Some(m.span()), format!("node `{who}`: {why}"), "");
                None
            }
        }
    }

    fn addresses(&mut self, node: &str, iface: &str, raw: &[Spanned<String>]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for a in raw {
            let s = a.get_ref();
            let net: Option<IpNet> = if s.contains('/') {
                s.parse().ok()
            } else {
                s.parse::<IpAddr>().ok().map(IpNet::from)
            };
            match net {
                Some(n) => {
                    self.addr_span
                        .insert((node.to_string(), iface.to_string(), n), a.span());
                    out.push(n);
                }
                None => self.err(
                    Some(a.span()),
                    format!("node `{node}`: `{s}` is not an address"),
                    "write an address with its prefix length, like 192.168.50.1/24 or fd00::1/64",
                ),
            }
        }
        out
    }

    fn add_link(&mut self, lab: &mut Lab, link: &Spanned<RawLink>) {
        match link
            .get_ref()
            .kind
            .as_ref()
            .map(|k| (k.get_ref().as_str(), k.span()))
        {
            None | Some(("veth", _)) => {}
            Some(("tunnel", _)) => {
                self.no_link_impair("tunnel", link.get_ref().impair.as_ref());
                return self.add_tunnel(lab, link);
            }
            Some(("vxlan", _)) => {
                self.no_link_impair("vxlan", link.get_ref().impair.as_ref());
                return self.add_vxlan(lab, link);
            }
            Some((other, span)) => {
                self.err(
                    Some(span),
                    format!("link kind `{other}` is not known"),
                    "write kind = \"veth\" (the default), kind = \"tunnel\" or kind = \"vxlan\"",
                );
                return;
            }
        }
        let l = link.get_ref();
        for (key, span) in [
            ("mode", l.mode.as_ref().map(|m| m.span())),
            ("underlay", l.underlay.as_ref().map(|m| m.span())),
            ("port", l.port.as_ref().map(|m| m.span())),
            ("transport", l.transport.as_ref().map(|m| m.span())),
            ("vni", l.vni.as_ref().map(|m| m.span())),
        ] {
            if span.is_some() {
                self.err(
                    span,
                    format!(
                        "`{key}` is a {} link's key, and this link is a veth pair",
                        if key == "vni" { "vxlan" } else { "tunnel" }
                    ),
                    "add kind = \"tunnel\", or remove the key",
                );
            }
        }
        let mut eps = Vec::new();
        for e in &link.get_ref().endpoints {
            if let Some(ep) = self.endpoint(lab, e) {
                eps.push(ep);
            }
        }
        if eps.len() < 2 {
            // One end is refused: the other is not also "a veth end no
            // link uses", which would send the reader to add this link.
            for e in &link.get_ref().endpoints {
                if let Some((n, i)) = e.get_ref().split_once(':') {
                    self.broken_ends.insert((n.to_string(), i.to_string()));
                }
            }
            return;
        }
        let (a, b) = (eps[0].clone(), eps[1].clone());
        if a == b {
            self.err(
                Some(link.span()),
                format!("link from `{a}` to itself"),
                "a veth pair has two different ends: name another interface",
            );
            return;
        }
        let mtu = link.get_ref().mtu.as_ref().map(|m| {
            self.check_mtu(&a.node, m);
            *m.get_ref()
        });
        for (me, peer) in [(&a, &b), (&b, &a)] {
            let iface = lab
                .nodes
                .get_mut(&me.node)
                .unwrap()
                .interfaces
                .get_mut(&me.iface)
                .unwrap();
            iface.kind = IfaceKind::Veth { peer: peer.clone() };
            if iface.mtu.is_none() {
                iface.mtu = mtu;
            }
        }
        if let Some(imp) = &link.get_ref().impair {
            self.link_impair(lab, &a, &b, imp);
            // Both ends in the kernel: a wire carries the link.
            if let Some(w) = self.kernel_link_impair.take() {
                crate::wire::insert(lab, &a, &b, w);
            }
        }
    }

    /// Resolve `node:iface` in a link, creating the interface when the node
    /// does not declare it.
    fn endpoint(&mut self, lab: &mut Lab, e: &Spanned<String>) -> Option<Endpoint> {
        let text = e.get_ref();
        let Some((node, iface)) = text.split_once(':') else {
            self.err(
                Some(e.span()),
                format!("link endpoint `{}` is not NODE:INTERFACE", de::esc(text)),
                "write it like \"ns1:eth0\"",
            );
            return None;
        };
        let Some(n) = lab.nodes.get_mut(node) else {
            let help = match self.groups.get(node) {
                Some((count, _)) => format!("`{node}` is a group of {count} hosts ({node}1 to {node}{count}): name one of them"),
                None => format!("declare it as [nodes.{}], or fix the name", de::esc(node)),
            };
            self.err(
                Some(e.span()),
                format!(
                    "link endpoint `{}`: there is no node `{}`",
                    de::esc(text),
                    de::esc(node)
                ),
                help,
            );
            return None;
        };
        if let Err(why) = check_iface_name(iface) {
            self.err(
                Some(e.span()),
                format!(
                    "link endpoint `{}`: interface name `{}`: {why}",
                    de::esc(text),
                    de::esc(iface)
                ),
                "",
            );
            return None;
        }
        let ep = Endpoint::new(node, iface);
        match n.interfaces.get(iface) {
            None => {
                let mut v = new_veth(iface);
                if n.kind == NodeKind::Bridge {
                    v.master = Some(node.to_string());
                }
                n.interfaces.insert(iface.to_string(), v);
                self.iface_span
                    .insert((node.to_string(), iface.to_string()), e.span());
            }
            Some(i) => {
                match &i.kind {
                    IfaceKind::Veth { peer } if peer.node.is_empty() => {}
                    IfaceKind::Veth { peer } => {
                        self.err(Some(e.span()), format!("interface `{text}` is in two links (it is already cabled to `{peer}`)"), "a veth end joins exactly one link: add another interface");
                        return None;
                    }
                    other => {
                        self.err(
                            Some(e.span()),
                            format!(
                                "link endpoint `{text}` is a {} device, not a veth end",
                                other.name()
                            ),
                            "links are veth pairs: use another interface name",
                        );
                        return None;
                    }
                }
            }
        }
        Some(ep)
    }

    fn attach_hosts(&mut self, lab: &mut Lab) {
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
                        if route_via_subnet
                            && eth0.addresses.iter().any(|a| a.contains(&net.addr()))
                        {
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
                if route_via_subnet && eth0.addresses.iter().any(|a| a.contains(&net.addr())) {
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

    fn check(&mut self, lab: &Lab) {
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

    fn check_routes(&mut self, lab: &Lab, n: &Node) {
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

fn new_veth(name: &str) -> Interface {
    Interface {
        name: name.to_string(),
        kind: IfaceKind::Veth {
            peer: Endpoint::new("", ""),
        },
        addresses: vec![],
        mtu: None,
        mac: None,
        up: true,
        master: None,
        port: PortOptions::default(),
    }
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

/// Lab names become part of namespace names (`weft-LAB.NODE`) and journal
/// paths, so they are kept to a safe alphabet, without `.`: that ends the
/// lab's part of a namespace name (see [`netns_name`]).
pub fn check_lab_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err(format!(
            "lab name `{}` must be 1 to 32 characters",
            de::esc(name)
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        || !name.as_bytes()[0].is_ascii_alphanumeric()
    {
        return Err(format!(
            "lab name `{}` may use only a-z, 0-9, '-' and '_', starting with a letter or digit",
            de::esc(name)
        ));
    }
    Ok(())
}

fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a node name must be 1 to 64 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("a node name may use only letters, digits, '-' and '_'".into());
    }
    Ok(())
}

/// The kernel's own rule (`dev_valid_name`): at most 15 bytes, not `.` or
/// `..`, and no `/`, `:` or white space.
pub fn check_iface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if name.len() > 15 {
        return Err(format!(
            "`{}` is {} bytes; the kernel allows at most 15",
            de::esc(name),
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not valid interface names".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the kernel refuses the character {c:?} in an interface name"
        ));
    }
    Ok(())
}

/// Only per-namespace keys (`net.`) are accepted, so a lab file can never
/// change a setting of the machine itself; and since `/` in a component
/// stands for `.` in the path (`eth0/10` is `eth0.10`), no component may
/// come out as `.` or `..`. The same rule as `weft_sys::sysctl::validate_key`,
/// here so the file check refuses with the position.
pub fn check_sysctl_key(key: &str) -> Result<(), String> {
    if !key.starts_with("net.") {
        return Err("only `net.` sysctls can be set: they are per network namespace, others would change the whole machine".into());
    }
    for part in key.split('.') {
        if part.is_empty() {
            return Err("a sysctl key cannot have empty components".into());
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-/@:".contains(c))
        {
            return Err(format!(
                "the component `{}` has a character sysctl keys do not use",
                de::esc(part)
            ));
        }
        let mapped = part.replace('/', ".");
        if mapped == "." || mapped == ".." {
            return Err(format!(
                "the component `{part}` would be `{mapped}` in /proc/sys (a `/` there stands for `.`), which leaves the setting's directory"
            ));
        }
    }
    Ok(())
}

/// The first `a.b.c` path and value inside nested tables, for the message
/// about an unquoted dotted key.
fn first_leaf(key: &str, t: &toml::Table) -> (String, String) {
    let mut path = key.to_string();
    let mut t = t;
    loop {
        let Some((k, v)) = t.iter().next() else {
            return (path, "...".into());
        };
        path.push('.');
        path.push_str(k);
        match v {
            toml::Value::Table(inner) => t = inner,
            other => return (path, other.to_string()),
        }
    }
}
