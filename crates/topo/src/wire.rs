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
    for (w, end) in ENDS.iter().zip([a, b]) {
        node.interfaces.insert(
            w.to_string(),
            iface(w, IfaceKind::Veth { peer: end.clone() }),
        );
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
    if let Some(lo) = node.interfaces.get_mut("lo") {
        lo.mtu = None;
    }
    lab.nodes.insert(name.clone(), node);
    name
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
}
