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
//!
//! Seams: `vnet.rs` (the offload header), `ring.rs` (the mapped receive
//! ring), `socket.rs` ([`PacketSocket`]), `batch.rs` ([`RxBatch`],
//! [`TxFrame`]), `filter.rs` (the socket filter, aux data), `poll.rs`
//! ([`Poller`]).

mod batch;
mod filter;
mod poll;
mod ring;
mod socket;
mod vnet;
mod xsk;

pub use batch::{RxBatch, TxFrame};
pub use filter::MAX_SKIP_PAIRS;
pub use poll::{Poller, Ready};
pub use socket::PacketSocket;
pub use vnet::{VnetHdr, VNET_F_NEEDS_CSUM, VNET_HDR_LEN};

use std::io;
use std::os::fd::RawFd;

const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_COPY_THRESH: libc::c_int = 7;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_STATISTICS: libc::c_int = 6;
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
/// The first [`BIG_RINGS`] sockets of a process get rings of 2048 slots
/// (4 MiB) instead: 34 ms of 64-byte frames at 60 kpps where 512 slots
/// last 8 ms, the time a loaded machine may leave the datapath off the
/// CPU (each frame past the ring's end is lost). Bounded, so a switch
/// with thousands of ports still costs 1 MiB a port.
const RING_BLOCKS_BIG: usize = 64;
const BIG_RINGS: usize = 16;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;
/// Bytes kept free in front of each received frame for a VLAN tag.
const HEADROOM: usize = 4;
/// Largest frame a slot holds: a 64 KiB GSO frame, its Ethernet header and
/// a tag.
pub const MAX_FRAME: usize = 65536 + 14 + 4;

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

#[cfg(test)]
mod tests;
