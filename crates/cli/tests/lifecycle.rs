//! up / down / status / exec behaviour: idempotence, edits, crashes,
//! rollback, ownership, bad input.

mod common;
use std::process::{Command, Stdio};

use common::Lab;

#[test]
fn reapplying_the_same_file_changes_nothing() {
    let lab = Lab::example("again", "bridge.toml");
    lab.up();
    let out = lab.up();
    assert!(out.contains("is up to date: nothing to change"), "{out}");
    let dry = lab.ok(&["up", "--dry-run", lab.file.to_str().unwrap()]);
    assert!(dry.contains("nothing to change"), "{dry}");
}

#[test]
fn an_edited_file_applies_only_the_difference() {
    let base = std::fs::read_to_string(common::root().join("examples/star.toml"))
        .unwrap()
        .replace("count = 20", "count = 3");
    let lab = Lab::from_text("edit", &base);
    lab.up();
    let idx_before = lab.iface("h1", "eth0")["index"].clone();
    let edited = base.replace("count = 3", "count = 4")
        + "\n[nodes.solo]\nattach = \"br\"\n[nodes.solo.interfaces.eth0]\nmtu = 1400\n";
    lab.rewrite(&edited);
    let dry = lab.ok(&["up", "--dry-run", lab.file.to_str().unwrap()]);
    // Two nodes, their links, addresses and default routes.
    assert!(dry.contains("8 to add, 0 to change, 0 to remove"), "{dry}");
    let out = lab.up();
    let plan: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(['+', '-', '~']))
        .collect();
    assert!(
        plan.contains(&"+ node h4") && plan.contains(&"+ node solo"),
        "{out}"
    );
    assert!(
        !plan.iter().any(|l| l.contains("h1")),
        "untouched hosts stay as they are: {out}"
    );
    assert_eq!(
        lab.iface("h1", "eth0")["index"],
        idx_before,
        "h1's interface was not recreated"
    );
    assert_eq!(lab.iface("solo", "eth0")["mtu"], 1400);
    assert!(lab.ping("h4", "solo", None));
    // Change in place, then remove.
    lab.rewrite(
        &edited
            .replace("mtu = 1400", "mtu = 1300")
            .replace("count = 4", "count = 2"),
    );
    let out = lab.up();
    assert!(out.contains("~ solo:eth0 mtu 1400 -> 1300"), "{out}");
    assert!(
        out.contains("- node h3") && out.contains("- node h4"),
        "{out}"
    );
    assert_eq!(lab.iface("solo", "eth0")["mtu"], 1300);
    assert_eq!(lab.namespaces().len(), 4);
    let ports: Vec<String> = lab
        .ip("br", &["-o", "link", "show", "master", "br"])
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(ports.len(), 3, "ports of removed hosts are gone: {ports:?}");
}

#[test]
fn down_works_without_the_file_and_removes_only_the_lab() {
    let a = Lab::example("keep", "veth.toml");
    let b = Lab::example("gone", "veth.toml");
    a.up();
    b.up();
    std::fs::remove_file(&b.file).unwrap();
    let out = b.ok(&["down", &b.name]);
    assert!(out.contains("removed 2 namespace(s)"), "{out}");
    assert!(b.namespaces().is_empty());
    assert_eq!(a.namespaces().len(), 2, "the other lab is untouched");
    assert!(a.ping("ns1", "ns2", None));
    let again = b.ok(&["down", &b.name]);
    assert!(again.contains("nothing to remove"), "{again}");
}

#[test]
fn down_after_up_was_killed_half_way() {
    let text = std::fs::read_to_string(common::root().join("examples/star.toml"))
        .unwrap()
        .replace("count = 20", "count = 400");
    let lab = Lab::from_text("kill", &text);
    let left = lab.kill_up_when(30);
    assert!(left > 0, "the kill came too late to test anything");
    let out = lab.ok(&["down", &lab.name]);
    // Every namespace the killed run made, and only those: it made them
    // all before it died, so the count is exact.
    assert!(
        out.contains(&format!("removed {left} namespace(s)")),
        "{left} were left: {out}"
    );
    assert!(
        lab.namespaces().is_empty(),
        "down removed everything the killed run made"
    );
    // And a new up after a crash starts clean.
    let lab2 = Lab::from_text("kill2", &text.replace("count = 400", "count = 5"));
    lab2.up();
    assert!(lab2.ping("h1", "h5", None));
}

#[test]
fn a_kernel_refusal_rolls_back_everything_the_run_made() {
    // An `onlink` route through an interface that is down: the kernel
    // refuses it (ENETDOWN) after the namespaces and links exist.
    let text = r#"
name = "x"
[nodes.a]
routes = ["default via 10.9.0.1 dev eth0 onlink"]
[nodes.a.interfaces.eth0]
up = false
addresses = ["10.0.0.1/24"]
[nodes.b.interfaces.eth0]
addresses = ["10.0.0.2/24"]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
"#;
    let lab = Lab::from_text("rollback", text);
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "the kernel refused ip route replace default via 10.9.0.1 dev eth0 onlink in node a"
        ),
        "{err}"
    );
    assert!(lab.namespaces().is_empty(), "rolled back");
    // --keep-on-error leaves it for inspection.
    let o = lab.run(&["up", "--keep-on-error", lab.file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert_eq!(lab.namespaces().len(), 2);
    // Fixed, the next up clears what the failed run left and builds cleanly.
    lab.rewrite(
        &text
            .replace("routes = [\"default via 10.9.0.1 dev eth0 onlink\"]\n", "")
            .replace("up = false\n", ""),
    );
    let out = lab.up();
    assert!(out.contains("left by an interrupted `weft up`"), "{out}");
    assert!(lab.ping("a", "10.0.0.2", None));
}

#[test]
fn a_failed_edit_restores_the_lab_as_it_was() {
    let lab = Lab::example("undo", "veth.toml");
    lab.up();
    let text = std::fs::read_to_string(&lab.file).unwrap();
    // A new node and an address change succeed, then the onlink route
    // through a down interface is refused: all of it is undone.
    let bad = text.replace("10.1.1.3/24", "10.1.1.4/24")
        + "\n[nodes.c]\nroutes = [\"default via 10.7.0.1 dev e onlink\"]\n[nodes.c.interfaces.e]\nkind = \"tap\"\nup = false\n";
    lab.rewrite(&bad);
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(lab.namespaces().len(), 2, "the new node was removed again");
    assert_eq!(
        lab.iface("ns2", "veth1")["addresses"][0],
        "10.1.1.3/24",
        "the address change was undone"
    );
    assert!(lab.ping("ns1", "10.1.1.3", None));
    lab.rewrite(&text);
    assert!(
        lab.up().contains("up to date"),
        "state matches the old file again"
    );
}

#[test]
fn a_namespace_that_is_not_wefts_is_not_taken_over() {
    let lab = Lab::example("foreign", "veth.toml");
    let theirs = lab.netns("ns2");
    assert!(Command::new("ip")
        .args(["netns", "add", &theirs])
        .status()
        .unwrap()
        .success());
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let _ = Command::new("ip").args(["netns", "del", &theirs]).status();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already exists and is not part of lab"),
        "{err}"
    );
    assert!(lab.namespaces().is_empty(), "nothing was built");
}

#[test]
fn down_does_not_take_a_foreign_namespace_with_the_labs_prefix() {
    let lab = Lab::example("prefix", "veth.toml");
    lab.up();
    let theirs = lab.netns("zz-not-ours");
    assert!(Command::new("ip")
        .args(["netns", "add", &theirs])
        .status()
        .unwrap()
        .success());
    lab.ok(&["down", &lab.name]);
    let still = std::path::Path::new("/run/netns").join(&theirs).exists();
    let _ = Command::new("ip").args(["netns", "del", &theirs]).status();
    assert!(
        still,
        "a namespace without weft's ownership tag survives `weft down`"
    );
}

#[test]
fn without_cap_net_admin_up_says_so_and_builds_nothing() {
    let lab = Lab::example("nocap", "veth.toml");
    let o = Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-net_admin,-sys_admin",
            "--",
        ])
        .arg(common::weft_bin())
        .args(["up", lab.file.to_str().unwrap()])
        .env("WEFT_STATE_DIR", &lab.state)
        // Without this, weft would build in a user namespace of its own.
        .env("WEFT_ROOTLESS", "0")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("CAP_NET_ADMIN") && err.contains("root"),
        "{err}"
    );
    assert!(lab.namespaces().is_empty());
}

#[test]
fn a_bad_file_is_refused_with_its_position_and_builds_nothing() {
    let lab = Lab::from_text(
        "bad",
        "name = \"x\"\n[nodes.ns1.interfaces.averyveryverylongname]\nkind = \"tap\"\n",
    );
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("lab.toml:2:"), "{err}");
    assert!(err.contains("at most 15"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(lab.namespaces().is_empty());
}

#[test]
fn exec_runs_in_the_node_with_its_own_sys_and_passes_io_and_status() {
    let lab = Lab::example("exec", "bridge.toml");
    lab.up();
    let out = lab.ok(&["exec", &lab.name, "ns1", "--", "ls", "/sys/class/net"]);
    let mut devs: Vec<&str> = out.split_whitespace().collect();
    devs.sort();
    assert!(
        devs.contains(&"tap1") && devs.contains(&"lo") && !devs.contains(&"tap2"),
        "{devs:?}"
    );
    let o = lab.run(&["exec", &lab.name, "ns1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let mut child = lab
        .weft()
        .args(["exec", &lab.name, "ns2", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through stdin\n");
    let o = lab.run(&["exec", &lab.name, "nope", "--", "true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no node nope"));
}

#[test]
fn status_lists_the_lab_in_a_table_and_as_json() {
    let lab = Lab::example("status", "bridge.toml");
    lab.up();
    let table = lab.ok(&["status", &lab.name]);
    assert!(
        table.contains("bridge br0")
            && table.contains("port of br0: forwarding")
            && table.contains("192.168.50.1/24"),
        "{table}"
    );
    let all = lab.ok(&["status"]);
    assert!(all.contains(&format!("lab {}", lab.name)));
    let j = lab.status_json();
    assert_eq!(j[0]["name"], lab.name.as_str());
    let tap1 = lab.iface("ns1", "tap1");
    assert_eq!(tap1["peer"], "br0:br-tap1");
    assert_eq!(tap1["state"], "up");
    assert_eq!(tap1["carrier"], true);
}

#[test]
fn bridge_settings_change_in_place_on_a_live_lab() {
    let lab = Lab::example("brset", "bridge.toml");
    lab.up();
    let port = lab.iface("br0", "br-tap1")["index"].clone();
    let text = std::fs::read_to_string(&lab.file).unwrap();
    lab.rewrite(&text.replace(
        "stp = false",
        "stp = false\nageing_time = 30\npriority = 100",
    ));
    let out = lab.up();
    assert!(out.contains("~ br0:br0 bridge"), "{out}");
    assert!(
        !out.contains("+ bridge"),
        "the bridge is not made again: {out}"
    );
    assert_eq!(lab.iface("br0", "br-tap1")["index"], port);
    assert_eq!(lab.iface("br0", "br-tap1")["master"], "br0");
    let detail = lab.ip("br0", &["-d", "link", "show", "dev", "br0"]);
    assert!(
        detail.contains("ageing_time 3000") && detail.contains("priority 100"),
        "{detail}"
    );
    assert!(lab.ping("ns1", "ns2", None));
}

#[test]
fn removing_an_mtu_restores_the_default() {
    let lab = Lab::example("mtu", "veth.toml");
    let text = std::fs::read_to_string(&lab.file).unwrap();
    lab.rewrite(&format!("{text}mtu = 9000\n"));
    lab.up();
    assert_eq!(lab.iface("ns1", "veth0")["mtu"], 9000);
    lab.rewrite(&text);
    let out = lab.up();
    assert!(out.contains("~ ns1:veth0 mtu 9000 -> default"), "{out}");
    assert_eq!(lab.iface("ns1", "veth0")["mtu"], 1500);
}

#[test]
fn an_edit_killed_half_way_is_cleaned_up_by_the_next_up() {
    let base = std::fs::read_to_string(common::root().join("examples/star.toml"))
        .unwrap()
        .replace("count = 20", "count = 2");
    let lab = Lab::from_text("killedit", &base);
    lab.up();
    lab.rewrite(&base.replace("count = 2", "count = 400"));
    lab.kill_up_when(40);
    assert!(lab.namespaces().len() > 3, "the kill came too late");
    lab.rewrite(&base.replace("count = 2", "count = 3"));
    let out = lab.up();
    assert!(out.contains("left by an interrupted `weft up`"), "{out}");
    assert_eq!(lab.namespaces().len(), 4);
    assert!(lab.ping("h3", "h1", None));
}

#[test]
fn down_takes_the_file_even_when_it_no_longer_passes_the_checks() {
    let lab = Lab::example("byfile", "veth.toml");
    lab.up();
    let text = std::fs::read_to_string(&lab.file).unwrap();
    std::fs::write(
        &lab.file,
        format!("{text}\n[nodes.broken]\ncolour = \"red\"\n"),
    )
    .unwrap();
    let out = lab.ok(&["down", lab.file.to_str().unwrap()]);
    assert!(out.contains("removed 2 namespace(s)"), "{out}");
    assert!(lab.namespaces().is_empty());
}

#[test]
fn ipv6_addresses_answer_the_first_ping() {
    // Duplicate address detection would keep these tentative for ~2 s; weft
    // checks uniqueness itself and skips it, so the first probe answers.
    let lab = Lab::from_text(
        "v6",
        "name = \"x\"\n[nodes.br]\nkind = \"bridge\"\naddresses = [\"fd00:50::1/64\"]\n[nodes.h]\ncount = 2\nattach = \"br\"\n",
    );
    lab.up();
    assert_eq!(lab.iface("h2", "eth0")["addresses"][0], "fd00:50::3/64");
    let o = lab.run(&["ping", &lab.name, "h1", "fd00:50::3", "-c", "1", "-W", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(lab.ping("h1", "fd00:50::1", None));
    assert!(lab
        .ip("h1", &["-6", "route"])
        .contains("default via fd00:50::1"));
}

#[test]
fn every_setting_reaches_the_kernel() {
    let lab = Lab::from_text(
        "settings",
        r#"
name = "x"
[nodes.br0]
kind = "bridge"
stp = true
forward_delay = 2
hello_time = 1
max_age = 6
ageing_time = 120
priority = 4096
addresses = ["10.5.0.1/24"]
[nodes.br0.interfaces.p1]
cost = 42
priority = 7
[nodes.a]
routes = ["default via 10.5.0.1 metric 50", "blackhole 10.99.0.0/16", "10.77.0.0/16 via 10.5.0.1 table 100", "10.88.0.0/16 dev eth0 scope link"]
sysctls = { "net.ipv6.conf.all.disable_ipv6" = 1, "net.ipv4.ip_forward" = 1 }
[nodes.a.interfaces.eth0]
addresses = ["10.5.0.2/24"]
mac = "02:00:00:00:05:02"
mtu = 1400
[nodes.a.interfaces.spare]
kind = "tap"
up = false
group = 4242
[[links]]
endpoints = ["a:eth0", "br0:p1"]
"#,
    );
    // A dry run of a lab that is not built builds nothing.
    let dry = lab.ok(&["up", "--dry-run", lab.file.to_str().unwrap()]);
    assert!(
        dry.contains("+ node a") && lab.namespaces().is_empty(),
        "{dry}"
    );
    lab.up();
    let br = lab.ip("br0", &["-d", "link", "show", "dev", "br0"]);
    for want in [
        "stp_state 1",
        "forward_delay 200",
        "hello_time 100",
        "max_age 600",
        "priority 4096",
    ] {
        assert!(br.contains(want), "bridge lacks {want}: {br}");
    }
    // During a topology change (just after STP converged) the kernel shows
    // the shortened ageing, 2 x forward_delay, instead of the configured one.
    assert!(
        br.contains("ageing_time 12000")
            || (br.contains("topology_change 1") && br.contains("ageing_time 400")),
        "{br}"
    );
    let port = lab.ip("br0", &["-d", "link", "show", "dev", "p1"]);
    assert!(
        port.contains("cost 42") && port.contains("priority 7"),
        "{port}"
    );
    let eth0 = lab.ip("a", &["link", "show", "dev", "eth0"]);
    assert!(
        eth0.contains("02:00:00:00:05:02") && eth0.contains("mtu 1400"),
        "{eth0}"
    );
    let spare = lab.ip("a", &["-d", "link", "show", "dev", "spare"]);
    assert!(
        !spare.contains(",UP") && spare.contains("group 4242"),
        "{spare}"
    );
    let routes = lab.ip("a", &["route"]);
    assert!(
        routes.contains("default via 10.5.0.1 dev eth0 proto static metric 50"),
        "{routes}"
    );
    assert!(routes.contains("blackhole 10.99.0.0/16"), "{routes}");
    assert!(
        routes.contains("10.88.0.0/16 dev eth0 proto static scope link"),
        "{routes}"
    );
    assert!(lab
        .ip("a", &["route", "show", "table", "100"])
        .contains("10.77.0.0/16 via 10.5.0.1"));
    let sysctl = |k: &str| {
        lab.ok(&[
            "exec",
            &lab.name,
            "a",
            "--",
            "cat",
            &format!("/proc/sys/{}", k.replace('.', "/")),
        ])
        .trim()
        .to_string()
    };
    assert_eq!(sysctl("net.ipv6.conf.all.disable_ipv6"), "1");
    assert_eq!(sysctl("net.ipv4.ip_forward"), "1");
    assert!(lab.ping("a", "10.5.0.1", None));
}

/// An STP bridge needs 2 x 2 s to forward; a 1 s readiness limit fails
/// after everything was applied: the new lab is removed like after a
/// failed check.
const SLOW_STP: &str = r#"
name = "x"
[nodes.br]
kind = "bridge"
stp = true
forward_delay = 2
hello_time = 1
max_age = 6
addresses = ["10.79.0.1/24"]
[nodes.h1.interfaces.eth0]
addresses = ["10.79.0.2/24"]
[[links]]
endpoints = ["h1:eth0", "br:h1"]
"#;

#[test]
fn a_readiness_timeout_rolls_the_lab_back() {
    let lab = Lab::from_text("notready", SLOW_STP);
    let o = lab.run(&["up", "--ready-timeout", "1", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("did not become usable within 1.0 s: still waiting for")
            && err.contains("br:h1"),
        "{err}"
    );
    assert!(err.contains("was new, so it was removed"), "{err}");
    assert!(lab.namespaces().is_empty(), "rolled back");
    assert!(!lab.state.join("labs").join(&lab.name).exists());
    // An edit of a built lab that times out is undone, the lab as before.
    lab.up();
    let before = lab.ip("h1", &["-br", "addr"]);
    lab.rewrite(&(SLOW_STP.to_string() + "[nodes.h2.interfaces.eth0]\naddresses = [\"10.79.0.3/24\"]\n[[links]]\nendpoints = [\"h2:eth0\", \"br:h2\"]\n"));
    let o = lab.run(&["up", "--ready-timeout", "1", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("was restored to its state before this `weft up`"),
        "{err}"
    );
    assert_eq!(lab.namespaces().len(), 2, "h2 was removed again");
    assert_eq!(lab.ip("h1", &["-br", "addr"]), before);
    // The restored lab is what the state says: applying the edit again
    // (with time to converge) adds h2.
    let out = lab.up();
    assert!(out.contains("+ node h2"), "{out}");
}

#[test]
fn a_kept_unfinished_lab_is_finished_by_the_next_up() {
    let lab = Lab::from_text("keepready", SLOW_STP);
    let o = lab.run(&[
        "up",
        "--keep-on-error",
        "--ready-timeout",
        "1",
        lab.file.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("left as applied (--keep-on-error)"), "{err}");
    assert_eq!(lab.namespaces().len(), 2);
    // Same file: not "up to date", the run is finished (waited for).
    let out = lab.up();
    assert!(!out.contains("up to date"), "{out}");
    assert!(out.contains("is up"), "{out}");
    assert!(lab.ping("h1", "10.79.0.1", None));
    assert!(lab.up().contains("up to date"));
}
