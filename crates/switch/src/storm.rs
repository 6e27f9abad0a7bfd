//! Loop detection from what the switch itself sees.
//!
//! A loop that no spanning tree breaks shows in two ways, and a switch
//! can see either without knowing the topology:
//!
//! - **The same flooded frame, again and again.** Without a loop every
//!   switch floods a given broadcast once (an ARP retry is a second copy a
//!   second later). In a loop the copy comes back every time it has gone
//!   round, hundreds to hundreds of thousands of times a second. This is
//!   the sign that does not depend on direction: a frame circulating one
//!   way round a ring arrives on the same port each time and moves no MAC.
//! - **MACs moving between ports.** Copies going both ways round make a
//!   source MAC flip between two ports.
//!
//! MAC moves alone missed real storms: a ring of four switches with a
//! diagonal carried 20,000 frames a second through each switch with 20-40
//! moves a second, as copies settled into one direction per cycle.
//!
//! The guard counts both per [`WINDOW`] in the caller's time and flags the
//! switch when either passes its threshold; the flag holds for [`HOLD`]
//! after the signs stop, as storm control can end a loop of a few frames
//! for a moment while the loop itself is still there.

use core::time::Duration;

use crate::time::Instant;

/// Counting window; rates are per second over the last complete window.
pub const WINDOW: Duration = Duration::from_millis(250);
/// FDB moves a second above which a loop is suspected.
pub const MOVES_PER_S: u64 = 500;
/// Flooded frames a second that repeat a frame already flooded in the
/// same window, at or above which a loop is suspected. One frame going
/// round a ring of five with 1 ms per hop repeats 200 times a second.
pub const REPEATS_PER_S: u64 = 100;
/// How long the flag stays after the signs stop.
pub const HOLD: Duration = Duration::from_secs(10);
/// Recently flooded frames remembered (by hash) per window.
const SLOTS: usize = 256;
/// Bytes of a frame that are hashed (with its length): enough to tell
/// apart frames that differ in any header up to and including UDP/TCP.
const HASHED: usize = 128;

/// What the guard saw in the last complete window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopStatus {
    /// A loop is suspected now (or was within [`HOLD`]).
    pub suspected: bool,
    /// When the current suspicion started.
    pub since: Option<Instant>,
    pub moves_per_s: u64,
    /// Frames flooded (broadcast, multicast, unknown unicast) a second.
    pub floods_per_s: u64,
    /// Of those, frames identical to one flooded earlier in the window.
    pub repeats_per_s: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct LoopGuard {
    start: Option<Instant>,
    moves: u64,
    floods: u64,
    repeats: u64,
    /// (hash, copies seen) of frames flooded in this window; count 0 is
    /// an empty slot.
    slots: Box<[(u64, u32)]>,
    status: LoopStatus,
    last_high: Option<Instant>,
}

impl Default for LoopGuard {
    fn default() -> Self {
        LoopGuard {
            start: None,
            moves: 0,
            floods: 0,
            repeats: 0,
            slots: vec![(0, 0); SLOTS].into_boxed_slice(),
            status: LoopStatus::default(),
            last_high: None,
        }
    }
}

impl LoopGuard {
    pub(crate) fn moved(&mut self, now: Instant) {
        self.roll(now);
        self.moves += 1;
    }

    pub(crate) fn flooded(&mut self, frame: &[u8], now: Instant) {
        self.roll(now);
        self.floods += 1;
        let h = fnv1a(frame);
        let slot = &mut self.slots[(h % SLOTS as u64) as usize];
        if slot.1 > 0 && slot.0 == h {
            slot.1 = slot.1.saturating_add(1);
            self.repeats += 1;
        } else {
            // A collision evicts: at worst a repeat is missed, never made up.
            *slot = (h, 1);
        }
    }

    /// Closes the window if it is over.
    pub(crate) fn roll(&mut self, now: Instant) {
        let Some(start) = self.start else {
            self.start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return;
        }
        let per_s = |n: u64| (n as u128 * 1_000_000_000 / elapsed.as_nanos().max(1)) as u64;
        let (moves, floods, repeats) = (per_s(self.moves), per_s(self.floods), per_s(self.repeats));
        let high = moves > MOVES_PER_S || repeats >= REPEATS_PER_S;
        if high {
            self.last_high = Some(now);
            if self.status.since.is_none() {
                self.status.since = Some(start);
            }
        } else if !matches!(self.last_high, Some(t) if now.saturating_duration_since(t) < HOLD) {
            self.status.since = None;
        }
        self.status = LoopStatus {
            suspected: self.status.since.is_some(),
            since: self.status.since,
            moves_per_s: moves,
            floods_per_s: floods,
            repeats_per_s: repeats,
        };
        self.start = Some(now);
        self.moves = 0;
        self.floods = 0;
        self.repeats = 0;
        self.slots.fill((0, 0));
    }

    pub(crate) fn status(&self) -> LoopStatus {
        self.status
    }
}

fn fnv1a(frame: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in frame[..frame.len().min(HASHED)]
        .iter()
        .chain(&(frame.len() as u32).to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arp(target: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0]);
        f.extend_from_slice(&target.to_be_bytes());
        f.resize(60, 0);
        f
    }

    fn ms(n: u64) -> Instant {
        Instant::from_nanos(1_000_000_000 + n * 1_000_000)
    }

    #[test]
    fn one_frame_coming_back_every_few_ms_is_a_loop() {
        let mut g = LoopGuard::default();
        let f = arp(2);
        for t in (0..1000).step_by(5) {
            g.flooded(&f, ms(t));
        }
        g.roll(ms(1000));
        let s = g.status();
        assert!(s.suspected, "{s:?}");
        assert!(s.repeats_per_s >= 150, "{s:?}");
        assert_eq!(s.moves_per_s, 0);
    }

    #[test]
    fn many_different_broadcasts_and_retries_are_not() {
        let mut g = LoopGuard::default();
        // 5,000 ARP requests a second for distinct targets, each asked
        // again a second later: a big lab starting up.
        for round in 0..3u64 {
            for i in 0..5000u64 {
                g.flooded(&arp(i as u16), ms(round * 1000 + i / 5));
            }
        }
        g.roll(ms(3000));
        let s = g.status();
        assert!(!s.suspected, "{s:?}");
        assert!(s.floods_per_s > 4000, "{s:?}");
    }

    #[test]
    fn moves_alone_flag_and_the_flag_holds_then_clears() {
        let mut g = LoopGuard::default();
        for i in 0..300 {
            g.moved(ms(i / 2));
        }
        g.roll(ms(250));
        assert!(g.status().suspected, "{:?}", g.status());
        assert_eq!(g.status().since, Some(ms(0)));
        g.roll(ms(5_000));
        assert!(
            g.status().suspected,
            "held for HOLD after the last high window"
        );
        assert_eq!(g.status().moves_per_s, 0);
        g.roll(ms(10_300));
        assert!(!g.status().suspected, "{:?}", g.status());
        assert_eq!(g.status().since, None);
    }

    #[test]
    fn a_few_moves_are_not_a_loop() {
        let mut g = LoopGuard::default();
        for i in 0..100 {
            g.moved(ms(i * 2));
        }
        g.roll(ms(250));
        assert!(!g.status().suspected, "{:?}", g.status());
    }
}
