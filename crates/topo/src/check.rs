//! Health checks: the `[[checks]]` entries of the file, resolved to
//! addresses, which `weft up` runs after applying and `weft check` on demand.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::Diagnostic;
use crate::model::*;

/// Default time a check may take, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;

/// `[[checks]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    from: Spanned<String>,
    ping: Option<Spanned<String>>,
    tcp: Option<Spanned<String>>,
    command: Option<Spanned<toml::Value>>,
    timeout: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// 1-based number in the file, and the line it starts on.
    pub number: usize,
    pub line: usize,
    /// The node it runs in.
    pub from: String,
    pub kind: CheckKind,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum CheckKind {
    /// ICMP echo; passes on the first reply.
    Ping { target: String, addr: IpAddr },
    /// A TCP connection that is accepted.
    Tcp { target: String, addr: SocketAddr },
    /// A program that exits 0, run in the node like `weft exec`.
    Command { argv: Vec<String> },
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check {} (line {}): ", self.number, self.line)?;
        match &self.kind {
            CheckKind::Ping { target, addr } if target == &addr.to_string() => {
                write!(f, "ping from {} to {addr}", self.from)
            }
            CheckKind::Ping { target, addr } => {
                write!(f, "ping from {} to {target} ({addr})", self.from)
            }
            CheckKind::Tcp { target, addr } if target == &addr.to_string() => {
                write!(f, "tcp from {} to {addr}", self.from)
            }
            CheckKind::Tcp { target, addr } => {
                write!(f, "tcp from {} to {target} ({addr})", self.from)
            }
            CheckKind::Command { argv } => {
                write!(f, "command in {}: {}", self.from, argv.join(" "))
            }
        }
    }
}

/// The address a node name stands for: its first IPv4 address, else its
/// first IPv6 one (`lo` and bridge ports left out), as `weft ping` uses.
pub fn node_address(n: &Node) -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = n
        .interfaces
        .values()
        .filter(|i| !matches!(i.kind, IfaceKind::Loopback) && i.master.is_none())
        .flat_map(|i| i.addresses.iter().map(|a| a.addr()))
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

pub(crate) fn expand(
    lab: &mut Lab,
    raw: &[Spanned<RawCheck>],
    source: &str,
    lines: &crate::error::LineIndex,
    errs: &mut Vec<Diagnostic>,
) {
    for (i, rc) in raw.iter().enumerate() {
        let number = i + 1;
        let line = lines.line_col(source, rc.span().start).0;
        let c = rc.get_ref();
        let mut err = |span: std::ops::Range<usize>, msg: String, help: String| {
            errs.push(Diagnostic::new(format!("check {number}: {msg}"), Some(span)).help(help));
        };
        let known = || lab.nodes.keys().cloned().collect::<Vec<_>>().join(", ");
        let from = c.from.get_ref();
        if !lab.nodes.contains_key(from) {
            err(
                c.from.span(),
                format!("from names `{from}`, which is not a node"),
                format!("the nodes are: {}", known()),
            );
            continue;
        }
        let timeout_ms = match &c.timeout {
            None => DEFAULT_TIMEOUT_MS,
            Some(t) => {
                let secs = match t.get_ref() {
                    toml::Value::Integer(i) => *i as f64,
                    toml::Value::Float(f) => *f,
                    _ => -1.0,
                };
                if !(0.01..=3600.0).contains(&secs) {
                    err(
                        t.span(),
                        "timeout is a number of seconds from 0.01 to 3600".into(),
                        "write for example timeout = 2".into(),
                    );
                    continue;
                }
                (secs * 1000.0).round() as u64
            }
        };
        let given = [c.ping.is_some(), c.tcp.is_some(), c.command.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            err(
                rc.span(),
                "give exactly one of ping, tcp and command".into(),
                "ping = \"NODE\", tcp = \"NODE:PORT\" or command = [\"PROGRAM\", \"ARG\"]".into(),
            );
            continue;
        }
        let resolve = |t: &str| -> Result<IpAddr, (String, String)> {
            if let Ok(a) = t.parse::<IpAddr>() {
                return Ok(a);
            }
            match lab.nodes.get(t) {
                None => Err((
                    format!("`{t}` is neither an address nor a node"),
                    format!("the nodes are: {}", known()),
                )),
                Some(n) => node_address(n).ok_or_else(|| {
                    (
                        format!("node `{t}` has no address to reach"),
                        format!("give one of `{t}`'s interfaces an address, or check an IP"),
                    )
                }),
            }
        };
        let kind = if let Some(p) = &c.ping {
            match resolve(p.get_ref()) {
                Ok(addr) => CheckKind::Ping {
                    target: p.get_ref().clone(),
                    addr,
                },
                Err((m, h)) => {
                    err(p.span(), m, h);
                    continue;
                }
            }
        } else if let Some(t) = &c.tcp {
            let s = t.get_ref();
            let (host, port) = match s.rsplit_once(':') {
                Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
                None => ("", ""),
            };
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 && !host.is_empty() => p,
                _ => {
                    err(
                        t.span(),
                        format!("tcp = \"{s}\" is not NODE:PORT or ADDRESS:PORT"),
                        "write like tcp = \"web:80\" or tcp = \"10.0.0.1:80\"".into(),
                    );
                    continue;
                }
            };
            match resolve(host) {
                Ok(a) => CheckKind::Tcp {
                    target: s.clone(),
                    addr: SocketAddr::new(a, port),
                },
                Err((m, h)) => {
                    err(t.span(), m, h);
                    continue;
                }
            }
        } else {
            let cmd = c.command.as_ref().unwrap();
            let argv: Option<Vec<String>> = match cmd.get_ref() {
                toml::Value::String(s) if !s.trim().is_empty() => {
                    Some(vec!["sh".into(), "-c".into(), s.clone()])
                }
                toml::Value::Array(a) if !a.is_empty() => {
                    a.iter().map(|v| v.as_str().map(str::to_string)).collect()
                }
                _ => None,
            };
            match argv {
                Some(argv) => CheckKind::Command { argv },
                None => {
                    err(
                        cmd.span(),
                        "command is a non-empty list of strings, or a string for sh -c".into(),
                        "write like command = [\"curl\", \"-sf\", \"http://web\"]".into(),
                    );
                    continue;
                }
            }
        };
        lab.checks.push(Check {
            number,
            line,
            from: from.clone(),
            kind,
            timeout_ms,
        });
    }
}
