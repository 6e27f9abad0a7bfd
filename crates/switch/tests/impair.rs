//! Properties of the impairment queue over random settings and traffic,
//! in simulated time.

use core::time::Duration;

use proptest::prelude::*;
use weft_switch::impair::{Fate, Impair, ImpairConfig};
use weft_switch::Instant;

fn config() -> impl Strategy<Value = ImpairConfig> {
    (
        0u64..50,
        0u64..50,
        prop_oneof![Just(0u32), 0u32..=1_000_000],
        prop_oneof![Just(0u32), 0u32..=500_000],
        prop_oneof![Just(0u32), 0u32..=500_000],
        prop_oneof![Just(0u64), 100_000u64..100_000_000],
        any::<u64>(),
    )
        .prop_map(|(d, j, loss, dup, reorder, rate, seed)| ImpairConfig {
            delay: Duration::from_millis(d),
            jitter: Duration::from_millis(j.min(d)),
            loss_ppm: loss,
            duplicate_ppm: dup,
            reorder_ppm: if d > 0 { reorder } else { 0 },
            rate_bps: rate,
            seed,
            ..ImpairConfig::default()
        })
}

/// (gap before the frame in µs, its length) for each frame.
fn traffic() -> impl Strategy<Value = Vec<(u64, usize)>> {
    prop::collection::vec((0u64..5_000, 60usize..9_000), 1..400)
}

/// Runs the traffic; returns (id, arrival, release) in release order.
fn run(cfg: &ImpairConfig, t: &[(u64, usize)]) -> (Vec<(usize, Instant, Instant)>, Vec<Fate>) {
    let mut q: Impair<(usize, Instant)> = Impair::new(cfg.clone());
    let mut now = Instant::from_secs(1);
    let mut out = Vec::new();
    let mut fates = Vec::new();
    let mut drain = |q: &mut Impair<(usize, Instant)>, upto: Instant| {
        while let Some(at) = q.next_release() {
            if at > upto {
                break;
            }
            let (id, arr) = q.pop_due(at).unwrap();
            out.push((id, arr, at));
        }
    };
    for (id, &(gap, len)) in t.iter().enumerate() {
        now = now + Duration::from_micros(gap);
        drain(&mut q, now);
        fates.push(q.push((id, now), len, now));
    }
    drain(&mut q, Instant::from_secs(1_000_000));
    let c = q.counters();
    assert_eq!(
        out.len() as u64,
        c.offered - c.lost - c.queue_full + c.duplicated
    );
    assert_eq!(q.bytes(), 0);
    (out, fates)
}

proptest! {
    #[test]
    fn every_frame_is_accounted_for_and_never_leaves_early(cfg in config(), t in traffic()) {
        let (out, fates) = run(&cfg, &t);
        let queued: u64 = fates
            .iter()
            .map(|f| match f { Fate::Queued { copies } => u64::from(*copies), _ => 0 })
            .sum();
        prop_assert_eq!(out.len() as u64, queued);
        let wire = |len: usize| {
            Duration::from_nanos(
                (len as u64 * 8 * 1_000_000_000)
                    .checked_div(cfg.rate_bps)
                    .unwrap_or(0),
            )
        };
        for &(id, arr, rel) in &out {
            prop_assert!(rel >= arr);
            // At most: the backlog, two frames' wire time, delay + jitter.
            let bound = cfg.max_backlog + wire(t[id].1) * 2 + cfg.delay + cfg.jitter
                + Duration::from_micros(1);
            prop_assert!(rel - arr <= bound, "{:?} > {:?}", rel - arr, bound);
        }
    }

    #[test]
    fn order_is_kept_without_jitter_or_reorder(mut cfg in config(), t in traffic()) {
        cfg.jitter = Duration::ZERO;
        cfg.reorder_ppm = 0;
        let (out, _) = run(&cfg, &t);
        prop_assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn a_seed_replays(cfg in config(), t in traffic()) {
        prop_assert_eq!(run(&cfg, &t), run(&cfg, &t));
    }
}
