//! No weft process spins while its lab is idle. One lab has every kind of
//! process weft starts (the datapath with an `stp = "off"` switch, an
//! impaired port and a wire, the two ends of a tunnel link, the services'
//! supervisor) and the test starts the ones a user runs beside it
//! (`weft events`, `weft serve`, `weft capture`); after traffic has
//! crossed every part and stopped, each must sleep.
//!
//! A spin is a whole CPU (a poll deadline stuck in the past made the
//! datapath of an idle `stp = "off"` switch do that, and a test measuring
//! a storm saw 0 frames/s). The bound, a tenth of a CPU, is for a spin,
//! not for speed: these processes use well under 2 % here when idle.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cpu_ticks as ticks, weft_bin, Kill, Lab};

const LAB: &str = r#"name = "x"
[nodes.sw]
kind = "switch"
stp = "off"
[nodes.sw.interfaces.p1]
impair = { delay = "5ms", jitter = "2ms", rate = "10mbit" }
[nodes.h1.interfaces.eth0]
addresses = ["10.68.0.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.68.0.2/24"]
[[links]]
endpoints = ["h1:eth0", "sw:p1"]
[[links]]
endpoints = ["h2:eth0", "sw:p2"]

# A wire: an impaired link between two kernel ends.
[nodes.h2.interfaces.k0]
addresses = ["10.168.0.1/24"]
[nodes.h3.interfaces.k0]
addresses = ["10.168.0.2/24"]
[[links]]
endpoints = ["h2:k0", "h3:k0"]
impair = { delay = "5ms" }

# A tunnel link over an underlay veth.
[nodes.m1.interfaces.eth0]
addresses = ["10.78.0.1/24"]
[nodes.m1.interfaces.wt0]
addresses = ["10.79.0.1/24"]
[nodes.m2.interfaces.eth0]
addresses = ["10.78.0.2/24"]
[nodes.m2.interfaces.wt0]
addresses = ["10.79.0.2/24"]
[[links]]
endpoints = ["m1:eth0", "m2:eth0"]
[[links]]
kind = "tunnel"
mode = "tun"
endpoints = ["m1:wt0", "m2:wt0"]
underlay = ["10.78.0.1", "10.78.0.2"]

# A service: the lab gets its supervisor.
[nodes.h3.services.idle]
command = ["sleep", "3600"]
"#;

/// The weft processes of this lab: the weft binary, run with this lab's
/// state directory or naming the lab; by PID, with their command lines.
fn weft_processes(lab: &Lab) -> BTreeMap<u32, Vec<String>> {
    let bin = std::fs::canonicalize(weft_bin()).unwrap();
    let state = format!("WEFT_STATE_DIR={}", lab.state.display());
    let mut found = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("exe")).ok().as_ref() != Some(&bin) {
            continue;
        }
        let args: Vec<String> = std::fs::read(e.path().join("cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let ours = env.split(|b| *b == 0).any(|v| v == state.as_bytes())
            || args.iter().any(|a| a.contains(&lab.name));
        if ours && args.len() > 1 {
            found.insert(pid, args);
        }
    }
    found
}

#[test]
fn no_weft_process_spins_while_its_lab_is_idle() {
    let lab = Lab::from_text("idle", LAB);
    lab.up();

    // What a user runs beside a lab.
    let events = Kill(
        lab.weft()
            .args(["events", &lab.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let capture = Kill(
        lab.weft()
            .args(["capture", &lab.name, "h1", "-w", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (serve, first) = common::serve(&lab, Stdio::null());
    assert!(
        first.contains("http://127.0.0.1:"),
        "weft serve said {first:?}"
    );

    // Traffic through the impaired port's queue, the wire and the tunnel,
    // then none: every timer those armed has fired.
    assert!(lab.ping("h1", "10.68.0.2", None), "across the switch");
    assert!(lab.ping("h3", "10.168.0.1", None), "across the wire");
    assert!(
        lab.ping_within("m1", "10.79.0.2", Duration::from_secs(30))
            .is_some(),
        "across the tunnel"
    );
    std::thread::sleep(Duration::from_secs(1));

    let procs = weft_processes(&lab);
    let kind = |pid: &u32| procs[pid][1].clone();
    let mut kinds: Vec<String> = procs.keys().map(kind).collect();
    kinds.sort();
    for want in [
        "capture",
        "datapath",
        "events",
        "serve",
        "supervise",
        "tunnel",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "no `weft {want}` of the lab among {procs:#?}"
        );
    }
    assert_eq!(
        kinds.iter().filter(|k| *k == "tunnel").count(),
        2,
        "{procs:#?}"
    );
    for c in [&events, &capture, &serve] {
        assert!(procs.contains_key(&c.0.id()), "{} not found", c.0.id());
    }

    // CPU over 3 s of idling, each process on its own.
    let before: BTreeMap<u32, u64> = procs
        .keys()
        .map(|p| {
            (
                *p,
                ticks(*p).unwrap_or_else(|| panic!("{:?} is gone", procs[p])),
            )
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let secs = t0.elapsed().as_secs_f64();
    let mut report = Vec::new();
    for (pid, t) in &before {
        let now = ticks(*pid).unwrap_or_else(|| panic!("{:?} died while idle", procs[pid]));
        let share = (now - t) as f64 / 100.0 / secs;
        report.push((share, procs[pid].join(" ")));
    }
    eprintln!("idle CPU, share of one CPU:");
    for (share, what) in &report {
        eprintln!("  {:5.1} %  {what}", share * 100.0);
    }
    for (share, what) in &report {
        assert!(
            *share < 0.10,
            "{what} used {:.0} % of a CPU while its lab was idle: a busy loop",
            share * 100.0
        );
    }
}

const DOWN_LAB: &str = r#"name = "x"
[nodes.sw]
kind = "switch"
[nodes.h1.interfaces.eth0]
addresses = ["10.69.0.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.69.0.2/24"]
[[links]]
endpoints = ["h1:eth0", "sw:p1"]
[[links]]
endpoints = ["h2:eth0", "sw:p2"]

[nodes.h3.interfaces.k0]
addresses = ["10.169.0.1/24"]
[nodes.h4.interfaces.k0]
addresses = ["10.169.0.2/24"]
[[links]]
endpoints = ["h3:k0", "h4:k0"]
impair = { delay = "5ms" }
"#;

/// CPU time of a process over `secs` of idling, as a share of one CPU.
fn idle_share(pid: u32, secs: u64) -> f64 {
    let t0 = (ticks(pid).expect("running"), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let used = ticks(pid).expect("still running") - t0.0;
    used as f64 / 100.0 / t0.1.elapsed().as_secs_f64()
}

/// A switch port set down on the switch's side (`ip link set p1 down`,
/// as docs/switch.md has it) and a wire whose far end went away with its
/// node: the kernel flags each socket with an error that polling reports
/// until it is read, and the datapath (its main loop, then its wires'
/// thread) once spun on it at a whole CPU.
#[test]
fn no_spin_when_a_switch_port_goes_down_or_a_wires_end_goes_away() {
    let lab = Lab::from_text("idledn", DOWN_LAB);
    lab.up();
    let procs = weft_processes(&lab);
    let (&pid, _) = procs
        .iter()
        .find(|(_, a)| a[1] == "datapath")
        .unwrap_or_else(|| panic!("no datapath among {procs:#?}"));
    assert!(lab.ping("h3", "10.169.0.2", None), "across the wire");

    let ip = |args: &[&str]| {
        let o = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "ip {args:?}: {o:?}");
    };
    ip(&["-n", &lab.netns("sw"), "link", "set", "p1", "down"]);
    std::thread::sleep(Duration::from_millis(500));
    let share = idle_share(pid, 3);
    eprintln!("datapath with a port down: {:.1} % of a CPU", share * 100.0);
    assert!(
        share < 0.10,
        "the datapath used {:.0} % of a CPU with a port down: a busy loop",
        share * 100.0
    );
    ip(&["-n", &lab.netns("sw"), "link", "set", "p1", "up"]);
    assert!(
        lab.ping_within("h1", "10.69.0.2", Duration::from_secs(30))
            .is_some(),
        "the port came back"
    );

    // h4 goes, and with it the wire's far end (the veth pair dies whole).
    ip(&["netns", "del", &lab.netns("h4")]);
    std::thread::sleep(Duration::from_millis(500));
    let share = idle_share(pid, 3);
    eprintln!(
        "datapath with a wire's end gone: {:.1} % of a CPU",
        share * 100.0
    );
    assert!(
        share < 0.10,
        "the datapath used {:.0} % of a CPU with a wire's end gone: a busy loop",
        share * 100.0
    );
}
