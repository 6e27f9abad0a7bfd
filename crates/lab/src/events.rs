//! A lab's event stream (docs/events.md): what happens in a lab, one
//! versioned JSON object a line, kept (bounded) in the lab's state
//! directory. The switch datapath records its switches' spanning-tree,
//! FDB, loop and counter events; `weft` commands record what they do
//! (`up`, `down`, `link`, `impair`, checks, `serve` actions). [`read`]
//! returns what is kept; [`Follow`] tails it as it grows.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;

pub use weft_datapath::events::{now_ms, Event, Writer, FILE, MAX_BYTES, OLD_FILE, VERSION};

use crate::{state, Error};

/// Records `e` in lab `lab`'s stream, if the lab exists (never creates its
/// directory). Failing to record is logged, never an error.
pub fn record(lab: &str, e: Event) {
    record_all(lab, &[e]);
}

pub fn record_all(lab: &str, events: &[Event]) {
    if state::check_key(lab).is_ok() {
        Writer::new(&state::lab_dir(lab)).write(events);
    }
}

fn path(lab: &str) -> PathBuf {
    state::lab_dir(lab).join(FILE)
}

fn parse(text: &str, out: &mut Vec<Event>) {
    // A line cut short by a crash, or from a later version with fields
    // this one does not know, is skipped rather than failing the stream.
    out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
}

/// The events kept for `lab` (the rotated file first), oldest first, with
/// `ts` at or after `since_ms`.
pub fn read(lab: &str, since_ms: u64) -> Result<Vec<Event>, Error> {
    state::check_key(lab)?;
    let dir = state::lab_dir(lab);
    if !dir.exists() {
        return Err(Error::NoLab(lab.to_string()));
    }
    let mut out = Vec::new();
    for f in [OLD_FILE, FILE] {
        if let Ok(t) = std::fs::read_to_string(dir.join(f)) {
            parse(&t, &mut out);
        }
    }
    out.retain(|e| e.ts >= since_ms);
    Ok(out)
}

/// Tails a lab's stream from its end (or from where [`read`] left off).
pub struct Follow {
    lab: String,
    offset: u64,
    partial: String,
}

impl Follow {
    /// Starts at the current end of the stream.
    pub fn new(lab: &str) -> Result<Self, Error> {
        state::check_key(lab)?;
        let offset = std::fs::metadata(path(lab)).map_or(0, |m| m.len());
        Ok(Follow {
            lab: lab.to_string(),
            offset,
            partial: String::new(),
        })
    }

    /// Whether the lab still exists (`weft down` removes its directory).
    pub fn lab_exists(&self) -> bool {
        state::lab_dir(&self.lab).exists()
    }

    /// Events written since the last call.
    pub fn poll(&mut self) -> Vec<Event> {
        let p = path(&self.lab);
        let len = std::fs::metadata(&p).map_or(0, |m| m.len());
        if len < self.offset {
            // Rotated: what was appended to the old file after the last
            // read is in events.1.jsonl now.
            if let Ok(mut f) = std::fs::File::open(p.with_file_name(OLD_FILE)) {
                if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                    let _ = f.read_to_string(&mut self.partial);
                }
            }
            self.offset = 0;
        }
        let mut out = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&p) {
            if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                let mut s = String::new();
                if let Ok(n) = f.read_to_string(&mut s) {
                    self.offset += n as u64;
                    self.partial.push_str(&s);
                }
            }
        }
        // Only whole lines; the rest waits for its newline.
        if let Some(end) = self.partial.rfind('\n') {
            let whole: String = self.partial.drain(..=end).collect();
            parse(&whole, &mut out);
        }
        out
    }
}

/// A lab's events as they happen, typed as `weft events --json` prints
/// them; what [`crate::Lab::events`] returns. As an iterator it waits for
/// each next event and ends after `lab.gone` (the lab was taken down).
/// While it is read it also polls the kernel's side ([`KernelWatch`]), so
/// kernel bridges and interfaces are in it as in `weft events`.
pub struct Stream {
    follow: Follow,
    kernel: KernelWatch,
    queue: std::collections::VecDeque<Event>,
    next_kernel: std::time::Instant,
    ended: bool,
}

/// How often a waiting [`Stream`] looks at the file.
const STREAM_TICK: std::time::Duration = std::time::Duration::from_millis(50);

impl Stream {
    /// Starts at the current end of lab `lab`'s stream.
    pub fn new(lab: &str) -> Result<Stream, Error> {
        let follow = Follow::new(lab)?;
        if !follow.lab_exists() {
            return Err(Error::NoLab(lab.to_string()));
        }
        let mut kernel = KernelWatch::new(lab);
        // The kernel's baseline now, so a change made right after this
        // call is an event.
        kernel.poll();
        Ok(Stream {
            follow,
            kernel,
            queue: Default::default(),
            next_kernel: std::time::Instant::now() + std::time::Duration::from_secs(1),
            ended: false,
        })
    }

    fn fill(&mut self) {
        if std::time::Instant::now() >= self.next_kernel {
            // Recorded in the file, read back below with the rest.
            self.kernel.poll();
            self.next_kernel = std::time::Instant::now() + std::time::Duration::from_secs(1);
        }
        self.queue.extend(self.follow.poll());
        if self.queue.is_empty() && !self.ended && !self.follow.lab_exists() {
            self.ended = true;
            self.queue.push_back(Event::new("lab.gone"));
        }
    }

    /// The next event, waiting at most `timeout`; `None` if none came (or
    /// the stream ended).
    pub fn next_timeout(&mut self, timeout: std::time::Duration) -> Option<Event> {
        let until = std::time::Instant::now() + timeout;
        loop {
            if self.queue.is_empty() {
                self.fill();
            }
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            let now = std::time::Instant::now();
            if now >= until || self.ended {
                return None;
            }
            std::thread::sleep(STREAM_TICK.min(until - now));
        }
    }

    /// The events there are now, without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        self.fill();
        self.queue.drain(..).collect()
    }
}

impl Iterator for Stream {
    type Item = Event;

    /// Waits for the next event; `None` once the lab is gone.
    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.next_timeout(std::time::Duration::from_secs(1)) {
                return Some(e);
            }
            if self.ended {
                return None;
            }
        }
    }
}

/// One line for people: `15:04:05.123 s3:to-s2 stp.role designated -> root`.
pub fn human(e: &Event) -> String {
    let secs = e.ts / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut line = format!("{h:02}:{m:02}:{s:02}.{:03} UTC  ", e.ts % 1000);
    match (&e.node, &e.port) {
        (Some(n), Some(p)) => line.push_str(&format!("{n}:{p} ")),
        (Some(n), None) => line.push_str(&format!("{n} ")),
        _ => {}
    }
    line.push_str(&e.kind);
    let from = e.data.get("from").and_then(|v| v.as_str());
    let to = e.data.get("to").and_then(|v| v.as_str());
    if let (Some(f), Some(t)) = (from, to) {
        line.push_str(&format!(" {f} -> {t}"));
    }
    for (k, v) in &e.data {
        if matches!(k.as_str(), "from" | "to" | "ports") {
            continue;
        }
        match v {
            serde_json::Value::String(s) => line.push_str(&format!(" {k}={s}")),
            v => line.push_str(&format!(" {k}={v}")),
        }
    }
    if let Some(serde_json::Value::Object(ports)) = e.data.get("ports") {
        line.push_str(&format!(" ({} ports)", ports.len()));
    }
    line
}

/// The kernel's side of a lab as one poll of [`KernelWatch`] saw it;
/// [`KernelView::changes`] compares two.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelView {
    /// (node, interface) -> what the kernel says of it.
    pub ifaces: std::collections::BTreeMap<(String, String), IfaceSeen>,
}

/// One kernel interface as the poller saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IfaceSeen {
    /// A bridge port's STP state.
    pub port_state: Option<&'static str>,
    /// A bridge port's STP role (its bridge runs STP).
    pub role: Option<&'static str>,
    /// Whether it has a carrier.
    pub carrier: Option<bool>,
    /// Its traffic counters.
    pub counters: Option<crate::status::Counters>,
    /// A bridge running STP.
    pub bridge: Option<BridgeSeen>,
}

/// A kernel bridge running STP as the poller saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BridgeSeen {
    /// The root it believes in.
    pub root_id: Option<String>,
    /// It is the root.
    pub is_root: bool,
    /// Its topology-change flag.
    pub topology_change: bool,
    /// It detected a change itself.
    pub detected: bool,
    /// Centiseconds left on the topology-change timer.
    pub timer_cs: u64,
}

impl KernelView {
    /// The kernel's side of a lab's status (switches left out).
    pub fn of(st: &[crate::LabStatus]) -> KernelView {
        let mut ifaces = std::collections::BTreeMap::new();
        for n in st.iter().flat_map(|l| &l.nodes) {
            if n.kind == "switch" {
                continue;
            }
            for i in n
                .interfaces
                .iter()
                .filter(|i| i.present && i.kind != "loopback")
            {
                ifaces.insert(
                    (n.name.clone(), i.name.clone()),
                    IfaceSeen {
                        port_state: i.port_state,
                        role: i.stp_role,
                        carrier: i.carrier,
                        counters: i.counters,
                        bridge: i.bridge_stp.as_ref().map(|b| BridgeSeen {
                            root_id: b.root_id.clone(),
                            is_root: b.is_root,
                            topology_change: b.topology_change,
                            detected: b.topology_change_detected,
                            timer_cs: b.topology_change_timer_cs,
                        }),
                    },
                );
            }
        }
        KernelView { ifaces }
    }

    /// The events that take `self` to `now`: per interface, role, state
    /// and carrier changes, then the bridges' root and topology changes.
    /// A topology change is seen when the bridge's flag or its own
    /// detection goes on, or its timer restarts (a new change while the
    /// last one still runs).
    pub fn changes(&self, now: &KernelView) -> Vec<Event> {
        let mut out = Vec::new();
        let mut bridges = Vec::new();
        for ((node, iface), b) in &now.ifaces {
            let Some(a) = self.ifaces.get(&(node.clone(), iface.clone())) else {
                continue;
            };
            let ev = |kind: &str| Event::new(kind).node(node).port(iface).with("kernel", true);
            if let (Some(x), Some(y)) = (a.role, b.role) {
                if x != y {
                    out.push(ev("stp.role").with("from", x).with("to", y));
                }
            }
            if let (Some(x), Some(y)) = (a.port_state, b.port_state) {
                if x != y {
                    out.push(ev("stp.state").with("from", x).with("to", y));
                }
            }
            if let (Some(x), Some(y)) = (a.carrier, b.carrier) {
                if x != y {
                    out.push(
                        Event::new("port.carrier")
                            .node(node)
                            .port(iface)
                            .with("up", y),
                    );
                }
            }
            if let (Some(x), Some(y)) = (&a.bridge, &b.bridge) {
                let ev = |kind: &str| Event::new(kind).node(node).with("kernel", true);
                if let (Some(r0), Some(r)) = (&x.root_id, &y.root_id) {
                    if r0 != r {
                        bridges.push(
                            ev("stp.root")
                                .with("from", r0.as_str())
                                .with("to", r.as_str())
                                .with("is_root", y.is_root),
                        );
                    }
                }
                if (y.topology_change && !x.topology_change)
                    || (y.detected && !x.detected)
                    || y.timer_cs > x.timer_cs
                {
                    bridges.push(ev("stp.topology_change").with("detected", y.detected));
                }
            }
        }
        out.extend(bridges);
        // One poll, one time: stamped as they were made, the bridges'
        // events (made among the ports', listed after them) could read
        // earlier than the port events before them.
        let ts = now_ms();
        for e in &mut out {
            e.ts = ts;
        }
        out
    }

    /// A `counters` event per node whose interfaces' counters moved since
    /// `self` (idle nodes are left out, so a big quiet lab costs nothing).
    pub fn counters(&self, now: &KernelView) -> Vec<Event> {
        let mut by_node: std::collections::BTreeMap<
            &str,
            serde_json::Map<String, serde_json::Value>,
        > = Default::default();
        let mut moved: std::collections::BTreeSet<&str> = Default::default();
        for ((node, iface), b) in &now.ifaces {
            let Some(c) = b.counters else { continue };
            let before = self
                .ifaces
                .get(&(node.clone(), iface.clone()))
                .and_then(|a| a.counters);
            if before != Some(c) {
                moved.insert(node);
            }
            by_node.entry(node).or_default().insert(
                iface.clone(),
                serde_json::json!({
                    "rx_frames": c.rx_packets, "rx_bytes": c.rx_bytes,
                    "tx_frames": c.tx_packets, "tx_bytes": c.tx_bytes,
                    "drops": c.rx_dropped + c.tx_dropped,
                }),
            );
        }
        by_node
            .into_iter()
            .filter(|(n, _)| moved.contains(n))
            .map(|(n, ports)| {
                Event::new("counters")
                    .node(n)
                    .with("ports", ports)
                    .with("kernel", true)
            })
            .collect()
    }
}

/// Per tunnel end (`node:iface`): up, handshakes, roams, warning.
type TunnelSeen = std::collections::BTreeMap<String, (bool, u64, u64, Option<String>)>;

/// What only the kernel and the tunnel processes know: kernel bridges'
/// port STP roles and states, their roots and topology changes, the
/// carrier and counters of kernel interfaces (weft switches' ports are the
/// datapath's to report), and tunnels' sessions (from their status
/// files). Found by polling `weft status` (a poller calls [`poll`]
/// about once a second); one process per lab polls at a time (it holds
/// `events.poll.lock`), and it records what it finds in the stream, so
/// several followers neither miss nor double anything.
///
/// [`poll`]: KernelWatch::poll
pub struct KernelWatch {
    lab: String,
    lock: Option<std::fs::File>,
    last: Option<KernelView>,
    tunnels: Option<TunnelSeen>,
    /// Counters are recorded this often (`WEFT_EVENTS_COUNTERS_EVERY`
    /// seconds, as for switches; `None`: never), compared with the view
    /// they were last recorded from.
    counters_every: Option<std::time::Duration>,
    counters_last: Option<(std::time::Instant, KernelView)>,
}

impl KernelWatch {
    /// A poller for lab `lab`; its first poll takes the baseline.
    pub fn new(lab: &str) -> Self {
        let counters_every = match std::env::var("WEFT_EVENTS_COUNTERS_EVERY") {
            Ok(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .map(std::time::Duration::from_secs_f64),
            Err(_) => Some(weft_datapath::events::COUNTERS_EVERY),
        };
        KernelWatch {
            lab: lab.to_string(),
            lock: None,
            last: None,
            tunnels: None,
            counters_every,
            counters_last: None,
        }
    }

    fn holds_lock(&mut self) -> bool {
        if self.lock.is_none() {
            let p = state::lab_dir(&self.lab).join("events.poll.lock");
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(p);
            if let Ok(f) = f {
                if f.try_lock().is_ok() {
                    self.lock = Some(f);
                }
            }
        }
        self.lock.is_some()
    }

    /// Records what changed since the last call (nothing on the first,
    /// which only takes a baseline); returns the events recorded.
    pub fn poll(&mut self) -> Vec<Event> {
        if !self.holds_lock() {
            return Vec::new();
        }
        let Ok(st) = crate::status(Some(&self.lab)) else {
            return Vec::new();
        };
        self.record(&st)
    }

    /// [`poll`](Self::poll) with a status the caller read anyway (`weft
    /// serve` reads one for its page every second).
    pub fn poll_with(&mut self, st: &[crate::LabStatus]) -> Vec<Event> {
        if !self.holds_lock() {
            return Vec::new();
        }
        self.record(st)
    }

    fn record(&mut self, st: &[crate::LabStatus]) -> Vec<Event> {
        let now = KernelView::of(st);
        let mut out = Vec::new();
        if let Some(last) = &self.last {
            out = last.changes(&now);
        }
        if let Some(every) = self.counters_every {
            let t = std::time::Instant::now();
            match &self.counters_last {
                Some((at, seen)) if t.duration_since(*at) >= every => {
                    out.extend(seen.counters(&now));
                    self.counters_last = Some((t, now.clone()));
                }
                Some(_) => {}
                None => self.counters_last = Some((t, now.clone())),
            }
        }
        self.last = Some(now);
        let tunnels: TunnelSeen = st
            .iter()
            .flat_map(|l| &l.tunnels)
            .map(|t| {
                let s = &t.state;
                (
                    format!("{}:{}", t.node, t.iface),
                    (
                        t.running && s["up"] == true,
                        s["handshakes"].as_u64().unwrap_or(0),
                        s["roams"].as_u64().unwrap_or(0),
                        s["warning"].as_str().map(str::to_string),
                    ),
                )
            })
            .collect();
        if let Some(last) = &self.tunnels {
            for (end, (up, hs, roams, warning)) in &tunnels {
                let (node, iface) = end.split_once(':').unwrap_or((end, ""));
                let ev = |kind: &str| Event::new(kind).node(node).port(iface);
                let (up0, hs0, roams0, warning0) = last.get(end).cloned().unwrap_or_default();
                // A restarted tunnel counts from zero again.
                if *hs > hs0 || (*hs < hs0 && *hs > 0) {
                    out.push(ev("tunnel.handshake").with("handshakes", *hs));
                }
                if up != &up0 {
                    out.push(ev(if *up { "tunnel.up" } else { "tunnel.down" }));
                }
                if *roams > roams0 {
                    out.push(ev("tunnel.roam").with("roams", *roams));
                }
                if let (Some(w), true) = (warning, warning != &warning0) {
                    out.push(ev("tunnel.failing").with("warning", w.clone()));
                }
            }
        }
        self.tunnels = Some(tunnels);
        record_all(&self.lab, &out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Counters;

    fn view(items: &[(&str, &str, IfaceSeen)]) -> KernelView {
        KernelView {
            ifaces: items
                .iter()
                .map(|(n, i, s)| ((n.to_string(), i.to_string()), s.clone()))
                .collect(),
        }
    }

    fn port(state: &'static str, role: &'static str) -> IfaceSeen {
        IfaceSeen {
            port_state: Some(state),
            role: Some(role),
            carrier: Some(true),
            ..Default::default()
        }
    }

    fn bridge(tc: bool, detected: bool, timer_cs: u64) -> IfaceSeen {
        IfaceSeen {
            bridge: Some(BridgeSeen {
                root_id: Some("1000.020000000001".into()),
                topology_change: tc,
                detected,
                timer_cs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn summary(evs: &[Event]) -> Vec<String> {
        evs.iter()
            .map(|e| {
                let to = e.data.get("to").and_then(|v| v.as_str()).unwrap_or("");
                format!(
                    "{} {}:{} {to}",
                    e.kind,
                    e.node.as_deref().unwrap_or(""),
                    e.port.as_deref().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn a_kernel_ring_losing_its_root_port_reads_in_order() {
        let before = view(&[
            ("b3", "b3", bridge(false, false, 0)),
            ("b3", "to-b1", port("forwarding", "root")),
            ("b3", "to-b2", port("forwarding", "designated")),
        ]);
        let mut down = port("disabled", "disabled");
        down.carrier = Some(false);
        let after = view(&[
            ("b3", "b3", bridge(true, true, 0)),
            ("b3", "to-b1", down),
            ("b3", "to-b2", port("forwarding", "root")),
        ]);
        let evs = before.changes(&after);
        assert_eq!(
            summary(&evs),
            [
                "stp.role b3:to-b1 disabled",
                "stp.state b3:to-b1 disabled",
                "port.carrier b3:to-b1 ",
                "stp.role b3:to-b2 root",
                "stp.topology_change b3: ",
            ]
        );
        assert!(evs
            .iter()
            .filter(|e| e.kind.starts_with("stp."))
            .all(|e| e.data["kernel"] == true));
        assert_eq!(evs[4].data["detected"], true);
        // One poll, one time: the topology change (made first, listed
        // last) never reads earlier than the port events before it.
        assert!(evs.iter().all(|e| e.ts == evs[0].ts), "{evs:?}");
        // Nothing changed, nothing to say; the flag staying on is not news.
        assert!(after.changes(&after).is_empty());
    }

    #[test]
    fn a_restarted_topology_change_timer_is_a_new_change() {
        let a = view(&[("b1", "b1", bridge(true, false, 2000))]);
        let b = view(&[("b1", "b1", bridge(true, false, 1900))]);
        let c = view(&[("b1", "b1", bridge(true, false, 3400))]);
        assert!(a.changes(&b).is_empty());
        assert_eq!(summary(&b.changes(&c)), ["stp.topology_change b1: "]);
    }

    #[test]
    fn counters_are_recorded_for_nodes_whose_traffic_moved() {
        let c = |rx: u64| IfaceSeen {
            counters: Some(Counters {
                rx_packets: rx,
                rx_bytes: rx * 100,
                rx_dropped: 1,
                tx_dropped: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = view(&[("h1", "eth0", c(1)), ("h2", "eth0", c(5))]);
        let b = view(&[("h1", "eth0", c(3)), ("h2", "eth0", c(5))]);
        let evs = a.counters(&b);
        assert_eq!(evs.len(), 1, "{evs:?}");
        assert_eq!(evs[0].node.as_deref(), Some("h1"));
        assert_eq!(evs[0].data["kernel"], true);
        let p = &evs[0].data["ports"]["eth0"];
        assert_eq!(p["rx_frames"], 3);
        assert_eq!(p["rx_bytes"], 300);
        assert_eq!(p["drops"], 3);
    }
}
