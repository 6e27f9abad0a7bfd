use super::*;
use crate::bpf::{run, Meta};

fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let len = 20 + l4.len() as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

fn ip6(src: [u8; 16], dst: [u8; 16], next: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

fn ports(s: u16, d: u16) -> Vec<u8> {
    let mut v = s.to_be_bytes().to_vec();
    v.extend_from_slice(&d.to_be_bytes());
    v.extend_from_slice(&[0; 16]);
    v
}

fn arp(spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1];
    p.extend_from_slice(&spa);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&tpa);
    p
}

const A: [u8; 4] = [192, 168, 2, 1];
const B: [u8; 4] = [192, 168, 2, 2];
const C: [u8; 4] = [10, 0, 0, 9];

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

/// Named frames: (name, bytes, metadata).
fn frames() -> Vec<(&'static str, Vec<u8>, Meta)> {
    let m = Meta::default();
    let mut frag = ip6(v6(1), v6(2), 44, &[6, 0, 0, 0, 0, 0, 0, 0]);
    frag.extend_from_slice(&ports(1234, 80));
    vec![
        ("icmp a>b", eth(0x800, &ip4(A, B, 1, 0, &[8, 0, 0, 0])), m),
        (
            "udp a:5000>c:53",
            eth(0x800, &ip4(A, C, 17, 0, &ports(5000, 53))),
            m,
        ),
        (
            "tcp b:80>a:40000",
            eth(0x800, &ip4(B, A, 6, 0x4000, &ports(80, 40000))),
            m,
        ),
        // A later fragment: its "ports" are payload bytes.
        (
            "tcp frag",
            eth(0x800, &ip4(A, B, 6, 0x0010, &ports(80, 80))),
            m,
        ),
        ("arp a?b", eth(0x806, &arp(A, B)), m),
        (
            "icmp6 1>2",
            eth(0x86dd, &ip6(v6(1), v6(2), 58, &[128, 0, 0, 0])),
            m,
        ),
        (
            "tcp6 1:1234>2:80",
            eth(0x86dd, &ip6(v6(1), v6(2), 6, &ports(1234, 80))),
            m,
        ),
        ("tcp6 behind frag header", eth(0x86dd, &frag), m),
        (
            "udp6 2:53>1:999",
            eth(0x86dd, &ip6(v6(2), v6(1), 17, &ports(53, 999))),
            m,
        ),
        (
            "icmp a>b vlan 10 (metadata)",
            eth(0x800, &ip4(A, B, 1, 0, &[8, 0, 0, 0])),
            Meta {
                vlan_tci: Some(0x2000 | 10),
            },
        ),
        ("lldp", eth(0x88cc, &[0; 30]), m),
        ("runt", vec![0; 10], m),
    ]
}

fn accepts(expr: &str, link: Link) -> Vec<&'static str> {
    let e = parse(&[expr.to_string()]).unwrap();
    let p = compile(&e, link).unwrap();
    frames()
        .into_iter()
        .filter(|(_, f, m)| {
            let f = if link == Link::RawIp {
                f.get(14..).unwrap_or_default()
            } else {
                f
            };
            run(&p, f, *m).expect("valid program") != 0
        })
        .map(|(n, _, _)| n)
        .collect()
}

#[test]
fn primitives() {
    let e = Link::Ethernet;
    assert_eq!(
        accepts("icmp", e),
        ["icmp a>b", "icmp a>b vlan 10 (metadata)"]
    );
    assert_eq!(accepts("icmp6", e), ["icmp6 1>2"]);
    assert_eq!(accepts("arp", e), ["arp a?b"]);
    assert_eq!(
        accepts("tcp", e),
        [
            "tcp b:80>a:40000",
            "tcp frag",
            "tcp6 1:1234>2:80",
            "tcp6 behind frag header"
        ]
    );
    assert_eq!(accepts("udp", e), ["udp a:5000>c:53", "udp6 2:53>1:999"]);
    assert_eq!(
        accepts("port 53", e),
        ["udp a:5000>c:53", "udp6 2:53>1:999"]
    );
    assert_eq!(accepts("src port 53", e), ["udp6 2:53>1:999"]);
    assert_eq!(accepts("dst port 80", e), ["tcp6 1:1234>2:80"]);
    assert_eq!(
        accepts("host 192.168.2.2", e),
        [
            "icmp a>b",
            "tcp b:80>a:40000",
            "tcp frag",
            "arp a?b",
            "icmp a>b vlan 10 (metadata)"
        ]
    );
    assert_eq!(accepts("src host 192.168.2.2", e), ["tcp b:80>a:40000"]);
    assert_eq!(accepts("dst net 10.0.0.0/8", e), ["udp a:5000>c:53"]);
    assert_eq!(accepts("src host fd00::2", e), ["udp6 2:53>1:999"]);
    assert_eq!(
        accepts("net fd00::/16", e).len(),
        4,
        "every IPv6 frame is in fd00::/16"
    );
    assert_eq!(accepts("vlan", e), ["icmp a>b vlan 10 (metadata)"]);
    assert_eq!(accepts("vlan 10", e), ["icmp a>b vlan 10 (metadata)"]);
    assert!(accepts("vlan 11", e).is_empty());
}

#[test]
fn operators_and_parentheses() {
    let e = Link::Ethernet;
    // A runt ends the program at its first out-of-range load, which the
    // kernel counts as a drop, under `not` too (as with tcpdump's programs).
    assert_eq!(accepts("not ip and not ip6 and not arp", e), ["lldp"]);
    assert_eq!(
        accepts("(icmp or arp) and host 192.168.2.1 and not vlan", e),
        ["icmp a>b", "arp a?b"]
    );
    assert_eq!(accepts("udp && !(port 53)", e), Vec::<&str>::new());
    assert_eq!(accepts("tcp || icmp6", e).len(), 5);
    assert_eq!(
        accepts("udp port 53", e),
        ["udp a:5000>c:53", "udp6 2:53>1:999"]
    );
    assert_eq!(accepts("tcp src port 80", e), ["tcp b:80>a:40000"]);
    assert_eq!(accepts("ip6 src host fd00::2", e), ["udp6 2:53>1:999"]);
}

#[test]
fn raw_ip_links() {
    let r = Link::RawIp;
    assert_eq!(
        accepts("icmp", r),
        ["icmp a>b", "icmp a>b vlan 10 (metadata)"]
    );
    assert!(accepts("arp", r).is_empty());
    assert!(accepts("vlan", r).is_empty());
    assert_eq!(
        accepts("port 53", r),
        ["udp a:5000>c:53", "udp6 2:53>1:999"]
    );
    assert_eq!(accepts("src host fd00::2", r), ["udp6 2:53>1:999"]);
}

#[test]
fn bad_filters_are_explained() {
    for (f, want) in [
        ("", "empty"),
        ("host", "needs a value"),
        ("host example.com", "not an IP address"),
        ("port 70000", "port number"),
        ("net 10.0.0.1/8", "host bits"),
        ("(icmp", "not closed"),
        ("icmp udp", "join expressions"),
        ("ether host 1", "not part of weft's filter language"),
        ("src tcp", "host, net or port"),
        ("vlan 5000", "0-4095"),
    ] {
        let e = parse(&[f.to_string()]).unwrap_err();
        assert!(e.message.contains(want), "{f}: {e}");
    }
}

#[test]
fn simple_programs_are_as_short_as_tcpdumps() {
    let p = compile(&parse(&["icmp".into()]).unwrap(), Link::Ethernet).unwrap();
    assert_eq!(p.len(), 6, "{}", listing(&p));
    assert_eq!(p[0], Insn::stmt(bpf::LD | bpf::H | bpf::ABS, 12));
}

/// Compile each expression with tcpdump (`-dd`) too and run both programs
/// over every frame: the verdicts must agree.
#[test]
fn same_verdicts_as_tcpdump() {
    let Ok(o) = std::process::Command::new("tcpdump")
        .arg("--version")
        .output()
    else {
        panic!("tcpdump is not installed; the README's test command installs it (apt-get install tcpdump)");
    };
    assert!(o.status.success());
    for (link, dlt) in [(Link::Ethernet, "EN10MB"), (Link::RawIp, "RAW")] {
        for expr in [
            "icmp",
            "icmp6",
            "arp",
            "ip",
            "ip6",
            "tcp",
            "udp",
            "port 53",
            "src port 53",
            "dst port 80",
            "host 192.168.2.2",
            "src host 192.168.2.1",
            "dst host fd00::2",
            "net 192.168.0.0/16",
            "dst net 10.0.0.0/8",
            "net fd00::/8",
            "not icmp and (udp or arp)",
            "tcp and not port 80",
            "udp port 53",
            "tcp dst port 80 or arp",
        ] {
            let out = std::process::Command::new("tcpdump")
                .args(["-dd", "-y", dlt, expr])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            // `arp` on a raw-IP link: tcpdump refuses what can never match.
            let theirs = if stderr.contains("rejects all packets") {
                vec![Insn::stmt(bpf::RET | bpf::K, 0)]
            } else {
                assert!(out.status.success(), "tcpdump -dd {expr}: {stderr}");
                bpf::parse_dd(&String::from_utf8_lossy(&out.stdout)).unwrap()
            };
            let ours = compile(&parse(&[expr.to_string()]).unwrap(), link).unwrap();
            for (name, f, _) in frames() {
                // tcpdump's own programs read the tag in-band only; the
                // metadata frame is ours to judge.
                let f = if link == Link::RawIp {
                    f.get(14..).unwrap_or_default().to_vec()
                } else {
                    f
                };
                let m = Meta::default();
                assert_eq!(
                    run(&ours, &f, m).unwrap() != 0,
                    run(&theirs, &f, m).unwrap() != 0,
                    "`{expr}` on {link:?} frame `{name}`:\nours:\n{}",
                    listing(&ours)
                );
            }
        }
    }
}
