//! Routes written the way `ip route add` takes them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Route, RouteKind};
use crate::Error;

/// Parse `ip route add` arguments: `[TYPE] PREFIX|default [via ADDR] [dev
/// IFACE] [src ADDR] [metric N] [table N] [mtu N] [scope link] [onlink]`.
/// A leading `-6` makes `default` an IPv6 route when no `via` says so.
pub fn parse_route(text: &str) -> Result<Route, Error> {
    let refuse = |why: &str| Error::Route {
        route: text.into(),
        why: why.into(),
    };
    let mut toks = text.split_whitespace().peekable();
    let mut ipv6_flag = false;
    if toks.peek() == Some(&"-6") {
        ipv6_flag = true;
        toks.next();
    }
    let mut kind = RouteKind::Unicast;
    if let Some(&t) = toks.peek() {
        let k = match t {
            "unicast" => Some(RouteKind::Unicast),
            "blackhole" => Some(RouteKind::Blackhole),
            "unreachable" => Some(RouteKind::Unreachable),
            "prohibit" => Some(RouteKind::Prohibit),
            _ => None,
        };
        if let Some(k) = k {
            kind = k;
            toks.next();
        }
    }
    let dst_tok = toks
        .next()
        .ok_or_else(|| refuse("the route is empty: write a destination such as `default via 10.0.0.1` or `10.1.0.0/16 dev eth0`"))?;
    let dst = match dst_tok {
        "default" | "0/0" | "any" => None,
        t => Some(parse_prefix(t)?),
    };
    let mut r = Route {
        kind,
        dst,
        ipv6: ipv6_flag,
        via: None,
        dev: None,
        src: None,
        metric: None,
        table: None,
        mtu: None,
        onlink: false,
        scope_link: false,
    };
    while let Some(key) = toks.next() {
        let mut val = |what: &'static str| {
            toks.next().ok_or_else(|| Error::NeedsValue {
                key: key.into(),
                what,
            })
        };
        match key {
            "via" => {
                let v = val("an address")?;
                r.via = Some(v.parse().map_err(|_| Error::BadAddress {
                    key: "via",
                    value: v.into(),
                })?);
            }
            "dev" | "oif" => r.dev = Some(val("an interface name")?.to_string()),
            "src" => {
                let v = val("an address")?;
                r.src = Some(v.parse().map_err(|_| Error::BadAddress {
                    key: "src",
                    value: v.into(),
                })?);
            }
            "metric" | "preference" | "priority" => r.metric = Some(num(key, val("a number")?)?),
            "table" => {
                let v = val("a table number")?;
                r.table = Some(match v {
                    "main" => 254,
                    "local" => 255,
                    _ => num(key, v)?,
                });
            }
            "mtu" => r.mtu = Some(num(key, val("a number")?)?),
            "onlink" => r.onlink = true,
            "scope" => match val("a scope")? {
                "link" => r.scope_link = true,
                "global" | "universe" => r.scope_link = false,
                s => return Err(refuse(&format!("scope `{s}` is not supported: write `scope link` or leave the scope out"))),
            },
            "proto" | "protocol" => {
                return Err(refuse("`proto` is set by weft (routes it adds are `proto static`): leave it out"))
            }
            other => {
                return Err(refuse(&format!(
                    "`{other}` is not a route option weft knows: use via, dev, src, metric, table, mtu, scope link or onlink"
                )))
            }
        }
    }
    if kind != RouteKind::Unicast && (r.via.is_some() || r.dev.is_some()) {
        return Err(refuse(
            "a blackhole, unreachable or prohibit route takes no `via` or `dev`",
        ));
    }
    if kind == RouteKind::Unicast && r.via.is_none() && r.dev.is_none() {
        return Err(refuse(&format!(
            "the route `{text}` says neither `via` nor `dev`: add a gateway (`via ADDR`) or an interface (`dev NAME`)"
        )));
    }
    let fam6 = |a: &IpAddr| a.is_ipv6();
    let dst6 = r.dst.map(|n| matches!(n, IpNet::V6(_)));
    let via6 = r.via.as_ref().map(fam6);
    if let (Some(d), Some(v)) = (dst6, via6) {
        if d != v {
            return Err(refuse(
                "the destination and the gateway are of different IP families",
            ));
        }
    }
    if let (Some(d), Some(s)) = (dst6.or(via6), r.src.as_ref().map(fam6)) {
        if d != s {
            return Err(refuse("`src` is of a different IP family than the route"));
        }
    }
    r.ipv6 = dst6.or(via6).unwrap_or(ipv6_flag);
    if ipv6_flag && !r.ipv6 {
        return Err(refuse("`-6` with an IPv4 destination or gateway"));
    }
    Ok(r)
}

fn num(key: &str, v: &str) -> Result<u32, Error> {
    v.parse().map_err(|_| Error::Malformed {
        what: "a whole number",
        value: v.into(),
        help: format!("write `{key} N`"),
    })
}

fn parse_prefix(t: &str) -> Result<IpNet, Error> {
    let net: IpNet = if t.contains('/') {
        t.parse().map_err(|_| Error::Malformed {
            what: "a prefix",
            value: t.into(),
            help: "write one like 10.0.0.0/24 or fd00::/64".into(),
        })?
    } else {
        let a: IpAddr = t.parse().map_err(|_| Error::Malformed {
            what: "a destination",
            value: t.into(),
            help: "write `default`, a prefix like 10.0.0.0/24, or an address".into(),
        })?;
        IpNet::from(a)
    };
    if net.trunc() != net {
        return Err(Error::HostBits {
            value: t.into(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_via() {
        let r = parse_route("default via 192.168.50.254").unwrap();
        assert_eq!(r.dst, None);
        assert_eq!(r.via, Some("192.168.50.254".parse().unwrap()));
        assert!(!r.ipv6);
        assert_eq!(r.to_string(), "default via 192.168.50.254");
    }

    #[test]
    fn full_options_round_trip_through_display() {
        let text =
            "10.1.0.0/16 via 10.0.0.1 dev eth0 src 10.0.0.2 metric 10 table 100 mtu 1400 onlink";
        let r = parse_route(text).unwrap();
        assert_eq!(r.to_string(), text);
        assert_eq!(parse_route(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn ipv6_from_gateway_and_flag() {
        assert!(parse_route("default via fd00::1").unwrap().ipv6);
        assert!(parse_route("-6 default dev eth0").unwrap().ipv6);
        assert!(!parse_route("default dev eth0").unwrap().ipv6);
    }

    #[test]
    fn errors_carry_the_value() {
        assert_eq!(
            parse_route("10.0.0.1/24 dev eth0"),
            Err(Error::HostBits {
                value: "10.0.0.1/24".into(),
                network: "10.0.0.0/24".parse().unwrap(),
            })
        );
        assert_eq!(
            parse_route("default via nope"),
            Err(Error::BadAddress {
                key: "via",
                value: "nope".into(),
            })
        );
        assert!(matches!(
            parse_route("default"),
            Err(Error::Route { route, .. }) if route == "default"
        ));
    }

    #[test]
    fn special_kinds() {
        let r = parse_route("blackhole 10.9.0.0/16").unwrap();
        assert_eq!(r.kind, RouteKind::Blackhole);
        assert!(parse_route("blackhole 10.9.0.0/16 dev eth0").is_err());
    }

    #[test]
    fn rejects_bad_input_with_reasons() {
        for (text, needle) in [
            ("", "empty"),
            ("default", "neither"),
            ("10.0.0.1/24 dev eth0", "host bits"),
            ("default via nope", "not an IP address"),
            ("default via 10.0.0.1 frobnicate", "not a route option"),
            ("default via", "needs an address"),
            ("fd00::/64 via 10.0.0.1", "different IP families"),
            ("default via 10.0.0.1 proto kernel", "proto"),
            ("default via 10.0.0.1 metric x", "whole number"),
        ] {
            let e = parse_route(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
