use super::*;
use crate::netns;
use crate::sysctl;
use crate::testutil::{ip, NsGuard};

#[test]
fn echo_request_v4_bytes() {
    // type 8, code 0, checksum ~(0x0800 + 1 + 1), id 1, seq 1.
    assert_eq!(build_echo_v4(1, 1, &[]), [8, 0, 0xf7, 0xfd, 0, 1, 0, 1]);
    let p = build_echo_v4(0x1234, 7, b"abcd");
    assert_eq!(&p[..2], &[8, 0]);
    assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    assert_eq!(&p[8..], b"abcd");
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&p)
        .ones_complement();
    assert_eq!(sum, 0, "checksum over the whole message must verify");
}

#[test]
fn echo_request_v6_bytes() {
    assert_eq!(
        build_echo_v6(0xbeef, 2, b"x"),
        [128, 0, 0, 0, 0xbe, 0xef, 0, 2, b'x']
    );
}

/// 127.0.0.1 -> 127.0.0.1 echo reply, id 1 seq 1, TTL 64, as a raw IPv4
/// ICMP socket receives it.
const REPLY_V4: [u8; 28] = [
    0x45, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x6c, 0xdf, 127, 0, 0, 1, 127, 0,
    0, 1, // ICMP: echo reply, checksum ~(0 + 1 + 1)
    0x00, 0x00, 0xff, 0xfd, 0x00, 0x01, 0x00, 0x01,
];

#[test]
fn parse_v4_reply() {
    let (r, src) = parse_reply_v4(&REPLY_V4).unwrap();
    assert_eq!(
        r,
        EchoReply {
            id: 1,
            seq: 1,
            ttl: Some(64),
            icmp_len: 8
        }
    );
    assert_eq!(src, std::net::Ipv4Addr::LOCALHOST);
    let mut bad = REPLY_V4;
    bad[27] ^= 1; // seq changed, checksum now wrong
    assert_eq!(parse_reply_v4(&bad), None);
    let mut request = REPLY_V4;
    request[20] = 8;
    request[22] = 0xf7; // valid echo *request*: not a reply
    assert_eq!(parse_reply_v4(&request), None);
    assert_eq!(parse_reply_v4(&REPLY_V4[..24]), None);
}

#[test]
fn parse_v6_reply_and_own_request() {
    let r = parse_reply_v6(&[129, 0, 0x12, 0x34, 0x12, 0x34, 0, 5, 1, 2]).unwrap();
    assert_eq!((r.id, r.seq, r.icmp_len), (0x1234, 5, 10));
    assert_eq!(parse_reply_v6(&[128, 0, 0, 0, 0x12, 0x34, 0, 5]), None);
    assert_eq!(
        parse_own_request(&build_echo_v4(0x1234, 9, b"zz")),
        Some((0x1234, 9))
    );
    assert_eq!(
        parse_own_request(&build_echo_v6(0x4321, 3, b"")),
        Some((0x4321, 3))
    );
    assert_eq!(parse_own_request(&[0, 0, 0, 0, 0, 1, 0, 1]), None);
    assert_eq!(parse_own_request(&[8, 0, 0]), None);
}

#[test]
fn icmp_error_texts() {
    assert_eq!(
        describe_icmp_v4(3, 1, 0),
        (
            ErrorKind::HostUnreachable,
            "Destination Host Unreachable".into()
        )
    );
    assert_eq!(describe_icmp_v4(3, 0, 0).0, ErrorKind::NetUnreachable);
    assert_eq!(
        describe_icmp_v4(3, 4, 1400).1,
        "Frag needed and DF set (mtu = 1400)"
    );
    assert_eq!(describe_icmp_v4(11, 0, 0).1, "Time to live exceeded");
    assert_eq!(
        describe_icmp_v6(1, 3, 0),
        (
            ErrorKind::HostUnreachable,
            "Destination unreachable: Address unreachable".into()
        )
    );
    assert_eq!(
        describe_icmp_v6(1, 0, 0).1,
        "Destination unreachable: No route"
    );
    assert_eq!(describe_icmp_v6(2, 0, 1280).1, "Packet too big: mtu=1280");
    assert_eq!(describe_icmp_v6(3, 0, 0).1, "Time exceeded: Hop limit");
}

#[test]
fn rtt_statistics() {
    assert_eq!(rtt_stats(&[]), None);
    let s = rtt_stats(&[Duration::from_millis(1), Duration::from_millis(3)]).unwrap();
    assert_eq!(s.min, Duration::from_millis(1));
    assert_eq!(s.max, Duration::from_millis(3));
    assert_eq!(s.avg, Duration::from_millis(2));
    assert_eq!(s.mdev, Duration::from_millis(1));
}

#[test]
fn rejects_bad_options() {
    let opts = PingOptions {
        count: 0,
        ..Default::default()
    };
    let e = ping("127.0.0.1".parse().unwrap(), &opts, |_| {}).unwrap_err();
    assert!(e.to_string().contains("count"), "{e}");
}

fn quick(count: u32) -> PingOptions {
    PingOptions {
        count,
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(3),
        ..Default::default()
    }
}

#[test]
fn ping_loopback_v4_and_v6() {
    let mut guard = NsGuard::default();
    let ns = guard.create("pinglo");
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    netns::run_in_named(&ns, || {
        for target in ["127.0.0.1", "::1"] {
            let target: IpAddr = target.parse().unwrap();
            let mut events = Vec::new();
            let sum = ping(target, &quick(3), |e| events.push(e)).unwrap();
            assert_eq!(
                (sum.transmitted, sum.received, sum.errors),
                (3, 3, 0),
                "{events:?}"
            );
            assert_eq!(sum.loss_percent, 0.0);
            let rtt = sum.rtt.unwrap();
            assert!(rtt.min <= rtt.avg && rtt.avg <= rtt.max);
            for (i, e) in events.iter().enumerate() {
                match e {
                    PingEvent::Reply {
                        seq,
                        from,
                        bytes,
                        ttl,
                        ..
                    } => {
                        assert_eq!(*seq as usize, i + 1);
                        assert_eq!(*from, target);
                        assert_eq!(*bytes, 64);
                        assert_eq!(*ttl, Some(64));
                    }
                    other => panic!("{target}: unexpected {other:?}"),
                }
            }
        }
    })
    .unwrap();
}

/// A and B joined by a veth; only A's end has addresses, so A's ARP/ND
/// requests for B go unanswered.
fn unanswered_pair(guard: &mut NsGuard) -> String {
    let a = guard.create("pinga");
    let b = guard.create("pingb");
    ip(&[
        "-n", &a, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", &b,
    ]);
    ip(&["-n", &a, "addr", "add", "10.77.0.1/24", "dev", "a0"]);
    ip(&[
        "-n",
        &a,
        "addr",
        "add",
        "2001:db8:77::1/64",
        "dev",
        "a0",
        "nodad",
    ]);
    ip(&["-n", &a, "link", "set", "a0", "up"]);
    ip(&["-n", &b, "link", "set", "b0", "up"]);
    // Local ARP/ND failures are reported by an ICMP error that travels
    // over lo.
    ip(&["-n", &a, "link", "set", "lo", "up"]);
    // Give up resolving after ~0.2 s instead of 3 s.
    netns::run_in_named(&a, || {
        for fam in ["ipv4", "ipv6"] {
            sysctl::write(&format!("net.{fam}.neigh.a0.retrans_time_ms"), "100").unwrap();
            sysctl::write(&format!("net.{fam}.neigh.a0.mcast_solicit"), "2").unwrap();
        }
    })
    .unwrap();
    a
}

#[test]
fn unanswered_neighbour_is_host_unreachable() {
    let mut guard = NsGuard::default();
    let a = unanswered_pair(&mut guard);
    netns::run_in_named(&a, || {
        const V6_TEXT: &str = "Destination unreachable: Address unreachable";
        for (iface, target, text, from) in [
            (
                None,
                "10.77.0.2",
                "Destination Host Unreachable",
                "10.77.0.1",
            ),
            (
                Some("a0"),
                "10.77.0.2",
                "Destination Host Unreachable",
                "10.77.0.1",
            ),
            (None, "2001:db8:77::2", V6_TEXT, "2001:db8:77::1"),
            (Some("a0"), "2001:db8:77::2", V6_TEXT, "2001:db8:77::1"),
        ] {
            let target: IpAddr = target.parse().unwrap();
            let mut events = Vec::new();
            let opts = PingOptions {
                iface: iface.map(String::from),
                ..quick(2)
            };
            let sum = ping(target, &opts, |e| events.push(e)).unwrap();
            assert_eq!(
                (sum.transmitted, sum.received, sum.errors),
                (2, 0, 2),
                "{target} via {iface:?}: {events:?}"
            );
            assert_eq!(sum.loss_percent, 100.0);
            assert_eq!(sum.rtt, None);
            let mut seqs: Vec<u16> = events
                .iter()
                .map(|e| match e {
                    PingEvent::Error {
                        seq,
                        from: f,
                        kind,
                        text: t,
                    } => {
                        assert_eq!(*kind, ErrorKind::HostUnreachable);
                        assert_eq!(t, text);
                        assert_eq!(*f, Some(from.parse().unwrap()));
                        *seq
                    }
                    other => panic!("{target}: unexpected {other:?}"),
                })
                .collect();
            seqs.sort();
            assert_eq!(seqs, [1, 2]);
        }
    })
    .unwrap();
}

#[test]
fn reply_over_veth_and_timeouts_and_bad_iface() {
    let mut guard = NsGuard::default();
    let a = unanswered_pair(&mut guard);
    let b = guard.0[guard.0.len() - 1].clone();
    ip(&["-n", &b, "addr", "add", "10.77.0.2/24", "dev", "b0"]);
    netns::run_in_named(&a, || {
        let target: IpAddr = "10.77.0.2".parse().unwrap();
        let mut events = Vec::new();
        let opts = PingOptions {
            iface: Some("a0".into()),
            ttl: Some(5),
            size: 100,
            ..quick(2)
        };
        let sum = ping(target, &opts, |e| events.push(e)).unwrap();
        assert_eq!((sum.transmitted, sum.received), (2, 2), "{events:?}");
        assert!(matches!(
            events[0],
            PingEvent::Reply {
                bytes: 108,
                ttl: Some(64),
                ..
            }
        ));

        // Bound to lo, the request never reaches B: no answer at all.
        let opts = PingOptions {
            iface: Some("lo".into()),
            timeout: Duration::from_millis(200),
            ..quick(1)
        };
        let mut events = Vec::new();
        let sum = ping(target, &opts, |e| events.push(e)).unwrap();
        assert_eq!(sum.received, 0);
        assert!(
            events
                .iter()
                .all(|e| matches!(e, PingEvent::Timeout { .. } | PingEvent::Error { .. })),
            "{events:?}"
        );

        let opts = PingOptions {
            iface: Some("nosuch0".into()),
            ..quick(1)
        };
        let e = ping(target, &opts, |_| {}).unwrap_err().to_string();
        assert!(e.contains("no interface nosuch0"), "{e}");
    })
    .unwrap();
}
