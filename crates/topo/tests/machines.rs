//! Labs that span machines: every machine plans the same VNIs, MTUs and
//! addresses from the file, and builds only its own share.

use weft_topo::machines::{select, share};
use weft_topo::{parse, IfaceKind, VxlanOptions};

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/vxlan.toml"
    ))
    .unwrap()
}

fn vxlan(lab: &weft_topo::Lab, node: &str, iface: &str) -> (VxlanOptions, Option<u32>) {
    let i = &lab.nodes[node].interfaces[iface];
    match &i.kind {
        IfaceKind::Vxlan(o) => (o.clone(), i.mtu),
        k => panic!("{node}:{iface} is a {}", k.name()),
    }
}

#[test]
fn both_machines_plan_the_same_vni_mtu_and_addresses() {
    let text = example();
    // Each machine parses the whole file on its own.
    let on_a = share(&parse(&text).unwrap().lab, "a").unwrap();
    let on_b = share(&parse(&text).unwrap().lab, "b").unwrap();
    let (a, mtu_a) = vxlan(&on_a, "br-a", "vx0");
    let (b, mtu_b) = vxlan(&on_b, "br-b", "vx0");
    assert_eq!(a.vni, b.vni);
    assert!((1..=0xff_ffff).contains(&a.vni));
    assert_eq!((mtu_a, mtu_b), (Some(1450), Some(1450)));
    assert_eq!((a.port, b.port), (4789, 4789));
    assert_eq!(a.local.to_string(), "192.0.2.1");
    assert_eq!(a.remote.to_string(), "192.0.2.2");
    assert_eq!((b.local, b.remote), (a.remote, a.local));
    assert_eq!(a.peer.to_string(), "br-b:vx0");
    // The port joins the bridge like any other.
    assert_eq!(
        on_a.nodes["br-a"].interfaces["vx0"].master.as_deref(),
        Some("br-a")
    );
    // One segment: hosts on the two machines get distinct addresses.
    let addr = |l: &weft_topo::Lab, n: &str| l.nodes[n].interfaces["eth0"].addresses[0];
    let all = [
        addr(&on_a, "ha1"),
        addr(&on_a, "ha2"),
        addr(&on_b, "hb1"),
        addr(&on_b, "hb2"),
    ];
    for (i, x) in all.iter().enumerate() {
        assert!(!all[i + 1..].contains(x), "{all:?}");
    }
}

#[test]
fn a_share_is_one_machines_nodes_under_its_own_name() {
    let lab = parse(&example()).unwrap().lab;
    let a = share(&lab, "a").unwrap();
    assert_eq!(a.name, "vxlan@a");
    assert_eq!(a.machine.as_deref(), Some("a"));
    assert_eq!(a.nodes.keys().collect::<Vec<_>>(), ["br-a", "ha1", "ha2"]);
    // Namespace names are the lab's, not the share's.
    assert_eq!(a.nodes["ha1"].netns, "weft-vxlan.ha1");
    // The other machine's nodes are known by name and address only.
    assert_eq!(a.remote_names.keys().collect::<Vec<_>>(), ["hb1", "hb2"]);
    assert_eq!(a.remote_names["hb1"].to_string(), "10.50.0.3");
    let e = select(&lab, None).unwrap_err();
    assert!(matches!(e, weft_topo::Error::MachineNeeded { .. }), "{e}");
    assert!(e.to_string().contains("--machine"), "{e}");
    let e = share(&lab, "c").unwrap_err().to_string();
    assert!(
        e.contains("no machine `c`") && e.contains("`a`, `b`"),
        "{e}"
    );
    let single = parse("name = \"one\"\n[nodes.h]\n").unwrap().lab;
    assert_eq!(select(&single, None).unwrap(), single);
    assert_eq!(
        share(&single, "a").unwrap_err(),
        weft_topo::Error::NoMachines {
            lab: "one".into(),
            machine: "a".into()
        }
    );
}

#[test]
fn explicit_vnis_are_kept_and_chosen_ones_avoid_them() {
    let base = r#"
name = "v"
[machines.a]
underlay = "fd00::1"
underlay_mtu = 9000
[machines.b]
underlay = "fd00::2"
[nodes.x]
machine = "a"
[nodes.y]
machine = "b"
[[links]]
kind = "vxlan"
endpoints = ["x:v1", "y:v1"]
[[links]]
kind = "vxlan"
endpoints = ["x:v0", "y:v0"]
vni = VNI
port = 8472
"#;
    let first = parse(&base.replace("VNI", "7")).unwrap().lab;
    let (auto, mtu) = vxlan(&first, "x", "v1");
    // IPv6 underlay: 70 bytes of overhead, on the smaller underlay MTU.
    assert_eq!(mtu, Some(1500 - 70));
    assert_eq!(vxlan(&first, "x", "v0").0.vni, 7);
    assert_eq!(vxlan(&first, "y", "v0").0.port, 8472);
    // A file that writes the chosen VNI on another link moves the choice.
    let text = base.replace("VNI", &auto.vni.to_string());
    let second = parse(&text).unwrap().lab;
    assert_eq!(vxlan(&second, "x", "v0").0.vni, auto.vni);
    assert_ne!(vxlan(&second, "x", "v1").0.vni, auto.vni);
}

#[test]
fn a_bad_only_machine_is_one_problem_not_one_per_node() {
    let text = "name = \"x\"\n[machines.a]\nunderlay = \"127.0.0.1\"\n[nodes.br]\nkind = \"bridge\"\n[nodes.h]\nattach = \"br\"\n";
    let errs = weft_topo::parse(text).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("cannot be an underlay address"));
}
