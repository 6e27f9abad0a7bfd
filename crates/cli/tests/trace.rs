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
