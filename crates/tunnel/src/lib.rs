//! weft's tunnel core: everything a VTun-style tunnel needs except I/O.
//!
//! One [`Tunnel`] is one end of a point-to-point tunnel with one peer. Feed it
//! datagrams received from the underlay ([`Tunnel::receive`]), packets or
//! frames to send ([`Tunnel::send`]) and the passing of time
//! ([`Tunnel::tick`]); take datagrams to send from [`Tunnel::poll_transmit`].
//! Time is a [`Duration`] since any fixed start the caller picks, so tests
//! run in simulated time.
//!
//! The protocol (docs/tunnel.md has the full description):
//! - Handshake: `Noise_KK_25519_ChaChaPoly_BLAKE2s` from the `snow` crate.
//!   Both ends know each other's static key beforehand; the handshake gives
//!   mutual authentication and forward secrecy (fresh ephemeral keys each
//!   time). The first message carries a timestamp so a replayed one is
//!   refused, and both carry a keyed BLAKE2s MAC ("mac1", as in WireGuard)
//!   so that random packets are refused after one hash, before any
//!   Diffie-Hellman; valid-looking handshakes are rate limited.
//!   The initiator offers data ciphers under the first message's
//!   encryption; the responder picks one ([`CipherChoice`], [`Cipher`]).
//! - Data: a 16-byte header (type, receiver index, 64-bit counter) and the
//!   ChaCha20-Poly1305 or AES-256-GCM ciphertext (keys: the handshake's
//!   split) with the counter as nonce. The receiver
//!   looks the index up (unknown: dropped, no crypto), checks the counter
//!   against its replay window, decrypts, then moves the window.
//! - Rekeying after a time or a volume, keepalives, dead-peer detection,
//!   and roaming (the peer's address follows its authenticated packets)
//!   follow WireGuard's timer rules, simplified for one peer.
//!
//! For callers that encrypt and decrypt on several threads, each data
//! packet's work splits in three: bookkeeping under `&mut Tunnel`
//! ([`Tunnel::prepare_send`], [`Tunnel::prepare_receive`]), the cipher on a
//! [`Seal`] or [`Open`] job (`&self`, any thread, no `Tunnel` needed), and
//! for received packets the replay window and session state again under
//! `&mut Tunnel` ([`Tunnel::finish_receive`]). [`Tunnel::send`] and
//! [`Tunnel::receive`] are exactly these steps in a row.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use blake2::digest::{consts::U16, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use snow::params::NoiseParams;
use snow::HandshakeState;

pub mod cipher;
pub mod keys;
pub mod replay;

pub use cipher::{aes_is_fast, Cipher, CipherChoice};
use cipher::{Keys, TAG};
pub use keys::{KeyError, PrivateKey, PublicKey};

/// The Noise protocol name.
pub const NOISE: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2s";
/// Mixed into every handshake: a different protocol or version never
/// completes a handshake with this one.
/// v2: the first message offers data ciphers, the second names the pick.
pub const PROLOGUE: &[u8] = b"weft-tunnel v2";

/// Bytes a data packet adds to the packet it carries (header and tag).
pub const OVERHEAD: usize = HEADER + TAG;
/// Bytes of IPv4 + UDP + tunnel overhead on the underlay.
pub const UDP4_OVERHEAD: usize = 20 + 8 + OVERHEAD;
/// Bytes of IPv6 + UDP + tunnel overhead on the underlay.
pub const UDP6_OVERHEAD: usize = 40 + 8 + OVERHEAD;
/// The largest packet a data message carries (Noise's 65535-byte limit).
pub const MAX_PACKET: usize = 65535 - TAG;

const HEADER: usize = 16;
const MAC: usize = 16;
const TYPE_INIT: u8 = 1;
const TYPE_RESP: u8 = 2;
const TYPE_DATA: u8 = 4;
/// type+index, then Noise `e, es, ss` with a payload of an 8-byte
/// timestamp and the cipher offer byte.
const INIT_LEN: usize = 8 + 32 + INIT_PAYLOAD + TAG + MAC;
const INIT_PAYLOAD: usize = 9;
/// type+index+index, then Noise `e, ee, se` with the picked cipher's byte.
const RESP_LEN: usize = 12 + 32 + 1 + TAG + MAC;
/// Packets held while no session exists (the newest are kept).
const QUEUE: usize = 64;
/// Nonces stop well before 2^64 so a counter never wraps.
const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Timer and volume settings. The defaults are WireGuard's.
#[derive(Clone, Debug)]
pub struct Timers {
    /// Start a new handshake when the session is this old.
    pub rekey_after_time: Duration,
    /// Never use a session this old.
    pub reject_after_time: Duration,
    /// Retry a handshake after this long without an answer.
    pub rekey_timeout: Duration,
    /// Answer received data within this long (with a keepalive if there
    /// is nothing else to send).
    pub keepalive_timeout: Duration,
    /// Send something at least this often even when idle (keeps NAT and
    /// stateful-firewall entries open, and detects a dead peer).
    pub persistent_keepalive: Option<Duration>,
    /// Start a new handshake after sending this many bytes in one session.
    pub rekey_after_bytes: u64,
    /// Handshake messages (that passed the MAC) processed per second, at
    /// most; bounds the Diffie-Hellman work anyone can cause.
    pub handshakes_per_second: u32,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            rekey_after_time: Duration::from_secs(120),
            reject_after_time: Duration::from_secs(180),
            rekey_timeout: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(10),
            persistent_keepalive: None,
            rekey_after_bytes: 1 << 40,
            handshakes_per_second: 20,
        }
    }
}

/// One end's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub private_key: PrivateKey,
    pub peer: PublicKey,
    /// Where the peer is, if known. Without it this end only answers.
    pub endpoint: Option<SocketAddr>,
    pub timers: Timers,
    /// Wall-clock nanoseconds (any epoch, but increasing across restarts:
    /// Unix time is right) at the caller's time zero. Handshake timestamps
    /// are built from it, so a restarted peer's handshakes are newer.
    pub wall_clock_at_zero: u64,
    /// The data ciphers this end offers and accepts.
    pub cipher: CipherChoice,
}

/// Why a datagram or packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its type needs, or a handshake of the wrong length.
    Truncated,
    /// An unknown message type or nonzero reserved bytes.
    Malformed,
    /// A handshake message whose MAC is wrong (random or misdirected
    /// traffic, or a peer that has the wrong public key for us).
    BadMac,
    /// Over the handshake rate limit.
    RateLimited,
    /// A handshake message that failed Noise authentication (wrong static
    /// key on either side, or forged).
    HandshakeAuth,
    /// A first handshake message not newer than the last one accepted.
    HandshakeReplay,
    /// A response to a handshake this end did not start, or no longer waits for.
    UnexpectedResponse,
    /// A data packet for a session index this end does not have.
    UnknownIndex,
    /// A data packet whose counter was already accepted.
    Replay,
    /// A data packet older than the replay window.
    TooOld,
    /// A data packet failing authentication (forged or corrupted).
    Auth,
    /// A data packet for a session past its reject time.
    Expired,
    /// A packet to send with no session and the waiting queue full, or
    /// bigger than a data message carries.
    NoSession,
    /// A handshake whose cipher offer or pick this end does not accept
    /// (the two ends name different ciphers in their `cipher` settings).
    Cipher,
}

impl DropReason {
    pub const ALL: [DropReason; 14] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::BadMac,
        DropReason::RateLimited,
        DropReason::HandshakeAuth,
        DropReason::HandshakeReplay,
        DropReason::UnexpectedResponse,
        DropReason::UnknownIndex,
        DropReason::Replay,
        DropReason::TooOld,
        DropReason::Auth,
        DropReason::Expired,
        DropReason::NoSession,
        DropReason::Cipher,
    ];

    /// A stable snake_case name (status output, JSON).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadMac => "bad_mac",
            DropReason::RateLimited => "rate_limited",
            DropReason::HandshakeAuth => "handshake_auth",
            DropReason::HandshakeReplay => "handshake_replay",
            DropReason::UnexpectedResponse => "unexpected_response",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::Replay => "replay",
            DropReason::TooOld => "too_old",
            DropReason::Auth => "auth",
            DropReason::Expired => "expired",
            DropReason::NoSession => "no_session",
            DropReason::Cipher => "cipher",
        }
    }
}

/// What the tunnel did, for `weft status` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Inner packets sent and their bytes (without overhead).
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Inner packets received and delivered, and their bytes.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub keepalives_sent: u64,
    pub keepalives_received: u64,
    pub handshakes_initiated: u64,
    /// Sessions established (either side).
    pub handshakes_completed: u64,
    /// Times the peer's address changed.
    pub roams: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    pub drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// The result of [`Tunnel::receive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// An inner packet of this many bytes is at the start of the output buffer.
    Packet(usize),
    /// An authenticated empty packet (keepalive or session confirmation).
    Keepalive,
    /// A handshake message was processed; datagrams may be waiting in
    /// [`Tunnel::poll_transmit`].
    Handshake,
    Dropped(DropReason),
}

/// The result of [`Tunnel::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Send these many bytes of the output buffer to this address.
    Datagram(SocketAddr, usize),
    /// No session yet: the packet waits for the handshake, whose messages
    /// come out of [`Tunnel::poll_transmit`].
    Queued,
    Dropped(DropReason),
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// The result of [`Tunnel::prepare_send`] (not `Clone`: see [`Seal`]).
pub enum Prepared {
    /// Encrypt the packet with this job and send it to this address.
    Seal(SocketAddr, Seal),
    /// As [`Sent::Queued`]: the tunnel kept a copy.
    Queued,
    Dropped(DropReason),
}

/// The result of [`Tunnel::prepare_receive`].
#[derive(Clone)]
pub enum Incoming {
    /// Nothing more to do with the datagram.
    Done(Received),
    /// A data packet: decrypt it with the job, then
    /// [`Tunnel::finish_receive`].
    Open(Open),
}

/// One data packet to encrypt: its session's keys and its counter.
/// Sealing consumes it, and it is not `Clone`: a counter is a nonce, and
/// two packets sealed under one (with AES-256-GCM, even once) give away
/// the session.
pub struct Seal {
    keys: Arc<Keys>,
    remote_index: u32,
    counter: u64,
}

impl Seal {
    /// Write the data message for `packet` into `out` (which needs
    /// `packet.len() + OVERHEAD` bytes); returns its length.
    pub fn seal(self, packet: &[u8], out: &mut [u8]) -> usize {
        out[..4].copy_from_slice(&[TYPE_DATA, 0, 0, 0]);
        out[4..8].copy_from_slice(&self.remote_index.to_le_bytes());
        out[8..16].copy_from_slice(&self.counter.to_le_bytes());
        out[HEADER..HEADER + packet.len()].copy_from_slice(packet);
        HEADER
            + self
                .keys
                .seal(self.counter, &mut out[HEADER..], packet.len())
    }

    /// The data cipher of the packet's session.
    pub fn cipher(&self) -> Cipher {
        self.keys.cipher()
    }
}

/// One received data packet to decrypt.
#[derive(Clone)]
pub struct Open {
    keys: Arc<Keys>,
    index: u32,
    counter: u64,
}

impl Open {
    /// Decrypt the data message `datagram` into `out` (which needs
    /// `datagram.len()` bytes): the inner packet's length, or None if it
    /// fails authentication.
    pub fn open(&self, datagram: &[u8], out: &mut [u8]) -> Option<usize> {
        if out.len() < datagram.len() || datagram.len() < OVERHEAD {
            return None;
        }
        let body = &datagram[HEADER..];
        out[..body.len()].copy_from_slice(body);
        self.keys.open(self.counter, &mut out[..body.len()])
    }
}

struct Session {
    local_index: u32,
    remote_index: u32,
    /// Shared with [`Seal`] and [`Open`] jobs in flight on other threads.
    keys: Arc<Keys>,
    send_counter: u64,
    sent_bytes: u64,
    window: replay::ReplayWindow,
    created: Duration,
}

struct Initiation {
    index: u32,
    hs: HandshakeState,
    sent: Duration,
}

/// One end of a tunnel. See the crate documentation.
pub struct Tunnel {
    local: PrivateKey,
    peer: PublicKey,
    leader: bool,
    params: NoiseParams,
    /// This end's cipher offer byte (from the config and the CPU).
    offer: u8,
    /// mac1 key of messages addressed to us, and to the peer.
    mac_in: [u8; 32],
    mac_out: [u8; 32],
    endpoint: Option<SocketAddr>,
    timers: Timers,
    wall0: u64,
    current: Option<Session>,
    previous: Option<Session>,
    /// Responder's new session, used once the initiator's first data
    /// packet confirms it.
    next: Option<Session>,
    init: Option<Initiation>,
    last_init: Option<Duration>,
    peer_timestamp: u64,
    last_sent: Duration,
    last_received: Option<Duration>,
    /// When data was first sent since the peer was last heard from.
    unanswered_since: Option<Duration>,
    /// When data arrived that nothing has been sent after.
    keepalive_owed_since: Option<Duration>,
    queue: VecDeque<Vec<u8>>,
    out: VecDeque<Transmit>,
    tokens: f64,
    tokens_at: Duration,
    counters: Counters,
    last_handshake: Option<Duration>,
}

impl Tunnel {
    pub fn new(cfg: Config, now: Duration) -> Tunnel {
        let local_pub = cfg.private_key.public_key();
        let burst = f64::from(cfg.timers.handshakes_per_second.max(1));
        let mut t = Tunnel {
            mac_in: mac_key(&local_pub),
            mac_out: mac_key(&cfg.peer),
            local: cfg.private_key,
            leader: local_pub < cfg.peer,
            peer: cfg.peer,
            params: NOISE.parse().expect("a valid Noise protocol name"),
            offer: cfg.cipher.offer(aes_is_fast()),
            endpoint: cfg.endpoint,
            timers: cfg.timers,
            wall0: cfg.wall_clock_at_zero,
            current: None,
            previous: None,
            next: None,
            init: None,
            last_init: None,
            peer_timestamp: 0,
            last_sent: now,
            last_received: None,
            unanswered_since: None,
            keepalive_owed_since: None,
            queue: VecDeque::new(),
            out: VecDeque::new(),
            tokens: burst,
            tokens_at: now,
            counters: Counters::default(),
            last_handshake: None,
        };
        t.tick(now);
        t
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Where datagrams for the peer go now.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// The data cipher of the current session.
    pub fn cipher(&self) -> Option<Cipher> {
        self.current.as_ref().map(|s| s.keys.cipher())
    }

    /// When the last handshake completed (caller's time).
    pub fn last_handshake(&self) -> Option<Duration> {
        self.last_handshake
    }

    /// Whether a session exists that can carry data now.
    pub fn is_up(&self, now: Duration) -> bool {
        self.usable(now)
    }

    /// Start a new handshake now (unless one is under way), keeping the
    /// current session until it completes. For a transport that knows more
    /// than datagrams do: a new TCP connection suggests a restarted peer.
    pub fn rehandshake(&mut self, now: Duration) {
        let recent = self
            .init
            .as_ref()
            .is_some_and(|i| now < i.sent + self.timers.rekey_timeout);
        if !recent {
            self.init = None;
            self.initiate(now);
        }
    }

    /// A datagram to send (handshakes, keepalives, packets that waited for
    /// a session). Call after every `send`, `receive` and `tick`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Encrypt one inner packet. `out` needs `packet.len() + OVERHEAD` bytes.
    pub fn send(&mut self, now: Duration, packet: &[u8], out: &mut [u8]) -> Sent {
        if out.len() < packet.len() + OVERHEAD {
            return self.drop(DropReason::NoSession, Sent::Dropped);
        }
        match self.prepare_send(now, packet) {
            Prepared::Seal(to, job) => Sent::Datagram(to, job.seal(packet, out)),
            Prepared::Queued => Sent::Queued,
            Prepared::Dropped(r) => Sent::Dropped(r),
        }
    }

    /// [`Tunnel::send`] without the cipher: takes the packet's counter and
    /// does the bookkeeping; the returned [`Seal`] job encrypts it (on any
    /// thread). Jobs of one session may run in any order and concurrently;
    /// the receiver's replay window accepts them out of order.
    pub fn prepare_send(&mut self, now: Duration, packet: &[u8]) -> Prepared {
        if packet.len() > MAX_PACKET {
            return self.drop(DropReason::NoSession, Prepared::Dropped);
        }
        self.rekey_if_due(now);
        match self.endpoint {
            Some(to) if self.usable(now) => Prepared::Seal(to, self.seal_job(now, packet.len())),
            _ => {
                if self.queue.len() == QUEUE {
                    self.queue.pop_front();
                    self.counters.drops[DropReason::NoSession as usize] += 1;
                }
                self.queue.push_back(packet.to_vec());
                if self.init.is_none() {
                    self.initiate(now);
                }
                Prepared::Queued
            }
        }
    }

    /// Process one datagram from the underlay. `out` needs `datagram.len()` bytes.
    pub fn receive(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Received {
        let data = datagram.len() >= OVERHEAD && datagram[..4] == [TYPE_DATA, 0, 0, 0];
        if data && out.len() < datagram.len() {
            return self.drop(DropReason::Truncated, Received::Dropped);
        }
        match self.prepare_receive(now, from, datagram) {
            Incoming::Done(r) => r,
            Incoming::Open(job) => {
                let opened = job.open(datagram, out);
                self.finish_receive(now, from, &job, opened)
            }
        }
    }

    /// [`Tunnel::receive`] up to the cipher: handshakes are processed
    /// here; a data packet that may be valid (known session, counter not
    /// yet seen) comes back as an [`Open`] job, to decrypt on any thread
    /// and hand to [`Tunnel::finish_receive`].
    pub fn prepare_receive(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Incoming {
        let d = datagram;
        if d.len() < 4 {
            return self.drop(DropReason::Truncated, |r| {
                Incoming::Done(Received::Dropped(r))
            });
        }
        if d[1..4] != [0, 0, 0] {
            return self.drop(DropReason::Malformed, |r| {
                Incoming::Done(Received::Dropped(r))
            });
        }
        match d[0] {
            TYPE_DATA => self.prepare_data(now, d),
            TYPE_INIT => Incoming::Done(self.receive_init(now, from, d)),
            TYPE_RESP => Incoming::Done(self.receive_response(now, from, d)),
            _ => self.drop(DropReason::Malformed, |r| {
                Incoming::Done(Received::Dropped(r))
            }),
        }
    }

    /// Run the timers: handshake retries and rekeys, keepalives, dead-peer
    /// detection, session expiry. Call at least every few hundred ms.
    pub fn tick(&mut self, now: Duration) {
        let t = self.timers.clone();
        for slot in [&mut self.current, &mut self.previous, &mut self.next] {
            if slot
                .as_ref()
                .is_some_and(|s| now >= s.created + t.reject_after_time)
            {
                *slot = None;
            }
        }
        if let Some(i) = &self.init {
            if now >= i.sent + t.rekey_timeout {
                self.init = None;
                self.initiate(now);
            }
        }
        // Always on: without a session, keep trying (at the retry pace).
        if !self.usable(now)
            && self.init.is_none()
            && self.last_init.is_none_or(|l| now >= l + t.rekey_timeout)
        {
            self.initiate(now);
        }
        self.rekey_if_due(now);
        // Sent data, heard nothing back: the peer may have lost the session
        // (restarted) or moved; a new handshake finds out.
        if let Some(since) = self.unanswered_since {
            if now >= since + t.keepalive_timeout + t.rekey_timeout {
                self.unanswered_since = None;
                if self.init.is_none() {
                    self.initiate(now);
                }
            }
        }
        if self.usable(now) {
            let owed = self
                .keepalive_owed_since
                .is_some_and(|s| now >= s + t.keepalive_timeout);
            let idle = t
                .persistent_keepalive
                .is_some_and(|p| now >= self.last_sent + p);
            if owed || idle {
                self.keepalive(now);
            }
        }
    }

    fn drop<T>(&mut self, r: DropReason, f: impl FnOnce(DropReason) -> T) -> T {
        self.counters.drops[r as usize] += 1;
        f(r)
    }

    fn usable(&self, now: Duration) -> bool {
        self.current.as_ref().is_some_and(|s| {
            now < s.created + self.timers.reject_after_time
                && s.send_counter < REJECT_AFTER_MESSAGES
        })
    }

    fn rekey_if_due(&mut self, now: Duration) {
        let Some(s) = &self.current else { return };
        // One end (the lower public key) rekeys on time, the other only if
        // that one has not: both starting at once works (each answers the
        // other) but costs a second handshake each time.
        let after = if self.leader {
            self.timers.rekey_after_time
        } else {
            self.timers.rekey_after_time + 2 * self.timers.rekey_timeout
        };
        let due = now >= s.created + after
            || s.sent_bytes >= self.timers.rekey_after_bytes
            || s.send_counter >= REJECT_AFTER_MESSAGES / 2;
        let waiting = self
            .last_init
            .is_some_and(|l| now < l + self.timers.rekey_timeout);
        if due && self.init.is_none() && !waiting {
            self.initiate(now);
        }
    }

    /// A Noise KK handshake between our key and the peer's.
    fn handshake(&self, initiator: bool) -> HandshakeState {
        let b = snow::Builder::new(self.params.clone())
            .local_private_key(self.local.as_bytes())
            .and_then(|b| b.remote_public_key(self.peer.as_bytes()))
            .and_then(|b| b.prologue(PROLOGUE));
        if initiator {
            b.and_then(|b| b.build_initiator())
        } else {
            b.and_then(|b| b.build_responder())
        }
        .expect("32-byte keys and a fixed protocol always build")
    }

    fn initiate(&mut self, now: Duration) {
        let Some(to) = self.endpoint else { return };
        let mut hs = self.handshake(true);
        let index = self.new_index();
        let mut m = vec![0u8; INIT_LEN];
        m[0] = TYPE_INIT;
        m[4..8].copy_from_slice(&index.to_le_bytes());
        let ts = self.wall0.saturating_add(now.as_nanos() as u64);
        let mut payload = [0u8; INIT_PAYLOAD];
        payload[..8].copy_from_slice(&ts.to_be_bytes());
        payload[8] = self.offer;
        let n = hs
            .write_message(&payload, &mut m[8..INIT_LEN - MAC])
            .expect("the first KK message fits");
        debug_assert_eq!(n, INIT_LEN - MAC - 8);
        let mac = mac1(&self.mac_out, &m[..INIT_LEN - MAC]);
        m[INIT_LEN - MAC..].copy_from_slice(&mac);
        self.init = Some(Initiation {
            index,
            hs,
            sent: now,
        });
        self.last_init = Some(now);
        self.counters.handshakes_initiated += 1;
        self.last_sent = now;
        self.out.push_back(Transmit { to, data: m });
    }

    fn new_index(&self) -> u32 {
        loop {
            let i = getrandom::u32().expect("the OS random source failed");
            let used = [&self.current, &self.previous, &self.next]
                .iter()
                .any(|s| s.as_ref().is_some_and(|s| s.local_index == i))
                || self.init.as_ref().is_some_and(|x| x.index == i);
            if !used {
                return i;
            }
        }
    }

    /// Take a token from the handshake bucket.
    fn rate_ok(&mut self, now: Duration) -> bool {
        let rate = f64::from(self.timers.handshakes_per_second.max(1));
        let dt = now.saturating_sub(self.tokens_at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate);
        self.tokens_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn receive_init(&mut self, now: Duration, from: SocketAddr, d: &[u8]) -> Received {
        if d.len() != INIT_LEN {
            return self.drop(DropReason::Truncated, Received::Dropped);
        }
        if !mac1_ok(&self.mac_in, d) {
            return self.drop(DropReason::BadMac, Received::Dropped);
        }
        if !self.rate_ok(now) {
            return self.drop(DropReason::RateLimited, Received::Dropped);
        }
        let mut hs = self.handshake(false);
        let mut payload = [0u8; 64];
        match hs.read_message(&d[8..INIT_LEN - MAC], &mut payload) {
            Ok(INIT_PAYLOAD) => {}
            _ => return self.drop(DropReason::HandshakeAuth, Received::Dropped),
        }
        let ts = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
        if ts <= self.peer_timestamp {
            return self.drop(DropReason::HandshakeReplay, Received::Dropped);
        }
        self.peer_timestamp = ts;
        let Some(cipher) = cipher::choose(payload[8], self.offer) else {
            return self.drop(DropReason::Cipher, Received::Dropped);
        };
        let remote_index = u32::from_le_bytes(d[4..8].try_into().expect("4 bytes"));
        let index = self.new_index();
        let mut m = vec![0u8; RESP_LEN];
        m[0] = TYPE_RESP;
        m[4..8].copy_from_slice(&index.to_le_bytes());
        m[8..12].copy_from_slice(&remote_index.to_le_bytes());
        hs.write_message(&[cipher.byte()], &mut m[12..RESP_LEN - MAC])
            .expect("the second KK message fits");
        let mac = mac1(&self.mac_out, &m[..RESP_LEN - MAC]);
        m[RESP_LEN - MAC..].copy_from_slice(&mac);
        self.next = Some(Session {
            local_index: index,
            remote_index,
            keys: Arc::new(data_keys(hs, cipher)),
            send_counter: 0,
            sent_bytes: 0,
            window: Default::default(),
            created: now,
        });
        // The endpoint moves only once the session is confirmed: a replayed
        // first message (possible after our restart) must not redirect
        // traffic. The answer goes to where the message came from.
        self.last_sent = now;
        self.out.push_back(Transmit { to: from, data: m });
        Received::Handshake
    }

    fn receive_response(&mut self, now: Duration, from: SocketAddr, d: &[u8]) -> Received {
        if d.len() != RESP_LEN {
            return self.drop(DropReason::Truncated, Received::Dropped);
        }
        if !mac1_ok(&self.mac_in, d) {
            return self.drop(DropReason::BadMac, Received::Dropped);
        }
        let ours = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
        if self.init.as_ref().is_none_or(|i| i.index != ours) {
            return self.drop(DropReason::UnexpectedResponse, Received::Dropped);
        }
        if !self.rate_ok(now) {
            return self.drop(DropReason::RateLimited, Received::Dropped);
        }
        let mut init = self.init.take().expect("checked above");
        let mut buf = [0u8; 64];
        match init.hs.read_message(&d[12..RESP_LEN - MAC], &mut buf) {
            Ok(1) => {}
            _ => {
                // A forged answer spends this attempt; the retry timer
                // starts a new one.
                return self.drop(DropReason::HandshakeAuth, Received::Dropped);
            }
        }
        // Authentic, so the peer's own choice: one this end did not offer
        // means the peer is broken, not attacked; refuse the session.
        let cipher = match Cipher::from_byte(buf[0]) {
            Some(c) if cipher::choose(c.byte(), self.offer) == Some(c) => c,
            _ => return self.drop(DropReason::Cipher, Received::Dropped),
        };
        let keys = data_keys(init.hs, cipher);
        let remote_index = u32::from_le_bytes(d[4..8].try_into().expect("4 bytes"));
        self.previous = self.current.take();
        self.current = Some(Session {
            local_index: init.index,
            remote_index,
            keys: Arc::new(keys),
            send_counter: 0,
            sent_bytes: 0,
            window: Default::default(),
            created: now,
        });
        self.established(now, from);
        // Confirm the session to the responder at once: with the waiting
        // packets, or with a keepalive.
        let to = self.endpoint.expect("set by established");
        let mut buf = vec![0u8; MAX_PACKET + OVERHEAD];
        let queued: Vec<Vec<u8>> = self.queue.drain(..).collect();
        for p in &queued {
            let n = self.seal(now, p, &mut buf);
            self.out.push_back(Transmit {
                to,
                data: buf[..n].to_vec(),
            });
        }
        if queued.is_empty() {
            self.keepalive(now);
        }
        Received::Handshake
    }

    fn established(&mut self, now: Duration, from: SocketAddr) {
        self.counters.handshakes_completed += 1;
        self.last_handshake = Some(now);
        self.roam(from);
        self.last_received = Some(now);
        self.unanswered_since = None;
    }

    fn roam(&mut self, from: SocketAddr) {
        if self.endpoint != Some(from) {
            if self.endpoint.is_some() {
                self.counters.roams += 1;
            }
            self.endpoint = Some(from);
        }
    }

    fn prepare_data(&mut self, now: Duration, d: &[u8]) -> Incoming {
        let dropped = |r| Incoming::Done(Received::Dropped(r));
        if d.len() < OVERHEAD {
            return self.drop(DropReason::Truncated, dropped);
        }
        let index = u32::from_le_bytes(d[4..8].try_into().expect("4 bytes"));
        let counter = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
        let reject = self.timers.reject_after_time;
        let Some(s) = self.session(index) else {
            return self.drop(DropReason::UnknownIndex, dropped);
        };
        if now >= s.created + reject || counter >= REJECT_AFTER_MESSAGES {
            return self.drop(DropReason::Expired, dropped);
        }
        match s.window.check(counter) {
            Ok(()) => Incoming::Open(Open {
                keys: s.keys.clone(),
                index,
                counter,
            }),
            Err(replay::Refused::Duplicate) => self.drop(DropReason::Replay, dropped),
            Err(replay::Refused::TooOld) => self.drop(DropReason::TooOld, dropped),
        }
    }

    fn session(&self, index: u32) -> Option<&Session> {
        [&self.current, &self.previous, &self.next]
            .into_iter()
            .flatten()
            .find(|s| s.local_index == index)
    }

    /// The end of [`Tunnel::receive`] for a data packet: `opened` is what
    /// `job.open` gave. Moves the replay window (a counter another job
    /// already delivered is dropped as a replay now), confirms a new
    /// session, follows a roaming peer.
    pub fn finish_receive(
        &mut self,
        now: Duration,
        from: SocketAddr,
        job: &Open,
        opened: Option<usize>,
    ) -> Received {
        let Some(n) = opened else {
            return self.drop(DropReason::Auth, Received::Dropped);
        };
        let slot = [&mut self.current, &mut self.previous, &mut self.next]
            .into_iter()
            .enumerate()
            .find(|(_, s)| s.as_ref().is_some_and(|s| s.local_index == job.index));
        // Gone since prepare_receive (expired or replaced): as if it had
        // been gone before.
        let Some((which, Some(s))) = slot else {
            return self.drop(DropReason::UnknownIndex, Received::Dropped);
        };
        match s.window.update(job.counter) {
            Ok(()) => {}
            Err(replay::Refused::Duplicate) => {
                return self.drop(DropReason::Replay, Received::Dropped)
            }
            Err(replay::Refused::TooOld) => {
                return self.drop(DropReason::TooOld, Received::Dropped)
            }
        }
        if which == 2 {
            // The initiator used the new session: it is confirmed.
            self.previous = self.current.take();
            self.current = self.next.take();
            self.established(now, from);
        } else {
            self.roam(from);
            self.last_received = Some(now);
            self.unanswered_since = None;
        }
        if n == 0 {
            self.counters.keepalives_received += 1;
            return Received::Keepalive;
        }
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += n as u64;
        self.keepalive_owed_since.get_or_insert(now);
        Received::Packet(n)
    }

    /// Encrypt with the current session (which must be usable).
    fn seal(&mut self, now: Duration, packet: &[u8], out: &mut [u8]) -> usize {
        self.seal_job(now, packet.len()).seal(packet, out)
    }

    /// Take the next counter of the current session (which must be usable)
    /// for a packet of `len` bytes.
    fn seal_job(&mut self, now: Duration, len: usize) -> Seal {
        let s = self.current.as_mut().expect("a usable session");
        let job = Seal {
            keys: s.keys.clone(),
            remote_index: s.remote_index,
            counter: s.send_counter,
        };
        s.send_counter += 1;
        s.sent_bytes += len as u64;
        self.last_sent = now;
        self.keepalive_owed_since = None;
        if len == 0 {
            self.counters.keepalives_sent += 1;
        } else {
            self.counters.tx_packets += 1;
            self.counters.tx_bytes += len as u64;
            self.unanswered_since.get_or_insert(now);
        }
        job
    }

    fn keepalive(&mut self, now: Duration) {
        let Some(to) = self.endpoint else { return };
        if !self.usable(now) {
            return;
        }
        let mut b = [0u8; OVERHEAD];
        let n = self.seal(now, &[], &mut b);
        self.out.push_back(Transmit {
            to,
            data: b[..n].to_vec(),
        });
    }
}

/// A finished handshake's data keys: Noise's split, keying `cipher`.
fn data_keys(mut hs: HandshakeState, cipher: Cipher) -> Keys {
    // The raw split does not check, as snow's transport mode would: keys
    // of an unfinished handshake are not keys.
    assert!(
        hs.is_handshake_finished(),
        "data keys before the handshake finished"
    );
    let (mut first, mut second) = hs.dangerously_get_raw_split();
    let keys = Keys::new(cipher, hs.is_initiator(), &first, &second);
    zeroize::Zeroize::zeroize(&mut first);
    zeroize::Zeroize::zeroize(&mut second);
    keys
}

fn mac_key(responder: &PublicKey) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(b"weft-tunnel mac1");
    h.update(responder.as_bytes());
    h.finalize().into()
}

fn mac1(key: &[u8; 32], msg: &[u8]) -> [u8; MAC] {
    let mut m = <Blake2sMac<U16> as blake2::digest::KeyInit>::new_from_slice(key)
        .expect("a 32-byte key fits BLAKE2s");
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Constant-time check of the trailing mac1 of a handshake message.
fn mac1_ok(key: &[u8; 32], d: &[u8]) -> bool {
    let (body, tag) = d.split_at(d.len() - MAC);
    let mut m = <Blake2sMac<U16> as blake2::digest::KeyInit>::new_from_slice(key)
        .expect("a 32-byte key fits BLAKE2s");
    m.update(body);
    m.verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    /// `Counters::drops` is indexed by the reason's discriminant and read
    /// back in `ALL`'s order: the two orders must be one.
    #[test]
    fn drop_reasons_are_listed_in_their_index_order_with_distinct_names() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
