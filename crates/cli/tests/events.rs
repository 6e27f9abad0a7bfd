//! `weft events` through the real binary: a test takes a link of an RSTP
//! ring down and up while reading `weft events --json`, and sees the port
//! role changes and topology changes in order, with timestamps.

mod common;
use common::{kept_events as kept, Kill, Lab};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `weft events LAB --json` running, its lines parsed on a thread; the
/// command ends when the guard is dropped.
fn follow(lab: &Lab) -> (Kill, mpsc::Receiver<Value>) {
    let mut child = lab
        .weft()
        .args(["events", &lab.name, "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    (Kill(child), rx)
}

/// `weft events LAB --json` as [`follow`] starts it, returned once it
/// follows: it prints a marker the test appends to the stream, so it
/// started reading before the marker was written, and its kernel poller
/// (which polls before it reads) has taken its baseline. Whatever it
/// printed up to the marker is dropped.
fn follow_ready(lab: &Lab) -> (Kill, mpsc::Receiver<Value>) {
    let (kill, rx) = follow(lab);
    let writer = weft_datapath::events::Writer::new(&lab.state.join("labs").join(&lab.name));
    let t0 = Instant::now();
    let mut n = 0u64;
    loop {
        // A marker written before the follower opened the stream is never
        // printed: write another until one is.
        writer.write(&[weft_datapath::events::Event::new("test.ready").with("n", n)]);
        let marker = |e: &Value| e["type"] == "test.ready" && e["n"] == n;
        if until(&rx, Duration::from_millis(500), marker)
            .last()
            .is_some_and(marker)
        {
            return (kill, rx);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "weft events printed no marker within 30 s"
        );
        n += 1;
    }
}

/// Events until one matches `done` (or `limit` passes).
fn until(rx: &mpsc::Receiver<Value>, limit: Duration, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    while let Some(left) = limit.checked_sub(t0.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(v) => {
                let stop = done(&v);
                got.push(v);
                if stop {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    got
}

fn find(evs: &[Value], kind: &str, node: &str, port: &str, to: &str) -> Option<usize> {
    evs.iter()
        .position(|e| e["type"] == kind && e["node"] == node && e["port"] == port && e["to"] == to)
}

#[test]
fn rstp_ring_link_down_and_up_shows_role_changes_and_topology_changes_in_order() {
    let lab = Lab::example("events", "switch-triangle.toml");
    lab.up();
    let (_kill, rx) = follow_ready(&lab);
    // Which end of s2-s3 blocks depends on the bridge ids (random MACs).
    let sws = lab.status_json()[0]["switches"].clone();
    let alternate: Vec<(String, String)> = sws
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["ports"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["role"] == "alternate")
                .map(move |p| {
                    (
                        s["name"].as_str().unwrap().to_string(),
                        p["name"].as_str().unwrap().to_string(),
                    )
                })
        })
        .collect();
    assert_eq!(alternate.len(), 1, "{sws}");
    let (bn, bp) = alternate[0].clone();
    assert!(
        (bn == "s2" && bp == "to-s3") || (bn == "s3" && bp == "to-s2"),
        "{bn}:{bp} blocks, not an end of s2-s3"
    );
    // s1 is the root; s3's root port is its link to s1 and one end of
    // s2-s3 blocks. Taking s1-s3 down makes s3 reach the root through s2.
    lab.ok(&["link", &lab.name, "s1", "s3", "down"]);
    let down = until(&rx, Duration::from_secs(10), |e| e["type"] == "link.down");
    lab.ok(&["link", &lab.name, "s1", "s3", "up"]);
    let up = until(&rx, Duration::from_secs(10), |e| e["type"] == "link.up");
    let show = |v: &[Value]| {
        v.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (d, u) = (show(&down), show(&up));
    for e in down.iter().chain(&up) {
        assert_eq!(e["v"], 1, "{e}");
        assert!(e["ts"].as_u64().unwrap() > 1_600_000_000_000, "{e}");
    }
    // Timestamps never go back.
    let ts: Vec<u64> = down
        .iter()
        .chain(&up)
        .map(|e| e["ts"].as_u64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{d}\n{u}");

    // Down: s3 loses its root port, its port to s2 becomes its root port,
    // the blocked end of s2-s3 starts forwarding, then the topology
    // change; all before the command said it was done.
    let lost = find(&down, "stp.role", "s3", "to-s1", "disabled").unwrap_or_else(|| panic!("{d}"));
    let new_root = find(&down, "stp.role", "s3", "to-s2", "root").unwrap_or_else(|| panic!("{d}"));
    let opened = down
        .iter()
        .position(|e| {
            e["type"] == "stp.role"
                && e["node"] == bn.as_str()
                && e["port"] == bp.as_str()
                && e["from"] == "alternate"
        })
        .unwrap_or_else(|| panic!("{bn}:{bp} stayed alternate:\n{d}"));
    let fwd = find(&down, "stp.state", &bn, &bp, "forwarding").unwrap_or_else(|| panic!("{d}"));
    let tc = down
        .iter()
        .position(|e| e["type"] == "stp.topology_change" && e["node"] == "s3")
        .unwrap_or_else(|| panic!("no topology change on s3:\n{d}"));
    let done = down.len() - 1;
    assert!(
        lost < new_root && new_root < tc && opened < fwd && fwd < done,
        "{d}"
    );
    assert_eq!(down[done]["a"], "s1:to-s3", "{d}");

    // Up: s3's port to s1 is its root port again, the same end of s2-s3
    // goes back to alternate and stops forwarding, with topology changes.
    let back = find(&up, "stp.role", "s3", "to-s1", "root").unwrap_or_else(|| panic!("{u}"));
    let alt = find(&up, "stp.role", &bn, &bp, "alternate").unwrap_or_else(|| panic!("{u}"));
    let blocked = find(&up, "stp.state", &bn, &bp, "discarding").unwrap_or_else(|| panic!("{u}"));
    let tc_up = up
        .iter()
        .position(|e| e["type"] == "stp.topology_change")
        .unwrap_or_else(|| panic!("{u}"));
    assert!(
        back < up.len() - 1 && alt <= blocked && tc_up < up.len() - 1,
        "{u}"
    );

    // What is kept replays with --since, the up and the link changes too.
    let (kept, all) = kept(&lab);
    let kinds: Vec<&Value> = all.iter().map(|e| &e["type"]).collect();
    for k in [
        "lab.up",
        "stp.role",
        "stp.topology_change",
        "link.down",
        "link.up",
    ] {
        assert!(kinds.iter().any(|x| *x == k), "no {k} kept: {kept}");
    }
    let text = lab.ok(&["events", &lab.name, "--since", "1h", "--no-follow"]);
    assert!(
        text.contains("s3:to-s1 stp.role root -> disabled"),
        "{text}"
    );
    lab.ok(&["down", &lab.name]);
}

/// Kernel bridges: `weft events` polls their ports' STP states and the
/// kernel links' carrier, records them in the stream, and prints them in
/// order: a port taken down goes disabled, and back up passes listening
/// and learning to forwarding (forward_delay 2 s in the example).
#[test]
fn kernel_bridge_port_states_and_carrier_are_in_the_stream() {
    let lab = Lab::example("kevents", "stp.toml");
    lab.up();
    let (_kill, rx) = follow_ready(&lab);
    lab.ok(&["link", &lab.name, "a", "br0", "down"]);
    let down = until(&rx, Duration::from_secs(10), |e| {
        e["type"] == "stp.state" && e["port"] == "a" && e["to"] == "disabled"
    });
    let d: Vec<String> = down.iter().map(|e| e.to_string()).collect();
    assert!(
        down.iter()
            .any(|e| e["type"] == "port.carrier" && e["node"] == "a" && e["up"] == false),
        "{d:#?}"
    );
    assert_eq!(down.last().unwrap()["kernel"], true, "{d:#?}");
    lab.ok(&["link", &lab.name, "a", "br0", "up"]);
    let up = until(&rx, Duration::from_secs(15), |e| {
        e["type"] == "stp.state" && e["port"] == "a" && e["to"] == "forwarding"
    });
    let states: Vec<&str> = up
        .iter()
        .filter(|e| e["type"] == "stp.state" && e["node"] == "br0" && e["port"] == "a")
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    let u: Vec<String> = up.iter().map(|e| e.to_string()).collect();
    assert_eq!(states.last(), Some(&"forwarding"), "{u:#?}");
    assert!(states.contains(&"learning"), "{u:#?}");
    let ts: Vec<u64> = down
        .iter()
        .chain(&up)
        .map(|e| e["ts"].as_u64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{d:#?} {u:#?}");
    // Kept: another reader sees them once.
    let (kept, all) = kept(&lab);
    let disabled = all
        .iter()
        .filter(|e| e["type"] == "stp.state" && e["to"] == "disabled")
        .count();
    assert_eq!(disabled, 1, "{kept}");
    lab.ok(&["down", &lab.name]);
}

/// A ring of three kernel bridges running 802.1D: b1 is the root, b2
/// (priority 8192) is designated on the b2-b3 segment, so b3's port to b2
/// blocks. `weft events` works out the kernel ports' roles from what the
/// kernel holds and sees topology changes from the bridges' flags.
const KERNEL_RING: &str = r#"
name = "kring"

[nodes.b1]
kind = "bridge"
stp = true
priority = 4096
forward_delay = 2
hello_time = 1
max_age = 6

[nodes.b2]
kind = "bridge"
stp = true
priority = 8192
forward_delay = 2
hello_time = 1
max_age = 6

[nodes.b3]
kind = "bridge"
stp = true
forward_delay = 2
hello_time = 1
max_age = 6

[[links]]
endpoints = ["b1:to-b2", "b2:to-b1"]
[[links]]
endpoints = ["b2:to-b3", "b3:to-b2"]
[[links]]
endpoints = ["b3:to-b1", "b1:to-b3"]
"#;

/// Kernel bridges: taking the root's link to b3 down, b3's root port goes
/// disabled and its blocked port becomes the root port and passes
/// listening and learning to forwarding; back up, the roles return and
/// the bridges flag a topology change; in order, with timestamps.
#[test]
fn kernel_bridge_ring_link_down_and_up_shows_roles_states_and_topology_changes() {
    let lab = Lab::from_text("serve2-kring", KERNEL_RING);
    lab.up();
    let st = lab.status_json();
    let role =
        |node: &str, iface: &str| common::iface_in(&st, node, iface).map(|i| i["stp_role"].clone());
    assert_eq!(role("b3", "to-b1"), Some("root".into()), "{st}");
    assert_eq!(role("b3", "to-b2"), Some("alternate".into()), "{st}");
    assert_eq!(role("b2", "to-b3"), Some("designated".into()), "{st}");
    let table = lab.ok(&["status", &lab.name]);
    assert!(table.contains("port of b3: alternate blocking"), "{table}");
    assert!(table.contains("root bridge"), "{table}");
    let drawn = lab.ok(&["graph", &lab.name]);
    assert!(drawn.contains("port of b3 (alternate blocking)"), "{drawn}");
    let (_kill, rx) = follow_ready(&lab);
    lab.ok(&["link", &lab.name, "b1", "b3", "down"]);
    let down = until(&rx, Duration::from_secs(20), |e| {
        e["type"] == "stp.state" && e["port"] == "to-b2" && e["to"] == "forwarding"
    });
    let d: Vec<String> = down.iter().map(|e| e.to_string()).collect();
    let at = |evs: &[Value], kind: &str, node: &str, port: &str, to: &str| {
        find(evs, kind, node, port, to).unwrap_or_else(|| {
            panic!(
                "no {kind} {node}:{port} -> {to} in {:#?}",
                evs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            )
        })
    };
    let link_down = down
        .iter()
        .position(|e| e["type"] == "link.down")
        .unwrap_or_else(|| panic!("{d:#?}"));
    let lost = at(&down, "stp.role", "b3", "to-b1", "disabled");
    let disabled = at(&down, "stp.state", "b3", "to-b1", "disabled");
    let new_root = at(&down, "stp.role", "b3", "to-b2", "root");
    let listening = at(&down, "stp.state", "b3", "to-b2", "listening");
    let learning = at(&down, "stp.state", "b3", "to-b2", "learning");
    let forwarding = at(&down, "stp.state", "b3", "to-b2", "forwarding");
    assert!(
        link_down < lost
            && lost < new_root
            && disabled < listening
            && listening < learning
            && learning < forwarding,
        "{d:#?}"
    );
    for e in &down[lost..] {
        if e["type"].as_str().unwrap().starts_with("stp.") {
            assert_eq!(e["kernel"], true, "{e}");
        }
    }
    // Forward delay is 2 s: learning and forwarding are that far apart,
    // give or take the poller's second.
    let ms = |i: usize| down[i]["ts"].as_u64().unwrap();
    assert!(ms(forwarding) - ms(learning) >= 1000, "{d:#?}");

    lab.ok(&["link", &lab.name, "b1", "b3", "up"]);
    let up = until(&rx, Duration::from_secs(20), |e| {
        e["type"] == "stp.state"
            && e["node"] == "b3"
            && e["port"] == "to-b1"
            && e["to"] == "forwarding"
    });
    let u: Vec<String> = up.iter().map(|e| e.to_string()).collect();
    let back = at(&up, "stp.role", "b3", "to-b1", "root");
    let alt = at(&up, "stp.role", "b3", "to-b2", "alternate");
    let blocked = at(&up, "stp.state", "b3", "to-b2", "blocking");
    let fwd = at(&up, "stp.state", "b3", "to-b1", "forwarding");
    // b3's port to b2 leaving forwarding is a topology change (b3 sees
    // it, then the root flags it to the whole tree).
    let tc = up[blocked..]
        .iter()
        .any(|e| e["type"] == "stp.topology_change" && e["kernel"] == true);
    assert!(back < fwd && alt <= blocked && tc, "{u:#?}");
    // The kernel's side is polled (its events carry the poll's time) and
    // merged with what weft itself wrote: each source is in order.
    for kernel in [true, false] {
        let ts: Vec<u64> = down
            .iter()
            .chain(&up)
            .filter(|e| (e["kernel"] == true) == kernel)
            .map(|e| e["ts"].as_u64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{d:#?} {u:#?}");
    }
    let text = lab.ok(&["events", &lab.name, "--since", "1h", "--no-follow"]);
    assert!(
        text.contains("b3:to-b2 stp.role alternate -> root kernel=true"),
        "{text}"
    );
    lab.ok(&["down", &lab.name]);
}

/// Tunnels: a tunnel process killed shows as `tunnel.down` on its end,
/// and restarted by `weft up` as `tunnel.up` with a handshake on both.
#[test]
fn tunnel_sessions_going_and_coming_back_are_in_the_stream() {
    let lab = Lab::example("tevents", "tunnel.toml");
    lab.up();
    let (_kill, rx) = follow_ready(&lab);
    let st = lab.status_json();
    let m1 = st[0]["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == "m1")
        .unwrap_or_else(|| panic!("no tunnel end on m1: {st}"))
        .clone();
    let pid = m1["pid"].as_u64().unwrap();
    // Our own `weft up` started it.
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    let down = until(&rx, Duration::from_secs(10), |e| {
        e["type"] == "tunnel.down" && e["node"] == "m1"
    });
    let d: Vec<String> = down.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        down.last().map(|e| e["type"].clone()),
        Some(Value::from("tunnel.down")),
        "{d:#?}"
    );
    lab.up();
    let up = until(&rx, Duration::from_secs(15), |e| {
        e["type"] == "tunnel.up" && e["node"] == "m1"
    });
    let u: Vec<String> = up.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        up.last().map(|e| e["type"].clone()),
        Some(Value::from("tunnel.up")),
        "{u:#?}"
    );
    let m2_handshake = |e: &Value| e["type"] == "tunnel.handshake" && e["node"] == "m2";
    let more = if up.iter().any(m2_handshake) {
        Vec::new()
    } else {
        until(&rx, Duration::from_secs(15), m2_handshake)
    };
    assert!(up.iter().chain(&more).any(m2_handshake), "{u:#?}");
    lab.ok(&["down", &lab.name]);
}

#[test]
fn a_quiet_up_records_its_plan_and_checks_too() {
    let lab = Lab::from_text(
        "quiet",
        "name = \"x\"\n[nodes.a.interfaces.e]\naddresses = [\"10.61.0.1/24\"]\n[nodes.b.interfaces.e]\naddresses = [\"10.61.0.2/24\"]\n[[links]]\nendpoints = [\"a:e\", \"b:e\"]\n[[checks]]\nfrom = \"a\"\nping = \"b\"\n",
    );
    let out = lab.ok(&["up", "-q", lab.file.to_str().unwrap()]);
    assert!(out.is_empty(), "{out}");
    let (kept, evs) = kept(&lab);
    assert!(
        evs.iter()
            .any(|e| e["type"] == "lab.up" && e["added"].as_u64() > Some(0)),
        "{kept}"
    );
    assert!(
        evs.iter().any(|e| e["type"] == "check" && e["ok"] == true),
        "{kept}"
    );
}

/// `weft events LAB | head -N` and `weft logs LAB NODE -f | head -N` end
/// once head has its lines, though nothing more is written (an idle lab,
/// a quiet service): before, each waited for its next line to be killed
/// by SIGPIPE. The bound is for a hang.
#[test]
fn followers_end_when_their_reader_goes_even_with_nothing_to_write() {
    let lab = Lab::from_text(
        "evpipe",
        "name = \"x\"\n[nodes.a.interfaces.eth0]\naddresses = [\"10.62.0.1/24\"]\n\
         [nodes.b.interfaces.eth0]\naddresses = [\"10.62.0.2/24\"]\n\
         [[links]]\nendpoints = [\"a:eth0\", \"b:eth0\"]\n\
         [nodes.a.services.s]\ncommand = [\"sh\", \"-c\", \"echo hello; exec sleep 600\"]\n",
    );
    lab.up();
    for (args, first) in [
        (
            vec!["events", lab.name.as_str(), "--since", "all"],
            "lab.up",
        ),
        (vec!["logs", lab.name.as_str(), "a:s", "-f"], "hello"),
    ] {
        let mut child = lab
            .weft()
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains(first), "{args:?}: {line}");
        drop(out);
        let t0 = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("weft {args:?} still ran 30 s after its reader went");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // `weft capture LAB a:eth0 icmp | head -1`: the link is quiet after
    // the one ping.
    let mut child = lab
        .weft()
        .args(["capture", &lab.name, "a:eth0", "icmp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    assert!((0..20).any(|_| lab.ping("a", "b", None)));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("ICMP echo"), "{line}");
    drop(out);
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weft capture still ran 30 s after its reader went");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
