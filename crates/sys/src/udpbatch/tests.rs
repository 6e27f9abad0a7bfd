//! UDP batches with real bytes: GSO grouping and GRO segments (pure), UDP
//! GSO/GRO and the fallback through the kernel (in a namespace, on its
//! loopback).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super as udp;
use super::{segments, Group, TxPlan, TxScratch, MAX_SEGS};
use crate::netns;
use crate::testutil::{ip, NsGuard};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A datagram of `len` bytes whose content says which one it is.
fn datagram(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn plan_with(gso: bool, items: &[(&str, usize)]) -> TxPlan {
    let mut p = TxPlan::new(1 << 20, gso);
    for (i, (to, len)) in items.iter().enumerate() {
        assert!(p.push(addr(to), &datagram(i, *len)));
    }
    p
}

#[test]
fn gso_groups_equal_sizes_to_one_peer_with_one_shorter_last() {
    let a = "10.0.0.2:5000";
    let b = "10.0.0.3:5000";
    let p = plan_with(
        true,
        &[
            (a, 1472),
            (a, 1472),
            (a, 1472),
            (a, 900),
            (a, 1472),
            (b, 1472),
            (b, 1500),
        ],
    );
    let g: Vec<(usize, usize, usize, usize)> = p
        .groups
        .iter()
        .map(|g| (g.start, g.len, g.seg, g.count))
        .collect();
    assert_eq!(
        g,
        vec![
            // Three equal and a shorter last close the group ...
            (0, 3 * 1472 + 900, 1472, 4),
            // ... so the next starts anew; another peer, another group;
            (4 * 1472 + 900 - 1472, 1472, 1472, 1),
            (5 * 1472 + 900 - 1472, 1472, 1472, 1),
            // a longer datagram cannot follow in the same group.
            (6 * 1472 + 900 - 1472, 1500, 1500, 1),
        ]
    );
    assert_eq!(p.groups[2].to, addr(b));
    assert_eq!(p.datagrams(), 7);
    // Each datagram's bytes are where the group says.
    let all: Vec<Vec<u8>> = p
        .groups
        .iter()
        .flat_map(|g| {
            g.datagrams()
                .map(|r| p.bytes(r).to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    let lens = [1472, 1472, 1472, 900, 1472, 1472, 1500];
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d, &datagram(i, lens[i]), "datagram {i}");
    }
}

#[test]
fn gso_groups_respect_the_kernel_limits_and_can_be_off() {
    let a = "10.0.0.2:5000";
    // 100 small datagrams: at most MAX_SEGS per group.
    let p = plan_with(true, &vec![(a, 100); 100]);
    assert_eq!(
        p.groups.iter().map(|g| g.count).collect::<Vec<_>>(),
        vec![MAX_SEGS, 100 - MAX_SEGS]
    );
    // 60 full-size ones: no more than one UDP datagram's worth per group.
    let p = plan_with(true, &vec![(a, 1472); 60]);
    for g in &p.groups {
        assert!(g.len <= udp::MAX_GSO_BYTES, "{g:?}");
    }
    assert_eq!(p.groups[0].count, udp::MAX_GSO_BYTES / 1472);
    assert_eq!(p.datagrams(), 60);
    // Without GSO every datagram is its own group.
    let p = plan_with(false, &[(a, 1472); 5]);
    assert_eq!(p.groups.len(), 5);
    assert!(p.groups.iter().all(|g| g.count == 1));
}

#[test]
fn gro_segments_cut_glued_datagrams_apart() {
    assert_eq!(
        segments(3000, 1000).collect::<Vec<_>>(),
        vec![0..1000, 1000..2000, 2000..3000]
    );
    assert_eq!(
        segments(2500, 1000).collect::<Vec<_>>(),
        vec![0..1000, 1000..2000, 2000..2500]
    );
    assert_eq!(segments(700, 0).collect::<Vec<_>>(), vec![0..700]);
    assert_eq!(segments(700, 1000).collect::<Vec<_>>(), vec![0..700]);
    let g = Group {
        to: addr("10.0.0.2:1"),
        start: 100,
        len: 250,
        seg: 100,
        count: 3,
    };
    assert_eq!(
        g.datagrams().collect::<Vec<_>>(),
        vec![100..200, 200..300, 300..350]
    );
}

/// Receive `n` datagrams on `s` (un-gluing GRO runs); the number of
/// messages they came in.
fn receive_all(s: &UdpSocket, gro: bool, n: usize) -> (Vec<Vec<u8>>, usize) {
    let mut rb = udp::RxBatch::new(2048, gro);
    let mut got = vec![];
    let mut msgs = 0;
    let t0 = std::time::Instant::now();
    while got.len() < n && t0.elapsed() < Duration::from_secs(5) {
        match rb.recv(s.as_raw_fd()) {
            Ok(k) => {
                for i in 0..k {
                    msgs += 1;
                    let d = rb.data(i);
                    for r in segments(d.len(), rb.segs[i]) {
                        got.push(d[r].to_vec());
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    (got, msgs)
}

/// In a fresh namespace (loopback up, MTU `lo_mtu`): send `lens`-sized
/// datagrams through a plan, receive them with or without GRO.
fn over_loopback(
    lo_mtu: u32,
    gso: bool,
    gro: bool,
    lens: &[usize],
) -> (udp::SendResult, bool, Vec<Vec<u8>>, usize) {
    over_loopback_at("127.0.0.1", lo_mtu, gso, gro, lens)
}

fn over_loopback_at(
    host: &str,
    lo_mtu: u32,
    gso: bool,
    gro: bool,
    lens: &[usize],
) -> (udp::SendResult, bool, Vec<Vec<u8>>, usize) {
    let mut g = NsGuard::default();
    let ns = g.create("udpgso");
    ip(&[
        "-n",
        &ns,
        "link",
        "set",
        "lo",
        "mtu",
        &lo_mtu.to_string(),
        "up",
    ]);
    netns::run_in_named(&ns, || {
        // The tunnel's own socket: fragmenting allowed (IP_PMTUDISC_DONT).
        let any = if host.contains(':') {
            format!("[{host}]:0")
        } else {
            format!("{host}:0")
        };
        let tx = super::udp_socket(addr(&any)).unwrap();
        let rx = UdpSocket::bind(&any).unwrap();
        rx.set_nonblocking(true).unwrap();
        assert!(
            udp::gso_supported(tx.as_raw_fd()),
            "this kernel has UDP GSO"
        );
        if gro {
            assert!(udp::enable_gro(rx.as_raw_fd()), "this kernel has UDP GRO");
        }
        let to = rx.local_addr().unwrap();
        let mut p = TxPlan::new(1 << 20, gso);
        for (i, &len) in lens.iter().enumerate() {
            assert!(p.push(to, &datagram(i, len)));
        }
        let r = udp::send(tx.as_raw_fd(), &mut p, &mut TxScratch::default());
        assert_eq!(p.datagrams(), 0, "the plan is emptied");
        let (got, msgs) = receive_all(&rx, gro, lens.len());
        (r, p.gso, got, msgs)
    })
    .unwrap()
}

#[test]
fn udp_gso_sends_groups_and_gro_receives_them_glued() {
    let mut lens = vec![1200; 20];
    lens.push(500);
    let (r, still_gso, got, msgs) = over_loopback(65536, true, true, &lens);
    assert!(r.gso_msgs >= 1, "{r:?}");
    assert_eq!(r.failed, 0);
    assert!(!r.fell_back && still_gso);
    assert_eq!(got.len(), 21);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d, &datagram(i, lens[i]), "datagram {i}");
    }
    // GRO glued some of them (loopback passes GSO skbs up whole).
    assert!(msgs < 21, "{msgs} messages for 21 datagrams");

    // A receiver without GRO gets them one by one, the same bytes.
    let (r, _, got, msgs) = over_loopback(65536, true, false, &lens);
    assert!(r.gso_msgs >= 1);
    assert_eq!(msgs, 21);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d, &datagram(i, lens[i]), "datagram {i}");
    }
}

#[test]
fn udp_gso_and_gro_over_ipv6() {
    // The largest group an IPv6 datagram holds: 44 full-size datagrams.
    let lens = vec![1452; 50];
    let (r, still_gso, got, msgs) = over_loopback_at("::1", 65536, true, true, &lens);
    assert!(r.gso_msgs >= 2 && !r.fell_back && still_gso, "{r:?}");
    assert_eq!(got.len(), 50);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d, &datagram(i, 1452), "datagram {i}");
    }
    assert!(msgs < 50);
}

#[test]
fn udp_gso_refused_by_the_kernel_falls_back_to_one_datagram_each() {
    // Datagrams bigger than the path MTU: the kernel refuses a GSO
    // message (EINVAL) but fragments plain datagrams, which is what the
    // tunnel wants (docs/tunnel.md, MTU). Everything still arrives, once.
    let lens = vec![1400; 10];
    let (r, still_gso, got, _) = over_loopback(1000, true, true, &lens);
    assert!(r.fell_back, "{r:?}");
    assert!(!still_gso, "GSO stays off after a refusal");
    assert_eq!(r.gso_msgs, 0);
    assert_eq!(r.failed, 0);
    assert_eq!(got.len(), 10, "each datagram exactly once");
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d, &datagram(i, 1400), "datagram {i}");
    }
    // The same without GSO from the start: no fallback needed.
    let (r, _, got, _) = over_loopback(1000, false, false, &lens);
    assert!(!r.fell_back && r.gso_msgs == 0 && got.len() == 10);
}
