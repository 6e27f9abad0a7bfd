//! Capture on a lab's interfaces: which interfaces a word names, the
//! packet sockets in their namespaces, and the receive loop.
//!
//! A capture point is written `NODE:IFACE`; one word can also name many:
//!
//! - `NODE`: every interface of the node except `lo`; for a bridge node
//!   that is every port of its bridge (the whole switch), not the bridge
//!   device itself, so each frame is seen where it enters and leaves.
//! - `link:NODE:IFACE`: both ends of the veth pair (the whole cable).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weft_see::filter::{self, Expr, Link};
use weft_sys::packet::{self, PacketSocket};
use weft_topo::{Endpoint, IfaceKind, Lab};

use crate::Error;

/// One interface to capture on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub node: String,
    pub iface: String,
    pub netns: String,
}

impl Point {
    /// `node:iface`, the name of its pcapng interface block.
    pub fn label(&self) -> String {
        format!("{}:{}", self.node, self.iface)
    }
}

fn no_iface(lab: &Lab, ep: &Endpoint) -> Error {
    let known = lab
        .nodes
        .get(&ep.node)
        .map(|n| n.interfaces.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    Error::NoInterface {
        node: ep.node.clone(),
        iface: ep.iface.clone(),
        known,
    }
}

/// The capture points a list of words names, in order, each once.
pub fn resolve(lab: &Lab, specs: &[String]) -> Result<Vec<Point>, Error> {
    let mut eps: Vec<Endpoint> = Vec::new();
    let node_of = |n: &str| {
        lab.nodes.get(n).ok_or_else(|| Error::NoNode {
            lab: lab.name.clone(),
            node: n.to_string(),
            known: lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    };
    for s in specs {
        let parts: Vec<&str> = s.split(':').collect();
        match parts[..] {
            ["link", n, i] => {
                let ep = Endpoint::new(n, i);
                node_of(n)?;
                let iface = lab.iface(&ep).ok_or_else(|| no_iface(lab, &ep))?;
                let IfaceKind::Veth { peer } = &iface.kind else {
                    return Err(Error::invalid_help(
                        format!("`{s}`: {ep} is a {}, not one end of a veth pair", iface.kind.name()),
                        format!("capture it as {ep}"),
                    ));
                };
                eps.push(ep.clone());
                eps.push(peer.clone());
            }
            [n, i] => {
                node_of(n)?;
                let ep = Endpoint::new(n, i);
                lab.iface(&ep).ok_or_else(|| no_iface(lab, &ep))?;
                eps.push(ep);
            }
            [n] => {
                let node = node_of(n)?;
                let bridge = node
                    .interfaces
                    .values()
                    .find(|i| matches!(i.kind, IfaceKind::Bridge(_)))
                    .map(|b| b.name.clone());
                let before = eps.len();
                for i in node.interfaces.values() {
                    let take = match &bridge {
                        Some(b) => i.master.as_deref() == Some(b.as_str()),
                        None => !matches!(i.kind, IfaceKind::Loopback),
                    };
                    if take {
                        eps.push(Endpoint::new(n, &i.name));
                    }
                }
                if eps.len() == before {
                    return Err(Error::invalid_help(
                        format!(
                            "`{s}`: node {n} has no {} to capture on",
                            if bridge.is_some() { "bridge ports" } else { "interfaces besides lo" }
                        ),
                        format!("name one as {n}:IFACE"),
                    ));
                }
            }
            _ => {
                return Err(Error::invalid_help(
                    format!("`{s}` is not a capture point"),
                    "write NODE:IFACE, NODE (all its interfaces, or all ports of a bridge), or link:NODE:IFACE (both ends of a veth)",
                ))
            }
        }
    }
    let mut out: Vec<Point> = Vec::new();
    for ep in eps {
        let p = Point {
            netns: lab.nodes[&ep.node].netns.clone(),
            node: ep.node,
            iface: ep.iface,
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Open packet sockets.
pub struct Capture {
    pub points: Vec<Point>,
    /// What each point carries (Ethernet, or bare IP on a TUN).
    pub links: Vec<Link>,
    socks: Vec<PacketSocket>,
    /// Each point's compiled filter, to open its socket again when its
    /// interface is made anew.
    progs: Vec<Option<Vec<packet::FilterInsn>>>,
}

/// What happened to a capture point's interface while capturing.
///
/// A socket bound to an interface that is set down stays bound and sees
/// packets again once it is up; one whose interface is deleted (a live
/// edit re-cables a link: a new veth of the same name) is opened again
/// on the new interface, under the same point (the file keeps one
/// interface block per point). Only when the point's node is gone (the
/// lab was taken down) does it stop for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Set down (`ip link set IFACE down` in its node).
    Down,
    /// Carrying packets again after [`Change::Down`].
    Up,
    /// Deleted; waiting for an interface of the same name.
    Gone,
    /// An interface of the same name is there again; captured from now.
    Back,
    /// The node's namespace is gone: nothing more comes from this point.
    NodeGone,
}

/// One point's socket, as its interface comes and goes.
enum Sock {
    Live(PacketSocket),
    /// Down, not deleted: the kernel feeds the socket again when it is up.
    Down(PacketSocket),
    Gone,
    NodeGone,
}

/// How often a point whose interface is down or gone is looked at.
const RECHECK: Duration = Duration::from_millis(250);

/// One captured packet, as it was on the wire (VLAN tag put back).
pub struct Packet<'a> {
    /// Index into [`Capture::points`].
    pub point: usize,
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// Sent by this interface (rather than received).
    pub outgoing: bool,
}

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Count,
    Duration,
    Stopped,
    /// Every point's node is gone (the lab was taken down).
    Gone,
}

impl Capture {
    /// Open one socket per point, each with the filter compiled for its
    /// link type and attached before any packet is queued.
    pub fn open(points: Vec<Point>, filter: Option<&Expr>) -> Result<Capture, Error> {
        let mut socks = Vec::new();
        let mut links = Vec::new();
        let mut progs = Vec::new();
        for p in &points {
            let ns = weft_sys::netns::open(&p.netns)?;
            // The link type decides the filter's offsets: ask first.
            let probe = packet::open_in(ns.as_ref_fd(), &p.iface, Some(&[reject_all()])).map_err(
                |source| Error::Capture {
                    point: p.label(),
                    source,
                },
            )?;
            let link = if probe.hatype == packet::ARPHRD_NONE {
                Link::RawIp
            } else {
                Link::Ethernet
            };
            drop(probe);
            let prog = match filter {
                Some(f) => Some(
                    filter::compile(f, link)
                        .map_err(|e| Error::invalid(format!("filter: {e}")))?
                        .into_iter()
                        .map(|i| packet::FilterInsn {
                            code: i.code,
                            jt: i.jt,
                            jf: i.jf,
                            k: i.k,
                        })
                        .collect::<Vec<_>>(),
                ),
                None => None,
            };
            let s =
                packet::open_in(ns.as_ref_fd(), &p.iface, prog.as_deref()).map_err(|source| {
                    Error::Capture {
                        point: p.label(),
                        source,
                    }
                })?;
            socks.push(s);
            links.push(link);
            progs.push(prog);
        }
        Ok(Capture {
            points,
            links,
            socks,
            progs,
        })
    }

    /// The point's interface index in its namespace, `None` when it has
    /// none of that name; `Err` when the namespace is gone.
    fn index_now(&self, i: usize) -> Result<Option<u32>, ()> {
        let p = &self.points[i];
        let name = p.iface.clone();
        weft_sys::netns::run_in_named(&p.netns, move || weft_sys::if_index(&name)).map_err(|_| ())
    }

    /// A socket on the point's interface made anew, when it is there and
    /// of the same link type (the file's interface block says which).
    fn reopen(&self, i: usize) -> Result<Option<PacketSocket>, ()> {
        let p = &self.points[i];
        let ns = weft_sys::netns::open(&p.netns).map_err(|_| ())?;
        let Ok(s) = packet::open_in(ns.as_ref_fd(), &p.iface, self.progs[i].as_deref()) else {
            return Ok(None);
        };
        let link = if s.hatype == packet::ARPHRD_NONE {
            Link::RawIp
        } else {
            Link::Ethernet
        };
        Ok((link == self.links[i]).then_some(s))
    }

    /// Receive until `stop` is set, `deadline` passes or `count` packets
    /// were handed to `on_packet`, carrying on over interfaces that go
    /// down or are made anew (see [`Change`]); the points' changes go to
    /// `on_change` with the packets of that point handed over so far.
    pub fn run_watching(
        self,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        count: Option<u64>,
        on_packet: impl FnMut(&Packet) -> std::io::Result<()>,
        on_change: impl FnMut(&Point, Change, u64),
    ) -> Result<(Ended, u64), Error> {
        self.receive(stop, deadline, count, on_packet, on_change)
    }

    /// Receive until `stop` is set, `deadline` passes or `count` packets
    /// were handed to `on_packet`. Returns why it ended and the count.
    /// [`Capture::run_watching`] without the notices.
    pub fn run(
        self,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        count: Option<u64>,
        on_packet: impl FnMut(&Packet) -> std::io::Result<()>,
    ) -> Result<(Ended, u64), Error> {
        self.receive(stop, deadline, count, on_packet, |_, _, _| {})
    }

    /// Packets of all points are handed over in the order of their
    /// kernel timestamps. The sockets are drained one after another, so a
    /// packet can reach one socket after that socket was drained but
    /// before a later packet on another socket is read; and the kernel
    /// stamps a received frame when it is queued for the stack, a moment
    /// before the packet socket sees it. So each packet is held until it
    /// is [`HOLD_NS`] old, and a later one can still be put before it.
    fn receive(
        mut self,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        count: Option<u64>,
        mut on_packet: impl FnMut(&Packet) -> std::io::Result<()>,
        mut on_change: impl FnMut(&Point, Change, u64),
    ) -> Result<(Ended, u64), Error> {
        let mut buf = vec![0u8; filter::SNAPLEN as usize];
        let mut n = 0u64;
        let mut socks: Vec<Sock> = std::mem::take(&mut self.socks)
            .into_iter()
            .map(Sock::Live)
            .collect();
        // Packets handed over, per point, for the notices.
        let mut given = vec![0u64; socks.len()];
        // ENETDOWN read, packets queued before it not yet.
        let mut down_pending = vec![false; socks.len()];
        let mut next_check = Instant::now() + RECHECK;
        // Held packets, kept sorted by (timestamp, point).
        let mut held: std::collections::VecDeque<Held> = std::collections::VecDeque::new();
        let mut emit = |held: &mut std::collections::VecDeque<Held>,
                        upto: Option<u64>,
                        n: &mut u64,
                        given: &mut [u64]|
         -> Result<bool, Error> {
            while held
                .front()
                .is_some_and(|h| upto.is_none_or(|u| h.ts_ns <= u))
            {
                let h = held.pop_front().expect("front checked");
                on_packet(&Packet {
                    point: h.point,
                    ts_ns: h.ts_ns,
                    data: &h.data,
                    orig_len: h.orig_len,
                    outgoing: h.outgoing,
                })
                .map_err(|e| Error::io("writing the capture", e))?;
                *n += 1;
                given[h.point] += 1;
                if count.is_some_and(|c| *n >= c) {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        // A point's packets so far: handed over, and held to be.
        let so_far = |given: &[u64], held: &std::collections::VecDeque<Held>, i: usize| {
            given[i] + held.iter().filter(|h| h.point == i).count() as u64
        };
        loop {
            // Once stopped, take what is already queued on the sockets
            // (without waiting) before ending: a packet that arrived just
            // before the stop belongs in the capture.
            let stopping = stop.load(Ordering::SeqCst);
            let mut wait = match deadline {
                _ if stopping => Duration::ZERO,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        emit(&mut held, None, &mut n, &mut given)?;
                        return Ok((Ended::Duration, n));
                    }
                    (d - now).min(Duration::from_millis(100))
                }
                None => Duration::from_millis(100),
            };
            if let Some(first) = held.front() {
                let due = Duration::from_nanos(first.ts_ns.saturating_add(HOLD_NS));
                wait = wait.min(due.saturating_sub(wall_clock()));
            }
            if socks.iter().all(|s| matches!(s, Sock::NodeGone)) {
                emit(&mut held, None, &mut n, &mut given)?;
                return Ok((Ended::Gone, n));
            }
            let (idx, refs): (Vec<usize>, Vec<&PacketSocket>) = socks
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    Sock::Live(p) | Sock::Down(p) => Some((i, p)),
                    Sock::Gone | Sock::NodeGone => None,
                })
                .unzip();
            if refs.len() < socks.len() {
                wait = wait.min(next_check.saturating_duration_since(Instant::now()));
            }
            let ready: Vec<usize> = if refs.is_empty() {
                std::thread::sleep(wait);
                Vec::new()
            } else {
                packet::wait_readable(&refs, wait)?
                    .into_iter()
                    .map(|k| idx[k])
                    .collect()
            };
            drop(refs);
            if stopping && ready.is_empty() {
                emit(&mut held, None, &mut n, &mut given)?;
                return Ok((Ended::Stopped, n));
            }
            let mut fresh = Vec::new();
            // Sockets whose interface went down, read to their end.
            let mut drained = Vec::new();
            for i in ready {
                while let Sock::Live(p) | Sock::Down(p) = &socks[i] {
                    let r = match p.recv(&mut buf) {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            if down_pending[i] {
                                drained.push(i);
                            }
                            break;
                        }
                        // The kernel's word that the interface went down
                        // or away, said once and before the packets still
                        // queued, which came before it went: those are
                        // read first, then the point counts as down.
                        Err(e) if e.errno() == Some(libc::ENETDOWN) => {
                            down_pending[i] = matches!(socks[i], Sock::Live(_));
                            next_check = Instant::now();
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    // A down socket gets packets again once its interface
                    // is up (the kernel hooks it in again).
                    if matches!(socks[i], Sock::Down(_)) {
                        if let Sock::Down(p) = std::mem::replace(&mut socks[i], Sock::Gone) {
                            socks[i] = Sock::Live(p);
                        }
                        on_change(&self.points[i], Change::Up, so_far(&given, &held, i));
                    }
                    let data = match (r.vlan, self.links[i]) {
                        (Some((tci, tpid)), Link::Ethernet) => {
                            weft_see::decode::reinsert_vlan(&buf[..r.len], tci, tpid)
                        }
                        _ => buf[..r.len].to_vec(),
                    };
                    let orig_len = r.orig_len + (data.len() - r.len) as u32;
                    fresh.push(Held {
                        ts_ns: r.ts_ns,
                        point: i,
                        data,
                        orig_len,
                        outgoing: r.pkttype == libc::PACKET_OUTGOING,
                    });
                    // Not for one that went down: nothing more comes to it,
                    // and once drained it must be marked down.
                    if fresh.len() >= 256 && !down_pending[i] {
                        break;
                    }
                }
            }
            if !fresh.is_empty() {
                held.extend(fresh);
                held.make_contiguous().sort_by_key(|h| (h.ts_ns, h.point));
            }
            for i in drained {
                down_pending[i] = false;
                if let Sock::Live(p) = std::mem::replace(&mut socks[i], Sock::Gone) {
                    // Deleted rather than set down: the look just below
                    // says that instead.
                    let there = matches!(self.index_now(i), Ok(Some(x)) if x == p.ifindex);
                    socks[i] = Sock::Down(p);
                    if there {
                        on_change(&self.points[i], Change::Down, so_far(&given, &held, i));
                    }
                }
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + RECHECK;
                for (i, sock) in socks.iter_mut().enumerate() {
                    for c in self.recheck(sock, i) {
                        on_change(&self.points[i], c, so_far(&given, &held, i));
                    }
                }
            }
            let upto = (wall_clock().as_nanos() as u64).saturating_sub(HOLD_NS);
            if emit(&mut held, Some(upto), &mut n, &mut given)? {
                return Ok((Ended::Count, n));
            }
        }
    }

    /// Looks at one point again: its node still there, a down interface
    /// not deleted meanwhile, a deleted one made anew. Returns what
    /// changed, in order.
    fn recheck(&self, sock: &mut Sock, i: usize) -> Vec<Change> {
        let mut out = Vec::new();
        if matches!(sock, Sock::NodeGone) {
            return out;
        }
        // `weft down` removed the namespace: the socket alone would keep
        // it (and its interfaces) alive, quiet for ever.
        if !weft_sys::netns::exists(&self.points[i].netns) {
            *sock = Sock::NodeGone;
            out.push(Change::NodeGone);
            return out;
        }
        if let Sock::Down(p) = sock {
            match self.index_now(i) {
                Ok(Some(x)) if x == p.ifindex => return out,
                Ok(_) => {
                    *sock = Sock::Gone;
                    out.push(Change::Gone);
                }
                Err(()) => {
                    *sock = Sock::NodeGone;
                    out.push(Change::NodeGone);
                    return out;
                }
            }
        }
        if let Sock::Gone = sock {
            match self.reopen(i) {
                Ok(Some(s)) => {
                    *sock = Sock::Live(s);
                    out.push(Change::Back);
                }
                Ok(None) => {}
                Err(()) => {
                    *sock = Sock::NodeGone;
                    out.push(Change::NodeGone);
                }
            }
        }
        out
    }
}

/// How long a captured packet is held back so that packets of other
/// points stamped before it are written first. A frame's stamp and its
/// arrival on the packet socket are one softirq apart, microseconds on an
/// idle machine; 25 ms covers a loaded one, and is short enough that
/// `-w -` still reads as live.
const HOLD_NS: u64 = 25_000_000;

/// The kernel's packet timestamps are wall-clock time (`SO_TIMESTAMPNS`).
fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

struct Held {
    ts_ns: u64,
    point: usize,
    data: Vec<u8>,
    orig_len: u32,
    outgoing: bool,
}

fn reject_all() -> packet::FilterInsn {
    packet::FilterInsn {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }
}

trait AsRefFd {
    fn as_ref_fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl AsRefFd for std::os::fd::OwnedFd {
    fn as_ref_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Lab {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/bridge.toml"
        ))
        .unwrap();
        weft_topo::parse(&text).unwrap().lab
    }

    fn labels(specs: &[&str]) -> Vec<String> {
        let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
        resolve(&lab(), &specs)
            .unwrap()
            .iter()
            .map(|p| p.label())
            .collect()
    }

    #[test]
    fn one_word_for_a_switch_or_a_cable() {
        assert_eq!(labels(&["ns1:tap1"]), ["ns1:tap1"]);
        assert_eq!(labels(&["link:ns1:tap1"]), ["ns1:tap1", "br0:br-tap1"]);
        assert_eq!(labels(&["br0"]), ["br0:br-tap1", "br0:br-tap2"]);
        assert_eq!(
            labels(&["br0", "ns1:tap1", "br0:br-tap1"]),
            ["br0:br-tap1", "br0:br-tap2", "ns1:tap1"]
        );
        let specs = |s: &str| vec![s.to_string()];
        for (bad, want) in [
            ("nope:eth0", "has no node nope"),
            ("ns1:eth9", "node ns1: interface eth9 is not there"),
            ("link:br0:br0", "not one end of a veth"),
            ("a:b:c", "not a capture point"),
        ] {
            let e = resolve(&lab(), &specs(bad)).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
