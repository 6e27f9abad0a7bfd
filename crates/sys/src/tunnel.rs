//! The `weft tunnel` datapath: a TUN or TAP device and a UDP socket (or TCP
//! connections), driven on one thread by a [`weft_tunnel::Tunnel`], which
//! does all the protocol work. UDP moves up to [`BATCH`] datagrams per
//! system call (`recvmmsg`/`sendmmsg`).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tun_rs::{DeviceBuilder, Layer, SyncDevice};
use weft_tunnel::{DropReason, Received, Sent, Tunnel, OVERHEAD};

use crate::error::{Error, Result};
use crate::tuntap::Mode;

/// Datagrams per `recvmmsg`/`sendmmsg` call, and packets read from the
/// device per round.
pub const BATCH: usize = 64;
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
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Make SIGTERM and SIGINT end [`run`] cleanly (it returns within a tick).
pub fn stop_on_signals() -> &'static AtomicBool {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
    }
    &STOP
}

fn os(action: impl Into<String>, err: io::Error) -> Error {
    Error::Os {
        action: action.into(),
        err,
        hint: None,
    }
}

/// The network namespace [`open_device`] opens the device in, when not
/// the process's own (`weft tunnel --netns`: the device in a lab node, the
/// sockets in the machine's namespace).
static DEVICE_NETNS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Open the device in the named network namespace from now on.
pub fn set_device_netns(name: &str) {
    let _ = DEVICE_NETNS.set(name.to_string());
}

/// Open (or create) the device, set its MTU and address, bring it up.
pub fn open_device(o: &Options) -> Result<SyncDevice> {
    match DEVICE_NETNS.get() {
        Some(ns) => crate::netns::run_in_named(ns, || open_device_here(o))?,
        None => open_device_here(o),
    }
}

/// [`open_device`] in the calling thread's namespace.
fn open_device_here(o: &Options) -> Result<SyncDevice> {
    let mut b = DeviceBuilder::new()
        .name(&o.dev)
        .layer(match o.mode {
            Mode::Tun => Layer::L3,
            Mode::Tap => Layer::L2,
        })
        .mtu(o.mtu)
        .enable(true);
    if let Some((a, p)) = o.address {
        b = b.ipv4(a, p, None);
    }
    let what = match o.mode {
        Mode::Tun => "TUN",
        Mode::Tap => "TAP",
    };
    let d = b.build_sync().map_err(|e| Error::Os {
        action: format!("opening {what} device {}", o.dev),
        hint: Some(
            "a device of that name and the other mode (TUN/TAP) may exist; /dev/net/tun must be there"
                .into(),
        ),
        err: e,
    })?;
    d.set_nonblocking(true)
        .map_err(|e| os(format!("making {what} device {} non-blocking", o.dev), e))?;
    Ok(d)
}

/// A UDP socket for the tunnel: non-blocking, and allowed to fragment
/// (outer datagrams bigger than the path MTU are fragmented, not dropped;
/// the inner MTU is chosen so that this does not normally happen).
pub fn udp_socket(listen: SocketAddr) -> Result<Socket> {
    let what = format!("binding UDP {listen}");
    let s = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| os(&what, e))?;
    s.set_nonblocking(true).map_err(|e| os(&what, e))?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    let (level, opt, val) = if listen.is_ipv4() {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        )
    };
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os(&what, io::Error::last_os_error()));
    }
    s.bind(&listen.into()).map_err(|e| Error::Os {
        action: what,
        err: e,
        hint: Some(
            "another program (or tunnel) may use the port; pick another with --listen".into(),
        ),
    })?;
    Ok(s)
}

/// Buffers for one `recvmmsg` call.
struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
}

impl RecvBatch {
    fn new(size: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![vec![0u8; size]; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            lens: vec![0; BATCH],
        }
    }

    /// Receive up to BATCH datagrams without waiting; returns how many.
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; all-zero is valid.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, h) in hdrs.iter().take(n as usize).enumerate() {
            self.lens[i] = h.msg_len as usize;
        }
        Ok(n as usize)
    }

    fn from(&self, i: usize) -> Option<SocketAddr> {
        let a = &self.addrs[i];
        match i32::from(a.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let v =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::new(
                    Ipv4Addr::from(u32::from_be(v.sin_addr.s_addr)).into(),
                    u16::from_be(v.sin_port),
                ))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let v =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some(
                    std::net::SocketAddrV6::new(
                        v.sin6_addr.s6_addr.into(),
                        u16::from_be(v.sin6_port),
                        v.sin6_flowinfo,
                        v.sin6_scope_id,
                    )
                    .into(),
                )
            }
            _ => None,
        }
    }
}

/// Send datagrams, up to BATCH per `sendmmsg`. Datagrams the kernel
/// refuses (a full buffer, an unreachable peer) are counted, not retried:
/// the protocol above recovers from loss.
fn send_batch(fd: RawFd, msgs: &[(SockAddr, &[u8])]) -> u64 {
    let mut failed = 0;
    for chunk in msgs.chunks(BATCH) {
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(_, d)| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; all-zero is valid.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; chunk.len()];
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = chunk[i].0.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = chunk[i].0.len();
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        let mut done = 0;
        while done < hdrs.len() {
            // SAFETY: headers point to addresses and buffers alive for the call.
            let n = unsafe {
                libc::sendmmsg(fd, hdrs[done..].as_mut_ptr(), (hdrs.len() - done) as u32, 0)
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the datagram that failed and go on with the rest.
                failed += 1;
                done += 1;
            } else {
                done += n as usize;
            }
        }
    }
    failed
}

/// One TCP connection carrying length-prefixed datagrams (u16, big endian).
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: Vec<u8>,
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
        })
    }

    /// Read what is there; false when the connection is finished.
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        loop {
            // SAFETY: recv into a live stack buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    tmp.as_mut_ptr().cast(),
                    tmp.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => return false,
                n if n > 0 => self.rbuf.extend_from_slice(&tmp[..n as usize]),
                _ => {
                    let e = io::Error::last_os_error();
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

    fn send(&mut self, d: &[u8]) -> io::Result<()> {
        let mut f = Vec::with_capacity(2 + d.len());
        f.extend_from_slice(&(d.len() as u16).to_be_bytes());
        f.extend_from_slice(d);
        self.stream.write_all(&f)
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
}

/// Run the tunnel until `stop` is set. Returns the tunnel for inspection.
pub fn run(o: &Options, mut t: Tunnel, start: Instant, stop: &AtomicBool) -> Result<Tunnel> {
    let dev = open_device(o)?;
    let mut io_c = IoCounters::default();
    let size = usize::from(o.mtu) + 14 + OVERHEAD + 64;
    let udp = match o.transport {
        Transport::Udp => Some(udp_socket(o.listen)?),
        Transport::Tcp => None,
    };
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
    let mut rb = RecvBatch::new(size.max(2048));
    let mut pkt = vec![0u8; size];
    let mut out_bufs = vec![vec![0u8; size]; BATCH];
    let mut plain = vec![0u8; 65536];
    let mut next_tick = Instant::now();
    let mut next_status = Instant::now();
    let now = |_: ()| start.elapsed();

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
        let mut fds = vec![libc::pollfd {
            fd: dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(u) = &udp {
            fds.push(libc::pollfd {
                fd: u.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(l) = &listener {
            fds.push(libc::pollfd {
                fd: l.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let conn_base = fds.len();
        for c in &conns {
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .min(TICK);
        // SAFETY: poll on a live array of pollfds of the given length.
        let r = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as i32,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(os("waiting for the device and sockets (poll)", e));
            }
            continue;
        }
        let mut pending: Vec<(SocketAddr, usize, usize)> = vec![];

        // Device to peer.
        if fds[0].revents & libc::POLLIN != 0 {
            for (slot, out) in out_bufs.iter_mut().enumerate() {
                let n = match dev.recv(&mut pkt) {
                    Ok(n) => n,
                    Err(_) => break,
                };
                if let Sent::Datagram(to, len) = t.send(now(()), &pkt[..n], out) {
                    pending.push((to, slot, len));
                }
            }
        }
        let mut transmits: Vec<weft_tunnel::Transmit> = vec![];

        // Peer to device, UDP.
        if let Some(u) = &udp {
            if fds[1].revents & libc::POLLIN != 0 {
                while let Ok(n) = rb.recv(u.as_raw_fd()) {
                    for i in 0..n {
                        let Some(from) = rb.from(i) else { continue };
                        let d = &rb.bufs[i][..rb.lens[i]];
                        if let Received::Packet(len) = t.receive(now(()), from, d, &mut plain) {
                            if dev.send(&plain[..len]).is_err() {
                                io_c.device_errors += 1;
                            }
                        }
                    }
                    if n < BATCH {
                        break;
                    }
                }
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
            let Some(pfd) = fds.get(conn_base + i) else {
                continue;
            };
            if pfd.fd != c.stream.as_raw_fd() || pfd.revents == 0 {
                continue;
            }
            let alive = c.fill();
            let mut consumed = 0;
            while let Some(r) = c.frame(&mut consumed) {
                if let Received::Packet(len) = t.receive(now(()), c.peer, &c.rbuf[r], &mut plain) {
                    if dev.send(&plain[..len]).is_err() {
                        io_c.device_errors += 1;
                    }
                }
            }
            c.rbuf.drain(..consumed);
            if !alive {
                dead.push(i);
            }
        }
        for i in dead.into_iter().rev() {
            conns.remove(i);
        }

        if Instant::now() >= next_tick {
            t.tick(now(()));
            next_tick = Instant::now() + TICK;
        }
        while let Some(x) = t.poll_transmit() {
            transmits.push(x);
        }

        // Send everything.
        match &udp {
            Some(u) => {
                let mut msgs: Vec<(SockAddr, &[u8])> = pending
                    .iter()
                    .map(|&(to, slot, len)| (SockAddr::from(to), &out_bufs[slot][..len]))
                    .collect();
                msgs.extend(
                    transmits
                        .iter()
                        .map(|x| (SockAddr::from(x.to), &x.data[..])),
                );
                io_c.send_errors += send_batch(u.as_raw_fd(), &msgs);
            }
            None => {
                let all = pending
                    .iter()
                    .map(|&(to, slot, len)| (to, &out_bufs[slot][..len]))
                    .chain(transmits.iter().map(|x| (x.to, &x.data[..])));
                for (to, d) in all {
                    // The connection the peer last spoke from, else the newest.
                    let c = conns
                        .iter()
                        .position(|c| c.peer == to)
                        .or(conns.len().checked_sub(1));
                    match c {
                        Some(i) => {
                            if conns[i].send(d).is_err() {
                                io_c.send_errors += 1;
                                conns.remove(i);
                            }
                        }
                        None => io_c.send_errors += 1,
                    }
                }
            }
        }

        if let Some(path) = &o.status_file {
            if Instant::now() >= next_status {
                next_status = Instant::now() + Duration::from_secs(1);
                let _ = write_status(path, o, &t, &io_c, start);
            }
        }
    }
    if let Some(path) = &o.status_file {
        let _ = write_status(path, o, &t, &io_c, start);
    }
    Ok(t)
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
fn write_status(
    path: &std::path::Path,
    o: &Options,
    t: &Tunnel,
    io_c: &IoCounters,
    start: Instant,
) -> io::Result<()> {
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
        "last_handshake_unix": t.last_handshake().map(|h| unix_secs(start, h)),
        "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes,
        "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
        "handshakes": c.handshakes_completed, "roams": c.roams,
        "keepalives_sent": c.keepalives_sent, "keepalives_received": c.keepalives_received,
        "drops": drops,
        "send_errors": io_c.send_errors, "device_errors": io_c.device_errors,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&v)?)?;
    std::fs::rename(&tmp, path)
}

/// Start a program in its own process group (so a Ctrl-C meant for the
/// starter does not reach it), stdin from /dev/null, stdout and stderr
/// appended to `log`. Returns its PID.
pub fn spawn_detached(argv: &[String], log: &std::path::Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let what = format!("starting {}", argv.join(" "));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| os(format!("opening {}", log.display()), e))?;
    let f2 = f.try_clone().map_err(|e| os(&what, e))?;
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(f2)
        .process_group(0)
        .spawn()
        .map_err(|e| os(&what, e))?;
    Ok(child.id())
}

/// The command line of a live (not zombie) process.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Stop the process `pid` if its command line still contains `marker`
/// (so a reused PID is never touched): SIGTERM, then SIGKILL after
/// `timeout`. True when no such process runs any more.
pub fn stop_process(pid: u32, marker: &str, timeout: Duration) -> bool {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let ours = |pid| cmdline(pid).is_some_and(|c| c.iter().any(|a| a.contains(marker)));
    if !ours(pid) {
        return true;
    }
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if !ours(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(p, Signal::SIGKILL);
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(2) {
        if !ours(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
