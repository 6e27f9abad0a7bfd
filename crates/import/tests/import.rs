//! weft import on the seed articles' own scripts and on containerlab-style
//! files (tests/import/): what is written, and what is refused, where.

use std::path::{Path, PathBuf};

use weft_import::{clab, script, Imported};
use weft_topo::{IfaceKind, NodeKind};

fn fixture(name: &str) -> (PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/import")
        .join(name);
    let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, t)
}

fn none(_: &str) -> Option<String> {
    None
}

fn import(name: &str) -> Imported {
    let (_, t) = fixture(name);
    script(&t, "t", &none).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn lab(i: &Imported) -> weft_topo::Lab {
    weft_topo::parse(&i.toml).unwrap().lab
}

fn err_of(src: &str) -> weft_import::ImportError {
    script(src, "t", &none)
        .expect_err("must be refused")
        .0
        .remove(0)
}

#[test]
fn seed_bridge_route_via_a_foreign_device_is_refused_at_its_line() {
    let (_, t) = fixture("seed000-bridge.sh");
    let e = script(&t, "t", &none).unwrap_err().0.remove(0);
    assert_eq!(e.origin.as_ref().unwrap().line, 51, "{e}");
    assert!(
        e.message.contains("no device `tap1` in namespace `ns2`"),
        "{e}"
    );
    assert!(e.help.unwrap().contains("`tap1` is in namespace `ns1`"));
}

#[test]
fn seed_bridge_fixed_gives_a_host_bridge_and_drops_the_refused_subnet_routes() {
    let i = import("seed000-bridge-fixed.sh");
    let l = lab(&i);
    let host = &l.nodes["host"];
    assert!(matches!(
        host.interfaces["br-test"].kind,
        IfaceKind::Bridge(_)
    ));
    assert_eq!(
        host.interfaces["br-test"].addresses[0].to_string(),
        "192.168.50.254/24"
    );
    assert_eq!(
        host.interfaces["br-tap1"].master.as_deref(),
        Some("br-test")
    );
    assert_eq!(
        l.nodes["ns1"].routes.len(),
        1,
        "only the default route: the kernel refuses the subnet route"
    );
    // The refused routes are kept as comments, with a warning at their line.
    assert!(i
        .toml
        .contains("# line 33: ip netns exec ns1 ip route add 192.168.50.0/24"));
    assert!(i
        .warnings
        .iter()
        .any(|w| w.origin.as_ref().is_some_and(|o| o.line == 50)
            && w.message.contains("File exists")));
}

#[test]
fn seed_veth_gives_two_nodes_and_a_link() {
    let i = import("seed000-veth.sh");
    let l = lab(&i);
    assert_eq!(l.nodes.keys().collect::<Vec<_>>(), ["ns1", "ns2"]);
    match &l.nodes["ns1"].interfaces["tap1"].kind {
        IfaceKind::Veth { peer } => assert_eq!(peer.to_string(), "ns2:tap2"),
        k => panic!("{k:?}"),
    }
    assert!(l.nodes["ns2"].interfaces["tap2"].up);
    // ip show and ping lines are comments without warnings.
    assert!(i.warnings.is_empty(), "{:?}", i.warnings);
    assert!(i.toml.contains("# line 31: ip netns exec ns1 ping"));
}

#[test]
fn seed_tuntap_keeps_the_tun_and_the_second_tap() {
    let l = lab(&import("seed001-tuntap.sh"));
    let host = &l.nodes["host"];
    assert!(matches!(host.interfaces["tun0"].kind, IfaceKind::Tun(_)));
    assert_eq!(
        host.interfaces["tun0"].addresses[0].to_string(),
        "10.1.0.1/32"
    );
    assert!(host.interfaces["tun0"].up, "ifconfig tun0 up");
    assert!(
        !host.interfaces.contains_key("tap0"),
        "deleted by the script"
    );
    match &host.interfaces["tap1"].kind {
        IfaceKind::Tap(o) => assert!(o.vnet_hdr && o.multi_queue),
        k => panic!("{k:?}"),
    }
}

#[test]
fn seed_same_namespace_pair_carries_the_proc_sys_writes() {
    let l = lab(&import("seed002-same-ns.sh"));
    let host = &l.nodes["host"];
    assert_eq!(host.sysctls["net.ipv4.conf.veth0.accept_local"], "1");
    assert_eq!(host.sysctls["net.ipv4.conf.all.rp_filter"], "0");
    assert_eq!(host.sysctls.len(), 5);
}

#[test]
fn seed_ovs_typo_is_refused_and_the_fixed_script_gives_a_switch() {
    let (_, t) = fixture("seed002-ovs.sh");
    let e = script(&t, "t", &none).unwrap_err().0.remove(0);
    assert_eq!(e.origin.unwrap().line, 8);
    assert!(
        e.message.contains("Object \"1\" is unknown"),
        "{}",
        e.message
    );
    let i = import("seed002-ovs-fixed.sh");
    let l = lab(&i);
    assert_eq!(l.nodes["ovs-br"].kind, NodeKind::Switch);
    assert!(l.nodes["ovs-br"].interfaces.contains_key("ovs-veth0"));
    assert!(
        !l.nodes.contains_key("host"),
        "the OVS ports left the machine's namespace:\n{}",
        i.toml
    );
}

#[test]
fn seed_bridge_port_address_warns_at_the_script_line() {
    let i = import("seed003-bridge-port.sh");
    let w = i
        .warnings
        .iter()
        .find(|w| w.message.contains("useless"))
        .expect("topo's warning");
    assert_eq!(w.origin.as_ref().unwrap().line, 6, "{w}");
    let l = lab(&import("seed003-bridge-port-fixed.sh"));
    assert!(l.nodes["host"].interfaces["veth0"].addresses.is_empty());
    assert_eq!(
        l.nodes["host"].interfaces["br0"].addresses[0].to_string(),
        "192.168.3.101/24"
    );
}

#[test]
fn unknown_namespace_is_refused_at_its_line() {
    let e =
        err_of("ip netns add a\n\nip link add x type veth peer name y\nip link set x netns b\n");
    assert_eq!(e.origin.unwrap().line, 4);
    assert!(e.message.contains("no namespace `b`"), "{}", e.message);
    assert!(e.help.unwrap().contains("namespaces made so far: a"));
}

#[test]
fn link_set_before_link_add_is_refused_at_its_line() {
    let e = err_of("ip netns add a\nip link set v0 up\nip link add v0 type veth peer name v1\n");
    assert_eq!(e.origin.unwrap().line, 2);
    assert!(e.message.contains("no device `v0`"), "{}", e.message);
}

#[test]
fn unreadable_syntax_is_refused_at_its_line() {
    let e = err_of("ip netns add a\nip link add \"x type veth\n");
    assert_eq!(e.origin.unwrap().line, 2);
    let e = err_of("ip netns add a\nfor n in a b\nip netns add $n\n");
    assert_eq!(e.origin.unwrap().line, 2, "for without do");
}

#[test]
fn special_parameters_are_refused_where_a_command_uses_them_only() {
    let e = err_of("ip netns add a\nip netns add $1\n");
    assert_eq!(e.origin.as_ref().unwrap().line, 2);
    assert!(
        e.message.contains("`$1` is an argument of the script"),
        "{e}"
    );
    // Seed 003's "safe bridge" test: its `if $? ...` block is set aside
    // as a comment, as every `if` is, instead of refusing the script.
    let i = script(
        "ip netns add a\nping -c 3 10.0.0.1 > /dev/null\nif $? -ne 0; then\n  ip netns del a\nfi\n",
        "t",
        &none,
    )
    .unwrap();
    assert!(i.toml.contains("[nodes.a]"), "{}", i.toml);
    assert!(!i.warnings.is_empty());
}

#[test]
fn the_lab_file_check_points_at_the_script_line() {
    // weft-topo finds the unreachable gateway; the error names line 5.
    let src = "ip netns add a\nip link add e0 netns a type veth peer name e1 netns a\nip -n a addr add 10.0.0.1/24 dev e0\nip -n a link set e0 up\nip -n a route add 10.9.0.0/24 via 10.7.0.1\n";
    let e = err_of(src);
    assert_eq!(e.origin.as_ref().unwrap().line, 5, "{e}");
    assert!(e.message.contains("10.7.0.1"), "{}", e.message);
}

#[test]
fn variables_loops_batch_files_and_heredocs() {
    let src = "export N=3\nfor h in h1 h2; do\n  ip netns add $h\ndone\nip -batch links.txt\nip -n h1 -batch - <<EOF\naddr add 10.0.0.1/24 dev e1\nlink set e1 up\nEOF\nip netns exec h2 sh -c 'ip addr add 10.0.0.$N/24 dev e2 && ip link set e2 up'\n";
    let batch = |f: &str| {
        (f == "links.txt")
            .then(|| "# cables\nlink add e1 netns h1 type veth peer name e2 netns h2\n".to_string())
    };
    let i = script(src, "t", &batch).unwrap();
    let l = lab(&i);
    assert_eq!(
        l.nodes["h1"].interfaces["e1"].addresses[0].to_string(),
        "10.0.0.1/24"
    );
    assert_eq!(
        l.nodes["h2"].interfaces["e2"].addresses[0].to_string(),
        "10.0.0.3/24"
    );
    assert!(i.toml.contains("# links.txt line 2"), "{}", i.toml);
    // A bad line in a batch file is reported in that file.
    let bad = |_: &str| Some("link set nope up\n".to_string());
    let e = script("ip -batch b.txt\n", "t", &bad)
        .unwrap_err()
        .0
        .remove(0);
    assert_eq!(e.origin.unwrap().file.as_deref(), Some("b.txt"));
}

#[test]
fn other_programs_become_comments_with_a_warning() {
    let src = "ip netns add a\nip netns exec a iptables -A FORWARD -j ACCEPT\nip netns exec a dnsmasq\nif true; then\n  ip netns add b\nfi\n";
    let i = script(src, "t", &none).unwrap();
    assert_eq!(i.warnings.len(), 3, "{:?}", i.warnings);
    assert!(i.toml.contains("# line 2: ip netns exec a iptables"));
    assert!(i.toml.contains("# line 4: if true; then"));
    assert!(
        !lab(&i).nodes.contains_key("b"),
        "if blocks are not replayed"
    );
}

#[test]
fn brctl_tunctl_sysctl_and_bridge_options() {
    let src = "ip netns add r\nip netns exec r brctl addbr b0\nip netns exec r brctl stp b0 on\nip netns exec r brctl setfd b0 4\nip -n r link add br1 type bridge forward_delay 300 priority 4096\nip netns exec r tunctl -t t0 -u 1000\nip netns exec r brctl addif b0 t0\nip netns exec r sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1\n";
    let l = lab(&script(src, "t", &none).unwrap());
    let r = &l.nodes["r"];
    match &r.interfaces["b0"].kind {
        IfaceKind::Bridge(b) => {
            assert!(b.stp);
            assert_eq!(b.forward_delay_cs, Some(400));
        }
        k => panic!("{k:?}"),
    }
    match &r.interfaces["br1"].kind {
        IfaceKind::Bridge(b) => {
            assert_eq!((b.forward_delay_cs, b.priority), (Some(300), Some(4096)))
        }
        k => panic!("{k:?}"),
    }
    assert!(matches!(&r.interfaces["t0"].kind, IfaceKind::Tap(o) if o.owner == Some(1000)));
    assert_eq!(r.interfaces["t0"].master.as_deref(), Some("b0"));
    assert_eq!(r.sysctls["net.ipv6.conf.all.forwarding"], "1");
}

#[test]
fn vlan_devices_become_access_ports_of_a_switch_on_the_cable() {
    let src = "ip netns add a\nip netns add b\nip link add e0 netns a type veth peer name e0 netns b\nfor ns in a b; do\n  ip netns exec $ns vconfig add e0 10\n  ip -n $ns link add link e0 name e0.20 type vlan id 20\n  ip -n $ns link set e0 up\ndone\nip -n a addr add 10.10.0.1/24 dev e0.10\nip -n b addr add 10.10.0.2/24 dev e0.10\n";
    let i = script(src, "t", &none).unwrap();
    let l = lab(&i);
    let sw = &l.nodes["vlan-a-e0"];
    assert_eq!(sw.kind, NodeKind::Switch);
    assert!(
        sw.interfaces.contains_key("v10")
            && sw.interfaces.contains_key("v20")
            && sw.interfaces.contains_key("trunk")
    );
    assert_eq!(
        l.nodes["a"].interfaces["e0.10"].addresses[0].to_string(),
        "10.10.0.1/24"
    );
    match &sw.interfaces["trunk"].kind {
        IfaceKind::Veth { peer } => assert_eq!(peer.to_string(), "vlan-b-e0:trunk"),
        k => panic!("{k:?}"),
    }
    assert!(i.warnings.iter().any(|w| w.message.contains("no 802.1Q")));
}

#[test]
fn clab_topology_with_exec_lines_bridge_and_ovs() {
    let (_, t) = fixture("clab/frr-pair.clab.yml");
    let i = clab(&t, None).unwrap();
    let l = lab(&i);
    assert_eq!(l.name, "frr-pair");
    assert_eq!(
        l.nodes["r1"].interfaces["eth1"].addresses[0].to_string(),
        "10.0.12.1/24"
    );
    assert_eq!(l.nodes["r1"].sysctls["net.ipv4.ip_forward"], "1");
    assert_eq!(l.nodes["h1"].routes.len(), 1);
    assert_eq!(l.nodes["br1"].kind, NodeKind::Bridge);
    assert_eq!(l.nodes["sw1"].kind, NodeKind::Switch);
    assert!(
        i.toml.contains("image = \"quay.io/frrouting/frr:9.1.0\""),
        "{}",
        i.toml
    );
    assert!(i
        .warnings
        .iter()
        .any(|w| w.message.contains("`mgmt` network is dropped")));
    assert_eq!(l.nodes["r1"].binds.len(), 1, "{}", i.toml);
    assert!(l.nodes["h1"]
        .container
        .as_ref()
        .is_some_and(|c| c.image == "alpine:3"));
}

#[test]
fn clab_vendor_kinds_are_refused_with_the_list() {
    let (_, t) = fixture("clab/vendor.clab.yml");
    let e = clab(&t, None).unwrap_err().0.remove(0);
    assert!(
        e.message.contains("srl1 (nokia_srlinux)") && e.message.contains("ceos1 (ceos)"),
        "{}",
        e.message
    );
    assert_eq!(e.origin.unwrap().line, 4);
}

#[test]
fn clab_yaml_errors_have_their_line() {
    let (_, t) = fixture("clab/bad-yaml.clab.yml");
    let e = clab(&t, None).unwrap_err().0.remove(0);
    assert_eq!(e.origin.unwrap().line, 6, "{}", e.message);
}

#[test]
fn a_veth_peer_stays_where_the_command_runs_unless_it_names_a_namespace() {
    let i = script(
        "ip netns add c\nip link add c0 netns c type veth peer name c-port\n",
        "t",
        &none,
    )
    .unwrap();
    let l = lab(&i);
    assert!(l.nodes["c"].interfaces.contains_key("c0"));
    assert!(l.nodes["host"].interfaces.contains_key("c-port"));
}

#[test]
fn bridge_options_set_later_with_ip_or_sysfs() {
    let src = "ip link add br0 type bridge\nip link set br0 type bridge stp_state 1 forward_delay 400\necho 100 > /sys/class/net/br0/bridge/hello_time\nip link add p0 type veth peer name p1\nip link set p0 master br0\necho 7 > /sys/class/net/p0/brport/path_cost\necho 1 > /sys/class/net/br0/bridge/multicast_snooping\n";
    let i = script(src, "t", &none).unwrap();
    let l = lab(&i);
    let h = &l.nodes["host"];
    match &h.interfaces["br0"].kind {
        IfaceKind::Bridge(b) => {
            assert!(b.stp);
            assert_eq!(b.forward_delay_cs, Some(400));
            assert_eq!(b.hello_time_cs, Some(100));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(h.interfaces["p0"].port.cost, Some(7));
    assert!(i
        .warnings
        .iter()
        .any(|w| w.origin.as_ref().is_some_and(|o| o.line == 7)
            && w.message.contains("multicast_snooping")));
}

#[test]
fn a_bridge_option_out_of_range_is_reported_at_the_line_that_set_it() {
    let e = err_of("brctl addbr br0\n\necho 2000 > /sys/class/net/br0/bridge/hello_time\n");
    assert_eq!(e.origin.unwrap().line, 3, "{}", e.message);
    assert!(e.message.contains("hello_time"), "{}", e.message);
}

#[test]
fn a_vlan_device_moved_to_another_namespace_is_cabled_from_there() {
    let src = "ip netns add a\nip netns add b\nip netns add c\nip link add e0 netns a type veth peer name e0 netns b\nip -n a link add link e0 name v10 type vlan id 10\nip -n a link set v10 netns c\nip -n c addr add 10.10.0.3/24 dev v10\n";
    let l = lab(&script(src, "t", &none).unwrap());
    match &l.nodes["c"].interfaces["v10"].kind {
        IfaceKind::Veth { peer } => assert_eq!(peer.to_string(), "vlan-a-e0:v10"),
        k => panic!("{k:?}"),
    }
}
