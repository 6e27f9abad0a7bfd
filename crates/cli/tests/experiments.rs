//! The seeds' experiments (shared/seeds/README.md), each built from its
//! example file and checked for the outcome the article reports.

mod common;
use common::Lab;

#[test]
fn exp1_veth_pair_pings_both_ways() {
    let lab = Lab::example("veth", "veth.toml");
    lab.up();
    assert!(lab.ping("ns1", "10.1.1.3", None));
    assert!(lab.ping("ns2", "10.1.1.2", None));
    // A node name as target resolves to its addresses.
    assert!(lab.ping("ns1", "ns2", None));
    assert_eq!(lab.namespaces().len(), 2);
}

#[test]
fn exp2_bridge_joins_hosts_and_is_their_gateway() {
    let lab = Lab::example("br", "bridge.toml");
    lab.up();
    assert!(lab.ping("ns1", "192.168.50.2", None));
    assert!(lab.ping("ns2", "192.168.50.1", None));
    assert!(lab.ping("ns1", "192.168.50.254", None));
    let port = lab.iface("br0", "br-tap1");
    assert_eq!(port["master"], "br0");
    assert_eq!(port["port_state"], "forwarding");
    assert_eq!(lab.iface("br0", "br0")["stp"], false);
    assert!(lab
        .ip("ns2", &["route"])
        .contains("default via 192.168.50.254 dev tap2"));
}

#[test]
fn exp2_the_articles_route_via_another_nodes_interface_is_refused() {
    let lab = Lab::from_text(
        "mistake",
        &std::fs::read_to_string(common::root().join("tests/bad/route-foreign-dev.toml")).unwrap(),
    );
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("node `ns2` has no interface `tap1`"), "{err}");
    assert!(err.contains("`tap1` is an interface of ns1"), "{err}");
    assert!(err.contains("lab.toml:16:"), "{err}");
    assert!(
        lab.namespaces().is_empty(),
        "nothing may be built from a bad file"
    );
}

#[test]
fn exp3_tun_has_no_mac_tap_has_one_and_both_can_be_deleted() {
    let lab = Lab::example("tuntap", "tuntap.toml");
    lab.up();
    let tun = lab.iface("vm", "tun0");
    let tap = lab.iface("vm", "tap0");
    assert!(tun["mac"].is_null(), "{tun}");
    assert!(tap["mac"].as_str().is_some_and(|m| m.len() == 17), "{tap}");
    assert_eq!(tun["tun"]["tap"], false);
    assert_eq!(tap["tun"]["tap"], true);
    assert_eq!(tap["tun"]["vnet_hdr"], true);
    assert_eq!(tap["tun"]["multi_queue"], true);
    assert_eq!(tap["tun"]["persist"], true);
    assert_eq!(tap["tun"]["owner"], 1000);
    assert_eq!(tap["addresses"][0], "192.168.4.11/24");
    let link = lab.ip("vm", &["link", "show", "dev", "tun0"]);
    assert!(
        link.contains("POINTOPOINT") && link.contains("NOARP") && link.contains("link/none"),
        "{link}"
    );
    assert!(lab
        .ip("vm", &["link", "show", "dev", "tap0"])
        .contains("link/ether"));
    // Up, but no program holds them: no carrier, which `weft status`
    // says rather than "down" (read as `up = false`).
    assert_eq!(tun["admin_up"], true, "{tun}");
    let status = lab.ok(&["status", &lab.name]);
    let line = status.lines().find(|l| l.contains("tun0")).unwrap();
    assert!(line.contains(" no carrier "), "{status}");
    // Deleting: drop tap0 from the file.
    let text = std::fs::read_to_string(&lab.file).unwrap();
    let cut = text.find("[nodes.vm.interfaces.tap0]").unwrap();
    lab.rewrite(&text[..cut]);
    let out = lab.up();
    assert!(out.contains("- tap vm:tap0"), "{out}");
    assert!(lab.ip("vm", &["link", "show"]).contains("tun0"));
    assert!(!lab.ip("vm", &["link", "show"]).contains("tap0"));
}

#[test]
fn exp4_same_namespace_pair_works_with_the_sysctls_and_replies_over_lo() {
    let lab = Lab::example("samens", "same-ns.toml");
    lab.up();
    // The first ping also resolves ARP (veth1 answers it); measure the
    // second, which is the pure echo.
    assert!(lab.ping("host", "192.168.2.1", Some("veth0")));
    let (lo_rx, _) = lab.counters("host", "lo");
    let (v1_rx, v1_tx) = lab.counters("host", "veth1");
    assert!(lab.ping("host", "192.168.2.1", Some("veth0")));
    let (lo_rx2, _) = lab.counters("host", "lo");
    let (v1_rx2, v1_tx2) = lab.counters("host", "veth1");
    assert_eq!(v1_rx2 - v1_rx, 1, "the echo request crossed the pair");
    assert_eq!(
        v1_tx2 - v1_tx,
        0,
        "the echo reply did not go back over the pair"
    );
    assert_eq!(lo_rx2 - lo_rx, 1, "the echo reply came back over lo");
}

#[test]
fn exp4_same_namespace_pair_fails_without_the_sysctls() {
    let text = std::fs::read_to_string(common::root().join("examples/same-ns.toml")).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("sysctls"))
        .collect::<Vec<_>>()
        .join("\n");
    let lab = Lab::from_text("samens0", &text);
    lab.up();
    assert!(!lab.ping("host", "192.168.2.1", Some("veth0")));
}

#[test]
fn exp5_unaddressed_peer_answers_no_arp() {
    let lab = Lab::example("unaddr", "unaddressed.toml");
    lab.up();
    let o = lab.run(&[
        "ping",
        &lab.name,
        "ns1",
        "192.168.2.1",
        "-c",
        "2",
        "-W",
        "1",
    ]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains("Destination Host Unreachable") || out.contains("no ARP reply"),
        "{out}"
    );
    let neigh = lab.ip("ns1", &["neigh", "show", "192.168.2.1"]);
    assert!(
        neigh.contains("FAILED") || neigh.contains("INCOMPLETE"),
        "neighbour entry: {neigh:?}"
    );
    let (rx, tx) = lab.counters("ns2", "veth1");
    assert!(rx >= 1, "the ARP requests reach veth1");
    assert_eq!(tx, 0, "and nobody answers them");
}

#[test]
fn exp7_address_on_a_bridge_port_is_useless_until_moved_to_the_bridge() {
    let lab = Lab::example("brport", "bridge-port-address.toml");
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("useless"),
        "a warning says so"
    );
    assert!(!lab.ping("ns1", "192.168.3.101", None));
    lab.rewrite(
        &std::fs::read_to_string(common::root().join("examples/bridge-port-address-fixed.toml"))
            .unwrap(),
    );
    let out = lab.up();
    let plan: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(['+', '-', '~']))
        .collect();
    assert_eq!(
        plan,
        [
            "- address 192.168.3.101/24 on host:veth0",
            "+ address 192.168.3.101/24 on host:br0"
        ]
    );
    assert!(lab.ping("ns1", "192.168.3.101", None));
}

#[test]
fn exp10_vm_taps_are_ports_of_the_host_bridge() {
    let lab = Lab::example("vm", "vm.toml");
    lab.up();
    for t in ["vm1-tap", "vm2-tap"] {
        let s = lab.iface("host", t);
        assert_eq!(s["master"], "br0");
        assert_eq!(s["tun"]["tap"], true);
        assert_eq!(s["tun"]["vnet_hdr"], true);
    }
    assert!(lab.ping("ns1", "192.168.60.1", None));
}

#[test]
fn stp_bridge_is_forwarding_when_up_returns() {
    let lab = Lab::example("stp", "stp.toml");
    let t0 = std::time::Instant::now();
    lab.up();
    // forward_delay = 2: listening 2 s, learning 2 s, then forwarding.
    assert!(
        t0.elapsed() >= std::time::Duration::from_secs(3),
        "up returned before STP could have passed learning"
    );
    for p in ["a", "b"] {
        assert_eq!(lab.iface("br0", p)["port_state"], "forwarding");
    }
    assert_eq!(lab.iface("br0", "br0")["stp"], true);
    assert!(lab.ping("a", "b", None), "first ping after up succeeds");
}
