//! AF_PACKET ports for weft's userspace switch, and the epoll loop that
//! waits on them.
//!
//! One [`PacketSocket`] per switch port, bound to a veth end in the
//! switch's namespace (open it on a thread inside that namespace: a packet
//! socket stays in the namespace it was made in). Frames move in batches.
//!
//! Receiving uses a `PACKET_RX_RING` (TPACKET_V2) mapped into the process:
//! the kernel copies each frame into a ring slot in the softirq that
//! delivers it (on the sender's CPU), and [`PacketSocket::recv_batch`]
//! reads the slots in place, with no system call while frames are
//! waiting. Slots are 2 KiB, so MTU-sized frames and all small ones take
//! that path; a larger frame (a 64 KiB GSO frame) is marked
//! `TP_STATUS_COPY` in its slot and queued whole on the socket
//! (`PACKET_COPY_THRESH`), and is read there with one `recvmsg` in its
//! turn. [`PacketSocket::send_batch`] is one `sendmmsg` whose frames are
//! gathered from the caller's slices (no copy in user space). A TX ring is
//! not used: it would lend the ring's pages to the frame, and the kernel
//! hands the slot back as soon as the frame crosses into the peer's
//! namespace (the skb is orphaned there), while the receiver may still
//! hold the pages.
//!
//! Every socket uses `PACKET_VNET_HDR`: each frame comes with the 10-byte
//! virtio-net header that describes checksum and segmentation offload
//! ([`VnetHdr`]). veth hands TCP over with the checksum still to be done
//! (CHECKSUM_PARTIAL) and as 64 KiB GSO super-frames; without the header,
//! AF_PACKET gives those out with a wrong checksum and the frames are lost
//! at the receiver (the reason Open vSwitch's userspace datapath passes no
//! TCP on default veths). Passing the header through on send keeps both
//! offloads, so the receiving stack finishes the checksum or segments, as
//! it would behind a kernel bridge.
//!
//! The kernel takes the 802.1Q tag off received frames (veth offers
//! VLAN RX offload) and reports it in `PACKET_AUXDATA`; `recv_batch` puts
//! it back in place, in front of the frame, so the switch sees the frame as
//! it was on the wire.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_COPY_THRESH: libc::c_int = 7;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_COPY: u32 = 1 << 1;
/// Ring geometry: 2 KiB slots (an MTU-sized frame with the headers and a
/// tag), 64 KiB blocks, 512 slots: 1 MiB per port.
const RING_FRAME: usize = 2048;
const RING_BLOCK: usize = 64 << 10;
const RING_BLOCKS: usize = 16;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;

/// Length of the virtio-net header in front of every frame.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset`
/// is still to be computed.
pub const VNET_F_NEEDS_CSUM: u8 = 1;
/// Bytes kept free in front of each received frame for a VLAN tag.
const HEADROOM: usize = 4;
/// Largest frame a slot holds: a 64 KiB GSO frame, its Ethernet header and
/// a tag.
pub const MAX_FRAME: usize = 65536 + 14 + 4;

/// The virtio-net header (`struct virtio_net_hdr`, native byte order as
/// AF_PACKET uses it on little-endian machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The header for the same frame after `delta` bytes (a VLAN tag) were
    /// inserted (positive) or removed (negative) in front of the L3 header:
    /// offsets into the frame move with it.
    pub fn shifted(self, delta: i32) -> VnetHdr {
        let mv = |v: u16| (i32::from(v) + delta).clamp(0, 65535) as u16;
        VnetHdr {
            csum_start: if self.flags & VNET_F_NEEDS_CSUM != 0 {
                mv(self.csum_start)
            } else {
                self.csum_start
            },
            hdr_len: if self.hdr_len != 0 {
                mv(self.hdr_len)
            } else {
                0
            },
            ..self
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// An AF_PACKET socket bound to one interface of the calling thread's
/// network namespace.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
    ring: Option<RxRing>,
}

/// A receive ring's mapping. Shared with the [`RxBatch`] that holds
/// frames in it, so those stay valid even if the socket goes first.
#[derive(Debug)]
struct RxMap {
    base: *mut u8,
    len: usize,
}

impl RxMap {
    fn slot(&self, i: usize) -> *mut u8 {
        debug_assert!((i + 1) * RING_FRAME <= self.len);
        // SAFETY: i is below the slot count (asserted above in debug
        // builds; callers pass ring positions), so the offset stays inside
        // the one mapping `base` points into.
        unsafe { self.base.add(i * RING_FRAME) }
    }

    /// The slot's status word, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the status is the slot's first, 4-aligned u32 and lives
        // as long as the mapping (as long as self).
        unsafe { &*(self.slot(i) as *const AtomicU32) }
    }
}

impl Drop for RxMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in RxRing::new.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

// SAFETY: the mapping is plain shared memory; slots are written only by
// the kernel (status KERNEL) or by the holder of the frame (status USER),
// and status words are atomics.
unsafe impl Send for RxMap {}
// SAFETY: as above.
unsafe impl Sync for RxMap {}

/// The mapped receive ring and the next slot to look at.
#[derive(Debug)]
struct RxRing {
    map: Arc<RxMap>,
    slots: usize,
    next: Cell<usize>,
}

impl RxRing {
    /// Sets up and maps a TPACKET_V2 receive ring on `fd` (before bind).
    fn new(fd: RawFd) -> io::Result<RxRing> {
        setsockopt_int(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        // Frames too large for a slot are queued whole on the socket and
        // flagged in their slot, instead of cut short.
        setsockopt_int(fd, SOL_PACKET, PACKET_COPY_THRESH, 1)?;
        let req = libc::tpacket_req {
            tp_block_size: RING_BLOCK as u32,
            tp_block_nr: RING_BLOCKS as u32,
            tp_frame_size: RING_FRAME as u32,
            tp_frame_nr: (RING_BLOCK / RING_FRAME * RING_BLOCKS) as u32,
        };
        // SAFETY: req is a live tpacket_req of the size passed.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                SOL_PACKET,
                PACKET_RX_RING,
                (&req as *const libc::tpacket_req).cast(),
                std::mem::size_of::<libc::tpacket_req>() as libc::socklen_t,
            )
        })?;
        let len = RING_BLOCK * RING_BLOCKS;
        // SAFETY: maps the ring the kernel just made for fd; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RxRing {
            map: Arc::new(RxMap {
                base: base.cast(),
                len,
            }),
            slots: len / RING_FRAME,
            next: Cell::new(0),
        })
    }
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
        Ok(PacketSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
            ring,
        })
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
        let want = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        Ok(flags & want == want)
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

/// Most MAC pairs one port's socket filter can skip (the filter's jumps
/// reach 255 instructions).
pub const MAX_SKIP_PAIRS: usize = 40;

/// Classic BPF: accept everything except untagged IPv4/IPv6 frames whose
/// (source, destination) is one of `pairs`.
fn skip_filter(pairs: &[([u8; 6], [u8; 6])]) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT: 1 if the device took a tag off.
    const VLAN_PRESENT: u32 = (-0x1000i32 + 48) as u32;
    let i = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let w = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let accept = 5 + 6 * pairs.len();
    let drop = accept + 1;
    let mut p = vec![
        i(LD_W_ABS, 0, 0, VLAN_PRESENT),
        i(JEQ_K, 0, (accept - 2) as u8, 0),
        i(LD_H_ABS, 0, 0, 12),
        i(JEQ_K, 1, 0, 0x0800),
        i(JEQ_K, 0, (accept - 5) as u8, 0x86dd),
    ];
    for (src, dst) in pairs {
        let mut a = [0u8; 12];
        a[..6].copy_from_slice(dst);
        a[6..].copy_from_slice(src);
        let b = p.len();
        // Three words: bytes 0-3, 4-7, 8-11; a mismatch skips to the next
        // pair (b + 6), the last match drops.
        p.push(i(LD_W_ABS, 0, 0, 0));
        p.push(i(JEQ_K, 0, 4, w(&a[0..])));
        p.push(i(LD_W_ABS, 0, 0, 4));
        p.push(i(JEQ_K, 0, 2, w(&a[4..])));
        p.push(i(LD_W_ABS, 0, 0, 8));
        p.push(i(JEQ_K, (drop - (b + 6)) as u8, 0, w(&a[8..])));
    }
    p.push(i(RET_K, 0, 0, u32::MAX));
    p.push(i(RET_K, 0, 0, 0));
    p
}

/// The VLAN tag the kernel took off a received frame, from its aux data.
fn aux_vlan(h: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: walking the control buffer the kernel filled, with the libc
    // CMSG macros, bounded by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                let d = libc::CMSG_DATA(c) as *const Aux;
                let aux = std::ptr::read_unaligned(d);
                if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    return Some((tpid, aux.tp_vlan_tci));
                }
                return None;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// `struct tpacket_auxdata`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Aux {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// Buffers for one `recvmmsg`: a slot per frame with room for a 64 KiB GSO
/// frame, reused from call to call (and shared by every port of a
/// datapath thread, since ports are read one after the other).
pub struct RxBatch {
    slots: usize,
    slot_len: usize,
    data: Vec<u8>,
    vnet: Vec<[u8; VNET_HDR_LEN]>,
    cmsg: Vec<[u64; 8]>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    meta: Vec<Option<Meta>>,
    truncated: u64,
    /// Ring slots whose frames are in `meta`, handed back by `release`.
    held: Vec<u32>,
    held_map: Option<Arc<RxMap>>,
}

/// Where frame `i` of a batch is.
#[derive(Debug, Clone, Copy)]
enum Meta {
    /// In the batch's own buffer (read with `recvmmsg`).
    Buf { start: u32, len: u32, vnet: VnetHdr },
    /// In place in a ring slot (kept alive by `held_map`).
    Ring {
        ptr: *const u8,
        len: u32,
        vnet: VnetHdr,
    },
}

impl RxBatch {
    pub fn new(slots: usize) -> RxBatch {
        let slots = slots.max(1);
        let slot_len = (MAX_FRAME + HEADROOM).next_multiple_of(64);
        RxBatch {
            slots,
            slot_len,
            data: vec![0; slots * slot_len],
            vnet: vec![[0; VNET_HDR_LEN]; slots],
            cmsg: vec![[0; 8]; slots],
            // SAFETY: iovec is plain data; all-zero (null base, length 0)
            // is a valid value.
            iov: vec![unsafe { std::mem::zeroed() }; 2 * slots],
            // SAFETY: mmsghdr is plain data; all-zero is a valid value.
            hdrs: vec![unsafe { std::mem::zeroed() }; slots],
            meta: vec![None; slots],
            truncated: 0,
            held: Vec::with_capacity(slots),
            held_map: None,
        }
    }

    /// Hands the ring slots of the last batch back to the kernel; its
    /// frames are gone after this.
    pub fn release(&mut self) {
        if let Some(map) = self.held_map.take() {
            for &i in &self.held {
                map.status(i as usize)
                    .store(TP_STATUS_KERNEL, Ordering::Release);
            }
        }
        self.held.clear();
        for m in &mut self.meta {
            if matches!(m, Some(Meta::Ring { .. })) {
                *m = None;
            }
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots
    }

    /// Frame `i` of the last batch with its offload header; `None` for a
    /// frame that was cut short (larger than a slot).
    pub fn frame(&self, i: usize) -> Option<(VnetHdr, &[u8])> {
        match (*self.meta.get(i)?)? {
            Meta::Buf { start, len, vnet } => {
                let base = i * self.slot_len + start as usize;
                Some((vnet, &self.data[base..base + len as usize]))
            }
            // SAFETY: the slot is held (status USER, mapping kept alive by
            // held_map) until release(), which also forgets this entry.
            Meta::Ring { ptr, len, vnet } => Some((vnet, unsafe {
                std::slice::from_raw_parts(ptr, len as usize)
            })),
        }
    }

    /// Frames dropped because they did not fit a slot.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

// The raw pointers in RxBatch only ever point into its own buffers, which
// move with it, or into a ring mapping it holds an Arc of; sending the
// batch to another thread is sound.
// SAFETY: see above; no pointer escapes a call.
unsafe impl Send for RxBatch {}

/// One frame to send: the offload header, then `head`, `tag`, `tail`
/// gathered by the kernel (a frame with a tag pushed or popped is never
/// copied).
#[derive(Debug, Clone, Copy)]
pub struct TxFrame<'a> {
    pub vnet: VnetHdr,
    pub head: &'a [u8],
    pub tag: Option<[u8; 4]>,
    pub tail: &'a [u8],
}

#[derive(Default)]
struct TxScratch {
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    vnet: Vec<[u8; VNET_HDR_LEN]>,
}

thread_local! {
    static SCRATCH: RefCell<TxScratch> = RefCell::new(TxScratch::default());
}

/// An epoll set: tokens in, ready tokens out.
#[derive(Debug)]
pub struct Poller {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
    /// epoll_pwait2 (Linux 5.11) takes its timeout in nanoseconds, so a
    /// delayed frame leaves on time rather than on the next millisecond;
    /// cleared when the kernel does not have it.
    pwait2: bool,
}

/// A ready file descriptor: its token, and whether it reported an error
/// or hang-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub token: u64,
    pub error: bool,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain epoll_create1 call.
        let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller {
            // SAFETY: raw is a fresh fd we own.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            events: Vec::with_capacity(64),
            pwait2: true,
        })
    }

    /// Watch `fd` for input under `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event for the call.
        cvt(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })
        .map(drop)
    }

    pub fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer.
        cvt(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        })
        .map(drop)
    }

    /// Waits up to `timeout` (forever if `None`) and fills `out` with what
    /// is ready.
    pub fn wait(&mut self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        out.clear();
        self.events.clear();
        let cap = self.events.capacity() as libc::c_int;
        let n = loop {
            let n = match timeout {
                Some(t) if self.pwait2 => {
                    let ts = libc::timespec {
                        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
                        tv_nsec: t.subsec_nanos() as libc::c_long,
                    };
                    // SAFETY: the kernel writes at most `cap` events into
                    // the spare capacity; ts is valid; no signal mask.
                    unsafe {
                        libc::epoll_pwait2(
                            self.fd.as_raw_fd(),
                            self.events.as_mut_ptr(),
                            cap,
                            &ts,
                            std::ptr::null(),
                        )
                    }
                }
                _ => {
                    let ms = match timeout {
                        None => -1,
                        // Round up, so a deadline 0.3 ms away does not spin.
                        Some(t) => {
                            t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
                        }
                    };
                    // SAFETY: as above.
                    unsafe {
                        libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, ms)
                    }
                }
            };
            if n < 0
                && self.pwait2
                && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
            {
                self.pwait2 = false;
                continue;
            }
            break n;
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: the kernel initialised n events.
        unsafe { self.events.set_len(n as usize) };
        out.extend(self.events.iter().map(|e| Ready {
            token: e.u64,
            error: e.events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
