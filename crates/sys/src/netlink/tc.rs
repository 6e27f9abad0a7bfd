//! Traffic-control requests for the switch's kernel fast path: a `clsact`
//! qdisc on a port and `u32` filters that redirect frames for one
//! destination MAC straight to another port (`tc filter add dev IN ingress
//! protocol ip prio P u32 match ether dst MAC action mirred egress
//! redirect dev OUT`). This kernel has `u32`, `bpf` and `mirred`, not
//! `flower` or `matchall`.
//!
//! [`ingress_stats`] reads back what each filter's action did (`tc -s
//! filter show dev IN ingress`), so that frames the kernel forwarded can
//! be counted and their sources kept fresh by the switch.

use std::io;
use std::time::Duration;

use netlink_packet_core::{Nla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcStats2, TcU32Key, TcU32OptionFlags, TcU32Selector,
    TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::{Netlink, Request};

/// The clsact qdisc's handle (`ffff:`) and its ingress hook.
const CLSACT_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
const CLSACT_INGRESS: TcHandle = TcHandle {
    major: 0xffff,
    minor: TcHandle::MIN_INGRESS,
};

fn clsact_msg(ifindex: u32) -> TcMessage {
    let mut m = TcMessage::with_index(ifindex as i32);
    m.header.parent = TcHandle::CLSACT;
    m.header.handle = CLSACT_HANDLE;
    m.attributes.push(TcAttribute::Kind("clsact".into()));
    m
}

/// `tc qdisc add dev X clsact`.
pub fn add_clsact(ifindex: u32) -> Request {
    Request {
        msg: RouteNetlinkMessage::NewQueueDiscipline(clsact_msg(ifindex)),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `tc qdisc del dev X clsact`: removes every filter on it too.
pub fn del_clsact(ifindex: u32) -> Request {
    Request {
        msg: RouteNetlinkMessage::DelQueueDiscipline(clsact_msg(ifindex)),
        flags: 0,
    }
}

/// `tc filter add dev IN ingress protocol PROTO prio PRIO u32 match ether
/// dst DST match ether src SRC action mirred egress redirect dev OUT`.
/// `proto` is an EtherType: a frame whose VLAN tag the device took off
/// reads as 802.1Q to tc, so a filter for IPv4 or IPv6 never takes a
/// tagged frame. Matching the source too keeps every new source (and so
/// every MAC move) in front of the switch's learning.
pub fn redirect_pair(
    in_ifindex: u32,
    prio: u16,
    proto: u16,
    src: [u8; 6],
    dst: [u8; 6],
    out: u32,
) -> Request {
    let mut m = TcMessage::with_index(in_ifindex as i32);
    m.header.parent = CLSACT_INGRESS;
    m.header.info = (u32::from(prio) << 16) | u32::from(proto.to_be());
    m.attributes.push(TcAttribute::Kind("u32".into()));
    // Offsets count from the network header; the addresses are the 14
    // bytes before it (u32 reads the link header with negative offsets,
    // as `match ether dst` does): three words cover both.
    let key = |off: i32, b: [u8; 4]| {
        let mut k = TcU32Key::default();
        k.mask = 0xffff_ffff;
        k.val = u32::from_be_bytes(b);
        k.off = off;
        k
    };
    let keys = vec![
        key(-14, [dst[0], dst[1], dst[2], dst[3]]),
        key(-10, [dst[4], dst[5], src[0], src[1]]),
        key(-6, [src[2], src[3], src[4], src[5]]),
    ];
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = keys.len() as u8;
    sel.keys = keys;
    let mut generic = TcActionGeneric::default();
    generic.action = TcActionType::Stolen;
    let mut mirror = TcMirror::default();
    mirror.generic = generic;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = out;
    let mut act = TcAction::default();
    act.tab = 1;
    act.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    m.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(sel)),
        TcOption::U32(TcFilterU32Option::Flags(TcU32OptionFlags::SkipHw)),
        TcOption::U32(TcFilterU32Option::Action(vec![act])),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewTrafficFilter(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `tc filter del dev IN ingress protocol PROTO prio PRIO`.
pub fn del_filter(in_ifindex: u32, prio: u16, proto: u16) -> Request {
    let mut m = TcMessage::with_index(in_ifindex as i32);
    m.header.parent = CLSACT_INGRESS;
    m.header.info = (u32::from(prio) << 16) | u32::from(proto.to_be());
    Request {
        msg: RouteNetlinkMessage::DelTrafficFilter(m),
        flags: 0,
    }
}

/// What one ingress filter's action did since it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterStats {
    pub prio: u16,
    /// EtherType the filter takes.
    pub protocol: u16,
    pub packets: u64,
    /// As the kernel counts them at ingress: from the network header on,
    /// without the 14-byte link header.
    pub bytes: u64,
    /// How long ago the action last ran (since it was added, if never),
    /// to the kernel's 10 ms clock tick.
    pub last_use: Duration,
}

/// `TCA_STATS_PKT64`: the packet count, when it no longer fits the 32 bits
/// of the basic statistics.
const TCA_STATS_PKT64: u16 = 8;
/// `struct tcf_t` is in clock ticks (`jiffies_to_clock_t`), `USER_HZ`,
/// which is 100 on every architecture this runs on.
const TICK: Duration = Duration::from_millis(10);

/// `tc -s filter show dev IN ingress`: each action-bearing filter on the
/// interface's clsact ingress, with its action's counters (the first
/// action's, which for the fast path's rules is the only one). Empty if
/// the interface has no clsact qdisc.
pub fn ingress_stats(nl: &mut Netlink, ifindex: u32) -> io::Result<Vec<FilterStats>> {
    let mut m = TcMessage::with_index(ifindex as i32);
    m.header.parent = CLSACT_INGRESS;
    let answers = match nl.dump(RouteNetlinkMessage::GetTrafficFilter(m)) {
        Ok(a) => a,
        // No clsact qdisc (any more): no filters.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for a in answers {
        let RouteNetlinkMessage::NewTrafficFilter(f) = a else {
            continue;
        };
        if f.header.index != ifindex as i32 {
            continue;
        }
        let acts = f.attributes.iter().find_map(|a| match a {
            TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                TcOption::U32(TcFilterU32Option::Action(acts)) => acts.first(),
                _ => None,
            }),
            _ => None,
        });
        // u32 also reports its hash tables, which carry no action.
        let Some(act) = acts else {
            continue;
        };
        let mut st = FilterStats {
            prio: (f.header.info >> 16) as u16,
            protocol: u16::from_be(f.header.info as u16),
            packets: 0,
            bytes: 0,
            last_use: Duration::ZERO,
        };
        let mut pkt64 = None;
        for attr in &act.attributes {
            match attr {
                TcActionAttribute::Stats(stats) => {
                    for s in stats {
                        match s {
                            TcStats2::Basic(b) => {
                                st.packets = u64::from(b.packets);
                                st.bytes = b.bytes;
                            }
                            TcStats2::Other(nla) if nla.kind() == TCA_STATS_PKT64 => {
                                let mut v = [0u8; 8];
                                if nla.value_len() == 8 {
                                    nla.emit_value(&mut v);
                                    pkt64 = Some(u64::from_ne_bytes(v));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                TcActionAttribute::Options(opts) => {
                    for o in opts {
                        if let TcActionOption::Mirror(TcActionMirrorOption::Tm(tm)) = o {
                            st.last_use = TICK * u32::try_from(tm.lastuse).unwrap_or(u32::MAX);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(p) = pkt64 {
            st.packets = p;
        }
        out.push(st);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Netlink;
    use crate::port::{PacketSocket, RxBatch, TxFrame, VnetHdr};
    use crate::testutil::{ip, NsGuard};
    use std::time::Duration;

    fn ipv4_frame(dst: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0x9c, 0x41, 0, 8, 0, 0]);
        f
    }

    /// Whether `want` arrives on `s` within `limit`. A frame that must
    /// arrive gets long (a loaded machine runs the veth's softirq late);
    /// one that must not is looked for briefly.
    fn arrived(s: &PacketSocket, rx: &mut RxBatch, want: &[u8], limit: Duration) -> bool {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            let n = s.recv_batch(rx).unwrap();
            if (0..n).any(|i| rx.frame(i).is_some_and(|(_, f)| f == want)) {
                return true;
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        false
    }

    /// A namespace with two veth pairs up, x1-s1 and x2-s2: s1 and s2 the
    /// switch's ports, x1 and x2 where the hosts would be.
    pub(super) fn two_cables(g: &mut NsGuard, name: &str) -> String {
        let ns = g.create(name);
        for (a, b) in [("x1", "s1"), ("x2", "s2")] {
            ip(&[
                "-n", &ns, "link", "add", a, "type", "veth", "peer", "name", b,
            ]);
            ip(&["-n", &ns, "link", "set", a, "up"]);
            ip(&["-n", &ns, "link", "set", b, "up"]);
        }
        ns
    }

    #[test]
    fn a_u32_filter_redirects_one_mac_pair_to_another_port() {
        let mut g = NsGuard::default();
        let ns = two_cables(&mut g, "tcfp");
        crate::netns::run_in_named(&ns, || {
            let (s1, s2) = (
                crate::if_index("s1").unwrap(),
                crate::if_index("s2").unwrap(),
            );
            let mut nl = Netlink::open().unwrap();
            let mac = [0x02, 0xaa, 0, 0, 0, 2];
            nl.push(add_clsact(s1), "clsact".into());
            let src = [0x02, 0, 0, 0, 0, 1];
            nl.push(redirect_pair(s1, 10, 0x0800, src, mac, s2), "filter".into());
            nl.flush().unwrap();
            let x1 = PacketSocket::open("x1").unwrap();
            let x2 = PacketSocket::open("x2").unwrap();
            // Frames sent before the carrier is up are dropped.
            let t0 = std::time::Instant::now();
            while !(x1.carrier().unwrap() && x2.carrier().unwrap()) {
                assert!(t0.elapsed() < Duration::from_secs(10), "no carrier");
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut rx = RxBatch::new(16);
            while x2.recv_batch(&mut rx).unwrap() > 0 {}
            let send = |f: &[u8]| {
                x1.send_batch(&[TxFrame {
                    vnet: VnetHdr::default(),
                    head: f,
                    tag: None,
                    tail: &[],
                }])
                .unwrap()
            };
            let hit = ipv4_frame(mac);
            send(&hit);
            assert!(
                arrived(&x2, &mut rx, &hit, Duration::from_secs(10)),
                "the filter did not redirect"
            );
            // Another destination is left alone.
            let miss = ipv4_frame([0x02, 0xaa, 0, 0, 0, 3]);
            send(&miss);
            assert!(
                !arrived(&x2, &mut rx, &miss, Duration::from_millis(200)),
                "a frame for another MAC was redirected"
            );
            // Removed, the filter redirects no more.
            nl.push(del_filter(s1, 10, 0x0800), "del".into());
            nl.flush().unwrap();
            send(&hit);
            assert!(
                !arrived(&x2, &mut rx, &hit, Duration::from_millis(200)),
                "the filter outlived its removal"
            );
            nl.push(del_clsact(s1), "del clsact".into());
            nl.flush().unwrap();
        })
        .unwrap();
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;
    use crate::netlink::Netlink;
    use crate::port::{PacketSocket, RxBatch, TxFrame, VnetHdr};
    use crate::testutil::NsGuard;

    #[test]
    fn filter_stats_count_what_the_rule_redirected() {
        let mut g = NsGuard::default();
        let ns = super::tests::two_cables(&mut g, "tcst");
        crate::netns::run_in_named(&ns, || {
            let (s1, s2) = (
                crate::if_index("s1").unwrap(),
                crate::if_index("s2").unwrap(),
            );
            let mut nl = Netlink::open().unwrap();
            assert_eq!(
                ingress_stats(&mut nl, s1).unwrap(),
                [],
                "no clsact qdisc: no filters"
            );
            let (src, dst) = ([0x02, 0, 0, 0, 0, 1], [0x02, 0xaa, 0, 0, 0, 2]);
            nl.push(add_clsact(s1), "clsact".into());
            nl.push(redirect_pair(s1, 1, 0x0800, src, dst, s2), "v4".into());
            nl.push(redirect_pair(s1, 2, 0x86dd, src, dst, s2), "v6".into());
            nl.flush().unwrap();
            let x1 = PacketSocket::open("x1").unwrap();
            let x2 = PacketSocket::open("x2").unwrap();
            // Frames sent before the carrier is up are dropped.
            let t0 = std::time::Instant::now();
            while !(x1.carrier().unwrap() && x2.carrier().unwrap()) {
                assert!(t0.elapsed() < Duration::from_secs(10), "no carrier");
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut before = ingress_stats(&mut nl, s1).unwrap();
            before.sort_by_key(|s| s.prio);
            assert_eq!(before.len(), 2, "{before:?}");
            assert_eq!((before[0].prio, before[0].protocol), (1, 0x0800));
            assert_eq!((before[1].prio, before[1].protocol), (2, 0x86dd));
            assert!(before.iter().all(|s| s.packets == 0 && s.bytes == 0));

            // 100 IPv4 frames of 42 bytes and 50 of 300 through the rule,
            // one for another destination beside it.
            let mut small = dst.to_vec();
            small.extend_from_slice(&src);
            small.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28]);
            small.resize(42, 0);
            let mut big = small.clone();
            big.resize(300, 0);
            let mut other = small.clone();
            other[5] = 3;
            let mut rx = RxBatch::new(64);
            let mut sent = 0;
            for (f, n) in [(&small, 100), (&big, 50), (&other, 1)] {
                for _ in 0..n {
                    x1.send_batch(&[TxFrame {
                        vnet: VnetHdr::default(),
                        head: f,
                        tag: None,
                        tail: &[],
                    }])
                    .unwrap();
                    sent += 1;
                    if sent % 32 == 0 {
                        while x2.recv_batch(&mut rx).unwrap() > 0 {}
                    }
                }
            }
            // veth hands each frame to its peer's backlog: the rule counts
            // it when the softirq runs, which a loaded machine delays.
            let t0 = std::time::Instant::now();
            let after = loop {
                let mut after = ingress_stats(&mut nl, s1).unwrap();
                after.sort_by_key(|s| s.prio);
                if after.first().is_some_and(|s| s.packets >= 150)
                    || t0.elapsed() > Duration::from_secs(10)
                {
                    break after;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert_eq!(after.len(), 2, "{after:?}");
            assert_eq!(after[0].packets, 150, "{after:?}");
            assert_eq!(
                after[0].bytes,
                100 * (42 - 14) + 50 * (300 - 14),
                "{after:?}"
            );
            assert!(after[0].last_use < Duration::from_secs(1), "{after:?}");
            assert_eq!((after[1].packets, after[1].bytes), (0, 0), "{after:?}");
            // Untouched, the lastuse keeps growing.
            std::thread::sleep(Duration::from_millis(300));
            let later = ingress_stats(&mut nl, s1).unwrap();
            let v4 = later.iter().find(|s| s.prio == 1).unwrap();
            assert_eq!(v4.packets, 150);
            assert!(
                v4.last_use >= after[0].last_use + Duration::from_millis(250),
                "{after:?} then {later:?}"
            );
            nl.push(del_clsact(s1), "del clsact".into());
            nl.flush().unwrap();
            assert_eq!(ingress_stats(&mut nl, s1).unwrap(), []);
        })
        .unwrap();
    }
}

/// `tc filter add dev IN ingress protocol all prio PRIO bpf da fd FD name
/// NAME`: a BPF classifier in direct-action mode (its return value is the
/// verdict; this kernel has no `act_bpf`), taking every frame.
pub fn bpf_filter(in_ifindex: u32, prio: u16, prog_fd: u32, name: &str) -> Request {
    use netlink_packet_route::tc::{TcBpfFlags, TcFilterBpfOption};
    const ETH_P_ALL: u16 = 0x0003;
    let mut m = TcMessage::with_index(in_ifindex as i32);
    m.header.parent = CLSACT_INGRESS;
    m.header.info = (u32::from(prio) << 16) | u32::from(ETH_P_ALL.to_be());
    m.attributes.push(TcAttribute::Kind("bpf".into()));
    m.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(prog_fd)),
        TcOption::Bpf(TcFilterBpfOption::ProgName(name.into())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewTrafficFilter(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}
