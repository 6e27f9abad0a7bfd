//! AF_PACKET capture sockets (what tcpdump uses), opened in a node's
//! namespace. A packet socket stays bound to the namespace it was created
//! in, so after [`open_in`] the socket can be read from any thread.
//!
//! The classic BPF filter is attached *before* the socket is bound to its
//! interface, so no packet is queued that the filter would have dropped;
//! for packets the filter drops the kernel makes no copy at all.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::{Error, Result};

/// `ARPHRD_*` of the interfaces weft makes.
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_LOOPBACK: u16 = 772;
/// A TUN device: bare IP packets, no link-layer header.
pub const ARPHRD_NONE: u16 = 0xfffe;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy)]
pub struct FilterInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A bound capture socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    pub ifindex: u32,
    /// The interface's `ARPHRD_*` type.
    pub hatype: u16,
}

/// What one receive returned.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes placed in the buffer.
    pub len: usize,
    /// Length on the wire (before the buffer or the filter cut it).
    pub orig_len: u32,
    /// Kernel receive timestamp, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// The 802.1Q tag the kernel moved out of the frame: TCI and TPID.
    pub vlan: Option<(u16, u16)>,
    /// `PACKET_HOST`, `PACKET_OUTGOING`, ... of the packet.
    pub pkttype: u8,
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, val: &T, what: &str) -> Result<()> {
    // SAFETY: val points to a live T of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(Error::os(what.to_string(), io::Error::last_os_error()));
    }
    Ok(())
}

/// Open a capture socket on `iface` inside the namespace `ns`, with an
/// optional filter.
pub fn open_in(
    ns: BorrowedFd<'_>,
    iface: &str,
    filter: Option<&[FilterInsn]>,
) -> Result<PacketSocket> {
    let iface = iface.to_string();
    let filter: Option<Vec<FilterInsn>> = filter.map(|f| f.to_vec());
    crate::netns::run_in(ns, move || open_here(&iface, filter.as_deref()))?
}

/// [`open_in`] for the calling thread's namespace.
pub fn open_here(iface: &str, filter: Option<&[FilterInsn]>) -> Result<PacketSocket> {
    let what = |s: &str| format!("capturing on {iface}: {s}");
    let ifindex = crate::if_index(iface).ok_or_else(|| {
        Error::os(
            what("no such interface"),
            io::Error::from_raw_os_error(libc::ENODEV),
        )
    })?;
    // Protocol 0: the socket receives nothing until bind names one.
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::os(
            what("socket(AF_PACKET)"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: raw is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(f) = filter {
        let mut prog: Vec<libc::sock_filter> = f
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog,
            &what("attaching the filter (SO_ATTACH_FILTER)"),
        )?;
    }
    let one: libc::c_int = 1;
    setsockopt(
        raw,
        libc::SOL_PACKET,
        libc::PACKET_AUXDATA,
        &one,
        &what("PACKET_AUXDATA"),
    )?;
    setsockopt(
        raw,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        &one,
        &what("SO_TIMESTAMPNS"),
    )?;
    // Room for bursts; a failure here only means the default size.
    let rcvbuf: libc::c_int = 4 << 20;
    let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf, "");
    // SAFETY: zeroed sockaddr_ll is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            raw,
            &sll as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(Error::os(what("bind"), io::Error::last_os_error()));
    }
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: getsockname writes at most len bytes into sll.
    let r = unsafe { libc::getsockname(raw, &mut sll as *mut _ as *mut libc::sockaddr, &mut len) };
    if r != 0 {
        return Err(Error::os(what("getsockname"), io::Error::last_os_error()));
    }
    Ok(PacketSocket {
        fd,
        ifindex,
        hatype: sll.sll_hatype,
    })
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PacketSocket {
    /// Send a whole link-layer frame out of the bound interface, as is
    /// (an 802.1Q tag in it stays in the bytes).
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: frame is a live buffer of the length given.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 {
            return Err(Error::os(
                "sending a frame on a packet socket",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Receive one packet without blocking; `Ok(None)` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<Received>> {
        // SAFETY: all-zero is valid for these plain C structs.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        let mut cbuf = [0u64; 32];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of::<[u64; 32]>();
        // SAFETY: msg points to live buffers of the sizes it states.
        let n = unsafe {
            libc::recvmsg(
                self.fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(Error::os("receiving a captured packet", e)),
            };
        }
        let mut r = Received {
            len: (n as usize).min(buf.len()),
            orig_len: n as u32,
            ts_ns: 0,
            vlan: None,
            pkttype: sll.sll_pkttype,
        };
        // SAFETY: the CMSG_* walk stays within msg_control/msg_controllen,
        // which the kernel filled; each payload is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_PACKET, libc::PACKET_AUXDATA) => {
                        let a = std::ptr::read_unaligned(data as *const libc::tpacket_auxdata);
                        r.orig_len = a.tp_len;
                        if a.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            let tpid = if a.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                                a.tp_vlan_tpid
                            } else {
                                0x8100
                            };
                            r.vlan = Some((a.tp_vlan_tci, tpid));
                        }
                    }
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                        let t = std::ptr::read_unaligned(data as *const libc::timespec);
                        r.ts_ns = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(r))
    }
}

/// Wait until one of `socks` has a packet or `timeout` passes; returns the
/// indexes of the readable ones (empty on timeout or a signal).
pub fn wait_readable(socks: &[&PacketSocket], timeout: Duration) -> Result<Vec<usize>> {
    let mut fds: Vec<PollFd> = socks
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
        Err(e) => return Err(Error::os("waiting for captured packets (poll)", e)),
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
        })
        .map(|(i, _)| i)
        .collect())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Make SIGINT and SIGTERM set a flag instead of killing the process, so a
/// capture can finish its file; returns the flag.
pub fn stop_on_signals() -> Result<&'static AtomicBool> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; no SA_RESTART, so poll returns EINTR.
        let r = unsafe {
            let mut sa: libc::sigaction = zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(Error::os(
                "installing the SIGINT/SIGTERM handler",
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(&STOP)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback in a private namespace: a UDP datagram to 127.0.0.1 passes
    /// the socket twice (out and in); a filter for another port drops it.
    #[test]
    fn captures_loopback_with_and_without_filter() {
        let mut g = crate::testutil::NsGuard::default();
        let name = g.create("pkt");
        crate::testutil::ip(&["-n", &name, "link", "set", "lo", "up"]);
        let ns = crate::netns::open(&name).unwrap();
        crate::netns::run_in(ns.as_fd(), || {
            // udp dst port 9999 / udp dst port 1 (hand-written, Ethernet).
            let prog = |port: u32| {
                vec![
                    FilterInsn {
                        code: 0x28,
                        jt: 0,
                        jf: 0,
                        k: 12,
                    },
                    FilterInsn {
                        code: 0x15,
                        jt: 0,
                        jf: 3,
                        k: 0x800,
                    },
                    FilterInsn {
                        code: 0x28,
                        jt: 0,
                        jf: 0,
                        k: 36,
                    },
                    FilterInsn {
                        code: 0x15,
                        jt: 0,
                        jf: 1,
                        k: port,
                    },
                    FilterInsn {
                        code: 0x6,
                        jt: 0,
                        jf: 0,
                        k: 0x40000,
                    },
                    FilterInsn {
                        code: 0x6,
                        jt: 0,
                        jf: 0,
                        k: 0,
                    },
                ]
            };
            let all = open_here("lo", None).unwrap();
            let hit = open_here("lo", Some(&prog(9999))).unwrap();
            let miss = open_here("lo", Some(&prog(1))).unwrap();
            assert_eq!(all.hatype, ARPHRD_LOOPBACK);
            // A listener, so no ICMP port-unreachable joins the count.
            let rx = std::net::UdpSocket::bind("127.0.0.1:9999").unwrap();
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            u.send_to(b"hello", "127.0.0.1:9999").unwrap();
            // Delivered to the listener means past the packet sockets both
            // ways (the taps run before the protocol); the softirq that
            // delivers it may run late on a loaded machine.
            rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            rx.recv(&mut [0u8; 16])
                .expect("the datagram reached its listener");
            let count = |s: &PacketSocket| {
                let mut buf = [0u8; 2048];
                let mut n = 0;
                while let Some(r) = s.recv(&mut buf).unwrap() {
                    assert!(r.ts_ns > 1_600_000_000_000_000_000);
                    assert_eq!(&buf[r.len - 5..r.len], b"hello");
                    n += 1;
                }
                n
            };
            assert_eq!(count(&all), 2);
            assert_eq!(count(&hit), 2);
            assert_eq!(count(&miss), 0);
        })
        .unwrap();
    }
}
