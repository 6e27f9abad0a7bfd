//! The file's serde shapes: what a lab file may say, read with positions
//! (`Spanned`) so every later check can point at the text.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{machines, services, switch};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLab {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) nodes: BTreeMap<Spanned<String>, RawNode>,
    #[serde(default)]
    pub(super) links: Vec<Spanned<RawLink>>,
    #[serde(default)]
    pub(super) nat: BTreeMap<Spanned<String>, crate::nat::RawNat>,
    pub(super) allow_host_interfaces: Option<bool>,
    #[serde(default)]
    pub(super) checks: Vec<Spanned<crate::check::RawCheck>>,
    #[serde(default)]
    pub(super) machines: BTreeMap<Spanned<String>, machines::RawMachine>,
    /// UDP port of vxlan links that name none.
    pub(super) vxlan_port: Option<Spanned<u16>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) kind: Option<Spanned<String>>,
    pub(super) count: Option<Spanned<u32>>,
    pub(super) attach: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) sysctls: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) interfaces: BTreeMap<Spanned<String>, RawIface>,
    pub(super) mtu: Option<Spanned<u32>>,
    pub(super) mac: Option<Spanned<String>>,
    /// `true`/`false` on a bridge; also `"rstp"`, `"stp"`, `"off"` on a switch.
    pub(super) stp: Option<Spanned<toml::Value>>,
    pub(super) forward_delay: Option<Spanned<toml::Value>>,
    pub(super) hello_time: Option<Spanned<toml::Value>>,
    pub(super) max_age: Option<Spanned<toml::Value>>,
    pub(super) ageing_time: Option<Spanned<toml::Value>>,
    pub(super) priority: Option<Spanned<u32>>,
    pub(super) fdb_size: Option<Spanned<u32>>,
    /// Bridge or switch: the network `attach` draws host addresses from.
    pub(super) subnet: Option<Spanned<String>>,
    /// Switch: the router on its segment, the attached hosts' default route.
    pub(super) gateway: Option<Spanned<String>>,
    /// The machine the node is built on (labs that span machines).
    pub(super) machine: Option<Spanned<String>>,
    /// Switch: configured FDB entries.
    #[serde(default)]
    pub(super) static_macs: Vec<Spanned<switch::RawStaticMac>>,
    /// Switch: port mirroring.
    pub(super) mirror: Option<Spanned<switch::RawMirror>>,
    /// With `attach`: the settings of the port it makes on the bridge or
    /// switch (for every member of a `count` group).
    pub(super) port: Option<Spanned<switch::RawAttachPort>>,
    /// Programs run in the node.
    #[serde(default)]
    pub(super) services: BTreeMap<Spanned<String>, Spanned<services::RawService>>,
    /// `"./host:/in/node"` or `"tmpfs:/in/node"`.
    #[serde(default)]
    pub(super) binds: Vec<Spanned<String>>,
    /// A container image run in the node.
    pub(super) image: Option<Spanned<String>>,
    /// The container's command (with `image`).
    pub(super) command: Option<Spanned<Vec<String>>>,
    /// The container's environment (with `image`).
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
}

/// Whose STP timers are being read: a kernel bridge's or a weft switch's
/// (messages name which, and the reason for a bound differs).
pub(super) enum Timers<'a> {
    Bridge(&'a str),
    Switch(&'a str),
}

impl std::fmt::Display for Timers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timers::Bridge(w) => write!(f, "bridge `{w}`"),
            Timers::Switch(w) => write!(f, "switch `{w}`"),
        }
    }
}

/// The bridge keys of a node or interface, gathered (serde's `flatten`
/// would lose the positions and the unknown-key check).
#[derive(Default)]
pub(super) struct RawBridge {
    pub(super) stp: Option<Spanned<bool>>,
    pub(super) forward_delay: Option<Spanned<toml::Value>>,
    pub(super) hello_time: Option<Spanned<toml::Value>>,
    pub(super) max_age: Option<Spanned<toml::Value>>,
    pub(super) ageing_time: Option<Spanned<toml::Value>>,
    pub(super) priority: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIface {
    pub(super) kind: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    pub(super) mtu: Option<Spanned<u32>>,
    pub(super) mac: Option<Spanned<String>>,
    pub(super) up: Option<bool>,
    pub(super) master: Option<Spanned<String>>,
    pub(super) port: Option<bool>,
    pub(super) cost: Option<Spanned<u32>>,
    pub(super) owner: Option<Spanned<u32>>,
    pub(super) group: Option<Spanned<u32>>,
    pub(super) multi_queue: Option<bool>,
    pub(super) pi: Option<bool>,
    pub(super) vnet_hdr: Option<bool>,
    pub(super) host_interface: Option<Spanned<String>>,
    pub(super) stp: Option<Spanned<bool>>,
    pub(super) forward_delay: Option<Spanned<toml::Value>>,
    pub(super) hello_time: Option<Spanned<toml::Value>>,
    pub(super) max_age: Option<Spanned<toml::Value>>,
    pub(super) ageing_time: Option<Spanned<toml::Value>>,
    pub(super) priority: Option<Spanned<u32>>,
    pub(super) vlan: Option<Spanned<u32>>,
    pub(super) trunk: Option<Spanned<Vec<u32>>>,
    pub(super) native: Option<Spanned<u32>>,
    pub(super) edge: Option<Spanned<bool>>,
    pub(super) impair: Option<Spanned<switch::RawImpair>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub(super) endpoints: [Spanned<String>; 2],
    pub(super) mtu: Option<Spanned<u32>>,
    pub(super) kind: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) underlay: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) transport: Option<Spanned<String>>,
    /// The data cipher of a `kind = "tunnel"` link.
    pub(super) cipher: Option<Spanned<String>>,
    /// VXLAN network identifier of a `kind = "vxlan"` link.
    pub(super) vni: Option<Spanned<u32>>,
    pub(super) impair: Option<Spanned<switch::RawImpair>>,
}
