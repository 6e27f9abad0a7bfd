//! Expansion: nodes (with `count` groups), interfaces and links of the
//! file turned into the [`Lab`] model, each key checked with its position.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use toml::Spanned;

use super::raw::{RawBridge, RawIface, RawLink, RawNode, Timers};
use super::switch::StpKey;
use super::validate::{check_iface_name, check_node_name, check_sysctl_key};
use super::{de, Cx, MAX_COUNT};
use crate::model::*;
use crate::route::parse_route;

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

impl Cx<'_> {
    pub(super) fn add_node(&mut self, lab: &mut Lab, key: &Spanned<String>, rn: &RawNode) {
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
    pub(super) fn segment_keys(&mut self, node: &str, kind: NodeKind, rn: &RawNode) {
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

    pub(super) fn iface(
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

    pub(super) fn bridge_options(&mut self, who: &str, rb: &RawBridge) -> BridgeOptions {
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

    pub(super) fn seconds(
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

    pub(super) fn no_bridge_keys(&mut self, who: &str, rb: &RawBridge, why: &str) {
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

    pub(super) fn check_mtu(&mut self, who: &str, m: &Spanned<u32>) {
        if !(68..=65535).contains(m.get_ref()) {
            self.err(
                Some(m.span()),
                format!("node `{who}`: MTU {} is out of range", m.get_ref()),
                "write an MTU from 68 to 65535",
            );
        }
    }

    pub(super) fn mac(&mut self, who: &str, m: &Spanned<String>) -> Option<Mac> {
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

    pub(super) fn addresses(
        &mut self,
        node: &str,
        iface: &str,
        raw: &[Spanned<String>],
    ) -> Vec<IpNet> {
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

    pub(super) fn add_link(&mut self, lab: &mut Lab, link: &Spanned<RawLink>) {
        match link
            .get_ref()
            .kind
            .as_ref()
            .map(|k| (k.get_ref().as_str(), k.span()))
        {
            None | Some(("veth", _)) => {}
            Some(("tunnel", _)) => {
                let before = lab.tunnels.len();
                self.add_tunnel(lab, link);
                // The tunnel processes impair the inner packets.
                if let (Some(raw), true) = (&link.get_ref().impair, lab.tunnels.len() > before) {
                    let [a, b] = &lab.tunnels[before].ends;
                    let who = format!("tunnel link `{}` — `{}`", a.endpoint, b.endpoint);
                    let imp = self.impairment(&who, raw);
                    lab.tunnels[before].impair = imp;
                }
                return;
            }
            Some(("vxlan", _)) => {
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
            ("cipher", l.cipher.as_ref().map(|m| m.span())),
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
    pub(super) fn endpoint(&mut self, lab: &mut Lab, e: &Spanned<String>) -> Option<Endpoint> {
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
}

pub(super) fn new_veth(name: &str) -> Interface {
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
