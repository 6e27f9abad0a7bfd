//! One-way delay at a fixed packet rate, for `bench/conditions.sh`: sends
//! `--pps` UDP datagrams a second for `--secs` from a socket in namespace
//! `--from` to `--dst` (a socket this program binds in namespace `--to`),
//! each carrying its send time, and prints what arrived and the one-way
//! delays. Sender and receiver are threads of one process, so both read
//! the same monotonic clock and the delay needs no clock sync.
//!
//! Output, one line: `sent N received N delay_us min M p50 M p90 M p99 M max M`.
//! Needs root (setns).

use std::fs::File;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// Namespace (name under /run/netns) of the sender.
    #[arg(long)]
    from: String,
    /// Namespace of the receiver.
    #[arg(long)]
    to: String,
    /// Receiver address and port (an address of the receiver's namespace).
    #[arg(long)]
    dst: SocketAddrV4,
    #[arg(long, default_value_t = 10_000)]
    pps: u32,
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
}

fn enter(ns: &str) {
    let f =
        File::open(format!("/run/netns/{ns}")).unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    // SAFETY: setns on an fd we hold open; affects this thread only.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn main() {
    let cli = Cli::parse();
    let t0 = Instant::now();
    let to = cli.to.clone();
    let dst = cli.dst;
    let rx = std::thread::spawn(move || {
        enter(&to);
        UdpSocket::bind(dst).unwrap_or_else(|e| panic!("bind {dst}: {e}"))
    })
    .join()
    .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut d = Vec::new();
        while let Ok(n) = rx.recv(&mut buf) {
            let now = t0.elapsed().as_nanos() as u64;
            if n >= 8 {
                let sent = u64::from_be_bytes(buf[..8].try_into().unwrap());
                d.push(now.saturating_sub(sent));
            }
        }
        d
    });
    let from = cli.from.clone();
    let (pps, secs) = (cli.pps, cli.secs);
    let sent = std::thread::spawn(move || {
        enter(&from);
        let tx = UdpSocket::bind("0.0.0.0:0").unwrap();
        let total = (f64::from(pps) * secs) as u64;
        let gap = Duration::from_secs_f64(1.0 / f64::from(pps));
        let start = Instant::now();
        for i in 0..total {
            let due = start + gap * i as u32;
            // Sleep most of the gap, spin the rest: the rate stays even.
            while let Some(left) = due.checked_duration_since(Instant::now()) {
                if left > Duration::from_micros(200) {
                    std::thread::sleep(left - Duration::from_micros(150));
                } else {
                    std::hint::spin_loop();
                }
            }
            let ts = t0.elapsed().as_nanos() as u64;
            let mut msg = [0u8; 32];
            msg[..8].copy_from_slice(&ts.to_be_bytes());
            let _ = tx.send_to(&msg, dst);
        }
        total
    })
    .join()
    .unwrap();
    let mut d = receiver.join().unwrap();
    d.sort_unstable();
    let q = |p: f64| {
        if d.is_empty() {
            0.0
        } else {
            d[((d.len() - 1) as f64 * p) as usize] as f64 / 1e3
        }
    };
    println!(
        "sent {sent} received {} delay_us min {:.1} p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        d.len(),
        q(0.0),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}
