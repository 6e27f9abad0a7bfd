//! The seed's two patterns and its safe-bridge script (seed 003,
//! experiments 9, 10 and 11): NAT and port forwards, names, health checks
//! with rollback, and a TAP opened by a program standing in for a VM.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Lab;

/// A TCP and UDP echo-who-you-are server inside a namespace: answers
/// `TAG PEER-IP`. Stopped (and its sockets closed) on drop, so the
/// namespace can go.
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(netns: &str, port: u16, tag: &'static str) -> Server {
        let (tcp, udp) = weft_sys::netns::run_in_named(netns, move || {
            (
                TcpListener::bind(("0.0.0.0", port)).unwrap(),
                UdpSocket::bind(("0.0.0.0", port)).unwrap(),
            )
        })
        .unwrap();
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = stop.clone();
        let t1 = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut c, peer)) => {
                        let _ = c.write_all(format!("{tag} {}\n", peer.ip()).as_bytes());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        let s2 = stop.clone();
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{tag} {}", peer.ip()).as_bytes(), peer);
                }
            }
        });
        Server {
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connect from a namespace; what the server said, or the error. Every
/// caller expects an answer: the 20 s bounds are for a hang, not for
/// speed (a loaded machine may be slow to connect and to answer).
fn tcp_from(netns: &str, to: &str) -> Result<String, String> {
    let addr: SocketAddr = to.parse().unwrap();
    let mut s = weft_sys::netns::run_in_named(netns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(20))
    })
    .unwrap()
    .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.trim().to_string())
}

/// One UDP datagram from a namespace; (answer, who answered). Every
/// caller expects one: 20 s, as for [`tcp_from`].
fn udp_from(netns: &str, to: &str) -> Result<(String, SocketAddr), String> {
    let addr: SocketAddr = to.parse().unwrap();
    let s = weft_sys::netns::run_in_named(netns, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.send_to(b"who", addr).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let (n, from) = s.recv_from(&mut buf).map_err(|e| e.to_string())?;
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

fn nft(lab: &Lab, node: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.netns(node), "nft"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn nft_present() -> bool {
    let ok = Command::new("nft").arg("--version").output().is_ok();
    assert!(
        ok,
        "these tests need nft (Debian package nftables; the README's test command installs it)"
    );
    ok
}

#[test]
fn exp11_containers_reach_outside_and_outside_reaches_a_forwarded_port() {
    nft_present();
    let lab = Lab::example("ctr", "containers.toml");
    let out = lab.up();
    assert!(out.contains("+ nat in gw: masquerade 172.18.0.0/24 out of wan, forward 8080/tcp -> web:80 (172.18.0.3:80), forward 5353/udp -> web:53 (172.18.0.3:53)"), "{out}");
    assert!(out.contains("2 check(s) passed"), "{out}");
    let (gw, web, app, outside) = (
        lab.netns("gw"),
        lab.netns("web"),
        lab.netns("app"),
        lab.netns("outside"),
    );
    let _srv_out = Server::start(&outside, 9000, "outside");
    let _srv_web80 = Server::start(&web, 80, "web");
    let _srv_web53 = Server::start(&web, 53, "web");
    // Masquerade: the outside sees the gateway, not the container.
    assert_eq!(
        tcp_from(&app, "203.0.113.2:9000").unwrap(),
        "outside 203.0.113.1"
    );
    assert_eq!(
        tcp_from(&web, "203.0.113.2:9000").unwrap(),
        "outside 203.0.113.1"
    );
    // The outside reaches web through the forwarded port, and web sees the
    // real client.
    assert_eq!(
        tcp_from(&outside, "203.0.113.1:8080").unwrap(),
        "web 203.0.113.2"
    );
    let (said, from) = udp_from(&outside, "203.0.113.1:5353").unwrap();
    assert_eq!(said, "web 203.0.113.2");
    assert_eq!(from, "203.0.113.1:5353".parse().unwrap());
    // Another container through the gateway, on either of its addresses.
    assert_eq!(tcp_from(&app, "172.18.0.1:8080").unwrap(), "web 172.18.0.1");
    assert_eq!(
        tcp_from(&app, "203.0.113.1:8080").unwrap(),
        "web 172.18.0.1"
    );
    // Hairpin: web reaches its own forwarded port via the gateway.
    assert_eq!(tcp_from(&web, "172.18.0.1:8080").unwrap(), "web 172.18.0.1");
    assert_eq!(
        udp_from(&web, "172.18.0.1:5353").unwrap().0,
        "web 172.18.0.1"
    );
    // The gateway itself (its output chain).
    assert_eq!(
        tcp_from(&gw, "203.0.113.1:8080").unwrap(),
        "web 203.0.113.1"
    );
    // Only weft's table exists.
    assert_eq!(
        nft(&lab, "gw", &["list", "tables"]).trim(),
        "table inet weft"
    );
    // Names: every node reaches the others by name.
    let o = lab.run(&["exec", &lab.name, "app", "--", "getent", "ahostsv4", "web"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("172.18.0.3"),
        "{o:?}"
    );
    let o = lab.run(&["check", &lab.name]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 check(s) passed"));
}

#[test]
fn exp11_nat_edits_replace_the_table_and_removal_deletes_it() {
    nft_present();
    let lab = Lab::example("ctredit", "containers.toml");
    lab.up();
    let text = std::fs::read_to_string(&lab.file).unwrap();
    lab.rewrite(&text.replace(
        r#"forward = ["8080 -> web:80", "5353/udp -> web:53"]"#,
        r#"forward = ["8080 -> app:80", "5353/udp -> web:53"]"#,
    ));
    let out = lab.up();
    assert!(out.contains("~ nat in gw: - forward 8080/tcp -> web:80 (172.18.0.3:80), + forward 8080/tcp -> app:80 (172.18.0.2:80)"), "{out}");
    let rules = nft(&lab, "gw", &["list", "table", "inet", "weft"]);
    assert!(rules.contains("dnat ip to 172.18.0.2:80"), "{rules}");
    assert!(!rules.contains("172.18.0.3:80"), "{rules}");
    let _srv = Server::start(&lab.netns("app"), 80, "app");
    assert_eq!(
        tcp_from(&lab.netns("outside"), "203.0.113.1:8080").unwrap(),
        "app 203.0.113.2"
    );
    drop(_srv);
    // Without [nat.gw] (and the checks that need it): the table goes, the
    // rest stays.
    let cut = text.find("[nat.gw]").unwrap();
    lab.rewrite(&text[..cut]);
    let out = lab.up();
    assert!(out.contains("- nat in gw"), "{out}");
    assert_eq!(nft(&lab, "gw", &["list", "tables"]).trim(), "");
    // No masquerade now: the outside has no route back to the containers.
    assert!(!lab.ping("app", "outside", None));
}

/// Docker's iptables-nft setup in the NAT node: an `ip filter` table whose
/// FORWARD chain drops by policy. weft's table cannot override a drop in
/// another table, and weft never changes another table: it says so, names
/// the chain and the rules that let the lab through, and `weft check`
/// shows the effect. Once the user accepts the traffic there, it works.
#[test]
fn exp11_docker_style_forward_drop_is_detected_explained_and_left_alone() {
    nft_present();
    let lab = Lab::example("ctrdock", "containers.toml");
    lab.up();
    let docker = "table ip filter {\n chain FORWARD { type filter hook forward priority filter; policy drop; }\n chain DOCKER-USER { }\n}\n";
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.netns("gw"), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(docker.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(o.success());
    let before = nft(&lab, "gw", &["list", "table", "ip", "filter"]);
    assert!(
        !lab.ping("app", "outside", None),
        "the drop policy must bite"
    );
    // weft check: the ping check fails, and the warning says why.
    let o = lab.run(&["check", &lab.name]);
    let err = String::from_utf8_lossy(&o.stderr);
    let err_check = err.to_string();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(
        out.contains("FAIL check 1 (line 32): ping from app to outside (203.0.113.2)"),
        "{out}"
    );
    assert!(
        err.contains("chain FORWARD of table ip filter (hook forward, policy drop) is not weft's"),
        "{err}"
    );
    assert!(err.contains("weft does not change other tables"), "{err}");
    // An edit re-applies weft's table (and fails its check, so it is
    // rolled back) without touching the other table.
    let text = std::fs::read_to_string(&lab.file).unwrap();
    lab.rewrite(&text.replace(
        r#""5353/udp -> web:53"]"#,
        r#""5353/udp -> web:53", "2222 -> app:22"]"#,
    ));
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("check 1 (line 32): ping from app to outside (203.0.113.2) failed"),
        "{err}"
    );
    assert!(err.contains("policy drop"), "{err}");
    assert!(err.contains("was restored"), "{err}");
    assert_eq!(nft(&lab, "gw", &["list", "table", "ip", "filter"]), before);
    // The fix the warning names, in the other table, by the user.
    for rule in [
        r#"iifname "gw" accept"#,
        r#"oifname "gw" ct state established,related accept"#,
        r#"oifname "gw" ct status dnat accept"#,
    ] {
        assert!(err_check.contains(rule), "{err_check}");
        let mut args = vec!["insert", "rule", "ip", "filter", "FORWARD"];
        args.extend(rule.split(' ').map(|w| w.trim_matches('"')));
        nft(&lab, "gw", &args);
    }
    let o = lab.run(&["check", &lab.name]);
    assert!(o.status.success(), "{o:?}");
    let out = lab.up();
    assert!(out.contains("+ forward 2222/tcp -> app:22"), "{out}");
    let _srv = Server::start(&lab.netns("web"), 80, "web");
    assert_eq!(
        tcp_from(&lab.netns("outside"), "203.0.113.1:8080").unwrap(),
        "web 203.0.113.2"
    );
}

#[test]
fn exp9_a_change_that_breaks_the_gateway_is_rolled_back() {
    let lab = Lab::example("safebr", "safe-bridge.toml");
    let out = lab.up();
    assert!(out.contains("1 check(s) passed"), "{out}");
    let before = lab.ip("host", &["-br", "addr"]);
    let routes = lab.ip("host", &["route"]);
    lab.rewrite(
        &std::fs::read_to_string(common::root().join("examples/safe-bridge-broken.toml")).unwrap(),
    );
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("check 1 (line 24): ping from host to 173.18.22.1 failed: no reply from 173.18.22.1 within 1.0 s"),
        "{err}"
    );
    assert!(
        err.contains("was restored to its state before this `weft up`"),
        "{err}"
    );
    // The lab works as before, and is as before.
    assert!(lab.ping("host", "173.18.22.1", None));
    assert_eq!(lab.ip("host", &["-br", "addr"]), before);
    assert_eq!(lab.ip("host", &["route"]), routes);
    assert!(!lab.ip("host", &["link"]).contains("br-wan"));
    lab.rewrite(
        &std::fs::read_to_string(common::root().join("examples/safe-bridge.toml")).unwrap(),
    );
    assert!(lab.up().contains("up to date"));
    // Done right, the change stays.
    lab.rewrite(
        &std::fs::read_to_string(common::root().join("examples/safe-bridge-fixed.toml")).unwrap(),
    );
    let out = lab.up();
    assert!(out.contains("1 check(s) passed"), "{out}");
    assert!(lab
        .ip("host", &["route"])
        .contains("default via 192.168.12.1 dev br-wan"));
    assert!(lab.ping("host", "173.18.22.1", None));
}

#[test]
fn a_failed_check_on_a_new_lab_removes_it() {
    let lab = Lab::from_text(
        "chknew",
        r#"
name = "x"
[nodes.a.interfaces.eth0]
addresses = ["10.7.0.1/24"]
[nodes.b.interfaces.eth0]
addresses = ["10.7.0.2/24"]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
[[checks]]
from = "a"
tcp = "b:4242"
timeout = 0.5
"#,
    );
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("check 1 (line 9): tcp from a to b:4242 (10.7.0.2:4242) failed: connecting to 10.7.0.2:4242: Connection refused"), "{err}");
    assert!(err.contains("was new, so it was removed"), "{err}");
    assert!(lab.namespaces().is_empty());
    assert!(!std::path::Path::new(&format!("/etc/netns/{}", lab.netns("a"))).exists());
}

/// The machine changes underneath: a check deletes an interface, then
/// fails; undoing the change cannot put that interface back in its bridge,
/// and weft says exactly which steps it could not restore.
#[test]
fn a_failed_rollback_says_what_it_could_not_restore() {
    let lab = Lab::example("rbfail", "safe-bridge.toml");
    lab.up();
    let broken = std::fs::read_to_string(common::root().join("examples/safe-bridge-broken.toml"))
        .unwrap()
        + "\n[[checks]]\nfrom = \"host\"\ncommand = \"ip link del eth2; exit 3\"\n";
    lab.rewrite(&broken);
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("check 2 (line 29): command in host: sh -c ip link del eth2; exit 3 failed: sh exit status: 3"), "{err}");
    assert!(err.contains("restoring lab"), "{err}");
    assert!(err.contains("interface eth2 is not there"), "{err}");
    assert!(err.contains("not restored (3 step(s)): ~ host:eth2 master br-wan -> none; + address 192.168.12.68/24 on host:eth2; + route default via 192.168.12.1 in host"), "{err}");
}

#[test]
fn names_follow_edits_and_go_at_down() {
    let lab = Lab::from_text(
        "names",
        "name = \"x\"\n[nodes.br]\nkind = \"bridge\"\naddresses = [\"10.8.0.1/24\"]\n[nodes.h]\ncount = 2\nattach = \"br\"\n",
    );
    lab.up();
    let dir = |n: &str| std::path::PathBuf::from(format!("/etc/netns/{}", lab.netns(n)));
    let hosts = std::fs::read_to_string(dir("h1").join("hosts")).unwrap();
    assert!(hosts.contains("10.8.0.3\th2\n"), "{hosts}");
    lab.rewrite("name = \"x\"\n[nodes.br]\nkind = \"bridge\"\naddresses = [\"10.8.0.1/24\"]\n[nodes.h]\ncount = 1\nattach = \"br\"\n[nodes.db]\nattach = \"br\"\n");
    lab.up();
    let hosts = std::fs::read_to_string(dir("h1").join("hosts")).unwrap();
    assert!(
        hosts.contains("\tdb\n") && !hosts.contains("\th2\n"),
        "{hosts}"
    );
    assert!(!dir("h2").exists());
    let o = lab.run(&["exec", &lab.name, "db", "--", "getent", "ahostsv4", "h1"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("10.8.0.2"),
        "{o:?}"
    );
    lab.ok(&["down", &lab.name]);
    for n in ["br", "h1", "db"] {
        assert!(!dir(n).exists(), "{n}");
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// What a VM's network card does, minimally: answer ARP for its address and
/// ICMP echo requests, from the frames of its TAP device.
fn vm_answer(frame: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Option<Vec<u8>> {
    if frame.len() < 42 {
        return None;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype == 0x0806 && frame[20..22] == [0, 1] && frame[38..42] == ip {
        let mut r = Vec::with_capacity(42);
        r.extend_from_slice(&frame[6..12]);
        r.extend_from_slice(&mac);
        r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        r.extend_from_slice(&mac);
        r.extend_from_slice(&ip);
        r.extend_from_slice(&frame[22..32]);
        return Some(r);
    }
    if ethertype == 0x0800 && frame[23] == 1 && frame[30..34] == ip {
        let ihl = usize::from(frame[14] & 0xf) * 4;
        if frame.len() < 14 + ihl + 8 || frame[14 + ihl] != 8 {
            return None;
        }
        let mut r = frame.to_vec();
        r[0..6].copy_from_slice(&frame[6..12]);
        r[6..12].copy_from_slice(&mac);
        r[26..30].copy_from_slice(&frame[30..34]);
        r[30..34].copy_from_slice(&frame[26..30]);
        let icmp = 14 + ihl;
        r[icmp] = 0;
        r[icmp + 2] = 0;
        r[icmp + 3] = 0;
        let c = checksum(&r[icmp..]);
        r[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
        return Some(r);
    }
    None
}

/// Experiment 10: the VM pattern. A program opens the TAP that is a port of
/// the host's bridge, as a VM's emulator does, and answers ARP and ping for
/// 192.168.60.51 on the bridge's own subnet: ns1 reaches it through the
/// bridge, at layer 2 (its neighbour entry has the VM's MAC).
#[test]
fn exp10_a_program_on_a_tap_port_is_on_the_bridges_l2_subnet() {
    let lab = Lab::example("vm", "vm.toml");
    lab.up();
    let mac = [0x02, 0, 0, 0, 0, 0x51];
    let ip = [192, 168, 60, 51];
    let spec = weft_sys::tuntap::TunTapSpec::new("vm1-tap", weft_sys::tuntap::Mode::Tap);
    let fd: OwnedFd =
        weft_sys::netns::run_in_named(&lab.netns("host"), move || weft_sys::tuntap::attach(&spec))
            .unwrap()
            .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = answered.clone();
    let vm = std::thread::spawn(move || {
        let mut tap = std::fs::File::from(fd);
        let mut buf = [0u8; 2048];
        while !s.load(Ordering::Relaxed) {
            match tap.read(&mut buf) {
                Ok(n) => {
                    if let Some(r) = vm_answer(&buf[..n], mac, ip) {
                        tap.write_all(&r).unwrap();
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("reading the TAP: {e}"),
            }
        }
        // The fd closes here, so the namespace can go.
    });
    // With a program attached, the TAP has a carrier and its port forwards.
    let t0 = Instant::now();
    while lab.iface("host", "vm1-tap")["port_state"] != "forwarding" {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{}",
            lab.iface("host", "vm1-tap")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lab.ping("ns1", "192.168.60.51", None));
    assert!(lab.ping("host", "192.168.60.51", None));
    let neigh = lab.ip("ns1", &["neigh", "show", "192.168.60.51"]);
    assert!(neigh.contains("lladdr 02:00:00:00:00:51"), "{neigh}");
    stop.store(true, Ordering::Relaxed);
    // The TAP is read blocking: a frame to it wakes the reader, which then
    // sees `stop` (without one, on a quiet bridge, join waited forever).
    let _ = lab.ping("ns1", "192.168.60.51", None);
    vm.join().unwrap();
    assert!(answered.load(Ordering::Relaxed) >= 3);
    // With the program gone, nothing answers.
    assert!(!lab.ping("ns1", "192.168.60.51", None));
}

/// A run killed after writing the name files (here: the state is gone, as
/// if `weft up` died before saving it): the journal still lists them, and
/// `weft down` removes them.
#[test]
fn name_files_of_a_killed_run_are_removed_by_down() {
    let lab = Lab::from_text(
        "namekill",
        "name = \"x\"\n[nodes.a.interfaces.eth0]\naddresses = [\"10.9.0.1/24\"]\n[nodes.b.interfaces.eth0]\naddresses = [\"10.9.0.2/24\"]\n[[links]]\nendpoints = [\"a:eth0\", \"b:eth0\"]\n",
    );
    lab.up();
    let dir = std::path::PathBuf::from(format!("/etc/netns/{}", lab.netns("a")));
    assert!(dir.join("hosts").exists());
    let labdir = lab.state.join("labs").join(&lab.name);
    let journal = std::fs::read_to_string(labdir.join("journal")).unwrap();
    assert!(
        journal.contains(&format!("etc {}", dir.display())),
        "{journal}"
    );
    std::fs::remove_file(labdir.join("state.json")).unwrap();
    lab.ok(&["down", &lab.name]);
    assert!(!dir.exists());
    assert!(lab.namespaces().is_empty());
}
