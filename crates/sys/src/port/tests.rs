use std::os::fd::AsFd;
use std::time::Duration;

use super::*;
use crate::testutil::{ip, NsGuard};

fn frame(tag: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if let Some(t) = tag {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&t[2..]);
    }
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.extend((0..60u8).map(|i| i ^ 0x5a));
    f
}

/// How long a frame or a carrier may take on a loaded machine: the
/// receiving softirq and the kernel's link watch run late there.
const PATIENCE: Duration = Duration::from_secs(10);

/// Waits for the veth's carrier: frames sent before it are dropped.
fn wait_carrier(s: &PacketSocket) {
    let t0 = std::time::Instant::now();
    while !s.carrier().unwrap() {
        assert!(
            t0.elapsed() < PATIENCE,
            "{} never got a carrier",
            s.ifname()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A namespace of its own holding the veth pair `a` <-> `b`, both up
/// (with `mtu` when given).
fn veth_ns(g: &mut NsGuard, tag: &str, a: &str, b: &str, mtu: Option<&str>) -> String {
    let ns = g.create(tag);
    ip(&[
        "-n", &ns, "link", "add", a, "type", "veth", "peer", "name", b,
    ]);
    for d in [a, b] {
        match mtu {
            Some(m) => {
                ip(&["-n", &ns, "link", "set", d, "mtu", m, "up"]);
            }
            None => {
                ip(&["-n", &ns, "link", "set", d, "up"]);
            }
        }
    }
    ns
}

fn recv_one(s: &PacketSocket, rx: &mut RxBatch) -> (VnetHdr, Vec<u8>) {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < PATIENCE {
        // Skip the namespace's own IPv6 chatter; keep the test's frames.
        let n = s.recv_batch(rx).unwrap();
        for i in 0..n {
            if let Some((v, f)) = rx.frame(i) {
                if f.get(12..14) == Some(&[0x88, 0xb5]) || f.get(16..18) == Some(&[0x88, 0xb5]) {
                    return (v, f.to_vec());
                }
            }
        }
        if n > 0 {
            continue;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no frame arrived on {}", s.ifname());
}

#[test]
fn frames_cross_a_veth_with_tags_restored_and_carrier_tracked() {
    let mut g = NsGuard::default();
    let ns = veth_ns(&mut g, "pkt", "pa", "pb", None);
    crate::netns::run_in_named(&ns, || {
        let a = PacketSocket::open("pa").unwrap();
        let b = PacketSocket::open("pb").unwrap();
        let mut rx = RxBatch::new(4);
        // Carrier comes up asynchronously after `ip link set up`.
        wait_carrier(&a);

        // Untagged: byte for byte, sent as two gathered parts.
        let f = frame(None);
        let (sent, dropped) = a
            .send_batch(&[TxFrame {
                vnet: VnetHdr::default(),
                head: &f[..12],
                tag: None,
                tail: &f[12..],
            }])
            .unwrap();
        assert_eq!((sent, dropped), (1, 0));
        let (v, got) = recv_one(&b, &mut rx);
        assert_eq!(got, f);
        assert_eq!(v.flags & VNET_F_NEEDS_CSUM, 0);

        // Tagged (tag pushed by the gather list): veth's VLAN offload takes
        // it off on receive and recv_batch puts it back.
        let tag = [0x81, 0x00, 0x20, 0x0a]; // PCP 1, VID 10
        let plain = frame(None);
        a.send_batch(&[TxFrame {
            vnet: VnetHdr::default(),
            head: &plain[..12],
            tag: Some(tag),
            tail: &plain[12..],
        }])
        .unwrap();
        let (_, got) = recv_one(&b, &mut rx);
        assert_eq!(got, frame(Some(tag)));

        // A socket does not hear its own frames (the namespace's own IPv6
        // chatter from pb may arrive; none of the test's frames may).
        let n = a.recv_batch(&mut rx).unwrap();
        let own = (0..n).any(|i| {
            rx.frame(i).is_some_and(|(_, f)| {
                f.get(12..14) == Some(&[0x88, 0xb5]) || f.get(16..18) == Some(&[0x88, 0xb5])
            })
        });
        assert!(!own, "pa heard a frame it sent itself");
    })
    .unwrap();

    // The peer going down drops the carrier; the device going away is ENODEV.
    let (a, b) = crate::netns::run_in_named(&ns, || {
        (
            PacketSocket::open("pa").unwrap(),
            PacketSocket::open("pb").unwrap(),
        )
    })
    .unwrap();
    ip(&["-n", &ns, "link", "set", "pa", "down"]);
    // The kernel's link watch passes the peer's carrier on a moment later.
    let t0 = std::time::Instant::now();
    while b.carrier().unwrap() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(3),
            "pb kept its carrier with pa down"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ip(&["-n", &ns, "link", "del", "pa"]);
    assert_eq!(b.carrier().unwrap_err().raw_os_error(), Some(libc::ENODEV));
    drop(a);
}

/// Plain frames leave through AF_XDP, frames needing an offload through
/// AF_PACKET, in order; a capture on the port moves every frame to
/// AF_PACKET (AF_XDP frames skip the packet taps), and the capture sees them.
#[test]
fn plain_frames_leave_by_af_xdp_until_a_capture_starts() {
    let mut g = NsGuard::default();
    let ns = veth_ns(&mut g, "xsk", "pa", "pb", None);
    crate::netns::run_in_named(&ns, || {
        let a = PacketSocket::open("pa").unwrap();
        let b = PacketSocket::open("pb").unwrap();
        let mut rx = RxBatch::new(8);
        wait_carrier(&a);
        if a.tx_path() != "AF_XDP" {
            eprintln!(
                "SKIPPED the AF_XDP half: {} (the AF_PACKET path is tested above)",
                a.tx_path()
            );
            return;
        }
        // Three frames told apart by their last byte; the middle one is an
        // IPv4/UDP frame whose checksum is left to the receiver (AF_XDP has
        // no offload header), so the three take both paths and must still
        // arrive in order.
        let mut udp = frame(None);
        udp[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut iph = [
            0x45u8, 0, 0, 60, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let sum: u32 = iph
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        iph[10..12].copy_from_slice(&sum.to_be_bytes());
        udp[14..34].copy_from_slice(&iph);
        // UDP 40000 -> 9999, length 40, checksum seed 0.
        udp[34..42].copy_from_slice(&[0x9c, 0x40, 0x27, 0x0f, 0, 40, 0, 0]);
        udp.truncate(74);
        let fs: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                let mut f = if i == 1 { udp.clone() } else { frame(None) };
                *f.last_mut().unwrap() = i;
                f
            })
            .collect();
        let csum = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let tx: Vec<TxFrame<'_>> = fs
            .iter()
            .enumerate()
            .map(|(i, f)| TxFrame {
                vnet: if i == 1 { csum } else { VnetHdr::default() },
                head: &f[..14],
                tag: None,
                tail: &f[14..],
            })
            .collect();
        assert_eq!(a.send_batch(&tx).unwrap(), (3, 0));
        let mut got: Vec<Vec<u8>> = Vec::new();
        let t0 = std::time::Instant::now();
        while got.len() < 3 {
            assert!(
                t0.elapsed() < PATIENCE,
                "only {} of 3 frames arrived",
                got.len()
            );
            let n = b.recv_batch(&mut rx).unwrap();
            for i in 0..n {
                if let Some((_, f)) = rx.frame(i) {
                    let ours = f.get(12..14) == Some(&[0x88, 0xb5])
                        || (f.get(12..14) == Some(&[0x08, 0x00])
                            && f.get(36..38) == Some(&[0x27, 0x0f]));
                    if ours {
                        got.push(f.to_vec());
                    }
                }
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let last: Vec<u8> = got.iter().map(|f| *f.last().unwrap()).collect();
        assert_eq!(last, [0, 1, 2], "frames out of order");
        assert_eq!(got[0], fs[0]);
        assert_eq!(got[2], fs[2]);
        // The UDP frame arrives as sent except its checksum, which the
        // kernel may fill in or leave to the receiver.
        assert_eq!(got[1][..40], fs[1][..40]);
        assert_eq!(got[1][42..], fs[1][42..]);

        // A capture on pa: the next carrier check moves pa to AF_PACKET.
        let cap = crate::packet::open_here("pa", None).unwrap();
        a.carrier().unwrap();
        assert!(a.tx_path().starts_with("AF_PACKET"), "{}", a.tx_path());
        assert_eq!(a.send_batch(&tx[..1]).unwrap(), (1, 0));
        assert_eq!(recv_one(&b, &mut rx).1, fs[0]);
        let t0 = std::time::Instant::now();
        let mut buf = [0u8; 2048];
        loop {
            if let Some(r) = cap.recv(&mut buf).unwrap() {
                if buf[..r.len] == fs[0][..] {
                    break;
                }
                continue;
            }
            assert!(
                t0.elapsed() < PATIENCE,
                "the capture never saw the frame sent"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The capture gone, AF_XDP again.
        drop(cap);
        a.carrier().unwrap();
        assert_eq!(a.tx_path(), "AF_XDP");
    })
    .unwrap();
}

#[test]
fn vnet_header_moves_with_a_tag() {
    let v = VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: 1,
        hdr_len: 66,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    assert_eq!(VnetHdr::from_bytes(&v.to_bytes()), v);
    let t = v.shifted(4);
    assert_eq!(
        (t.csum_start, t.hdr_len, t.csum_offset, t.gso_size),
        (38, 70, 16, 1448)
    );
    assert_eq!(t.shifted(-4), v);
    // Without NEEDS_CSUM the checksum fields mean nothing and stay.
    let plain = VnetHdr::default().shifted(4);
    assert_eq!(plain, VnetHdr::default());
}

#[test]
fn poller_reports_readable_sockets() {
    let mut g = NsGuard::default();
    let ns = veth_ns(&mut g, "poll", "qa", "qb", None);
    let (a, b) = crate::netns::run_in_named(&ns, || {
        (
            PacketSocket::open("qa").unwrap(),
            PacketSocket::open("qb").unwrap(),
        )
    })
    .unwrap();
    let mut p = Poller::new().unwrap();
    p.add(b.as_fd(), 7).unwrap();
    let mut ready = Vec::new();
    let f = frame(None);
    wait_carrier(&a);
    // The namespace's own IPv6 chatter may arrive too: drain it first.
    let mut rx = RxBatch::new(8);
    while b.recv_batch(&mut rx).unwrap() > 0 {}
    a.send_batch(&[TxFrame {
        vnet: VnetHdr::default(),
        head: &f,
        tag: None,
        tail: &[],
    }])
    .unwrap();
    p.wait(&mut ready, Some(Duration::from_secs(2))).unwrap();
    assert_eq!(
        ready,
        vec![Ready {
            token: 7,
            error: false
        }]
    );
    let mut seen = false;
    while let Ok(n @ 1..) = b.recv_batch(&mut rx) {
        seen |= (0..n).any(|i| rx.frame(i).is_some_and(|(_, x)| x == f.as_slice()));
    }
    assert!(seen, "the frame sent on qa did not arrive on qb");
}

#[test]
fn frames_larger_than_a_ring_slot_arrive_whole_and_in_order() {
    let mut g = NsGuard::default();
    let ns = veth_ns(&mut g, "big", "ba", "bb", Some("9000"));
    crate::netns::run_in_named(&ns, || {
        let a = PacketSocket::open("ba").unwrap();
        let b = PacketSocket::open("bb").unwrap();
        assert!(b.has_ring(), "no receive ring on bb");
        wait_carrier(&a);
        let mut rx = RxBatch::new(8);
        while b.recv_batch(&mut rx).unwrap() > 0 {}
        let small = frame(None);
        let mut big = frame(None);
        big.extend((0..5000u32).map(|i| (i * 7) as u8));
        let frames = [small.clone(), big.clone(), small.clone(), big.clone()];
        let tx: Vec<TxFrame<'_>> = frames
            .iter()
            .map(|f| TxFrame {
                vnet: VnetHdr::default(),
                head: f,
                tag: None,
                tail: &[],
            })
            .collect();
        assert_eq!(a.send_batch(&tx).unwrap(), (4, 0));
        let mut got = Vec::new();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < PATIENCE {
            let n = b.recv_batch(&mut rx).unwrap();
            for i in 0..n {
                if let Some((_, f)) = rx.frame(i) {
                    if f.get(12..14) == Some(&[0x88, 0xb5]) {
                        got.push(f.to_vec());
                    }
                }
            }
            if got.len() == 4 {
                break;
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(got.len(), 4, "frames lost");
        assert!(got == frames, "frames changed or reordered");
        // After release the slots are the kernel's again: a ring's worth
        // of frames more still arrives.
        rx.release();
        let many: Vec<TxFrame<'_>> = (0..600)
            .map(|_| TxFrame {
                vnet: VnetHdr::default(),
                head: &small,
                tag: None,
                tail: &[],
            })
            .collect();
        let mut seen = 0;
        for chunk in many.chunks(100) {
            a.send_batch(chunk).unwrap();
            loop {
                let n = b.recv_batch(&mut rx).unwrap();
                if n == 0 {
                    break;
                }
                seen += (0..n)
                    .filter(|&i| rx.frame(i).is_some_and(|(_, f)| f == small.as_slice()))
                    .count();
            }
        }
        assert_eq!(seen, 600);
    })
    .unwrap();
}

#[test]
fn skipped_destinations_do_not_reach_the_socket() {
    let mut g = NsGuard::default();
    let ns = veth_ns(&mut g, "skip", "ka", "kb", None);
    crate::netns::run_in_named(&ns, || {
        let a = PacketSocket::open("ka").unwrap();
        let b = PacketSocket::open("kb").unwrap();
        wait_carrier(&a);
        let mac = [0x02, 0xcc, 0, 0, 0, 7];
        let frame = |dst: [u8; 6], ethertype: [u8; 2]| {
            let mut f = dst.to_vec();
            f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&ethertype);
            f.extend((0..46u8).map(|i| i ^ 0x33));
            f
        };
        let mut rx = RxBatch::new(16);
        let mut calls = 0u8;
        // Whether `f` arrives. A marker frame the filter passes goes right
        // behind it, in the same batch; a veth keeps their order, so once
        // the marker is in, so is `f` unless it was skipped: no time limit
        // tells a skipped frame from a late one.
        let mut gets = |f: &[u8], tag: Option<[u8; 4]>| {
            calls += 1;
            let mut marker = frame([0x02, 0xcc, 0, 0, 0, 0x7e], [0x88, 0xb5]);
            marker[14] = calls;
            while b.recv_batch(&mut rx).unwrap() > 0 {}
            let sent = a
                .send_batch(&[
                    TxFrame {
                        vnet: VnetHdr::default(),
                        head: &f[..12],
                        tag,
                        tail: &f[12..],
                    },
                    TxFrame {
                        vnet: VnetHdr::default(),
                        head: &marker,
                        tag: None,
                        tail: &[],
                    },
                ])
                .unwrap();
            assert_eq!(sent, (2, 0));
            let (mut seen, t0) = (false, std::time::Instant::now());
            loop {
                let n = b.recv_batch(&mut rx).unwrap();
                for i in 0..n {
                    let Some((_, x)) = rx.frame(i) else { continue };
                    if x == marker.as_slice() {
                        return seen;
                    }
                    seen |= x.ends_with(&f[14..]) && x.starts_with(&f[..12]);
                }
                assert!(t0.elapsed() < PATIENCE, "the marker frame never arrived");
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let src = [0x02, 0, 0, 0, 0, 1];
        b.skip_pairs(&[(src, [0x02, 0xcc, 0, 0, 0, 9]), (src, mac)])
            .unwrap();
        let ip4 = frame(mac, [0x08, 0x00]);
        assert!(!gets(&ip4, None), "skipped IPv4 frame arrived");
        assert!(
            !gets(&frame(mac, [0x86, 0xdd]), None),
            "skipped IPv6 frame arrived"
        );
        assert!(
            gets(&frame(mac, [0x08, 0x06]), None),
            "ARP must still arrive"
        );
        assert!(
            gets(&ip4, Some([0x81, 0x00, 0, 5])),
            "tagged frames must still arrive"
        );
        assert!(gets(&frame([0x02, 0xcc, 0, 0, 0, 8], [0x08, 0x00]), None));
        let mut other_src = ip4.clone();
        other_src[11] = 2;
        assert!(gets(&other_src, None), "another source must still arrive");
        b.skip_pairs(&[]).unwrap();
        assert!(gets(&ip4, None), "filter not removed");
        b.skip_pairs(&[]).unwrap();
    })
    .unwrap();
}

#[test]
fn poller_sleeps_sub_millisecond_timeouts_with_nanosecond_resolution() {
    let mut p = Poller::new().unwrap();
    let mut out = Vec::new();
    for us in [50u64, 300, 1500] {
        let t = Duration::from_micros(us);
        let t0 = std::time::Instant::now();
        p.wait(&mut out, Some(t)).unwrap();
        assert!(out.is_empty());
        assert!(t0.elapsed() >= t, "woke after {:?} of {t:?}", t0.elapsed());
    }
    // This kernel (6.18) has epoll_pwait2: impairment delays are not
    // rounded up to whole milliseconds.
    assert!(p.pwait2, "epoll_pwait2 fell back to epoll_wait");
}

#[test]
fn frames_dropped_for_a_full_ring_are_counted() {
    let mut g = NsGuard::default();
    let ns = veth_ns(&mut g, "full", "fa", "fb", None);
    crate::netns::run_in_named(&ns, || {
        let a = PacketSocket::open("fa").unwrap();
        let b = PacketSocket::open("fb").unwrap();
        assert!(b.has_ring(), "no receive ring on fb");
        wait_carrier(&a);
        // Frames sent, none read: once the ring's slots (512 or 2048) are
        // taken, the kernel drops the rest for want of room, and says so.
        let f = frame(None);
        let tx: Vec<TxFrame<'_>> = (0..64)
            .map(|_| TxFrame {
                vnet: VnetHdr::default(),
                head: &f,
                tag: None,
                tail: &[],
            })
            .collect();
        let mut sent = 0;
        let t0 = std::time::Instant::now();
        // veth delivers in the sender's softirq, which may run late on a
        // loaded machine (and drop on its own backlog): send until drops
        // show, bounded.
        while b.rx_dropped() == 0 {
            assert!(
                t0.elapsed() < PATIENCE && sent < 64 * 1024,
                "{sent} frames sent into a ring, none counted dropped"
            );
            assert_eq!(a.send_batch(&tx).unwrap(), (64, 0));
            sent += 64;
            if sent >= 1024 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let n = b.rx_dropped();
        assert!(sent >= 512, "dropped {n} after only {sent} frames");
        // Reading the kernel's counter resets it: the socket adds up.
        assert!(b.rx_dropped() >= n);
    })
    .unwrap();
}

/// Frames sent while the far end is down are dropped by the kernel
/// (`sendto` says EBUSY per frame): at once, without stalling the
/// datapath's thread, and the port keeps AF_XDP for when it is up again.
#[test]
fn frames_to_a_peer_that_is_down_are_dropped_at_once() {
    let mut g = NsGuard::default();
    let ns = veth_ns(&mut g, "xdown", "da", "db", None);
    crate::netns::run_in_named(&ns, || {
        let a = PacketSocket::open("da").unwrap();
        wait_carrier(&a);
        if a.tx_path() != "AF_XDP" {
            eprintln!(
                "SKIPPED: {} (the AF_PACKET path drops at once)",
                a.tx_path()
            );
            return;
        }
        ip(&["link", "set", "db", "down"]);
        let t0 = std::time::Instant::now();
        while a.carrier().unwrap() {
            assert!(t0.elapsed() < PATIENCE, "da kept its carrier");
            std::thread::sleep(Duration::from_millis(5));
        }
        let f = frame(None);
        let tx: Vec<TxFrame<'_>> = (0..64)
            .map(|_| TxFrame {
                vnet: VnetHdr::default(),
                head: &f[..14],
                tag: None,
                tail: &f[14..],
            })
            .collect();
        // The least of three tries, so a loaded machine's preemption does
        // not count: a wait per frame or per batch would (100 µs each).
        let took = (0..3)
            .map(|_| {
                let t0 = std::time::Instant::now();
                for _ in 0..4 {
                    let _ = a.send_batch(&tx);
                }
                t0.elapsed()
            })
            .min()
            .unwrap();
        eprintln!("256 frames to a down peer: {took:?}, path {}", a.tx_path());
        assert!(
            took < Duration::from_millis(20),
            "256 frames to a down peer took {took:?}"
        );
        assert_eq!(a.tx_path(), "AF_XDP");
    })
    .unwrap();
}
