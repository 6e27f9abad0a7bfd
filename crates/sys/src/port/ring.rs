//! The TPACKET_V2 receive ring mapped into the process.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use super::{
    cvt, setsockopt_int, BIG_RINGS, PACKET_COPY_THRESH, PACKET_RX_RING, PACKET_VERSION, RING_BLOCK,
    RING_BLOCKS, RING_BLOCKS_BIG, RING_FRAME, SOL_PACKET, TPACKET_V2,
};

/// Big rings of this process now (see [`BIG_RINGS`]).
static BIG: AtomicUsize = AtomicUsize::new(0);

/// A receive ring's mapping. Shared with the [`RxBatch`] that holds
/// frames in it, so those stay valid even if the socket goes first.
#[derive(Debug)]
pub(super) struct RxMap {
    base: *mut u8,
    len: usize,
    /// Counted in [`BIG`] until unmapped.
    big: bool,
}

impl RxMap {
    pub(super) fn slot(&self, i: usize) -> *mut u8 {
        debug_assert!((i + 1) * RING_FRAME <= self.len);
        // SAFETY: i is below the slot count (asserted above in debug
        // builds; callers pass ring positions), so the offset stays inside
        // the one mapping `base` points into.
        unsafe { self.base.add(i * RING_FRAME) }
    }

    /// The slot's status word, shared with the kernel.
    pub(super) fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the status is the slot's first, 4-aligned u32 and lives
        // as long as the mapping (as long as self).
        unsafe { &*(self.slot(i) as *const AtomicU32) }
    }
}

impl Drop for RxMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in RxRing::new.
        unsafe { libc::munmap(self.base.cast(), self.len) };
        if self.big {
            BIG.fetch_sub(1, Ordering::Relaxed);
        }
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
pub(super) struct RxRing {
    pub(super) map: Arc<RxMap>,
    pub(super) slots: usize,
    pub(super) next: Cell<usize>,
}

impl RxRing {
    /// Sets up and maps a TPACKET_V2 receive ring on `fd` (before bind).
    pub(super) fn new(fd: RawFd) -> io::Result<RxRing> {
        setsockopt_int(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        // Frames too large for a slot are queued whole on the socket and
        // flagged in their slot, instead of cut short.
        setsockopt_int(fd, SOL_PACKET, PACKET_COPY_THRESH, 1)?;
        // A big ring while the process has fewer than BIG_RINGS; the
        // usual one if not, or if the kernel has no room for it. Every
        // claim on BIG is given back unless an RxMap holds it.
        let big = BIG.fetch_add(1, Ordering::Relaxed) < BIG_RINGS
            && set_ring(fd, RING_BLOCKS_BIG).is_ok();
        if !big {
            BIG.fetch_sub(1, Ordering::Relaxed);
            set_ring(fd, RING_BLOCKS)?;
        }
        let len = RING_BLOCK * if big { RING_BLOCKS_BIG } else { RING_BLOCKS };
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
            let e = io::Error::last_os_error();
            if big {
                BIG.fetch_sub(1, Ordering::Relaxed);
            }
            return Err(e);
        }
        Ok(RxRing {
            map: Arc::new(RxMap {
                base: base.cast(),
                len,
                big,
            }),
            slots: len / RING_FRAME,
            next: Cell::new(0),
        })
    }
}

fn set_ring(fd: RawFd, blocks: usize) -> io::Result<()> {
    let req = libc::tpacket_req {
        tp_block_size: RING_BLOCK as u32,
        tp_block_nr: blocks as u32,
        tp_frame_size: RING_FRAME as u32,
        tp_frame_nr: (RING_BLOCK / RING_FRAME * blocks) as u32,
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
    })
    .map(drop)
}
