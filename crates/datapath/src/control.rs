//! The datapath's control socket: one JSON request per connection, one
//! JSON reply (a line each). `weft status`, `weft fdb` and `weft up`'s
//! readiness wait are its clients.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Fdb {
        switch: String,
    },
    /// Sets a port's impairment (`None` clears it) at run time.
    Impair {
        switch: String,
        port: String,
        impair: Option<weft_topo::impair::Impairment>,
    },
    /// Applies a switch node's changed settings in place (learned MACs
    /// and the spanning tree stay). What the core cannot change in place
    /// (the STP protocol, the MAC, the mirror's output, the FDB size)
    /// makes that switch's core again, the other switches untouched.
    Configure {
        node: Box<weft_topo::Node>,
    },
    /// Takes a port out of service (`up = false`) or back, like pulling
    /// its cable: the spanning tree and learning see a link down.
    Link {
        switch: String,
        port: String,
        up: bool,
    },
    /// Sets the impairment of a wire (an impaired link between two kernel
    /// ends, named `~NODE.IFACE`); `None`: frames pass unchanged.
    Wire {
        wire: String,
        impair: Option<weft_topo::impair::Impairment>,
    },
    /// Starts serving a switch node added to the lab (its ports opened in
    /// its namespace, a core of its own); the other switches go on.
    #[serde(rename = "add_switch")]
    AddSwitch {
        node: Box<weft_topo::Node>,
    },
    /// Stops serving a switch node taken out of the lab (its ports
    /// closed, its kernel fast path removed).
    #[serde(rename = "remove_switch")]
    RemoveSwitch {
        switch: String,
    },
    /// Opens a switch port's socket again, on the interface of that name
    /// as it is now (the old one was removed and made again: re-cabled).
    /// The core port keeps its id and settings; what was learned on it
    /// goes, as when a cable is pulled.
    Reopen {
        switch: String,
        port: String,
    },
    /// The lab's wires now (wire nodes): every wire's ends are opened
    /// again, wires gone are closed, new ones start; a kept wire keeps
    /// its counters and, if unchanged, its queues.
    Wires {
        nodes: Vec<weft_topo::Node>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Reply {
    Status(StatusReply),
    Fdb(FdbReply),
    Done,
    Error { message: String },
}

impl Reply {
    /// The reply's name on the wire (`status`, `fdb`, `done`, `error`).
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Status(_) => "status",
            Reply::Fdb(_) => "fdb",
            Reply::Done => "done",
            Reply::Error { .. } => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    pub pid: u32,
    pub switches: Vec<SwitchInfo>,
    /// The lab's wires (impaired links between kernel ends).
    #[serde(default)]
    pub wires: Vec<WireInfo>,
}

/// One wire: its settings and, per direction, what became of the frames.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireInfo {
    /// `~NODE.IFACE`, after the link's first end.
    pub name: String,
    /// The link's two ends (`h1:eth0`, `h2:eth0`): `out` is from the
    /// first to the second.
    pub link: [String; 2],
    /// `delay 20ms loss 1%`; `None` when cleared (frames pass unchanged).
    pub settings: Option<String>,
    /// The seed in use (given, or derived from the names); `None` when
    /// cleared.
    pub seed: Option<u64>,
    /// The settings gave the seed (the file or `weft impair --seed`), so
    /// `settings` names it already; else it was derived from the names.
    #[serde(default)]
    pub seed_given: bool,
    pub out: WireWay,
    #[serde(rename = "in")]
    pub back: WireWay,
    /// Frames the far end's socket refused.
    pub tx_errors: u64,
}

/// One direction of a wire. Counters run from the datapath's start, over
/// changes of settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireWay {
    /// Impaired now (else frames pass unchanged).
    pub impaired: bool,
    /// Frames sent on out of the far end (duplicates included).
    pub passed: u64,
    /// `lost` + `queue_full`.
    pub dropped: u64,
    /// Dropped by `loss` or the burst model.
    pub lost: u64,
    /// Dropped because the queue was full or the rate's backlog too long.
    pub queue_full: u64,
    /// Frames that went through the impairment queue.
    pub delayed: u64,
    pub corrupted: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Frames waiting now.
    pub held: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchInfo {
    pub name: String,
    /// rstp, stp or off.
    pub stp: String,
    pub bridge_id: String,
    pub root_id: String,
    pub is_root: bool,
    /// The port towards the root; none on the root bridge.
    pub root_port: Option<String>,
    pub root_path_cost: u32,
    /// The spanning tree timers in force, in milliseconds: the root's,
    /// learned from its BPDUs. Ports take 2 x forward delay to forward.
    #[serde(default)]
    pub forward_delay_ms: u64,
    #[serde(default)]
    pub max_age_ms: u64,
    /// FDB moves per second over the switch's last 250 ms window.
    pub mac_moves_per_s: u64,
    /// Frames flooded per second, same window.
    #[serde(default)]
    pub flooded_per_s: u64,
    /// Flooded frames per second identical to one flooded earlier in the
    /// window: copies coming back round a loop.
    #[serde(default)]
    pub repeated_floods_per_s: u64,
    /// Frames come back or MACs move faster than a network without a loop
    /// makes them: a loop that no spanning tree breaks (see
    /// `weft_switch::storm`).
    pub loop_suspected: bool,
    pub topology_changes: u64,
    pub fdb_entries: usize,
    pub fdb_max: usize,
    pub fdb: FdbStats,
    pub ports: Vec<PortInfo>,
    /// VLANs that have seen frames, in order.
    #[serde(default)]
    pub vlans: Vec<VlanInfo>,
    /// Flows the kernel forwards by itself (see the datapath's fastpath
    /// module); the datapath reads their counters back every second.
    #[serde(default)]
    pub fastpath_rules: usize,
    /// `on`, or `off: why` (a switch with trunks or several VLANs, a
    /// mirror, `WEFT_SWITCH_FASTPATH=off`, a kernel that refused a rule).
    #[serde(default)]
    pub fastpath: String,
    /// How the datapath sends plain frames: `AF_XDP`, or per port
    /// `p2 AF_PACKET (why)` (docs/switch.md, "Ports").
    #[serde(default)]
    pub send_path: String,
}

/// One VLAN's counters (`bridge -s vlan show`): frames classified into
/// it, and drops after classification by reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VlanInfo {
    pub vlan: u16,
    pub frames: u64,
    pub bytes: u64,
    /// Broadcast, multicast and unknown unicast frames flooded.
    pub flooded: u64,
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FdbStats {
    pub learned: u64,
    pub moves: u64,
    pub table_full: u64,
    pub aged: u64,
    pub flushed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    /// False once its interface is gone (the node at the other end was
    /// removed); the switch runs on without it.
    pub present: bool,
    pub carrier: bool,
    /// `access 10`, `trunk 10,20 native 30`.
    pub vlan: String,
    /// root, designated, alternate, backup, disabled.
    pub role: String,
    /// forwarding, learning, discarding, listening, blocking, disabled.
    pub state: String,
    pub edge: bool,
    /// Talks RSTP to its neighbour (else 802.1D).
    pub rstp: bool,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_bpdus: u64,
    pub tx_bpdus: u64,
    /// Drops by reason (only reasons that happened).
    pub drops: BTreeMap<String, u64>,
    /// Impairment in force on the port, with its counters.
    #[serde(default)]
    pub impair: Option<ImpairInfo>,
    /// False after `weft link ... down` took the port out of service.
    #[serde(default = "yes")]
    pub admin_up: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImpairInfo {
    /// `delay 20ms loss 1% ...`.
    pub settings: String,
    /// The seed in use (given, or derived from the names).
    pub seed: u64,
    /// The settings gave the seed (the file or `weft impair --seed`), so
    /// `settings` names it already; else it was derived from the names.
    #[serde(default)]
    pub seed_given: bool,
    /// Dropped by `loss` (also in `drops` as `impair-loss`).
    pub lost: u64,
    /// Dropped because the queue was full or the rate's backlog too long
    /// (`impair-queue`).
    pub queue_full: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Frames that went through the queue.
    pub delayed: u64,
    /// Frames waiting now.
    pub held: usize,
}

impl SwitchInfo {
    /// Ports that can carry traffic but do not yet: `port state`.
    pub fn waiting(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter(|p| p.present && p.carrier)
            .filter(|p| {
                p.state != "forwarding"
                    && !matches!(p.role.as_str(), "alternate" | "backup" | "disabled")
            })
            .map(|p| format!("{}:{} {}", self.name, p.name, p.state))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbReply {
    pub switch: String,
    pub entries: Vec<FdbRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbRow {
    pub mac: String,
    pub vlan: u16,
    pub port: String,
    pub is_static: bool,
    /// Seconds since the source was last seen.
    pub age: f64,
}

/// Sends one request to the datapath listening on `path`.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> io::Result<Reply> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the datapath's answer is not understood: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::Fdb {
                switch: "s1".into()
            })
            .unwrap(),
            r#"{"cmd":"fdb","switch":"s1"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        // The live edits `weft up` sends (docs/switch.md).
        assert_eq!(
            serde_json::to_string(&Request::RemoveSwitch {
                switch: "s1".into()
            })
            .unwrap(),
            r#"{"cmd":"remove_switch","switch":"s1"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Reopen {
                switch: "s1".into(),
                port: "p2".into()
            })
            .unwrap(),
            r#"{"cmd":"reopen","switch":"s1","port":"p2"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Wires { nodes: Vec::new() }).unwrap(),
            r#"{"cmd":"wires","nodes":[]}"#
        );
        let r: Reply =
            serde_json::from_str(r#"{"reply":"error","message":"no switch x"}"#).unwrap();
        assert!(matches!(r, Reply::Error { message } if message == "no switch x"));
    }
}
