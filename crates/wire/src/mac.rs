//! MAC (EUI-48) addresses.

use core::fmt;
use core::str::FromStr;

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    /// Destination of STP/RSTP BPDUs (the "Bridge Group Address").
    pub const STP_GROUP: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x00]);

    pub const fn new(bytes: [u8; 6]) -> Self {
        MacAddr(bytes)
    }

    /// Reads the first six bytes; `None` if there are fewer.
    pub fn from_slice(data: &[u8]) -> Option<Self> {
        let b: [u8; 6] = data.get(..6)?.try_into().ok()?;
        Some(MacAddr(b))
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set; broadcast is a multicast address too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Locally administered bit set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// 01:80:c2:00:00:00..=0f: IEEE 802.1D reserved addresses that a bridge
    /// must never forward (BPDUs, LACP, LLDP, pause, ...).
    pub fn is_link_local_group(&self) -> bool {
        self.0[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && self.0[5] & 0xf0 == 0
    }

    pub fn to_u64(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }

    /// The low 48 bits of `v`.
    pub fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = crate::Error;

    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(crate::Error::Malformed);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| crate::Error::Malformed)?;
            n += 1;
        }
        if n != 6 {
            return Err(crate::Error::Malformed);
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        let mcast: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        let ucast: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        assert!(ucast.is_unicast() && ucast.is_local());
        let oui: MacAddr = "00:1b:21:aa:bb:cc".parse().unwrap();
        assert!(oui.is_unicast() && !oui.is_local());
        assert!(MacAddr::STP_GROUP.is_link_local_group());
        assert!(MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]).is_link_local_group());
        assert!(!MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x10]).is_link_local_group());
    }

    #[test]
    fn text_and_u64_round_trip() {
        let m: MacAddr = "aa-bb-cc-dd-ee-0f".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:cc:dd:ee:0f");
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert_eq!(m.to_u64(), 0xaabb_ccdd_ee0f);
        for bad in [
            "",
            "aa:bb",
            "aa:bb:cc:dd:ee:ff:00",
            "zz:bb:cc:dd:ee:ff",
            "aaa:b:c:d:e:f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
    }
}
