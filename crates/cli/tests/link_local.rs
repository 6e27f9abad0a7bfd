//! IPv6 link-local addresses: the interfaces weft makes in a node without
//! IPv6 get none (`addrgenmode none`, set on each device before it first
//! comes up), so they send no router solicitations, MLD reports or DAD
//! probes onto the bridges; a node with IPv6 keeps the kernel's.

mod common;

use std::time::{Duration, Instant};

use common::Lab;

const LAB: &str = r#"
name = "x"

[nodes.br]
kind = "bridge"
addresses = ["10.66.0.1/24"]

[nodes.h]
count = 2
attach = "br"

[nodes.t]
[nodes.t.interfaces.tap0]
kind = "tap"
addresses = ["10.67.0.1/24"]

[nodes.s]
sysctls = { "net.ipv6.conf.default.hop_limit" = 64 }
[nodes.s.interfaces.eth0]
addresses = ["10.68.0.1/24"]

[nodes.r]
[nodes.r.interfaces.eth0]
addresses = ["10.68.0.2/24"]

[nodes.v6a.interfaces.eth0]
addresses = ["fd00:66::1/64"]
[nodes.v6b.interfaces.eth0]
addresses = ["fd00:66::2/64"]

[[links]]
endpoints = ["s:eth0", "r:eth0"]

[[links]]
endpoints = ["v6a:eth0", "v6b:eth0"]
"#;

/// Every interface but `lo` of the node, with its `ip -d link` details.
fn links(lab: &Lab, node: &str) -> Vec<(String, String)> {
    let out = lab.ip(node, &["-d", "-o", "link", "show"]);
    out.lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?.split('@').next()?.to_string();
            (name != "lo").then(|| (name, l.to_string()))
        })
        .collect()
}

fn assert_quiet(lab: &Lab, node: &str, want: usize) {
    let ls = links(lab, node);
    assert_eq!(ls.len(), want, "interfaces of {node}: {ls:?}");
    for (name, details) in &ls {
        assert!(
            details.contains("addrgenmode none"),
            "{node}:{name} makes link-local addresses: {details}"
        );
    }
    let ll = lab.ip(node, &["-6", "-o", "addr", "show", "scope", "link"]);
    assert!(
        ll.trim().is_empty(),
        "{node} has link-local addresses: {ll}"
    );
}

/// Polls `ip -6 addr` of the node's eth0 for a link-local address: the
/// kernel adds it when the link's carrier comes on.
fn has_link_local(lab: &Lab, node: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ll = lab.ip(
            node,
            &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"],
        );
        if ll.contains("fe80::") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_without_ipv6_get_no_link_local_addresses() {
    let lab = Lab::from_text("ll", LAB);
    lab.up();
    // The bridge and its ports, the hosts' veth ends, a TAP.
    assert_quiet(&lab, "br", 3);
    assert_quiet(&lab, "h1", 1);
    assert_quiet(&lab, "h2", 1);
    assert_quiet(&lab, "t", 1);
    assert_quiet(&lab, "r", 1);
    assert!(lab.ping("h1", "h2", None));
    // A node whose file sets a net.ipv6 sysctl keeps the kernel's
    // behaviour, as does a node with IPv6.
    assert!(has_link_local(&lab, "s"), "{:?}", links(&lab, "s"));
    assert!(has_link_local(&lab, "v6a"), "{:?}", links(&lab, "v6a"));
    assert!(has_link_local(&lab, "v6b"), "{:?}", links(&lab, "v6b"));
    // Devices added to a built lab, in new and existing namespaces.
    lab.rewrite(&LAB.replace("count = 2", "count = 3"));
    lab.up();
    assert_quiet(&lab, "br", 4);
    assert_quiet(&lab, "h3", 1);
    assert!(lab.ping("h3", "h1", None));
}
