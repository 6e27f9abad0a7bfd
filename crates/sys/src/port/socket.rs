//! The AF_PACKET socket of one port: open, receive a batch, send a batch.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::batch::{Meta, TxScratch, SCRATCH};
use super::filter::{aux_vlan, skip_filter};
use super::ring::RxRing;
use super::xsk::{XskTx, XSK_MAX_FRAME};
use super::{
    cvt, setsockopt_int, RxBatch, TxFrame, VnetHdr, ETH_P_ALL, HEADROOM, MAX_SKIP_PAIRS,
    PACKET_AUXDATA, PACKET_IGNORE_OUTGOING, PACKET_STATISTICS, PACKET_VNET_HDR, RING_FRAME,
    SOL_PACKET, TP_STATUS_COPY, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID,
    VNET_F_NEEDS_CSUM, VNET_HDR_LEN,
};

/// How often a port sending through AF_XDP looks for captures on it.
const TAP_CHECK: Duration = Duration::from_millis(5);

/// An AF_PACKET socket bound to one interface of the calling thread's
/// network namespace.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
    ring: Option<RxRing>,
    /// Plain frames leave through this AF_XDP socket (xsk.rs) while
    /// `xsk_on`; `None` when it could not be opened or failed since.
    xsk: RefCell<Option<XskTx>>,
    /// No other packet socket captures on the interface (frames sent by
    /// AF_XDP skip the packet taps); checked with the carrier.
    xsk_on: Cell<bool>,
    /// Why frames do not use AF_XDP, for `weft status`.
    xsk_why: RefCell<String>,
    /// The namespace's /proc/net/packet (opened in it) and this socket's
    /// inode there, to see other sockets capturing on the interface.
    taps: Option<RefCell<std::fs::File>>,
    inode: u64,
    /// The interface's MTU: larger frames take AF_PACKET, which refuses
    /// them with an error the datapath counts.
    mtu: Cell<u32>,
    /// When captures were last looked for.
    checked: Cell<std::time::Instant>,
    /// Frames the kernel dropped because the socket had no room (the
    /// receive ring full), so far.
    rx_dropped: Cell<u64>,
}

impl PacketSocket {
    /// Opens a raw packet socket on `ifname` with the virtio-net header,
    /// VLAN aux data, and without the frames it sends itself.
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        let ifindex = crate::if_index(ifname).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {ifname} in this namespace"),
            )
        })?;
        // Protocol 0: the socket receives nothing until bind names the
        // interface, so no frame of another interface slips in.
        // SAFETY: plain socket(2) call.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        })?;
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let r = fd.as_raw_fd();
        setsockopt_int(r, SOL_PACKET, PACKET_VNET_HDR, 1)?;
        setsockopt_int(r, SOL_PACKET, PACKET_AUXDATA, 1)?;
        setsockopt_int(r, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        // Without the ring (no memory for it), recvmmsg serves all frames.
        let ring = RxRing::new(r).ok();
        // Bursts of 64 KiB GSO frames need room; FORCE works as root and
        // goes past net.core.rmem_max.
        let _ = setsockopt_int(r, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
        let _ = setsockopt_int(r, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20);
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the size passed.
        cvt(unsafe {
            libc::bind(
                r,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let (xsk, why) = if std::env::var_os("WEFT_SWITCH_XSK").is_some_and(|v| v == "off") {
            (None, "off: WEFT_SWITCH_XSK=off".to_string())
        } else {
            match XskTx::open(ifindex) {
                Ok(x) => (Some(x), String::new()),
                Err(e) => (None, format!("AF_XDP refused: {e}")),
            }
        };
        // SAFETY: stat is plain data; fstat fills it for our own fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let inode = if unsafe { libc::fstat(r, &mut st) } == 0 {
            st.st_ino
        } else {
            0
        };
        let taps = std::fs::File::open("/proc/thread-self/net/packet")
            .ok()
            .map(RefCell::new);
        let s = PacketSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
            ring,
            xsk_on: Cell::new(false),
            xsk: RefCell::new(xsk),
            xsk_why: RefCell::new(why),
            taps,
            inode,
            mtu: Cell::new(1500),
            checked: Cell::new(std::time::Instant::now()),
            rx_dropped: Cell::new(0),
        };
        s.refresh_tx();
        Ok(s)
    }

    /// How plain frames leave: `"AF_XDP"`, or `"AF_PACKET (why)"`.
    pub fn tx_path(&self) -> String {
        if self.xsk_on.get() {
            "AF_XDP".to_string()
        } else {
            format!("AF_PACKET ({})", self.xsk_why.borrow())
        }
    }

    /// Rereads the MTU and whether another socket captures on the
    /// interface, which decides whether AF_XDP may send.
    fn refresh_tx(&self) {
        self.checked.set(std::time::Instant::now());
        // SAFETY: ifreq is plain data; zeroed is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(self.ifname.as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCGIFMTU fills the ifreq we pass.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) } == 0 {
            // SAFETY: SIOCGIFMTU wrote the mtu member of the union.
            self.mtu.set(unsafe { ifr.ifr_ifru.ifru_mtu } as u32);
        }
        if self.xsk.borrow().is_none() {
            self.xsk_on.set(false);
            return;
        }
        match self.other_taps() {
            Some(0) => {
                self.xsk_on.set(true);
                self.xsk_why.borrow_mut().clear();
            }
            Some(_) => {
                self.xsk_on.set(false);
                *self.xsk_why.borrow_mut() =
                    "a capture is running on the port, and AF_XDP frames skip it".to_string();
            }
            None => {
                self.xsk_on.set(false);
                *self.xsk_why.borrow_mut() =
                    "cannot read /proc/net/packet to see captures on the port".to_string();
            }
        }
    }

    /// Packet sockets of this namespace other than this one that receive
    /// from the interface (bound to it, or to every interface).
    fn other_taps(&self) -> Option<usize> {
        let mut f = self.taps.as_ref()?.borrow_mut();
        f.rewind().ok()?;
        let mut text = String::new();
        f.read_to_string(&mut text).ok()?;
        let mut n = 0;
        // sk RefCnt Type Proto Iface R Rmem User Inode
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split_whitespace().collect();
            let (Some(proto), Some(iface), Some(inode)) = (c.get(3), c.get(4), c.get(8)) else {
                continue;
            };
            let iface: u32 = iface.parse().ok()?;
            let inode: u64 = inode.parse().ok()?;
            // Protocol 0 receives nothing (a sender such as swgen).
            if u16::from_str_radix(proto, 16).ok()? == 0 || inode == self.inode {
                continue;
            }
            if iface == self.ifindex || iface == 0 {
                n += 1;
            }
        }
        Some(n)
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether the interface has a carrier and is up (`IFF_RUNNING`);
    /// `ENODEV` once it is gone (its veth peer's namespace was deleted).
    pub fn carrier(&self) -> io::Result<bool> {
        // SAFETY: ifreq is plain data; zeroed is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        let name = CString::new(self.ifname.as_str()).map_err(io::Error::other)?;
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS fills the ifreq we pass; the ioctl acts in
        // the socket's own namespace.
        cvt(unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
        // SAFETY: SIOCGIFFLAGS wrote the flags member of the union.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        // SAFETY: SIOCGIFINDEX fills the index member of the same ifreq.
        cvt(unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut ifr) })?;
        // SAFETY: SIOCGIFINDEX wrote the index member of the union.
        if unsafe { ifr.ifr_ifru.ifru_ifindex } as u32 != self.ifindex {
            // Same name, another device: the port we had is gone.
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        self.refresh_tx();
        let want = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        Ok(flags & want == want)
    }

    /// Takes the socket's pending error, which `poll` reports (POLLERR)
    /// until it is read: the kernel sets ENETDOWN when the interface goes
    /// down or away, and with the RX ring no receive call ever reads it,
    /// so every wait would return at once (a loop polling this socket
    /// would spin a whole CPU).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        socket2::SockRef::from(&self.fd).take_error()
    }

    /// Stops the socket from receiving untagged IPv4 and IPv6 frames with
    /// these (source, destination) MACs (the kernel fast path forwards
    /// those), with a classic BPF filter run before the frame is copied;
    /// an empty list receives everything again. At most [`MAX_SKIP_PAIRS`].
    pub fn skip_pairs(&self, pairs: &[([u8; 6], [u8; 6])]) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        if pairs.is_empty() {
            let v: libc::c_int = 0;
            // SAFETY: SO_DETACH_FILTER with a live int; ENOENT when none.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_DETACH_FILTER,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
                return Err(io::Error::last_os_error());
            }
            return Ok(());
        }
        if pairs.len() > MAX_SKIP_PAIRS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("at most {MAX_SKIP_PAIRS} MAC pairs can be skipped on one port"),
            ));
        }
        let prog = skip_filter(pairs);
        let fp = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: fp points at `prog`, alive for the call; the kernel
        // copies and checks the program.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fp as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Frames the kernel dropped on their way into this socket since it
    /// was opened, for want of room (the receive ring or the socket's
    /// queue full: the process did not run for longer than they last).
    pub fn rx_dropped(&self) -> u64 {
        // struct tpacket_stats: packets, drops; reading resets them.
        let mut st = [0u32; 2];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: the kernel writes at most len bytes into st.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.rx_dropped
                .set(self.rx_dropped.get() + u64::from(st[1]));
        }
        self.rx_dropped.get()
    }

    /// Whether frames are read from a mapped ring (else with `recvmmsg`).
    pub fn has_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Whether a frame is waiting in the ring (no system call). Without a
    /// ring, or for frames only queued on the socket, `false`: ask the
    /// poller.
    pub fn ring_ready(&self) -> bool {
        self.ring.as_ref().is_some_and(|r| {
            r.map.status(r.next.get()).load(Ordering::Acquire) & TP_STATUS_USER != 0
        })
    }

    /// Receives up to `rx.capacity()` frames without blocking; 0 when none
    /// is waiting. Frames are then read with [`RxBatch::frame`] until
    /// [`RxBatch::release`] or the next `recv_batch` (which releases the
    /// previous batch first).
    pub fn recv_batch(&self, rx: &mut RxBatch) -> io::Result<usize> {
        rx.release();
        let Some(ring) = &self.ring else {
            return self.recv_mmsg(rx, 0, rx.slots);
        };
        let mut got = 0;
        while got < rx.slots {
            let i = ring.next.get();
            let st = ring.map.status(i).load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                break;
            }
            ring.next.set((i + 1) % ring.slots);
            if rx.held.is_empty() {
                rx.held_map = Some(ring.map.clone());
            }
            rx.held.push(i as u32);
            let slot = ring.map.slot(i);
            // SAFETY: the slot is ours while its status says USER; the
            // header is its first bytes.
            let h: libc::tpacket2_hdr = unsafe { std::ptr::read(slot.cast()) };
            let (mac, snap) = (h.tp_mac as usize, h.tp_snaplen as usize);
            if snap < h.tp_len as usize {
                if st & TP_STATUS_COPY != 0 {
                    // The whole frame is next in the socket's queue.
                    if self.recv_mmsg(rx, got, 1)? == 0 {
                        rx.meta[got] = None;
                    }
                } else {
                    rx.meta[got] = None;
                    rx.truncated += 1;
                }
                got += 1;
                continue;
            }
            if mac < VNET_HDR_LEN + HEADROOM || mac + snap > RING_FRAME {
                rx.meta[got] = None;
                got += 1;
                continue;
            }
            // SAFETY: mac - VNET_HDR_LEN .. mac + snap lies within the
            // slot (checked above), which is ours until released.
            let buf = unsafe {
                std::slice::from_raw_parts_mut(slot.add(mac - VNET_HDR_LEN), VNET_HDR_LEN + snap)
            };
            let mut vnet = VnetHdr::from_bytes(buf[..VNET_HDR_LEN].try_into().unwrap());
            let vlan = (h.tp_status & TP_STATUS_VLAN_VALID != 0).then(|| {
                let tpid = if h.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    h.tp_vlan_tpid
                } else {
                    0x8100
                };
                (tpid, h.tp_vlan_tci)
            });
            let (start, len) = match vlan {
                Some((tpid, tci)) if snap >= 12 => {
                    // The kernel took the tag out; put it back where it
                    // was, in place (over the header already read).
                    let m = VNET_HDR_LEN;
                    buf.copy_within(m..m + 12, m - 4);
                    buf[m + 8..m + 10].copy_from_slice(&tpid.to_be_bytes());
                    buf[m + 10..m + 12].copy_from_slice(&tci.to_be_bytes());
                    vnet = vnet.shifted(4);
                    (mac - 4, snap + 4)
                }
                _ => (mac, snap),
            };
            rx.meta[got] = Some(Meta::Ring {
                // SAFETY: start is within the slot (mac >= 14).
                ptr: unsafe { slot.add(start) },
                len: len as u32,
                vnet,
            });
            got += 1;
        }
        Ok(got)
    }

    /// Up to `n` frames with one `recvmmsg` into `rx`'s slots `first..`.
    fn recv_mmsg(&self, rx: &mut RxBatch, first: usize, n: usize) -> io::Result<usize> {
        for i in first..first + n {
            let slot = rx.data[i * rx.slot_len..].as_mut_ptr();
            rx.iov[2 * i] = libc::iovec {
                iov_base: rx.vnet[i].as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            };
            rx.iov[2 * i + 1] = libc::iovec {
                // SAFETY: HEADROOM < slot_len, within the slot.
                iov_base: unsafe { slot.add(HEADROOM) }.cast(),
                iov_len: rx.slot_len - HEADROOM,
            };
            // SAFETY: mmsghdr is plain data; zeroed is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            // SAFETY: the iovec pair of message i lies within rx.iov.
            h.msg_hdr.msg_iov = unsafe { rx.iov.as_mut_ptr().add(2 * i) };
            h.msg_hdr.msg_iovlen = 2;
            h.msg_hdr.msg_control = rx.cmsg[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = rx.cmsg[i].len() * 8;
            rx.hdrs[i] = h;
        }
        // SAFETY: every pointer in hdrs[first..first + n] points into rx's
        // buffers, which live and stay put for the duration of the call.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                rx.hdrs.as_mut_ptr().add(first),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let got = got as usize;
        for i in first..first + got {
            let h = &rx.hdrs[i];
            let total = h.msg_len as usize;
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            if truncated || total < VNET_HDR_LEN {
                rx.meta[i] = None;
                rx.truncated += u64::from(truncated);
                continue;
            }
            let len = total - VNET_HDR_LEN;
            let vlan = aux_vlan(&h.msg_hdr);
            let slot = &mut rx.data[i * rx.slot_len..(i + 1) * rx.slot_len];
            let mut vnet = VnetHdr::from_bytes(&rx.vnet[i]);
            let (start, len) = match vlan {
                Some((tpid, tci)) if len >= 12 => {
                    // The kernel took the tag out; put it back where it was.
                    slot.copy_within(HEADROOM..HEADROOM + 12, 0);
                    slot[12..14].copy_from_slice(&tpid.to_be_bytes());
                    slot[14..16].copy_from_slice(&tci.to_be_bytes());
                    vnet = vnet.shifted(4);
                    (0, len + 4)
                }
                _ => (HEADROOM, len),
            };
            rx.meta[i] = Some(Meta::Buf {
                start: start as u32,
                len: len as u32,
                vnet,
            });
        }
        Ok(got)
    }

    /// Sends every frame of `frames` (one `sendmmsg`, more if the kernel
    /// takes fewer at a time). Returns how many were sent; frames the
    /// kernel refuses (e.g. too large for the device) are dropped and
    /// counted in the second value.
    pub fn send_batch(&self, frames: &[TxFrame<'_>]) -> io::Result<(usize, usize)> {
        // A capture that started since the last look must see what is sent
        // (a few µs to read /proc/net/packet, at most every 5 ms).
        if self.xsk_on.get() && self.checked.get().elapsed() > TAP_CHECK {
            self.refresh_tx();
        }
        if !self.xsk_on.get() {
            return self.send_mmsg(frames);
        }
        let max = XSK_MAX_FRAME.min(self.mtu.get() as usize + 18);
        let plain = |f: &TxFrame<'_>| {
            f.vnet.gso_type == 0
                && f.vnet.flags & VNET_F_NEEDS_CSUM == 0
                && f.head.len() + f.tag.map_or(0, |_| 4) + f.tail.len() <= max
        };
        let (mut sent, mut dropped) = (0, 0);
        // In runs, each sent before the next starts, so frames leave in order.
        let mut i = 0;
        while i < frames.len() {
            let p = plain(&frames[i]);
            let n = frames[i..].iter().take_while(|f| plain(f) == p).count();
            let run = &frames[i..i + n];
            i += n;
            if p {
                let r = self.xsk.borrow().as_ref().map(|x| x.send(run));
                match r {
                    Some(Ok(())) => {
                        sent += run.len();
                        continue;
                    }
                    Some(Err((taken, e))) => {
                        // Closing the socket discards what its ring still
                        // holds; those and the rest go by sendmmsg, in
                        // order, after the ones the kernel took.
                        if e.kind() != io::ErrorKind::WouldBlock {
                            *self.xsk.borrow_mut() = None;
                            self.xsk_on.set(false);
                            *self.xsk_why.borrow_mut() = format!("AF_XDP failed: {e}");
                        }
                        let taken = taken.min(run.len());
                        sent += taken;
                        let (s, d) = self.send_mmsg(&run[taken..])?;
                        sent += s;
                        dropped += d;
                        continue;
                    }
                    None => {}
                }
            }
            let (s, d) = self.send_mmsg(run)?;
            sent += s;
            dropped += d;
        }
        Ok((sent, dropped))
    }

    fn send_mmsg(&self, frames: &[TxFrame<'_>]) -> io::Result<(usize, usize)> {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let TxScratch { iov, hdrs, vnet } = &mut *s;
            iov.clear();
            hdrs.clear();
            vnet.clear();
            vnet.extend(frames.iter().map(|f| f.vnet.to_bytes()));
            for (f, v) in frames.iter().zip(vnet.iter()) {
                iov.push(libc::iovec {
                    iov_base: v.as_ptr() as *mut libc::c_void,
                    iov_len: VNET_HDR_LEN,
                });
                iov.push(libc::iovec {
                    iov_base: f.head.as_ptr() as *mut libc::c_void,
                    iov_len: f.head.len(),
                });
                if let Some(t) = &f.tag {
                    iov.push(libc::iovec {
                        iov_base: t.as_ptr() as *mut libc::c_void,
                        iov_len: 4,
                    });
                }
                if !f.tail.is_empty() {
                    iov.push(libc::iovec {
                        iov_base: f.tail.as_ptr() as *mut libc::c_void,
                        iov_len: f.tail.len(),
                    });
                }
            }
            let mut k = 0;
            for f in frames {
                let parts = 2 + usize::from(f.tag.is_some()) + usize::from(!f.tail.is_empty());
                // SAFETY: mmsghdr is plain data; zeroed is a valid value.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: iov[k..k+parts] was pushed above for this frame.
                h.msg_hdr.msg_iov = unsafe { iov.as_mut_ptr().add(k) };
                h.msg_hdr.msg_iovlen = parts;
                hdrs.push(h);
                k += parts;
            }
            let (mut sent, mut dropped) = (0usize, 0usize);
            while sent + dropped < frames.len() {
                let rest = &mut hdrs[sent + dropped..];
                // SAFETY: every iovec points into `frames` (borrowed for the
                // call), `vnet` or a tag inside `frames`; none moves during
                // the call.
                let r = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        rest.as_mut_ptr(),
                        rest.len() as libc::c_uint,
                        0,
                    )
                };
                if r > 0 {
                    sent += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                        // Socket buffer full: wait for the device to drain
                        // it rather than drop (TCP through the switch
                        // backs off far worse on loss than on delay).
                        wait_writable(self.fd.as_fd(), Duration::from_millis(10))?;
                    }
                    Some(libc::EMSGSIZE) | Some(libc::EINVAL) => dropped += 1,
                    _ => return Err(e),
                }
            }
            Ok((sent, dropped))
        })
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn wait_writable(fd: BorrowedFd<'_>, t: Duration) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, t.as_millis() as libc::c_int) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
