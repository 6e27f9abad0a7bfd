//! What a link dump says about traffic and the kernel bridge's spanning
//! tree, beyond the link's configuration: the counters of `ip -s link`,
//! and the STP view of a bridge and of each of its ports (what
//! `/sys/class/net/BR/bridge/` and `.../brport/` show), from which a port's
//! role follows ([`port_role`]). `weft status`, `weft events` and
//! `weft serve` read them.

use netlink_packet_route::link::{BridgeId, InfoBridge, InfoBridgePort, Stats64};

/// An interface's traffic counters since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl From<&Stats64> for LinkStats {
    fn from(s: &Stats64) -> Self {
        LinkStats {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_dropped: s.rx_dropped,
            tx_dropped: s.tx_dropped,
        }
    }
}

/// A bridge id as `ip -d link` and weft switches print it:
/// `8000.025d2336c849` (priority, then the MAC).
pub fn bridge_id(b: &BridgeId) -> String {
    let m = b.address;
    format!(
        "{:04x}.{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b.priority, m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A kernel bridge's spanning-tree view of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStp {
    pub bridge_id: Option<String>,
    pub root_id: Option<String>,
    /// The number (not the id) of the root port; 0 on the root bridge.
    pub root_port: Option<u16>,
    /// The topology-change flag it sends in its BPDUs (set for a while
    /// after any bridge of the tree saw a change).
    pub topology_change: bool,
    /// It saw a change itself and has not had it acknowledged yet.
    pub topology_change_detected: bool,
    /// Time left on the topology-change timer, in centiseconds (0 when
    /// not running): it grows again only when a new change restarts it.
    pub topology_change_timer_cs: u64,
}

impl BridgeStp {
    pub(super) fn from_attributes(opts: &[InfoBridge]) -> BridgeStp {
        let mut s = BridgeStp::default();
        for o in opts {
            match o {
                InfoBridge::BridgeId(b) => s.bridge_id = Some(bridge_id(b)),
                InfoBridge::RootId(b) => s.root_id = Some(bridge_id(b)),
                InfoBridge::RootPort(p) => s.root_port = Some(*p),
                InfoBridge::TopologyChange(t) => s.topology_change = *t != 0,
                InfoBridge::TopologyChangeDetected(t) => s.topology_change_detected = *t != 0,
                InfoBridge::TopologyChangeTimer(t) => s.topology_change_timer_cs = *t,
                _ => {}
            }
        }
        s
    }
}

/// A kernel bridge port's spanning-tree view: the best BPDU it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStp {
    /// The port's number on its bridge (what `root_port` names).
    pub number: Option<u16>,
    /// The port id (priority and number) it sends in its BPDUs.
    pub id: Option<u16>,
    /// The bridge designated for the port's segment and its port there.
    pub designated_bridge: Option<String>,
    pub designated_port: Option<u16>,
}

impl PortStp {
    pub(super) fn from_attributes(opts: &[InfoBridgePort]) -> PortStp {
        let mut s = PortStp::default();
        for o in opts {
            match o {
                InfoBridgePort::PortNumber(n) => s.number = Some(*n),
                InfoBridgePort::PortId(n) => s.id = Some(*n),
                InfoBridgePort::BridgeId(b) => s.designated_bridge = Some(bridge_id(b)),
                InfoBridgePort::DesignatedPort(n) => s.designated_port = Some(*n),
                _ => {}
            }
        }
        s
    }
}

/// A kernel bridge port's role, named as RSTP and weft switches name them,
/// worked out as 802.1D does: the root port is the one the bridge says;
/// a port is designated when it is the designated port of its segment
/// (the BPDU it holds is its own); a blocked port whose segment another
/// port of this same bridge serves is a backup, else an alternate; a
/// disabled port is disabled. `None` when the kernel did not say enough.
pub fn port_role(
    bridge: &BridgeStp,
    port: &PortStp,
    state: Option<super::PortState>,
) -> Option<&'static str> {
    if state == Some(super::PortState::Disabled) {
        return Some("disabled");
    }
    let number = port.number?;
    if bridge.root_port.is_some_and(|r| r != 0 && r == number) {
        return Some("root");
    }
    let own = bridge.bridge_id.as_ref()?;
    let designated = port.designated_bridge.as_ref()?;
    if designated == own {
        if port.designated_port? == port.id? {
            Some("designated")
        } else {
            Some("backup")
        }
    } else {
        Some("alternate")
    }
}

#[cfg(test)]
mod tests {
    use super::super::PortState;
    use super::*;

    fn br(id: &str, root_port: u16) -> BridgeStp {
        BridgeStp {
            bridge_id: Some(id.into()),
            root_id: Some("1000.020000000001".into()),
            root_port: Some(root_port),
            ..Default::default()
        }
    }

    fn port(number: u16, id: u16, dbridge: &str, dport: u16) -> PortStp {
        PortStp {
            number: Some(number),
            id: Some(id),
            designated_bridge: Some(dbridge.into()),
            designated_port: Some(dport),
        }
    }

    #[test]
    fn roles_follow_the_bpdus_ports_hold() {
        let me = "8000.020000000002";
        let b = br(me, 1);
        let fwd = Some(PortState::Forwarding);
        // Port 1 is the root port whatever BPDU it holds.
        let p1 = port(1, 0x8001, "1000.020000000001", 0x8002);
        assert_eq!(port_role(&b, &p1, fwd), Some("root"));
        // Port 2 holds its own BPDU: designated.
        let p2 = port(2, 0x8002, me, 0x8002);
        assert_eq!(port_role(&b, &p2, fwd), Some("designated"));
        // Port 3 hears a better bridge's BPDU: alternate (blocked).
        let p3 = port(3, 0x8003, "8000.020000000003", 0x8001);
        assert_eq!(
            port_role(&b, &p3, Some(PortState::Blocking)),
            Some("alternate")
        );
        // Port 4 hears port 2 of this same bridge: backup.
        let p4 = port(4, 0x8004, me, 0x8002);
        assert_eq!(
            port_role(&b, &p4, Some(PortState::Blocking)),
            Some("backup")
        );
        // Taken down: disabled, whatever it held.
        assert_eq!(
            port_role(&b, &p1, Some(PortState::Disabled)),
            Some("disabled")
        );
        // On the root bridge (root port 0), every working port is designated.
        let root = br(me, 0);
        assert_eq!(port_role(&root, &p2, fwd), Some("designated"));
        // Without the kernel's numbers, no guess.
        assert_eq!(port_role(&b, &PortStp::default(), fwd), None);
    }

    #[test]
    fn bridge_ids_print_as_ip_does() {
        let b = BridgeId {
            priority: 0x8000,
            address: [0x02, 0x5d, 0x23, 0x36, 0xc8, 0x49],
        };
        assert_eq!(bridge_id(&b), "8000.025d2336c849");
    }
}
