//! Human output: status tables, progress, ping lines.

use crate::Failure;
use std::fmt::Write as _;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress {
            bar: enabled.then(|| {
                let b = ProgressBar::new(0);
                b.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
                        .unwrap()
                        .progress_chars("=> "),
                );
                b
            }),
        }
    }

    pub fn event(&self, e: weft::Event) {
        let Some(b) = &self.bar else { return };
        match e {
            weft::Event::Stage { what, total } => {
                // Counted stages get a bar; the others (STP's wait) a spinner.
                let template = if total > 0 {
                    "{spinner} {msg} [{bar:30}] {pos}/{len}"
                } else {
                    "{spinner} {msg} ({elapsed})"
                };
                b.set_style(
                    ProgressStyle::with_template(template)
                        .unwrap()
                        .progress_chars("=> "),
                );
                b.enable_steady_tick(std::time::Duration::from_millis(100));
                b.set_message(what);
                b.set_length(total as u64);
                b.set_position(0);
            }
            weft::Event::Step => b.inc(1),
            weft::Event::Note(n) => b.set_message(n),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn status_table(labs: &[weft::LabStatus]) -> String {
    let mut out = String::new();
    for lab in labs {
        let _ = writeln!(
            out,
            "lab {}{}",
            lab.name,
            lab.source
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
        if let Some(o) = &lab.runtime {
            let _ = writeln!(
                out,
                "  runtime changes (not in the file; `weft up` undoes them):"
            );
            for l in o.lines() {
                let _ = writeln!(out, "    {l}");
            }
        }
        for n in &lab.nodes {
            let missing = if n.present {
                ""
            } else {
                "  MISSING (weft up recreates it)"
            };
            // A wire's node (`~NODE.IFACE`, a name the file cannot give)
            // is a host to the kernel, but no host of the lab.
            let kind = if n.name.starts_with('~') {
                "wire"
            } else {
                n.kind
            };
            let _ = writeln!(out, "  {kind} {} [netns {}]{missing}", n.name, n.netns);
            for i in &n.interfaces {
                if i.kind == "loopback"
                    && i.addresses
                        .iter()
                        .all(|a| a.starts_with("127.") || a == "::1/128")
                {
                    continue;
                }
                let mut cols = vec![format!("{:<15}", i.name), format!("{:<6}", i.kind)];
                if !i.present {
                    cols.push("MISSING".into());
                } else {
                    // Set up but without a carrier (a TUN/TAP no program
                    // holds, a veth whose peer is down) is what `ip` calls
                    // NO-CARRIER: "down" read as `up = false`.
                    let state = match (i.state.as_deref(), i.admin_up, i.carrier) {
                        (Some("down"), Some(true), Some(false)) => "no carrier".to_string(),
                        (st, _, _) => st.unwrap_or_default().to_string(),
                    };
                    cols.push(format!("{state:<14}"));
                    if let Some(m) = &i.mac {
                        cols.push(m.clone());
                    } else if i.kind == "tun" {
                        cols.push("(no mac)         ".into());
                    }
                    if let Some(m) = i.mtu {
                        cols.push(format!("mtu {m}"));
                    }
                }
                if let Some(p) = &i.peer {
                    cols.push(format!("<-> {p}"));
                }
                if let Some(v) = &i.vxlan {
                    cols.push(format!(
                        "vni {} {} -> {}:{}",
                        v.vni, v.local, v.remote, v.port
                    ));
                }
                if let Some(m) = &i.master {
                    let st = i.port_state.unwrap_or("?");
                    cols.push(match i.stp_role {
                        Some(r) => format!("port of {m}: {r} {st}"),
                        None => format!("port of {m}: {st}"),
                    });
                }
                if i.stp == Some(true) {
                    cols.push("stp on".into());
                    match &i.bridge_stp {
                        Some(b) if b.is_root => cols.push("root bridge".into()),
                        Some(b) => cols.push(format!(
                            "root {} via {}",
                            b.root_id.as_deref().unwrap_or("?"),
                            b.root_port.as_deref().unwrap_or("?")
                        )),
                        None => {}
                    }
                }
                if let Some(t) = &i.tun {
                    let mut f = vec![if t.tap { "tap" } else { "tun" }];
                    if t.pi {
                        f.push("pi");
                    }
                    if t.vnet_hdr {
                        f.push("vnet_hdr");
                    }
                    if t.multi_queue {
                        f.push("multi_queue");
                    }
                    if t.persist {
                        f.push("persist");
                    }
                    cols.push(f.join(","));
                    if let Some(o) = t.owner {
                        cols.push(format!("user {o}"));
                    }
                    if let Some(g) = t.group {
                        cols.push(format!("group {g}"));
                    }
                }
                if !i.addresses.is_empty() {
                    cols.push(i.addresses.join(" "));
                }
                let _ = writeln!(out, "    {}", cols.join("  "));
            }
            for r in &n.routes {
                let _ = writeln!(out, "    route {r}");
            }
            if n.kind == "switch" {
                switch_status(&mut out, lab, &n.name);
            }
            if let Some(Some(wires)) = &lab.wires {
                if let Some(w) = wires.iter().find(|w| w.name == n.name) {
                    wire_status(&mut out, w);
                }
            }
            for svc in lab.services.iter().filter(|s| s.node == n.name) {
                let _ = writeln!(out, "    {}", service_line(svc));
            }
        }
        for t in &lab.tunnels {
            let _ = writeln!(out, "  {}", tunnel_line(t));
        }
    }
    out
}

/// `service web: running, pid 4242`, `container weft-x.web: exited
/// with code 1`, `service s: restarting (exited with code 3), restarts 2`.
fn service_line(s: &weft::services::ServiceStatus) -> String {
    let what = match &s.container {
        Some(c) => format!("container {c}"),
        None => format!("service {}", s.name),
    };
    let ended = |e: &Option<weft::services::Exit>| match e {
        Some(e) => format!("exited with {e}"),
        None => "exited".to_string(),
    };
    let mut cols = vec![match s.state {
        "exited" => ended(&s.exit),
        "restarting" => format!("restarting ({})", ended(&s.exit)),
        "failed" => format!("failed: {}", s.detail),
        "gone" => "gone (its process ended unwatched; `weft up` starts it again)".into(),
        other => other.to_string(),
    }];
    if let Some(p) = s.pid {
        cols.push(format!("pid {p}"));
    }
    if s.restarts > 0 {
        cols.push(format!("restarts {}", s.restarts));
    }
    format!("{what}: {}", cols.join(", "))
}

/// Impairment settings and the seed in use, which the settings name
/// already when the file or `weft impair` gave one (`seed 7 (seed 7)`
/// said it twice).
fn seeded(settings: &str, seed: u64, given: bool) -> String {
    if given {
        settings.to_string()
    } else {
        format!("{settings} (seed {seed})")
    }
}

/// A wire's settings and, per direction, what became of the frames.
fn wire_status(out: &mut String, w: &weft_datapath::control::WireInfo) {
    let _ = writeln!(
        out,
        "    wire {} — {}: {}",
        w.link[0],
        w.link[1],
        match (&w.settings, w.seed) {
            (Some(s), Some(seed)) => format!("impair {}", seeded(s, seed, w.seed_given)),
            _ => "not impaired (frames pass unchanged)".to_string(),
        }
    );
    for (way, from, to, d) in [
        ("out", &w.link[0], &w.link[1], &w.out),
        ("in", &w.link[1], &w.link[0], &w.back),
    ] {
        let _ = writeln!(
            out,
            "      {way:<3} {from} -> {to}: passed {}, dropped {} (lost {}, queue full {}), delayed {}, corrupted {}, duplicated {}, reordered {}, held {}{}",
            d.passed,
            d.dropped,
            d.lost,
            d.queue_full,
            d.delayed,
            d.corrupted,
            d.duplicated,
            d.reordered,
            d.held,
            if d.impaired { "" } else { " (not impaired)" }
        );
    }
    if w.tx_errors > 0 {
        let _ = writeln!(out, "      send errors {}", w.tx_errors);
    }
}

/// The spanning tree view of a userspace switch, like `ovs-appctl
/// rstp/show`: root bridge, root port, each port's role and state.
fn switch_status(out: &mut String, lab: &weft::LabStatus, node: &str) {
    let Some(Some(switches)) = &lab.switches else {
        let _ = writeln!(out, "    datapath not running: `weft up` starts it again");
        return;
    };
    let Some(sw) = switches.iter().find(|s| s.name == node) else {
        return;
    };
    let root = if sw.stp == "off" {
        "spanning tree off".to_string()
    } else if sw.is_root {
        format!("root bridge {} (this switch)", sw.root_id)
    } else {
        format!(
            "root bridge {} via root port {} (cost {})",
            sw.root_id,
            sw.root_port.as_deref().unwrap_or("?"),
            sw.root_path_cost
        )
    };
    // The protocol's name before "bridge"; none when it is off ("switch
    // off bridge ..." read as a switch that is off).
    let proto = if sw.stp == "off" {
        String::new()
    } else {
        format!(" {}", sw.stp)
    };
    let _ = writeln!(
        out,
        "    switch{proto} bridge {}: {root}; fdb {}/{}, {} topology change(s)",
        sw.bridge_id, sw.fdb_entries, sw.fdb_max, sw.topology_changes
    );
    if !sw.fastpath.is_empty() {
        let _ = writeln!(
            out,
            "    kernel fast path {} ({} flow(s))",
            sw.fastpath, sw.fastpath_rules
        );
    }
    if !sw.send_path.is_empty() {
        let _ = writeln!(out, "    userspace path sends by {}", sw.send_path);
    }
    if sw.loop_suspected {
        let _ = writeln!(
            out,
            "    LOOP SUSPECTED: {} repeated floods/s, {} MAC moves/s (a loop with stp = \"off\"?)",
            sw.repeated_floods_per_s, sw.mac_moves_per_s
        );
    }
    for p in &sw.ports {
        let state = if !p.present {
            "GONE (its interface vanished)".to_string()
        } else if !p.admin_up {
            "DOWN (weft link)".to_string()
        } else if !p.carrier {
            "no carrier".to_string()
        } else {
            format!("{:<11} {:<11}", p.role, p.state)
        };
        let mut cols = vec![format!("{:<15}", p.name), state, format!("{:<16}", p.vlan)];
        if p.edge {
            cols.push("edge".into());
        }
        cols.push(format!("rx {} tx {}", p.rx_frames, p.tx_frames));
        let drops: u64 = p.drops.values().sum();
        if drops > 0 {
            cols.push(format!("drops {drops}"));
        }
        let _ = writeln!(out, "      port {}", cols.join("  "));
        if let Some(i) = &p.impair {
            let _ = writeln!(
                out,
                "        impair {}: lost {}, queue full {}, duplicated {}, reordered {}, held {}",
                seeded(&i.settings, i.seed, i.seed_given),
                i.lost,
                i.queue_full,
                i.duplicated,
                i.reordered,
                i.held
            );
        }
    }
    for v in &sw.vlans {
        let mut line = format!(
            "      vlan {:<4} frames {} bytes {} flooded {}",
            v.vlan, v.frames, v.bytes, v.flooded
        );
        if !v.drops.is_empty() {
            let d: Vec<String> = v.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = write!(line, ", dropped: {}", d.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }
}

/// `weft fdb LAB SWITCH`: the learned table, like `ovs-appctl fdb/show`.
pub fn fdb(lab: &str, switch: &str, json: bool) -> Result<ExitCode, Failure> {
    use weft_datapath::control::{Reply, Request};
    let built = weft::built(lab)?;
    // Which nodes `weft fdb` takes, for the refusals.
    let switches: Vec<&str> = built
        .lab
        .nodes
        .values()
        .filter(|n| n.kind == weft_topo::NodeKind::Switch)
        .map(|n| n.name.as_str())
        .collect();
    let these = if switches.is_empty() {
        format!("lab {lab} has no weft switch")
    } else {
        format!("its switches: {}", switches.join(", "))
    };
    match built.lab.nodes.get(switch) {
        Some(n) if n.kind == weft_topo::NodeKind::Switch => {}
        Some(n) if n.kind == weft_topo::NodeKind::Bridge => {
            return Err(format!(
                "{switch} is a kernel bridge, not a weft switch ({these}); its table: `weft exec {lab} {switch} -- bridge fdb show`"
            ).into());
        }
        Some(_) => {
            return Err(format!("{switch} is a host node, not a switch ({these})").into());
        }
        None => return Err(format!("lab {lab} has no node {switch} ({these})").into()),
    }
    let reply = weft::datapath::query(
        lab,
        &Request::Fdb {
            switch: switch.to_string(),
        },
    )?;
    let f = match reply {
        Reply::Fdb(f) => f,
        Reply::Error { message } => return Err(message.into()),
        other => return Err(format!("unexpected answer {}", other.kind()).into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&f).expect("serializes"));
        return Ok(ExitCode::SUCCESS);
    }
    println!(" port             VLAN  MAC                Age");
    for e in &f.entries {
        let age = if e.is_static {
            "static".to_string()
        } else {
            format!("{:.0}", e.age)
        };
        println!(" {:<15}  {:>4}  {}  {age}", e.port, e.vlan, e.mac);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tunnel m1:wt0 <-> m2:wt0  pid 42  up  peer 10.77.0.2:5000  aes-256-gcm  handshake 3 s ago  tx 1.2 MB  rx 3.4 MB  drops none`
fn tunnel_line(t: &weft::tunnels::TunnelStatus) -> String {
    let s = &t.state;
    let mut cols = vec![format!("tunnel {}:{} <-> {}", t.node, t.iface, t.peer)];
    match (t.pid, t.running) {
        (Some(p), true) => cols.push(format!("pid {p}")),
        (Some(p), false) => cols.push(format!("pid {p} NOT RUNNING (weft up restarts it)")),
        (None, _) => cols.push("NOT STARTED".into()),
    }
    if s.is_null() {
        return cols.join("  ");
    }
    cols.push(if s["up"] == true { "up" } else { "no session" }.into());
    if let Some(e) = s["endpoint"].as_str() {
        cols.push(format!("peer {e}"));
    }
    // The cipher `auto` picked differs by CPU, and throughput with it.
    if let Some(c) = s["cipher"].as_str() {
        cols.push(c.to_string());
    }
    match s["last_handshake_unix"].as_f64() {
        Some(h) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            cols.push(format!("handshake {:.0} s ago", (now - h).max(0.0)));
        }
        None => cols.push("no handshake yet".into()),
    }
    let mb = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as f64 / 1e6;
    cols.push(format!(
        "tx {:.1} MB  rx {:.1} MB",
        mb(&s["tx_bytes"]),
        mb(&s["rx_bytes"])
    ));
    let drops: Vec<String> = s["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect()
        })
        .unwrap_or_default();
    cols.push(if drops.is_empty() {
        "drops none".into()
    } else {
        format!("drops {}", drops.join(", "))
    });
    let imp = &s["impair"];
    if !imp.is_null() {
        let n = |k: &str| imp[k].as_u64().unwrap_or(0);
        cols.push(format!(
            "impair in {}: passed {}, lost {}, queue full {}, corrupted {}, held {}",
            imp["settings"].as_str().unwrap_or("cleared"),
            n("released"),
            n("lost"),
            n("queue_full"),
            n("corrupted"),
            n("held")
        ));
    }
    if let Some(w) = s["warning"].as_str() {
        cols.push(format!("WARNING: {w}"));
    }
    cols.join("  ")
}

#[allow(clippy::too_many_arguments)]
pub fn ping(
    lab: &str,
    node: &str,
    target: &str,
    count: u32,
    interval: f64,
    timeout: f64,
    iface: Option<String>,
    size: usize,
) -> Result<ExitCode, Failure> {
    use weft_sys::ping::{PingEvent, PingOptions};
    let built = weft::built_with(lab, node)?;
    // Refused before the header is printed: an unknown node is not a ping.
    weft::node_netns(lab, node)?;
    let ip = weft::resolve_target(&built.lab, target)?;
    // An -I the kernel does not know, and the file does not either: name
    // the node's interfaces (the kernel's answer names neither). One made
    // by hand in the node is the kernel's to judge.
    let unknown_iface = |e: weft::Error| -> Failure {
        match (&iface, built.lab.nodes.get(node)) {
            (Some(i), Some(n)) if !n.interfaces.contains_key(i) => {
                let has: Vec<&str> = n.interfaces.keys().map(String::as_str).collect();
                format!(
                    "{e}\nnode {node} has no interface {i} in the lab's file (its interfaces: {}); -I takes one of them",
                    has.join(", ")
                )
                .into()
            }
            _ => e.into(),
        }
    };
    let opts = PingOptions {
        count,
        interval: std::time::Duration::from_secs_f64(interval.max(0.0)),
        timeout: std::time::Duration::from_secs_f64(timeout.max(0.001)),
        iface: iface.clone(),
        size,
        ..Default::default()
    };
    let via = iface
        .as_ref()
        .map(|i| format!(" from {i}"))
        .unwrap_or_default();
    println!("PING {target} ({ip}) from node {node}{via}: {size} data bytes");
    let mut unreachable = false;
    let summary = weft::ping(lab, node, ip, &opts, |e| match e {
        PingEvent::Reply {
            seq,
            from,
            bytes,
            ttl,
            rtt,
        } => {
            let ttl = ttl.map(|t| format!(" ttl={t}")).unwrap_or_default();
            println!(
                "{bytes} bytes from {from}: icmp_seq={seq}{ttl} time={:.3} ms",
                rtt.as_secs_f64() * 1e3
            );
        }
        PingEvent::Error {
            seq, from, text, ..
        } => {
            unreachable |= text.contains("Unreachable") || text.contains("unreachable");
            let from = from.map(|f| f.to_string()).unwrap_or_else(|| "?".into());
            println!("From {from} icmp_seq={seq} {text}");
        }
        PingEvent::Timeout { seq } => println!("no reply to icmp_seq={seq}"),
    })
    .map_err(unknown_iface)?;
    println!("--- {target} ping statistics from {node} ---");
    let errs = if summary.errors > 0 {
        format!(", +{} errors", summary.errors)
    } else {
        String::new()
    };
    println!(
        "{} packets transmitted, {} received{errs}, {:.0}% packet loss",
        summary.transmitted, summary.received, summary.loss_percent
    );
    if let Some(r) = summary.rtt {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "rtt min/avg/max/mdev = {:.3}/{:.3}/{:.3}/{:.3} ms",
            ms(r.min),
            ms(r.avg),
            ms(r.max),
            ms(r.mdev)
        );
    }
    if summary.received == 0 {
        // Explain the commonest silent failure: the address is on-link but
        // nobody there owns it, so address resolution never completes.
        let what = if ip.is_ipv4() {
            "ARP"
        } else {
            "neighbour discovery"
        };
        let owner = owner_of(&built.lab, ip);
        let trace = format!("`weft trace {lab} {node} {target}` follows a probe hop by hop");
        match (weft::neighbour(lab, node, ip), owner) {
            (Ok(Some((dev, state))), None) if state == "incomplete" || state == "failed" => println!(
                "hint: no {what} reply for {ip} on {dev} (neighbour entry {state}): nothing on that link owns the address; is it assigned on the other end?"
            ),
            (Ok(Some((dev, state))), Some(o)) if state == "incomplete" || state == "failed" => println!(
                "hint: no {what} reply for {ip} on {dev} (neighbour entry {state}), though {o} has that address: the request does not reach it, or it does not answer; {trace}"
            ),
            (_, None) if unreachable => println!("hint: {what} for {ip} got no reply: nothing on that link owns the address"),
            (_, Some(o)) => println!("hint: {ip} is {o}'s address; {trace}"),
            _ => {}
        }
    }
    Ok(if summary.received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// At most this many problems of a file are printed; a file with more
/// (a generated one gone wrong) ends with a count of the rest.
pub const MAX_FILE_PROBLEMS: usize = 50;

/// Characters of a source line shown around the column of a problem.
const EXCERPT_CHARS: usize = 120;

/// Every diagnostic of a topology file with the lines around it, at most
/// [`MAX_FILE_PROBLEMS`] of them. Each shows a cut of its own lines (long
/// lines cut around the column), so the output is bounded and the work
/// linear in the file, however many problems and however long the lines.
pub fn file_diagnostics(
    path: &std::path::Path,
    text: &str,
    diags: &[weft_topo::Diagnostic],
    warning: bool,
) -> String {
    let lines = weft_topo::LineIndex::new(text);
    let name = path.display().to_string();
    let mut out = String::new();
    for d in diags.iter().take(MAX_FILE_PROBLEMS) {
        let mut md = miette::MietteDiagnostic::new(escape(&d.message));
        if let Some(h) = &d.help {
            md = md.with_help(escape(h));
        }
        if warning {
            md = md.with_severity(miette::Severity::Warning);
        }
        let pos = match &d.span {
            Some(span) => {
                let (l, c) = lines.line_col(text, span.start);
                let (excerpt, label) = Excerpt::cut(&name, text, &lines, l, span.clone());
                md = md.with_labels([miette::LabeledSpan::at(label, "here")]);
                let report = miette::Report::new(md).with_source_code(excerpt);
                let _ = writeln!(
                    out,
                    "{name}:{l}:{c}: {}\n{report:?}",
                    if warning { "warning" } else { "error" }
                );
                continue;
            }
            None => format!("{name}: "),
        };
        let report = miette::Report::new(md);
        let _ = writeln!(
            out,
            "{pos}{}\n{report:?}",
            if warning { "warning" } else { "error" }
        );
    }
    if diags.len() > MAX_FILE_PROBLEMS {
        let _ = writeln!(
            out,
            "… and {} more {} like these (fix the ones above and run again)",
            diags.len() - MAX_FILE_PROBLEMS,
            if warning { "warnings" } else { "problems" }
        );
    }
    out
}

/// Control characters from the file, made visible instead of acting on the
/// terminal.
fn escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The lines around one problem, each cut to a window around its column,
/// as a miette source that reports the file's own line numbers.
struct Excerpt {
    name: String,
    text: String,
    /// 0-based line of the file the excerpt's first line is.
    first_line: usize,
    /// Where the label starts in the excerpt, and its 0-based column in
    /// the file, which miette shows in its header.
    label_at: usize,
    column: usize,
}

impl Excerpt {
    /// The excerpt around 1-based line `line`, and `span` moved into it.
    fn cut(
        name: &str,
        src: &str,
        lines: &weft_topo::LineIndex,
        line: usize,
        span: std::ops::Range<usize>,
    ) -> (Excerpt, std::ops::Range<usize>) {
        let here = lines.line_range(src, line);
        let start_in_line = span.start.clamp(here.start, here.end) - here.start;
        let col = src[here.start..here.start + start_in_line].chars().count();
        let from = col.saturating_sub(EXCERPT_CHARS / 2);
        let first = line.saturating_sub(1).max(1);
        let last = (line + 1).min(lines.count());
        let mut text = String::new();
        let mut label = 0..0;
        for l in first..=last {
            let r = lines.line_range(src, l);
            let full = &src[r.clone()];
            let total = full.chars().count();
            if from > 0 && total > from {
                text.push('…');
            }
            let shown_start = text.len();
            for c in full.chars().skip(from).take(EXCERPT_CHARS) {
                // One visible character per control character keeps the
                // columns under the label right.
                text.push(if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                });
            }
            if total > from + EXCERPT_CHARS {
                text.push('…');
            }
            if l == line {
                let shown = &text[shown_start..];
                let start = shown_start
                    + shown
                        .char_indices()
                        .nth(col - from)
                        .map_or(shown.len(), |(i, _)| i);
                // The label covers the span's characters on this line, as
                // far as the window shows.
                let want = src
                    [span.start.clamp(here.start, here.end)..span.end.clamp(here.start, here.end)]
                    .chars()
                    .count()
                    .max(1);
                let end = text[start..]
                    .char_indices()
                    .nth(want)
                    .map_or(text.len(), |(i, _)| start + i);
                label = start..end.max(start);
            }
            if l != last {
                text.push('\n');
            }
        }
        (
            Excerpt {
                name: name.to_string(),
                text,
                first_line: first - 1,
                label_at: label.start,
                column: col,
            },
            label,
        )
    }
}

impl miette::SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.text.read_span(span, before, after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            if span.offset() == self.label_at {
                self.column
            } else {
                inner.column()
            },
            inner.line_count(),
        )))
    }
}

/// The node interface (`NODE:IFACE`) of the lab that has `ip`, if any.
fn owner_of(lab: &weft_topo::Lab, ip: std::net::IpAddr) -> Option<String> {
    lab.nodes
        .values()
        .flat_map(|n| n.interfaces.values().map(move |i| (n, i)))
        .find(|(_, i)| i.addresses.iter().any(|a| a.addr() == ip))
        .map(|(n, i)| format!("{}:{}", n.name, i.name))
        .or_else(|| {
            lab.remote_names
                .iter()
                .find(|(_, a)| **a == ip)
                .map(|(n, _)| format!("node {n}"))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seed_is_said_once() {
        assert_eq!(
            super::seeded("delay 40ms seed 7", 7, true),
            "delay 40ms seed 7"
        );
        assert_eq!(
            super::seeded("delay 5ms", 281, false),
            "delay 5ms (seed 281)"
        );
    }
}
