//! The data ciphers: each end's `cipher` setting, what the two ends agree
//! on, both ciphers carrying packets both ways (through rekeys), and a
//! setting the peer does not accept refused cleanly.

mod sim;

use std::time::Duration;

use sim::Pair;
use weft_tunnel::{aes_is_fast, Cipher, CipherChoice, DropReason, Received, Timers};

const S: Duration = Duration::from_secs(1);
const AUTO: CipherChoice = CipherChoice::Auto;
const AES: CipherChoice = CipherChoice::Only(Cipher::Aes256Gcm);
const CHACHA: CipherChoice = CipherChoice::Only(Cipher::ChaCha20Poly1305);

/// The pair's session cipher, the same at both ends.
fn agreed(p: &Pair) -> Cipher {
    let (a, b) = (p.a.t.cipher(), p.b.t.cipher());
    assert_eq!(a, b, "the ends disagree on the cipher");
    a.expect("a session")
}

#[test]
fn each_setting_pair_agrees_on_one_cipher_that_carries_packets_both_ways() {
    let fast = if aes_is_fast() {
        Cipher::Aes256Gcm
    } else {
        Cipher::ChaCha20Poly1305
    };
    for (a, b, want) in [
        (AUTO, AUTO, fast),
        (AES, AES, Cipher::Aes256Gcm),
        (CHACHA, CHACHA, Cipher::ChaCha20Poly1305),
        (AES, AUTO, Cipher::Aes256Gcm),
        (AUTO, AES, Cipher::Aes256Gcm),
        (CHACHA, AUTO, Cipher::ChaCha20Poly1305),
        (AUTO, CHACHA, Cipher::ChaCha20Poly1305),
    ] {
        // Only a starts (b does not know where a is), then only b.
        for (ak, bk) in [(true, false), (false, true), (true, true)] {
            let mut p = Pair::with_ciphers(Timers::default(), ak, bk, [a, b]);
            if !ak {
                // b starts once it has something to send.
                p.send('b', b"first");
                p.advance(sim::STEP);
            }
            assert_eq!(agreed(&p), want, "{a} and {b}, a knows b: {ak}");
            assert!(p.works(), "{a} and {b}");
            let big: Vec<u8> = (0..1400u32).map(|i| (i * 7) as u8).collect();
            p.send('a', &big);
            p.send('b', &big);
            assert_eq!(p.b.got.last(), Some(&big));
            assert_eq!(p.a.got.last(), Some(&big));
            assert_eq!(p.a.t.counters().drops_total(), 0, "{a} and {b}");
            assert_eq!(p.b.t.counters().drops_total(), 0, "{a} and {b}");
            assert!(p
                .wire
                .iter()
                .all(|(_, _, d)| !d.windows(16).any(|w| w == &big[..16])));
        }
    }
}

#[test]
fn the_cipher_stays_through_rekeys_without_losing_packets() {
    for c in [AES, CHACHA] {
        let mut p = Pair::with_ciphers(Timers::default(), true, true, [c, AUTO]);
        let sent = 2000;
        let got = p.traffic('a', sim::STEP * sent);
        assert_eq!(got, sent as usize, "{c}");
        assert!(p.a.t.counters().handshakes_completed >= 2, "{c} rekeyed");
        let CipherChoice::Only(want) = c else {
            unreachable!()
        };
        assert_eq!(agreed(&p), want);
        assert!(p.works());
    }
}

#[test]
fn ends_naming_different_ciphers_never_establish_and_say_why() {
    for (a, b) in [(AES, CHACHA), (CHACHA, AES)] {
        let mut p = Pair::with_ciphers(Timers::default(), true, true, [a, b]);
        p.advance(30 * S);
        assert!(!p.a.t.is_up(p.now) && !p.b.t.is_up(p.now));
        assert_eq!(p.a.t.cipher(), None);
        for e in [&p.a, &p.b] {
            let c = e.t.counters();
            assert_eq!(c.handshakes_completed, 0);
            assert!(c.handshakes_initiated >= 2, "it keeps trying");
            // Every first message the other end sent was refused for its
            // cipher, and for nothing else.
            assert!(c.dropped(DropReason::Cipher) >= 2);
            assert_eq!(c.drops_total(), c.dropped(DropReason::Cipher));
        }
        // Nothing but first messages crossed: a refusal is not answered.
        assert!(p.wire.iter().all(|(_, _, d)| d[0] == 1));
    }
}

#[test]
fn tampered_data_is_refused_under_each_cipher() {
    for c in [AES, CHACHA] {
        let mut p = Pair::with_ciphers(Timers::default(), true, true, [c, c]);
        let mut buf = vec![0u8; 100 + weft_tunnel::OVERHEAD];
        let weft_tunnel::Sent::Datagram(_, n) = p.a.t.send(p.now, &[0x42; 100], &mut buf) else {
            panic!("a session")
        };
        let from = p.a.addr;
        // Header (counter), body and tag each matter.
        for at in [12, 16, 60, n - 1] {
            let mut d = buf[..n].to_vec();
            d[at] ^= 0x80;
            assert_eq!(
                p.inject('b', from, &d),
                Received::Dropped(DropReason::Auth),
                "{c}, byte {at}"
            );
        }
        assert_eq!(p.inject('b', from, &buf[..n]), Received::Packet(100));
        assert_eq!(p.b.t.counters().dropped(DropReason::Auth), 4);
    }
}
