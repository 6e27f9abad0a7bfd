//! Static MACs, port mirroring, impairment and runtime control of weft's
//! userspace switch, through the real binary.

mod common;
use common::{switched_hosts, tcp_transfer, Dump, Lab};

use std::time::Duration;

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

#[test]
fn static_mac_from_the_file_goes_to_its_port_only_and_never_moves() {
    let lab = Lab::from_text(
        "static",
        &switched_hosts(
            "sw",
            "h",
            61,
            3,
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
        &switched_hosts(
            "sw",
            "h",
            62,
            3,
            r#"mirror = { output = "p3", ports = ["p1"] }"#,
        ),
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

/// `weft ping` with `count` probes: (received, RTTs in ms). Each reply
/// may take a loaded machine seconds; none is lost on these paths.
fn ping_stats(lab: &Lab, from: &str, to: &str, count: u32) -> (u32, Vec<f64>) {
    let c = count.to_string();
    let o = lab.run(&[
        "ping", &lab.name, from, to, "-c", &c, "-i", "0.05", "-W", "5",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let rtts = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .map(|t| t.trim_end_matches(" ms").parse::<f64>().unwrap())
        .collect();
    let received = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|w| w.split(' ').next())
        .unwrap_or_else(|| panic!("no summary in {out}"))
        .parse()
        .unwrap();
    (received, rtts)
}

fn port(lab: &Lab, name: &str) -> serde_json::Value {
    lab.status_json()[0]["switches"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
        .clone()
}

#[test]
fn delay_on_a_port_from_the_file_and_at_run_time_and_up_restores_it() {
    let text = switched_hosts("sw", "h", 63, 3, "")
        + r#"[nodes.sw.interfaces.p1]
impair = { delay = "50ms" }
"#;
    let lab = Lab::from_text("delay", &text);
    lab.up();
    // 50 ms into the switch and 50 ms out of it: both ways on p1.
    let (n, rtt) = ping_stats(&lab, "h1", "10.63.0.2", 3);
    assert_eq!(n, 3);
    assert!(rtt.iter().all(|r| *r >= 100.0), "{rtt:?}");
    let (n, rtt) = ping_stats(&lab, "h2", "10.63.0.3", 3);
    assert_eq!(n, 3);
    // The delay would hold back every echo; the machine's load only some.
    assert!(rtt.iter().any(|r| *r < 100.0), "unimpaired: {rtt:?}");
    let p1 = port(&lab, "p1");
    assert_eq!(p1["impair"]["settings"], "delay 50ms", "{p1}");
    assert_eq!(p1["impair"]["seed_given"], false, "{p1}");
    assert!(p1["impair"]["delayed"].as_u64().unwrap() >= 6, "{p1}");
    let human = lab.ok(&["status", &lab.name]);
    assert!(human.contains("impair delay 50ms (seed "), "{human}");

    // At run time, without restarting the datapath.
    let dp = lab.status_json()[0]["switches"][0]["bridge_id"].clone();
    let before =
        std::fs::read_to_string(lab.state.join("labs").join(&lab.name).join("datapath.json"))
            .unwrap();
    lab.ok(&["impair", &lab.name, "h1", "sw", "--clear"]);
    let (_, rtt) = ping_stats(&lab, "h1", "10.63.0.2", 3);
    assert!(rtt.iter().any(|r| *r < 100.0), "cleared: {rtt:?}");
    lab.ok(&["impair", &lab.name, "sw:p2", "h2", "--delay", "30ms"]);
    let (_, rtt) = ping_stats(&lab, "h1", "10.63.0.2", 3);
    // 60 ms with p2's delay alone; 160 if p1's were still there.
    assert!(
        rtt.iter().all(|r| *r >= 60.0) && rtt.iter().any(|r| *r < 160.0),
        "p2 30ms: {rtt:?}"
    );
    let after =
        std::fs::read_to_string(lab.state.join("labs").join(&lab.name).join("datapath.json"))
            .unwrap();
    assert_eq!(before, after, "the datapath was restarted");
    assert_eq!(lab.status_json()[0]["switches"][0]["bridge_id"], dp);
    let st = lab.status_json();
    let lines = st[0]["runtime"]["impair"].clone();
    assert!(
        lines["sw:p1"].is_null() && lines["sw:p2"]["delay_us"] == 30000,
        "{st}"
    );
    let human = lab.ok(&["status", &lab.name]);
    assert!(
        human.contains("runtime changes") && human.contains("impair sw:p1: cleared"),
        "{human}"
    );

    // `weft up` of the file puts the file's impairment back.
    let said = lab.up_said();
    assert!(said.contains("runtime change undone"), "{said}");
    assert!(lab.status_json()[0]["runtime"].is_null());
    let (_, rtt) = ping_stats(&lab, "h1", "10.63.0.2", 3);
    // 100 ms with p1's delay alone; 160 if p2's were still there.
    assert!(
        rtt.iter().all(|r| *r >= 100.0) && rtt.iter().any(|r| *r < 160.0),
        "file's again: {rtt:?}"
    );
    assert_eq!(
        before,
        std::fs::read_to_string(lab.state.join("labs").join(&lab.name).join("datapath.json"))
            .unwrap()
    );

    // An edit of the file's impairment alone is applied to the running
    // datapath too: no restart, the new delay holds.
    let pid = |l: &Lab| -> u64 {
        let t = std::fs::read_to_string(l.state.join("labs").join(&l.name).join("datapath.json"))
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&t).unwrap()["pid"]
            .as_u64()
            .unwrap()
    };
    let pid_before = pid(&lab);
    // Edit the lab's own file (its name line is the test's lab name).
    let file = std::fs::read_to_string(&lab.file).unwrap();
    assert!(file.contains("\"50ms\""));
    std::fs::write(&lab.file, file.replace("\"50ms\"", "\"10ms\"")).unwrap();
    lab.ok(&["up", lab.file.to_str().unwrap()]);
    assert_eq!(
        pid(&lab),
        pid_before,
        "an impairment edit restarted the datapath"
    );
    assert_eq!(port(&lab, "p1")["impair"]["settings"], "delay 10ms");
    let (_, rtt) = ping_stats(&lab, "h1", "10.63.0.2", 3);
    assert!(
        rtt.iter().all(|r| *r >= 20.0) && rtt.iter().any(|r| *r < 100.0),
        "edited to 10ms: {rtt:?}"
    );
    // Removing it from the file clears it, still without a restart.
    std::fs::write(&lab.file, file.replace("impair = { delay = \"50ms\" }", "")).unwrap();
    lab.ok(&["up", lab.file.to_str().unwrap()]);
    assert_eq!(pid(&lab), pid_before);
    assert!(port(&lab, "p1")["impair"].is_null());

    // Other switch settings (a port's VLAN) change on the running
    // datapath too, which then runs with the edited file, not the lab as
    // first built.
    std::fs::write(
        &lab.file,
        file.replace("impair = { delay = \"50ms\" }", "") + "[nodes.sw.interfaces.p3]\nvlan = 20\n",
    )
    .unwrap();
    lab.ok(&["up", lab.file.to_str().unwrap()]);
    assert_eq!(pid(&lab), pid_before);
    assert_eq!(port(&lab, "p3")["vlan"], "access 20");
    assert!(!lab.ping("h1", "10.63.0.3", None), "VLAN 1 reached VLAN 20");
    assert!(lab.ping("h1", "10.63.0.2", None));
}

/// Hosts with no IPv6 and static neighbours, and no spanning tree: the
/// only frames through the switch are the pings, so a seed replays.
fn quiet_pair(net: u8, impair: &str) -> String {
    format!(
        r#"name = "x"
[nodes.sw]
kind = "switch"
stp = "off"
[nodes.sw.interfaces.p1]
impair = {impair}
[nodes.h1.sysctls]
"net.ipv6.conf.all.disable_ipv6" = 1
"net.ipv6.conf.default.disable_ipv6" = 1
[nodes.h2.sysctls]
"net.ipv6.conf.all.disable_ipv6" = 1
"net.ipv6.conf.default.disable_ipv6" = 1
[nodes.h1.interfaces.eth0]
addresses = ["10.{net}.0.1/24"]
mac = "02:00:00:00:{net:02x}:01"
[nodes.h2.interfaces.eth0]
addresses = ["10.{net}.0.2/24"]
mac = "02:00:00:00:{net:02x}:02"
[[links]]
endpoints = ["h1:eth0", "sw:p1"]
[[links]]
endpoints = ["h2:eth0", "sw:p2"]
"#
    )
}

fn static_neighbours(lab: &Lab, net: u8) {
    for (me, peer) in [("h1", 2), ("h2", 1)] {
        let ip = format!("10.{net}.0.{peer}");
        let mac = format!("02:00:00:00:{net:02x}:{peer:02}");
        exec(
            lab,
            me,
            &[
                "ip",
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        );
    }
}

#[test]
fn loss_with_a_seed_replays_the_same_count() {
    let lab = Lab::from_text("loss", &quiet_pair(64, r#"{ loss = "30%", seed = 7 }"#));
    lab.up();
    static_neighbours(&lab, 64);
    let mut got = Vec::new();
    for _ in 0..2 {
        // Setting it again restarts the PRNG from the seed.
        lab.ok(&[
            "impair", &lab.name, "h1", "sw", "--loss", "30%", "--seed", "7",
        ]);
        got.push(ping_stats(&lab, "h1", "10.64.0.2", 40).0);
    }
    assert_eq!(got[0], got[1], "same seed, same traffic: {got:?}");
    // 30% each way: about half the pings come back.
    assert!((8..=32).contains(&got[0]), "{got:?}");
    let p1 = port(&lab, "p1");
    assert!(p1["drops"]["impair-loss"].as_u64().unwrap() > 0, "{p1}");
    assert_eq!(p1["impair"]["seed"], 7);
    lab.ok(&["impair", &lab.name, "h1", "sw", "--loss", "100%"]);
    assert_eq!(ping_stats(&lab, "h1", "10.64.0.2", 10).0, 0);
}

#[test]
fn rate_limit_holds_a_tcp_transfer_below_it() {
    // A fixed amount, timed here from before the connection to its last
    // byte read: a loaded machine only makes that take longer, so the
    // upper bound cannot fail for load. (iperf3's own rate over 3 s came
    // within 1 % of the limit's, since it times from its first byte and
    // its server stops counting when the client ends, and it rose above.)
    const BYTES: u64 = 5_000_000;
    let lab = Lab::from_text("rate", &quiet_pair(65, r#"{ rate = "10mbit" }"#));
    lab.up();
    let t0 = std::time::Instant::now();
    let got = tcp_transfer(&lab, "h1", "10.65.0.1", "h2", BYTES);
    let took = t0.elapsed();
    assert_eq!(got, BYTES, "bytes lost through the rate limit");
    let bps = BYTES as f64 * 8.0 / took.as_secs_f64();
    eprintln!(
        "through a 10mbit port: {:.2} Mbit/s of TCP payload in {took:?}",
        bps / 1e6
    );
    // The limit counts whole frames: the payload alone is below it.
    assert!(bps < 10e6, "{bps} bit/s through a 10 Mbit/s limit");
    assert!(
        bps > 5e6,
        "{bps} bit/s: the limit throttles far below its rate"
    );
}

#[test]
fn link_down_and_up_at_run_time_on_switch_and_kernel_links() {
    let text = switched_hosts("sw", "h", 66, 3, "")
        + r#"[nodes.h3.interfaces.k0]
addresses = ["10.166.0.1/24"]
[nodes.h4]
routes = ["10.200.0.0/16 via 10.166.0.1"]
[nodes.h4.interfaces.k0]
addresses = ["10.166.0.2/24"]
[[links]]
endpoints = ["h3:k0", "h4:k0"]
"#;
    let lab = Lab::from_text("link", &text);
    lab.up();
    let rec = lab.state.join("labs").join(&lab.name).join("datapath.json");
    let dp = std::fs::read_to_string(&rec).unwrap();
    for h in ["10.66.0.2", "10.66.0.3"] {
        assert!(lab.ping("h1", h, None));
    }
    let macs = |lab: &Lab| -> Vec<String> {
        fdb(lab, "sw")
            .iter()
            .map(|e| e["port"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(macs(&lab).contains(&"p2".to_string()));

    // A switch port out of service: h2 is unreachable, the others keep
    // their learned entries, the datapath stays the same process.
    lab.ok(&["link", &lab.name, "h2", "sw", "down"]);
    assert!(!lab.ping("h1", "10.66.0.2", None));
    assert_eq!(port(&lab, "p2")["admin_up"], false);
    let m = macs(&lab);
    assert!(
        m.contains(&"p1".to_string()) && m.contains(&"p3".to_string()),
        "{m:?}"
    );
    assert!(!m.contains(&"p2".to_string()), "{m:?}");
    assert_eq!(std::fs::read_to_string(&rec).unwrap(), dp);
    lab.ok(&["link", &lab.name, "sw", "h2", "up"]);
    assert!(lab.ping("h1", "10.66.0.2", None));
    assert!(lab.status_json()[0]["runtime"].is_null());

    // A kernel link: both veth ends down, then up with its routes back.
    assert!(lab.ping("h4", "10.166.0.1", None));
    lab.ok(&["link", &lab.name, "h3:k0", "h4", "down"]);
    assert!(!lab.ping("h4", "10.166.0.1", None));
    assert_eq!(
        lab.iface("h4", "k0")["admin_up"],
        false,
        "{}",
        lab.iface("h4", "k0")
    );
    lab.ok(&["link", &lab.name, "h3:k0", "h4", "up"]);
    assert!(lab.ping("h4", "10.166.0.1", None));
    let routes = lab.ip("h4", &["route"]);
    assert!(routes.contains("10.200.0.0/16 via 10.166.0.1"), "{routes}");

    // Names that match two links ask for NODE:IFACE.
    let o = lab.run(&["link", &lab.name, "h1", "h4", "down"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no link between"));

    // Both down again; `weft up` of the file brings them back, keeping the
    // datapath.
    lab.ok(&["link", &lab.name, "h2", "sw", "down"]);
    lab.ok(&["link", &lab.name, "h3", "h4", "down"]);
    let st = lab.status_json();
    assert_eq!(
        st[0]["runtime"]["links_down"].as_array().unwrap().len(),
        2,
        "{st}"
    );
    let human = lab.ok(&["status", &lab.name]);
    assert!(
        human.contains("link h3:k0 — h4:k0 down") && human.contains("DOWN (weft link)"),
        "{human}"
    );
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(lab.ping("h1", "10.66.0.2", None));
    assert!(lab.ping("h4", "10.166.0.1", None));
    assert!(lab.status_json()[0]["runtime"].is_null());
    assert_eq!(std::fs::read_to_string(&rec).unwrap(), dp);

    // Impairing a kernel-only link puts a wire in it at run time
    // (docs/conditions.md); `weft up` of the file takes it out again.
    lab.ok(&["impair", &lab.name, "h3", "h4", "--delay", "10ms"]);
    assert!(lab.status_json()[0]["runtime"].to_string().contains("wire"));
    assert!(lab.namespaces().contains(&lab.netns("~h3.k0")));
    // The link's veths were made again: the first ping may wait for ARP.
    let t0 = std::time::Instant::now();
    while !lab.ping("h4", "10.166.0.1", None) {
        assert!(t0.elapsed().as_secs() < 30, "no ping through the wire");
    }
    lab.ok(&["up", lab.file.to_str().unwrap()]);
    assert!(!lab.namespaces().contains(&lab.netns("~h3.k0")));
    assert!(lab.status_json()[0]["runtime"].is_null());
    assert!(lab.ping("h4", "10.166.0.1", None));
}

#[test]
fn rstp_triangle_reconverges_around_a_link_taken_down() {
    let lab = Lab::example("tri", "switch-triangle.toml");
    lab.up();
    let sw = |name: &str| -> serde_json::Value {
        lab.status_json()[0]["switches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(sw("s2")["root_port"], "to-s1");
    assert!(lab.ping("h1", "10.80.0.2", None));
    lab.ok(&["link", &lab.name, "s1", "s2", "down"]);
    // The s2-s3 link, blocked while s2 reached the root directly, now
    // carries s2's traffic to the root.
    let t0 = std::time::Instant::now();
    while sw("s2")["root_port"] != "to-s3" {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "s2 did not find the way round: {}",
            sw("s2")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t1 = std::time::Instant::now();
    while !lab.ping("h1", "10.80.0.2", None) {
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "h1 cannot reach h2 round the loop"
        );
    }
    assert!(lab.ping("h2", "10.80.0.3", None));
    eprintln!("re-converged in {:?}", t0.elapsed());
    lab.ok(&["link", &lab.name, "s1:to-s2", "s2:to-s1", "up"]);
    let t2 = std::time::Instant::now();
    while sw("s2")["root_port"] != "to-s1" {
        assert!(t2.elapsed() < Duration::from_secs(30), "{}", sw("s2"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.ping("h1", "10.80.0.2", None));
}
