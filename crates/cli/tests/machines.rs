//! Labs that span machines, on this one machine: two underlay namespaces
//! stand in for machines a and b (a veth between them, 192.0.2.1/24 and
//! .2/24, fd00:77::1/64 and ::2/64), and `weft up FILE --machine a` runs with its network namespace
//! set to a's underlay — by `nsenter --net`, which keeps the mount
//! namespace, so the namespaces weft mounts are seen by everyone. Both
//! shares keep their state in one state directory, as on a host that
//! plays both machines.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{alive, Lab};

/// Two underlay namespaces joined by a veth; removed on drop, with what
/// weft built from them (shares first, so `weft down` is what is tested).
struct Underlay {
    ns: [String; 2],
    lab: String,
    state: std::path::PathBuf,
}

impl Underlay {
    fn new(lab: &Lab) -> Underlay {
        let tag = lab.name.split('-').next().unwrap().to_string();
        let ns = [format!("wu{tag}a"), format!("wu{tag}b")];
        let u = Underlay {
            ns: ns.clone(),
            lab: lab.name.clone(),
            state: lab.state.clone(),
        };
        for n in &ns {
            sh(&["ip", "netns", "add", n]);
        }
        sh(&[
            "ip", "-n", &ns[0], "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns",
            &ns[1],
        ]);
        for (n, (a, a6)) in ns.iter().zip([
            ("192.0.2.1/24", "fd00:77::1/64"),
            ("192.0.2.2/24", "fd00:77::2/64"),
        ]) {
            sh(&["ip", "-n", n, "addr", "add", a, "dev", "u0"]);
            sh(&["ip", "-n", n, "addr", "add", a6, "dev", "u0", "nodad"]);
            sh(&["ip", "-n", n, "link", "set", "u0", "up"]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        u
    }

    /// `weft ARGS` as machine `m` (0 or 1) would run it.
    fn weft(&self, m: usize, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns[m]))
            .arg(common::weft_bin())
            .args(args)
            .env("WEFT_STATE_DIR", &self.state)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn ok(&self, m: usize, args: &[&str]) -> String {
        let o = self.weft(m, args);
        assert!(
            o.status.success(),
            "weft {args:?} on machine {m} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// `ip -d link show type vxlan` in an underlay namespace.
    fn vxlan_devices(&self, m: usize) -> String {
        out(&[
            "ip",
            "-n",
            &self.ns[m],
            "-o",
            "link",
            "show",
            "type",
            "vxlan",
        ])
    }

    /// UDP sockets bound in an underlay namespace on a port.
    fn udp_on(&self, m: usize, port: u16) -> String {
        out(&[
            "ip",
            "netns",
            "exec",
            &self.ns[m],
            "ss",
            "-Hulnp",
            "sport",
            "=",
            &format!(":{port}"),
        ])
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for (m, name) in ["a", "b"].iter().enumerate() {
            let _ = self.weft(m, &["down", &self.lab, "--machine", name]);
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn out(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn status(u: &Underlay, m: usize, machine: &str) -> serde_json::Value {
    let s = u.ok(m, &["status", &u.lab, "--machine", machine, "--json"]);
    serde_json::from_str(&s).unwrap()
}

fn iface<'a>(s: &'a serde_json::Value, node: &str, iface: &str) -> &'a serde_json::Value {
    common::iface_in(s, node, iface).unwrap_or_else(|| panic!("no {node}:{iface} in {s:#}"))
}

#[test]
fn vxlan_link_between_two_machines_each_building_its_share() {
    let lab = Lab::example("vx", "vxlan.toml");
    let u = Underlay::new(&lab);
    let file = lab.file.to_str().unwrap();

    // A multi-machine file is not built whole, and a machine must be the
    // one it says: b's namespace does not have a's underlay address.
    let o = u.weft(0, &["up", file]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--machine a"), "{err}");
    let o = u.weft(1, &["up", file, "--machine", "a"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("192.0.2.1") && err.contains("192.0.2.2"),
        "{err}"
    );
    assert!(lab.namespaces().is_empty(), "a refused up built something");

    let up_a = u.ok(0, &["up", file, "--machine", "a"]);
    assert!(
        up_a.contains(&format!("lab {}@a is up", lab.name)),
        "{up_a}"
    );
    let up_b = u.ok(1, &["up", file, "--machine", "b"]);
    assert!(
        up_b.contains(&format!("lab {}@b is up", lab.name)),
        "{up_b}"
    );
    let mut want: Vec<String> = ["br-a", "br-b", "ha1", "ha2", "hb1", "hb2"]
        .iter()
        .map(|n| lab.netns(n))
        .collect();
    want.sort();
    assert_eq!(lab.namespaces(), want);

    // The device is in the node; its socket stayed in the underlay.
    let vx = out(&["ip", "-n", &lab.netns("br-a"), "-d", "link", "show", "vx0"]);
    assert!(
        vx.contains("vxlan id") && vx.contains("local 192.0.2.1"),
        "{vx}"
    );
    assert!(vx.contains(&format!("link-netns {}", u.ns[0])), "{vx}");
    assert!(
        vx.contains("master br-a") && vx.contains("mtu 1450"),
        "{vx}"
    );
    for m in 0..2 {
        assert_eq!(
            u.vxlan_devices(m),
            "",
            "a VXLAN device sits in the underlay"
        );
        assert!(
            !u.udp_on(m, 4789).is_empty(),
            "no VXLAN socket in underlay {m}"
        );
    }

    // Both machines planned the same VNI, each pointing at the other.
    let (sa, sb) = (status(&u, 0, "a"), status(&u, 1, "b"));
    assert_eq!(sa[0]["machine"], "a");
    assert_eq!(sa[0]["name"], format!("{}@a", lab.name));
    let (va, vb) = (
        &iface(&sa, "br-a", "vx0")["vxlan"],
        &iface(&sb, "br-b", "vx0")["vxlan"],
    );
    assert_eq!(va["vni"], vb["vni"]);
    assert_eq!((&va["local"], &va["remote"]), (&vb["remote"], &vb["local"]));
    assert_eq!(iface(&sa, "br-a", "vx0")["peer"], "br-b:vx0");
    // `weft status LAB` shows every share built here.
    let all: serde_json::Value =
        serde_json::from_str(&lab.ok(&["status", &lab.name, "--json"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all:#}");
    let text = lab.ok(&["status", &lab.name, "--machine", "b"]);
    assert!(
        text.contains("vni ") && text.contains("-> 192.0.2.1:4789"),
        "{text}"
    );

    // Host to host across the machines, both ways. A node on the other
    // machine is known by name, to `weft ping` and in the hosts file.
    let addr = |s: &serde_json::Value, n: &str| {
        iface(s, n, "eth0")["addresses"][0]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    assert!(
        lab.ping_within("ha1", "hb1", Duration::from_secs(30))
            .is_some(),
        "no ping a -> b over VXLAN"
    );
    assert!(
        lab.ping_within("hb2", &addr(&sa, "ha2"), Duration::from_secs(30))
            .is_some(),
        "no ping b -> a over VXLAN"
    );
    let hosts = lab.ok(&["exec", &lab.name, "ha1", "--", "getent", "hosts", "hb1"]);
    assert!(hosts.starts_with(&addr(&sb, "hb1")), "{hosts}");

    // Tools that take a node find its share by the lab's name; the others
    // ask for a share by name.
    let t = lab.run(&["trace", &lab.name, "ha1", "hb1"]);
    let tout = String::from_utf8_lossy(&t.stdout);
    assert!(
        tout.contains("ha1"),
        "{tout}{}",
        String::from_utf8_lossy(&t.stderr)
    );
    let c = lab.run(&["capture", &lab.name, "ha1:eth0", "--duration", "0.2"]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let o = lab.run(&["check", &lab.name]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && e.contains("machine shares")
            && e.contains(&format!("{}@a", lab.name)),
        "{e}"
    );

    // Applying again on a machine changes nothing.
    assert!(u
        .ok(0, &["up", file, "--machine", "a"])
        .contains("nothing to change"));

    // `weft down LAB` must say which share; `--machine` removes one.
    let o = lab.run(&["down", &lab.name]);
    assert!(!o.status.success(), "down without --machine was accepted");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--machine"));
    let d = u.ok(0, &["down", &lab.name, "--machine", "a"]);
    assert!(d.contains("removed 3 namespace(s)"), "{d}");
    let left = lab.namespaces();
    assert!(
        left.iter()
            .all(|n| n.contains(".hb") || n.ends_with(".br-b")),
        "{left:?}"
    );
    assert_eq!(
        u.udp_on(0, 4789),
        "",
        "a's VXLAN socket outlived its device"
    );
    u.ok(1, &["down", &lab.name, "--machine", "b"]);
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
    for m in 0..2 {
        assert_eq!(u.vxlan_devices(m), "");
        assert_eq!(u.udp_on(m, 4789), "");
    }
    let etc: Vec<String> = std::fs::read_dir("/etc/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&weft_topo::netns_name(&lab.name, "")))
                .collect()
        })
        .unwrap_or_default();
    assert!(etc.is_empty(), "{etc:?}");
    assert!(lab.ok(&["status"]).lines().all(|l| !l.contains(&lab.name)));
}

fn netns_ino(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// Key pairs for machines a and b beside the lab file (`a.key`,
/// `b.key`); their public keys.
fn machine_keys(lab: &Lab) -> Vec<String> {
    let dir = lab.file.parent().unwrap();
    ["a", "b"]
        .iter()
        .map(|m| {
            let k = dir.join(format!("{m}.key"));
            lab.ok(&["keygen", k.to_str().unwrap()]).trim().to_string()
        })
        .collect()
}

#[test]
fn tunnel_link_between_two_machines_runs_each_end_in_its_machine() {
    let lab = Lab::from_text("xt", "name = \"x\"\n");
    let keys = machine_keys(&lab);
    lab.rewrite(&format!(
        r#"name = "x"
[machines.a]
underlay = "192.0.2.1"
public_key = "{}"
private_key = "a.key"
[machines.b]
underlay = "192.0.2.2"
public_key = "{}"
private_key = "b.key"

[nodes.h1]
machine = "a"
[nodes.h1.interfaces.wt0]
addresses = ["10.9.0.1/24"]
[nodes.h2]
machine = "b"
[nodes.h2.interfaces.wt0]
addresses = ["10.9.0.2/24"]

[[links]]
kind = "tunnel"
mode = "tap"
endpoints = ["h1:wt0", "h2:wt0"]
"#,
        keys[0], keys[1]
    ));
    let u = Underlay::new(&lab);
    let file = lab.file.to_str().unwrap();
    u.ok(0, &["up", file, "--machine", "a"]);
    u.ok(1, &["up", file, "--machine", "b"]);

    // Each share runs only its own end, and shows only that.
    let t0 = Instant::now();
    let ends = loop {
        let (sa, sb) = (status(&u, 0, "a"), status(&u, 1, "b"));
        let ends = [sa[0]["tunnels"].clone(), sb[0]["tunnels"].clone()];
        if ends.iter().all(|e| {
            e.as_array().unwrap().len() == 1
                && e[0]["running"] == true
                && e[0]["state"]["up"] == true
        }) {
            break ends;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "tunnel never came up: {ends:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ends[0][0]["node"], "h1");
    assert_eq!(ends[0][0]["peer"], "h2:wt0");
    assert_eq!(ends[0][0]["state"]["endpoint"], "192.0.2.2:5000");
    assert_eq!(ends[1][0]["state"]["endpoint"], "192.0.2.1:5000");
    // The process lives in its machine's namespace; its device in the node.
    let pids: Vec<u64> = ends.iter().map(|e| e[0]["pid"].as_u64().unwrap()).collect();
    for (m, pid) in pids.iter().enumerate() {
        assert_eq!(
            netns_ino(&format!("/proc/{pid}/ns/net")),
            netns_ino(&format!("/run/netns/{}", u.ns[m])),
            "tunnel end {m} does not run in its machine's namespace"
        );
    }
    let wt = out(&["ip", "-n", &lab.netns("h1"), "-d", "link", "show", "wt0"]);
    assert!(wt.contains("tap"), "{wt}");
    assert!(
        lab.ping_within("h1", "10.9.0.2", Duration::from_secs(30))
            .is_some(),
        "no ping across the tunnel"
    );
    assert!(
        lab.ping_within("h2", "10.9.0.1", Duration::from_secs(30))
            .is_some(),
        "no ping back"
    );

    for (m, name) in ["a", "b"].iter().enumerate() {
        u.ok(m, &["down", &lab.name, "--machine", name]);
        assert!(!alive(pids[m]), "tunnel pid {} survived weft down", pids[m]);
        assert_eq!(u.udp_on(m, 5000), "");
    }
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
}

#[test]
fn a_machine_with_the_wrong_key_is_refused_before_building() {
    let lab = Lab::from_text("xk", "name = \"x\"\n");
    let keys = machine_keys(&lab);
    // b's public key under a: a's private key does not match it.
    lab.rewrite(&format!(
        "name = \"x\"\n[machines.a]\nunderlay = \"192.0.2.1\"\npublic_key = \"{}\"\nprivate_key = \"a.key\"\n[machines.b]\nunderlay = \"192.0.2.2\"\npublic_key = \"{}\"\n[nodes.h1]\nmachine = \"a\"\n[nodes.h2]\nmachine = \"b\"\n[[links]]\nkind = \"tunnel\"\nendpoints = [\"h1:wt0\", \"h2:wt0\"]\n",
        keys[1], keys[1]
    ));
    let u = Underlay::new(&lab);
    let o = u.weft(0, &["up", lab.file.to_str().unwrap(), "--machine", "a"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("belongs to the public key"),
        "{err}"
    );
    // b has no private_key at all.
    let o = u.weft(1, &["up", lab.file.to_str().unwrap(), "--machine", "b"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("needs private_key"),
        "{err}"
    );
    assert!(lab.namespaces().is_empty());
}

#[test]
fn a_vni_taken_in_the_underlay_is_refused_with_advice_and_rolled_back() {
    let text = |vni: u32| {
        format!(
            "name = \"x\"\n[machines.a]\nunderlay = \"192.0.2.1\"\n[machines.b]\nunderlay = \"192.0.2.2\"\n[nodes.h1]\nmachine = \"a\"\n[nodes.h1.interfaces.vx0]\naddresses = [\"10.61.0.1/24\"]\n[nodes.h2]\nmachine = \"b\"\n[[links]]\nkind = \"vxlan\"\nendpoints = [\"h1:vx0\", \"h2:vx0\"]\nvni = {vni}\n"
        )
    };
    let first = Lab::from_text("vn1", &text(4242));
    let second = Lab::from_text("vn2", &text(4242));
    let u = Underlay::new(&first);
    u.ok(0, &["up", first.file.to_str().unwrap(), "--machine", "a"]);
    // Another lab's VXLAN end in the same underlay namespace, same VNI and
    // port: the kernel refuses it; weft says why and removes what it made.
    let up2 = |lab: &Lab| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", u.ns[0]))
            .arg(common::weft_bin())
            .args(["up", lab.file.to_str().unwrap(), "--machine", "a"])
            .env("WEFT_STATE_DIR", &lab.state)
            .output()
            .unwrap()
    };
    let o = up2(&second);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a second VNI 4242 was accepted");
    assert!(err.contains("VNI 4242 on UDP port 4789 is taken"), "{err}");
    assert!(second.namespaces().is_empty(), "{:?}", second.namespaces());
    // Another VNI is fine; both labs then share the underlay's socket.
    second.rewrite(&text(4243));
    let o = up2(&second);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(u.vxlan_devices(0), "");
    // An edit of the VNI makes the device again, with its address.
    second.rewrite(&text(4244));
    let o = up2(&second);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("- vxlan h1:vx0") && plan.contains("+ vxlan h1:vx0"),
        "{plan}"
    );
    let vx = out(&["ip", "-n", &second.netns("h1"), "-d", "addr", "show", "vx0"]);
    assert!(
        vx.contains("vxlan id 4244") && vx.contains("10.61.0.1/24"),
        "{vx}"
    );
    let o = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", u.ns[0]))
        .arg(common::weft_bin())
        .args(["down", &second.name, "--machine", "a"])
        .env("WEFT_STATE_DIR", &second.state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn vxlan_over_an_ipv6_underlay() {
    let lab = Lab::from_text(
        "v6",
        "name = \"x\"\n[machines.a]\nunderlay = \"fd00:77::1\"\n[machines.b]\nunderlay = \"fd00:77::2\"\n[nodes.h1]\nmachine = \"a\"\n[nodes.h1.interfaces.vx0]\naddresses = [\"10.62.0.1/24\"]\n[nodes.h2]\nmachine = \"b\"\n[nodes.h2.interfaces.vx0]\naddresses = [\"10.62.0.2/24\"]\n[[links]]\nkind = \"vxlan\"\nendpoints = [\"h1:vx0\", \"h2:vx0\"]\n",
    );
    let u = Underlay::new(&lab);
    let file = lab.file.to_str().unwrap();
    u.ok(0, &["up", file, "--machine", "a"]);
    u.ok(1, &["up", file, "--machine", "b"]);
    let vx = out(&["ip", "-n", &lab.netns("h1"), "-d", "link", "show", "vx0"]);
    assert!(
        vx.contains("local fd00:77::1") && vx.contains("remote fd00:77::2"),
        "{vx}"
    );
    // 1500 minus 70 bytes of VXLAN over IPv6.
    assert!(vx.contains("mtu 1430"), "{vx}");
    assert!(
        lab.ping_within("h1", "10.62.0.2", Duration::from_secs(30))
            .is_some(),
        "no ping over the IPv6 underlay"
    );
    for (m, name) in ["a", "b"].iter().enumerate() {
        u.ok(m, &["down", &lab.name, "--machine", name]);
        assert_eq!(u.vxlan_devices(m), "");
    }
}

/// An impaired vxlan link: its wire is on the first end's machine, in
/// front of the VXLAN device, and the far machine builds its end as
/// always. 300 datagrams over `delay = "10ms", loss = "20%"` arrive in the
/// stated bounds and never early; `weft impair` on the wire's machine
/// retunes it, and the same seed drops the same datagrams twice.
#[test]
fn an_impaired_vxlan_link_has_a_wire_on_its_first_ends_machine() {
    let node = |n: &str, m: &str, addr: &str, mac: &str| {
        format!(
            "[nodes.{n}]\nmachine = \"{m}\"\n[nodes.{n}.sysctls]\n\"net.ipv6.conf.all.disable_ipv6\" = 1\n\"net.ipv6.conf.default.disable_ipv6\" = 1\n[nodes.{n}.interfaces.vx0]\naddresses = [\"{addr}/24\"]\nmac = \"{mac}\"\n"
        )
    };
    let text = format!(
        "name = \"x\"\n[machines.a]\nunderlay = \"192.0.2.1\"\n[machines.b]\nunderlay = \"192.0.2.2\"\n{}{}[[links]]\nkind = \"vxlan\"\nendpoints = [\"h2:vx0\", \"h1:vx0\"]\nimpair = {{ delay = \"10ms\", loss = \"20%\", seed = 5 }}\n",
        node("h1", "a", "10.63.0.1", "02:00:00:00:63:01"),
        node("h2", "b", "10.63.0.2", "02:00:00:00:63:02"),
    );
    let lab = Lab::from_text("c2vx", &text);
    let u = Underlay::new(&lab);
    let file = lab.file.to_str().unwrap();
    let plan = u.ok(0, &["up", file, "--machine", "a"]);
    u.ok(1, &["up", file, "--machine", "b"]);
    assert!(
        lab.namespaces().contains(&lab.netns("~h1.vx0")),
        "the wire is on machine a: {plan}"
    );
    let vx = out(&[
        "ip",
        "-n",
        &lab.netns("~h1.vx0"),
        "-d",
        "link",
        "show",
        "w1",
    ]);
    assert!(
        vx.contains("vxlan id") && vx.contains("remote 192.0.2.2"),
        "{vx}"
    );
    let h1 = out(&["ip", "-n", &lab.netns("h1"), "link", "show", "vx0"]);
    assert!(h1.contains("02:00:00:00:63:01"), "h1 keeps its MAC: {h1}");
    for (n, ip, mac) in [
        ("h1", "10.63.0.2", "02:00:00:00:63:02"),
        ("h2", "10.63.0.1", "02:00:00:00:63:01"),
    ] {
        sh(&[
            "ip",
            "-n",
            &lab.netns(n),
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            "vx0",
            "nud",
            "permanent",
        ]);
    }
    let n = 300;
    let first = common::datagrams(&lab, "h1", "h2", "10.63.0.2", n);
    common::assert_lossy_arrivals("vxlan", &first, n, 10.0);

    // Retuned at run time on machine a (the share that has the wire),
    // twice with one seed: the same datagrams lost.
    let share = format!("{}@a", lab.name);
    let ids = |v: &[(u32, f64)]| v.iter().map(|(i, _)| *i).collect::<Vec<u32>>();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let o = u.ok(
            0,
            &["impair", &share, "h1", "h2", "--loss", "30%", "--seed", "8"],
        );
        assert!(o.contains("(wire ~h1.vx0): impair loss 30%"), "{o}");
        runs.push(ids(&common::datagrams(&lab, "h1", "h2", "10.63.0.2", n)));
    }
    assert!((170..=250).contains(&runs[0].len()), "{}", runs[0].len());
    assert_eq!(runs[0], runs[1], "seed 8 replays over vxlan");
    assert_ne!(runs[0], ids(&first), "another seed, other losses");
}

/// A round whose check runs for two minutes: SIGTERM ends the agent (its
/// share taken down) long before the check would.
#[test]
fn the_agent_ends_promptly_on_sigterm_in_a_slow_round() {
    use std::io::{BufRead, BufReader};
    let lab = Lab::from_text("agterm", "name = \"x\"\n");
    let mark = lab.file.parent().unwrap().join("checking");
    lab.rewrite(&format!(
        r#"name = "x"
[machines.a]
underlay = "192.0.2.1"
[nodes.h1]
machine = "a"
[[checks]]
from = "h1"
command = ["sh", "-c", "touch {}; exec sleep 120"]
timeout = 120
"#,
        mark.display()
    ));
    let mut agent = lab
        .weft()
        .args(["agent", lab.file.to_str().unwrap(), "--machine", "a"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = BufReader::new(agent.stderr.take().unwrap());
    let said = std::thread::spawn(move || {
        err.lines()
            .map_while(Result::ok)
            .inspect(|l| eprintln!("{l}"))
            .collect::<Vec<_>>()
    });
    let t0 = Instant::now();
    while !mark.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the check never started"
        );
        assert!(agent.try_wait().unwrap().is_none(), "the agent ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.namespaces().len(), 1, "{:?}", lab.namespaces());
    sh(&["kill", "-TERM", &agent.id().to_string()]);
    let t1 = Instant::now();
    let st = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        // A bound for a hang only: the check alone would hold it 120 s.
        if t1.elapsed() > Duration::from_secs(60) {
            let _ = agent.kill();
            panic!("the agent did not end within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = said.join().unwrap().join("\n");
    assert!(st.success(), "{st}: {said}");
    assert!(
        said.contains(&format!("share {}@a down", lab.name)),
        "{said}"
    );
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
}
