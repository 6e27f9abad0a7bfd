//! The library used the way another project would use it in its tests.

use std::net::{Ipv4Addr, TcpListener, TcpStream};

#[test]
fn a_lab_built_from_rust_carries_tcp_and_is_removed_on_drop() {
    assert_eq!(
        unsafe_free_uid(),
        0,
        "needs root: it builds network namespaces"
    );
    let state = std::env::temp_dir().join(format!("weft-api-test-{}", std::process::id()));
    std::env::set_var("WEFT_STATE_DIR", &state);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/bridge.toml"
    ))
    .unwrap()
    .replace(
        "name = \"br\"",
        &format!("name = \"api{}\"", std::process::id() % 100000),
    );
    let parsed = weft::topo::parse(&text).unwrap();
    let name = parsed.lab.name.clone();
    {
        let lab = weft::Running::up(parsed.lab).unwrap();
        assert!(lab.ping("ns1", "ns2").unwrap());
        // A server in ns2, a client in ns1: sockets belong to the namespace
        // of the thread that opens them.
        let listener = lab
            .run_in("ns2", || {
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, 7000)).unwrap()
            })
            .unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Read;
            let (mut c, _) = listener.accept().unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        });
        lab.run_in("ns1", || {
            use std::io::Write;
            let mut c = TcpStream::connect("192.168.50.2:7000").unwrap();
            c.write_all(b"hello through the bridge").unwrap();
        })
        .unwrap();
        assert_eq!(server.join().unwrap(), "hello through the bridge");
        assert!(std::path::Path::new("/run/netns")
            .join(lab.netns("ns1").unwrap())
            .exists());
    }
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&weft_topo::netns_name(&name, "")))
        .collect();
    assert!(left.is_empty(), "dropping the lab removed it: {left:?}");
    let _ = std::fs::remove_dir_all(&state);
}

fn unsafe_free_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(u32::MAX)
}
