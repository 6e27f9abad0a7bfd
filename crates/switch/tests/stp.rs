//! Spanning tree behaviour in simulated time.

mod sim;

use std::time::Duration;

use sim::{frame, mac, Sim};
use weft_switch::{
    Actions, Instant, PortConfig, PortId, PortRole, PortState, StpMode, Switch, SwitchConfig,
};
use weft_wire::bpdu::BpduFlags;
use weft_wire::{BpduRepr, BridgeId, ConfigBpdu, StpTime};

/// Three switches in a triangle (ports 0 and 1), a host on port 2 of each.
fn triangle(modes: [StpMode; 3]) -> (Sim, [usize; 3]) {
    let mut sim = Sim::new();
    for (i, m) in modes.iter().enumerate() {
        let mut cfg = SwitchConfig::new(
            mac(0x100 + i as u64),
            vec![
                PortConfig::access(1),
                PortConfig::access(1),
                PortConfig::access(1).edge(),
            ],
        );
        cfg.stp.mode = *m;
        sim.add_switch(cfg);
    }
    let l = [
        sim.link_switches(0, 0, 1, 0),
        sim.link_switches(1, 1, 2, 0),
        sim.link_switches(2, 1, 0, 1),
    ];
    for s in 0..3 {
        sim.add_host(s, 2, mac(0x10 + s as u64));
    }
    (sim, l)
}

fn assert_broadcasts_once(sim: &mut Sim, base: u32) {
    for h in 0..sim.hosts.len() {
        let copies = sim.broadcast_from(h, base + h as u32);
        for (i, c) in copies.iter().enumerate() {
            let want = usize::from(i != h);
            assert_eq!(*c, want, "broadcast from host {h}: host {i} got {c} copies");
        }
    }
}

#[test]
fn rstp_triangle_converges_under_a_second() {
    let (mut sim, _) = triangle([StpMode::Rstp; 3]);
    sim.run_for(Duration::from_millis(500));
    assert!(sim.one_root());
    assert!(sim.is_spanning_tree(), "active: {:?}", sim.active_links());
    assert_eq!(sim.blocked_ports(), 1);
    // Bridge 02:00:00:00:01:00 has the lowest id.
    let st = sim.switches[0].stp_status();
    assert_eq!(st.root_id, st.bridge_id);
    assert_eq!(st.root_port, None);
    for s in 1..3 {
        let st = sim.switches[s].stp_status();
        assert_eq!(st.root_id, BridgeId::new(0x8000, mac(0x100)));
        let rp = st.root_port.unwrap();
        let ps = sim.switches[s].port_stp_status(PortId(rp as u16)).unwrap();
        assert_eq!((ps.role, ps.state), (PortRole::Root, PortState::Forwarding));
    }
    // Switches 1 and 2 are equally far from the root; 1 has the lower id,
    // so 2's port towards 1 is the alternate.
    let alt = sim.switches[2].port_stp_status(PortId(0)).unwrap();
    assert_eq!(
        (alt.role, alt.state),
        (PortRole::Alternate, PortState::Discarding)
    );
    assert_broadcasts_once(&mut sim, 100);
}

#[test]
fn stp_triangle_converges_with_timers() {
    let (mut sim, _) = triangle([StpMode::Stp; 3]);
    sim.run_for(Duration::from_secs(10));
    // One forward delay in: still listening, nothing forwards between switches.
    assert!(sim.active_links().is_empty());
    let st = sim.switches[1].port_stp_status(PortId(0)).unwrap();
    assert_eq!(st.state, PortState::Listening);
    sim.run_for(Duration::from_secs(25));
    assert!(sim.one_root());
    assert!(sim.is_spanning_tree(), "active: {:?}", sim.active_links());
    assert_eq!(sim.blocked_ports(), 1);
    let blocked = sim.switches[2].port_stp_status(PortId(0)).unwrap();
    assert_eq!(
        (blocked.role, blocked.state),
        (PortRole::Alternate, PortState::Blocking)
    );
    assert_broadcasts_once(&mut sim, 200);
}

#[test]
fn mixed_stp_and_rstp_converge() {
    // Switch 1 speaks only STP, like a Linux kernel bridge.
    let (mut sim, _) = triangle([StpMode::Rstp, StpMode::Stp, StpMode::Rstp]);
    sim.run_for(Duration::from_secs(40));
    assert!(sim.one_root());
    assert!(sim.is_spanning_tree(), "active: {:?}", sim.active_links());
    // The RSTP neighbours fell back to STP on the ports facing switch 1.
    assert!(!sim.switches[0].port_stp_status(PortId(0)).unwrap().rstp);
    assert!(!sim.switches[2].port_stp_status(PortId(0)).unwrap().rstp);
    // ... and kept RSTP between themselves.
    assert!(sim.switches[0].port_stp_status(PortId(1)).unwrap().rstp);
    assert_broadcasts_once(&mut sim, 300);
}

#[test]
fn mixed_with_stp_root_converges() {
    let (mut sim, _) = triangle([StpMode::Stp, StpMode::Rstp, StpMode::Rstp]);
    sim.run_for(Duration::from_secs(40));
    assert!(sim.one_root());
    assert!(sim.is_spanning_tree(), "active: {:?}", sim.active_links());
    assert_broadcasts_once(&mut sim, 350);
}

#[test]
fn rstp_link_failure_reconverges() {
    let (mut sim, links) = triangle([StpMode::Rstp; 3]);
    sim.run_for(Duration::from_millis(500));
    assert!(sim.is_spanning_tree());
    // Cut the root's link to switch 1: 1 must use its alternate path via 2.
    sim.set_link(links[0], false);
    sim.run_for(Duration::from_millis(500));
    assert!(sim.one_root());
    assert!(sim.is_spanning_tree(), "active: {:?}", sim.active_links());
    assert_eq!(sim.blocked_ports(), 0);
    assert_broadcasts_once(&mut sim, 400);
    // Restore: back to a triangle with one blocked port.
    sim.set_link(links[0], true);
    sim.run_for(Duration::from_millis(500));
    assert!(sim.is_spanning_tree(), "active: {:?}", sim.active_links());
    assert_eq!(sim.blocked_ports(), 1);
    assert_broadcasts_once(&mut sim, 500);
}

#[test]
fn stp_link_failure_reconverges() {
    let (mut sim, links) = triangle([StpMode::Stp; 3]);
    sim.run_for(Duration::from_secs(35));
    sim.set_link(links[0], false);
    sim.run_for(Duration::from_secs(35));
    assert!(sim.one_root());
    assert!(sim.is_spanning_tree(), "active: {:?}", sim.active_links());
    assert_broadcasts_once(&mut sim, 600);
}

#[test]
fn topology_change_flushes_fdb() {
    let (mut sim, links) = triangle([StpMode::Rstp; 3]);
    sim.run_for(Duration::from_millis(500));
    // Let every switch learn every host.
    assert_broadcasts_once(&mut sim, 700);
    for s in &sim.switches {
        assert_eq!(s.fdb().len(), 3);
    }
    let flushed_before = sim.switches[2].fdb_counters().flushed;
    let tc_before: Vec<_> = sim
        .switches
        .iter()
        .map(|s| s.stp_status().topology_changes)
        .collect();
    sim.set_link(links[0], false);
    sim.run_for(Duration::from_millis(500));
    // Switch 2 flushed what it had learned through the changed tree.
    assert!(sim.switches[2].fdb_counters().flushed > flushed_before);
    // The switches beside the failed link each saw a new topology change.
    for i in [1, 2] {
        let tc = sim.switches[i].stp_status().topology_changes;
        assert!(tc > tc_before[i], "switch {i}: {tc} <= {}", tc_before[i]);
    }
    // Switch 1 lost what it learned through the old root port.
    assert!(sim.switches[1].fdb().lookup(1, sim.hosts[0].mac).is_none());
    // Relearn, then unicast from host 0 to host 1 arrives once on the new path.
    sim.broadcast_from(1, 776);
    sim.clear_hosts();
    let (m0, m1) = (sim.hosts[0].mac, sim.hosts[1].mac);
    sim.host_send(0, frame(m1, m0, 777));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.copies(777), vec![0, 1, 0]);
}

#[test]
fn bridge_priority_picks_root() {
    let mut sim = Sim::new();
    for i in 0..3 {
        let mut cfg = SwitchConfig::new(mac(0x100 + i), vec![PortConfig::access(1); 2]);
        if i == 2 {
            cfg.stp.priority = 0x1000;
        }
        sim.add_switch(cfg);
    }
    sim.link_switches(0, 0, 1, 0);
    sim.link_switches(1, 1, 2, 0);
    sim.link_switches(2, 1, 0, 1);
    sim.run_for(Duration::from_millis(500));
    assert!(sim.one_root());
    assert_eq!(sim.switches[0].stp_status().root_id.priority, 0x1000);
    assert!(sim.is_spanning_tree());
}

/// A bridge waits with the root's timers, as 802.1D says: the status
/// reports those, so `weft up` can wait as long as the ports will.
#[test]
fn status_reports_the_roots_timers() {
    let mut sim = Sim::new();
    for i in 0..2 {
        let mut cfg = SwitchConfig::new(mac(0x100 + i), vec![PortConfig::access(1); 1]);
        cfg.stp.mode = StpMode::Stp;
        if i == 0 {
            cfg.stp.priority = 0x1000;
            cfg.stp.forward_delay = Duration::from_secs(4);
            cfg.stp.max_age = Duration::from_secs(7);
        } else {
            cfg.stp.forward_delay = Duration::from_secs(21);
        }
        sim.add_switch(cfg);
    }
    assert_eq!(
        sim.switches[1].stp_status().forward_delay,
        Duration::from_secs(21)
    );
    sim.link_switches(0, 0, 1, 0);
    sim.run_for(Duration::from_secs(3));
    let st = sim.switches[1].stp_status();
    assert_eq!(st.root_id.priority, 0x1000);
    assert_eq!(st.forward_delay, Duration::from_secs(4));
    assert_eq!(st.max_age, Duration::from_secs(7));
}

fn bpdus(out: &Actions) -> Vec<(PortId, BpduRepr)> {
    out.frames(&[])
        .map(|(p, f)| (p, BpduRepr::parse_frame(&f.to_vec()).unwrap().1))
        .collect()
}

#[test]
fn stp_mode_sends_linux_compatible_config_bpdus() {
    let mut cfg = SwitchConfig::new(
        "52:54:00:aa:bb:cc".parse().unwrap(),
        vec![PortConfig::access(1); 2],
    );
    cfg.stp.mode = StpMode::Stp;
    let mut sw = Switch::new(cfg);
    let mut out = Actions::new();
    sw.tick(Instant::from_secs(1), &mut out);
    let frames: Vec<_> = out.frames(&[]).map(|(p, f)| (p, f.to_vec())).collect();
    assert_eq!(frames.len(), 2);
    let (port, f) = &frames[0];
    assert_eq!(*port, PortId(0));
    // Byte for byte what a Linux bridge with this MAC sends when it is root.
    let mut want = vec![
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, 0x00, 0x26, 0x42,
        0x42, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc,
        0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc, 0x80, 0x01, 0x00,
        0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00,
    ];
    want.resize(60, 0);
    assert_eq!(f, &want);
    assert_eq!(frames[1].1[42..44], [0x80, 0x02]);
    assert_eq!(sw.port_counters(PortId(0)).unwrap().tx_bpdus, 1);
}

fn linux_root_bpdu(flags: u8) -> Vec<u8> {
    let root = BridgeId::new(0x1000, "52:54:00:00:00:01".parse().unwrap());
    let b = BpduRepr::Config(ConfigBpdu {
        flags: BpduFlags(flags),
        root,
        root_path_cost: 0,
        bridge: root,
        port_id: 0x8001,
        message_age: StpTime(0),
        max_age: StpTime::from_secs(20),
        hello_time: StpTime::from_secs(2),
        forward_delay: StpTime::from_secs(15),
    });
    let mut f = vec![0; b.frame_len()];
    b.emit_frame(root.mac, &mut f);
    f
}

#[test]
fn rstp_port_falls_back_to_stp_for_a_kernel_bridge() {
    let cfg = SwitchConfig::new(mac(0x200), vec![PortConfig::access(1); 2]);
    let mut sw = Switch::new(cfg);
    let mut out = Actions::new();
    sw.tick(Instant::from_secs(1), &mut out);
    assert!(bpdus(&out)
        .iter()
        .all(|(_, b)| matches!(b, BpduRepr::Rst(_))));
    sw.receive(
        PortId(0),
        &linux_root_bpdu(0),
        Instant::from_secs(2),
        &mut out,
    );
    let st = sw.stp_status();
    assert_eq!(st.root_id.priority, 0x1000);
    assert_eq!(st.root_port, Some(0));
    let p0 = sw.port_stp_status(PortId(0)).unwrap();
    assert!(!p0.rstp);
    // RSTP root port forwards at once, even towards an STP bridge.
    assert_eq!(p0.state, PortState::Forwarding);
    // Port 1 is designated and still talks RSTP.
    let sent = bpdus(&out);
    assert!(sent
        .iter()
        .any(|(p, b)| *p == PortId(1) && matches!(b, BpduRepr::Rst(_))));
    // The root hears about topology changes with TCNs on the legacy root port.
    assert!(sent
        .iter()
        .any(|(p, b)| *p == PortId(0) && *b == BpduRepr::Tcn));
    // The kernel bridge's TCA stops the TCNs.
    sw.receive(
        PortId(0),
        &linux_root_bpdu(BpduFlags::TCA),
        Instant::from_secs(3),
        &mut out,
    );
    sw.tick(Instant::from_secs(5), &mut out);
    assert!(!bpdus(&out).iter().any(|(_, b)| *b == BpduRepr::Tcn));
}

#[test]
fn stp_root_acknowledges_tcn() {
    let mut cfg = SwitchConfig::new(mac(0x1), vec![PortConfig::access(1); 2]);
    cfg.stp.mode = StpMode::Stp;
    let mut sw = Switch::new(cfg);
    let mut out = Actions::new();
    sw.tick(Instant::from_secs(1), &mut out);
    let mut tcn = vec![0; 60];
    BpduRepr::Tcn.emit_frame(mac(0x9), &mut tcn);
    sw.receive(PortId(0), &tcn, Instant::from_secs(2), &mut out);
    let sent = bpdus(&out);
    let (_, BpduRepr::Config(c)) = sent.iter().find(|(p, _)| *p == PortId(0)).unwrap() else {
        panic!("no config BPDU: {sent:?}");
    };
    assert!(c.flags.has(BpduFlags::TCA));
    assert!(c.flags.has(BpduFlags::TC));
    // Port 1 announces the change too.
    assert!(sent
        .iter()
        .any(|(p, b)| *p == PortId(1)
            && matches!(b, BpduRepr::Config(c) if c.flags.has(BpduFlags::TC))));
}

#[test]
fn info_expires_when_bpdus_stop() {
    let cfg = SwitchConfig::new(mac(0x200), vec![PortConfig::access(1); 2]);
    let mut sw = Switch::new(cfg);
    let mut out = Actions::new();
    sw.receive(
        PortId(0),
        &linux_root_bpdu(0),
        Instant::from_secs(1),
        &mut out,
    );
    assert_eq!(sw.stp_status().root_port, Some(0));
    // STP information lives max_age - message_age = 20 s.
    sw.tick(Instant::from_secs(20), &mut out);
    assert_eq!(sw.stp_status().root_port, Some(0));
    sw.tick(Instant::from_secs(22), &mut out);
    assert_eq!(sw.stp_status().root_port, None);
    assert_eq!(sw.stp_status().root_id, sw.stp_status().bridge_id);
}

/// A caller sleeps until `poll_at`: once `tick` has run, the next poll is
/// ahead of the clock in every mode, or a datapath spins on an idle
/// switch (it did, with the spanning tree off).
#[test]
fn after_a_tick_the_next_poll_is_in_the_future_in_every_mode() {
    for mode in [StpMode::Off, StpMode::Stp, StpMode::Rstp] {
        let mut cfg = SwitchConfig::new(
            mac(0x100),
            vec![PortConfig::access(1), PortConfig::access(1)],
        );
        cfg.stp.mode = mode;
        let mut sw = Switch::new(cfg);
        let mut out = Actions::new();
        let mut now = Instant::from_secs(5);
        for _ in 0..100 {
            sw.tick(now, &mut out);
            let next = sw.poll_at();
            assert!(next > now, "{mode:?}: next poll {next:?} at {now:?}");
            now = next;
        }
        // The polls are paced by timers (hello, ageing), not back to back.
        assert!(
            now >= Instant::from_secs(5) + Duration::from_secs(10),
            "{mode:?}: 100 polls within {now:?}"
        );
    }
}
