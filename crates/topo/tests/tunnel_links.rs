//! `kind = "tunnel"` links: parsed into TUN/TAP interfaces with an MTU that
//! fits the underlay, and a tunnel entry per link.

use weft_topo::{parse, IfaceKind};

#[test]
fn the_example_tunnel_becomes_taps_and_a_tunnel_entry() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/tunnel.toml"
    ))
    .unwrap();
    let lab = parse(&src).unwrap().lab;
    assert_eq!(lab.tunnels.len(), 1);
    let t = &lab.tunnels[0];
    assert!(t.tap && !t.tcp);
    assert_eq!(t.port, 5000);
    assert_eq!(t.ends[1].underlay.to_string(), "10.77.0.2");
    for n in ["m1", "m2"] {
        let i = &lab.nodes[n].interfaces["wt0"];
        assert!(matches!(i.kind, IfaceKind::Tap(_)), "{:?}", i.kind);
        assert_eq!(i.mtu, Some(1426));
    }
}

#[test]
fn tun_mode_ipv6_underlay_and_ports() {
    let src = r#"
name = "t"
[nodes.a.interfaces.eth0]
addresses = ["fd00::1/64"]
[nodes.b.interfaces.eth0]
addresses = ["fd00::2/64"]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
[[links]]
kind = "tunnel"
endpoints = ["a:t0", "b:t0"]
underlay = ["fd00::1", "fd00::2"]
[[links]]
kind = "tunnel"
transport = "tcp"
mtu = 1300
endpoints = ["a:t1", "b:t1"]
underlay = ["fd00::1", "fd00::2"]
"#;
    let lab = parse(src).unwrap().lab;
    assert_eq!(lab.tunnels.len(), 2);
    assert_eq!(lab.tunnels[1].port, 5001);
    assert!(lab.tunnels[1].tcp);
    assert!(matches!(
        lab.nodes["a"].interfaces["t0"].kind,
        IfaceKind::Tun(_)
    ));
    assert_eq!(lab.nodes["a"].interfaces["t0"].mtu, Some(1420));
    assert_eq!(lab.nodes["b"].interfaces["t1"].mtu, Some(1300));
}

#[test]
fn a_tunnel_names_its_cipher_and_a_misspelled_one_is_refused_at_its_place() {
    let link = |cipher: &str| {
        format!(
            "name = \"t\"\n[nodes.a.interfaces.eth0]\naddresses = [\"10.0.0.1/24\"]\n[nodes.b.interfaces.eth0]\naddresses = [\"10.0.0.2/24\"]\n[[links]]\nendpoints = [\"a:eth0\", \"b:eth0\"]\n[[links]]\nkind = \"tunnel\"\n{cipher}endpoints = [\"a:t0\", \"b:t0\"]\nunderlay = [\"10.0.0.1\", \"10.0.0.2\"]\n"
        )
    };
    for (line, want) in [
        ("", None),
        ("cipher = \"auto\"\n", None),
        ("cipher = \"aes-256-gcm\"\n", Some("aes-256-gcm")),
        (
            "cipher = \"chacha20-poly1305\"\n",
            Some("chacha20-poly1305"),
        ),
    ] {
        let lab = parse(&link(line)).unwrap().lab;
        assert_eq!(lab.tunnels[0].cipher.as_deref(), want, "{line}");
    }
    let src = link("cipher = \"aes-128-gcm\"\n");
    let e = parse(&src).unwrap_err().0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line_col(&src), Some((10, 10)));
    assert!(e[0].message.contains("`aes-128-gcm`"), "{:?}", e[0]);
    assert!(
        e[0].help.as_deref().unwrap().contains("\"aes-256-gcm\""),
        "{:?}",
        e[0]
    );
    // On a veth link the key is refused, not ignored.
    let src = "name = \"t\"\n[[links]]\ncipher = \"auto\"\nendpoints = [\"a:e\", \"b:e\"]\n[nodes.a]\n[nodes.b]\n";
    let e = parse(src).unwrap_err().0;
    assert!(
        e.iter()
            .any(|d| d.message.contains("`cipher` is a tunnel link's key")),
        "{e:?}"
    );
}
