//! The anti-replay window (RFC 6479's bitmap scheme, as WireGuard uses it):
//! a counter is accepted once, and only if it is newer than the highest
//! seen minus the window. Checked before decryption (cheap rejection) and
//! updated only after the packet authenticated, so forgeries cannot move it.

/// Counters accepted once each: the highest seen and the WINDOW - 1 below
/// it. Larger than any plausible reordering on one path.
pub const WINDOW: u64 = (WORDS as u64 - 1) * 64;
const WORDS: usize = 64;

#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// One more than the highest counter accepted (0: none yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

/// Why a counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Already accepted once.
    Duplicate,
    /// Older than the window.
    TooOld,
}

impl ReplayWindow {
    /// Would `ctr` be accepted? Changes nothing.
    pub fn check(&self, ctr: u64) -> Result<(), Refused> {
        if ctr >= self.next {
            return Ok(());
        }
        if self.next - ctr > WINDOW {
            return Err(Refused::TooOld);
        }
        let (w, b) = Self::slot(ctr);
        if self.bits[w] & (1 << b) != 0 {
            Err(Refused::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Accept `ctr` (call only after the packet authenticated).
    pub fn update(&mut self, ctr: u64) -> Result<(), Refused> {
        self.check(ctr)?;
        if ctr >= self.next {
            // Words the top moves into hold bits from a lap ago: clear them.
            // (The top's own word has nothing above the top: it was
            // cleared when the top entered it.)
            if self.next == 0 {
                self.bits = [0; WORDS];
            } else {
                let top_word = (self.next - 1) / 64;
                let steps = (ctr / 64 - top_word).min(WORDS as u64);
                for i in 1..=steps {
                    self.bits[((top_word + i) % WORDS as u64) as usize] = 0;
                }
            }
            self.next = ctr + 1;
        }
        let (w, b) = Self::slot(ctr);
        self.bits[w] |= 1 << b;
        Ok(())
    }

    fn slot(ctr: u64) -> (usize, u32) {
        (((ctr / 64) % WORDS as u64) as usize, (ctr % 64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_reordered_duplicate_and_old() {
        let mut w = ReplayWindow::default();
        for c in 0..100 {
            w.update(c).unwrap();
        }
        assert_eq!(w.update(50), Err(Refused::Duplicate));
        w.update(200).unwrap();
        w.update(150).unwrap(); // reordered within the window
        assert_eq!(w.update(150), Err(Refused::Duplicate));
        w.update(100 + WINDOW).unwrap();
        assert_eq!(w.check(100), Err(Refused::TooOld));
        assert_eq!(w.check(101), Ok(()));
        assert_eq!(w.check(200), Err(Refused::Duplicate));
        // A big jump forgets everything behind the window.
        w.update(1 << 40).unwrap();
        assert_eq!(w.check((1 << 40) - WINDOW), Err(Refused::TooOld));
        assert_eq!(w.check((1 << 40) - WINDOW + 1), Ok(()));
        assert_eq!(w.check((1 << 40) - 1), Ok(()));
    }

    #[test]
    fn matches_a_set_model() {
        use std::collections::BTreeSet;
        let mut w = ReplayWindow::default();
        let mut seen = BTreeSet::new();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let next: u64 = seen.last().map_or(0, |m| m + 1);
            // Mostly near the top, some far behind, some jumps ahead.
            let c = (next + 64).saturating_sub(x % (WINDOW + 300));
            let want = if c >= next {
                Ok(())
            } else if next - c > WINDOW {
                Err(Refused::TooOld)
            } else if seen.contains(&c) {
                Err(Refused::Duplicate)
            } else {
                Ok(())
            };
            assert_eq!(w.update(c), want, "counter {c}, next {next}");
            if want.is_ok() {
                seen.insert(c);
            }
        }
    }
}
