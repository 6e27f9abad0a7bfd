//! Snapshot tests: each example drawn in all three formats must equal the
//! file checked in under tests/snapshots. After an intended change, run
//! with UPDATE_SNAPSHOTS=1 and review the diff.

use std::path::Path;

use weft_see::graph;

#[test]
fn examples_match_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = root.join("../../examples");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5);
    let mut failed = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        let lab = weft_topo::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {e:?}", p.display()))
            .lab;
        let live = graph::LiveMap::new();
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        for (ext, out) in [
            ("txt", graph::text(&lab, &live)),
            ("dot", graph::dot(&lab, &live)),
            ("svg", graph::svg(&lab, &live)),
        ] {
            // Deterministic: drawing twice gives the same bytes.
            let again = match ext {
                "txt" => graph::text(&lab, &live),
                "dot" => graph::dot(&lab, &live),
                _ => graph::svg(&lab, &live),
            };
            assert_eq!(out, again);
            let snap = root.join("tests/snapshots").join(format!("{stem}.{ext}"));
            if update {
                std::fs::write(&snap, &out).unwrap();
                continue;
            }
            match std::fs::read_to_string(&snap) {
                Ok(s) if s == out => {}
                Ok(_) => failed.push(format!("{} differs", snap.display())),
                Err(_) => failed.push(format!("{} is missing", snap.display())),
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{failed:#?}\n(UPDATE_SNAPSHOTS=1 cargo test -p weft-see --test graph rewrites them)"
    );
}

/// A page works out rates on each cable from the counters the SVG
/// carries: what went each way (one end's sent, or the other's received
/// when the first cannot say), and where the cable's middle is.
#[test]
fn cables_carry_their_counters_each_way() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/veth.toml"
    ))
    .unwrap();
    let lab = weft_topo::parse(&text).unwrap().lab;
    let mut live = graph::LiveMap::new();
    live.insert(
        weft_topo::Endpoint::new("ns1", "veth0"),
        graph::Live {
            state: "up".into(),
            counters: Some(graph::Counters {
                rx_frames: 3,
                rx_bytes: 300,
                tx_frames: 7,
                tx_bytes: 700,
            }),
            ..Default::default()
        },
    );
    let svg = graph::svg(&lab, &live);
    let cable = svg.lines().find(|l| l.contains("class=\"cable\"")).unwrap();
    assert!(cable.contains("data-a=\"ns1:veth0\""), "{cable}");
    assert!(cable.contains("data-ab=\"700 7\""), "{cable}");
    assert!(cable.contains("data-ba=\"300 3\""), "{cable}");
    assert!(cable.contains("data-mid=\""), "{cable}");
    assert!(
        svg.contains("ns1:veth0 to ns2:veth1: 7 frames, 700 bytes"),
        "{svg}"
    );
    // Without counters (a file, not a live lab) nothing is made up.
    let plain = graph::svg(&lab, &graph::LiveMap::new());
    assert!(!plain.contains("data-ab"), "{plain}");
}

#[test]
fn live_state_shows_in_every_format() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/veth.toml"
    ))
    .unwrap();
    let lab = weft_topo::parse(&text).unwrap().lab;
    let mut live = graph::LiveMap::new();
    let up = |addr: &str| graph::Live {
        state: "up".into(),
        port_state: None,
        role: None,
        addresses: vec![addr.into()],
        counters: None,
    };
    live.insert(weft_topo::Endpoint::new("ns1", "veth0"), up("10.1.1.2/24"));
    live.insert(
        weft_topo::Endpoint::new("ns2", "veth1"),
        graph::Live {
            state: "down".into(),
            ..up("10.1.1.3/24")
        },
    );
    let t = graph::text(&lab, &live);
    assert!(t.contains("veth0 [veth] up 10.1.1.2/24"), "{t}");
    assert!(t.contains("<-- up / down -->"), "{t}");
    assert!(graph::dot(&lab, &live).contains("veth1 (veth)\\ndown\\n10.1.1.3/24\", color=red"));
    assert!(graph::svg(&lab, &live).contains("stroke=\"#c00\""));
}

/// A 500-host lab drew as one row 150,260 px wide; now it is a grid with
/// every node and cable in it, the switches on top.
#[test]
fn five_hundred_hosts_draw_in_a_readable_grid() {
    let text = "name = \"big\"\n[nodes.sw]\nkind = \"switch\"\n[nodes.br]\nkind = \"bridge\"\naddresses = [\"10.0.0.1/16\"]\n[nodes.h]\ncount = 250\nattach = \"br\"\n[nodes.k]\ncount = 250\nattach = \"sw\"\n";
    let lab = weft_topo::parse(text).unwrap().lab;
    assert_eq!(lab.nodes.len(), 502);
    let svg = graph::svg(&lab, &graph::LiveMap::new());
    let dim = |attr: &str| -> i64 {
        let i = svg.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
        svg[i..i + svg[i..].find('"').unwrap()].parse().unwrap()
    };
    let (w, h) = (dim("width"), dim("height"));
    assert!(w <= 6000 && h <= 6000, "{w} x {h}");
    assert!(w * 3 >= h && h * 3 >= w, "not near square: {w} x {h}");
    assert_eq!(svg.matches("<g class=\"node\"").count(), 502);
    assert_eq!(svg.matches("<line class=\"cable\"").count(), 500);
    // The two switches come first, on the top row.
    let first: Vec<&str> = svg
        .match_indices("data-node=\"")
        .take(2)
        .map(|(i, _)| &svg[i + 11..i + 13])
        .collect();
    assert_eq!(first, ["br", "sw"]);
}

#[test]
fn switch_roles_blocked_ports_and_links_down_show_in_every_format() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/switch-triangle.toml"
    ))
    .unwrap();
    let lab = weft_topo::parse(&text).unwrap().lab;
    let mut live = graph::LiveMap::new();
    for (n, i) in lab
        .veths()
        .flat_map(|(a, b)| [a, b])
        .map(|e| (e.node.clone(), e.iface.clone()))
    {
        live.insert(
            weft_topo::Endpoint::new(&n, &i),
            graph::Live {
                state: "up".into(),
                ..Default::default()
            },
        );
    }
    let port = |role: &str, state: &str| graph::Live {
        state: "up".into(),
        role: Some(role.into()),
        port_state: Some(state.into()),
        addresses: vec![],
        counters: None,
    };
    live.insert(
        weft_topo::Endpoint::new("s3", "to-s2"),
        port("alternate", "discarding"),
    );
    live.insert(
        weft_topo::Endpoint::new("s2", "to-s1"),
        port("root", "forwarding"),
    );
    live.insert(
        weft_topo::Endpoint::new("s1", "h1"),
        graph::Live {
            state: "down".into(),
            ..port("disabled", "disabled")
        },
    );
    let t = graph::text(&lab, &live);
    assert!(
        t.contains("to-s2 [veth] up, stp alternate discarding"),
        "{t}"
    );
    assert!(t.contains("to-s1 [veth] up, stp root forwarding"), "{t}");
    assert!(
        t.contains("<==||=====> s3:to-s2  (blocked at s3:to-s2: alternate, discarding)"),
        "{t}"
    );
    assert!(t.contains("h1:eth0  <-- up / down --> s1:h1"), "{t}");
    let d = graph::dot(&lab, &live);
    assert!(d.contains("\"s2:to-s3\" -- \"s3:to-s2\" [penwidth=2, color=orange, style=dashed, label=\"blocked at s3:to-s2\"]"), "{d}");
    assert!(
        d.contains(
            "\"h1:eth0\" -- \"s1:h1\" [penwidth=2, color=red, style=dashed, label=\"down\"]"
        ),
        "{d}"
    );
    let s = graph::svg(&lab, &live);
    assert!(
        s.contains("data-a=\"s2:to-s3\" data-b=\"s3:to-s2\" data-state=\"blocked\""),
        "{s}"
    );
    assert!(
        s.contains("data-a=\"h1:eth0\" data-b=\"s1:h1\" data-state=\"down\""),
        "{s}"
    );
    assert!(s.contains("<title>s3:to-s2 blocked</title>"), "{s}");
    assert_eq!(s.matches("data-state=\"up\"").count(), 4, "{s}");
}
