//! The switch core alone, no I/O: frames per second for learned unicast,
//! broadcast flooding and unknown unicast, fed real Ethernet/IPv4/UDP
//! frames (64-byte payload), and the heap a switch uses with 100,000
//! learned MACs (counted by a wrapping allocator). Prints JSON lines;
//! `bench/switch.sh` puts them in the table.
//!
//!   cargo run --release -p weft-bench --bin swcore [-- SECONDS]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weft_switch::{Actions, Instant as SwInstant, PortConfig, PortId, Switch, SwitchConfig};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: p came from System.alloc with l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: p came from System with l.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4 header (checksum not checked by a switch), UDP, 64 bytes.
    f.extend_from_slice(&[
        0x45, 0, 0, 92, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 72, 0, 0]);
    f.resize(14 + 20 + 8 + 64, 0x5a);
    f
}

fn mac(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0, b[0], b[1], b[2], b[3]]
}

fn switch(ports: usize, fdb: usize) -> Switch {
    let mut c = SwitchConfig::new(
        "02:00:00:00:00:fe".parse().unwrap(),
        vec![PortConfig::access(1).edge(); ports],
    );
    c.fdb_max_entries = fdb;
    let mut sw = Switch::new(c);
    let mut out = Actions::new();
    // Edge ports forward once the core has started.
    sw.tick(SwInstant::from_secs(1), &mut out);
    sw
}

/// Frames/s over `secs`, cycling through `input` (port, frame); checks each
/// frame produced `expect` outputs.
fn run(sw: &mut Switch, input: &[(PortId, Vec<u8>)], expect: usize, secs: f64) -> f64 {
    let mut out = Actions::new();
    let now = SwInstant::from_secs(2);
    // Warm up: learn, size the buffers.
    for (p, f) in input {
        sw.receive(*p, f, now, &mut out);
    }
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while t0.elapsed() < limit {
        for _ in 0..1000 {
            for (p, f) in input {
                sw.receive(*p, black_box(f), now, &mut out);
                assert_eq!(out.len(), expect, "frame not forwarded as expected");
                black_box(out.as_slice());
            }
            n += input.len() as u64;
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let (a, b) = (mac(1), mac(2));

    let mut sw = switch(2, 4096);
    let uni = vec![(PortId(0), frame(b, a)), (PortId(1), frame(a, b))];
    let fps = run(&mut sw, &uni, 1, secs);
    println!("{{\"case\": \"learned unicast, 2 ports\", \"fps\": {fps:.0}}}");

    let mut sw = switch(4, 4096);
    let bc = vec![(PortId(0), frame([0xff; 6], a))];
    let fps = run(&mut sw, &bc, 3, secs);
    println!("{{\"case\": \"broadcast flood, 4 ports\", \"fps\": {fps:.0}}}");

    let mut sw = switch(4, 4096);
    let unk = vec![(PortId(0), frame(mac(99), a))];
    let fps = run(&mut sw, &unk, 3, secs);
    println!("{{\"case\": \"unknown unicast flood, 4 ports\", \"fps\": {fps:.0}}}");

    // Memory: 100,000 sources learned on a switch whose table allows them.
    const MACS: u32 = 100_000;
    let before = LIVE.load(Ordering::Relaxed);
    let mut sw = switch(2, 200_000);
    let empty = LIVE.load(Ordering::Relaxed) - before;
    let mut out = Actions::new();
    let mut f = frame([0xff; 6], a);
    for i in 0..MACS {
        f[6..12].copy_from_slice(&mac(1000 + i));
        sw.receive(PortId(0), &f, SwInstant::from_secs(2), &mut out);
    }
    assert_eq!(sw.fdb().len(), MACS as usize);
    let full = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{{\"case\": \"memory\", \"macs\": {MACS}, \"empty_bytes\": {empty}, \"bytes\": {full}, \"bytes_per_mac\": {:.1}}}",
        (full - empty) as f64 / f64::from(MACS)
    );
    // Lookups with the table full: learned unicast among 100,000 entries.
    let uni = vec![
        (PortId(0), frame(mac(1000 + 7), mac(1000 + 70_000))),
        (PortId(1), frame(mac(1000 + 70_000), mac(1000 + 7))),
    ];
    let fps = run(&mut sw, &uni, 1, secs);
    println!("{{\"case\": \"learned unicast, 100000 MACs in the table\", \"fps\": {fps:.0}}}");
    drop(sw);
}
