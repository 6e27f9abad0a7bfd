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
}

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
}

impl Capture {
    /// Open one socket per point, each with the filter compiled for its
    /// link type and attached before any packet is queued.
    pub fn open(points: Vec<Point>, filter: Option<&Expr>) -> Result<Capture, Error> {
        let mut socks = Vec::new();
        let mut links = Vec::new();
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
        }
        Ok(Capture {
            points,
            links,
            socks,
        })
    }

    /// Receive until `stop` is set, `deadline` passes or `count` packets
    /// were handed to `on_packet`. Returns why it ended and the count.
    ///
    /// Packets of all points are handed over in the order of their
    /// kernel timestamps. The sockets are drained one after another, so a
    /// packet can reach one socket after that socket was drained but
    /// before a later packet on another socket is read; and the kernel
    /// stamps a received frame when it is queued for the stack, a moment
    /// before the packet socket sees it. So each packet is held until it
    /// is [`HOLD_NS`] old, and a later one can still be put before it.
    pub fn run(
        &self,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        count: Option<u64>,
        mut on_packet: impl FnMut(&Packet) -> std::io::Result<()>,
    ) -> Result<(Ended, u64), Error> {
        let mut buf = vec![0u8; filter::SNAPLEN as usize];
        let mut n = 0u64;
        let refs: Vec<&PacketSocket> = self.socks.iter().collect();
        // Held packets, kept sorted by (timestamp, point).
        let mut held: std::collections::VecDeque<Held> = std::collections::VecDeque::new();
        let mut emit = |held: &mut std::collections::VecDeque<Held>,
                        upto: Option<u64>,
                        n: &mut u64|
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
                if count.is_some_and(|c| *n >= c) {
                    return Ok(true);
                }
            }
            Ok(false)
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
                        emit(&mut held, None, &mut n)?;
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
            let ready = packet::wait_readable(&refs, wait)?;
            if stopping && ready.is_empty() {
                emit(&mut held, None, &mut n)?;
                return Ok((Ended::Stopped, n));
            }
            let mut fresh = Vec::new();
            for i in ready {
                while let Some(r) = self.socks[i].recv(&mut buf)? {
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
                    if fresh.len() >= 256 {
                        break;
                    }
                }
            }
            if !fresh.is_empty() {
                held.extend(fresh);
                held.make_contiguous().sort_by_key(|h| (h.ts_ns, h.point));
            }
            let upto = (wall_clock().as_nanos() as u64).saturating_sub(HOLD_NS);
            if emit(&mut held, Some(upto), &mut n)? {
                return Ok((Ended::Count, n));
            }
        }
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
