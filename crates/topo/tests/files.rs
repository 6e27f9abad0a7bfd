//! Every example parses; every file in tests/bad is refused at the line and
//! with the words its first comment names.

use std::path::{Path, PathBuf};

use weft_topo::{parse, plan, IfaceKind, NodeKind, Op, ResKey};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no files in {dir}");
    v
}

#[test]
fn every_example_parses_and_plans() {
    for f in files("examples") {
        let src = std::fs::read_to_string(&f).unwrap();
        let parsed = parse(&src).unwrap_or_else(|e| panic!("{}: {:?}", f.display(), e.0));
        let p = plan(None, &parsed.lab);
        assert!(!p.is_empty(), "{}", f.display());
        assert!(
            plan(Some(&parsed.lab), &parsed.lab).is_empty(),
            "{}: re-plan not empty",
            f.display()
        );
    }
}

#[test]
fn every_bad_file_is_refused_where_it_says() {
    for f in files("tests/bad") {
        let src = std::fs::read_to_string(&f).unwrap();
        let first = src.lines().next().unwrap();
        let spec = first.strip_prefix("# expect: line ").unwrap_or_else(|| {
            panic!(
                "{}: first line must be `# expect: line N: words`",
                f.display()
            )
        });
        let (line, words) = spec.split_once(": ").unwrap();
        let line: usize = line.parse().unwrap();
        let errs = match parse(&src) {
            Ok(_) => panic!("{} was accepted", f.display()),
            Err(e) => e.0,
        };
        let hit = errs.iter().find(|d| {
            d.message.contains(words) || d.help.as_deref().is_some_and(|h| h.contains(words))
        });
        let Some(d) = hit else {
            panic!("{}: no error says {words:?}; got {:#?}", f.display(), errs)
        };
        assert_eq!(
            d.line_col(&src).map(|l| l.0),
            Some(line),
            "{}: {d:?}",
            f.display()
        );
    }
}

#[test]
fn star_expands_with_addresses_and_default_routes() {
    let src = std::fs::read_to_string(root().join("examples/star.toml")).unwrap();
    let lab = parse(&src).unwrap().lab;
    assert_eq!(lab.nodes.len(), 21);
    let h1 = &lab.nodes["h1"];
    assert_eq!(h1.netns, "weft-star.h1");
    assert_eq!(
        h1.interfaces["eth0"].addresses[0].to_string(),
        "10.0.0.2/16"
    );
    assert_eq!(
        lab.nodes["h20"].interfaces["eth0"].addresses[0].to_string(),
        "10.0.0.21/16"
    );
    assert_eq!(h1.routes[0].to_string(), "default via 10.0.0.1");
    let br = &lab.nodes["br"];
    assert_eq!(br.kind, NodeKind::Bridge);
    assert_eq!(br.interfaces["h7"].master.as_deref(), Some("br"));
    assert!(
        matches!(&br.interfaces["h7"].kind, IfaceKind::Veth { peer } if peer.node == "h7" && peer.iface == "eth0")
    );
    assert_eq!(lab.veths().count(), 20);
}

#[test]
fn address_allocation_skips_taken_addresses() {
    let src = r#"
name = "alloc"
[nodes.br]
kind = "bridge"
addresses = ["10.0.0.2/29", "fd00::1/64"]
[nodes.x]
attach = "br"
addresses = ["10.0.0.1/29"]
[nodes.h]
count = 4
attach = "br"
"#;
    let lab = parse(src).unwrap().lab;
    let a = |n: &str| {
        lab.nodes[n].interfaces["eth0"]
            .addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(a("x"), ["10.0.0.1/29"]);
    assert_eq!(a("h1"), ["10.0.0.3/29", "fd00::2/64"]);
    assert_eq!(a("h4"), ["10.0.0.6/29", "fd00::5/64"]);
    assert_eq!(lab.nodes["h1"].routes.len(), 2);
    let full = src.replace("count = 4", "count = 5");
    let e = parse(&full).unwrap_err();
    assert!(e.0[0].message.contains("no free address"), "{:?}", e.0);
}

#[test]
fn address_on_a_bridge_port_warns() {
    let src = std::fs::read_to_string(root().join("examples/bridge-port-address.toml")).unwrap();
    let p = parse(&src).unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0].message.contains("useless"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn edit_plans_only_the_difference() {
    let old =
        parse(&std::fs::read_to_string(root().join("examples/bridge-port-address.toml")).unwrap())
            .unwrap()
            .lab;
    let new = parse(
        &std::fs::read_to_string(root().join("examples/bridge-port-address-fixed.toml")).unwrap(),
    )
    .unwrap()
    .lab;
    let p = plan(Some(&old), &new);
    let lines = p.lines();
    assert_eq!(
        lines,
        [
            "- address 192.168.3.101/24 on host:veth0",
            "+ address 192.168.3.101/24 on host:br0"
        ],
        "{p}"
    );
    assert_eq!(p.summary(), (1, 0, 1));
}

#[test]
fn removing_a_node_removes_its_link_explicitly_and_the_rest_by_implication() {
    let src = std::fs::read_to_string(root().join("examples/bridge.toml")).unwrap();
    let old = parse(&src).unwrap().lab;
    let mut new = old.clone();
    new.nodes.remove("ns2");
    let br = new.nodes.get_mut("br0").unwrap();
    br.interfaces.remove("br-tap2");
    let p = plan(Some(&old), &new);
    assert_eq!(p.lines(), ["- link br0:br-tap2 <-> ns2:tap2", "- node ns2"]);
    // Undoing the plan restores everything, including what went implicitly.
    let undo = weft_topo::Plan::inverse_of(&p.ops);
    assert!(undo
        .ops
        .iter()
        .any(|o| matches!(o, Op::Add { key: ResKey::Addr { node, .. }, .. } if node == "ns2")));
}

#[test]
fn changing_tap_options_recreates_it_with_its_addresses() {
    let src = std::fs::read_to_string(root().join("examples/tuntap.toml")).unwrap();
    let old = parse(&src).unwrap().lab;
    let new = parse(&src.replace("vnet_hdr = true", "vnet_hdr = false"))
        .unwrap()
        .lab;
    let p = plan(Some(&old), &new);
    let lines = p.lines();
    assert!(lines.contains(&"- tap vm:tap0".to_string()), "{p}");
    assert!(lines.contains(&"+ tap vm:tap0".to_string()), "{p}");
    assert!(
        lines.contains(&"+ address 192.168.4.11/24 on vm:tap0".to_string()),
        "{p}"
    );
    assert!(!lines.iter().any(|l| l.contains("tun0")), "{p}");
}

#[test]
fn mtu_change_is_in_place() {
    let src = std::fs::read_to_string(root().join("examples/veth.toml")).unwrap();
    let old = parse(&src).unwrap().lab;
    let new = parse(&src.replace(
        "[[links]]\nendpoints = [\"ns1:veth0\", \"ns2:veth1\"]",
        "[[links]]\nendpoints = [\"ns1:veth0\", \"ns2:veth1\"]\nmtu = 9000",
    ))
    .unwrap()
    .lab;
    assert_eq!(
        plan(Some(&old), &new).lines(),
        [
            "~ ns1:veth0 mtu default -> 9000",
            "~ ns2:veth1 mtu default -> 9000"
        ]
    );
}

#[test]
fn bridge_settings_change_in_place() {
    let src = std::fs::read_to_string(root().join("examples/stp.toml")).unwrap();
    let old = parse(&src).unwrap().lab;
    let new = parse(&src.replace("priority = 4096", "priority = 8192"))
        .unwrap()
        .lab;
    let lines = plan(Some(&old), &new).lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("~ br0:br0 bridge"), "{lines:?}");
}

#[test]
fn attached_hosts_keep_their_addresses_across_edits() {
    let src = "name = \"s\"\n[nodes.br]\nkind = \"bridge\"\naddresses = [\"10.0.0.1/24\"]\n[nodes.a]\nattach = \"br\"\n[nodes.b]\nattach = \"br\"\n[nodes.c]\nattach = \"br\"\n";
    let built = parse(src).unwrap().lab;
    let addr =
        |lab: &weft_topo::Lab, n: &str| lab.nodes[n].interfaces["eth0"].addresses[0].to_string();
    assert_eq!(addr(&built, "c"), "10.0.0.4/24");
    // Remove b, add aa (which sorts before c): c keeps .4, aa takes b's old .3.
    let edited = src.replace(
        "[nodes.b]\nattach = \"br\"\n",
        "[nodes.aa]\nattach = \"br\"\n",
    );
    let fresh = parse(&edited).unwrap().lab;
    assert_eq!(
        addr(&fresh, "c"),
        "10.0.0.4/24",
        "without the built lab the order decides"
    );
    let kept = weft_topo::parse_with(&edited, Some(&built)).unwrap().lab;
    assert_eq!(addr(&kept, "a"), "10.0.0.2/24");
    assert_eq!(addr(&kept, "c"), "10.0.0.4/24");
    assert_eq!(addr(&kept, "aa"), "10.0.0.3/24");
    let p = plan(Some(&built), &kept);
    assert!(!p.lines().iter().any(|l| l.contains("on c:eth0")), "{p}");
    // A host that has gone and comes back gets whatever is free then.
    let renamed = src.replace("[nodes.a]", "[nodes.z]");
    let z = weft_topo::parse_with(&renamed, Some(&built)).unwrap().lab;
    assert_eq!(addr(&z, "b"), "10.0.0.3/24");
    assert_eq!(addr(&z, "z"), "10.0.0.2/24");
}

#[test]
fn ports_rejoin_a_bridge_that_is_made_again() {
    // `br0` turns from a TAP into a bridge of the same name: its would-be
    // port must be (re)attached in the same plan.
    let before = "name = \"p\"\n[nodes.h.interfaces.br0]\nkind = \"tap\"\n[nodes.h.interfaces.t1]\nkind = \"tap\"\n";
    let after = "name = \"p\"\n[nodes.h.interfaces.br0]\nkind = \"bridge\"\n[nodes.h.interfaces.t1]\nkind = \"tap\"\nmaster = \"br0\"\n";
    let mut old = parse(after).unwrap().lab;
    let new = old.clone();
    // Same desired ports, but the device changed kind underneath.
    old.nodes
        .get_mut("h")
        .unwrap()
        .interfaces
        .get_mut("br0")
        .unwrap()
        .kind = parse(before).unwrap().lab.nodes["h"].interfaces["br0"]
        .kind
        .clone();
    let p = plan(Some(&old), &new);
    assert!(
        p.ops.iter().any(
            |o| matches!(o, Op::Add { key: ResKey::Attrs { iface, .. }, .. } if iface == "t1")
        ),
        "{:#?}",
        p.ops
    );
}

#[test]
fn switch_ports_get_modes_and_edge_defaults() {
    let src = std::fs::read_to_string(root().join("examples/switch-vlan.toml")).unwrap();
    let lab = parse(&src).unwrap().lab;
    let sw = &lab.nodes["sw1"];
    assert_eq!(sw.kind, NodeKind::Switch);
    let opts = sw.switch.as_ref().unwrap();
    assert_eq!(opts.stp, weft_topo::SwitchStp::Rstp);
    assert_eq!(opts.ports["a1"].mode, weft_topo::SwitchPortMode::Access(10));
    assert_eq!(
        opts.ports["trunk"].mode,
        weft_topo::SwitchPortMode::Trunk {
            allowed: vec![10, 20],
            native: None
        }
    );
    // Host-facing ports are edge ports, switch-to-switch ports are not.
    assert!(opts.ports["a1"].edge);
    assert!(!opts.ports["trunk"].edge);
    // Ports are plain veth ends with no kernel master.
    assert!(sw.interfaces["a1"].master.is_none());
    let src = "name = \"x\"\n[nodes.sw]\nkind = \"switch\"\nstp = \"off\"\n[nodes.sw.interfaces.p]\nedge = false\n[nodes.a.interfaces.e]\n[[links]]\nendpoints = [\"a:e\", \"sw:p\"]\n";
    let lab = parse(src).unwrap().lab;
    let opts = lab.nodes["sw"].switch.as_ref().unwrap();
    assert_eq!(opts.stp, weft_topo::SwitchStp::Off);
    assert!(!opts.ports["p"].edge);
    assert_eq!(opts.ports["p"].mode, weft_topo::SwitchPortMode::Access(1));
}

#[test]
fn hosts_attached_to_a_switch_get_addresses_from_its_subnet() {
    let src = "name = \"s\"\n[nodes.sw]\nkind = \"switch\"\nsubnet = \"10.40.0.0/24\"\ngateway = \"10.40.0.1\"\n[nodes.h]\ncount = 2\nattach = \"sw\"\n[nodes.r]\nattach = \"sw\"\naddresses = [\"10.40.0.1/24\"]\n";
    let lab = parse(src).unwrap().lab;
    let eth0 = |n: &str| &lab.nodes[n].interfaces["eth0"];
    assert_eq!(eth0("h1").addresses[0].to_string(), "10.40.0.2/24");
    assert_eq!(eth0("h2").addresses[0].to_string(), "10.40.0.3/24");
    assert_eq!(
        lab.nodes["h1"].routes[0].to_string(),
        "default via 10.40.0.1"
    );
    // r holds the gateway address: no default route via itself.
    assert!(
        lab.nodes["r"].routes.is_empty(),
        "{:?}",
        lab.nodes["r"].routes
    );
    let port = &lab.nodes["sw"].interfaces["h1"];
    assert_eq!(port.master, None, "a switch port has no kernel master");
    assert!(lab.nodes["sw"]
        .switch
        .as_ref()
        .unwrap()
        .ports
        .contains_key("h1"));
    // A bare subnet: addresses, and no default route.
    let bare = parse(
        &src.replace("gateway = \"10.40.0.1\"\n", "")
            .replace("addresses = [\"10.40.0.1/24\"]\n", ""),
    )
    .unwrap()
    .lab;
    assert_eq!(
        bare.nodes["h1"].interfaces["eth0"].addresses[0].to_string(),
        "10.40.0.1/24"
    );
    assert!(bare.nodes["h1"].routes.is_empty());
}

#[test]
fn attach_cables_a_port_declared_on_the_switch_with_its_settings() {
    let src = "name = \"s\"\n[nodes.sw]\nkind = \"switch\"\nsubnet = \"10.40.0.0/24\"\n[nodes.sw.interfaces.a1]\nvlan = 10\ncost = 7\nimpair = { delay = \"5ms\" }\n[nodes.sw.interfaces.h2]\ntrunk = [10, 20]\nnative = 10\n[nodes.a1]\nattach = \"sw\"\n[nodes.h]\ncount = 2\nattach = \"sw\"\n";
    let lab = parse(src).unwrap().lab;
    let sw = &lab.nodes["sw"];
    let ports = &sw.switch.as_ref().unwrap().ports;
    assert_eq!(ports["a1"].mode, weft_topo::SwitchPortMode::Access(10));
    assert_eq!(ports["a1"].cost, Some(7));
    assert_eq!(ports["a1"].impair.as_ref().unwrap().delay_us, 5000);
    assert!(ports["a1"].edge, "still a host's edge port");
    assert_eq!(
        ports["h2"].mode,
        weft_topo::SwitchPortMode::Trunk {
            allowed: vec![10, 20],
            native: Some(10)
        }
    );
    assert_eq!(ports["h1"].mode, weft_topo::SwitchPortMode::Access(1));
    assert!(
        matches!(&sw.interfaces["a1"].kind, IfaceKind::Veth { peer } if peer.node == "a1" && peer.iface == "eth0")
    );
    assert_eq!(
        lab.nodes["a1"].interfaces["eth0"].addresses[0].to_string(),
        "10.40.0.1/24"
    );
    // On a kernel bridge the same holds for its port settings.
    let br = "name = \"b\"\n[nodes.br]\nkind = \"bridge\"\naddresses = [\"10.0.0.1/24\"]\n[nodes.br.interfaces.h]\ncost = 9\n[nodes.h]\nattach = \"br\"\n";
    let lab = parse(br).unwrap().lab;
    let port = &lab.nodes["br"].interfaces["h"];
    assert_eq!(port.port.cost, Some(9));
    assert_eq!(port.master.as_deref(), Some("br"));
    // What cannot be a port's settings is still refused, saying why.
    let taken = src.replace("vlan = 10\ncost = 7", "vlan = 10\ncost = 7\nkind = \"tap\"");
    let e = parse(&taken).unwrap_err().0;
    assert!(
        e.iter().any(|d| d
            .message
            .contains("already has an interface `a1`, which is a tap")),
        "{e:?}"
    );
}

#[test]
fn namespace_names_of_different_labs_never_clash() {
    // The case a user hit: both were `weft-a-x-y`.
    assert_ne!(
        weft_topo::netns_name("a-x", "y"),
        weft_topo::netns_name("a", "x-y")
    );
    // Every valid lab and node name over a small alphabet that has the
    // separators in it: each namespace name comes from one (lab, node).
    let words = |alpha: &[char], max: usize| {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|w| alpha.iter().map(move |c| format!("{w}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    };
    let labs: Vec<String> = words(&['a', '-', '_'], 4)
        .into_iter()
        .filter(|l| weft_topo::file::check_lab_name(l).is_ok())
        .collect();
    let nodes: Vec<String> = words(&['a', '-', 'B'], 3)
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    let mut seen = std::collections::HashMap::new();
    for l in &labs {
        let prefix = weft_topo::netns_name(l, "");
        for n in &nodes {
            let ns = weft_topo::netns_name(l, n);
            if let Some(prev) = seen.insert(ns.clone(), (l.clone(), n.clone())) {
                panic!("{ns} is both {prev:?} and ({l}, {n})");
            }
            assert!(ns.starts_with(&prefix));
            // A lab's prefix finds its own namespaces only.
            for other in &labs {
                if other != l {
                    assert!(
                        !ns.starts_with(&weft_topo::netns_name(other, "")),
                        "lab {other}'s prefix takes {ns} of lab {l}"
                    );
                }
            }
        }
    }
    assert!(seen.len() > 1000, "{}", seen.len());
}

#[test]
fn a_built_node_keeps_its_namespace_name() {
    let src = "name = \"old-lab\"\n[nodes.a.interfaces.t]\nkind = \"tap\"\n[nodes.b.interfaces.t]\nkind = \"tap\"\n";
    let mut built = parse(src).unwrap().lab;
    // As a weft from before `weft-LAB.NODE` named it.
    built.nodes.get_mut("a").unwrap().netns = "weft-old-lab-a".into();
    built.nodes.remove("b");
    let now = weft_topo::parse_with(src, Some(&built)).unwrap().lab;
    assert_eq!(now.nodes["a"].netns, "weft-old-lab-a");
    assert_eq!(now.nodes["b"].netns, "weft-old-lab.b");
    assert!(plan(Some(&built), &now)
        .lines()
        .iter()
        .all(|l| !l.contains(" a")));
}

#[test]
fn attach_port_settings_on_the_attaching_node_apply_to_every_member() {
    let src = "name = \"s\"\n[nodes.sw]\nkind = \"switch\"\nsubnet = \"10.40.0.0/24\"\n[nodes.h]\ncount = 3\nattach = \"sw\"\nport = { vlan = 20, cost = 5, impair = { loss = \"1%\" } }\n[nodes.t]\nattach = \"sw\"\nport = { trunk = [10, 20], native = 10, edge = false }\n";
    let lab = parse(src).unwrap().lab;
    let ports = &lab.nodes["sw"].switch.as_ref().unwrap().ports;
    for h in ["h1", "h2", "h3"] {
        assert_eq!(ports[h].mode, weft_topo::SwitchPortMode::Access(20), "{h}");
        assert_eq!(ports[h].cost, Some(5));
        assert_eq!(ports[h].impair.as_ref().unwrap().loss_ppm, 10_000);
    }
    assert_eq!(
        ports["t"].mode,
        weft_topo::SwitchPortMode::Trunk {
            allowed: vec![10, 20],
            native: Some(10)
        }
    );
    assert!(!ports["t"].edge);
    // A bad setting of a group is one problem, not one per member.
    let bad = src.replace("vlan = 20", "vlan = 5000");
    let e = parse(&bad).unwrap_err().0;
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].message.contains("vlan 5000 is not a VLAN id"), "{e:?}");
    // On a kernel bridge: cost and priority; VLANs are refused.
    let br = "name = \"b\"\n[nodes.br]\nkind = \"bridge\"\naddresses = [\"10.0.0.1/24\"]\n[nodes.h]\nattach = \"br\"\nport = { cost = 9, priority = 3 }\n";
    let lab = parse(br).unwrap().lab;
    let p = &lab.nodes["br"].interfaces["h"].port;
    assert_eq!((p.cost, p.priority), (Some(9), Some(3)));
    let e = parse(&br.replace("cost = 9", "vlan = 9")).unwrap_err().0;
    assert!(e[0].message.contains("not a switch port"), "{e:?}");
    // Without attach, or written twice.
    let e = parse("name = \"x\"\n[nodes.h]\nport = { vlan = 3 }\n")
        .unwrap_err()
        .0;
    assert!(e[0].message.contains("the node has no `attach`"), "{e:?}");
    let twice = format!("{src}[nodes.sw.interfaces.t]\nvlan = 3\n");
    let e = parse(&twice).unwrap_err().0;
    assert!(
        e.iter()
            .any(|d| d.message.contains("the port's settings are written twice")),
        "{e:?}"
    );
}
