//! Port carriers followed into the switches, and the event stream's
//! view of what changed.

use std::os::fd::AsFd;

use super::Dp;

impl Dp {
    pub(super) fn check_carriers(&mut self) {
        for g in 0..self.ports.len() {
            self.check_carrier(g);
        }
    }

    /// Follows the port's carrier into the switch; a port whose interface
    /// vanished (its peer's node was removed) is taken out for good.
    pub(super) fn check_carrier(&mut self, g: usize) {
        if self.ports[g].retired {
            return;
        }
        let now = self.now();
        let (s, id) = (self.ports[g].switch, self.ports[g].id);
        if let Some(sock) = &self.ports[g].sock {
            // The interface went down (ENETDOWN): read the error, or every
            // wait reports it again at once and the datapath spins.
            let _ = sock.take_error();
        }
        let up = match &self.ports[g].sock {
            None => false,
            Some(sock) => match sock.carrier() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(switch = %self.switches[s].name, port = %self.ports[g].name, "the port's interface is gone ({e}); port removed");
                    if let Some(sock) = self.ports[g].sock.take() {
                        let _ = self.poller.remove(sock.as_fd());
                    }
                    false
                }
            },
        };
        if up != self.ports[g].carrier || self.ports[g].sock.is_none() {
            if up != self.ports[g].carrier {
                self.watch.push(
                    crate::events::Event::new("port.carrier")
                        .node(&self.switches[s].name)
                        .port(&self.ports[g].name)
                        .with("up", up),
                );
            }
            self.ports[g].carrier = up;
            let mut acts = std::mem::take(&mut self.acts);
            self.switches[s].core.set_link(id, up, now, &mut acts);
            self.send_generated(s, &acts);
            self.acts = acts;
        }
    }

    /// Records what changed in the switches since the last look.
    pub(super) fn observe(&mut self) {
        let views = self
            .switches
            .iter()
            .map(|sw| {
                let names = sw.ports.iter().map(|&g| self.ports[g].name.as_str());
                (sw.name.as_str(), &sw.core, names.collect())
            })
            .collect();
        self.watch.observe(views);
    }
}
