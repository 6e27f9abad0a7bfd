//! `weft status`: what is built, read back from the kernel.
//!
//! The JSON shape (`weft status --json`) is documented in docs/status.md
//! and kept stable: fields are added, never renamed or removed.

use serde::Serialize;
use weft_topo::IfaceKind;

use crate::{state, Error};
use weft_sys::netlink::Netlink;

/// One lab as built, read back from the kernel (`weft status LAB`).
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// The lab's name (`LAB@MACHINE` for a machine's share).
    pub name: String,
    /// The machine, for one machine's share of a lab (`name` is then
    /// `LAB@MACHINE`).
    pub machine: Option<String>,
    /// The topology file the lab was built from, when it was built from one.
    pub source: Option<String>,
    /// Every node of the file, in name order, present or not.
    pub nodes: Vec<NodeStatus>,
    /// The userspace switches, as their datapath reports them; absent
    /// when the lab has none, `null` when the datapath does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switches: Option<Option<Vec<weft_datapath::control::SwitchInfo>>>,
    /// The wires (impaired links between two kernel ends) with their
    /// counters per direction; absent when the lab has none, `null` when
    /// the datapath does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wires: Option<Option<Vec<weft_datapath::control::WireInfo>>>,
    /// One entry per end of each `kind = "tunnel"` link.
    pub tunnels: Vec<crate::tunnels::TunnelStatus>,
    /// The services and containers the lab runs, node by node.
    pub services: Vec<crate::services::ServiceStatus>,
    /// Changes made at run time (`weft link`, `weft impair`) that the
    /// file does not have; the next `weft up` undoes them.
    pub runtime: Option<crate::runtime::Overrides>,
}

/// One node: its namespace and what the kernel has in it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node's name in the file.
    pub name: String,
    /// `host`, `bridge` or `switch`, as the file says.
    pub kind: &'static str,
    /// The network namespace the node is (`weft-LAB.NODE`).
    pub netns: String,
    /// False when the namespace has vanished (`weft up` recreates it).
    pub present: bool,
    /// The file's interfaces of the node, present or not.
    pub interfaces: Vec<IfaceStatus>,
    /// The namespace's routes as `ip route` prints them.
    pub routes: Vec<String>,
}

/// One interface of a node, as the kernel has it.
#[derive(Debug, Clone, Serialize)]
pub struct IfaceStatus {
    /// The interface's name in the node.
    pub name: String,
    /// veth, bridge, tun, tap, loopback.
    pub kind: &'static str,
    /// False when the file wants it but the kernel does not have it.
    pub present: bool,
    /// The kernel's interface index in the namespace (`ip link`'s number).
    pub index: Option<u32>,
    /// `None` for a TUN (it has no link-layer address).
    pub mac: Option<String>,
    /// The MTU the kernel has.
    pub mtu: Option<u32>,
    /// The kernel's operational state: up, down, lowerlayerdown, unknown.
    pub state: Option<String>,
    /// Set up (`ip link set dev X up`), whatever the carrier.
    pub admin_up: Option<bool>,
    /// The link has a carrier (its other end is up).
    pub carrier: Option<bool>,
    /// Addresses as the kernel has them.
    pub addresses: Vec<String>,
    /// `node:iface` at the other end of a veth.
    pub peer: Option<String>,
    /// The bridge this interface is a port of.
    pub master: Option<String>,
    /// STP port state of a bridge port: disabled, listening, learning,
    /// forwarding, blocking.
    pub port_state: Option<&'static str>,
    /// Bridges: whether STP runs.
    pub stp: Option<bool>,
    /// TUN and TAP devices: their flags and owner.
    pub tun: Option<TunStatus>,
    /// The end of a `kind = "vxlan"` link, as planned.
    pub vxlan: Option<VxlanStatus>,
    /// Traffic counters, from the kernel.
    pub counters: Option<Counters>,
    /// A port of a bridge that runs STP: its role (root, designated,
    /// alternate, backup, disabled), worked out from what the kernel holds.
    pub stp_role: Option<&'static str>,
    /// A bridge that runs STP: its view of the tree.
    pub bridge_stp: Option<BridgeStpStatus>,
}

/// An interface's counters since it was created (`ip -s link`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counters {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped on the way in (no buffer, no handler).
    pub rx_dropped: u64,
    /// Packets dropped on the way out (queue full, carrier down).
    pub tx_dropped: u64,
}

impl From<weft_sys::netlink::observe::LinkStats> for Counters {
    fn from(s: weft_sys::netlink::observe::LinkStats) -> Self {
        Counters {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_dropped: s.rx_dropped,
            tx_dropped: s.tx_dropped,
        }
    }
}

/// A kernel bridge's view of the spanning tree (`ip -d link show` of
/// the bridge).
#[derive(Debug, Clone, Serialize)]
pub struct BridgeStpStatus {
    /// Its own bridge identifier (`8000.02...`: priority, then MAC).
    pub bridge_id: Option<String>,
    /// The identifier of the bridge it takes for the root.
    pub root_id: Option<String>,
    /// It is the root itself.
    pub is_root: bool,
    /// The port towards the root, by name; `None` on the root.
    pub root_port: Option<String>,
    /// The flag the bridge sends in its BPDUs while the tree settles
    /// after a change anywhere in it.
    pub topology_change: bool,
    /// The bridge saw a change itself, not yet acknowledged.
    pub topology_change_detected: bool,
    /// Centiseconds left on the topology-change timer (0: not running).
    pub topology_change_timer_cs: u64,
}

/// The planned end of a VXLAN link between machines.
#[derive(Debug, Clone, Serialize)]
pub struct VxlanStatus {
    /// The VXLAN network identifier both ends use.
    pub vni: u32,
    /// This machine's underlay address.
    pub local: String,
    /// The other machine's underlay address.
    pub remote: String,
    /// The UDP port of the encapsulated traffic.
    pub port: u16,
}

/// A TUN or TAP device's flags (`ip tuntap show`).
#[derive(Debug, Clone, Serialize)]
pub struct TunStatus {
    /// A TAP (Ethernet frames) rather than a TUN (IP packets).
    pub tap: bool,
    /// Each packet is read with the 4-byte packet information header.
    pub pi: bool,
    /// Each packet is read with a virtio-net header (offloads).
    pub vnet_hdr: bool,
    /// Several queues may be attached (one per reader).
    pub multi_queue: bool,
    /// The device stays when its last reader closes it.
    pub persist: bool,
    /// The user allowed to attach, when restricted.
    pub owner: Option<u32>,
    /// The group allowed to attach, when restricted.
    pub group: Option<u32>,
}

/// A netlink socket in each node's namespace, in node order (`None` where
/// the namespace is missing), all made by one thread entering them in
/// turn: a thread per namespace made `weft status` of 500 hosts take a
/// second, mostly starting and joining threads.
fn sockets(lab: &weft_topo::Lab) -> Vec<Option<Netlink>> {
    use std::os::fd::AsFd as _;
    let fds: Vec<_> = lab
        .nodes
        .values()
        .map(|n| weft_sys::netns::open(&n.netns).ok())
        .collect();
    let open: Vec<_> = fds.iter().flatten().map(|f| f.as_fd()).collect();
    let mut made = weft_sys::netns::route_sockets_in(&open)
        .unwrap_or_default()
        .into_iter();
    fds.iter()
        .map(|f| {
            f.as_ref()?;
            Netlink::from_fd(made.next()?.ok()?).ok()
        })
        .collect()
}

/// Status of one lab, or of every lab on this machine.
pub fn status(name: Option<&str>) -> Result<Vec<LabStatus>, Error> {
    // Without them every namespace looks missing: say so instead.
    weft_sys::caps::require_admin("weft status")?;
    let names = match name {
        // A lab built here as machine shares: all of them.
        Some(n) if state::load(n)?.is_none() && !crate::machines::shares_of(n).is_empty() => {
            crate::machines::shares_of(n)
        }
        Some(n) => vec![n.to_string()],
        None => state::labs(),
    };
    let mut out = Vec::new();
    for n in names {
        let Some(st) = state::load(&n)? else {
            if name.is_some() {
                return Err(Error::NoLab(n));
            }
            continue;
        };
        out.push(status_of(&n, &st));
    }
    Ok(out)
}

/// Status of lab `n` as built (`st`, from [`crate::built`]): what a
/// program that already holds the state (`weft serve`, redrawing every
/// second) asks, saving a second read of it.
pub fn status_of(n: &str, st: &state::State) -> LabStatus {
    {
        let mut nodes = Vec::new();
        for (node, mut h) in st.lab.nodes.values().zip(sockets(&st.lab)) {
            let links = h
                .as_mut()
                .and_then(|nl| nl.links().ok())
                .unwrap_or_default();
            let addrs = h
                .as_mut()
                .and_then(|nl| nl.addresses().ok())
                .unwrap_or_default();
            let by_index = |i: u32| links.iter().find(|l| l.index == i).map(|l| l.name.clone());
            let mut ifaces = Vec::new();
            for i in node.interfaces.values() {
                let l = links.iter().find(|l| l.name == i.name);
                let kind = i.kind.name();
                // The bridge this is a port of, when it runs STP.
                let stp_master = l
                    .and_then(|l| l.master)
                    .and_then(|m| links.iter().find(|b| b.index == m))
                    .filter(|b| b.stp == Some(true))
                    .and_then(|b| b.bridge_stp.as_ref());
                ifaces.push(IfaceStatus {
                    name: i.name.clone(),
                    kind,
                    present: l.is_some(),
                    index: l.map(|l| l.index),
                    mac: l
                        .and_then(|l| l.mac)
                        .filter(|_| !matches!(i.kind, IfaceKind::Tun(_) | IfaceKind::Loopback))
                        .map(|m| weft_topo::Mac(m).to_string()),
                    mtu: l.map(|l| l.mtu),
                    state: l.map(|l| l.oper.to_string()),
                    admin_up: l.map(|l| l.admin_up),
                    carrier: l.map(|l| l.lower_up),
                    addresses: l
                        .map(|l| {
                            addrs
                                .iter()
                                .filter(|a| a.index == l.index && !a.link_local)
                                .map(|a| a.net.to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                    peer: match &i.kind {
                        IfaceKind::Veth { peer } => Some(peer.to_string()),
                        IfaceKind::Vxlan(o) => Some(o.peer.to_string()),
                        _ => None,
                    },
                    vxlan: match &i.kind {
                        IfaceKind::Vxlan(o) => Some(VxlanStatus {
                            vni: o.vni,
                            local: o.local.to_string(),
                            remote: o.remote.to_string(),
                            port: o.port,
                        }),
                        _ => None,
                    },
                    master: l.and_then(|l| l.master).and_then(by_index),
                    port_state: l.and_then(|l| l.port_state).map(|s| s.as_str()),
                    stp: l.and_then(|l| l.stp),
                    tun: l.and_then(|l| l.tun.as_ref()).map(|t| TunStatus {
                        tap: t.tap,
                        pi: t.pi,
                        vnet_hdr: t.vnet_hdr,
                        multi_queue: t.multi_queue,
                        persist: t.persist,
                        owner: t.owner,
                        group: t.group,
                    }),
                    counters: l.and_then(|l| l.stats).map(Counters::from),
                    stp_role: l.zip(stp_master).and_then(|(l, b)| {
                        weft_sys::netlink::observe::port_role(b, l.port_stp.as_ref()?, l.port_state)
                    }),
                    bridge_stp: l
                        .filter(|l| l.stp == Some(true))
                        .and_then(|l| l.bridge_stp.as_ref())
                        .map(|b| BridgeStpStatus {
                            bridge_id: b.bridge_id.clone(),
                            root_id: b.root_id.clone(),
                            is_root: b.root_port == Some(0),
                            root_port: b.root_port.filter(|p| *p != 0).and_then(|p| {
                                links
                                    .iter()
                                    .find(|x| {
                                        x.master == Some(l.map_or(0, |l| l.index))
                                            && x.port_stp.as_ref().and_then(|s| s.number) == Some(p)
                                    })
                                    .map(|x| x.name.clone())
                            }),
                            topology_change: b.topology_change,
                            topology_change_detected: b.topology_change_detected,
                            topology_change_timer_cs: b.topology_change_timer_cs,
                        }),
                });
            }
            nodes.push(NodeStatus {
                name: node.name.clone(),
                kind: match node.kind {
                    weft_topo::NodeKind::Host => "host",
                    weft_topo::NodeKind::Bridge => "bridge",
                    weft_topo::NodeKind::Switch => "switch",
                },
                netns: node.netns.clone(),
                present: h.is_some(),
                interfaces: ifaces,
                routes: node.routes.iter().map(|r| r.to_string()).collect(),
            });
        }
        // One question to the datapath for its switches and its wires.
        let dp = crate::datapath::has_switches(&st.lab)
            .then(|| crate::datapath::status(n))
            .flatten();
        LabStatus {
            name: n.to_string(),
            machine: st.lab.machine.clone(),
            tunnels: crate::tunnels::status(&st.lab),
            services: crate::services::services_status(n),
            source: st.source.as_ref().map(|p| p.display().to_string()),
            switches: crate::datapath::has_switches(&st.lab)
                .then(|| dp.clone().map(|s| s.switches)),
            wires: st
                .lab
                .nodes
                .values()
                .any(|n| n.wire.is_some())
                .then(|| dp.map(|s| s.wires)),
            runtime: crate::runtime::load(n),
            nodes,
        }
    }
}
