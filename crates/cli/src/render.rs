//! Human output: status tables, progress, ping lines.

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
            let _ = writeln!(out, "  {} {} [netns {}]{missing}", n.kind, n.name, n.netns);
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
                    cols.push(format!("{:<14}", i.state.clone().unwrap_or_default()));
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
                    cols.push(format!("port of {m}: {}", i.port_state.unwrap_or("?")));
                }
                if i.stp == Some(true) {
                    cols.push("stp on".into());
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
        }
        for t in &lab.tunnels {
            let _ = writeln!(out, "  {}", tunnel_line(t));
        }
    }
    out
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
    let _ = writeln!(
        out,
        "    switch {} bridge {}: {root}; fdb {}/{}, {} topology change(s)",
        sw.stp, sw.bridge_id, sw.fdb_entries, sw.fdb_max, sw.topology_changes
    );
    if !sw.fastpath.is_empty() {
        let _ = writeln!(
            out,
            "    kernel fast path {} ({} flow(s))",
            sw.fastpath, sw.fastpath_rules
        );
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
                "        impair {} (seed {}): lost {}, queue full {}, duplicated {}, reordered {}, held {}",
                i.settings, i.seed, i.lost, i.queue_full, i.duplicated, i.reordered, i.held
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
pub fn fdb(lab: &str, switch: &str, json: bool) -> Result<ExitCode, String> {
    use weft_datapath::control::{Reply, Request};
    let built = weft::built(lab).map_err(|e| e.to_string())?;
    match built.lab.nodes.get(switch) {
        Some(n) if n.kind == weft_topo::NodeKind::Switch => {}
        Some(n) => {
            return Err(format!(
                "{switch} is a {:?} node, not a switch; for a kernel bridge run `weft exec {lab} {switch} -- bridge fdb show`",
                n.kind
            ).to_lowercase())
        }
        None => return Err(format!("lab {lab} has no node {switch}")),
    }
    let reply = weft::datapath::query(
        lab,
        &Request::Fdb {
            switch: switch.to_string(),
        },
    )
    .map_err(|e| e.to_string())?;
    let f = match reply {
        Reply::Fdb(f) => f,
        Reply::Error { message } => return Err(message),
        other => return Err(format!("unexpected answer {other:?}")),
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

/// `tunnel m1:wt0 <-> m2:wt0  pid 42  up  peer 10.77.0.2:5000  handshake 3 s ago  tx 1.2 MB  rx 3.4 MB  drops none`
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
) -> Result<ExitCode, String> {
    use weft_sys::ping::{PingEvent, PingOptions};
    let built = weft::built_with(lab, node).map_err(|e| e.to_string())?;
    // Refused before the header is printed: an unknown node is not a ping.
    weft::node_netns(lab, node).map_err(|e| e.to_string())?;
    let ip = weft::resolve_target(&built.lab, target).map_err(|e| e.to_string())?;
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
    .map_err(|e| e.to_string())?;
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
        match weft::neighbour(lab, node, ip) {
            Ok(Some((dev, state))) if state == "incomplete" || state == "failed" => println!(
                "hint: no {what} reply for {ip} on {dev} (neighbour entry {state}): nothing on that link owns the address; is it assigned on the other end?"
            ),
            _ if unreachable => println!("hint: {what} for {ip} got no reply: nothing on that link owns the address"),
            _ => {}
        }
    }
    Ok(if summary.received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
