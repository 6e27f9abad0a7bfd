//! A port a live edit took off a switch keeps its core slot, disabled
//! (core port ids never shift), and has no interface: the tc BPF switch
//! made again for the ports left (interface index 0 in that slot) must
//! never send a frame there, and must still decide like the core for the
//! others.

use weft_datapath::bpfpath::{KernelSwitch, Verdict};
use weft_switch::{Action, Actions, Instant, PortConfig, PortId, StpMode, Switch, SwitchConfig};
use weft_wire::MacAddr;

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45; 46]);
    f
}

const H0: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const H1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const H2: [u8; 6] = [2, 0, 0, 0, 0, 0x12];
const BCAST: [u8; 6] = [0xff; 6];

fn sent_ports(out: &Actions) -> Vec<u16> {
    let mut v: Vec<u16> = out
        .as_slice()
        .iter()
        .map(|a| match *a {
            Action::Forward { port, .. } => port.0,
            Action::Transmit { port, .. } => port.0,
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn a_retired_port_gets_nothing_from_the_kernel_switch() {
    if let Some(why) = weft_sys::bpf::unavailable() {
        eprintln!("SKIPPED: {why}; the tc BPF switch is not loaded here");
        return;
    }
    // Two VLANs (what puts a switch on the tc BPF path): ports 0-2 in
    // VLAN 10, port 3 in VLAN 20. No spanning tree: every port forwards.
    let mut cfg = SwitchConfig::new(
        MacAddr([2, 0, 0, 0, 0, 1]),
        vec![
            PortConfig::access(10),
            PortConfig::access(10),
            PortConfig::access(10),
            PortConfig::access(20),
        ],
    );
    cfg.stp.mode = StpMode::Off;
    let mut core = Switch::new(cfg.clone());
    let now = Instant::from_nanos(1_000_000);
    let mut acts = Actions::new();
    for (p, mac) in [(0u16, H0), (1, H1), (2, H2)] {
        core.receive(PortId(p), &frame(BCAST, mac), now, &mut acts);
    }
    // Port 2 taken out by a live edit, as the datapath does it.
    core.set_enabled(PortId(2), false, now, &mut acts);
    let mut ks = KernelSwitch::load(&cfg).expect("the program loads");
    let ifindex = |i: usize| if i == 2 { 0 } else { 100 + i as u32 };
    ks.sync(&core, ifindex, |_| false).unwrap();
    let cases = [
        (0usize, frame(H1, H0)),
        (1, frame(H0, H1)),
        (0, frame(BCAST, H0)),
        // To what was learned on port 2 before it went: flushed with it.
        (0, frame(H2, H0)),
    ];
    let mut decided = 0;
    for (p, f) in cases {
        acts.clear();
        core.receive(PortId(p as u16), &f, now, &mut acts);
        let want = sent_ports(&acts);
        assert!(!want.contains(&2), "the core sent to its disabled port");
        ks.sync(&core, ifindex, |_| false).unwrap();
        match ks.test_decide(p, &f).unwrap() {
            Verdict::Userspace => {}
            Verdict::Dropped => panic!("the program dropped {f:02x?}; the core sent {want:?}"),
            Verdict::Sent(s) => {
                decided += 1;
                let got: Vec<u16> = s.iter().map(|&(q, _)| q).collect();
                assert!(!got.contains(&2), "the program sent to the retired port");
                assert_eq!(got, want, "{f:02x?} from port {p}");
            }
        }
    }
    // Known unicast between the ports left stays in the kernel.
    assert!(decided >= 2, "the program decided {decided} of 4 frames");
}
