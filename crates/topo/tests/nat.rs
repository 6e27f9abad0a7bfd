//! NAT, forwards and checks as the file gives them: expansion and plans.

use std::path::Path;

use weft_topo::check::CheckKind;
use weft_topo::{parse, plan, Op, Res, ResKey};

fn containers() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/containers.toml"),
    )
    .unwrap()
}

#[test]
fn containers_expand_to_masquerade_forwards_forwarding_and_hairpin() {
    let lab = parse(&containers()).unwrap().lab;
    let nat = &lab.nat["gw"];
    assert_eq!(nat.bridge, "gw");
    assert_eq!(nat.uplink, "wan");
    assert_eq!(nat.subnets[0].to_string(), "172.18.0.0/24");
    let f: Vec<String> = nat.forwards.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        f,
        [
            "8080/tcp -> web:80 (172.18.0.3:80)",
            "5353/udp -> web:53 (172.18.0.3:53)"
        ]
    );
    assert_eq!(lab.nodes["gw"].sysctls["net.ipv4.ip_forward"], "1");
    assert!(lab.nodes["gw"].interfaces["web"].port.hairpin);
    assert!(!lab.nodes["gw"].interfaces["wan"].port.hairpin);
    assert_eq!(lab.checks.len(), 2);
    assert!(
        matches!(&lab.checks[0].kind, CheckKind::Ping { addr, .. } if addr.to_string() == "203.0.113.2")
    );
    assert_eq!(lab.checks[0].line, 32);
    assert_eq!(
        lab.checks[1].to_string(),
        "check 2 (line 36): command in app: sh -c getent ahostsv4 web"
    );
}

#[test]
fn a_forward_edit_is_one_change_of_the_table() {
    let text = containers();
    let a = parse(&text).unwrap().lab;
    let b = parse(&text.replace("8080 -> web:80", "8080 -> app:8000"))
        .unwrap()
        .lab;
    let p = plan(Some(&a), &b);
    assert_eq!(p.ops.len(), 1, "{p}");
    assert!(
        matches!(&p.ops[0], Op::Change { key: ResKey::Nat { node }, to: Res::Nat(n), .. } if node == "gw" && n.forwards.iter().any(|f| f.node == "app" && f.to_port == 8000))
    );
    assert_eq!(
        p.lines(),
        ["~ nat in gw: - forward 8080/tcp -> web:80 (172.18.0.3:80), + forward 8080/tcp -> app:8000 (172.18.0.2:8000)"]
    );
    // Removing [nat.gw] removes the table, the hairpins and the sysctl.
    let cut = text.find("[nat.gw]").unwrap();
    let c = parse(&text[..cut]).unwrap().lab;
    let lines = plan(Some(&a), &c).lines();
    assert!(lines[0].starts_with("- nat in gw: masquerade"), "{lines:?}");
    assert!(
        lines.contains(&"~ gw:web hairpin on -> off".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"- sysctl net.ipv4.ip_forward=1 in gw".to_string()),
        "{lines:?}"
    );
}

#[test]
fn nat_mistakes_are_refused_with_positions() {
    let text = containers();
    let msg = |t: &str| -> Vec<String> {
        parse(t)
            .err()
            .unwrap_or_else(|| panic!("accepted: {t}"))
            .0
            .iter()
            .map(|d| d.message.clone())
            .collect()
    };
    let m = msg(&text.replace("uplink = \"wan\"", "uplink = \"gw\""));
    assert!(
        m[0].contains("uplink `gw` is itself the bridge being NATed"),
        "{m:?}"
    );
    let m = msg(&text.replace("uplink = \"wan\"", "uplink = \"web\""));
    assert!(
        m[0].contains("uplink `web` is a port of the bridge being NATed"),
        "{m:?}"
    );
    let m = msg(&text.replace("203.0.113.1/24", "172.18.0.200/24"));
    assert!(
        m.iter().any(|m| m.contains("overlaps the NATed subnet")),
        "{m:?}"
    );
    let m = msg(&text.replace("[nat.gw]", "[nat.nope]"));
    assert!(
        m[0].contains("nat names `nope`, which is not a node"),
        "{m:?}"
    );
    let m = msg(&text.replace("\"5353/udp -> web:53\"", "\"53/icmp -> web\""));
    assert!(m[0].contains("protocol `icmp` is not tcp or udp"), "{m:?}");
    let m = msg(&text.replace("ping = \"outside\"", "ping = \"outside\"\ntcp = \"web:80\""));
    assert!(
        m[0].contains("give exactly one of ping, tcp and command"),
        "{m:?}"
    );
    let m = msg(&text.replace(
        "[nodes.gw]\n",
        "[nodes.gw]\nsysctls = { \"net.ipv4.ip_forward\" = 0 }\n",
    ));
    assert!(
        m[0].contains("sets net.ipv4.ip_forward = 0, but NAT forwards packets"),
        "{m:?}"
    );
}

#[test]
fn nat_behaviours_expand_and_bad_ones_are_refused() {
    let text = containers();
    let with = |keys: &str| text.replace("uplink = \"wan\"", &format!("uplink = \"wan\"\n{keys}"));
    let lab = parse(&with(
        "type = \"restricted-cone\"\nmapping_timeout = \"1min\"",
    ))
    .unwrap()
    .lab;
    let b = lab.nat["gw"].behaviour.as_ref().unwrap();
    assert_eq!(
        b.to_string(),
        "restricted-cone (mapping endpoint-independent, filtering address-dependent), external 203.0.113.1, mapping timeout 60s, hairpin on, preserved ports"
    );
    assert_eq!(
        lab.nodes["gw"].sysctls["net.netfilter.nf_conntrack_udp_timeout"],
        "60"
    );
    let sym = parse(&with("type = \"symmetric\"\nhairpin = false"))
        .unwrap()
        .lab;
    let s = sym.nat["gw"].behaviour.as_ref().unwrap();
    assert_eq!(s.ports, weft_topo::nat::Ports::Random);
    assert!(!s.hairpin);
    // Without behaviour keys: plain masquerade, as before.
    assert!(parse(&text).unwrap().lab.nat["gw"].behaviour.is_none());
    // An edit of the type is one change of the table.
    let p = plan(Some(&lab), &sym);
    assert!(
        p.lines().iter().any(
            |l| l.starts_with("~ nat in gw: restricted-cone (") && l.contains("-> symmetric (")
        ),
        "{p}"
    );

    let msg = |t: &str| -> (String, usize) {
        let d = &parse(t).err().unwrap_or_else(|| panic!("accepted: {t}")).0[0];
        (d.message.clone(), d.span.clone().map_or(0, |s| s.start))
    };
    let (m, at) = msg(&with("type = \"cone\""));
    assert!(m.contains("NAT type `cone` is not known"), "{m}");
    assert_eq!(&with("type = \"cone\"")[at..at + 6], "\"cone\"");
    let (m, _) = msg(&with(
        "mapping = \"address-dependent\"\nports = \"preserve\"",
    ));
    assert!(
        m.contains("ports = \"preserve\" cannot give an address-dependent mapping"),
        "{m}"
    );
    let (m, _) = msg(&with("mapping_timeout = \"30\""));
    assert!(m.contains("mapping_timeout `30` is not a timeout"), "{m}");
    let (m, _) = msg(&with("filtering = \"none\""));
    assert!(m.contains("filtering `none` is not known"), "{m}");
    let (m, _) = msg(&with("type = \"full-cone\"").replace("addresses = [\"203.0.113.1/24\"]", ""));
    assert!(
        m.contains("needs an IPv4 address on the uplink `wan`"),
        "{m}"
    );
}
