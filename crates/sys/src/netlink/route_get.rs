//! `ip route get`: the route the kernel would choose (RTM_GETROUTE).

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::socket::RBUF_TLS;
use super::Netlink;

/// The kernel's answer to `ip route get DST [oif IFINDEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    /// unicast, local, broadcast, unreachable, prohibit, blackhole, ...
    pub kind: String,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub source: Option<IpAddr>,
}

impl Netlink {
    /// Ask the kernel which route a packet to `dst` takes. `Err` with
    /// ENETUNREACH (or EHOSTUNREACH) when there is none.
    pub fn route_get(&mut self, dst: IpAddr, oif: Option<u32>) -> io::Result<RouteLookup> {
        assert!(self.queue.is_empty(), "flush before a lookup");
        let mut m = RouteMessage::default();
        m.header.address_family = if dst.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        m.attributes.push(RouteAttribute::Destination(match dst {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        if let Some(o) = oif {
            m.attributes.push(RouteAttribute::Oif(o));
        }
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST;
        hdr.sequence_number = self.seq;
        self.seq += 1;
        let mut req = NetlinkMessage::new(
            hdr,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetRoute(m)),
        );
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        RBUF_TLS.with(|b| {
            let rbuf = &mut b.borrow_mut()[..];
            loop {
                let n = self.recv(rbuf)?;
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[..n]) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "undecodable route answer",
                    ));
                };
                match msg.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                        let mut out = RouteLookup {
                            kind: route_type_name(r.header.kind),
                            oif: None,
                            gateway: None,
                            source: None,
                        };
                        for a in &r.attributes {
                            match a {
                                RouteAttribute::Oif(o) => out.oif = Some(*o),
                                RouteAttribute::Gateway(RouteAddress::Inet(g)) => {
                                    out.gateway = Some((*g).into())
                                }
                                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => {
                                    out.gateway = Some((*g).into())
                                }
                                RouteAttribute::PrefSource(RouteAddress::Inet(s)) => {
                                    out.source = Some((*s).into())
                                }
                                RouteAttribute::PrefSource(RouteAddress::Inet6(s)) => {
                                    out.source = Some((*s).into())
                                }
                                _ => {}
                            }
                        }
                        return Ok(out);
                    }
                    _ => {}
                }
            }
        })
    }
}

/// `ip route`'s word for a route type (`local`, `unicast`, ...): callers
/// compare it, so it must not follow the netlink crate's Debug output.
fn route_type_name(t: netlink_packet_route::route::RouteType) -> String {
    use netlink_packet_route::route::RouteType;
    match t {
        RouteType::Unspec => "unspec",
        RouteType::Unicast => "unicast",
        RouteType::Local => "local",
        RouteType::Broadcast => "broadcast",
        RouteType::Anycast => "anycast",
        RouteType::Multicast => "multicast",
        RouteType::BlackHole => "blackhole",
        RouteType::Unreachable => "unreachable",
        RouteType::Prohibit => "prohibit",
        RouteType::Throw => "throw",
        RouteType::Nat => "nat",
        RouteType::ExternalResolve => "xresolve",
        other => return format!("type {}", u8::from(other)),
    }
    .to_string()
}
