//! An uplink on "the machine's own interface", without touching the
//! machine: weft runs inside a namespace the test makes, which stands for
//! the machine, and a veth there plays its real network card.

mod common;

use std::process::Command;

use common::Lab;
use weft_sys::spawn::{command_in, View};

struct FakeMachine(String);

impl FakeMachine {
    /// A namespace standing for the machine, with a veth whose end `fake0`
    /// plays the machine's network card and `fake1` (192.0.2.1) its network.
    fn new(lab: &Lab) -> FakeMachine {
        let fake = FakeMachine(format!("wt-machine-{}", lab.name));
        ip(&["netns", "add", &fake.0]);
        ip(&[
            "-n", &fake.0, "link", "add", "fake0", "type", "veth", "peer", "name", "fake1",
        ]);
        ip(&["-n", &fake.0, "addr", "add", "192.0.2.1/24", "dev", "fake1"]);
        ip(&["-n", &fake.0, "link", "set", "fake0", "up"]);
        ip(&["-n", &fake.0, "link", "set", "fake1", "up"]);
        fake
    }
}

impl Drop for FakeMachine {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_macvlan_uplink_on_a_host_interface_reaches_its_network_only_with_the_opt_in() {
    let lab = Lab::from_text(
        "macvlan",
        r#"
name = "x"
allow_host_interfaces = true

[nodes.edge.interfaces.wan]
kind = "macvlan"
host_interface = "fake0"
addresses = ["192.0.2.50/24"]

[[checks]]
from = "edge"
ping = "192.0.2.1"
"#,
    );
    let fake = FakeMachine::new(&lab);
    let weft_in_machine = |args: &[&str]| {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        command_in(&fake.0, common::weft_bin(), &argv, View::NetOnly)
            .unwrap()
            .env("WEFT_STATE_DIR", &lab.state)
            .output()
            .unwrap()
    };
    let o = weft_in_machine(&["up", lab.file.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("+ macvlan edge:wan"), "{out}");
    assert!(out.contains("1 check(s) passed"), "{out}");
    let link = lab.ip("edge", &["-d", "link", "show", "wan"]);
    assert!(link.contains("macvlan mode bridge"), "{link}");
    assert!(lab.ping("edge", "192.0.2.1", None));
    // Without the opt-in, the same file is refused before anything is built.
    let text = std::fs::read_to_string(&lab.file).unwrap();
    lab.rewrite(&text.replace("allow_host_interfaces = true", ""));
    let o = weft_in_machine(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("this file does not allow that"), "{err}");
    assert!(
        lab.ping("edge", "192.0.2.1", None),
        "the refused file changed nothing"
    );
    lab.ok(&["down", &lab.name]);
    // The machine's interface is as it was.
    let o = Command::new("ip")
        .args(["-n", &fake.0, "-br", "link", "show", "fake0"])
        .output()
        .unwrap();
    let fake0 = String::from_utf8_lossy(&o.stdout);
    assert!(
        fake0.contains("fake0@fake1") && fake0.contains("UP"),
        "{fake0}"
    );
    let o = Command::new("ip")
        .args(["-n", &fake.0, "-br", "link"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        3,
        "lo, fake0, fake1 only"
    );
}

/// Docker's rules on the machine (a forward chain with policy drop, its own
/// masquerade) do not reach into the lab: weft's bridge and NAT live in
/// namespaces of their own, and the macvlan uplink leaves through the
/// machine's card without passing the machine's forward hook. The machine's
/// ruleset is left exactly as it was.
#[test]
fn docker_style_rules_on_the_machine_leave_the_labs_nat_working() {
    let lab = Lab::from_text(
        "dockerish",
        r#"
name = "x"
allow_host_interfaces = true

[nodes.gw]
kind = "bridge"
addresses = ["172.18.0.1/24"]
[nodes.gw.interfaces.wan]
kind = "macvlan"
host_interface = "fake0"
port = false
addresses = ["192.0.2.50/24"]

[nodes.app]
attach = "gw"

[nat.gw]
uplink = "wan"
"#,
    );
    let fake = FakeMachine::new(&lab);
    // What Docker leaves on a machine (iptables-nft): FORWARD policy drop,
    // its user chain, and a masquerade for its own bridge.
    let docker = "table ip filter {\n chain DOCKER-USER {\n  return\n }\n chain FORWARD {\n  type filter hook forward priority filter; policy drop;\n  jump DOCKER-USER\n }\n}\ntable ip nat {\n chain POSTROUTING {\n  type nat hook postrouting priority srcnat; policy accept;\n  ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade\n }\n}\n";
    let nft = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut c = Command::new("ip")
            .args(["netns", "exec", &fake.0, "nft"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(c.stdin.take());
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "nft {args:?} failed");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    nft(&["-f", "-"], Some(docker));
    let before = nft(&["list", "ruleset"], None);
    let o = command_in(
        &fake.0,
        common::weft_bin(),
        &["up".to_string(), lab.file.to_str().unwrap().to_string()],
        View::NetOnly,
    )
    .unwrap()
    .env("WEFT_STATE_DIR", &lab.state)
    .output()
    .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // The container reaches the machine's network through weft's NAT.
    assert!(lab.ping("app", "192.0.2.1", None));
    assert_eq!(
        nft(&["list", "ruleset"], None),
        before,
        "the machine's rules are untouched"
    );
    lab.ok(&["down", &lab.name]);
    assert_eq!(nft(&["list", "ruleset"], None), before);
}
