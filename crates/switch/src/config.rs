//! Switch and port configuration.

use core::time::Duration;
use weft_wire::MacAddr;

/// A switch port, numbered from 0 in the order of `SwitchConfig::ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

impl PortId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl core::fmt::Display for PortId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// A set of VLAN ids (0..=4095) as a 512-byte bitmap, so membership tests on
/// the per-frame path are a shift and a mask. Boxed to keep `PortMode` small.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet(Box<[u64; 64]>);

impl VlanSet {
    pub fn empty() -> Self {
        VlanSet(Box::new([0; 64]))
    }

    /// VLANs 1..=4094.
    pub fn all() -> Self {
        (1..=weft_wire::vlan::VID_MAX).collect()
    }

    pub fn contains(&self, vid: u16) -> bool {
        let vid = usize::from(vid & 0x0fff);
        self.0[vid / 64] & (1 << (vid % 64)) != 0
    }

    /// Ids outside 1..=4094 are ignored: 0 and 4095 are never VLANs.
    pub fn insert(&mut self, vid: u16) {
        if (1..=weft_wire::vlan::VID_MAX).contains(&vid) {
            let vid = usize::from(vid);
            self.0[vid / 64] |= 1 << (vid % 64);
        }
    }

    pub fn remove(&mut self, vid: u16) {
        let vid = usize::from(vid & 0x0fff);
        self.0[vid / 64] &= !(1 << (vid % 64));
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=weft_wire::vlan::VID_MAX).filter(|v| self.contains(*v))
    }
}

impl Default for VlanSet {
    fn default() -> Self {
        Self::empty()
    }
}

impl FromIterator<u16> for VlanSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut s = VlanSet::empty();
        for v in iter {
            s.insert(v);
        }
        s
    }
}

impl core::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How a port treats VLAN tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMode {
    /// Untagged member of one VLAN; tagged frames are dropped (priority
    /// tags, VID 0, are accepted). `bridge vlan add dev X vid N pvid untagged`
    /// / `ovs-vsctl set port X tag=N`.
    Access(u16),
    /// Tagged member of `allowed`; untagged frames belong to `native` and
    /// leave untagged. `ovs-vsctl set port X trunks=... vlan_mode=native-untagged`.
    Trunk {
        allowed: VlanSet,
        native: Option<u16>,
    },
}

impl PortMode {
    /// True if frames of `vid` may enter or leave this port.
    pub fn is_member(&self, vid: u16) -> bool {
        match self {
            PortMode::Access(v) => *v == vid,
            PortMode::Trunk { allowed, native } => allowed.contains(vid) || *native == Some(vid),
        }
    }

    /// True if frames of `vid` leave this port without a tag.
    pub fn is_untagged(&self, vid: u16) -> bool {
        match self {
            PortMode::Access(v) => *v == vid,
            PortMode::Trunk { native, .. } => *native == Some(vid),
        }
    }
}

/// Per-port spanning tree settings (`bridge link set dev X cost C priority P`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStpConfig {
    /// Path cost; default 100, the Linux bridge's value for a port of
    /// unknown speed such as a veth.
    pub path_cost: u32,
    /// Port priority, 0..=240 in steps of 16; default 128.
    pub priority: u8,
    /// Administratively an edge port (host-facing): forwards at once and
    /// causes no topology change, until a BPDU arrives on it.
    pub edge: bool,
    /// Link is point-to-point, so RSTP proposal/agreement may be used.
    pub point_to_point: bool,
}

impl Default for PortStpConfig {
    fn default() -> Self {
        PortStpConfig {
            path_cost: 100,
            priority: 128,
            edge: false,
            point_to_point: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub mode: PortMode,
    /// Administratively up (`ip link set X up`); the link can still be down.
    pub enabled: bool,
    pub stp: PortStpConfig,
}

impl PortConfig {
    pub fn access(vid: u16) -> Self {
        PortConfig {
            mode: PortMode::Access(vid),
            enabled: true,
            stp: PortStpConfig::default(),
        }
    }

    pub fn trunk(allowed: impl IntoIterator<Item = u16>, native: Option<u16>) -> Self {
        PortConfig {
            mode: PortMode::Trunk {
                allowed: allowed.into_iter().collect(),
                native,
            },
            enabled: true,
            stp: PortStpConfig::default(),
        }
    }

    /// Marks the port as a host-facing edge port.
    pub fn edge(mut self) -> Self {
        self.stp.edge = true;
        self
    }

    pub fn cost(mut self, cost: u32) -> Self {
        self.stp.path_cost = cost.max(1);
        self
    }
}

/// Which spanning tree protocol runs (`ip link set br0 type bridge stp_state`,
/// `ovs-vsctl set bridge br0 rstp_enable=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StpMode {
    /// No spanning tree: every port forwards and BPDUs are flooded like the
    /// Linux bridge does with `stp_state 0`.
    Off,
    /// 802.1D-1998 STP, as the Linux kernel bridge speaks it.
    Stp,
    /// 802.1w RSTP, falling back to STP per port when a neighbour speaks STP.
    Rstp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StpConfig {
    pub mode: StpMode,
    /// Bridge priority; default 0x8000 (`bridge ... priority`).
    pub priority: u16,
    pub hello_time: Duration,
    pub max_age: Duration,
    pub forward_delay: Duration,
}

impl Default for StpConfig {
    fn default() -> Self {
        StpConfig {
            mode: StpMode::Rstp,
            priority: 0x8000,
            hello_time: Duration::from_secs(2),
            max_age: Duration::from_secs(20),
            forward_delay: Duration::from_secs(15),
        }
    }
}

/// Port mirroring (`ovs-vsctl -- --id=@m create mirror ...`): copies of
/// selected frames go to `output`, which takes no part in switching.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorConfig {
    pub output: Option<PortId>,
    /// Frames received on these ports.
    pub select_ingress: Vec<PortId>,
    /// Frames the switch sends out of these ports.
    pub select_egress: Vec<PortId>,
    /// Frames in these VLANs.
    pub select_vlans: VlanSet,
}

/// Default FDB size limit (`ovs-vsctl set bridge br0 other-config:mac-table-size`).
pub const DEFAULT_FDB_MAX: usize = 8192;
/// Default MAC ageing time (`ip link set br0 type bridge ageing_time 30000`).
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Bridge MAC: source of BPDUs and the low part of the bridge id.
    pub mac: MacAddr,
    pub ports: Vec<PortConfig>,
    pub stp: StpConfig,
    /// Most learned plus static entries; default [`DEFAULT_FDB_MAX`].
    pub fdb_max_entries: usize,
    /// Idle time after which a learned entry goes; default [`DEFAULT_AGEING`].
    pub ageing: Duration,
    /// Largest payload of an untagged frame; each tag allows 4 more bytes.
    pub mtu: u16,
    pub mirror: MirrorConfig,
    /// Configured FDB entries (`bridge fdb add MAC dev PORT vlan VID
    /// static`): never learned over, aged, moved or flushed.
    pub static_macs: Vec<(u16, MacAddr, PortId)>,
}

impl SwitchConfig {
    pub fn new(mac: MacAddr, ports: Vec<PortConfig>) -> Self {
        SwitchConfig {
            mac,
            ports,
            stp: StpConfig::default(),
            fdb_max_entries: DEFAULT_FDB_MAX,
            ageing: DEFAULT_AGEING,
            mtu: 1500,
            mirror: MirrorConfig::default(),
            static_macs: Vec::new(),
        }
    }
}
