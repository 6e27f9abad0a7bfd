//! The datapath loop.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use weft_switch::{Actions, Instant, PortId, PortMode, Switch, TagOp};
use weft_sys::netlink::Netlink;
use weft_sys::port::{PacketSocket, Poller, Ready, RxBatch, VnetHdr};
use weft_topo::Lab;

use crate::config::switch_config;
use crate::fastpath::{self, FastPath};

mod admin;
mod carrier;
mod fast;
mod forward;
mod impaired;
mod live;
mod serve;
mod storm;
mod wire;

use storm::Storm;

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
    /// Taken out of its switch by a live edit: its socket is closed and
    /// the core's port (whose id cannot be reused) stays disabled.
    retired: bool,
}

struct Sw {
    name: String,
    /// The switch node's network namespace, where its sockets are made.
    netns: String,
    core: Switch,
    /// Core port index -> global port index.
    ports: Vec<usize>,
    modes: Vec<String>,
    /// The loop warning was logged for the current suspicion.
    loop_warned: bool,
    fast: FastPath,
    /// The configuration in force, on the core's port ids.
    cfg: weft_switch::SwitchConfig,
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
    /// The kernel fast path may be used (`WEFT_SWITCH_FASTPATH` is not
    /// `off`).
    fast_on: bool,
    /// The lab's wires, served by a thread of their own.
    wires: Option<wire::WireCtl>,
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
        fast_on: std::env::var("WEFT_SWITCH_FASTPATH").map_or(true, |v| v != "off"),
        wires: None,
    };
    dp.lab_name = lab.name.clone();
    for node in lab.nodes.values() {
        let s = dp.switches.len();
        if let Some(sw) = dp.new_switch(s, node)? {
            dp.switches.push(sw);
        }
    }
    dp.wires = wire::start(&lab.name, lab.nodes.values(), Vec::new())?;
    if dp.switches.is_empty() && dp.wires.is_none() {
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

    /// Switch `node` as switch index `s`: its ports opened in its
    /// namespace, a new core, its kernel fast path; `None` if the node is
    /// not a switch.
    fn new_switch(&mut self, s: usize, node: &weft_topo::Node) -> Result<Option<Sw>, Error> {
        let Some((names, cfg)) = switch_config(&self.lab_name, node) else {
            return Ok(None);
        };
        let modes = cfg.ports.iter().map(|p| mode_text(&p.mode)).collect();
        let global = self.open_ports(s, &node.netns, names, 0)?;
        let fast = self.choose_fast(&node.name, &node.netns, &global, &cfg);
        Ok(Some(Sw {
            name: node.name.clone(),
            netns: node.netns.clone(),
            core: Switch::new(cfg.clone()),
            ports: global,
            modes,
            loop_warned: false,
            fast,
            cfg,
        }))
    }

    /// Opens AF_PACKET sockets on the ports `names` of switch `s`, whose
    /// core ids start at `first`, and watches them; returns their global
    /// indexes. A port that cannot be opened stays down.
    fn open_ports(
        &mut self,
        s: usize,
        netns: &str,
        names: Vec<String>,
        first: usize,
    ) -> Result<Vec<usize>, Error> {
        // Sockets belong to the namespace they are made in: make them on
        // a thread inside the switch's namespace.
        let list = names.clone();
        let socks = weft_sys::netns::run_in_named(netns, move || {
            list.iter()
                .map(|n| PacketSocket::open(n))
                .collect::<Vec<_>>()
        })?;
        let mut global = Vec::new();
        for (i, (name, sock)) in names.into_iter().zip(socks).enumerate() {
            let g = self.ports.len();
            let sock = match sock {
                Ok(k) => {
                    self.poller
                        .add(k.as_fd(), g as u64)
                        .map_err(io_err(format!("watching port {name} of {netns}")))?;
                    Some(k)
                }
                Err(e) => {
                    tracing::warn!(netns = %netns, port = %name, "cannot open the port: {e}; it stays down");
                    None
                }
            };
            self.ports.push(Port {
                name,
                switch: s,
                id: PortId((first + i) as u16),
                sock,
                carrier: true,
                tx_errors: 0,
                storm: Storm::default(),
                imp: None,
                retired: false,
            });
            self.queues.push(Vec::new());
            global.push(g);
        }
        Ok(global)
    }

    /// The kernel fast path for a switch of `cfg` on ports `global` (its
    /// core ports in order): `u32` rules for steady flows on a one-VLAN
    /// access switch, the tc BPF switch for trunks, several VLANs or a
    /// mirror, or off with the reason `weft status` shows.
    pub(super) fn choose_fast(
        &self,
        switch: &str,
        netns: &str,
        global: &[usize],
        cfg: &weft_switch::SwitchConfig,
    ) -> FastPath {
        match crate::fastpath::refused(cfg) {
            None => self.fast_for(switch, netns, global),
            Some(why) if !self.fast_on => FastPath::off(why),
            Some(_) => {
                let fp = self.bpf_for(netns, global, cfg);
                if !fp.is_bpf() {
                    tracing::warn!(switch = %switch, "no kernel fast path: {}", fp.describe());
                }
                fp
            }
        }
    }

    /// The tc BPF switch on ports `global`. It needs a socket on every
    /// core port but those a live edit removed: their slots stay in the
    /// core, disabled, and get neither classifier nor socket filter.
    fn bpf_for(&self, netns: &str, global: &[usize], cfg: &weft_switch::SwitchConfig) -> FastPath {
        let socks: Vec<Option<&PacketSocket>> = global
            .iter()
            .map(|&g| self.ports[g].sock.as_ref())
            .collect();
        let retired: Vec<bool> = global.iter().map(|&g| self.ports[g].retired).collect();
        match weft_sys::netns::run_in_named(netns, Netlink::open) {
            Ok(Ok(nl)) => FastPath::with_bpf(nl, cfg, &socks, &retired),
            Ok(Err(e)) => FastPath::off(format!("no netlink socket ({e})")),
            Err(e) => FastPath::off(format!("no netlink socket ({e})")),
        }
    }

    /// The kernel fast path of a switch whose configuration allows it, on
    /// ports `global`.
    fn fast_for(&self, switch: &str, netns: &str, global: &[usize]) -> FastPath {
        if !self.fast_on {
            return FastPath::off("WEFT_SWITCH_FASTPATH=off");
        }
        let ixs: Vec<u32> = global
            .iter()
            .filter_map(|&g| self.ports[g].sock.as_ref().map(|s| s.ifindex()))
            .collect();
        let e = match weft_sys::netns::run_in_named(netns, Netlink::open) {
            Ok(Ok(nl)) => return FastPath::new(nl, &ixs),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(switch = %switch, "no netlink socket for the fast path ({e}); every frame goes through userspace");
        FastPath::off(format!("no netlink socket ({e})"))
    }
}
