//! Two tunnel ends on a simulated underlay, in simulated time.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use weft_tunnel::{CipherChoice, Config, PrivateKey, Received, Sent, Timers, Tunnel};

pub const STEP: Duration = Duration::from_millis(100);

pub struct End {
    pub t: Tunnel,
    pub key: PrivateKey,
    pub addr: SocketAddr,
    /// Inner packets this end delivered.
    pub got: Vec<Vec<u8>>,
}

pub struct Pair {
    pub a: End,
    pub b: End,
    pub now: Duration,
    /// When false, the underlay loses everything.
    pub link_up: bool,
    /// Every datagram that crossed the underlay: (from, to, bytes).
    pub wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    inflight: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn config(
    key: &PrivateKey,
    peer: &PrivateKey,
    endpoint: Option<SocketAddr>,
    timers: &Timers,
    wall: u64,
) -> Config {
    Config {
        private_key: key.clone(),
        peer: peer.public_key(),
        endpoint,
        timers: timers.clone(),
        wall_clock_at_zero: wall,
        cipher: Default::default(),
    }
}

impl Pair {
    /// Both ends know each other's address.
    pub fn new(timers: Timers) -> Pair {
        Pair::with(timers, true, true)
    }

    pub fn with(timers: Timers, a_knows_b: bool, b_knows_a: bool) -> Pair {
        Pair::with_ciphers(timers, a_knows_b, b_knows_a, [CipherChoice::Auto; 2])
    }

    /// As [`Pair::with`], with each end's cipher setting.
    pub fn with_ciphers(
        timers: Timers,
        a_knows_b: bool,
        b_knows_a: bool,
        ciphers: [CipherChoice; 2],
    ) -> Pair {
        let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
        let (aa, ab) = (addr("10.0.0.1:5000"), addr("10.0.0.2:5000"));
        let now = Duration::ZERO;
        let mut ca = config(&ka, &kb, a_knows_b.then_some(ab), &timers, 1_000);
        ca.cipher = ciphers[0];
        let mut cb = config(&kb, &ka, b_knows_a.then_some(aa), &timers, 2_000);
        cb.cipher = ciphers[1];
        let a = Tunnel::new(ca, now);
        let b = Tunnel::new(cb, now);
        let mut p = Pair {
            a: End {
                t: a,
                key: ka,
                addr: aa,
                got: vec![],
            },
            b: End {
                t: b,
                key: kb,
                addr: ab,
                got: vec![],
            },
            now,
            link_up: true,
            wire: vec![],
            inflight: VecDeque::new(),
        };
        p.flush();
        p
    }

    pub fn end(&mut self, which: char) -> &mut End {
        if which == 'a' {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Send an inner packet from one end.
    pub fn send(&mut self, from: char, packet: &[u8]) -> Sent {
        let now = self.now;
        let e = self.end(from);
        let mut buf = vec![0u8; packet.len() + weft_tunnel::OVERHEAD];
        let r = e.t.send(now, packet, &mut buf);
        if let Sent::Datagram(to, n) = r {
            let src = e.addr;
            self.inflight.push_back((src, to, buf[..n].to_vec()));
        }
        self.flush();
        r
    }

    /// Inject a datagram as if it arrived at `to` from `from`.
    pub fn inject(&mut self, to: char, from: SocketAddr, d: &[u8]) -> Received {
        let now = self.now;
        let e = self.end(to);
        let mut out = vec![0u8; d.len()];
        let r = e.t.receive(now, from, d, &mut out);
        if let Received::Packet(n) = r {
            e.got.push(out[..n].to_vec());
        }
        r
    }

    /// Move every queued datagram across the underlay until quiet.
    pub fn flush(&mut self) {
        loop {
            for which in ['a', 'b'] {
                let e = self.end(which);
                let src = e.addr;
                let mut v = vec![];
                while let Some(t) = e.t.poll_transmit() {
                    v.push((src, t.to, t.data));
                }
                self.inflight.extend(v);
            }
            let Some((from, to, d)) = self.inflight.pop_front() else {
                return;
            };
            self.wire.push((from, to, d.clone()));
            if !self.link_up {
                continue;
            }
            let which = if to == self.a.addr {
                'a'
            } else if to == self.b.addr {
                'b'
            } else {
                continue; // nobody lives there any more
            };
            self.inject(which, from, &d);
        }
    }

    /// Let simulated time pass, ticking both ends every STEP.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += STEP;
            let now = self.now;
            self.a.t.tick(now);
            self.b.t.tick(now);
            self.flush();
        }
    }

    /// Send `packet` from `from` every STEP for `d`; returns how many the
    /// other end delivered.
    pub fn traffic(&mut self, from: char, d: Duration) -> usize {
        let to = if from == 'a' { 'b' } else { 'a' };
        let before = self.end(to).got.len();
        let end = self.now + d;
        let mut i = 0u32;
        while self.now < end {
            self.send(from, &i.to_be_bytes());
            i += 1;
            self.advance(STEP);
        }
        self.end(to).got.len() - before
    }

    /// Both ends up and a packet each way gets through.
    pub fn works(&mut self) -> bool {
        let (na, nb) = (self.a.got.len(), self.b.got.len());
        self.send('a', b"ping from a");
        self.send('b', b"ping from b");
        self.advance(STEP);
        self.b.got.len() > nb
            && self.b.got.last().unwrap() == b"ping from a"
            && self.a.got.len() > na
            && self.a.got.last().unwrap() == b"ping from b"
    }
}
