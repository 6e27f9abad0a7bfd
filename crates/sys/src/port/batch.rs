//! The buffers a batch of frames is received into and the frames sent.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ring::RxMap;
use super::{VnetHdr, HEADROOM, MAX_FRAME, TP_STATUS_KERNEL, VNET_HDR_LEN};

/// frame, reused from call to call (and shared by every port of a
/// datapath thread, since ports are read one after the other).
pub struct RxBatch {
    pub(super) slots: usize,
    pub(super) slot_len: usize,
    pub(super) data: Vec<u8>,
    pub(super) vnet: Vec<[u8; VNET_HDR_LEN]>,
    pub(super) cmsg: Vec<[u64; 8]>,
    pub(super) iov: Vec<libc::iovec>,
    pub(super) hdrs: Vec<libc::mmsghdr>,
    pub(super) meta: Vec<Option<Meta>>,
    pub(super) truncated: u64,
    /// Ring slots whose frames are in `meta`, handed back by `release`.
    pub(super) held: Vec<u32>,
    pub(super) held_map: Option<Arc<RxMap>>,
}

/// Where frame `i` of a batch is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Meta {
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
pub(super) struct TxScratch {
    pub(super) iov: Vec<libc::iovec>,
    pub(super) hdrs: Vec<libc::mmsghdr>,
    pub(super) vnet: Vec<[u8; VNET_HDR_LEN]>,
}

thread_local! {
    pub(super) static SCRATCH: RefCell<TxScratch> = RefCell::new(TxScratch::default());
}
