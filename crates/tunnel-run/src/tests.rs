//! The tunnel loop's own logic with real bytes: TSO splitting / GRO
//! coalescing of TCP segments as the tunnel does them on an offloading
//! TUN or TAP, and the handshake warnings.

use etherparse::{IpNumber, Ipv4HeaderSlice, PacketBuilder, TcpHeaderSlice};
use tun_rs::{GROTable, VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4};

use std::time::Duration;

use super::{HandshakeWatch, VNET};

const SRC: [u8; 4] = [10, 9, 0, 1];
const DST: [u8; 4] = [10, 9, 0, 2];

/// A TCP/IPv4 packet with valid checksums.
fn tcp_packet(seq: u32, payload: &[u8], psh: bool, fin: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(SRC, DST, 64)
        .tcp(40000, 5201, seq, 64240)
        .ack(777);
    if psh {
        b = b.psh();
    }
    if fin {
        b = b.fin();
    }
    let mut out = vec![];
    b.write(&mut out, payload).unwrap();
    out
}

/// Check an IPv4/TCP packet's checksums; returns (seq, flags, payload).
fn check_tcp(p: &[u8]) -> (u32, (bool, bool, bool), Vec<u8>, u16) {
    let iph = Ipv4HeaderSlice::from_slice(p).unwrap();
    let h = iph.to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
    assert_eq!(usize::from(h.total_len), p.len(), "IP total length");
    assert_eq!(h.protocol, IpNumber::TCP);
    let tcp = TcpHeaderSlice::from_slice(&p[iph.slice().len()..]).unwrap();
    let payload = &p[iph.slice().len() + tcp.slice().len()..];
    let th = tcp.to_header();
    assert_eq!(
        th.checksum,
        th.calc_checksum_ipv4(&h, payload).unwrap(),
        "TCP checksum"
    );
    (
        th.sequence_number,
        (th.psh, th.fin, th.ack),
        payload.to_vec(),
        h.identification,
    )
}

/// What the TUN hands over with TSO: one 64 KiB-class TCP segment with a
/// virtio-net header (checksum left to us, segment size 1400).
fn tso_segment(payload: &[u8]) -> (VirtioNetHdr, Vec<u8>) {
    let mut p = tcp_packet(1_000_000, payload, true, true);
    // As the kernel leaves it: the TCP checksum field holds only the
    // pseudo-header sum (CHECKSUM_PARTIAL); garble it to be sure it is
    // recomputed, not kept.
    p[36] = 0xde;
    p[37] = 0xad;
    let hdr = VirtioNetHdr {
        flags: 1, // VIRTIO_NET_HDR_F_NEEDS_CSUM
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: 1400,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, p)
}

#[test]
fn tso_segments_split_into_mtu_packets_with_checksums_sequence_and_last_flags() {
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 13 % 251) as u8).collect();
    let (hdr, mut p) = tso_segment(&payload);
    let mut bufs = vec![vec![0u8; 1600]; 64];
    let mut sizes = vec![0usize; 64];
    let n = tun_rs::gso_split(&mut p, hdr, &mut bufs, &mut sizes, 0, false).unwrap();
    assert_eq!(n, 4, "5000 bytes in 1400-byte segments");
    let mut joined = vec![];
    let mut ids = vec![];
    for i in 0..n {
        let pkt = &bufs[i][..sizes[i]];
        assert!(pkt.len() <= 1440, "fits the tunnel's inner MTU");
        let (seq, (psh, fin, ack), data, id) = check_tcp(pkt);
        assert_eq!(seq, 1_000_000 + 1400 * i as u32, "sequence number of {i}");
        let last = i == n - 1;
        assert_eq!((psh, fin), (last, last), "PSH/FIN only on the last");
        assert!(ack);
        assert_eq!(data.len(), if last { 800 } else { 1400 });
        joined.extend(data);
        ids.push(id);
    }
    assert_eq!(joined, payload, "the payload, in order, once");
    assert!(
        ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{ids:?}"
    );
}

#[test]
fn received_segments_of_one_flow_are_coalesced_for_the_tun() {
    // Four consecutive 1400-byte segments of one flow, as they come out of
    // the tunnel, each behind VNET spare bytes (as DevWriter keeps them).
    let payload: Vec<u8> = (0..5600u32).map(|i| (i * 7 % 253) as u8).collect();
    let mut bufs: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            // Coalescing appends in place, up to the capacity.
            let mut b = Vec::with_capacity(VNET + 65535);
            b.resize(VNET, 0);
            let last = i == 3;
            b.extend(tcp_packet(
                5000 + 1400 * i,
                &payload[1400 * i as usize..1400 * (i as usize + 1)],
                last,
                false,
            ));
            b
        })
        .collect();
    let mut gro = GROTable::default();
    gro.apply_gro(&mut bufs, VNET, false).unwrap();
    let hdr = VirtioNetHdr::decode(&bufs[0][..VNET]).unwrap();
    assert_eq!(hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    assert_eq!(hdr.gso_size, 1400);
    assert_eq!(hdr.flags & 1, 1, "checksum left to the kernel");
    assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 16));
    let p = &bufs[0][VNET..];
    assert_eq!(p.len(), 40 + 5600, "one packet with all four payloads");
    let iph = Ipv4HeaderSlice::from_slice(p).unwrap().to_header();
    assert_eq!(iph.header_checksum, iph.calc_header_checksum());
    assert_eq!(usize::from(iph.total_len), p.len());
    let tcp = TcpHeaderSlice::from_slice(&p[20..]).unwrap();
    assert_eq!(tcp.sequence_number(), 5000);
    assert!(tcp.psh(), "the last segment's PSH is kept");
    assert_eq!(&p[40..], &payload[..]);

    // A gap in the sequence (a lost packet) is not glued over.
    let mut bufs: Vec<Vec<u8>> = [0u32, 2]
        .iter()
        .map(|&i| {
            let mut b = Vec::with_capacity(VNET + 65535);
            b.resize(VNET, 0);
            b.extend(tcp_packet(
                5000 + 1400 * i,
                &payload[1400 * i as usize..1400 * (i as usize + 1)],
                false,
                false,
            ));
            b
        })
        .collect();
    let mut gro = GROTable::default();
    gro.apply_gro(&mut bufs, VNET, false).unwrap();
    assert_eq!(bufs[0].len(), VNET + 1440);
    assert_eq!(bufs[1].len(), VNET + 1440);
    assert_eq!(
        VirtioNetHdr::decode(&bufs[0][..VNET]).unwrap().gso_type,
        0,
        "sent as it is"
    );
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

#[test]
fn tap_tso_frames_split_into_mtu_frames_each_with_the_ethernet_header() {
    // What an offloading TAP (MTU 1426) hands over: a virtio-net header,
    // then Ethernet + IPv4 + TCP with 4000 bytes, segment size 1386.
    let payload: Vec<u8> = (0..4000u32).map(|i| (i * 11 % 241) as u8).collect();
    let mut frame = vec![];
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(SRC, DST, 64)
        .tcp(40000, 5201, 7_000, 64240)
        .ack(1)
        .psh()
        .write(&mut frame, &payload)
        .unwrap();
    frame[14 + 36] ^= 0x55; // a partial checksum, to be recomputed
    let hdr = VirtioNetHdr {
        flags: 1,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1386,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut raw = vec![0u8; VNET];
    hdr.encode(&mut raw).unwrap();
    raw.extend(&frame);
    let mut out = vec![vec![0u8; 1600]; 64];
    let mut sizes = vec![0; 64];
    let n = super::tap::split_frame(&mut raw, &mut out, &mut sizes).unwrap();
    assert_eq!(n, 3, "4000 bytes in 1386-byte segments");
    let mut joined = vec![];
    for i in 0..n {
        let f = &out[i][..sizes[i]];
        assert!(f.len() <= 14 + 1426, "fits the TAP's MTU");
        assert_eq!(&f[..14], &frame[..14], "the Ethernet header on every frame");
        let (seq, (psh, fin, _), data, _) = check_tcp(&f[14..]);
        assert_eq!(seq, 7_000 + 1386 * i as u32);
        assert_eq!((psh, fin), (i == n - 1, false), "PSH on the last only");
        joined.extend(data);
    }
    assert_eq!(joined, payload);
}

#[test]
fn tap_frames_with_a_partial_checksum_are_completed() {
    // A UDP frame as the kernel leaves it with checksum offload: the
    // field holds the pseudo-header sum only.
    let payload = b"an odd-length payload!!";
    let mut frame = vec![];
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(SRC, DST, 64)
        .udp(1000, 2000)
        .write(&mut frame, payload)
        .unwrap();
    let good = [frame[40], frame[41]];
    let udp_len = (8 + payload.len()) as u32;
    let mut pseudo = u32::from(u16::from_be_bytes([SRC[0], SRC[1]]))
        + u32::from(u16::from_be_bytes([SRC[2], SRC[3]]))
        + u32::from(u16::from_be_bytes([DST[0], DST[1]]))
        + u32::from(u16::from_be_bytes([DST[2], DST[3]]))
        + 17
        + udp_len;
    while pseudo > 0xffff {
        pseudo = (pseudo & 0xffff) + (pseudo >> 16);
    }
    frame[40..42].copy_from_slice(&(pseudo as u16).to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: 1,
        gso_type: 0,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 34,
        csum_offset: 6,
    };
    let mut raw = vec![0u8; VNET];
    hdr.encode(&mut raw).unwrap();
    raw.extend(&frame);
    let mut out = vec![vec![0u8; 1600]; 4];
    let mut sizes = vec![0; 4];
    let n = super::tap::split_frame(&mut raw, &mut out, &mut sizes).unwrap();
    assert_eq!(n, 1);
    assert_eq!(sizes[0], frame.len());
    assert_eq!(&out[0][40..42], &good, "the checksum etherparse computed");
    // A frame whose checksum is complete passes unchanged.
    let mut raw = vec![0u8; VNET];
    raw.extend(&out[0][..sizes[0]]);
    let copy = raw.clone();
    let n = super::tap::split_frame(&mut raw, &mut out, &mut sizes).unwrap();
    assert_eq!((n, &out[0][..sizes[0]]), (1, &copy[VNET..]));
    // Garbage does not panic.
    let mut raw = vec![0u8; VNET];
    VirtioNetHdr {
        flags: 1,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1386,
        csum_start: 34,
        csum_offset: 16,
    }
    .encode(&mut raw)
    .unwrap();
    raw.extend([0u8; 30]);
    assert!(super::tap::split_frame(&mut raw, &mut out, &mut sizes).is_err());
}

#[test]
fn tap_frames_of_one_flow_are_coalesced_behind_their_ethernet_header() {
    let payload: Vec<u8> = (0..4 * 1386u32).map(|i| (i * 5 % 239) as u8).collect();
    let tcp_frame = |i: usize| {
        let mut f = vec![];
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(SRC, DST, 64)
            .tcp(40000, 5201, 9_000 + 1386 * i as u32, 64240)
            .ack(1)
            .write(&mut f, &payload[1386 * i..1386 * (i + 1)])
            .unwrap();
        f
    };
    let mut arp = MAC_B.to_vec();
    arp.extend(MAC_A);
    arp.extend([0x08, 0x06]);
    arp.extend((0..28).map(|i| i as u8));
    let frames = [
        tcp_frame(0),
        tcp_frame(1),
        arp.clone(),
        tcp_frame(2),
        tcp_frame(3),
    ];
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = Vec::with_capacity(VNET + 65535);
            b.extend([0x77; VNET]); // whatever a previous batch left
            b.extend(f);
            b
        })
        .collect();
    let mut gro = GROTable::default();
    let mut write = vec![];
    super::tap::coalesce(&mut bufs, &mut gro, &mut write).unwrap();
    assert_eq!(write, vec![0, 4], "one coalesced frame, then the ARP frame");
    // The coalesced frame: header (offsets counted from the frame), the
    // Ethernet header, one IPv4/TCP packet with all four payloads.
    let b = &bufs[0];
    let h = VirtioNetHdr::decode(&b[..VNET]).unwrap();
    assert_eq!(h.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    assert_eq!(h.gso_size, 1386);
    assert_eq!(h.flags & 1, 1);
    assert_eq!((h.csum_start, h.csum_offset, h.hdr_len), (34, 16, 54));
    assert_eq!(&b[VNET..VNET + 14], &frames[0][..14]);
    let ip = &b[VNET + 14..];
    let iph = Ipv4HeaderSlice::from_slice(ip).unwrap().to_header();
    assert_eq!(iph.header_checksum, iph.calc_header_checksum());
    assert_eq!(usize::from(iph.total_len), ip.len());
    assert_eq!(ip.len(), 40 + 4 * 1386);
    assert_eq!(
        TcpHeaderSlice::from_slice(&ip[20..])
            .unwrap()
            .sequence_number(),
        9_000
    );
    assert_eq!(&ip[40..], &payload[..]);
    // The ARP frame, untouched, behind an empty header.
    assert_eq!(&bufs[4][..VNET], &[0; VNET]);
    assert_eq!(&bufs[4][VNET..], &arp[..]);

    // Frames of the same flow behind another Ethernet header are not
    // glued to the first ones.
    let mut other = tcp_frame(1);
    other[5] = 0x0c;
    let frames = [tcp_frame(0), other];
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = Vec::with_capacity(VNET + 65535);
            b.extend([0u8; VNET]);
            b.extend(f);
            b
        })
        .collect();
    super::tap::coalesce(&mut bufs, &mut GROTable::default(), &mut write).unwrap();
    assert_eq!(write, vec![0, 1]);
    for (b, f) in bufs.iter().zip(&frames) {
        assert_eq!(&b[..VNET], &[0; VNET]);
        assert_eq!(&b[VNET..], &f[..]);
    }
}

#[test]
fn failing_handshakes_are_reported_with_the_likely_key_and_rate_limited() {
    use weft_tunnel::{Counters, DropReason};
    let mut w = HandshakeWatch::new(Duration::from_secs(30));
    let mut c = Counters::default();
    let s = Duration::from_secs;
    // Nothing failed: nothing to say.
    assert_eq!(w.check(s(1), &c, false), None);
    // The peer's initiations fail authentication here: our --peer-key.
    c.drops[DropReason::HandshakeAuth as usize] = 1;
    let m = w.check(s(2), &c, false).expect("a warning");
    assert!(
        m.contains("handshake_auth") && m.contains("this end's --peer-key"),
        "{m}"
    );
    assert_eq!(w.current(), Some(m.as_str()));
    // A failure every 5 s for two minutes: one warning per 30 s.
    let mut said = 0;
    for k in 1..=24u64 {
        c.drops[DropReason::BadMac as usize] = k;
        if let Some(m) = w.check(s(2 + 5 * k), &c, false) {
            assert!(m.contains("bad_mac"), "{m}");
            said += 1;
        }
    }
    assert!((3..=4).contains(&said), "{said} warnings in 120 s");
    // A session came up: the warning is over, and old drops are not new.
    assert_eq!(w.check(s(200), &c, true), None);
    assert_eq!(w.current(), None);
    assert_eq!(w.check(s(300), &c, false), None);
}

#[test]
fn a_cipher_the_peer_does_not_accept_is_named_in_the_warning() {
    use weft_tunnel::{Counters, DropReason};
    let mut w = HandshakeWatch::new(Duration::from_secs(30));
    let mut c = Counters::default();
    let s = Duration::from_secs;
    c.drops[DropReason::Cipher as usize] = 1;
    let m = w.check(s(1), &c, false).expect("a warning");
    assert!(
        m.contains("(cipher)") && m.contains("--cipher to auto") && !m.contains("keygen"),
        "{m}"
    );
    assert_eq!(w.check(s(40), &c, false), None, "nothing new");
}

#[test]
fn unanswered_handshakes_are_reported_after_a_retry() {
    use weft_tunnel::Counters;
    let mut w = HandshakeWatch::new(Duration::from_secs(30));
    let mut c = Counters::default();
    let ms = Duration::from_millis;
    // The first initiation may be lost to a peer still starting.
    c.handshakes_initiated = 1;
    assert_eq!(w.check(ms(0), &c, false), None);
    assert_eq!(w.check(ms(4000), &c, false), None);
    // The retry: an answer may still be on its way for a second.
    c.handshakes_initiated = 2;
    assert_eq!(w.check(ms(5000), &c, false), None);
    assert_eq!(w.check(ms(5500), &c, false), None);
    let m = w.check(ms(6000), &c, false).expect("a warning");
    assert!(m.contains("2 handshake initiation(s) got no answer"), "{m}");
    // A retry that is answered says nothing.
    let mut w = HandshakeWatch::new(Duration::from_secs(30));
    c.handshakes_initiated = 1;
    assert_eq!(w.check(ms(0), &c, false), None);
    c.handshakes_initiated = 2;
    assert_eq!(w.check(ms(5000), &c, false), None);
    assert_eq!(w.check(ms(6000), &c, true), None);
    assert_eq!(w.check(ms(60000), &c, false), None);
}
