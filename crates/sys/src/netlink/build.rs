//! Request builders: one function per `ip` command, each returning a
//! [`Request`] to queue on a [`super::Netlink`].

use std::net::IpAddr;
use std::os::fd::RawFd;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, BridgeStpState, In6AddrGenMode, InfoBridge, InfoBridgePort,
    InfoData, InfoKind, InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Request;

/// Settings of the kernel bridge; times in centiseconds (the kernel's
/// clock_t), `None` leaves the kernel's default. The same fields as
/// `weft_topo::BridgeOptions`, kept apart on purpose: this crate depends on
/// no weft crate, and the pure model on no OS crate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeSettings {
    pub stp: bool,
    pub forward_delay_cs: Option<u32>,
    pub hello_time_cs: Option<u32>,
    pub max_age_cs: Option<u32>,
    pub ageing_time_cs: Option<u32>,
    pub priority: Option<u16>,
}

impl BridgeSettings {
    fn info(&self) -> Vec<InfoBridge> {
        let mut v = vec![InfoBridge::StpState(if self.stp {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        })];
        // The kernel checks forward_delay against the STP range when it is
        // set, so it goes after StpState.
        if let Some(x) = self.forward_delay_cs {
            v.push(InfoBridge::ForwardDelay(x));
        }
        if let Some(x) = self.hello_time_cs {
            v.push(InfoBridge::HelloTime(x));
        }
        if let Some(x) = self.max_age_cs {
            v.push(InfoBridge::MaxAge(x));
        }
        if let Some(x) = self.ageing_time_cs {
            v.push(InfoBridge::AgeingTime(x));
        }
        if let Some(x) = self.priority {
            v.push(InfoBridge::Priority(x));
        }
        v
    }
}

/// Identity and create-time settings of a new link.
#[derive(Debug, Clone, Default)]
pub struct NewLink<'a> {
    /// The ifindex weft chose; 0 lets the kernel choose.
    pub index: u32,
    pub name: &'a str,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

fn link_msg(l: &NewLink) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = l.index;
    m.attributes.push(LinkAttribute::IfName(l.name.to_string()));
    if let Some(mtu) = l.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = l.mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    m
}

/// `ip link add NAME type bridge stp_state ... forward_delay ...`
pub fn new_bridge(l: &NewLink, s: &BridgeSettings) -> Request {
    let mut m = link_msg(l);
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(s.info())),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `ip link set NAME type bridge ...`: change a bridge's settings in place.
pub fn set_bridge(index: u32, s: &BridgeSettings) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(s.info())),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: 0,
    }
}

/// `ip link add A [master BR] type veth peer name B netns NS`: both ends in
/// one request, the peer straight into its namespace.
pub fn new_veth(a: &NewLink, master: Option<u32>, b: &NewLink, b_netns: Option<RawFd>) -> Request {
    let mut m = link_msg(a);
    if let Some(br) = master {
        m.attributes.push(LinkAttribute::Controller(br));
    }
    let mut p = link_msg(b);
    if let Some(fd) = b_netns {
        p.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `ip link add link LOWER name NAME netns NS type macvlan mode bridge`,
/// sent in LOWER's namespace: the new device appears in `netns`. Index 0
/// in `l` lets the kernel choose.
pub fn new_macvlan(l: &NewLink, lower: u32, netns: RawFd) -> Request {
    let mut m = link_msg(l);
    m.attributes.push(LinkAttribute::Link(lower));
    m.attributes.push(LinkAttribute::NetNsFd(netns));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
            MacVlanMode::Bridge,
        )])),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// A VXLAN device to a single unicast peer.
#[derive(Debug, Clone)]
pub struct VxlanSpec {
    pub vni: u32,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// UDP destination port (and the port the underlay socket binds).
    pub port: u16,
}

/// `ip link add NAME netns NS type vxlan id VNI local L remote R dstport
/// P`, sent from the namespace that is to carry the VXLAN UDP socket (the
/// underlay): the kernel keeps the socket there and puts the device in
/// `netns`.
pub fn new_vxlan(l: &NewLink, v: &VxlanSpec, netns: RawFd) -> Request {
    use netlink_packet_route::link::InfoVxlan;
    let mut m = link_msg(l);
    m.attributes.push(LinkAttribute::NetNsFd(netns));
    let mut data = vec![InfoVxlan::Id(v.vni)];
    match (v.local, v.remote) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            data.push(InfoVxlan::Local(a));
            data.push(InfoVxlan::Group(b));
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            data.push(InfoVxlan::Local6(a));
            data.push(InfoVxlan::Group6(b));
        }
        // The topology file refuses mixed families; the kernel would too.
        (a, b) => {
            data.push(match a {
                IpAddr::V4(a) => InfoVxlan::Local(a),
                IpAddr::V6(a) => InfoVxlan::Local6(a),
            });
            data.push(match b {
                IpAddr::V4(b) => InfoVxlan::Group(b),
                IpAddr::V6(b) => InfoVxlan::Group6(b),
            });
        }
    }
    data.push(InfoVxlan::Port(v.port));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: NLM_F_CREATE | NLM_F_EXCL,
    }
}

/// `ip link set dev X [up|down] [mtu N] [address MAC] [master BR|nomaster]
/// [alias TEXT]`.
#[derive(Debug, Clone, Default)]
pub struct SetLink {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// `Some(0)` is `nomaster`.
    pub master: Option<u32>,
    pub alias: Option<String>,
}

pub fn set_link(index: u32, s: &SetLink) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(up) = s.up {
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
    }
    if let Some(mtu) = s.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = s.mac {
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(br) = s.master {
        m.attributes.push(LinkAttribute::Controller(br));
    }
    if let Some(a) = &s.alias {
        m.attributes.push(LinkAttribute::IfAlias(a.clone()));
    }
    Request {
        msg: RouteNetlinkMessage::SetLink(m),
        flags: 0,
    }
}

/// `ip link set dev X addrgenmode none`: the device makes no IPv6
/// link-local address when it comes up. Sent before the device is first
/// brought up; the kernel refuses it inside the creating request
/// (EAFNOSUPPORT: the device has no IPv6 state until it is registered).
/// Per device rather than the namespace's
/// `net.ipv6.conf.default.addr_gen_mode`, whose handler only try-locks
/// RTNL and restarts the write until it gets it, spinning a CPU while
/// another thread builds.
pub fn set_addr_gen_mode_none(index: u32) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    Request {
        msg: RouteNetlinkMessage::SetLink(m),
        flags: 0,
    }
}

/// `ip link set dev X type bridge_slave cost N priority N`.
pub fn set_port(index: u32, cost: Option<u32>, priority: Option<u16>) -> Request {
    let mut opts = Vec::new();
    if let Some(c) = cost {
        opts.push(InfoBridgePort::Cost(c));
    }
    if let Some(p) = priority {
        opts.push(InfoBridgePort::Priority(p));
    }
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(opts)),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: 0,
    }
}

/// `ip link set dev X type bridge_slave hairpin on|off`: whether frames may
/// leave by the port they came in on.
pub fn set_hairpin(index: u32, on: bool) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )])),
    ]));
    Request {
        msg: RouteNetlinkMessage::NewLink(m),
        flags: 0,
    }
}

/// `ip link del dev X`.
pub fn del_link(index: u32) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    Request {
        msg: RouteNetlinkMessage::DelLink(m),
        flags: 0,
    }
}

/// Whether a request adds (`ip ... replace`) or removes (`ip ... del`)
/// what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

/// `ip addr replace NET dev X` (or `del`). IPv6 addresses skip duplicate
/// address detection: weft checked them unique before building, and DAD
/// would keep them unusable for ~2 s.
pub fn address(change: Change, index: u32, net: IpNet) -> Request {
    let add = change == Change::Add;
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = net.prefix_len();
    m.header.scope = AddressScope::Universe;
    match net.addr() {
        IpAddr::V4(a) => {
            m.header.family = AddressFamily::Inet;
            m.attributes.push(AddressAttribute::Local(IpAddr::V4(a)));
            m.attributes.push(AddressAttribute::Address(IpAddr::V4(a)));
            if let IpNet::V4(n) = net {
                if n.prefix_len() < 31 {
                    m.attributes
                        .push(AddressAttribute::Broadcast(n.broadcast()));
                }
            }
        }
        IpAddr::V6(a) => {
            m.header.family = AddressFamily::Inet6;
            m.attributes.push(AddressAttribute::Address(IpAddr::V6(a)));
            if add {
                m.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
    }
    if a_is_loopback(net.addr()) {
        m.header.scope = AddressScope::Host;
    }
    Request {
        msg: if add {
            RouteNetlinkMessage::NewAddress(m)
        } else {
            RouteNetlinkMessage::DelAddress(m)
        },
        flags: if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 },
    }
}

fn a_is_loopback(a: IpAddr) -> bool {
    a.is_loopback()
}

/// A route in kernel terms (interfaces already resolved to indexes).
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    pub dst: Option<IpNet>,
    pub ipv6: bool,
    pub kind: RouteKindSpec,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    pub table: Option<u32>,
    pub mtu: Option<u32>,
    pub onlink: bool,
    pub scope_link: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteKindSpec {
    #[default]
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
}

fn raddr(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

/// `ip route replace ...` (or `del`), with iproute2's defaults: protocol
/// static, scope link for a gateway-less unicast route.
pub fn route(change: Change, r: &RouteSpec) -> Request {
    let add = change == Change::Add;
    let mut h = RouteHeader {
        address_family: if r.ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        },
        protocol: RouteProtocol::Static,
        ..Default::default()
    };
    let table = r.table.unwrap_or(254);
    h.table = if table < 256 { table as u8 } else { 0 };
    h.kind = match r.kind {
        RouteKindSpec::Unicast => RouteType::Unicast,
        RouteKindSpec::Blackhole => RouteType::BlackHole,
        RouteKindSpec::Unreachable => RouteType::Unreachable,
        RouteKindSpec::Prohibit => RouteType::Prohibit,
    };
    h.scope = if !add {
        RouteScope::NoWhere
    } else if r.scope_link || (r.kind == RouteKindSpec::Unicast && r.via.is_none()) {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if r.onlink {
        h.flags = RouteFlags::Onlink;
    }
    let mut attrs = Vec::new();
    if let Some(d) = r.dst {
        h.destination_prefix_length = d.prefix_len();
        attrs.push(RouteAttribute::Destination(raddr(d.network())));
    }
    attrs.push(RouteAttribute::Table(table));
    if let Some(v) = r.via {
        attrs.push(RouteAttribute::Gateway(raddr(v)));
    }
    if let Some(o) = r.oif {
        attrs.push(RouteAttribute::Oif(o));
    }
    if let Some(s) = r.src {
        attrs.push(RouteAttribute::PrefSource(raddr(s)));
    }
    if let Some(m) = r.metric {
        attrs.push(RouteAttribute::Priority(m));
    }
    if let Some(m) = r.mtu {
        attrs.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(m)]));
    }
    let mut msg = RouteMessage::default();
    msg.header = h;
    msg.attributes = attrs;
    Request {
        msg: if add {
            RouteNetlinkMessage::NewRoute(msg)
        } else {
            RouteNetlinkMessage::DelRoute(msg)
        },
        flags: if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};

    fn bytes(r: Request) -> Vec<u8> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | r.flags;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(r.msg));
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    #[test]
    fn address_v4_has_local_and_broadcast() {
        let b = bytes(address(Change::Add, 7, "10.0.0.2/24".parse().unwrap()));
        // nlmsghdr (16) + ifaddrmsg (8): family 2, prefix 24, index 7.
        assert_eq!(b[16], libc::AF_INET as u8);
        assert_eq!(b[17], 24);
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 7);
        let flags = u16::from_ne_bytes(b[6..8].try_into().unwrap());
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE);
        // IFA_LOCAL (2) = 10.0.0.2 is in there, and IFA_BROADCAST 10.0.0.255.
        assert!(b.windows(8).any(|w| w == [8, 0, 2, 0, 10, 0, 0, 2]));
        assert!(b.windows(8).any(|w| w == [8, 0, 4, 0, 10, 0, 0, 255]));
    }

    #[test]
    fn gatewayless_route_is_scope_link() {
        let r = RouteSpec {
            dst: Some("10.1.0.0/16".parse().unwrap()),
            oif: Some(3),
            ..Default::default()
        };
        let b = bytes(route(Change::Add, &r));
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type
        assert_eq!(&b[16..24], &[libc::AF_INET as u8, 16, 0, 0, 254, 4, 253, 1]);
    }

    #[test]
    fn addr_gen_mode_none_is_nested_in_af_spec_inet6() {
        let b = bytes(set_addr_gen_mode_none(1005));
        // RTM_SETLINK (19) for index 1005, no flag change.
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 19);
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 1005);
        assert_eq!(&b[24..32], &[0; 8]);
        // IFLA_AF_SPEC (26) > AF_INET6 (10) > IFLA_INET6_ADDR_GEN_MODE (8)
        // = IN6_ADDR_GEN_MODE_NONE (1), padded to 4 bytes.
        let nla = &b[32..];
        assert_eq!(nla.len(), 16);
        assert_eq!(u16::from_ne_bytes(nla[0..2].try_into().unwrap()), 16);
        assert_eq!(
            u16::from_ne_bytes(nla[2..4].try_into().unwrap()) & 0x3fff,
            26
        );
        assert_eq!(u16::from_ne_bytes(nla[4..6].try_into().unwrap()), 12);
        assert_eq!(
            u16::from_ne_bytes(nla[6..8].try_into().unwrap()) & 0x3fff,
            10
        );
        assert_eq!(&nla[8..16], &[5, 0, 8, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn vxlan_has_vni_ends_port_and_target_namespace() {
        let b = bytes(new_vxlan(
            &NewLink {
                index: 1001,
                name: "vx0",
                mtu: Some(1450),
                mac: None,
            },
            &VxlanSpec {
                vni: 0x0a0b0c,
                local: "192.0.2.1".parse().unwrap(),
                remote: "192.0.2.2".parse().unwrap(),
                port: 4789,
            },
            9,
        ));
        // ifinfomsg: index 1001.
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 1001);
        // IFLA_NET_NS_FD (28) = 9; IFLA_INFO_KIND "vxlan".
        assert!(b.windows(8).any(|w| w == [8, 0, 28, 0, 9, 0, 0, 0]));
        assert!(b
            .windows(10)
            .any(|w| w == [10, 0, 1, 0, b'v', b'x', b'l', b'a', b'n', 0]));
        // IFLA_VXLAN_ID (1), _GROUP (2, the remote), _LOCAL (4), and
        // _PORT (15) in network byte order.
        assert!(b.windows(8).any(|w| w == [8, 0, 1, 0, 0x0c, 0x0b, 0x0a, 0]));
        assert!(b.windows(8).any(|w| w == [8, 0, 2, 0, 192, 0, 2, 2]));
        assert!(b.windows(8).any(|w| w == [8, 0, 4, 0, 192, 0, 2, 1]));
        assert!(b.windows(6).any(|w| w == [6, 0, 15, 0, 0x12, 0xb5]));
    }
}
