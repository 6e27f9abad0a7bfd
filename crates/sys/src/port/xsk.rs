//! The AF_XDP socket a port sends plain frames through.
//!
//! Why: on a veth, the send path is most of a userspace switch's cost per
//! frame, since the veth delivers in the sender's context (the receiving
//! host's stack runs inside the send). Measured with `xsktx` against
//! `swgen send` into the same veth (docs/performance.md, "Switch"):
//! AF_PACKET's `sendmmsg` 3.1-3.8 µs a 64-byte frame, AF_XDP's TX ring
//! with one `sendto` kick per batch 1.5-2.8 µs. veth has no zero-copy
//! AF_XDP, so the socket runs in copy mode (the kernel copies each frame
//! out of the UMEM into an skb), and sending needs no XDP program at all:
//! receiving stays on the AF_PACKET ring.
//!
//! Only frames that need no offload go this way (no GSO, no checksum left
//! to do: AF_XDP has no virtio-net header), and only while nothing else
//! captures on the port: frames sent through AF_XDP skip the kernel's
//! packet taps, so `tcpdump` or `weft capture` on the port would miss
//! them. Everything else keeps the AF_PACKET path.
//!
//! Hand-written ring code: the AF_XDP crates on crates.io wrap libxdp and
//! libbpf (C libraries to build and link) for far more than the ~100
//! lines a send-only socket needs.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{cvt, TxFrame};

/// UMEM chunks (one frame each) and TX/completion ring size: 128 KiB of
/// UMEM per port (pinned by the kernel), room for 64 frames in flight; a
/// frame's chunk is free again as soon as the veth hands its copy on (the
/// datapath sends at most a batch of 32 per port at a time).
const SLOTS: u32 = 64;
const CHUNK: u32 = 2048;
/// Largest frame sent this way.
pub(super) const XSK_MAX_FRAME: usize = CHUNK as usize;

struct Map {
    base: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: libc::c_int, len: usize, off: u64) -> io::Result<Map> {
        let (flags, fd) = if fd < 0 {
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
        } else {
            (libc::MAP_SHARED, fd)
        };
        // SAFETY: a new mapping (anonymous, or a ring the kernel made for
        // fd), checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_POPULATE,
                fd,
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Map {
            base: p.cast(),
            len,
        })
    }

    /// The u32 at byte `off` (a ring's producer or consumer).
    fn word(&self, off: u64) -> &AtomicU32 {
        assert!(off as usize + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (asserted); lives as long as self.
        unsafe { &*(self.base.add(off as usize) as *const AtomicU32) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in Map::new.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn setopt<T>(fd: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v is a live T of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A send-only AF_XDP socket on queue 0 of one interface.
pub(super) struct XskTx {
    // Field order: the rings and the UMEM are unmapped before the socket
    // closes.
    tx: Map,
    cq: Map,
    umem: Map,
    fd: OwnedFd,
    off: libc::xdp_mmap_offsets,
    /// Descriptors produced so far (the kernel's copy is `tx`'s producer).
    prod: Cell<u32>,
}

impl std::fmt::Debug for XskTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskTx")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl XskTx {
    /// Opens the socket on `ifindex` of the calling thread's namespace.
    pub(super) fn open(ifindex: u32) -> io::Result<XskTx> {
        // SAFETY: plain socket(2).
        let raw =
            cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Map::new(-1, (SLOTS * CHUNK) as usize, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.base as u64,
            len: umem.len as u64,
            chunk_size: CHUNK,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setopt(raw, libc::XDP_UMEM_REG, &reg)?;
        // The kernel wants a fill ring with every UMEM, even to only send.
        setopt(raw, libc::XDP_UMEM_FILL_RING, &SLOTS)?;
        setopt(raw, libc::XDP_UMEM_COMPLETION_RING, &SLOTS)?;
        setopt(raw, libc::XDP_TX_RING, &SLOTS)?;
        // Sent frames are skbs charged to the socket until the veth hands
        // them on; a batch must fit.
        let _ = super::setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
        // SAFETY: plain data; zeroed is a valid value.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: the kernel writes at most len bytes into off.
        cvt(unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        })?;
        let desc = std::mem::size_of::<libc::xdp_desc>() as u64;
        let tx = Map::new(
            raw,
            (off.tx.desc + u64::from(SLOTS) * desc) as usize,
            libc::XDP_PGOFF_TX_RING as u64,
        )?;
        let cq = Map::new(
            raw,
            (off.cr.desc + u64::from(SLOTS) * 8) as usize,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )?;
        // SAFETY: plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
        sa.sxdp_family = libc::AF_XDP as u16;
        // veth has no zero-copy mode.
        sa.sxdp_flags = libc::XDP_COPY;
        sa.sxdp_ifindex = ifindex;
        sa.sxdp_queue_id = 0;
        // SAFETY: a valid sockaddr_xdp of the size passed.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        })?;
        Ok(XskTx {
            tx,
            cq,
            umem,
            fd,
            off,
            prod: Cell::new(0),
        })
    }

    /// Takes the completions: the chunks of frames the kernel has copied
    /// are free again. Returns how many frames are still in flight.
    fn reclaim(&self) -> u32 {
        let c = self.cq.word(self.off.cr.producer).load(Ordering::Acquire);
        self.cq
            .word(self.off.cr.consumer)
            .store(c, Ordering::Release);
        self.prod.get().wrapping_sub(c)
    }

    /// Sends `frames` (each at most [`XSK_MAX_FRAME`] bytes, no offload)
    /// in order, and returns once the kernel has taken all of them. On
    /// an error, send `frames[taken..]` another way; with
    /// [`io::ErrorKind::WouldBlock`] (every chunk still in flight too
    /// long) the socket stays usable, any other error means it is not
    /// (the device went down or away, or the kernel stopped taking
    /// frames): drop it. The kernel took the first `taken`
    /// (the ring's consumer), and takes frames from the ring only inside
    /// this thread's `sendto`, so none of the rest leaves once the socket
    /// is closed. When completions stall, `taken` is exact; when the
    /// kernel stops mid-ring, a few frames it took may not show in the
    /// consumer yet (it publishes it lazily) and leave twice.
    pub(super) fn send(&self, frames: &[TxFrame<'_>]) -> Result<(), (usize, io::Error)> {
        let start = self.prod.get();
        self.send_all(frames).map_err(|e| {
            let cons = self.tx.word(self.off.tx.consumer).load(Ordering::Acquire);
            (cons.wrapping_sub(start) as usize, e)
        })
    }

    fn send_all(&self, frames: &[TxFrame<'_>]) -> io::Result<()> {
        let (mut i, mut waits) = (0, 0);
        while i < frames.len() {
            let free = SLOTS - self.reclaim();
            if free == 0 {
                // Every chunk still in the kernel: a chunk is free when
                // the receiving side's softirq has taken its copy, which
                // on a loaded machine may run late (in ksoftirqd). Wait a
                // bounded time, then the caller sends the rest with
                // AF_PACKET and keeps this socket (the frames in flight
                // have left: the ring is empty).
                waits += 1;
                if waits > 100 {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "AF_XDP completions late",
                    ));
                }
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            waits = 0;
            let n = (free as usize).min(frames.len() - i);
            let descs = self.tx.base.wrapping_add(self.off.tx.desc as usize) as *mut libc::xdp_desc;
            for f in &frames[i..i + n] {
                let p = self.prod.get();
                let slot = p % SLOTS;
                let mut at = (slot * CHUNK) as usize;
                let base = at;
                for part in [f.head, f.tag.as_ref().map_or(&[][..], |t| &t[..]), f.tail] {
                    assert!(at + part.len() <= base + CHUNK as usize);
                    // SAFETY: inside chunk `slot` of the UMEM (asserted),
                    // which the kernel is done with (reclaimed above).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            part.as_ptr(),
                            self.umem.base.add(at),
                            part.len(),
                        )
                    };
                    at += part.len();
                }
                // SAFETY: descriptor `slot` of the TX ring is ours until
                // the producer moves past it.
                unsafe {
                    *descs.add(slot as usize) = libc::xdp_desc {
                        addr: u64::from(slot * CHUNK),
                        len: (at - base) as u32,
                        options: 0,
                    }
                };
                self.prod.set(p.wrapping_add(1));
            }
            i += n;
            self.tx
                .word(self.off.tx.producer)
                .store(self.prod.get(), Ordering::Release);
            self.kick()?;
        }
        Ok(())
    }

    /// Lets the kernel send what the TX ring holds, until it has taken
    /// every descriptor (it takes a budget of them per call).
    fn kick(&self) -> io::Result<()> {
        let (mut stuck, mut calls) = (0, 0);
        loop {
            let cons = self.tx.word(self.off.tx.consumer).load(Ordering::Acquire);
            if cons == self.prod.get() {
                return Ok(());
            }
            // SAFETY: a kick with no data.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r >= 0 {
                // Each call takes up to the kernel's budget; a kernel that
                // kept saying yes without taking any would spin here.
                calls += 1;
                if calls > 10_000 {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "AF_XDP send ring not drained",
                    ));
                }
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                    // EAGAIN after the budget, or the socket's send buffer
                    // full until the device hands skbs on.
                    let now = self.tx.word(self.off.tx.consumer).load(Ordering::Acquire);
                    if now == cons {
                        stuck += 1;
                        if stuck > 100 {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "AF_XDP send ring not drained",
                            ));
                        }
                        std::thread::sleep(Duration::from_micros(100));
                    } else {
                        stuck = 0;
                    }
                }
                _ => return Err(e),
            }
        }
    }
}

// SAFETY: the mappings are plain memory owned by this value; the rings'
// shared words are atomics; the value is used by one thread at a time.
unsafe impl Send for XskTx {}
