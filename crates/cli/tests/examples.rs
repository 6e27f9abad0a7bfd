//! The bundled example labs that teach one thing each, brought up through
//! the real binary from their files as a user would (their configuration
//! directories beside them) and checked for what their comments promise:
//! examples/failover.toml (OSPF rerouting around a link taken down),
//! examples/nat-lte.toml (two NAT behaviours, a wire and a switch port
//! impaired with presets, a port forward) and examples/vlan-office.toml
//! (VLANs across a trunk, a router between them, services and names),
//! examples/switch-impair.toml (a port impaired, a mirror, a static MAC,
//! and the run-time commands its comment shows). And every file in
//! examples/ is brought up by some test, and docs/status.md's example of
//! `weft status --json` has the keys the command prints.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Lab;

/// Waits for `f` (bounded by a deadline generous for a loaded machine).
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The smallest round trip `ping` printed, in ms (`rtt min/avg/max/mdev
/// = a/b/c/d ms`), or None when nothing came back.
fn min_rtt_ms(lab: &Lab, from: &str, to: &str, count: &str) -> Option<f64> {
    let o = lab.run(&[
        "exec", &lab.name, from, "--", "ping", "-n", "-c", count, "-i", "0.2", "-W", "3", to,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.contains("min/avg/max"))?;
    let nums = line.split('=').nth(1)?.trim();
    nums.split('/').next()?.trim().parse().ok()
}

/// The source address and port each of three sockets of `srv` (ports
/// 7000 to 7002) sees one UDP socket of `from` come from: its NAT's
/// mappings towards three destinations. Sent again every 200 ms until
/// each arrived (the links lose a little), at most 20 s. Also the
/// socket's own port.
fn mappings(lab: &Lab, from: &str) -> (Vec<std::net::SocketAddr>, u16) {
    use std::net::UdpSocket;
    let bind = |node: &str, a: &str| {
        let a = a.to_string();
        weft_sys::netns::run_in_named(&lab.netns(node), move || UdpSocket::bind(a))
            .unwrap()
            .unwrap()
    };
    let rx: Vec<UdpSocket> = (7000..7003)
        .map(|p| bind("srv", &format!("198.51.100.10:{p}")))
        .collect();
    for r in &rx {
        r.set_nonblocking(true).unwrap();
    }
    let tx = bind(from, "0.0.0.0:0");
    let mut seen: Vec<Option<std::net::SocketAddr>> = vec![None; rx.len()];
    let t0 = Instant::now();
    while seen.iter().any(Option::is_none) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{from}: datagrams to srv did not arrive: {seen:?}"
        );
        for (i, r) in rx.iter().enumerate() {
            if seen[i].is_none() {
                tx.send_to(b"hi", r.local_addr().unwrap()).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut buf = [0u8; 16];
        for (i, r) in rx.iter().enumerate() {
            if let Ok((_, a)) = r.recv_from(&mut buf) {
                seen[i].get_or_insert(a);
            }
        }
    }
    (
        seen.into_iter().map(Option::unwrap).collect(),
        tx.local_addr().unwrap().port(),
    )
}

fn need_busybox() {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("busybox").exists()));
    assert!(
        found,
        "this test needs busybox on PATH (Debian's busybox-static; the README's test command installs it)"
    );
}

#[test]
fn failover_ospf_takes_the_long_way_while_the_direct_link_is_down() {
    assert!(
        Path::new("/usr/lib/frr/ospfd").exists(),
        "this test needs Debian's frr package (the README's test command installs it)"
    );
    let lab = Lab::example_with_dir("failover", "failover");
    let out = lab.up();
    assert!(out.contains("1 check(s) passed"), "{out}");
    // up returned once r1 and r3 route over the direct link (their
    // ospfd's `ready`): h1 -> h2 does not pass r2.
    let t = lab.ok(&["trace", &lab.name, "h1", "h2"]);
    assert!(t.contains("router: r1 forwards it"), "{t}");
    assert!(t.contains("router: r3 forwards it"), "{t}");
    assert!(!t.contains("router: r2"), "{t}");
    assert!(t.contains("delivered"), "{t}");

    let via = |dev: &str| {
        let r = lab.ip("r1", &["route", "show", "10.3.3.0/24"]);
        r.contains("proto ospf") && r.contains(&format!("dev {dev}"))
    };
    lab.ok(&["link", &lab.name, "r1", "r3", "down"]);
    // The carrier is gone at once; ospfd recomputes within a moment.
    wait_for("r1 routes h2's network through r2", 60, || via("eth-r2"));
    wait_for("h1 reaches h2 the long way", 60, || {
        lab.ping("h1", "h2", None)
    });
    let t = lab.ok(&["trace", &lab.name, "h1", "h2"]);
    assert!(t.contains("router: r2 forwards it"), "{t}");
    assert!(t.contains("delivered"), "{t}");

    lab.ok(&["link", &lab.name, "r1", "r3", "up"]);
    // The adjacency comes back (hello 1 s) and the cheaper path wins.
    wait_for("r1 routes over the direct link again", 60, || via("eth-r3"));
    wait_for("h1 reaches h2 again", 60, || lab.ping("h1", "h2", None));
    lab.ok(&["down", &lab.name]);
}

#[test]
fn nat_lte_the_server_sees_only_the_nats_and_the_phone_waits_for_lte() {
    need_busybox();
    let lab = Lab::example_with_dir("natlte", "nat-lte");
    let out = lab.up();
    assert!(out.contains("3 check(s) passed"), "{out}");
    // The laptop's link got a wire; the carrier's uplink is a switch port.
    let st = lab.ok(&["status", &lab.name]);
    assert!(st.contains("wifi") || st.contains("delay 3ms"), "{st}");
    assert!(st.contains("delay 35ms"), "{st}");

    // LTE: 35 ms +- 10 ms each way, so no round trip under 50 ms.
    let rtt = min_rtt_ms(&lab, "phone", "srv", "5").expect("the phone's pings came back");
    assert!(rtt >= 50.0, "phone -> srv min rtt {rtt} ms");

    // The server sees the NATs' outside addresses, never the inside ones.
    for from in ["laptop", "phone"] {
        let o = lab.run(&[
            "exec",
            &lab.name,
            from,
            "--",
            "busybox",
            "wget",
            "-qO-",
            "http://srv/",
        ]);
        let body = String::from_utf8_lossy(&o.stdout);
        assert!(body.contains("hello from srv"), "{from}: {body}");
    }
    // busybox httpd -v logs `[::ffff:ADDR]:PORT: response:200`.
    let saw = |logs: &str, addr: &str| {
        logs.contains(&format!("{addr}]:"))
            || logs.contains(&format!(" {addr}:"))
            || logs.starts_with(&format!("{addr}:"))
    };
    let mut logs = String::new();
    wait_for("srv's log names both NATs", 30, || {
        logs = lab.ok(&["logs", &lab.name, "srv"]);
        saw(&logs, "198.51.100.1") && saw(&logs, "198.51.100.2")
    });
    assert!(
        !logs.contains("192.168.1.") && !logs.contains("100.64.0."),
        "{logs}"
    );

    // The two NAT types: the home router keeps one external port for
    // the laptop's socket, whatever the destination, and preserves its
    // number; the carrier's symmetric NAT maps each destination anew.
    let (home, port) = mappings(&lab, "laptop");
    assert!(
        home.iter().all(|a| a.ip().to_string() == "198.51.100.1"),
        "{home:?}"
    );
    assert!(
        home.iter().all(|a| a.port() == port),
        "{home:?}, laptop's port {port}"
    );
    let (cgn, _) = mappings(&lab, "phone");
    assert!(
        cgn.iter().all(|a| a.ip().to_string() == "198.51.100.2"),
        "{cgn:?}"
    );
    let mut ports: Vec<u16> = cgn.iter().map(|a| a.port()).collect();
    ports.dedup();
    assert!(ports.len() > 1, "a symmetric NAT gives new ports: {cgn:?}");

    // A forward from outside keeps the client's address: the laptop's
    // server sees srv itself.
    let o = lab.run(&[
        "exec",
        &lab.name,
        "srv",
        "--",
        "busybox",
        "wget",
        "-qO-",
        "http://198.51.100.1:8080/",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("hello from srv"));
    wait_for("the laptop's log names srv", 30, || {
        saw(&lab.ok(&["logs", &lab.name, "laptop"]), "198.51.100.10")
    });

    // The same link at run time: a satellite (300 ms +- 5 ms each way).
    lab.ok(&[
        "impair",
        &lab.name,
        "cgn",
        "inet",
        "--preset",
        "satellite",
        "--seed",
        "3",
    ]);
    let rtt = min_rtt_ms(&lab, "phone", "srv", "3").expect("pings over the satellite");
    assert!(
        rtt >= 590.0,
        "phone -> srv min rtt {rtt} ms over a satellite"
    );
    // The file's LTE comes back with the next up (a warning says so).
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("runtime change undone"), "{err}");
    let rtt = min_rtt_ms(&lab, "phone", "srv", "3").expect("pings over LTE again");
    assert!(
        (50.0..590.0).contains(&rtt),
        "phone -> srv min rtt {rtt} ms"
    );
}

#[test]
fn vlan_office_vlans_cross_the_trunk_and_meet_only_in_the_router() {
    need_busybox();
    let lab = Lab::example_with_dir("office", "vlan-office");
    let out = lab.up();
    assert!(out.contains("3 check(s) passed"), "{out}");
    // The guest VLAN works for its own hosts...
    assert!(lab.ping("guest", "printer", None));
    // ...and rogue, in it with a staff address, reaches no staff host:
    // the same subnet, another VLAN.
    assert!(!lab.ping("rogue", "web", None));
    assert!(!lab.ping("rogue", "pc", None));
    // sw2 learned hosts of both VLANs through its trunk.
    let fdb = lab.ok(&["fdb", &lab.name, "sw2"]);
    let on_trunk = |vlan: &str| {
        fdb.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 2 && w[0] == "trunk" && w[1] == vlan
        })
    };
    assert!(on_trunk("10") && on_trunk("20"), "{fdb}");
}

#[test]
fn switch_impair_delays_mirrors_and_takes_the_commands_in_its_comment() {
    let lab = Lab::example("imp", "switch-impair.toml");
    lab.up();
    // 40 ms +- 5 ms each way on h1's port: no round trip under 70 ms.
    let rtt = min_rtt_ms(&lab, "h1", "10.90.0.2", "5").expect("h1's pings came back");
    assert!(rtt >= 70.0, "h1 -> h2 min rtt {rtt} ms");
    // h2's MAC is a static entry, so frames to it are never flooded.
    // A host is not a switch; the refusal names the switches.
    let o = lab.run(&["fdb", &lab.name, "h1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("h1 is a host node, not a switch (its switches: sw)"),
        "{err}"
    );
    let fdb = lab.ok(&["fdb", &lab.name, "sw"]);
    assert!(
        fdb.lines()
            .any(|l| l.contains("02:00:00:00:00:02") && l.contains("static")),
        "{fdb}"
    );
    // The mirror: h3's port sees h1's ICMP (h3 sends none, and with h2's
    // MAC static and h1's learned none is flooded to it). Pings go on
    // until the capture has its two frames or gives up.
    let done = std::sync::atomic::AtomicBool::new(false);
    let cap = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                lab.ping("h1", "10.90.0.2", None);
            }
        });
        let pcap = lab.file.with_file_name("mirror.pcapng");
        let o = lab.run(&[
            "capture",
            &lab.name,
            "h3:eth0",
            "-w",
            pcap.to_str().unwrap(),
            "-c",
            "2",
            "--duration",
            "60",
            "icmp",
        ]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        o
    });
    let err = String::from_utf8_lossy(&cap.stderr);
    assert!(
        cap.status.success() && err.contains("2 packet(s) captured"),
        "{err}"
    );

    // The commands of the file's comment, as written there.
    let out = lab.ok(&[
        "impair", &lab.name, "h1", "sw", "--delay", "100ms", "--loss", "5%", "--seed", "3",
    ]);
    assert!(out.contains("delay 100ms"), "{out}");
    let rtt = min_rtt_ms(&lab, "h1", "10.90.0.2", "5").expect("h1's pings came back");
    assert!(rtt >= 190.0, "h1 -> h2 min rtt {rtt} ms after weft impair");
    // Hosts are not cabled to each other: the refusal shows h1's cable.
    let o = lab.run(&["link", &lab.name, "h1", "h2", "down"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("h1's cables: h1:eth0 — sw:p1"),
        "{err}"
    );
    lab.ok(&["link", &lab.name, "h2", "sw", "down"]);
    assert!(!lab.ping("h1", "10.90.0.2", None));
    lab.ok(&["link", &lab.name, "h2", "sw", "up"]);
    wait_for("h2 answers after its link is up", 60, || {
        lab.ping("h1", "10.90.0.2", None)
    });
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("runtime change undone"),
        "{err}"
    );
    // The file stands for the lab, as for `down` and `check`.
    let st = lab.ok(&["status", lab.file.to_str().unwrap()]);
    assert!(st.contains(&format!("lab {} (", lab.name)), "{st}");
    assert!(st.contains("impair delay 40ms jitter 5ms loss 1%"), "{st}");
}

/// Each example is a promise to a reader: some test must build it. A
/// file in examples/ that no test names is one nobody runs.
#[test]
fn every_example_is_brought_up_by_a_test() {
    let mut tests = String::new();
    for dir in ["crates/cli/tests", "crates/lab/tests"] {
        for e in std::fs::read_dir(common::root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                tests.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut untested = Vec::new();
    let mut n = 0;
    for e in std::fs::read_dir(common::root().join("examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension() != Some("toml".as_ref()) {
            continue;
        }
        n += 1;
        let name = p.file_stem().unwrap().to_str().unwrap();
        // Named as a file ("veth.toml", "examples/veth.toml"), or by
        // name to a helper that adds the extension
        // (Lab::example_with_dir(tag, "nat-lte")).
        let as_file = ['"', '/']
            .iter()
            .any(|c| tests.contains(&format!("{c}{name}.toml")));
        let as_name = tests
            .lines()
            .any(|l| l.contains("example") && l.contains(&format!("\"{name}\"")));
        if !as_file && !as_name {
            untested.push(name.to_string());
        }
    }
    assert!(n >= 20, "only {n} examples found");
    assert!(
        untested.is_empty(),
        "examples no test brings up: {untested:?}"
    );
}

/// Every key path of a JSON value (`[].nodes[].name`).
fn key_paths(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                key_paths(x, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                key_paths(x, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// docs/status.md shows `weft status --json` of examples/bridge.toml: a
/// program written from it finds every key there, and the page names
/// every key the command prints.
#[test]
fn status_json_of_the_bridge_example_has_the_keys_docs_status_md_shows() {
    let page = std::fs::read_to_string(common::root().join("docs/status.md")).unwrap();
    let shown = page
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/status.md has a ```json example");
    let shown: serde_json::Value = serde_json::from_str(shown).unwrap();
    let lab = Lab::example("stdoc", "bridge.toml");
    lab.up();
    let got = lab.status_json();
    let (mut a, mut b) = (Default::default(), Default::default());
    key_paths(&shown, "", &mut a);
    key_paths(&got, "", &mut b);
    let only_doc: Vec<_> = a.difference(&b).collect();
    let only_got: Vec<_> = b.difference(&a).collect();
    assert!(
        only_doc.is_empty() && only_got.is_empty(),
        "docs/status.md's example and weft status --json differ: only in the page {only_doc:?}, only printed {only_got:?}"
    );
}

/// README: `weft ping NAME NODE TARGET [-I IFACE]`. A wrong IFACE is
/// answered with the node's interfaces, not only the kernel's ENODEV.
#[test]
fn ping_with_an_unknown_interface_names_the_nodes_interfaces() {
    let lab = Lab::example("pingi", "bridge.toml");
    lab.up();
    let o = lab.run(&["ping", &lab.name, "ns1", "ns2", "-I", "eth0", "-c", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("node ns1 has no interface eth0 in the lab's file (its interfaces: lo, tap1)"),
        "{err}"
    );
    assert!(lab.ping("ns1", "ns2", Some("tap1")));
    // trace -I and capture of a NODE:IFACE the node never had: its
    // interfaces, and no "was it removed by hand?".
    for args in [
        vec!["trace", &lab.name, "ns1", "ns2", "-I", "eth0"],
        vec!["capture", &lab.name, "ns1:eth0", "-c", "1"],
    ] {
        let o = lab.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        assert!(
            err.contains("node ns1: interface eth0 is not there (its interfaces: lo, tap1)")
                && !err.contains("removed by hand"),
            "{args:?}: {err}"
        );
    }
}

/// docs/status.md's Switch and Wire tables name every key `weft status
/// --json` prints for a switch (its ports, their impairment, the FDB and
/// VLAN counters) and a wire: a program written from the page finds them.
#[test]
fn every_switch_and_wire_key_is_in_docs_status_md() {
    let page = std::fs::read_to_string(common::root().join("docs/status.md")).unwrap();
    let section = |title: &str| {
        let from = page.find(title).unwrap_or_else(|| panic!("{title}"));
        let rest = &page[from + title.len()..];
        rest[..rest.find("\n#").unwrap_or(rest.len())].to_string()
    };
    let lab = Lab::from_text(
        "stkeys",
        "name = \"x\"\n[nodes.sw]\nkind = \"switch\"\n\
         [nodes.sw.interfaces.p1]\nimpair = { delay = \"1ms\" }\n\
         [nodes.a.interfaces.eth0]\naddresses = [\"10.61.0.1/24\"]\n\
         [nodes.b.interfaces.eth0]\naddresses = [\"10.61.0.2/24\"]\n\
         [nodes.c.interfaces.eth1]\naddresses = [\"10.61.0.3/24\"]\n\
         [[links]]\nendpoints = [\"a:eth0\", \"sw:p1\"]\n\
         [[links]]\nendpoints = [\"b:eth0\", \"sw:p2\"]\n\
         [[links]]\nendpoints = [\"b:eth1\", \"c:eth1\"]\nimpair = { delay = \"1ms\" }\n",
    );
    lab.up();
    // Frames through the switch, so that it has VLAN counters to show
    // (a reply within 1 s each try; the bound is for a hang).
    assert!((0..20).any(|_| lab.ping("a", "b", None)));
    let got = &lab.status_json()[0];
    let mut missing = Vec::new();
    for (key, title) in [("switches", "### Switch\n"), ("wires", "### Wire\n")] {
        let doc = section(title);
        let items = got[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {got:#}"));
        assert!(!items.is_empty(), "no {key}: {got:#}");
        let mut paths = std::collections::BTreeSet::new();
        for x in items {
            key_paths(x, "", &mut paths);
        }
        for p in paths {
            // Drop counters are keyed by reason (listed in the page's text).
            if p.contains(".drops.") {
                continue;
            }
            let last = p.rsplit('.').next().unwrap().trim_end_matches("[]");
            if !doc.contains(&format!("`{last}`")) {
                missing.push(format!("{key}{p}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in docs/status.md: {missing:?}");
    // The text status names the wire's node as a wire, not a host.
    let text = lab.ok(&["status", &lab.name]);
    assert!(text.contains("\n  wire ~b.eth1 [netns "), "{text}");
}
