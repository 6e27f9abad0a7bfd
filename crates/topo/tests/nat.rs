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
