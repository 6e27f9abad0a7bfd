//! Spanning tree: one engine for 802.1D-1998 STP and 802.1w RSTP.
//!
//! Both elect the root and assign port roles the same way (priority vectors:
//! root id, root path cost, designated bridge, designated port, then the
//! receiving port). They differ in how a port reaches forwarding:
//!
//! * STP: root and designated ports go listening -> learning -> forwarding,
//!   one forward delay each; nothing forwards early, so no sync is needed.
//! * RSTP: the root port forwards at once, after every non-edge designated
//!   port has been put back to discarding ("sync"); a designated port then
//!   forwards as soon as its neighbour agrees to its proposal, which the
//!   neighbour does only after syncing itself. Without an agreement (a
//!   neighbour speaking STP, a shared link) the STP timers apply.
//!
//! A port of an RSTP bridge falls back to STP BPDUs when it hears a
//! Configuration or TCN BPDU, which is how weft interoperates with a Linux
//! kernel bridge, and returns to RSTP when it hears an RST BPDU.

use core::time::Duration;

use crate::config::{PortConfig, PortStpConfig, StpConfig, StpMode};
use crate::time::Instant;
use weft_wire::bpdu::{BpduFlags, PortRoleFlag, StpTime};
use weft_wire::{BpduRepr, BridgeId, ConfigBpdu, MacAddr};

/// `{root, root path cost, designated bridge, designated port}`; lower is
/// better, field by field, which is what the derived `Ord` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PriorityVector {
    pub root: BridgeId,
    pub root_cost: u32,
    pub bridge: BridgeId,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortRole {
    Disabled,
    Root,
    Designated,
    Alternate,
    Backup,
}

impl PortRole {
    /// The name status and JSON use (`bridge -d link` words), stable
    /// whatever the variant is called.
    pub fn name(self) -> &'static str {
        match self {
            PortRole::Disabled => "disabled",
            PortRole::Root => "root",
            PortRole::Designated => "designated",
            PortRole::Alternate => "alternate",
            PortRole::Backup => "backup",
        }
    }
}

/// Port state as `brctl showstp` / `ovs-appctl rstp/show` name it. STP
/// bridges show blocking/listening, RSTP bridges discarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortState {
    Disabled,
    Blocking,
    Listening,
    Discarding,
    Learning,
    Forwarding,
}

impl PortState {
    /// The name status and JSON use, stable whatever the variant is called.
    pub fn name(self) -> &'static str {
        match self {
            PortState::Disabled => "disabled",
            PortState::Blocking => "blocking",
            PortState::Listening => "listening",
            PortState::Discarding => "discarding",
            PortState::Learning => "learning",
            PortState::Forwarding => "forwarding",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fwd {
    Discarding,
    Learning,
    Forwarding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InfoIs {
    Disabled,
    Aged,
    Mine,
    Received,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    message_age: StpTime,
    max_age: StpTime,
    hello: StpTime,
    forward_delay: StpTime,
}

#[derive(Debug, Clone)]
struct Port {
    id: u16,
    path_cost: u32,
    admin_edge: bool,
    oper_edge: bool,
    p2p: bool,
    up: bool,
    role: PortRole,
    state: Fwd,
    info: InfoIs,
    prio: PriorityVector,
    times: Times,
    info_expires: Option<Instant>,
    /// Next listening->learning->forwarding step.
    fd_timer: Option<Instant>,
    /// While set, BPDUs from this port carry the TC flag.
    tc_while: Option<Instant>,
    /// Neighbour speaks RSTP (always false on an STP bridge).
    send_rstp: bool,
    proposing: bool,
    agreed: bool,
    /// Send an agreement in the next BPDU.
    agree: bool,
    /// Just became the root port: say so to the far end once.
    announce_root: bool,
    /// Set TCA in the next Configuration BPDU (answer to a TCN).
    tc_ack: bool,
    /// Send TCNs on this (root) port until the root acknowledges.
    tcn_pending: bool,
    /// Something changed: send a BPDU now rather than at the next hello.
    new_info: bool,
}

/// Bridge-wide spanning tree status (`ovs-appctl rstp/show`, `brctl showstp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeStatus {
    pub mode: StpMode,
    pub bridge_id: BridgeId,
    pub root_id: BridgeId,
    pub root_path_cost: u32,
    /// Index of the root port; `None` on the root bridge.
    pub root_port: Option<usize>,
    pub topology_changes: u64,
    pub last_topology_change: Option<Instant>,
    /// The timers in force: the root's, learned from its BPDUs (this
    /// bridge's own when it is the root). Ports wait for these, not for
    /// the bridge's configured ones.
    pub forward_delay: Duration,
    pub max_age: Duration,
}

/// Per-port spanning tree status (`bridge -d link show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStatus {
    pub role: PortRole,
    pub state: PortState,
    pub port_id: u16,
    pub designated: PriorityVector,
    pub edge: bool,
    /// The port talks to its neighbour with RSTP BPDUs (else STP ones).
    pub rstp: bool,
}

/// FDB flush the engine asks for: all dynamic entries except those on one
/// port (`Some`), or all of them (`None`).
pub(crate) type FlushScope = Option<usize>;

#[derive(Debug, Clone)]
pub(crate) struct Stp {
    mode: StpMode,
    bridge_id: BridgeId,
    own_times: Times,
    root_vector: PriorityVector,
    root_times: Times,
    root_port: Option<usize>,
    ports: Vec<Port>,
    hello_due: Option<Instant>,
    tc_count: u64,
    last_tc: Option<Instant>,
    flush: Option<FlushScope>,
    port_down_flush: Vec<usize>,
}

const ONE_SEC: StpTime = StpTime::from_secs(1);

/// Port `i` as it starts: knowing nothing but this bridge (`own`).
fn new_port(
    mode: StpMode,
    i: usize,
    pc: &PortConfig,
    own: PriorityVector,
    own_times: Times,
) -> Port {
    Port {
        // 4-bit priority and 12-bit number, as 802.1D-2004; with the
        // default priority 128 this is the Linux bridge's 0x8001...
        id: (u16::from(pc.stp.priority >> 4) << 12) | ((i as u16 + 1) & 0x0fff),
        path_cost: pc.stp.path_cost.max(1),
        admin_edge: pc.stp.edge,
        oper_edge: pc.stp.edge,
        p2p: pc.stp.point_to_point,
        up: pc.enabled,
        role: PortRole::Disabled,
        state: Fwd::Discarding,
        info: if pc.enabled {
            InfoIs::Aged
        } else {
            InfoIs::Disabled
        },
        prio: own,
        times: own_times,
        info_expires: None,
        fd_timer: None,
        tc_while: None,
        send_rstp: mode == StpMode::Rstp,
        proposing: false,
        agreed: false,
        agree: false,
        announce_root: false,
        tc_ack: false,
        tcn_pending: false,
        new_info: false,
    }
}

impl Stp {
    pub(crate) fn new(cfg: &StpConfig, mac: MacAddr, ports: &[PortConfig]) -> Self {
        let bridge_id = BridgeId::new(cfg.priority, mac);
        let own_times = Times {
            message_age: StpTime(0),
            max_age: StpTime::from_duration(cfg.max_age),
            hello: StpTime::from_duration(cfg.hello_time),
            forward_delay: StpTime::from_duration(cfg.forward_delay),
        };
        let own = PriorityVector {
            root: bridge_id,
            root_cost: 0,
            bridge: bridge_id,
            port: 0,
        };
        let ports = ports
            .iter()
            .enumerate()
            .map(|(i, pc)| new_port(cfg.mode, i, pc, own, own_times))
            .collect();
        Stp {
            mode: cfg.mode,
            bridge_id,
            own_times,
            root_vector: own,
            root_times: own_times,
            root_port: None,
            ports,
            hello_due: None,
            tc_count: 0,
            last_tc: None,
            flush: None,
            port_down_flush: Vec::new(),
        }
    }

    fn rstp(&self) -> bool {
        self.mode == StpMode::Rstp
    }

    fn fwd_delay(&self) -> Duration {
        self.root_times.forward_delay.to_duration()
    }

    pub(crate) fn start(&mut self, now: Instant) {
        self.hello_due = Some(now);
        self.update_roles(now);
    }

    pub(crate) fn mode(&self) -> StpMode {
        self.mode
    }

    /// Ports that may learn: learning or forwarding (every up port when off).
    pub(crate) fn learning(&self, i: usize) -> bool {
        let p = &self.ports[i];
        p.up && (self.mode == StpMode::Off || p.state >= Fwd::Learning)
    }

    pub(crate) fn forwarding(&self, i: usize) -> bool {
        let p = &self.ports[i];
        p.up && (self.mode == StpMode::Off || p.state == Fwd::Forwarding)
    }

    /// Topology change in progress: STP bridges age out entries after one
    /// forward delay instead of the configured ageing time meanwhile.
    pub(crate) fn short_ageing(&self) -> Option<Duration> {
        let tc = self.ports.iter().any(|p| p.tc_while.is_some());
        (tc && self.mode == StpMode::Stp).then(|| self.fwd_delay())
    }

    pub(crate) fn take_flush(&mut self) -> Option<FlushScope> {
        self.flush.take()
    }

    pub(crate) fn take_port_down_flush(&mut self) -> Option<usize> {
        self.port_down_flush.pop()
    }

    fn request_flush(&mut self, scope: FlushScope) {
        self.flush = match self.flush {
            None => Some(scope),
            Some(prev) if prev == scope => Some(scope),
            Some(_) => Some(None),
        };
    }

    pub(crate) fn status(&self) -> BridgeStatus {
        BridgeStatus {
            mode: self.mode,
            bridge_id: self.bridge_id,
            root_id: self.root_vector.root,
            root_path_cost: self.root_vector.root_cost,
            root_port: self.root_port,
            topology_changes: self.tc_count,
            last_topology_change: self.last_tc,
            forward_delay: self.root_times.forward_delay.to_duration(),
            max_age: self.root_times.max_age.to_duration(),
        }
    }

    pub(crate) fn port_status(&self, i: usize) -> PortStatus {
        let p = &self.ports[i];
        let state = match (self.mode, p.up, p.state) {
            (StpMode::Off, true, _) => PortState::Forwarding,
            (_, false, _) => PortState::Disabled,
            (_, true, Fwd::Forwarding) => PortState::Forwarding,
            (_, true, Fwd::Learning) => PortState::Learning,
            (StpMode::Rstp, true, Fwd::Discarding) => PortState::Discarding,
            (_, true, Fwd::Discarding) if p.fd_timer.is_some() => PortState::Listening,
            (_, true, Fwd::Discarding) => PortState::Blocking,
        };
        PortStatus {
            role: p.role,
            state,
            port_id: p.id,
            designated: p.prio,
            edge: p.oper_edge,
            rstp: self.rstp() && p.send_rstp,
        }
    }

    /// New bridge priority and timers on a running bridge (`ip link set
    /// br0 type bridge priority P forward_delay F`): the bridge id and the
    /// vectors this bridge sends change, roles are chosen again; ports keep
    /// what they heard from their neighbours and their timers.
    pub(crate) fn set_bridge(&mut self, cfg: &StpConfig, mac: MacAddr, now: Instant) {
        let bridge_id = BridgeId::new(cfg.priority, mac);
        let own_times = Times {
            message_age: StpTime(0),
            max_age: StpTime::from_duration(cfg.max_age),
            hello: StpTime::from_duration(cfg.hello_time),
            forward_delay: StpTime::from_duration(cfg.forward_delay),
        };
        if (bridge_id, own_times) == (self.bridge_id, self.own_times) {
            return;
        }
        self.bridge_id = bridge_id;
        self.own_times = own_times;
        if self.root_port.is_none() {
            self.root_times = self.own_times;
        }
        for p in &mut self.ports {
            p.new_info = true;
        }
        if self.hello_due.is_some() {
            self.update_roles(now);
        }
    }

    /// A port added to a running bridge (`ip link set X master BR`): it
    /// starts as a new port does, the other ports keep what they know.
    pub(crate) fn add_port(&mut self, pc: &PortConfig, now: Instant) {
        let own = PriorityVector {
            root: self.bridge_id,
            root_cost: 0,
            bridge: self.bridge_id,
            port: 0,
        };
        let i = self.ports.len();
        self.ports
            .push(new_port(self.mode, i, pc, own, self.own_times));
        if self.hello_due.is_some() {
            self.update_roles(now);
        }
    }

    /// New spanning tree settings of port `i` on a running bridge
    /// (`bridge link set dev X cost C priority P`).
    pub(crate) fn set_port(&mut self, i: usize, pc: &PortStpConfig, now: Instant) {
        let p = &mut self.ports[i];
        p.id = (u16::from(pc.priority >> 4) << 12) | (p.id & 0x0fff);
        p.path_cost = pc.path_cost.max(1);
        if p.admin_edge != pc.edge {
            p.admin_edge = pc.edge;
            p.oper_edge = pc.edge;
        }
        p.p2p = pc.point_to_point;
        p.new_info = true;
        if self.hello_due.is_some() {
            self.update_roles(now);
        }
    }

    pub(crate) fn set_link(&mut self, i: usize, up: bool, now: Instant) {
        let rstp = self.rstp();
        let p = &mut self.ports[i];
        if p.up == up {
            return;
        }
        p.up = up;
        p.info = if up { InfoIs::Aged } else { InfoIs::Disabled };
        p.info_expires = None;
        p.tc_while = None;
        p.tcn_pending = false;
        p.send_rstp = rstp;
        p.oper_edge = p.admin_edge;
        if !up {
            self.port_down_flush.push(i);
        }
        if self.hello_due.is_some() {
            self.update_roles(now);
        }
    }

    /// Role selection (802.1D-2004 17.21.25, same result as 802.1D-1998's
    /// root and designated port selection), then the state changes it implies.
    fn update_roles(&mut self, now: Instant) {
        if self.mode == StpMode::Off {
            return;
        }
        let old_root_port = self.root_port;
        let old_root = self.root_vector.root;
        let own = PriorityVector {
            root: self.bridge_id,
            root_cost: 0,
            bridge: self.bridge_id,
            port: 0,
        };
        let mut best: Option<(PriorityVector, u16, usize)> = None;
        for (i, p) in self.ports.iter().enumerate() {
            // Info whose designated bridge is us came back over another of
            // our ports: it can make a backup port, never a root port.
            if !p.up || p.info != InfoIs::Received || p.prio.bridge == self.bridge_id {
                continue;
            }
            let cand = PriorityVector {
                root_cost: p.prio.root_cost.saturating_add(p.path_cost),
                ..p.prio
            };
            let better = match best {
                None => true,
                Some((b, bid, _)) => (cand, p.id) < (b, bid),
            };
            if better {
                best = Some((cand, p.id, i));
            }
        }
        match best {
            Some((cand, _, i)) if cand.root < own.root => {
                self.root_port = Some(i);
                self.root_vector = cand;
                let t = self.ports[i].times;
                self.root_times = Times {
                    message_age: StpTime(t.message_age.0.saturating_add(ONE_SEC.0)),
                    ..t
                };
            }
            _ => {
                self.root_port = None;
                self.root_vector = own;
                self.root_times = self.own_times;
            }
        }
        let root_changed = self.root_port != old_root_port || self.root_vector.root != old_root;
        let rstp = self.rstp();
        let fwd_delay = self.fwd_delay();
        let mut went_forwarding = Vec::new();
        for i in 0..self.ports.len() {
            let designated = PriorityVector {
                root: self.root_vector.root,
                root_cost: self.root_vector.root_cost,
                bridge: self.bridge_id,
                port: self.ports[i].id,
            };
            let root_times = self.root_times;
            let is_root = self.root_port == Some(i);
            let p = &mut self.ports[i];
            let old_role = p.role;
            let role = if !p.up {
                PortRole::Disabled
            } else if is_root {
                PortRole::Root
            } else if p.info == InfoIs::Received && p.prio < designated {
                if p.prio.bridge == self.bridge_id {
                    PortRole::Backup
                } else {
                    PortRole::Alternate
                }
            } else {
                if p.info != InfoIs::Mine || p.prio != designated {
                    p.new_info = true;
                }
                p.info = InfoIs::Mine;
                p.prio = designated;
                p.times = root_times;
                p.info_expires = None;
                PortRole::Designated
            };
            p.role = role;
            match role {
                PortRole::Disabled | PortRole::Alternate | PortRole::Backup => {
                    // 802.1D-1998 reports a forwarding port that blocks as a
                    // topology change; RSTP only reports new forwarding ports.
                    if p.state == Fwd::Forwarding && !rstp && !p.oper_edge && p.up {
                        went_forwarding.push(i);
                    }
                    p.state = Fwd::Discarding;
                    p.fd_timer = None;
                    p.proposing = false;
                    p.agreed = false;
                    if role == PortRole::Disabled {
                        p.tc_while = None;
                    }
                }
                PortRole::Root => {
                    if old_role != PortRole::Root {
                        p.proposing = false;
                        p.agreed = false;
                        p.announce_root = true;
                        p.new_info = true;
                    }
                    // RSTP's root port waits for nothing: the sync below puts
                    // every other non-edge port to discarding in the same step.
                    if rstp {
                        if p.state != Fwd::Forwarding {
                            p.state = Fwd::Forwarding;
                            p.fd_timer = None;
                            if !p.oper_edge {
                                went_forwarding.push(i);
                            }
                        }
                    } else if p.state == Fwd::Discarding && p.fd_timer.is_none() {
                        p.fd_timer = Some(now + fwd_delay);
                    }
                }
                PortRole::Designated => {
                    if p.oper_edge {
                        p.state = Fwd::Forwarding;
                        p.fd_timer = None;
                    } else if p.state != Fwd::Forwarding && p.fd_timer.is_none() {
                        p.fd_timer = Some(now + fwd_delay);
                    }
                    if old_role != PortRole::Designated {
                        p.agreed = false;
                        p.new_info = true;
                        p.proposing = rstp
                            && p.send_rstp
                            && p.p2p
                            && !p.oper_edge
                            && p.state != Fwd::Forwarding;
                    }
                }
            }
        }
        if rstp && root_changed {
            for p in &mut self.ports {
                if p.role == PortRole::Designated {
                    p.agreed = false;
                }
            }
            self.sync(now);
        }
        for i in went_forwarding {
            self.tc_detected(i, now);
        }
    }

    /// Puts every non-edge designated port that has no agreement for the
    /// current root information back to discarding (and proposing), so the
    /// root port can forward without closing a loop.
    fn sync(&mut self, now: Instant) {
        let fwd_delay = self.fwd_delay();
        for p in &mut self.ports {
            if p.role != PortRole::Designated || p.oper_edge || !p.up {
                continue;
            }
            if p.state != Fwd::Discarding && !p.agreed {
                p.state = Fwd::Discarding;
                p.fd_timer = Some(now + fwd_delay);
                p.proposing = p.send_rstp && p.p2p;
                p.new_info = true;
            }
        }
    }

    /// A non-edge port began forwarding (or, with STP, stopped).
    fn tc_detected(&mut self, i: usize, now: Instant) {
        self.tc_count += 1;
        self.last_tc = Some(now);
        self.request_flush(Some(i));
        for j in 0..self.ports.len() {
            self.new_tc_while(j, now);
        }
    }

    /// A neighbour told us about a topology change on port `i`.
    fn tc_received(&mut self, i: usize, now: Instant) {
        self.last_tc = Some(now);
        self.request_flush(Some(i));
        for j in 0..self.ports.len() {
            if j != i {
                self.new_tc_while(j, now);
            }
        }
    }

    fn new_tc_while(&mut self, j: usize, now: Instant) {
        let rt = self.root_times;
        let is_root_bridge = self.root_port.is_none();
        let rstp = self.rstp();
        let p = &mut self.ports[j];
        if !p.up || p.oper_edge || !matches!(p.role, PortRole::Root | PortRole::Designated) {
            return;
        }
        if p.tc_while.is_none() {
            let d = if rstp && p.send_rstp {
                rt.hello.to_duration() + Duration::from_secs(1)
            } else {
                rt.max_age.to_duration() + rt.forward_delay.to_duration()
            };
            // Without a root to tell, an STP root announces the change
            // itself; a non-root STP port tells the root with TCNs.
            if p.role == PortRole::Root && !(rstp && p.send_rstp) {
                p.tcn_pending = true;
            }
            if p.role == PortRole::Designated || is_root_bridge || rstp {
                p.tc_while = Some(now + d);
            }
            p.new_info = true;
        }
    }

    pub(crate) fn receive(&mut self, i: usize, bpdu: &BpduRepr, now: Instant) {
        if self.mode == StpMode::Off || i >= self.ports.len() || !self.ports[i].up {
            return;
        }
        let rstp = self.rstp();
        let p = &mut self.ports[i];
        // A bridge is attached after all: no longer an edge port.
        p.oper_edge = false;
        match bpdu {
            BpduRepr::Tcn => {
                p.send_rstp = false;
                if p.role == PortRole::Designated {
                    p.tc_ack = true;
                    p.new_info = true;
                    self.tc_received(i, now);
                    // The notifying segment hears the change back too
                    // (802.1D-2004 17.25, NOTIFIED_TCN).
                    self.new_tc_while(i, now);
                }
            }
            BpduRepr::Config(c) => {
                p.send_rstp = false;
                self.receive_config(i, c, PortRoleFlag::Designated, false, now);
            }
            BpduRepr::Rst(c) => {
                if rstp {
                    p.send_rstp = true;
                    self.receive_config(i, c, c.flags.role(), true, now);
                } else if c.flags.role() == PortRoleFlag::Designated {
                    // An STP bridge understands an RST BPDU's priority
                    // vector and timers; the rest is RSTP business.
                    let plain = ConfigBpdu {
                        flags: BpduFlags(c.flags.0 & (BpduFlags::TC | BpduFlags::TCA)),
                        ..*c
                    };
                    self.receive_config(i, &plain, PortRoleFlag::Designated, false, now);
                }
            }
        }
    }

    fn receive_config(
        &mut self,
        i: usize,
        c: &ConfigBpdu,
        role: PortRoleFlag,
        rst: bool,
        now: Instant,
    ) {
        let msg = PriorityVector {
            root: c.root,
            root_cost: c.root_path_cost,
            bridge: c.bridge,
            port: c.port_id,
        };
        let own_id = self.bridge_id;
        let our_root = self.root_vector.root;
        let p = &mut self.ports[i];
        if msg.bridge == own_id && msg.port == p.id {
            return; // our own BPDU, looped back
        }
        let flags = c.flags;
        match role {
            PortRoleFlag::Designated | PortRoleFlag::Unknown => {
                let same_sender = p.info == InfoIs::Received
                    && p.prio.bridge == msg.bridge
                    && p.prio.port == msg.port;
                // Information one hop from max age cannot be passed on; like
                // 802.1D-2004 (updtRcvdInfoWhile) it expires at once, so a
                // dead root's stale information dies after at most max_age
                // hops instead of lingering for three hello times.
                if c.message_age.0.saturating_add(ONE_SEC.0) > c.max_age.0 {
                    if same_sender {
                        p.info = InfoIs::Aged;
                        p.info_expires = None;
                        self.update_roles(now);
                    }
                    return;
                }
                let better = match p.info {
                    InfoIs::Received | InfoIs::Mine => msg < p.prio,
                    InfoIs::Aged | InfoIs::Disabled => true,
                };
                if !(better || same_sender) {
                    // Inferior information from a bridge that thinks it is
                    // designated here: answer so that it learns better.
                    if p.role == PortRole::Designated {
                        p.new_info = true;
                    }
                    return;
                }
                let changed = p.info != InfoIs::Received || p.prio != msg;
                p.prio = msg;
                p.info = InfoIs::Received;
                p.times = Times {
                    message_age: c.message_age,
                    max_age: c.max_age,
                    hello: c.hello_time,
                    forward_delay: c.forward_delay,
                };
                let life = if rst {
                    // 802.1D-2004: three missed hellos.
                    c.hello_time.to_duration() * 3
                } else {
                    // 802.1D-1998: the message age timer runs to max age.
                    c.max_age
                        .to_duration()
                        .saturating_sub(c.message_age.to_duration())
                };
                p.info_expires = Some(now + life);
                if changed {
                    self.update_roles(now);
                }
                let p = &mut self.ports[i];
                if flags.has(BpduFlags::TCA) && p.role == PortRole::Root {
                    p.tcn_pending = false;
                }
                if rst && flags.has(BpduFlags::PROPOSAL) && p.p2p {
                    match p.role {
                        PortRole::Root => {
                            self.sync(now);
                            let p = &mut self.ports[i];
                            p.agree = true;
                            p.new_info = true;
                        }
                        PortRole::Alternate | PortRole::Backup => {
                            // Our end stays discarding, so agreeing is safe.
                            p.agree = true;
                            p.new_info = true;
                        }
                        _ => {}
                    }
                }
                if flags.has(BpduFlags::TC) && self.ports[i].role == PortRole::Root {
                    self.tc_received(i, now);
                }
            }
            PortRoleFlag::Root | PortRoleFlag::AlternateOrBackup => {
                // The bridge whose designated information we hold no longer
                // calls its port designated: that information is stale (two
                // crossing BPDUs during a count-to-infinity can leave both
                // ends of a link holding each other's as root port). Drop it
                // rather than wait three hellos for it to expire.
                if p.info == InfoIs::Received
                    && p.prio.bridge == msg.bridge
                    && p.prio.port == msg.port
                {
                    p.info = InfoIs::Aged;
                    p.info_expires = None;
                    self.update_roles(now);
                    return;
                }
                // From the far end of a segment we are designated for.
                if flags.has(BpduFlags::AGREEMENT)
                    && p.role == PortRole::Designated
                    && p.proposing
                    && msg.root == our_root
                {
                    p.agreed = true;
                    p.proposing = false;
                    if p.state != Fwd::Forwarding {
                        p.state = Fwd::Forwarding;
                        p.fd_timer = None;
                        p.new_info = true;
                        if !p.oper_edge {
                            self.tc_detected(i, now);
                        }
                    }
                }
                if flags.has(BpduFlags::TC) && self.ports[i].role == PortRole::Designated {
                    self.tc_received(i, now);
                }
            }
        }
    }

    pub(crate) fn tick(&mut self, now: Instant) {
        if self.mode == StpMode::Off {
            return;
        }
        let mut reselect = false;
        let fwd_delay = self.fwd_delay();
        let mut went_forwarding = Vec::new();
        for (i, p) in self.ports.iter_mut().enumerate() {
            if p.info == InfoIs::Received && p.info_expires.is_some_and(|t| now >= t) {
                p.info = InfoIs::Aged;
                p.info_expires = None;
                reselect = true;
            }
            if p.tc_while.is_some_and(|t| now >= t) {
                p.tc_while = None;
            }
            if let Some(t) = p.fd_timer {
                if now >= t {
                    match p.state {
                        Fwd::Discarding => {
                            p.state = Fwd::Learning;
                            p.fd_timer = Some(now + fwd_delay);
                        }
                        Fwd::Learning => {
                            p.state = Fwd::Forwarding;
                            p.fd_timer = None;
                            p.proposing = false;
                            if !p.oper_edge {
                                went_forwarding.push(i);
                            }
                        }
                        Fwd::Forwarding => p.fd_timer = None,
                    }
                    p.new_info = true;
                }
            }
        }
        for i in went_forwarding {
            self.tc_detected(i, now);
        }
        if reselect {
            self.update_roles(now);
        }
        if self.hello_due.is_some_and(|t| now >= t) {
            self.hello_due = Some(
                now + self
                    .root_times
                    .hello
                    .to_duration()
                    .max(Duration::from_millis(100)),
            );
            for p in &mut self.ports {
                if p.role == PortRole::Designated || p.tcn_pending {
                    p.new_info = true;
                }
            }
        }
    }

    /// Earliest time `tick` has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        // `tick` does nothing without a spanning tree, so the hello set
        // by `start` never moves on: reporting it would make every poll
        // due at once, and the datapath spin on an idle switch.
        if self.mode == StpMode::Off {
            return None;
        }
        let mut t = self.hello_due;
        for p in &self.ports {
            for d in [p.info_expires, p.fd_timer, p.tc_while]
                .into_iter()
                .flatten()
            {
                t = Some(t.map_or(d, |x: Instant| x.min(d)));
            }
        }
        t
    }

    /// Calls `send` with each BPDU due, oldest news first, and clears the
    /// one-shot flags they carried.
    pub(crate) fn transmit(&mut self, mut send: impl FnMut(usize, BpduRepr)) {
        if self.mode == StpMode::Off {
            return;
        }
        for i in 0..self.ports.len() {
            if !self.ports[i].new_info {
                continue;
            }
            if let Some(b) = self.build(i) {
                send(i, b);
            }
            let p = &mut self.ports[i];
            p.new_info = false;
            p.agree = false;
            p.announce_root = false;
            p.tc_ack = false;
        }
    }

    fn build(&self, i: usize) -> Option<BpduRepr> {
        let p = &self.ports[i];
        if !p.up {
            return None;
        }
        let rst = self.rstp() && p.send_rstp;
        let t = self.root_times;
        let mut flags = BpduFlags::default();
        flags.set(BpduFlags::TC, p.tc_while.is_some());
        let body = |flags| ConfigBpdu {
            flags,
            root: self.root_vector.root,
            root_path_cost: self.root_vector.root_cost,
            bridge: self.bridge_id,
            port_id: p.id,
            message_age: t.message_age,
            max_age: t.max_age,
            hello_time: t.hello,
            forward_delay: t.forward_delay,
        };
        if !rst {
            return match p.role {
                PortRole::Designated => {
                    flags.set(BpduFlags::TCA, p.tc_ack);
                    Some(BpduRepr::Config(body(flags)))
                }
                PortRole::Root if p.tcn_pending => Some(BpduRepr::Tcn),
                _ => None,
            };
        }
        let role = match p.role {
            PortRole::Designated => PortRoleFlag::Designated,
            PortRole::Root if p.agree || p.announce_root || p.tc_while.is_some() => {
                PortRoleFlag::Root
            }
            PortRole::Alternate | PortRole::Backup if p.agree => PortRoleFlag::AlternateOrBackup,
            _ => return None,
        };
        flags.set_role(role);
        flags.set(
            BpduFlags::PROPOSAL,
            p.proposing && p.state != Fwd::Forwarding,
        );
        flags.set(BpduFlags::AGREEMENT, p.agree);
        flags.set(BpduFlags::LEARNING, p.state >= Fwd::Learning);
        flags.set(BpduFlags::FORWARDING, p.state == Fwd::Forwarding);
        Some(BpduRepr::Rst(body(flags)))
    }
}

#[cfg(test)]
mod names {
    use super::{PortRole, PortState};

    /// `weft status --json` and events carry these names (docs/status.md):
    /// pinned so that renaming a variant cannot change them.
    #[test]
    fn role_and_state_names_are_pinned() {
        use PortRole as R;
        let roles = [R::Disabled, R::Root, R::Designated, R::Alternate, R::Backup];
        assert_eq!(
            roles.map(PortRole::name),
            ["disabled", "root", "designated", "alternate", "backup"]
        );
        use PortState as S;
        let states = [
            S::Disabled,
            S::Blocking,
            S::Listening,
            S::Discarding,
            S::Learning,
            S::Forwarding,
        ];
        assert_eq!(
            states.map(PortState::name),
            [
                "disabled",
                "blocking",
                "listening",
                "discarding",
                "learning",
                "forwarding"
            ]
        );
    }
}
