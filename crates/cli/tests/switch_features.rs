//! Static MACs, port mirroring, impairment and runtime control of weft's
//! userspace switch, through the real binary.

mod common;
use common::Lab;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// tcpdump inside a node, printing one line per packet.
struct Dump {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Dump {
    fn start(lab: &Lab, node: &str, iface: &str, filter: &[&str]) -> Dump {
        let mut args = vec![
            "exec",
            &lab.name,
            node,
            "--",
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-l",
            "-e",
            "--immediate-mode",
        ];
        args.extend(filter);
        let mut child = lab
            .weft()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // tcpdump says "listening on" once its socket is bound.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        while !said.contains("listening on") {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("tcpdump exited: {said}");
            }
            said += &line;
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(l);
            }
        });
        Dump {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Stops tcpdump (after a moment for the last packets) and returns its lines.
    fn stop(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let v = self.lines.lock().unwrap().clone();
        v
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fdb(lab: &Lab, sw: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&lab.ok(&["fdb", &lab.name, sw, "--json"])).unwrap();
    v["entries"].as_array().unwrap().clone()
}

fn exec(lab: &Lab, node: &str, cmd: &[&str]) {
    let mut args = vec!["exec", &lab.name, node, "--"];
    args.extend(cmd);
    lab.ok(&args);
}

/// Three hosts on one switch, h1..h3 on p1..p3 at 10.N.0.1..3; `extra`
/// goes under [nodes.sw].
fn three_hosts(net: u8, extra: &str) -> String {
    format!(
        r#"name = "x"
[nodes.sw]
kind = "switch"
{extra}
[nodes.h1.interfaces.eth0]
addresses = ["10.{net}.0.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.{net}.0.2/24"]
[nodes.h3.interfaces.eth0]
addresses = ["10.{net}.0.3/24"]
[[links]]
endpoints = ["h1:eth0", "sw:p1"]
[[links]]
endpoints = ["h2:eth0", "sw:p2"]
[[links]]
endpoints = ["h3:eth0", "sw:p3"]
"#
    )
}

#[test]
fn static_mac_from_the_file_goes_to_its_port_only_and_never_moves() {
    let lab = Lab::from_text(
        "static",
        &three_hosts(
            61,
            r#"static_macs = [{ mac = "02:00:00:00:00:99", port = "p2" }]"#,
        ),
    );
    lab.up();
    let row = fdb(&lab, "sw")
        .into_iter()
        .find(|e| e["mac"] == "02:00:00:00:00:99")
        .expect("the static entry is in the table");
    assert_eq!(row["port"], "p2");
    assert_eq!(row["vlan"], 1);
    assert_eq!(row["is_static"], true);
    let table = lab.ok(&["fdb", &lab.name, "sw"]);
    let line = table
        .lines()
        .find(|l| l.contains("02:00:00:00:00:99"))
        .unwrap();
    assert!(line.contains("p2") && line.contains("static"), "{table}");

    // No station has that MAC, so it is never learned: without the static
    // entry every frame to it would be flooded to h3 too.
    exec(
        &lab,
        "h1",
        &[
            "ip",
            "neigh",
            "replace",
            "10.61.0.99",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    let d2 = Dump::start(&lab, "h2", "eth0", &["host", "10.61.0.99"]);
    let d3 = Dump::start(&lab, "h3", "eth0", &["host", "10.61.0.99"]);
    let o = lab.run(&[
        "ping",
        &lab.name,
        "h1",
        "10.61.0.99",
        "-c",
        "5",
        "-i",
        "0.1",
        "-W",
        "0.2",
    ]);
    assert!(
        !o.status.success(),
        "nobody has 10.61.0.99, yet it answered"
    );
    let (l2, l3) = (d2.stop(), d3.stop());
    let req = |v: &[String]| v.iter().filter(|l| l.contains("echo request")).count();
    assert_eq!(req(&l2), 5, "h2 (the static port) saw: {l2:#?}");
    assert_eq!(req(&l3), 0, "h3 saw frames for the static MAC: {l3:#?}");

    // h3 takes the MAC and talks: the entry stays on p2.
    exec(&lab, "h3", &["ip", "link", "set", "eth0", "down"]);
    exec(
        &lab,
        "h3",
        &["ip", "link", "set", "eth0", "address", "02:00:00:00:00:99"],
    );
    exec(&lab, "h3", &["ip", "link", "set", "eth0", "up"]);
    let rx3 = || {
        lab.status_json()[0]["switches"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "p3")
            .unwrap()["rx_frames"]
            .as_u64()
            .unwrap()
    };
    let before = rx3();
    // Its ARP requests reach the switch from p3 with the static source;
    // the answers go to p2, where the entry says the MAC lives, so h3
    // hears nothing back: that is the point of a static entry.
    let o = lab.run(&[
        "ping",
        &lab.name,
        "h3",
        "10.61.0.2",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "0.3",
    ]);
    assert!(!o.status.success(), "the reply should have gone to p2");
    assert!(rx3() > before, "h3's frames did not reach the switch");
    let rows: Vec<_> = fdb(&lab, "sw")
        .into_iter()
        .filter(|e| e["mac"] == "02:00:00:00:00:99")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["port"], "p2");
    assert_eq!(rows[0]["is_static"], true);
    let moves = lab.status_json()[0]["switches"][0]["fdb"]["moves"].clone();
    assert_eq!(moves, 0);
}

#[test]
fn mirror_port_sees_the_traffic_between_two_other_hosts() {
    let lab = Lab::from_text(
        "mirror",
        &three_hosts(62, r#"mirror = { output = "p3", ports = ["p1"] }"#),
    );
    lab.up();
    let d = Dump::start(&lab, "h3", "eth0", &[]);
    assert!(lab.ping("h1", "10.62.0.2", None));
    assert!(lab.ping("h1", "10.62.0.2", None));
    let lines = d.stop();
    let count = |what: &str, from: &str, to: &str| {
        lines
            .iter()
            .filter(|l| l.contains(what) && l.contains(&format!("{from} > {to}")))
            .count()
    };
    // Frames received on p1 (requests) and sent out of it (replies).
    assert!(
        count("echo request", "10.62.0.1", "10.62.0.2") >= 2,
        "{lines:#?}"
    );
    assert!(
        count("echo reply", "10.62.0.2", "10.62.0.1") >= 2,
        "{lines:#?}"
    );
    // Copies carry their VLAN as a tag, so one mirror port tells VLANs apart.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("echo request") && l.contains("vlan 1")),
        "{lines:#?}"
    );
    // The output port takes no part in switching: h3 reaches nobody.
    assert!(!lab.ping("h3", "10.62.0.1", None));
}
