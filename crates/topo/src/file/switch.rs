//! Settings of `kind = "switch"` nodes (weft's userspace switch) and of
//! their ports, checked like every other key: with positions, before
//! anything is built.

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Cx, RawIface, RawNode};
use crate::impair::{self, Impairment};
use crate::model::*;

/// `static_macs = [{ mac = "..", port = "..", vlan = N }]` on a switch.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaticMac {
    mac: Spanned<String>,
    port: Spanned<String>,
    vlan: Option<Spanned<u32>>,
}

/// `mirror = { output = "..", ports = [..], ingress = [..], egress = [..], vlans = [..] }`.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    output: Spanned<String>,
    /// Both directions of these ports.
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    ingress: Vec<Spanned<String>>,
    #[serde(default)]
    egress: Vec<Spanned<String>>,
    #[serde(default)]
    vlans: Vec<Spanned<u32>>,
}

pub(super) use crate::impair::RawImpair;

/// `port = { vlan = 10, trunk = [..], native = N, cost = N, priority = N,
/// edge = bool, impair = {..} }` on a node with `attach`: the settings of
/// the port `attach` makes.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttachPort {
    vlan: Option<Spanned<u32>>,
    trunk: Option<Spanned<Vec<u32>>>,
    native: Option<Spanned<u32>>,
    cost: Option<Spanned<u32>>,
    priority: Option<Spanned<u32>>,
    edge: Option<Spanned<bool>>,
    impair: Option<Spanned<RawImpair>>,
}

/// A switch node's keys that need its ports known first.
#[derive(Clone, Debug, Default)]
pub(super) struct RawExtra {
    static_macs: Vec<Spanned<RawStaticMac>>,
    mirror: Option<Spanned<RawMirror>>,
}

/// `stp` is a bool on bridges and also a protocol name on switches; the
/// bridge code keeps seeing a bool.
pub(super) trait StpKey {
    fn as_bool(&self) -> Option<Spanned<bool>>;
}

impl StpKey for Option<Spanned<bool>> {
    fn as_bool(&self) -> Option<Spanned<bool>> {
        self.clone()
    }
}

impl StpKey for Option<Spanned<toml::Value>> {
    fn as_bool(&self) -> Option<Spanned<bool>> {
        self.as_ref()
            .map(|v| Spanned::new(v.span(), matches!(v.get_ref(), toml::Value::Boolean(true))))
    }
}

/// Port settings as written, resolved once every link is known (the edge
/// default depends on what the port is cabled to).
#[derive(Debug, Clone, Default)]
pub(super) struct RawPort {
    mode: Option<SwitchPortMode>,
    cost: Option<u32>,
    priority: Option<u16>,
    edge: Option<bool>,
    impair: Option<(Impairment, std::ops::Range<usize>)>,
}

/// Largest FDB a file may ask for: 100 times the default, far more than
/// a lab needs, small enough that a typo cannot ask for gigabytes.
pub const MAX_FDB_SIZE: u32 = 1_000_000;

impl Cx<'_> {
    pub(super) fn stp_is_bool(&mut self, who: &str, rn: &RawNode) {
        if let Some(v) = &rn.stp {
            if !matches!(v.get_ref(), toml::Value::Boolean(_)) {
                self.err(
                    Some(v.span()),
                    format!("bridge `{who}`: stp is true or false on a kernel bridge"),
                    "write stp = true; \"rstp\", \"stp\" and \"off\" are for kind = \"switch\"",
                );
            }
        }
    }

    /// The switch settings of a node; errors for switch keys elsewhere.
    pub(super) fn switch_node(
        &mut self,
        who: &str,
        kind: NodeKind,
        rn: &RawNode,
    ) -> Option<SwitchOptions> {
        if kind != NodeKind::Switch {
            if let Some(f) = &rn.fdb_size {
                self.err(
                    Some(f.span()),
                    format!("node `{who}`: fdb_size is a setting of kind = \"switch\""),
                    "remove it, or make the node a switch",
                );
            }
            let extra = [
                rn.static_macs.first().map(|m| ("static_macs", m.span())),
                rn.mirror.as_ref().map(|m| ("mirror", m.span())),
            ];
            for (key, span) in extra.into_iter().flatten() {
                self.err(
                    Some(span),
                    format!("node `{who}`: {key} is a setting of kind = \"switch\""),
                    "make the node kind = \"switch\" (a kernel bridge here cannot do it), or remove the key",
                );
            }
            return None;
        }
        self.switch_extra.insert(
            who.to_string(),
            RawExtra {
                static_macs: rn.static_macs.clone(),
                mirror: rn.mirror.clone(),
            },
        );
        if let Some(a) = rn.addresses.first() {
            self.err(
                Some(a.span()),
                format!("switch `{who}`: a switch has no address of its own"),
                "put addresses on the hosts cabled to it",
            );
        }
        if let Some(m) = &rn.mtu {
            self.err(
                Some(m.span()),
                format!("switch `{who}`: mtu is set per link, not on a switch"),
                "write mtu on the [[links]] entries",
            );
        }
        if let Some(a) = &rn.attach {
            self.err(
                Some(a.span()),
                format!("switch `{who}`: a switch cannot be attached"),
                "write a [[links]] entry between the two nodes",
            );
        }
        let stp = match rn.stp.as_ref().map(|v| (v.get_ref(), v.span())) {
            None => SwitchStp::Rstp,
            Some((toml::Value::Boolean(true), _)) => SwitchStp::Rstp,
            Some((toml::Value::Boolean(false), _)) => SwitchStp::Off,
            Some((toml::Value::String(s), span)) => match s.as_str() {
                "rstp" => SwitchStp::Rstp,
                "stp" => SwitchStp::Stp,
                "off" => SwitchStp::Off,
                other => {
                    self.err(
                        Some(span),
                        format!("switch `{who}`: unknown spanning tree protocol `{other}`"),
                        "write stp = \"rstp\" (the default), \"stp\" or \"off\"",
                    );
                    SwitchStp::Rstp
                }
            },
            Some((_, span)) => {
                self.err(
                    Some(span),
                    format!("switch `{who}`: stp is \"rstp\", \"stp\" or \"off\""),
                    "write stp = \"rstp\" (the default), \"stp\" or \"off\"",
                );
                SwitchStp::Rstp
            }
        };
        let on = stp != SwitchStp::Off;
        let fd_min = if on { 4.0 } else { 0.0 };
        let w = super::Timers::Switch(who);
        let opts = SwitchOptions {
            stp,
            priority: rn.priority.as_ref().and_then(|p| {
                let v = *p.get_ref();
                if v > 65535 {
                    self.err(
                        Some(p.span()),
                        format!("switch `{who}`: priority {v} is out of range"),
                        "write a bridge priority from 0 to 61440 in steps of 4096 (lower wins the root election)",
                    );
                    None
                } else if stp == SwitchStp::Rstp && v % 4096 != 0 {
                    self.err(
                        Some(p.span()),
                        format!("switch `{who}`: RSTP bridge priority {v} is not a multiple of 4096"),
                        "write 0, 4096, 8192, ... 61440 (802.1w allows only those)",
                    );
                    None
                } else {
                    Some(v as u16)
                }
            }),
            forward_delay_cs: self.seconds(&w, "forward_delay", &rn.forward_delay, fd_min, 30.0),
            hello_time_cs: self.seconds(&w, "hello_time", &rn.hello_time, 1.0, 10.0),
            max_age_cs: self.seconds(&w, "max_age", &rn.max_age, 6.0, 40.0),
            ageing_time_cs: self.seconds(&w, "ageing_time", &rn.ageing_time, 1.0, 1_000_000.0),
            fdb_size: rn.fdb_size.as_ref().and_then(|f| {
                let v = *f.get_ref();
                if !(1..=MAX_FDB_SIZE).contains(&v) {
                    self.err(
                        Some(f.span()),
                        format!("switch `{who}`: fdb_size {v} is out of range"),
                        format!("write a table size from 1 to {MAX_FDB_SIZE}"),
                    );
                    None
                } else {
                    Some(v)
                }
            }),
            mac: rn.mac.as_ref().and_then(|m| self.mac(who, m)),
            ports: Default::default(),
            static_macs: Vec::new(),
            mirror: None,
        };
        Some(opts)
    }

    /// Port keys of one interface: refused off switches, checked and kept
    /// for [`Cx::switch_ports`] on them.
    pub(super) fn switch_iface_keys(
        &mut self,
        node: &str,
        node_kind: NodeKind,
        key: &Spanned<String>,
        ri: &RawIface,
        kind: &IfaceKind,
    ) {
        let iname = key.get_ref();
        let spans = [
            ri.vlan.as_ref().map(|s| s.span()),
            ri.trunk.as_ref().map(|s| s.span()),
            ri.native.as_ref().map(|s| s.span()),
            ri.edge.as_ref().map(|s| s.span()),
        ];
        if node_kind != NodeKind::Switch {
            if let Some(i) = &ri.impair {
                self.err(
                    Some(i.span()),
                    format!("node `{node}`: `{iname}` is a kernel interface, and this kernel has no netem to impair it"),
                    "write impair on the interface's link instead (weft puts a wire with the impairment in it), or on a switch port",
                );
            }
            if let Some(s) = spans.into_iter().flatten().next() {
                self.err(
                    Some(s),
                    format!("node `{node}`: `{iname}` is not a switch port, and vlan, trunk, native and edge are switch port settings"),
                    "make the node kind = \"switch\" (VLANs are not available on kernel bridges here)",
                );
            }
            return;
        }
        if !matches!(kind, IfaceKind::Veth { .. }) {
            self.err(
                Some(ri.kind.as_ref().map(|k| k.span()).unwrap_or(key.span())),
                format!(
                    "switch `{node}`: `{iname}` is a {}, and a switch's ports are veth ends",
                    kind.name()
                ),
                "leave kind out and cable the interface with a [[links]] entry",
            );
            return;
        }
        let vid = |cx: &mut Self, v: &Spanned<u32>, what: &str| -> Option<u16> {
            let n = *v.get_ref();
            if (1..=4094).contains(&n) {
                Some(n as u16)
            } else {
                cx.err(
                    Some(v.span()),
                    format!("switch `{node}`: port `{iname}`: {what} {n} is not a VLAN id"),
                    "write a VLAN id from 1 to 4094",
                );
                None
            }
        };
        let mut port = RawPort::default();
        match (&ri.vlan, &ri.trunk) {
            (Some(v), Some(_)) => self.err(
                Some(v.span()),
                format!("switch `{node}`: port `{iname}` has both vlan (access) and trunk"),
                "an access port has one untagged VLAN; a trunk carries a list: keep one",
            ),
            (Some(v), None) => {
                port.mode = vid(self, v, "vlan").map(SwitchPortMode::Access);
            }
            (None, Some(t)) => {
                if t.get_ref().is_empty() {
                    self.err(
                        Some(t.span()),
                        format!("switch `{node}`: port `{iname}`: the trunk allows no VLAN"),
                        "list the VLANs it carries, like trunk = [10, 20]",
                    );
                }
                let mut allowed = Vec::new();
                for &n in t.get_ref() {
                    if (1..=4094).contains(&n) {
                        allowed.push(n as u16);
                    } else {
                        self.err(
                            Some(t.span()),
                            format!(
                                "switch `{node}`: port `{iname}`: trunk VLAN {n} is not a VLAN id"
                            ),
                            "write VLAN ids from 1 to 4094",
                        );
                    }
                }
                allowed.sort_unstable();
                allowed.dedup();
                let native = ri.native.as_ref().and_then(|n| vid(self, n, "native VLAN"));
                port.mode = Some(SwitchPortMode::Trunk { allowed, native });
            }
            (None, None) => {}
        }
        if let (Some(n), None) = (&ri.native, &ri.trunk) {
            self.err(
                Some(n.span()),
                format!("switch `{node}`: port `{iname}`: native is a trunk setting"),
                "add trunk = [VLANs], or write vlan = N for an access port",
            );
        }
        if let Some(c) = &ri.cost {
            if !(1..=200_000_000).contains(c.get_ref()) {
                self.err(
                    Some(c.span()),
                    format!(
                        "switch `{node}`: port `{iname}`: cost {} is out of range",
                        c.get_ref()
                    ),
                    "write a path cost from 1 to 200000000",
                );
            }
            port.cost = Some(*c.get_ref());
        }
        if let Some(p) = &ri.priority {
            port.priority = Some(*p.get_ref() as u16);
        }
        port.edge = ri.edge.as_ref().map(|e| *e.get_ref());
        if let Some(raw) = &ri.impair {
            let who = format!("switch `{node}`: port `{iname}`");
            port.impair = self.impairment(&who, raw).map(|i| (i, raw.span()));
        }
        self.switch_ports
            .insert((node.to_string(), iname.clone()), port);
    }

    /// `port = {..}` of an attached host: checked like the same keys on the
    /// switch's (or bridge's) interface, and given to the port `port`. A
    /// group's members share one table: it is checked for the first only.
    pub(super) fn attach_port(
        &mut self,
        bridge: &str,
        on_switch: bool,
        host: &str,
        raw: &Spanned<RawAttachPort>,
        declared: bool,
        port: &mut Interface,
    ) {
        let r = raw.get_ref();
        if declared {
            self.err(
                Some(raw.span()),
                format!("node `{host}`: the port's settings are written twice, here and under [nodes.{bridge}.interfaces.{host}]"),
                "keep one of them",
            );
            return;
        }
        let first = !self.attach_port_seen.contains(&raw.span().start);
        self.attach_port_seen.insert(raw.span().start);
        let key = Spanned::new(raw.span(), host.to_string());
        let ri = RawIface {
            vlan: r.vlan.clone(),
            trunk: r.trunk.clone(),
            native: r.native.clone(),
            cost: r.cost.clone(),
            priority: r.priority.clone(),
            edge: r.edge.clone(),
            impair: r.impair.clone(),
            ..RawIface::default()
        };
        let veth = IfaceKind::Veth {
            peer: Endpoint::new("", ""),
        };
        let errors = self.errors.len();
        if on_switch {
            self.switch_iface_keys(bridge, NodeKind::Switch, &key, &ri, &veth);
        } else {
            // A kernel bridge: its port's cost and priority; the switch
            // keys are refused as on any bridge interface.
            self.switch_iface_keys(bridge, NodeKind::Bridge, &key, &ri, &veth);
            if let Some(c) = &r.cost {
                if !(1..=65535).contains(c.get_ref()) {
                    self.err(
                        Some(c.span()),
                        format!("node `{host}`: port cost {} is out of range", c.get_ref()),
                        "write a cost from 1 to 65535",
                    );
                }
                port.port.cost = Some(*c.get_ref());
            }
            if let Some(p) = &r.priority {
                if *p.get_ref() > 63 {
                    self.err(
                        Some(p.span()),
                        format!(
                            "node `{host}`: port priority {} is out of range",
                            p.get_ref()
                        ),
                        "write a port priority from 0 to 63",
                    );
                }
                port.port.priority = Some(*p.get_ref() as u16);
            }
        }
        if !first {
            // The same table again, for the next member of a group: what
            // it says wrong was said for the first.
            self.errors.truncate(errors);
        }
    }

    /// Every interface of a switch node becomes a port, with its settings
    /// or the defaults: VLAN 1, edge when cabled to a host.
    pub(super) fn switch_ports(&mut self, lab: &mut Lab) {
        let kinds: std::collections::HashMap<String, NodeKind> = lab
            .nodes
            .values()
            .map(|n| (n.name.clone(), n.kind))
            .collect();
        for n in lab.nodes.values_mut() {
            let Some(sw) = n.switch.as_mut() else {
                continue;
            };
            for i in n.interfaces.values() {
                let IfaceKind::Veth { peer } = &i.kind else {
                    continue;
                };
                let raw = self
                    .switch_ports
                    .get(&(n.name.clone(), i.name.clone()))
                    .cloned()
                    .unwrap_or_default();
                let host = kinds.get(&peer.node) == Some(&NodeKind::Host);
                sw.ports.insert(
                    i.name.clone(),
                    SwitchPort {
                        mode: raw.mode.unwrap_or(SwitchPortMode::Access(1)),
                        cost: raw.cost,
                        priority: raw.priority,
                        edge: raw.edge.unwrap_or(host),
                        impair: raw.impair.map(|(i, _)| i),
                    },
                );
            }
        }
        let extra = std::mem::take(&mut self.switch_extra);
        for (name, x) in extra {
            let Some(sw) = lab.nodes.get_mut(&name).and_then(|n| n.switch.as_mut()) else {
                continue;
            };
            self.static_macs(&name, sw, &x.static_macs);
            if let Some(m) = &x.mirror {
                sw.mirror = self.mirror(&name, sw, m);
            }
        }
    }

    /// `impair` on a link: it goes to the link's switch end (the first
    /// one when both ends are switches), both directions by default.
    pub(super) fn link_impair(
        &mut self,
        lab: &Lab,
        a: &Endpoint,
        b: &Endpoint,
        raw: &Spanned<RawImpair>,
    ) {
        let is_switch =
            |e: &Endpoint| lab.nodes.get(&e.node).map(|n| n.kind) == Some(NodeKind::Switch);
        let end = if is_switch(a) {
            a
        } else if is_switch(b) {
            b
        } else {
            // No netem here: a wire in the link impairs it (crate::wire).
            let who = format!("link `{a}` — `{b}`");
            self.kernel_link_impair = self.impairment(&who, raw);
            return;
        };
        let who = format!("link `{a}` — `{b}`");
        let Some(imp) = self.impairment(&who, raw) else {
            return;
        };
        let port = self
            .switch_ports
            .entry((end.node.clone(), end.iface.clone()))
            .or_default();
        if let Some((_, prev)) = &port.impair {
            let prev = self.lines.at(self.source, prev.start);
            self.err(
                Some(raw.span()),
                format!("{who}: the port `{end}` is impaired twice (on the link and on the port)"),
                format!("keep one of them (the other is at {prev})"),
            );
            return;
        }
        port.impair = Some((imp, raw.span()));
    }

    pub(super) fn impairment(&mut self, who: &str, raw: &Spanned<RawImpair>) -> Option<Impairment> {
        impair::from_raw(who, raw, &mut |span, msg| self.err(span, msg, ""))
    }

    fn port_names(sw: &SwitchOptions) -> String {
        sw.ports.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    fn static_macs(&mut self, who: &str, sw: &mut SwitchOptions, raw: &[Spanned<RawStaticMac>]) {
        for e in raw {
            let r = e.get_ref();
            let mac = match r.mac.get_ref().parse::<Mac>() {
                Ok(m) if m.0[0] & 1 == 1 => {
                    self.err(
                        Some(r.mac.span()),
                        format!("switch `{who}`: static MAC {m} is a multicast address"),
                        "a static entry names one station: use a unicast MAC (first byte even), such as 02:...",
                    );
                    continue;
                }
                Ok(m) => m,
                Err(why) => {
                    self.err(Some(r.mac.span()), format!("switch `{who}`: {why}"), "");
                    continue;
                }
            };
            let pname = r.port.get_ref();
            let Some(port) = sw.ports.get(pname) else {
                self.err(
                    Some(r.port.span()),
                    format!("switch `{who}`: static MAC {mac}: there is no port `{pname}`"),
                    format!("name one of the switch's ports: {}", Self::port_names(sw)),
                );
                continue;
            };
            let vlan = match (&r.vlan, &port.mode) {
                (Some(v), mode) => {
                    let n = *v.get_ref();
                    let member = match mode {
                        SwitchPortMode::Access(a) => u32::from(*a) == n,
                        SwitchPortMode::Trunk { allowed, native } => {
                            allowed.iter().any(|a| u32::from(*a) == n)
                                || native.is_some_and(|x| u32::from(x) == n)
                        }
                    };
                    if !member {
                        self.err(
                            Some(v.span()),
                            format!("switch `{who}`: static MAC {mac}: port `{pname}` does not carry VLAN {n}"),
                            "write a VLAN of the port (its access VLAN, or one its trunk allows)",
                        );
                        continue;
                    }
                    n as u16
                }
                (None, SwitchPortMode::Access(a)) => *a,
                (
                    None,
                    SwitchPortMode::Trunk {
                        native: Some(n), ..
                    },
                ) => *n,
                (None, SwitchPortMode::Trunk { native: None, .. }) => {
                    self.err(
                        Some(e.span()),
                        format!("switch `{who}`: static MAC {mac}: port `{pname}` is a trunk without a native VLAN, so the entry needs its VLAN"),
                        "add vlan = N, one of the VLANs the trunk carries",
                    );
                    continue;
                }
            };
            if sw
                .static_macs
                .iter()
                .any(|s| s.mac == mac && s.vlan == vlan)
            {
                self.err(
                    Some(r.mac.span()),
                    format!("switch `{who}`: static MAC {mac} in VLAN {vlan} is listed twice"),
                    "keep one entry per MAC and VLAN",
                );
                continue;
            }
            sw.static_macs.push(StaticMac {
                mac,
                port: pname.clone(),
                vlan,
            });
        }
    }

    fn mirror(
        &mut self,
        who: &str,
        sw: &SwitchOptions,
        raw: &Spanned<RawMirror>,
    ) -> Option<SwitchMirror> {
        let r = raw.get_ref();
        let mut ok = true;
        let out = r.output.get_ref();
        if !sw.ports.contains_key(out) {
            self.err(
                Some(r.output.span()),
                format!("switch `{who}`: mirror output `{out}` is not a port of the switch"),
                format!("name one of its ports: {}", Self::port_names(sw)),
            );
            ok = false;
        }
        let mut m = SwitchMirror {
            output: out.clone(),
            ingress: Vec::new(),
            egress: Vec::new(),
            vlans: Vec::new(),
        };
        for (list, ing, eg) in [
            (&r.ports, true, true),
            (&r.ingress, true, false),
            (&r.egress, false, true),
        ] {
            for p in list {
                let name = p.get_ref();
                if name == out {
                    self.err(
                        Some(p.span()),
                        format!("switch `{who}`: the mirror output `{out}` is also selected"),
                        "the output port only receives the copies: select other ports",
                    );
                    ok = false;
                } else if !sw.ports.contains_key(name) {
                    self.err(
                        Some(p.span()),
                        format!("switch `{who}`: mirror: `{name}` is not a port of the switch"),
                        format!("name one of its ports: {}", Self::port_names(sw)),
                    );
                    ok = false;
                } else {
                    if ing && !m.ingress.contains(name) {
                        m.ingress.push(name.clone());
                    }
                    if eg && !m.egress.contains(name) {
                        m.egress.push(name.clone());
                    }
                }
            }
        }
        for v in &r.vlans {
            let n = *v.get_ref();
            if (1..=4094).contains(&n) {
                m.vlans.push(n as u16);
            } else {
                self.err(
                    Some(v.span()),
                    format!("switch `{who}`: mirror: VLAN {n} is not a VLAN id"),
                    "write VLAN ids from 1 to 4094",
                );
                ok = false;
            }
        }
        if ok && m.ingress.is_empty() && m.egress.is_empty() && m.vlans.is_empty() {
            self.err(
                Some(raw.span()),
                format!("switch `{who}`: the mirror selects nothing, so it would copy nothing"),
                "add ports = [..] (both directions), ingress = [..], egress = [..] or vlans = [..]",
            );
            ok = false;
        }
        m.vlans.sort_unstable();
        m.vlans.dedup();
        ok.then_some(m)
    }
}
