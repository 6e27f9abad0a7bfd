//! Fuzz-style property test of the receive path, run as an ordinary test:
//! genuine, replayed, reordered, truncated, bit-flipped and random datagrams
//! in any order. Nothing panics, every drop is counted, only genuine packets
//! are delivered and each at most once, nothing unauthenticated is
//! answered, and the session still works afterwards.

mod sim;

use proptest::prelude::*;
use sim::Pair;
use weft_tunnel::{Received, Sent, Timers};

#[derive(Debug, Clone)]
enum Op {
    /// Deliver the i-th genuine datagram (again, if already delivered).
    Genuine(usize),
    /// The i-th genuine datagram with one byte xor-ed.
    Flip(usize, usize, u8),
    /// The i-th genuine datagram cut to a length.
    Cut(usize, usize),
    /// Random bytes with a chosen first byte (steers into each parser).
    Random(u8, Vec<u8>),
    /// A handshake message seen on the wire, replayed or altered.
    Handshake(usize, usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..40usize).prop_map(Op::Genuine),
        (0..40usize, 0..1500usize, 1..=255u8).prop_map(|(i, j, x)| Op::Flip(i, j, x)),
        (0..40usize, 0..200usize).prop_map(|(i, n)| Op::Cut(i, n)),
        (
            prop_oneof![Just(1u8), Just(2), Just(4), any::<u8>()],
            proptest::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(t, v)| Op::Random(t, v)),
        (0..4usize, 0..100usize, 0..=255u8).prop_map(|(i, j, x)| Op::Handshake(i, j, x)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn receive_path_never_panics_and_never_lies(ops in proptest::collection::vec(op(), 1..120)) {
        let mut p = Pair::new(Timers::default());
        let handshakes: Vec<Vec<u8>> = p.wire.iter().filter(|w| w.2[0] != 4).map(|w| w.2.clone()).collect();
        // 40 genuine datagrams b has not seen, with distinct payloads.
        let mut genuine = vec![];
        let mut payloads = vec![];
        for i in 0..40u32 {
            let pkt: Vec<u8> = (0..(i as usize * 37 % 1400)).map(|k| (k as u32 ^ i) as u8).chain(i.to_be_bytes()).collect();
            let mut buf = vec![0u8; pkt.len() + weft_tunnel::OVERHEAD];
            let Sent::Datagram(_, n) = p.a.t.send(p.now, &pkt, &mut buf) else { panic!() };
            genuine.push(buf[..n].to_vec());
            payloads.push(pkt);
        }
        let from = p.a.addr;
        let mut delivered = [false; 40];
        for op in ops {
            let before = p.b.t.counters().clone();
            let (d, which) = match op {
                Op::Genuine(i) => (genuine[i].clone(), Some(i)),
                Op::Flip(i, j, x) => {
                    let mut d = genuine[i].clone();
                    let j = j % d.len();
                    d[j] ^= x;
                    (d, None)
                }
                Op::Cut(i, n) => (genuine[i][..n.min(genuine[i].len() - 1)].to_vec(), None),
                Op::Random(t, mut v) => {
                    v.insert(0, t);
                    (v, None)
                }
                Op::Handshake(i, j, x) => {
                    let mut d = handshakes[i % handshakes.len()].clone();
                    let j = j % d.len();
                    d[j] ^= x;
                    (d, None)
                }
            };
            let r = p.inject('b', from, &d);
            let after = p.b.t.counters();
            match r {
                Received::Packet(n) => {
                    let i = which.expect("only genuine datagrams are delivered");
                    prop_assert!(!delivered[i], "delivered twice");
                    delivered[i] = true;
                    prop_assert_eq!(&p.b.got.last().unwrap()[..], &payloads[i][..]);
                    prop_assert_eq!(n, payloads[i].len());
                }
                Received::Dropped(reason) => {
                    prop_assert_eq!(after.dropped(reason), before.dropped(reason) + 1);
                    prop_assert_eq!(after.drops_total(), before.drops_total() + 1);
                    if let Some(i) = which {
                        prop_assert!(delivered[i], "a genuine first copy was dropped: {:?}", reason);
                    }
                }
                Received::Keepalive | Received::Handshake => {
                    prop_assert!(false, "an altered or random datagram was accepted: {:?}", r);
                }
            }
            prop_assert!(p.b.t.poll_transmit().is_none(), "b answered unauthenticated input");
        }
        prop_assert!(p.works());
    }
}
