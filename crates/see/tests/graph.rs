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
        addresses: vec![addr.into()],
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
