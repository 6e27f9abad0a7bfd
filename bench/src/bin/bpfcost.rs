//! The tc BPF switch's own cost per frame (crates/ebpf, docs/switch.md):
//! the kernel's timer around `BPF_PROG_TEST_RUN` with many repeats, for
//! the classifier and the socket filter that both run on every frame a
//! port receives. No device is involved (redirects are decided, not
//! carried out), so this is the programs' work alone: parsing, map
//! lookups, counters. Prints JSON lines; `bench/switch.sh` puts them in
//! its output.
//!
//!   cargo build --release -p weft-bench && sudo target/release/bpfcost [REPEAT]

use weft_datapath::bpfpath::KernelSwitch;
use weft_switch::{Actions, Instant, PortConfig, PortId, Switch, SwitchConfig};
use weft_wire::testing::{frame, mac};
use weft_wire::MacAddr;

/// An Ethernet/IPv4/UDP frame with a 64-byte payload.
const PAYLOAD: usize = 20 + 8 + 64;

fn main() {
    let repeat: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    if let Some(why) = weft_sys::bpf::unavailable() {
        eprintln!("bpfcost: {why}");
        std::process::exit(1);
    }
    // Two access ports of VLAN 10 and a trunk, as one switch of
    // bench/switch.sh's trunked lab, with a few hundred other MACs
    // learned so that the table is not trivially small.
    let cfg = SwitchConfig::new(
        mac(0xfe),
        vec![
            PortConfig::access(10).edge(),
            PortConfig::access(10).edge(),
            PortConfig::trunk([10, 20], None).edge(),
        ],
    );
    let mut core = Switch::new(cfg.clone());
    let mut ks = KernelSwitch::load(&cfg).expect("the programs load");
    let t = Instant::from_secs(1);
    let mut out = Actions::new();
    let a = frame(mac(2), mac(1), &[], PAYLOAD);
    core.receive(PortId(0), &a, t, &mut out);
    core.receive(PortId(1), &frame(mac(1), mac(2), &[], PAYLOAD), t, &mut out);
    for i in 0..200u8 {
        let m = MacAddr([2, 0, 0, 1, 0, i]);
        core.receive(PortId(2), &frame(mac(1), m, &[20], PAYLOAD), t, &mut out);
    }
    ks.sync(&core, |i| 100_000 + i as u32, |_| false).unwrap();
    let cases: [(&str, usize, Vec<u8>); 3] = [
        // Forwarded by the kernel, no tag change (the frame is not reset
        // between runs, so tag pushes and pops cannot be repeated).
        ("learned unicast, access to access", 0, a.clone()),
        // Left to userspace at the first check that fails.
        (
            "unknown destination (to userspace)",
            0,
            frame(mac(9), mac(1), &[], PAYLOAD),
        ),
        (
            "broadcast (to userspace)",
            0,
            frame(MacAddr::BROADCAST, mac(1), &[], PAYLOAD),
        ),
    ];
    for (name, port, f) in &cases {
        let tc = ks.classifier(*port).unwrap();
        let sk = ks.socket_filter(*port).unwrap();
        // Warm up, then take the best of three (the machine is shared).
        let _ = tc.test_run_repeat(f, repeat / 10);
        let best = |p: &weft_sys::bpf::Program| {
            (0..3)
                .map(|_| p.test_run_repeat(f, repeat).unwrap())
                .min_by_key(|r| r.1)
                .unwrap()
        };
        let (tc_ret, tc_ns) = best(tc);
        let (sk_ret, sk_ns) = best(sk);
        println!(
            "{{\"case\": \"{name}\", \"tc_ns\": {tc_ns}, \"tc_ret\": {tc_ret}, \"socket_ns\": {sk_ns}, \"socket_ret\": {sk_ret}, \"repeat\": {repeat}}}"
        );
    }
}
