//! The switch core and the tc BPF program decide alike: every frame of the
//! switch's fuzz corpus and of random inputs (crates/fuzz's `switch`
//! driver: trunks, several VLANs, a mirror, three spanning tree modes,
//! link changes, any tags) and of generated learned-unicast traffic is
//! also run through the program (`BPF_PROG_TEST_RUN`) with its maps synced
//! from the core, as the datapath does. Whatever the program decides
//! itself must be exactly the core's decision (ports, tags, lengths);
//! what it leaves to userspace is the core's anyway.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use weft_datapath::bpfpath::{KernelSwitch, Verdict};
use weft_fuzz::SwitchObserver;
use weft_switch::{
    Action, Actions, Instant, PortConfig, PortId, PortMode, StpMode, Switch, SwitchConfig,
};
use weft_wire::testing::frame;
use weft_wire::MacAddr;

fn bpf_or_skip() -> bool {
    if let Some(why) = weft_sys::bpf::unavailable() {
        eprintln!("SKIPPED: {why}; the BPF program is not compared with the core here");
        return false;
    }
    true
}

/// Runs the program beside the core and compares.
struct Parity {
    ks: Option<KernelSwitch>,
    ports: usize,
    pending: Option<Verdict>,
    decided: u64,
    frames: u64,
    /// Frames the program had to decide itself.
    expected: u64,
}

impl Parity {
    fn new() -> Parity {
        Parity {
            ks: None,
            ports: 0,
            pending: None,
            decided: 0,
            frames: 0,
            expected: 0,
        }
    }
}

impl SwitchObserver for Parity {
    fn start(&mut self, cfg: &SwitchConfig) {
        self.ports = cfg.ports.len();
        self.ks = Some(KernelSwitch::load(cfg).expect("the program loads"));
    }

    fn before_receive(&mut self, sw: &Switch, port: PortId, frame: &[u8]) {
        self.pending = None;
        // Real devices deliver no frame shorter than a link header, and
        // ports the switch does not have have no program.
        if frame.len() < 14 || port.index() >= self.ports {
            return;
        }
        let ks = self.ks.as_mut().unwrap();
        ks.sync(sw, |i| 100_000 + i as u32, |_| false).unwrap();
        self.pending = Some(ks.test_decide(port.index(), frame).unwrap());
    }

    fn after_receive(&mut self, _sw: &Switch, port: PortId, frame: &[u8], out: &Actions) {
        let Some(v) = self.pending.take() else {
            return;
        };
        self.frames += 1;
        if v == Verdict::Userspace {
            return;
        }
        self.decided += 1;
        let want = Verdict::of_core(frame, out);
        assert_eq!(
            v, want,
            "{port}: the program and the core disagree on {frame:02x?}"
        );
    }
}

#[test]
fn the_fuzz_corpus_gets_the_same_decisions() {
    if !bpf_or_skip() {
        return;
    }
    let mut p = Parity::new();
    for (path, bytes) in weft_fuzz::corpus("switch") {
        eprintln!("{}", path.display());
        weft_fuzz::switch_observed(&bytes, &mut p);
    }
    assert!(p.frames > 0);
}

#[test]
fn random_fuzz_inputs_get_the_same_decisions() {
    if !bpf_or_skip() {
        return;
    }
    let p = std::cell::RefCell::new(Parity::new());
    let mut runner = TestRunner::new(Config {
        cases: 150,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..600), |b| {
            weft_fuzz::switch_observed(&b, &mut *p.borrow_mut());
            Ok(())
        })
        .unwrap();
    let p = p.borrow();
    eprintln!("{} of {} frames decided in the kernel", p.decided, p.frames);
}

/// A frame of generated traffic: from host `src` to host `dst` (0xff:
/// broadcast). Host h lives on port (h - 1) % 5 and sends in that port's
/// untagged VLAN, or tagged in one of its VLANs on a trunk without one;
/// `stray` sends from another port instead (a move), `odd_tag` with this
/// tag whatever the port (VLAN 0, a VLAN not allowed, two tags ...).
#[derive(Debug, Clone)]
struct Gen {
    src: u8,
    dst: u8,
    stray: Option<u16>,
    odd_tag: Option<u16>,
    double: bool,
    len: usize,
}

fn gen_frame() -> impl Strategy<Value = Gen> {
    (
        1u8..11,
        prop_oneof![8 => 1u8..11, 1 => Just(0xff)],
        prop::option::weighted(0.05, 0u16..5),
        prop::option::weighted(0.15, prop::sample::select(vec![0u16, 1, 10, 20, 30, 4095])),
        prop::bool::weighted(0.05),
        46usize..200,
    )
        .prop_map(|(src, dst, stray, odd_tag, double, len)| Gen {
            src,
            dst,
            stray,
            odd_tag,
            double,
            len,
        })
}

/// The in port and the frame's bytes.
fn bytes(g: &Gen, cfg: &SwitchConfig) -> (PortId, Vec<u8>) {
    let mac = |n: u8| {
        if n == 0xff {
            MacAddr::BROADCAST
        } else {
            weft_wire::testing::mac(n)
        }
    };
    let home = u16::from(g.src - 1) % 5;
    let port = g.stray.unwrap_or(home);
    let tag = match (g.odd_tag, &cfg.ports[usize::from(port)].mode) {
        (Some(t), _) => Some(t),
        (None, PortMode::Access(_))
        | (
            None,
            PortMode::Trunk {
                native: Some(_), ..
            },
        ) => None,
        (None, PortMode::Trunk { allowed, .. }) => {
            let v: Vec<u16> = allowed.iter().collect();
            Some(v[usize::from(g.src) % v.len()])
        }
    };
    let mut tags: Vec<u16> = tag.map(|v| v | 0x6000).into_iter().collect();
    if g.double && !tags.is_empty() {
        tags.push(10);
    }
    let f = frame(mac(g.dst), mac(g.src), &tags, g.len);
    (PortId(port), f)
}

/// A switch with access ports of two VLANs, trunks with and without a
/// native VLAN, ports whose link is down, and maybe a mirror.
fn gen_switch() -> impl Strategy<Value = (SwitchConfig, Vec<bool>)> {
    let mode = prop_oneof![
        Just(PortConfig::access(10)),
        Just(PortConfig::access(20)),
        Just(PortConfig::trunk([10, 20], None)),
        Just(PortConfig::trunk([10, 30], Some(20))),
        Just(PortConfig::trunk([20], Some(1))),
    ];
    (
        prop::collection::vec((mode, any::<bool>()), 5),
        prop::option::of((
            prop::collection::vec(0u16..5, 0..3),
            prop::collection::vec(0u16..5, 0..3),
            prop::collection::vec(prop::sample::select(vec![10u16, 20, 30]), 0..2),
        )),
        prop::collection::vec(prop::bool::weighted(0.15), 5),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(ports, mirror, down, rstp)| {
            let ports: Vec<PortConfig> = ports
                .into_iter()
                .map(|(p, edge)| if edge || !rstp { p.edge() } else { p })
                .chain(std::iter::once(PortConfig::access(1)))
                .collect();
            let mut c = SwitchConfig::new(MacAddr([2, 0, 0, 0, 0, 0xfe]), ports);
            // Non-edge RSTP ports start discarding: STP states vary.
            c.stp.mode = if rstp { StpMode::Rstp } else { StpMode::Off };
            if let Some((ing, eg, vlans)) = mirror {
                c.mirror.output = Some(PortId(5));
                c.mirror.select_ingress = ing.into_iter().map(PortId).collect();
                c.mirror.select_egress = eg.into_iter().map(PortId).collect();
                c.mirror.select_vlans = vlans.into_iter().collect();
            }
            (c, down)
        })
}

#[test]
fn generated_traffic_gets_the_same_decisions_and_known_unicast_stays_in_the_kernel() {
    if !bpf_or_skip() {
        return;
    }
    let p = std::cell::RefCell::new(Parity::new());
    let mut runner = TestRunner::new(Config {
        cases: 60,
        ..Config::default()
    });
    let strat = (gen_switch(), prop::collection::vec(gen_frame(), 1..120));
    runner
        .run(&strat, |((cfg, down), frames)| {
            let mut p = p.borrow_mut();
            let mut core = Switch::new(cfg.clone());
            p.start(&cfg);
            let t = Instant::from_secs(1);
            let mut out = Actions::new();
            for (i, d) in down.iter().enumerate() {
                if *d {
                    core.set_link(PortId(i as u16), false, t, &mut out);
                }
            }
            for g in &frames {
                let (port, f) = bytes(g, &cfg);
                // The VLAN the core will put the frame in, if plainly tagged.
                let tci = (f[12] == 0x81).then(|| u16::from_be_bytes([f[14], f[15]]) & 0xfff);
                let vid = match tci {
                    Some(v) => Some(v).filter(|v| *v != 0 && *v != 4095 && f[16] != 0x81),
                    None => core.untagged_vlan(port),
                };
                let src = MacAddr(f[6..12].try_into().unwrap());
                let known_src = vid.is_some_and(|v| core.fdb().lookup(v, src) == Some(port));
                let flooded = vid.map(|v| core.vlan_counters(v).flooded);
                p.before_receive(&core, port, &f);
                let v = p.pending.clone();
                core.receive(port, &f, t, &mut out);
                p.after_receive(&core, port, &f, &out);
                // Known unicast from a known source that the core forwards
                // (no flood): the program must have taken it.
                let forwarded = !out.is_empty()
                    && out
                        .as_slice()
                        .iter()
                        .all(|a| matches!(a, Action::Forward { .. }));
                let not_flooded = vid.map(|v| core.vlan_counters(v).flooded) == flooded;
                if known_src && forwarded && not_flooded && f[0] & 1 == 0 {
                    prop_assert!(
                        v.as_ref().is_some_and(|v| *v != Verdict::Userspace),
                        "the program left {f:02x?} on {port} to userspace; the core sent {:?}",
                        out.as_slice()
                    );
                    p.expected += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    let p = p.borrow();
    eprintln!(
        "{} of {} frames decided in the kernel ({} had to be)",
        p.decided, p.frames, p.expected
    );
    // A program that passed everything to userspace would agree with the
    // core on every frame it decided: so it must also have decided every
    // frame the core forwarded as known unicast from a known source.
    assert!(p.expected > 100, "only {} such frames", p.expected);
    assert!(p.decided >= p.expected);
}
