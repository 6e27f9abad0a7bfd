//! IEEE 802.1Q tags. The tag sits where the EtherType was: TPID (the
//! "EtherType" 0x8100, or 0x88a8 for an 802.1ad outer tag), then TCI, then
//! the real EtherType. `VlanHeader` views the 4 bytes after the TPID.

use crate::{Error, Result};

mod field {
    use core::ops::Range;
    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// Bytes a tag adds to a frame (TPID + TCI).
pub const TAG_LEN: usize = 4;
/// Highest usable VLAN id; 0 means "priority tag only", 4095 is reserved.
pub const VID_MAX: u16 = 4094;

/// Tag Control Information: priority (PCP), drop eligible (DEI), VLAN id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tci {
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
}

impl Tci {
    pub const fn new(pcp: u8, vid: u16) -> Self {
        Tci {
            pcp,
            dei: false,
            vid,
        }
    }

    pub const fn from_u16(v: u16) -> Self {
        Tci {
            pcp: (v >> 13) as u8,
            dei: v & 0x1000 != 0,
            vid: v & 0x0fff,
        }
    }

    pub const fn to_u16(self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }

    /// The 4 bytes inserted after the source address: TPID then TCI.
    pub const fn tag_bytes(self, tpid: u16) -> [u8; 4] {
        let t = tpid.to_be_bytes();
        let c = self.to_u16().to_be_bytes();
        [t[0], t[1], c[0], c[1]]
    }
}

/// Zero-copy view of the bytes following a TPID.
#[derive(Debug, Clone)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < field::PAYLOAD {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn tci(&self) -> Tci {
        let b = &self.buffer.as_ref()[field::TCI];
        Tci::from_u16(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    pub fn set_tci(&mut self, tci: Tci) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_u16().to_be_bytes());
    }

    pub fn set_ethertype(&mut self, v: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&v.to_be_bytes());
    }
}

/// High-level 802.1Q header (after the TPID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    pub tci: Tci,
    pub ethertype: u16,
}

impl VlanRepr {
    pub fn parse<T: AsRef<[u8]>>(h: &VlanHeader<T>) -> Result<Self> {
        h.check_len()?;
        Ok(VlanRepr {
            tci: h.tci(),
            ethertype: h.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut VlanHeader<T>) {
        h.set_tci(self.tci);
        h.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tci_bits() {
        let t = Tci::from_u16(0xb00a);
        assert_eq!((t.pcp, t.dei, t.vid), (5, true, 10));
        assert_eq!(t.to_u16(), 0xb00a);
        assert_eq!(Tci::new(7, 4094).to_u16(), 0xeffe);
        assert_eq!(Tci::new(3, 100).tag_bytes(0x8100), [0x81, 0x00, 0x60, 0x64]);
    }

    #[test]
    fn view_and_repr() {
        let bytes = [0x20, 0x64, 0x08, 0x06, 0xde, 0xad];
        let h = VlanHeader::new_checked(&bytes[..]).unwrap();
        let r = VlanRepr::parse(&h).unwrap();
        assert_eq!(r.tci, Tci::new(1, 100));
        assert_eq!(r.ethertype, 0x0806);
        assert_eq!(h.payload(), &[0xde, 0xad]);
        let mut out = [0u8; 4];
        r.emit(&mut VlanHeader::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes[..4]);
        assert_eq!(
            VlanHeader::new_checked(&bytes[..3]).unwrap_err(),
            Error::Truncated
        );
    }
}
