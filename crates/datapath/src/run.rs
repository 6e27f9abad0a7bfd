//! The datapath loop.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use weft_switch::{Action, Actions, Instant, PortId, PortMode, StpMode, Switch, TagOp};
use weft_sys::netlink::Netlink;
use weft_sys::port::{PacketSocket, Poller, Ready, RxBatch, TxFrame, VnetHdr};
use weft_topo::Lab;

use crate::config::switch_config;
use crate::control::{
    FdbReply, FdbRow, FdbStats, PortInfo, Reply, Request, StatusReply, SwitchInfo, VlanInfo,
};
use crate::fastpath::{self, FastPath};

mod admin;
mod impaired;
mod live;
mod wire;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Sys(#[from] weft_sys::Error),
    #[error("lab {0} has no switch; the datapath has nothing to do")]
    NoSwitch(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Frames read from one port per wakeup at most (in batches), so one busy
/// port cannot starve the others.
const BATCHES_PER_WAKEUP: usize = 8;
const RX_BATCH: usize = 32;
/// How often carriers are checked (ports of removed nodes are found then).
const CARRIER_EVERY: Duration = Duration::from_millis(100);
const CONTROL: u64 = u64::MAX;

struct Port {
    name: String,
    switch: usize,
    id: PortId,
    sock: Option<PacketSocket>,
    carrier: bool,
    tx_errors: u64,
    storm: Storm,
    /// Delay, loss, ...: frames through this port wait in a queue.
    imp: Option<Box<impaired::PortImpair>>,
}

/// Storm control: broadcast and multicast frames entering a port are
/// limited to [`STORM_LIMIT`] per [`STORM_WINDOW`]; the rest are dropped
/// and counted. Without a spanning tree a loop would otherwise circulate
/// every broadcast as fast as the CPU allows.
#[derive(Default)]
struct Storm {
    window: Option<Instant>,
    count: u32,
    dropped: u64,
}

/// 10,000 broadcast/multicast frames per second per port: far above what
/// a lab's ARP, ND and DHCP make, far below a loop's rate.
pub const STORM_LIMIT: u32 = 1000;
pub const STORM_WINDOW: Duration = Duration::from_millis(100);

impl Storm {
    /// True if this flooded frame may pass.
    fn admit(&mut self, now: Instant) -> bool {
        match self.window {
            Some(w) if now.saturating_duration_since(w) < STORM_WINDOW => {}
            _ => {
                self.window = Some(now);
                self.count = 0;
            }
        }
        self.count += 1;
        if self.count > STORM_LIMIT {
            self.dropped += 1;
            false
        } else {
            true
        }
    }
}

struct Sw {
    name: String,
    core: Switch,
    /// Core port index -> global port index.
    ports: Vec<usize>,
    modes: Vec<String>,
    /// The loop warning was logged for the current suspicion.
    loop_warned: bool,
    fast: FastPath,
}

/// Where a queued output frame's bytes are.
#[derive(Clone, Copy)]
enum Src {
    /// Frame `i` of the receive batch, with a tag operation.
    Rx(usize, TagOp),
    /// A frame the switch made (a BPDU), in `owned`.
    Owned(usize),
}

struct Dp {
    ports: Vec<Port>,
    switches: Vec<Sw>,
    poller: Poller,
    acts: Actions,
    queues: Vec<Vec<(Src, VnetHdr)>>,
    dirty: Vec<usize>,
    owned: Vec<Vec<u8>>,
    clock: std::time::Instant,
    lab_name: String,
    /// Flows that became steady in the last batch: (switch, in port,
    /// MAC pair, out port).
    offload: Vec<(usize, usize, fastpath::Pair, usize)>,
    /// The lab's event stream (crate::events).
    watch: crate::events::Watch,
}

/// Serves every switch of `lab` until killed, answering on `control`.
pub fn run(lab: &Lab, control: &Path) -> Result<(), Error> {
    let mut dp = Dp {
        ports: Vec::new(),
        switches: Vec::new(),
        poller: Poller::new().map_err(io_err("creating the epoll set"))?,
        acts: Actions::new(),
        queues: Vec::new(),
        dirty: Vec::new(),
        owned: Vec::new(),
        clock: std::time::Instant::now(),
        lab_name: String::new(),
        offload: Vec::new(),
        watch: crate::events::Watch::new(control.parent().unwrap_or(Path::new("."))),
    };
    let fast_on = std::env::var("WEFT_SWITCH_FASTPATH").map_or(true, |v| v != "off");
    for node in lab.nodes.values() {
        let Some((names, cfg)) = switch_config(&lab.name, node) else {
            continue;
        };
        let modes = cfg.ports.iter().map(|p| mode_text(&p.mode)).collect();
        let refused = crate::fastpath::refused(&cfg);
        let s = dp.switches.len();
        // Sockets belong to the namespace they are made in: make them on
        // a thread inside the switch's namespace.
        let list = names.clone();
        let socks = weft_sys::netns::run_in_named(&node.netns, move || {
            list.iter()
                .map(|n| PacketSocket::open(n))
                .collect::<Vec<_>>()
        })?;
        let mut global = Vec::new();
        for (i, (name, sock)) in names.into_iter().zip(socks).enumerate() {
            let g = dp.ports.len();
            let sock = match sock {
                Ok(s) => {
                    dp.poller
                        .add(s.as_fd(), g as u64)
                        .map_err(io_err(format!("watching port {name} of {}", node.name)))?;
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!(switch = %node.name, port = %name, "cannot open the port: {e}; it stays down");
                    None
                }
            };
            dp.ports.push(Port {
                name,
                switch: s,
                id: PortId(i as u16),
                sock,
                carrier: true,
                tx_errors: 0,
                storm: Storm::default(),
                imp: None,
            });
            dp.queues.push(Vec::new());
            global.push(g);
        }
        let fast = if let (Some(why), false) = (refused, fast_on) {
            FastPath::off(why)
        } else if refused.is_some() {
            // Trunks, several VLANs or a mirror: the tc BPF switch.
            let socks: Vec<Option<&PacketSocket>> =
                global.iter().map(|&g| dp.ports[g].sock.as_ref()).collect();
            let fp = match weft_sys::netns::run_in_named(&node.netns, Netlink::open) {
                Ok(Ok(nl)) => FastPath::with_bpf(nl, &cfg, &socks),
                Ok(Err(e)) => FastPath::off(format!("no netlink socket ({e})")),
                Err(e) => FastPath::off(format!("no netlink socket ({e})")),
            };
            if !fp.is_bpf() {
                tracing::warn!(switch = %node.name, "no kernel fast path: {}", fp.describe());
            }
            fp
        } else if !fast_on {
            FastPath::off("WEFT_SWITCH_FASTPATH=off")
        } else {
            let ixs: Vec<u32> = global
                .iter()
                .filter_map(|&g| dp.ports[g].sock.as_ref().map(|s| s.ifindex()))
                .collect();
            match weft_sys::netns::run_in_named(&node.netns, Netlink::open) {
                Ok(Ok(nl)) => FastPath::new(nl, &ixs),
                Ok(Err(e)) => {
                    tracing::warn!(switch = %node.name, "no netlink socket for the fast path ({e}); every frame goes through userspace");
                    FastPath::off(format!("no netlink socket ({e})"))
                }
                Err(e) => {
                    tracing::warn!(switch = %node.name, "no netlink socket for the fast path ({e}); every frame goes through userspace");
                    FastPath::off(format!("no netlink socket ({e})"))
                }
            }
        };
        dp.switches.push(Sw {
            name: node.name.clone(),
            core: Switch::new(cfg),
            ports: global,
            modes,
            loop_warned: false,
            fast,
        });
    }
    let wires = wire::start(lab)?;
    if dp.switches.is_empty() && wires == 0 {
        return Err(Error::NoSwitch(lab.name.clone()));
    }
    dp.init_impair(lab);
    let _ = std::fs::remove_file(control);
    let listener = UnixListener::bind(control)
        .map_err(io_err(format!("listening on {}", control.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("control socket"))?;
    dp.poller
        .add(listener.as_fd(), CONTROL)
        .map_err(io_err("watching the control socket"))?;
    // Carriers as they are now, before the first frame.
    dp.check_carriers();
    tracing::info!(
        switches = dp.switches.len(),
        ports = dp.ports.len(),
        "datapath serving"
    );
    let mut rx = RxBatch::new(RX_BATCH);
    let mut ready: Vec<Ready> = Vec::new();
    let mut next_carrier = dp.now() + CARRIER_EVERY;
    let mut next_harvest = dp.now() + fastpath::HARVEST_EVERY;
    loop {
        let now = dp.now();
        let mut deadline = next_carrier;
        for s in &dp.switches {
            deadline = deadline.min(s.core.poll_at());
        }
        if let Some(t) = dp.impair_deadline() {
            deadline = deadline.min(t);
        }
        let timeout = deadline.saturating_duration_since(now);
        dp.poller
            .wait(&mut ready, Some(timeout))
            .map_err(io_err("waiting for frames"))?;
        for r in &ready {
            if r.token == CONTROL {
                dp.serve_control(&listener);
                continue;
            }
            let g = r.token as usize;
            if r.error {
                dp.check_carrier(g);
            }
            dp.read_port(g, &mut rx);
        }
        let now = dp.now();
        dp.release_impaired(now);
        for s in 0..dp.switches.len() {
            if now >= dp.switches[s].core.poll_at() {
                let mut acts = std::mem::take(&mut dp.acts);
                dp.switches[s].core.tick(now, &mut acts);
                dp.send_generated(s, &acts);
                dp.acts = acts;
                dp.watch.stp_dirty = true;
            }
            dp.check_fast(s);
        }
        if dp.watch.due() {
            dp.observe();
        }
        if now >= next_carrier {
            // `weft down` removes the lab's directory: a datapath whose
            // control socket is gone has lost its lab, so it goes too.
            if !control.exists() {
                tracing::info!("control socket {} removed; exiting", control.display());
                return Ok(());
            }
            dp.check_carriers();
            for s in &mut dp.switches {
                let st = s.core.loop_status();
                if st.suspected && !s.loop_warned {
                    tracing::warn!(switch = %s.name, moves_per_s = st.moves_per_s, repeated_floods_per_s = st.repeats_per_s, "the same frames keep coming back or MACs keep moving between ports: a loop without spanning tree?");
                }
                s.loop_warned = st.suspected;
            }
            next_carrier = now + CARRIER_EVERY;
            if now >= next_harvest {
                for s in 0..dp.switches.len() {
                    dp.harvest_fast(s);
                }
                next_harvest = now + fastpath::HARVEST_EVERY;
            }
        }
    }
}

fn mode_text(m: &PortMode) -> String {
    match m {
        PortMode::Access(v) => format!("access {v}"),
        PortMode::Trunk { allowed, native } => {
            let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            match native {
                Some(n) => format!("trunk {} native {n}", list.join(",")),
                None => format!("trunk {}", list.join(",")),
            }
        }
    }
}

impl Dp {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.clock.elapsed().as_nanos() as u64)
    }

    fn read_port(&mut self, g: usize, rx: &mut RxBatch) {
        for _ in 0..BATCHES_PER_WAKEUP {
            let Some(sock) = &self.ports[g].sock else {
                return;
            };
            let n = match sock.recv_batch(rx) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(port = %self.ports[g].name, "receive: {e}");
                    self.check_carrier(g);
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let now = self.now();
            let (s, id) = (self.ports[g].switch, self.ports[g].id);
            for i in 0..n {
                let Some((vnet, frame)) = rx.frame(i) else {
                    continue;
                };
                if impaired::take_in(&mut self.ports[g], vnet, frame, now) {
                    continue;
                }
                if frame.starts_with(&[0x01, 0x80, 0xc2, 0x00, 0x00, 0x00]) {
                    self.watch.stp_dirty = true;
                }
                // Group addresses, except the IEEE reserved ones (BPDUs
                // must always pass, or STP itself would starve).
                if frame.first().is_some_and(|b| b & 1 == 1)
                    && !frame.starts_with(&[0x01, 0x80, 0xc2, 0x00, 0x00])
                    && !self.ports[g].storm.admit(now)
                {
                    continue;
                }
                let sw = &mut self.switches[s];
                sw.core.receive(id, frame, now, &mut self.acts);
                if let [Action::Forward {
                    port,
                    tag: TagOp::Keep,
                }] = self.acts.as_slice()
                {
                    let to = sw.ports[port.index()];
                    // An impaired port must see every frame.
                    let plain = self.ports[g].imp.is_none() && self.ports[to].imp.is_none();
                    if let Some(pair) = fastpath::eligible(frame).filter(|_| plain) {
                        if sw.fast.observe(g, pair, to) {
                            self.offload.push((s, g, pair, to));
                        }
                    }
                }
                for (a, (_, out)) in self.acts.as_slice().iter().zip(self.acts.frames(frame)) {
                    match *a {
                        Action::Forward { port, tag } => {
                            let to = sw.ports[port.index()];
                            let delta = tag.out_len(frame.len()) as i32 - frame.len() as i32;
                            let v = vnet.shifted(delta);
                            if impaired::take_out(&mut self.ports[to], v, &out, now) {
                                continue;
                            }
                            if self.queues[to].is_empty() {
                                self.dirty.push(to);
                            }
                            self.queues[to].push((Src::Rx(i, tag), vnet.shifted(delta)));
                        }
                        Action::Transmit { port, .. } => {
                            let to = sw.ports[port.index()];
                            let v = VnetHdr::default();
                            if impaired::take_out(&mut self.ports[to], v, &out, now) {
                                continue;
                            }
                            if self.queues[to].is_empty() {
                                self.dirty.push(to);
                            }
                            self.owned.push(out.to_vec());
                            self.queues[to]
                                .push((Src::Owned(self.owned.len() - 1), VnetHdr::default()));
                        }
                    }
                }
            }
            self.flush(rx);
            // Ring slots go back to the kernel as soon as the batch is sent.
            rx.release();
            self.install_fast();
            self.check_fast(s);
            if n < rx.capacity() {
                return;
            }
        }
    }

    /// Hands the flows that became steady to the kernel.
    fn install_fast(&mut self) {
        for (s, g, pair, to) in std::mem::take(&mut self.offload) {
            let (Some(in_sock), Some(out_sock)) = (&self.ports[g].sock, &self.ports[to].sock)
            else {
                continue;
            };
            let sw = &mut self.switches[s];
            if let Err(e) = sw
                .fast
                .install(&sw.core, g, in_sock, pair, to, out_sock.ifindex())
            {
                tracing::warn!(switch = %sw.name, port = %self.ports[g].name, "fast path: {e}");
            }
        }
    }

    /// Removes switch `s`'s fast-path rules if a forwarding decision may
    /// have changed since they went in.
    fn check_fast(&mut self, s: usize) {
        let sw = &mut self.switches[s];
        if sw.fast.is_bpf() {
            let (ports, globals) = (&self.ports, &sw.ports);
            let slow = |i: usize| globals.get(i).is_some_and(|&g| ports[g].imp.is_some());
            sw.fast.sync(&sw.core, slow);
            return;
        }
        if sw.fast.stale(&sw.core) {
            self.invalidate_fast(s);
        }
    }

    /// Folds what switch `s`'s fast-path rules forwarded since the last
    /// read into its counters and FDB.
    fn harvest_fast(&mut self, s: usize) {
        let now = self.now();
        let sw = &mut self.switches[s];
        sw.fast.harvest_bpf(&mut sw.core, now);
        if sw.fast.rules() == 0 {
            return;
        }
        let ports = &self.ports;
        sw.fast.harvest(
            &mut sw.core,
            &sw.ports,
            |g| ports[g].sock.as_ref().map(PacketSocket::ifindex),
            now,
        );
    }

    /// Removes every fast-path rule of switch `s` (a port's impairment
    /// changed, or a forwarding decision may have).
    fn invalidate_fast(&mut self, s: usize) {
        if self.switches[s].fast.rules() == 0 {
            return;
        }
        // What the rules forwarded since the last read would be lost with
        // them.
        self.harvest_fast(s);
        let sw = &mut self.switches[s];
        let socks: Vec<(usize, &PacketSocket)> = sw
            .ports
            .iter()
            .filter_map(|&g| self.ports[g].sock.as_ref().map(|k| (g, k)))
            .collect();
        tracing::debug!(switch = %sw.name, rules = sw.fast.rules(), "fast path rules removed");
        sw.fast.invalidate(&socks);
    }

    /// Sends every queued frame, one batch per output port.
    fn flush(&mut self, rx: &RxBatch) {
        let mut tx: Vec<TxFrame<'_>> = Vec::new();
        for &to in &self.dirty {
            tx.clear();
            for (src, vnet) in &self.queues[to] {
                match *src {
                    Src::Rx(i, tag) => {
                        let Some((_, frame)) = rx.frame(i) else {
                            continue;
                        };
                        let out = tag.apply(frame);
                        tx.push(TxFrame {
                            vnet: *vnet,
                            head: out.head,
                            tag: out.tag,
                            tail: out.tail,
                        });
                    }
                    Src::Owned(k) => tx.push(TxFrame {
                        vnet: *vnet,
                        head: &self.owned[k],
                        tag: None,
                        tail: &[],
                    }),
                }
            }
            let p = &mut self.ports[to];
            if let Some(sock) = &p.sock {
                match sock.send_batch(&tx) {
                    Ok((_, dropped)) => p.tx_errors += dropped as u64,
                    Err(e) => {
                        p.tx_errors += 1;
                        tracing::debug!(port = %p.name, "send: {e}");
                    }
                }
            }
        }
        for &to in &self.dirty {
            self.queues[to].clear();
        }
        self.dirty.clear();
        self.owned.clear();
    }

    /// Sends the frames the switch made by itself (from `tick` or
    /// `set_link`): BPDUs.
    fn send_generated(&mut self, s: usize, acts: &Actions) {
        let now = self.now();
        for (port, out) in acts.frames(&[]) {
            let g = self.switches[s].ports[port.index()];
            let p = &mut self.ports[g];
            if impaired::take_out(p, VnetHdr::default(), &out, now) {
                continue;
            }
            if let Some(sock) = &p.sock {
                let f = TxFrame {
                    vnet: VnetHdr::default(),
                    head: out.head,
                    tag: out.tag,
                    tail: out.tail,
                };
                if sock.send_batch(&[f]).is_err() {
                    p.tx_errors += 1;
                }
            }
        }
    }

    fn check_carriers(&mut self) {
        for g in 0..self.ports.len() {
            self.check_carrier(g);
        }
    }

    /// Follows the port's carrier into the switch; a port whose interface
    /// vanished (its peer's node was removed) is taken out for good.
    fn check_carrier(&mut self, g: usize) {
        let now = self.now();
        let (s, id) = (self.ports[g].switch, self.ports[g].id);
        let up = match &self.ports[g].sock {
            None => false,
            Some(sock) => match sock.carrier() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(switch = %self.switches[s].name, port = %self.ports[g].name, "the port's interface is gone ({e}); port removed");
                    if let Some(sock) = self.ports[g].sock.take() {
                        let _ = self.poller.remove(sock.as_fd());
                    }
                    false
                }
            },
        };
        if up != self.ports[g].carrier || self.ports[g].sock.is_none() {
            if up != self.ports[g].carrier {
                self.watch.push(
                    crate::events::Event::new("port.carrier")
                        .node(&self.switches[s].name)
                        .port(&self.ports[g].name)
                        .with("up", up),
                );
            }
            self.ports[g].carrier = up;
            let mut acts = std::mem::take(&mut self.acts);
            self.switches[s].core.set_link(id, up, now, &mut acts);
            self.send_generated(s, &acts);
            self.acts = acts;
        }
    }

    /// Records what changed in the switches since the last look.
    fn observe(&mut self) {
        let views = self
            .switches
            .iter()
            .map(|sw| {
                let names = sw.ports.iter().map(|&g| self.ports[g].name.as_str());
                (sw.name.as_str(), &sw.core, names.collect())
            })
            .collect();
        self.watch.observe(views);
    }

    fn serve_control(&mut self, listener: &UnixListener) {
        while let Ok((stream, _)) = listener.accept() {
            if let Err(e) = self.answer(stream) {
                tracing::debug!("control client: {e}");
            }
        }
    }

    fn answer(&mut self, stream: UnixStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Error {
                message: format!("bad request: {e}"),
            },
            Ok(Request::Status) => {
                // What the tc BPF switches forwarded since the last
                // harvest belongs in the answer.
                for s in 0..self.switches.len() {
                    if self.switches[s].fast.is_bpf() {
                        let now = self.now();
                        let sw = &mut self.switches[s];
                        sw.fast.harvest_bpf(&mut sw.core, now);
                    }
                }
                Reply::Status(self.status())
            }
            Ok(Request::Impair {
                switch,
                port,
                impair,
            }) => match self.port_index(&switch, &port) {
                Some(g) => {
                    self.set_impair(g, impair);
                    Reply::Done
                }
                None => self.no_port(&switch, &port),
            },
            Ok(Request::Configure { node }) => self.reconfigure(&node),
            Ok(Request::Link { switch, port, up }) => match self.port_index(&switch, &port) {
                Some(g) => {
                    self.set_admin(g, up);
                    Reply::Done
                }
                None => self.no_port(&switch, &port),
            },
            Ok(Request::Fdb { switch }) => {
                match self.switches.iter().position(|s| s.name == switch) {
                    Some(s) => Reply::Fdb(self.fdb(s)),
                    None => Reply::Error {
                        message: self.no_switch(&switch),
                    },
                }
            }
        };
        // What the request changed is in the stream before the caller
        // hears it is done (and records its own event).
        self.observe();
        let mut out = serde_json::to_string(&reply).map_err(io::Error::other)?;
        out.push('\n');
        (&stream).write_all(out.as_bytes())
    }

    fn status(&self) -> StatusReply {
        let switches = self
            .switches
            .iter()
            .map(|sw| {
                let st = sw.core.stp_status();
                let fc = sw.core.fdb_counters();
                let ports = sw
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(i, &g)| {
                        let p = &self.ports[g];
                        let ps = sw.core.port_stp_status(PortId(i as u16));
                        let c = sw
                            .core
                            .port_counters(PortId(i as u16))
                            .copied()
                            .unwrap_or_default();
                        PortInfo {
                            name: p.name.clone(),
                            present: p.sock.is_some(),
                            carrier: p.carrier,
                            vlan: sw.modes[i].clone(),
                            role: ps.map(|s| s.role.name().to_string()).unwrap_or_default(),
                            state: ps.map(|s| s.state.name().to_string()).unwrap_or_default(),
                            edge: ps.is_some_and(|s| s.edge),
                            rstp: ps.is_some_and(|s| s.rstp),
                            rx_frames: c.rx_frames,
                            rx_bytes: c.rx_bytes,
                            tx_frames: c.tx_frames,
                            tx_bytes: c.tx_bytes,
                            rx_bpdus: c.rx_bpdus,
                            tx_bpdus: c.tx_bpdus,
                            drops: c
                                .drops
                                .iter()
                                .filter(|(_, n)| *n > 0)
                                .map(|(r, n)| (format!("{r:?}"), n))
                                .chain(
                                    (p.tx_errors > 0).then(|| ("TxError".to_string(), p.tx_errors)),
                                )
                                .chain(
                                    (p.storm.dropped > 0)
                                        .then(|| ("StormControl".to_string(), p.storm.dropped)),
                                )
                                .chain(p.imp.iter().flat_map(|i| i.drops()))
                                .collect(),
                            impair: p.imp.as_ref().map(|i| i.info()),
                            admin_up: sw.core.port_enabled(PortId(i as u16)),
                        }
                    })
                    .collect();
                let lp = sw.core.loop_status();
                SwitchInfo {
                    name: sw.name.clone(),
                    stp: match st.mode {
                        StpMode::Rstp => "rstp",
                        StpMode::Stp => "stp",
                        StpMode::Off => "off",
                    }
                    .into(),
                    bridge_id: st.bridge_id.to_string(),
                    root_id: st.root_id.to_string(),
                    is_root: st.root_id == st.bridge_id,
                    root_port: st.root_port.map(|i| self.ports[sw.ports[i]].name.clone()),
                    root_path_cost: st.root_path_cost,
                    forward_delay_ms: st.forward_delay.as_millis() as u64,
                    max_age_ms: st.max_age.as_millis() as u64,
                    mac_moves_per_s: lp.moves_per_s,
                    flooded_per_s: lp.floods_per_s,
                    repeated_floods_per_s: lp.repeats_per_s,
                    loop_suspected: lp.suspected,
                    topology_changes: st.topology_changes,
                    fastpath_rules: sw.fast.rules(),
                    fastpath: sw.fast.describe(),
                    fdb_entries: sw.core.fdb().len(),
                    fdb_max: sw.core.fdb().max_entries(),
                    fdb: FdbStats {
                        learned: fc.learned,
                        moves: fc.moves,
                        table_full: fc.table_full,
                        aged: fc.aged,
                        flushed: fc.flushed,
                    },
                    ports,
                    vlans: sw
                        .core
                        .vlans()
                        .into_iter()
                        .map(|(vlan, c)| VlanInfo {
                            vlan,
                            frames: c.frames,
                            bytes: c.bytes,
                            flooded: c.flooded,
                            drops: c
                                .drops
                                .iter()
                                .filter(|(_, n)| *n > 0)
                                .map(|(r, n)| (format!("{r:?}"), n))
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        StatusReply {
            pid: std::process::id(),
            switches,
        }
    }

    fn fdb(&self, s: usize) -> FdbReply {
        let sw = &self.switches[s];
        let now = self.now();
        let mut entries: Vec<FdbRow> = sw
            .core
            .fdb()
            .iter()
            .map(|(vid, mac, e)| FdbRow {
                mac: mac.to_string(),
                vlan: vid,
                port: self.ports[sw.ports[e.port.index()]].name.clone(),
                is_static: e.is_static,
                age: now.saturating_duration_since(e.last_seen).as_secs_f64(),
            })
            .collect();
        entries.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
        FdbReply {
            switch: sw.name.clone(),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_control_admits_a_budget_per_window() {
        let mut s = Storm::default();
        let t = Instant::from_secs(10);
        let passed = (0..3000).filter(|_| s.admit(t)).count();
        assert_eq!(passed, STORM_LIMIT as usize);
        assert_eq!(s.dropped, 3000 - u64::from(STORM_LIMIT));
        // The next window starts afresh.
        assert!(s.admit(t + STORM_WINDOW));
    }
}
