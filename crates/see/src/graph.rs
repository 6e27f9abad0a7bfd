//! Drawings of a lab: a terminal box diagram, Graphviz DOT, and SVG drawn
//! here with a fixed layout. All three are deterministic (nodes and
//! interfaces in name order), so they can be snapshot-tested.
//!
//! Input is the lab model (from a file before `up`, or as built) plus,
//! for a live lab, what the kernel says about each interface.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use weft_topo::{Endpoint, IfaceKind, Lab, NodeKind, SwitchOptions, SwitchPort, SwitchPortMode};

/// What the kernel says about an interface of a live lab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Operational state: up, down, lowerlayerdown, unknown; `missing`
    /// when the interface is not there.
    pub state: String,
    /// STP state of a bridge or switch port.
    pub port_state: Option<String>,
    /// STP role of a weft switch or kernel bridge port: root, designated,
    /// alternate, backup, disabled.
    pub role: Option<String>,
    /// Addresses as the kernel has them.
    pub addresses: Vec<String>,
    /// Traffic through it so far: the kernel's counters, or a weft switch
    /// port's own.
    pub counters: Option<Counters>,
}

/// Frames and bytes an interface received and sent, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
}

/// What went from `a` to `b` over a cable, as (bytes, frames): what `a`
/// sent, or if it cannot say, what `b` received.
fn carried(la: Option<&Live>, lb: Option<&Live>) -> Option<(u64, u64)> {
    la.and_then(|l| l.counters)
        .map(|c| (c.tx_bytes, c.tx_frames))
        .or_else(|| {
            lb.and_then(|l| l.counters)
                .map(|c| (c.rx_bytes, c.rx_frames))
        })
}

/// Live state by `node:iface`; empty for a file.
pub type LiveMap = BTreeMap<Endpoint, Live>;

/// One interface as drawn.
struct Dev {
    name: String,
    kind: &'static str,
    addrs: Vec<String>,
    /// `port of br0 (forwarding)`, `peer ns2:veth1`.
    notes: Vec<String>,
    state: Option<String>,
}

fn devs(lab: &Lab, node: &str, live: &LiveMap) -> Vec<Dev> {
    let n = &lab.nodes[node];
    n.interfaces
        .values()
        .filter(|i| !matches!(i.kind, IfaceKind::Loopback))
        .map(|i| {
            let ep = Endpoint::new(node, &i.name);
            let l = live.get(&ep);
            let mut notes = Vec::new();
            if let IfaceKind::Bridge(b) = &i.kind {
                notes.push(if b.stp { "STP on" } else { "STP off" }.to_string());
            }
            if let Some(m) = &i.master {
                let st = l.and_then(|l| l.port_state.clone());
                let role = l.and_then(|l| l.role.as_deref());
                notes.push(match (role, st) {
                    (Some(r), Some(s)) if r != s => format!("port of {m} ({r} {s})"),
                    (_, Some(s)) => format!("port of {m} ({s})"),
                    _ => format!("port of {m}"),
                });
            }
            if let Some(p) = n.switch.as_ref().and_then(|s| s.ports.get(&i.name)) {
                notes.extend(switch_port_notes(n.switch.as_ref().unwrap(), &i.name, p));
                if let Some(l) = l {
                    match (&l.role, &l.port_state) {
                        (Some(r), Some(s)) if r == s => notes.push(format!("stp {r}")),
                        (Some(r), Some(s)) => notes.push(format!("stp {r} {s}")),
                        (None, Some(s)) => notes.push(format!("stp {s}")),
                        _ => {}
                    }
                }
            }
            let addrs = match l {
                Some(l) => l.addresses.clone(),
                None => i.addresses.iter().map(|a| a.to_string()).collect(),
            };
            Dev {
                name: i.name.clone(),
                kind: i.kind.name(),
                addrs,
                notes,
                state: l.map(|l| l.state.clone()),
            }
        })
        .collect()
}

/// What a switch port does beyond plain switching, as the file says it:
/// its VLANs (VLAN 1 access, the default, is left out), impairment, and
/// its part in mirroring.
fn switch_port_notes(sw: &SwitchOptions, name: &str, p: &SwitchPort) -> Vec<String> {
    let mut notes = Vec::new();
    match &p.mode {
        SwitchPortMode::Access(1) => {}
        SwitchPortMode::Access(v) => notes.push(format!("vlan {v}")),
        SwitchPortMode::Trunk { allowed, native } => {
            let list: Vec<String> = allowed.iter().map(u16::to_string).collect();
            let mut s = format!("trunk {}", list.join(","));
            if let Some(n) = native {
                let _ = write!(s, " native {n}");
            }
            notes.push(s);
        }
    }
    if let Some(i) = &p.impair {
        notes.push(format!("impair {}", i.summary()));
    }
    if let Some(m) = &sw.mirror {
        if m.output == name {
            notes.push("mirror output".to_string());
        }
        let (inn, out) = (
            m.ingress.iter().any(|x| x == name),
            m.egress.iter().any(|x| x == name),
        );
        match (inn, out) {
            (true, true) => notes.push("mirrored".to_string()),
            (true, false) => notes.push("mirrored in".to_string()),
            (false, true) => notes.push("mirrored out".to_string()),
            (false, false) => {}
        }
    }
    notes
}

fn node_title(lab: &Lab, node: &str) -> String {
    let n = &lab.nodes[node];
    let kind = match n.kind {
        NodeKind::Host => "host",
        NodeKind::Bridge => "bridge",
        NodeKind::Switch => "switch",
    };
    format!("{node} ({kind}, netns {})", n.netns)
}

fn dev_line(d: &Dev) -> String {
    let mut s = format!("{} [{}]", d.name, d.kind);
    if let Some(st) = &d.state {
        let _ = write!(s, " {st}");
    }
    for a in &d.addrs {
        let _ = write!(s, " {a}");
    }
    for n in &d.notes {
        let _ = write!(s, ", {n}");
    }
    s
}

/// Cables: every veth pair once, in order.
fn cables(lab: &Lab) -> Vec<(Endpoint, Endpoint)> {
    let mut v: Vec<_> = lab.veths().collect();
    v.sort();
    v
}

/// What cables carried so far: per cable `a`, `b`, then (bytes, frames)
/// from a to b and from b to a.
pub type Traffic = Vec<(Endpoint, Endpoint, Option<(u64, u64)>, Option<(u64, u64)>)>;

/// What each cable carried so far, each way, in the order [`svg`] draws
/// them, for those with counters at either end. A page that keeps the
/// drawing and updates only its rates asks for these.
pub fn traffic(lab: &Lab, live: &LiveMap) -> Traffic {
    cables(lab)
        .into_iter()
        .filter_map(|(a, b)| {
            let (la, lb) = (live.get(&a), live.get(&b));
            let (ab, ba) = (carried(la, lb), carried(lb, la));
            (ab.is_some() || ba.is_some()).then_some((a, b, ab, ba))
        })
        .collect()
}

/// How a cable of a live lab carries frames.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CableState {
    /// Both ends up and forwarding (or nothing known: a file).
    Up,
    /// An end is not up: taken down with `weft link`, no carrier, missing.
    Down,
    /// Both ends up, but the spanning tree blocks the port at this end.
    Blocked(Endpoint),
}

/// A port the spanning tree keeps from forwarding (an alternate or backup
/// port, or one still listening).
fn blocking(l: &Live) -> bool {
    matches!(
        l.port_state.as_deref(),
        Some("blocking" | "discarding" | "listening")
    )
}

fn cable_state(a: &Endpoint, b: &Endpoint, live: &LiveMap) -> CableState {
    let (la, lb) = (live.get(a), live.get(b));
    let up = |l: Option<&Live>| l.is_none_or(|l| l.state == "up");
    if !up(la) || !up(lb) {
        return CableState::Down;
    }
    match (la.filter(|l| blocking(l)), lb.filter(|l| blocking(l))) {
        (Some(_), _) => CableState::Blocked(a.clone()),
        (_, Some(_)) => CableState::Blocked(b.clone()),
        _ => CableState::Up,
    }
}

fn port_words(l: Option<&Live>) -> String {
    match l {
        Some(Live {
            role: Some(r),
            port_state: Some(s),
            ..
        }) => format!("{r}, {s}"),
        Some(Live {
            port_state: Some(s),
            ..
        }) => s.clone(),
        _ => "blocked".into(),
    }
}

/// A box per node with its devices, then the cables between them.
pub fn text(lab: &Lab, live: &LiveMap) -> String {
    let mut out = format!("lab {}\n\n", lab.name);
    for name in lab.nodes.keys() {
        let title = node_title(lab, name);
        let lines: Vec<String> = devs(lab, name, live).iter().map(dev_line).collect();
        let routes: Vec<String> = lab.nodes[name]
            .routes
            .iter()
            .map(|r| format!("route {r}"))
            .collect();
        let w = lines
            .iter()
            .chain(&routes)
            .map(|l| l.chars().count())
            .chain([title.chars().count() + 2])
            .max()
            .unwrap_or(0)
            + 2;
        let _ = writeln!(
            out,
            "+-{title}-{}+",
            "-".repeat(w - title.chars().count() - 2)
        );
        let empty = lines.is_empty();
        for l in lines.iter().chain(&routes) {
            let _ = writeln!(out, "| {l}{} |", " ".repeat(w - 2 - l.chars().count()));
        }
        if empty {
            let _ = writeln!(
                out,
                "| (no interfaces){} |",
                " ".repeat(w.saturating_sub(17))
            );
        }
        let _ = writeln!(out, "+{}+", "-".repeat(w));
    }
    let cs = cables(lab);
    if !cs.is_empty() {
        out.push_str("\ncables (veth pairs):\n");
        let width = cs
            .iter()
            .map(|(a, _)| a.to_string().len())
            .max()
            .unwrap_or(0);
        for (a, b) in &cs {
            let state = |e: &Endpoint| live.get(e).map(|l| l.state.as_str());
            let (mid, tail) = match cable_state(a, b, live) {
                CableState::Up => ("<=========>".to_string(), String::new()),
                CableState::Blocked(e) => (
                    "<==||=====>".to_string(),
                    format!("  (blocked at {e}: {})", port_words(live.get(&e))),
                ),
                CableState::Down => (
                    format!(
                        "<-- {} / {} -->",
                        state(a).unwrap_or("?"),
                        state(b).unwrap_or("?")
                    ),
                    String::new(),
                ),
            };
            let _ = writeln!(out, "  {:<width$} {mid} {b}{tail}", a.to_string());
        }
    }
    if !lab.tunnels.is_empty() {
        out.push_str(
            "
tunnels (weft tunnel, encrypted, over the underlay):
",
        );
        for t in &lab.tunnels {
            let [a, b] = &t.ends;
            let _ = writeln!(
                out,
                "  {} <~~ {} {}/{} ~~> {}",
                a.endpoint,
                if t.tap { "tap" } else { "tun" },
                if t.tcp { "tcp" } else { "udp" },
                t.port,
                b.endpoint
            );
        }
    }
    let vx = vxlans(lab);
    if !vx.is_empty() {
        out.push_str("\nvxlan links (kernel VXLAN, between machines):\n");
        for (a, o) in &vx {
            let _ = writeln!(
                out,
                "  {a} <~~ vni {} {} -> {}:{} ~~> {}",
                o.vni, o.local, o.remote, o.port, o.peer
            );
        }
    }
    out
}

/// Each `kind = "vxlan"` link once, from its lower end.
fn vxlans(lab: &Lab) -> Vec<(Endpoint, &weft_topo::VxlanOptions)> {
    let mut v = Vec::new();
    for n in lab.nodes.values() {
        for i in n.interfaces.values() {
            if let IfaceKind::Vxlan(o) = &i.kind {
                let me = Endpoint::new(&n.name, &i.name);
                // A machine's share has only its own end: draw that too.
                if me < o.peer || !lab.nodes.contains_key(&o.peer.node) {
                    v.push((me, o));
                }
            }
        }
    }
    v
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Graphviz DOT: a cluster per namespace, a record per device, veth pairs
/// as edges between namespaces, bridge ports as dashed edges to their
/// bridge.
pub fn dot(lab: &Lab, live: &LiveMap) -> String {
    let mut o = format!(
        "graph \"{}\" {{\n  graph [rankdir=LR, fontname=\"Helvetica\", label=\"lab {}\"];\n  node [shape=box, style=rounded, fontname=\"Helvetica\", fontsize=10];\n",
        esc(&lab.name),
        esc(&lab.name)
    );
    for (i, name) in lab.nodes.keys().enumerate() {
        let _ = writeln!(
            o,
            "  subgraph cluster_{i} {{\n    label=\"{}\";\n    style={};",
            esc(&node_title(lab, name)),
            if matches!(lab.nodes[name].kind, NodeKind::Bridge | NodeKind::Switch) {
                "\"filled\"; fillcolor=\"#eef3ff\""
            } else {
                "\"solid\""
            }
        );
        let ds = devs(lab, name, live);
        if ds.is_empty() {
            let _ = writeln!(
                o,
                "    \"{}:\" [label=\"(no interfaces)\", style=dotted];",
                esc(name)
            );
        }
        for d in &ds {
            let mut label = format!("{} ({})", d.name, d.kind);
            if let Some(s) = &d.state {
                let _ = write!(label, "\\n{s}");
            }
            for a in &d.addrs {
                let _ = write!(label, "\\n{}", esc(a));
            }
            for n in &d.notes {
                let _ = write!(label, "\\n{}", esc(n));
            }
            let color = match d.state.as_deref() {
                Some("up") | None => "black",
                _ => "red",
            };
            let _ = writeln!(
                o,
                "    \"{}:{}\" [label=\"{label}\", color={color}];",
                esc(name),
                esc(&d.name)
            );
        }
        o.push_str("  }\n");
    }
    for (a, b) in cables(lab) {
        let attrs = match cable_state(&a, &b, live) {
            CableState::Up => "penwidth=2".to_string(),
            CableState::Down => "penwidth=2, color=red, style=dashed, label=\"down\"".to_string(),
            CableState::Blocked(e) => format!(
                "penwidth=2, color=orange, style=dashed, label=\"blocked at {}\"",
                esc(&e.to_string())
            ),
        };
        let _ = writeln!(o, "  \"{a}\" -- \"{b}\" [{attrs}];");
    }
    for t in &lab.tunnels {
        let [a, b] = &t.ends;
        let _ = writeln!(
            o,
            "  \"{}\" -- \"{}\" [style=dotted, penwidth=2, label=\"tunnel {}/{}\"];",
            a.endpoint,
            b.endpoint,
            if t.tcp { "tcp" } else { "udp" },
            t.port
        );
    }
    for (a, x) in vxlans(lab) {
        let _ = writeln!(
            o,
            "  \"{a}\" -- \"{}\" [style=dotted, penwidth=2, label=\"vxlan {}\"];",
            x.peer, x.vni
        );
    }
    for n in lab.nodes.values() {
        for i in n.interfaces.values() {
            if let Some(m) = &i.master {
                let _ = writeln!(
                    o,
                    "  \"{}:{}\" -- \"{}:{m}\" [style=dashed];",
                    n.name, i.name, n.name
                );
            }
        }
    }
    o.push_str("}\n");
    o
}

/// Labs with more nodes than this are drawn in a grid, not in one row.
const ROW_MAX: usize = 16;

/// Where each node goes: (x, y) of its box's top left, in drawing order.
/// Up to [`ROW_MAX`] nodes stand in one row in name order. Larger labs
/// (a 500-host lab in one row was 150,260 px wide) are packed into rows
/// of a near-square drawing: bridges and switches first, then the hosts
/// grouped by the node their first cable leads to, so that each switch's
/// hosts sit together.
fn layout(lab: &Lab, sizes: &BTreeMap<String, (i32, i32)>, gap: i32) -> Vec<(String, i32, i32)> {
    let names: Vec<&String> = lab.nodes.keys().collect();
    if names.len() <= ROW_MAX {
        let mut x = 20;
        return names
            .iter()
            .map(|n| {
                let at = ((*n).clone(), x, 30);
                x += sizes[n.as_str()].0 + gap;
                at
            })
            .collect();
    }
    let is_l2 = |n: &str| matches!(lab.nodes[n].kind, NodeKind::Bridge | NodeKind::Switch);
    let mut first_peer: BTreeMap<&str, String> = BTreeMap::new();
    for (a, b) in cables(lab) {
        first_peer
            .entry(lab.nodes[&a.node].name.as_str())
            .or_insert(b.node.clone());
        first_peer
            .entry(lab.nodes[&b.node].name.as_str())
            .or_insert(a.node.clone());
    }
    let l2: Vec<&String> = names.iter().copied().filter(|n| is_l2(n)).collect();
    let mut hosts: Vec<&String> = names.iter().copied().filter(|n| !is_l2(n)).collect();
    hosts.sort_by_key(|n| {
        (
            first_peer.get(n.as_str()).cloned().unwrap_or_default(),
            natural(n),
        )
    });
    let col_w = sizes.values().map(|s| s.0).min().unwrap_or(0) + gap;
    let cols = ((names.len() as f64).sqrt() * 0.8).ceil().max(4.0) as i32;
    let max_w = cols * col_w;
    let mut out = Vec::new();
    let mut y = 30;
    for group in [l2, hosts] {
        let (mut x, mut row_h) = (20, 0);
        for n in group {
            let (w, h) = sizes[n.as_str()];
            if x > 20 && x + w > max_w {
                y += row_h + 40;
                (x, row_h) = (20, 0);
            }
            out.push((n.clone(), x, y));
            x += w + gap;
            row_h = row_h.max(h);
        }
        if row_h > 0 {
            y += row_h + 40;
        }
    }
    out
}

/// A name as (text, number) pieces, so that h2 sorts before h10.
fn natural(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let t = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let d = rest[t..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len(), |e| t + e);
        let num = rest[t..d].parse().unwrap_or(u64::MAX);
        out.push((rest[..t].to_string(), num));
        rest = &rest[d..];
    }
    out
}

/// SVG: namespaces as boxes (in a row, or a grid for large labs), devices
/// stacked inside, veth pairs as lines between devices (dashed red when
/// down, dashed orange with a dot at the blocked end when the spanning
/// tree blocks them), bridge ports as dashed lines to the bridge. Nodes
/// and cables carry `data-` attributes so a page can make them clickable.
pub fn svg(lab: &Lab, live: &LiveMap) -> String {
    const DW: i32 = 200; // device box width
    const DH: i32 = 22; // per text line
    const GAP: i32 = 80;
    let many = lab.nodes.len() > ROW_MAX;
    let dev_h =
        |d: &Dev| (1 + d.addrs.len() + d.notes.len() + d.state.is_some() as usize) as i32 * 14 + 10;
    // Per node: devices, columns of devices, row heights, box size. A
    // switch with hundreds of ports in a large lab puts them in columns.
    type Drawn = (Vec<Dev>, usize, Vec<i32>, (i32, i32));
    let mut drawn: BTreeMap<String, Drawn> = BTreeMap::new();
    for name in lab.nodes.keys() {
        let ds = devs(lab, name, live);
        let ncols = if many && ds.len() > 8 {
            (ds.len() as f64).sqrt().ceil() as usize
        } else {
            1
        };
        let rows: Vec<i32> = ds
            .chunks(ncols)
            .map(|r| r.iter().map(dev_h).max().unwrap_or(0))
            .collect();
        let inner: i32 = rows.iter().map(|h| h + 10).sum();
        let w = ncols as i32 * (DW + 10) + 10;
        drawn.insert(
            name.clone(),
            (ds, ncols, rows, (w, (inner + 30).max(DH * 2))),
        );
    }
    let sizes = drawn.iter().map(|(n, d)| (n.clone(), d.3)).collect();
    let places = layout(lab, &sizes, GAP);
    let mut pos: BTreeMap<Endpoint, (i32, i32, i32)> = BTreeMap::new(); // x, y, height
    let mut body = String::new();
    let (mut max_x, mut max_y) = (0, 0);
    for (name, x, top) in &places {
        let (x, top) = (*x, *top);
        let (ds, ncols, rows, (w, h)) = &drawn[name];
        let mut inner = String::new();
        let mut row_y = top + 30;
        for (r, row) in ds.chunks(*ncols).enumerate() {
            for (c, d) in row.iter().enumerate() {
                let (dx, y) = (x + 10 + c as i32 * (DW + 10), row_y);
                let h = dev_h(d);
                let stroke = match d.state.as_deref() {
                    Some("up") | None => "#333",
                    _ => "#c00",
                };
                let _ = writeln!(
                    inner,
                    "<rect x=\"{dx}\" y=\"{y}\" width=\"{DW}\" height=\"{h}\" rx=\"4\" fill=\"#fff\" stroke=\"{stroke}\"/>"
                );
                let mut ty = y + 16;
                let mut texts = vec![format!("{} ({})", d.name, d.kind)];
                texts.extend(d.state.iter().cloned());
                texts.extend(d.addrs.iter().cloned());
                texts.extend(d.notes.iter().cloned());
                for (k, t) in texts.iter().enumerate() {
                    let weight = if k == 0 { " font-weight=\"bold\"" } else { "" };
                    let _ = writeln!(
                        inner,
                        "<text x=\"{}\" y=\"{ty}\"{weight}>{}</text>",
                        dx + 6,
                        esc(t)
                    );
                    ty += 14;
                }
                pos.insert(Endpoint::new(name, &d.name), (dx, y, h));
            }
            row_y += rows[r] + 10;
        }
        let (w, h) = (*w, *h);
        max_x = max_x.max(x + w);
        max_y = max_y.max(top + h + 10);
        let fill = if matches!(lab.nodes[name].kind, NodeKind::Bridge | NodeKind::Switch) {
            "#eef3ff"
        } else {
            "#f7f7f7"
        };
        let _ = writeln!(
            body,
            "<g class=\"node\" data-node=\"{}\">\n<rect x=\"{x}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" rx=\"8\" fill=\"{fill}\" stroke=\"#666\"/>\n<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text>",
            esc(name),
            x + 8,
            top + 18,
            esc(&node_title(lab, name))
        );
        body.push_str(&inner);
        body.push_str("</g>\n");
    }
    let mid = |p: &(i32, i32, i32)| (p.0, p.1 + p.2 / 2);
    for (a, b) in cables(lab) {
        if let (Some(pa), Some(pb)) = (pos.get(&a), pos.get(&b)) {
            let ((ax, ay), (bx, by)) = (mid(pa), mid(pb));
            // Leave each box on the side facing the other; in a grid,
            // between rows, by the top or bottom edge.
            let ((ax, ay), (bx, by)) = if many && (ay - by).abs() > pa.2.max(pb.2) {
                let (top, bottom) = if ay < by { (pa, pb) } else { (pb, pa) };
                let (t, b) = (
                    (top.0 + DW / 2, top.1 + top.2),
                    (bottom.0 + DW / 2, bottom.1),
                );
                if ay < by {
                    (t, b)
                } else {
                    (b, t)
                }
            } else if ax < bx {
                ((ax + DW, ay), (bx, by))
            } else if ax > bx {
                ((ax, ay), (bx + DW, by))
            } else {
                ((ax + DW, ay), (bx + DW, by))
            };
            let state = cable_state(&a, &b, live);
            let (style, note) = match &state {
                CableState::Up if many => (
                    "stroke=\"#000\" stroke-width=\"1\" stroke-opacity=\"0.5\"".to_string(),
                    String::new(),
                ),
                CableState::Up => (
                    "stroke=\"#000\" stroke-width=\"2\"".to_string(),
                    String::new(),
                ),
                CableState::Down => (
                    "stroke=\"#c00\" stroke-width=\"2\" stroke-dasharray=\"6 4\"".to_string(),
                    " (down)".to_string(),
                ),
                CableState::Blocked(e) => (
                    "stroke=\"#e80\" stroke-width=\"2\" stroke-dasharray=\"2 3\"".to_string(),
                    format!(" (blocked at {e}: {})", port_words(live.get(e))),
                ),
            };
            let state_word = match &state {
                CableState::Up => "up",
                CableState::Down => "down",
                CableState::Blocked(_) => "blocked",
            };
            // A cable that passes other boxes in the row would run over
            // them and over other cables at the same height: it arcs
            // below instead, lower the farther it goes.
            let far = !many && (ax - bx).abs() > GAP + 20 && (ay - by).abs() < 200;
            let (mx, my) = ((ax + bx) / 2, ay.max(by) + 30 + (ax - bx).abs() / 5);
            // Where a page writes the cable's rates: its middle.
            let (cx, cy) = if far {
                ((ax + 2 * mx + bx) / 4, (ay + 2 * my + by) / 4)
            } else {
                ((ax + bx) / 2, (ay + by) / 2)
            };
            let (la, lb) = (live.get(&a), live.get(&b));
            let mut traffic = String::new();
            let mut counted = String::new();
            for (dir, c) in [("ab", carried(la, lb)), ("ba", carried(lb, la))] {
                if let Some((bytes, frames)) = c {
                    let _ = write!(traffic, " data-{dir}=\"{bytes} {frames}\"");
                    let (from, to) = if dir == "ab" { (&a, &b) } else { (&b, &a) };
                    let _ = write!(counted, "\n{from} to {to}: {frames} frames, {bytes} bytes");
                }
            }
            let ends = format!(
                "class=\"cable\" data-a=\"{}\" data-b=\"{}\" data-state=\"{state_word}\" data-mid=\"{cx} {cy}\"{traffic}",
                esc(&a.to_string()),
                esc(&b.to_string()),
            );
            let title = format!(
                "<title>{} -- {}{}{}</title>",
                esc(&a.to_string()),
                esc(&b.to_string()),
                esc(&note),
                esc(&counted)
            );
            if far {
                let _ = writeln!(
                    body,
                    "<path {ends} d=\"M {ax} {ay} Q {mx} {my} {bx} {by}\" fill=\"none\" {style}>{title}</path>"
                );
                max_y = max_y.max(ay.max(by) + 15 + (ax - bx).abs() / 10);
            } else {
                let _ = writeln!(
                    body,
                    "<line {ends} x1=\"{ax}\" y1=\"{ay}\" x2=\"{bx}\" y2=\"{by}\" {style}>{title}</line>"
                );
            }
            if let CableState::Blocked(e) = &state {
                let (cx, cy) = if *e == a { (ax, ay) } else { (bx, by) };
                let _ = writeln!(
                    body,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"5\" fill=\"#e80\"><title>{} blocked</title></circle>",
                    esc(&e.to_string())
                );
            }
        }
    }
    // In a grid the ports' notes say which bridge they belong to; lines
    // from hundreds of ports to one bridge device would only hide them.
    for n in lab.nodes.values().filter(|_| !many) {
        for i in n.interfaces.values() {
            if let Some(m) = &i.master {
                let (p, q) = (
                    pos.get(&Endpoint::new(&n.name, &i.name)),
                    pos.get(&Endpoint::new(&n.name, m)),
                );
                if let (Some(p), Some(q)) = (p, q) {
                    let _ = writeln!(
                        body,
                        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#36c\" stroke-dasharray=\"4 3\"/>",
                        p.0 + DW / 2,
                        p.1,
                        q.0 + DW / 2,
                        q.1 + q.2
                    );
                }
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, sans-serif\" font-size=\"11\">\n<text x=\"20\" y=\"20\" font-size=\"14\" font-weight=\"bold\">lab {}</text>\n{body}</svg>\n",
        esc(&lab.name),
        w = max_x + 20,
        h = max_y + 40
    )
}
