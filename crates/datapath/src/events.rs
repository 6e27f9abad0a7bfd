//! A lab's event stream (docs/events.md): one JSON object a line in
//! `/run/weft/labs/LAB/events.jsonl`, appended by whoever sees the event
//! (this datapath for its switches, `weft` commands for what they do), read
//! and followed by `weft events` and the library's `weft::events`.
//!
//! Each line is written with one `write` on a file opened `O_APPEND`, so
//! lines from several processes interleave whole. The file is bounded:
//! past [`MAX_BYTES`] it is renamed to `events.1.jsonl` (replacing the one
//! before) and a new one started, so at most twice that is kept.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weft_switch::{PortId, PortRole, PortState, Switch};

/// The shape's version, in every event as `v`. Fields are only ever added
/// within a version.
pub const VERSION: u32 = 1;
/// Size at which the file is rotated.
pub const MAX_BYTES: u64 = 1 << 20;
pub const FILE: &str = "events.jsonl";
pub const OLD_FILE: &str = "events.1.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub ts: u64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The rest, by type (docs/events.md).
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

impl Event {
    pub fn new(kind: &str) -> Self {
        Event {
            v: VERSION,
            ts: now_ms(),
            kind: kind.to_string(),
            node: None,
            port: None,
            data: Map::new(),
        }
    }

    pub fn node(mut self, n: &str) -> Self {
        self.node = Some(n.to_string());
        self
    }

    pub fn port(mut self, p: &str) -> Self {
        self.port = Some(p.to_string());
        self
    }

    pub fn with(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.data.insert(k.to_string(), v.into());
        self
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Appends events to a lab's file. Failing to record an event never fails
/// what caused it: errors are logged at debug level.
#[derive(Debug, Clone)]
pub struct Writer {
    path: PathBuf,
}

impl Writer {
    /// The writer for the lab whose state directory is `dir`.
    pub fn new(dir: &Path) -> Self {
        Writer {
            path: dir.join(FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, events: &[Event]) {
        if events.is_empty() || !self.path.parent().is_some_and(Path::exists) {
            return;
        }
        let mut buf = Vec::new();
        for e in events {
            if serde_json::to_writer(&mut buf, e).is_ok() {
                buf.push(b'\n');
            }
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() + buf.len() as u64 > MAX_BYTES) {
            let _ = std::fs::rename(&self.path, self.path.with_file_name(OLD_FILE));
        }
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&buf));
        if let Err(e) = r {
            tracing::debug!("recording events in {}: {e}", self.path.display());
        }
    }
}

fn role_word(r: PortRole) -> &'static str {
    match r {
        PortRole::Root => "root",
        PortRole::Designated => "designated",
        PortRole::Alternate => "alternate",
        PortRole::Backup => "backup",
        PortRole::Disabled => "disabled",
    }
}

pub(crate) fn state_word(s: PortState) -> &'static str {
    match s {
        PortState::Disabled => "disabled",
        PortState::Blocking => "blocking",
        PortState::Listening => "listening",
        PortState::Learning => "learning",
        PortState::Forwarding => "forwarding",
        PortState::Discarding => "discarding",
    }
}

/// FDB entries compared one by one up to this size; larger tables are
/// summarised by their counters only.
const FDB_DIFF_MAX: usize = 4096;
/// Single FDB events per switch per second at most; the rest are counted
/// in the `fdb.summary` event.
const FDB_EVENTS_MAX: usize = 20;

/// What the datapath last reported about one switch.
#[derive(Debug, Default)]
pub(crate) struct SwitchSeen {
    ports: Vec<(&'static str, &'static str)>,
    tc: u64,
    root: String,
    loop_suspected: bool,
    fdb: HashMap<(u16, [u8; 6]), u16>,
    fdb_counters: (u64, u64, u64, u64),
}

impl SwitchSeen {
    /// Role and state changes, topology changes and a new root since the
    /// last call, as events.
    pub(crate) fn stp(&mut self, name: &str, sw: &Switch, ports: &[&str], out: &mut Vec<Event>) {
        let st = sw.stp_status();
        let now: Vec<(&'static str, &'static str)> = (0..sw.port_count())
            .map(|i| {
                sw.port_stp_status(PortId(i as u16))
                    .map_or(("disabled", "disabled"), |p| {
                        (role_word(p.role), state_word(p.state))
                    })
            })
            .collect();
        let first = self.ports.is_empty();
        let root = st.root_id.to_string();
        if !first {
            for (i, (a, b)) in self.ports.iter().zip(&now).enumerate() {
                let port = ports.get(i).copied().unwrap_or("?");
                if a.0 != b.0 {
                    out.push(
                        Event::new("stp.role")
                            .node(name)
                            .port(port)
                            .with("from", a.0)
                            .with("to", b.0),
                    );
                }
                if a.1 != b.1 {
                    out.push(
                        Event::new("stp.state")
                            .node(name)
                            .port(port)
                            .with("from", a.1)
                            .with("to", b.1),
                    );
                }
            }
            if st.topology_changes > self.tc {
                out.push(
                    Event::new("stp.topology_change")
                        .node(name)
                        .with("count", st.topology_changes),
                );
            }
            if root != self.root {
                out.push(
                    Event::new("stp.root")
                        .node(name)
                        .with("from", self.root.clone())
                        .with("to", root.clone())
                        .with("is_root", st.root_id == st.bridge_id),
                );
            }
        }
        self.ports = now;
        self.tc = st.topology_changes;
        self.root = root;
    }

    /// Loop flag changes, FDB learn/move/age (bounded) and a summary.
    pub(crate) fn slow(&mut self, name: &str, sw: &Switch, ports: &[&str], out: &mut Vec<Event>) {
        let lp = sw.loop_status();
        if lp.suspected != self.loop_suspected {
            out.push(
                Event::new(if lp.suspected {
                    "loop.suspected"
                } else {
                    "loop.cleared"
                })
                .node(name)
                .with("repeated_floods_per_s", lp.repeats_per_s)
                .with("mac_moves_per_s", lp.moves_per_s),
            );
            self.loop_suspected = lp.suspected;
        }
        let c = sw.fdb_counters();
        let counters = (c.learned, c.moves, c.aged, c.flushed);
        if counters == self.fdb_counters {
            return;
        }
        let pname = |p: u16| {
            ports
                .get(usize::from(p))
                .copied()
                .unwrap_or("?")
                .to_string()
        };
        let mac = |m: &[u8; 6]| weft_wire::MacAddr(*m).to_string();
        let mut single = Vec::new();
        let fdb = sw.fdb();
        if fdb.len() <= FDB_DIFF_MAX {
            let now: HashMap<(u16, [u8; 6]), u16> = fdb
                .iter()
                .filter(|(_, _, e)| !e.is_static)
                .map(|(v, m, e)| ((v, m.0), e.port.0))
                .collect();
            for (k, p) in &now {
                match self.fdb.get(k) {
                    None => single.push(
                        Event::new("fdb.learn")
                            .node(name)
                            .port(&pname(*p))
                            .with("mac", mac(&k.1))
                            .with("vlan", k.0),
                    ),
                    Some(old) if old != p => single.push(
                        Event::new("fdb.move")
                            .node(name)
                            .port(&pname(*p))
                            .with("mac", mac(&k.1))
                            .with("vlan", k.0)
                            .with("from", pname(*old)),
                    ),
                    _ => {}
                }
            }
            for (k, p) in &self.fdb {
                if !now.contains_key(k) {
                    single.push(
                        Event::new("fdb.age")
                            .node(name)
                            .port(&pname(*p))
                            .with("mac", mac(&k.1))
                            .with("vlan", k.0),
                    );
                }
            }
            self.fdb = now;
        } else {
            self.fdb.clear();
        }
        single.sort_by(|a, b| {
            (&a.kind, &a.data["mac"].to_string()).cmp(&(&b.kind, &b.data["mac"].to_string()))
        });
        let (l0, m0, a0, f0) = self.fdb_counters;
        let left = single.len().saturating_sub(FDB_EVENTS_MAX);
        out.extend(single.into_iter().take(FDB_EVENTS_MAX));
        out.push(
            Event::new("fdb.summary")
                .node(name)
                .with("learned", c.learned - l0)
                .with("moved", c.moves - m0)
                .with("aged", c.aged - a0)
                .with("flushed", c.flushed - f0)
                .with("entries", fdb.len())
                .with("not_listed", left),
        );
        self.fdb_counters = counters;
    }
}

/// How often FDB and loop changes are looked for.
const SLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How often per-port counters are recorded; `WEFT_EVENTS_COUNTERS_EVERY`
/// (seconds, 0 = never) changes it.
pub const COUNTERS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The datapath's side of the stream: what it last saw of each switch.
pub(crate) struct Watch {
    writer: Writer,
    seen: Vec<SwitchSeen>,
    /// Something that may change a port's role or state happened (a BPDU,
    /// a timer, a carrier or control change): compare before sleeping.
    pub(crate) stp_dirty: bool,
    next_slow: std::time::Instant,
    next_counters: Option<std::time::Instant>,
    counters_every: Option<std::time::Duration>,
    pending: Vec<Event>,
}

/// One switch as the watch sees it: name, core, port names.
pub(crate) type SwitchView<'a> = (&'a str, &'a Switch, Vec<&'a str>);

impl Watch {
    pub(crate) fn new(dir: &Path) -> Self {
        let every = match std::env::var("WEFT_EVENTS_COUNTERS_EVERY") {
            Ok(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .map(std::time::Duration::from_secs_f64),
            Err(_) => Some(COUNTERS_EVERY),
        };
        let now = std::time::Instant::now();
        Watch {
            writer: Writer::new(dir),
            seen: Vec::new(),
            stp_dirty: true,
            next_slow: now,
            next_counters: every.map(|e| now + e),
            counters_every: every,
            pending: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, e: Event) {
        self.pending.push(e);
    }

    /// Switch `s` was taken out (`remove`) or made again: what was seen
    /// of it is forgotten, so that the next look compares the switches
    /// now at each index with what was seen of them.
    pub(crate) fn forget(&mut self, s: usize, remove: bool) {
        if s < self.seen.len() {
            if remove {
                self.seen.remove(s);
            } else {
                self.seen[s] = SwitchSeen::default();
            }
        }
        self.stp_dirty = true;
    }

    /// Whether [`observe`](Self::observe) has anything to do now.
    pub(crate) fn due(&self) -> bool {
        let now = std::time::Instant::now();
        self.stp_dirty
            || !self.pending.is_empty()
            || now >= self.next_slow
            || self.next_counters.is_some_and(|t| now >= t)
    }

    /// Compares each switch with what was last seen and writes the events.
    pub(crate) fn observe(&mut self, switches: Vec<SwitchView<'_>>) {
        let now = std::time::Instant::now();
        self.seen.resize_with(switches.len(), SwitchSeen::default);
        let mut out = std::mem::take(&mut self.pending);
        for ((name, sw, ports), seen) in switches.iter().zip(&mut self.seen) {
            seen.stp(name, sw, ports, &mut out);
        }
        self.stp_dirty = false;
        if now >= self.next_slow {
            for ((name, sw, ports), seen) in switches.iter().zip(&mut self.seen) {
                seen.slow(name, sw, ports, &mut out);
            }
            self.next_slow = now + SLOW_EVERY;
        }
        if let (Some(t), Some(every)) = (self.next_counters, self.counters_every) {
            if now >= t {
                for (name, sw, ports) in &switches {
                    let mut m = Map::new();
                    for (i, p) in ports.iter().enumerate() {
                        if let Some(c) = sw.port_counters(PortId(i as u16)) {
                            m.insert(
                                p.to_string(),
                                serde_json::json!({
                                    "rx_frames": c.rx_frames, "rx_bytes": c.rx_bytes,
                                    "tx_frames": c.tx_frames, "tx_bytes": c.tx_bytes,
                                    "drops": c.drops.total(),
                                }),
                            );
                        }
                    }
                    out.push(Event::new("counters").node(name).with("ports", m));
                }
                self.next_counters = Some(now + every);
            }
        }
        self.writer.write(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_switch::{Actions, Instant, PortConfig, SwitchConfig};
    use weft_wire::MacAddr;

    fn switch() -> Switch {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        Switch::new(SwitchConfig::new(mac, vec![PortConfig::access(1); 3]))
    }

    const PORTS: [&str; 3] = ["p0", "p1", "p2"];

    #[test]
    fn a_port_going_down_is_a_role_and_a_state_change() {
        let mut sw = switch();
        let mut out = Actions::new();
        sw.tick(Instant::from_secs(1), &mut out);
        let mut seen = SwitchSeen::default();
        let mut evs = Vec::new();
        seen.stp("s1", &sw, &PORTS, &mut evs);
        assert!(evs.is_empty(), "the first look is a baseline: {evs:?}");
        sw.set_link(PortId(1), false, Instant::from_secs(2), &mut out);
        seen.stp("s1", &sw, &PORTS, &mut evs);
        let kinds: Vec<(&str, Option<&str>, &Value)> = evs
            .iter()
            .map(|e| (e.kind.as_str(), e.port.as_deref(), &e.data["to"]))
            .collect();
        assert!(
            kinds.contains(&("stp.role", Some("p1"), &Value::from("disabled"))),
            "{evs:?}"
        );
        assert!(
            kinds.contains(&("stp.state", Some("p1"), &Value::from("disabled"))),
            "{evs:?}"
        );
        assert!(evs
            .iter()
            .all(|e| e.node.as_deref() == Some("s1") && e.v == VERSION));
        evs.clear();
        seen.stp("s1", &sw, &PORTS, &mut evs);
        assert!(evs.is_empty(), "nothing changed: {evs:?}");
    }

    #[test]
    fn fdb_events_are_rate_limited_and_summarised() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let mut cfg = SwitchConfig::new(mac, vec![PortConfig::access(1); 3]);
        // Learning from the first frame, without waiting for RSTP.
        cfg.stp.mode = weft_switch::StpMode::Off;
        let mut sw = Switch::new(cfg);
        let mut out = Actions::new();
        let mut seen = SwitchSeen::default();
        let mut evs = Vec::new();
        seen.slow("s1", &sw, &PORTS, &mut evs);
        for i in 0..30u64 {
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&MacAddr::from_u64(0x0200_0000_1000 + i).0);
            f.extend_from_slice(&[0x08, 0x06]);
            f.resize(60, 0);
            sw.receive(PortId(0), &f, Instant::from_secs(1), &mut out);
        }
        evs.clear();
        seen.slow("s1", &sw, &PORTS, &mut evs);
        let learns = evs.iter().filter(|e| e.kind == "fdb.learn").count();
        assert_eq!(learns, FDB_EVENTS_MAX, "{evs:?}");
        let sum = evs.iter().find(|e| e.kind == "fdb.summary").unwrap();
        assert_eq!(sum.data["learned"], 30);
        assert_eq!(sum.data["not_listed"], 10);
        assert_eq!(
            evs.iter()
                .find(|e| e.kind == "fdb.learn")
                .unwrap()
                .port
                .as_deref(),
            Some("p0")
        );
        // One MAC moves to p2: one move event.
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&MacAddr::from_u64(0x0200_0000_1000).0);
        f.extend_from_slice(&[0x08, 0x06]);
        f.resize(60, 0);
        sw.receive(PortId(2), &f, Instant::from_secs(2), &mut out);
        evs.clear();
        seen.slow("s1", &sw, &PORTS, &mut evs);
        let mv: Vec<&Event> = evs.iter().filter(|e| e.kind == "fdb.move").collect();
        assert_eq!(mv.len(), 1, "{evs:?}");
        assert_eq!(mv[0].data["from"], "p0");
        assert_eq!(mv[0].port.as_deref(), Some("p2"));
    }

    /// A switch removed by a live edit: the one that moves into its index
    /// is compared with what was seen of itself, not of the removed one.
    #[test]
    fn a_removed_switch_is_forgotten_and_the_next_one_keeps_its_baseline() {
        let dir = std::env::temp_dir().join(format!("weft-events-forget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = Watch::new(&dir);
        let (mut gone, kept) = (switch(), switch());
        let mut out = Actions::new();
        gone.set_link(PortId(1), false, Instant::from_secs(1), &mut out);
        w.observe(vec![
            ("s1", &gone, PORTS.to_vec()),
            ("s2", &kept, PORTS.to_vec()),
        ]);
        let read = || std::fs::read_to_string(dir.join(FILE)).unwrap_or_default();
        let before = read();
        w.forget(0, true);
        w.observe(vec![("s2", &kept, PORTS.to_vec())]);
        let new = read()[before.len()..].to_string();
        let stp: Vec<&str> = new.lines().filter(|l| l.contains("\"stp.")).collect();
        assert!(stp.is_empty(), "s2 did not change: {stp:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn events_serialise_in_the_documented_shape() {
        let e = Event::new("stp.role")
            .node("s1")
            .port("p1")
            .with("from", "root")
            .with("to", "disabled");
        let v: Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "stp.role");
        assert_eq!(v["node"], "s1");
        assert!(v["ts"].as_u64().unwrap() > 1_600_000_000_000);
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let bare = serde_json::to_value(Event::new("lab.up")).unwrap();
        assert!(bare.get("node").is_none() && bare.get("port").is_none());
    }
}
