//! NAT behaviours of RFC 4787 (`type`, `mapping`, `filtering`,
//! `mapping_timeout`, `hairpin`, `ports` in `[nat.NODE]`), checked from the
//! outside the way STUN does: a reflector with two addresses and two ports
//! reports the mapping each probe came from and answers from the other
//! address or port; and two NATed hosts try to punch holes to each other.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::Lab;

const TYPES: [&str; 4] = [
    "full-cone",
    "restricted-cone",
    "port-restricted",
    "symmetric",
];

/// An "internet" bridge with a reflector `r` (two addresses) and NAT nodes
/// `gw1`, `gw2`, each with a host behind it (`h1`, `h2`; `h1b` too behind
/// `gw1`). `nat` is the text of the `[nat.*]` tables.
fn lab_text(nat: &str) -> String {
    format!(
        r#"name = "nat"

[nodes.inet]
kind = "bridge"
stp = false

[nodes.r.interfaces.eth0]
addresses = ["198.51.100.10/24", "198.51.100.11/24"]

[nodes.gw1]
kind = "bridge"
stp = false
addresses = ["10.1.0.1/24"]
[nodes.gw1.interfaces.wan]
port = false
addresses = ["198.51.100.1/24"]

[nodes.gw2]
kind = "bridge"
stp = false
addresses = ["10.2.0.1/24"]
[nodes.gw2.interfaces.wan]
port = false
addresses = ["198.51.100.2/24"]

[nodes.h1]
attach = "gw1"
[nodes.h1b]
attach = "gw1"
[nodes.h2]
attach = "gw2"

[[links]]
endpoints = ["r:eth0", "inet:r"]
[[links]]
endpoints = ["gw1:wan", "inet:gw1"]
[[links]]
endpoints = ["gw2:wan", "inet:gw2"]

{nat}
"#
    )
}

fn nats(t1: &str, t2: &str, extra: &str) -> String {
    format!(
        "[nat.gw1]\nuplink = \"wan\"\ntype = \"{t1}\"\n{extra}\n[nat.gw2]\nuplink = \"wan\"\ntype = \"{t2}\"\n"
    )
}

const R1: &str = "198.51.100.10";
const R2: &str = "198.51.100.11";

fn udp(lab: &Lab, node: &str, addr: String) -> UdpSocket {
    let s = weft_sys::netns::run_in_named(&lab.netns(node), move || UdpSocket::bind(&addr))
        .unwrap()
        .unwrap_or_else(|e| panic!("binding in {node}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// Everything `s` receives within `wait`: (payload, sender).
fn drain(s: &UdpSocket, wait: Duration) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    let t0 = Instant::now();
    while t0.elapsed() < wait {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            out.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
        }
    }
    out
}

/// The `n` datagrams `s` must receive (waiting up to 20 s for them: a
/// loaded machine may be slow), and any others that come with them.
fn expect(s: &UdpSocket, n: usize) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    let t0 = Instant::now();
    while out.len() < n && t0.elapsed() < Duration::from_secs(20) {
        out.extend(drain(s, Duration::from_millis(50)));
    }
    out.extend(drain(s, Duration::from_millis(300)));
    out
}

/// Send `msg` from `from` to `to` and return the address the probe came
/// from as `to` saw it (the mapping), retrying a lost first packet.
fn probe(from: &UdpSocket, to: &UdpSocket, msg: &str) -> SocketAddr {
    let dst = to.local_addr().unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        from.send_to(msg.as_bytes(), dst).unwrap();
        if let Some((_, src)) = drain(to, Duration::from_millis(300))
            .into_iter()
            .find(|(m, _)| m == msg)
        {
            return src;
        }
    }
    panic!("probe {msg} to {dst} never arrived");
}

/// The reflector's three sockets: R1:p, R1:p+1 (another port), R2:p
/// (another address).
fn reflector(lab: &Lab, port: u16) -> [UdpSocket; 3] {
    [
        udp(lab, "r", format!("{R1}:{port}")),
        udp(lab, "r", format!("{R1}:{}", port + 1)),
        udp(lab, "r", format!("{R2}:{port}")),
    ]
}

#[test]
fn stun_probes_see_each_types_mapping_and_filtering() {
    let lab = Lab::from_text("natstun", &lab_text(&nats("symmetric", "symmetric", "")));
    lab.up();
    let ext: std::net::IpAddr = "198.51.100.1".parse().unwrap();
    for (round, t) in TYPES.into_iter().enumerate() {
        lab.rewrite(&lab_text(&nats(t, "symmetric", "")));
        let out = lab.up();
        assert!(out.contains("nat in gw1"), "{t}: {out}");
        // Fresh ports each round: conntrack keeps the last round's flows.
        let base = 4000 + 10 * round as u16;
        let refl = reflector(&lab, base);

        // Mapping: one inside endpoint, three destinations.
        let h = udp(&lab, "h1", format!("0.0.0.0:{}", base + 5));
        let m: Vec<SocketAddr> = refl
            .iter()
            .enumerate()
            .map(|(i, r)| probe(&h, r, &format!("map{i}")))
            .collect();
        for a in &m {
            assert_eq!(a.ip(), ext, "{t}: mapped to the uplink address");
        }
        match t {
            "symmetric" => {
                assert_ne!(m[0], m[1], "{t}: another port is another mapping");
                assert_ne!(m[0], m[2], "{t}: another address is another mapping");
                assert_ne!(m[0].port(), base + 5, "{t}: random ports");
            }
            _ => {
                assert!(
                    m[0] == m[1] && m[0] == m[2],
                    "{t}: one mapping for all: {m:?}"
                );
                assert_eq!(m[0].port(), base + 5, "{t}: the port is preserved");
            }
        }

        // Filtering: a fresh endpoint sends to R1:p only; R1:p+1 and R2:p
        // answer to its mapping too.
        let h = udp(&lab, "h1", format!("0.0.0.0:{}", base + 6));
        let mapped = probe(&h, &refl[0], "filter");
        for (i, r) in refl.iter().enumerate() {
            r.send_to(format!("from{i}").as_bytes(), mapped).unwrap();
        }
        let want: &[&str] = match t {
            "full-cone" => &["from0", "from1", "from2"],
            "restricted-cone" => &["from0", "from1"],
            _ => &["from0"],
        };
        let got: Vec<String> = expect(&h, want.len()).into_iter().map(|(m, _)| m).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want, "{t}: which answers pass the filter");
    }
}

/// Both hosts learn each other's mapping from a rendezvous (the
/// reflector), then send to it until each hears the other (or `limit`
/// passes); like ICE, each also answers to the address it heard the other
/// from.
fn punch(lab: &Lab, port: u16, limit: Duration) -> bool {
    let rv = udp(lab, "r", format!("{R1}:{port}"));
    let a = udp(lab, "h1", format!("0.0.0.0:{}", port + 1));
    let b = udp(lab, "h2", format!("0.0.0.0:{}", port + 2));
    let ma = probe(&a, &rv, "register-a");
    let mb = probe(&b, &rv, "register-b");
    // Where each sends: the other's mapping, and later where it heard it.
    let (mut to_b, mut to_a) = (vec![mb], vec![ma]);
    let (mut a_heard, mut b_heard) = (false, false);
    let t0 = Instant::now();
    while t0.elapsed() < limit && !(a_heard && b_heard) {
        for (me, peers, msg, heard, other) in [
            (&a, &mut to_b, "from-a", &mut a_heard, "from-b"),
            (&b, &mut to_a, "from-b", &mut b_heard, "from-a"),
        ] {
            for p in peers.iter() {
                me.send_to(msg.as_bytes(), p).unwrap();
            }
            for (m, from) in drain(me, Duration::from_millis(50)) {
                if m == other {
                    *heard = true;
                    if !peers.contains(&from) {
                        peers.push(from);
                    }
                }
            }
        }
    }
    a_heard && b_heard
}

#[test]
fn hole_punching_works_through_cones_and_fails_symmetric_to_symmetric() {
    let lab = Lab::from_text("natpunch", &lab_text(&nats("full-cone", "full-cone", "")));
    lab.up();
    let cases = [
        ("full-cone", "full-cone", true),
        ("restricted-cone", "restricted-cone", true),
        ("port-restricted", "port-restricted", true),
        ("full-cone", "symmetric", true),
        ("port-restricted", "symmetric", false),
        ("symmetric", "symmetric", false),
    ];
    let mut failures = Vec::new();
    for (i, (t1, t2, works)) in cases.into_iter().enumerate() {
        lab.rewrite(&lab_text(&nats(t1, t2, "")));
        lab.up();
        // A hole that opens may take a loaded machine a while; one that
        // never opens is given the 2 s it would need on a quiet one.
        let limit = Duration::from_secs(if works { 20 } else { 2 });
        let got = punch(&lab, 5000 + 10 * i as u16, limit);
        if got != works {
            failures.push(format!("{t1} to {t2}: punched {got}, expected {works}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn mappings_expire_and_hairpinning_follows_the_setting() {
    let extra = "mapping_timeout = \"2s\"\nports = \"random\"";
    let lab = Lab::from_text("nathair", &lab_text(&nats("full-cone", "symmetric", extra)));
    let out = lab.up();
    assert!(
        out.contains("nf_conntrack_udp_timeout"),
        "conntrack's UDP timer follows the mapping timeout: {out}"
    );
    let refl = reflector(&lab, 6000);

    // A mapping lives while used and is forgotten 2 s after.
    let h = udp(&lab, "h1", "0.0.0.0:6005".into());
    let m1 = probe(&h, &refl[0], "t1");
    assert_ne!(m1.port(), 6005, "random ports");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(probe(&h, &refl[1], "t2"), m1, "reused while alive");
    std::thread::sleep(Duration::from_millis(3500));
    let m3 = probe(&h, &refl[0], "t3");
    assert_ne!(m3, m1, "a new mapping after the timeout");

    // Hairpinning: h1 reaches h1b's mapping, and h1b sees h1's mapping.
    let hb = udp(&lab, "h1b", "0.0.0.0:6006".into());
    let mb = probe(&hb, &refl[0], "register-b");
    let ha = udp(&lab, "h1", "0.0.0.0:6007".into());
    let ma = probe(&ha, &refl[0], "register-a");
    ha.send_to(b"hairpin", mb).unwrap();
    let got = expect(&hb, 1);
    assert_eq!(
        got,
        [("hairpin".to_string(), ma)],
        "hairpinned, from h1's external mapping"
    );

    lab.rewrite(&lab_text(&nats(
        "full-cone",
        "symmetric",
        &format!("{extra}\nhairpin = false"),
    )));
    let out = lab.up();
    assert!(out.contains("hairpin off"), "{out}");
    let hb = udp(&lab, "h1b", "0.0.0.0:6008".into());
    let mb = probe(&hb, &refl[0], "register-b2");
    let ha = udp(&lab, "h1", "0.0.0.0:6009".into());
    ha.send_to(b"hairpin", mb).unwrap();
    assert!(
        drain(&hb, Duration::from_millis(500)).is_empty(),
        "no hairpinning when off"
    );
}
