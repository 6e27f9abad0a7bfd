//! `kind = "tunnel"` links: each end becomes a TUN or TAP interface that a
//! `weft tunnel` process serves, over the underlay addresses the link names.

use std::net::IpAddr;

use toml::Spanned;

use super::{Cx, RawLink, Span};
use crate::model::*;

/// The default port of the first tunnel link; the next ones count up.
pub const FIRST_PORT: u16 = 5000;

/// Bytes the tunnel adds on a UDP underlay (outer IP and UDP headers, and
/// weft-tunnel's 32), plus the inner Ethernet header in TAP mode.
pub fn tunnel_overhead(v6: bool, tap: bool) -> u32 {
    (if v6 { 80 } else { 60 }) + if tap { 14 } else { 0 }
}

impl Cx<'_> {
    pub(super) fn add_tunnel(&mut self, lab: &mut Lab, link: &Spanned<RawLink>) {
        let l = link.get_ref();
        let tap = match l.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("tun", _)) => false,
            Some(("tap", _)) => true,
            Some((other, span)) => {
                self.err(
                    Some(span),
                    format!("tunnel mode `{other}` is not known"),
                    "write mode = \"tun\" (IP packets, the default) or mode = \"tap\" (Ethernet frames)",
                );
                return;
            }
        };
        let tcp = match l
            .transport
            .as_ref()
            .map(|m| (m.get_ref().as_str(), m.span()))
        {
            None | Some(("udp", _)) => false,
            Some(("tcp", _)) => true,
            Some((other, span)) => {
                self.err(
                    Some(span),
                    format!("tunnel transport `{other}` is not known"),
                    "write transport = \"udp\" (the default) or transport = \"tcp\"",
                );
                return;
            }
        };
        if self.add_tunnel_across(lab, link, tap, tcp) {
            return;
        }
        let Some(under) = &l.underlay else {
            self.err(
                Some(link.span()),
                "a tunnel link needs `underlay`: each end's address on the network that carries the tunnel",
                "add underlay = [\"ADDRESS OF THE FIRST END'S NODE\", \"ADDRESS OF THE SECOND'S\"]",
            );
            return;
        };
        if under.get_ref().len() != 2 {
            self.err(
                Some(under.span()),
                format!(
                    "`underlay` has {} addresses; a tunnel link has two ends",
                    under.get_ref().len()
                ),
                "give one address per endpoint, in the same order",
            );
            return;
        }
        let mut addrs = Vec::new();
        for u in under.get_ref() {
            match u.get_ref().parse::<IpAddr>() {
                Ok(a) => addrs.push(a),
                Err(_) => {
                    self.err(
                        Some(u.span()),
                        format!("underlay address `{}` is not an IP address", u.get_ref()),
                        "write a bare address without a prefix, like \"10.77.0.1\"",
                    );
                    return;
                }
            }
        }
        let mut eps = Vec::new();
        for e in &l.endpoints {
            match self.endpoint(lab, e) {
                Some(ep) => eps.push(ep),
                None => return,
            }
        }
        if eps[0] == eps[1] {
            self.err(
                Some(link.span()),
                format!("tunnel link from `{}` to itself", eps[0]),
                "name two different interfaces",
            );
            return;
        }
        let mtu = match &l.mtu {
            Some(m) => {
                self.check_mtu(&eps[0].node, m);
                *m.get_ref()
            }
            None => 1500 - tunnel_overhead(addrs.iter().any(|a| a.is_ipv6()), tap),
        };
        let ends = [
            TunnelEnd {
                endpoint: eps[0].clone(),
                underlay: addrs[0],
            },
            TunnelEnd {
                endpoint: eps[1].clone(),
                underlay: addrs[1],
            },
        ];
        let spans = [under.get_ref()[0].span(), under.get_ref()[1].span()];
        self.push_tunnel(lab, l, ends, tap, tcp, mtu, false, spans);
    }

    /// Makes both ends TUN or TAP devices (MTU `mtu` unless the file set
    /// one), picks the port, and records the tunnel with the positions
    /// [`Cx::check_tunnels`] reports against.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push_tunnel(
        &mut self,
        lab: &mut Lab,
        l: &RawLink,
        ends: [TunnelEnd; 2],
        tap: bool,
        tcp: bool,
        mtu: u32,
        across: bool,
        spans: [Span; 2],
    ) {
        for end in &ends {
            let ep = &end.endpoint;
            let iface = lab
                .nodes
                .get_mut(&ep.node)
                .expect("endpoint resolved")
                .interfaces
                .get_mut(&ep.iface)
                .expect("endpoint resolved");
            iface.kind = if tap {
                IfaceKind::Tap(TunOptions::default())
            } else {
                IfaceKind::Tun(TunOptions::default())
            };
            if iface.mtu.is_none() {
                iface.mtu = Some(mtu);
            }
        }
        let port = match &l.port {
            Some(p) if *p.get_ref() == 0 => {
                // Port 0 asks the kernel for any free port: the other end
                // could never know where to send.
                self.err(
                    Some(p.span()),
                    "tunnel link: port 0 is not a UDP or TCP port the other end can reach",
                    format!(
                        "write a port from 1 to 65535, or leave it out for {FIRST_PORT} and up"
                    ),
                );
                0
            }
            Some(p) => *p.get_ref(),
            None => FIRST_PORT.saturating_add(lab.tunnels.len() as u16),
        };
        let cipher = match &l.cipher {
            None => None,
            Some(c) if c.get_ref() == "auto" => None,
            Some(c) if TUNNEL_CIPHERS.contains(&c.get_ref().as_str()) => Some(c.get_ref().clone()),
            Some(c) => {
                self.err(
                    Some(c.span()),
                    format!("tunnel cipher `{}` is not known", c.get_ref()),
                    "write cipher = \"auto\" (the default: AES-256-GCM where both ends' CPUs have AES instructions), \"chacha20-poly1305\" or \"aes-256-gcm\"",
                );
                None
            }
        };
        lab.tunnels.push(TunnelLink {
            ends,
            tap,
            port,
            tcp,
            across,
            impair: None,
            cipher,
        });
        self.tunnel_spans.push(spans);
    }

    /// After addresses are known (including `attach`'s): each underlay
    /// address belongs to its end's node, on another interface.
    pub(super) fn check_tunnels(&mut self, lab: &Lab) {
        let spans = std::mem::take(&mut self.tunnel_spans);
        for (t, spans) in lab.tunnels.iter().zip(spans) {
            if t.across {
                continue;
            }
            for (end, span) in t.ends.iter().zip(spans) {
                let Some(node) = lab.nodes.get(&end.endpoint.node) else {
                    continue;
                };
                let owner = node
                    .interfaces
                    .values()
                    .find(|i| i.addresses.iter().any(|a| a.addr() == end.underlay));
                match owner {
                    None => {
                        let has: Vec<String> = node
                            .interfaces
                            .values()
                            .flat_map(|i| i.addresses.iter().map(|a| a.addr().to_string()))
                            .collect();
                        self.err(
                            Some(span),
                            format!("underlay address {} is not an address of node `{}`", end.underlay, node.name),
                            if has.is_empty() {
                                format!("give one of `{}`'s other interfaces that address", node.name)
                            } else {
                                format!("`{}` has {}", node.name, has.join(", "))
                            },
                        );
                    }
                    Some(i) if i.name == end.endpoint.iface => self.err(
                        Some(span),
                        format!("underlay address {} is on the tunnel's own interface `{}`", end.underlay, end.endpoint),
                        "the underlay is the network that carries the tunnel: use an address of another interface",
                    ),
                    Some(_) => {}
                }
            }
        }
    }
}
