//! Frames forwarded outside the core, by a kernel fast path that took
//! over a flow the core had decided (as Open vSwitch's revalidators fold
//! kernel flow statistics back into its userspace counters and MAC table).

use crate::config::PortId;
use crate::time::Instant;
use crate::Switch;
use weft_wire::MacAddr;

impl Switch {
    /// The VLAN an untagged frame entering `port` belongs to (the access
    /// VLAN or the trunk's native one), if the port takes untagged frames.
    pub fn untagged_vlan(&self, port: PortId) -> Option<u16> {
        match &self.ports.get(port.index())?.cfg.mode {
            crate::PortMode::Access(v) => Some(*v),
            crate::PortMode::Trunk { native, .. } => *native,
        }
    }

    /// Counts `frames` frames of `bytes` bytes in all that entered `in_port`
    /// in VLAN `vid` and left `out_port` unchanged without passing through
    /// [`receive`](Self::receive): received on one, sent on the other, and
    /// accepted into the VLAN. Unknown ports are ignored.
    pub fn credit_offloaded(
        &mut self,
        in_port: PortId,
        out_port: PortId,
        vid: u16,
        frames: u64,
        bytes: u64,
    ) {
        let (i, j) = (in_port.index(), out_port.index());
        if frames == 0 || i >= self.ports.len() || j >= self.ports.len() {
            return;
        }
        let c = &mut self.port_counters[i];
        c.rx_frames += frames;
        c.rx_bytes += bytes;
        let c = &mut self.port_counters[j];
        c.tx_frames += frames;
        c.tx_bytes += bytes;
        let vc = self.vlan_counters.entry(vid).or_default();
        vc.frames += frames;
        vc.bytes += bytes;
    }

    /// Counts frames a kernel program forwarded on `port` without passing
    /// through [`receive`](Self::receive): `rx` frames and bytes received
    /// there, `tx` sent. Unknown ports are ignored.
    pub fn credit_port(&mut self, port: PortId, rx: (u64, u64), tx: (u64, u64)) {
        if let Some(c) = self.port_counters.get_mut(port.index()) {
            c.rx_frames += rx.0;
            c.rx_bytes += rx.1;
            c.tx_frames += tx.0;
            c.tx_bytes += tx.1;
        }
    }

    /// Counts frames a kernel program accepted into VLAN `vid`.
    pub fn credit_vlan(&mut self, vid: u16, frames: u64, bytes: u64) {
        if frames > 0 {
            let vc = self.vlan_counters.entry(vid).or_default();
            vc.frames += frames;
            vc.bytes += bytes;
        }
    }

    /// A port's VLAN mode, as configured now.
    pub fn port_mode(&self, port: PortId) -> Option<&crate::PortMode> {
        self.ports.get(port.index()).map(|p| &p.cfg.mode)
    }

    /// Whether frames received on `port` (first) and sent out of it
    /// (second) are mirrored.
    pub fn port_mirrored(&self, port: PortId) -> (bool, bool) {
        self.ports
            .get(port.index())
            .map_or((false, false), |p| (p.mirror_ingress, p.mirror_egress))
    }

    /// The mirror output port, if any, and the VLANs whose frames are
    /// mirrored.
    pub fn mirror(&self) -> (Option<PortId>, &crate::VlanSet) {
        (
            self.mirror_out.map(|m| PortId(m as u16)),
            &self.mirror_vlans,
        )
    }

    /// The largest untagged payload the switch forwards.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Whether `port` is administratively enabled and has its link.
    pub fn port_usable(&self, port: PortId) -> bool {
        self.ports
            .get(port.index())
            .is_some_and(|p| p.cfg.enabled && p.link_up)
    }

    /// Refreshes the learned entry for (`vid`, `mac`) if it is on `port`,
    /// as a frame from `mac` entering `port` at `at` would have; never
    /// learns a new entry or moves one. True if an entry was refreshed.
    pub fn touch(&mut self, vid: u16, mac: MacAddr, port: PortId, at: Instant) -> bool {
        self.fdb.touch(vid, mac, port, at)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Actions, Instant, PortConfig, PortId, Switch, SwitchConfig};
    use core::time::Duration;
    use weft_wire::MacAddr;

    fn frame(src: u8, dst: u8) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x08, 0x00];
        f.resize(60, 0);
        f
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn switch() -> Switch {
        let mut cfg = SwitchConfig::new(mac(0xfe), vec![PortConfig::access(7).edge(); 3]);
        cfg.ageing = Duration::from_secs(10);
        Switch::new(cfg)
    }

    #[test]
    fn touched_entries_do_not_age_untouched_ones_do() {
        let mut sw = switch();
        let mut out = Actions::new();
        let t0 = Instant::from_secs(1);
        sw.receive(PortId(0), &frame(1, 2), t0, &mut out);
        sw.receive(PortId(1), &frame(2, 1), t0, &mut out);
        sw.receive(PortId(2), &frame(3, 1), t0, &mut out);
        // 30 s in steps of one second; MAC 1 is refreshed as a fast path
        // would do, MAC 2 only by a touch naming the wrong port, MAC 3 not.
        for s in 2..=31 {
            let t = Instant::from_secs(s);
            assert!(sw.touch(7, mac(1), PortId(0), t));
            assert!(!sw.touch(7, mac(2), PortId(2), t), "touch on another port");
            sw.tick(t, &mut out);
        }
        assert_eq!(sw.fdb().lookup(7, mac(1)), Some(PortId(0)));
        assert_eq!(
            sw.fdb().lookup(7, mac(2)),
            None,
            "aged despite a wrong-port touch"
        );
        assert_eq!(sw.fdb().lookup(7, mac(3)), None);
        assert_eq!(sw.fdb_counters().aged, 2);
        assert_eq!(sw.fdb_counters().moves, 0);
    }

    #[test]
    fn touch_never_learns_moves_or_goes_back_in_time() {
        let mut sw = switch();
        let mut out = Actions::new();
        let t = Instant::from_secs(5);
        assert!(!sw.touch(7, mac(1), PortId(0), t));
        assert!(sw.fdb().is_empty());
        sw.receive(PortId(0), &frame(1, 2), t, &mut out);
        assert!(!sw.touch(7, mac(1), PortId(1), t));
        assert!(!sw.touch(8, mac(1), PortId(0), t), "another VLAN");
        assert_eq!(sw.fdb().lookup(7, mac(1)), Some(PortId(0)));
        assert!(sw.touch(7, mac(1), PortId(0), Instant::from_secs(2)));
        assert_eq!(sw.fdb().get(7, mac(1)).unwrap().last_seen, t);
        // Static entries are not the fast path's to refresh.
        assert!(sw.add_static_mac(7, mac(9), PortId(2)));
        assert!(!sw.touch(7, mac(9), PortId(2), t));
    }

    #[test]
    fn offloaded_frames_count_on_both_ports_and_the_vlan() {
        let mut sw = switch();
        let mut out = Actions::new();
        sw.receive(PortId(1), &frame(2, 1), Instant::from_secs(1), &mut out);
        sw.receive(PortId(0), &frame(1, 2), Instant::from_secs(1), &mut out);
        let before = *sw.port_counters(PortId(0)).unwrap();
        let vbefore = sw.vlan_counters(7);
        assert_eq!(sw.untagged_vlan(PortId(0)), Some(7));
        sw.credit_offloaded(PortId(0), PortId(1), 7, 1000, 1_500_000);
        let a = sw.port_counters(PortId(0)).unwrap();
        let b = sw.port_counters(PortId(1)).unwrap();
        assert_eq!(a.rx_frames, before.rx_frames + 1000);
        assert_eq!(a.rx_bytes, before.rx_bytes + 1_500_000);
        assert_eq!(a.tx_frames, before.tx_frames);
        assert_eq!((b.tx_frames, b.tx_bytes), (1001, 1_500_060));
        let v = sw.vlan_counters(7);
        assert_eq!(v.frames, vbefore.frames + 1000);
        assert_eq!(v.bytes, vbefore.bytes + 1_500_000);
        assert_eq!(v.flooded, vbefore.flooded);
        // Ports the switch does not have change nothing.
        sw.credit_offloaded(PortId(0), PortId(9), 7, 5, 5);
        assert_eq!(sw.port_counters(PortId(0)).unwrap().rx_frames, 1001);
    }
}
