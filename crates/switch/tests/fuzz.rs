//! Fuzz-style: random and half-valid frames, random ports and random times
//! through the switch core. Nothing may panic, and every action must make
//! sense (a real port, never the ingress port, never twice).

use proptest::prelude::*;
use weft_switch::{
    Action, Actions, Instant, MirrorConfig, PortConfig, PortId, StpMode, Switch, SwitchConfig,
};
use weft_wire::bpdu::BpduFlags;
use weft_wire::{BpduRepr, BridgeId, ConfigBpdu, MacAddr, StpTime};

const PORTS: u16 = 6;

fn switch(mode: StpMode) -> Switch {
    let mut c = SwitchConfig::new(
        MacAddr::from_u64(0x0200_0000_ff00),
        vec![
            PortConfig::access(1).edge(),
            PortConfig::access(2),
            PortConfig::trunk([1, 2, 3], Some(1)),
            PortConfig::trunk(1..=4094, None),
            PortConfig::access(1),
            PortConfig::access(1),
        ],
    );
    c.stp.mode = mode;
    c.fdb_max_entries = 16;
    c.mirror = MirrorConfig {
        output: Some(PortId(5)),
        select_ingress: vec![PortId(2)],
        select_egress: vec![PortId(1)],
        select_vlans: [3].into_iter().collect(),
    };
    Switch::new(c)
}

fn mac() -> impl Strategy<Value = MacAddr> {
    prop_oneof![
        Just(MacAddr::BROADCAST),
        Just(MacAddr::STP_GROUP),
        Just(MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e])),
        Just(MacAddr([0x01, 0, 0x5e, 0, 0, 1])),
        (0u64..6).prop_map(|n| MacAddr::from_u64(0x0200_0000_0000 + n)),
        any::<[u8; 6]>().prop_map(MacAddr),
    ]
}

fn bpdu() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        any::<u8>(),
        0u16..4,
        any::<u32>(),
        any::<[u16; 4]>(),
        0u8..3,
        any::<u16>(),
    )
        .prop_map(|(flags, m, prio, cost, times, kind, port_id)| {
            let id = BridgeId::new(
                prio << 12,
                MacAddr::from_u64(0x0200_0000_0000 + u64::from(m % 8)),
            );
            let body = ConfigBpdu {
                flags: BpduFlags(flags),
                root: id,
                root_path_cost: cost % 1000,
                bridge: id,
                port_id,
                message_age: StpTime(times[0] % 0x1800),
                max_age: StpTime(times[1] % 0x1800),
                hello_time: StpTime(times[2] % 0x600),
                forward_delay: StpTime(times[3] % 0x1800),
            };
            let b = match kind {
                0 => BpduRepr::Config(body),
                1 => BpduRepr::Rst(body),
                _ => BpduRepr::Tcn,
            };
            let mut f = vec![0; b.frame_len()];
            b.emit_frame(id.mac, &mut f);
            f
        })
}

fn structured() -> impl Strategy<Value = Vec<u8>> {
    (
        mac(),
        mac(),
        prop::collection::vec(
            (
                prop_oneof![Just(0x8100u16), Just(0x88a8), any::<u16>()],
                any::<u16>(),
            ),
            0..3,
        ),
        any::<u16>(),
        0usize..1600,
    )
        .prop_map(|(dst, src, tags, ethertype, len)| {
            let mut f = Vec::new();
            f.extend_from_slice(&dst.0);
            f.extend_from_slice(&src.0);
            for (tpid, tci) in tags {
                f.extend_from_slice(&tpid.to_be_bytes());
                f.extend_from_slice(&tci.to_be_bytes());
            }
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.resize(f.len() + len, 0xab);
            f
        })
}

fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        structured(),
        bpdu(),
        // Valid BPDUs cut or bit-flipped.
        (bpdu(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut f, i, x)| {
            let at = i.index(f.len());
            if x & 1 == 0 {
                f.truncate(at);
            } else {
                f[at] ^= x;
            }
            f
        }),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Rx(u16, Vec<u8>),
    Tick,
    Link(u16, bool),
}

fn op() -> impl Strategy<Value = (u64, Op)> {
    (
        0u64..3_000,
        prop_oneof![
            8 => (0u16..PORTS + 2, any_frame()).prop_map(|(p, f)| Op::Rx(p, f)),
            2 => Just(Op::Tick),
            1 => (0u16..PORTS + 1, any::<bool>()).prop_map(|(p, up)| Op::Link(p, up)),
        ],
    )
}

fn check(out: &Actions, ingress: Option<u16>) -> Result<(), TestCaseError> {
    let mut seen = Vec::new();
    for a in out.as_slice() {
        let p = a.port().0;
        prop_assert!(p < PORTS, "action on port {}", p);
        if let Action::Forward { port, .. } = a {
            prop_assert!(
                Some(port.0) != ingress,
                "frame sent back out of its ingress port"
            );
            prop_assert!(!seen.contains(&port.0), "port {} twice", port.0);
            seen.push(port.0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn core_survives_garbage(
        mode in prop_oneof![Just(StpMode::Off), Just(StpMode::Stp), Just(StpMode::Rstp)],
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut sw = switch(mode);
        let mut out = Actions::new();
        let mut now = Instant::from_secs(1);
        for (dt_ms, op) in ops {
            now = now + std::time::Duration::from_millis(dt_ms);
            match op {
                Op::Rx(p, f) => {
                    sw.receive(PortId(p), &f, now, &mut out);
                    check(&out, Some(p))?;
                    for (a, (_, o)) in out.as_slice().iter().zip(out.frames(&f)) {
                        match a {
                            Action::Forward { .. } => prop_assert!(o.len() <= f.len() + 4),
                            Action::Transmit { .. } => {
                                prop_assert!(BpduRepr::parse_frame(&o.to_vec()).is_ok())
                            }
                        }
                    }
                }
                Op::Tick => {
                    sw.tick(now, &mut out);
                    check(&out, None)?;
                    for (_, o) in out.frames(&[]) {
                        prop_assert!(BpduRepr::parse_frame(&o.to_vec()).is_ok());
                    }
                }
                Op::Link(p, up) => {
                    sw.set_link(PortId(p), up, now, &mut out);
                    check(&out, None)?;
                }
            }
            prop_assert!(sw.fdb().len() <= 16);
        }
    }
}
