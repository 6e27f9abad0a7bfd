//! A pcapng writer: a Section Header Block, one Interface Description
//! Block per capture point (named `node:iface`, nanosecond timestamps), and
//! an Enhanced Packet Block per packet. Little-endian, as written by
//! Wireshark on x86; readers handle either order.

use std::io::{self, Write};

/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// `LINKTYPE_RAW`: bare IPv4 or IPv6 packets (a TUN device).
pub const LINKTYPE_RAW: u16 = 101;

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn option(out: &mut Vec<u8>, code: u16, val: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(val.len() as u16).to_le_bytes());
    out.extend_from_slice(val);
    out.resize(out.len() + pad4(val.len()) - val.len(), 0);
}

fn block(ty: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len()) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// The section header, with `shb_userappl` naming weft.
pub fn section_header() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    option(
        &mut body,
        4,
        format!("weft {}", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    option(&mut body, 0, &[]);
    block(0x0A0D_0D0A, &body)
}

/// An interface description: `name` goes in `if_name`; timestamps are in
/// nanoseconds (`if_tsresol` = 9).
pub fn interface(link_type: u16, snaplen: u32, name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&link_type.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut body, 2, name.as_bytes());
    option(&mut body, 9, &[9]);
    option(&mut body, 0, &[]);
    block(1, &body)
}

/// One packet on interface `id` (the order of [`interface`] blocks), at
/// `ts_ns` nanoseconds since the epoch; `orig_len` is its length on the
/// wire when `data` was cut short.
pub fn packet(id: u32, ts_ns: u64, data: &[u8], orig_len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(20 + pad4(data.len()));
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    body.resize(20 + pad4(data.len()), 0);
    block(6, &body)
}

/// Writes a pcapng stream; with `flush_each`, every block is flushed at
/// once (a pipe into `wireshark -k -i -` shows packets as they come).
pub struct Writer<W: Write> {
    out: W,
    flush_each: bool,
    pub packets: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the section header and the interface blocks:
    /// `(link type, snaplen, name)` each.
    pub fn new(mut out: W, ifaces: &[(u16, u32, String)], flush_each: bool) -> io::Result<Self> {
        out.write_all(&section_header())?;
        for (lt, snap, name) in ifaces {
            out.write_all(&interface(*lt, *snap, name))?;
        }
        out.flush()?;
        Ok(Writer {
            out,
            flush_each,
            packets: 0,
        })
    }

    pub fn packet(&mut self, id: u32, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        self.out.write_all(&packet(id, ts_ns, data, orig_len))?;
        self.packets += 1;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_framed_and_padded() {
        let shb = section_header();
        assert_eq!(&shb[..4], &[0x0A, 0x0D, 0x0D, 0x0A]);
        assert_eq!(shb.len() % 4, 0);
        assert_eq!(&shb[4..8], &shb[shb.len() - 4..]);
        let idb = interface(LINKTYPE_ETHERNET, 65535, "ns1:veth0");
        assert_eq!(
            u32::from_le_bytes(idb[4..8].try_into().unwrap()) as usize,
            idb.len()
        );
        // if_name option: code 2, length 9, then the name padded to 12.
        assert_eq!(&idb[16..20], &[2, 0, 9, 0]);
        assert_eq!(&idb[20..29], b"ns1:veth0");
        assert_eq!(&idb[29..32], &[0, 0, 0]);
        assert_eq!(&idb[32..37], &[9, 0, 1, 0, 9]);
        let epb = packet(1, 0x1_0000_0002, &[0xaa; 5], 5);
        assert_eq!(epb.len(), 12 + 20 + 8);
        assert_eq!(&epb[8..12], &1u32.to_le_bytes());
        assert_eq!(&epb[12..16], &1u32.to_le_bytes());
        assert_eq!(&epb[16..20], &2u32.to_le_bytes());
        assert_eq!(&epb[20..24], &5u32.to_le_bytes());
        assert_eq!(&epb[28..33], &[0xaa; 5]);
        assert_eq!(&epb[33..36], &[0, 0, 0]);
    }
}
