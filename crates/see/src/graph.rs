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
    /// STP state of a bridge port.
    pub port_state: Option<String>,
    /// Addresses as the kernel has them.
    pub addresses: Vec<String>,
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
                notes.push(match st {
                    Some(s) => format!("port of {m} ({s})"),
                    None => format!("port of {m}"),
                });
            }
            if let Some(p) = n.switch.as_ref().and_then(|s| s.ports.get(&i.name)) {
                notes.extend(switch_port_notes(n.switch.as_ref().unwrap(), &i.name, p));
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
            let mid = match (state(a), state(b)) {
                (Some("up"), Some("up")) | (None, None) => "<=========>".to_string(),
                (sa, sb) => format!("<-- {} / {} -->", sa.unwrap_or("?"), sb.unwrap_or("?")),
            };
            let _ = writeln!(out, "  {:<width$} {mid} {b}", a.to_string());
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
        let _ = writeln!(o, "  \"{a}\" -- \"{b}\" [penwidth=2];");
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

/// SVG: namespaces as boxes in a row, devices stacked inside, veth pairs
/// as lines between devices, bridge ports as dashed lines to the bridge.
pub fn svg(lab: &Lab, live: &LiveMap) -> String {
    const DW: i32 = 200; // device box width
    const DH: i32 = 22; // per text line
    const GAP: i32 = 80;
    let mut pos: BTreeMap<Endpoint, (i32, i32, i32)> = BTreeMap::new(); // x, y, height
    let mut body = String::new();
    let mut x = 20;
    let mut max_h = 0;
    for name in lab.nodes.keys() {
        let ds = devs(lab, name, live);
        let mut y = 60;
        let mut inner = String::new();
        for d in &ds {
            let lines = 1 + d.addrs.len() + d.notes.len() + d.state.is_some() as usize;
            let h = lines as i32 * 14 + 10;
            let stroke = match d.state.as_deref() {
                Some("up") | None => "#333",
                _ => "#c00",
            };
            let _ = writeln!(
                inner,
                "<rect x=\"{}\" y=\"{y}\" width=\"{DW}\" height=\"{h}\" rx=\"4\" fill=\"#fff\" stroke=\"{stroke}\"/>",
                x + 10
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
                    x + 16,
                    esc(t)
                );
                ty += 14;
            }
            pos.insert(Endpoint::new(name, &d.name), (x + 10, y, h));
            y += h + 10;
        }
        let h = (y - 30).max(DH * 2);
        max_h = max_h.max(h + 40);
        let fill = if matches!(lab.nodes[name].kind, NodeKind::Bridge | NodeKind::Switch) {
            "#eef3ff"
        } else {
            "#f7f7f7"
        };
        let _ = writeln!(
            body,
            "<rect x=\"{x}\" y=\"30\" width=\"{}\" height=\"{h}\" rx=\"8\" fill=\"{fill}\" stroke=\"#666\"/>\n<text x=\"{}\" y=\"48\" font-weight=\"bold\">{}</text>",
            DW + 20,
            x + 8,
            esc(&node_title(lab, name))
        );
        body.push_str(&inner);
        x += DW + 20 + GAP;
    }
    let mid = |p: &(i32, i32, i32)| (p.0, p.1 + p.2 / 2);
    for (a, b) in cables(lab) {
        if let (Some(pa), Some(pb)) = (pos.get(&a), pos.get(&b)) {
            let ((ax, ay), (bx, by)) = (mid(pa), mid(pb));
            // Leave each box on the side facing the other.
            let (ax, bx) = if ax < bx {
                (ax + DW, bx)
            } else if ax > bx {
                (ax, bx + DW)
            } else {
                (ax + DW, bx + DW)
            };
            let _ = writeln!(
                body,
                "<line x1=\"{ax}\" y1=\"{ay}\" x2=\"{bx}\" y2=\"{by}\" stroke=\"#000\" stroke-width=\"2\"><title>{a} -- {b}</title></line>"
            );
        }
    }
    for n in lab.nodes.values() {
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
        w = x - GAP + 20,
        h = max_h + 40
    )
}
