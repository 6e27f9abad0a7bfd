//! Every edit of a lab's switches and wires is a live edit of the running
//! datapath (issue #11): a switch added or removed, its STP protocol
//! changed, a port re-cabled, a wire added or removed, a port taken off a
//! tc BPF switch. Each test checks, after the edit, that the datapath kept
//! its pid, that a switch the edit did not touch kept what it learned and
//! its spanning tree (same roles, no new topology change), and that
//! traffic passes where the edit put it.

mod common;
use common::{cpu_secs, datapath_pid, Lab};

/// The idle datapath sleeps: a thread an edit stopped or started anew
/// does not spin. The bound is far above an idle datapath's use and far
/// below a spinning thread's on any but a saturated machine.
fn sleeps(pid: u32) {
    let (cpu0, t0) = (cpu_secs(pid), std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_secs(1));
    let used = cpu_secs(pid) - cpu0;
    assert!(
        used < 0.4,
        "idle datapath: {used:.2} s CPU in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
}

fn switches(lab: &Lab) -> Vec<serde_json::Value> {
    lab.status_json()[0]["switches"]
        .as_array()
        .unwrap_or_else(|| panic!("no switch status: is the datapath running?"))
        .clone()
}

fn switch(lab: &Lab, name: &str) -> serde_json::Value {
    switches(lab)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no switch {name} in the status"))
}

fn fdb_has(lab: &Lab, sw: &str, mac: &str, port: &str) -> bool {
    let fdb: serde_json::Value =
        serde_json::from_str(&lab.ok(&["fdb", &lab.name, sw, "--json"])).unwrap();
    fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["mac"] == mac && e["port"] == port)
}

/// Island A (untouched by every edit): RSTP switches a1 and a2 cabled
/// together, host ha1 on a1, ha2 on a2, in 10.81.0.0/24. Island B (what
/// the tests edit): switch b1 (`b1_extra` after its kind) with host hb1
/// on port p1, in 10.82.0.0/24; `more` is appended.
fn lab_text(b1_extra: &str, more: &str) -> String {
    format!(
        r#"name = "x"
[nodes.a1]
kind = "switch"
[nodes.a2]
kind = "switch"
[nodes.b1]
kind = "switch"
{b1_extra}
[nodes.ha1.interfaces.eth0]
addresses = ["10.81.0.1/24"]
[nodes.ha2.interfaces.eth0]
addresses = ["10.81.0.2/24"]
[nodes.hb1.interfaces.eth0]
addresses = ["10.82.0.1/24"]
[[links]]
endpoints = ["a1:t", "a2:t"]
[[links]]
endpoints = ["ha1:eth0", "a1:p1"]
[[links]]
endpoints = ["ha2:eth0", "a2:p1"]
[[links]]
endpoints = ["hb1:eth0", "b1:p1"]
{more}"#
    )
}

/// Host hb2 on b1's p2 (apart, so that a test can cable p2 elsewhere).
const HB2_ON_B1: &str = "[nodes.hb2.interfaces.eth0]\naddresses = [\"10.82.0.2/24\"]\n[[links]]\nendpoints = [\"hb2:eth0\", \"b1:p2\"]\n";

/// What must survive an edit of island B.
struct Before {
    pid: u32,
    mac: String,
    /// a1's and a2's (name, port roles, topology changes).
    stp: Vec<(String, Vec<String>, u64)>,
}

fn stp_of(lab: &Lab) -> Vec<(String, Vec<String>, u64)> {
    ["a1", "a2"]
        .iter()
        .map(|n| {
            let s = switch(lab, n);
            let roles = s["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| format!("{} {}", p["name"], p["role"]))
                .collect();
            (
                n.to_string(),
                roles,
                s["topology_changes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Brings the lab up, has island A learn ha1's MAC on a2, and notes what
/// must survive.
fn start(lab: &Lab) -> Before {
    lab.up();
    assert!(lab.ping("ha2", "10.81.0.1", None));
    let mac = lab.mac("ha1", "eth0");
    assert!(fdb_has(lab, "a2", &mac, "t"), "a2 did not learn {mac}");
    Before {
        pid: datapath_pid(lab),
        mac,
        stp: stp_of(lab),
    }
}

/// The datapath was not restarted, and island A is as it was.
fn untouched(lab: &Lab, b: &Before, out: &str) {
    assert_eq!(
        datapath_pid(lab),
        b.pid,
        "the datapath was restarted\n{out}"
    );
    assert!(
        fdb_has(lab, "a2", &b.mac, "t"),
        "a2 forgot {} learned before the edit",
        b.mac
    );
    assert_eq!(stp_of(lab), b.stp, "island A's spanning tree changed");
    assert!(lab.ping("ha1", "10.81.0.2", None));
}

/// A switch node added (with a host, cabled to b1) and removed again.
#[test]
fn a_switch_is_added_and_removed_in_place() {
    let base = lab_text("", HB2_ON_B1);
    let lab = Lab::from_text("lv-addsw", &base);
    let b = start(&lab);
    let more = format!(
        "{HB2_ON_B1}[nodes.b2]\nkind = \"switch\"\n[nodes.hb3.interfaces.eth0]\naddresses = [\"10.82.0.3/24\"]\n[[links]]\nendpoints = [\"b1:u\", \"b2:u\"]\n[[links]]\nendpoints = [\"hb3:eth0\", \"b2:p1\"]\n"
    );
    lab.rewrite(&lab_text("", &more));
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert_eq!(switch(&lab, "b2")["stp"], "rstp");
    assert!(lab.ping("hb3", "10.82.0.1", None));
    assert!(lab.ping("hb2", "10.82.0.3", None));
    let mac3 = lab.mac("hb3", "eth0");
    assert!(fdb_has(&lab, "b1", &mac3, "u"));
    lab.rewrite(&base);
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert!(switches(&lab).iter().all(|s| s["name"] != "b2"));
    assert!(lab.ping("hb1", "10.82.0.2", None));
    assert!(lab.up().contains("up to date"));
    sleeps(b.pid);
}

/// b1's STP protocol changes (rstp -> off -> rstp), then its FDB size:
/// b1 alone starts over.
#[test]
fn a_switch_changes_its_stp_protocol_in_place() {
    let base = lab_text("", HB2_ON_B1);
    let lab = Lab::from_text("lv-stp", &base);
    let b = start(&lab);
    lab.rewrite(&lab_text("stp = \"off\"", HB2_ON_B1));
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert_eq!(switch(&lab, "b1")["stp"], "off");
    assert!(lab.ping("hb1", "10.82.0.2", None));
    lab.rewrite(&base);
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert_eq!(switch(&lab, "b1")["stp"], "rstp");
    assert!(lab.ping("hb2", "10.82.0.1", None));
    // The FDB's size cannot change in a running core either: b1 again.
    lab.rewrite(&lab_text("fdb_size = 64", HB2_ON_B1));
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert_eq!(switch(&lab, "b1")["fdb_max"], 64);
    assert!(lab.ping("hb1", "10.82.0.2", None));
    sleeps(b.pid);
}

/// b1's port p2 cabled from hb2 to a new host hb4: the interface is made
/// again and the datapath opens it again.
#[test]
fn a_recabled_port_is_opened_again_in_place() {
    let base = lab_text("", HB2_ON_B1);
    let lab = Lab::from_text("lv-recable", &base);
    let b = start(&lab);
    assert!(lab.ping("hb1", "10.82.0.2", None));
    let more = "[nodes.hb4.interfaces.eth0]\naddresses = [\"10.82.0.4/24\"]\n[[links]]\nendpoints = [\"hb4:eth0\", \"b1:p2\"]\n";
    lab.rewrite(&lab_text("", more));
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert!(lab.ping("hb4", "10.82.0.1", None));
    let mac4 = lab.mac("hb4", "eth0");
    assert!(fdb_has(&lab, "b1", &mac4, "p2"));
    // And back.
    lab.rewrite(&base);
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert!(lab.ping("hb2", "10.82.0.1", None));
}

/// A wire (an impaired host-to-host link) added, changed and removed.
#[test]
fn a_wire_is_added_changed_and_removed_in_place() {
    let hosts = "[nodes.hw1.interfaces.eth0]\naddresses = [\"10.83.0.1/24\"]\n[nodes.hw2.interfaces.eth0]\naddresses = [\"10.83.0.2/24\"]\n";
    let link = |imp: &str| format!("[[links]]\nendpoints = [\"hw1:eth0\", \"hw2:eth0\"]\n{imp}\n");
    let base = lab_text("", &format!("{HB2_ON_B1}{hosts}{}", link("")));
    let lab = Lab::from_text("lv-wire", &base);
    let b = start(&lab);
    let wires = |lab: &Lab| {
        lab.status_json()[0]["wires"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(wires(&lab).is_empty());
    let delayed = lab_text(
        "",
        &format!("{HB2_ON_B1}{hosts}{}", link("impair = { delay = \"1ms\" }")),
    );
    lab.rewrite(&delayed);
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert!(lab.ping("hw1", "10.83.0.2", None));
    let w = wires(&lab);
    assert_eq!(w.len(), 1, "{w:?}");
    let passed = w[0]["out"]["passed"].as_u64().unwrap();
    assert!(passed > 0, "{w:?}");
    lab.rewrite(&lab_text(
        "",
        &format!("{HB2_ON_B1}{hosts}{}", link("impair = { delay = \"2ms\" }")),
    ));
    let out = lab.up();
    untouched(&lab, &b, &out);
    let w = wires(&lab);
    assert!(w[0]["settings"].as_str().unwrap().contains("2ms"), "{w:?}");
    // The wire was kept: its counters run on over the change.
    assert!(w[0]["out"]["passed"].as_u64().unwrap() >= passed, "{w:?}");
    sleeps(b.pid);
    assert!(lab.ping("hw2", "10.83.0.1", None));
    lab.rewrite(&base);
    let out = lab.up();
    untouched(&lab, &b, &out);
    assert!(wires(&lab).is_empty());
    sleeps(b.pid);
    assert!(lab.ping("hw1", "10.83.0.2", None));
}

/// A port taken off a switch on the tc BPF fast path (two VLANs), then
/// another re-cabled: the kernel switch is made again for the ports as
/// they are, not turned off.
#[test]
fn the_tc_bpf_switch_stays_on_when_a_port_is_removed() {
    // hb3 and hb4 in VLAN 20 on p3 and p4; hb1 (and hb2) in VLAN 1.
    let vlan20 = "[nodes.b1.interfaces.p3]\nvlan = 20\n[nodes.b1.interfaces.p4]\nvlan = 20\n[nodes.hb3.interfaces.eth0]\naddresses = [\"10.82.0.3/24\"]\n[nodes.hb4.interfaces.eth0]\naddresses = [\"10.82.0.4/24\"]\n[[links]]\nendpoints = [\"hb3:eth0\", \"b1:p3\"]\n[[links]]\nendpoints = [\"hb4:eth0\", \"b1:p4\"]\n";
    let lab = Lab::from_text("lv-bpf", &lab_text("", &format!("{HB2_ON_B1}{vlan20}")));
    let b = start(&lab);
    let how = switch(&lab, "b1")["fastpath"].as_str().unwrap().to_string();
    let bpf = "on (tc BPF program on every port)";
    if how != bpf {
        // bpf(2) refused here (no CAP_BPF, no JIT...): the port removal
        // below is still a live edit, checked without the kernel switch.
        eprintln!("SKIPPING the tc BPF part: b1's fast path is {how}");
    }
    assert!(lab.ping("hb3", "10.82.0.4", None));
    lab.rewrite(&lab_text("", vlan20));
    let out = lab.up();
    untouched(&lab, &b, &out);
    let now = switch(&lab, "b1")["fastpath"].as_str().unwrap().to_string();
    if how == bpf {
        assert_eq!(now, bpf, "the tc BPF switch went off");
    }
    let mac3 = lab.mac("hb3", "eth0");
    assert!(lab.ping("hb4", "10.82.0.3", None));
    assert!(fdb_has(&lab, "b1", &mac3, "p3"));
    // VLANs still apart, whichever path decides.
    assert!(!lab.ping("hb1", "10.82.0.3", None));
    // p4 re-cabled to a new host: the kernel switch goes onto the new
    // interface.
    let hb5 = vlan20
        .replace("hb4", "hb5")
        .replace("10.82.0.4", "10.82.0.5");
    lab.rewrite(&lab_text("", &hb5));
    let out = lab.up();
    untouched(&lab, &b, &out);
    let now = switch(&lab, "b1")["fastpath"].as_str().unwrap().to_string();
    if how == bpf {
        assert_eq!(now, bpf, "the tc BPF switch went off");
        let filters = lab.ok(&[
            "exec", &lab.name, "b1", "--", "tc", "filter", "show", "dev", "p4", "ingress",
        ]);
        assert!(
            filters.contains("weft_switch"),
            "no classifier on the new p4: {filters}"
        );
    }
    assert!(lab.ping("hb5", "10.82.0.3", None));
    let mac5 = lab.mac("hb5", "eth0");
    assert!(fdb_has(&lab, "b1", &mac5, "p4"));
}
