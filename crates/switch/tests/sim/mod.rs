//! Simulated network: switches and hosts joined by in-memory links with a
//! fixed per-hop latency, driven by simulated time (like quinn's test
//! `Pair`, for N nodes). Deterministic: events at equal times run in the
//! order they were queued.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use weft_switch::{Actions, Instant, PortConfig, PortId, PortState, Switch, SwitchConfig};
use weft_wire::MacAddr;

/// EtherType of the test payloads (IEEE local experimental).
pub const TEST_ETHERTYPE: u16 = 0x88b5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    Switch(usize, u16),
    Host(usize),
}

#[derive(Debug, Clone)]
pub struct Link {
    pub a: Node,
    pub b: Node,
    pub up: bool,
}

#[derive(Debug, Default)]
pub struct Host {
    pub mac: MacAddr,
    pub received: Vec<Vec<u8>>,
}

pub struct Sim {
    pub now: Instant,
    pub switches: Vec<Switch>,
    pub hosts: Vec<Host>,
    pub links: Vec<Link>,
    ends: HashMap<Node, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pending: HashMap<usize, (Node, Vec<u8>)>,
    seq: u64,
    pub latency: Duration,
    pub tick_every: Duration,
    next_tick: Instant,
    out: Actions,
    /// Frames carried over switch-to-switch links, BPDUs included.
    pub frames_on_links: u64,
    /// Give up (a broadcast storm) after this many deliveries in one run.
    pub max_events: u64,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

pub fn mac(n: u64) -> MacAddr {
    MacAddr::from_u64(0x0200_0000_0000 | n)
}

/// An Ethernet II frame with a test payload.
pub fn frame(dst: MacAddr, src: MacAddr, id: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.resize(60, 0);
    f
}

/// The test id in a frame as a host received it (untagged).
pub fn frame_id(f: &[u8]) -> Option<u32> {
    if f.len() >= 18 && f[12..14] == TEST_ETHERTYPE.to_be_bytes() {
        Some(u32::from_be_bytes([f[14], f[15], f[16], f[17]]))
    } else {
        None
    }
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            now: Instant::from_secs(1),
            switches: Vec::new(),
            hosts: Vec::new(),
            links: Vec::new(),
            ends: HashMap::new(),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            latency: Duration::from_millis(1),
            tick_every: Duration::from_millis(10),
            next_tick: Instant::from_secs(1),
            out: Actions::new(),
            frames_on_links: 0,
            max_events: 5_000_000,
        }
    }

    pub fn add_switch(&mut self, cfg: SwitchConfig) -> usize {
        self.switches.push(Switch::new(cfg));
        self.switches.len() - 1
    }

    /// A switch with `ports` ports, all access VLAN 1, the given bridge MAC.
    pub fn add_simple_switch(
        &mut self,
        mac_n: u64,
        ports: usize,
        mode: weft_switch::StpMode,
    ) -> usize {
        let mut cfg = SwitchConfig::new(mac(mac_n), vec![PortConfig::access(1); ports]);
        cfg.stp.mode = mode;
        self.add_switch(cfg)
    }

    pub fn connect(&mut self, a: Node, b: Node) -> usize {
        assert!(
            !self.ends.contains_key(&a) && !self.ends.contains_key(&b),
            "end in use"
        );
        self.links.push(Link { a, b, up: true });
        let l = self.links.len() - 1;
        self.ends.insert(a, l);
        self.ends.insert(b, l);
        l
    }

    pub fn link_switches(&mut self, s1: usize, p1: u16, s2: usize, p2: u16) -> usize {
        self.connect(Node::Switch(s1, p1), Node::Switch(s2, p2))
    }

    pub fn add_host(&mut self, sw: usize, port: u16, mac: MacAddr) -> usize {
        self.hosts.push(Host {
            mac,
            received: Vec::new(),
        });
        let h = self.hosts.len() - 1;
        self.connect(Node::Switch(sw, port), Node::Host(h));
        h
    }

    fn peer(&self, n: Node) -> Option<Node> {
        let l = &self.links[*self.ends.get(&n)?];
        if !l.up {
            return None;
        }
        Some(if l.a == n { l.b } else { l.a })
    }

    fn enqueue(&mut self, to: Node, bytes: Vec<u8>) {
        self.seq += 1;
        self.pending.insert(self.seq as usize, (to, bytes));
        self.queue.push(Reverse((
            self.now + self.latency,
            self.seq,
            self.seq as usize,
        )));
    }

    fn route_out(&mut self, sw: usize, input: &[u8]) {
        let out = std::mem::take(&mut self.out);
        for (port, f) in out.frames(input) {
            let from = Node::Switch(sw, port.0);
            if let Some(to) = self.peer(from) {
                if matches!(to, Node::Switch(..)) {
                    self.frames_on_links += 1;
                }
                self.enqueue(to, f.to_vec());
            }
        }
        self.out = out;
    }

    /// A host sends a frame now.
    pub fn host_send(&mut self, h: usize, bytes: Vec<u8>) {
        if let Some(to) = self.peer(Node::Host(h)) {
            self.enqueue(to, bytes);
        }
    }

    /// Link carrier change, seen by both ends at once.
    pub fn set_link(&mut self, l: usize, up: bool) {
        self.links[l].up = up;
        let (a, b) = (self.links[l].a, self.links[l].b);
        for n in [a, b] {
            if let Node::Switch(s, p) = n {
                let mut out = std::mem::take(&mut self.out);
                self.switches[s].set_link(PortId(p), up, self.now, &mut out);
                self.out = out;
                self.route_out(s, &[]);
            }
        }
    }

    /// Advances simulated time by `d`, delivering frames and ticking switches.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut events = 0u64;
        loop {
            let next_frame = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let t = match next_frame {
                Some(t) if t <= self.next_tick && t <= end => t,
                _ if self.next_tick <= end => self.next_tick,
                _ => break,
            };
            self.now = t;
            if next_frame == Some(t) && t <= self.next_tick {
                let Reverse((_, _, id)) = self.queue.pop().unwrap();
                let (to, bytes) = self.pending.remove(&id).unwrap();
                events += 1;
                assert!(events < self.max_events, "too many frames: a loop?");
                match to {
                    Node::Host(h) => self.hosts[h].received.push(bytes),
                    Node::Switch(s, p) => {
                        let mut out = std::mem::take(&mut self.out);
                        self.switches[s].receive(PortId(p), &bytes, t, &mut out);
                        self.out = out;
                        self.route_out(s, &bytes);
                    }
                }
            } else {
                for s in 0..self.switches.len() {
                    let mut out = std::mem::take(&mut self.out);
                    self.switches[s].tick(t, &mut out);
                    self.out = out;
                    self.route_out(s, &[]);
                }
                self.next_tick = t + self.tick_every;
            }
        }
        self.now = end;
    }

    pub fn clear_hosts(&mut self) {
        for h in &mut self.hosts {
            h.received.clear();
        }
    }

    /// Copies of test frame `id` each host received.
    pub fn copies(&self, id: u32) -> Vec<usize> {
        self.hosts
            .iter()
            .map(|h| {
                h.received
                    .iter()
                    .filter(|f| frame_id(f) == Some(id))
                    .count()
            })
            .collect()
    }

    /// Sends a broadcast from host `h`, waits, and returns the copies each
    /// host got.
    pub fn broadcast_from(&mut self, h: usize, id: u32) -> Vec<usize> {
        let src = self.hosts[h].mac;
        self.host_send(h, frame(MacAddr::BROADCAST, src, id));
        self.run_for(Duration::from_millis(500));
        self.copies(id)
    }

    fn forwarding(&self, n: Node) -> bool {
        match n {
            Node::Switch(s, p) => self.switches[s].port_forwarding(PortId(p)),
            Node::Host(_) => true,
        }
    }

    /// Switch-to-switch links that carry traffic: up and forwarding at both ends.
    pub fn active_links(&self) -> Vec<(usize, usize)> {
        self.links
            .iter()
            .filter(|l| l.up && self.forwarding(l.a) && self.forwarding(l.b))
            .filter_map(|l| match (l.a, l.b) {
                (Node::Switch(a, _), Node::Switch(b, _)) => Some((a, b)),
                _ => None,
            })
            .collect()
    }

    /// The active links form a spanning tree of all switches: n-1 links,
    /// connected, hence no loop.
    pub fn is_spanning_tree(&self) -> bool {
        let n = self.switches.len();
        let edges = self.active_links();
        if edges.len() != n.saturating_sub(1) {
            return false;
        }
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut x = x;
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for (a, b) in edges {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            if ra == rb {
                return false;
            }
            parent[ra] = rb;
        }
        true
    }

    /// Every switch names the same root, and it is the lowest bridge id.
    pub fn one_root(&self) -> bool {
        let best = self
            .switches
            .iter()
            .map(|s| s.stp_status().bridge_id)
            .min()
            .unwrap();
        self.switches.iter().all(|s| s.stp_status().root_id == best)
            && self
                .switches
                .iter()
                .filter(|s| s.stp_status().root_port.is_none())
                .count()
                == 1
    }

    pub fn blocked_ports(&self) -> usize {
        self.switches
            .iter()
            .map(|s| {
                (0..s.port_count())
                    .filter(|p| {
                        let st = s.port_stp_status(PortId(*p as u16)).unwrap();
                        matches!(st.state, PortState::Blocking | PortState::Discarding)
                    })
                    .count()
            })
            .sum()
    }

    /// Component label of each switch over the links that are up.
    pub fn components(&self) -> Vec<usize> {
        let n = self.switches.len();
        let mut label: Vec<usize> = (0..n).collect();
        loop {
            let mut changed = false;
            for l in self.links.iter().filter(|l| l.up) {
                if let (Node::Switch(a, _), Node::Switch(b, _)) = (l.a, l.b) {
                    let m = label[a].min(label[b]);
                    if label[a] != m || label[b] != m {
                        label[a] = m;
                        label[b] = m;
                        changed = true;
                    }
                }
            }
            if !changed {
                return label;
            }
        }
    }

    /// The active links form a spanning forest of the up graph: no loop,
    /// and each connected part of the network is spanned.
    pub fn is_spanning_forest(&self) -> bool {
        let n = self.switches.len();
        let comps = self.components();
        let parts = (0..n).filter(|i| comps[*i] == *i).count();
        let edges = self.active_links();
        if edges.len() != n - parts {
            return false;
        }
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut x = x;
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for (a, b) in edges {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            if ra == rb {
                return false;
            }
            parent[ra] = rb;
        }
        true
    }

    /// The switch a host hangs off.
    pub fn host_switch(&self, h: usize) -> usize {
        let l = &self.links[self.ends[&Node::Host(h)]];
        match (l.a, l.b) {
            (Node::Switch(s, _), _) | (_, Node::Switch(s, _)) => s,
            _ => unreachable!(),
        }
    }
}
