//! `weft import` round trips: each seed article's own script (in
//! tests/import/) is run as it is, in fresh namespaces (a private network
//! and mount namespace, with its own /run/netns, so its `ns1` clashes with
//! nothing), and imported and built with `weft up`; the two networks must
//! match (interfaces, kinds, masters, admin state, addresses, the kernel's
//! IPv4 routes, sysctls), and the seeds' pings behave as the articles say.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use common::Lab;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    common::root().join("tests/import").join(name)
}

/// A ping from a node to an address, maybe out of one interface.
type Ping = (&'static str, &'static str, Option<&'static str>);

/// What is compared of one namespace.
#[derive(Debug, Default, PartialEq)]
struct NsState {
    /// name -> (kind, master, admin up, addresses)
    ifaces: BTreeMap<String, (String, Option<String>, bool, BTreeSet<String>)>,
    routes: BTreeSet<String>,
    sysctls: BTreeMap<String, String>,
}

/// Shell commands that print each namespace's links, addresses, routes and
/// the given sysctls between `@@` markers. `ns` is None for the namespace
/// the commands run in.
fn dump_commands(nodes: &[(String, Option<String>, Vec<String>)], pings: &[Ping]) -> String {
    let mut s = String::new();
    // Each ping's exit status, as a pseudo-node's values.
    s += "echo '@@NS @pings'\n";
    for (k, (node, target, iface)) in pings.iter().enumerate() {
        let ns = nodes
            .iter()
            .find(|n| n.0 == *node)
            .and_then(|n| n.1.clone());
        let ex = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        let i = iface.map(|i| format!("-I {i} ")).unwrap_or_default();
        s += &format!("echo '@@SYSCTL {k}: {node} -> {target}'; {ex}ping -c 1 -W 1 {i}{target} >/dev/null 2>&1; echo $?\n");
    }
    for (node, ns, keys) in nodes {
        let n = ns.as_ref().map(|n| format!("-n {n}")).unwrap_or_default();
        let ex = ns
            .as_ref()
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        s += &format!("echo '@@NS {node}'\necho '@@LINK'; ip {n} -j -d link show\necho '@@ADDR'; ip {n} -j addr show\necho '@@ROUTE'; ip {n} -j -4 route show table main\n");
        for k in keys {
            s += &format!(
                "echo '@@SYSCTL {k}'; {ex}cat /proc/sys/{}\n",
                k.replace('.', "/")
            );
        }
    }
    s
}

fn parse_dump(out: &str) -> BTreeMap<String, NsState> {
    let mut map: BTreeMap<String, NsState> = BTreeMap::new();
    let mut node = String::new();
    let mut section = String::new();
    let mut body = String::new();
    let flush = |node: &str, section: &str, body: &str, map: &mut BTreeMap<String, NsState>| {
        if node.is_empty() || section.is_empty() {
            return;
        }
        let st = map.entry(node.to_string()).or_default();
        if let Some(k) = section.strip_prefix("SYSCTL ") {
            st.sysctls.insert(k.to_string(), body.trim().to_string());
            return;
        }
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        for e in v.as_array().unwrap() {
            match section {
                "LINK" => {
                    let name = e["ifname"].as_str().unwrap().to_string();
                    if name == "lo" {
                        continue;
                    }
                    let li = &e["linkinfo"];
                    let mut kind = li["info_kind"].as_str().unwrap_or("?").to_string();
                    if kind == "tun" {
                        kind = li["info_data"]["type"].as_str().unwrap().to_string();
                    }
                    let up = e["flags"].as_array().unwrap().iter().any(|f| f == "UP");
                    let master = e["master"].as_str().map(str::to_string);
                    let entry = st.ifaces.entry(name).or_default();
                    entry.0 = kind;
                    entry.1 = master;
                    entry.2 = up;
                }
                "ADDR" => {
                    let name = e["ifname"].as_str().unwrap().to_string();
                    if name == "lo" {
                        continue;
                    }
                    let entry = st.ifaces.entry(name).or_default();
                    for a in e["addr_info"].as_array().unwrap() {
                        let local = a["local"].as_str().unwrap();
                        if !local.starts_with("fe80") {
                            entry.3.insert(format!("{local}/{}", a["prefixlen"]));
                        }
                    }
                }
                "ROUTE" => {
                    let mut r = e["dst"].as_str().unwrap().to_string();
                    if let Some(g) = e["gateway"].as_str() {
                        r += &format!(" via {g}");
                    }
                    if let Some(d) = e["dev"].as_str() {
                        r += &format!(" dev {d}");
                    }
                    st.routes.insert(r);
                }
                _ => unreachable!(),
            }
        }
    };
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("@@") {
            flush(&node, &section, &body, &mut map);
            body.clear();
            if let Some(n) = rest.strip_prefix("NS ") {
                node = n.to_string();
                section.clear();
            } else {
                section = rest.to_string();
            }
        } else {
            body += line;
            body.push('\n');
        }
    }
    flush(&node, &section, &body, &mut map);
    map
}

/// Run the original script in fresh namespaces and dump the result for
/// the nodes the import made (`host` is the script's own namespace, which
/// stands for the machine's: its `lo` is up, as a machine's is).
fn run_original(
    script: &str,
    nodes: &[(String, Vec<String>)],
    pings: &[Ping],
) -> BTreeMap<String, NsState> {
    let spec: Vec<(String, Option<String>, Vec<String>)> = nodes
        .iter()
        .map(|(n, k)| (n.clone(), (n != "host").then(|| n.clone()), k.clone()))
        .collect();
    let inner = format!(
        "set -u\nmount -t tmpfs weft-import-test /run/netns\nip link set lo up\ntimeout 60 sh {} >/dev/null 2>&1\n{}",
        fixture(script).display(),
        dump_commands(&spec, pings)
    );
    // The articles write `sudo ip ...`; as root that is the command itself,
    // and CI's Debian has no sudo.
    let shim = std::env::temp_dir().join(format!("weft-import-sudo-{}", std::process::id()));
    std::fs::create_dir_all(&shim).unwrap();
    std::fs::write(shim.join("sudo"), "#!/bin/sh\nexec \"$@\"\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(shim.join("sudo"))
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("unshare")
        .env("PATH", path)
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "sh",
            "-c",
            &inner,
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "running {script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    parse_dump(&String::from_utf8(o.stdout).unwrap())
}

/// Import a fixture with the real binary; the lab file's text.
fn import(script: &str) -> String {
    let o = Command::new(common::weft_bin())
        .args(["import", "script", fixture(script).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "weft import script {script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The built lab as `weft status --json` and the kernel show it.
fn built(
    lab: &Lab,
    sysctls: &BTreeMap<String, Vec<String>>,
    pings: &[Ping],
) -> BTreeMap<String, NsState> {
    let status = lab.status_json();
    let spec: Vec<(String, Option<String>, Vec<String>)> = status[0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let name = n["name"].as_str().unwrap().to_string();
            let keys = sysctls.get(&name).cloned().unwrap_or_default();
            (name.clone(), Some(lab.netns(&name)), keys)
        })
        .collect();
    let o = Command::new("sh")
        .args(["-c", &dump_commands(&spec, pings)])
        .output()
        .unwrap();
    let mut kernel = parse_dump(&String::from_utf8(o.stdout).unwrap());
    // Interfaces as weft status reports them, checked against the kernel.
    for n in status[0]["nodes"].as_array().unwrap() {
        let st = kernel.get_mut(n["name"].as_str().unwrap()).unwrap();
        for i in n["interfaces"].as_array().unwrap() {
            let name = i["name"].as_str().unwrap();
            if name == "lo" {
                continue;
            }
            let addrs: BTreeSet<String> = i["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            let from_status = (
                i["kind"].as_str().unwrap().to_string(),
                i["master"].as_str().map(str::to_string),
                i["admin_up"].as_bool().unwrap(),
                addrs,
            );
            assert_eq!(
                st.ifaces.get(name),
                Some(&from_status),
                "weft status and the kernel disagree on {name}"
            );
        }
    }
    kernel
}

/// Import, build, and compare with the original script's run, pings
/// included (the same exit status from `ping` in both).
fn round_trip(tag: &str, script: &str, pings: &[Ping]) -> Lab {
    let toml = import(script);
    let lab = Lab::from_text(tag, &toml);
    lab.up();
    let parsed = weft_topo::parse(&toml).unwrap().lab;
    let sysctls: BTreeMap<String, Vec<String>> = parsed
        .nodes
        .iter()
        .map(|(n, node)| (n.clone(), node.sysctls.keys().cloned().collect()))
        .collect();
    let nodes: Vec<(String, Vec<String>)> = parsed
        .nodes
        .keys()
        .map(|n| (n.clone(), sysctls[n].clone()))
        .collect();
    let original = run_original(script, &nodes, pings);
    let weft = built(&lab, &sysctls, pings);
    assert_eq!(
        original.get("@pings").map_or(0, |p| p.sysctls.len()),
        pings.len()
    );
    assert!(
        original.values().any(|s| !s.ifaces.is_empty()),
        "nothing to compare: {original:?}"
    );
    assert_eq!(
        weft, original,
        "{script}: the lab weft built differs from the script's own run\nlab file:\n{toml}"
    );
    lab
}

#[test]
fn seed000_veth_script_round_trips_and_pings_both_ways() {
    let lab = round_trip(
        "i-veth",
        "seed000-veth.sh",
        &[("ns1", "192.168.50.2", None), ("ns2", "192.168.50.1", None)],
    );
    assert!(lab.ping("ns1", "192.168.50.2", None));
    assert!(lab.ping("ns2", "192.168.50.1", None));
}

#[test]
fn seed000_bridge_script_is_refused_at_the_foreign_route_line() {
    common::require_root();
    let o = Command::new(common::weft_bin())
        .args([
            "import",
            "script",
            fixture("seed000-bridge.sh").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("seed000-bridge.sh:51:1: error\n")
            && err.contains("there is no device `tap1` in namespace `ns2`"),
        "{err}"
    );
}

#[test]
fn seed000_bridge_fixed_script_round_trips_and_the_bridge_is_the_gateway() {
    let lab = round_trip(
        "i-br",
        "seed000-bridge-fixed.sh",
        &[
            ("ns1", "192.168.50.2", None),
            ("ns1", "192.168.50.254", None),
            ("ns2", "192.168.50.254", None),
        ],
    );
    assert!(lab.ping("ns1", "192.168.50.2", None));
    assert!(lab.ping("ns1", "192.168.50.254", None));
    assert!(lab.ping("ns2", "192.168.50.254", None));
}

#[test]
fn seed001_tuntap_script_round_trips_and_only_the_tap_has_a_mac() {
    let lab = round_trip("i-tuntap", "seed001-tuntap.sh", &[]);
    assert!(lab.iface("host", "tun0")["mac"].is_null());
    assert!(lab.iface("host", "tap1")["mac"].is_string());
}

#[test]
fn seed002_same_namespace_script_round_trips_and_pings_over_the_pair() {
    let lab = round_trip(
        "i-samens",
        "seed002-same-ns.sh",
        &[("host", "10.1.1.3", Some("veth0"))],
    );
    assert!(lab.ping("host", "10.1.1.3", Some("veth0")));
}

#[test]
fn seed002_netns_and_bridge_scripts_round_trip_and_ping() {
    let lab = round_trip("i-netns", "seed002-netns.sh", &[("ns1", "10.1.1.3", None)]);
    assert!(lab.ping("ns1", "10.1.1.3", None));
    drop(lab);
    let lab = round_trip("i-br2", "seed002-bridge.sh", &[("ns1", "10.1.1.3", None)]);
    assert!(lab.ping("ns1", "10.1.1.3", None));
}

#[test]
fn seed002_ovs_script_imported_pings_through_a_weft_switch() {
    // This machine has no Open vSwitch to run the original with, so only
    // the article's outcome is checked: ns1 reaches ns2 through the switch.
    let toml = import("seed002-ovs-fixed.sh");
    let lab = Lab::from_text("i-ovs", &toml);
    lab.up();
    assert!(lab.ping("ns1", "10.1.1.3", None));
    assert!(lab.ping("ns2", "10.1.1.2", None));
}

#[test]
fn seed002_unaddressed_script_round_trips_and_the_ping_gets_no_answer() {
    let lab = round_trip(
        "i-unaddr",
        "seed002-unaddressed.sh",
        &[("host", "192.168.2.1", None)],
    );
    assert!(!lab.ping("host", "192.168.2.1", None));
}

#[test]
fn seed003_bridge_port_scripts_round_trip() {
    let lab = round_trip(
        "i-brport",
        "seed003-bridge-port.sh",
        &[
            ("host", "192.168.3.102", Some("br0")),
            ("host", "192.168.3.101", Some("veth1")),
        ],
    );
    drop(lab);
    round_trip(
        "i-brportfix",
        "seed003-bridge-port-fixed.sh",
        &[
            ("host", "192.168.3.102", Some("br0")),
            ("host", "192.168.3.101", Some("veth1")),
        ],
    );
}

#[test]
fn clab_topology_imported_routes_between_a_bridge_and_an_ovs_bridge() {
    let file = fixture("clab/routed.clab.yml");
    let o = Command::new(common::weft_bin())
        .args(["import", "clab", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lab = Lab::from_text("i-clab", &String::from_utf8(o.stdout).unwrap());
    lab.up();
    assert_eq!(lab.iface("lan1", "h1")["master"], "lan1");
    assert_eq!(lab.iface("r1", "eth2")["addresses"][0], "10.2.0.1/24");
    // h1 reaches h2 through the bridge, the router and the switch.
    assert!(lab.ping("h1", "10.2.0.10", None));
    assert!(lab.ping("h2", "h1", None));
}

#[test]
fn vlan_script_imported_carries_both_vlans_over_weft_switches() {
    // This kernel has no 802.1Q, so the original cannot run here; the
    // imported lab must still carry each VLAN end to end.
    let toml = import("vlan.sh");
    let lab = Lab::from_text("i-vlan", &toml);
    lab.up();
    assert!(lab.ping("a", "10.10.0.2", None));
    assert!(lab.ping("a", "10.20.0.2", None));
    // Frames cross the cable between the two switches tagged: the far
    // switch learned a's MAC in VLAN 10 and in VLAN 20 on its trunk.
    let fdb = lab.ok(&["fdb", &lab.name, "vlan-b-e0", "--json"]);
    let v: Value = serde_json::from_str(&fdb).unwrap();
    let on_trunk: BTreeSet<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["port"] == "trunk")
        .filter_map(|e| e["vlan"].as_u64())
        .collect();
    assert!(on_trunk.contains(&10) && on_trunk.contains(&20), "{fdb}");
}

#[test]
fn import_writes_the_file_with_o_and_warns_with_the_line() {
    let out = std::env::temp_dir().join(format!("weft-import-o-{}.toml", std::process::id()));
    let o = Command::new(common::weft_bin())
        .args([
            "import",
            "script",
            fixture("seed000-bridge-fixed.sh").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-n",
            "named",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(o.stdout.is_empty());
    assert!(
        err.contains("seed000-bridge-fixed.sh: warning: line 33: not imported"),
        "{err}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert_eq!(weft_topo::parse(&text).unwrap().lab.name, "named");
}

#[test]
fn a_looping_tutorial_script_round_trips_and_its_hosts_reach_each_other() {
    let lab = round_trip(
        "i-star",
        "star.sh",
        &[
            ("h1", "10.0.0.13", None),
            ("h2", "10.0.0.1", None),
            ("h3", "10.0.0.11", None),
        ],
    );
    assert!(lab.ping("h1", "10.0.0.13", None));
}
