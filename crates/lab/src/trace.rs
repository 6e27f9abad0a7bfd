//! `weft trace`: what the kernels of a lab do with a packet from a node to
//! a target, asked of the kernels (route lookup, neighbour table, link and
//! STP state) and proved by a real probe captured on every interface of
//! the path.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_see::decode::{summarize, Kind};
use weft_topo::{Endpoint, IfaceKind, Lab};

use crate::apply::NsHandle;
use crate::capture::{Capture, Point};
use crate::Error;

/// Where the packet ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The probe was answered.
    Delivered,
    NoRoute,
    /// ARP (or ND) for the next hop got no answer.
    ArpUnanswered,
    /// A bridge port on the way does not forward (STP).
    StpBlocked,
    /// The sender's switch port and the target's share no VLAN.
    VlanMismatch,
    /// The request arrived and the node dropped it on reverse-path check.
    RpFilter,
    /// The request arrived but no reply came back, for a reason weft
    /// cannot name.
    Unanswered,
}

/// What `trace` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// One ICMP echo request (the default).
    Icmp,
    /// UDP datagrams to this port (up to three); a reply, or an ICMP
    /// port-unreachable, proves delivery.
    Udp(u16),
    /// A TCP connection attempt to this port; a SYN-ACK (open) or a RST
    /// (closed) proves delivery.
    Tcp(u16),
}

impl Probe {
    fn name(self) -> String {
        match self {
            Probe::Icmp => "ICMP echo request".into(),
            Probe::Udp(p) => format!("UDP datagram to port {p}"),
            Probe::Tcp(p) => format!("TCP SYN to port {p}"),
        }
    }
}

pub struct Trace {
    pub steps: Vec<String>,
    pub verdict: Verdict,
}

struct Captured {
    point: Endpoint,
    kind: Kind,
}

fn ep_of(lab: &Lab, node: &str, index: u32, h: &NsHandle) -> Option<Endpoint> {
    let name = h.index.iter().find(|(_, &i)| i == index)?.0.clone();
    lab.nodes.get(node)?.interfaces.get(&name)?;
    Some(Endpoint::new(node, &name))
}

fn owner(lab: &Lab, addr: IpAddr) -> Option<Endpoint> {
    lab.nodes.values().find_map(|n| {
        n.interfaces
            .values()
            .find(|i| i.addresses.iter().any(|a| a.addr() == addr))
            .map(|i| Endpoint::new(&n.name, &i.name))
    })
}

fn sysctl_in(netns: &str, key: &str) -> Option<String> {
    let key = key.to_string();
    weft_sys::netns::run_in_named(netns, move || weft_sys::sysctl::read(&key).ok())
        .ok()
        .flatten()
}

/// Follows a packet through the routers after `first` (the interface it
/// entered by) until it reaches the target's node, a node that does not
/// forward, or one without a route; each hop is a step and its two
/// interfaces join the capture points. Returns why a router on the way
/// drops the packet (it does not forward, or has no route), if one does.
fn follow_routers(
    lab: &Lab,
    dst: IpAddr,
    first: &Endpoint,
    target: Option<&Endpoint>,
    points: &mut Vec<Endpoint>,
    steps: &mut Vec<String>,
) -> Option<String> {
    let key = if dst.is_ipv4() {
        "net.ipv4.ip_forward"
    } else {
        "net.ipv6.conf.all.forwarding"
    };
    let mut at = first.clone();
    for _ in 0..32 {
        if target.is_some_and(|t| t.node == at.node) {
            return None;
        }
        let n = lab.nodes.get(&at.node)?;
        if n.switch.is_some() || lab.iface(&at).is_some_and(|i| i.master.is_some()) {
            return None;
        }
        if sysctl_in(&n.netns, key).as_deref() != Some("1") {
            let why = format!(
                "the packet enters {at}, and {} does not forward ({key} = 0): it is dropped there",
                at.node
            );
            steps.push(format!("3. router: {why}"));
            return Some(why);
        }
        let Ok(mut h) = NsHandle::open(&at.node, &n.netns) else {
            return None;
        };
        let r = match h.nl.route_get(dst, None) {
            Ok(r) => r,
            Err(e) => {
                let why = format!(
                    "{} forwards, but has no route to {dst} ({e}); a routing daemon there may not have learned it yet",
                    at.node
                );
                steps.push(format!("3. router: {why}"));
                return Some(why);
            }
        };
        let out = r.oif.and_then(|o| ep_of(lab, &at.node, o, &h))?;
        steps.push(format!(
            "3. router: {} forwards it (`ip route get {dst}` there: {} route out of {}{}; configured by weft or learned by a routing daemon)",
            at.node,
            r.kind,
            out.iface,
            r.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
        ));
        let Some(IfaceKind::Veth { peer: next }) = lab.iface(&out).map(|i| &i.kind) else {
            return None;
        };
        for e in [at.clone(), out.clone(), next.clone()] {
            if !points.contains(&e) {
                points.push(e);
            }
        }
        let next = next.clone();
        steps.push(format!("3. cable: {out} is a veth; its peer is {next}"));
        // A bridge in between: its other ports towards the next router
        // are found by the next hop's address.
        if lab.iface(&next).is_some_and(|i| i.master.is_some()) {
            let gw = r.gateway.unwrap_or(dst);
            let o = owner(lab, gw)?;
            steps.push(format!(
                "3. bridge: {next} is a port of bridge {}; the frame goes on to {o}, which has {gw}",
                next.node
            ));
            if let Some(IfaceKind::Veth { peer: bp }) = lab.iface(&o).map(|i| &i.kind) {
                if !points.contains(bp) {
                    points.push(bp.clone());
                }
            }
            if !points.contains(&o) {
                points.push(o.clone());
            }
            at = o;
        } else {
            at = next;
        }
    }
    None
}

/// A switch port's VLAN membership, described and as a list.
fn port_vlans(sw: &weft_topo::SwitchOptions, iface: &str) -> (String, Vec<u16>) {
    match sw.ports.get(iface).map(|p| &p.mode) {
        Some(weft_topo::SwitchPortMode::Trunk { allowed, native }) => {
            let mut v = allowed.clone();
            v.extend(native.iter().copied());
            (
                format!(
                    "a trunk for VLANs {}{}",
                    allowed
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    native.map(|n| format!(", native {n}")).unwrap_or_default()
                ),
                v,
            )
        }
        Some(weft_topo::SwitchPortMode::Access(v)) => {
            (format!("an access port of VLAN {v}"), vec![*v])
        }
        None => ("an access port of VLAN 1".into(), vec![1]),
    }
}

/// Send a UDP or TCP probe from the calling thread's namespace; true if
/// the target answered at all (a reply, a connection, or a refusal).
fn send_probe(probe: Probe, dst: IpAddr, port: u16, dev: Option<&str>) -> bool {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let to = SockAddr::from(std::net::SocketAddr::new(dst, port));
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let (ty, proto) = match probe {
        Probe::Tcp(_) => (Type::STREAM, Protocol::TCP),
        _ => (Type::DGRAM, Protocol::UDP),
    };
    let Ok(sock) = Socket::new(domain, ty, Some(proto)) else {
        return false;
    };
    if let Some(d) = dev {
        let _ = sock.bind_device(Some(d.as_bytes()));
    }
    let wait = Duration::from_millis(1500);
    match probe {
        Probe::Tcp(_) => match sock.connect_timeout(&to, wait) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        },
        _ => {
            if sock.connect(&to).is_err() {
                return false;
            }
            // Up to three datagrams, like traceroute: the kernel rate-limits
            // ICMP errors (one machine-wide budget), so one port-unreachable
            // can go missing.
            let _ = sock.set_read_timeout(Some(wait / 3));
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
            (0..3).any(|_| {
                if sock.send(b"weft trace probe").is_err() {
                    return false;
                }
                match sock.recv(&mut buf) {
                    Ok(_) => true,
                    // A connected UDP socket learns of ICMP port unreachable.
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                }
            })
        }
    }
}

/// Why `owner` would refuse an ARP request (and anything else) from `src`:
/// the kernel validates a packet's source before answering it. A source
/// that is one of the receiver's own addresses (a veth pair inside one
/// namespace, experiment 4) is a martian unless accept_local is on, and
/// with rp_filter on the kernel also wants the reply to leave by the
/// interface the request came in on, which for a local address it never
/// does (it goes over lo).
fn source_check(lab: &Lab, owner: &Endpoint, src: Option<IpAddr>) -> Option<String> {
    let src = src?;
    let n = lab.nodes.get(&owner.node)?;
    let own = n
        .interfaces
        .values()
        .any(|i| i.addresses.iter().any(|a| a.addr() == src));
    let get = |k: String| sysctl_in(&n.netns, &k).unwrap_or_default();
    let conf = |what: &str| {
        (
            get(format!("net.ipv4.conf.all.{what}")),
            get(format!("net.ipv4.conf.{}.{what}", owner.iface)),
        )
    };
    let (al_all, al_dev) = conf("accept_local");
    let (rp_all, rp_dev) = conf("rp_filter");
    let rp_on = rp_all.trim() != "0" || rp_dev.trim() != "0";
    if own && al_all.trim() == "0" && al_dev.trim() == "0" {
        Some(format!(
            "the request's sender {src} is an address of {} itself, and {owner} drops packets from its own addresses unless accept_local is on (net.ipv4.conf.{}.accept_local = {al_dev}); set accept_local = 1{} on both ends, as the seed article does",
            owner.node,
            owner.iface,
            if rp_on { " and rp_filter = 0" } else { "" }
        ))
    } else if own && rp_on {
        Some(format!(
            "the request's sender {src} is an address of {} itself; accept_local lets it in, but rp_filter is on (all = {}, {} = {}), and the way back to {src} is lo, not {}: set rp_filter = 0",
            owner.node,
            rp_all.trim(),
            owner.iface,
            rp_dev.trim(),
            owner.iface
        ))
    } else {
        None
    }
}

/// Trace an ICMP echo from `node` to `target` (an address or node name),
/// out of `iface` if given (like `ping -I`).
pub fn trace(
    lab_name: &str,
    node: &str,
    target: &str,
    iface: Option<&str>,
    probe: Probe,
) -> Result<Trace, Error> {
    // For a lab built here as machine shares: the share with the node.
    let st = crate::built_with(lab_name, node)?;
    let lab_name = st.lab.name.as_str();
    let lab = &st.lab;
    let n = lab.nodes.get(node).ok_or_else(|| Error::NoNode {
        lab: lab_name.into(),
        node: node.into(),
        known: lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    let dst = crate::resolve_target(lab, target)?;
    let mut steps = Vec::new();
    let mut h = NsHandle::open(node, &n.netns)?;
    let oif = match iface {
        Some(i) => Some(*h.index.get(i).ok_or_else(|| {
            let mut known: Vec<&str> = h.index.keys().map(String::as_str).collect();
            known.sort_unstable();
            Error::NoInterface {
                node: node.to_string(),
                iface: i.to_string(),
                known: known.join(", "),
            }
        })?),
        None => None,
    };
    // 1. The route.
    let r = match h.nl.route_get(dst, oif) {
        Ok(r) => r,
        Err(e) => {
            steps.push(format!(
                "1. route: {node}'s kernel has no route to {dst} ({e}); its routes: {}. The packet dies before it leaves: add a route or an address in {dst}'s network.",
                if n.routes.is_empty() { "only the connected networks of its addresses".to_string() } else { n.routes.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ") }
            ));
            return Ok(Trace {
                steps,
                verdict: Verdict::NoRoute,
            });
        }
    };
    let out = r.oif.and_then(|o| ep_of(lab, node, o, &h));
    let out_name = r
        .oif
        .and_then(|o| {
            h.index
                .iter()
                .find(|(_, &i)| i == o)
                .map(|(k, _)| k.clone())
        })
        .unwrap_or_else(|| "?".into());
    let src = r.source;
    steps.push(format!(
        "1. route: `ip route get {dst}`{} in {node}: {} route, out of {out_name}{}{}",
        iface.map(|i| format!(" oif {i}")).unwrap_or_default(),
        r.kind,
        r.gateway
            .map(|g| format!(", via gateway {g}"))
            .unwrap_or_default(),
        src.map(|s| format!(", source address {s}"))
            .unwrap_or_default()
    ));
    if r.kind == "local" {
        steps.push(format!(
            "2. {dst} is an address of {node} itself: the kernel delivers the packet locally over lo, never onto a cable"
        ));
    }
    // 2. Neighbour and the cable.
    let next_hop = r.gateway.unwrap_or(dst);
    let mut peer: Option<Endpoint> = None;
    if let Some(o) = &out {
        if let Some(i) = lab.iface(o) {
            if let IfaceKind::Veth { peer: p } = &i.kind {
                peer = Some(p.clone());
            }
        }
    }
    if r.kind != "local" {
        let neigh =
            h.nl.neighbours()
                .map_err(|e| Error::io(format!("reading the neighbour table of {node}"), e))?;
        let ns = neigh
            .iter()
            .find(|x| x.addr == next_hop && Some(x.index) == r.oif)
            .map(|x| x.state.to_string())
            .unwrap_or_else(|| "none (it will ask with ARP)".into());
        steps.push(format!(
            "2. neighbour: {node} needs the MAC address of {next_hop} on {out_name}; its neighbour entry now: {ns}"
        ));
        match &peer {
            Some(p) => steps.push(format!(
                "3. cable: {node}:{out_name} is a veth; whatever it sends comes out of its peer {p}"
            )),
            None => steps.push(format!(
                "3. cable: {node}:{out_name} is not a veth; weft follows it no further"
            )),
        }
    }
    // 3. The bridge on the far end, if any.
    let mut points: Vec<Endpoint> = out.iter().cloned().collect();
    let mut blocked = None;
    if let Some(p) = &peer {
        points.push(p.clone());
        let pn = &lab.nodes[&p.node];
        if let Some(master) = pn.interfaces.get(&p.iface).and_then(|i| i.master.clone()) {
            let status = crate::status(Some(lab_name))?;
            let port_state = |e: &Endpoint| {
                status[0]
                    .nodes
                    .iter()
                    .find(|x| x.name == e.node)
                    .and_then(|x| x.interfaces.iter().find(|i| i.name == e.iface))
                    .and_then(|i| i.port_state)
                    .unwrap_or("unknown")
            };
            let ps = port_state(p);
            steps.push(format!(
                "4. bridge: {p} is a port of bridge {master} in {} (STP state {ps}); the bridge forwards by its learned MAC table, or floods to all forwarding ports",
                p.node
            ));
            if ps != "forwarding" {
                blocked = Some(format!("{p} is {ps}: a bridge port that is not forwarding drops every frame it receives"));
            }
            for i in pn.interfaces.values() {
                if i.master.as_deref() == Some(master.as_str()) && i.name != p.iface {
                    let e = Endpoint::new(&pn.name, &i.name);
                    let ps = port_state(&e);
                    let far = match &i.kind {
                        IfaceKind::Veth { peer } => format!(" to {peer}"),
                        _ => String::new(),
                    };
                    steps.push(format!("   port {e}{far}: {ps}"));
                    points.push(e);
                }
            }
        }
    }
    // 3b. A weft switch on the far end: VLANs decide who hears the frame.
    let mut vlan_block = None;
    if let Some(p) = &peer {
        if let Some(sw) = &lab.nodes[&p.node].switch {
            let (desc, vlans) = port_vlans(sw, &p.iface);
            steps.push(format!(
                "4. switch: {p}, a port of weft switch {}, is {desc}; a switch forwards a frame only within its VLAN (by its learned table, or flooding that VLAN)",
                p.node
            ));
            // The next hop's own switch port (on this switch or another one
            // across trunks, which carry every VLAN they allow).
            let far = owner(lab, next_hop).and_then(|o| match lab.iface(&o).map(|i| &i.kind) {
                Some(IfaceKind::Veth { peer: tp }) => Some((o, tp.clone())),
                _ => None,
            });
            if let Some((o, tp)) = far {
                if let Some(tsw) = &lab.nodes[&tp.node].switch {
                    let (tdesc, tvlans) = port_vlans(tsw, &tp.iface);
                    steps.push(format!("   {o} is behind {tp}, {tdesc}"));
                    if !points.contains(&tp) {
                        points.push(tp.clone());
                    }
                    if !vlans.iter().any(|v| tvlans.contains(v)) {
                        vlan_block = Some(format!(
                            "{p} is {desc} and {tp}, towards {o}, is {tdesc}: they share no VLAN, so frames from {node} never reach {o} (not even the ARP broadcast)"
                        ));
                    }
                }
            }
        }
    }
    let target_owner = owner(lab, dst);
    // 3b. Routers on the way: a node that is neither a bridge port nor the
    // target forwards by its own kernel's routes (configured by weft or
    // learned by a routing daemon such as FRR: to the kernel they are all
    // routes).
    let mut router_drop = None;
    if let Some(p) = &peer {
        let is_port = lab.iface(p).is_some_and(|i| i.master.is_some());
        let is_switch = lab.nodes[&p.node].switch.is_some();
        if !is_port && !is_switch {
            router_drop =
                follow_routers(lab, dst, p, target_owner.as_ref(), &mut points, &mut steps);
        }
    }
    if let Some(o) = &target_owner {
        if !points.contains(o) && r.kind != "local" {
            points.push(o.clone());
        }
        let lo = Endpoint::new(&o.node, "lo");
        if !points.contains(&lo) {
            points.push(lo);
        }
    }
    // 4. The probe, captured on every interface of the path.
    let cap_points: Vec<Point> = points
        .iter()
        .filter(|e| lab.iface(e).is_some())
        .map(|e| Point {
            node: e.node.clone(),
            iface: e.iface.clone(),
            netns: lab.nodes[&e.node].netns.clone(),
        })
        .collect();
    let expr = match probe {
        Probe::Icmp => "icmp or arp or icmp6".to_string(),
        Probe::Udp(p) => format!("icmp or arp or icmp6 or udp port {p}"),
        Probe::Tcp(p) => format!("icmp or arp or icmp6 or tcp port {p}"),
    };
    let filter = weft_see::filter::parse(&[expr]).expect("valid");
    let cap = Capture::open(cap_points, Some(&filter))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    let labels: Vec<Endpoint> = cap
        .points
        .iter()
        .map(|p| Endpoint::new(&p.node, &p.iface))
        .collect();
    let links = cap.links.clone();
    let handle = std::thread::spawn(move || {
        let _ = cap.run(
            &stop2,
            Some(Instant::now() + Duration::from_secs(5)),
            None,
            |p| {
                if let Some(s) = summarize(p.data, links[p.point]) {
                    let _ = tx.send(Captured {
                        point: labels[p.point].clone(),
                        kind: s.kind,
                    });
                }
                Ok(())
            },
        );
    });
    let opts = weft_sys::ping::PingOptions {
        count: 1,
        timeout: Duration::from_millis(1500),
        iface: iface.map(str::to_string),
        ..Default::default()
    };
    let answered = match probe {
        Probe::Icmp => crate::ping(lab_name, node, dst, &opts, |_| {})
            .map(|s| s.received > 0)
            .unwrap_or(false),
        Probe::Udp(port) | Probe::Tcp(port) => {
            let dev = iface.map(str::to_string);
            weft_sys::netns::run_in_named(&n.netns, move || {
                send_probe(probe, dst, port, dev.as_deref())
            })?
        }
    };
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = handle.join();
    let seen: Vec<Captured> = rx.try_iter().collect();
    // Where a kind of packet was seen, in the order of the path (the order
    // packets were read from the sockets varies with the machine's load).
    let where_ = |f: &dyn Fn(&Captured) -> bool| -> Vec<String> {
        let mut v: Vec<&Endpoint> = Vec::new();
        for c in seen.iter().filter(|c| f(c)) {
            if !v.contains(&&c.point) {
                v.push(&c.point);
            }
        }
        v.sort_by_key(|e| points.iter().position(|p| p == *e).unwrap_or(usize::MAX));
        v.into_iter().map(|e| e.to_string()).collect()
    };
    // Answers travel the path backwards.
    let back = |mut v: Vec<String>| {
        v.reverse();
        v
    };
    let arp_req = where_(
        &|c| matches!(c.kind, Kind::ArpRequest { target, .. } if IpAddr::V4(target) == next_hop),
    );
    let arp_rep = back(where_(
        &|c| matches!(c.kind, Kind::ArpReply { sender, .. } if IpAddr::V4(sender) == next_hop),
    ));
    let (req, rep) = match probe {
        Probe::Icmp => (
            where_(&|c| c.kind == Kind::IcmpEchoRequest),
            back(where_(&|c| c.kind == Kind::IcmpEchoReply)),
        ),
        Probe::Udp(p) => (
            where_(&|c| matches!(c.kind, Kind::Udp(_, d) if d == p)),
            // A reply from the port, or ICMP port unreachable (3/3, or
            // ICMPv6 1/4): either way the datagram was delivered.
            back(where_(&|c| {
                matches!(c.kind, Kind::Udp(sp, _) if sp == p)
                    || matches!(c.kind, Kind::Icmp(3, 3) | Kind::Icmp(1, 4))
            })),
        ),
        Probe::Tcp(p) => (
            where_(
                &|c| matches!(c.kind, Kind::Tcp(_, d, f) if d == p && f & 0x02 != 0 && f & 0x10 == 0),
            ),
            back(where_(
                &|c| matches!(c.kind, Kind::Tcp(sp, _, f) if sp == p && (f & 0x12 == 0x12 || f & 0x04 != 0)),
            )),
        ),
    };
    // A closed port answers too (RST, port unreachable): delivered.
    let answered = answered || !rep.is_empty();
    let list = |v: &[String]| {
        if v.is_empty() {
            "nowhere".to_string()
        } else {
            v.join(", ")
        }
    };
    // "seen on a, b", or "seen nowhere".
    let seen = |v: &[String]| {
        if v.is_empty() {
            "nowhere".to_string()
        } else {
            format!("on {}", v.join(", "))
        }
    };
    steps.push(format!(
        "5. probe: one {} from {node} to {dst}, captured on {}",
        probe.name(),
        list(&points.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    ));
    if !arp_req.is_empty() {
        steps.push(format!(
            "   ARP who-has {next_hop}: seen {}; ARP reply: seen {}",
            seen(&arp_req),
            seen(&arp_rep)
        ));
    }
    steps.push(format!(
        "   {} seen {}; {} seen {}",
        match probe {
            Probe::Icmp => "echo request".to_string(),
            p => p.name(),
        },
        seen(&req),
        match probe {
            Probe::Icmp => "echo reply",
            Probe::Udp(_) => "the answer (a datagram back, or ICMP port unreachable)",
            Probe::Tcp(_) => "the answer (SYN-ACK: open, RST: closed)",
        },
        seen(&rep)
    ));
    let verdict = if answered {
        let over_lo: Vec<&String> = rep.iter().filter(|p| p.ends_with(":lo")).collect();
        if !over_lo.is_empty() {
            steps.push(format!(
                "6. delivered. The reply is addressed to {}, an address of the answering node itself, so the kernel routes it locally: it returns over lo ({}), not back over the cable",
                src.map(|s| s.to_string()).unwrap_or_else(|| "the sender".into()),
                over_lo.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        } else {
            steps.push(format!(
                "6. delivered: the reply came back over {}",
                list(&rep)
            ));
        }
        Verdict::Delivered
    } else if let Some(v) = vlan_block {
        steps.push(format!("6. dropped at the switch: {v}"));
        Verdict::VlanMismatch
    } else if let Some(b) = blocked {
        steps.push(format!("6. dropped at the bridge: {b}"));
        Verdict::StpBlocked
    } else if !arp_req.is_empty() && arp_rep.is_empty() && req.is_empty() {
        let why = match (&target_owner, &peer) {
            (None, Some(p)) => {
                let has = lab
                    .iface(p)
                    .map(|i| i.addresses.is_empty())
                    .unwrap_or(false);
                format!(
                    "nobody in the lab owns {next_hop}{}: the ARP request arrives at {p}, but no interface answers for an address it does not have",
                    if has { format!(" ({p}, the other end of the cable, has no address at all)") } else { String::new() }
                )
            }
            (None, None) => format!("nobody in the lab owns {next_hop}"),
            (Some(o), _) => match source_check(lab, o, src) {
                Some(why) => why,
                None => {
                    format!("{o} owns {next_hop} but did not answer (is it up? is arp_ignore set?)")
                }
            },
        };
        steps.push(format!("6. dropped at ARP: {node} asked who has {next_hop} and got no answer, so the {} was never sent. Why: {why}", probe.name()));
        if why.contains("accept_local") || why.contains("rp_filter") {
            Verdict::RpFilter
        } else {
            Verdict::ArpUnanswered
        }
    } else if req.is_empty() && r.kind != "local" {
        steps.push(format!("6. dropped: the {} never left", probe.name()));
        Verdict::Unanswered
    } else {
        let last = req.last().cloned().unwrap_or_default();
        // rp_filter is the target's own check: only when the request got
        // there (not when a router on the way dropped it; the target has
        // no interface named like the router's, and an empty value read
        // as "on" blamed it).
        let at_target = |o: &&Endpoint| last.split(':').next() == Some(o.node.as_str());
        let rp = target_owner.as_ref().filter(at_target).and_then(|o| {
            let all = sysctl_in(&lab.nodes[&o.node].netns, "net.ipv4.conf.all.rp_filter")?;
            let dev = sysctl_in(
                &lab.nodes[&o.node].netns,
                &format!(
                    "net.ipv4.conf.{}.rp_filter",
                    last.split(':').nth(1).unwrap_or("")
                ),
            )
            .unwrap_or_default();
            (all != "0" || dev != "0")
                .then(|| format!("rp_filter is on in {} (all={all}, {last}={dev})", o.node))
        });
        // A router on the way that said it cannot forward (3.) is where
        // the request died.
        let reached_target = target_owner.as_ref().is_some_and(|o| {
            req.iter()
                .any(|p| p.split(':').next() == Some(o.node.as_str()))
        });
        match rp {
            None if router_drop.is_some() && !reached_target => {
                steps.push(format!(
                    "6. dropped at a router: the request got as far as {last}; {}",
                    router_drop.take().unwrap_or_default()
                ));
                Verdict::NoRoute
            }
            Some(why) => {
                steps.push(format!("6. dropped on arrival at {last}: the request arrived, no reply left. {why}: the kernel drops a packet whose source it would not route back out of the interface it came in on (or whose source is one of its own addresses without accept_local)"));
                Verdict::RpFilter
            }
            None => {
                steps.push(format!(
                    "6. unanswered: the request reached {last}; no reply was seen"
                ));
                Verdict::Unanswered
            }
        }
    };
    Ok(Trace { steps, verdict })
}
