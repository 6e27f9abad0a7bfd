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

    /// A stable snake_case name for status output and JSON (docs/status.md),
    /// whatever the variant is called.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Oversize => "oversize",
            DropReason::TruncatedTag => "truncated_tag",
            DropReason::BadBpdu => "bad_bpdu",
            DropReason::PortDown => "port_down",
            DropReason::MirrorPort => "mirror_port",
            DropReason::InvalidSource => "invalid_source",
            DropReason::ReservedGroup => "reserved_group",
            DropReason::TaggedOnAccess => "tagged_on_access",
            DropReason::UntaggedNoNative => "untagged_no_native",
            DropReason::VlanNotAllowed => "vlan_not_allowed",
            DropReason::DoubleTagged => "double_tagged",
            DropReason::StpNotForwarding => "stp_not_forwarding",
            DropReason::SameSegment => "same_segment",
            DropReason::NoEgress => "no_egress",
        }
    }
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

#[cfg(test)]
mod names {
    use super::DropReason;

    /// The names are part of `weft status --json`: changing one breaks
    /// scripts, so they are pinned here.
    #[test]
    fn drop_reason_names_are_pinned() {
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "runt",
                "oversize",
                "truncated_tag",
                "bad_bpdu",
                "port_down",
                "mirror_port",
                "invalid_source",
                "reserved_group",
                "tagged_on_access",
                "untagged_no_native",
                "vlan_not_allowed",
                "double_tagged",
                "stp_not_forwarding",
                "same_segment",
                "no_egress",
            ]
        );
    }
}
