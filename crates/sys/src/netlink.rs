//! rtnetlink, batched: many requests in one `sendmsg`, one ACK per batch.
//!
//! `ip` sends a request and waits for its answer, once per step. The kernel
//! however processes every message of a datagram in order and only answers
//! failures unless asked, so weft queues a namespace's whole configuration
//! and sends it in a few system calls. Devices are addressed by interface
//! indexes weft chooses itself, so no request waits for an earlier answer.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    BridgePortState, BridgeStpState, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoMacVlan,
    InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode, State,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

mod route_get;
pub mod tc;
pub use route_get::RouteLookup;
pub mod observe;

/// Deleting what is already gone is done: a deletion (told by the
/// message's type, whatever its label says) refused because the object
/// does not exist.
fn already_gone(msg: &NetlinkMessage<RouteNetlinkMessage>, errno: i32) -> bool {
    let NetlinkPayload::InnerMessage(m) = &msg.payload else {
        return false;
    };
    let delete = matches!(
        m,
        RouteNetlinkMessage::DelLink(_)
            | RouteNetlinkMessage::DelAddress(_)
            | RouteNetlinkMessage::DelRoute(_)
            | RouteNetlinkMessage::DelNeighbour(_)
            | RouteNetlinkMessage::DelQueueDiscipline(_)
            | RouteNetlinkMessage::DelTrafficFilter(_)
            | RouteNetlinkMessage::DelTrafficClass(_)
    );
    delete
        && matches!(
            errno,
            libc::ESRCH | libc::ENODEV | libc::EADDRNOTAVAIL | libc::ENOENT
        )
}

/// A request the kernel refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {}", io::Error::from_raw_os_error(*.errno))]
pub struct NlError {
    /// The operation, in `ip` terms (`ip link add h1 type veth ...`).
    pub what: String,
    pub errno: i32,
    /// Position of the refused request in the flushed queue.
    pub index: usize,
}

/// The kernel takes a datagram up to the socket's send buffer; chunks of this
/// size keep the answers of one chunk well inside the receive buffer.
const CHUNK: usize = 32 * 1024;

/// A NETLINK_ROUTE socket bound to one network namespace (the one it was
/// created in), with a queue of requests.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    queue: Vec<(NetlinkMessage<RouteNetlinkMessage>, String)>,
}

/// 256 KiB: more than the kernel puts in one dump datagram. One per thread,
/// not per socket: a lab holds a socket per namespace, thousands of them.
const RBUF: usize = 256 * 1024;

thread_local! {
    static RBUF_TLS: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; RBUF]);
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let sock = Socket::new(NETLINK_ROUTE)?;
        Self::setup(sock)
    }

    /// Wrap a NETLINK_ROUTE socket opened elsewhere (typically inside another
    /// namespace, which it stays bound to).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Netlink> {
        // SAFETY: the fd is an owned NETLINK_ROUTE socket; ownership moves in.
        let sock = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
        Self::setup(sock)
    }

    fn setup(mut sock: Socket) -> io::Result<Netlink> {
        sock.bind(&SocketAddr::new(0, 0))?;
        // Larger buffers so a chunk of answers (or a dump of a big bridge)
        // never overflows; as root the kernel accepts the FORCE variants.
        for (opt, size) in [
            (libc::SO_SNDBUFFORCE, 1 << 20),
            (libc::SO_RCVBUFFORCE, 4 << 20),
        ] {
            let v: libc::c_int = size;
            // SAFETY: setsockopt on a valid fd with a pointer to a live c_int.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &v as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let _ = sock.set_ext_ack(true);
        Ok(Netlink {
            sock,
            seq: 1,
            queue: Vec::new(),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Queue a request; `what` names it in errors.
    pub fn push(&mut self, req: Request, what: String) {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | req.flags;
        let mut msg = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(req.msg));
        msg.finalize();
        self.queue.push((msg, what));
    }

    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Send everything queued. Returns every refusal (the kernel goes on with
    /// the next message after one fails, so there may be several).
    pub fn flush(&mut self) -> Result<(), Vec<NlError>> {
        RBUF_TLS.with(|b| self.flush_with(&mut b.borrow_mut()))
    }

    fn flush_with(&mut self, rbuf: &mut [u8]) -> Result<(), Vec<NlError>> {
        let queue = std::mem::take(&mut self.queue);
        let mut errors = Vec::new();
        let mut i = 0;
        let mut buf = Vec::with_capacity(CHUNK);
        while i < queue.len() {
            buf.clear();
            let first_seq = self.seq;
            let start = i;
            while i < queue.len()
                && (buf.is_empty() || buf.len() + queue[i].0.buffer_len() <= CHUNK)
            {
                i += 1;
            }
            for (n, (msg, _)) in queue[start..i].iter().enumerate() {
                let mut msg = msg.clone();
                msg.header.sequence_number = first_seq + n as u32;
                if start + n + 1 == i {
                    msg.header.flags |= NLM_F_ACK;
                }
                let at = buf.len();
                buf.resize(at + msg.buffer_len(), 0);
                msg.serialize(&mut buf[at..]);
            }
            self.seq += (i - start) as u32;
            let last_seq = self.seq - 1;
            if let Err(e) = self.sock.send(&buf, 0) {
                for (k, (_, what)) in queue.iter().enumerate().skip(start) {
                    errors.push(NlError {
                        what: what.clone(),
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                        index: k,
                    });
                }
                return Err(errors);
            }
            // Read answers until the ACK of the chunk's last message.
            'acks: loop {
                let n = match self.recv(rbuf) {
                    Ok(n) => n,
                    Err(e) => {
                        for (k, (_, what)) in queue.iter().enumerate().skip(start) {
                            errors.push(NlError {
                                what: format!("reading the kernel's answers ({what})"),
                                errno: e.raw_os_error().unwrap_or(libc::EIO),
                                index: k,
                            });
                        }
                        return Err(errors);
                    }
                };
                for (_, seq, msg) in messages(&rbuf[..n]) {
                    if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg) {
                        if let NetlinkPayload::Error(e) = m.payload {
                            if let Some(code) = e.code {
                                if (first_seq..=last_seq).contains(&seq) {
                                    let k = start + (seq - first_seq) as usize;
                                    let errno = -code.get();
                                    if !already_gone(&queue[k].0, errno) {
                                        errors.push(NlError {
                                            what: queue[k].1.clone(),
                                            errno,
                                            index: k,
                                        });
                                    }
                                }
                            }
                            if seq == last_seq {
                                break 'acks;
                            }
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn recv(&self, rbuf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: recv into a buffer we own, of the given length.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    rbuf.as_mut_ptr() as *mut libc::c_void,
                    rbuf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Send one dump request and collect every answer.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        RBUF_TLS.with(|b| self.dump_with(msg, &mut b.borrow_mut()))
    }

    fn dump_with(
        &mut self,
        msg: RouteNetlinkMessage,
        rbuf: &mut [u8],
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        assert!(self.queue.is_empty(), "flush before dumping");
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        hdr.sequence_number = self.seq;
        self.seq += 1;
        let mut req = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let n = self.recv(rbuf)?;
            for (_, _, msg) in messages(&rbuf[..n]) {
                // A message this crate version cannot decode is skipped,
                // not fatal: status must work on newer kernels too.
                if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg) {
                    match m.payload {
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                        NetlinkPayload::InnerMessage(i) => out.push(i),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Join a multicast group (`RTNLGRP_*`), as `ip monitor` does.
    pub fn subscribe(&mut self, group: u32) -> io::Result<()> {
        self.sock.add_membership(group)
    }

    /// The next datagram's messages, or `None` if nothing came by `deadline`.
    pub fn recv_until(
        &self,
        deadline: std::time::Instant,
    ) -> io::Result<Option<Vec<RouteNetlinkMessage>>> {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: poll on one pollfd we own, for at most `ms`.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r > 0 {
                break;
            }
        }
        RBUF_TLS.with(|b| {
            let rbuf = &mut b.borrow_mut()[..];
            let n = self.recv(rbuf)?;
            let mut out = Vec::new();
            for (_, _, msg) in messages(&rbuf[..n]) {
                if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg) {
                    if let NetlinkPayload::InnerMessage(i) = m.payload {
                        out.push(i);
                    }
                }
            }
            Ok(Some(out))
        })
    }

    /// Ask for each link by index (`ip link show dev X`, not a dump). For a
    /// single-link RTM_GETLINK the kernel first runs the link's pending
    /// linkwatch event (`linkwatch_sync_dev`), which it may otherwise defer
    /// by up to a second under load; until that event runs, a device whose
    /// carrier just came on keeps its noop qdisc and drops what it sends, and
    /// a bridge port stays disabled. So this makes fresh links usable now.
    pub fn sync_links(&mut self, indexes: &[u32]) -> io::Result<()> {
        assert!(self.queue.is_empty(), "flush before syncing");
        // Each answer is a full link message (~1-2 KiB): small groups keep
        // them inside the receive buffer.
        for group in indexes.chunks(64) {
            let first_seq = self.seq;
            let mut buf = Vec::with_capacity(group.len() * 32);
            for (n, &index) in group.iter().enumerate() {
                let mut hdr = NetlinkHeader::default();
                hdr.flags = NLM_F_REQUEST | if n + 1 == group.len() { NLM_F_ACK } else { 0 };
                hdr.sequence_number = first_seq + n as u32;
                let mut m = LinkMessage::default();
                m.header.index = index;
                let mut msg = NetlinkMessage::new(
                    hdr,
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(m)),
                );
                msg.finalize();
                let at = buf.len();
                buf.resize(at + msg.buffer_len(), 0);
                msg.serialize(&mut buf[at..]);
            }
            self.seq += group.len() as u32;
            let last_seq = self.seq - 1;
            self.sock.send(&buf, 0)?;
            RBUF_TLS.with(|b| -> io::Result<()> {
                let rbuf = &mut b.borrow_mut()[..];
                loop {
                    let n = self.recv(rbuf)?;
                    for (kind, seq, _) in messages(&rbuf[..n]) {
                        // NLMSG_ERROR (2) carries the ACK; a link that went
                        // away meanwhile (ENODEV) needs no syncing.
                        if kind == 2 && seq == last_seq {
                            return Ok(());
                        }
                    }
                }
            })?;
        }
        Ok(())
    }

    pub fn links(&mut self) -> io::Result<Vec<LinkState>> {
        let msgs = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(LinkState::from_message(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn addresses(&mut self) -> io::Result<Vec<AddrState>> {
        let msgs = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            let mut addr = None;
            let mut local = None;
            let mut flags = a.header.flags.bits() as u32;
            for at in &a.attributes {
                match at {
                    AddressAttribute::Address(x) => addr = Some(*x),
                    AddressAttribute::Local(x) => local = Some(*x),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(addr) {
                if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                    out.push(AddrState {
                        index: a.header.index,
                        net,
                        tentative: flags & AddressFlags::Tentative.bits() != 0,
                        dad_failed: flags & AddressFlags::Dadfailed.bits() != 0,
                        link_local: matches!(ip, IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A neighbour (ARP / NDP) cache entry.
#[derive(Debug, Clone)]
pub struct NeighState {
    pub index: u32,
    pub addr: IpAddr,
    /// incomplete, reachable, stale, delay, probe, failed, noarp, permanent.
    pub state: String,
    pub mac: Option<[u8; 6]>,
}

impl Netlink {
    /// `ip neigh show`.
    pub fn neighbours(&mut self) -> io::Result<Vec<NeighState>> {
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
        };
        let mut out = Vec::new();
        for m in self.dump(RouteNetlinkMessage::GetNeighbour(
            NeighbourMessage::default(),
        ))? {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            let mut addr = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                        addr = Some(IpAddr::V4(*v))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                        addr = Some(IpAddr::V6(*v))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = Some(l[..].try_into().unwrap())
                    }
                    _ => {}
                }
            }
            let state = match n.header.state {
                NeighbourState::Incomplete => "incomplete",
                NeighbourState::Reachable => "reachable",
                NeighbourState::Stale => "stale",
                NeighbourState::Delay => "delay",
                NeighbourState::Probe => "probe",
                NeighbourState::Failed => "failed",
                NeighbourState::Noarp => "noarp",
                NeighbourState::Permanent => "permanent",
                _ => "none",
            };
            if let Some(addr) = addr {
                out.push(NeighState {
                    index: n.header.ifindex,
                    addr,
                    state: state.into(),
                    mac,
                });
            }
        }
        Ok(out)
    }
}

/// The messages of one received datagram: (type, sequence number, bytes).
/// Stops at the first malformed length rather than trusting it.
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let head = buf.get(off..off + 16)?;
        let len = u32::from_ne_bytes(head[0..4].try_into().unwrap()) as usize;
        if len < 16 || off + len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(head[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(head[8..12].try_into().unwrap());
        let msg = &buf[off..off + len];
        off += (len + 3) & !3;
        Some((kind, seq, msg))
    })
}

/// One queued request: the message and its `NLM_F_*` flags.
pub struct Request {
    msg: RouteNetlinkMessage,
    flags: u16,
}

/// What weft reads back about a link.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    /// The `ip -d link` kind: veth, bridge, tun, ... (`None` for lo and
    /// physical devices).
    pub kind: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub admin_up: bool,
    pub oper: String,
    pub lower_up: bool,
    pub master: Option<u32>,
    /// The peer's ifindex for a veth (in the namespace `link_netnsid` names).
    pub peer_index: Option<u32>,
    pub alias: Option<String>,
    pub port_state: Option<PortState>,
    pub stp: Option<bool>,
    /// A bridge's forward delay and max age in force, in centiseconds:
    /// the root's, learned from its BPDUs, not the configured ones
    /// (`ip -d link show` prints these).
    pub stp_times_cs: Option<(u32, u32)>,
    /// TUN/TAP details: (is_tap, pi, vnet_hdr, multi_queue, persist, owner, group).
    pub tun: Option<TunState>,
    pub point_to_point: bool,
    pub no_arp: bool,
    /// Traffic counters (`ip -s link`).
    pub stats: Option<observe::LinkStats>,
    /// A bridge's spanning-tree view of itself.
    pub bridge_stp: Option<observe::BridgeStp>,
    /// A bridge port's spanning-tree view.
    pub port_stp: Option<observe::PortStp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Disabled,
    Listening,
    Learning,
    Forwarding,
    Blocking,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Disabled => "disabled",
            PortState::Listening => "listening",
            PortState::Learning => "learning",
            PortState::Forwarding => "forwarding",
            PortState::Blocking => "blocking",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunState {
    pub tap: bool,
    pub pi: bool,
    pub vnet_hdr: bool,
    pub multi_queue: bool,
    pub persist: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl LinkState {
    fn from_message(l: &LinkMessage) -> LinkState {
        let mut s = LinkState {
            index: l.header.index,
            admin_up: l.header.flags.contains(LinkFlags::Up),
            lower_up: l.header.flags.contains(LinkFlags::LowerUp),
            point_to_point: l.header.flags.contains(LinkFlags::Pointopoint),
            no_arp: l.header.flags.contains(LinkFlags::Noarp),
            ..Default::default()
        };
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => s.name = n.clone(),
                LinkAttribute::Address(m) if m.len() == 6 => {
                    s.mac = Some(m[..].try_into().unwrap())
                }
                LinkAttribute::Mtu(m) => s.mtu = *m,
                LinkAttribute::Stats64(st) => s.stats = Some(st.into()),
                LinkAttribute::Controller(m) => s.master = Some(*m),
                LinkAttribute::Link(p) => s.peer_index = Some(*p),
                LinkAttribute::IfAlias(a) => s.alias = Some(a.clone()),
                LinkAttribute::OperState(st) => {
                    s.oper = match st {
                        State::Up => "up",
                        State::Down => "down",
                        State::LowerLayerDown => "lowerlayerdown",
                        State::Dormant => "dormant",
                        State::NotPresent => "notpresent",
                        State::Testing => "testing",
                        _ => "unknown",
                    }
                    .into()
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => s.kind = Some(k.to_string()),
                            LinkInfo::Data(InfoData::Bridge(b)) => {
                                let (mut fd, mut ma) = (None, None);
                                for o in b {
                                    match o {
                                        InfoBridge::StpState(st) => {
                                            s.stp = Some(!matches!(st, BridgeStpState::Disabled));
                                        }
                                        InfoBridge::ForwardDelay(x) => fd = Some(*x),
                                        InfoBridge::MaxAge(x) => ma = Some(*x),
                                        _ => {}
                                    }
                                }
                                s.stp_times_cs = fd.zip(ma);
                                s.bridge_stp = Some(observe::BridgeStp::from_attributes(b));
                            }
                            LinkInfo::Data(InfoData::Tun(t)) => {
                                let mut ts = TunState::default();
                                for o in t {
                                    let netlink_packet_route::link::InfoTun::Other(nla) = o else {
                                        continue;
                                    };
                                    let v = nla_bytes(nla);
                                    let b = v.first().copied().unwrap_or(0) != 0;
                                    let u = (v.len() >= 4)
                                        .then(|| u32::from_ne_bytes(v[..4].try_into().unwrap()));
                                    use netlink_packet_core::Nla;
                                    match nla.kind() {
                                        1 => ts.owner = u,
                                        2 => ts.group = u,
                                        3 => ts.tap = v.first() == Some(&2),
                                        4 => ts.pi = b,
                                        5 => ts.vnet_hdr = b,
                                        6 => ts.persist = b,
                                        7 => ts.multi_queue = b,
                                        _ => {}
                                    }
                                }
                                s.tun = Some(ts);
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                                s.port_stp = Some(observe::PortStp::from_attributes(p));
                                for o in p {
                                    if let InfoBridgePort::State(st) = o {
                                        s.port_state = Some(match st {
                                            BridgePortState::Disabled => PortState::Disabled,
                                            BridgePortState::Listening => PortState::Listening,
                                            BridgePortState::Learning => PortState::Learning,
                                            BridgePortState::Forwarding => PortState::Forwarding,
                                            _ => PortState::Blocking,
                                        });
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }
}

fn nla_bytes(nla: &netlink_packet_core::DefaultNla) -> Vec<u8> {
    use netlink_packet_core::Nla;
    let mut v = vec![0; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

#[derive(Debug, Clone)]
pub struct AddrState {
    pub index: u32,
    pub net: IpNet,
    pub tentative: bool,
    pub dad_failed: bool,
    pub link_local: bool,
}

/// Settings of the kernel bridge; times in centiseconds (the kernel's
/// clock_t), `None` leaves the kernel's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeSettings {
    pub stp: bool,
    pub forward_delay_cs: Option<u32>,
    pub hello_time_cs: Option<u32>,
    pub max_age_cs: Option<u32>,
    pub ageing_time_cs: Option<u32>,
    pub priority: Option<u16>,
}

impl BridgeSettings {
    fn info(&self) -> Vec<InfoBridge> {
        let mut v = vec![InfoBridge::StpState(if self.stp {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        })];
        // The kernel checks forward_delay against the STP range when it is
        // set, so it goes after StpState.
        if let Some(x) = self.forward_delay_cs {
            v.push(InfoBridge::ForwardDelay(x));
        }
        if let Some(x) = self.hello_time_cs {
            v.push(InfoBridge::HelloTime(x));
        }
        if let Some(x) = self.max_age_cs {
            v.push(InfoBridge::MaxAge(x));
        }
        if let Some(x) = self.ageing_time_cs {
            v.push(InfoBridge::AgeingTime(x));
        }
        if let Some(x) = self.priority {
            v.push(InfoBridge::Priority(x));
        }
        v
    }
}

/// Identity and create-time settings of a new link.
#[derive(Debug, Clone, Default)]
pub struct NewLink<'a> {
    /// The ifindex weft chose; 0 lets the kernel choose.
    pub index: u32,
    pub name: &'a str,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

fn link_msg(l: &NewLink) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = l.index;
    m.attributes.push(LinkAttribute::IfName(l.name.to_string()));
    if let Some(mtu) = l.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = l.mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    m
}

/// `ip link add NAME type bridge stp_state ... forward_delay ...`
pub fn new_bridge(l: &NewLink, s: &BridgeSettings) -> Request {
    let mut m = link_msg(l);
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(s.info())),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `ip link set NAME type bridge ...`: change a bridge's settings in place.
pub fn set_bridge(index: u32, s: &BridgeSettings) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(s.info())),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: 0,
    }
}

/// `ip link add A [master BR] type veth peer name B netns NS`: both ends in
/// one request, the peer straight into its namespace.
pub fn new_veth(a: &NewLink, master: Option<u32>, b: &NewLink, b_netns: Option<RawFd>) -> Request {
    let mut m = link_msg(a);
    if let Some(br) = master {
        m.attributes.push(LinkAttribute::Controller(br));
    }
    let mut p = link_msg(b);
    if let Some(fd) = b_netns {
        p.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `ip link add link LOWER name NAME netns NS type macvlan mode bridge`,
/// sent in LOWER's namespace: the new device appears in `netns`. Index 0
/// in `l` lets the kernel choose.
pub fn new_macvlan(l: &NewLink, lower: u32, netns: RawFd) -> Request {
    let mut m = link_msg(l);
    m.attributes.push(LinkAttribute::Link(lower));
    m.attributes.push(LinkAttribute::NetNsFd(netns));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
            MacVlanMode::Bridge,
        )])),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// A VXLAN device to a single unicast peer.
#[derive(Debug, Clone)]
pub struct VxlanSpec {
    pub vni: u32,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// UDP destination port (and the port the underlay socket binds).
    pub port: u16,
}

/// `ip link add NAME netns NS type vxlan id VNI local L remote R dstport
/// P`, sent from the namespace that is to carry the VXLAN UDP socket (the
/// underlay): the kernel keeps the socket there and puts the device in
/// `netns`.
pub fn new_vxlan(l: &NewLink, v: &VxlanSpec, netns: RawFd) -> Request {
    use netlink_packet_route::link::InfoVxlan;
    let mut m = link_msg(l);
    m.attributes.push(LinkAttribute::NetNsFd(netns));
    let mut data = vec![InfoVxlan::Id(v.vni)];
    match (v.local, v.remote) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            data.push(InfoVxlan::Local(a));
            data.push(InfoVxlan::Group(b));
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            data.push(InfoVxlan::Local6(a));
            data.push(InfoVxlan::Group6(b));
        }
        // The topology file refuses mixed families; the kernel would too.
        (a, b) => {
            data.push(match a {
                IpAddr::V4(a) => InfoVxlan::Local(a),
                IpAddr::V6(a) => InfoVxlan::Local6(a),
            });
            data.push(match b {
                IpAddr::V4(b) => InfoVxlan::Group(b),
                IpAddr::V6(b) => InfoVxlan::Group6(b),
            });
        }
    }
    data.push(InfoVxlan::Port(v.port));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `ip link set dev X [up|down] [mtu N] [address MAC] [master BR|nomaster]
/// [alias TEXT]`.
#[derive(Debug, Clone, Default)]
pub struct SetLink {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// `Some(0)` is `nomaster`.
    pub master: Option<u32>,
    pub alias: Option<String>,
}

pub fn set_link(index: u32, s: &SetLink) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(up) = s.up {
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
    }
    if let Some(mtu) = s.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = s.mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(br) = s.master {
        m.attributes.push(LinkAttribute::Controller(br));
    }
    if let Some(a) = &s.alias {
        m.attributes.push(LinkAttribute::IfAlias(a.clone()));
    }
    Request {
        msg: RouteNetlinkMessage::SetLink(m),
        flags: 0,
    }
}

/// `ip link set dev X type bridge_slave cost N priority N`.
pub fn set_port(index: u32, cost: Option<u32>, priority: Option<u16>) -> Request {
    let mut opts = Vec::new();
    if let Some(c) = cost {
        opts.push(InfoBridgePort::Cost(c));
    }
    if let Some(p) = priority {
        opts.push(InfoBridgePort::Priority(p));
    }
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(opts)),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: 0,
    }
}

/// `ip link set dev X type bridge_slave hairpin on|off`: whether frames may
/// leave by the port they came in on.
pub fn set_hairpin(index: u32, on: bool) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )])),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: 0,
    }
}

/// `ip link del dev X`.
pub fn del_link(index: u32) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    Request {
        msg: RouteNetlinkMessage::DelLink(m),
        flags: 0,
    }
}

/// `ip addr replace NET dev X` (or `del`). IPv6 addresses skip duplicate
/// address detection: weft checked them unique before building, and DAD
/// would keep them unusable for ~2 s.
pub fn address(add: bool, index: u32, net: IpNet) -> Request {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = net.prefix_len();
    m.header.scope = AddressScope::Universe;
    match net.addr() {
        IpAddr::V4(a) => {
            m.header.family = AddressFamily::Inet;
            m.attributes.push(AddressAttribute::Local(IpAddr::V4(a)));
            m.attributes.push(AddressAttribute::Address(IpAddr::V4(a)));
            if let IpNet::V4(n) = net {
                if n.prefix_len() < 31 {
                    m.attributes
                        .push(AddressAttribute::Broadcast(n.broadcast()));
                }
            }
        }
        IpAddr::V6(a) => {
            m.header.family = AddressFamily::Inet6;
            m.attributes.push(AddressAttribute::Address(IpAddr::V6(a)));
            if add {
                m.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
    }
    if a_is_loopback(net.addr()) {
        m.header.scope = AddressScope::Host;
    }
    Request {
        msg: if add {
            RouteNetlinkMessage::NewAddress(m)
        } else {
            RouteNetlinkMessage::DelAddress(m)
        },
        flags: if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 },
    }
}

fn a_is_loopback(a: IpAddr) -> bool {
    a.is_loopback()
}

/// A route in kernel terms (interfaces already resolved to indexes).
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    pub dst: Option<IpNet>,
    pub ipv6: bool,
    pub kind: RouteKindSpec,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    pub table: Option<u32>,
    pub mtu: Option<u32>,
    pub onlink: bool,
    pub scope_link: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteKindSpec {
    #[default]
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
}

fn raddr(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

/// `ip route replace ...` (or `del`), with iproute2's defaults: protocol
/// static, scope link for a gateway-less unicast route.
pub fn route(add: bool, r: &RouteSpec) -> Request {
    let mut h = RouteHeader {
        address_family: if r.ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        },
        protocol: RouteProtocol::Static,
        ..Default::default()
    };
    let table = r.table.unwrap_or(254);
    h.table = if table < 256 { table as u8 } else { 0 };
    h.kind = match r.kind {
        RouteKindSpec::Unicast => RouteType::Unicast,
        RouteKindSpec::Blackhole => RouteType::BlackHole,
        RouteKindSpec::Unreachable => RouteType::Unreachable,
        RouteKindSpec::Prohibit => RouteType::Prohibit,
    };
    h.scope = if !add {
        RouteScope::NoWhere
    } else if r.scope_link || (r.kind == RouteKindSpec::Unicast && r.via.is_none()) {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if r.onlink {
        h.flags = RouteFlags::Onlink;
    }
    let mut attrs = Vec::new();
    if let Some(d) = r.dst {
        h.destination_prefix_length = d.prefix_len();
        attrs.push(RouteAttribute::Destination(raddr(d.network())));
    }
    attrs.push(RouteAttribute::Table(table));
    if let Some(v) = r.via {
        attrs.push(RouteAttribute::Gateway(raddr(v)));
    }
    if let Some(o) = r.oif {
        attrs.push(RouteAttribute::Oif(o));
    }
    if let Some(s) = r.src {
        attrs.push(RouteAttribute::PrefSource(raddr(s)));
    }
    if let Some(m) = r.metric {
        attrs.push(RouteAttribute::Priority(m));
    }
    if let Some(m) = r.mtu {
        attrs.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(m)]));
    }
    let mut msg = RouteMessage::default();
    msg.header = h;
    msg.attributes = attrs;
    Request {
        msg: if add {
            RouteNetlinkMessage::NewRoute(msg)
        } else {
            RouteNetlinkMessage::DelRoute(msg)
        },
        flags: if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: Request) -> Vec<u8> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | r.flags;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(r.msg));
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    #[test]
    fn messages_walks_a_datagram_and_stops_at_a_bad_length() {
        let msg = |kind: u16, seq: u32, payload: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0, 0]);
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&[0; 4]);
            m.extend_from_slice(payload);
            while m.len() % 4 != 0 {
                m.push(0); // netlink pads each message to 4 bytes
            }
            m
        };
        let mut buf = msg(2, 7, &[1, 2, 3]);
        buf.extend(msg(16, 8, &[]));
        buf.extend_from_slice(&[200, 0, 0, 0, 0, 0]); // a header claiming 200 bytes
        let got: Vec<(u16, u32, usize)> = messages(&buf).map(|(k, s, m)| (k, s, m.len())).collect();
        assert_eq!(got, [(2, 7, 19), (16, 8, 16)]);
    }

    #[test]
    fn only_a_deletion_of_what_is_gone_counts_as_done() {
        let msg = |r: Request| {
            let mut m = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(r.msg),
            );
            m.finalize();
            m
        };
        // Whatever the label (the datapath's fast path passes none).
        assert!(already_gone(&msg(del_link(7)), libc::ENODEV));
        assert!(already_gone(&msg(tc::del_clsact(7)), libc::ENOENT));
        assert!(already_gone(
            &msg(address(false, 7, "10.0.0.2/24".parse().unwrap())),
            libc::EADDRNOTAVAIL
        ));
        // A deletion refused for another reason is an error.
        assert!(!already_gone(&msg(del_link(7)), libc::EPERM));
        // Setting or adding on a missing device is an error, even when
        // its label happens to contain " del ".
        let set = set_link(
            7,
            &SetLink {
                up: Some(true),
                ..Default::default()
            },
        );
        assert!(!already_gone(&msg(set), libc::ENODEV));
        assert!(!already_gone(
            &msg(address(true, 7, "10.0.0.2/24".parse().unwrap())),
            libc::ENODEV
        ));
    }

    #[test]
    fn a_deletion_of_a_missing_object_succeeds_without_a_label() {
        let mut g = crate::testutil::NsGuard::default();
        let ns = g.create("nldel");
        let fd = crate::netns::open(&ns).unwrap();
        crate::netns::run_in(std::os::fd::AsFd::as_fd(&fd), || {
            let mut nl = Netlink::open().unwrap();
            nl.push(tc::del_clsact(1), String::new());
            nl.push(del_link(4242), String::new());
            nl.flush().map_err(|e| format!("{e:?}"))?;
            // And a real refusal still is one.
            nl.push(
                set_link(
                    4242,
                    &SetLink {
                        up: Some(true),
                        ..Default::default()
                    },
                ),
                "ip link del x (a set, labelled like a del)".into(),
            );
            match nl.flush() {
                Err(e) if e[0].errno == libc::ENODEV => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .unwrap()
        .unwrap();
    }

    #[test]
    fn address_v4_has_local_and_broadcast() {
        let b = bytes(address(true, 7, "10.0.0.2/24".parse().unwrap()));
        // nlmsghdr (16) + ifaddrmsg (8): family 2, prefix 24, index 7.
        assert_eq!(b[16], libc::AF_INET as u8);
        assert_eq!(b[17], 24);
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 7);
        let flags = u16::from_ne_bytes(b[6..8].try_into().unwrap());
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE);
        // IFA_LOCAL (2) = 10.0.0.2 is in there, and IFA_BROADCAST 10.0.0.255.
        assert!(b.windows(8).any(|w| w == [8, 0, 2, 0, 10, 0, 0, 2]));
        assert!(b.windows(8).any(|w| w == [8, 0, 4, 0, 10, 0, 0, 255]));
    }

    #[test]
    fn gatewayless_route_is_scope_link() {
        let r = RouteSpec {
            dst: Some("10.1.0.0/16".parse().unwrap()),
            oif: Some(3),
            ..Default::default()
        };
        let b = bytes(route(true, &r));
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type
        assert_eq!(&b[16..24], &[libc::AF_INET as u8, 16, 0, 0, 254, 4, 253, 1]);
    }

    #[test]
    fn vxlan_has_vni_ends_port_and_target_namespace() {
        let b = bytes(new_vxlan(
            &NewLink {
                index: 1001,
                name: "vx0",
                mtu: Some(1450),
                mac: None,
            },
            &VxlanSpec {
                vni: 0x0a0b0c,
                local: "192.0.2.1".parse().unwrap(),
                remote: "192.0.2.2".parse().unwrap(),
                port: 4789,
            },
            9,
        ));
        // ifinfomsg: index 1001.
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 1001);
        // IFLA_NET_NS_FD (28) = 9; IFLA_INFO_KIND "vxlan".
        assert!(b.windows(8).any(|w| w == [8, 0, 28, 0, 9, 0, 0, 0]));
        assert!(b
            .windows(10)
            .any(|w| w == [10, 0, 1, 0, b'v', b'x', b'l', b'a', b'n', 0]));
        // IFLA_VXLAN_ID (1), _GROUP (2, the remote), _LOCAL (4), and
        // _PORT (15) in network byte order.
        assert!(b.windows(8).any(|w| w == [8, 0, 1, 0, 0x0c, 0x0b, 0x0a, 0]));
        assert!(b.windows(8).any(|w| w == [8, 0, 2, 0, 192, 0, 2, 2]));
        assert!(b.windows(8).any(|w| w == [8, 0, 4, 0, 192, 0, 2, 1]));
        assert!(b.windows(6).any(|w| w == [6, 0, 15, 0, 0x12, 0xb5]));
    }
}
