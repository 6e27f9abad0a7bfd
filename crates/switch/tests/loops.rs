//! Loop detection in simulated time: rings of 3, 4 and 5 switches with
//! the spanning tree off storm, and every switch in the ring says so from
//! its own counters; the same rings with RSTP, and a busy loop-free line,
//! never do.

mod sim;

use std::time::Duration;

use sim::{frame, mac, Sim};
use weft_switch::storm::MOVES_PER_S;
use weft_switch::{PortConfig, StpMode, SwitchConfig};
use weft_wire::MacAddr;

/// `n` switches in a ring (ports 0 and 1), a host on port 2 of switch 0
/// and of switch n/2.
fn ring(n: usize, mode: StpMode) -> Sim {
    let mut sim = Sim::new();
    for i in 0..n {
        let mut cfg = SwitchConfig::new(
            mac(0x100 + i as u64),
            vec![
                PortConfig::access(1),
                PortConfig::access(1),
                PortConfig::access(1).edge(),
            ],
        );
        cfg.stp.mode = mode;
        sim.add_switch(cfg);
    }
    for i in 0..n {
        sim.link_switches(i, 1, (i + 1) % n, 0);
    }
    sim.add_host(0, 2, mac(0x10));
    sim.add_host(n / 2, 2, mac(0x11));
    sim
}

fn storm_in_ring(n: usize) {
    let mut sim = ring(n, StpMode::Off);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.switches.iter().all(|s| !s.loop_status().suspected));
    // One ARP-like broadcast: both copies go round the ring for good.
    let h0 = sim.hosts[0].mac;
    sim.host_send(0, frame(MacAddr::BROADCAST, h0, 1));
    sim.run_for(Duration::from_secs(1));
    let mut max_moves = 0;
    for (i, s) in sim.switches.iter().enumerate() {
        let st = s.loop_status();
        assert!(st.suspected, "ring of {n}: switch {i} did not flag: {st:?}");
        assert!(st.since.is_some());
        assert!(st.repeats_per_s >= 100, "ring of {n}: switch {i}: {st:?}");
        max_moves = max_moves.max(st.moves_per_s);
    }
    eprintln!(
        "ring of {n}: {} frames on links, at most {max_moves} MAC moves/s on a switch",
        sim.frames_on_links
    );
    if n == 5 {
        // With 1 ms per hop the MACs of a ring of five move too slowly to
        // pass the move threshold: the repeats are what tell.
        assert!(max_moves <= MOVES_PER_S, "{max_moves}");
    }
}

#[test]
fn storm_in_a_ring_of_3_is_flagged_on_every_switch() {
    storm_in_ring(3);
}

#[test]
fn storm_in_a_ring_of_4_is_flagged_on_every_switch() {
    storm_in_ring(4);
}

#[test]
fn storm_in_a_ring_of_5_is_flagged_on_every_switch() {
    storm_in_ring(5);
}

#[test]
fn rings_with_rstp_are_never_flagged() {
    for n in [3, 4, 5] {
        let mut sim = ring(n, StpMode::Rstp);
        sim.run_for(Duration::from_secs(3));
        for id in 0..50 {
            let src = sim.hosts[id as usize % 2].mac;
            sim.host_send(id as usize % 2, frame(MacAddr::BROADCAST, src, id));
            sim.run_for(Duration::from_millis(20));
        }
        sim.run_for(Duration::from_secs(1));
        for (i, s) in sim.switches.iter().enumerate() {
            assert!(
                !s.loop_status().suspected,
                "ring of {n}, switch {i}: {:?}",
                s.loop_status()
            );
        }
    }
}

/// Two switches in a line with ten hosts each, every host broadcasting a
/// different frame every 10 ms and unicasting to a host on the other side:
/// a lot of flooding, no loop.
#[test]
fn busy_loop_free_line_is_not_flagged() {
    let mut sim = Sim::new();
    for i in 0..2 {
        let mut cfg = SwitchConfig::new(mac(0x200 + i), vec![PortConfig::access(1); 11]);
        cfg.stp.mode = StpMode::Off;
        sim.add_switch(cfg);
    }
    sim.link_switches(0, 10, 1, 10);
    for h in 0..20u16 {
        sim.add_host(usize::from(h / 10), h % 10, mac(0x1000 + u64::from(h)));
    }
    let mut id = 0;
    for _ in 0..200 {
        for h in 0..20 {
            let src = sim.hosts[h].mac;
            let dst = sim.hosts[(h + 10) % 20].mac;
            sim.host_send(h, frame(MacAddr::BROADCAST, src, id));
            sim.host_send(h, frame(dst, src, id + 1));
            id += 2;
        }
        sim.run_for(Duration::from_millis(10));
    }
    for (i, s) in sim.switches.iter().enumerate() {
        let st = s.loop_status();
        assert!(!st.suspected, "switch {i}: {st:?}");
        assert!(st.floods_per_s >= 1000, "switch {i}: {st:?}");
    }
}
