//! Impairment on a link between two kernel ends (host to host, host to
//! kernel bridge), where this kernel has no netem: the link becomes two
//! veth pairs meeting in a hidden namespace, the *wire*, whose two ends
//! the lab's datapath joins through the impairment core, frame for frame
//! and unchanged (same MACs, tags, BPDUs). The nodes keep their interfaces,
//! names, MACs and addresses; only the interface's peer changes.
//!
//! ```text
//! file:   h1:eth0 ────────────────────────────── h2:eth0   impair = {...}
//! built:  h1:eth0 ── w0 [ns ~h1.eth0: datapath] w1 ── h2:eth0
//! ```
//!
//! A `kind = "vxlan"` link's wire goes on its first end's machine, with
//! that end's VXLAN device as `w1` (`insert_vxlan`); `weft impair` on a
//! kernel link without one puts it in at run time
//! ([`insert_at_run_time`]).

use serde::{Deserialize, Serialize};

use crate::impair::Impairment;
use crate::model::*;

/// Names of the wire's two interfaces: towards the link's first and second
/// end (canonical order).
pub const ENDS: [&str; 2] = ["w0", "w1"];

/// A wire node's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wire {
    /// The link it sits in, as the file wrote it (canonical order): `w0`
    /// is cabled to the first, `w1` to the second.
    pub link: [Endpoint; 2],
    /// `out` is from the first end to the second (w0 in, w1 out); `in`
    /// the other way. `direction = "out"` impairs only the first way.
    pub impair: Impairment,
}

/// The wire node's name for a link: `~NODE.IFACE` of its first end. `~`
/// cannot start a node name in the file, so it never meets one.
pub fn node_name(a: &Endpoint) -> String {
    format!("~{}.{}", a.node, a.iface)
}

/// Puts a wire into the veth link `a` — `b` (already expanded as one veth
/// pair); returns the wire node's name.
pub(crate) fn insert(lab: &mut Lab, a: &Endpoint, b: &Endpoint, impair: Impairment) -> String {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let name = node_name(a);
    let kinds = [
        IfaceKind::Veth { peer: a.clone() },
        IfaceKind::Veth { peer: b.clone() },
    ];
    for (w, end) in ENDS.iter().zip([a, b]) {
        if let Some(i) = lab
            .nodes
            .get_mut(&end.node)
            .and_then(|n| n.interfaces.get_mut(&end.iface))
        {
            i.kind = IfaceKind::Veth {
                peer: Endpoint::new(&name, w),
            };
        }
    }
    add_node(lab, &name, a, b, kinds, impair);
    name
}

/// Puts a wire into a built lab's veth link `a` — `b` between two kernel
/// ends (`weft impair` on a link that has none); returns the wire node's
/// name, or `None` when `a` — `b` is not such a link (a switch end, a
/// wire already there, another kind).
pub fn insert_at_run_time(
    lab: &mut Lab,
    a: &Endpoint,
    b: &Endpoint,
    impair: Impairment,
) -> Option<String> {
    let kernel = |e: &Endpoint| {
        lab.nodes
            .get(&e.node)
            .is_some_and(|n| n.kind != NodeKind::Switch && n.wire.is_none())
    };
    let paired = matches!(&lab.iface(a)?.kind, IfaceKind::Veth { peer } if peer == b);
    if !(paired && kernel(a) && kernel(b)) || lab.nodes.contains_key(&node_name(a.min(b))) {
        return None;
    }
    Some(insert(lab, a, b, impair))
}

/// Puts a wire into the `kind = "vxlan"` link `a` — `b` (both ends already
/// VXLAN devices), on the machine of the first end (canonical order):
/// that end becomes a veth to the wire's `w0`, and its VXLAN device, with
/// the same VNI, addresses and port, is the wire's `w1`. The far machine
/// is not changed. Returns the wire node's name, or `None` when the end
/// is not a VXLAN device (the link was refused).
///
/// ```text
/// file:   h1:vx0 ═══════════ vxlan ═══════════ h2:vx0      (machine b)
/// built:  h1:vx0 ── w0 [~h1.vx0] w1 (vxlan) ═══ h2:vx0
/// ```
pub(crate) fn insert_vxlan(
    lab: &mut Lab,
    a: &Endpoint,
    b: &Endpoint,
    impair: Impairment,
) -> Option<String> {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let IfaceKind::Vxlan(mut o) = lab.iface(a)?.kind.clone() else {
        return None;
    };
    // The MTU is the one the file's machines give now: the wire's veths
    // must match the device, which a later adjustment would not follow.
    o.auto_mtu = false;
    let name = node_name(a);
    let kinds = [IfaceKind::Veth { peer: a.clone() }, IfaceKind::Vxlan(o)];
    if let Some(i) = lab
        .nodes
        .get_mut(&a.node)
        .and_then(|n| n.interfaces.get_mut(&a.iface))
    {
        i.kind = IfaceKind::Veth {
            peer: Endpoint::new(&name, ENDS[0]),
        };
    }
    add_node(lab, &name, a, b, kinds, impair);
    Some(name)
}

/// The wire node `name` between `a` and `b`, its interfaces of `kinds`.
fn add_node(
    lab: &mut Lab,
    name: &str,
    a: &Endpoint,
    b: &Endpoint,
    kinds: [IfaceKind; 2],
    impair: Impairment,
) {
    let name = name.to_string();
    let mtu = lab.iface(a).and_then(|i| i.mtu);
    let machine = lab.nodes.get(&a.node).and_then(|n| n.machine.clone());
    let mut node = Node {
        netns: netns_name(&lab.name, &name),
        name: name.clone(),
        kind: NodeKind::Host,
        interfaces: Default::default(),
        routes: Vec::new(),
        // The wire's own stack must stay silent on the link: no router
        // solicitations, DAD or MLD from its interfaces.
        sysctls: [
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        switch: None,
        wire: Some(Wire {
            link: [a.clone(), b.clone()],
            impair,
        }),
        machine,
        services: Default::default(),
        binds: Default::default(),
        container: None,
    };
    let iface = |n: &str, kind| Interface {
        name: n.to_string(),
        kind,
        addresses: vec![],
        mtu,
        mac: None,
        up: true,
        master: None,
        port: PortOptions::default(),
    };
    node.interfaces
        .insert("lo".into(), iface("lo", IfaceKind::Loopback));
    for (w, kind) in ENDS.iter().zip(kinds) {
        node.interfaces.insert(w.to_string(), iface(w, kind));
    }
    if let Some(lo) = node.interfaces.get_mut("lo") {
        lo.mtu = None;
    }
    lab.nodes.insert(name, node);
}

impl Lab {
    /// The wire in the link of `ep`, if its link has one.
    pub fn wire_of(&self, ep: &Endpoint) -> Option<&Node> {
        match &self.iface(ep)?.kind {
            IfaceKind::Veth { peer } => self.nodes.get(&peer.node).filter(|n| n.wire.is_some()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse;

    #[test]
    fn an_impaired_kernel_link_gets_a_wire_between_its_ends() {
        let lab = parse(
            r#"name = "w"
[nodes.h1.interfaces.eth0]
addresses = ["10.0.0.1/24"]
mac = "02:00:00:00:00:01"
[nodes.h2.interfaces.eth0]
addresses = ["10.0.0.2/24"]
[[links]]
endpoints = ["h2:eth0", "h1:eth0"]
mtu = 9000
impair = { delay = "10ms", loss = "1%", seed = 3 }
"#,
        )
        .unwrap()
        .lab;
        let w = &lab.nodes["~h1.eth0"];
        assert_eq!(w.netns, "weft-w.~h1.eth0");
        let wire = w.wire.as_ref().unwrap();
        assert_eq!(wire.link[0].to_string(), "h1:eth0");
        assert_eq!(wire.impair.delay_us, 10_000);
        assert_eq!(w.interfaces["w0"].mtu, Some(9000));
        let peer = |n: &str, i: &str| match &lab.nodes[n].interfaces[i].kind {
            crate::IfaceKind::Veth { peer } => peer.to_string(),
            k => panic!("{k:?}"),
        };
        assert_eq!(peer("h1", "eth0"), "~h1.eth0:w0");
        assert_eq!(peer("h2", "eth0"), "~h1.eth0:w1");
        assert_eq!(peer("~h1.eth0", "w1"), "h2:eth0");
        // The node keeps its own interface as written.
        let h1 = &lab.nodes["h1"].interfaces["eth0"];
        assert_eq!(h1.mac.unwrap().to_string(), "02:00:00:00:00:01");
        assert_eq!(h1.addresses[0].to_string(), "10.0.0.1/24");
        assert_eq!(
            lab.wire_of(&crate::Endpoint::new("h2", "eth0"))
                .unwrap()
                .name,
            "~h1.eth0"
        );
    }

    #[test]
    fn an_impaired_vxlan_link_gets_a_wire_on_its_first_ends_machine() {
        let lab = parse(
            r#"name = "v"
[machines.a]
underlay = "192.0.2.1"
[machines.b]
underlay = "192.0.2.2"
[nodes.h2]
machine = "b"
[nodes.h1]
machine = "a"
[nodes.h1.interfaces.vx0]
addresses = ["10.61.0.1/24"]
mac = "02:00:00:00:61:01"
[[links]]
kind = "vxlan"
endpoints = ["h2:vx0", "h1:vx0"]
impair = { delay = "10ms", loss = "20%", seed = 3 }
"#,
        )
        .unwrap()
        .lab;
        let w = &lab.nodes["~h1.vx0"];
        assert_eq!(w.machine.as_deref(), Some("a"), "on h1's machine");
        let wire = w.wire.as_ref().unwrap();
        assert_eq!(wire.link[0].to_string(), "h1:vx0");
        assert_eq!(wire.link[1].to_string(), "h2:vx0");
        assert_eq!(wire.impair.loss_ppm, 200_000);
        // h1's end is a veth to the wire; the VXLAN device, with the VNI
        // chosen for the link, is the wire's w1.
        let h1 = &lab.nodes["h1"].interfaces["vx0"];
        assert!(
            matches!(&h1.kind, crate::IfaceKind::Veth { peer } if peer.to_string() == "~h1.vx0:w0"),
            "{:?}",
            h1.kind
        );
        assert_eq!(h1.mac.unwrap().to_string(), "02:00:00:00:61:01");
        let (crate::IfaceKind::Vxlan(mine), crate::IfaceKind::Vxlan(theirs)) = (
            &w.interfaces["w1"].kind,
            &lab.nodes["h2"].interfaces["vx0"].kind,
        ) else {
            panic!("{:?}", w.interfaces["w1"].kind);
        };
        assert_eq!(mine.vni, theirs.vni);
        assert_ne!(mine.vni, 0);
        assert_eq!(mine.local.to_string(), "192.0.2.1");
        assert_eq!(mine.remote.to_string(), "192.0.2.2");
        assert!(!mine.auto_mtu);
        // 1500 minus 50 bytes of VXLAN over IPv4, on every piece.
        for i in [h1, &w.interfaces["w0"], &w.interfaces["w1"]] {
            assert_eq!(i.mtu, Some(1450), "{}", i.name);
        }
        assert_eq!(
            lab.wire_of(&crate::Endpoint::new("h1", "vx0"))
                .unwrap()
                .name,
            "~h1.vx0"
        );
    }
}
