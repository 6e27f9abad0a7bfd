//! The virtio-net offload header that comes with every frame.

/// Length of the virtio-net header in front of every frame.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset`
/// is still to be computed.
pub const VNET_F_NEEDS_CSUM: u8 = 1;

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
