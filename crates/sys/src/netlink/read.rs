//! Readers: dumps of links, addresses and neighbours, parsed into the
//! states weft compares and prints.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    BridgePortState, BridgeStpState, InfoBridge, InfoBridgePort, InfoData, InfoPortData,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::Netlink;

impl Netlink {
    pub fn links(&mut self) -> io::Result<Vec<LinkState>> {
        let msgs = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(LinkState::from_message(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn addresses(&mut self) -> io::Result<Vec<AddrState>> {
        let msgs = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            let mut addr = None;
            let mut local = None;
            let mut flags = a.header.flags.bits() as u32;
            for at in &a.attributes {
                match at {
                    AddressAttribute::Address(x) => addr = Some(*x),
                    AddressAttribute::Local(x) => local = Some(*x),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(addr) {
                if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                    out.push(AddrState {
                        index: a.header.index,
                        net,
                        tentative: flags & AddressFlags::Tentative.bits() != 0,
                        dad_failed: flags & AddressFlags::Dadfailed.bits() != 0,
                        link_local: matches!(ip, IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A neighbour (ARP / NDP) cache entry.
#[derive(Debug, Clone)]
pub struct NeighState {
    pub index: u32,
    pub addr: IpAddr,
    pub state: NeighbourState,
    pub mac: Option<[u8; 6]>,
}

/// A neighbour entry's state (`NUD_*`), named as `ip neigh` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NeighbourState {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    Noarp,
    Permanent,
    /// A state this program does not know (newer kernels), or none.
    None,
}

impl NeighbourState {
    /// The stable lowercase name `ip neigh` and weft print.
    pub fn as_str(self) -> &'static str {
        match self {
            NeighbourState::Incomplete => "incomplete",
            NeighbourState::Reachable => "reachable",
            NeighbourState::Stale => "stale",
            NeighbourState::Delay => "delay",
            NeighbourState::Probe => "probe",
            NeighbourState::Failed => "failed",
            NeighbourState::Noarp => "noarp",
            NeighbourState::Permanent => "permanent",
            NeighbourState::None => "none",
        }
    }
}

impl std::fmt::Display for NeighbourState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Netlink {
    /// `ip neigh show`.
    pub fn neighbours(&mut self) -> io::Result<Vec<NeighState>> {
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState as Nud,
        };
        let mut out = Vec::new();
        for m in self.dump(RouteNetlinkMessage::GetNeighbour(
            NeighbourMessage::default(),
        ))? {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            let mut addr = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                        addr = Some(IpAddr::V4(*v))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                        addr = Some(IpAddr::V6(*v))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = Some(l[..].try_into().unwrap())
                    }
                    _ => {}
                }
            }
            let state = match n.header.state {
                Nud::Incomplete => NeighbourState::Incomplete,
                Nud::Reachable => NeighbourState::Reachable,
                Nud::Stale => NeighbourState::Stale,
                Nud::Delay => NeighbourState::Delay,
                Nud::Probe => NeighbourState::Probe,
                Nud::Failed => NeighbourState::Failed,
                Nud::Noarp => NeighbourState::Noarp,
                Nud::Permanent => NeighbourState::Permanent,
                _ => NeighbourState::None,
            };
            if let Some(addr) = addr {
                out.push(NeighState {
                    index: n.header.ifindex,
                    addr,
                    state,
                    mac,
                });
            }
        }
        Ok(out)
    }
}

/// What weft reads back about a link.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    /// The `ip -d link` kind: veth, bridge, tun, ... (`None` for lo and
    /// physical devices).
    pub kind: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub admin_up: bool,
    pub oper: OperState,
    pub lower_up: bool,
    pub master: Option<u32>,
    /// The peer's ifindex for a veth (in the namespace `link_netnsid` names).
    pub peer_index: Option<u32>,
    pub alias: Option<String>,
    pub port_state: Option<PortState>,
    pub stp: Option<bool>,
    /// A bridge's forward delay and max age in force, in centiseconds:
    /// the root's, learned from its BPDUs, not the configured ones
    /// (`ip -d link show` prints these).
    pub stp_times_cs: Option<(u32, u32)>,
    /// TUN/TAP details: (is_tap, pi, vnet_hdr, multi_queue, persist, owner, group).
    pub tun: Option<TunState>,
    pub point_to_point: bool,
    pub no_arp: bool,
    /// Traffic counters (`ip -s link`).
    pub stats: Option<super::observe::LinkStats>,
    /// A bridge's spanning-tree view of itself.
    pub bridge_stp: Option<super::observe::BridgeStp>,
    /// A bridge port's spanning-tree view.
    pub port_stp: Option<super::observe::PortStp>,
}

/// A link's operational state (RFC 2863, `IF_OPER_*`), named as `ip link`
/// prints it in lower case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperState {
    Up,
    Down,
    LowerLayerDown,
    Dormant,
    NotPresent,
    Testing,
    /// What the kernel reports for devices without carrier tracking (lo,
    /// tun), and states this program does not know.
    #[default]
    Unknown,
}

impl OperState {
    /// The stable lowercase name `weft status` prints and serialises.
    pub fn as_str(self) -> &'static str {
        match self {
            OperState::Up => "up",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lowerlayerdown",
            OperState::Dormant => "dormant",
            OperState::NotPresent => "notpresent",
            OperState::Testing => "testing",
            OperState::Unknown => "unknown",
        }
    }

    /// Down or waiting for a lower layer: the device cannot send yet.
    pub fn is_down(self) -> bool {
        matches!(self, OperState::Down | OperState::LowerLayerDown)
    }
}

impl std::fmt::Display for OperState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Disabled,
    Listening,
    Learning,
    Forwarding,
    Blocking,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Disabled => "disabled",
            PortState::Listening => "listening",
            PortState::Learning => "learning",
            PortState::Forwarding => "forwarding",
            PortState::Blocking => "blocking",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunState {
    pub tap: bool,
    pub pi: bool,
    pub vnet_hdr: bool,
    pub multi_queue: bool,
    pub persist: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl LinkState {
    fn from_message(l: &LinkMessage) -> LinkState {
        let mut s = LinkState {
            index: l.header.index,
            admin_up: l.header.flags.contains(LinkFlags::Up),
            lower_up: l.header.flags.contains(LinkFlags::LowerUp),
            point_to_point: l.header.flags.contains(LinkFlags::Pointopoint),
            no_arp: l.header.flags.contains(LinkFlags::Noarp),
            ..Default::default()
        };
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => s.name = n.clone(),
                LinkAttribute::Address(m) if m.len() == 6 => {
                    s.mac = Some(m[..].try_into().unwrap())
                }
                LinkAttribute::Mtu(m) => s.mtu = *m,
                LinkAttribute::Stats64(st) => s.stats = Some(st.into()),
                LinkAttribute::Controller(m) => s.master = Some(*m),
                LinkAttribute::Link(p) => s.peer_index = Some(*p),
                LinkAttribute::IfAlias(a) => s.alias = Some(a.clone()),
                LinkAttribute::OperState(st) => {
                    s.oper = match st {
                        State::Up => OperState::Up,
                        State::Down => OperState::Down,
                        State::LowerLayerDown => OperState::LowerLayerDown,
                        State::Dormant => OperState::Dormant,
                        State::NotPresent => OperState::NotPresent,
                        State::Testing => OperState::Testing,
                        _ => OperState::Unknown,
                    }
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => s.kind = Some(k.to_string()),
                            LinkInfo::Data(InfoData::Bridge(b)) => {
                                let (mut fd, mut ma) = (None, None);
                                for o in b {
                                    match o {
                                        InfoBridge::StpState(st) => {
                                            s.stp = Some(!matches!(st, BridgeStpState::Disabled));
                                        }
                                        InfoBridge::ForwardDelay(x) => fd = Some(*x),
                                        InfoBridge::MaxAge(x) => ma = Some(*x),
                                        _ => {}
                                    }
                                }
                                s.stp_times_cs = fd.zip(ma);
                                s.bridge_stp = Some(super::observe::BridgeStp::from_attributes(b));
                            }
                            LinkInfo::Data(InfoData::Tun(t)) => {
                                let mut ts = TunState::default();
                                for o in t {
                                    let netlink_packet_route::link::InfoTun::Other(nla) = o else {
                                        continue;
                                    };
                                    let v = nla_bytes(nla);
                                    let b = v.first().copied().unwrap_or(0) != 0;
                                    let u = (v.len() >= 4)
                                        .then(|| u32::from_ne_bytes(v[..4].try_into().unwrap()));
                                    use netlink_packet_core::Nla;
                                    match nla.kind() {
                                        1 => ts.owner = u,
                                        2 => ts.group = u,
                                        3 => ts.tap = v.first() == Some(&2),
                                        4 => ts.pi = b,
                                        5 => ts.vnet_hdr = b,
                                        6 => ts.persist = b,
                                        7 => ts.multi_queue = b,
                                        _ => {}
                                    }
                                }
                                s.tun = Some(ts);
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                                s.port_stp = Some(super::observe::PortStp::from_attributes(p));
                                for o in p {
                                    if let InfoBridgePort::State(st) = o {
                                        s.port_state = Some(match st {
                                            BridgePortState::Disabled => PortState::Disabled,
                                            BridgePortState::Listening => PortState::Listening,
                                            BridgePortState::Learning => PortState::Learning,
                                            BridgePortState::Forwarding => PortState::Forwarding,
                                            _ => PortState::Blocking,
                                        });
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }
}

fn nla_bytes(nla: &netlink_packet_core::DefaultNla) -> Vec<u8> {
    use netlink_packet_core::Nla;
    let mut v = vec![0; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

#[derive(Debug, Clone)]
pub struct AddrState {
    pub index: u32,
    pub net: IpNet,
    pub tentative: bool,
    pub dad_failed: bool,
    pub link_local: bool,
}
