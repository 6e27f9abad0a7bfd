//! Random bytes through every parser: errors are fine, panics are not.

use proptest::prelude::*;
use weft_wire::{BpduPacket, BpduRepr, EthernetFrame, L2Header, VlanHeader};

fn bpdu_like() -> impl Strategy<Value = Vec<u8>> {
    // Mostly-valid prefixes reach the deeper branches that pure noise misses.
    (
        prop::collection::vec(any::<u8>(), 0..64),
        0usize..60,
        any::<u8>(),
    )
        .prop_map(|(tail, cut, ty)| {
            let mut f = vec![
                0x01, 0x80, 0xc2, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0x26, 0x42, 0x42, 3, 0, 0, 2, ty,
            ];
            f.extend(tail);
            f.truncate(cut.max(1));
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = L2Header::parse(&bytes);
        let _ = BpduRepr::parse_frame(&bytes);
        if let Ok(f) = EthernetFrame::new_checked(&bytes[..]) {
            let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
        }
        if let Ok(h) = VlanHeader::new_checked(&bytes[..]) {
            let _ = (h.tci(), h.ethertype(), h.payload().len());
        }
        if let Ok(p) = BpduPacket::new_checked(&bytes[..]) {
            let _ = BpduRepr::parse(&p);
        }
    }

    #[test]
    fn bpdu_shaped_input_never_panics(bytes in bpdu_like()) {
        if let Ok((src, repr)) = BpduRepr::parse_frame(&bytes) {
            // Anything we accept must re-emit and re-parse identically.
            let mut buf = vec![0u8; repr.frame_len()];
            repr.emit_frame(src, &mut buf);
            prop_assert_eq!(BpduRepr::parse_frame(&buf), Ok((src, repr)));
        }
    }
}
