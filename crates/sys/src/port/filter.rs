//! Classic BPF and control-message helpers: the socket filter that skips
//! what the kernel fast path forwards, and the VLAN tag from aux data.

use super::{PACKET_AUXDATA, SOL_PACKET, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID};

/// Most MAC pairs one port's socket filter can skip (the filter's jumps
/// reach 255 instructions).
pub const MAX_SKIP_PAIRS: usize = 40;

/// Classic BPF: accept everything except untagged IPv4/IPv6 frames whose
/// (source, destination) is one of `pairs`.
pub(super) fn skip_filter(pairs: &[([u8; 6], [u8; 6])]) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT: 1 if the device took a tag off.
    const VLAN_PRESENT: u32 = (-0x1000i32 + 48) as u32;
    let i = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let w = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let accept = 5 + 6 * pairs.len();
    let drop = accept + 1;
    let mut p = vec![
        i(LD_W_ABS, 0, 0, VLAN_PRESENT),
        i(JEQ_K, 0, (accept - 2) as u8, 0),
        i(LD_H_ABS, 0, 0, 12),
        i(JEQ_K, 1, 0, 0x0800),
        i(JEQ_K, 0, (accept - 5) as u8, 0x86dd),
    ];
    for (src, dst) in pairs {
        let mut a = [0u8; 12];
        a[..6].copy_from_slice(dst);
        a[6..].copy_from_slice(src);
        let b = p.len();
        // Three words: bytes 0-3, 4-7, 8-11; a mismatch skips to the next
        // pair (b + 6), the last match drops.
        p.push(i(LD_W_ABS, 0, 0, 0));
        p.push(i(JEQ_K, 0, 4, w(&a[0..])));
        p.push(i(LD_W_ABS, 0, 0, 4));
        p.push(i(JEQ_K, 0, 2, w(&a[4..])));
        p.push(i(LD_W_ABS, 0, 0, 8));
        p.push(i(JEQ_K, (drop - (b + 6)) as u8, 0, w(&a[8..])));
    }
    p.push(i(RET_K, 0, 0, u32::MAX));
    p.push(i(RET_K, 0, 0, 0));
    p
}

/// The VLAN tag the kernel took off a received frame, from its aux data.
pub(super) fn aux_vlan(h: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: walking the control buffer the kernel filled, with the libc
    // CMSG macros, bounded by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                let d = libc::CMSG_DATA(c) as *const Aux;
                let aux = std::ptr::read_unaligned(d);
                if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    return Some((tpid, aux.tp_vlan_tci));
                }
                return None;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// `struct tpacket_auxdata`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Aux {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}
