//! The live state `weft graph` and `weft serve` draw: what the kernel says
//! about each interface, overlaid with what the switch datapath knows and
//! the kernel does not (a port taken out of service with `weft link`, its
//! veth still up; spanning-tree roles and states).

use weft_datapath::control::SwitchInfo;
use weft_see::graph::{Counters, Live, LiveMap};
use weft_topo::Endpoint;

use crate::LabStatus;

/// Live state by `node:iface` from a lab's status.
pub fn live_map(status: &LabStatus) -> LiveMap {
    let mut live = LiveMap::new();
    for n in &status.nodes {
        for i in &n.interfaces {
            live.insert(
                Endpoint::new(&n.name, &i.name),
                Live {
                    state: if i.present {
                        i.state.clone().unwrap_or_else(|| "unknown".into())
                    } else {
                        "missing".into()
                    },
                    port_state: i.port_state.map(str::to_string),
                    // Kernel bridges' ports with STP on; switches' below.
                    role: i.stp_role.map(str::to_string),
                    addresses: i.addresses.clone(),
                    counters: i.counters.map(|c| Counters {
                        rx_frames: c.rx_packets,
                        rx_bytes: c.rx_bytes,
                        tx_frames: c.tx_packets,
                        tx_bytes: c.tx_bytes,
                    }),
                },
            );
        }
    }
    for sw in status.switches.iter().flatten().flatten() {
        overlay_switch(&mut live, sw);
    }
    live
}

fn overlay_switch(live: &mut LiveMap, sw: &SwitchInfo) {
    for p in &sw.ports {
        let l = live
            .entry(Endpoint::new(&sw.name, &p.name))
            .or_insert_with(|| Live {
                state: "up".into(),
                ..Live::default()
            });
        if !p.present {
            l.state = "missing".into();
        } else if !p.admin_up {
            l.state = "down".into();
        } else if !p.carrier {
            l.state = "no-carrier".into();
        }
        // The datapath's own: what its ports switched (the kernel's veth
        // counters miss frames a fast path redirects).
        l.counters = Some(Counters {
            rx_frames: p.rx_frames,
            rx_bytes: p.rx_bytes,
            tx_frames: p.tx_frames,
            tx_bytes: p.tx_bytes,
        });
        if sw.stp != "off" {
            l.role = Some(p.role.clone());
            l.port_state = Some(p.state.clone());
        }
    }
}
