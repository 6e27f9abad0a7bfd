//! weft's userspace switch core: MAC learning per VLAN, VLAN access/trunk
//! rules, STP/RSTP, port mirroring and counters, with no I/O at all.
//!
//! Frames, port ids and the current time go in; [`Actions`] come out. The
//! core never reads a clock, so everything (ageing, STP timers) can be
//! driven by simulated time in tests. See the crate README for the design.
//!
//! ```
//! use weft_switch::{Actions, Instant, PortConfig, PortId, Switch, SwitchConfig};
//! let mac = "02:00:00:00:00:01".parse().unwrap();
//! let mut sw = Switch::new(SwitchConfig::new(mac, vec![PortConfig::access(1).edge(); 3]));
//! let mut out = Actions::new();
//! let frame = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9, 0x08, 0x06, 0, 0];
//! sw.receive(PortId(0), &frame, Instant::from_secs(1), &mut out);
//! let ports: Vec<_> = out.frames(&frame).map(|(p, _)| p).collect();
//! assert_eq!(ports, [PortId(1), PortId(2)]);
//! ```
#![forbid(unsafe_code)]

pub mod actions;
pub mod config;
pub mod counters;
pub mod fdb;
pub mod impair;
mod offload;
pub mod storm;
pub mod stp;
pub mod time;

use std::collections::HashMap;

use core::time::Duration;

pub use actions::{Action, Actions, OutFrame, TagOp};
pub use config::{
    MirrorConfig, PortConfig, PortId, PortMode, PortStpConfig, StpConfig, StpMode, SwitchConfig,
    VlanSet, DEFAULT_AGEING, DEFAULT_FDB_MAX,
};
pub use counters::{DropReason, Drops, FdbCounters, PortCounters, VlanCounters};
pub use fdb::{Fdb, FdbEntry, Learn};
pub use storm::LoopStatus;
pub use stp::{BridgeStatus, PortRole, PortState, PortStatus, PriorityVector};
pub use time::Instant;

use storm::LoopGuard;
use stp::Stp;
use weft_wire::ethernet::{EtherType, HEADER_LEN};
use weft_wire::{BpduRepr, L2Header, MacAddr, Tci};

/// Why a configuration cannot be applied to a running switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLive {
    /// Ports were added or removed.
    Ports,
    Mac,
    /// The spanning tree protocol (off, STP, RSTP) changed.
    StpMode,
    MirrorOutput,
    FdbSize,
}

impl core::fmt::Display for NotLive {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NotLive::Ports => "ports were added or removed",
            NotLive::Mac => "the switch's MAC changed",
            NotLive::StpMode => "the spanning tree protocol changed",
            NotLive::MirrorOutput => "the mirror's output port changed",
            NotLive::FdbSize => "the FDB size changed",
        })
    }
}

/// How the frame arrived, which decides the tag operation on the way out.
#[derive(Debug, Clone, Copy)]
enum Ingress {
    Untagged,
    Tagged,
    /// VID 0: priority only, the VLAN comes from the port.
    PriorityTagged(Tci),
}

#[derive(Debug, Clone)]
struct Port {
    cfg: PortConfig,
    link_up: bool,
    mirror_ingress: bool,
    mirror_egress: bool,
}

/// One switch (a bridge): `ovs-vsctl add-br` / `ip link add type bridge`.
#[derive(Debug, Clone)]
pub struct Switch {
    mac: MacAddr,
    mtu: usize,
    ageing: Duration,
    ports: Vec<Port>,
    mirror_out: Option<usize>,
    mirror_vlans: VlanSet,
    fdb: Fdb,
    stp: Stp,
    port_counters: Vec<PortCounters>,
    vlan_counters: HashMap<u16, VlanCounters>,
    unknown_port_frames: u64,
    started: bool,
    next_age: Instant,
    loop_guard: LoopGuard,
    /// Bumped by every change of the ports' settings (`reconfigure`,
    /// `add_port`), so a datapath mirroring them elsewhere can tell when
    /// to look again.
    config_generation: u64,
}

impl Switch {
    /// Builds a switch; ports start with their link up. Ports past 4095 are
    /// ignored, as STP port numbers have 12 bits.
    pub fn new(mut config: SwitchConfig) -> Self {
        config.ports.truncate(4095);
        let mut stp = Stp::new(&config.stp, config.mac, &config.ports);
        let mirror_out = config
            .mirror
            .output
            .map(PortId::index)
            .filter(|i| *i < config.ports.len());
        if let Some(m) = mirror_out {
            // The mirror output port takes no part in the spanning tree.
            stp.set_link(m, false, Instant::ZERO);
            while stp.take_port_down_flush().is_some() {}
        }
        let ports = config
            .ports
            .iter()
            .enumerate()
            .map(|(i, cfg)| Port {
                cfg: cfg.clone(),
                link_up: true,
                mirror_ingress: config.mirror.select_ingress.iter().any(|p| p.index() == i),
                mirror_egress: config.mirror.select_egress.iter().any(|p| p.index() == i),
            })
            .collect::<Vec<_>>();
        let mut fdb = Fdb::new(config.fdb_max_entries);
        for &(vid, mac, port) in &config.static_macs {
            if port.index() < ports.len() {
                fdb.add_static(vid, mac, port);
            }
        }
        Switch {
            mac: config.mac,
            mtu: usize::from(config.mtu),
            ageing: config.ageing,
            port_counters: vec![PortCounters::default(); ports.len()],
            ports,
            mirror_out,
            mirror_vlans: config.mirror.select_vlans.clone(),
            fdb,
            stp,
            vlan_counters: HashMap::new(),
            unknown_port_frames: 0,
            started: false,
            next_age: Instant::ZERO,
            loop_guard: LoopGuard::default(),
            config_generation: 0,
        }
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Applies a changed configuration to the running switch, as `bridge
    /// vlan`, `bridge fdb add ... static` and `ip link set ... type bridge`
    /// would: learned MACs stay (except on a port that left their VLAN),
    /// and the spanning tree keeps what it heard. What cannot change in
    /// place (the port list, the MAC, the STP protocol, the mirror's output
    /// port, the FDB size) is refused, and the switch is left unchanged:
    /// the caller makes a new switch.
    pub fn reconfigure(&mut self, config: SwitchConfig, now: Instant) -> Result<(), NotLive> {
        if config.ports.len() != self.ports.len() {
            return Err(NotLive::Ports);
        }
        if config.mac != self.mac {
            return Err(NotLive::Mac);
        }
        if config.stp.mode != self.stp.mode() {
            return Err(NotLive::StpMode);
        }
        let out = config
            .mirror
            .output
            .map(PortId::index)
            .filter(|i| *i < config.ports.len());
        if out != self.mirror_out {
            return Err(NotLive::MirrorOutput);
        }
        if config.fdb_max_entries != self.fdb.max_entries() {
            return Err(NotLive::FdbSize);
        }
        for (i, new) in config.ports.iter().enumerate() {
            let old = self.ports[i].cfg.clone();
            if old.mode != new.mode {
                // Entries of VLANs the port left would send frames where
                // the VLAN no longer goes.
                let gone: Vec<(u16, MacAddr)> = self
                    .fdb
                    .iter()
                    .filter(|(vid, _, e)| e.port.index() == i && !new.mode.is_member(*vid))
                    .map(|(vid, mac, _)| (vid, mac))
                    .collect();
                for (vid, mac) in gone {
                    self.fdb.remove(vid, mac);
                }
                self.ports[i].cfg.mode = new.mode.clone();
            }
            if old.stp != new.stp {
                self.ports[i].cfg.stp = new.stp.clone();
                self.stp.set_port(i, &new.stp, now);
            }
        }
        for (i, p) in self.ports.iter_mut().enumerate() {
            p.mirror_ingress = config.mirror.select_ingress.iter().any(|q| q.index() == i);
            p.mirror_egress = config.mirror.select_egress.iter().any(|q| q.index() == i);
        }
        self.mirror_vlans = config.mirror.select_vlans.clone();
        let statics: Vec<(u16, MacAddr, PortId)> = self
            .fdb
            .iter()
            .filter(|(_, _, e)| e.is_static)
            .map(|(vid, mac, e)| (vid, mac, e.port))
            .collect();
        for s in statics.iter().filter(|s| !config.static_macs.contains(s)) {
            self.fdb.remove(s.0, s.1);
        }
        for &(vid, mac, port) in &config.static_macs {
            if port.index() < self.ports.len() && !statics.contains(&(vid, mac, port)) {
                self.fdb.remove(vid, mac);
                self.fdb.add_static(vid, mac, port);
            }
        }
        self.ageing = config.ageing;
        self.mtu = usize::from(config.mtu);
        self.stp.set_bridge(&config.stp, self.mac, now);
        self.config_generation += 1;
        Ok(())
    }

    /// Changes with every change of the ports' settings (modes, mirror,
    /// MTU, a port added); STP states and links are read on their own.
    pub fn config_generation(&self) -> u64 {
        self.config_generation
    }

    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// The configuration port `port` runs with.
    pub fn port_config(&self, port: PortId) -> Option<&PortConfig> {
        self.ports.get(port.index()).map(|p| &p.cfg)
    }

    /// Adds a port to the running switch (`ip link set X master BR`) with
    /// its link up, as the last port; learned MACs and the spanning tree
    /// state of the other ports stay. A port is never taken out again (its
    /// id would shift the others'): the caller disables one that goes
    /// ([`Switch::set_enabled`]), which flushes what was learned on it.
    /// Returns the new port's id; `None` past 4095 ports (STP port
    /// numbers have 12 bits).
    pub fn add_port(&mut self, cfg: PortConfig, now: Instant) -> Option<PortId> {
        let i = self.ports.len();
        if i >= 4095 {
            return None;
        }
        self.stp.add_port(&cfg, now);
        self.ports.push(Port {
            cfg,
            link_up: true,
            mirror_ingress: false,
            mirror_egress: false,
        });
        self.port_counters.push(PortCounters::default());
        self.config_generation += 1;
        Some(PortId(i as u16))
    }

    fn start(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.next_age = now + Duration::from_secs(1);
            self.stp.start(now);
        }
    }

    /// Handles one frame received on `port`. `out` is cleared first and then
    /// holds what to send; the frame itself is referenced, not copied, so
    /// with a warmed-up `out` this does not allocate.
    pub fn receive(&mut self, port: PortId, frame: &[u8], now: Instant, out: &mut Actions) {
        out.clear();
        self.start(now);
        let i = port.index();
        let Some(p) = self.ports.get(i) else {
            self.unknown_port_frames += 1;
            return;
        };
        let usable = p.cfg.enabled && p.link_up;
        let c = &mut self.port_counters[i];
        c.rx_frames += 1;
        c.rx_bytes += frame.len() as u64;
        if !usable {
            return self.drop_port(i, DropReason::PortDown);
        }
        if self.mirror_out == Some(i) {
            return self.drop_port(i, DropReason::MirrorPort);
        }
        let hdr = match L2Header::parse(frame) {
            Ok(h) => h,
            Err(_) if frame.len() < HEADER_LEN => return self.drop_port(i, DropReason::Runt),
            Err(_) => return self.drop_port(i, DropReason::TruncatedTag),
        };
        let tags = match (hdr.outer, hdr.inner_tagged) {
            (None, _) => 0,
            (Some(_), false) => 1,
            (Some(_), true) => 2,
        };
        if frame.len() > HEADER_LEN + self.mtu + 4 * tags {
            return self.drop_port(i, DropReason::Oversize);
        }
        if hdr.dst.is_link_local_group() {
            let stp_on = self.stp.mode() != StpMode::Off;
            if hdr.dst == MacAddr::STP_GROUP && stp_on {
                match BpduRepr::parse_frame(frame) {
                    Ok((_, bpdu)) => {
                        self.port_counters[i].rx_bpdus += 1;
                        self.stp.receive(i, &bpdu, now);
                        self.after_stp(out);
                    }
                    Err(_) => self.drop_port(i, DropReason::BadBpdu),
                }
                return;
            }
            // Without STP, BPDUs are flooded like the Linux bridge does, so
            // that a loop of such bridges can at least be seen.
            if hdr.dst != MacAddr::STP_GROUP {
                return self.drop_port(i, DropReason::ReservedGroup);
            }
        }
        if hdr.src.is_multicast() {
            return self.drop_port(i, DropReason::InvalidSource);
        }
        let (vid, ingress) = match classify(&self.ports[i].cfg.mode, &hdr) {
            Ok(x) => x,
            Err(r) => return self.drop_port(i, r),
        };
        if !self.stp.learning(i) {
            return self.drop_vlan(i, vid, DropReason::StpNotForwarding);
        }
        let vc = self.vlan_counters.entry(vid).or_default();
        vc.frames += 1;
        vc.bytes += frame.len() as u64;
        if let Learn::Moved { .. } = self.fdb.learn(vid, hdr.src, port, now) {
            self.loop_guard.moved(now);
        }
        if !self.stp.forwarding(i) {
            return self.drop_vlan(i, vid, DropReason::StpNotForwarding);
        }

        let mut mirrored = self.ports[i].mirror_ingress || self.mirror_vlans.contains(vid);
        let known = if hdr.dst.is_unicast() {
            self.fdb.lookup(vid, hdr.dst)
        } else {
            None
        };
        match known {
            Some(dp) if dp == port => return self.drop_vlan(i, vid, DropReason::SameSegment),
            Some(dp) => {
                let j = dp.index();
                if !self.egress_ok(j, vid) {
                    return self.drop_vlan(i, vid, DropReason::NoEgress);
                }
                mirrored |= self.emit(j, vid, ingress, frame.len(), out);
            }
            None => {
                if let Some(vc) = self.vlan_counters.get_mut(&vid) {
                    vc.flooded += 1;
                }
                self.loop_guard.flooded(frame, now);
                for j in 0..self.ports.len() {
                    if j != i && self.egress_ok(j, vid) {
                        mirrored |= self.emit(j, vid, ingress, frame.len(), out);
                    }
                }
            }
        }
        if let (true, Some(m)) = (mirrored, self.mirror_out) {
            if m != i && self.ports[m].cfg.enabled && self.ports[m].link_up {
                // The copy carries its VLAN as a tag, so one mirror port can
                // show several VLANs apart.
                let tag = match ingress {
                    Ingress::Untagged => TagOp::Push(Tci::new(0, vid)),
                    Ingress::Tagged => TagOp::Keep,
                    Ingress::PriorityTagged(t) => TagOp::Rewrite(Tci { vid, ..t }),
                };
                self.count_tx(m, tag.out_len(frame.len()));
                out.forward(PortId(m as u16), tag);
            }
        }
    }

    fn egress_ok(&self, j: usize, vid: u16) -> bool {
        let p = &self.ports[j];
        p.cfg.enabled
            && p.link_up
            && self.mirror_out != Some(j)
            && p.cfg.mode.is_member(vid)
            && self.stp.forwarding(j)
    }

    /// Queues the frame for port `j`; returns whether `j` is mirrored.
    fn emit(
        &mut self,
        j: usize,
        vid: u16,
        ingress: Ingress,
        len: usize,
        out: &mut Actions,
    ) -> bool {
        let untagged = self.ports[j].cfg.mode.is_untagged(vid);
        let tag = match (untagged, ingress) {
            (true, Ingress::Untagged) => TagOp::Keep,
            (true, _) => TagOp::Pop,
            // PCP 0: an untagged frame had no priority to keep.
            (false, Ingress::Untagged) => TagOp::Push(Tci::new(0, vid)),
            (false, Ingress::Tagged) => TagOp::Keep,
            (false, Ingress::PriorityTagged(t)) => TagOp::Rewrite(Tci { vid, ..t }),
        };
        self.count_tx(j, tag.out_len(len));
        out.forward(PortId(j as u16), tag);
        self.ports[j].mirror_egress
    }

    fn count_tx(&mut self, j: usize, len: usize) {
        let c = &mut self.port_counters[j];
        c.tx_frames += 1;
        c.tx_bytes += len as u64;
    }

    fn drop_port(&mut self, i: usize, r: DropReason) {
        self.port_counters[i].drops.bump(r);
    }

    fn drop_vlan(&mut self, i: usize, vid: u16, r: DropReason) {
        self.port_counters[i].drops.bump(r);
        self.vlan_counters.entry(vid).or_default().drops.bump(r);
    }

    /// Runs timers: BPDU hellos, STP state timers, information expiry, MAC
    /// ageing. Call it at least every [`poll_at`](Self::poll_at); calling it
    /// more often is harmless.
    pub fn tick(&mut self, now: Instant, out: &mut Actions) {
        out.clear();
        self.start(now);
        self.stp.tick(now);
        self.loop_guard.roll(now);
        if now >= self.next_age {
            let ageing = self
                .stp
                .short_ageing()
                .unwrap_or(self.ageing)
                .min(self.ageing);
            self.fdb.age(now, ageing);
            self.next_age = now + Duration::from_secs(1);
        }
        self.after_stp(out);
    }

    /// When `tick` next has work to do.
    pub fn poll_at(&self) -> Instant {
        let t = self.stp.next_deadline().unwrap_or(self.next_age);
        t.min(self.next_age)
    }

    /// Carrier change on a port (`ip link set X down/up`). Learned entries
    /// on a port that goes down are flushed.
    pub fn set_link(&mut self, port: PortId, up: bool, now: Instant, out: &mut Actions) {
        out.clear();
        let i = port.index();
        if i >= self.ports.len() || self.ports[i].link_up == up {
            return;
        }
        self.start(now);
        self.ports[i].link_up = up;
        if !up {
            self.fdb.flush_port(port);
        }
        if self.mirror_out != Some(i) {
            self.stp.set_link(i, up && self.ports[i].cfg.enabled, now);
        }
        self.after_stp(out);
    }

    /// Administrative state (`ip link set X down/up` on the switch's side,
    /// `ovs-ofctl mod-port X down`): a disabled port neither receives nor
    /// sends, and the spanning tree and learning see it as a link down.
    pub fn set_enabled(&mut self, port: PortId, enabled: bool, now: Instant, out: &mut Actions) {
        out.clear();
        let i = port.index();
        if i >= self.ports.len() || self.ports[i].cfg.enabled == enabled {
            return;
        }
        self.start(now);
        self.ports[i].cfg.enabled = enabled;
        if !enabled {
            self.fdb.flush_port(port);
        }
        if self.mirror_out != Some(i) {
            self.stp.set_link(i, enabled && self.ports[i].link_up, now);
        }
        self.after_stp(out);
    }

    pub fn port_enabled(&self, port: PortId) -> bool {
        self.ports.get(port.index()).is_some_and(|p| p.cfg.enabled)
    }

    fn after_stp(&mut self, out: &mut Actions) {
        if let Some(scope) = self.stp.take_flush() {
            self.fdb.flush_except(scope.map(|i| PortId(i as u16)));
        }
        while let Some(i) = self.stp.take_port_down_flush() {
            self.fdb.flush_port(PortId(i as u16));
        }
        let mac = self.mac;
        let counters = &mut self.port_counters;
        self.stp.transmit(|i, bpdu| {
            let len = bpdu.frame_len();
            out.transmit(PortId(i as u16), len, |buf| {
                bpdu.emit_frame(mac, buf);
            });
            let c = &mut counters[i];
            c.tx_bpdus += 1;
            c.tx_frames += 1;
            c.tx_bytes += len as u64;
        });
    }

    /// The forwarding database (`bridge fdb show`, `ovs-appctl fdb/show`).
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// `bridge fdb add MAC dev PORT vlan VID static`. `false` if the table
    /// is full.
    pub fn add_static_mac(&mut self, vid: u16, mac: MacAddr, port: PortId) -> bool {
        port.index() < self.ports.len() && self.fdb.add_static(vid, mac, port)
    }

    /// `bridge fdb del`.
    pub fn remove_mac(&mut self, vid: u16, mac: MacAddr) -> Option<FdbEntry> {
        self.fdb.remove(vid, mac)
    }

    /// `ovs-appctl fdb/flush`: drops all learned entries.
    pub fn flush_fdb(&mut self) {
        self.fdb.flush_except(None);
    }

    pub fn fdb_counters(&self) -> &FdbCounters {
        self.fdb.counters()
    }

    /// `ip -s link show PORT` plus drop reasons.
    pub fn port_counters(&self, port: PortId) -> Option<&PortCounters> {
        self.port_counters.get(port.index())
    }

    /// `bridge -s vlan show`.
    pub fn vlan_counters(&self, vid: u16) -> VlanCounters {
        self.vlan_counters.get(&vid).copied().unwrap_or_default()
    }

    /// Every VLAN that has seen a frame, in VLAN order, with its counters.
    pub fn vlans(&self) -> Vec<(u16, VlanCounters)> {
        let mut v: Vec<_> = self.vlan_counters.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }

    /// Frames handed in with a port number the switch does not have.
    pub fn unknown_port_frames(&self) -> u64 {
        self.unknown_port_frames
    }

    /// Whether the switch sees the signs of a loop no spanning tree breaks
    /// (see [`storm`]), with the rates behind the verdict.
    pub fn loop_status(&self) -> LoopStatus {
        self.loop_guard.status()
    }

    /// `ovs-appctl stp/show`, `ovs-appctl rstp/show`, `brctl showstp`.
    pub fn stp_status(&self) -> BridgeStatus {
        self.stp.status()
    }

    pub fn port_stp_status(&self, port: PortId) -> Option<PortStatus> {
        (port.index() < self.ports.len()).then(|| self.stp.port_status(port.index()))
    }

    /// Whether frames may currently leave and enter `port` (up, and
    /// forwarding in the spanning tree).
    pub fn port_forwarding(&self, port: PortId) -> bool {
        let i = port.index();
        i < self.ports.len()
            && self.ports[i].cfg.enabled
            && self.ports[i].link_up
            && self.mirror_out != Some(i)
            && self.stp.forwarding(i)
    }
}

/// Ingress VLAN rules. Any second tag, and any 802.1ad outer tag, is
/// refused: a host on an access port or native VLAN could otherwise have its
/// outer tag stripped on the way out of a trunk and its inner tag read by
/// the next switch, hopping into another VLAN.
fn classify(mode: &PortMode, hdr: &L2Header) -> Result<(u16, Ingress), DropReason> {
    let tci = match hdr.outer {
        None => None,
        Some((tpid, _)) if tpid == EtherType::QINQ => return Err(DropReason::DoubleTagged),
        Some(_) if hdr.inner_tagged => return Err(DropReason::DoubleTagged),
        Some((_, tci)) => Some(tci),
    };
    match (mode, tci) {
        (PortMode::Access(v), None) => Ok((*v, Ingress::Untagged)),
        (PortMode::Access(v), Some(t)) if t.vid == 0 => Ok((*v, Ingress::PriorityTagged(t))),
        (PortMode::Access(_), Some(_)) => Err(DropReason::TaggedOnAccess),
        (PortMode::Trunk { native, .. }, None) => native
            .map(|n| (n, Ingress::Untagged))
            .ok_or(DropReason::UntaggedNoNative),
        (PortMode::Trunk { native, .. }, Some(t)) if t.vid == 0 => native
            .map(|n| (n, Ingress::PriorityTagged(t)))
            .ok_or(DropReason::UntaggedNoNative),
        (m, Some(t)) if t.vid <= weft_wire::vlan::VID_MAX && m.is_member(t.vid) => {
            Ok((t.vid, Ingress::Tagged))
        }
        (_, Some(_)) => Err(DropReason::VlanNotAllowed),
    }
}
