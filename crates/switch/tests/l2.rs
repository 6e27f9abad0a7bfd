//! Learning, flooding, ageing, static entries, VLAN rules, mirroring,
//! counters and malformed frames, on a single switch.

use std::time::Duration;

use weft_switch::{
    Actions, DropReason, Instant, MirrorConfig, PortConfig, PortId, StpMode, Switch, SwitchConfig,
    TagOp, DEFAULT_FDB_MAX,
};
use weft_wire::{MacAddr, Tci};

fn m(n: u64) -> MacAddr {
    MacAddr::from_u64(0x0200_0000_0000 | n)
}

fn cfg(ports: Vec<PortConfig>) -> SwitchConfig {
    let mut c = SwitchConfig::new(m(0xffff), ports);
    c.stp.mode = StpMode::Off;
    c
}

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

/// Untagged frame; `tags` are (TPID, TCI) pairs inserted after the source.
fn eth(dst: MacAddr, src: MacAddr, tags: &[(u16, u16)], len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(len.max(f.len()), 0x5a);
    f
}

struct Harness {
    sw: Switch,
    out: Actions,
}

impl Harness {
    fn new(c: SwitchConfig) -> Self {
        Harness {
            sw: Switch::new(c),
            out: Actions::new(),
        }
    }

    fn rx(&mut self, port: u16, f: &[u8], now: Instant) -> Vec<(u16, Vec<u8>)> {
        self.sw.receive(PortId(port), f, now, &mut self.out);
        self.out.frames(f).map(|(p, o)| (p.0, o.to_vec())).collect()
    }

    fn ports(&mut self, port: u16, f: &[u8], now: Instant) -> Vec<u16> {
        self.rx(port, f, now).into_iter().map(|(p, _)| p).collect()
    }

    fn drops(&self, port: u16, r: DropReason) -> u64 {
        self.sw.port_counters(PortId(port)).unwrap().drops.get(r)
    }
}

#[test]
fn learns_floods_and_forwards() {
    let mut h = Harness::new(cfg(vec![PortConfig::access(1); 4]));
    let (a, b) = (m(1), m(2));
    // Unknown unicast floods.
    assert_eq!(h.ports(0, &eth(b, a, &[], 60), t(1)), [1, 2, 3]);
    // The reply goes straight back: A was learned on port 0.
    assert_eq!(h.ports(1, &eth(a, b, &[], 60), t(1)), [0]);
    assert_eq!(h.ports(0, &eth(b, a, &[], 60), t(1)), [1]);
    // Broadcast and multicast always flood.
    assert_eq!(
        h.ports(0, &eth(MacAddr::BROADCAST, a, &[], 60), t(1)),
        [1, 2, 3]
    );
    let mcast: MacAddr = "01:00:5e:00:00:fb".parse().unwrap();
    assert_eq!(h.ports(2, &eth(mcast, m(3), &[], 60), t(1)), [0, 1, 3]);
    assert_eq!(h.sw.fdb_counters().learned, 3);
    // Destination on the ingress port: filtered, and counted.
    assert_eq!(
        h.ports(1, &eth(MacAddr::BROADCAST, m(9), &[], 60), t(1)),
        [0, 2, 3]
    );
    assert!(h.ports(1, &eth(m(9), b, &[], 60), t(1)).is_empty());
    assert_eq!(h.drops(1, DropReason::SameSegment), 1);
    assert_eq!(h.sw.vlan_counters(1).drops.get(DropReason::SameSegment), 1);
    // Frames are forwarded unchanged on access ports.
    let f = eth(a, b, &[], 100);
    assert_eq!(h.rx(1, &f, t(1)), vec![(0, f.clone())]);
    let c = h.sw.port_counters(PortId(0)).unwrap();
    assert_eq!(c.rx_frames, 3);
    assert!(c.tx_frames >= 4 && c.tx_bytes >= 100);
}

#[test]
fn ageing_is_configurable() {
    let mut c = cfg(vec![PortConfig::access(1); 2]);
    c.ageing = Duration::from_secs(10);
    let mut h = Harness::new(c);
    h.rx(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(1));
    h.sw.tick(t(8), &mut h.out);
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(0)));
    // Traffic refreshes the entry.
    h.rx(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(8));
    h.sw.tick(t(15), &mut h.out);
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(0)));
    h.sw.tick(t(19), &mut h.out);
    assert_eq!(h.sw.fdb().lookup(1, m(1)), None);
    assert_eq!(h.sw.fdb_counters().aged, 1);
    // Unknown again: flooded.
    assert_eq!(h.ports(1, &eth(m(1), m(2), &[], 60), t(20)), [0]);
}

#[test]
fn default_ageing_and_size_are_documented_values() {
    let c = SwitchConfig::new(m(1), vec![]);
    assert_eq!(c.ageing, Duration::from_secs(300));
    assert_eq!(c.fdb_max_entries, DEFAULT_FDB_MAX);
    assert_eq!(DEFAULT_FDB_MAX, 8192);
}

#[test]
fn static_entries_win() {
    let mut h = Harness::new(cfg(vec![PortConfig::access(1); 3]));
    assert!(h.sw.add_static_mac(1, m(7), PortId(2)));
    assert_eq!(h.ports(0, &eth(m(7), m(1), &[], 60), t(1)), [2]);
    // A frame claiming to come from m(7) on port 1 does not move it.
    h.rx(1, &eth(MacAddr::BROADCAST, m(7), &[], 60), t(1));
    assert_eq!(h.sw.fdb().lookup(1, m(7)), Some(PortId(2)));
    assert_eq!(h.sw.fdb_counters().moves, 0);
    // Never aged, never flushed.
    h.sw.tick(t(10_000), &mut h.out);
    h.sw.flush_fdb();
    assert_eq!(h.sw.fdb().lookup(1, m(7)), Some(PortId(2)));
    assert!(h.sw.fdb().get(1, m(7)).unwrap().is_static);
    // Per VLAN: the same MAC in VLAN 2 is unknown.
    assert_eq!(h.sw.fdb().lookup(2, m(7)), None);
    assert!(h.sw.remove_mac(1, m(7)).is_some());
    assert_eq!(h.ports(0, &eth(m(7), m(1), &[], 60), t(1)), [1, 2]);
}

#[test]
fn moves_are_detected() {
    let mut h = Harness::new(cfg(vec![PortConfig::access(1); 3]));
    h.rx(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(1));
    h.rx(2, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(2));
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(2)));
    assert_eq!(h.sw.fdb_counters().moves, 1);
    assert_eq!(h.ports(1, &eth(m(1), m(2), &[], 60), t(2)), [2]);
}

#[test]
fn full_table_floods_and_counts() {
    let mut c = cfg(vec![PortConfig::access(1); 3]);
    c.fdb_max_entries = 4;
    let mut h = Harness::new(c);
    for i in 0..10 {
        h.rx(0, &eth(MacAddr::BROADCAST, m(100 + i), &[], 60), t(1));
    }
    assert_eq!(h.sw.fdb().len(), 4);
    assert_eq!(h.sw.fdb_counters().table_full, 6);
    // A source that was not learned still gets its frames through, and
    // frames to it are flooded.
    assert_eq!(h.ports(1, &eth(m(109), m(50), &[], 60), t(1)), [0, 2]);
    // Static entries cannot overflow it either.
    assert!(!h.sw.add_static_mac(1, m(5), PortId(1)));
}

#[test]
fn mac_flood_keeps_memory_bounded() {
    let mut c = cfg(vec![PortConfig::access(1); 2]);
    c.fdb_max_entries = 1000;
    let mut h = Harness::new(c);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let src = MacAddr::from_u64(x & 0xfeff_ffff_ffff); // unicast
        h.sw.receive(
            PortId(0),
            &eth(MacAddr::BROADCAST, src, &[], 60),
            t(1),
            &mut h.out,
        );
    }
    assert_eq!(h.sw.fdb().len(), 1000);
    assert_eq!(h.sw.fdb_counters().table_full, 49_000);
}

#[test]
fn access_vlans_do_not_leak() {
    let mut h = Harness::new(cfg(vec![
        PortConfig::access(10),
        PortConfig::access(10),
        PortConfig::access(20),
    ]));
    assert_eq!(
        h.ports(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(1)),
        [1]
    );
    assert!(h
        .ports(2, &eth(MacAddr::BROADCAST, m(2), &[], 60), t(1))
        .is_empty());
    // Same MAC learned independently per VLAN.
    h.rx(2, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(1));
    assert_eq!(h.sw.fdb().lookup(10, m(1)), Some(PortId(0)));
    assert_eq!(h.sw.fdb().lookup(20, m(1)), Some(PortId(2)));
    // A known unicast to a MAC in another VLAN does not cross either.
    assert!(h.ports(2, &eth(m(1), m(3), &[], 60), t(1)).is_empty());
    let v10 = h.sw.vlan_counters(10);
    assert_eq!((v10.frames, v10.flooded), (1, 1));
}

const P_A10: u16 = 0;
const P_A20: u16 = 1;
const P_TRUNK: u16 = 2; // allowed 10, 20; no native
const P_TRUNK_NATIVE: u16 = 3; // allowed 10; native 30
const P_A30: u16 = 4;

fn vlan_switch() -> Harness {
    Harness::new(cfg(vec![
        PortConfig::access(10),
        PortConfig::access(20),
        PortConfig::trunk([10, 20], None),
        PortConfig::trunk([10], Some(30)),
        PortConfig::access(30),
    ]))
}

#[test]
fn trunk_push_pop_and_native() {
    let mut h = vlan_switch();
    let bc = MacAddr::BROADCAST;
    // Untagged on access 10: tagged (PCP 0) on trunks carrying 10.
    let f = eth(bc, m(1), &[], 60);
    let out = h.rx(P_A10, &f, t(1));
    assert_eq!(
        out.iter().map(|o| o.0).collect::<Vec<_>>(),
        [P_TRUNK, P_TRUNK_NATIVE]
    );
    for (_, o) in &out {
        assert_eq!(o.len(), 64);
        assert_eq!(o[12..16], [0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(o[16..], f[12..]);
    }
    // Tagged VLAN 20 PCP 5 on the trunk: popped onto access 20.
    let f = eth(bc, m(2), &[(0x8100, Tci::new(5, 20).to_u16())], 64);
    let out = h.rx(P_TRUNK, &f, t(1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, P_A20);
    assert_eq!(out[0].1, eth(bc, m(2), &[], 60));
    // Tagged VLAN 10 PCP 6: PCP kept on the other trunk, popped on access.
    let f = eth(bc, m(3), &[(0x8100, Tci::new(6, 10).to_u16())], 64);
    let out = h.rx(P_TRUNK, &f, t(1));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], (P_A10, eth(bc, m(3), &[], 60)));
    assert_eq!(out[1], (P_TRUNK_NATIVE, f.clone()));
    // Untagged on a trunk with native 30: VLAN 30, untagged out.
    let f = eth(bc, m(4), &[], 60);
    assert_eq!(h.rx(P_TRUNK_NATIVE, &f, t(1)), vec![(P_A30, f.clone())]);
    // ...and back: access 30 leaves the native trunk untagged.
    assert_eq!(h.rx(P_A30, &eth(bc, m(5), &[], 60), t(1)).len(), 1);
    // Tagged with the native VLAN: accepted, leaves untagged.
    let f = eth(bc, m(6), &[(0x8100, 30)], 64);
    assert_eq!(
        h.rx(P_TRUNK_NATIVE, &f, t(1)),
        vec![(P_A30, eth(bc, m(6), &[], 60))]
    );
}

#[test]
fn vlan_ingress_rules_drop_and_count() {
    let mut h = vlan_switch();
    let bc = MacAddr::BROADCAST;
    // Untagged on a trunk without native VLAN.
    assert!(h.ports(P_TRUNK, &eth(bc, m(1), &[], 60), t(1)).is_empty());
    assert_eq!(h.drops(P_TRUNK, DropReason::UntaggedNoNative), 1);
    // VLAN not in the allowed list.
    assert!(h
        .ports(P_TRUNK, &eth(bc, m(1), &[(0x8100, 30)], 64), t(1))
        .is_empty());
    assert_eq!(h.drops(P_TRUNK, DropReason::VlanNotAllowed), 1);
    assert!(h
        .ports(P_TRUNK, &eth(bc, m(1), &[(0x8100, 4095)], 64), t(1))
        .is_empty());
    assert_eq!(h.drops(P_TRUNK, DropReason::VlanNotAllowed), 2);
    // Tagged on an access port.
    assert!(h
        .ports(P_A10, &eth(bc, m(1), &[(0x8100, 20)], 64), t(1))
        .is_empty());
    assert_eq!(h.drops(P_A10, DropReason::TaggedOnAccess), 1);
}

#[test]
fn double_tagged_frames_cannot_hop() {
    let mut h = vlan_switch();
    let bc = MacAddr::BROADCAST;
    // The classic hop: a host on access 10 (or the native VLAN) sends a frame
    // tagged for its own VLAN with an inner tag for the target VLAN.
    let hop = eth(bc, m(1), &[(0x8100, 0), (0x8100, 20)], 68);
    assert!(h.ports(P_A10, &hop, t(1)).is_empty());
    let hop = eth(bc, m(1), &[(0x8100, 30), (0x8100, 10)], 68);
    assert!(h.ports(P_TRUNK_NATIVE, &hop, t(1)).is_empty());
    let qinq = eth(bc, m(1), &[(0x88a8, 10), (0x8100, 20)], 68);
    assert!(h.ports(P_TRUNK, &qinq, t(1)).is_empty());
    let s_only = eth(bc, m(1), &[(0x88a8, 10)], 64);
    assert!(h.ports(P_TRUNK, &s_only, t(1)).is_empty());
    assert_eq!(h.drops(P_A10, DropReason::DoubleTagged), 1);
    assert_eq!(h.drops(P_TRUNK_NATIVE, DropReason::DoubleTagged), 1);
    assert_eq!(h.drops(P_TRUNK, DropReason::DoubleTagged), 2);
}

#[test]
fn priority_tags_keep_pcp() {
    let mut h = vlan_switch();
    // VID 0, PCP 3 on access 10: VLAN 10, PCP 3 on the trunk, untagged on access.
    let f = eth(
        MacAddr::BROADCAST,
        m(1),
        &[(0x8100, Tci::new(3, 0).to_u16())],
        64,
    );
    h.sw.receive(PortId(P_A10), &f, t(1), &mut h.out);
    let ops: Vec<_> = h
        .out
        .as_slice()
        .iter()
        .map(|a| match a {
            weft_switch::Action::Forward { port, tag } => (port.0, *tag),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        ops,
        [
            (P_TRUNK, TagOp::Rewrite(Tci::new(3, 10))),
            (P_TRUNK_NATIVE, TagOp::Rewrite(Tci::new(3, 10)))
        ]
    );
    let out: Vec<_> = h.out.frames(&f).map(|(_, o)| o.to_vec()).collect();
    assert_eq!(out[0][14..16], [0x60, 0x0a]);
}

#[test]
fn mirror_copies_selected_traffic() {
    let mut c = cfg(vec![
        PortConfig::access(1),
        PortConfig::access(1),
        PortConfig::access(2),
        PortConfig::access(1),
    ]);
    c.mirror = MirrorConfig {
        output: Some(PortId(3)),
        select_ingress: vec![PortId(0)],
        select_egress: vec![],
        select_vlans: [2].into_iter().collect(),
    };
    let mut h = Harness::new(c);
    let bc = MacAddr::BROADCAST;
    let f = eth(bc, m(1), &[], 60);
    let out = h.rx(0, &f, t(1));
    // Port 3 is not part of VLAN 1 switching, only gets the mirror copy,
    // tagged with the VLAN.
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], (1, f.clone()));
    assert_eq!(out[1].0, 3);
    assert_eq!(out[1].1[12..16], [0x81, 0x00, 0x00, 0x01]);
    // Port 1 is not selected.
    assert_eq!(h.ports(1, &eth(bc, m(2), &[], 60), t(1)), [0]);
    // VLAN 2 is selected, even with nowhere else to go.
    assert_eq!(h.ports(2, &eth(bc, m(3), &[], 60), t(1)), [3]);
    // Frames arriving on the mirror port are dropped.
    assert!(h.ports(3, &eth(bc, m(4), &[], 60), t(1)).is_empty());
    assert_eq!(h.drops(3, DropReason::MirrorPort), 1);
}

#[test]
fn egress_mirror() {
    let mut c = cfg(vec![PortConfig::access(1); 3]);
    c.mirror = MirrorConfig {
        output: Some(PortId(2)),
        select_egress: vec![PortId(1)],
        ..MirrorConfig::default()
    };
    let mut h = Harness::new(c);
    h.rx(1, &eth(MacAddr::BROADCAST, m(2), &[], 60), t(1));
    assert_eq!(h.ports(0, &eth(m(2), m(1), &[], 60), t(1)), [1, 2]);
    assert_eq!(h.ports(1, &eth(m(1), m(2), &[], 60), t(1)), [0]);
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let mut c = cfg(vec![PortConfig::access(1), PortConfig::trunk([1], None)]);
    c.stp.mode = StpMode::Rstp;
    c.ports[0].stp.edge = true;
    c.ports[1].stp.edge = true;
    let mut h = Harness::new(c);
    let bc = MacAddr::BROADCAST;
    assert!(h.ports(0, &[0xff; 10], t(1)).is_empty());
    assert_eq!(h.drops(0, DropReason::Runt), 1);
    let mut cut = eth(bc, m(1), &[], 14);
    cut[12..14].copy_from_slice(&[0x81, 0x00]);
    cut.push(0);
    assert!(h.ports(1, &cut, t(1)).is_empty());
    assert_eq!(h.drops(1, DropReason::TruncatedTag), 1);
    assert!(h.ports(0, &eth(bc, m(1), &[], 1515), t(1)).is_empty());
    assert_eq!(h.drops(0, DropReason::Oversize), 1);
    assert_eq!(h.ports(0, &eth(bc, m(1), &[], 1514), t(1)), [1]);
    assert_eq!(h.ports(1, &eth(bc, m(1), &[(0x8100, 1)], 1518), t(1)), [0]);
    let mut bpdu = eth(MacAddr::STP_GROUP, m(1), &[], 60);
    bpdu[12..14].copy_from_slice(&[0x00, 0x26]);
    assert!(h.ports(0, &bpdu, t(1)).is_empty());
    assert_eq!(h.drops(0, DropReason::BadBpdu), 1);
    let lldp: MacAddr = "01:80:c2:00:00:0e".parse().unwrap();
    assert!(h.ports(0, &eth(lldp, m(1), &[], 60), t(1)).is_empty());
    assert_eq!(h.drops(0, DropReason::ReservedGroup), 1);
    assert!(h.ports(0, &eth(bc, bc, &[], 60), t(1)).is_empty());
    assert_eq!(h.drops(0, DropReason::InvalidSource), 1);
    assert!(h.ports(9, &eth(bc, m(1), &[], 60), t(1)).is_empty());
    assert_eq!(h.sw.unknown_port_frames(), 1);
    let c0 = h.sw.port_counters(PortId(0)).unwrap();
    assert_eq!(c0.drops.total(), 5);
    assert_eq!(c0.rx_frames, 6);
}

#[test]
fn without_stp_bpdus_are_flooded() {
    let mut h = Harness::new(cfg(vec![PortConfig::access(1); 3]));
    let mut bpdu = eth(MacAddr::STP_GROUP, m(1), &[], 60);
    bpdu[12..14].copy_from_slice(&[0x00, 0x26]);
    assert_eq!(h.ports(0, &bpdu, t(1)), [1, 2]);
}

#[test]
fn link_down_drops_and_flushes() {
    let mut h = Harness::new(cfg(vec![PortConfig::access(1); 3]));
    h.rx(1, &eth(MacAddr::BROADCAST, m(2), &[], 60), t(1));
    h.sw.set_link(PortId(1), false, t(2), &mut h.out);
    assert_eq!(h.sw.fdb().lookup(1, m(2)), None);
    assert_eq!(h.ports(0, &eth(m(2), m(1), &[], 60), t(2)), [2]);
    assert!(h.ports(1, &eth(m(1), m(2), &[], 60), t(2)).is_empty());
    assert_eq!(h.drops(1, DropReason::PortDown), 1);
}

#[test]
fn rstp_non_edge_port_does_not_forward_until_agreed_or_timers() {
    let mut c = cfg(vec![PortConfig::access(1).edge(), PortConfig::access(1)]);
    c.stp.mode = StpMode::Rstp;
    let mut h = Harness::new(c);
    h.sw.tick(t(1), &mut h.out);
    // Edge port forwards at once; the other is discarding.
    assert!(h
        .ports(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(1))
        .is_empty());
    assert!(h
        .ports(1, &eth(MacAddr::BROADCAST, m(2), &[], 60), t(1))
        .is_empty());
    assert_eq!(h.drops(1, DropReason::StpNotForwarding), 1);
    // After 2 x forward delay without a neighbour, it forwards.
    for s in 2..=32 {
        h.sw.tick(t(s), &mut h.out);
    }
    assert_eq!(
        h.ports(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(33)),
        [1]
    );
}

#[test]
fn static_entries_from_the_config_hold_before_learning_and_never_move() {
    let (a, s) = (m(1), m(0x99));
    let mut c = cfg(vec![PortConfig::access(1); 3]);
    c.static_macs.push((1, s, PortId(2)));
    // An entry for a port the switch lacks is ignored, not a panic.
    c.static_macs.push((1, m(0x98), PortId(9)));
    let mut h = Harness::new(c);
    // Before anything was learned, a frame to the static MAC goes to its
    // port only, not flooded.
    assert_eq!(h.ports(0, &eth(s, a, &[], 60), t(1)), [2]);
    // Its source seen on another port does not move it.
    h.ports(1, &eth(a, s, &[], 60), t(2));
    let e = h.sw.fdb().get(1, s).unwrap();
    assert_eq!((e.port, e.is_static), (PortId(2), true));
    assert_eq!(h.ports(0, &eth(s, a, &[], 60), t(3)), [2]);
    // Neither ageing nor a link going down removes it.
    h.sw.tick(t(10_000), &mut Actions::new());
    h.sw.set_link(PortId(2), false, t(10_001), &mut Actions::new());
    assert!(h.sw.fdb().get(1, s).is_some());
    assert!(h.sw.fdb().get(1, m(0x98)).is_none());
}

#[test]
fn a_disabled_port_is_a_link_down_until_enabled_again() {
    let mut h = Harness::new(cfg(vec![PortConfig::access(1); 3]));
    let (a, b) = (m(1), m(2));
    h.ports(0, &eth(b, a, &[], 60), t(1));
    h.ports(1, &eth(a, b, &[], 60), t(1));
    assert_eq!(h.sw.fdb().lookup(1, b), Some(PortId(1)));
    h.sw.set_enabled(PortId(1), false, t(2), &mut Actions::new());
    assert!(!h.sw.port_enabled(PortId(1)) && !h.sw.port_forwarding(PortId(1)));
    // Its learned entries went, nothing leaves by it, nothing enters.
    assert_eq!(h.sw.fdb().lookup(1, b), None);
    assert_eq!(h.ports(0, &eth(b, a, &[], 60), t(2)), [2]);
    assert!(h.ports(1, &eth(a, b, &[], 60), t(2)).is_empty());
    assert_eq!(h.drops(1, DropReason::PortDown), 1);
    h.sw.set_enabled(PortId(1), true, t(3), &mut Actions::new());
    assert!(h.sw.port_forwarding(PortId(1)));
    assert_eq!(h.ports(1, &eth(a, b, &[], 60), t(3)), [0]);
}

/// A running switch takes new VLANs, static MACs and a new STP priority
/// without losing what it learned, except entries of a VLAN a port left.
#[test]
fn reconfigure_keeps_learned_macs_and_applies_the_change() {
    let mut c = cfg(vec![PortConfig::access(1).edge(); 3]);
    c.stp.mode = StpMode::Rstp;
    let mut h = Harness::new(c.clone());
    h.rx(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(1));
    h.rx(1, &eth(MacAddr::BROADCAST, m(2), &[], 60), t(1));
    assert_eq!(h.sw.fdb().len(), 2);
    // Port 2 to VLAN 10, a static MAC on port 1, bridge priority 4096.
    c.ports[2] = PortConfig::access(10).edge();
    c.static_macs = vec![(1, m(9), PortId(1))];
    c.stp.priority = 4096;
    h.sw.reconfigure(c.clone(), t(2)).unwrap();
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(0)));
    assert_eq!(h.sw.fdb().lookup(1, m(2)), Some(PortId(1)));
    assert!(h.sw.fdb().get(1, m(9)).unwrap().is_static);
    assert_eq!(h.sw.stp_status().bridge_id.priority, 4096);
    // VLAN 1 floods no longer reach port 2.
    assert_eq!(
        h.ports(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(3)),
        [1]
    );
    // Port 1 leaves VLAN 1: what it learned there goes; the static entry
    // moves with the file (now on port 0).
    c.ports[1] = PortConfig::access(20).edge();
    c.static_macs = vec![(1, m(9), PortId(0))];
    h.sw.reconfigure(c.clone(), t(4)).unwrap();
    assert_eq!(h.sw.fdb().lookup(1, m(2)), None);
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(0)));
    assert_eq!(h.sw.fdb().lookup(1, m(9)), Some(PortId(0)));
    // A port added cannot be applied in place.
    let mut more = c.clone();
    more.ports.push(PortConfig::access(1));
    assert_eq!(
        h.sw.reconfigure(more, t(5)),
        Err(weft_switch::NotLive::Ports)
    );
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(0)));
}

/// A port added to a running switch forwards like the others, and what the
/// switch learned on its other ports stays; a port taken out of service
/// loses only what was learned on it.
#[test]
fn a_port_added_in_place_keeps_learned_macs() {
    let mut c = cfg(vec![PortConfig::access(1).edge(); 2]);
    c.stp.mode = StpMode::Rstp;
    let mut h = Harness::new(c);
    h.rx(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(1));
    h.rx(1, &eth(MacAddr::BROADCAST, m(2), &[], 60), t(1));
    let bridge = h.sw.stp_status().bridge_id;
    let id = h.sw.add_port(PortConfig::access(1).edge(), t(2)).unwrap();
    assert_eq!(id, PortId(2));
    assert_eq!(h.sw.port_count(), 3);
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(0)));
    assert_eq!(h.sw.fdb().lookup(1, m(2)), Some(PortId(1)));
    assert_eq!(h.sw.stp_status().bridge_id, bridge);
    assert!(h.sw.port_forwarding(PortId(2)));
    // Floods reach the new port; it learns; unicast to what it learned goes
    // there only.
    let mut flood = h.ports(0, &eth(MacAddr::BROADCAST, m(1), &[], 60), t(3));
    flood.sort();
    assert_eq!(flood, [1, 2]);
    h.rx(2, &eth(MacAddr::BROADCAST, m(3), &[], 60), t(3));
    assert_eq!(h.ports(0, &eth(m(3), m(1), &[], 60), t(3)), [2]);
    assert_eq!(
        h.sw.port_config(PortId(2)),
        Some(&PortConfig::access(1).edge())
    );
    // Taken out again: only its own entries go.
    h.sw.set_enabled(PortId(2), false, t(4), &mut Actions::new());
    assert_eq!(h.sw.fdb().lookup(1, m(3)), None);
    assert_eq!(h.sw.fdb().lookup(1, m(1)), Some(PortId(0)));
    assert_eq!(
        h.ports(1, &eth(MacAddr::BROADCAST, m(2), &[], 60), t(5)),
        [0]
    );
}
