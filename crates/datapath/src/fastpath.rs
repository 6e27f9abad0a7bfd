//! The kernel fast path: once a flow of learned unicast frames is steady,
//! the switch asks the kernel to forward it, as Open vSwitch's kernel
//! datapath does for its userspace.
//!
//! A userspace datapath copies every frame twice (out of the kernel and
//! back in) and runs the receiving host's stack in its own send call; on
//! this 2-core machine that caps TCP near Open vSwitch's userspace figure
//! and costs 3-4 µs of CPU per small frame (docs/performance.md). After
//! [`THRESHOLD`] frames entering port IN from source MAC S to destination
//! MAC D have been forwarded unchanged to port OUT, the datapath installs
//! on IN, in the switch's namespace, `tc filter ... ingress protocol
//! ip|ipv6 u32 match ether dst D match ether src S action mirred egress
//! redirect dev OUT`, and a socket filter so that its own socket on IN
//! stops receiving those frames. From then on
//! the kernel moves them without a copy, GSO frames and checksum offload
//! untouched, like a bridge.
//!
//! Matching the source as well keeps every new source, and so every MAC
//! move, in front of the switch's learning. Only what the switch would
//! forward unchanged is offloaded: untagged IPv4 and IPv6 frames to a
//! learned unicast MAC, on switches whose ports are all access ports of
//! one VLAN and that have no mirror ([`refused`] says why others do not). Any change that could alter a
//! forwarding decision (a MAC moving, entries flushed or aged, an STP or
//! carrier change on any port) removes every rule of the switch; steady
//! flows come back after [`THRESHOLD`] frames.
//!
//! Like Open vSwitch's revalidators with kernel flow stats, the loop
//! calls [`FastPath::harvest`] every [`HARVEST_EVERY`] and right before
//! rules are removed: it reads each rule's two filters' counters (packets,
//! bytes, last use), credits what is new to the ports' and the VLAN's
//! counters, and refreshes the pair's FDB entries (the source on IN, the
//! destination on OUT) to the kernel's last use, so that a busy offloaded
//! flow neither disappears from the counters nor ages out; an idle one
//! ages as before, and the change removes the rules.
//!
//! `WEFT_SWITCH_FASTPATH=off` in the environment of `weft up` turns it off.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use std::os::fd::{AsFd, OwnedFd};

use crate::bpfpath::KernelSwitch;
use weft_switch::{Instant, PortId, PortMode, Switch, SwitchConfig};
use weft_sys::netlink::{tc, Netlink};
use weft_sys::port::{PacketSocket, MAX_SKIP_PAIRS};
use weft_wire::MacAddr;

/// Frames of one (in port, destination) pair before the flow is offloaded.
pub const THRESHOLD: u32 = 64;

/// Pairs counted towards [`THRESHOLD`] at most, per switch.
pub const MAX_COUNTED: usize = 4096;

const IPV4: u16 = 0x0800;
const IPV6: u16 = 0x86dd;

/// A (source, destination) MAC pair.
pub type Pair = ([u8; 6], [u8; 6]);

/// Why a switch may not use the fast path at all, if it may not.
///
/// The kernel moves an 802.1Q tag into the packet's metadata before tc
/// sees the frame, so a `u32` rule cannot tell a tagged frame from an
/// untagged one: a rule made for an untagged flow would also pass a
/// tagged frame with the same MACs, tag and all, which the switch itself
/// drops on an access port. On a switch whose ports are all access ports
/// of one VLAN such a frame can only reach hosts of that same VLAN, as
/// the switch would deliver a frame of theirs anyway; with trunks or
/// several VLANs it could cross into another VLAN, so those switches keep
/// every frame in userspace. A mirror must see every frame too.
pub fn refused(cfg: &SwitchConfig) -> Option<&'static str> {
    if cfg.mirror.output.is_some() {
        return Some("it has a mirror port, which must see every frame");
    }
    let mut vlans = cfg.ports.iter().map(|p| match p.mode {
        PortMode::Access(v) => Some(v),
        PortMode::Trunk { .. } => None,
    });
    let first = vlans.next().flatten();
    if first.is_none() || !vlans.all(|v| v == first) {
        return Some(
            "its ports are not all access ports of one VLAN (tc cannot tell tagged frames from untagged ones)",
        );
    }
    None
}

/// The frame's (source, destination) if it is of the kind a fast-path
/// rule can take: unicast, untagged IPv4 or IPv6.
pub fn eligible(frame: &[u8]) -> Option<Pair> {
    if frame.len() < 14 || frame[0] & 1 != 0 {
        return None;
    }
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    if et != IPV4 && et != IPV6 {
        return None;
    }
    Some((
        frame[6..12].try_into().unwrap(),
        frame[..6].try_into().unwrap(),
    ))
}

/// What can change a forwarding decision, sampled when rules go in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sig {
    moves: u64,
    flushed: u64,
    aged: u64,
    topology_changes: u64,
    forwarding: Vec<bool>,
}

impl Sig {
    fn of(core: &Switch) -> Sig {
        let fc = core.fdb_counters();
        Sig {
            moves: fc.moves,
            flushed: fc.flushed,
            aged: fc.aged,
            topology_changes: core.stp_status().topology_changes,
            forwarding: (0..core.port_count())
                .map(|i| core.port_forwarding(PortId(i as u16)))
                .collect(),
        }
    }

    /// `*self == Sig::of(core)`, without building one: this runs after
    /// every receive batch while rules exist.
    fn matches(&self, core: &Switch) -> bool {
        let fc = core.fdb_counters();
        self.moves == fc.moves
            && self.flushed == fc.flushed
            && self.aged == fc.aged
            && self.topology_changes == core.stp_status().topology_changes
            && self.forwarding.len() == core.port_count()
            && self
                .forwarding
                .iter()
                .enumerate()
                .all(|(i, f)| *f == core.port_forwarding(PortId(i as u16)))
    }
}

/// The kernel switch of a switch the `u32` rules refuse, with what it
/// needs to follow the core: each core port's interface index.
struct Kernel {
    ks: KernelSwitch,
    ifindex: Vec<u32>,
    /// In the switch's namespace, to take the classifiers off again.
    nl: Netlink,
    /// The ports' packet sockets (duplicates), to take the socket
    /// filters off again.
    socks: Vec<OwnedFd>,
}

impl Drop for Kernel {
    /// Classifiers left behind would go on forwarding with maps no one
    /// updates.
    fn drop(&mut self) {
        for &ix in self.ifindex.iter().filter(|&&ix| ix != 0) {
            self.nl.push(tc::del_clsact(ix), String::new());
        }
        let _ = self.nl.flush();
        // Without classifiers, frames the filters keep from the sockets
        // would be lost.
        for s in &self.socks {
            let _ = weft_sys::bpf::detach_socket(s.as_fd());
        }
    }
}

/// One switch's fast path.
pub struct FastPath {
    /// A NETLINK_ROUTE socket in the switch's namespace; `None` when off.
    nl: Option<Netlink>,
    /// Per global in-port: (MAC pair, global out-port) offloaded.
    rules: HashMap<usize, Vec<(Pair, usize)>>,
    seen: HashMap<(usize, Pair), u32>,
    sig: Option<Sig>,
    /// Ports whose frames must always pass through userspace.
    excluded: Vec<usize>,
    /// Why it is off, for `weft status`.
    why_off: Option<String>,
    /// Per (global in-port, filter prio): the filter's (packets, bytes)
    /// at the last read, so that each read credits only what is new.
    counted: HashMap<(usize, u16), (u64, u64)>,
    /// The tc BPF switch, on switches with trunks, several VLANs or a
    /// mirror (crate::bpfpath); the `u32` rules are never used then.
    kernel: Option<Kernel>,
}

/// How often the loop reads the rules' counters.
pub const HARVEST_EVERY: Duration = Duration::from_secs(1);

/// The link header the kernel's byte count leaves out (it counts from the
/// network header on), put back so that offloaded frames count as the
/// switch counts the frames it forwards itself.
const LINK_HEADER: u64 = 14;

impl FastPath {
    /// Off: nothing is ever offloaded.
    pub fn off(why: impl Into<String>) -> FastPath {
        FastPath {
            nl: None,
            rules: HashMap::new(),
            seen: HashMap::new(),
            sig: None,
            excluded: Vec::new(),
            why_off: Some(why.into()),
            counted: HashMap::new(),
            kernel: None,
        }
    }

    /// The tc BPF switch for a switch of `cfg`, with core port `i` on
    /// `socks[i]`: loads the programs, puts the socket filters on the
    /// sockets and the classifiers on the ports' ingress (in the switch's
    /// namespace, through `nl`). Off, with the reason for `weft status`,
    /// when bpf(2) is not allowed or the verifier refuses the program.
    /// Core ports `retired[i]` (taken out by a live edit: disabled in the
    /// core, which never forwards to them) have no socket and are left
    /// out.
    pub fn with_bpf(
        mut nl: Netlink,
        cfg: &SwitchConfig,
        socks: &[Option<&PacketSocket>],
        retired: &[bool],
    ) -> FastPath {
        if let Some(why) = weft_sys::bpf::unavailable() {
            return FastPath::off(why);
        }
        let gone = |i: usize| retired.get(i).copied().unwrap_or(false);
        if (0..socks.len()).any(|i| socks[i].is_none() && !gone(i)) {
            return FastPath::off("a port could not be opened");
        }
        let ks = match KernelSwitch::load(cfg) {
            Ok(k) => k,
            Err(e) => return FastPath::off(format!("tc BPF: {e}")),
        };
        // Interface index 0 (none) in the retired ports' slots: the maps
        // mark them unusable, as the core has them disabled.
        let ifindex: Vec<u32> = socks.iter().map(|s| s.map_or(0, |s| s.ifindex())).collect();
        let live: Vec<(usize, &PacketSocket)> = socks
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        for &(_, s) in &live {
            nl.push(tc::del_clsact(s.ifindex()), String::new());
        }
        let _ = nl.flush();
        // Socket filters first: with the maps still empty they take
        // nothing away, and once the classifiers run, every frame one
        // forwards is already kept from the socket.
        for &(i, s) in &live {
            let Some(p) = ks.socket_filter(i) else {
                continue;
            };
            if let Err(e) = p.attach_socket(s.as_fd()) {
                return FastPath::off(format!("tc BPF: socket filter on {}: {e}", s.ifname()));
            }
        }
        let socks: Vec<&PacketSocket> = live.iter().map(|&(_, s)| s).collect();
        for (i, s) in live {
            let Some(p) = ks.classifier(i) else { continue };
            nl.push(
                tc::add_clsact(s.ifindex()),
                format!("clsact on {}", s.ifname()),
            );
            nl.push(
                tc::bpf_filter(s.ifindex(), 1, p.raw_fd() as u32, "weft_switch"),
                format!("tc BPF classifier on {}", s.ifname()),
            );
        }
        if let Err(errs) = nl.flush() {
            let first = errs.first().map(|e| e.to_string()).unwrap_or_default();
            for &ix in &ifindex {
                nl.push(tc::del_clsact(ix), String::new());
            }
            let _ = nl.flush();
            for s in &socks {
                let _ = s.skip_pairs(&[]);
            }
            return FastPath::off(format!("tc BPF: the kernel refused {first}"));
        }
        let mut fp = FastPath {
            why_off: None,
            ..FastPath::off("")
        };
        let dups: io::Result<Vec<OwnedFd>> = socks
            .iter()
            .map(|s| s.as_fd().try_clone_to_owned())
            .collect();
        match dups {
            Ok(socks) => {
                fp.kernel = Some(Kernel {
                    ks,
                    ifindex,
                    nl,
                    socks,
                })
            }
            Err(e) => {
                for s in &socks {
                    let _ = s.skip_pairs(&[]);
                }
                for &ix in &ifindex {
                    nl.push(tc::del_clsact(ix), String::new());
                }
                let _ = nl.flush();
                return FastPath::off(format!("tc BPF: {e}"));
            }
        }
        fp
    }

    /// Whether the tc BPF switch is on.
    pub fn is_bpf(&self) -> bool {
        self.kernel.is_some()
    }

    /// Brings the tc BPF switch's maps in line with `core`; `slow(i)`:
    /// core port `i` is impaired. If a map cannot be written, the kernel
    /// switch goes off and every frame goes through userspace.
    pub fn sync(&mut self, core: &Switch, slow: impl Fn(usize) -> bool) {
        let Some(k) = &mut self.kernel else {
            return;
        };
        let ix = &k.ifindex;
        if let Err(e) = k.ks.sync(core, |i| ix.get(i).copied().unwrap_or(0), slow) {
            tracing::warn!(
                "tc BPF switch: writing its maps: {e}; every frame goes through userspace"
            );
            self.detach(format!("tc BPF: writing a map failed ({e})"));
        }
    }

    /// Folds what the tc BPF switch forwarded into `core`.
    pub fn harvest_bpf(&mut self, core: &mut Switch, now: Instant) {
        if let Some(k) = &mut self.kernel {
            if let Err(e) = k.ks.harvest(core, now) {
                tracing::debug!("tc BPF switch counters: {e}");
            }
        }
    }

    /// Takes the classifiers off the ports and the filters off the
    /// sockets (dropping the kernel switch does): every frame goes through
    /// userspace again.
    fn detach(&mut self, why: String) {
        self.kernel = None;
        self.why_off = Some(why);
    }

    /// `on`, or `off: why`.
    pub fn describe(&self) -> String {
        if self.kernel.is_some() {
            return "on (tc BPF program on every port)".to_string();
        }
        match (&self.nl, &self.why_off) {
            (Some(_), _) => "on".to_string(),
            (None, Some(w)) => format!("off: {w}"),
            (None, None) => "off".to_string(),
        }
    }

    /// On, with a netlink socket opened in the switch's namespace. Rules
    /// left on `ports` by an earlier datapath (killed, then restarted by
    /// `weft up`) are removed first: they would forward frames this one
    /// also forwards.
    pub fn new(mut nl: Netlink, ports: &[u32]) -> FastPath {
        for &ix in ports {
            nl.push(tc::del_clsact(ix), String::new());
        }
        // Errors here mean "there was none".
        let _ = nl.flush();
        FastPath {
            nl: Some(nl),
            why_off: None,
            ..FastPath::off("")
        }
    }

    /// Whether the fast path is on.
    pub fn enabled(&self) -> bool {
        self.nl.is_some()
    }

    /// Keeps frames entering or leaving global port `g` in userspace (for
    /// features that must see every frame, such as impairment).
    pub fn exclude(&mut self, g: usize) {
        if !self.excluded.contains(&g) {
            self.excluded.push(g);
        }
    }

    /// Installed rules (each for IPv4 and IPv6).
    pub fn rules(&self) -> usize {
        self.rules.values().map(Vec::len).sum()
    }

    /// Counts a frame the switch forwarded unchanged from `g` to `to`;
    /// true when the pair has become steady enough to offload.
    pub fn observe(&mut self, g: usize, pair: Pair, to: usize) -> bool {
        if self.nl.is_none()
            || self.kernel.is_some()
            || self.excluded.contains(&g)
            || self.excluded.contains(&to)
        {
            return false;
        }
        // Frames from sources the table never learned (a flood of random
        // MACs towards a known host) are forwarded too: without a bound
        // this map would grow with every new source. Starting the count
        // again costs a steady flow only THRESHOLD more frames.
        if self.seen.len() >= MAX_COUNTED && !self.seen.contains_key(&(g, pair)) {
            self.seen.clear();
        }
        let n = self.seen.entry((g, pair)).or_insert(0);
        *n += 1;
        *n == THRESHOLD
    }

    /// Installs the rule for frames of `pair` from `g` (socket `in_sock`),
    /// out of port `to` (interface index `out_ix`).
    pub fn install(
        &mut self,
        core: &Switch,
        g: usize,
        in_sock: &PacketSocket,
        pair: Pair,
        to: usize,
        out_ix: u32,
    ) -> io::Result<()> {
        let sig = Sig::of(core);
        if self.sig.as_ref().is_some_and(|s| *s != sig) {
            // Something changed since the other rules went in; the loop
            // removes them (it has the sockets) before new ones go in.
            return Ok(());
        }
        let Some(nl) = &mut self.nl else {
            return Ok(());
        };
        let list = self.rules.entry(g).or_default();
        if list.iter().any(|(p, _)| *p == pair) || list.len() >= MAX_SKIP_PAIRS {
            return Ok(());
        }
        // Order matters. The socket filter goes in first: a frame of the
        // pair that reached the socket before it is one the kernel did not
        // redirect (the rule comes after), so the loop forwards it as
        // usual; a frame between the two (microseconds) is lost, none is
        // forwarded twice.
        let mut pairs: Vec<Pair> = list.iter().map(|(p, _)| *p).collect();
        pairs.push(pair);
        in_sock.skip_pairs(&pairs)?;
        let ix = in_sock.ifindex();
        if list.is_empty() {
            nl.push(
                tc::add_clsact(ix),
                format!("clsact on {}", in_sock.ifname()),
            );
        }
        let prio = 2 * list.len() as u16 + 1;
        for (p, proto) in [(prio, IPV4), (prio + 1, IPV6)] {
            nl.push(
                tc::redirect_pair(ix, p, proto, pair.0, pair.1, out_ix),
                format!("fast path rule on {}", in_sock.ifname()),
            );
        }
        if let Err(errs) = nl.flush() {
            // Whatever went in goes out again; the flow stays in userspace.
            let first = errs.first().map(|e| e.to_string()).unwrap_or_default();
            nl.push(tc::del_clsact(ix), String::new());
            let _ = nl.flush();
            let _ = in_sock.skip_pairs(&[]);
            self.rules.remove(&g);
            self.counted.retain(|(h, _), _| *h != g);
            self.nl = None;
            self.why_off = Some(format!("the kernel refused a rule ({first})"));
            return Err(io::Error::other(format!(
                "{first}; fast path off for this switch"
            )));
        }
        list.push((pair, to));
        self.sig = Some(sig);
        Ok(())
    }

    /// Reads every rule's counters in the kernel and folds what is new into
    /// `core`, as Open vSwitch's revalidators do with kernel flow stats:
    /// frames and bytes on the in port's rx, the out port's tx and the
    /// VLAN; and, for a rule that forwarded frames since the last read, the
    /// pair's FDB entries (source on the in port, destination on the out
    /// port) refreshed to the kernel's last use, so that a busy flow does
    /// not age out while the kernel carries it. `ports` maps core port
    /// index to global index; `ifindex` gives a global port's interface.
    pub fn harvest(
        &mut self,
        core: &mut Switch,
        ports: &[usize],
        ifindex: impl Fn(usize) -> Option<u32>,
        now: Instant,
    ) {
        let Some(nl) = &mut self.nl else {
            return;
        };
        let core_id = |g: usize| ports.iter().position(|&x| x == g).map(|i| PortId(i as u16));
        for (&g, list) in &self.rules {
            let (Some(ix), Some(in_id)) = (ifindex(g), core_id(g)) else {
                continue;
            };
            let stats = match tc::ingress_stats(nl, ix) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(port = g, "fast path counters: {e}");
                    continue;
                }
            };
            let Some(vid) = core.untagged_vlan(in_id) else {
                continue;
            };
            for st in stats {
                // Rule k is the filters at prio 2k+1 (IPv4) and 2k+2 (IPv6).
                let Some(&(pair, to)) = list.get(usize::from(st.prio.max(1) - 1) / 2) else {
                    continue;
                };
                let Some(out_id) = core_id(to) else {
                    continue;
                };
                let last = self.counted.entry((g, st.prio)).or_insert((0, 0));
                let frames = st.packets.saturating_sub(last.0);
                let bytes = st.bytes.saturating_sub(last.1);
                *last = (st.packets, st.bytes);
                if frames == 0 {
                    continue;
                }
                core.credit_offloaded(in_id, out_id, vid, frames, bytes + LINK_HEADER * frames);
                let used = Instant::from_nanos(
                    now.as_nanos().saturating_sub(st.last_use.as_nanos() as u64),
                );
                core.touch(vid, MacAddr(pair.0), in_id, used);
                // The replies usually refresh the destination; a one-way
                // flow has none, and must not lose its entry either.
                core.touch(vid, MacAddr(pair.1), out_id, used);
            }
        }
    }

    /// Whether rules exist that a change in `core` has made stale.
    pub fn stale(&self, core: &Switch) -> bool {
        !self.rules.is_empty() && self.sig.as_ref().is_some_and(|s| !s.matches(core))
    }

    /// Removes every rule; `socks` gives each port's socket (global index,
    /// socket) so that it receives everything again. The rules go first,
    /// then the socket filters: a frame in between is lost rather than
    /// forwarded twice.
    pub fn invalidate(&mut self, socks: &[(usize, &PacketSocket)]) {
        if let Some(nl) = &mut self.nl {
            for (g, s) in socks {
                if self.rules.contains_key(g) {
                    nl.push(tc::del_clsact(s.ifindex()), String::new());
                }
            }
            let _ = nl.flush();
            for (g, s) in socks {
                if self.rules.contains_key(g) {
                    let _ = s.skip_pairs(&[]);
                }
            }
        }
        self.rules.clear();
        self.seen.clear();
        self.counted.clear();
        self.sig = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_go_stale_on_moves_ageing_and_port_changes_not_on_new_macs() {
        use weft_switch::{Actions, Instant, PortConfig, SwitchConfig};
        let cfg = SwitchConfig::new(
            "02:00:00:00:00:fe".parse().unwrap(),
            vec![PortConfig::access(1).edge(); 3],
        );
        let mut core = Switch::new(cfg);
        let mut out = Actions::new();
        let t = Instant::from_secs(1);
        core.tick(t, &mut out);
        let frame = |src: u8, dst: u8| {
            let mut f = vec![0x02, 0, 0, 0, 0, dst, 0x02, 0, 0, 0, 0, src, 0x08, 0x00];
            f.resize(60, 0);
            f
        };
        core.receive(PortId(0), &frame(1, 2), t, &mut out);
        core.receive(PortId(1), &frame(2, 1), t, &mut out);
        let armed = |core: &Switch| FastPath {
            rules: HashMap::from([(0, vec![(([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]), 1)])]),
            sig: Some(Sig::of(core)),
            ..FastPath::off("test")
        };
        let fp = armed(&core);
        assert!(!fp.stale(&core));
        // A new source elsewhere changes no decision already taken.
        core.receive(PortId(2), &frame(3, 1), t, &mut out);
        assert!(!fp.stale(&core));
        // A known MAC moving does.
        core.receive(PortId(2), &frame(2, 1), t, &mut out);
        assert!(fp.stale(&core));
        // A port going down (carrier or `weft link down`) does.
        let fp = armed(&core);
        core.set_enabled(PortId(2), false, t, &mut out);
        assert!(fp.stale(&core));
        // Ageing does.
        let fp = armed(&core);
        core.tick(Instant::from_secs(1000), &mut out);
        assert!(fp.stale(&core));
        // Without rules nothing is stale.
        assert!(!FastPath::off("test").stale(&core));
    }

    #[test]
    fn a_flood_of_new_sources_keeps_the_pair_counts_bounded() {
        let mut fp = FastPath {
            why_off: None,
            ..FastPath::off("test")
        };
        // observe() needs the fast path on; a socket in this namespace is
        // enough, no rule is ever installed here.
        fp.nl = Some(Netlink::open().unwrap());
        let dst = [2, 0, 0, 0, 0, 1];
        for i in 0..3 * MAX_COUNTED as u32 {
            let b = i.to_be_bytes();
            assert!(!fp.observe(0, ([2, 9, b[0], b[1], b[2], b[3]], dst), 1));
            assert!(fp.seen.len() <= MAX_COUNTED);
        }
        // A steady flow still gets there.
        let pair = ([2, 0, 0, 0, 0, 2], dst);
        assert!((1..=THRESHOLD).any(|_| fp.observe(0, pair, 1)));
    }

    #[test]
    fn only_single_vlan_access_switches_without_mirrors_use_it() {
        use weft_switch::PortConfig;
        let mac = "02:00:00:00:00:fe".parse().unwrap();
        let cfg = |ports| SwitchConfig::new(mac, ports);
        assert_eq!(refused(&cfg(vec![PortConfig::access(1); 3])), None);
        assert_eq!(refused(&cfg(vec![PortConfig::access(10); 2])), None);
        assert!(
            refused(&cfg(vec![PortConfig::access(10), PortConfig::access(20)]))
                .unwrap()
                .contains("one VLAN")
        );
        assert!(refused(&cfg(vec![
            PortConfig::access(10),
            PortConfig::trunk([10], None)
        ]))
        .is_some());
        let mut m = cfg(vec![PortConfig::access(1); 3]);
        m.mirror.output = Some(PortId(2));
        assert!(refused(&m).unwrap().contains("mirror"));
    }

    #[test]
    fn only_untagged_unicast_ip_is_eligible() {
        let mut f = vec![0x02, 1, 2, 3, 4, 5, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45];
        assert_eq!(
            eligible(&f),
            Some(([0x02, 0, 0, 0, 0, 1], [0x02, 1, 2, 3, 4, 5]))
        );
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(eligible(&f).is_some());
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(eligible(&f), None, "ARP");
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(eligible(&f), None, "tagged");
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[0] = 0x01;
        assert_eq!(eligible(&f), None, "group address");
        assert_eq!(eligible(&f[..10]), None, "runt");
    }

    #[test]
    fn a_pair_is_offered_once_at_the_threshold_and_never_when_off_or_excluded() {
        // `observe` needs the fast path on; a stand-in socket is not
        // needed for counting, so check the off and excluded cases and
        // the counting rule on a path whose netlink is a real socket.
        let mut off = FastPath::off("test");
        assert!((0..200).all(|_| !off.observe(0, ([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1]), 1)));
        let nl = Netlink::open().unwrap();
        let mut on = FastPath {
            nl: Some(nl),
            ..FastPath::off("test")
        };
        let hits: Vec<u32> = (1..=200)
            .filter(|_| on.observe(0, ([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1]), 1))
            .collect();
        assert_eq!(hits.len(), 1);
        on.exclude(3);
        assert!((0..200).all(|_| !on.observe(3, ([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 2]), 1)));
        assert!((0..200).all(|_| !on.observe(0, ([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 2]), 3)));
    }
}
