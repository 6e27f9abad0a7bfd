//! From the lab file's switch settings to the core's configuration (pure).

use std::time::Duration;

use weft_switch::{
    MirrorConfig, PortConfig, PortId, PortStpConfig, StpConfig, StpMode, SwitchConfig,
};
use weft_topo::{Node, SwitchPortMode, SwitchStp};
use weft_wire::MacAddr;

/// MTU the core checks frames against. GSO frames from veth are up to
/// 64 KiB; the kernel itself refuses what a port's device cannot carry.
pub const DATAPATH_MTU: u16 = 65535;

/// A switch node's ports in core order (sorted by name) and its config.
pub fn switch_config(lab: &str, node: &Node) -> Option<(Vec<String>, SwitchConfig)> {
    let sw = node.switch.as_ref()?;
    let names: Vec<String> = sw.ports.keys().cloned().collect();
    let ports = sw
        .ports
        .values()
        .map(|p| {
            let mut c = match &p.mode {
                SwitchPortMode::Access(v) => PortConfig::access(*v),
                SwitchPortMode::Trunk { allowed, native } => {
                    PortConfig::trunk(allowed.iter().copied(), *native)
                }
            };
            c.stp = PortStpConfig {
                path_cost: p.cost.unwrap_or(100),
                // The file counts like a kernel bridge port (0..=63); the
                // BPDU's port id carries 4 times that.
                priority: p.priority.map_or(128, |v| (v * 4).min(255) as u8),
                edge: p.edge,
                point_to_point: true,
            };
            c
        })
        .collect();
    let mac = sw
        .mac
        .map(|m| MacAddr(m.0))
        .unwrap_or_else(|| derived_mac(lab, &node.name));
    let mut cfg = SwitchConfig::new(mac, ports);
    let cs =
        |v: Option<u32>, d: Duration| v.map_or(d, |c| Duration::from_millis(u64::from(c) * 10));
    let def = StpConfig::default();
    cfg.stp = StpConfig {
        mode: match sw.stp {
            SwitchStp::Rstp => StpMode::Rstp,
            SwitchStp::Stp => StpMode::Stp,
            SwitchStp::Off => StpMode::Off,
        },
        priority: sw.priority.unwrap_or(def.priority),
        hello_time: cs(sw.hello_time_cs, def.hello_time),
        max_age: cs(sw.max_age_cs, def.max_age),
        forward_delay: cs(sw.forward_delay_cs, def.forward_delay),
    };
    if let Some(n) = sw.fdb_size {
        cfg.fdb_max_entries = n as usize;
    }
    if let Some(a) = sw.ageing_time_cs {
        cfg.ageing = Duration::from_millis(u64::from(a) * 10);
    }
    cfg.mtu = DATAPATH_MTU;
    let id = |p: &str| names.iter().position(|n| n == p).map(|i| PortId(i as u16));
    cfg.static_macs = sw
        .static_macs
        .iter()
        .filter_map(|e| Some((e.vlan, MacAddr(e.mac.0), id(&e.port)?)))
        .collect();
    if let Some(m) = &sw.mirror {
        cfg.mirror = MirrorConfig {
            output: id(&m.output),
            select_ingress: m.ingress.iter().filter_map(|p| id(p)).collect(),
            select_egress: m.egress.iter().filter_map(|p| id(p)).collect(),
            select_vlans: m.vlans.iter().copied().collect(),
        };
    }
    Some((names, cfg))
}

/// A stable, locally administered unicast MAC from the lab and node names,
/// so bridge ids (and the root election) do not change from run to run.
pub fn derived_mac(lab: &str, node: &str) -> MacAddr {
    let b = stable_hash(&[lab, node]).to_be_bytes();
    MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// FNV-1a of the names, each followed by a zero byte: stable across Rust
/// versions and runs, unlike std's hasher.
pub fn stable_hash(names: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, n) in names.iter().enumerate() {
        let sep = (i + 1 < names.len()).then_some(0u8);
        for b in n.bytes().chain(sep) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_settings_become_core_config() {
        let src = r#"
name = "t"
[nodes.sw]
kind = "switch"
stp = "stp"
priority = 4096
forward_delay = 4
ageing_time = 30
fdb_size = 100
[nodes.sw.interfaces.a]
vlan = 10
priority = 8
[nodes.sw.interfaces.b]
trunk = [10, 20]
native = 30
cost = 7
[nodes.h.interfaces.e]
[nodes.h.interfaces.f]
[[links]]
endpoints = ["h:e", "sw:a"]
[[links]]
endpoints = ["h:f", "sw:b"]
"#;
        let lab = weft_topo::parse(src).unwrap().lab;
        let (names, cfg) = switch_config("t", &lab.nodes["sw"]).unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(cfg.stp.mode, StpMode::Stp);
        assert_eq!(cfg.stp.priority, 4096);
        assert_eq!(cfg.stp.forward_delay, Duration::from_secs(4));
        assert_eq!(cfg.ageing, Duration::from_secs(30));
        assert_eq!(cfg.fdb_max_entries, 100);
        assert_eq!(cfg.ports[0].mode, weft_switch::PortMode::Access(10));
        assert_eq!(cfg.ports[0].stp.priority, 32);
        assert!(cfg.ports[0].stp.edge);
        assert!(cfg.ports[1].mode.is_member(20) && cfg.ports[1].mode.is_untagged(30));
        assert!(!cfg.ports[1].mode.is_member(40));
        assert_eq!(cfg.ports[1].stp.path_cost, 7);
        assert_eq!(cfg.mac, derived_mac("t", "sw"));
        assert_eq!(cfg.mac.0[0], 0x02);
        assert_ne!(derived_mac("t", "sw"), derived_mac("t", "sw2"));
    }

    #[test]
    fn static_macs_and_mirror_become_core_config() {
        let src = r#"
name = "t"
[nodes.sw]
kind = "switch"
static_macs = [
  { mac = "02:00:00:00:00:0b", port = "b" },
  { mac = "02:00:00:00:00:0c", port = "a", vlan = 20 },
]
mirror = { output = "m", ports = ["a"], egress = ["b"], vlans = [20] }
[nodes.sw.interfaces.a]
trunk = [20]
native = 1
[nodes.h.interfaces.e]
[nodes.h.interfaces.f]
[nodes.h.interfaces.g]
[[links]]
endpoints = ["h:e", "sw:a"]
[[links]]
endpoints = ["h:f", "sw:b"]
[[links]]
endpoints = ["h:g", "sw:m"]
"#;
        let lab = weft_topo::parse(src).unwrap().lab;
        let (names, cfg) = switch_config("t", &lab.nodes["sw"]).unwrap();
        assert_eq!(names, ["a", "b", "m"]);
        let mac = |s: &str| s.parse::<MacAddr>().unwrap();
        assert_eq!(
            cfg.static_macs,
            [
                (1, mac("02:00:00:00:00:0b"), PortId(1)),
                (20, mac("02:00:00:00:00:0c"), PortId(0)),
            ]
        );
        assert_eq!(cfg.mirror.output, Some(PortId(2)));
        assert_eq!(cfg.mirror.select_ingress, [PortId(0)]);
        assert_eq!(cfg.mirror.select_egress, [PortId(0), PortId(1)]);
        assert!(cfg.mirror.select_vlans.contains(20) && !cfg.mirror.select_vlans.contains(1));
    }
}
