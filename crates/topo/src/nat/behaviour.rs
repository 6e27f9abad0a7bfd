//! NAT behaviours of RFC 4787 for `[nat.NODE]`: how mappings are made
//! (endpoint-independent, address-dependent, address-and-port-dependent),
//! which inbound packets they let through (the same three for filtering),
//! how long they live, hairpinning, and port preservation or random ports;
//! and the nftables ruleset that gives them.
//!
//! Everything here is expressed in nftables, without a userspace helper:
//! conntrack makes each flow's translation, and three dynamic sets with
//! timeouts, filled from the packet path after NAT, hold what conntrack
//! alone does not: the mapping of an inside endpoint (so that the next
//! flow from it reuses its external port), the way back from an external
//! port (for inbound packets that are not replies), and the remote
//! addresses an inside endpoint has sent to (address-dependent filtering).
//! nftables 1.0.6 cannot write a map update in its JSON syntax, so a NAT
//! with a behaviour is loaded as nft's text syntax (`nft -f -`), still one
//! atomic transaction.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::Error;

use super::{Nat, TABLE_FAMILY, TABLE_NAME};

/// What a mapping or a filter depends on, besides the inside endpoint
/// (RFC 4787 sections 4.1 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dependence {
    /// The same for every remote endpoint.
    EndpointIndependent,
    /// Per remote address, whatever its port.
    AddressDependent,
    /// Per remote address and port.
    AddressAndPortDependent,
}

impl Dependence {
    /// Refused as a behaviour word; [`Error::named`] names the setting.
    pub fn parse(s: &str) -> Result<Dependence, Error> {
        match s {
            "endpoint-independent" => Ok(Dependence::EndpointIndependent),
            "address-dependent" => Ok(Dependence::AddressDependent),
            "address-and-port-dependent" => Ok(Dependence::AddressAndPortDependent),
            _ => Err(Error::Unknown {
                what: "behaviour",
                value: s.into(),
                choices: "\"endpoint-independent\", \"address-dependent\" or \"address-and-port-dependent\"".into(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dependence::EndpointIndependent => "endpoint-independent",
            Dependence::AddressDependent => "address-dependent",
            Dependence::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// How the external port of a new mapping is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ports {
    /// The inside port, when no other mapping holds it (Linux's masquerade).
    Preserve,
    /// A random port (masquerade's `random` flag).
    Random,
}

impl Ports {
    pub fn parse(s: &str) -> Result<Ports, Error> {
        match s {
            "preserve" => Ok(Ports::Preserve),
            "random" => Ok(Ports::Random),
            _ => Err(Error::Unknown {
                what: "ports",
                value: s.into(),
                choices: "\"preserve\" (keep the inside port where free) or \"random\"".into(),
            }),
        }
    }
}

/// The named NAT types, each a mapping and a filtering behaviour.
pub const TYPES: [(&str, Dependence, Dependence); 4] = [
    (
        "full-cone",
        Dependence::EndpointIndependent,
        Dependence::EndpointIndependent,
    ),
    (
        "restricted-cone",
        Dependence::EndpointIndependent,
        Dependence::AddressDependent,
    ),
    (
        "port-restricted",
        Dependence::EndpointIndependent,
        Dependence::AddressAndPortDependent,
    ),
    (
        "symmetric",
        Dependence::AddressAndPortDependent,
        Dependence::AddressAndPortDependent,
    ),
];

/// The mapping and filtering of a named type.
pub fn type_of(name: &str) -> Result<(Dependence, Dependence), Error> {
    TYPES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, m, f)| (m, f))
        .ok_or_else(|| Error::Unknown {
            what: "NAT type",
            value: name.into(),
            choices: format!(
                "one of {}",
                TYPES
                    .iter()
                    .map(|(n, _, _)| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// UDP mapping lifetime when none is given: the least RFC 4787 (REQ-5)
/// allows.
pub const DEFAULT_TIMEOUT_S: u32 = 120;
pub const MAX_TIMEOUT_S: u32 = 86_400;

/// `30s`, `2min`, `1h`: a mapping lifetime in whole seconds.
pub fn parse_timeout(s: &str) -> Result<u32, Error> {
    let t = s.trim();
    let help = || Error::Malformed {
        what: "a timeout",
        value: s.into(),
        help: "write whole seconds, minutes or hours, like \"30s\", \"2min\" or \"1h\"".into(),
    };
    let (n, mult) = if let Some(n) = t.strip_suffix("min") {
        (n, 60)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1)
    } else {
        return Err(help());
    };
    let v: u32 = n.trim().parse().map_err(|_| help())?;
    match v.checked_mul(mult) {
        Some(v) if (1..=MAX_TIMEOUT_S).contains(&v) => Ok(v),
        _ => Err(Error::OutOfRange {
            value: s.into(),
            range: "1s to 24h",
        }),
    }
}

/// A NAT that behaves as RFC 4787 describes, set by `type`, `mapping`,
/// `filtering`, `mapping_timeout`, `hairpin` and `ports` in `[nat.NODE]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behaviour {
    pub mapping: Dependence,
    pub filtering: Dependence,
    /// Seconds a mapping lives after the last packet out through it.
    pub timeout_s: u32,
    /// Inside hosts reach each other through their external mappings.
    pub hairpin: bool,
    pub ports: Ports,
    /// The uplink's IPv4 address: the external address of every mapping.
    pub external: Ipv4Addr,
}

impl Behaviour {
    /// The named type this is, if it is one.
    pub fn type_name(&self) -> Option<&'static str> {
        TYPES
            .iter()
            .find(|(_, m, f)| (*m, *f) == (self.mapping, self.filtering))
            .map(|(n, _, _)| *n)
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(t) = self.type_name() {
            write!(f, "{t} (")?;
        }
        write!(
            f,
            "mapping {}, filtering {}",
            self.mapping.as_str(),
            self.filtering.as_str()
        )?;
        if self.type_name().is_some() {
            write!(f, ")")?;
        }
        write!(
            f,
            ", external {}, mapping timeout {}s, hairpin {}, {} ports",
            self.external,
            self.timeout_s,
            if self.hairpin { "on" } else { "off" },
            match self.ports {
                Ports::Preserve => "preserved",
                Ports::Random => "random",
            }
        )
    }
}

/// The whole table for a NAT with a behaviour, in nft's text syntax, as
/// one transaction: create, delete, create again with its sets and chains.
pub fn ruleset_text(nat: &Nat, b: &Behaviour) -> String {
    let t = format!("{TABLE_FAMILY} {TABLE_NAME}");
    let ext = b.external;
    let up = &nat.uplink;
    let br = &nat.bridge;
    let to = b.timeout_s;
    let l4 = "meta l4proto { tcp, udp }";
    let nets = nat
        .subnets
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let inside = format!("ip saddr {{ {nets} }}");
    // The key of an inside endpoint's mapping: with an address-dependent
    // mapping the remote address is part of it; with a port-dependent one
    // there is nothing to remember (every flow is its own mapping).
    let (key_type, key_pkt, key_ct) = match b.mapping {
        Dependence::EndpointIndependent => (
            "ipv4_addr . inet_proto . inet_service",
            "ip saddr . meta l4proto . th sport",
            "ct original ip saddr . meta l4proto . ct original proto-src",
        ),
        Dependence::AddressDependent => (
            "ipv4_addr . inet_proto . inet_service . ipv4_addr",
            "ip saddr . meta l4proto . th sport . ip daddr",
            "ct original ip saddr . meta l4proto . ct original proto-src . ip daddr",
        ),
        Dependence::AddressAndPortDependent => ("", "", ""),
    };
    let reuse = b.mapping != Dependence::AddressAndPortDependent;
    let random = if b.ports == Ports::Random {
        " random"
    } else {
        ""
    };

    let mut s = String::new();
    let mut line = |l: &str| {
        s.push_str(l);
        s.push('\n');
    };
    line(&format!("table {t} {{}}"));
    line(&format!("delete table {t}"));
    line(&format!("table {t} {{"));
    if reuse {
        line(&format!(
            "  # weft: the external port of each inside endpoint ({} mapping)",
            b.mapping.as_str()
        ));
        line(&format!(
            "  map mappings {{ type {key_type} : inet_service; flags timeout; timeout {to}s; }}"
        ));
    }
    line("  # weft: the inside endpoint of each external port");
    line(&format!("  map inbound {{ type inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; timeout {to}s; }}"));
    if b.filtering == Dependence::AddressDependent {
        line("  # weft: remote addresses each external port has sent to (address-dependent filtering)");
        line(&format!("  set contacted {{ type inet_proto . inet_service . ipv4_addr; flags timeout; timeout {to}s; }}"));
    }

    line("  chain prerouting {");
    line("    type nat hook prerouting priority -100; policy accept;");
    forwards(&mut line, nat);
    match b.filtering {
        Dependence::EndpointIndependent => line(&format!(
            "    iifname \"{up}\" ip daddr {ext} {l4} dnat ip to meta l4proto . th dport map @inbound comment \"weft: endpoint-independent filtering: anyone may send to a mapping\""
        )),
        Dependence::AddressDependent => line(&format!(
            "    iifname \"{up}\" ip daddr {ext} {l4} meta l4proto . th dport . ip saddr @contacted dnat ip to meta l4proto . th dport map @inbound comment \"weft: address-dependent filtering: addresses the mapping has sent to\""
        )),
        // Replies of the flow itself, which conntrack lets in alone.
        Dependence::AddressAndPortDependent => {}
    }
    if b.hairpin {
        line(&format!(
            "    iifname \"{br}\" ip daddr {ext} {l4} dnat ip to meta l4proto . th dport map @inbound comment \"weft: hairpinning: inside hosts reach each other's mappings\""
        ));
    }
    line("  }");

    line("  chain output {");
    line("    type nat hook output priority -100; policy accept;");
    forwards(&mut line, nat);
    line("  }");

    line("  chain postrouting {");
    line("    type nat hook postrouting priority 100; policy accept;");
    if reuse {
        line(&format!(
            "    oifname \"{up}\" {inside} {l4} snat ip to {ext} : {key_pkt} map @mappings comment \"weft: an existing mapping\""
        ));
    }
    line(&format!(
        "    oifname \"{up}\" {inside} masquerade{random} comment \"weft: a new mapping\""
    ));
    if b.hairpin {
        if reuse && b.mapping == Dependence::EndpointIndependent {
            line(&format!(
                "    oifname \"{br}\" {inside} ct status dnat {l4} snat ip to {ext} : {key_pkt} map @mappings comment \"weft: hairpinning: from the sender's mapping\""
            ));
        }
        line(&format!(
            "    oifname \"{br}\" {inside} ct status dnat snat ip to {ext} comment \"weft: hairpinning: from the external address\""
        ));
    } else if !nat.forwards.is_empty() {
        line(&format!(
            "    oifname \"{br}\" {inside} ct status dnat masquerade comment \"weft: hairpin forwards back into the bridge\""
        ));
    }
    line("  }");

    // After NAT: conntrack's reply tuple holds the external port chosen.
    line("  chain record {");
    line("    type filter hook postrouting priority 200; policy accept;");
    // The packet's source is the external one by now; conntrack's
    // original tuple still names the inside endpoint.
    let out = format!("oifname \"{up}\" ct original ip saddr {{ {nets} }} ct status snat {l4}");
    if reuse {
        line(&format!(
            "    {out} update @mappings {{ {key_ct} : ct reply proto-dst }}"
        ));
    }
    line(&format!(
        "    {out} update @inbound {{ meta l4proto . ct reply proto-dst : ct original ip saddr . ct original proto-src }}"
    ));
    if b.filtering == Dependence::AddressDependent {
        line(&format!(
            "    {out} update @contacted {{ meta l4proto . ct reply proto-dst . ip daddr }}"
        ));
    }
    line("  }");

    // A packet the rules above did not translate would reach the NAT node
    // itself, and its conntrack entry would then hold the external port
    // against the next mapping (Linux picks another port on such a clash,
    // which breaks hole punching); a home router drops it.
    line("  chain input {");
    line("    type filter hook input priority 0; policy accept;");
    line(&format!(
        "    iifname \"{up}\" ip daddr {ext} {l4} ct state new drop comment \"weft: unsolicited, filtered\""
    ));
    line("  }");
    line("}");
    s
}

fn forwards(line: &mut impl FnMut(&str), nat: &Nat) {
    for f in &nat.forwards {
        line(&format!(
            "    fib daddr type local meta nfproto ipv4 {} dport {} dnat ip to {}:{} comment \"weft: forward {}\"",
            f.proto.as_str(),
            f.port,
            f.addr,
            f.to_port,
            f.to_string().replace('"', "'")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{Forward, Proto};

    fn nat(b: &Behaviour) -> Nat {
        Nat {
            bridge: "gw".into(),
            subnets: vec!["172.18.0.0/24".parse().unwrap()],
            uplink: "wan".into(),
            forwards: vec![Forward {
                proto: Proto::Udp,
                port: 5353,
                node: "dns".into(),
                addr: "172.18.0.3".parse().unwrap(),
                to_port: 53,
            }],
            behaviour: Some(b.clone()),
        }
    }

    fn behaviour(kind: &str) -> Behaviour {
        let (mapping, filtering) = type_of(kind).unwrap();
        Behaviour {
            mapping,
            filtering,
            timeout_s: 30,
            hairpin: true,
            ports: if mapping == Dependence::EndpointIndependent {
                Ports::Preserve
            } else {
                Ports::Random
            },
            external: "203.0.113.1".parse().unwrap(),
        }
    }

    #[test]
    fn types_and_values_parse() {
        assert_eq!(
            type_of("restricted-cone").unwrap(),
            (
                Dependence::EndpointIndependent,
                Dependence::AddressDependent
            )
        );
        assert!(type_of("cone")
            .unwrap_err()
            .to_string()
            .contains("\"full-cone\""));
        assert_eq!(
            Dependence::parse("address-dependent"),
            Ok(Dependence::AddressDependent)
        );
        assert!(Dependence::parse("ad").is_err());
        assert_eq!(Ports::parse("random"), Ok(Ports::Random));
        assert_eq!(parse_timeout("30s"), Ok(30));
        assert_eq!(parse_timeout("2min"), Ok(120));
        assert_eq!(parse_timeout("1h"), Ok(3600));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("25h").is_err());
        assert!(parse_timeout("30").is_err());
    }

    #[test]
    fn each_type_gets_its_rules() {
        let full = ruleset_text(&nat(&behaviour("full-cone")), &behaviour("full-cone"));
        assert!(
            full.starts_with("table inet weft {}\ndelete table inet weft\ntable inet weft {\n"),
            "{full}"
        );
        assert!(full.contains("iifname \"wan\" ip daddr 203.0.113.1 meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @inbound"), "{full}");
        assert!(
            full.contains(
                "snat ip to 203.0.113.1 : ip saddr . meta l4proto . th sport map @mappings"
            ),
            "{full}"
        );
        assert!(full.contains("masquerade comment"), "{full}");
        assert!(!full.contains("@contacted"), "{full}");
        assert!(full.contains("timeout 30s"), "{full}");
        assert!(
            full.contains("udp dport 5353 dnat ip to 172.18.0.3:53"),
            "{full}"
        );

        let rc = ruleset_text(
            &nat(&behaviour("restricted-cone")),
            &behaviour("restricted-cone"),
        );
        assert!(rc.contains("th dport . ip saddr @contacted dnat"), "{rc}");
        assert!(
            rc.contains("update @contacted { meta l4proto . ct reply proto-dst . ip daddr }"),
            "{rc}"
        );

        let pr = ruleset_text(
            &nat(&behaviour("port-restricted")),
            &behaviour("port-restricted"),
        );
        assert!(
            !pr.contains("iifname \"wan\" ip daddr 203.0.113.1 meta l4proto { tcp, udp } dnat"),
            "{pr}"
        );
        assert!(pr.contains("map @mappings"), "{pr}");

        let mut sb = behaviour("symmetric");
        let sym = ruleset_text(&nat(&sb), &sb);
        assert!(!sym.contains("@mappings"), "{sym}");
        assert!(sym.contains("masquerade random"), "{sym}");
        sb.hairpin = false;
        let sym = ruleset_text(&nat(&sb), &sb);
        assert!(!sym.contains("iifname \"gw\""), "{sym}");
        assert!(sym.contains("ct status dnat masquerade"), "{sym}");
    }

    #[test]
    fn display_names_the_type() {
        assert_eq!(
            behaviour("symmetric").to_string(),
            "symmetric (mapping address-and-port-dependent, filtering address-and-port-dependent), external 203.0.113.1, mapping timeout 30s, hairpin on, random ports"
        );
        let mut b = behaviour("full-cone");
        b.filtering = Dependence::AddressDependent;
        b.mapping = Dependence::AddressDependent;
        assert!(b
            .to_string()
            .starts_with("mapping address-dependent, filtering address-dependent, "));
    }
}
