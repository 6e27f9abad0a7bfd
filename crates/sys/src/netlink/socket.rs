//! The socket and its queue: requests are batched into few datagrams,
//! answers read back and matched to the requests by sequence number.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

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
    pub(super) sock: Socket,
    pub(super) seq: u32,
    pub(super) queue: Vec<(NetlinkMessage<RouteNetlinkMessage>, String)>,
}

/// 256 KiB: more than the kernel puts in one dump datagram. One per thread,
/// not per socket: a lab holds a socket per namespace, thousands of them.
const RBUF: usize = 256 * 1024;

thread_local! {
    pub(super) static RBUF_TLS: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; RBUF]);
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

    pub(super) fn recv(&self, rbuf: &mut [u8]) -> io::Result<usize> {
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
    pub(super) msg: RouteNetlinkMessage,
    pub(super) flags: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{address, del_link, set_link, tc, Change, SetLink};

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
            &msg(address(Change::Remove, 7, "10.0.0.2/24".parse().unwrap())),
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
            &msg(address(Change::Add, 7, "10.0.0.2/24".parse().unwrap())),
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
}
