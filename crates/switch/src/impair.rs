//! Link impairment (what netem does, which this kernel lacks): delay,
//! jitter, loss (independent or in bursts, Gilbert-Elliott), corruption,
//! duplication, reordering and a rate limit with a queue, with every
//! random choice drawn from a seeded PRNG so that a run replays exactly.
//!
//! Pure like the rest of the core: items (frames, or anything the caller
//! wants released later) and `now` go in; release times and drops come
//! out. The caller keeps the clock and calls [`Impair::pop_due`] when
//! [`Impair::next_release`] has passed.
//!
//! ```
//! use core::time::Duration;
//! use weft_switch::impair::{Fate, Impair, ImpairConfig};
//! use weft_switch::Instant;
//! let mut q = Impair::new(ImpairConfig {
//!     delay: Duration::from_millis(20),
//!     ..ImpairConfig::default()
//! });
//! assert_eq!(q.push("frame", 60, Instant::ZERO), Fate::Queued { copies: 1 });
//! assert_eq!(q.next_release(), Some(Instant::from_millis(20)));
//! assert_eq!(q.pop_due(Instant::from_millis(19)), None);
//! assert_eq!(q.pop_due(Instant::from_millis(20)), Some("frame"));
//! ```

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use core::time::Duration;
use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;

use crate::time::Instant;

/// Probabilities are parts per million.
pub const PPM: u64 = 1_000_000;

/// Frames held at most, like netem's default `limit 1000`.
pub const DEFAULT_LIMIT: usize = 1000;
/// Bytes held at most: 1,000 GSO super-frames would be 64 MiB a queue.
pub const DEFAULT_LIMIT_BYTES: usize = 16 << 20;
/// With a rate, frames that would wait longer than this for the link are
/// dropped, so that a sender faster than the rate meets loss (as on a real
/// bottleneck) rather than an ever longer queue.
pub const DEFAULT_MAX_BACKLOG: Duration = Duration::from_millis(500);

/// Burst loss, the Gilbert-Elliott model netem calls `loss gemodel`: a
/// link is in a good or a bad state; before each frame it moves from good
/// to bad with `enter_ppm` and back with `exit_ppm`, and then loses the
/// frame with the state's own probability. Mean burst (bad period)
/// length is 1 / exit frames; the share of time in bad is
/// enter / (enter + exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GilbertElliott {
    pub enter_ppm: u32,
    pub exit_ppm: u32,
    pub bad_loss_ppm: u32,
    pub good_loss_ppm: u32,
}

impl GilbertElliott {
    /// The long-run share of frames lost, in ppm.
    pub fn mean_loss_ppm(&self) -> u32 {
        let (e, x) = (f64::from(self.enter_ppm), f64::from(self.exit_ppm));
        if e + x == 0.0 {
            return self.good_loss_ppm;
        }
        let bad = e / (e + x);
        (bad * f64::from(self.bad_loss_ppm) + (1.0 - bad) * f64::from(self.good_loss_ppm)).round()
            as u32
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpairConfig {
    pub delay: Duration,
    /// The delay varies uniformly within ±jitter (at most `delay`); frames
    /// may then overtake each other, as with netem.
    pub jitter: Duration,
    pub loss_ppm: u32,
    /// Burst loss, drawn after (and as well as) `loss_ppm`.
    pub burst: Option<GilbertElliott>,
    /// Share of frames with one bit flipped (past the first
    /// `CORRUPT_SKIP` bytes, see [`Impair::push_with`]).
    pub corrupt_ppm: u32,
    pub duplicate_ppm: u32,
    /// Share of frames sent without the delay, ahead of those waiting.
    pub reorder_ppm: u32,
    /// Bits per second; 0 is unlimited.
    pub rate_bps: u64,
    /// With a rate: frames waiting for the link at most (a bottleneck's
    /// buffer, tbf's `limit` in frames); 0 bounds the wait by
    /// `max_backlog` instead.
    pub queue: usize,
    pub seed: u64,
    pub limit: usize,
    pub limit_bytes: usize,
    pub max_backlog: Duration,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        ImpairConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_ppm: 0,
            burst: None,
            corrupt_ppm: 0,
            duplicate_ppm: 0,
            reorder_ppm: 0,
            rate_bps: 0,
            queue: 0,
            seed: 0,
            limit: DEFAULT_LIMIT,
            limit_bytes: DEFAULT_LIMIT_BYTES,
            max_backlog: DEFAULT_MAX_BACKLOG,
        }
    }
}

/// What happened to an item pushed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped by the configured loss.
    Lost,
    /// Dropped: the queue is at its limit, or the rate's backlog too long.
    QueueFull,
    /// Queued, once or (duplicated) twice.
    Queued { copies: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImpairCounters {
    pub offered: u64,
    pub lost: u64,
    /// Of `lost`, lost by the burst model.
    pub burst_lost: u64,
    pub corrupted: u64,
    pub queue_full: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub released: u64,
}

impl std::ops::AddAssign<&ImpairCounters> for ImpairCounters {
    /// Adds another queue's counts: what a queue replaced at run time had
    /// counted stays in the totals a port, wire or tunnel end reports.
    fn add_assign(&mut self, o: &ImpairCounters) {
        self.offered += o.offered;
        self.lost += o.lost;
        self.burst_lost += o.burst_lost;
        self.corrupted += o.corrupted;
        self.queue_full += o.queue_full;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.released += o.released;
    }
}

#[derive(Debug)]
struct Held<T> {
    at: Instant,
    seq: u64,
    len: usize,
    item: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Held<T> {
    /// Reversed: the heap's top is the earliest release, and among equal
    /// times the first pushed, so equal delays keep the order.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction of one impaired port.
#[derive(Debug)]
pub struct Impair<T> {
    cfg: ImpairConfig,
    rng: XorShiftRng,
    heap: BinaryHeap<Held<T>>,
    seq: u64,
    bytes: usize,
    /// When the rate-limited link finishes sending what it was given.
    link_free: Instant,
    /// When each frame waiting for the rate-limited link has been sent
    /// (for `queue`); oldest first.
    on_link: VecDeque<Instant>,
    /// Gilbert-Elliott state: in the bad state.
    bad: bool,
    counters: ImpairCounters,
}

/// Bytes a corruption never touches: the Ethernet header, so that the
/// damaged frame still reaches its destination and fails there (a
/// checksum), as a bit error on the wire past the preamble would.
pub const CORRUPT_SKIP: usize = 14;

impl<T: Clone> Impair<T> {
    pub fn new(cfg: ImpairConfig) -> Self {
        Impair {
            rng: XorShiftRng::seed_from_u64(cfg.seed),
            cfg,
            heap: BinaryHeap::new(),
            seq: 0,
            bytes: 0,
            link_free: Instant::ZERO,
            on_link: VecDeque::new(),
            bad: false,
            counters: ImpairCounters::default(),
        }
    }

    pub fn config(&self) -> &ImpairConfig {
        &self.cfg
    }

    /// New settings; the PRNG restarts from the (new) seed, so replaying
    /// the same traffic after it gives the same outcome. Frames already
    /// held keep their release times.
    pub fn reconfigure(&mut self, cfg: ImpairConfig) {
        self.rng = XorShiftRng::seed_from_u64(cfg.seed);
        self.bad = false;
        self.cfg = cfg;
    }

    /// One step of the burst model: move state, then draw the loss.
    fn burst_loss(&mut self) -> bool {
        let Some(ge) = self.cfg.burst else {
            return false;
        };
        let flip = if self.bad { ge.exit_ppm } else { ge.enter_ppm };
        if self.chance(flip) {
            self.bad = !self.bad;
        }
        self.chance(if self.bad {
            ge.bad_loss_ppm
        } else {
            ge.good_loss_ppm
        })
    }

    fn chance(&mut self, ppm: u32) -> bool {
        // Drawn only when asked for, so a setting of 0 changes nothing.
        ppm > 0 && self.rng.next_u64() % PPM < u64::from(ppm)
    }

    /// Delay ± jitter, uniform.
    fn delay(&mut self) -> Duration {
        let d = self.cfg.delay;
        let j = self.cfg.jitter.min(d);
        if j.is_zero() {
            return d;
        }
        let span = j.as_nanos() as u64 * 2 + 1;
        let off = self.rng.next_u64() % span;
        (d - j) + Duration::from_nanos(off)
    }

    fn wire_time(&self, len: usize) -> Duration {
        let bits = len as u128 * 8;
        Duration::from_nanos((bits * 1_000_000_000 / u128::from(self.cfg.rate_bps)) as u64)
    }

    /// Takes one item of `len` bytes arriving at `now`.
    pub fn push(&mut self, item: T, len: usize, now: Instant) -> Fate {
        self.push_with(item, len, now, |_, _| {})
    }

    /// [`Impair::push`] for items that can be corrupted: when corruption
    /// strikes, `flip(item, bit)` is to flip bit `bit` (counted from the
    /// first byte's most significant bit) of the item's bytes; `bit` is
    /// never in the first [`CORRUPT_SKIP`] bytes. A duplicate is a copy of
    /// the corrupted item, as netem's is.
    pub fn push_with(
        &mut self,
        mut item: T,
        len: usize,
        now: Instant,
        flip: impl FnOnce(&mut T, usize),
    ) -> Fate {
        self.counters.offered += 1;
        if self.chance(self.cfg.loss_ppm) {
            self.counters.lost += 1;
            return Fate::Lost;
        }
        if self.burst_loss() {
            self.counters.lost += 1;
            self.counters.burst_lost += 1;
            return Fate::Lost;
        }
        if self.chance(self.cfg.corrupt_ppm) && len > CORRUPT_SKIP {
            let bits = (len - CORRUPT_SKIP) as u64 * 8;
            let bit = CORRUPT_SKIP * 8 + (self.rng.next_u64() % bits) as usize;
            flip(&mut item, bit);
            self.counters.corrupted += 1;
        }
        let dup = self.chance(self.cfg.duplicate_ppm);
        let copies = 1 + u8::from(dup);
        if self.heap.len() + usize::from(copies) > self.cfg.limit
            || self.bytes + len * usize::from(copies) > self.cfg.limit_bytes
        {
            self.counters.queue_full += 1;
            return Fate::QueueFull;
        }
        let mut sent = now;
        if self.cfg.rate_bps > 0 {
            let start = self.link_free.max(now);
            while self.on_link.front().is_some_and(|t| *t <= now) {
                self.on_link.pop_front();
            }
            let full = if self.cfg.queue > 0 {
                // The frame being sent is not waiting.
                self.on_link.len() > self.cfg.queue
            } else {
                start.saturating_duration_since(now) > self.cfg.max_backlog
            };
            if full {
                self.counters.queue_full += 1;
                return Fate::QueueFull;
            }
            self.link_free = start + self.wire_time(len) * u32::from(copies);
            sent = start + self.wire_time(len);
            if self.cfg.queue > 0 {
                self.on_link.push_back(sent);
                if dup {
                    self.on_link.push_back(self.link_free);
                }
            }
        }
        let reorder = self.chance(self.cfg.reorder_ppm);
        let at = if reorder {
            self.counters.reordered += 1;
            sent
        } else {
            sent + self.delay()
        };
        if dup {
            self.counters.duplicated += 1;
            let copy_at = if self.cfg.rate_bps > 0 {
                at + self.wire_time(len)
            } else {
                at
            };
            self.hold(item.clone(), len, at);
            self.hold(item, len, copy_at);
        } else {
            self.hold(item, len, at);
        }
        Fate::Queued { copies }
    }

    fn hold(&mut self, item: T, len: usize, at: Instant) {
        self.seq += 1;
        self.bytes += len;
        self.heap.push(Held {
            at,
            seq: self.seq,
            len,
            item,
        });
    }

    /// The earliest release time of what is held.
    pub fn next_release(&self) -> Option<Instant> {
        self.heap.peek().map(|h| h.at)
    }

    /// The next item whose release time has come.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.counters.released += 1;
        let h = self.heap.pop()?;
        self.bytes -= h.len;
        Some(h.item)
    }

    /// Everything held, in release order (when impairment is cleared).
    pub fn drain(&mut self) -> Vec<T> {
        let mut v = Vec::with_capacity(self.heap.len());
        while let Some(h) = self.heap.pop() {
            self.counters.released += 1;
            v.push(h.item);
        }
        self.bytes = 0;
        v
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn counters(&self) -> &ImpairCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pushes `n` frames of `len` bytes, one every `gap`, releasing as time
    /// passes; returns (id, arrival, release) of every released frame and
    /// the queue's counters.
    fn run(
        cfg: ImpairConfig,
        n: u64,
        len: usize,
        gap: Duration,
    ) -> (Vec<(u64, Instant, Instant)>, ImpairCounters) {
        let mut q: Impair<(u64, Instant)> = Impair::new(cfg);
        let mut out = Vec::new();
        let mut now = Instant::from_secs(1);
        let mut drain = |q: &mut Impair<(u64, Instant)>, t: Instant| {
            while let Some(at) = q.next_release() {
                if at > t {
                    break;
                }
                let (id, arr) = q.pop_due(at).unwrap();
                out.push((id, arr, at));
            }
        };
        for id in 0..n {
            drain(&mut q, now);
            q.push((id, now), len, now);
            now = now + gap;
        }
        drain(&mut q, Instant::from_secs(1_000_000));
        let c = *q.counters();
        (out, c)
    }

    fn mixed(seed: u64) -> ImpairConfig {
        ImpairConfig {
            delay: ms(20),
            jitter: ms(5),
            loss_ppm: 20_000,
            duplicate_ppm: 10_000,
            reorder_ppm: 10_000,
            rate_bps: 10_000_000,
            seed,
            ..Default::default()
        }
    }

    #[test]
    fn the_same_seed_replays_exactly_and_another_does_not() {
        let a = run(mixed(7), 5000, 200, Duration::from_micros(300));
        let b = run(mixed(7), 5000, 200, Duration::from_micros(300));
        assert_eq!(a, b);
        let c = run(mixed(8), 5000, 200, Duration::from_micros(300));
        assert_ne!(a.0, c.0);
        // Reconfiguring with the same seed restarts the same sequence.
        let mut q: Impair<u64> = Impair::new(mixed(7));
        let first: Vec<Fate> = (0..500)
            .map(|i| q.push(i, 60, Instant::from_secs(1)))
            .collect();
        q.reconfigure(mixed(7));
        let again: Vec<Fate> = (0..500)
            .map(|i| q.push(i, 60, Instant::from_secs(1)))
            .collect();
        assert_eq!(first, again);
    }

    /// `k` of `n` within 5 standard deviations of `p`.
    fn within(k: u64, n: u64, ppm: u32) {
        let p = f64::from(ppm) / PPM as f64;
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (k as f64 - mean).abs() <= 5.0 * sd,
            "{k} of {n}, expected {mean:.0} ± {:.0}",
            5.0 * sd
        );
    }

    #[test]
    fn loss_and_duplicate_rates_are_within_statistical_bounds() {
        for seed in [1, 2, 3] {
            let cfg = ImpairConfig {
                loss_ppm: 100_000,
                duplicate_ppm: 50_000,
                seed,
                limit: usize::MAX,
                ..Default::default()
            };
            let n = 100_000;
            let (out, c) = run(cfg, n, 100, Duration::from_micros(1));
            within(c.lost, n, 100_000);
            // Duplicates are drawn among the frames not lost.
            within(c.duplicated, n - c.lost, 50_000);
            assert_eq!(out.len() as u64, n - c.lost + c.duplicated);
        }
        let all = ImpairConfig {
            loss_ppm: 1_000_000,
            ..Default::default()
        };
        let (out, c) = run(all, 1000, 100, ms(1));
        assert!(out.is_empty());
        assert_eq!(c.lost, 1000);
        let none = ImpairConfig::default();
        let (out, c) = run(none, 1000, 100, ms(1));
        assert_eq!((out.len(), c.lost, c.duplicated), (1000, 0, 0));
    }

    #[test]
    fn delay_and_jitter_stay_within_bounds() {
        let cfg = ImpairConfig {
            delay: ms(50),
            ..Default::default()
        };
        let (out, _) = run(cfg, 1000, 100, ms(1));
        assert!(out.iter().all(|(_, a, r)| *r - *a == ms(50)));
        let cfg = ImpairConfig {
            delay: ms(20),
            jitter: ms(5),
            seed: 3,
            ..Default::default()
        };
        let (out, _) = run(cfg, 10_000, 100, Duration::from_micros(100));
        let d: Vec<Duration> = out.iter().map(|(_, a, r)| *r - *a).collect();
        assert!(d.iter().all(|d| (ms(15)..=ms(25)).contains(d)));
        // Spread over the whole window, not stuck at one value.
        assert!(d.iter().any(|d| *d < ms(16)) && d.iter().any(|d| *d > ms(24)));
        // Jitter larger than the delay never makes a frame leave early.
        let cfg = ImpairConfig {
            delay: ms(1),
            jitter: ms(10),
            ..Default::default()
        };
        let (out, _) = run(cfg, 1000, 100, ms(1));
        assert!(out.iter().all(|(_, a, r)| *r >= *a && *r - *a <= ms(2)));
    }

    fn in_order(out: &[(u64, Instant, Instant)]) -> bool {
        out.windows(2).all(|w| w[0].0 < w[1].0)
    }

    #[test]
    fn order_is_kept_unless_reorder_or_jitter_is_asked() {
        for cfg in [
            ImpairConfig {
                delay: ms(30),
                loss_ppm: 100_000,
                ..Default::default()
            },
            ImpairConfig {
                rate_bps: 1_000_000,
                delay: ms(5),
                ..Default::default()
            },
        ] {
            let (out, _) = run(cfg, 5000, 100, Duration::from_micros(50));
            assert!(in_order(&out));
        }
        let cfg = ImpairConfig {
            delay: ms(30),
            reorder_ppm: 100_000,
            seed: 5,
            ..Default::default()
        };
        let (out, c) = run(cfg, 5000, 100, ms(1));
        assert!(!in_order(&out));
        within(c.reordered, 5000, 100_000);
        // A reordered frame goes at once; the others wait the delay.
        let direct = out.iter().filter(|(_, a, r)| r == a).count() as u64;
        assert_eq!(direct, c.reordered);
        let cfg = ImpairConfig {
            delay: ms(30),
            jitter: ms(10),
            seed: 5,
            ..Default::default()
        };
        let (out, c) = run(cfg, 5000, 100, ms(1));
        assert!(!in_order(&out), "jitter larger than the gap reorders");
        assert_eq!(c.reordered, 0);
    }

    #[test]
    fn rate_limit_holds_the_configured_bit_rate() {
        // 1500-byte frames offered at 20 Mbit/s to a 10 Mbit/s limit.
        let cfg = ImpairConfig {
            rate_bps: 10_000_000,
            limit: usize::MAX,
            max_backlog: Duration::from_secs(3600),
            ..Default::default()
        };
        let (out, _) = run(cfg, 10_000, 1500, Duration::from_micros(600));
        let first = out.first().unwrap().2;
        let last = out.last().unwrap().2;
        let secs = (last - first).as_secs_f64();
        let bits = (out.len() - 1) as f64 * 1500.0 * 8.0;
        let rate = bits / secs;
        assert!((rate - 10e6).abs() / 10e6 < 0.001, "{rate} bit/s");
        // In no 100 ms window does more than the rate (plus a frame) leave.
        let win = ms(100);
        let mut j = 0;
        for i in 0..out.len() {
            while out[j].2 + win <= out[i].2 {
                j += 1;
            }
            let bytes = (i - j + 1) * 1500;
            assert!(bytes as f64 * 8.0 <= 10e6 * 0.1 + 1500.0 * 8.0);
        }
        // Slower than the rate, frames pass at once.
        let cfg = ImpairConfig {
            rate_bps: 10_000_000,
            ..Default::default()
        };
        let (out, c) = run(cfg, 1000, 1500, ms(2));
        assert!(out
            .iter()
            .all(|(_, a, r)| *r - *a == Duration::from_micros(1200)));
        assert_eq!(c.queue_full, 0);
        // A sender far above the rate meets drops once the backlog is full.
        let cfg = ImpairConfig {
            rate_bps: 1_000_000,
            ..Default::default()
        };
        let (out, c) = run(cfg, 2000, 1500, Duration::from_micros(100));
        assert!(c.queue_full > 0);
        let worst = out.iter().map(|(_, a, r)| *r - *a).max().unwrap();
        assert!(worst <= DEFAULT_MAX_BACKLOG + ms(13), "{worst:?}");
    }

    #[test]
    fn burst_loss_comes_in_bursts_of_the_models_mean_length() {
        let ge = GilbertElliott {
            enter_ppm: 10_000,
            exit_ppm: 250_000,
            bad_loss_ppm: 1_000_000,
            good_loss_ppm: 0,
        };
        assert_eq!(ge.mean_loss_ppm(), 38_462);
        let cfg = ImpairConfig {
            burst: Some(ge),
            seed: 11,
            limit: usize::MAX,
            ..Default::default()
        };
        let mut q: Impair<u64> = Impair::new(cfg.clone());
        let n = 200_000u64;
        let lost: Vec<bool> = (0..n)
            .map(|i| q.push(i, 100, Instant::from_secs(1)) == Fate::Lost)
            .collect();
        let k = lost.iter().filter(|l| **l).count() as u64;
        assert_eq!(q.counters().burst_lost, k);
        // Mean loss: 3.85 %, within 10 % of it (bursts make the variance
        // larger than a binomial's).
        let share = k as f64 / n as f64;
        assert!((share - 0.03846).abs() < 0.0039, "{share}");
        // Runs of losses: mean length 1 / exit = 4 frames.
        let mut runs = Vec::new();
        let mut cur = 0;
        for l in &lost {
            if *l {
                cur += 1;
            } else if cur > 0 {
                runs.push(cur);
                cur = 0;
            }
        }
        let mean = runs.iter().sum::<u64>() as f64 / runs.len() as f64;
        assert!((3.6..4.4).contains(&mean), "mean burst {mean}");
        // Independent loss is never counted as burst loss.
        let (_, c) = run(
            ImpairConfig {
                loss_ppm: 38_462,
                seed: 11,
                ..Default::default()
            },
            1000,
            100,
            ms(1),
        );
        assert_eq!(c.burst_lost, 0);
        // The same seed replays the same bursts.
        let mut again: Impair<u64> = Impair::new(cfg);
        let lost2: Vec<bool> = (0..n)
            .map(|i| again.push(i, 100, Instant::from_secs(1)) == Fate::Lost)
            .collect();
        assert_eq!(lost, lost2);
    }

    #[test]
    fn corruption_flips_one_bit_past_the_ethernet_header() {
        let cfg = ImpairConfig {
            corrupt_ppm: 100_000,
            seed: 4,
            limit: usize::MAX,
            ..Default::default()
        };
        let mut q: Impair<Vec<u8>> = Impair::new(cfg);
        let n = 20_000;
        for _ in 0..n {
            q.push_with(vec![0u8; 64], 64, Instant::ZERO, |f, bit| {
                f[bit / 8] ^= 0x80 >> (bit % 8)
            });
        }
        let c = *q.counters();
        within(c.corrupted, n, 100_000);
        let frames = q.drain();
        let damaged: Vec<&Vec<u8>> = frames
            .iter()
            .filter(|f| f.iter().any(|b| *b != 0))
            .collect();
        assert_eq!(damaged.len() as u64, c.corrupted);
        for f in &damaged {
            assert!(f[..CORRUPT_SKIP].iter().all(|b| *b == 0));
            assert_eq!(f.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        }
        // Bits all over the payload, not one place.
        let first = |f: &Vec<u8>| f.iter().position(|b| *b != 0).unwrap();
        let spots: std::collections::BTreeSet<usize> = damaged.iter().map(|f| first(f)).collect();
        assert_eq!(spots.len(), 64 - CORRUPT_SKIP);
    }

    #[test]
    fn a_rate_with_a_queue_holds_at_most_that_many_frames() {
        // 1500-byte frames at 1 Mbit/s take 12 ms each; offered every 1 ms,
        // a queue of 10 fills and then drops.
        let cfg = ImpairConfig {
            rate_bps: 1_000_000,
            queue: 10,
            ..Default::default()
        };
        let (out, c) = run(cfg, 1000, 1500, ms(1));
        assert!(c.queue_full > 800, "{c:?}");
        // The longest wait: the frame being sent plus ten queued.
        let worst = out.iter().map(|(_, a, r)| *r - *a).max().unwrap();
        assert!(worst <= ms(12 * 11 + 1), "{worst:?}");
        assert!(worst >= ms(12 * 10), "{worst:?}");
        // The link stays busy: the rate is held.
        let secs = (out.last().unwrap().2 - out.first().unwrap().2).as_secs_f64();
        let rate = (out.len() - 1) as f64 * 12_000.0 / secs;
        assert!((rate - 1e6).abs() < 1e4, "{rate}");
    }

    #[test]
    fn the_queue_is_bounded() {
        let cfg = ImpairConfig {
            delay: Duration::from_secs(10),
            limit: 100,
            ..Default::default()
        };
        let mut q: Impair<u32> = Impair::new(cfg);
        let fates: Vec<Fate> = (0..150).map(|i| q.push(i, 60, Instant::ZERO)).collect();
        assert_eq!(q.len(), 100);
        assert_eq!(fates.iter().filter(|f| **f == Fate::QueueFull).count(), 50);
        assert_eq!(q.drain().len(), 100);
        assert!(q.is_empty() && q.bytes() == 0);
        // Bytes too: GSO frames of 64 KiB fill 16 MiB after 256.
        let mut q: Impair<u32> = Impair::new(ImpairConfig {
            delay: Duration::from_secs(10),
            ..Default::default()
        });
        let held = (0..1000)
            .filter(|i| q.push(*i, 65536, Instant::ZERO) != Fate::QueueFull)
            .count();
        assert_eq!(held, 256);
        assert_eq!(q.bytes(), 16 << 20);
        assert_eq!(q.pop_due(Instant::from_secs(10)), Some(0));
        assert_eq!(q.bytes(), (16 << 20) - 65536);
    }
}
