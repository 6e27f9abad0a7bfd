//! Every frame size a port's MTU allows crosses weft's userspace switch
//! whole, whichever way the datapath sends it: AF_XDP (plain frames that
//! fit a UMEM chunk), `sendmmsg` (larger ones, offloaded ones, every
//! frame with `WEFT_SWITCH_XSK=off`), and `sendmmsg` while a capture runs
//! on the sending port. The ports have MTU 9000, so frames below, at and
//! above the 2 KiB chunk go through.

mod common;
use common::{tcp_transfer, Dump, Lab};

use std::process::Command;
use std::time::{Duration, Instant};

/// Generous bound for what a loaded machine does late (ARP, the capture
/// check, a ping answered).
const PATIENCE: Duration = Duration::from_secs(30);

/// Ethernet frame sizes sent: the smallest, a full 1500-byte MTU, sizes
/// around the end of a 2 KiB receive ring slot (its header and the
/// offload header take some: larger frames are read from the socket's
/// queue instead), the UMEM chunk and one byte over, 2100, and a full
/// 9000-byte MTU.
const SIZES: [usize; 12] = [
    60, 1514, 1950, 1975, 1990, 2000, 2025, 2048, 2049, 2100, 4000, 9014,
];

fn lab_text() -> String {
    r#"name = "x"

[nodes.sw0]
kind = "switch"

[nodes.ns1.interfaces.eth0]
addresses = ["10.62.0.1/24"]

[nodes.ns2.interfaces.eth0]
addresses = ["10.62.0.2/24"]

[[links]]
endpoints = ["ns1:eth0", "sw0:p1"]
mtu = 9000

[[links]]
endpoints = ["ns2:eth0", "sw0:p2"]
mtu = 9000
"#
    .to_string()
}

/// `weft up` with every frame through userspace (no kernel fast path)
/// and AF_XDP sends on or off.
fn up(lab: &Lab, xsk: bool) {
    let mut c = lab.weft();
    c.env("WEFT_SWITCH_FASTPATH", "off");
    if xsk {
        c.env_remove("WEFT_SWITCH_XSK");
    } else {
        c.env("WEFT_SWITCH_XSK", "off");
    }
    let o = c.args(["up", lab.file.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn send_path(lab: &Lab) -> String {
    lab.status_json()[0]["switches"][0]["send_path"]
        .as_str()
        .unwrap_or_else(|| panic!("no send_path: is the datapath running?"))
        .to_string()
}

/// Frames sw0's datapath received on its ports.
fn userspace_rx(lab: &Lab) -> u64 {
    lab.status_json()[0]["switches"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rx_frames"].as_u64().unwrap())
        .sum()
}

/// AF_XDP sockets open in a node's namespace (the kernel counts each
/// protocol's sockets per namespace in /proc/net/protocols).
fn xdp_sockets(lab: &Lab, node: &str) -> u64 {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns(node),
            "cat",
            "/proc/net/protocols",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("XDP "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no XDP line in /proc/net/protocols: {text}"))
}

fn datapath_pid(lab: &Lab) -> u32 {
    let p = lab.state.join("labs").join(&lab.name).join("datapath.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["pid"].as_u64().unwrap() as u32
}

/// Alive and not a zombie (this machine's init may not reap).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let rest = &s[s.rfind(')').unwrap() + 1..];
            rest.split_whitespace().next() != Some("Z")
        })
        .unwrap_or(false)
}

fn wait_dead(pid: u32) {
    let t0 = Instant::now();
    while alive(pid) {
        assert!(t0.elapsed() < PATIENCE, "datapath {pid} still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One IPv4 ping of exactly `frame` bytes on the wire (DF set, so
/// nothing is fragmented), repeated until answered or PATIENCE passes.
fn ping_frame(lab: &Lab, frame: usize) {
    let payload = (frame - 14 - 20 - 8).to_string();
    let t0 = Instant::now();
    loop {
        let o = Command::new("ip")
            .args(["netns", "exec", &lab.netns("ns1"), "ping", "-n", "-q"])
            .args([
                "-c",
                "1",
                "-W",
                "2",
                "-M",
                "do",
                "-s",
                &payload,
                "10.62.0.2",
            ])
            .output()
            .unwrap();
        if o.status.success() {
            return;
        }
        assert!(
            t0.elapsed() < PATIENCE,
            "a {frame}-byte frame never crossed the switch (send path: {}): {}{}",
            send_path(lab),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Every size, then TCP (64 KiB GSO frames and checksum offload, which
/// take `sendmmsg` with their offload header): every byte arrives.
fn all_sizes_and_tcp(lab: &Lab) {
    let before = userspace_rx(lab);
    for f in SIZES {
        ping_frame(lab, f);
    }
    // Requests and replies all through the datapath (no fast path).
    let seen = userspace_rx(lab) - before;
    assert!(
        seen >= 2 * SIZES.len() as u64,
        "only {seen} frames through userspace"
    );
    let n = 20_000_000;
    let got = tcp_transfer(lab, "ns2", "10.62.0.2", "ns1", n);
    assert_eq!(got, n, "TCP through the switch lost bytes");
}

#[test]
fn frames_of_every_size_cross_with_af_xdp_sends() {
    let lab = Lab::from_text("frxsk", &lab_text());
    up(&lab, true);
    let how = send_path(&lab);
    if how != "AF_XDP" {
        // A kernel or sandbox without AF_XDP: the same frames then take
        // sendmmsg, which the next test covers.
        assert!(how.contains("AF_XDP refused"), "{how}");
        eprintln!("SKIPPED the AF_XDP half: {how}");
    }
    all_sizes_and_tcp(&lab);
    // Nothing went the wrong way on the way.
    assert_eq!(send_path(&lab), how);
    if how != "AF_XDP" {
        return;
    }
    // One AF_XDP socket per port; a datapath killed outright leaves none
    // behind, and the next `up` gets both queues again (nothing holds
    // them), and then sends every size as before.
    assert_eq!(xdp_sockets(&lab, "sw0"), 2);
    let pid = datapath_pid(&lab);
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    wait_dead(pid);
    assert_eq!(xdp_sockets(&lab, "sw0"), 0);
    up(&lab, true);
    assert_ne!(datapath_pid(&lab), pid);
    assert_eq!(send_path(&lab), "AF_XDP");
    assert_eq!(xdp_sockets(&lab, "sw0"), 2);
    all_sizes_and_tcp(&lab);
    let pid = datapath_pid(&lab);
    lab.ok(&["down", &lab.name]);
    wait_dead(pid);
}

#[test]
fn frames_of_every_size_cross_with_sendmmsg_only() {
    let lab = Lab::from_text("frmmsg", &lab_text());
    up(&lab, false);
    let how = send_path(&lab);
    assert!(how.contains("WEFT_SWITCH_XSK=off"), "{how}");
    all_sizes_and_tcp(&lab);
}

/// Waits until `dump` captured an echo request of `frame` bytes.
fn wait_request(dump: &Dump, frame: usize) {
    let t0 = Instant::now();
    let want = format!("length {frame}:");
    while !dump
        .lines()
        .iter()
        .any(|l| l.contains(&want) && l.contains("echo request"))
    {
        assert!(
            t0.elapsed() < PATIENCE,
            "the capture never saw the {frame}-byte frame the switch sent: {:#?}",
            dump.lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn frames_of_every_size_cross_and_are_captured_while_a_capture_runs() {
    let lab = Lab::from_text("frcap", &lab_text());
    up(&lab, true);
    let before = send_path(&lab);
    let dump = Dump::start(&lab, "sw0", "p2", &["icmp"]);
    if before == "AF_XDP" {
        // The datapath looks for captures at its carrier checks: p2 then
        // sends with sendmmsg, which the capture sees.
        let t0 = Instant::now();
        while !send_path(&lab).contains("p2 AF_PACKET (a capture is running") {
            assert!(
                t0.elapsed() < PATIENCE,
                "p2 still sends by AF_XDP under a capture: {}",
                send_path(&lab)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        eprintln!("SKIPPED the switch to sendmmsg under a capture: {before}");
    }
    for f in SIZES {
        ping_frame(&lab, f);
        wait_request(&dump, f);
    }
    let n = 20_000_000;
    assert_eq!(tcp_transfer(&lab, "ns2", "10.62.0.2", "ns1", n), n);
    drop(dump);
    if before == "AF_XDP" {
        let t0 = Instant::now();
        while send_path(&lab) != "AF_XDP" {
            assert!(
                t0.elapsed() < PATIENCE,
                "p2 never went back to AF_XDP after the capture: {}",
                send_path(&lab)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
