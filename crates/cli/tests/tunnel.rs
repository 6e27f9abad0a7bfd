//! `weft keygen` and `weft tunnel` through the real binary: two lab nodes
//! stand in for two machines (their veth is the underlay), each runs a
//! tunnel, and traffic crosses the tunnel in TUN and TAP mode, over UDP and
//! TCP; a wrong key never connects; a restarted peer, an underlay outage
//! and a peer changing address are survived. Every wait is bounded; every
//! tunnel process is killed by its PID when its guard drops.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{weft_bin, Lab};

/// The first ping through a fresh tunnel: a handshake and a few process
/// starts, so it takes milliseconds; the bound only guards against a test
/// that hangs, and is wide because CI runs every test at once on 2 cores.
const FIRST_PING: Duration = Duration::from_secs(15);

/// What the TCP transfers carry: enough segments for the offloads (TSO,
/// GSO, GRO) to show in the status.
const TCP_BYTES: u64 = 4_000_000;

const UNDERLAY: &str = r#"
name = "x"
[nodes.m1.interfaces.eth0]
addresses = ["10.77.0.1/24"]
[nodes.m2.interfaces.eth0]
addresses = ["10.77.0.2/24"]
[[links]]
endpoints = ["m1:eth0", "m2:eth0"]
"#;

/// A running `weft tunnel`, killed (by PID) on drop.
struct Tun {
    child: Child,
    status: PathBuf,
}

impl Drop for Tun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tun {
    fn status(&self) -> serde_json::Value {
        std::fs::read(&self.status)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Wait until the status file satisfies `f` (it is rewritten every second).
    fn wait_status(&self, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "status never showed {what}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

struct Setup {
    lab: Lab,
    dir: PathBuf,
    /// Environment for the tunnel processes.
    env: Vec<(&'static str, &'static str)>,
}

fn keygen(dir: &Path, name: &str) -> String {
    let o = Command::new(weft_bin())
        .arg("keygen")
        .arg(dir.join(name))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let lab = Lab::from_text(tag, UNDERLAY);
        lab.up();
        let dir = lab.file.parent().unwrap().to_path_buf();
        keygen(&dir, "m1.key");
        keygen(&dir, "m2.key");
        Setup {
            lab,
            dir,
            env: vec![],
        }
    }

    /// `ip -n NODE ARGS`, which must succeed.
    fn ip(&self, node: &str, args: &[&str]) {
        let o = Command::new("ip")
            .arg("-n")
            .arg(self.lab.netns(node))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ip {args:?} in {node}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn pubkey(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{node}.key.pub")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Start `weft tunnel` in `node` with a key file and extra flags.
    fn tunnel(&self, node: &str, key: &str, args: &[&str]) -> Tun {
        let status = self.dir.join(format!("{node}.json"));
        let _ = std::fs::remove_file(&status);
        let log = std::fs::File::create(self.dir.join(format!("{node}.log"))).unwrap();
        let child = self
            .lab
            .weft()
            .args(["exec", &self.lab.name, node, "--", weft_bin(), "tunnel"])
            .arg("--key")
            .arg(self.dir.join(key))
            .arg("--status")
            .arg(&status)
            .args(args)
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Tun { child, status }
    }

    /// The usual pair: m1 knows m2's address, m2 waits for m1.
    fn pair(&self, mode: &str, transport: &str) -> (Tun, Tun) {
        self.pair_with(mode, transport, &[])
    }

    /// [`Self::pair`] with more flags for both ends.
    fn pair_with(&self, mode: &str, transport: &str, extra: &[&str]) -> (Tun, Tun) {
        let (k1, k2) = (self.pubkey("m1"), self.pubkey("m2"));
        let a = self.tunnel(
            "m1",
            "m1.key",
            &[
                "--dev",
                "wt0",
                "--mode",
                mode,
                "--transport",
                transport,
                "--peer-key",
                &k2,
                "--peer",
                "10.77.0.2:5000",
                "--address",
                "10.9.0.1/24",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        );
        let b = self.tunnel(
            "m2",
            "m2.key",
            &[
                "--dev",
                "wt0",
                "--mode",
                mode,
                "--transport",
                transport,
                "--peer-key",
                &k1,
                "--address",
                "10.9.0.2/24",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        );
        (a, b)
    }

    /// A TCP transfer of [`TCP_BYTES`] across the tunnel, m1 to m2, on
    /// plain sockets: the bytes that arrived. A fixed amount, not a rate
    /// over a second (a loaded machine may take longer; each byte still
    /// arrives unless the tunnel breaks), and counted exactly (iperf3's
    /// server stops counting when its client says it is done).
    fn tcp_bytes(&self) -> u64 {
        common::tcp_transfer(&self.lab, "m2", "10.9.0.2", "m1", TCP_BYTES)
    }
}

#[test]
fn keygen_writes_a_private_key_only_root_reads_and_never_overwrites() {
    let dir = std::env::temp_dir().join(format!("weft-keygen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = keygen(&dir, "k");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir.join("k")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("k.pub")).unwrap().trim(),
        p
    );
    assert_eq!(p.len(), 44);
    let o = Command::new(weft_bin())
        .arg("keygen")
        .arg(dir.join("k"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("never overwrites"));
    // FILE.pub, as --help says, also for a name with an extension.
    let p = keygen(&dir, "m1.key");
    assert_eq!(
        std::fs::read_to_string(dir.join("m1.key.pub"))
            .unwrap()
            .trim(),
        p
    );
    assert!(!dir.join("m1.pub").exists());
    // A missing directory is not an existing key.
    let o = Command::new(weft_bin())
        .args(["keygen", "/no/such/dir/k"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("overwrit"), "{err}");
    assert!(err.contains("/no/such/dir does not exist"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tun_mode_carries_ping_and_tcp() {
    let s = Setup::new("tun");
    let (a, b) = s.pair("tun", "udp");
    assert!(s.lab.ping_within("m1", "10.9.0.2", FIRST_PING).is_some());
    assert_eq!(s.tcp_bytes(), TCP_BYTES);
    let st = b.wait_status("a session and traffic", |v| {
        v["up"] == true && v["rx_packets"].as_u64() > Some(100)
    });
    assert_eq!(st["endpoint"], "10.77.0.1:5000");
    assert_eq!(st["mode"], "tun");
    // Two workers sharing both directions, and the timers.
    assert_eq!(threads(&st), 3, "two workers and the timers");
    // The MTU leaves room for the outer headers; the ring is longer than
    // TUN's default 500, which drops bursts.
    let link = s.lab.ip("m1", &["link", "show", "wt0"]);
    assert!(link.contains("mtu 1440"), "{link}");
    assert!(link.contains("qlen 4096"), "{link}");
    let st = a.status();
    assert_eq!(
        st["drops"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        0,
        "{st:#}"
    );
    // The offloads this kernel has were used: the sender read TCP segments
    // bigger than the MTU from its TUN and sent UDP GSO batches; the
    // receiver got glued datagrams (UDP GRO).
    let off = serde_json::json!({"tso": true, "udp_gso": true, "udp_gro": true});
    let st = a.wait_status("TSO reads and GSO sends", |v| {
        v["tso_reads"].as_u64() > Some(0) && v["gso_sends"].as_u64() > Some(0)
    });
    assert_eq!(st["offloads"], off, "{st:#}");
    let st = b.wait_status("GRO", |v| v["gro_datagrams"].as_u64() > Some(0));
    assert_eq!(st["offloads"], off, "{st:#}");
}

#[test]
fn tun_mode_without_offloads_carries_ping_and_tcp() {
    let s = Setup::new("tunnooff");
    let (a, b) = s.pair_with("tun", "udp", &["--no-offload"]);
    assert!(s.lab.ping_within("m1", "10.9.0.2", FIRST_PING).is_some());
    assert_eq!(s.tcp_bytes(), TCP_BYTES);
    b.wait_status("traffic", |v| v["rx_packets"].as_u64() > Some(100));
    let st = a.wait_status("traffic", |v| v["tx_packets"].as_u64() > Some(100));
    let off = serde_json::json!({"tso": false, "udp_gso": false, "udp_gro": false});
    assert_eq!(st["offloads"], off, "{st:#}");
    assert_eq!(st["tso_reads"], 0);
    assert_eq!(st["gso_sends"], 0);
    assert_eq!(b.status()["gro_datagrams"], 0);
}

#[test]
fn tun_mode_on_the_one_thread_loop_carries_ping_and_tcp() {
    // The loop bench/tunnel.sh compares the threaded one with.
    let mut s = Setup::new("tun1t");
    s.env.push(("WEFT_TUNNEL_ONE_THREAD", "1"));
    let (a, b) = s.pair("tun", "udp");
    assert!(s.lab.ping_within("m1", "10.9.0.2", FIRST_PING).is_some());
    assert_eq!(s.tcp_bytes(), TCP_BYTES);
    b.wait_status("traffic", |v| v["rx_packets"].as_u64() > Some(100));
    let st = a.wait_status("traffic", |v| v["tx_packets"].as_u64() > Some(100));
    assert_eq!(st["send_errors"], 0, "{st:#}");
    assert_eq!(st["device_errors"], 0, "{st:#}");
    assert_eq!(threads(&st), 1, "the one-thread loop");
}

/// Threads of the tunnel process whose status is `st`.
fn threads(st: &serde_json::Value) -> usize {
    let pid = st["pid"].as_u64().expect("a pid");
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

#[test]
fn tap_mode_carries_ping_and_tcp() {
    let s = Setup::new("tap");
    let (a, b) = s.pair("tap", "udp");
    assert!(s.lab.ping_within("m1", "10.9.0.2", FIRST_PING).is_some());
    assert_eq!(s.tcp_bytes(), TCP_BYTES);
    let l = s.lab.ip("m1", &["link", "show", "wt0"]);
    assert!(l.contains("link/ether") && l.contains("mtu 1426"), "{l}");
    b.wait_status("TAP mode", |v| v["mode"] == "tap" && v["up"] == true);
    // The TAP handed over TCP segments bigger than a frame, split here.
    let st = a.wait_status("TSO reads", |v| v["tso_reads"].as_u64() > Some(0));
    assert_eq!(st["offloads"]["tso"], true, "{st:#}");
    assert_eq!(st["device_errors"], 0, "{st:#}");
}

#[test]
fn tcp_transport_carries_ping_and_tcp_and_reconnects() {
    let s = Setup::new("tcp");
    let (_a, b) = s.pair("tun", "tcp");
    assert!(s.lab.ping_within("m1", "10.9.0.2", FIRST_PING).is_some());
    assert_eq!(s.tcp_bytes(), TCP_BYTES);
    b.wait_status("TCP", |v| v["transport"] == "tcp" && v["up"] == true);
    // The listening end restarts: the connecting end reconnects by itself.
    drop(b);
    let k1 = s.pubkey("m1");
    let _b = s.tunnel(
        "m2",
        "m2.key",
        &[
            "--dev",
            "wt0",
            "--transport",
            "tcp",
            "--peer-key",
            &k1,
            "--address",
            "10.9.0.2/24",
        ],
    );
    assert!(
        s.lab
            .ping_within("m1", "10.9.0.2", Duration::from_secs(15))
            .is_some(),
        "no traffic after the listener restarted"
    );
}

#[test]
fn each_cipher_carries_ping_and_tcp_and_auto_picks_the_fast_one() {
    let s = Setup::new("ciphers");
    let fast = if weft_tunnel::aes_is_fast() {
        "aes-256-gcm"
    } else {
        "chacha20-poly1305"
    };
    for (flag, want) in [
        ("aes-256-gcm", "aes-256-gcm"),
        ("chacha20-poly1305", "chacha20-poly1305"),
        ("auto", fast),
    ] {
        let (a, b) = s.pair_with("tun", "udp", &["--cipher", flag]);
        assert!(
            s.lab.ping_within("m1", "10.9.0.2", FIRST_PING).is_some(),
            "{flag}"
        );
        assert_eq!(s.tcp_bytes(), TCP_BYTES, "{flag}");
        let st = b.wait_status("traffic", |v| v["rx_packets"].as_u64() > Some(100));
        assert_eq!(st["cipher"], want, "{flag}: {st:#}");
        let st = a.wait_status("traffic", |v| v["tx_packets"].as_u64() > Some(100));
        assert_eq!(st["cipher"], want, "{flag}: {st:#}");
        assert_eq!(st["drops"]["auth"], 0, "{flag}: {st:#}");
        // The next pair opens the same devices, as a restarted tunnel does.
        drop((a, b));
    }
    // The last pair's start-up line says the setting and this end's half
    // of the pick.
    let log = std::fs::read_to_string(s.dir.join("m1.log")).unwrap();
    assert!(log.contains(", cipher auto ("), "{log}");
}

#[test]
fn ends_naming_different_ciphers_never_connect_and_say_why() {
    let s = Setup::new("ciphermis");
    let (k1, k2) = (s.pubkey("m1"), s.pubkey("m2"));
    let _a = s.tunnel(
        "m1",
        "m1.key",
        &[
            "--dev",
            "wt0",
            "--peer-key",
            &k2,
            "--peer",
            "10.77.0.2:5000",
            "--address",
            "10.9.0.1/24",
            "--cipher",
            "aes-256-gcm",
        ],
    );
    let b = s.tunnel(
        "m2",
        "m2.key",
        &[
            "--dev",
            "wt0",
            "--peer-key",
            &k1,
            "--address",
            "10.9.0.2/24",
            "--cipher",
            "chacha20-poly1305",
        ],
    );
    let st = b.wait_status("a cipher warning", |v| {
        v["drops"]["cipher"].as_u64() >= Some(1) && v["warning"].is_string()
    });
    assert_eq!(st["up"], false);
    assert_eq!(st["handshakes"], 0);
    let w = st["warning"].as_str().unwrap();
    assert!(w.contains("--cipher"), "{w}");
    assert!(s
        .lab
        .ping_within("m1", "10.9.0.2", Duration::from_secs(2))
        .is_none());
}

#[test]
fn a_misspelled_cipher_is_refused_before_anything_starts() {
    let o = Command::new(weft_bin())
        .args(["tunnel", "--cipher", "aes", "--peer-key", "x"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cipher `aes` is not known"), "{err}");
    assert!(err.contains("\"aes-256-gcm\""), "{err}");
    // In a config file: at its line.
    let dir = std::env::temp_dir().join(format!("weft-cipher-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("t.toml");
    std::fs::write(&f, "dev = \"wt9\"\ncipher = \"chacha20\"\n").unwrap();
    let o = Command::new(weft_bin())
        .arg("tunnel")
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cipher `chacha20` is not known"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_wrong_key_never_connects() {
    let s = Setup::new("badkey");
    keygen(&s.dir, "other.key");
    let k2 = s.pubkey("m2");
    let other = s.pubkey("other");
    // m2 expects "other", not m1.
    let a = s.tunnel(
        "m1",
        "m1.key",
        &[
            "--dev",
            "wt0",
            "--peer-key",
            &k2,
            "--peer",
            "10.77.0.2:5000",
            "--address",
            "10.9.0.1/24",
        ],
    );
    let b = s.tunnel(
        "m2",
        "m2.key",
        &[
            "--dev",
            "wt0",
            "--peer-key",
            &other,
            "--address",
            "10.9.0.2/24",
        ],
    );
    assert!(s
        .lab
        .ping_within("m1", "10.9.0.2", Duration::from_secs(3))
        .is_none());
    let st = b.wait_status("refused handshakes", |v| {
        v["drops"]["handshake_auth"].as_u64() >= Some(1)
    });
    assert_eq!(st["handshakes"], 0);
    assert_eq!(st["up"], false);
    assert_eq!(a.status()["up"], false);
    assert_eq!(a.status()["handshakes"], 0);
    // Both ends say so, with the likely reason, in their log and status.
    let st = b.wait_status("a warning", |v| v["warning"].is_string());
    assert!(
        st["warning"]
            .as_str()
            .unwrap()
            .contains("is not this end's --peer-key"),
        "{st:#}"
    );
    let st = a.wait_status("a warning", |v| v["warning"].is_string());
    assert!(
        st["warning"].as_str().unwrap().contains("got no answer"),
        "{st:#}"
    );
    for (node, want) in [("m2", "handshake_auth"), ("m1", "no answer")] {
        let log = std::fs::read_to_string(s.dir.join(format!("{node}.log"))).unwrap();
        let warnings = log.matches("weft tunnel: warning: handshakes").count();
        assert_eq!(warnings, 1, "{node}: one warning per 30 s: {log}");
        assert!(log.contains(want), "{node}: {log}");
    }
}

#[test]
fn survives_peer_restart_underlay_outage_and_a_new_peer_address() {
    let s = Setup::new("faults");
    let (_a, b) = s.pair("tun", "udp");
    assert!(s.lab.ping_within("m1", "10.9.0.2", FIRST_PING).is_some());

    // The waiting end restarts (new process, no session): m1 notices within
    // keepalive + retry time and makes a new session.
    drop(b);
    let k1 = s.pubkey("m1");
    let b = s.tunnel(
        "m2",
        "m2.key",
        &[
            "--dev",
            "wt0",
            "--peer-key",
            &k1,
            "--address",
            "10.9.0.2/24",
        ],
    );
    let t = s.lab.ping_within("m1", "10.9.0.2", Duration::from_secs(30));
    assert!(t.is_some(), "no traffic after the peer restarted");
    eprintln!("back {:?} after the peer restarted", t.unwrap());

    // The underlay goes down for 3 seconds.
    s.ip("m1", &["link", "set", "eth0", "down"]);
    assert!(!s.lab.ping("m1", "10.9.0.2", None));
    std::thread::sleep(Duration::from_secs(3));
    s.ip("m1", &["link", "set", "eth0", "up"]);
    let t = s.lab.ping_within("m1", "10.9.0.2", Duration::from_secs(20));
    assert!(t.is_some(), "no traffic after the underlay came back");
    eprintln!("back {:?} after the underlay came back", t.unwrap());

    // m1 moves to another underlay address: m2 follows it.
    // (Deleting first: deleting a primary address also deletes secondaries.)
    s.ip("m1", &["addr", "del", "10.77.0.1/24", "dev", "eth0"]);
    s.ip("m1", &["addr", "add", "10.77.0.11/24", "dev", "eth0"]);
    let t = s.lab.ping_within("m1", "10.9.0.2", Duration::from_secs(20));
    assert!(
        t.is_some(),
        "no traffic after m1 changed address: {:#} {:#} {}",
        _a.status(),
        b.status(),
        s.lab.ip("m1", &["addr"])
    );
    let st = b.wait_status("the new endpoint", |v| v["endpoint"] == "10.77.0.11:5000");
    assert!(st["roams"].as_u64() >= Some(1), "{st:#}");
}
