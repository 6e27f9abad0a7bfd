//! Helpers for tests that drive the real `weft` binary against the kernel.
//!
//! Every test builds its own lab (a unique name, so tests run in parallel),
//! with weft's state in a private directory, and a guard that runs
//! `weft down` even when the test fails. Labs live in fresh namespaces only.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn weft_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Kernel tests need root; say so plainly rather than fail obscurely.
pub fn require_root() {
    // Run by a user who is not root (.ci/rootless), this test program
    // joined weft's user namespace before main (weft_sys::userns), where
    // it is root: its `ip` and /run/netns are the labs'.
    if let Some(Err(e)) = weft_sys::userns::joined_at_start() {
        panic!("joining weft's user namespace: {e}");
    }
    let uid = unsafe_free_uid();
    assert_eq!(uid, 0, "these tests build network namespaces and must run as root (the README's test command does)");
}

fn unsafe_free_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A lab under test: its name, its file, its private state directory.
pub struct Lab {
    pub name: String,
    pub file: PathBuf,
    pub state: PathBuf,
}

impl Lab {
    /// Copy an example (or any TOML text) under a unique lab name.
    pub fn from_text(tag: &str, text: &str) -> Lab {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}{}-{tag}", std::process::id() % 100000, n);
        assert!(name.len() <= 32, "lab name {name} too long");
        let dir = std::env::temp_dir().join(format!("weft-test-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut replaced = false;
        let text: String = text
            .lines()
            .map(|l| {
                if !replaced && l.starts_with("name = ") {
                    replaced = true;
                    format!("name = \"{name}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file = dir.join("lab.toml");
        std::fs::write(&file, text + "\n").unwrap();
        Lab {
            name,
            file,
            state: dir.join("state"),
        }
    }

    pub fn example(tag: &str, example: &str) -> Lab {
        let text = std::fs::read_to_string(root().join("examples").join(example)).unwrap();
        Lab::from_text(tag, &text)
    }

    /// An example and the directory of the same name beside it (files its
    /// nodes bind, relative to the lab file), copied under a unique lab
    /// name.
    pub fn example_with_dir(tag: &str, example: &str) -> Lab {
        let lab = Lab::example(tag, &format!("{example}.toml"));
        let st = Command::new("cp")
            .arg("-r")
            .arg(root().join("examples").join(example))
            .arg(lab.file.parent().unwrap())
            .status()
            .unwrap();
        assert!(st.success());
        lab
    }

    pub fn weft(&self) -> Command {
        let mut c = Command::new(weft_bin());
        c.env("WEFT_STATE_DIR", &self.state).env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.weft().args(args).output().unwrap()
    }

    /// Run and require success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "weft {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn up(&self) -> String {
        self.ok(&["up", self.file.to_str().unwrap()])
    }

    /// `weft up` of the lab's file, required to succeed: what it said on
    /// standard error (the runtime changes it put back, warnings).
    pub fn up_said(&self) -> String {
        let o = self.run(&["up", self.file.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "weft up failed: {said}");
        said
    }

    /// Rewrite the lab's file (keeping the lab's name).
    pub fn rewrite(&self, text: &str) {
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("name = ") {
                    format!("name = \"{}\"", self.name)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&self.file, text + "\n").unwrap();
    }

    pub fn netns(&self, node: &str) -> String {
        weft_topo::netns_name(&self.name, node)
    }

    /// `weft ping LAB NODE TARGET` with one probe; true if it answered.
    pub fn ping(&self, node: &str, target: &str, iface: Option<&str>) -> bool {
        let mut args = vec!["ping", &self.name, node, target, "-c", "1", "-W", "1"];
        if let Some(i) = iface {
            args.extend(["-I", i]);
        }
        let o = self.run(&args);
        if !o.status.success() {
            // Shown only for failing tests: what the ping itself said.
            eprintln!(
                "weft {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        o.status.success()
    }

    /// Pings (one probe at a time) until one is answered or `limit`
    /// passes; how long it took. For what comes up in its own time: a
    /// tunnel's session, a spanning tree settling, a port back up.
    pub fn ping_within(
        &self,
        node: &str,
        target: &str,
        limit: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if self.ping(node, target, None) {
                return Some(t0.elapsed());
            }
        }
        None
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", &self.name, "--json"])).unwrap()
    }

    /// The status entry of one interface.
    pub fn iface(&self, node: &str, iface: &str) -> serde_json::Value {
        let s = self.status_json();
        iface_in(&s, node, iface)
            .unwrap_or_else(|| panic!("no iface {node}:{iface} in {s:#}"))
            .clone()
    }

    /// The MAC address of an interface, as status reports it.
    pub fn mac(&self, node: &str, iface: &str) -> String {
        let i = self.iface(node, iface);
        i["mac"]
            .as_str()
            .unwrap_or_else(|| panic!("no MAC for {node}:{iface}: {i}"))
            .to_string()
    }

    /// `weft up -q` on the lab's file, running in the background (its
    /// output thrown away).
    pub fn spawn_up(&self) -> std::process::Child {
        use std::process::Stdio;
        self.weft()
            .args(["up", "-q", self.file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Start `weft up` on the lab's file and SIGKILL it (no destructor, no
    /// cleanup of any kind runs) once `namespaces` of its namespaces exist.
    /// Returns how many existed after the kill.
    pub fn kill_up_when(&self, namespaces: usize) -> usize {
        use std::time::{Duration, Instant};
        let mut child = self.spawn_up();
        let t0 = Instant::now();
        while self.namespaces().len() < namespaces && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(2));
        }
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(
            !child.wait().unwrap().success(),
            "up must have been killed, not finished"
        );
        self.namespaces().len()
    }

    /// Namespaces of this lab that exist right now.
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = weft_topo::netns_name(&self.name, "");
        let mut v: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// `ip -n NETNS ARGS...` output, for checks weft does not itself report.
    pub fn ip(&self, node: &str, args: &[&str]) -> String {
        let o = Command::new("ip")
            .arg("-n")
            .arg(self.netns(node))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Waits (up to 30 s) until something listens on TCP port `port` in
    /// `node`: a server the test started in the background.
    pub fn wait_listening(&self, node: &str, port: u16) {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        loop {
            let o = Command::new("ss")
                .args(["-N", &self.netns(node), "-Hltn", "sport", "="])
                .arg(format!(":{port}"))
                .output()
                .unwrap();
            if o.status.success() && !o.stdout.is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "nothing listens on TCP port {port} in {node}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// RX and TX packet counters of an interface, from sysfs-free netlink
    /// statistics (`ip -s -j link`).
    pub fn counters(&self, node: &str, iface: &str) -> (u64, u64) {
        let out = self.ip(node, &["-s", "-j", "link", "show", "dev", iface]);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let st = &v[0]["stats64"];
        (
            st["rx"]["packets"].as_u64().unwrap(),
            st["tx"]["packets"].as_u64().unwrap(),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down", &self.name]);
        let mut left = self.namespaces();
        // Name files (/etc/netns/NETNS) must go with the lab too.
        let prefix = weft_topo::netns_name(&self.name, "");
        if let Ok(d) = std::fs::read_dir("/etc/netns") {
            left.extend(
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .map(|n| format!("/etc/netns/{n}")),
            );
        }
        let _ = std::fs::remove_dir_all(self.file.parent().unwrap());
        if !left.is_empty() && !std::thread::panicking() {
            panic!("weft down left namespaces behind: {left:?}");
        }
    }
}

/// The entry of interface `node:iface` in `weft status --json` output.
pub fn iface_in<'a>(
    status: &'a serde_json::Value,
    node: &str,
    iface: &str,
) -> Option<&'a serde_json::Value> {
    status[0]["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)?["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == iface)
}

/// A lab file (`name = "x"`): switch `sw` (its `extra` lines after `kind`)
/// and hosts `{host}1`..`{host}{n}`, host i with 10.`net`.0.i/24 on eth0,
/// cabled to the switch's port p{i}.
pub fn switched_hosts(sw: &str, host: &str, net: u8, n: u8, extra: &str) -> String {
    let mut t = format!("name = \"x\"\n[nodes.{sw}]\nkind = \"switch\"\n{extra}\n");
    for i in 1..=n {
        t += &format!("[nodes.{host}{i}.interfaces.eth0]\naddresses = [\"10.{net}.0.{i}/24\"]\n");
    }
    for i in 1..=n {
        t += &format!("[[links]]\nendpoints = [\"{host}{i}:eth0\", \"{sw}:p{i}\"]\n");
    }
    t
}

/// Sends `n` numbered datagrams from `from` to `to` (2 ms apart) and
/// returns, for each that arrived, its number and one-way delay in ms.
pub fn datagrams(lab: &Lab, from: &str, to: &str, to_ip: &str, n: u32) -> Vec<(u32, f64)> {
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};
    let bind = |node: &str, a: String| {
        weft_sys::netns::run_in_named(&lab.netns(node), move || UdpSocket::bind(a))
            .unwrap()
            .unwrap()
    };
    let rx = bind(to, format!("{to_ip}:7000"));
    let tx = bind(from, "0.0.0.0:0".into());
    rx.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let t0 = Instant::now();
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let mut drain = |got: &mut Vec<(u32, Instant)>| {
        while let Ok(k) = rx.recv(&mut buf) {
            got.push((
                u32::from_be_bytes(buf[..4].try_into().unwrap()),
                Instant::now(),
            ));
            let _ = k;
        }
    };
    for i in 0..n {
        sent.push(Instant::now());
        tx.send_to(&i.to_be_bytes(), format!("{to_ip}:7000"))
            .unwrap();
        drain(&mut got);
        while t0.elapsed() < Duration::from_millis(2 * u64::from(i + 1)) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // The last ones may come late on a loaded machine: wait until none
    // has come for a second (at most 20 s), not a fixed time after sending.
    let end = Instant::now();
    let mut last = (got.len(), Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) && end.elapsed() < Duration::from_secs(20) {
        drain(&mut got);
        if got.len() != last.0 {
            last = (got.len(), Instant::now());
        }
    }
    got.iter()
        .map(|(i, at)| (*i, (*at - sent[*i as usize]).as_secs_f64() * 1e3))
        .collect()
}

/// Checks the sorted one-way delays (ms) of datagrams through a link
/// delayed by `delay` ms. Never early. The delay applied once: the
/// fastest datagram is within `delay` of it (twice the delay, or a
/// delay in the wrong unit, puts every datagram past that). Late only by
/// the machine's load, not by a missed release: the median under 250 ms
/// (a wire's thread wakes every 500 ms when it thinks nothing is held).
/// Not a median close to `delay`: a loaded machine (load 24 on 2 cores)
/// made a tunnel's median 45 ms for 10 ms while its fastest took 10.5.
pub fn assert_delays(what: &str, sorted: &[f64], delay: f64) {
    assert!(!sorted.is_empty(), "{what}: nothing arrived");
    let (min, median) = (sorted[0], sorted[sorted.len() / 2]);
    assert!(
        min >= delay - 0.1,
        "{what}: early: {:?}",
        &sorted[..sorted.len().min(3)]
    );
    assert!(min < 2.0 * delay, "{what}: the fastest took {min} ms");
    assert!(median < 250.0, "{what}: median {median} ms");
}

/// A TCP transfer of `bytes` from `client` to `server_ip` (on `server`);
/// returns the bytes the server read until the client closed. Every byte
/// written arrives unless the path breaks (the count is exact, where
/// iperf3's server stops counting when its client says it is done).
pub fn tcp_transfer(lab: &Lab, server: &str, server_ip: &str, client: &str, bytes: u64) -> u64 {
    use std::io::{Read, Write};
    use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
    let ip: IpAddr = server_ip.parse().unwrap();
    let in_ns = |node: &str| lab.netns(node);
    let listener =
        weft_sys::netns::run_in_named(&in_ns(server), move || TcpListener::bind((ip, 0)))
            .unwrap()
            .unwrap();
    let to = SocketAddr::new(ip, listener.local_addr().unwrap().port());
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut c, _) = listener.accept()?;
        c.set_read_timeout(Some(LIMIT))?;
        let (mut buf, mut n) = (vec![0u8; 1 << 16], 0u64);
        loop {
            match c.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    });
    let mut c = weft_sys::netns::run_in_named(&in_ns(client), move || {
        TcpStream::connect_timeout(&to, LIMIT)
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("connecting to {to} from {client}: {e}"));
    c.set_write_timeout(Some(LIMIT)).unwrap();
    let chunk = vec![0x5a_u8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        c.write_all(&chunk[..k])
            .unwrap_or_else(|e| panic!("sending to {to}, {left} bytes left: {e}"));
        left -= k as u64;
    }
    drop(c);
    reader
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("receiving on {to}: {e}"))
}

/// A child process killed (and reaped) when the test lets go of it,
/// failing or not.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system, all threads) of a process, in clock ticks
/// (100 a second on Linux whatever the kernel's HZ); None once it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime, fields 14 and 15.
    Some(rest[11].parse::<u64>().ok()? + rest[12].parse::<u64>().ok()?)
}

/// CPU time (user + system) a running process has used, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    cpu_ticks(pid).unwrap_or_else(|| panic!("process {pid} is gone")) as f64 / 100.0
}

/// The process exists and is not a zombie (this machine's init may not
/// reap, and a zombie's namespaces are gone).
pub fn alive(pid: impl Into<u64>) -> bool {
    let pid = pid.into();
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The PID of the lab's switch datapath, from its record.
pub fn datapath_pid(lab: &Lab) -> u32 {
    let p = lab.state.join("labs").join(&lab.name).join("datapath.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["pid"].as_u64().unwrap() as u32
}

/// What the lab's stream keeps (`weft events --json --since all
/// --no-follow`): the text and its events.
pub fn kept_events(lab: &Lab) -> (String, Vec<serde_json::Value>) {
    let text = lab.ok(&[
        "events",
        &lab.name,
        "--json",
        "--since",
        "all",
        "--no-follow",
    ]);
    let all = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text, all)
}

/// `weft serve LAB` started, and the first line it printed (the page's
/// address, with its token).
pub fn serve(lab: &Lab, stderr: std::process::Stdio) -> (Kill, String) {
    use std::io::BufRead;
    let mut serve = lab
        .weft()
        .args(["serve", &lab.name])
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (Kill(serve), first)
}

/// The one-way delays of datagrams (as [`datagrams`] returns them), in
/// milliseconds, smallest first.
pub fn sorted_delays(got: &[(u32, f64)]) -> Vec<f64> {
    let mut d: Vec<f64> = got.iter().map(|(_, d)| *d).collect();
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    d
}

/// Datagrams (as [`datagrams`] returns them) of 300 sent over a link that
/// loses 20% and delays `delay` ms: 240 arrive, within 5 standard
/// deviations, and their delays pass [`assert_delays`].
pub fn assert_lossy_arrivals(what: &str, got: &[(u32, f64)], n: u32, delay: f64) {
    assert!(
        (205..=275).contains(&got.len()),
        "{what}: {} of {n} arrived",
        got.len()
    );
    let d = sorted_delays(got);
    eprintln!(
        "{what}: {} of {n} arrived, one-way delay min {:.2} median {:.2} ms",
        got.len(),
        d[0],
        d[d.len() / 2]
    );
    assert_delays(what, &d, delay);
}

/// tcpdump on one of a lab's interfaces, one line per packet (`-e`: with
/// each frame's length), read on a thread; `start` returns once tcpdump
/// says its socket is bound, so nothing sent after it is missed.
pub struct Dump {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Dump {
    pub fn start(lab: &Lab, node: &str, iface: &str, filter: &[&str]) -> Dump {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.netns(node), "tcpdump", "-i", iface])
            .args(["-n", "-l", "-e", "--immediate-mode"])
            .args(filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        while !said.contains("listening on") {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("tcpdump exited: {said}");
            }
            said += &line;
        }
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
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

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Stops tcpdump (after a moment for the last packets) and returns its lines.
    pub fn stop(mut self) -> Vec<String> {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.lines()
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
