//! Spanning tree BPDUs (802.1D-1998 Configuration and TCN, 802.1w/802.1D-2004
//! RST). On the wire a BPDU is an 802.3 frame to 01:80:c2:00:00:00 whose
//! length field (not an EtherType) is followed by the LLC header 42 42 03 and
//! the BPDU itself. `BpduPacket` views the bytes after the LLC header.

use core::time::Duration;

use crate::ethernet::{EtherType, EthernetFrame, HEADER_LEN};
use crate::mac::MacAddr;
use crate::{Error, Result};

/// DSAP 0x42, SSAP 0x42, control 0x03 (UI).
pub const LLC_HEADER: [u8; 3] = [0x42, 0x42, 0x03];
/// Config BPDU length (after LLC).
pub const CONFIG_LEN: usize = 35;
/// Topology Change Notification BPDU length.
pub const TCN_LEN: usize = 4;
/// RST BPDU length: a Config BPDU plus the Version 1 Length octet.
pub const RST_LEN: usize = 36;
/// Ethernet minimum frame length without FCS; BPDUs are padded to it.
pub const MIN_FRAME_LEN: usize = 60;

mod field {
    use core::ops::Range;
    pub const PROTOCOL: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const TYPE: usize = 3;
    pub const FLAGS: usize = 4;
    pub const ROOT: Range<usize> = 5..13;
    pub const COST: Range<usize> = 13..17;
    pub const BRIDGE: Range<usize> = 17..25;
    pub const PORT: Range<usize> = 25..27;
    pub const MSG_AGE: Range<usize> = 27..29;
    pub const MAX_AGE: Range<usize> = 29..31;
    pub const HELLO: Range<usize> = 31..33;
    pub const FWD_DELAY: Range<usize> = 33..35;
    pub const V1_LEN: usize = 35;
}

/// Bridge identifier: priority then MAC. Lower is better; the derived `Ord`
/// compares priority first, then the address, as 802.1D does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BridgeId {
    pub priority: u16,
    pub mac: MacAddr,
}

impl BridgeId {
    pub const fn new(priority: u16, mac: MacAddr) -> Self {
        BridgeId { priority, mac }
    }

    pub fn from_bytes(b: [u8; 8]) -> Self {
        BridgeId {
            priority: u16::from_be_bytes([b[0], b[1]]),
            mac: MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]),
        }
    }

    pub fn to_bytes(self) -> [u8; 8] {
        let p = self.priority.to_be_bytes();
        let m = self.mac.0;
        [p[0], p[1], m[0], m[1], m[2], m[3], m[4], m[5]]
    }
}

impl core::fmt::Display for BridgeId {
    /// Same form as `brctl showstp` / `bridge -d link`: `8000.525400aabbcc`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:04x}.", self.priority)?;
        for b in self.mac.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A BPDU timer value in 1/256 s, as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StpTime(pub u16);

impl StpTime {
    pub const fn from_secs(s: u8) -> Self {
        StpTime((s as u16) << 8)
    }

    /// Saturates at the largest representable value (~256 s).
    pub fn from_duration(d: Duration) -> Self {
        let units = d.as_nanos().saturating_mul(256) / 1_000_000_000;
        StpTime(u16::try_from(units).unwrap_or(u16::MAX))
    }

    pub fn to_duration(self) -> Duration {
        Duration::from_nanos(u64::from(self.0) * 1_000_000_000 / 256)
    }
}

/// Port role as encoded in RST BPDU flags (bits 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortRoleFlag {
    Unknown = 0,
    AlternateOrBackup = 1,
    Root = 2,
    Designated = 3,
}

/// The flags octet. Config BPDUs only use TC and TCA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BpduFlags(pub u8);

impl BpduFlags {
    pub const TC: u8 = 0x01;
    pub const PROPOSAL: u8 = 0x02;
    pub const ROLE_MASK: u8 = 0x0c;
    pub const LEARNING: u8 = 0x10;
    pub const FORWARDING: u8 = 0x20;
    pub const AGREEMENT: u8 = 0x40;
    pub const TCA: u8 = 0x80;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }

    pub fn role(self) -> PortRoleFlag {
        match (self.0 & Self::ROLE_MASK) >> 2 {
            1 => PortRoleFlag::AlternateOrBackup,
            2 => PortRoleFlag::Root,
            3 => PortRoleFlag::Designated,
            _ => PortRoleFlag::Unknown,
        }
    }

    pub fn set_role(&mut self, role: PortRoleFlag) {
        self.0 = (self.0 & !Self::ROLE_MASK) | ((role as u8) << 2);
    }
}

/// The BPDU Type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BpduType {
    Config = 0x00,
    Rst = 0x02,
    Tcn = 0x80,
}

/// Zero-copy view of a BPDU (the bytes after the LLC header).
#[derive(Debug, Clone)]
pub struct BpduPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> BpduPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        BpduPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the length the BPDU type needs (802.1D-2004 9.3.4), so that
    /// every accessor of a checked packet is in bounds; an unknown type only
    /// needs the 4-byte common header.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < TCN_LEN {
            return Err(Error::Truncated);
        }
        let need = match b[field::TYPE] {
            0x00 => CONFIG_LEN,
            0x02 => RST_LEN,
            _ => TCN_LEN,
        };
        if b.len() < need {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn protocol_id(&self) -> u16 {
        self.u16_at(field::PROTOCOL)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn bpdu_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn flags(&self) -> BpduFlags {
        BpduFlags(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn root_id(&self) -> BridgeId {
        BridgeId::from_bytes(
            self.buffer.as_ref()[field::ROOT]
                .try_into()
                .unwrap_or([0; 8]),
        )
    }

    pub fn root_path_cost(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::COST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn bridge_id(&self) -> BridgeId {
        BridgeId::from_bytes(
            self.buffer.as_ref()[field::BRIDGE]
                .try_into()
                .unwrap_or([0; 8]),
        )
    }

    pub fn port_id(&self) -> u16 {
        self.u16_at(field::PORT)
    }

    pub fn message_age(&self) -> StpTime {
        StpTime(self.u16_at(field::MSG_AGE))
    }

    pub fn max_age(&self) -> StpTime {
        StpTime(self.u16_at(field::MAX_AGE))
    }

    pub fn hello_time(&self) -> StpTime {
        StpTime(self.u16_at(field::HELLO))
    }

    pub fn forward_delay(&self) -> StpTime {
        StpTime(self.u16_at(field::FWD_DELAY))
    }

    pub fn version1_len(&self) -> u8 {
        self.buffer.as_ref()[field::V1_LEN]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BpduPacket<T> {
    fn put(&mut self, r: core::ops::Range<usize>, bytes: &[u8]) {
        self.buffer.as_mut()[r].copy_from_slice(bytes);
    }
}

/// Fields shared by Configuration and RST BPDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigBpdu {
    pub flags: BpduFlags,
    pub root: BridgeId,
    pub root_path_cost: u32,
    pub bridge: BridgeId,
    pub port_id: u16,
    pub message_age: StpTime,
    pub max_age: StpTime,
    pub hello_time: StpTime,
    pub forward_delay: StpTime,
}

/// A parsed BPDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpduRepr {
    /// 802.1D Configuration BPDU (protocol version 0).
    Config(ConfigBpdu),
    /// 802.1D Topology Change Notification.
    Tcn,
    /// 802.1w Rapid Spanning Tree BPDU (protocol version 2).
    Rst(ConfigBpdu),
}

impl BpduRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &BpduPacket<T>) -> Result<Self> {
        p.check_len()?;
        if p.protocol_id() != 0 {
            return Err(Error::Malformed);
        }
        let body = || ConfigBpdu {
            flags: p.flags(),
            root: p.root_id(),
            root_path_cost: p.root_path_cost(),
            bridge: p.bridge_id(),
            port_id: p.port_id(),
            message_age: p.message_age(),
            max_age: p.max_age(),
            hello_time: p.hello_time(),
            forward_delay: p.forward_delay(),
        };
        match p.bpdu_type() {
            // Like 802.1D-2004 9.3.4, the type decides, not the version, so
            // a future version's Config BPDU is still understood.
            0x00 => Ok(BpduRepr::Config(body())),
            0x80 => Ok(BpduRepr::Tcn),
            0x02 if p.version() >= 2 => Ok(BpduRepr::Rst(body())),
            0x02 => Err(Error::Malformed),
            _ => Err(Error::Unrecognized),
        }
    }

    pub fn bpdu_type(&self) -> BpduType {
        match self {
            BpduRepr::Config(_) => BpduType::Config,
            BpduRepr::Tcn => BpduType::Tcn,
            BpduRepr::Rst(_) => BpduType::Rst,
        }
    }

    pub const fn buffer_len(&self) -> usize {
        match self {
            BpduRepr::Config(_) => CONFIG_LEN,
            BpduRepr::Tcn => TCN_LEN,
            BpduRepr::Rst(_) => RST_LEN,
        }
    }

    /// Writes the BPDU; the buffer must be at least `buffer_len()` long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut BpduPacket<T>) {
        let (version, ty) = match self {
            BpduRepr::Config(_) | BpduRepr::Tcn => (0u8, self.bpdu_type() as u8),
            BpduRepr::Rst(_) => (2u8, BpduType::Rst as u8),
        };
        p.put(field::PROTOCOL, &[0, 0]);
        p.put(field::VERSION..field::VERSION + 1, &[version]);
        p.put(field::TYPE..field::TYPE + 1, &[ty]);
        let (BpduRepr::Config(c) | BpduRepr::Rst(c)) = self else {
            return;
        };
        p.put(field::FLAGS..field::FLAGS + 1, &[c.flags.0]);
        p.put(field::ROOT, &c.root.to_bytes());
        p.put(field::COST, &c.root_path_cost.to_be_bytes());
        p.put(field::BRIDGE, &c.bridge.to_bytes());
        p.put(field::PORT, &c.port_id.to_be_bytes());
        p.put(field::MSG_AGE, &c.message_age.0.to_be_bytes());
        p.put(field::MAX_AGE, &c.max_age.0.to_be_bytes());
        p.put(field::HELLO, &c.hello_time.0.to_be_bytes());
        p.put(field::FWD_DELAY, &c.forward_delay.0.to_be_bytes());
        if matches!(self, BpduRepr::Rst(_)) {
            p.put(field::V1_LEN..field::V1_LEN + 1, &[0]);
        }
    }

    /// Length of the whole Ethernet frame `emit_frame` writes (padded to 60).
    pub const fn frame_len(&self) -> usize {
        let n = HEADER_LEN + LLC_HEADER.len() + self.buffer_len();
        if n < MIN_FRAME_LEN {
            MIN_FRAME_LEN
        } else {
            n
        }
    }

    /// Parses a whole Ethernet frame carrying a BPDU; returns the sender's
    /// MAC and the BPDU. Frames to another address are `Unrecognized`.
    pub fn parse_frame(frame: &[u8]) -> Result<(MacAddr, Self)> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.dst_addr() != MacAddr::STP_GROUP {
            return Err(Error::Unrecognized);
        }
        let len = usize::from(eth.ethertype());
        if !EtherType::is_length(eth.ethertype()) || len < LLC_HEADER.len() {
            return Err(Error::Malformed);
        }
        let llc = eth.payload().get(..len).ok_or(Error::Truncated)?;
        if llc[..3] != LLC_HEADER {
            return Err(Error::Malformed);
        }
        let pkt = BpduPacket::new_checked(&llc[3..])?;
        Ok((eth.src_addr(), Self::parse(&pkt)?))
    }

    /// Writes a complete frame from `src` to the bridge group address and
    /// returns its length. Panics if `buf` is shorter than `frame_len()`.
    pub fn emit_frame(&self, src: MacAddr, buf: &mut [u8]) -> usize {
        let total = self.frame_len();
        let buf = &mut buf[..total];
        buf.fill(0);
        let mut eth = EthernetFrame::new_unchecked(&mut *buf);
        eth.set_dst_addr(MacAddr::STP_GROUP);
        eth.set_src_addr(src);
        eth.set_ethertype((LLC_HEADER.len() + self.buffer_len()) as u16);
        let payload = eth.payload_mut();
        payload[..3].copy_from_slice(&LLC_HEADER);
        self.emit(&mut BpduPacket::new_unchecked(&mut payload[3..]));
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Configuration BPDU as a Linux bridge (br0, 52:54:00:aa:bb:cc,
    /// priority 0x8000, itself root) sends it from its first port.
    const LINUX_CONFIG: [u8; 60] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, // dst: bridge group address
        0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, // src
        0x00, 0x26, // 802.3 length: 38 = LLC 3 + BPDU 35
        0x42, 0x42, 0x03, // LLC
        0x00, 0x00, // protocol id
        0x00, // version 0 (STP)
        0x00, // type: Configuration
        0x00, // flags
        0x80, 0x00, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, // root id
        0x00, 0x00, 0x00, 0x00, // root path cost
        0x80, 0x00, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, // bridge id
        0x80, 0x01, // port id
        0x00, 0x00, // message age 0
        0x14, 0x00, // max age 20 s
        0x02, 0x00, // hello time 2 s
        0x0f, 0x00, // forward delay 15 s
        0, 0, 0, 0, 0, 0, 0, 0, // padding to 60
    ];

    /// TCN from 52:54:00:00:00:02: length 7, version 0, type 0x80.
    const TCN: [u8; 60] = {
        let mut f = [0u8; 60];
        let head = [
            0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x00, 0x07,
            0x42, 0x42, 0x03, 0x00, 0x00, 0x00, 0x80,
        ];
        let mut i = 0;
        while i < head.len() {
            f[i] = head[i];
            i += 1;
        }
        f
    };

    /// RST BPDU from a designated forwarding port that proposes, with TC.
    const RST: [u8; 60] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x07, // src
        0x00, 0x27, // length 39
        0x42, 0x42, 0x03, // LLC
        0x00, 0x00, 0x02, 0x02, // protocol, version 2, type RST
        0x3f, // flags: TC | proposal | role designated | learning | forwarding
        0x10, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // root 4096.020000000001
        0x00, 0x00, 0x4e, 0x20, // cost 20000
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x07, // bridge
        0x80, 0x02, // port id
        0x01, 0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00, // age 1 s, 20, 2, 15
        0x00, // version 1 length
        0, 0, 0, 0, 0, 0, 0, // padding
    ];

    fn linux_repr() -> BpduRepr {
        let br = BridgeId::new(0x8000, "52:54:00:aa:bb:cc".parse().unwrap());
        BpduRepr::Config(ConfigBpdu {
            flags: BpduFlags(0),
            root: br,
            root_path_cost: 0,
            bridge: br,
            port_id: 0x8001,
            message_age: StpTime(0),
            max_age: StpTime::from_secs(20),
            hello_time: StpTime::from_secs(2),
            forward_delay: StpTime::from_secs(15),
        })
    }

    #[test]
    fn parse_linux_config_bpdu() {
        let (src, bpdu) = BpduRepr::parse_frame(&LINUX_CONFIG).unwrap();
        assert_eq!(src.to_string(), "52:54:00:aa:bb:cc");
        assert_eq!(bpdu, linux_repr());
        let BpduRepr::Config(c) = bpdu else { panic!() };
        assert_eq!(c.root.to_string(), "8000.525400aabbcc");
        assert_eq!(c.hello_time.to_duration(), Duration::from_secs(2));
    }

    #[test]
    fn emit_linux_config_bpdu_byte_exact() {
        let mut buf = [0xaau8; 64];
        let n = linux_repr().emit_frame("52:54:00:aa:bb:cc".parse().unwrap(), &mut buf);
        assert_eq!(n, 60);
        assert_eq!(buf[..60], LINUX_CONFIG);
    }

    #[test]
    fn tcn_round_trip() {
        let (src, bpdu) = BpduRepr::parse_frame(&TCN).unwrap();
        assert_eq!(bpdu, BpduRepr::Tcn);
        let mut buf = [0u8; 60];
        assert_eq!(bpdu.emit_frame(src, &mut buf), 60);
        assert_eq!(buf, TCN);
    }

    #[test]
    fn rst_flags_and_round_trip() {
        let (src, bpdu) = BpduRepr::parse_frame(&RST).unwrap();
        let BpduRepr::Rst(c) = bpdu else { panic!() };
        assert!(c.flags.has(BpduFlags::TC));
        assert!(c.flags.has(BpduFlags::PROPOSAL));
        assert!(c.flags.has(BpduFlags::LEARNING));
        assert!(c.flags.has(BpduFlags::FORWARDING));
        assert!(!c.flags.has(BpduFlags::AGREEMENT));
        assert!(!c.flags.has(BpduFlags::TCA));
        assert_eq!(c.flags.role(), PortRoleFlag::Designated);
        assert_eq!(c.root.priority, 0x1000);
        assert_eq!(c.root_path_cost, 20000);
        assert_eq!(c.message_age, StpTime::from_secs(1));
        let mut buf = [0u8; 60];
        bpdu.emit_frame(src, &mut buf);
        assert_eq!(buf, RST);
    }

    #[test]
    fn flag_bits() {
        let mut f = BpduFlags::default();
        f.set_role(PortRoleFlag::Root);
        f.set(BpduFlags::AGREEMENT, true);
        f.set(BpduFlags::TCA, true);
        assert_eq!(f.0, 0xc8);
        f.set_role(PortRoleFlag::AlternateOrBackup);
        assert_eq!(f.role(), PortRoleFlag::AlternateOrBackup);
        f.set(BpduFlags::TCA, false);
        assert_eq!(f.0, 0x44);
    }

    #[test]
    fn bad_bpdus() {
        let mut f = LINUX_CONFIG;
        f[17] = 1; // protocol id
        assert_eq!(BpduRepr::parse_frame(&f), Err(Error::Malformed));
        let mut f = LINUX_CONFIG;
        f[14] = 0xaa; // LLC
        assert_eq!(BpduRepr::parse_frame(&f), Err(Error::Malformed));
        let mut f = LINUX_CONFIG;
        f[13] = 0x10; // length says 16: BPDU cut at 13 bytes
        assert_eq!(BpduRepr::parse_frame(&f), Err(Error::Truncated));
        let mut f = LINUX_CONFIG;
        f[12..14].copy_from_slice(&[0x08, 0x00]); // an EtherType, not a length
        assert_eq!(BpduRepr::parse_frame(&f), Err(Error::Malformed));
        let mut f = LINUX_CONFIG;
        f[20] = 0x42; // unknown type
        assert_eq!(BpduRepr::parse_frame(&f), Err(Error::Unrecognized));
        let mut f = RST;
        f[19] = 0; // RST type with version 0
        assert_eq!(BpduRepr::parse_frame(&f), Err(Error::Malformed));
        // Frame physically shorter than the 802.3 length claims.
        assert_eq!(
            BpduRepr::parse_frame(&LINUX_CONFIG[..40]),
            Err(Error::Truncated)
        );
        assert_eq!(
            BpduRepr::parse_frame(&LINUX_CONFIG[..10]),
            Err(Error::Truncated)
        );
        let mut f = LINUX_CONFIG;
        f[5] = 1; // not the group address
        assert_eq!(BpduRepr::parse_frame(&f), Err(Error::Unrecognized));
    }

    #[test]
    fn time_units() {
        assert_eq!(
            StpTime::from_duration(Duration::from_secs(15)),
            StpTime(0x0f00)
        );
        assert_eq!(
            StpTime::from_duration(Duration::from_millis(500)),
            StpTime(128)
        );
        assert_eq!(
            StpTime::from_duration(Duration::from_secs(10_000)),
            StpTime(u16::MAX)
        );
        assert_eq!(StpTime(384).to_duration(), Duration::from_millis(1500));
    }

    #[test]
    fn bridge_id_order() {
        let a = BridgeId::new(0x8000, MacAddr([0, 0, 0, 0, 0, 9]));
        let b = BridgeId::new(0x8000, MacAddr([0, 0, 0, 0, 1, 0]));
        let c = BridgeId::new(0x1000, MacAddr([0xff; 6]));
        assert!(c < a && a < b);
    }
}
