//! `weft capture` through the real binary, in small labs; every file is
//! read back with tshark and with the pcap-parser crate.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Lab;
use pcap_parser::pcapng::Block;

const VETH: &str = r#"
name = "cap"
[nodes.ns1.interfaces.veth0]
addresses = ["10.1.1.2/24"]
[nodes.ns2.interfaces.veth1]
addresses = ["10.1.1.3/24"]
[[links]]
endpoints = ["ns1:veth0", "ns2:veth1"]
"#;

/// Start `weft capture` and wait until its sockets are bound (it says so
/// on stderr), so nothing sent afterwards can be missed.
fn start(lab: &Lab, args: &[&str], stdout: Stdio) -> Child {
    start_watched(lab, args, stdout).0
}

fn sigint(c: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_ok(mut c: Child, secs: u64) {
    let t = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            assert!(s.success(), "weft capture exited with {s}");
            return;
        }
        if t.elapsed() > Duration::from_secs(secs) {
            let _ = c.kill();
            panic!("weft capture did not stop within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (interface names with link types, packets as (interface, bytes, ts ns)).
type Parsed = (Vec<(String, u16)>, Vec<(u32, Vec<u8>, u64)>);

fn parse_pcapng(data: &[u8]) -> Parsed {
    let (rest, cap) = pcap_parser::parse_pcapng(data).expect("pcapng parses");
    assert!(rest.is_empty(), "{} trailing bytes", rest.len());
    assert_eq!(cap.sections.len(), 1);
    let mut ifs = Vec::new();
    let mut pkts = Vec::new();
    for b in &cap.sections[0].blocks {
        match b {
            Block::InterfaceDescription(i) => {
                let name = i
                    .options
                    .iter()
                    .find(|o| o.code.0 == 2)
                    // pcap-parser hands the value with its padding.
                    .map(|o| {
                        String::from_utf8_lossy(o.value())
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .expect("if_name");
                assert_eq!(i.if_tsresol, 9, "nanosecond timestamps");
                ifs.push((name, i.linktype.0 as u16));
            }
            Block::EnhancedPacket(e) => {
                let ts = ((e.ts_high as u64) << 32) | e.ts_low as u64;
                pkts.push((e.if_id, e.data[..e.caplen as usize].to_vec(), ts));
            }
            _ => {}
        }
    }
    (ifs, pkts)
}

/// tshark's view: one line per packet, `interface<TAB>fields...`.
fn tshark(file: &std::path::Path, fields: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-r".to_string(),
        file.display().to_string(),
        "-T".into(),
        "fields".into(),
    ];
    for f in fields {
        args.push("-e".into());
        args.push(f.to_string());
    }
    let o = Command::new("tshark").args(&args).output().unwrap_or_else(|e| {
        panic!("tshark is needed (apt-get install tshark; the README's test command installs it): {e}")
    });
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn is_echo(frame: &[u8], ty: u8) -> bool {
    frame.len() > 34 && frame[12..14] == [8, 0] && frame[23] == 1 && frame[34] == ty
}

#[test]
fn ping_on_both_ends_of_a_veth() {
    let lab = Lab::from_text("capv", VETH);
    lab.up();
    let file = lab.file.parent().unwrap().join("ping.pcapng");
    let c = start(
        &lab,
        &["link:ns1:veth0", "-w", file.to_str().unwrap()],
        Stdio::null(),
    );
    assert!(lab.ping("ns1", "10.1.1.3", None));
    assert!(lab.ping("ns1", "10.1.1.3", None));
    std::thread::sleep(Duration::from_millis(100));
    sigint(&c);
    wait_ok(c, 30);

    let (ifs, pkts) = parse_pcapng(&std::fs::read(&file).unwrap());
    assert_eq!(
        ifs,
        [("ns1:veth0".to_string(), 1), ("ns2:veth1".to_string(), 1)]
    );
    for (id, ty) in [(0, 8), (1, 8), (0, 0), (1, 0)] {
        let n = pkts
            .iter()
            .filter(|(i, f, _)| *i == id && is_echo(f, ty))
            .count();
        assert_eq!(n, 2, "echo type {ty} on interface {id}: {pkts:?}");
    }
    // Each end saw the ARP exchange once.
    let arps = pkts.iter().filter(|(_, f, _)| f[12..14] == [8, 6]).count();
    assert_eq!(arps, 4);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(pkts
        .iter()
        .all(|(_, _, ts)| *ts < now && now - ts < 60_000_000_000));
    assert!(pkts.windows(2).all(|w| w[0].2 <= w[1].2), "time order");

    let lines = tshark(&file, &["frame.interface_name", "icmp.type", "ip.src"]);
    let mut echo: Vec<&str> = lines
        .iter()
        .map(|l| l.as_str())
        .filter(|l| l.contains("\t8\t") || l.contains("\t0\t"))
        .collect();
    echo.sort();
    assert_eq!(
        echo,
        [
            "ns1:veth0\t0\t10.1.1.3",
            "ns1:veth0\t0\t10.1.1.3",
            "ns1:veth0\t8\t10.1.1.2",
            "ns1:veth0\t8\t10.1.1.2",
            "ns2:veth1\t0\t10.1.1.3",
            "ns2:veth1\t0\t10.1.1.3",
            "ns2:veth1\t8\t10.1.1.2",
            "ns2:veth1\t8\t10.1.1.2",
        ]
    );
}

/// Send UDP datagrams from a node for `d`, and at least 40 of them (a
/// loaded machine may oversleep the 5 ms between them), on a thread in its
/// namespace.
fn udp_flow(lab: &Lab, node: &str, to: &'static str, d: Duration) -> std::thread::JoinHandle<u32> {
    let ns = lab.netns(node);
    std::thread::spawn(move || {
        weft_sys::netns::run_in_named(&ns, move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            let t = Instant::now();
            let mut n = 0;
            while (t.elapsed() < d || n < 40) && t.elapsed() < Duration::from_secs(30) {
                if s.send_to(b"noise", to).is_ok() {
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        })
        .unwrap()
    })
}

#[test]
fn filter_keeps_only_icmp_while_udp_flows() {
    let lab = Lab::from_text("capf", VETH);
    lab.up();
    let file = lab.file.parent().unwrap().join("icmp.pcapng");
    let all = lab.file.parent().unwrap().join("all.pcapng");
    let c = start(
        &lab,
        &["ns2:veth1", "-w", file.to_str().unwrap(), "icmp"],
        Stdio::null(),
    );
    let c_all = start(
        &lab,
        &["ns2:veth1", "-w", all.to_str().unwrap()],
        Stdio::null(),
    );
    let flow = udp_flow(&lab, "ns1", "10.1.1.3:9", Duration::from_millis(600));
    std::thread::sleep(Duration::from_millis(200));
    assert!(lab.ping("ns1", "10.1.1.3", None));
    let sent = flow.join().unwrap();
    assert!(sent > 20);
    std::thread::sleep(Duration::from_millis(100));
    sigint(&c);
    sigint(&c_all);
    wait_ok(c, 30);
    wait_ok(c_all, 30);

    let (_, pkts) = parse_pcapng(&std::fs::read(&file).unwrap());
    let protos = tshark(&file, &["ip.proto"]);
    assert!(!pkts.is_empty());
    // The echo request and reply, and the port-unreachable errors the UDP
    // flow provokes (ICMP too); never a UDP datagram itself.
    // (tshark lists the quoted UDP header of an ICMP error as "1,17".)
    assert!(
        protos.iter().all(|p| p.split(',').next() == Some("1")),
        "{protos:?}"
    );
    assert!(pkts
        .iter()
        .all(|(_, f, _)| f[12..14] == [8, 0] && f[23] == 1));
    assert!(pkts.iter().any(|(_, f, _)| is_echo(f, 8)));
    assert!(pkts.iter().any(|(_, f, _)| is_echo(f, 0)));
    // Without the filter the same interface did carry the UDP flow.
    let udp = tshark(&all, &["udp.dstport"])
        .iter()
        .filter(|l| *l == "9")
        .count();
    assert!(
        udp as u32 >= sent / 2,
        "{udp} of {sent} datagrams seen unfiltered"
    );
}

#[test]
fn stdout_stream_is_flushed_per_packet() {
    let lab = Lab::from_text("caps", VETH);
    lab.up();
    let mut c = start(&lab, &["ns1:veth0", "-w", "-", "icmp"], Stdio::piped());
    let mut out = c.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut all = Vec::new();
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    let _ = tx.send(all.clone());
                }
            }
        }
    });
    assert!(lab.ping("ns1", "10.1.1.3", None));
    // While weft still runs, the reader already has both packets.
    let t = Instant::now();
    let mut got = Vec::new();
    while t.elapsed() < Duration::from_secs(20) {
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
            got = b;
            // A read may end inside a block: wait for a whole stream.
            let whole = matches!(pcap_parser::parse_pcapng(&got), Ok((rest, _)) if rest.is_empty());
            if whole && parse_pcapng(&got).1.len() == 2 {
                break;
            }
        }
    }
    assert!(c.try_wait().unwrap().is_none(), "weft capture ended early");
    let (ifs, pkts) = parse_pcapng(&got);
    assert_eq!(ifs, [("ns1:veth0".to_string(), 1)]);
    assert_eq!(pkts.len(), 2, "both packets arrive before weft stops");
    sigint(&c);
    wait_ok(c, 30);
}

#[test]
fn vlan_tag_is_put_back_and_count_stops() {
    let lab = Lab::from_text("capq", VETH);
    lab.up();
    let file = lab.file.parent().unwrap().join("vlan.pcapng");
    let c = start(
        &lab,
        &[
            "ns2:veth1",
            "-w",
            file.to_str().unwrap(),
            "-c",
            "1",
            "vlan",
            "100",
        ],
        Stdio::null(),
    );
    // A tagged broadcast frame, injected on the other end; veth1's receive
    // path moves the tag into the packet's metadata.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 9, 0x81, 0x00, 0x00, 100, 0x88, 0xb5]);
    frame.extend_from_slice(b"weft vlan test payload, padded to minimum");
    let other = frame.clone();
    let ns = weft_sys::netns::open(&lab.netns("ns1")).unwrap();
    {
        use std::os::fd::AsFd;
        let s = weft_sys::packet::open_in(ns.as_fd(), "veth0", None).unwrap();
        // First a frame of VLAN 7, which the filter drops.
        let mut f7 = other.clone();
        f7[15] = 7;
        s.send(&f7).unwrap();
        s.send(&frame).unwrap();
    }
    wait_ok(c, 30);
    let (_, pkts) = parse_pcapng(&std::fs::read(&file).unwrap());
    assert_eq!(pkts.len(), 1);
    assert_eq!(
        pkts[0].1, frame,
        "the frame as it was on the wire, tag included"
    );
    let l = tshark(&file, &["vlan.id", "vlan.etype"]);
    assert_eq!(l, ["100\t0x88b5"]);
}

#[test]
fn bad_points_and_filters_are_refused() {
    let lab = Lab::from_text("capb", VETH);
    lab.up();
    for (args, want) in [
        (vec!["ns3:veth0"], "no node ns3"),
        (vec!["ns1:eth0"], "node ns1: interface eth0 is not there"),
        (vec!["ns1:veth0", "port", "x"], "not a port number"),
        (vec!["icmp"], "name at least one capture point"),
    ] {
        let mut a = vec!["capture", lab.name.as_str()];
        a.extend(args.iter());
        let o = lab.run(&a);
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn a_bridge_node_name_captures_every_port() {
    let lab = Lab::example("capbr", "bridge.toml");
    lab.up();
    let file = lab.file.parent().unwrap().join("br.pcapng");
    let c = start(
        &lab,
        &["br0", "-w", file.to_str().unwrap(), "icmp"],
        Stdio::null(),
    );
    assert!(lab.ping("ns1", "192.168.50.2", None));
    std::thread::sleep(Duration::from_millis(100));
    sigint(&c);
    wait_ok(c, 30);
    let (ifs, pkts) = parse_pcapng(&std::fs::read(&file).unwrap());
    let names: Vec<&str> = ifs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["br0:br-tap1", "br0:br-tap2"]);
    // The request enters at br-tap1 and leaves at br-tap2; the reply back.
    for id in [0, 1] {
        for ty in [8, 0] {
            assert_eq!(
                pkts.iter()
                    .filter(|(i, f, _)| *i == id && is_echo(f, ty))
                    .count(),
                1
            );
        }
    }
}

/// [`start`], with the rest of its stderr lines handed over one by one
/// (and shown, for a failing test).
fn start_watched(
    lab: &Lab,
    args: &[&str],
    stdout: Stdio,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut c = lab
        .weft()
        .arg("capture")
        .arg(&lab.name)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "weft capture said: {line}");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stderr so the child never blocks on it, read or not.
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            eprintln!("{l}");
            let _ = tx.send(l);
        }
    });
    (c, rx)
}

/// The next stderr line that contains `what` (bounded by a generous wait).
fn said(rx: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(e) => panic!("weft capture never said {what:?}: {e}"),
        }
    }
}

#[test]
fn an_interface_that_goes_down_or_is_made_anew_is_captured_on_and_said() {
    let v1 = r#"
name = "cap"
[nodes.ns1.interfaces.veth0]
addresses = ["10.1.1.2/24"]
[nodes.ns2.interfaces.veth1]
addresses = ["10.1.1.3/24"]
[nodes.ns3]
[[links]]
endpoints = ["ns1:veth0", "ns2:veth1"]
"#;
    // The same veth0 cabled to another node: a live edit makes it anew.
    let v2 = r#"
name = "cap"
[nodes.ns1.interfaces.veth0]
addresses = ["10.1.1.2/24"]
[nodes.ns2]
[nodes.ns3.interfaces.veth2]
addresses = ["10.1.1.4/24"]
[[links]]
endpoints = ["ns1:veth0", "ns3:veth2"]
"#;
    let lab = Lab::from_text("capre", v1);
    lab.up();
    let file = lab.file.parent().unwrap().join("re.pcapng");
    let (c, rx) = start_watched(
        &lab,
        &["ns1:veth0", "-w", file.to_str().unwrap(), "icmp"],
        Stdio::null(),
    );
    // Stopped, the capture reads the ping's packets only after the
    // kernel's word that veth0 went down: they still count before it.
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    assert!(lab.ping("ns1", "10.1.1.3", None));
    lab.ip("ns1", &["link", "set", "veth0", "down"]);
    signal("-CONT");
    let l = said(&rx, "ns1:veth0 went down after ");
    let before: u64 = l
        .split("went down after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{l}"));
    assert_eq!(before, 2, "the echo and its reply: {l}");
    lab.ip("ns1", &["link", "set", "veth0", "up"]);
    assert!(lab
        .ping_within("ns1", "10.1.1.3", Duration::from_secs(20))
        .is_some());
    said(&rx, "ns1:veth0 is up again");

    lab.rewrite(v2);
    lab.up();
    said(&rx, "ns1:veth0 went away after ");
    said(&rx, "ns1:veth0 is there again");
    assert!(lab
        .ping_within("ns1", "10.1.1.4", Duration::from_secs(20))
        .is_some());
    std::thread::sleep(Duration::from_millis(100));
    sigint(&c);
    let end = said(&rx, "packet(s) captured (stopped)");
    wait_ok(c, 30);

    let (ifs, pkts) = parse_pcapng(&std::fs::read(&file).unwrap());
    assert_eq!(
        ifs,
        [("ns1:veth0".to_string(), 1)],
        "one block for the point"
    );
    assert!(end.contains(&format!(" {} packet(s)", pkts.len())), "{end}");
    let to = |dst: [u8; 4]| {
        pkts.iter()
            .filter(|(_, f, _)| is_echo(f, 8) && f[30..34] == dst)
            .count()
    };
    assert!(
        to([10, 1, 1, 3]) >= 2,
        "before and after the down: {pkts:?}"
    );
    assert!(to([10, 1, 1, 4]) >= 1, "on the new veth0: {pkts:?}");

    // Taking the lab down ends a capture on it, the file complete.
    let (c, rx) = start_watched(
        &lab,
        &["ns1:veth0", "-w", file.to_str().unwrap()],
        Stdio::null(),
    );
    lab.ok(&["down", &lab.name]);
    said(&rx, "ns1:veth0: node ns1 is gone (the lab was taken down)");
    said(&rx, "packet(s) captured (every node captured on is gone");
    wait_ok(c, 30);
    parse_pcapng(&std::fs::read(&file).unwrap());
}
