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

/// What only the kernel and the tunnel processes know: kernel bridges'
/// port STP states, the carrier of kernel interfaces (weft switches' ports
/// are the datapath's to report), and tunnels' sessions (from their status
/// files). Found by polling `weft status` (a poller calls [`poll`]
/// about once a second); one process per lab polls at a time (it holds
/// `events.poll.lock`), and it records what it finds in the stream, so
/// several followers neither miss nor double anything.
///
/// [`poll`]: KernelWatch::poll
/// (node, interface) -> (bridge port STP state, carrier).
type Seen = std::collections::BTreeMap<(String, String), (Option<&'static str>, Option<bool>)>;

/// Per tunnel end (`node:iface`): up, handshakes, roams, warning.
type TunnelSeen = std::collections::BTreeMap<String, (bool, u64, u64, Option<String>)>;

pub struct KernelWatch {
    lab: String,
    lock: Option<std::fs::File>,
    last: Option<Seen>,
    tunnels: Option<TunnelSeen>,
}

impl KernelWatch {
    pub fn new(lab: &str) -> Self {
        KernelWatch {
            lab: lab.to_string(),
            lock: None,
            last: None,
            tunnels: None,
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
        let mut now = std::collections::BTreeMap::new();
        for n in st.iter().flat_map(|l| &l.nodes) {
            if n.kind == "switch" {
                continue;
            }
            for i in n
                .interfaces
                .iter()
                .filter(|i| i.present && i.kind != "loopback")
            {
                now.insert((n.name.clone(), i.name.clone()), (i.port_state, i.carrier));
            }
        }
        let mut out = Vec::new();
        if let Some(last) = &self.last {
            for ((node, iface), (ps, carrier)) in &now {
                let Some((ps0, carrier0)) = last.get(&(node.clone(), iface.clone())) else {
                    continue;
                };
                if let (Some(a), Some(b)) = (ps0, ps) {
                    if a != b {
                        out.push(
                            Event::new("stp.state")
                                .node(node)
                                .port(iface)
                                .with("from", *a)
                                .with("to", *b)
                                .with("kernel", true),
                        );
                    }
                }
                if let (Some(a), Some(b)) = (carrier0, carrier) {
                    if a != b {
                        out.push(
                            Event::new("port.carrier")
                                .node(node)
                                .port(iface)
                                .with("up", *b),
                        );
                    }
                }
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
