//! NAT and port forwarding for a bridge network: the `[nat.NODE]` tables of
//! the file, their checks, and the nftables ruleset (JSON, for `nft -j -f -`)
//! that weft loads into the node's namespace.
//!
//! weft owns exactly one table per namespace, `inet weft`. Loading replaces
//! it in one transaction (add, delete, add again: atomic in nftables), and
//! nothing else in the namespace is touched: no other table, no global
//! policy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use toml::Spanned;

use crate::error::Diagnostic;
use crate::model::*;
use crate::Error;

pub mod behaviour;
pub use behaviour::{Behaviour, Dependence, Ports};

/// The nftables family and table weft owns in each namespace.
pub const TABLE_FAMILY: &str = "inet";
pub const TABLE_NAME: &str = "weft";

/// `[nat.NODE]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNat {
    bridge: Option<Spanned<String>>,
    uplink: Option<Spanned<String>>,
    #[serde(default)]
    forward: Vec<Spanned<String>>,
    /// RFC 4787 behaviour keys (nat/behaviour.rs).
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    mapping: Option<Spanned<String>>,
    filtering: Option<Spanned<String>>,
    mapping_timeout: Option<Spanned<String>>,
    hairpin: Option<Spanned<bool>>,
    ports: Option<Spanned<String>>,
}

/// NAT done by one node: masquerade of its bridge's IPv4 subnets out of its
/// uplink, and port forwards to hosts behind the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nat {
    /// The bridge interface whose network is NATed.
    pub bridge: String,
    /// The bridge's IPv4 subnets (network addresses).
    pub subnets: Vec<Ipv4Net>,
    /// The interface towards the outside.
    pub uplink: String,
    pub forwards: Vec<Forward>,
    /// How mappings are made and filtered (RFC 4787); `None` is plain
    /// masquerade, Linux's own behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<Behaviour>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `8080 -> web:80`: connections to port 8080 of any address of the NAT
/// node go to port 80 of `web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Forward {
    pub proto: Proto,
    pub port: u16,
    pub node: String,
    pub addr: Ipv4Addr,
    pub to_port: u16,
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{} ({}:{})",
            self.port,
            self.proto.as_str(),
            self.node,
            self.to_port,
            self.addr,
            self.to_port
        )
    }
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.subnets.iter().map(|n| n.to_string()).collect();
        write!(f, "masquerade {} out of {}", nets.join(", "), self.uplink)?;
        if let Some(b) = &self.behaviour {
            write!(f, ", {b}")?;
        }
        for fw in &self.forwards {
            write!(f, ", forward {fw}")?;
        }
        Ok(())
    }
}

type Span = Range<usize>;

/// Parse a forward: `8080 -> web:80`, `5353/udp -> dns:53`, `8080/tcp -> web`
/// (same port).
fn parse_forward(s: &str) -> Result<(Proto, u16, String, u16), Error> {
    let bad = |why: String| Error::Forward {
        forward: s.into(),
        why,
    };
    let (left, right) = s
        .split_once("->")
        .ok_or_else(|| bad("it is not `PORT -> NODE:PORT`".into()))?;
    let (left, right) = (left.trim(), right.trim());
    let (port, proto) = match left.split_once('/') {
        Some((p, "tcp")) => (p, Proto::Tcp),
        Some((p, "udp")) => (p, Proto::Udp),
        Some((_, other)) => return Err(bad(format!("protocol `{other}` is not tcp or udp"))),
        None => (left, Proto::Tcp),
    };
    let port = parse_port(port).map_err(|e| bad(e.to_string()))?;
    let (node, to) = match right.split_once(':') {
        Some((n, p)) => (n, parse_port(p).map_err(|e| bad(e.to_string()))?),
        None => (right, port),
    };
    if node.is_empty() {
        return Err(bad("it names no node after `->`".into()));
    }
    Ok((proto, port, node.to_string(), to))
}

fn parse_port(p: &str) -> Result<u16, Error> {
    match p.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(Error::Malformed {
            what: "a port",
            value: p.trim().into(),
            help: "write 1 to 65535".into(),
        }),
        Ok(n) => Ok(n),
    }
}

/// Expand and check the `[nat.NODE]` tables against the expanded lab. The
/// NAT node gets `net.ipv4.ip_forward = 1`, without which nothing is
/// forwarded.
pub(crate) fn expand(
    lab: &mut Lab,
    raw: &BTreeMap<Spanned<String>, RawNat>,
    errs: &mut Vec<Diagnostic>,
) {
    let mut err = |span: Span, msg: String, help: &str| {
        let mut d = Diagnostic::new(msg, Some(span));
        if !help.is_empty() {
            d = d.help(help.to_string());
        }
        errs.push(d);
    };
    for (key, rn) in raw {
        let name = key.get_ref();
        let span = key.span();
        let Some(node) = lab.nodes.get(name) else {
            err(
                span,
                format!("nat names `{name}`, which is not a node"),
                "write [nat.NODE] with the node that holds the bridge",
            );
            continue;
        };
        let bridges: Vec<&Interface> = node
            .interfaces
            .values()
            .filter(|i| matches!(i.kind, IfaceKind::Bridge(_)))
            .collect();
        let bridge = match &rn.bridge {
            Some(b) => match node.interfaces.get(b.get_ref()) {
                Some(i) if matches!(i.kind, IfaceKind::Bridge(_)) => i,
                Some(i) => {
                    err(
                        b.span(),
                        format!(
                            "nat.{name}: `{}` is a {}, not a bridge",
                            b.get_ref(),
                            i.kind.name()
                        ),
                        "name a bridge of the node",
                    );
                    continue;
                }
                None => {
                    err(
                        b.span(),
                        format!(
                            "nat.{name}: node `{name}` has no interface `{}`",
                            b.get_ref()
                        ),
                        "name a bridge of the node",
                    );
                    continue;
                }
            },
            None if bridges.len() == 1 => bridges[0],
            None => {
                err(
                    span,
                    format!(
                        "nat.{name}: node `{name}` has {} bridges; say which network to NAT",
                        bridges.len()
                    ),
                    "add bridge = \"NAME\" (a node of kind \"bridge\" holds one, named like the node)",
                );
                continue;
            }
        };
        let subnets: Vec<Ipv4Net> = bridge
            .addresses
            .iter()
            .filter_map(|a| match a {
                IpNet::V4(n) if n.prefix_len() < 32 => Some(n.trunc()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let bspan = rn.bridge.as_ref().map_or(span.clone(), |b| b.span());
        if subnets.is_empty() {
            err(
                bspan.clone(),
                format!(
                    "nat.{name}: bridge `{}` has no IPv4 subnet to NAT",
                    bridge.name
                ),
                "give the bridge an address with its prefix, like addresses = [\"172.18.0.1/24\"]",
            );
            continue;
        }
        let Some(up) = &rn.uplink else {
            err(
                span,
                format!("nat.{name}: no uplink: name the interface that leads out of the lab"),
                "add uplink = \"IFACE\", an interface of the node (a link to the outside, see docs/topology.md)",
            );
            continue;
        };
        let uplink = match node.interfaces.get(up.get_ref()) {
            None => {
                err(
                    up.span(),
                    format!(
                        "nat.{name}: node `{name}` has no interface `{}`",
                        up.get_ref()
                    ),
                    "declare it, or write a [[links]] entry to it",
                );
                continue;
            }
            Some(i) if i.name == bridge.name || i.master.is_some() => {
                err(
                    up.span(),
                    format!(
                        "nat.{name}: uplink `{}` is {} the bridge being NATed",
                        i.name,
                        if i.name == bridge.name { "itself" } else { "a port of" }
                    ),
                    "the uplink must be a routed interface: in a node of kind \"bridge\", give it port = false",
                );
                continue;
            }
            Some(i) => i,
        };
        if let Some(a) = uplink.addresses.iter().find(|a| {
            subnets
                .iter()
                .any(|s| IpNet::V4(*s).contains(&a.addr()) || a.contains(&IpAddr::V4(s.network())))
        }) {
            err(
                up.span(),
                format!(
                    "nat.{name}: uplink `{}` has {a}, which overlaps the NATed subnet of `{}`",
                    uplink.name, bridge.name
                ),
                "use different subnets inside and outside",
            );
            continue;
        }
        let mut forwards = Vec::new();
        let mut seen: BTreeMap<(Proto, u16), Span> = BTreeMap::new();
        for f in &rn.forward {
            let (proto, port, target, to_port) = match parse_forward(f.get_ref()) {
                Ok(x) => x,
                Err(why) => {
                    err(
                        f.span(),
                        format!("nat.{name}: {why}"),
                        "write like \"8080 -> web:80\" or \"5353/udp -> dns:53\"",
                    );
                    continue;
                }
            };
            if seen.insert((proto, port), f.span()).is_some() {
                err(
                    f.span(),
                    format!(
                        "nat.{name}: port {port}/{} is forwarded twice",
                        proto.as_str()
                    ),
                    "a port of the NAT node can lead to one place only: remove one forward",
                );
                continue;
            }
            let Some(t) = lab.nodes.get(&target) else {
                err(
                    f.span(),
                    format!(
                        "nat.{name}: forward `{}` names `{target}`, which is not a node",
                        f.get_ref()
                    ),
                    "name a node of the lab",
                );
                continue;
            };
            let v4: Vec<Ipv4Addr> = t
                .interfaces
                .values()
                .filter(|i| !matches!(i.kind, IfaceKind::Loopback) && i.master.is_none())
                .flat_map(|i| i.addresses.iter())
                .filter_map(|a| match a.addr() {
                    IpAddr::V4(v) => Some(v),
                    _ => None,
                })
                .collect();
            let addr = v4
                .iter()
                .find(|a| subnets.iter().any(|s| s.contains(*a)))
                .or(v4.first())
                .copied();
            let Some(addr) = addr else {
                err(
                    f.span(),
                    format!(
                        "nat.{name}: forward `{}` goes to `{target}`, which has no IPv4 address",
                        f.get_ref()
                    ),
                    &format!("give `{target}` an address (attach = \"{}\" gives one from the bridge's subnet)", bridge.name),
                );
                continue;
            };
            forwards.push(Forward {
                proto,
                port,
                node: target,
                addr,
                to_port,
            });
        }
        forwards.sort();
        let behaviour = match behaviour_of(name, rn, uplink) {
            Ok(b) => b,
            Err((span, msg, help)) => {
                err(span, msg, &help);
                continue;
            }
        };
        let nat = Nat {
            bridge: bridge.name.clone(),
            subnets,
            uplink: uplink.name.clone(),
            forwards,
            behaviour,
        };
        let n = lab.nodes.get_mut(name).unwrap();
        if let Some(b) = &nat.behaviour {
            // conntrack's own UDP timers would outlive (or cut short) the
            // mapping: a flow's translation is its conntrack entry.
            for k in [
                "net.netfilter.nf_conntrack_udp_timeout",
                "net.netfilter.nf_conntrack_udp_timeout_stream",
            ] {
                n.sysctls
                    .entry(k.into())
                    .or_insert_with(|| b.timeout_s.to_string());
            }
        }
        match n.sysctls.get("net.ipv4.ip_forward").map(String::as_str) {
            None => {
                n.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
            }
            Some("1") => {}
            Some(v) => {
                err(
                    span.clone(),
                    format!("nat.{name}: node `{name}` sets net.ipv4.ip_forward = {v}, but NAT forwards packets"),
                    "remove the sysctl (NAT sets it to 1)",
                );
                continue;
            }
        }
        // With br_netfilter (on wherever Docker runs), a forward from a host
        // to its own forwarded port is bridged straight back to the port it
        // came from; hairpin lets it out, as Docker does.
        let bname = nat.bridge.clone();
        for i in n.interfaces.values_mut() {
            if i.master.as_deref() == Some(bname.as_str()) {
                i.port.hairpin = true;
            }
        }
        lab.nat.insert(name.clone(), nat);
    }
}

/// The `[nat.NODE]` behaviour keys, checked; `None` when none is given.
fn behaviour_of(
    name: &str,
    rn: &RawNat,
    uplink: &Interface,
) -> Result<Option<Behaviour>, (Span, String, String)> {
    let first = [
        &rn.kind,
        &rn.mapping,
        &rn.filtering,
        &rn.mapping_timeout,
        &rn.ports,
    ]
    .into_iter()
    .flatten()
    .map(|k| k.span())
    .chain(rn.hairpin.as_ref().map(|h| h.span()))
    .min_by_key(|s| s.start);
    let Some(at) = first else { return Ok(None) };
    let bad = |k: &Spanned<String>, why: String, help: &str| {
        (k.span(), format!("nat.{name}: {why}"), help.to_string())
    };
    let (mut mapping, mut filtering) = match &rn.kind {
        Some(k) => behaviour::type_of(k.get_ref()).map_err(|e| {
            bad(
                k,
                e.to_string(),
                "see docs/conditions.md#nat-behaviours for what each type does",
            )
        })?,
        None => (
            Dependence::EndpointIndependent,
            Dependence::AddressAndPortDependent,
        ),
    };
    if let Some(m) = &rn.mapping {
        mapping = Dependence::parse(m.get_ref())
            .map_err(|e| bad(m, e.named("mapping").to_string(), ""))?;
    }
    if let Some(f) = &rn.filtering {
        filtering = Dependence::parse(f.get_ref())
            .map_err(|e| bad(f, e.named("filtering").to_string(), ""))?;
    }
    let ports = match &rn.ports {
        Some(p) => {
            let v = Ports::parse(p.get_ref()).map_err(|e| bad(p, e.to_string(), ""))?;
            if v == Ports::Preserve && mapping != Dependence::EndpointIndependent {
                return Err(bad(
                    p,
                    format!(
                        "ports = \"preserve\" cannot give an {} mapping: Linux keeps the inside port for every destination where it is free, which makes the mapping endpoint-independent",
                        mapping.as_str()
                    ),
                    "write ports = \"random\" (the default for such a mapping), or mapping = \"endpoint-independent\"",
                ));
            }
            v
        }
        None if mapping == Dependence::EndpointIndependent => Ports::Preserve,
        None => Ports::Random,
    };
    let timeout_s = match &rn.mapping_timeout {
        Some(t) => behaviour::parse_timeout(t.get_ref())
            .map_err(|e| bad(t, format!("mapping_timeout {e}"), ""))?,
        None => behaviour::DEFAULT_TIMEOUT_S,
    };
    let external = uplink
        .addresses
        .iter()
        .find_map(|a| match a.addr() {
            IpAddr::V4(v) => Some(v),
            _ => None,
        })
        .ok_or_else(|| {
            (
                at.clone(),
                format!(
                    "nat.{name}: a NAT behaviour needs an IPv4 address on the uplink `{}`, the external address of its mappings",
                    uplink.name
                ),
                "give the uplink an address, or remove the behaviour keys (plain masquerade follows the uplink's address)".to_string(),
            )
        })?;
    Ok(Some(Behaviour {
        mapping,
        filtering,
        timeout_s,
        hairpin: rn.hairpin.as_ref().is_none_or(|h| *h.get_ref()),
        ports,
        external,
    }))
}

fn table() -> Value {
    json!({"family": TABLE_FAMILY, "name": TABLE_NAME})
}

fn chain(name: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {"family": TABLE_FAMILY, "table": TABLE_NAME, "name": name,
        "type": "nat", "hook": hook, "prio": prio, "policy": "accept"}}})
}

fn rule(chain: &str, comment: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": TABLE_FAMILY, "table": TABLE_NAME, "chain": chain,
        "comment": comment, "expr": expr}}})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn saddr_in(net: &Ipv4Net) -> Value {
    eq(
        json!({"payload": {"protocol": "ip", "field": "saddr"}}),
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}}),
    )
}

/// The transaction that makes weft's table hold exactly this NAT: create
/// it if missing, delete it, create it again with its chains and rules.
/// nftables applies the whole list atomically or not at all.
pub fn ruleset(nat: &Nat) -> Value {
    let mut cmds = vec![
        json!({"add": {"table": table()}}),
        json!({"delete": {"table": table()}}),
        json!({"add": {"table": table()}}),
        chain("prerouting", "prerouting", -100),
        chain("output", "output", -100),
        chain("postrouting", "postrouting", 100),
    ];
    for net in &nat.subnets {
        cmds.push(rule(
            "postrouting",
            "weft: masquerade the bridge network out of the uplink",
            vec![
                saddr_in(net),
                eq(json!({"meta": {"key": "oifname"}}), json!(nat.uplink)),
                json!({"masquerade": null}),
            ],
        ));
        // Hairpin: a host reaching a forwarded port of its own network via
        // the gateway must see the answer come from the gateway, not from
        // the target directly (or from itself).
        if !nat.forwards.is_empty() {
            cmds.push(rule(
                "postrouting",
                "weft: hairpin forwards back into the bridge",
                vec![
                    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                    saddr_in(net),
                    eq(json!({"meta": {"key": "oifname"}}), json!(nat.bridge)),
                    json!({"masquerade": null}),
                ],
            ));
        }
    }
    for f in &nat.forwards {
        for chain in ["prerouting", "output"] {
            cmds.push(rule(
                chain,
                &format!("weft: forward {f}"),
                vec![
                    // Any address of this node, as Docker's ADDRTYPE LOCAL.
                    eq(
                        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                        json!("local"),
                    ),
                    eq(json!({"meta": {"key": "nfproto"}}), json!("ipv4")),
                    eq(
                        json!({"payload": {"protocol": f.proto.as_str(), "field": "dport"}}),
                        json!(f.port),
                    ),
                    json!({"dnat": {"family": "ip", "addr": f.addr.to_string(), "port": f.to_port}}),
                ],
            ));
        }
    }
    json!({ "nftables": cmds })
}

/// The transaction that removes weft's table, whether or not it exists.
pub fn delete() -> Value {
    json!({"nftables": [
        {"add": {"table": table()}},
        {"delete": {"table": table()}},
    ]})
}

/// A base chain of another table on the forward hook whose policy drops:
/// forwarded packets are dropped there unless its own rules accept them,
/// whatever weft's table says (a drop verdict in any base chain is final).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignDrop {
    pub family: String,
    pub table: String,
    pub chain: String,
}

impl fmt::Display for ForeignDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain {} of table {} {} (hook forward, policy drop)",
            self.chain, self.family, self.table
        )
    }
}

/// Read `nft -j list chains` output and find the forward-hook chains of
/// other tables whose policy is drop (Docker's `ip filter FORWARD`).
pub fn foreign_forward_drops(list_chains_json: &str) -> Result<Vec<ForeignDrop>, Error> {
    let v: Value = serde_json::from_str(list_chains_json).map_err(|e| Error::NftOutput {
        what: format!("something that is not JSON: {e}"),
    })?;
    let items = v["nftables"].as_array().ok_or_else(|| Error::NftOutput {
        what: "no `nftables` array".into(),
    })?;
    let mut out = Vec::new();
    for it in items {
        let Some(c) = it.get("chain") else { continue };
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        let ours = s("family") == TABLE_FAMILY && s("table") == TABLE_NAME;
        let ip = matches!(s("family"), "ip" | "inet");
        if !ours && ip && s("hook") == "forward" && s("policy") == "drop" {
            out.push(ForeignDrop {
                family: s("family").into(),
                table: s("table").into(),
                chain: s("name").into(),
            });
        }
    }
    Ok(out)
}

/// Two networks in the lab that overlap without being the same (10.0.0.0/16
/// and 10.0.1.0/24): a host in the overlap could be on either, so routes
/// and NAT would go wrong. The same subnet on several interfaces is one
/// network and fine; host addresses (/32, /128) and `lo` are left out.
pub(crate) fn check_overlaps(
    lab: &Lab,
    span_of: &dyn Fn(&str, &str, &IpNet) -> Option<Span>,
    errs: &mut Vec<Diagnostic>,
) {
    let mut first: BTreeMap<IpNet, Endpoint> = BTreeMap::new();
    for n in lab.nodes.values() {
        for i in n.interfaces.values() {
            if matches!(i.kind, IfaceKind::Loopback) || i.master.is_some() {
                continue;
            }
            for a in &i.addresses {
                if a.prefix_len() == a.max_prefix_len() {
                    continue;
                }
                let net = a.trunc();
                if first.contains_key(&net) {
                    continue;
                }
                if let Some((other, at)) = first
                    .iter()
                    .find(|(o, _)| o.contains(&net) || net.contains(*o))
                {
                    errs.push(
                        Diagnostic::new(
                            format!(
                                "subnet {net} of {a} on `{}:{}` overlaps subnet {other} on `{at}`",
                                n.name, i.name
                            ),
                            span_of(&n.name, &i.name, a),
                        )
                        .help("two different networks must not overlap: use the same subnet (one network) or separate ones"),
                    );
                    continue;
                }
                first.insert(net, Endpoint::new(&n.name, &i.name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse() {
        assert_eq!(
            parse_forward("8080 -> web:80").unwrap(),
            (Proto::Tcp, 8080, "web".into(), 80)
        );
        assert_eq!(
            parse_forward("5353/udp->dns:53").unwrap(),
            (Proto::Udp, 5353, "dns".into(), 53)
        );
        assert_eq!(
            parse_forward("22/tcp -> box").unwrap(),
            (Proto::Tcp, 22, "box".into(), 22)
        );
        assert!(parse_forward("8080 web:80")
            .unwrap_err()
            .to_string()
            .contains("PORT -> NODE:PORT"));
        assert!(parse_forward("0 -> web:80")
            .unwrap_err()
            .to_string()
            .contains("not a port"));
        assert!(parse_forward("80/sctp -> web")
            .unwrap_err()
            .to_string()
            .contains("sctp"));
        assert!(parse_forward("80 -> web:99999")
            .unwrap_err()
            .to_string()
            .contains("99999"));
    }

    /// Real output of `nft -j list chains` (nftables 1.0.6) in a namespace
    /// with weft's table and an iptables-nft style `ip filter` table.
    const CHAINS: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "inet", "table": "weft", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"chain": {"family": "inet", "table": "weft", "name": "output", "handle": 2, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}}, {"chain": {"family": "inet", "table": "weft", "name": "postrouting", "handle": 3, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 2}}]}"#;

    #[test]
    fn finds_dockers_forward_drop_only() {
        let d = foreign_forward_drops(CHAINS).unwrap();
        assert_eq!(
            d,
            [ForeignDrop {
                family: "ip".into(),
                table: "filter".into(),
                chain: "FORWARD".into()
            }]
        );
        assert_eq!(
            d[0].to_string(),
            "chain FORWARD of table ip filter (hook forward, policy drop)"
        );
        let accept = CHAINS.replace(r#""policy": "drop""#, r#""policy": "accept""#);
        assert!(foreign_forward_drops(&accept).unwrap().is_empty());
        assert!(foreign_forward_drops("{}").is_err());
    }

    #[test]
    fn ruleset_replaces_only_weft_table() {
        let nat = Nat {
            bridge: "br0".into(),
            subnets: vec!["172.18.0.0/24".parse().unwrap()],
            uplink: "wan".into(),
            forwards: vec![Forward {
                proto: Proto::Udp,
                port: 5353,
                node: "dns".into(),
                addr: "172.18.0.3".parse().unwrap(),
                to_port: 53,
            }],
            behaviour: None,
        };
        let v = ruleset(&nat);
        let cmds = v["nftables"].as_array().unwrap();
        // Every command names weft's table and nothing else.
        for c in cmds {
            let body = c.as_object().unwrap().values().next().unwrap();
            let obj = body.as_object().unwrap().values().next().unwrap();
            let (fam, tab) = match obj.get("table") {
                Some(Value::String(t)) => (obj["family"].as_str().unwrap(), t.as_str()),
                _ => (
                    obj["family"].as_str().unwrap(),
                    obj["name"].as_str().unwrap(),
                ),
            };
            assert_eq!((fam, tab), ("inet", "weft"), "{c}");
        }
        assert_eq!(
            cmds[1],
            json!({"delete": {"table": {"family": "inet", "name": "weft"}}})
        );
        let text = v.to_string();
        assert!(
            text.contains(r#""dnat":{"addr":"172.18.0.3","family":"ip","port":53}"#),
            "{text}"
        );
        assert!(text.contains(r#""right":"wan""#), "{text}");
        assert!(
            text.contains(r#""protocol":"udp","field":"dport""#)
                || text.contains(r#""field":"dport","protocol":"udp""#),
            "{text}"
        );
        assert!(text.contains(r#""len":24"#), "{text}");
    }
}
