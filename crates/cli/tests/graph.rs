//! `weft graph` through the real binary: a file before `up` equals the
//! checked-in snapshot; a live lab shows the kernel's state.

mod common;

use common::Lab;

#[test]
fn file_and_live_lab() {
    let root = common::root();
    for (fmt, ext) in [("text", "txt"), ("dot", "dot"), ("svg", "svg")] {
        let o = std::process::Command::new(common::weft_bin())
            .args(["graph", "examples/bridge.toml", "--format", fmt])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want =
            std::fs::read_to_string(root.join(format!("crates/see/tests/snapshots/bridge.{ext}")))
                .unwrap();
        assert_eq!(String::from_utf8(o.stdout).unwrap(), want, "{fmt}");
    }
    let lab = Lab::example("graph", "bridge.toml");
    lab.up();
    let t = lab.ok(&["graph", &lab.name]);
    assert!(
        t.contains("br-tap1 [veth] up, port of br0 (forwarding)"),
        "{t}"
    );
    assert!(t.contains("tap1 [veth] up 192.168.50.1/24"), "{t}");
    assert!(t.contains("<=========> ns1:tap1"), "{t}");
    // A cable whose end is down shows it.
    assert!(lab
        .run(&["exec", &lab.name, "ns2", "--", "ip", "link", "set", "tap2", "down"])
        .status
        .success());
    let t = lab.ok(&["graph", &lab.name]);
    assert!(
        t.contains("br0:br-tap2 <-- down / down --> ns2:tap2"),
        "{t}"
    );
    assert!(
        t.contains("br-tap2 [veth] down, port of br0 (disabled)"),
        "{t}"
    );
    let svg_file = lab.file.parent().unwrap().join("g.svg");
    lab.ok(&[
        "graph",
        &lab.name,
        "--format",
        "svg",
        "-o",
        svg_file.to_str().unwrap(),
    ]);
    let svg = std::fs::read_to_string(&svg_file).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("forwarding") && svg.contains("#c00"));
    let dot = lab.ok(&["graph", &lab.name, "--format", "dot"]);
    assert!(dot.contains("\"br0:br-tap1\" -- \"ns1:tap1\""));
}

/// A live switch lab: the spanning tree's roles on every port, the
/// blocked port of the triangle, and a link taken down with `weft link`
/// (the host's veth stays up; the switch port is out of service).
#[test]
fn live_switch_lab_shows_stp_roles_blocked_ports_and_links_down() {
    let lab = Lab::example("graphsw", "switch-triangle.toml");
    lab.up();
    let t = lab.ok(&["graph", &lab.name]);
    assert!(t.contains("stp root forwarding"), "{t}");
    assert_eq!(t.matches("stp alternate discarding").count(), 1, "{t}");
    assert_eq!(t.matches("<==||=====>").count(), 1, "{t}");
    assert!(t.contains("(blocked at "), "{t}");
    lab.ok(&["link", &lab.name, "h1", "s1", "down"]);
    let t = lab.ok(&["graph", &lab.name]);
    assert!(t.contains("h1:eth0  <-- up / down --> s1:h1"), "{t}");
    let d = lab.ok(&["graph", &lab.name, "--format", "dot"]);
    assert!(
        d.contains(
            "\"h1:eth0\" -- \"s1:h1\" [penwidth=2, color=red, style=dashed, label=\"down\"]"
        ),
        "{d}"
    );
    assert_eq!(d.matches("color=orange").count(), 1, "{d}");
    let s = lab.ok(&["graph", &lab.name, "--format", "svg"]);
    assert!(
        s.contains("data-a=\"h1:eth0\" data-b=\"s1:h1\" data-state=\"down\""),
        "{s}"
    );
    assert_eq!(s.matches("data-state=\"blocked\"").count(), 1, "{s}");
    lab.ok(&["link", &lab.name, "h1", "s1", "up"]);
    let t = lab.ok(&["graph", &lab.name]);
    assert!(t.contains("h1:eth0  <=========> s1:h1"), "{t}");
    lab.ok(&["down", &lab.name]);
}
