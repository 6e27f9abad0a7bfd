//! Ethernet II / 802.3 header, and `L2Header`, the one-pass summary of a
//! frame (addresses plus up to two VLAN tags) that the switch works from.

use crate::mac::MacAddr;
use crate::vlan::Tci;
use crate::{Error, Result};

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet header (no tags, no FCS).
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Well-known EtherType values.
#[derive(Debug)]
pub struct EtherType;

impl EtherType {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (outer tag of a QinQ frame).
    pub const QINQ: u16 = 0x88a8;

    /// Values up to 1500 are an 802.3 length, not a type (BPDUs use this).
    pub fn is_length(v: u16) -> bool {
        v <= 1500
    }

    pub fn is_tag(v: u16) -> bool {
        v == Self::VLAN || v == Self::QINQ
    }
}

/// Zero-copy view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps without checking; accessors may panic on short buffers. Use
    /// [`new_checked`](Self::new_checked) for untrusted input.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(
            self.buffer.as_ref()[field::DST]
                .try_into()
                .unwrap_or([0; 6]),
        )
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr(
            self.buffer.as_ref()[field::SRC]
                .try_into()
                .unwrap_or([0; 6]),
        )
    }

    /// EtherType, or the 802.3 length when `<= 1500`.
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    pub fn set_ethertype(&mut self, v: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&v.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// High-level Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src: MacAddr,
    pub dst: MacAddr,
    pub ethertype: u16,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src: frame.src_addr(),
            dst: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the buffer must be at least `buffer_len()` long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

/// Everything the switch needs from a frame's L2 header, read in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Header {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// First tag, if any: its TPID (0x8100 or 0x88a8) and TCI.
    pub outer: Option<(u16, Tci)>,
    /// Another tag follows the first one (a double-tagged frame).
    pub inner_tagged: bool,
    /// EtherType (or 802.3 length) after the tags.
    pub ethertype: u16,
    /// Offset of the payload after the header and all parsed tags.
    pub payload_offset: usize,
}

impl L2Header {
    /// Parses the Ethernet header and up to two tags. A frame whose tag is
    /// cut short is `Truncated`, so a runt can never be mistaken for an
    /// untagged frame.
    pub fn parse(frame: &[u8]) -> Result<Self> {
        let eth = EthernetFrame::new_checked(frame)?;
        let mut hdr = L2Header {
            dst: eth.dst_addr(),
            src: eth.src_addr(),
            outer: None,
            inner_tagged: false,
            ethertype: eth.ethertype(),
            payload_offset: HEADER_LEN,
        };
        if EtherType::is_tag(hdr.ethertype) {
            let tpid = hdr.ethertype;
            let (tci, next) = read_tag(frame, HEADER_LEN)?;
            hdr.outer = Some((tpid, tci));
            hdr.ethertype = next;
            hdr.payload_offset = HEADER_LEN + 4;
            if EtherType::is_tag(next) {
                let (_, inner_next) = read_tag(frame, HEADER_LEN + 4)?;
                hdr.inner_tagged = true;
                hdr.ethertype = inner_next;
                hdr.payload_offset = HEADER_LEN + 8;
            }
        }
        Ok(hdr)
    }
}

fn read_tag(frame: &[u8], at: usize) -> Result<(Tci, u16)> {
    let b = frame.get(at..at + 4).ok_or(Error::Truncated)?;
    Ok((
        Tci::from_u16(u16::from_be_bytes([b[0], b[1]])),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request from 52:54:00:12:34:56 as captured on the wire (no FCS).
    const ARP_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0, 0, 1, // sha, spa
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2, // tha, tpa
    ];

    #[test]
    fn parse_arp() {
        let f = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.src_addr().to_string(), "52:54:00:12:34:56");
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.payload().len(), 28);
        let hdr = L2Header::parse(&ARP_FRAME).unwrap();
        assert_eq!(hdr.outer, None);
        assert_eq!(hdr.payload_offset, 14);
    }

    #[test]
    fn emit_round_trip() {
        let repr = EthernetRepr {
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            dst: MacAddr::BROADCAST,
            ethertype: EtherType::IPV6,
        };
        let mut buf = [0u8; 14];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        assert_eq!(
            buf,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]
        );
        let back = EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(back, repr);
    }

    #[test]
    fn runt_and_truncated_tags() {
        assert_eq!(L2Header::parse(&ARP_FRAME[..13]), Err(Error::Truncated));
        assert!(EthernetFrame::new_checked(&[0u8; 0][..]).is_err());
        // Header says 802.1Q but only two tag bytes follow.
        let mut f = ARP_FRAME[..16].to_vec();
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(L2Header::parse(&f), Err(Error::Truncated));
        // Outer tag complete, inner tag cut.
        let f = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x81,
            0x00, 0x00,
        ];
        assert_eq!(L2Header::parse(&f), Err(Error::Truncated));
    }

    #[test]
    fn tagged_and_double_tagged() {
        // 802.1Q, PCP 5, VID 10, IPv4.
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x81, 0x00, 0xa0, 0x0a, 0x08, 0x00, 0x45]);
        let h = L2Header::parse(&f).unwrap();
        let (tpid, tci) = h.outer.unwrap();
        assert_eq!((tpid, tci.pcp, tci.dei, tci.vid), (0x8100, 5, false, 10));
        assert!(!h.inner_tagged);
        assert_eq!((h.ethertype, h.payload_offset), (0x0800, 18));

        // QinQ: 802.1ad S-tag 100 over 802.1Q C-tag 20.
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[
            2, 0, 0, 0, 0, 1, 0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x14,
        ]);
        f.extend_from_slice(&[0x86, 0xdd, 0x60]);
        let h = L2Header::parse(&f).unwrap();
        assert_eq!(h.outer.unwrap().0, 0x88a8);
        assert_eq!(h.outer.unwrap().1.vid, 100);
        assert!(h.inner_tagged);
        assert_eq!((h.ethertype, h.payload_offset), (0x86dd, 22));
    }
}
