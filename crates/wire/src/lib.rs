//! L2 wire formats for weft's userspace switch, in the style of smoltcp:
//! zero-copy views (`EthernetFrame`, `VlanHeader`, `BpduPacket`) whose
//! `new_checked` validates the length once so the accessors cannot panic,
//! and `Repr` types with `parse` / `emit` / `buffer_len`.
//!
//! Nothing here performs I/O, no input makes it panic, and nothing but
//! [`testing`] (frames for other crates' tests and benchmarks) allocates.
#![forbid(unsafe_code)]

pub mod bpdu;
pub mod ethernet;
pub mod mac;
pub mod testing;
pub mod vlan;

pub use bpdu::{
    BpduFlags, BpduPacket, BpduRepr, BpduType, BridgeId, ConfigBpdu, PortRoleFlag, StpTime,
};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, L2Header};
pub use mac::MacAddr;
pub use vlan::{Tci, VlanHeader, VlanRepr};

/// Why a buffer could not be read as the requested format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the format requires (runts, cut tags).
    Truncated,
    /// The bytes are long enough but do not follow the format.
    Malformed,
    /// A well-formed header announces something this crate does not handle.
    Unrecognized,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Unrecognized => "unrecognized",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;
