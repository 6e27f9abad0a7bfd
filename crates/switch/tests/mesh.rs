//! Property: random meshes of 2..=16 switches with redundant links converge
//! to a loop-free spanning tree, and a broadcast from any host reaches every
//! other host exactly once, before and after a link fails.

mod sim;

use std::time::Duration;

use proptest::prelude::*;
use sim::{mac, Sim};
use weft_switch::{PortConfig, StpMode, SwitchConfig};

#[derive(Debug, Clone)]
struct Mesh {
    n: usize,
    /// (a, b, cost) links; the first n-1 form a random tree, so the mesh is
    /// connected, the rest are redundant (parallel links and self-loops too).
    links: Vec<(usize, usize, u32)>,
    priorities: Vec<u16>,
    modes: Vec<StpMode>,
    fail: usize,
}

fn mesh(max_n: usize, mixed: bool) -> impl Strategy<Value = Mesh> {
    (2usize..=max_n).prop_flat_map(move |n| {
        let parents: Vec<_> = (1..n).map(|i| 0..i).collect();
        let extra = prop::collection::vec((0..n, 0..n), 1..=n + 2);
        let costs = prop::collection::vec(1u32..=4, 2 * n + 2);
        let prios = prop::collection::vec(0u16..3, n);
        let modes = prop::collection::vec(
            if mixed {
                prop_oneof![Just(StpMode::Stp), Just(StpMode::Rstp)].boxed()
            } else {
                Just(StpMode::Rstp).boxed()
            },
            n,
        );
        (
            parents,
            extra,
            costs,
            prios,
            modes,
            any::<prop::sample::Index>(),
        )
            .prop_map(move |(parents, extra, costs, prios, modes, fail)| {
                let mut links: Vec<_> = parents
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i + 1, *p))
                    .collect();
                // Extra links may join a switch to itself (a cable between two
                // of its ports): one end must become a backup port.
                links.extend(extra);
                let links: Vec<_> = links
                    .into_iter()
                    .enumerate()
                    .map(|(k, (a, b))| (a, b, costs[k % costs.len()] * 10))
                    .collect();
                let fail = fail.index(links.len());
                Mesh {
                    n,
                    links,
                    priorities: prios.into_iter().map(|p| 0x7000 + p * 0x1000).collect(),
                    modes,
                    fail,
                }
            })
    })
}

fn build(m: &Mesh) -> (Sim, Vec<usize>) {
    let mut sim = Sim::new();
    let mut degree = vec![0u16; m.n];
    let mut ends = Vec::new();
    for (a, b, _) in &m.links {
        let pa = degree[*a];
        degree[*a] += 1;
        ends.push((pa, degree[*b]));
        degree[*b] += 1;
    }
    for (i, d) in degree.iter().enumerate() {
        let mut ports: Vec<PortConfig> = (0..*d).map(|_| PortConfig::access(1)).collect();
        for (k, (a, b, cost)) in m.links.iter().enumerate() {
            if *a == i {
                ports[usize::from(ends[k].0)].stp.path_cost = *cost;
            }
            if *b == i {
                ports[usize::from(ends[k].1)].stp.path_cost = *cost;
            }
        }
        ports.push(PortConfig::access(1).edge());
        // MACs in an order unrelated to the switch index.
        let mut cfg = SwitchConfig::new(mac(0x100 + ((i as u64 * 7) % 17)), ports);
        cfg.stp.priority = m.priorities[i];
        cfg.stp.mode = m.modes[i];
        sim.add_switch(cfg);
    }
    let mut link_ids = Vec::new();
    for (k, (a, b, _)) in m.links.iter().enumerate() {
        link_ids.push(sim.link_switches(*a, ends[k].0, *b, ends[k].1));
    }
    for (i, d) in degree.iter().enumerate() {
        sim.add_host(i, *d, mac(0x1000 + i as u64));
    }
    (sim, link_ids)
}

fn check_broadcasts(sim: &mut Sim, base: u32) -> Result<(), TestCaseError> {
    let comps = sim.components();
    for h in 0..sim.hosts.len() {
        let id = base + h as u32;
        let copies = sim.broadcast_from(h, id);
        let home = comps[sim.host_switch(h)];
        for (i, c) in copies.iter().enumerate() {
            let want = usize::from(i != h && comps[sim.host_switch(i)] == home);
            prop_assert_eq!(
                *c,
                want,
                "broadcast from host {} reached host {} {} times",
                h,
                i,
                c
            );
        }
    }
    Ok(())
}

fn run_property(m: &Mesh, settle: Duration) -> Result<(), TestCaseError> {
    let (mut sim, links) = build(m);
    sim.run_for(settle);
    prop_assert!(sim.one_root(), "no single root");
    prop_assert!(
        sim.is_spanning_forest(),
        "not a tree: {:?}",
        sim.active_links()
    );
    check_broadcasts(&mut sim, 1_000)?;
    // Take a link down; whatever is still connected must reconverge.
    sim.set_link(links[m.fail], false);
    sim.run_for(settle);
    prop_assert!(
        sim.is_spanning_forest(),
        "not a forest after failure: {:?}",
        sim.active_links()
    );
    check_broadcasts(&mut sim, 2_000)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rstp_meshes_converge_to_a_tree(m in mesh(16, false)) {
        run_property(&m, Duration::from_secs(4))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mixed_stp_rstp_meshes_converge_to_a_tree(m in mesh(10, true)) {
        // STP recovers from a failure in up to max_age + 2 * forward_delay.
        run_property(&m, Duration::from_secs(70))?;
    }
}

/// RSTP on a ring of 8 with a host on each switch settles in well under a
/// second of simulated time.
#[test]
fn rstp_ring_converges_fast() {
    let n = 8;
    let m = Mesh {
        n,
        links: (0..n).map(|i| (i, (i + 1) % n, 10)).collect(),
        priorities: vec![0x8000; n],
        modes: vec![StpMode::Rstp; n],
        fail: 0,
    };
    let (mut sim, _) = build(&m);
    sim.run_for(Duration::from_millis(300));
    assert!(sim.one_root());
    assert!(sim.is_spanning_tree(), "{:?}", sim.active_links());
}
