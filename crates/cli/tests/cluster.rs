//! A Kubernetes cluster emulated on this machine, as `weft k8s` would
//! deploy a lab: each "pod" is a network namespace cabled to a "cluster"
//! bridge (in a namespace of its own), with a private mount namespace
//! (held by a pause process, as a pod's sandbox outlives its container)
//! in which `/run/netns` is a tmpfs of its own and `/etc/hosts` lists the
//! pods' stable names (`LAB-i.LAB`, what a headless Service gives), and
//! weft's state in a directory of its own (an emptyDir). In each runs
//! `weft agent FILE --machine LAB-i --machines 4`, placing the lab itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Lab;

const PODS: usize = 4;

/// 200 hosts behind one router: 50 on each of three kernel bridges and
/// 50 on a weft switch (so a share runs a datapath the agent must keep).
fn lab_text(hosts_per_bridge: usize) -> String {
    let mut t = String::from(
        "name = \"cluster\"\nvxlan_port = 8472\n\n[nodes.r]\nsysctls = { \"net.ipv4.ip_forward\" = 1 }\n",
    );
    for b in 1..=4 {
        let (segment, routes) = if b == 4 {
            (
                format!("kind = \"switch\"\nsubnet = \"10.{b}.0.0/24\"\ngateway = \"10.{b}.0.1\""),
                String::new(),
            )
        } else {
            (
                format!("kind = \"bridge\"\nstp = false\nsubnet = \"10.{b}.0.0/24\""),
                format!("routes = [\"default via 10.{b}.0.1\"]\n"),
            )
        };
        t += &format!(
            "[nodes.r.interfaces.e{b}]\naddresses = [\"10.{b}.0.1/24\"]\n\
             [nodes.b{b}]\n{segment}\n\
             [nodes.h{b}x]\ncount = {hosts_per_bridge}\nattach = \"b{b}\"\n{routes}\
             [[links]]\nendpoints = [\"r:e{b}\", \"b{b}:up\"]\n"
        );
    }
    t
}

struct Pod {
    ns: String,
    /// The pause process holding the pod's mount namespace.
    pause: Child,
    state: PathBuf,
    agent: Option<Child>,
    log: PathBuf,
}

struct Cluster {
    lab: Lab,
    net: String,
    pods: Vec<Pod>,
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Cluster {
    fn new(tag: &str, hosts_per_bridge: usize) -> Cluster {
        let lab = Lab::from_text(tag, &lab_text(hosts_per_bridge));
        let dir = lab.file.parent().unwrap().to_path_buf();
        let short = lab.name.split('-').next().unwrap().to_string();
        let net = format!("wk{short}c");
        sh(&["ip", "netns", "add", &net]);
        sh(&["ip", "-n", &net, "link", "add", "cbr", "type", "bridge"]);
        sh(&["ip", "-n", &net, "link", "set", "cbr", "up"]);
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for i in 0..PODS {
            hosts += &format!("10.244.0.{} {}-{i}.{}\n", 10 + i, lab.name, lab.name);
        }
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        std::fs::write(dir.join("resolv.conf"), "").unwrap();
        let mut pods = Vec::new();
        for i in 0..PODS {
            let ns = format!("wk{short}p{i}");
            sh(&["ip", "netns", "add", &ns]);
            sh(&[
                "ip",
                "-n",
                &net,
                "link",
                "add",
                &format!("p{i}"),
                "master",
                "cbr",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns,
            ]);
            sh(&["ip", "-n", &net, "link", "set", &format!("p{i}"), "up"]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.244.0.{}/24", 10 + i),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            // The pod's sandbox: its own mount namespace with a private
            // /run/netns and the cluster's names, kept by a pause process.
            let script = format!(
                "mount -t tmpfs weft-pod /run/netns && mount --bind {d}/hosts /etc/hosts && mount --bind {d}/resolv.conf /etc/resolv.conf && exec sleep 3600",
                d = dir.display()
            );
            let pause = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{ns}"))
                .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
                .arg(&script)
                .spawn()
                .unwrap();
            let state = dir.join(format!("pod{i}"));
            std::fs::create_dir_all(&state).unwrap();
            pods.push(Pod {
                ns,
                pause,
                log: dir.join(format!("agent{i}.log")),
                state,
                agent: None,
            });
        }
        let c = Cluster { lab, net, pods };
        // The pause processes have mounted their tmpfs once /run/netns in
        // their namespace is empty (the host's lists the pods).
        for i in 0..PODS {
            let t0 = Instant::now();
            loop {
                let o = c.in_pod(
                    i,
                    &[
                        "sh",
                        "-c",
                        &format!(
                            "ls /run/netns | wc -l; grep -c '{}$' /etc/hosts",
                            c.lab.name
                        ),
                    ],
                );
                let out = String::from_utf8_lossy(&o.stdout).to_string();
                if out.split_whitespace().collect::<Vec<_>>() == ["0", &PODS.to_string()] {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "pod {i} not set up: {out}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        c
    }

    fn machine(&self, i: usize) -> String {
        format!("{}-{i}", self.lab.name)
    }

    fn key(&self, i: usize) -> String {
        format!("{}@{}", self.lab.name, self.machine(i))
    }

    /// A command in pod `i`: its network and mount namespaces, its state.
    fn pod_cmd(&self, i: usize) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pods[i].pause.id().to_string(), "-m", "-n", "--"])
            .env("WEFT_STATE_DIR", &self.pods[i].state)
            .env_remove("RUST_LOG");
        c
    }

    fn in_pod(&self, i: usize, args: &[&str]) -> Output {
        self.pod_cmd(i).args(args).output().unwrap()
    }

    fn weft(&self, i: usize, args: &[&str]) -> Output {
        self.pod_cmd(i)
            .arg(common::weft_bin())
            .args(args)
            .output()
            .unwrap()
    }

    fn start_agent(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pods[i].log)
            .unwrap();
        let child = self
            .pod_cmd(i)
            .arg(common::weft_bin())
            .args([
                "agent",
                self.lab.file.to_str().unwrap(),
                "--machine",
                &self.machine(i),
                "--machines",
                &PODS.to_string(),
                "--interval",
                "0.5",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.pods[i].agent = Some(child);
    }

    fn ready(&self, i: usize) -> bool {
        self.pods[i]
            .state
            .join("agents")
            .join(format!("{}.ready", self.key(i)))
            .exists()
    }

    fn wait_all_ready(&self, limit: Duration) {
        let t0 = Instant::now();
        while !(0..PODS).all(|i| self.ready(i)) {
            assert!(
                t0.elapsed() < limit,
                "agents not ready after {limit:?}: {:?}\n{}",
                (0..PODS).map(|i| self.ready(i)).collect::<Vec<_>>(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        self.pods
            .iter()
            .map(|p| {
                format!(
                    "--- {}:\n{}",
                    p.log.display(),
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                )
            })
            .collect()
    }

    fn signal(&mut self, i: usize, sig: &str) -> std::process::ExitStatus {
        let mut a = self.pods[i].agent.take().expect("an agent");
        sh(&["kill", &format!("-{sig}"), &a.id().to_string()]);
        let t0 = Instant::now();
        loop {
            if let Some(s) = a.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "agent {i} did not exit on {sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether pod `i`'s share has a saved state.
    fn built(&self, i: usize) -> bool {
        self.pods[i]
            .state
            .join("labs")
            .join(self.key(i))
            .join("state.json")
            .exists()
    }

    /// Nodes of pod `i`'s share, from `weft status`.
    fn nodes(&self, i: usize) -> Vec<String> {
        let o = self.weft(i, &["status", &self.key(i), "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Namespaces in pod `i`'s /run/netns.
    fn netns_in(&self, i: usize) -> Vec<String> {
        let o = self.in_pod(i, &["ls", "/run/netns"]);
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// Links of the pod's own network namespace besides lo and eth0.
    fn stray_links(&self, i: usize) -> Vec<String> {
        let o = Command::new("ip")
            .args(["-n", &self.pods[i].ns, "-o", "link"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
            .filter(|n| n != "lo" && !n.starts_with("eth0"))
            .collect()
    }

    fn ping(&self, i: usize, from: &str, to: &str) -> bool {
        for _ in 0..3 {
            let o = self.weft(i, &["ping", &self.lab.name, from, to, "-c", "1", "-W", "2"]);
            if o.status.success() {
                return true;
            }
            eprintln!(
                "ping {from} -> {to} in pod {i}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        false
    }

    /// From one host of each pod, a ping to one host of every other pod
    /// (and the router, wherever it is).
    fn ping_every_pair(&self) {
        let hosts: Vec<String> = (0..PODS)
            .map(|i| {
                self.nodes(i)
                    .into_iter()
                    .find(|n| n.starts_with('h'))
                    .unwrap_or_else(|| panic!("pod {i} has no host"))
            })
            .collect();
        for a in 0..PODS {
            for b in 0..PODS {
                if a != b {
                    assert!(
                        self.ping(a, &hosts[a], &hosts[b]),
                        "{} (pod {a}) cannot reach {} (pod {b})\n{}",
                        hosts[a],
                        hosts[b],
                        self.logs()
                    );
                }
            }
        }
    }

    /// After SIGTERM to every agent: no namespace in any pod, no device
    /// in the pods' own namespaces, no lab in any pod's state, nothing in
    /// the host's /run/netns or /etc/netns.
    fn assert_nothing_left(&self) {
        for i in 0..PODS {
            assert_eq!(self.netns_in(i), Vec::<String>::new(), "pod {i}");
            assert_eq!(self.stray_links(i), Vec::<String>::new(), "pod {i}");
            let labs: Vec<_> = std::fs::read_dir(self.pods[i].state.join("labs"))
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(labs.is_empty(), "pod {i} state keeps {labs:?}");
            let agents: Vec<_> = std::fs::read_dir(self.pods[i].state.join("agents"))
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(agents.is_empty(), "pod {i} agent files left: {agents:?}");
        }
        assert_eq!(self.lab.namespaces(), Vec::<String>::new());
        let prefix = weft_topo::netns_name(&self.lab.name, "");
        let names: Vec<String> = std::fs::read_dir("/etc/netns")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(names.is_empty(), "name files left: {names:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..PODS {
            if let Some(mut a) = self.pods[i].agent.take() {
                let _ = Command::new("kill")
                    .args(["-TERM", &a.id().to_string()])
                    .status();
                let t0 = Instant::now();
                while a.try_wait().ok().flatten().is_none()
                    && t0.elapsed() < Duration::from_secs(30)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = a.kill();
                let _ = a.wait();
            }
            // Whatever an agent left: down inside the pod.
            let _ = self.weft(i, &["down", &self.key(i)]);
        }
        for p in &mut self.pods {
            let _ = p.pause.kill();
            let _ = p.pause.wait();
            let _ = Command::new("ip").args(["netns", "del", &p.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.net])
            .status();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn agents_on_four_pods_build_a_200_host_lab_survive_sigkill_and_leave_nothing() {
    let mut c = Cluster::new("cl", 50);
    for i in 0..PODS {
        c.start_agent(i);
    }
    c.wait_all_ready(Duration::from_secs(240));
    // Every node is on exactly one pod, and each pod has some.
    let mut all: Vec<String> = (0..PODS).flat_map(|i| c.nodes(i)).collect();
    let per_pod: Vec<usize> = (0..PODS).map(|i| c.nodes(i).len()).collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "a node on two pods");
    assert_eq!(n, 1 + 4 + 200, "every node placed");
    assert!(per_pod.iter().all(|&k| k > 20), "placement {per_pod:?}");
    c.ping_every_pair();

    // A second agent for machine 0 is refused, naming the machine.
    let o = c.weft(
        0,
        &[
            "agent",
            path_str(&c.lab.file),
            "--machine",
            &c.machine(0),
            "--machines",
            "4",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("machine `{}`: lab", c.machine(0))) && err.contains("already served"),
        "{err}"
    );

    // SIGKILL pod 1's agent, take one of its namespaces away (what a
    // half-made run leaves), start it again: it converges, nothing leaked.
    let before = c.netns_in(1);
    let s = c.signal(1, "KILL");
    assert!(!s.success());
    // The last host: not one ping_every_pair used, so no router keeps a
    // neighbour entry for its old MAC (a rebuilt veth gets a new one).
    let victim = before
        .iter()
        .rev()
        .find(|n| n.contains(".h"))
        .expect("a host namespace")
        .clone();
    let victim_node = victim
        .strip_prefix(&weft_topo::netns_name(&c.lab.name, ""))
        .unwrap()
        .to_string();
    let o = c.in_pod(1, &["ip", "netns", "del", &victim]);
    assert!(o.status.success());
    c.start_agent(1);
    let t0 = Instant::now();
    while c.netns_in(1) != before {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "pod 1 did not converge: {:?} vs {:?}\n{}",
            c.netns_in(1),
            before,
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.wait_all_ready(Duration::from_secs(60));
    c.ping_every_pair();
    let from = c.nodes(0).into_iter().find(|n| n.starts_with('h')).unwrap();
    assert!(c.ping(0, &from, &victim_node), "rebuilt {victim_node}");

    // Kill the switch's datapath: the agent of its pod starts it again,
    // and the switch's hosts reach the other pods once more.
    let sw = (0..PODS)
        .find(|&i| c.nodes(i).iter().any(|n| n == "b4"))
        .expect("a pod with the switch");
    let record = c.pods[sw]
        .state
        .join("labs")
        .join(c.key(sw))
        .join("datapath.json");
    let pid_of = || -> Option<u64> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).ok()?).ok()?;
        v["pid"].as_u64()
    };
    let old = pid_of().expect("a datapath record");
    sh(&["kill", "-KILL", &old.to_string()]);
    let t0 = Instant::now();
    let restarted = |p: Option<u64>| matches!(p, Some(p) if p != old && Path::new(&format!("/proc/{p}")).exists());
    while !restarted(pid_of()) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the datapath was not restarted\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.wait_all_ready(Duration::from_secs(60));
    let on_switch = c
        .nodes(sw)
        .into_iter()
        .find(|n| n.starts_with("h4x"))
        .expect("a host of the switch on its pod");
    let other = (0..PODS).find(|&i| i != sw).unwrap();
    let far = c
        .nodes(other)
        .into_iter()
        .find(|n| n.starts_with('h'))
        .unwrap();
    assert!(
        c.ping(sw, &on_switch, &far),
        "{on_switch} (switch, pod {sw}) cannot reach {far} (pod {other})"
    );

    // Pod 3 comes back with another address (as a rescheduled pod does):
    // every agent re-resolves its name, replaces the VXLAN ends towards
    // it (pod 3's own agent its local ends), and traffic flows again.
    let dir = c.lab.file.parent().unwrap().to_path_buf();
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    std::fs::write(
        dir.join("hosts"),
        hosts.replace("10.244.0.13 ", "10.244.0.23 "),
    )
    .unwrap();
    let p3 = c.pods[3].ns.clone();
    sh(&[
        "ip",
        "-n",
        &p3,
        "addr",
        "del",
        "10.244.0.13/24",
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip",
        "-n",
        &p3,
        "addr",
        "add",
        "10.244.0.23/24",
        "dev",
        "eth0",
    ]);
    let t0 = Instant::now();
    loop {
        let seen: Vec<String> = (0..3)
            .map(|i| {
                String::from_utf8_lossy(
                    &c.in_pod(
                        i,
                        &[
                            "sh",
                            "-c",
                            "for n in $(ls /run/netns); do ip -n $n -d -o link show type vxlan; done",
                        ],
                    )
                    .stdout,
                )
                .to_string()
            })
            .collect();
        let stale = seen.iter().any(|s| s.contains("remote 10.244.0.13 "));
        let fresh = seen.iter().any(|s| s.contains("remote 10.244.0.23 "));
        if !stale && fresh {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "VXLAN ends still point at pod 3's old address\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.wait_all_ready(Duration::from_secs(60));
    c.ping_every_pair();

    // SIGTERM to all: each takes its share down and exits 0.
    for i in 0..PODS {
        let s = c.signal(i, "TERM");
        assert!(s.success(), "agent {i} exited {s:?}\n{}", c.logs());
    }
    c.assert_nothing_left();
}

#[test]
fn an_unresolvable_name_or_a_taken_vxlan_port_is_refused_and_nothing_is_built() {
    let c = Cluster::new("nx", 2);
    // Pod 0 knows its own name but not pod 3's.
    let dir = c.lab.file.parent().unwrap();
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    let short: String = hosts
        .lines()
        .filter(|l| !l.contains(&format!("{}-3.", c.lab.name)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("hosts"), short).unwrap();
    let o = c.weft(
        0,
        &[
            "up",
            path_str(&c.lab.file),
            "--machines",
            "4",
            "--machine",
            &c.machine(0),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "machine `{}`: its underlay name `{}-3.{}` does not resolve",
            c.machine(3),
            c.lab.name,
            c.lab.name
        )),
        "{err}"
    );
    assert_eq!(c.netns_in(0), Vec::<String>::new());
    assert!(!c.built(0));

    // Names back; now a program holds the lab's VXLAN port in pod 0 (a
    // weft tunnel listening on it): refused naming the machine and the
    // port, before anything is built.
    std::fs::write(dir.join("hosts"), hosts).unwrap();
    let key = dir.join("clash.key");
    let o = c.weft(0, &["keygen", path_str(&key)]);
    assert!(o.status.success());
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let mut holder = c
        .pod_cmd(0)
        .arg(common::weft_bin())
        .args([
            "tunnel",
            "--key",
            path_str(&key),
            "--peer-key",
            &public,
            "--listen",
            "0.0.0.0:8472",
            "--dev",
            "clash0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&c.in_pod(0, &["ss", "-Hulpn", "sport", "=", ":8472"]).stdout)
        .contains("weft")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the tunnel did not bind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = c.weft(
        0,
        &[
            "up",
            path_str(&c.lab.file),
            "--machines",
            "4",
            "--machine",
            &c.machine(0),
        ],
    );
    let _ = holder.kill();
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("machine `{}`: UDP port 8472", c.machine(0))),
        "{err}"
    );
    assert_eq!(c.netns_in(0), Vec::<String>::new());
    assert!(!c.built(0));
}
