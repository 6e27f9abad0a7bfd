//! The kernel fast path of each switch (crate::fastpath): steady flows
//! handed to the kernel, their counters folded back, rules removed when a
//! forwarding decision may have changed.

use weft_sys::port::PacketSocket;

use super::Dp;

impl Dp {
    pub(super) fn install_fast(&mut self) {
        for (s, g, pair, to) in std::mem::take(&mut self.offload) {
            let (Some(in_sock), Some(out_sock)) = (&self.ports[g].sock, &self.ports[to].sock)
            else {
                continue;
            };
            let sw = &mut self.switches[s];
            if let Err(e) = sw
                .fast
                .install(&sw.core, g, in_sock, pair, to, out_sock.ifindex())
            {
                tracing::warn!(switch = %sw.name, port = %self.ports[g].name, "fast path: {e}");
            }
        }
    }

    /// Removes switch `s`'s fast-path rules if a forwarding decision may
    /// have changed since they went in.
    pub(super) fn check_fast(&mut self, s: usize) {
        let sw = &mut self.switches[s];
        if sw.fast.is_bpf() {
            let (ports, globals) = (&self.ports, &sw.ports);
            let slow = |i: usize| globals.get(i).is_some_and(|&g| ports[g].imp.is_some());
            sw.fast.sync(&sw.core, slow);
            return;
        }
        if sw.fast.stale(&sw.core) {
            self.invalidate_fast(s);
        }
    }

    /// Folds what switch `s`'s fast-path rules forwarded since the last
    /// read into its counters and FDB.
    pub(super) fn harvest_fast(&mut self, s: usize) {
        let now = self.now();
        let sw = &mut self.switches[s];
        sw.fast.harvest_bpf(&mut sw.core, now);
        if sw.fast.rules() == 0 {
            return;
        }
        let ports = &self.ports;
        sw.fast.harvest(
            &mut sw.core,
            &sw.ports,
            |g| ports[g].sock.as_ref().map(PacketSocket::ifindex),
            now,
        );
    }

    /// Removes every fast-path rule of switch `s` (a port's impairment
    /// changed, or a forwarding decision may have).
    pub(super) fn invalidate_fast(&mut self, s: usize) {
        if self.switches[s].fast.rules() == 0 {
            return;
        }
        // What the rules forwarded since the last read would be lost with
        // them.
        self.harvest_fast(s);
        let sw = &mut self.switches[s];
        let socks: Vec<(usize, &PacketSocket)> = sw
            .ports
            .iter()
            .filter_map(|&g| self.ports[g].sock.as_ref().map(|k| (g, k)))
            .collect();
        tracing::debug!(switch = %sw.name, rules = sw.fast.rules(), "fast path rules removed");
        sw.fast.invalidate(&socks);
    }
}
