//! Frames for other crates' tests and benchmarks (the tc BPF switch's
//! parity and cost, the datapath's tests): one builder, so they all feed
//! the same bytes. The one place in this crate that allocates.

use crate::{EtherType, MacAddr};

/// Host `n`'s address in tests: locally administered, `02:00:00:00:00:n`.
pub const fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

/// An IPv4 frame from `src` to `dst` with an 802.1Q tag (TPID 0x8100) per
/// TCI of `tags`, outermost first, and `payload` bytes of 0x5a after the
/// EtherType (46 make an untagged minimum-size frame).
pub fn frame(dst: MacAddr, src: MacAddr, tags: &[u16], payload: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    for tci in tags {
        f.extend_from_slice(&EtherType::VLAN.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&EtherType::IPV4.to_be_bytes());
    f.resize(f.len() + payload, 0x5a);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{L2Header, Tci};

    #[test]
    fn frames_read_back_as_built() {
        let f = frame(mac(2), mac(1), &[], 46);
        assert_eq!(f.len(), 60);
        assert_eq!(
            &f[..14],
            [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00].as_slice()
        );
        assert!(f[14..].iter().all(|&b| b == 0x5a));

        let f = frame(MacAddr::BROADCAST, mac(3), &[0x6000 | 10, 20], 46);
        assert_eq!(f.len(), 14 + 8 + 46);
        assert_eq!(
            &f[12..22],
            [0x81, 0, 0x60, 10, 0x81, 0, 0, 20, 0x08, 0].as_slice()
        );
        let h = L2Header::parse(&f).unwrap();
        assert_eq!((h.dst, h.src), (MacAddr::BROADCAST, mac(3)));
        assert_eq!(h.outer, Some((0x8100, Tci::from_u16(0x6000 | 10))));
        assert!(h.inner_tagged);
        assert_eq!((h.ethertype, h.payload_offset), (0x0800, 22));
    }
}
