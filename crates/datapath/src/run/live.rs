//! Live edits of a running switch (`weft up` of a file whose switch
//! settings changed): the core takes the new configuration in place, so
//! learned MACs and the spanning tree survive. Ports added get sockets and
//! new core ports; ports removed are closed and their core ports disabled
//! (core port ids never shift, as the FDB and STP name ports by them).
//! Switches are added and removed, ports re-cabled and wires changed on
//! the running process too: only a datapath that died is started again.

use std::collections::HashMap;
use std::os::fd::AsFd;

use weft_switch::{PortConfig, PortId, Switch, SwitchConfig};

use super::{mode_text, Dp};
use crate::config::switch_config;
use crate::control::Reply;
use crate::fastpath::{self, FastPath};

/// A switch's file configuration (ports in name order) laid out on the
/// core's port ids: kept ports at their ids, retired ones disabled, added
/// ones after the last id. The file's port references (static MACs,
/// mirror) are moved onto the same ids.
fn core_layout(
    core: &Switch,
    slots: &[(String, bool)],
    names: &[String],
    cfg: &SwitchConfig,
) -> (SwitchConfig, Vec<String>) {
    let mut at: HashMap<&str, usize> = slots
        .iter()
        .enumerate()
        .filter(|(_, (_, retired))| !retired)
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut added = Vec::new();
    for n in names {
        if !at.contains_key(n.as_str()) {
            at.insert(n, slots.len() + added.len());
            added.push(n.clone());
        }
    }
    let pos: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let ports: Vec<PortConfig> = (0..slots.len() + added.len())
        .map(|i| {
            let name = match slots.get(i) {
                Some(s) => s.0.as_str(),
                None => added[i - slots.len()].as_str(),
            };
            match pos.get(name) {
                Some(&p) if at.get(name) == Some(&i) => cfg.ports[p].clone(),
                _ => {
                    let mut old = core
                        .port_config(PortId(i as u16))
                        .cloned()
                        .unwrap_or_else(|| PortConfig::access(1));
                    old.enabled = false;
                    old
                }
            }
        })
        .collect();
    let id = |p: PortId| PortId(at[names[p.index()].as_str()] as u16);
    let mut out = cfg.clone();
    out.ports = ports;
    out.static_macs = cfg
        .static_macs
        .iter()
        .map(|&(v, m, p)| (v, m, id(p)))
        .collect();
    out.mirror.output = cfg.mirror.output.map(id);
    out.mirror.select_ingress = cfg.mirror.select_ingress.iter().map(|&p| id(p)).collect();
    out.mirror.select_egress = cfg.mirror.select_egress.iter().map(|&p| id(p)).collect();
    (out, added)
}

impl Dp {
    /// Applies a switch node's new settings (VLANs, STP priority and
    /// timers, port costs, static MACs, mirror selection, ageing, ports
    /// added or removed). When something the core cannot change in place
    /// differs (the MAC, the STP protocol, the mirror's output port, the
    /// FDB size), this switch alone is made again.
    pub(super) fn reconfigure(&mut self, node: &weft_topo::Node) -> Reply {
        let Some(s) = self.switches.iter().position(|s| s.name == node.name) else {
            return Reply::Error {
                message: self.no_switch(&node.name),
            };
        };
        let Some((names, cfg)) = switch_config(&self.lab_name, node) else {
            return Reply::Error {
                message: format!("{} is not a switch", node.name),
            };
        };
        let slots: Vec<(String, bool)> = self.switches[s]
            .ports
            .iter()
            .map(|&g| (self.ports[g].name.clone(), self.ports[g].retired))
            .collect();
        let (layout, added) = core_layout(&self.switches[s].core, &slots, &names, &cfg);
        let gone: Vec<usize> = self.switches[s]
            .ports
            .iter()
            .copied()
            .filter(|&g| !self.ports[g].retired && !names.contains(&self.ports[g].name))
            .collect();
        let now = self.now();
        // Tried on a copy first, so that a refused edit changes nothing.
        let mut trial = self.switches[s].core.clone();
        for p in &layout.ports[slots.len()..] {
            trial.add_port(p.clone(), now);
        }
        if let Err(e) = trial.reconfigure(layout.clone(), now) {
            // Not a change the core takes in place (the STP protocol, the
            // MAC, ...): this switch alone starts again.
            tracing::info!(switch = %node.name, "{e}: the switch's core is made again");
            return self.remake_switch(s, node);
        }
        // Forwarding decisions may change: rules in the kernel go first.
        self.invalidate_fast(s);
        for &g in &gone {
            self.retire(g);
        }
        if !added.is_empty() {
            let netns = self.switches[s].netns.clone();
            let new = match self.open_ports(s, &netns, added.clone(), slots.len()) {
                Ok(g) => g,
                Err(e) => {
                    return Reply::Error {
                        message: format!("switch {}: opening ports {added:?}: {e}", node.name),
                    }
                }
            };
            for (k, g) in new.into_iter().enumerate() {
                let p = layout.ports[slots.len() + k].clone();
                self.switches[s].core.add_port(p, now);
                self.switches[s].ports.push(g);
            }
        }
        if let Err(e) = self.switches[s].core.reconfigure(layout.clone(), now) {
            // The trial passed: this cannot happen, but say so if it does.
            return Reply::Error {
                message: format!("switch {}: {e}", node.name),
            };
        }
        let sw = &mut self.switches[s];
        sw.modes = layout.ports.iter().map(|p| mode_text(&p.mode)).collect();
        sw.cfg = layout.clone();
        let ports_changed = !gone.is_empty() || !added.is_empty();
        let refused = fastpath::refused(&cfg);
        let rebuild = match refused {
            // The tc BPF switch follows new settings through its maps, but
            // its classifiers sit on the ports it was made with.
            Some(_) => self.fast_on && (!sw.fast.is_bpf() || ports_changed),
            // An edit made the switch eligible again (or ports changed
            // while it was on: the new ones are covered from now on).
            None => !sw.fast.enabled() || sw.fast.is_bpf(),
        };
        if let (Some(why), false) = (refused, self.fast_on) {
            sw.fast = FastPath::off(why);
        } else if rebuild {
            // What the kernel forwarded so far is folded in before its
            // programs or rules go.
            self.harvest_fast(s);
            self.switches[s].fast = FastPath::off("being rebuilt");
            let (name, netns, global) = {
                let sw = &self.switches[s];
                (sw.name.clone(), sw.netns.clone(), sw.ports.clone())
            };
            self.switches[s].fast = match refused {
                Some(_) => self.choose_fast(&name, &netns, &global, &layout),
                None => {
                    let live: Vec<usize> = global
                        .into_iter()
                        .filter(|&g| !self.ports[g].retired)
                        .collect();
                    self.fast_for(&name, &netns, &live)
                }
            };
        }
        if ports_changed {
            tracing::info!(switch = %node.name, added = ?added, removed = ?gone.iter().map(|&g| &self.ports[g].name).collect::<Vec<_>>(), "ports changed in place");
        }
        tracing::info!(switch = %node.name, "settings changed in place");
        // Carriers of the new ports, before their first frame.
        let fresh: Vec<usize> = self.switches[s].ports[slots.len()..].to_vec();
        for g in fresh {
            self.check_carrier(g);
        }
        // New priorities and timers go out in BPDUs now, not at the next
        // hello.
        let mut acts = std::mem::take(&mut self.acts);
        self.switches[s].core.tick(now, &mut acts);
        self.send_generated(s, &acts);
        self.acts = acts;
        Reply::Done
    }

    /// Starts serving switch `node`, added to the lab.
    pub(super) fn add_switch(&mut self, node: &weft_topo::Node) -> Reply {
        if self.switches.iter().any(|s| s.name == node.name) {
            return Reply::Error {
                message: format!("switch {} is already served", node.name),
            };
        }
        let s = self.switches.len();
        match self.new_switch(s, node) {
            Ok(Some(sw)) => self.switches.push(sw),
            Ok(None) => {
                return Reply::Error {
                    message: format!("{} is not a switch", node.name),
                }
            }
            Err(e) => {
                return Reply::Error {
                    message: format!("switch {}: {e}", node.name),
                }
            }
        }
        self.started(s, node);
        tracing::info!(switch = %node.name, "switch added in place");
        Reply::Done
    }

    /// Stops serving switch `name`, taken out of the lab; the others go
    /// on as they were.
    pub(super) fn remove_switch(&mut self, name: &str) -> Reply {
        let Some(s) = self.switches.iter().position(|s| s.name == name) else {
            return Reply::Error {
                message: self.no_switch(name),
            };
        };
        self.close_switch(s);
        self.switches.remove(s);
        // Global ports name their switch by index: those after it move
        // down one; its own (all retired) name none.
        for p in &mut self.ports {
            if p.switch == s {
                p.switch = usize::MAX;
            } else if p.switch > s && p.switch != usize::MAX {
                p.switch -= 1;
            }
        }
        self.offload.clear();
        self.watch.forget(s, true);
        tracing::info!(switch = %name, "switch removed in place");
        Reply::Done
    }

    /// Makes switch `s` again from `node` (new sockets, a new core, its
    /// port impairments from the file): what it learned and its spanning
    /// tree state start over, the other switches go on as they were.
    fn remake_switch(&mut self, s: usize, node: &weft_topo::Node) -> Reply {
        self.close_switch(s);
        match self.new_switch(s, node) {
            Ok(Some(sw)) => self.switches[s] = sw,
            Ok(None) => {
                return Reply::Error {
                    message: format!("{} is not a switch", node.name),
                }
            }
            Err(e) => {
                return Reply::Error {
                    message: format!("switch {}: {e}", node.name),
                }
            }
        }
        self.offload.clear();
        self.watch.forget(s, false);
        self.started(s, node);
        Reply::Done
    }

    /// A switch just made at index `s`: its ports' impairments from the
    /// file, its carriers, its first BPDUs.
    fn started(&mut self, s: usize, node: &weft_topo::Node) {
        if let Some(sw) = &node.switch {
            for (pname, p) in &sw.ports {
                if let (Some(i), Some(g)) = (&p.impair, self.port_index(&node.name, pname)) {
                    self.set_impair(g, Some(i.clone()));
                }
            }
        }
        for g in self.switches[s].ports.clone() {
            self.check_carrier(g);
        }
        let now = self.now();
        let mut acts = std::mem::take(&mut self.acts);
        self.switches[s].core.tick(now, &mut acts);
        self.send_generated(s, &acts);
        self.acts = acts;
    }

    /// Closes every port of switch `s` and takes its kernel fast path
    /// off (its classifiers and rules removed).
    fn close_switch(&mut self, s: usize) {
        self.invalidate_fast(s);
        self.switches[s].fast = FastPath::off("removed");
        for g in self.switches[s].ports.clone() {
            let p = &mut self.ports[g];
            if let Some(sock) = p.sock.take() {
                let _ = self.poller.remove(sock.as_fd());
            }
            p.retired = true;
            p.carrier = false;
            p.imp = None;
            self.queues[g].clear();
        }
    }

    /// Opens port `port` of switch `switch` again: its interface was
    /// removed and made again (cabled to another node), so the socket
    /// points at one that is gone. The core port keeps its id and
    /// settings; it sees its link go down (what was learned on it goes,
    /// the spanning tree hears) and up again with the new carrier.
    pub(super) fn reopen(&mut self, switch: &str, port: &str) -> Reply {
        let Some(g) = self.port_index(switch, port) else {
            return self.no_port(switch, port);
        };
        let (s, id) = (self.ports[g].switch, self.ports[g].id);
        // The kernel switch's classifiers and the rules sit on the old
        // interface: folded in and taken off first.
        self.harvest_fast(s);
        self.invalidate_fast(s);
        self.switches[s].fast = FastPath::off("being rebuilt");
        if let Some(sock) = self.ports[g].sock.take() {
            let _ = self.poller.remove(sock.as_fd());
        }
        self.queues[g].clear();
        let netns = self.switches[s].netns.clone();
        let name = port.to_string();
        let opened = weft_sys::netns::run_in_named(&netns, move || {
            weft_sys::port::PacketSocket::open(&name)
        });
        let now = self.now();
        let mut acts = std::mem::take(&mut self.acts);
        self.switches[s].core.set_link(id, false, now, &mut acts);
        self.send_generated(s, &acts);
        self.acts = acts;
        self.ports[g].carrier = false;
        let result = match opened {
            Ok(Ok(sock)) => match self.poller.add(sock.as_fd(), g as u64) {
                Ok(()) => {
                    self.ports[g].sock = Some(sock);
                    Reply::Done
                }
                Err(e) => Reply::Error {
                    message: format!("switch {switch}: watching port {port}: {e}"),
                },
            },
            Ok(Err(e)) => Reply::Error {
                message: format!("switch {switch}: opening port {port} again: {e}"),
            },
            Err(e) => Reply::Error {
                message: format!("switch {switch}: opening port {port} again: {e}"),
            },
        };
        self.check_carrier(g);
        let (name, global, cfg) = {
            let sw = &self.switches[s];
            (sw.name.clone(), sw.ports.clone(), sw.cfg.clone())
        };
        self.switches[s].fast = self.choose_fast(&name, &netns, &global, &cfg);
        tracing::info!(switch = %switch, port = %port, "port opened again in place");
        result
    }

    /// The lab's wires are now those among `nodes`: the wires' thread
    /// stops and starts again on them (every end opened anew, as one may
    /// have been made again), kept wires going on with their counters.
    pub(super) fn rewire(&mut self, nodes: &[weft_topo::Node]) -> Reply {
        let kept = self.wires.take().map(|w| w.stop()).unwrap_or_default();
        match super::wire::start(&self.lab_name, nodes.iter(), kept) {
            Ok(w) => {
                self.wires = w;
                tracing::info!(wires = nodes.len(), "wires changed in place");
                Reply::Done
            }
            Err(e) => Reply::Error {
                message: format!("opening the wires: {e}"),
            },
        }
    }

    /// Takes port `g` out of its switch for good: its core port is
    /// disabled (what was learned on it is flushed, the spanning tree sees
    /// a link down) and its socket closed.
    fn retire(&mut self, g: usize) {
        let now = self.now();
        let (s, id) = (self.ports[g].switch, self.ports[g].id);
        let mut acts = std::mem::take(&mut self.acts);
        self.switches[s].core.set_enabled(id, false, now, &mut acts);
        self.send_generated(s, &acts);
        self.acts = acts;
        let p = &mut self.ports[g];
        if let Some(sock) = p.sock.take() {
            let _ = self.poller.remove(sock.as_fd());
        }
        p.retired = true;
        p.carrier = false;
        p.imp = None;
        self.queues[g].clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::MacAddr;

    fn sw(n: usize) -> Switch {
        Switch::new(SwitchConfig::new(
            MacAddr([2, 0, 0, 0, 0, 1]),
            vec![PortConfig::access(1); n],
        ))
    }

    #[test]
    fn kept_ports_keep_their_ids_and_new_ones_come_after() {
        let core = sw(3);
        let slots = vec![
            ("a".to_string(), false),
            ("b".to_string(), false),
            ("c".to_string(), false),
        ];
        // b goes, d and aa come; the file lists ports by name.
        let names: Vec<String> = ["a", "aa", "c", "d"].map(String::from).to_vec();
        let mut cfg = SwitchConfig::new(
            MacAddr([2, 0, 0, 0, 0, 1]),
            vec![
                PortConfig::access(1),
                PortConfig::access(2),
                PortConfig::access(3),
                PortConfig::access(4),
            ],
        );
        cfg.static_macs = vec![(4, MacAddr([2, 0, 0, 0, 0, 9]), PortId(3))];
        cfg.mirror.output = Some(PortId(1));
        let (l, added) = core_layout(&core, &slots, &names, &cfg);
        assert_eq!(added, ["aa", "d"]);
        assert_eq!(l.ports.len(), 5);
        assert_eq!(l.ports[0], PortConfig::access(1));
        assert!(!l.ports[1].enabled, "b is retired");
        assert_eq!(l.ports[2], PortConfig::access(3));
        assert_eq!(l.ports[3], PortConfig::access(2));
        assert_eq!(l.ports[4], PortConfig::access(4));
        assert_eq!(l.static_macs[0].2, PortId(4));
        assert_eq!(l.mirror.output, Some(PortId(3)));
        // b comes back: a new id, the retired one stays disabled.
        let slots2: Vec<(String, bool)> = ["a", "b", "c", "aa", "d"]
            .iter()
            .map(|n| (n.to_string(), *n == "b"))
            .collect();
        let names2: Vec<String> = ["a", "aa", "b", "c", "d"].map(String::from).to_vec();
        let cfg2 = SwitchConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), vec![PortConfig::access(7); 5]);
        let (l2, added2) = core_layout(&sw(5), &slots2, &names2, &cfg2);
        assert_eq!(added2, ["b"]);
        assert_eq!(l2.ports.len(), 6);
        assert!(!l2.ports[1].enabled);
        assert_eq!(l2.ports[5], PortConfig::access(7));
    }
}
