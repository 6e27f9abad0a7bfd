//! `weft trace` through the real binary: one small lab per outcome.

mod common;

use common::Lab;

/// `weft trace LAB ARGS`: whether it succeeded, and what it printed
/// (stdout, then stderr).
fn trace(lab: &Lab, args: &[&str]) -> (bool, String) {
    let mut a = vec!["trace", lab.name.as_str()];
    a.extend_from_slice(args);
    let o = lab.run(&a);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    (
        o.status.success(),
        out + &String::from_utf8_lossy(&o.stderr),
    )
}

/// A trace that proves delivery (it exits 0): what it printed.
fn traced(lab: &Lab, args: &[&str]) -> String {
    let (ok, out) = trace(lab, args);
    assert!(ok, "{out}");
    out
}

/// A trace that finds where the probe dies (it exits non-zero): what
/// it printed.
fn refused(lab: &Lab, args: &[&str]) -> String {
    let (ok, out) = trace(lab, args);
    assert!(!ok, "{out}");
    out
}

#[test]
fn experiment_4_reply_returns_over_lo() {
    let lab = Lab::example("tr4", "same-ns.toml");
    lab.up();
    let out = traced(&lab, &["host", "192.168.2.1", "-I", "veth0"]);
    assert!(
        out.contains("out of veth0, source address 192.168.2.11"),
        "{out}"
    );
    assert!(out.contains("comes out of its peer host:veth1"), "{out}");
    assert!(
        out.contains("echo request seen on host:veth0, host:veth1; echo reply seen on host:lo"),
        "{out}"
    );
    assert!(out.contains("it returns over lo (host:lo)"), "{out}");
}

#[test]
fn experiment_5_dies_at_arp() {
    let lab = Lab::example("tr5", "unaddressed.toml");
    lab.up();
    let out = refused(&lab, &["ns1", "192.168.2.1"]);
    assert!(
        out.contains(
            "ARP who-has 192.168.2.1: seen on ns1:veth0, ns2:veth1; ARP reply: seen nowhere"
        ),
        "{out}"
    );
    assert!(out.contains("dropped at ARP"), "{out}");
    assert!(
        out.contains("ns2:veth1, the other end of the cable, has no address at all"),
        "{out}"
    );
}

#[test]
fn no_route() {
    let lab = Lab::example("trnr", "veth.toml");
    lab.up();
    let out = refused(&lab, &["ns1", "10.9.9.9"]);
    assert!(out.contains("has no route to 10.9.9.9"), "{out}");
}

#[test]
fn through_a_bridge_and_back() {
    let lab = Lab::example("trbr", "bridge.toml");
    lab.up();
    let out = traced(&lab, &["ns1", "ns2"]);
    assert!(
        out.contains("br0:br-tap1 is a port of bridge br0 in br0 (STP state forwarding)"),
        "{out}"
    );
    assert!(
        out.contains("echo request seen on ns1:tap1, br0:br-tap1, br0:br-tap2, ns2:tap2"),
        "{out}"
    );
    assert!(
        out.contains(
            "delivered: the reply came back over ns2:tap2, br0:br-tap2, br0:br-tap1, ns1:tap1"
        ),
        "{out}"
    );
}

fn same_ns(sysctls: &str) -> String {
    let text = std::fs::read_to_string(common::root().join("examples/same-ns.toml")).unwrap();
    text.lines()
        .map(|l| {
            if l.starts_with("sysctls") {
                sysctls.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn same_namespace_pair_without_accept_local_is_explained() {
    let lab = Lab::from_text("tral", &same_ns(""));
    lab.up();
    let out = refused(&lab, &["host", "192.168.2.1", "-I", "veth0"]);
    assert!(
        out.contains("is an address of host itself") && out.contains("accept_local"),
        "{out}"
    );
}

#[test]
fn same_namespace_pair_with_rp_filter_on_is_explained() {
    let lab = Lab::from_text(
        "trrp",
        &same_ns("sysctls = { \"net.ipv4.conf.all.rp_filter\" = 1, \"net.ipv4.conf.veth0.accept_local\" = 1, \"net.ipv4.conf.veth1.accept_local\" = 1 }"),
    );
    lab.up();
    let out = refused(&lab, &["host", "192.168.2.1", "-I", "veth0"]);
    assert!(
        out.contains("rp_filter is on") && out.contains("set rp_filter = 0"),
        "{out}"
    );
}

#[test]
fn a_bridge_port_that_does_not_forward_is_named() {
    // STP on, forward_delay 2 s. Bouncing a's link puts its bridge port back
    // through listening and learning: traced at once, the probe dies there.
    let lab = Lab::example("trstp", "stp.toml");
    lab.up();
    for state in ["down", "up"] {
        let ok = std::process::Command::new("ip")
            .args(["-n", &lab.netns("a"), "link", "set", "dev", "eth0", state])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let out = refused(&lab, &["a", "b"]);
    assert!(
        out.contains("br0:a is listening")
            || out.contains("br0:a is learning")
            || out.contains("br0:a is disabled"),
        "{out}"
    );
    assert!(out.contains("dropped at the bridge"), "{out}");
}

#[test]
fn udp_and_tcp_probes_prove_delivery_by_their_answers() {
    let lab = Lab::example("trport", "bridge.toml");
    lab.up();
    // UDP to a closed port: ICMP port unreachable comes back.
    let out = traced(&lab, &["ns1", "ns2", "--udp", "5353"]);
    assert!(
        out.contains(
            "UDP datagram to port 5353 seen on ns1:tap1, br0:br-tap1, br0:br-tap2, ns2:tap2"
        ),
        "{out}"
    );
    // TCP to a listening port (the test listens inside ns2).
    let listener = weft_sys::netns::run_in_named(&lab.netns("ns2"), || {
        std::net::TcpListener::bind("0.0.0.0:8080")
    })
    .unwrap()
    .unwrap();
    let out = traced(&lab, &["ns1", "192.168.50.2", "--tcp", "8080"]);
    assert!(out.contains("TCP SYN to port 8080 seen on"), "{out}");
    assert!(
        out.contains("SYN-ACK: open, RST: closed) seen on ns2:tap2"),
        "{out}"
    );
    drop(listener);
    // TCP to a closed port: refused, but delivered.
    traced(&lab, &["ns1", "192.168.50.2", "--tcp", "8081"]);
}

#[test]
fn a_vlan_mismatch_on_the_userspace_switch_is_named() {
    let lab = Lab::example("trvlan", "switch-vlan.toml");
    lab.up();
    let out = refused(&lab, &["a1", "b1"]);
    assert!(
        out.contains("dropped at the switch: sw1:a1 is an access port of VLAN 10 and sw1:b1"),
        "{out}"
    );
    assert!(
        out.contains("is an access port of VLAN 20: they share no VLAN"),
        "{out}"
    );
    // The capture proves it: the ARP request never reaches b1's port.
    assert!(
        out.contains("ARP who-has 10.13.0.11: seen on a1:eth0, sw1:a1; ARP reply: seen nowhere"),
        "{out}"
    );
    // Same VLAN across the trunk: delivered.
    traced(&lab, &["a1", "a2"]);
}

/// A router on the way without a route to the target: the request dies
/// there, and the verdict says so rather than blaming the target's
/// rp_filter (which it read for the router's interface name).
#[test]
fn a_router_without_a_route_is_where_the_request_dies() {
    let lab = Lab::from_text(
        "trrt",
        r#"name = "x"
[nodes.h1]
routes = ["default via 10.1.0.1"]
[nodes.h1.interfaces.eth0]
addresses = ["10.1.0.2/24"]
[nodes.r1]
sysctls = { "net.ipv4.ip_forward" = "1" }
[nodes.r1.interfaces.eth-h1]
addresses = ["10.1.0.1/24"]
[nodes.r1.interfaces.eth-h2]
addresses = ["10.2.0.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.3.0.10/24"]
[[links]]
endpoints = ["h1:eth0", "r1:eth-h1"]
[[links]]
endpoints = ["h2:eth0", "r1:eth-h2"]
"#,
    );
    lab.up();
    let out = refused(&lab, &["h1", "h2"]);
    assert!(
        out.contains("3. router: r1 forwards, but has no route to 10.3.0.10"),
        "{out}"
    );
    assert!(
        out.contains("6. dropped at a router: the request got as far as r1:eth-h1"),
        "{out}"
    );
    assert!(!out.contains("rp_filter"), "{out}");
}
