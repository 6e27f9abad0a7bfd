//! The expanded lab: every node, interface, address and route spelled out.
//!
//! This is what the planner diffs and what the journal stores, so it is
//! plain data with a stable serde shape and no file positions.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Prefix of every network namespace weft creates; `weft-LAB.NODE`.
pub const NETNS_PREFIX: &str = "weft-";

/// The network namespace name of a node, as `ip netns list` shows it:
/// `weft-LAB.NODE`. A lab name never has a `.`, so the first `.` ends it:
/// two labs' nodes can never share a name (with `-` there, lab `a-x` node
/// `y` and lab `a` node `x-y` both were `weft-a-x-y`), and `weft-LAB.`
/// (this with an empty node) is a prefix of exactly one lab's namespaces.
/// The one place the name is made: everything else calls this.
pub fn netns_name(lab: &str, node: &str) -> String {
    format!("{NETNS_PREFIX}{lab}.{node}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lab {
    pub name: String,
    pub nodes: BTreeMap<String, Node>,
    /// NAT and port forwards, by the node that does them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nat: BTreeMap<String, crate::nat::Nat>,
    /// Health checks `weft up` runs after applying.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::check::Check>,
    /// `kind = "tunnel"` links: a `weft tunnel` process at each end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<TunnelLink>,
    /// `[machines.NAME]`: the machines a lab spans, by name (empty: the lab
    /// is all on the machine that builds it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub machines: BTreeMap<String, crate::machines::Machine>,
    /// Set on one machine's share of a multi-machine lab (see
    /// [`crate::machines::share`]): the machine it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// In a share: the other machines' nodes and the address each name
    /// stands for, for names and `weft ping LAB NODE OTHER-NODE`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_names: BTreeMap<String, IpAddr>,
    /// `vxlan_port = N` at the top of the file: the UDP port of every vxlan
    /// link that names none (clusters often block VXLAN's 4789).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
}

/// A `kind = "tunnel"` link. Each end is a TUN or TAP interface in the
/// model (built like any other); weft runs `weft tunnel` on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelLink {
    pub ends: [TunnelEnd; 2],
    /// TAP (Ethernet frames) rather than TUN (IP packets).
    pub tap: bool,
    pub port: u16,
    pub tcp: bool,
    /// The ends are on two machines: each end's `weft tunnel` runs in its
    /// machine's own namespace (the underlay), with the device in the node,
    /// and the keys are the machines' (`public_key`, `private_key`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub across: bool,
    /// `impair = {...}` on the link: each end's `weft tunnel` impairs the
    /// inner packets it receives (`out`: from the first end to the second,
    /// so the second end's process; `in` the first's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<crate::impair::Impairment>,
    /// `cipher = "..."` on the link, one of [`TUNNEL_CIPHERS`] other than
    /// "auto"; None: auto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
}

/// The spellings of a tunnel link's `cipher` (weft-tunnel's
/// `CipherChoice::NAMES`; the lab's tests check they agree).
pub const TUNNEL_CIPHERS: [&str; 3] = ["auto", "chacha20-poly1305", "aes-256-gcm"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelEnd {
    pub endpoint: Endpoint,
    /// This end's address on the underlay (where its peer sends).
    pub underlay: IpAddr,
}

impl Lab {
    /// A lab with no nodes.
    pub fn empty(name: &str) -> Lab {
        Lab {
            name: name.to_string(),
            nodes: BTreeMap::new(),
            nat: BTreeMap::new(),
            checks: Vec::new(),
            tunnels: Vec::new(),
            machines: BTreeMap::new(),
            machine: None,
            remote_names: BTreeMap::new(),
            vxlan_port: None,
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn iface(&self, ep: &Endpoint) -> Option<&Interface> {
        self.nodes.get(&ep.node)?.interfaces.get(&ep.iface)
    }

    /// Every veth pair once, with its ends in canonical order.
    pub fn veths(&self) -> impl Iterator<Item = (Endpoint, Endpoint)> + '_ {
        self.nodes.values().flat_map(|n| {
            n.interfaces.values().filter_map(move |i| match &i.kind {
                IfaceKind::Veth { peer } => {
                    let me = Endpoint::new(&n.name, &i.name);
                    (me < *peer).then(|| (me, peer.clone()))
                }
                _ => None,
            })
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A network namespace standing for a machine.
    Host,
    /// A network namespace holding one kernel bridge named like the node,
    /// with the node's other interfaces as its ports.
    Bridge,
    /// A network namespace whose interfaces are the ports of a weft
    /// userspace switch, served by the lab's datapath process.
    Switch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// The network namespace that holds this node (`weft-LAB.NODE`).
    pub netns: String,
    pub interfaces: BTreeMap<String, Interface>,
    pub routes: Vec<Route>,
    /// Per-namespace sysctls, `net.` keys only, values as written to /proc/sys.
    pub sysctls: BTreeMap<String, String>,
    /// Switch settings of a `kind = "switch"` node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchOptions>,
    /// A hidden node that carries an impaired kernel link (crate::wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<crate::wire::Wire>,
    /// The machine it is built on (`machine = "a"`), when the lab declares
    /// machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// `[nodes.X.services.NAME]`: programs `weft up` runs in the node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, crate::workload::Service>,
    /// The node's private files, in a mount namespace of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<crate::workload::Bind>,
    /// `image = "NAME"`: a container run in the node's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::workload::Container>,
}

/// Spanning tree protocol of a weft switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchStp {
    /// 802.1w; falls back to 802.1D per port towards an STP neighbour.
    Rstp,
    /// 802.1D, as the Linux kernel bridge speaks it.
    Stp,
    Off,
}

impl SwitchStp {
    /// The file's word for it (`stp = "rstp"`).
    pub fn name(self) -> &'static str {
        match self {
            SwitchStp::Rstp => "rstp",
            SwitchStp::Stp => "stp",
            SwitchStp::Off => "off",
        }
    }
}

/// Settings of a weft userspace switch; `None` keeps the switch's default.
/// Times are in centiseconds, like [`BridgeOptions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchOptions {
    pub stp: SwitchStp,
    pub priority: Option<u16>,
    pub forward_delay_cs: Option<u32>,
    pub hello_time_cs: Option<u32>,
    pub max_age_cs: Option<u32>,
    pub ageing_time_cs: Option<u32>,
    /// Largest number of learned plus static FDB entries.
    pub fdb_size: Option<u32>,
    /// The switch's own MAC (bridge id, BPDU source); derived from the lab
    /// and node names when not given.
    pub mac: Option<Mac>,
    /// Every port (interface of the node), by interface name.
    pub ports: BTreeMap<String, SwitchPort>,
    /// Configured FDB entries (`bridge fdb add ... static`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_macs: Vec<StaticMac>,
    /// Port mirroring to one output port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<SwitchMirror>,
}

/// A static FDB entry: frames to `mac` in `vlan` leave by `port` only, and
/// the entry never ages or moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticMac {
    pub mac: Mac,
    pub port: String,
    pub vlan: u16,
}

/// Port mirroring: copies of the selected frames leave by `output`, which
/// takes no part in switching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchMirror {
    pub output: String,
    /// Frames received on these ports.
    pub ingress: Vec<String>,
    /// Frames sent out of these ports.
    pub egress: Vec<String>,
    /// Frames in these VLANs.
    pub vlans: Vec<u16>,
}

/// VLAN membership of a switch port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchPortMode {
    /// Untagged member of one VLAN (the default is VLAN 1).
    Access(u16),
    /// Tagged member of `allowed`; untagged frames belong to `native`.
    Trunk {
        allowed: Vec<u16>,
        native: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchPort {
    pub mode: SwitchPortMode,
    pub cost: Option<u32>,
    /// 0..=63 like a kernel bridge port (`bridge link set dev X priority`).
    pub priority: Option<u16>,
    /// An edge (host-facing) port forwards at once; it defaults to true for
    /// ports cabled to a host node.
    pub edge: bool,
    /// Delay, loss, ... applied by the datapath on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<crate::impair::Impairment>,
}

/// A node and one of its interfaces: `ns1:eth0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub node: String,
    pub iface: String,
}

impl Endpoint {
    pub fn new(node: &str, iface: &str) -> Self {
        Endpoint {
            node: node.to_string(),
            iface: iface.to_string(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.iface)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub kind: IfaceKind,
    pub addresses: Vec<IpNet>,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub up: bool,
    /// The bridge (an interface of the same node) this interface is a port of.
    pub master: Option<String>,
    pub port: PortOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum IfaceKind {
    /// One end of a veth pair (`ip link add A type veth peer name B`).
    Veth { peer: Endpoint },
    /// `ip tuntap add mode tun`: carries IP packets, has no MAC.
    Tun(TunOptions),
    /// `ip tuntap add mode tap`: carries Ethernet frames.
    Tap(TunOptions),
    /// `ip link add NAME type bridge`.
    Bridge(BridgeOptions),
    /// The namespace's `lo`, which always exists.
    Loopback,
    /// `ip link add link HOST name NAME netns NODE type macvlan mode
    /// bridge`: an uplink on one of the machine's own interfaces (allowed
    /// only with `allow_host_interfaces = true` in the file).
    Macvlan { host: String },
    /// `ip link add NAME type vxlan id VNI local LOCAL remote REMOTE dstport
    /// PORT`, made in the namespace weft runs in (the machine's underlay,
    /// which keeps its UDP socket) and put into the node: one end of a
    /// `kind = "vxlan"` link to a node on another machine.
    Vxlan(VxlanOptions),
}

/// One end of a `kind = "vxlan"` link: all fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanOptions {
    pub vni: u32,
    /// This machine's underlay address (the outer source).
    pub local: IpAddr,
    /// The other machine's underlay address (the outer destination).
    pub remote: IpAddr,
    /// UDP destination port, on both machines.
    pub port: u16,
    /// The other end, for drawings and status.
    pub peer: Endpoint,
    /// The file gave no MTU: it follows the underlay's
    /// ([`crate::machines::fit_mtus`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_mtu: bool,
}

impl IfaceKind {
    pub fn name(&self) -> &'static str {
        match self {
            IfaceKind::Veth { .. } => "veth",
            IfaceKind::Tun(_) => "tun",
            IfaceKind::Tap(_) => "tap",
            IfaceKind::Bridge(_) => "bridge",
            IfaceKind::Loopback => "loopback",
            IfaceKind::Macvlan { .. } => "macvlan",
            IfaceKind::Vxlan(_) => "vxlan",
        }
    }
}

/// The options of `ip tuntap add`; all fixed at creation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunOptions {
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub multi_queue: bool,
    /// Prepend the 4-byte packet information header (`pi`).
    pub pi: bool,
    pub vnet_hdr: bool,
}

/// Kernel bridge settings; `None` keeps the kernel's default. Times are in
/// centiseconds, the unit the kernel's netlink interface uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeOptions {
    pub stp: bool,
    pub forward_delay_cs: Option<u32>,
    pub hello_time_cs: Option<u32>,
    pub max_age_cs: Option<u32>,
    pub ageing_time_cs: Option<u32>,
    pub priority: Option<u16>,
}

/// Per-port bridge settings (`bridge link set dev X cost N priority N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortOptions {
    pub cost: Option<u32>,
    pub priority: Option<u16>,
    /// Frames may leave by the port they came in on; set on the ports of a
    /// NATed bridge (see nat.rs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hairpin: bool,
}

/// `ip link set type bridge`'s words and units (`stp_state 1 forward_delay
/// 1500 ...`), for plans and messages; unset timers are left out.
impl fmt::Display for BridgeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stp_state {}", u8::from(self.stp))?;
        let timers = [
            ("forward_delay", self.forward_delay_cs),
            ("hello_time", self.hello_time_cs),
            ("max_age", self.max_age_cs),
            ("ageing_time", self.ageing_time_cs),
            ("priority", self.priority.map(u32::from)),
        ];
        for (k, v) in timers {
            if let Some(v) = v {
                write!(f, " {k} {v}")?;
            }
        }
        Ok(())
    }
}

/// `bridge link set`'s words (`cost 10 priority 32`); `default` for what
/// the kernel chooses.
impl fmt::Display for PortOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<u32>| v.map_or("default".to_string(), |v| v.to_string());
        write!(
            f,
            "cost {} priority {}",
            opt(self.cost),
            opt(self.priority.map(u32::from))
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        let bad = |help: String| crate::Error::Malformed {
            what: "a MAC address",
            value: s.into(),
            help,
        };
        let six = || bad("write six hex bytes, like 02:00:00:00:00:01".into());
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(six());
        }
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 2 {
                return Err(six());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad(format!("`{p}` is not hex")))?;
        }
        Ok(Mac(mac))
    }
}

impl From<Mac> for String {
    fn from(m: Mac) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Mac {
    type Error = crate::Error;
    fn try_from(s: String) -> Result<Self, crate::Error> {
        s.parse()
    }
}

/// A route in `ip route` terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    pub kind: RouteKind,
    /// `None` for `default`; the family then comes from `via` (IPv4 if neither).
    pub dst: Option<IpNet>,
    pub ipv6: bool,
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    pub table: Option<u32>,
    pub mtu: Option<u32>,
    pub onlink: bool,
    pub scope_link: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unicast => {}
            RouteKind::Blackhole => write!(f, "blackhole ")?,
            RouteKind::Unreachable => write!(f, "unreachable ")?,
            RouteKind::Prohibit => write!(f, "prohibit ")?,
        }
        match &self.dst {
            None if self.ipv6 && self.via.is_none() => write!(f, "default (ipv6)")?,
            None => write!(f, "default")?,
            Some(n) => write!(f, "{n}")?,
        }
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if let Some(t) = self.table {
            write!(f, " table {t}")?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        if self.scope_link {
            write!(f, " scope link")?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: Mac = "02:AB:00:00:0c:01".parse().unwrap();
        assert_eq!(m.0, [2, 0xab, 0, 0, 0x0c, 1]);
        assert_eq!(m.to_string(), "02:ab:00:00:0c:01");
        assert!("02:ab:00:00:0c".parse::<Mac>().is_err());
        assert!("02:ab:00:00:0c:zz".parse::<Mac>().is_err());
        assert!("02:ab:00:00:0c:123".parse::<Mac>().is_err());
    }
}
