//! Fuzz drivers: each takes any byte string, turns it into inputs for one
//! of weft's pure cores, and panics when an invariant breaks. The same
//! functions run under libFuzzer (`fuzz/`, coverage-guided) and in ordinary
//! tests (`tests/drivers.rs`: the stored corpus plus random inputs), so a
//! crash the fuzzer finds becomes a corpus file and then a regression test.
//!
//! Inputs are decoded, not parsed: every byte string is a valid program,
//! and a short one simply ends early. That keeps the fuzzer's mutations
//! meaningful (a flipped byte changes one operation, not the framing).

use std::net::SocketAddr;
use std::time::Duration;

use weft_switch::{
    Action, Actions, Instant, MirrorConfig, PortConfig, PortId, StpMode, Switch, SwitchConfig,
};
use weft_tunnel::{Cipher, CipherChoice, Config, PrivateKey, Received, Sent, Timers, Tunnel};
use weft_wire::bpdu::BpduFlags;
use weft_wire::{
    BpduPacket, BpduRepr, BridgeId, ConfigBpdu, EthernetFrame, L2Header, MacAddr, StpTime,
    VlanHeader,
};

/// The stored inputs of a target (`corpus/TARGET/`: seeds and every crash
/// the fuzzer once found), sorted by file name, for the tests that replay
/// them (this crate's drivers, the tc BPF switch's parity with the core).
/// Panics on fewer than 3: an empty corpus would make those tests pass
/// without running anything.
pub fn corpus(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 3,
        "corpus {} has {} inputs",
        dir.display(),
        v.len()
    );
    v
}

/// Reads the input a field at a time; past the end every field is zero.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Every frame parser over the raw input: errors are fine, panics are not,
/// and a BPDU that parses must re-emit to bytes that parse the same.
pub fn wire(data: &[u8]) {
    let _ = L2Header::parse(data);
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
    }
    if let Ok(h) = VlanHeader::new_checked(data) {
        let _ = (h.tci(), h.ethertype(), h.payload().len());
    }
    if let Ok(p) = BpduPacket::new_checked(data) {
        let _ = BpduRepr::parse(&p);
    }
    if let Ok((src, repr)) = BpduRepr::parse_frame(data) {
        let mut buf = vec![0u8; repr.frame_len()];
        repr.emit_frame(src, &mut buf);
        assert_eq!(
            BpduRepr::parse_frame(&buf),
            Ok((src, repr)),
            "a BPDU did not survive emit and parse"
        );
    }
}

const PORTS: u16 = 6;

/// The switch every `switch` input drives: access ports of two VLANs, a
/// trunk with a native VLAN, a trunk of every VLAN, and a mirror port.
pub fn test_config(mode: StpMode) -> SwitchConfig {
    let mut c = SwitchConfig::new(
        MacAddr::from_u64(0x0200_0000_ff00),
        vec![
            PortConfig::access(1).edge(),
            PortConfig::access(2),
            PortConfig::trunk([1, 2, 3], Some(1)),
            PortConfig::trunk(1..=4094, None),
            PortConfig::access(1),
            PortConfig::access(1),
        ],
    );
    c.stp.mode = mode;
    // Small, so a short input can fill it and reach the table-full path.
    c.fdb_max_entries = 16;
    c.mirror = MirrorConfig {
        output: Some(PortId(5)),
        select_ingress: vec![PortId(2)],
        select_egress: vec![PortId(1)],
        select_vlans: [3].into_iter().collect(),
    };
    c
}

/// Watches the `switch` driver: another implementation of the switch can
/// be run on the same frames and compared (the tc BPF program's tests do).
pub trait SwitchObserver {
    /// The switch was made from `cfg`.
    fn start(&mut self, _cfg: &SwitchConfig) {}
    /// `frame` is about to enter port `port` of `sw`.
    fn before_receive(&mut self, _sw: &Switch, _port: PortId, _frame: &[u8]) {}
    /// ... and `sw` answered `out`.
    fn after_receive(&mut self, _sw: &Switch, _port: PortId, _frame: &[u8], _out: &Actions) {}
}

impl SwitchObserver for () {}

fn mac(r: &mut Reader) -> MacAddr {
    match r.u8() % 6 {
        0 => MacAddr::BROADCAST,
        1 => MacAddr::STP_GROUP,
        2 => MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]),
        3 => MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
        // A few unicast addresses, so sources get learned and then hit.
        4 => MacAddr::from_u64(0x0200_0000_0000 + u64::from(r.u8() % 8)),
        _ => {
            let b = r.bytes(6);
            let mut m = [0u8; 6];
            m[..b.len()].copy_from_slice(b);
            MacAddr(m)
        }
    }
}

fn bpdu(r: &mut Reader) -> Vec<u8> {
    let id = BridgeId::new(
        u16::from(r.u8() % 4) << 12,
        MacAddr::from_u64(0x0200_0000_0000 + u64::from(r.u8() % 8)),
    );
    let body = ConfigBpdu {
        flags: BpduFlags(r.u8()),
        root: id,
        root_path_cost: r.u32() % 1000,
        bridge: id,
        port_id: r.u16(),
        message_age: StpTime(r.u16() % 0x1800),
        max_age: StpTime(r.u16() % 0x1800),
        hello_time: StpTime(r.u16() % 0x600),
        forward_delay: StpTime(r.u16() % 0x1800),
    };
    let b = match r.u8() % 3 {
        0 => BpduRepr::Config(body),
        1 => BpduRepr::Rst(body),
        _ => BpduRepr::Tcn,
    };
    let mut f = vec![0; b.frame_len()];
    b.emit_frame(id.mac, &mut f);
    f
}

fn frame(r: &mut Reader) -> Vec<u8> {
    match r.u8() % 4 {
        0 => {
            let n = usize::from(r.u8());
            r.bytes(n).to_vec()
        }
        1 => {
            let mut f = Vec::new();
            f.extend_from_slice(&mac(r).0);
            f.extend_from_slice(&mac(r).0);
            for _ in 0..r.u8() % 3 {
                let tpid = match r.u8() % 3 {
                    0 => 0x8100u16,
                    1 => 0x88a8,
                    _ => r.u16(),
                };
                f.extend_from_slice(&tpid.to_be_bytes());
                f.extend_from_slice(&r.u16().to_be_bytes());
            }
            f.extend_from_slice(&r.u16().to_be_bytes());
            let len = usize::from(r.u16()) % 1600;
            f.resize(f.len() + len, 0xab);
            f
        }
        2 => bpdu(r),
        _ => {
            // A valid BPDU cut short or with one byte changed.
            let mut f = bpdu(r);
            let at = usize::from(r.u8()) % f.len();
            let x = r.u8();
            if x & 1 == 0 {
                f.truncate(at);
            } else {
                f[at] ^= x;
            }
            f
        }
    }
}

/// Every action names a real port, never the ingress port, and no port
/// gets the same frame twice.
fn check_actions(out: &Actions, ingress: Option<u16>) {
    let mut seen = Vec::new();
    for a in out.as_slice() {
        let p = a.port().0;
        assert!(p < PORTS, "action on port {p}, which does not exist");
        if let Action::Forward { port, .. } = a {
            assert_ne!(
                Some(port.0),
                ingress,
                "frame sent back out of its ingress port"
            );
            assert!(!seen.contains(&port.0), "port {} got a frame twice", port.0);
            seen.push(port.0);
        }
    }
}

/// The switch core: frames on any port (real or not), timer ticks and link
/// changes, at any times. Besides "no panic": the action checks above,
/// forwarded frames grow by at most one tag, everything the switch makes
/// itself is a valid BPDU, and the table never exceeds its bound.
pub fn switch(data: &[u8]) {
    switch_observed(data, &mut ());
}

/// [`switch`], telling `obs` about every frame.
pub fn switch_observed(data: &[u8], obs: &mut dyn SwitchObserver) {
    let mut r = Reader { data };
    let mode = match r.u8() % 3 {
        0 => StpMode::Off,
        1 => StpMode::Stp,
        _ => StpMode::Rstp,
    };
    let cfg = test_config(mode);
    obs.start(&cfg);
    let mut sw = Switch::new(cfg);
    let mut out = Actions::new();
    let mut now = Instant::from_secs(1);
    while !r.is_empty() {
        now = now + Duration::from_millis(u64::from(r.u16() % 3000));
        match r.u8() % 8 {
            0..=5 => {
                let p = u16::from(r.u8()) % (PORTS + 2);
                let f = frame(&mut r);
                obs.before_receive(&sw, PortId(p), &f);
                sw.receive(PortId(p), &f, now, &mut out);
                obs.after_receive(&sw, PortId(p), &f, &out);
                check_actions(&out, Some(p));
                for (a, (_, o)) in out.as_slice().iter().zip(out.frames(&f)) {
                    match a {
                        Action::Forward { .. } => assert!(
                            o.len() <= f.len() + 4,
                            "a forwarded frame grew by more than one tag"
                        ),
                        Action::Transmit { .. } => assert!(
                            BpduRepr::parse_frame(&o.to_vec()).is_ok(),
                            "the switch sent a BPDU it cannot parse"
                        ),
                    }
                }
            }
            6 => {
                sw.tick(now, &mut out);
                check_actions(&out, None);
                for (_, o) in out.frames(&[]) {
                    assert!(
                        BpduRepr::parse_frame(&o.to_vec()).is_ok(),
                        "the switch sent a BPDU it cannot parse"
                    );
                }
            }
            _ => {
                let p = u16::from(r.u8()) % (PORTS + 1);
                let up = r.u8() & 1 == 1;
                sw.set_link(PortId(p), up, now, &mut out);
                check_actions(&out, None);
            }
        }
        assert!(
            sw.fdb().len() <= sw.fdb().max_entries(),
            "the FDB grew past its bound"
        );
    }
}

/// Two tunnel ends wired back to back in simulated time, with every
/// datagram that crossed kept.
struct Pair {
    a: Tunnel,
    b: Tunnel,
    now: Duration,
    handshakes: Vec<Vec<u8>>,
}

const A: &str = "10.0.0.1:5000";
const B: &str = "10.0.0.2:5000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

impl Pair {
    fn new(cipher: Cipher) -> Pair {
        // Fixed keys: the fuzzer's runs differ only by its input (and by
        // the handshake's ephemeral keys, which no input can observe).
        let ka = PrivateKey::from_bytes([0x11; 32]);
        let kb = PrivateKey::from_bytes([0x22; 32]);
        let cfg = |k: &PrivateKey, peer: &PrivateKey, ep: &str, wall| Config {
            private_key: k.clone(),
            peer: peer.public_key(),
            endpoint: Some(addr(ep)),
            timers: Timers::default(),
            wall_clock_at_zero: wall,
            cipher: CipherChoice::Only(cipher),
        };
        let now = Duration::from_secs(1);
        let mut p = Pair {
            a: Tunnel::new(cfg(&ka, &kb, B, 1_000), now),
            b: Tunnel::new(cfg(&kb, &ka, A, 2_000), now),
            now,
            handshakes: Vec::new(),
        };
        // One packet each way completes and confirms the session.
        p.send_and_deliver(true, b"hello");
        p.send_and_deliver(false, b"hello back");
        p
    }

    /// Sends from a (or b) and moves datagrams both ways until quiet.
    fn send_and_deliver(&mut self, from_a: bool, packet: &[u8]) {
        let mut buf = vec![0u8; packet.len() + weft_tunnel::OVERHEAD];
        let src = if from_a { &mut self.a } else { &mut self.b };
        let mut wire = Vec::new();
        if let Sent::Datagram(_, n) = src.send(self.now, packet, &mut buf) {
            wire.push((from_a, buf[..n].to_vec()));
        }
        for _ in 0..16 {
            while let Some(t) = self.a.poll_transmit() {
                wire.push((true, t.data));
            }
            while let Some(t) = self.b.poll_transmit() {
                wire.push((false, t.data));
            }
            if wire.is_empty() {
                return;
            }
            for (from_a, d) in std::mem::take(&mut wire) {
                if d[0] != 4 {
                    self.handshakes.push(d.clone());
                }
                let mut out = vec![0u8; d.len()];
                if from_a {
                    self.b.receive(self.now, addr(A), &d, &mut out);
                } else {
                    self.a.receive(self.now, addr(B), &d, &mut out);
                }
            }
        }
    }
}

const GENUINE: usize = 16;

/// The tunnel's receive path, at the responder: genuine datagrams (again
/// and again), bit-flipped, cut, random, and altered handshakes, in any
/// order. Only genuine datagrams are delivered, each at most once and
/// byte-exact; every drop is counted under its reason; nothing
/// unauthenticated is answered; the session still works afterwards.
pub fn tunnel_receive(data: &[u8]) {
    let mut r = Reader { data };
    // Both data ciphers' receive paths, whichever this CPU favours.
    let cipher = if r.u8().is_multiple_of(2) {
        Cipher::ChaCha20Poly1305
    } else {
        Cipher::Aes256Gcm
    };
    let mut p = Pair::new(cipher);
    assert!(p.a.is_up(p.now) && p.b.is_up(p.now), "no session");
    let mut genuine = Vec::new();
    let mut payloads = Vec::new();
    for i in 0..GENUINE {
        let pkt: Vec<u8> = (0..(i * 89 % 1400 + 1))
            .map(|k| (k ^ i) as u8)
            .chain((i as u32).to_be_bytes())
            .collect();
        let mut buf = vec![0u8; pkt.len() + weft_tunnel::OVERHEAD];
        let Sent::Datagram(_, n) = p.a.send(p.now, &pkt, &mut buf) else {
            panic!("a has a session but did not send");
        };
        genuine.push(buf[..n].to_vec());
        payloads.push(pkt);
    }
    let mut delivered = [false; GENUINE];
    while !r.is_empty() {
        let (d, which) = match r.u8() % 5 {
            0 => {
                let i = usize::from(r.u8()) % GENUINE;
                (genuine[i].clone(), Some(i))
            }
            1 => {
                let i = usize::from(r.u8()) % GENUINE;
                let mut d = genuine[i].clone();
                let j = usize::from(r.u16()) % d.len();
                d[j] ^= r.u8().max(1);
                (d, None)
            }
            2 => {
                let i = usize::from(r.u8()) % GENUINE;
                let n = usize::from(r.u16()) % genuine[i].len();
                (genuine[i][..n].to_vec(), None)
            }
            3 => {
                let mut d = vec![r.u8()];
                let n = usize::from(r.u8());
                d.extend_from_slice(r.bytes(n));
                (d, None)
            }
            _ => {
                let mut d = p.handshakes[usize::from(r.u8()) % p.handshakes.len()].clone();
                let j = usize::from(r.u8()) % d.len();
                d[j] ^= r.u8().max(1);
                (d, None)
            }
        };
        let before = p.b.counters().clone();
        let mut out = vec![0u8; d.len()];
        let got = p.b.receive(p.now, addr(A), &d, &mut out);
        let after = p.b.counters();
        match got {
            Received::Packet(n) => {
                let i = which.expect("only genuine datagrams are delivered");
                assert!(!delivered[i], "genuine datagram {i} delivered twice");
                delivered[i] = true;
                assert_eq!(&out[..n], &payloads[i][..], "delivered bytes differ");
            }
            Received::Dropped(reason) => {
                assert_eq!(after.dropped(reason), before.dropped(reason) + 1);
                assert_eq!(after.drops_total(), before.drops_total() + 1);
                if let Some(i) = which {
                    assert!(
                        delivered[i],
                        "the first copy of genuine datagram {i} was dropped: {reason:?}"
                    );
                }
            }
            Received::Keepalive | Received::Handshake => {
                panic!("an altered or random datagram was accepted: {got:?}")
            }
        }
        assert!(
            p.b.poll_transmit().is_none(),
            "b answered unauthenticated input"
        );
    }
    // Still works: a fresh packet gets through.
    let before = p.b.counters().clone();
    let mut buf = vec![0u8; 64 + weft_tunnel::OVERHEAD];
    let Sent::Datagram(_, n) = p.a.send(p.now, &[7u8; 64], &mut buf) else {
        panic!("a stopped sending");
    };
    let mut out = vec![0u8; n];
    assert_eq!(
        p.b.receive(p.now, addr(A), &buf[..n], &mut out),
        Received::Packet(64),
        "the session broke"
    );
    assert_eq!(p.b.counters().drops_total(), before.drops_total());
}
