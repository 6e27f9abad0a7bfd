//! `weft trace` through the real binary: one small lab per outcome.

mod common;

use common::Lab;

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

#[test]
fn experiment_4_reply_returns_over_lo() {
    let lab = Lab::example("tr4", "same-ns.toml");
    lab.up();
    let (ok, out) = trace(&lab, &["host", "192.168.2.1", "-I", "veth0"]);
    assert!(ok, "{out}");
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
    let (ok, out) = trace(&lab, &["ns1", "192.168.2.1"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "ARP who-has 192.168.2.1: seen on ns1:veth0, ns2:veth1; ARP reply: seen on nowhere"
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
    let (ok, out) = trace(&lab, &["ns1", "10.9.9.9"]);
    assert!(!ok, "{out}");
    assert!(out.contains("has no route to 10.9.9.9"), "{out}");
}

#[test]
fn through_a_bridge_and_back() {
    let lab = Lab::example("trbr", "bridge.toml");
    lab.up();
    let (ok, out) = trace(&lab, &["ns1", "ns2"]);
    assert!(ok, "{out}");
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
    let (ok, out) = trace(&lab, &["host", "192.168.2.1", "-I", "veth0"]);
    assert!(!ok, "{out}");
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
    let (ok, out) = trace(&lab, &["host", "192.168.2.1", "-I", "veth0"]);
    assert!(!ok, "{out}");
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
    let (ok, out) = trace(&lab, &["a", "b"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("br0:a is listening")
            || out.contains("br0:a is learning")
            || out.contains("br0:a is disabled"),
        "{out}"
    );
    assert!(out.contains("dropped at the bridge"), "{out}");
}
