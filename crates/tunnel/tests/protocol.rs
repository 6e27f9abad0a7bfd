//! The tunnel protocol in simulated time: handshake, wrong keys, rekeying,
//! keepalives, restarts, roaming, outages, replays and forgeries.

mod sim;

use std::time::Duration;

use sim::{addr, config, Pair};
use weft_tunnel::{DropReason, PrivateKey, Received, Sent, Timers, Tunnel};

const S: Duration = Duration::from_secs(1);

#[test]
fn handshake_then_packets_both_ways() {
    let mut p = Pair::new(Timers::default());
    assert!(p.a.t.is_up(p.now) && p.b.t.is_up(p.now));
    assert!(p.works());
    let big = vec![0xab; 1400];
    assert!(matches!(p.send('a', &big), Sent::Datagram(_, n) if n == 1400 + weft_tunnel::OVERHEAD));
    assert_eq!(p.b.got.last().unwrap(), &big);
    assert_eq!(p.a.t.counters().drops_total(), 0);
    assert_eq!(p.b.t.counters().drops_total(), 0);
    // Nothing on the wire shows the inner bytes.
    assert!(p
        .wire
        .iter()
        .all(|(_, _, d)| !d.windows(11).any(|w| w == b"ping from a")));
}

#[test]
fn packets_sent_before_the_handshake_wait_for_it() {
    // b does not know a's address: a starts, b answers.
    let mut p = Pair::with(Timers::default(), false, false);
    assert!(!p.a.t.is_up(p.now));
    assert_eq!(p.send('a', b"early"), Sent::Queued);
    p.a.t = Tunnel::new(
        config(
            &p.a.key,
            &p.b.key,
            Some(p.b.addr),
            &Timers::default(),
            5_000,
        ),
        p.now,
    );
    assert_eq!(p.send('a', b"early"), Sent::Queued);
    p.advance(sim::STEP);
    assert_eq!(p.b.got, vec![b"early".to_vec()]);
    assert!(p.works());
}

#[test]
fn a_wrong_key_never_establishes_a_session() {
    let t = Timers::default();
    let (ka, kb, kc) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let (aa, ab) = (addr("10.0.0.1:1"), addr("10.0.0.2:1"));
    // Case 1: a believes the peer's key is c's; case 2: b expects c, not a.
    for (a_peer, b_peer, reason) in [
        (&kc, &ka, DropReason::BadMac),
        (&kb, &kc, DropReason::HandshakeAuth),
    ] {
        let mut a = Tunnel::new(config(&ka, a_peer, Some(ab), &t, 1), Duration::ZERO);
        let mut b = Tunnel::new(config(&kb, b_peer, Some(aa), &t, 1), Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut out = vec![0u8; 2000];
        for _ in 0..600 {
            now += sim::STEP;
            a.tick(now);
            b.tick(now);
            assert_eq!(a.send(now, b"secret", &mut out), Sent::Queued);
            while let Some(m) = a.poll_transmit() {
                let r = b.receive(now, aa, &m.data, &mut out);
                assert!(matches!(r, Received::Dropped(_)), "{r:?}");
            }
            while let Some(m) = b.poll_transmit() {
                let r = a.receive(now, ab, &m.data, &mut out);
                assert!(matches!(r, Received::Dropped(_)), "{r:?}");
            }
        }
        assert!(!a.is_up(now) && !b.is_up(now));
        assert!(b.counters().dropped(reason) >= 10, "{:?}", b.counters());
        assert_eq!(
            a.counters().handshakes_completed + b.counters().handshakes_completed,
            0
        );
        assert_eq!(b.counters().rx_packets, 0);
    }
}

#[test]
fn rekeys_on_time_without_losing_packets() {
    let mut p = Pair::new(Timers::default());
    let before = p.a.t.counters().handshakes_completed;
    let n = p.traffic('a', 400 * S);
    assert_eq!(n, 4000, "every packet arrived across rekeys");
    let hs = p.a.t.counters().handshakes_completed - before;
    // Rekey every 120 s: 3 or so in 400 s, and never more than one per rekey_timeout.
    assert!((3..=4).contains(&hs), "{hs} handshakes");
    assert_eq!(p.b.t.counters().drops_total(), 0, "{:?}", p.b.t.counters());
}

#[test]
fn rekeys_on_volume() {
    let t = Timers {
        rekey_after_bytes: 10_000,
        ..Timers::default()
    };
    let mut p = Pair::new(t);
    let hs0 = p.a.t.counters().handshakes_completed;
    let pkt = vec![7u8; 1000];
    // 1 kB every second: a rekey due every 10 s, far before the 120 s one.
    for _ in 0..100 {
        assert!(matches!(p.send('a', &pkt), Sent::Datagram(..)));
        p.advance(S);
    }
    assert_eq!(p.b.got.len(), 100);
    let hs = p.a.t.counters().handshakes_completed - hs0;
    assert!(
        (9..=10).contains(&hs),
        "{hs} handshakes for 100 kB at a 10 kB limit"
    );
}

#[test]
fn keepalives_answer_data_and_persistent_ones_keep_idle_links_warm() {
    let mut p = Pair::new(Timers::default());
    let k0 = p.b.t.counters().keepalives_received;
    p.send('b', b"one way");
    p.advance(9 * S);
    assert_eq!(p.b.t.counters().keepalives_received - k0, 0);
    p.advance(2 * S);
    assert_eq!(
        p.b.t.counters().keepalives_received - k0,
        1,
        "a answered within keepalive_timeout"
    );
    p.advance(60 * S);
    assert_eq!(
        p.b.t.counters().keepalives_received - k0,
        1,
        "idle and not persistent: quiet"
    );

    let t = Timers {
        persistent_keepalive: Some(25 * S),
        ..Timers::default()
    };
    let mut p = Pair::new(t);
    let k0 = p.b.t.counters().keepalives_received;
    p.advance(60 * S);
    assert_eq!(p.b.t.counters().keepalives_received - k0, 2);
}

#[test]
fn survives_a_peer_restart() {
    for b_knows_a in [true, false] {
        let t = Timers::default();
        let mut p = Pair::with(t.clone(), true, b_knows_a);
        assert!(p.works());
        // b restarts: all its state is gone; its clock is later.
        let ep = b_knows_a.then_some(p.a.addr);
        p.b.t = Tunnel::new(config(&p.b.key, &p.a.key, ep, &t, 10_u64.pow(12)), p.now);
        p.flush();
        // Steady traffic from a; within keepalive+rekey timeouts a notices.
        let got = p.traffic('a', 25 * S);
        assert!(got > 0, "b_knows_a={b_knows_a}");
        assert!(p.works(), "b_knows_a={b_knows_a}");
        let lost = p.b.t.counters().dropped(DropReason::UnknownIndex);
        if b_knows_a {
            assert_eq!(lost, 0, "b starts the handshake itself at once");
        } else {
            assert!(lost > 0 && lost <= 200, "{lost} lost before a rekeyed");
        }
    }
}

#[test]
fn survives_the_underlay_going_down() {
    for secs in [5, 40] {
        let mut p = Pair::new(Timers::default());
        assert!(p.works());
        p.link_up = false;
        p.traffic('a', secs * S);
        p.link_up = true;
        p.traffic('a', 10 * S);
        // Back within a retry interval after the link returns.
        p.advance(6 * S);
        assert!(p.works(), "after {secs} s down");
    }
}

#[test]
fn follows_a_roaming_peer() {
    let mut p = Pair::new(Timers::default());
    assert!(p.works());
    let moved = addr("192.0.2.9:7777");
    p.a.addr = moved;
    assert!(p.works(), "b answers at a's new address");
    assert_eq!(p.b.t.endpoint(), Some(moved));
    assert_eq!(p.b.t.counters().roams, 1);
    // A handshake from yet another address (a restarted behind a new NAT
    // mapping) also works.
    p.a.addr = addr("198.51.100.3:1");
    p.a.t = Tunnel::new(
        config(
            &p.a.key,
            &p.b.key,
            Some(p.b.addr),
            &Timers::default(),
            10_u64.pow(12),
        ),
        p.now,
    );
    p.flush();
    assert!(p.works());
    assert_eq!(p.b.t.endpoint(), Some(p.a.addr));
}

#[test]
fn replays_forgeries_and_garbage_are_dropped_counted_and_unanswered() {
    let mut p = Pair::new(Timers::default());
    let mark = p.wire.len();
    p.send('a', b"first");
    p.send('a', b"second");
    let mut data: Vec<_> = p.wire[mark..].iter().map(|w| w.2.clone()).collect();
    // A third one that b has not seen yet, to forge from.
    let mut buf = [0u8; 64];
    let Sent::Datagram(_, n) = p.a.t.send(p.now, b"third", &mut buf) else {
        panic!()
    };
    data.push(buf[..n].to_vec());
    let init = p
        .wire
        .iter()
        .find(|w| w.2[0] == 1 && w.1 == p.b.addr)
        .unwrap()
        .2
        .clone();
    let from = p.a.addr;
    let c = |p: &Pair| p.b.t.counters().clone();

    assert_eq!(
        p.inject('b', from, &data[0]),
        Received::Dropped(DropReason::Replay)
    );
    assert_eq!(
        p.inject('b', from, &init),
        Received::Dropped(DropReason::HandshakeReplay)
    );
    let mut forged = data[2].clone();
    *forged.last_mut().unwrap() ^= 1;
    assert_eq!(
        p.inject('b', from, &forged),
        Received::Dropped(DropReason::Auth)
    );
    let mut forged = data[2].clone();
    forged[9] ^= 0x80; // the counter
    assert_eq!(
        p.inject('b', from, &forged),
        Received::Dropped(DropReason::Auth)
    );
    assert_eq!(
        p.inject('b', from, &data[1][..20]),
        Received::Dropped(DropReason::Truncated)
    );
    assert_eq!(
        p.inject('b', from, &init[..50]),
        Received::Dropped(DropReason::Truncated)
    );
    assert_eq!(
        p.inject('b', from, &[9, 0, 0, 0, 1, 2]),
        Received::Dropped(DropReason::Malformed)
    );
    let mut bad_index = data[1].clone();
    bad_index[4] ^= 1;
    assert_eq!(
        p.inject('b', from, &bad_index),
        Received::Dropped(DropReason::UnknownIndex)
    );
    let mut junk_init = init.clone();
    junk_init[20] ^= 1;
    assert_eq!(
        p.inject('b', from, &junk_init),
        Received::Dropped(DropReason::BadMac)
    );
    let k = c(&p);
    for r in [
        DropReason::Replay,
        DropReason::HandshakeReplay,
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::UnknownIndex,
        DropReason::BadMac,
    ] {
        assert!(k.dropped(r) >= 1, "{r:?}");
    }
    assert_eq!(k.dropped(DropReason::Auth), 2);
    assert!(
        p.b.t.poll_transmit().is_none(),
        "nothing answers unauthenticated input"
    );
    assert_eq!(p.b.got, vec![b"first".to_vec(), b"second".to_vec()]);
    // The forgeries did not spoil the genuine packet or move the window.
    assert_eq!(p.inject('b', from, &data[2]), Received::Packet(5));
    // The forged counter did not move the window: the next real packet arrives.
    assert!(p.works());
}

#[test]
fn reordering_within_the_window_is_fine_beyond_it_dropped() {
    let mut p = Pair::new(Timers::default());
    let mut held = vec![];
    let mut out = vec![0u8; 100];
    for i in 0u32..5000 {
        match p.a.t.send(p.now, &i.to_be_bytes(), &mut out) {
            Sent::Datagram(_, n) => held.push(out[..n].to_vec()),
            r => panic!("{r:?}"),
        }
    }
    let from = p.a.addr;
    // Newest first: the top and WINDOW - 1 below it are fine, older too old.
    let mut ok = 0;
    for d in held.iter().rev() {
        match p.inject('b', from, d) {
            Received::Packet(_) => ok += 1,
            Received::Dropped(DropReason::TooOld) => {}
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(ok as u64, weft_tunnel::replay::WINDOW);
    assert_eq!(
        p.b.t.counters().dropped(DropReason::TooOld),
        5000 - ok as u64
    );
}

#[test]
fn handshake_floods_are_rate_limited() {
    let mut p = Pair::new(Timers::default());
    let init = p
        .wire
        .iter()
        .find(|w| w.2[0] == 1 && w.1 == p.b.addr)
        .unwrap()
        .2
        .clone();
    let from = p.a.addr;
    // A valid-MAC flood (the public keys are public) costs at most the rate.
    for _ in 0..1000 {
        p.inject('b', from, &init);
    }
    let k = p.b.t.counters();
    assert!(k.dropped(DropReason::RateLimited) >= 970, "{k:?}");
    assert!(p.works(), "the flood did not disturb the session");
}

#[test]
fn rehandshake_replaces_the_session_without_loss() {
    let mut p = Pair::new(Timers::default());
    let hs = p.a.t.counters().handshakes_completed;
    let init = p.a.t.counters().handshakes_initiated;
    p.advance(S);
    p.a.t.rehandshake(p.now);
    p.a.t.rehandshake(p.now); // at most one under way
    p.flush();
    assert_eq!(p.a.t.counters().handshakes_completed, hs + 1);
    assert_eq!(p.a.t.counters().handshakes_initiated, init + 1);
    assert!(p.works());
}

#[test]
fn packets_sealed_and_opened_on_other_threads_out_of_order_arrive_once() {
    let mut p = Pair::new(Timers::default());
    let (from, now) = (p.a.addr, p.now);
    let tx0 = p.a.t.counters().tx_packets;
    // a takes the counters of a batch in order; threads encrypt it, in
    // reverse halves.
    let packets: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    let mut jobs: Vec<_> = packets
        .iter()
        .map(|pk| match p.a.t.prepare_send(now, pk) {
            weft_tunnel::Prepared::Seal(_, j) => j,
            _ => panic!("a session is up"),
        })
        .collect();
    let mut sealed: Vec<Vec<u8>> = packets
        .iter()
        .map(|pk| vec![0u8; pk.len() + weft_tunnel::OVERHEAD])
        .collect();
    std::thread::scope(|s| {
        let (lo, hi) = sealed.split_at_mut(32);
        let jh = jobs.split_off(32);
        let (pl, ph) = packets.split_at(32);
        s.spawn(move || {
            for ((o, j), pk) in hi.iter_mut().zip(jh).zip(ph).rev() {
                j.seal(pk, o);
            }
        });
        for ((o, j), pk) in lo.iter_mut().zip(jobs).zip(pl) {
            j.seal(pk, o);
        }
    });
    assert_eq!(
        p.a.t.counters().tx_packets,
        tx0 + 64,
        "counted when prepared"
    );
    // b prepares them all, the last first, with one duplicate prepared
    // twice before either finished: only one of the two is delivered.
    let mut order: Vec<usize> = (0..64).rev().collect();
    order.push(10);
    let opens: Vec<_> = order
        .iter()
        .map(|&i| match p.b.t.prepare_receive(now, from, &sealed[i]) {
            weft_tunnel::Incoming::Open(j) => (i, j),
            weft_tunnel::Incoming::Done(r) => panic!("{i}: {r:?}"),
        })
        .collect();
    let mut got = vec![];
    let mut replays = 0;
    for (i, j) in &opens {
        let mut out = vec![0u8; sealed[*i].len()];
        let opened = j.open(&sealed[*i], &mut out);
        match p.b.t.finish_receive(now, from, j, opened) {
            Received::Packet(n) => got.push((*i, out[..n].to_vec())),
            Received::Dropped(DropReason::Replay) => replays += 1,
            r => panic!("{i}: {r:?}"),
        }
    }
    assert_eq!(replays, 1);
    got.sort();
    assert_eq!(got.len(), 64);
    for (i, pk) in got {
        assert_eq!(pk, packets[i]);
    }
    // A forged packet fails in the job and is counted by finish.
    let mut bad = sealed[0].clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let before = p.b.t.counters().dropped(DropReason::Replay);
    assert!(matches!(
        p.b.t.prepare_receive(now, from, &bad),
        weft_tunnel::Incoming::Done(Received::Dropped(DropReason::Replay))
    ));
    assert_eq!(p.b.t.counters().dropped(DropReason::Replay), before + 1);
    let mut fresh = vec![0u8; 200];
    let Sent::Datagram(_, n) = p.a.t.send(now, &[7u8; 50], &mut fresh) else {
        panic!("a session is up")
    };
    fresh.truncate(n);
    fresh[n - 1] ^= 1;
    let weft_tunnel::Incoming::Open(j) = p.b.t.prepare_receive(now, from, &fresh) else {
        panic!("a data packet with a new counter")
    };
    let mut out = vec![0u8; n];
    let opened = j.open(&fresh, &mut out);
    assert_eq!(opened, None);
    assert_eq!(
        p.b.t.finish_receive(now, from, &j, opened),
        Received::Dropped(DropReason::Auth)
    );
    assert!(p.works(), "the session goes on");
}
