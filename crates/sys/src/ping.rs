//! ICMP echo ("ping") over weft's own raw sockets, for IPv4 and IPv6, with
//! no dependency on iputils. Sockets are opened in the calling thread's
//! network namespace: call [`ping`] inside [`crate::netns::run_in`].
//!
//! Errors come from the socket error queue (IP_RECVERR / IPV6_RECVERR), as
//! in iputils: that is how a failed local ARP/ND resolution shows up as
//! "Destination Host Unreachable" (the kernel reports it with an ICMP error
//! from the sender's own address).

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};

/// How to ping (`ping -c COUNT -i INTERVAL -W TIMEOUT -I IFACE -s SIZE -t TTL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingOptions {
    /// Echo requests to send (1 to 65535).
    pub count: u32,
    /// Pause between requests.
    pub interval: Duration,
    /// How long to wait for the answer to each request; the run ends at
    /// most this long after the last request.
    pub timeout: Duration,
    /// Send through this interface only (SO_BINDTODEVICE, `ping -I`).
    pub iface: Option<String>,
    /// Payload bytes after the 8-byte ICMP header (`ping -s`).
    pub size: usize,
    /// IPv4 TTL or IPv6 hop limit of the requests.
    pub ttl: Option<u32>,
}

impl Default for PingOptions {
    fn default() -> Self {
        PingOptions {
            count: 3,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            iface: None,
            size: 56,
            ttl: None,
        }
    }
}

/// Why a request failed, independent of the IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NetUnreachable,
    /// IPv4 host unreachable, IPv6 address unreachable: includes a failed
    /// ARP/ND resolution on the sending host.
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    /// Fragmentation needed (IPv4) or packet too big (IPv6).
    PacketTooBig,
    AdminProhibited,
    TimeExceeded,
    ParameterProblem,
    /// Another destination-unreachable code.
    OtherUnreachable,
    /// The sending host refused (sendto error, local error-queue entry).
    Local,
    Other,
}

/// What happened to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum PingEvent {
    Reply {
        seq: u16,
        from: IpAddr,
        /// ICMP bytes (header + payload), as iputils prints them.
        bytes: usize,
        /// TTL / hop limit of the reply, when the kernel reported it.
        ttl: Option<u8>,
        rtt: Duration,
    },
    Error {
        seq: u16,
        /// Who reported the error (the sender itself for ARP/ND failures).
        from: Option<IpAddr>,
        kind: ErrorKind,
        /// iputils' wording, e.g. "Destination Host Unreachable".
        text: String,
    },
    Timeout {
        seq: u16,
    },
}

/// Round-trip statistics over the replies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttStats {
    pub min: Duration,
    pub avg: Duration,
    pub max: Duration,
    pub mdev: Duration,
}

/// The closing lines of `ping`.
#[derive(Clone, Debug, PartialEq)]
pub struct PingSummary {
    pub transmitted: u32,
    pub received: u32,
    pub errors: u32,
    /// Percent of requests without a reply.
    pub loss_percent: f64,
    pub rtt: Option<RttStats>,
}

/// Builds an ICMPv4 echo request with its checksum.
pub fn build_echo_v4(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let header =
        Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(IcmpEchoHeader { id, seq }), payload);
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Builds an ICMPv6 echo request. The checksum stays 0: it covers a
/// pseudo-header with the source address, which the kernel fills in for
/// ICMPv6 raw sockets.
pub fn build_echo_v6(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let header = Icmpv6Header::new(Icmpv6Type::EchoRequest(IcmpEchoHeader { id, seq }));
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A parsed echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    pub id: u16,
    pub seq: u16,
    pub ttl: Option<u8>,
    /// ICMP bytes (header + payload).
    pub icmp_len: usize,
}

/// Parses what an IPv4 raw ICMP socket receives (IP header included).
/// `None` unless it is an intact echo reply; also returns the source.
pub fn parse_reply_v4(packet: &[u8]) -> Option<(EchoReply, std::net::Ipv4Addr)> {
    let ip = etherparse::Ipv4HeaderSlice::from_slice(packet).ok()?;
    let icmp_bytes = packet.get(ip.slice().len()..)?;
    let icmp = etherparse::Icmpv4Slice::from_slice(icmp_bytes).ok()?;
    // A reply with a broken checksum was damaged on the way; iputils
    // reports it as such, we just do not count it.
    if etherparse::checksum::Sum16BitWords::new()
        .add_slice(icmp_bytes)
        .ones_complement()
        != 0
    {
        return None;
    }
    match icmp.icmp_type() {
        Icmpv4Type::EchoReply(e) => Some((
            EchoReply {
                id: e.id,
                seq: e.seq,
                ttl: Some(ip.ttl()),
                icmp_len: icmp_bytes.len(),
            },
            ip.source_addr(),
        )),
        _ => None,
    }
}

/// Parses what an IPv6 raw ICMPv6 socket receives (no IP header; the
/// kernel has verified the checksum).
pub fn parse_reply_v6(icmp_bytes: &[u8]) -> Option<EchoReply> {
    let icmp = etherparse::Icmpv6Slice::from_slice(icmp_bytes).ok()?;
    match icmp.icmp_type() {
        Icmpv6Type::EchoReply(e) => Some(EchoReply {
            id: e.id,
            seq: e.seq,
            ttl: None,
            icmp_len: icmp_bytes.len(),
        }),
        _ => None,
    }
}

/// id and seq of one of our own echo requests, as quoted back in the error
/// queue.
pub fn parse_own_request(icmp_bytes: &[u8]) -> Option<(u16, u16)> {
    let (ty, rest) = icmp_bytes.split_first()?;
    if *ty != 8 && *ty != 128 {
        return None;
    }
    let b = rest.get(3..7)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

/// iputils' text and weft's kind for an ICMPv4 error.
pub fn describe_icmp_v4(icmp_type: u8, code: u8, info: u32) -> (ErrorKind, String) {
    use ErrorKind::*;
    let (kind, text) = match (icmp_type, code) {
        (3, 0) => (NetUnreachable, "Destination Net Unreachable".to_string()),
        (3, 1) => (HostUnreachable, "Destination Host Unreachable".to_string()),
        (3, 2) => (
            ProtocolUnreachable,
            "Destination Protocol Unreachable".to_string(),
        ),
        (3, 3) => (PortUnreachable, "Destination Port Unreachable".to_string()),
        (3, 4) => (
            PacketTooBig,
            format!("Frag needed and DF set (mtu = {info})"),
        ),
        (3, 5) => (OtherUnreachable, "Source Route Failed".to_string()),
        (3, 6) => (NetUnreachable, "Destination Net Unknown".to_string()),
        (3, 7) => (HostUnreachable, "Destination Host Unknown".to_string()),
        (3, 8) => (OtherUnreachable, "Source Host Isolated".to_string()),
        (3, 9) => (AdminProhibited, "Destination Net Prohibited".to_string()),
        (3, 10) => (AdminProhibited, "Destination Host Prohibited".to_string()),
        (3, 11) => (
            NetUnreachable,
            "Destination Net Unreachable for Type of Service".to_string(),
        ),
        (3, 12) => (
            HostUnreachable,
            "Destination Host Unreachable for Type of Service".to_string(),
        ),
        (3, 13) => (AdminProhibited, "Packet filtered".to_string()),
        (3, 14) => (AdminProhibited, "Precedence Violation".to_string()),
        (3, 15) => (AdminProhibited, "Precedence Cutoff".to_string()),
        (3, c) => (OtherUnreachable, format!("Dest Unreachable, Bad Code: {c}")),
        (11, 0) => (TimeExceeded, "Time to live exceeded".to_string()),
        (11, 1) => (TimeExceeded, "Frag reassembly time exceeded".to_string()),
        (11, c) => (TimeExceeded, format!("Time exceeded, Bad Code: {c}")),
        (12, _) => (ParameterProblem, "Parameter problem".to_string()),
        (4, _) => (Other, "Source Quench".to_string()),
        (5, _) => (Other, "Redirect".to_string()),
        (t, c) => (Other, format!("Bad ICMP type: {t} (code {c})")),
    };
    (kind, text)
}

/// iputils' text and weft's kind for an ICMPv6 error.
pub fn describe_icmp_v6(icmp_type: u8, code: u8, info: u32) -> (ErrorKind, String) {
    use ErrorKind::*;
    match (icmp_type, code) {
        (1, c) => {
            let (kind, why) = match c {
                0 => (NetUnreachable, "No route".to_string()),
                1 => (AdminProhibited, "Administratively prohibited".to_string()),
                2 => (
                    OtherUnreachable,
                    "Beyond scope of source address".to_string(),
                ),
                3 => (HostUnreachable, "Address unreachable".to_string()),
                4 => (PortUnreachable, "Port unreachable".to_string()),
                5 => (
                    AdminProhibited,
                    "Source address failed ingress/egress policy".to_string(),
                ),
                6 => (AdminProhibited, "Reject route to destination".to_string()),
                c => (OtherUnreachable, format!("Unknown code {c}")),
            };
            (kind, format!("Destination unreachable: {why}"))
        }
        (2, _) => (PacketTooBig, format!("Packet too big: mtu={info}")),
        (3, 0) => (TimeExceeded, "Time exceeded: Hop limit".to_string()),
        (3, 1) => (
            TimeExceeded,
            "Time exceeded: Defragmentation failure".to_string(),
        ),
        (3, c) => (TimeExceeded, format!("Time exceeded: code {c}")),
        (4, _) => (
            ParameterProblem,
            format!("Parameter problem: pointer = {info}"),
        ),
        (t, c) => (Other, format!("Bad ICMP type: {t} (code {c})")),
    }
}

/// Round-trip statistics as iputils computes them (mdev is the standard
/// deviation).
pub fn rtt_stats(rtts: &[Duration]) -> Option<RttStats> {
    if rtts.is_empty() {
        return None;
    }
    let us: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    let n = us.len() as f64;
    let avg = us.iter().sum::<f64>() / n;
    let var = (us.iter().map(|x| x * x).sum::<f64>() / n - avg * avg).max(0.0);
    let d = |x: f64| Duration::from_nanos((x * 1000.0).round() as u64);
    Some(RttStats {
        min: *rtts.iter().min().expect("non-empty"),
        avg: d(avg),
        max: *rtts.iter().max().expect("non-empty"),
        mdev: d(var.sqrt()),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Done,
}

struct Probe {
    sent_at: Instant,
    deadline: Instant,
    state: State,
}

/// The per-run echo identifier: raw sockets get none from the kernel, so
/// concurrent runs (even in one process) must differ on their own.
fn run_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static COUNTER: AtomicU16 = AtomicU16::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id() as u16)
        ^ COUNTER.fetch_add(0x9e37, Ordering::Relaxed)
        ^ (nanos >> 10) as u16
}

const SOL_RAW: libc::c_int = 255;
const ICMP_FILTER: libc::c_int = 1;
const ICMP6_FILTER: libc::c_int = 1;

/// Sends `opts.count` echo requests to `target` from the calling thread's
/// namespace and reports each outcome through `on_event` as it happens
/// (like `ping -c COUNT TARGET`).
pub fn ping(
    target: IpAddr,
    opts: &PingOptions,
    mut on_event: impl FnMut(PingEvent),
) -> Result<PingSummary> {
    if opts.count == 0 || opts.count > u32::from(u16::MAX) {
        return Err(Error::Invalid(format!(
            "pinging {target}: count must be between 1 and 65535, not {}",
            opts.count
        )));
    }
    if opts.size > 65_000 {
        return Err(Error::Invalid(format!(
            "pinging {target}: payload size {} is too large (at most 65000)",
            opts.size
        )));
    }
    let (sock, v4_oif) = open_socket(target, opts)?;
    let dest = dest_addr(target, opts)?;
    let id = run_id();
    let payload: Vec<u8> = (0..opts.size).map(|i| (i % 256) as u8).collect();

    let mut probes: Vec<Probe> = Vec::with_capacity(opts.count as usize);
    let mut rtts = Vec::new();
    let mut errors = 0u32;
    let mut next_send = Instant::now();
    let mut ctx = Ctx {
        target,
        id,
        probes: &mut probes,
        rtts: &mut rtts,
        errors: &mut errors,
        on_event: &mut on_event,
    };

    loop {
        let now = Instant::now();
        if ctx.probes.len() < opts.count as usize && now >= next_send {
            let seq = (ctx.probes.len() + 1) as u16;
            let packet = match target {
                IpAddr::V4(_) => build_echo_v4(id, seq, &payload),
                IpAddr::V6(_) => build_echo_v6(id, seq, &payload),
            };
            let sent_at = Instant::now();
            ctx.probes.push(Probe {
                sent_at,
                deadline: sent_at + opts.timeout,
                state: State::Waiting,
            });
            if let Err(e) = send(&sock, &packet, &dest, target, v4_oif) {
                // A queued ICMP error can surface as a send error; prefer
                // its details when there are any.
                ctx.drain_errqueue(&sock)?;
                if ctx.probes[seq as usize - 1].state == State::Waiting {
                    let (kind, text) = match e.raw_os_error() {
                        Some(libc::EHOSTUNREACH) => (
                            ErrorKind::HostUnreachable,
                            "Destination Host Unreachable".into(),
                        ),
                        Some(libc::ENETUNREACH) => {
                            (ErrorKind::NetUnreachable, "Network is unreachable".into())
                        }
                        _ => (ErrorKind::Local, format!("local error: {e}")),
                    };
                    ctx.error(seq, None, kind, text);
                }
            }
            next_send += opts.interval;
        }
        let now = Instant::now();
        for (i, p) in ctx.probes.iter_mut().enumerate() {
            if p.state == State::Waiting && now >= p.deadline {
                p.state = State::Done;
                (ctx.on_event)(PingEvent::Timeout {
                    seq: (i + 1) as u16,
                });
            }
        }
        let all_sent = ctx.probes.len() == opts.count as usize;
        let pending = ctx.probes.iter().filter(|p| p.state == State::Waiting);
        let next_deadline = pending.map(|p| p.deadline).min();
        if all_sent && next_deadline.is_none() {
            break;
        }
        let wake = match (all_sent, next_deadline) {
            (false, Some(d)) => d.min(next_send),
            (false, None) => next_send,
            (true, Some(d)) => d,
            (true, None) => unreachable!("loop ended above"),
        };
        let wait = wake.saturating_duration_since(Instant::now());
        let ms = u16::try_from(wait.as_millis() + 1).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(Error::os(format!("pinging {target}: poll"), e)),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLERR) {
            ctx.drain_errqueue(&sock)?;
        }
        if revents.contains(PollFlags::POLLIN) {
            ctx.drain_replies(&sock)?;
        }
    }

    let transmitted = probes.len() as u32;
    let received = rtts.len() as u32;
    Ok(PingSummary {
        transmitted,
        received,
        errors,
        loss_percent: 100.0 * f64::from(transmitted - received) / f64::from(transmitted),
        rtt: rtt_stats(&rtts),
    })
}

struct Ctx<'a, F: FnMut(PingEvent)> {
    target: IpAddr,
    id: u16,
    probes: &'a mut Vec<Probe>,
    rtts: &'a mut Vec<Duration>,
    errors: &'a mut u32,
    on_event: &'a mut F,
}

impl<F: FnMut(PingEvent)> Ctx<'_, F> {
    fn waiting(&self, seq: u16) -> bool {
        seq >= 1
            && self
                .probes
                .get(seq as usize - 1)
                .is_some_and(|p| p.state == State::Waiting)
    }

    fn error(&mut self, seq: u16, from: Option<IpAddr>, kind: ErrorKind, text: String) {
        if !self.waiting(seq) {
            return;
        }
        self.probes[seq as usize - 1].state = State::Done;
        *self.errors += 1;
        (self.on_event)(PingEvent::Error {
            seq,
            from,
            kind,
            text,
        });
    }

    fn drain_replies(&mut self, sock: &Socket) -> Result<()> {
        let mut buf = vec![0u8; 65_536];
        let mut cmsg = vec![0u8; 1024];
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let got = recvmsg::<SockaddrStorage>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            );
            let msg = match got {
                Ok(m) => m,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                // A pending socket error (already in the error queue, which
                // carries the details): consumed, carry on.
                Err(_) => return Ok(()),
            };
            let now = Instant::now();
            let bytes = msg.bytes;
            let mut hoplimit = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::Ipv6HopLimit(h) = c {
                        hoplimit = u8::try_from(h).ok();
                    }
                }
            }
            let from_addr = msg.address.as_ref().and_then(sockaddr_ip);
            let data = &buf[..bytes];
            let parsed = match self.target {
                IpAddr::V4(_) => parse_reply_v4(data).map(|(r, src)| (r, IpAddr::V4(src))),
                IpAddr::V6(_) => parse_reply_v6(data)
                    .and_then(|r| from_addr.map(|a| (EchoReply { ttl: hoplimit, ..r }, a))),
            };
            let Some((reply, from)) = parsed else {
                continue;
            };
            if reply.id != self.id || from != self.target || !self.waiting(reply.seq) {
                continue;
            }
            let probe = &mut self.probes[reply.seq as usize - 1];
            probe.state = State::Done;
            let rtt = now.saturating_duration_since(probe.sent_at);
            self.rtts.push(rtt);
            (self.on_event)(PingEvent::Reply {
                seq: reply.seq,
                from,
                bytes: reply.icmp_len,
                ttl: reply.ttl,
                rtt,
            });
        }
    }

    fn drain_errqueue(&mut self, sock: &Socket) -> Result<()> {
        let mut buf = vec![0u8; 2048];
        // Room for more than the error itself: with IPV6_RECVHOPLIMIT on,
        // the kernel adds packet-info messages, and a truncated control
        // buffer would hide the error.
        let mut cmsg = vec![0u8; 1024];
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let got = recvmsg::<SockaddrStorage>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            );
            let msg = match got {
                Ok(m) => m,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::os(
                        format!("pinging {}: reading the socket error queue", self.target),
                        e,
                    ))
                }
            };
            let bytes = msg.bytes;
            let mut report = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    match c {
                        ControlMessageOwned::Ipv4RecvErr(ee, addr) => {
                            let from = addr.map(|a| {
                                IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(
                                    a.sin_addr.s_addr,
                                )))
                            });
                            report = Some((ee, from));
                        }
                        ControlMessageOwned::Ipv6RecvErr(ee, addr) => {
                            let from =
                                addr.map(|a| IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)));
                            report = Some((ee, from));
                        }
                        _ => {}
                    }
                }
            }
            let Some((ee, from)) = report else { continue };
            let quoted = parse_own_request(&buf[..bytes]);
            let seq = match quoted {
                Some((id, seq)) if id == self.id => seq,
                // Another run's packet: every raw ICMP socket sees them.
                Some(_) => continue,
                // Unquoted local errors concern the newest request.
                None if ee.ee_origin == libc::SO_EE_ORIGIN_LOCAL => self.probes.len() as u16,
                None => continue,
            };
            let (kind, text) = match ee.ee_origin {
                libc::SO_EE_ORIGIN_ICMP => describe_icmp_v4(ee.ee_type, ee.ee_code, ee.ee_info),
                libc::SO_EE_ORIGIN_ICMP6 => describe_icmp_v6(ee.ee_type, ee.ee_code, ee.ee_info),
                _ => {
                    let err = std::io::Error::from_raw_os_error(ee.ee_errno as i32);
                    let text = if ee.ee_errno as i32 == libc::EMSGSIZE {
                        format!("local error: message too long, mtu={}", ee.ee_info)
                    } else {
                        format!("local error: {err}")
                    };
                    (ErrorKind::Local, text)
                }
            };
            self.error(seq, from, kind, text);
        }
    }
}

fn sockaddr_ip(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

fn dest_addr(target: IpAddr, opts: &PingOptions) -> Result<SockAddr> {
    Ok(match target {
        IpAddr::V4(_) => SockAddr::from(SocketAddr::new(target, 0)),
        IpAddr::V6(v6) => {
            // A link-local address means nothing without its link.
            let scope = if v6.is_unicast_link_local() {
                match &opts.iface {
                    Some(i) => nix::net::if_::if_nametoindex(i.as_str()).map_err(|e| {
                        Error::os(format!("pinging {target}: looking up interface {i}"), e)
                    })?,
                    None => {
                        return Err(Error::Invalid(format!(
                            "pinging {target}: a link-local address needs an interface (iface)"
                        )))
                    }
                }
            } else {
                0
            };
            SockAddr::from(SocketAddrV6::new(v6, 0, 0, scope))
        }
    })
}

/// Sends one request; with `v4_oif`, through that interface (IP_PKTINFO).
fn send(
    sock: &Socket,
    packet: &[u8],
    dest: &SockAddr,
    target: IpAddr,
    v4_oif: Option<u32>,
) -> std::io::Result<()> {
    match (target, v4_oif) {
        (IpAddr::V4(v4), Some(ifindex)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: ifindex as libc::c_int,
                ipi_spec_dst: libc::in_addr { s_addr: 0 },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let addr = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(v4, 0));
            nix::sys::socket::sendmsg(
                sock.as_raw_fd(),
                &[std::io::IoSlice::new(packet)],
                &[nix::sys::socket::ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&addr),
            )
            .map(drop)
            .map_err(std::io::Error::from)
        }
        _ => sock.send_to(packet, dest).map(drop),
    }
}

/// Opens the raw socket; for IPv4 with an interface, also returns its index
/// for [`send`].
///
/// IPv4 does not use SO_BINDTODEVICE: the kernel reports a failed ARP
/// resolution with an ICMP error that arrives over `lo`, and a socket bound
/// to the sending interface would never see it (iputils' `ping -I` has this
/// blind spot). Choosing the outgoing interface per packet keeps the
/// socket unbound. IPv6 matches errors without that restriction.
/// Either way the namespace's `lo` must be up for local errors to arrive.
fn open_socket(target: IpAddr, opts: &PingOptions) -> Result<(Socket, Option<u32>)> {
    let action = |what: &str| format!("pinging {target}: {what}");
    let (domain, proto) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let sock = Socket::new(domain, Type::RAW, Some(proto)).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            Error::os_hint(
                action("opening a raw ICMP socket"),
                e,
                "raw sockets need CAP_NET_RAW (run as root)",
            )
        } else {
            Error::os(action("opening a raw ICMP socket"), e)
        }
    })?;
    let mut v4_oif = None;
    if let (IpAddr::V4(_), Some(iface)) = (target, &opts.iface) {
        let idx = nix::net::if_::if_nametoindex(iface.as_str()).map_err(|e| {
            Error::os_hint(
                action(&format!("looking up interface {iface}")),
                e,
                format!("there is no interface {iface} in this namespace"),
            )
        })?;
        v4_oif = Some(idx);
    } else if let Some(iface) = &opts.iface {
        sock.bind_device(Some(iface.as_bytes())).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                Error::os_hint(
                    action(&format!("binding to interface {iface}")),
                    e,
                    format!("there is no interface {iface} in this namespace"),
                )
            } else {
                Error::os(action(&format!("binding to interface {iface}")), e)
            }
        })?;
    }
    match target {
        IpAddr::V4(_) => {
            if let Some(ttl) = opts.ttl {
                sock.set_ttl_v4(ttl)
                    .map_err(|e| Error::os(action(&format!("setting TTL {ttl}")), e))?;
            }
            setsockopt(&sock, sockopt::Ipv4RecvErr, &true)
                .map_err(|e| Error::os(action("enabling IP_RECVERR"), e))?;
            // Only echo replies in the data stream; errors come through the
            // error queue, and other hosts' pings are none of our business.
            let drop_all_but_echo_reply: u32 = !(1u32 << 0);
            set_raw_opt(&sock, SOL_RAW, ICMP_FILTER, &drop_all_but_echo_reply)
                .map_err(|e| Error::os(action("setting ICMP_FILTER"), e))?;
        }
        IpAddr::V6(_) => {
            if let Some(hops) = opts.ttl {
                sock.set_unicast_hops_v6(hops)
                    .map_err(|e| Error::os(action(&format!("setting hop limit {hops}")), e))?;
            }
            setsockopt(&sock, sockopt::Ipv6RecvErr, &true)
                .map_err(|e| Error::os(action("enabling IPV6_RECVERR"), e))?;
            setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true)
                .map_err(|e| Error::os(action("enabling IPV6_RECVHOPLIMIT"), e))?;
            // struct icmp6_filter: a set bit blocks that type.
            let mut filter = [u32::MAX; 8];
            filter[129 >> 5] &= !(1u32 << (129 & 31));
            set_raw_opt(&sock, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
                .map_err(|e| Error::os(action("setting ICMP6_FILTER"), e))?;
        }
    }
    Ok((sock, v4_oif))
}

/// setsockopt for options nix and socket2 do not wrap.
fn set_raw_opt<T>(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: `value` points to a live T of exactly the size we pass, and
    // the kernel only reads it during the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
