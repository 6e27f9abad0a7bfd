//! A client behind a NAT and an impaired switch, a server outside: the
//! kind of test a networked project writes with weft. Each test builds
//! its own lab (weft names each one uniquely), so they run in parallel.
//!
//! Needs root and the `weft` binary: `cargo build -p weft-cli` first (a
//! workspace build makes it), or set `WEFT_EXE`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use weft::{Impair, Lab};

/// c -- gw (NAT) -- [switch inet, srv's port delayed 20 ms each way] -- srv
fn lab() -> Lab {
    Lab::builder("app")
        .nat_router("gw", "10.1.0.1/24", "203.0.113.1/24")
        // On gw's bridge: an address from its network, gw as default route.
        .host("c", |n| n.attach("gw"))
        .switch("inet", |s| s.port("gw").port("srv").stp(false))
        .host("srv", |n| n.iface("eth0", &["203.0.113.10/24"]))
        .link("gw:wan", "inet:gw")
        .link_impaired(
            "srv:eth0",
            "inet:srv",
            Impair::new().delay(Duration::from_millis(20)).seed(1),
        )
        .build()
        .expect("the lab builds (root and the weft binary are needed)")
}

/// A server in `srv` answering one connection, on a thread.
fn server(lab: &Lab) -> (SocketAddr, std::thread::JoinHandle<()>) {
    // Bound inside srv: the socket belongs to srv's namespace from now on,
    // whichever thread uses it.
    let listener = lab
        .node("srv")
        .unwrap()
        .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap())
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || weft_lib_test::serve_one(&listener).unwrap());
    (SocketAddr::from(([203, 0, 113, 10], port)), t)
}

#[test]
fn the_client_reaches_the_server_through_the_nat_and_the_delay() {
    let lab = lab();
    let (addr, t) = server(&lab);
    let c = lab.node("c").unwrap();
    let t0 = Instant::now();
    let answer = c
        .run(|| weft_lib_test::ask(addr, "hello"))
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    // The server saw the NAT's outside address, not c's own.
    assert_eq!(answer, "203.0.113.1 hello");
    // Handshake and exchange: at least two round trips of 2 x 20 ms.
    assert!(took >= Duration::from_millis(80), "took {took:?}");
    t.join().unwrap();
}

#[test]
fn the_client_is_cut_off_while_its_link_is_down() {
    let lab = lab();
    assert!(lab.ping("c", "srv").unwrap());
    let link = lab.link("srv", "inet").unwrap();
    link.down().unwrap();
    assert!(
        !lab.ping("c", "srv").unwrap(),
        "no way out with the link down"
    );
    link.up().unwrap();
    let t0 = Instant::now();
    while !lab.ping("c", "srv").unwrap() {
        assert!(t0.elapsed() < Duration::from_secs(30), "the link came back");
    }
    let (addr, t) = server(&lab);
    let answer = lab
        .node("c")
        .unwrap()
        .run(|| weft_lib_test::ask(addr, "again"))
        .unwrap()
        .unwrap();
    assert_eq!(answer, "203.0.113.1 again");
    t.join().unwrap();
}

#[test]
fn a_program_in_a_node_sees_only_the_nodes_network() {
    let lab = lab();
    let out = lab
        .node("gw")
        .unwrap()
        .output(std::process::Command::new("ip").args(["-4", "-br", "addr"]))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("203.0.113.1/24") && text.contains("10.1.0.1/24"),
        "{text}"
    );
    let c = lab.node("c").unwrap().ip().unwrap();
    assert!(!text.contains(&format!("{c}/")), "{text}");
}
