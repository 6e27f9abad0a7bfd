//! The control socket: requests from `weft` (status, FDB, live edits,
//! impairment, port up/down) and their replies.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use weft_switch::{PortId, StpMode};

use super::Dp;
use crate::control::{
    FdbReply, FdbRow, FdbStats, PortInfo, Reply, Request, StatusReply, SwitchInfo, VlanInfo,
};

impl Dp {
    pub(super) fn serve_control(&mut self, listener: &UnixListener) {
        while let Ok((stream, _)) = listener.accept() {
            if let Err(e) = self.answer(stream) {
                tracing::debug!("control client: {e}");
            }
        }
    }

    pub(super) fn answer(&mut self, stream: UnixStream) -> io::Result<()> {
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
                // What the kernel forwarded since the last harvest (the tc
                // BPF switches, the u32 rules) belongs in the answer: the
                // counters then add up to the kernel's at this moment.
                for s in 0..self.switches.len() {
                    self.harvest_fast(s);
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
            Ok(Request::Wire { wire, impair }) => match &self.wires {
                Some(w) => w.set(&wire, impair),
                None => Reply::Error {
                    message: format!("no wire {wire}: this lab has none"),
                },
            },
            Ok(Request::AddSwitch { node }) => self.add_switch(&node),
            Ok(Request::RemoveSwitch { switch }) => self.remove_switch(&switch),
            Ok(Request::Reopen { switch, port }) => self.reopen(&switch, &port),
            Ok(Request::Wires { nodes }) => self.rewire(&nodes),
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

    pub(super) fn status(&self) -> StatusReply {
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
                    // Ports a live edit took out are no longer the switch's.
                    .filter(|(_, &g)| !self.ports[g].retired)
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
                                .map(|(r, n)| (r.name().to_string(), n))
                                .chain(
                                    (p.tx_errors > 0)
                                        .then(|| ("tx_error".to_string(), p.tx_errors)),
                                )
                                .chain(
                                    (p.storm.dropped > 0)
                                        .then(|| ("storm_control".to_string(), p.storm.dropped)),
                                )
                                .chain(
                                    p.sock
                                        .as_ref()
                                        .map(|s| s.rx_dropped())
                                        .filter(|&n| n > 0)
                                        .map(|n| ("rx_ring_full".to_string(), n)),
                                )
                                .chain(p.imp.iter().flat_map(|i| i.drops()))
                                .collect(),
                            impair: p.imp.as_ref().map(|i| i.info()),
                            admin_up: sw.core.port_enabled(PortId(i as u16)),
                        }
                    })
                    .collect();
                let lp = sw.core.loop_status();
                let paths: Vec<(String, String)> = sw
                    .ports
                    .iter()
                    .map(|&g| &self.ports[g])
                    .filter(|p| !p.retired)
                    .filter_map(|p| Some((p.name.clone(), p.sock.as_ref()?.tx_path())))
                    .collect();
                let send_path = if paths.iter().all(|(_, t)| t == "AF_XDP") {
                    "AF_XDP".to_string()
                } else {
                    paths
                        .iter()
                        .map(|(n, t)| format!("{n} {t}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
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
                    send_path,
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
                                .map(|(r, n)| (r.name().to_string(), n))
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        StatusReply {
            pid: std::process::id(),
            switches,
            wires: self.wires.as_ref().map(|w| w.status()).unwrap_or_default(),
        }
    }

    pub(super) fn fdb(&self, s: usize) -> FdbReply {
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
