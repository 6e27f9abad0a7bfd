//! Live edits of a running switch (`weft up` of a file whose switch
//! settings changed): the core takes the new configuration in place, so
//! learned MACs and the spanning tree survive.

use super::{mode_text, Dp};
use crate::config::switch_config;
use crate::control::Reply;
use crate::fastpath::{self, FastPath};

impl Dp {
    /// Applies a switch node's new settings (VLANs, STP priority and
    /// timers, port costs, static MACs, mirror selection, ageing). Refused
    /// when the port list or something else that cannot change in place
    /// differs: the caller restarts the datapath then.
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
        let have: Vec<&str> = self.switches[s]
            .ports
            .iter()
            .map(|&g| self.ports[g].name.as_str())
            .collect();
        if names != have {
            return Reply::Error {
                message: format!(
                    "switch {}: ports were added or removed ({} -> {})",
                    node.name,
                    have.join(", "),
                    names.join(", ")
                ),
            };
        }
        // Forwarding decisions may change: rules in the kernel go first.
        self.invalidate_fast(s);
        let now = self.now();
        let refused = fastpath::refused(&cfg);
        let modes = cfg.ports.iter().map(|p| mode_text(&p.mode)).collect();
        if let Err(e) = self.switches[s].core.reconfigure(cfg, now) {
            return Reply::Error {
                message: format!("switch {}: {e}", node.name),
            };
        }
        let sw = &mut self.switches[s];
        sw.modes = modes;
        // The tc BPF switch follows the new settings through its maps.
        if let (Some(why), false) = (refused, sw.fast.is_bpf()) {
            sw.fast = FastPath::off(why);
        }
        tracing::info!(switch = %node.name, "settings changed in place");
        // New priorities and timers go out in BPDUs now, not at the next
        // hello.
        let mut acts = std::mem::take(&mut self.acts);
        self.switches[s].core.tick(now, &mut acts);
        self.send_generated(s, &acts);
        self.acts = acts;
        Reply::Done
    }
}
