//! `attach` to a switch with the port's settings, written on the switch
//! or as `port = {..}` on the attaching node, through the real binary: the
//! port really is in its VLAN.

mod common;
use common::Lab;

#[test]
fn attached_hosts_get_the_port_settings_declared_on_the_switch() {
    let lab = Lab::from_text(
        "attvlan",
        r#"name = "x"
[nodes.sw]
kind = "switch"
subnet = "10.42.0.0/24"
[nodes.sw.interfaces.a1]
vlan = 10
[nodes.sw.interfaces.a2]
vlan = 10
[nodes.sw.interfaces.b1]
vlan = 20
[nodes.a1]
attach = "sw"
[nodes.a2]
attach = "sw"
[nodes.b1]
attach = "sw"
[nodes.c]
count = 2
attach = "sw"
port = { vlan = 20 }
"#,
    );
    lab.up();
    assert!(lab.ping("a1", "a2", None), "VLAN 10 to VLAN 10");
    assert!(!lab.ping("a1", "b1", None), "VLAN 10 reached VLAN 20");
    assert!(!lab.ping("b1", "a2", None), "VLAN 20 reached VLAN 10");
    // A group with `port = {..}`: every member in VLAN 20.
    assert!(lab.ping("c1", "b1", None), "c1 is in VLAN 20");
    assert!(lab.ping("c2", "c1", None), "c2 is in VLAN 20");
    assert!(!lab.ping("c2", "a1", None), "VLAN 20 reached VLAN 10");
    let fdb: serde_json::Value =
        serde_json::from_str(&lab.ok(&["fdb", &lab.name, "sw", "--json"])).unwrap();
    let a1 = lab.iface("a1", "eth0")["mac"].clone();
    assert!(
        fdb["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == a1 && e["vlan"] == 10 && e["port"] == "a1"),
        "a1 is learned in VLAN 10 on its port: {fdb}"
    );
}
