//! `[machines.NAME]`, `machine = "NAME"` on nodes, `kind = "vxlan"` links,
//! and `kind = "tunnel"` links whose ends are on two machines.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{Cx, RawLink, RawNode, Span};
use crate::machines::{auto_vni, vxlan_overhead, Machine};
use crate::model::*;

/// The IANA port of VXLAN.
pub const VXLAN_PORT: u16 = 4789;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMachine {
    underlay: Option<Spanned<String>>,
    underlay_mtu: Option<Spanned<u32>>,
    public_key: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
}

/// What the checks of this file need to remember between passes.
#[derive(Default)]
pub(super) struct MachinesCx {
    /// Where each machine is declared.
    span: HashMap<String, Span>,
    /// VXLAN ends whose VNI is chosen once every explicit one is known:
    /// (both ends, the link's position).
    auto: Vec<([Endpoint; 2], Span)>,
    /// Explicit VNIs and where they are written.
    vnis: HashMap<u32, Span>,
    /// Impaired VXLAN links, which get a wire once their VNIs are known.
    wires: Vec<([Endpoint; 2], crate::impair::Impairment)>,
}

impl Cx<'_> {
    pub(super) fn add_machines(
        &mut self,
        lab: &mut Lab,
        raw: &BTreeMap<Spanned<String>, RawMachine>,
    ) {
        let mut by_addr: HashMap<IpAddr, String> = HashMap::new();
        let mut by_name: HashMap<String, String> = HashMap::new();
        for (key, rm) in raw {
            let name = key.get_ref();
            if let Err(why) = super::check_lab_name(name) {
                self.err(
                    Some(key.span()),
                    format!(
                        "machine name: {}",
                        why.to_string().replace("lab name", "name")
                    ),
                    "",
                );
                continue;
            }
            self.machines.span.insert(name.clone(), key.span());
            let Some(u) = &rm.underlay else {
                self.err(
                    Some(key.span()),
                    format!("machine `{name}` needs `underlay`: its address on the network between the machines"),
                    format!("add underlay = \"192.0.2.1\" under [machines.{name}]"),
                );
                continue;
            };
            let (underlay, underlay_name) = match u.get_ref().parse::<IpAddr>() {
                Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_loopback() => {
                    self.err(
                        Some(u.span()),
                        format!("machine `{name}`: {a} cannot be an underlay address"),
                        "write the machine's own unicast address on the network the machines share",
                    );
                    continue;
                }
                Ok(a) => (a, None),
                Err(_) if is_dns_name(u.get_ref()) => (
                    IpAddr::from([0, 0, 0, 0]),
                    Some(u.get_ref().to_ascii_lowercase()),
                ),
                Err(_) => {
                    self.err(
                        Some(u.span()),
                        format!(
                            "machine `{name}`: underlay `{}` is neither an IP address nor a DNS name",
                            u.get_ref()
                        ),
                        "write a bare address like \"192.0.2.1\", or a name like \"lab-0.lab\" that resolves to one",
                    );
                    continue;
                }
            };
            if let Some(n) = &underlay_name {
                if let Some(other) = by_name.insert(n.clone(), name.clone()) {
                    self.err(
                        Some(u.span()),
                        format!("machines `{other}` and `{name}` have the same underlay name {n}"),
                        "each machine has its own address",
                    );
                }
            } else if let Some(other) = by_addr.insert(underlay, name.clone()) {
                self.err(
                    Some(u.span()),
                    format!(
                        "machines `{other}` and `{name}` have the same underlay address {underlay}"
                    ),
                    "each machine has its own address",
                );
            }
            let min = if underlay.is_ipv6() { 1280 } else { 576 };
            let underlay_mtu = match &rm.underlay_mtu {
                Some(m) if !(min..=65535).contains(m.get_ref()) => {
                    self.err(
                        Some(m.span()),
                        format!(
                            "machine `{name}`: underlay_mtu {} is out of range",
                            m.get_ref()
                        ),
                        format!("write an MTU from {min} to 65535"),
                    );
                    1500
                }
                Some(m) => *m.get_ref(),
                None => 1500,
            };
            let mtu_from_interface = rm.underlay_mtu.is_none();
            if let Some(k) = &rm.public_key {
                if !looks_like_key(k.get_ref()) {
                    self.err(
                        Some(k.span()),
                        format!("machine `{name}`: public_key is not a key"),
                        "paste the line `weft keygen` printed (44 characters of base64)",
                    );
                }
            }
            lab.machines.insert(
                name.clone(),
                Machine {
                    underlay,
                    underlay_name,
                    underlay_mtu,
                    mtu_from_interface,
                    public_key: rm
                        .public_key
                        .as_ref()
                        .map(|k| k.get_ref().trim().to_string()),
                    private_key: rm.private_key.as_ref().map(|k| k.get_ref().clone()),
                },
            );
        }
    }

    /// The machine a node is on: its `machine`, or the only machine.
    pub(super) fn node_machine(
        &mut self,
        lab: &Lab,
        node: &str,
        span: &Span,
        rn: &RawNode,
    ) -> Option<String> {
        let declared = !self.machines.span.is_empty() || !lab.machines.is_empty();
        match &rn.machine {
            Some(m) if lab.machines.contains_key(m.get_ref()) => Some(m.get_ref().clone()),
            Some(m) => {
                // A machine whose own table had an error is known by name.
                if self.machines.span.contains_key(m.get_ref()) {
                    return None;
                }
                let help = if declared {
                    format!(
                        "the machines are {}; or declare [machines.{}] with its underlay address",
                        lab.machines
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        m.get_ref()
                    )
                } else {
                    format!(
                        "declare [machines.{}] with underlay = \"ADDRESS\" at the top level",
                        m.get_ref()
                    )
                };
                self.err(
                    Some(m.span()),
                    format!("node `{node}`: machine `{}` is not declared", m.get_ref()),
                    help,
                );
                None
            }
            None if lab.machines.len() == 1 => lab.machines.keys().next().cloned(),
            // The only machine declared had an error of its own, already
            // reported: its nodes' placement follows from it.
            None if lab.machines.is_empty() && self.machines.span.len() == 1 => None,
            None if declared => {
                self.err(
                    Some(span.clone()),
                    format!(
                        "node `{node}`: the lab spans several machines, and this node names none"
                    ),
                    format!("add machine = \"NAME\" under [nodes.{node}]"),
                );
                None
            }
            None => None,
        }
    }

    pub(super) fn add_vxlan(&mut self, lab: &mut Lab, link: &Spanned<RawLink>) {
        let l = link.get_ref();
        for (key, span) in [
            ("mode", l.mode.as_ref().map(|m| m.span())),
            ("underlay", l.underlay.as_ref().map(|m| m.span())),
            ("transport", l.transport.as_ref().map(|m| m.span())),
            ("cipher", l.cipher.as_ref().map(|m| m.span())),
        ] {
            if span.is_some() {
                self.err(
                    span,
                    format!("`{key}` is not a key of a vxlan link"),
                    "a vxlan link takes endpoints, vni, port and mtu; its underlay is the machines' `underlay`",
                );
            }
        }
        let mut eps = Vec::new();
        for e in &l.endpoints {
            match self.endpoint(lab, e) {
                Some(ep) => eps.push(ep),
                None => return,
            }
        }
        let (a, b) = (eps[0].clone(), eps[1].clone());
        let ma = lab.nodes[&a.node].machine.clone();
        let mb = lab.nodes[&b.node].machine.clone();
        let (ma, mb) = match (ma, mb) {
            _ if lab.machines.is_empty() => {
                self.err(
                    Some(link.span()),
                    "a vxlan link joins nodes on two machines, and this file declares no machines",
                    "declare [machines.a] and [machines.b] with their underlay addresses and put the nodes on them (machine = \"a\"), or use a veth link (the default kind) on one machine",
                );
                return self.vxlan_refused(lab, &a, &b);
            }
            (Some(x), Some(y)) => (x, y),
            // The node's machine was refused already.
            _ => return self.vxlan_refused(lab, &a, &b),
        };
        if ma == mb {
            self.err(
                Some(link.span()),
                format!("vxlan link from `{a}` to `{b}`: both ends are on machine `{ma}`"),
                "a vxlan link joins two machines; on one machine write a veth link (the default kind), which carries the same frames without the underlay",
            );
            return self.vxlan_refused(lab, &a, &b);
        }
        let (ua, ub) = (&lab.machines[&ma], &lab.machines[&mb]);
        let named = ua.underlay_name.is_some() || ub.underlay_name.is_some();
        if !named && ua.underlay.is_ipv6() != ub.underlay.is_ipv6() {
            self.err(
                Some(link.span()),
                format!(
                    "vxlan link: machine `{ma}`'s underlay {} and `{mb}`'s {} are not of one IP version",
                    ua.underlay, ub.underlay
                ),
                "give both machines IPv4 (or both IPv6) underlay addresses",
            );
            return self.vxlan_refused(lab, &a, &b);
        }
        let v6 = ua.underlay.is_ipv6();
        let most = ua.underlay_mtu.min(ub.underlay_mtu) - vxlan_overhead(v6);
        let mtu = match &l.mtu {
            Some(m) if *m.get_ref() > most => {
                self.err(
                    Some(m.span()),
                    format!("vxlan link: MTU {} is more than the underlay carries", m.get_ref()),
                    format!(
                        "at most {most}: the underlay's {} minus {} bytes of VXLAN over IPv{} (or raise underlay_mtu on the machines)",
                        ua.underlay_mtu.min(ub.underlay_mtu),
                        vxlan_overhead(v6),
                        if v6 { 6 } else { 4 }
                    ),
                );
                return self.vxlan_refused(lab, &a, &b);
            }
            Some(m) => {
                self.check_mtu(&a.node, m);
                *m.get_ref()
            }
            None => most,
        };
        let port = match &l.port {
            Some(p) if *p.get_ref() == 0 => {
                self.err(
                    Some(p.span()),
                    "vxlan link: port 0 is not a UDP port",
                    format!("leave it out for {VXLAN_PORT}, VXLAN's port"),
                );
                return self.vxlan_refused(lab, &a, &b);
            }
            Some(p) => *p.get_ref(),
            None => lab.vxlan_port.unwrap_or(VXLAN_PORT),
        };
        let vni = match &l.vni {
            Some(v) if !(1..=0xff_ffff).contains(v.get_ref()) => {
                self.err(
                    Some(v.span()),
                    format!("vxlan link: VNI {} is out of range", v.get_ref()),
                    "write a VNI from 1 to 16777215, or leave it out to have one chosen",
                );
                return self.vxlan_refused(lab, &a, &b);
            }
            Some(v) => {
                if let Some(prev) = self.machines.vnis.get(v.get_ref()) {
                    let other = self.at(prev.start);
                    self.err(
                        Some(v.span()),
                        format!("vxlan link: VNI {} is used twice", v.get_ref()),
                        format!("each vxlan link has its own VNI (the other is at {other})"),
                    );
                    return self.vxlan_refused(lab, &a, &b);
                }
                self.machines.vnis.insert(*v.get_ref(), v.span());
                *v.get_ref()
            }
            None => {
                self.machines
                    .auto
                    .push(([a.clone(), b.clone()], link.span()));
                0
            }
        };
        for (me, peer, m, r) in [(&a, &b, &ma, &mb), (&b, &a, &mb, &ma)] {
            let iface = lab
                .nodes
                .get_mut(&me.node)
                .expect("endpoint resolved")
                .interfaces
                .get_mut(&me.iface)
                .expect("endpoint resolved");
            let auto_mtu = iface.mtu.is_none() && l.mtu.is_none();
            iface.kind = IfaceKind::Vxlan(VxlanOptions {
                vni,
                local: lab.machines[m].underlay,
                remote: lab.machines[r].underlay,
                port,
                peer: peer.clone(),
                auto_mtu,
            });
            if iface.mtu.is_none() {
                iface.mtu = Some(mtu);
            }
        }
        if let Some(raw) = &l.impair {
            if let Some(imp) = self.impairment(&format!("vxlan link `{a}` — `{b}`"), raw) {
                self.machines.wires.push(([a, b], imp));
            }
        }
    }

    /// A refused vxlan link's ends stay vxlan ends (unusable, the file is
    /// refused anyway), so they are not reported again as unlinked veths.
    fn vxlan_refused(&mut self, lab: &mut Lab, a: &Endpoint, b: &Endpoint) {
        for (me, peer) in [(a, b), (b, a)] {
            if let Some(i) = lab
                .nodes
                .get_mut(&me.node)
                .and_then(|n| n.interfaces.get_mut(&me.iface))
            {
                i.kind = IfaceKind::Vxlan(VxlanOptions {
                    vni: 0,
                    local: IpAddr::from([0, 0, 0, 0]),
                    remote: IpAddr::from([0, 0, 0, 0]),
                    port: 0,
                    peer: peer.clone(),
                    auto_mtu: false,
                });
            }
        }
    }

    /// VNIs for the links that name none, once all explicit ones are known.
    pub(super) fn finish_vxlan(&mut self, lab: &mut Lab) {
        let auto = std::mem::take(&mut self.machines.auto);
        for ([a, b], _) in auto {
            let mut vni = auto_vni(&lab.name, &a, &b);
            while self.machines.vnis.contains_key(&vni) {
                vni = vni % 0xff_ffff + 1;
            }
            self.machines.vnis.insert(vni, 0..0);
            for ep in [&a, &b] {
                if let Some(IfaceKind::Vxlan(o)) = lab
                    .nodes
                    .get_mut(&ep.node)
                    .and_then(|n| n.interfaces.get_mut(&ep.iface))
                    .map(|i| &mut i.kind)
                {
                    o.vni = vni;
                }
            }
        }
        // On the first end's machine (crate::wire::insert_vxlan).
        for ([a, b], imp) in std::mem::take(&mut self.machines.wires) {
            crate::wire::insert_vxlan(lab, &a, &b, imp);
        }
    }

    /// A tunnel link whose ends are on two machines: each machine runs its
    /// end in its own namespace, on the machines' underlay addresses and
    /// keys. Returns false when the ends are on one machine (an ordinary
    /// tunnel link).
    pub(super) fn add_tunnel_across(
        &mut self,
        lab: &mut Lab,
        link: &Spanned<RawLink>,
        tap: bool,
        tcp: bool,
    ) -> bool {
        let l = link.get_ref();
        let machine_of = |e: &Spanned<String>| {
            let node = e.get_ref().split_once(':')?.0;
            lab.nodes.get(node)?.machine.clone()
        };
        let (Some(ma), Some(mb)) = (machine_of(&l.endpoints[0]), machine_of(&l.endpoints[1]))
        else {
            return false;
        };
        if ma == mb {
            return false;
        }
        if let Some(u) = &l.underlay {
            self.err(
                Some(u.span()),
                format!("this tunnel link joins machines `{ma}` and `{mb}`, and runs over their underlay addresses"),
                "remove `underlay`: each machine's `underlay` is used",
            );
            return true;
        }
        for m in [&ma, &mb] {
            if lab.machines[m].public_key.is_none() {
                let at = self.machines.span.get(m).cloned();
                self.err(
                    at,
                    format!("machine `{m}` needs public_key: a tunnel link joins it to another machine"),
                    format!("run `weft keygen {m}.key` on machine {m} and write the line it prints as public_key = \"...\" under [machines.{m}] (and private_key = \"{m}.key\")"),
                );
                return true;
            }
        }
        let mut eps = Vec::new();
        for e in &l.endpoints {
            match self.endpoint(lab, e) {
                Some(ep) => eps.push(ep),
                None => return true,
            }
        }
        let (ua, ub) = (&lab.machines[&ma], &lab.machines[&mb]);
        let v6 = ua.underlay.is_ipv6() || ub.underlay.is_ipv6();
        let most = ua.underlay_mtu.min(ub.underlay_mtu) - super::tunnel::tunnel_overhead(v6, tap);
        let mtu = match &l.mtu {
            Some(m) => {
                self.check_mtu(&eps[0].node, m);
                *m.get_ref()
            }
            None => most,
        };
        let ends = [
            TunnelEnd {
                endpoint: eps[0].clone(),
                underlay: ua.underlay,
            },
            TunnelEnd {
                endpoint: eps[1].clone(),
                underlay: ub.underlay,
            },
        ];
        // check_tunnels pairs tunnels with spans; this one is skipped there.
        self.push_tunnel(
            lab,
            l,
            ends,
            tap,
            tcp,
            mtu,
            true,
            [link.span(), link.span()],
        );
        true
    }

    /// Veth pairs (links and `attach`) are cables inside one machine.
    pub(super) fn check_machines(&mut self, lab: &Lab) {
        if lab.machines.is_empty() {
            return;
        }
        for (a, b) in lab.veths() {
            let (ma, mb) = (&lab.nodes[&a.node].machine, &lab.nodes[&b.node].machine);
            if let (Some(x), Some(y)) = (ma, mb) {
                if x != y {
                    let span = self
                        .iface_span
                        .get(&(a.node.clone(), a.iface.clone()))
                        .cloned();
                    self.err(
                        span,
                        format!("`{a}` (machine `{x}`) and `{b}` (machine `{y}`) are cabled by a veth pair, which cannot leave a machine"),
                        "make the link kind = \"vxlan\" (or kind = \"tunnel\"), or put both nodes on one machine",
                    );
                }
            }
        }
    }
}

/// A WireGuard-style key: 32 bytes in base64 (44 characters, one `=`).
fn looks_like_key(s: &str) -> bool {
    let s = s.trim();
    s.len() == 44
        && s.ends_with('=')
        && s[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// A host name as DNS (and a pod's stable name) spells it: dot-separated
/// labels of letters, digits and inner hyphens, at most 253 bytes.
pub(crate) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !s
            .split('.')
            .next_back()
            .unwrap_or("")
            .bytes()
            .all(|b| b.is_ascii_digit())
}
