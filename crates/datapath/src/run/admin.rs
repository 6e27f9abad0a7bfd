//! Runtime control of ports (`weft link ... down|up`).

use super::Dp;
use crate::control::Reply;

impl Dp {
    /// Takes port `g` out of service or back: the core treats it as a
    /// link down (spanning tree, learned entries flushed); the carrier
    /// the kernel reports is unchanged.
    pub(super) fn set_admin(&mut self, g: usize, up: bool) {
        let now = self.now();
        let (s, id) = (self.ports[g].switch, self.ports[g].id);
        let mut acts = std::mem::take(&mut self.acts);
        self.switches[s].core.set_enabled(id, up, now, &mut acts);
        self.send_generated(s, &acts);
        self.acts = acts;
        tracing::info!(switch = %self.switches[s].name, port = %self.ports[g].name, up, "port set administratively");
    }

    pub(super) fn no_switch(&self, switch: &str) -> String {
        format!(
            "no switch {switch} in this lab (switches: {})",
            self.switches
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    pub(super) fn no_port(&self, switch: &str, port: &str) -> Reply {
        let message = match self.switches.iter().find(|s| s.name == switch) {
            None => self.no_switch(switch),
            Some(s) => format!(
                "switch {switch} has no port {port} (ports: {})",
                s.ports
                    .iter()
                    .filter(|&&g| !self.ports[g].retired)
                    .map(|&g| self.ports[g].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Reply::Error { message }
    }
}
