//! A lab described in code: [`Builder`] writes the same TOML a file would
//! hold (docs/topology.md), so everything a file can say is checked the
//! same way, and [`Builder::to_toml`] shows the file for a failing test.

use std::fmt::Write as _;
use std::time::Duration;

use weft_topo::impair::Impairment;

use crate::{Context, Error, Lab};

/// A TOML string literal.
fn q(s: &str) -> String {
    // A JSON string is a TOML basic string.
    serde_json::to_string(s).expect("a string serializes")
}

fn list(items: &[&str]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

/// Impairment of a link's switch end: delay, jitter, loss, rate, seed.
/// Used both in a [`Builder`] and at run time with
/// [`crate::LinkHandle::impair`].
///
/// ```
/// use std::time::Duration;
/// let i = weft::Impair::new().delay(Duration::from_millis(20)).loss(1.0).seed(7);
/// assert_eq!(i.to_toml(), r#"{ delay = "20000us", loss = "1%", seed = 7 }"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impair {
    delay: Option<Duration>,
    jitter: Option<Duration>,
    loss_percent: Option<f64>,
    rate_bps: Option<u64>,
    seed: Option<u64>,
}

impl Impair {
    /// No impairment yet.
    pub fn new() -> Impair {
        Impair::default()
    }
    /// Delay each frame (each way through the port).
    pub fn delay(mut self, d: Duration) -> Impair {
        self.delay = Some(d);
        self
    }
    /// Vary the delay uniformly by up to ± `d`.
    pub fn jitter(mut self, d: Duration) -> Impair {
        self.jitter = Some(d);
        self
    }
    /// Drop this share of frames, in percent (0–100).
    pub fn loss(mut self, percent: f64) -> Impair {
        self.loss_percent = Some(percent);
        self
    }
    /// Limit the port to this many bits per second.
    pub fn rate(mut self, bits_per_second: u64) -> Impair {
        self.rate_bps = Some(bits_per_second);
        self
    }
    /// Seed the random choices, so a run replays exactly.
    pub fn seed(mut self, seed: u64) -> Impair {
        self.seed = Some(seed);
        self
    }

    /// The inline TOML table a `[[links]]` entry's `impair` takes.
    pub fn to_toml(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.delay {
            parts.push(format!("delay = \"{}us\"", d.as_micros()));
        }
        if let Some(d) = self.jitter {
            parts.push(format!("jitter = \"{}us\"", d.as_micros()));
        }
        if let Some(l) = self.loss_percent {
            parts.push(format!("loss = \"{l}%\""));
        }
        if let Some(r) = self.rate_bps {
            parts.push(format!("rate = \"{r}bit\""));
        }
        if let Some(s) = self.seed {
            parts.push(format!("seed = {s}"));
        }
        format!("{{ {} }}", parts.join(", "))
    }

    /// The impairment as the switch takes it, checked.
    pub(crate) fn settings(&self) -> Result<Impairment, Error> {
        let mut i = Impairment::default();
        if let Some(d) = self.delay {
            i.delay_us = d.as_micros() as u64;
        }
        if let Some(d) = self.jitter {
            i.jitter_us = d.as_micros() as u64;
        }
        if let Some(l) = self.loss_percent {
            if !(0.0..=100.0).contains(&l) {
                return Err(Error::invalid(format!(
                    "loss {l}% is not a share between 0 and 100%"
                )));
            }
            i.loss_ppm = (l * 10_000.0).round() as u32;
        }
        i.rate_bps = self.rate_bps;
        i.seed = self.seed;
        Ok(i)
    }
}

/// A node being described: see [`Builder::host`].
#[derive(Default)]
pub struct NodeSpec {
    toml: String,
    routes: Vec<String>,
    ifaces: String,
}

impl NodeSpec {
    /// An interface with these addresses (`"10.0.0.1/24"`); a link names
    /// it as `"NODE:IFACE"`.
    pub fn iface(mut self, name: &str, addresses: &[&str]) -> NodeSpec {
        let _ = writeln!(
            self.ifaces,
            "[nodes.NODE.interfaces.{}]\naddresses = {}",
            q(name),
            list(addresses)
        );
        self
    }
    /// A route in `ip route` words: `"default via 10.0.0.1"`.
    pub fn route(mut self, route: &str) -> NodeSpec {
        self.routes.push(route.to_string());
        self
    }
    /// Connect the node to a bridge or switch node (a veth made for it,
    /// an address drawn from the bridge's `subnet` or address).
    pub fn attach(mut self, bridge: &str) -> NodeSpec {
        let _ = writeln!(self.toml, "attach = {}", q(bridge));
        self
    }
    /// Any other key of `[nodes.NODE]`, as TOML (`"sysctls = { ... }"`).
    pub fn raw(mut self, toml: &str) -> NodeSpec {
        let _ = writeln!(self.toml, "{toml}");
        self
    }
}

/// A switch being described: see [`Builder::switch`].
#[derive(Default)]
pub struct SwitchSpec {
    toml: String,
    ports: String,
}

impl SwitchSpec {
    /// A port in no VLAN (or VLAN 1, untagged).
    pub fn port(mut self, name: &str) -> SwitchSpec {
        let _ = writeln!(self.ports, "[nodes.NODE.interfaces.{}]", q(name));
        self
    }
    /// An access port of VLAN `vlan`.
    pub fn access(mut self, name: &str, vlan: u16) -> SwitchSpec {
        let _ = writeln!(
            self.ports,
            "[nodes.NODE.interfaces.{}]\nvlan = {vlan}",
            q(name)
        );
        self
    }
    /// A trunk port carrying these VLANs tagged.
    pub fn trunk(mut self, name: &str, vlans: &[u16]) -> SwitchSpec {
        let _ = writeln!(
            self.ports,
            "[nodes.NODE.interfaces.{}]\ntrunk = [{}]",
            q(name),
            vlans
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self
    }
    /// Spanning tree on or off (on by default: a loop-free lab wastes
    /// up to 30 s waiting for it when the switch faces a router).
    pub fn stp(mut self, on: bool) -> SwitchSpec {
        let _ = writeln!(self.toml, "stp = {on}");
        self
    }
    /// The network hosts attached to the switch draw addresses from
    /// (`"10.40.0.0/24"`), and its router (which gets no host address and
    /// becomes attached hosts' default route).
    pub fn subnet(mut self, subnet: &str, gateway: Option<&str>) -> SwitchSpec {
        let _ = writeln!(self.toml, "subnet = {}", q(subnet));
        if let Some(g) = gateway {
            let _ = writeln!(self.toml, "gateway = {}", q(g));
        }
        self
    }
}

/// A lab described in code, built with [`Builder::build`].
///
/// ```no_run
/// use weft::{Impair, Lab};
/// use std::time::Duration;
/// let lab = Lab::builder("demo")
///     .switch("sw", |s| s.port("p1").port("p2"))
///     .host("a", |n| n.iface("eth0", &["10.0.0.1/24"]))
///     .host("b", |n| n.iface("eth0", &["10.0.0.2/24"]))
///     .link("a:eth0", "sw:p1")
///     .link_impaired("b:eth0", "sw:p2", Impair::new().delay(Duration::from_millis(10)))
///     .build()
///     .unwrap();
/// # drop(lab);
/// ```
pub struct Builder {
    name: String,
    body: String,
    ctx: Context,
}

impl Builder {
    pub(crate) fn new(name: &str) -> Builder {
        Builder {
            name: name.to_string(),
            body: String::new(),
            ctx: Context::new(),
        }
    }

    fn node_toml(&mut self, name: &str, kind: Option<&str>, head: &str, tables: &str) {
        let _ = writeln!(self.body, "\n[nodes.{}]", q(name));
        if let Some(k) = kind {
            let _ = writeln!(self.body, "kind = {}", q(k));
        }
        self.body.push_str(head);
        self.body
            .push_str(&tables.replace("[nodes.NODE.", &format!("[nodes.{}.", q(name))));
    }

    /// A host: a network namespace with the interfaces `f` gives it.
    pub fn host(mut self, name: &str, f: impl FnOnce(NodeSpec) -> NodeSpec) -> Builder {
        let mut n = f(NodeSpec::default());
        if !n.routes.is_empty() {
            let r: Vec<&str> = n.routes.iter().map(String::as_str).collect();
            let _ = writeln!(n.toml, "routes = {}", list(&r));
        }
        self.node_toml(name, None, &n.toml, &n.ifaces);
        self
    }

    /// A kernel bridge with STP off, holding `address` (`"10.1.0.1/24"`),
    /// which also makes it a router for hosts attached to it.
    pub fn bridge(mut self, name: &str, address: Option<&str>) -> Builder {
        let mut head = String::from("stp = false\n");
        if let Some(a) = address {
            let _ = writeln!(head, "addresses = [{}]", q(a));
        }
        self.node_toml(name, Some("bridge"), &head, "");
        self
    }

    /// A NAT router: a bridge with `inside` (`"10.1.0.1/24"`) as its
    /// address, an uplink interface `wan` with `outside`, masquerading
    /// the bridge's network out of `wan`. Attach hosts to it with
    /// [`NodeSpec::attach`]; cable `"NAME:wan"` to the outside.
    pub fn nat_router(mut self, name: &str, inside: &str, outside: &str) -> Builder {
        let head = format!("stp = false\naddresses = [{}]\n", q(inside));
        let tables = format!(
            "[nodes.NODE.interfaces.wan]\nport = false\naddresses = [{}]\n",
            q(outside)
        );
        self.node_toml(name, Some("bridge"), &head, &tables);
        let _ = writeln!(self.body, "\n[nat.{}]\nuplink = \"wan\"", q(name));
        self
    }

    /// weft's userspace switch (VLANs, impairment per port, mirror).
    pub fn switch(mut self, name: &str, f: impl FnOnce(SwitchSpec) -> SwitchSpec) -> Builder {
        let s = f(SwitchSpec::default());
        self.node_toml(name, Some("switch"), &s.toml, &s.ports);
        self
    }

    /// A veth between two `"NODE:IFACE"` ends.
    pub fn link(mut self, a: &str, b: &str) -> Builder {
        let _ = writeln!(self.body, "\n[[links]]\nendpoints = {}", list(&[a, b]));
        self
    }

    /// A veth with its switch end impaired (one end must be a switch
    /// port: this kernel has no netem).
    pub fn link_impaired(mut self, a: &str, b: &str, imp: Impair) -> Builder {
        let _ = writeln!(
            self.body,
            "\n[[links]]\nendpoints = {}\nimpair = {}",
            list(&[a, b]),
            imp.to_toml()
        );
        self
    }

    /// Any other TOML the file format takes (`[[checks]]`, `[nat.X]`
    /// forwards, ...), appended as is.
    pub fn raw(mut self, toml: &str) -> Builder {
        self.body.push('\n');
        self.body.push_str(toml);
        self.body.push('\n');
        self
    }

    /// Build with this context instead of the default one.
    pub fn context(mut self, ctx: Context) -> Builder {
        self.ctx = ctx;
        self
    }

    /// The lab as a topology file.
    pub fn to_toml(&self) -> String {
        format!("name = {}\n{}", q(&self.name), self.body)
    }

    /// Check, build and wait until usable (see [`Lab::from_toml_with`]).
    pub fn build(self) -> Result<Lab, Error> {
        Lab::from_toml_with(&self.ctx, &self.to_toml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_description_is_a_valid_topology_file() {
        let b = Builder::new("t")
            .switch("sw", |s| {
                s.access("a", 10).access("b", 10).trunk("up", &[10, 20])
            })
            .switch("sw2", |s| s.trunk("up", &[10, 20]))
            .host("a", |n| n.iface("eth0", &["10.0.0.1/24"]))
            .host("b", |n| {
                n.iface("eth0", &["10.0.0.2/24"])
                    .route("default via 10.0.0.1")
            })
            .nat_router("gw", "10.1.0.1/24", "203.0.113.1/24")
            .host("c", |n| n.attach("gw"))
            .bridge("inet", Some("203.0.113.254/24"))
            .link("a:eth0", "sw:a")
            .link_impaired(
                "b:eth0",
                "sw:b",
                Impair::new()
                    .delay(Duration::from_millis(5))
                    .loss(0.5)
                    .rate(1_000_000)
                    .seed(1),
            )
            .link("gw:wan", "inet:gw")
            .link("sw:up", "sw2:up");
        let text = b.to_toml();
        let parsed = weft_topo::parse(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
        let lab = parsed.lab;
        assert_eq!(lab.nodes.len(), 7, "{text}");
        assert!(lab.nat.contains_key("gw"));
        let port = &lab.nodes["sw"].switch.as_ref().unwrap().ports["b"];
        let imp = port.impair.as_ref().unwrap();
        assert_eq!(imp.delay_us, 5000);
        assert_eq!(imp.loss_ppm, 5000);
        assert_eq!(imp.rate_bps, Some(1_000_000));
        assert_eq!(imp.seed, Some(1));
    }

    #[test]
    fn runtime_impairment_matches_the_files() {
        let i = Impair::new()
            .delay(Duration::from_millis(40))
            .jitter(Duration::from_millis(5))
            .loss(1.0)
            .seed(7);
        let s = i.settings().unwrap();
        assert_eq!(
            (s.delay_us, s.jitter_us, s.loss_ppm),
            (40_000, 5_000, 10_000)
        );
        assert!(Impair::new().loss(120.0).settings().is_err());
    }
}
