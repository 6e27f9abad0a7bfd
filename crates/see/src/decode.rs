//! One-line summaries of captured packets, like tcpdump's default output,
//! for `weft capture` without `-w` and for `weft trace`'s evidence.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::filter::Link;

/// What a packet is, as far as `trace` needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    ArpRequest {
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    ArpReply {
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    IcmpEchoRequest,
    IcmpEchoReply,
    /// Another ICMP / ICMPv6 message: type and code.
    Icmp(u8, u8),
    Udp(u16, u16),
    /// Ports and flags (SYN 0x02, RST 0x04, ACK 0x10).
    Tcp(u16, u16, u8),
    OtherIp(u8),
    /// An 802.3 frame (its type field is a length, under 0x0600) with an
    /// LLC header: its DSAP (0x42: spanning tree BPDUs) and length.
    Llc {
        dsap: u8,
        len: u16,
    },
    Other(u16),
}

/// A decoded packet: addresses and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub kind: Kind,
}

fn be16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn v4(b: &[u8], o: usize) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
    Some(a.into())
}

/// Decode a frame (Ethernet) or packet (raw IP). `None` for runts.
pub fn summarize(data: &[u8], link: Link) -> Option<Summary> {
    let (ty, l3) = match link {
        Link::Ethernet => {
            let mut ty = be16(data, 12)?;
            let mut off = 14;
            while ty == 0x8100 || ty == 0x88a8 {
                ty = be16(data, off + 2)?;
                off += 4;
            }
            (ty, &data[off..])
        }
        Link::RawIp => match data.first()? >> 4 {
            4 => (0x0800, data),
            6 => (0x86dd, data),
            _ => return None,
        },
    };
    match ty {
        0x0806 => {
            let op = be16(l3, 6)?;
            let (sender, target) = (v4(l3, 14)?, v4(l3, 24)?);
            let kind = if op == 1 {
                Kind::ArpRequest { sender, target }
            } else {
                Kind::ArpReply { sender, target }
            };
            Some(Summary {
                src: Some(sender.into()),
                dst: Some(target.into()),
                kind,
            })
        }
        0x0800 => {
            let ihl = (*l3.first()? as usize & 0xf) * 4;
            let proto = *l3.get(9)?;
            let l4 = l3.get(ihl..)?;
            Some(Summary {
                src: Some(v4(l3, 12)?.into()),
                dst: Some(v4(l3, 16)?.into()),
                kind: l4_kind(proto, l4, false),
            })
        }
        0x86dd => {
            let a: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
            Some(Summary {
                src: Some(Ipv6Addr::from(a).into()),
                dst: Some(Ipv6Addr::from(b).into()),
                kind: l4_kind(*l3.get(6)?, l3.get(40..)?, true),
            })
        }
        t if t < 0x0600 && link == Link::Ethernet => Some(Summary {
            src: None,
            dst: None,
            kind: Kind::Llc {
                dsap: *l3.first()?,
                len: t,
            },
        }),
        t => Some(Summary {
            src: None,
            dst: None,
            kind: Kind::Other(t),
        }),
    }
}

fn l4_kind(proto: u8, l4: &[u8], v6: bool) -> Kind {
    match (proto, l4.len() >= 4) {
        (1, true) | (58, true) => match (v6, l4[0]) {
            (false, 8) | (true, 128) => Kind::IcmpEchoRequest,
            (false, 0) | (true, 129) => Kind::IcmpEchoReply,
            (_, t) => Kind::Icmp(t, l4[1]),
        },
        (17, true) => Kind::Udp(be16(l4, 0).unwrap(), be16(l4, 2).unwrap()),
        (6, true) => Kind::Tcp(
            be16(l4, 0).unwrap(),
            be16(l4, 2).unwrap(),
            l4.get(13).copied().unwrap_or(0),
        ),
        _ => Kind::OtherIp(proto),
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = |a: &Option<IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let (s, d) = (ip(&self.src), ip(&self.dst));
        match &self.kind {
            Kind::ArpRequest { sender, target } => {
                write!(f, "ARP, who has {target}? tell {sender}")
            }
            Kind::ArpReply { sender, .. } => write!(f, "ARP, {sender} is-at (reply)"),
            Kind::IcmpEchoRequest => write!(f, "{s} > {d}: ICMP echo request"),
            Kind::IcmpEchoReply => write!(f, "{s} > {d}: ICMP echo reply"),
            Kind::Icmp(t, c) => write!(f, "{s} > {d}: ICMP type {t} code {c}"),
            Kind::Udp(a, b) => write!(f, "{s}.{a} > {d}.{b}: UDP"),
            Kind::Tcp(a, b, fl) => {
                let mut flags = String::new();
                for (bit, c) in [
                    (0x02, 'S'),
                    (0x01, 'F'),
                    (0x04, 'R'),
                    (0x08, 'P'),
                    (0x10, '.'),
                ] {
                    if fl & bit != 0 {
                        flags.push(c);
                    }
                }
                write!(f, "{s}.{a} > {d}.{b}: TCP [{flags}]")
            }
            Kind::OtherIp(p) => write!(f, "{s} > {d}: IP protocol {p}"),
            Kind::Llc { dsap: 0x42, len } => write!(f, "STP BPDU, 802.3 length {len}"),
            Kind::Llc { dsap, len } => write!(f, "802.3 LLC, dsap {dsap:#04x}, length {len}"),
            Kind::Other(t) => write!(f, "ethertype {t:#06x}"),
        }
    }
}

/// Put back an 802.1Q tag the kernel moved out of an Ethernet frame into
/// its metadata (`PACKET_AUXDATA`), where it was on the wire: after the
/// two MAC addresses.
pub fn reinsert_vlan(frame: &[u8], tci: u16, tpid: u16) -> Vec<u8> {
    if frame.len() < 12 {
        return frame.to_vec();
    }
    let mut v = Vec::with_capacity(frame.len() + 4);
    v.extend_from_slice(&frame[..12]);
    v.extend_from_slice(&tpid.to_be_bytes());
    v.extend_from_slice(&tci.to_be_bytes());
    v.extend_from_slice(&frame[12..]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_802_3_frame_is_named_by_its_llc_not_as_an_ethertype() {
        // An RSTP BPDU as a weft switch sends it: to 01:80:c2:00:00:00,
        // length 39, LLC 42 42 03, then the BPDU.
        let mut f = vec![0x01, 0x80, 0xc2, 0, 0, 0, 0x02, 0, 0, 0, 0, 1, 0x00, 0x27];
        f.extend_from_slice(&[0x42, 0x42, 0x03, 0x00, 0x00, 0x02, 0x02]);
        let s = summarize(&f, Link::Ethernet).unwrap();
        assert_eq!(s.to_string(), "STP BPDU, 802.3 length 39");
        f[14] = 0xaa;
        let s = summarize(&f, Link::Ethernet).unwrap();
        assert_eq!(s.to_string(), "802.3 LLC, dsap 0xaa, length 39");
    }

    #[test]
    fn vlan_tag_goes_back_after_the_macs() {
        let f: Vec<u8> = (0u8..20).collect();
        let t = reinsert_vlan(&f, 0x2064, 0x8100);
        assert_eq!(&t[..12], &f[..12]);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&t[16..], &f[12..]);
        assert_eq!(reinsert_vlan(&f[..5], 1, 0x8100), &f[..5]);
    }

    #[test]
    fn arp_and_icmp() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[
            2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1,
        ]);
        f.extend_from_slice(&[192, 168, 2, 2, 0, 0, 0, 0, 0, 0, 192, 168, 2, 1]);
        let s = summarize(&f, Link::Ethernet).unwrap();
        assert_eq!(s.to_string(), "ARP, who has 192.168.2.1? tell 192.168.2.2");
        let p = [
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0, 0, 0, 0, 1, 0,
            1,
        ];
        let s = summarize(&p, Link::RawIp).unwrap();
        assert_eq!(s.kind, Kind::IcmpEchoRequest);
        assert_eq!(s.to_string(), "10.0.0.1 > 10.0.0.2: ICMP echo request");
        assert!(summarize(&p[..5], Link::RawIp).is_none());
    }
}
