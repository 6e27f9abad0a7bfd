//! Counters (`ip -s link`, `ovs-ofctl dump-ports`, `bridge -s vlan`).

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than MTU plus header and tags.
    Oversize,
    /// A VLAN tag cut short.
    TruncatedTag,
    /// Sent to the STP group address but not a valid BPDU.
    BadBpdu,
    /// Received on a port that is administratively or physically down.
    PortDown,
    /// Received on the mirror output port.
    MirrorPort,
    /// Multicast source address.
    InvalidSource,
    /// Other IEEE reserved group (01:80:c2:00:00:0x): never bridged.
    ReservedGroup,
    /// Tagged frame on an access port.
    TaggedOnAccess,
    /// Untagged frame on a trunk without a native VLAN.
    UntaggedNoNative,
    /// VLAN not allowed on the ingress port.
    VlanNotAllowed,
    /// Two tags, or an 802.1ad outer tag: would let a host hop VLANs.
    DoubleTagged,
    /// Ingress port is blocking/listening/discarding (or only learning).
    StpNotForwarding,
    /// Destination is on the ingress port itself.
    SameSegment,
    /// No port to send it to.
    NoEgress,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
        DropReason::Runt,
        DropReason::Oversize,
        DropReason::TruncatedTag,
        DropReason::BadBpdu,
        DropReason::PortDown,
        DropReason::MirrorPort,
        DropReason::InvalidSource,
        DropReason::ReservedGroup,
        DropReason::TaggedOnAccess,
        DropReason::UntaggedNoNative,
        DropReason::VlanNotAllowed,
        DropReason::DoubleTagged,
        DropReason::StpNotForwarding,
        DropReason::SameSegment,
        DropReason::NoEgress,
    ];
    pub const COUNT: usize = Self::ALL.len();
}

/// Drop counts indexed by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drops([u64; DropReason::COUNT]);

impl Drops {
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(crate) fn bump(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_bpdus: u64,
    pub tx_bpdus: u64,
    pub drops: Drops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanCounters {
    /// Frames accepted into the VLAN.
    pub frames: u64,
    pub bytes: u64,
    /// Frames flooded (broadcast, multicast, unknown unicast).
    pub flooded: u64,
    /// Drops after the frame was classified into this VLAN.
    pub drops: Drops,
}

/// Forwarding database counters (`ovs-appctl fdb/stats-show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdbCounters {
    pub learned: u64,
    /// A known source showed up on another port.
    pub moves: u64,
    /// A new source was not learned because the table was full; its frames
    /// are still forwarded, and frames to it are flooded.
    pub table_full: u64,
    pub aged: u64,
    pub flushed: u64,
}
