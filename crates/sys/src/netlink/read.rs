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
    /// incomplete, reachable, stale, delay, probe, failed, noarp, permanent.
    pub state: String,
    pub mac: Option<[u8; 6]>,
}

impl Netlink {
    /// `ip neigh show`.
    pub fn neighbours(&mut self) -> io::Result<Vec<NeighState>> {
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
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
                NeighbourState::Incomplete => "incomplete",
                NeighbourState::Reachable => "reachable",
                NeighbourState::Stale => "stale",
                NeighbourState::Delay => "delay",
                NeighbourState::Probe => "probe",
                NeighbourState::Failed => "failed",
                NeighbourState::Noarp => "noarp",
                NeighbourState::Permanent => "permanent",
                _ => "none",
            };
            if let Some(addr) = addr {
                out.push(NeighState {
                    index: n.header.ifindex,
                    addr,
                    state: state.into(),
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
    pub oper: String,
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
                LinkAttribute::Controller(m) => s.master = Some(*m),
                LinkAttribute::Link(p) => s.peer_index = Some(*p),
                LinkAttribute::IfAlias(a) => s.alias = Some(a.clone()),
                LinkAttribute::OperState(st) => {
                    s.oper = match st {
                        State::Up => "up",
                        State::Down => "down",
                        State::LowerLayerDown => "lowerlayerdown",
                        State::Dormant => "dormant",
                        State::NotPresent => "notpresent",
                        State::Testing => "testing",
                        _ => "unknown",
                    }
                    .into()
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
