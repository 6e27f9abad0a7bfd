//! The `weft tunnel` process loop: a TUN or TAP device and a UDP socket (or
//! TCP connections), driven by a [`weft_tunnel::Tunnel`], which does all the
//! protocol work. The OS primitives it uses (device, batched UDP, polling,
//! signals) are in weft-sys; this crate is safe Rust. UDP moves many datagrams per system call
//! (`recvmmsg`/`sendmmsg`, with UDP GSO and GRO where the kernel has them,
//! see [`weft_sys::udpbatch`]); a TUN hands over and takes TCP segments of up to 64 KiB
//! (virtio-net headers, TSO), which are split into inner packets here and
//! coalesced again on the way in.

pub mod impaired;
mod pipeline;
pub mod tap;

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use socket2::Socket;
use tun_rs::SyncDevice;
use weft_sys::tundev::{DevKind, DeviceSpec};
use weft_sys::tuntap::Mode;
use weft_sys::udpbatch as udp;
use weft_sys::{Error, Result};
use weft_tunnel::{DropReason, Received, Sent, Tunnel, OVERHEAD};

pub use weft_sys::process::stop_on_signals;
pub use weft_sys::tundev::set_device_netns;

/// How often the protocol timers run.
const TICK: Duration = Duration::from_millis(100);
/// TCP connections kept at once (the newest; a roaming or restarted peer
/// connects anew while the old connection may linger).
const MAX_CONNS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What [`run`] needs besides the protocol state.
#[derive(Clone, Debug)]
pub struct Options {
    /// The device; opened if it exists (a lab's persistent TUN/TAP),
    /// created otherwise (and removed when the tunnel stops).
    pub dev: String,
    pub mode: Mode,
    /// The device's MTU.
    pub mtu: u16,
    /// An IPv4 address for the device, if wanted.
    pub address: Option<(Ipv4Addr, u8)>,
    /// Local address and port: UDP socket, or TCP listener.
    pub listen: SocketAddr,
    pub transport: Transport,
    /// TCP only: the peer to connect to (and reconnect to when the
    /// connection breaks). Without it, this end only accepts.
    pub connect: Option<SocketAddr>,
    /// Where to write the status (JSON) every second.
    pub status_file: Option<PathBuf>,
    /// Use the offloads the kernel has (TSO, UDP GSO/GRO); off only
    /// to compare, or to work around a kernel that mishandles them.
    pub offload: bool,
    /// Impairment of the inner packets this end receives (a lab's tunnel
    /// link with `impair`; the lab gives the seed).
    pub impair: Option<weft_topo::impair::Impairment>,
    /// A control socket to retune the impairment at run time
    /// ([`impaired::Control`]).
    pub control: Option<PathBuf>,
}

/// Notices handshakes that keep failing and says why, at most once per
/// `every` (a wrong key fails every few seconds, for as long as it runs).
/// Pure: the caller passes the time and the counters.
#[derive(Debug)]
pub struct HandshakeWatch {
    every: Duration,
    last_said: Option<Duration>,
    /// bad_mac and handshake_auth drops, initiations and cipher drops
    /// already accounted for (reported, or followed by a session).
    seen: (u64, u64, u64, u64),
    /// The initiation count, and when it last changed.
    inits: (u64, Duration),
    /// The last warning, until a session comes up.
    current: Option<String>,
}

impl HandshakeWatch {
    pub fn new(every: Duration) -> HandshakeWatch {
        HandshakeWatch {
            every,
            last_said: None,
            seen: (0, 0, 0, 0),
            inits: (0, Duration::ZERO),
            current: None,
        }
    }

    /// A warning to print now, if handshakes failed since the last one
    /// and no session is up.
    pub fn check(&mut self, now: Duration, c: &weft_tunnel::Counters, up: bool) -> Option<String> {
        let mac = c.dropped(DropReason::BadMac);
        let auth = c.dropped(DropReason::HandshakeAuth);
        let inits = c.handshakes_initiated;
        let cipher = c.dropped(DropReason::Cipher);
        if inits != self.inits.0 {
            self.inits = (inits, now);
        }
        if up {
            self.current = None;
            self.seen = (mac, auth, inits, cipher);
            return None;
        }
        let (new_mac, new_auth) = (mac - self.seen.0, auth - self.seen.1);
        let new_cipher = cipher - self.seen.3;
        // Two initiations (one retry, so the peer had time to start), the
        // last a second ago, and nothing came back: no answer.
        let unanswered = inits - self.seen.2;
        let silent = unanswered >= 2 && now >= self.inits.1 + Duration::from_secs(1);
        if (new_mac + new_auth + new_cipher == 0 && !silent)
            || self.last_said.is_some_and(|l| now < l + self.every)
        {
            return None;
        }
        self.seen = (mac, auth, inits, cipher);
        self.last_said = Some(now);
        let mut why = Vec::new();
        if new_auth > 0 {
            why.push(format!(
                "{new_auth} handshake message(s) from the peer failed authentication (handshake_auth): the peer's public key is not this end's --peer-key, or the peer runs an older weft (tunnel protocol v1)"
            ));
        }
        if new_mac > 0 {
            why.push(format!(
                "{new_mac} handshake message(s) had a wrong MAC (bad_mac): the peer's --peer-key is not this end's public key"
            ));
        }
        if new_cipher > 0 {
            why.push(format!(
                "{new_cipher} handshake message(s) from the peer offered or picked no cipher this end accepts (cipher): the two ends' --cipher settings name different ciphers"
            ));
        }
        if why.is_empty() {
            why.push(format!(
                "{unanswered} handshake initiation(s) got no answer: the peer is not running or not reachable, or its --peer-key is not this end's public key, or its --cipher names another cipher (it then drops them without a word)"
            ));
        }
        let check = if new_mac + new_auth == 0 && new_cipher > 0 {
            "set both ends' --cipher to auto (the default) or to the same cipher"
        } else {
            "check both ends' keys (`weft keygen FILE` prints the public key and writes it to FILE.pub)"
        };
        let w = format!(
            "handshakes with the peer are failing, so no traffic passes: {}; {check}",
            why.join("; ")
        );
        self.current = Some(w.clone());
        Some(w)
    }

    /// The last warning, while no session has come up since.
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }
}

fn os(action: impl Into<String>, err: io::Error) -> Error {
    Error::Os {
        action: action.into(),
        err,
        hint: None,
    }
}

impl Options {
    fn device(&self) -> DeviceSpec {
        DeviceSpec {
            dev: self.dev.clone(),
            mode: self.mode,
            mtu: self.mtu,
            address: self.address,
            offload: self.offload,
        }
    }
}

/// One TCP connection carrying length-prefixed datagrams (u16, big endian).
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: Vec<u8>,
    /// Frames queued this round, written with one `write` at its end
    /// (one TCP segment train instead of one small write per packet).
    wbuf: Vec<u8>,
    wframes: u64,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        // Reads use MSG_DONTWAIT after poll; writes block, but not forever.
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        Ok(Conn {
            stream,
            peer,
            rbuf: Vec::with_capacity(1 << 17),
            wbuf: Vec::with_capacity(1 << 18),
            wframes: 0,
        })
    }

    /// Read what is there; false when the connection is finished.
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        loop {
            match weft_sys::fdio::recv_nowait(self.stream.as_raw_fd(), &mut tmp) {
                Ok(0) => return false,
                Ok(n) => self.rbuf.extend_from_slice(&tmp[..n]),
                Err(e) => {
                    return matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    );
                }
            }
            if self.rbuf.len() > 1 << 20 {
                return true;
            }
        }
    }

    /// The next whole frame, if any.
    fn frame(&mut self, consumed: &mut usize) -> Option<std::ops::Range<usize>> {
        let b = &self.rbuf[*consumed..];
        if b.len() < 2 {
            return None;
        }
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        if b.len() < 2 + n {
            return None;
        }
        let r = *consumed + 2..*consumed + 2 + n;
        *consumed += 2 + n;
        Some(r)
    }

    /// Queue one framed datagram; written by [`Self::flush`] (or here,
    /// once 256 KiB are waiting).
    fn send(&mut self, d: &[u8]) -> io::Result<()> {
        self.wbuf.extend_from_slice(&(d.len() as u16).to_be_bytes());
        self.wbuf.extend_from_slice(d);
        self.wframes += 1;
        if self.wbuf.len() >= 1 << 18 {
            return self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.wbuf);
        self.wbuf.clear();
        self.wframes = 0;
        r
    }
}

/// Counters of the datapath itself (the protocol's are in the tunnel).
#[derive(Clone, Debug, Default)]
pub struct IoCounters {
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// Packets the device refused (its queue full).
    pub device_errors: u64,
    pub tcp_connects: u64,
    /// UDP GSO messages sent (each several datagrams).
    pub gso_sends: u64,
    /// Datagrams that came glued by UDP GRO.
    pub gro_datagrams: u64,
    /// TCP segments up to 64 KiB read from the TUN (split here).
    pub tso_reads: u64,
}

impl IoCounters {
    /// Add `o` to these (each thread counts on its own).
    fn add(&mut self, o: &IoCounters) {
        self.send_errors += o.send_errors;
        self.device_errors += o.device_errors;
        self.tcp_connects += o.tcp_connects;
        self.gso_sends += o.gso_sends;
        self.gro_datagrams += o.gro_datagrams;
        self.tso_reads += o.tso_reads;
    }
}

/// Which offloads a running tunnel uses (each detected at start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// TUN or TAP with virtio-net headers and TSO: the kernel hands over
    /// TCP segments of up to 64 KiB, which are split here; on a TUN,
    /// received packets of one flow are coalesced before they are written.
    pub tso: bool,
    /// `UDP_SEGMENT` on send (switched off if the kernel refuses it later).
    pub udp_gso: bool,
    /// `UDP_GRO` on receive.
    pub udp_gro: bool,
}

/// The virtio-net header in front of every packet of an offloading TUN.
const VNET: usize = tun_rs::VIRTIO_NET_HDR_LEN;
/// Inner packets handled per round (read from the device, or received
/// and written to it).
pub const BATCH: usize = 256;
/// Packets handed to the device at once (coalesced first with TSO).
const WRITE_BATCH: usize = 128;

/// Packets decrypted and waiting to be written to the device; each buffer
/// holds [`VNET`] spare bytes, then the packet.
struct DevWriter {
    bufs: Vec<Vec<u8>>,
    n: usize,
    gro: tun_rs::GROTable,
    /// TAP: the buffers to write after coalescing.
    write: Vec<usize>,
    /// The impairment of what is received: when on, [`DevWriter::flush`]
    /// hands the packets to it and writes those it releases.
    imp: Arc<impaired::Impairing>,
    start: Instant,
    due: Vec<impaired::Held>,
    /// A packet written on its own (a corrupted one), behind a blank
    /// virtio-net header where the device takes one.
    single: Vec<u8>,
}

impl DevWriter {
    fn new(imp: Arc<impaired::Impairing>, start: Instant) -> DevWriter {
        DevWriter {
            imp,
            start,
            due: Vec::new(),
            single: Vec::new(),
            // Coalescing appends segments in place, so each buffer can
            // grow to the largest packet the TUN takes.
            bufs: (0..WRITE_BATCH)
                .map(|_| Vec::with_capacity(VNET + 65535))
                .collect(),
            n: 0,
            gro: tun_rs::GROTable::default(),
            write: Vec::with_capacity(WRITE_BATCH),
        }
    }

    /// Decrypt one datagram into the next buffer.
    fn receive(&mut self, t: &mut Tunnel, now: Duration, from: SocketAddr, d: &[u8]) -> bool {
        let b = &mut self.bufs[self.n];
        b.resize(VNET + d.len(), 0);
        match t.receive(now, from, d, &mut b[VNET..]) {
            Received::Packet(len) => {
                b.truncate(VNET + len);
                self.n += 1;
                true
            }
            _ => false,
        }
    }

    fn full(&self) -> bool {
        self.n == self.bufs.len()
    }

    /// Writes the packets decrypted so far, or with impairment on, hands
    /// them to it and writes what it releases.
    fn flush(&mut self, dev: &SyncDevice, kind: DevKind, io_c: &mut IoCounters) {
        if self.imp.on() {
            let now = self.start.elapsed();
            self.imp
                .push(self.bufs[..self.n].iter().map(|b| &b[VNET..]), now);
            self.n = 0;
            self.release(dev, kind, io_c);
            return;
        }
        self.write(dev, kind, io_c);
    }

    /// How long the receiving thread may wait, at most `most`: until the
    /// impairment's next release.
    fn wait(&self, most: Duration) -> Duration {
        if !self.imp.on() {
            return most;
        }
        self.imp.wait(self.start.elapsed(), most)
    }

    /// Writes what the impairment releases by now, in order; a corrupted
    /// packet alone, never coalesced (so the kernel checks its checksum).
    fn release(&mut self, dev: &SyncDevice, kind: DevKind, io_c: &mut IoCounters) {
        if !self.imp.on() {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.imp.due(self.start.elapsed(), &mut due);
        for h in due.drain(..) {
            if h.corrupted {
                self.write(dev, kind, io_c);
                self.single.clear();
                if kind != DevKind::Plain {
                    self.single.resize(VNET, 0);
                }
                self.single.extend_from_slice(&h.pkt);
                if dev.send(&self.single).is_err() {
                    io_c.device_errors += 1;
                }
                continue;
            }
            if self.full() {
                self.write(dev, kind, io_c);
            }
            let b = &mut self.bufs[self.n];
            b.clear();
            b.resize(VNET, 0);
            b.extend_from_slice(&h.pkt);
            self.n += 1;
        }
        self.due = due;
        self.write(dev, kind, io_c);
    }

    fn write(&mut self, dev: &SyncDevice, kind: DevKind, io_c: &mut IoCounters) {
        if self.n == 0 {
            return;
        }
        if kind == DevKind::TunTso {
            if dev
                .send_multiple(&mut self.gro, &mut self.bufs[..self.n], VNET)
                .is_err()
            {
                io_c.device_errors += 1;
            }
        } else if kind == DevKind::TapTso {
            if tap::coalesce(&mut self.bufs[..self.n], &mut self.gro, &mut self.write).is_err() {
                io_c.device_errors += 1;
            }
            for &i in &self.write {
                if dev.send(&self.bufs[i]).is_err() {
                    io_c.device_errors += 1;
                }
            }
        } else {
            for b in &self.bufs[..self.n] {
                if dev.send(&b[VNET..]).is_err() {
                    io_c.device_errors += 1;
                }
            }
        }
        self.n = 0;
    }
}

/// Run the tunnel until `stop` is set. Returns the tunnel for inspection.
pub fn run(o: &Options, t: Tunnel, start: Instant, stop: &AtomicBool) -> Result<Tunnel> {
    let (dev, kind) = weft_sys::tundev::open(&o.device())?;
    let udp = match o.transport {
        Transport::Udp => Some(udp::udp_socket(o.listen)?),
        Transport::Tcp => None,
    };
    let mut offloads = Offloads {
        tso: kind != DevKind::Plain,
        ..Offloads::default()
    };
    if let (Some(u), true) = (&udp, o.offload) {
        offloads.udp_gso = udp::gso_supported(u.as_raw_fd());
        offloads.udp_gro = udp::enable_gro(u.as_raw_fd());
    }
    let imp = Arc::new(impaired::Impairing::new(o.impair.clone()));
    // Without its control socket the tunnel still carries traffic; only
    // `weft impair` cannot reach it (a path longer than a socket address
    // takes, for instance), which it then says.
    let ctl = o.control.as_ref().and_then(|p| {
        impaired::Control::bind(p)
            .map_err(|e| {
                eprintln!(
                    "weft tunnel: warning: no control socket at {}: {e}; `weft impair` cannot retune this end",
                    p.display()
                )
            })
            .ok()
    });
    let io = Io {
        dev,
        kind,
        imp,
        ctl,
    };
    if let Some(sock) = udp {
        if std::env::var_os("WEFT_TUNNEL_ONE_THREAD").is_none() {
            return pipeline::run(o, t, start, stop, io, sock, offloads);
        }
        return run_one_thread(o, t, start, stop, io, Some(sock), offloads);
    }
    run_one_thread(o, t, start, stop, io, None, offloads)
}

/// The device, and the impairment of what is written to it with its
/// control socket.
struct Io {
    dev: SyncDevice,
    kind: DevKind,
    imp: Arc<impaired::Impairing>,
    ctl: Option<impaired::Control>,
}

/// The tunnel on one thread: TCP always, UDP only to compare
/// (`WEFT_TUNNEL_ONE_THREAD=1`).
#[allow(clippy::too_many_arguments)]
fn run_one_thread(
    o: &Options,
    mut t: Tunnel,
    start: Instant,
    stop: &AtomicBool,
    io: Io,
    udp: Option<Socket>,
    mut offloads: Offloads,
) -> Result<Tunnel> {
    let Io {
        dev,
        kind,
        imp,
        ctl,
    } = io;
    let mut io_c = IoCounters::default();
    let size = usize::from(o.mtu) + 14 + OVERHEAD + 64;
    let listener = match (o.transport, o.connect) {
        (Transport::Tcp, None) => {
            let l = TcpListener::bind(o.listen)
                .map_err(|e| os(format!("listening on TCP {}", o.listen), e))?;
            l.set_nonblocking(true).map_err(|e| os("TCP listener", e))?;
            Some(l)
        }
        _ => None,
    };
    let mut conns: Vec<Conn> = vec![];
    let mut last_connect: Option<Instant> = None;
    let mut rb = udp::RxBatch::new(size.max(2048), offloads.udp_gro);
    // Device reads: one 64 KiB segment at a time with TSO (split into
    // `inbufs`), else one packet per buffer.
    let mut tso_in = vec![0u8; VNET + 65535];
    let mut inbufs = vec![vec![0u8; size]; BATCH];
    let mut insizes = vec![0usize; BATCH];
    let mut plan = udp::TxPlan::new(BATCH * (size + OVERHEAD) + 4096, offloads.udp_gso);
    let mut scratch = udp::TxScratch::default();
    let mut writer = DevWriter::new(imp.clone(), start);
    let mut tcp_out = vec![0u8; size + OVERHEAD];
    let mut next_tick = Instant::now();
    let mut next_status = Instant::now();
    let mut watch = HandshakeWatch::new(Duration::from_secs(30));
    let mut was_up = false;
    let mut fds = Vec::new();
    let mut ready = Vec::new();

    while !stop.load(Ordering::SeqCst) {
        // Keep a TCP connection to the peer, if we are the connecting end.
        if let (Transport::Tcp, Some(peer)) = (o.transport, o.connect) {
            if conns.is_empty()
                && last_connect.is_none_or(|l| l.elapsed() >= Duration::from_secs(1))
            {
                last_connect = Some(Instant::now());
                if let Ok(s) = TcpStream::connect_timeout(&peer, Duration::from_secs(1)) {
                    if let Ok(c) = Conn::new(s, peer) {
                        conns.push(c);
                        io_c.tcp_connects += 1;
                        // The old connection broke: the peer may have
                        // restarted and lost the session.
                        t.rehandshake(start.elapsed());
                    }
                }
            }
        }
        fds.clear();
        fds.push(dev.as_raw_fd());
        if let Some(u) = &udp {
            fds.push(u.as_raw_fd());
        }
        if let Some(l) = &listener {
            fds.push(l.as_raw_fd());
        }
        if let Some(c) = &ctl {
            fds.push(c.fd());
        }
        let conn_base = fds.len();
        fds.extend(conns.iter().map(|c| c.stream.as_raw_fd()));
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .min(writer.wait(TICK));
        weft_sys::fdio::poll_readable(&fds, wait, &mut ready)
            .map_err(|e| os("waiting for the device and sockets (poll)", e))?;
        // One clock reading per round: a round lasts well under a
        // millisecond, far below any protocol timer.
        let now = start.elapsed();
        if let Some(c) = &ctl {
            if ready[conn_base - 1] {
                c.serve(&imp);
            }
        }
        writer.release(&dev, kind, &mut io_c);

        // Device to peer: up to BATCH packets, encrypted back to back
        // into the send plan (grouped for GSO as they go).
        if ready[0] {
            let n = read_batch(
                &dev,
                kind,
                &mut tso_in,
                &mut inbufs,
                &mut insizes,
                &mut io_c,
            );
            for (b, &len) in inbufs.iter().zip(&insizes).take(n) {
                if plan.room() < len + OVERHEAD {
                    flush_plan(
                        udp.as_ref(),
                        &mut plan,
                        &mut scratch,
                        &mut io_c,
                        &mut offloads,
                    );
                }
                match udp {
                    Some(_) => {
                        if let Sent::Datagram(to, dl) = t.send(now, &b[..len], plan.space()) {
                            plan.commit(to, dl);
                        }
                    }
                    None => {
                        if let Sent::Datagram(to, dl) = t.send(now, &b[..len], &mut tcp_out) {
                            tcp_send(&mut conns, to, &tcp_out[..dl], &mut io_c);
                        }
                    }
                }
            }
        }

        // Peer to device, UDP.
        if let Some(u) = &udp {
            if ready[1] {
                let mut rounds = 0;
                while let Ok(n) = rb.recv(u.as_raw_fd()) {
                    for i in 0..n {
                        let Some(from) = rb.from(i) else { continue };
                        let d = rb.data(i);
                        if rb.segs[i] > 0 && rb.segs[i] < d.len() {
                            io_c.gro_datagrams += d.len().div_ceil(rb.segs[i]) as u64;
                        }
                        for r in udp::segments(d.len(), rb.segs[i]) {
                            if writer.full() {
                                writer.flush(&dev, kind, &mut io_c);
                            }
                            writer.receive(&mut t, now, from, &d[r]);
                        }
                    }
                    rounds += 1;
                    // Bounded, so the other direction gets its turn.
                    if n < udp::MSGS || rounds == 4 {
                        break;
                    }
                }
                writer.flush(&dev, kind, &mut io_c);
            }
        }

        // TCP: new connections, then frames.
        if let Some(l) = &listener {
            while let Ok((s, peer)) = l.accept() {
                let _ = s.set_nonblocking(false);
                if let Ok(c) = Conn::new(s, peer) {
                    if conns.len() == MAX_CONNS {
                        conns.remove(0);
                    }
                    conns.push(c);
                    io_c.tcp_connects += 1;
                }
            }
        }
        let mut dead = vec![];
        for (i, c) in conns.iter_mut().enumerate() {
            let (Some(&fd), Some(&r)) = (fds.get(conn_base + i), ready.get(conn_base + i)) else {
                continue;
            };
            if fd != c.stream.as_raw_fd() || !r {
                continue;
            }
            let alive = c.fill();
            let mut consumed = 0;
            while let Some(r) = c.frame(&mut consumed) {
                if writer.full() {
                    writer.flush(&dev, kind, &mut io_c);
                }
                writer.receive(&mut t, now, c.peer, &c.rbuf[r]);
            }
            c.rbuf.drain(..consumed);
            if !alive {
                dead.push(i);
            }
        }
        writer.flush(&dev, kind, &mut io_c);
        for i in dead.into_iter().rev() {
            conns.remove(i);
        }

        if Instant::now() >= next_tick {
            t.tick(start.elapsed());
            next_tick = Instant::now() + TICK;
        }
        while let Some(x) = t.poll_transmit() {
            match udp {
                Some(_) => {
                    if !plan.push(x.to, &x.data) {
                        flush_plan(
                            udp.as_ref(),
                            &mut plan,
                            &mut scratch,
                            &mut io_c,
                            &mut offloads,
                        );
                        plan.push(x.to, &x.data);
                    }
                }
                None => tcp_send(&mut conns, x.to, &x.data, &mut io_c),
            }
        }
        flush_plan(
            udp.as_ref(),
            &mut plan,
            &mut scratch,
            &mut io_c,
            &mut offloads,
        );
        tcp_flush(&mut conns, &mut io_c);

        // A session coming up (or going) is written at once: `weft up`
        // waits for it in the status file.
        let up_now = t.is_up(start.elapsed());
        if up_now != was_up {
            was_up = up_now;
            next_status = Instant::now();
        }
        if Instant::now() >= next_status {
            next_status = Instant::now() + Duration::from_secs(1);
            let now = start.elapsed();
            if let Some(w) = watch.check(now, t.counters(), t.is_up(now)) {
                eprintln!("weft tunnel: warning: {w}");
            }
            if let Some(path) = &o.status_file {
                let _ = write_status(path, o, &t, &io_c, &offloads, &imp, start, watch.current());
            }
        }
    }
    if let Some(path) = &o.status_file {
        let _ = write_status(path, o, &t, &io_c, &offloads, &imp, start, watch.current());
    }
    Ok(t)
}

/// Read up to [`BATCH`] inner packets from the device into `inbufs`
/// (lengths in `insizes`): with TSO one 64 KiB segment per read, split
/// into packets through `tso_in`; else one packet per read. Returns how
/// many.
fn read_batch(
    dev: &SyncDevice,
    kind: DevKind,
    tso_in: &mut [u8],
    inbufs: &mut [Vec<u8>],
    insizes: &mut [usize],
    io_c: &mut IoCounters,
) -> usize {
    let mut n = 0;
    loop {
        if kind != DevKind::Plain {
            // A 64 KiB segment splits into at most 64 packets.
            if BATCH - n < 64 {
                break;
            }
            let r = if kind == DevKind::TunTso {
                dev.recv_multiple(tso_in, &mut inbufs[n..], &mut insizes[n..], 0)
            } else {
                dev.recv(tso_in).and_then(|len| {
                    tap::split_frame(&mut tso_in[..len], &mut inbufs[n..], &mut insizes[n..])
                })
            };
            match r {
                Ok(k) => {
                    if k > 1 {
                        io_c.tso_reads += 1;
                    }
                    n += k;
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        io_c.device_errors += 1;
                    }
                    break;
                }
            }
        } else {
            if n == BATCH {
                break;
            }
            match dev.recv(&mut inbufs[n]) {
                Ok(k) => {
                    insizes[n] = k;
                    n += 1;
                }
                Err(_) => break,
            }
        }
    }
    n
}

/// Send what the plan holds over UDP.
fn flush_plan(
    udp: Option<&Socket>,
    plan: &mut udp::TxPlan,
    scratch: &mut udp::TxScratch,
    io_c: &mut IoCounters,
    offloads: &mut Offloads,
) {
    let Some(u) = udp else {
        plan.clear();
        return;
    };
    if plan.groups.is_empty() {
        return;
    }
    let r = udp::send(u.as_raw_fd(), plan, scratch);
    io_c.send_errors += r.failed;
    io_c.gso_sends += r.gso_msgs;
    if r.fell_back {
        offloads.udp_gso = false;
    }
}

/// Send one datagram over TCP: on the connection the peer last spoke
/// from, else the newest.
fn tcp_send(conns: &mut Vec<Conn>, to: SocketAddr, d: &[u8], io_c: &mut IoCounters) {
    let c = conns
        .iter()
        .position(|c| c.peer == to)
        .or(conns.len().checked_sub(1));
    match c {
        Some(i) => {
            let queued = conns[i].wframes + 1;
            if conns[i].send(d).is_err() {
                io_c.send_errors += queued;
                conns.remove(i);
            }
        }
        None => io_c.send_errors += 1,
    }
}

/// Write what each TCP connection queued this round; drop the broken.
fn tcp_flush(conns: &mut Vec<Conn>, io_c: &mut IoCounters) {
    conns.retain_mut(|c| {
        let queued = c.wframes;
        if c.flush().is_err() {
            io_c.send_errors += queued;
            return false;
        }
        true
    });
}

fn unix_secs(start: Instant, at: Duration) -> f64 {
    let since_start = start.elapsed().saturating_sub(at);
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(since_start)
        .as_secs_f64()
}

/// The status file `weft status` reads (shape in docs/tunnel.md).
#[allow(clippy::too_many_arguments)]
fn write_status(
    path: &std::path::Path,
    o: &Options,
    t: &Tunnel,
    io_c: &IoCounters,
    off: &Offloads,
    imp: &impaired::Impairing,
    start: Instant,
    warning: Option<&str>,
) -> io::Result<()> {
    store_status(path, &status(o, t, io_c, off, imp, start, warning))
}

/// Write `v` as the status file at `path` (whole, by a rename).
fn store_status(path: &std::path::Path, v: &serde_json::Value) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
    std::fs::rename(&tmp, path)
}

/// The status `weft status` reads (shape in docs/tunnel.md).
#[allow(clippy::too_many_arguments)]
fn status(
    o: &Options,
    t: &Tunnel,
    io_c: &IoCounters,
    off: &Offloads,
    imp: &impaired::Impairing,
    start: Instant,
    warning: Option<&str>,
) -> serde_json::Value {
    let c = t.counters();
    let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), c.dropped(*r).into()))
        .collect();
    let v = serde_json::json!({
        "pid": std::process::id(),
        "device": o.dev,
        "mode": match o.mode { Mode::Tun => "tun", Mode::Tap => "tap" },
        "transport": match o.transport { Transport::Udp => "udp", Transport::Tcp => "tcp" },
        "listen": o.listen.to_string(),
        "peer_key": t.peer().to_base64(),
        "endpoint": t.endpoint().map(|e| e.to_string()),
        "up": t.is_up(start.elapsed()),
        "cipher": t.cipher().map(|c| c.name()),
        "last_handshake_unix": t.last_handshake().map(|h| unix_secs(start, h)),
        "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes,
        "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
        "handshakes": c.handshakes_completed, "roams": c.roams,
        "keepalives_sent": c.keepalives_sent, "keepalives_received": c.keepalives_received,
        "drops": drops,
        "send_errors": io_c.send_errors, "device_errors": io_c.device_errors,
        "offloads": { "tso": off.tso, "udp_gso": off.udp_gso, "udp_gro": off.udp_gro },
        "warning": warning,
        "tso_reads": io_c.tso_reads, "gso_sends": io_c.gso_sends, "gro_datagrams": io_c.gro_datagrams,
        "impair": imp.status(),
    });
    v
}

#[cfg(test)]
mod tests;
