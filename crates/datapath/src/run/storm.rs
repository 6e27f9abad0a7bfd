//! Storm control of flooded frames entering a port.

use std::time::Duration;

use weft_switch::Instant;

/// Storm control: broadcast and multicast frames entering a port are
/// limited to [`STORM_LIMIT`] per [`STORM_WINDOW`]; the rest are dropped
/// and counted. Without a spanning tree a loop would otherwise circulate
/// every broadcast as fast as the CPU allows.
#[derive(Default)]
pub(super) struct Storm {
    window: Option<Instant>,
    count: u32,
    pub(super) dropped: u64,
}

/// 10,000 broadcast/multicast frames per second per port: far above what
/// a lab's ARP, ND and DHCP make, far below a loop's rate.
pub const STORM_LIMIT: u32 = 1000;
pub const STORM_WINDOW: Duration = Duration::from_millis(100);

impl Storm {
    /// True if this flooded frame may pass.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        match self.window {
            Some(w) if now.saturating_duration_since(w) < STORM_WINDOW => {}
            _ => {
                self.window = Some(now);
                self.count = 0;
            }
        }
        self.count += 1;
        if self.count > STORM_LIMIT {
            self.dropped += 1;
            false
        } else {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_control_admits_a_budget_per_window() {
        let mut s = Storm::default();
        let t = Instant::from_secs(10);
        let passed = (0..3000).filter(|_| s.admit(t)).count();
        assert_eq!(passed, STORM_LIMIT as usize);
        assert_eq!(s.dropped, 3000 - u64::from(STORM_LIMIT));
        // The next window starts afresh.
        assert!(s.admit(t + STORM_WINDOW));
    }
}
