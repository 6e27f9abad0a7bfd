//! The tunnel's UDP batches: `sendmmsg` with UDP GSO (`UDP_SEGMENT`: one
//! message carries up to [`MAX_SEGS`] datagrams of one size, which the
//! kernel cuts apart below the UDP layer) and `recvmmsg` with UDP GRO
//! (`UDP_GRO`: the kernel hands over runs of datagrams from one sender
//! glued together, with their size in a control message). Both are
//! detected at run time; without them every datagram is its own message.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};

/// `linux/udp.h`; not in the libc crate for glibc targets.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Datagrams in one GSO message at most (the kernel's `UDP_MAX_SEGMENTS`
/// was 64 until 6.x raised it; 64 works everywhere).
pub const MAX_SEGS: usize = 64;
/// Bytes in one GSO message at most: one UDP datagram's payload over IPv6.
pub const MAX_GSO_BYTES: usize = 65535 - 40 - 8;
/// Messages per `recvmmsg`/`sendmmsg` call.
pub const MSGS: usize = 64;
/// A receive buffer with GRO on: the largest glued datagram.
pub const GRO_BUF: usize = 65536;

/// A UDP socket for the tunnel: non-blocking, and allowed to fragment
/// (outer datagrams bigger than the path MTU are fragmented, not dropped;
/// the inner MTU is chosen so that this does not normally happen).
pub fn udp_socket(listen: SocketAddr) -> Result<Socket> {
    let what = format!("binding UDP {listen}");
    let os = |what: &str, err| Error::Os {
        action: what.to_string(),
        err,
        hint: None,
    };
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

/// Datagrams that go out in one GSO message: `count` datagrams laid back
/// to back at `start..start + len`, all `seg` bytes long but the last,
/// which may be shorter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub to: SocketAddr,
    pub start: usize,
    pub len: usize,
    pub seg: usize,
    pub count: usize,
}

impl Group {
    /// Each datagram's bytes (relative to the plan's buffer).
    pub fn datagrams(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        segments(self.len, self.seg).map(move |r| self.start + r.start..self.start + r.end)
    }
}

/// The byte ranges of the datagrams in `len` bytes received with GRO
/// segment size `seg` (0: not glued, one datagram).
pub fn segments(len: usize, seg: usize) -> impl Iterator<Item = Range<usize>> {
    let seg = if seg == 0 { len.max(1) } else { seg };
    (0..len).step_by(seg).map(move |s| s..(s + seg).min(len))
}

/// Datagrams to send, written back to back into one buffer and grouped
/// for GSO as they are added. Pure bookkeeping; [`send`] does the I/O.
pub struct TxPlan {
    buf: Vec<u8>,
    end: usize,
    pub groups: Vec<Group>,
    /// Whether to glue datagrams into groups at all (GSO available).
    pub gso: bool,
}

impl TxPlan {
    pub fn new(capacity: usize, gso: bool) -> TxPlan {
        TxPlan {
            buf: vec![0; capacity],
            end: 0,
            groups: Vec::with_capacity(MSGS),
            gso,
        }
    }

    /// Free bytes after the last datagram.
    pub fn room(&self) -> usize {
        self.buf.len() - self.end
    }

    /// Where the next datagram is to be written.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// The `len` bytes just written at [`Self::space`] are a datagram to `to`.
    pub fn commit(&mut self, to: SocketAddr, len: usize) {
        debug_assert!(len <= self.room());
        let start = self.end;
        self.end += len;
        if self.gso {
            if let Some(g) = self.groups.last_mut() {
                // A group takes equal sizes, then at most one shorter last
                // datagram: the kernel's rule for UDP_SEGMENT.
                let open = g.len == g.seg * g.count;
                if g.to == to
                    && open
                    && len <= g.seg
                    && len > 0
                    && g.count < MAX_SEGS
                    && g.len + len <= MAX_GSO_BYTES
                {
                    g.len += len;
                    g.count += 1;
                    return;
                }
            }
        }
        self.groups.push(Group {
            to,
            start,
            len,
            seg: len,
            count: 1,
        });
    }

    /// Copy a datagram in (handshakes, keepalives). False if it does not fit.
    pub fn push(&mut self, to: SocketAddr, d: &[u8]) -> bool {
        if d.len() > self.room() {
            return false;
        }
        self.space()[..d.len()].copy_from_slice(d);
        self.commit(to, d.len());
        true
    }

    pub fn datagrams(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }

    pub fn bytes(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    pub fn clear(&mut self) {
        self.end = 0;
        self.groups.clear();
    }
}

/// Whether the kernel takes `UDP_SEGMENT` on this socket.
pub fn gso_supported(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a live c_int with its size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut l,
        )
    };
    r == 0
}

/// Turn UDP GRO on; false if the kernel does not have it.
pub fn enable_gro(fd: RawFd) -> bool {
    let v: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let s = socket2::SockAddr::from(a);
    // SAFETY: SockAddr holds a valid sockaddr_storage of `len` bytes.
    (
        unsafe { *s.as_ptr().cast::<libc::sockaddr_storage>() },
        s.len(),
    )
}

/// Control-message space for one u16 or c_int, 8-byte aligned.
type Cmsg = [u64; 4];

/// Reusable scratch for [`send`].
#[derive(Default)]
pub struct TxScratch {
    iovs: Vec<libc::iovec>,
    names: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    cmsgs: Vec<Cmsg>,
    /// Per message: (first datagram's range, datagrams in it, GSO size or 0).
    msgs: Vec<(Range<usize>, usize, u16)>,
}

// SAFETY: the raw pointers in the scratch are filled in by each `send`
// and used only during its system call; between calls they are dead
// values, so the scratch may move to (or be locked by) another thread.
unsafe impl Send for TxScratch {}

/// What [`send`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendResult {
    /// Datagrams the kernel refused (counted, not retried: the protocol
    /// above recovers from loss).
    pub failed: u64,
    /// GSO messages sent.
    pub gso_msgs: u64,
    /// The kernel refused GSO on this path: the plan's datagrams went
    /// one by one, and `plan.gso` is now off.
    pub fell_back: bool,
}

/// Send everything in `plan` (which is then cleared).
pub fn send(fd: RawFd, plan: &mut TxPlan, s: &mut TxScratch) -> SendResult {
    let mut res = SendResult::default();
    let mut use_gso = plan.gso;
    loop {
        s.msgs.clear();
        for g in &plan.groups {
            if use_gso && g.count > 1 {
                s.msgs
                    .push((g.start..g.start + g.len, g.count, g.seg as u16));
            } else {
                for r in g.datagrams() {
                    s.msgs.push((r, 1, 0));
                }
            }
        }
        let tos: Vec<SocketAddr> = plan
            .groups
            .iter()
            .flat_map(|g| {
                let n = if use_gso && g.count > 1 { 1 } else { g.count };
                std::iter::repeat_n(g.to, n)
            })
            .collect();
        match send_msgs(fd, plan, s, &tos) {
            Ok((failed, gso_msgs)) => {
                res.failed += failed;
                res.gso_msgs += gso_msgs;
                break;
            }
            Err(()) => {
                // A GSO message was refused as such (EIO: the route's
                // device cannot checksum it; EINVAL/EOPNOTSUPP: no GSO):
                // send everything again without, and keep it off. Nothing
                // before the refused message is sent twice: send_msgs
                // stops at the first GSO refusal and its earlier
                // messages went out, so they are dropped from the plan.
                use_gso = false;
                plan.gso = false;
                res.fell_back = true;
            }
        }
    }
    plan.clear();
    res
}

/// One pass of `sendmmsg` calls over `s.msgs`. Err(()) when a GSO message
/// was refused for GSO reasons; the groups already sent are then removed
/// from `plan` so the caller can resend the rest without GSO.
fn send_msgs(
    fd: RawFd,
    plan: &mut TxPlan,
    s: &mut TxScratch,
    tos: &[SocketAddr],
) -> Result<(u64, u64), ()> {
    let n = s.msgs.len();
    s.iovs.clear();
    s.names.clear();
    s.cmsgs.clear();
    s.cmsgs.resize(n, [0; 4]);
    for (i, (r, _, seg)) in s.msgs.iter().enumerate() {
        s.iovs.push(libc::iovec {
            iov_base: plan.buf[r.clone()].as_ptr() as *mut libc::c_void,
            iov_len: r.len(),
        });
        s.names.push(sockaddr(tos[i]));
        if *seg > 0 {
            let c = &mut s.cmsgs[i];
            // SAFETY: c is 32 aligned bytes, room for a cmsghdr and a u16
            // (CMSG_SPACE(2) is 24); the pointer is derived from c.
            unsafe {
                let h = c.as_mut_ptr().cast::<libc::cmsghdr>();
                (*h).cmsg_level = libc::SOL_UDP;
                (*h).cmsg_type = UDP_SEGMENT;
                (*h).cmsg_len = libc::CMSG_LEN(2) as _;
                libc::CMSG_DATA(h).cast::<u16>().write_unaligned(*seg);
            }
        }
    }
    // SAFETY: mmsghdr is plain old data; all-zero is valid.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; n];
    for (i, h) in hdrs.iter_mut().enumerate() {
        h.msg_hdr.msg_name = (&mut s.names[i].0 as *mut libc::sockaddr_storage).cast();
        h.msg_hdr.msg_namelen = s.names[i].1;
        h.msg_hdr.msg_iov = &mut s.iovs[i];
        h.msg_hdr.msg_iovlen = 1;
        if s.msgs[i].2 > 0 {
            h.msg_hdr.msg_control = s.cmsgs[i].as_mut_ptr().cast();
            // SAFETY: pure arithmetic.
            h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
        }
    }
    let mut failed = 0;
    let mut gso_msgs = 0;
    let mut done = 0;
    while done < n {
        let batch = (n - done).min(MSGS);
        // SAFETY: headers point to addresses, iovecs, control buffers and
        // data that live (unmoved) for the call.
        let r = unsafe { libc::sendmmsg(fd, hdrs[done..].as_mut_ptr(), batch as u32, 0) };
        if r > 0 {
            gso_msgs += s.msgs[done..done + r as usize]
                .iter()
                .filter(|m| m.2 > 0)
                .count() as u64;
            done += r as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        let (_, count, seg) = &s.msgs[done];
        let gso_refused = *seg > 0
            && matches!(
                e.raw_os_error(),
                Some(libc::EIO)
                    | Some(libc::EINVAL)
                    | Some(libc::EOPNOTSUPP)
                    | Some(libc::EMSGSIZE)
            );
        if gso_refused {
            // Drop what went out from the plan: whole groups, since each
            // message before `done` is a whole group or one datagram of one.
            forget_sent(plan, &s.msgs[..done]);
            return Err(());
        }
        // Skip the message that failed and go on with the rest.
        failed += *count as u64;
        done += 1;
    }
    Ok((failed, gso_msgs))
}

/// Remove from `plan` the datagrams of `sent` (a prefix of its messages).
fn forget_sent(plan: &mut TxPlan, sent: &[(Range<usize>, usize, u16)]) {
    let Some(last) = sent.last() else { return };
    let sent_end = last.0.end;
    let mut keep = vec![];
    for g in plan.groups.drain(..) {
        if g.start + g.len <= sent_end {
            continue;
        }
        if g.start >= sent_end {
            keep.push(g);
            continue;
        }
        // Part of a group went (datagram by datagram): keep the rest, one
        // group per datagram.
        for r in g.datagrams().filter(|r| r.start >= sent_end) {
            keep.push(Group {
                to: g.to,
                start: r.start,
                len: r.len(),
                seg: r.len(),
                count: 1,
            });
        }
    }
    plan.groups = keep;
}

/// Buffers for `recvmmsg`, with the GRO segment size of each message.
pub struct RxBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<Cmsg>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    pub lens: Vec<usize>,
    /// GRO segment size per message (0: one datagram).
    pub segs: Vec<usize>,
}

// SAFETY: the headers' raw pointers point into this batch's own heap
// buffers and are rewritten before every `recvmmsg`; they are used only
// during that call, so the batch may move to (or be locked by) another
// thread.
unsafe impl Send for RxBatch {}

impl RxBatch {
    /// `size`: the largest datagram expected; with `gro`, room for a glued run.
    pub fn new(size: usize, gro: bool) -> RxBatch {
        let size = if gro { size.max(GRO_BUF) } else { size };
        RxBatch {
            bufs: vec![vec![0u8; size]; MSGS],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; MSGS],
            cmsgs: vec![[0; 4]; MSGS],
            iovs: Vec::with_capacity(MSGS),
            // SAFETY: mmsghdr is plain old data; all-zero is valid.
            hdrs: vec![unsafe { std::mem::zeroed() }; MSGS],
            lens: vec![0; MSGS],
            segs: vec![0; MSGS],
        }
    }

    /// Receive up to [`MSGS`] messages without waiting; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.iovs.clear();
        for b in self.bufs.iter_mut() {
            self.iovs.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            });
        }
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of::<Cmsg>() as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                MSGS as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for i in 0..n as usize {
            self.lens[i] = self.hdrs[i].msg_len as usize;
            self.segs[i] = 0;
            let m = &self.hdrs[i].msg_hdr;
            // SAFETY: the kernel filled msg_control up to msg_controllen;
            // the CMSG_* walk stays within it.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(m);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let v = libc::CMSG_DATA(c).cast::<libc::c_int>().read_unaligned();
                        self.segs[i] = v.max(0) as usize;
                    }
                    c = libc::CMSG_NXTHDR(m, c);
                }
            }
        }
        Ok(n as usize)
    }

    pub fn data(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    pub fn from(&self, i: usize) -> Option<SocketAddr> {
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

#[cfg(test)]
mod tests;
