//! TSO for a TAP: frames read from a TAP opened with virtio-net headers
//! and `TUNSETOFFLOAD` may be TCP segments of up to 64 KiB behind an
//! Ethernet header, or ordinary frames whose checksum the kernel left to
//! the reader. Either way what goes into the tunnel is frames that fit the
//! MTU with every checksum complete.

use std::io;

use tun_rs::VirtioNetHdr;

const NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;

/// Bytes of Ethernet header (with one VLAN tag, if there is one) and
/// whether the payload is IPv6; None for anything but IPv4/IPv6.
fn l2(frame: &[u8]) -> Option<(usize, bool)> {
    let et = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (len, t) = match et(12)? {
        0x8100 | 0x88a8 => (18, et(16)?),
        t => (14, t),
    };
    match t {
        0x0800 => Some((len, false)),
        0x86dd => Some((len, true)),
        _ => None,
    }
}

/// Finish a checksum the kernel left partial (CHECKSUM_PARTIAL): the
/// 16-bit field at `start + offset` holds the pseudo-header sum; the
/// checksum covers `start..` to the end.
pub fn complete_checksum(p: &mut [u8], start: usize, offset: usize) -> io::Result<()> {
    let at = start + offset;
    if at + 2 > p.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum field beyond the frame",
        ));
    }
    let mut sum: u64 = 0;
    let mut chunks = p[start..].chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut c = !(sum as u16);
    // UDP sends "no checksum" as 0, so a computed 0 goes out as 0xffff.
    if c == 0 && offset == 6 {
        c = 0xffff;
    }
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Split one read from an offloading TAP (`raw`: virtio-net header, then
/// the frame) into frames in `out` (lengths in `sizes`). Returns how many.
pub fn split_frame<B: AsRef<[u8]> + AsMut<[u8]>>(
    raw: &mut [u8],
    out: &mut [B],
    sizes: &mut [usize],
) -> io::Result<usize> {
    let vnet = tun_rs::VIRTIO_NET_HDR_LEN;
    if raw.len() <= vnet || out.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short read"));
    }
    let mut hdr = VirtioNetHdr::decode(&raw[..vnet])?;
    let frame = &mut raw[vnet..];
    if hdr.gso_type == GSO_NONE {
        if hdr.flags & NEEDS_CSUM != 0 {
            complete_checksum(
                frame,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            )?;
        }
        let o = out[0].as_mut();
        if o.len() < frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame bigger than the MTU",
            ));
        }
        o[..frame.len()].copy_from_slice(frame);
        sizes[0] = frame.len();
        return Ok(1);
    }
    let Some((l2len, v6)) = l2(frame) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a GSO frame that is not IPv4 or IPv6",
        ));
    };
    let mut eth = [0u8; 18];
    eth[..l2len].copy_from_slice(&frame[..l2len]);
    // The offsets in the header count from the frame's start; the
    // splitting counts from the IP header. Its header length is taken
    // from the packet itself, not trusted from the kernel (as tun-rs
    // does for a TUN).
    let csum_start = usize::from(hdr.csum_start)
        .checked_sub(l2len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "csum_start inside L2"))?;
    let ip = &mut frame[l2len..];
    let l4 = if hdr.csum_offset == 6 {
        8
    } else {
        let off = *ip
            .get(csum_start + 12)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short TCP header"))?;
        usize::from(off >> 4) * 4
    };
    hdr.csum_start = csum_start as u16;
    hdr.hdr_len = (csum_start + l4) as u16;
    let n = tun_rs::gso_split(ip, hdr, out, sizes, l2len, v6)?;
    for (o, s) in out.iter_mut().zip(sizes.iter_mut()).take(n) {
        o.as_mut()[..l2len].copy_from_slice(&eth[..l2len]);
        *s += l2len;
    }
    Ok(n)
}

/// Bytes of Ethernet header a coalesced frame may have (no VLAN tag).
const ETH: usize = 14;
/// Marks a buffer whose packet GRO merged into another one (tun-rs
/// writes a header into every buffer it keeps, and none into those).
const ABSORBED: u8 = 0xff;

/// Prepare decrypted frames for an offloading TAP. Each `bufs[i]` holds
/// [`tun_rs::VIRTIO_NET_HDR_LEN`] spare bytes, then a frame. IPv4/IPv6
/// frames behind the same Ethernet header (the first such frame's) are
/// run through tun-rs's GRO, as packets are on a TUN, so that runs of one
/// TCP flow become one segment of up to 64 KiB; the others are left
/// alone. Afterwards every buffer listed in `write` (in order) starts with
/// its virtio-net header, then the frame. `bufs` may be reordered.
pub fn coalesce(
    bufs: &mut [Vec<u8>],
    gro: &mut tun_rs::GROTable,
    write: &mut Vec<usize>,
) -> io::Result<()> {
    let vnet = tun_rs::VIRTIO_NET_HDR_LEN;
    write.clear();
    // Candidates to the front, keeping the order of both groups.
    let mut eth0: Option<[u8; ETH]> = None;
    let mut k = 0;
    for i in 0..bufs.len() {
        let f = &bufs[i][vnet..];
        let ip = f.len() >= ETH + 20 && matches!(l2(f), Some((ETH, _)));
        let same = ip && eth0.is_none_or(|e| f[..ETH] == e);
        if same {
            if eth0.is_none() {
                eth0 = f[..ETH].try_into().ok();
            }
            bufs[k..=i].rotate_right(1);
            k += 1;
        }
    }
    // GRO wants the IP packet at an offset with the header's room just
    // before it: [Ethernet][header][IP ...].
    for b in &mut bufs[..k] {
        b.copy_within(vnet..vnet + ETH, 0);
        b[ETH] = ABSORBED;
    }
    let off = ETH + vnet;
    let res = gro.apply_gro(&mut bufs[..k], off, false);
    for (i, b) in bufs.iter_mut().enumerate() {
        if i >= k {
            b[..vnet].fill(0);
            write.push(i);
            continue;
        }
        if res.is_err() || b[ETH] == ABSORBED {
            continue;
        }
        // [header][Ethernet][IP ...], offsets counted from the frame.
        let mut h = VirtioNetHdr::decode(&b[ETH..off])?;
        b.copy_within(0..ETH, vnet);
        if h.gso_type != GSO_NONE || h.flags & NEEDS_CSUM != 0 {
            h.csum_start += ETH as u16;
            h.hdr_len += ETH as u16;
        }
        h.encode(&mut b[..vnet])?;
        write.push(i);
    }
    res
}
