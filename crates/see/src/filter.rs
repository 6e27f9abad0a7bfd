//! Capture filters: the common part of tcpdump's language, compiled to
//! classic BPF so the kernel drops non-matching packets before they are
//! copied to weft.
//!
//! ```text
//! expr  := term { (or | ||) term }
//! term  := factor { (and | &&) factor }
//! factor:= (not | !) factor | ( expr ) | prim
//! prim  := [PROTO] qual | PROTO | vlan [ID]
//! qual  := [src|dst] host ADDR | [src|dst] net CIDR | [src|dst] port N
//! PROTO := tcp | udp | icmp | icmp6 | arp | ip | ip6
//! ```
//!
//! `PROTO qual` means `PROTO and qual` (`udp port 53`).
//!
//! The meaning follows tcpdump's: `host`/`net` on IPv4 also match the
//! sender and target addresses of ARP and RARP; `port` means TCP, UDP or
//! SCTP, and skips IPv4 fragments after the first; `tcp`/`udp` on IPv6
//! also look behind one fragment header. Linux removes a frame's 802.1Q tag
//! before packet sockets see it, so `vlan` tests the tag the kernel kept in
//! the packet's metadata (or an in-band tag the kernel left), and offsets
//! after it do not move.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::bpf::{self, Insn};

/// What the capture point carries; the filter is compiled for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet frames (veth, bridge, TAP, lo).
    Ethernet,
    /// Bare IP packets (TUN).
    RawIp,
}

/// The words a filter can start with or contain besides values.
pub const KEYWORDS: &[&str] = &[
    "host", "net", "port", "src", "dst", "tcp", "udp", "icmp", "icmp6", "arp", "ip", "ip6", "vlan",
    "and", "or", "not", "(", "!",
];

/// The snapshot length accepted packets are kept to, as tcpdump's.
pub const SNAPLEN: u32 = 262_144;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FilterError {}

fn err<T>(m: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError { message: m.into() })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    Any,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Host(Dir, IpAddr),
    Net(Dir, IpNet),
    Port(Dir, u16),
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Arp,
    Ip,
    Ip6,
    Vlan(Option<u16>),
}

/// Parse a filter given as words (the command line's trailing arguments,
/// or one string split on spaces). Parentheses may stand alone or stick
/// to words: `not (port 53)`.
pub fn parse(words: &[String]) -> Result<Expr, FilterError> {
    let text = words.join(" ");
    let mut toks = Vec::new();
    for w in text
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
    {
        toks.push(w.to_string());
    }
    if toks.is_empty() {
        return err("empty filter");
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return err(format!(
            "unexpected `{t}` in the filter; join expressions with `and` or `or`"
        ));
    }
    Ok(e)
}

struct Parser {
    toks: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(|s| s.as_str())
    }
    fn next(&mut self) -> Option<String> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.not()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }
    fn not(&mut self) -> Result<Expr, FilterError> {
        match self.peek() {
            Some("not" | "!") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.not()?)))
            }
            Some("(") => {
                self.pos += 1;
                let e = self.or()?;
                match self.next().as_deref() {
                    Some(")") => Ok(e),
                    _ => err("a `(` in the filter is not closed"),
                }
            }
            _ => self.prim(),
        }
    }
    fn prim(&mut self) -> Result<Expr, FilterError> {
        let e = self.prim1()?;
        // A protocol word qualifies the primitive after it, as in tcpdump:
        // `udp port 53`, `ip6 host fd00::1`, `arp net 10.0.0.0/8`.
        let proto = matches!(
            e,
            Expr::Tcp | Expr::Udp | Expr::Ip | Expr::Ip6 | Expr::Arp | Expr::Icmp | Expr::Icmp6
        );
        if proto && matches!(self.peek(), Some("host" | "net" | "port" | "src" | "dst")) {
            return Ok(Expr::And(Box::new(e), Box::new(self.prim1()?)));
        }
        Ok(e)
    }
    fn prim1(&mut self) -> Result<Expr, FilterError> {
        let Some(t) = self.next() else {
            return err("the filter ends where an expression was expected");
        };
        let (dir, t) = match t.as_str() {
            "src" | "dst" => {
                let d = if t == "src" { Dir::Src } else { Dir::Dst };
                match self.next() {
                    Some(k) if matches!(k.as_str(), "host" | "net" | "port") => (d, k),
                    other => {
                        return err(format!(
                            "`{t}` must be followed by host, net or port, not {}",
                            other.map_or("the end".into(), |o| format!("`{o}`"))
                        ))
                    }
                }
            }
            _ => (Dir::Any, t),
        };
        let mut arg = |what: &str| {
            self.next()
                .ok_or_else(|| FilterError {
                    message: format!("`{what}` needs a value"),
                })
                .map(|s| s.to_string())
        };
        Ok(match t.as_str() {
            "host" => {
                let a = arg("host")?;
                Expr::Host(
                    dir,
                    a.parse().map_err(|_| FilterError {
                        message: format!("`host {a}`: not an IP address (names are not looked up)"),
                    })?,
                )
            }
            "net" => {
                let a = arg("net")?;
                let n: IpNet = a.parse().map_err(|_| FilterError {
                    message: format!("`net {a}`: not an address/prefix like 10.0.0.0/8"),
                })?;
                if n.trunc() != n {
                    return err(format!(
                        "`net {a}`: host bits are set; did you mean {}?",
                        n.trunc()
                    ));
                }
                Expr::Net(dir, n)
            }
            "port" => {
                let a = arg("port")?;
                Expr::Port(
                    dir,
                    a.parse().map_err(|_| FilterError {
                        message: format!("`port {a}`: not a port number 0-65535"),
                    })?,
                )
            }
            "tcp" => Expr::Tcp,
            "udp" => Expr::Udp,
            "icmp" => Expr::Icmp,
            "icmp6" => Expr::Icmp6,
            "arp" => Expr::Arp,
            "ip" => Expr::Ip,
            "ip6" => Expr::Ip6,
            "vlan" => {
                let id = match self.peek().and_then(|s| s.parse::<u16>().ok()) {
                    Some(id) if id < 4096 => {
                        self.pos += 1;
                        Some(id)
                    }
                    Some(id) => return err(format!("`vlan {id}`: VLAN IDs are 0-4095")),
                    None => None,
                };
                Expr::Vlan(id)
            }
            other => {
                return err(format!(
                "`{other}` is not part of weft's filter language; it knows host, net, port (with src/dst), tcp, udp, icmp, icmp6, arp, ip, ip6, vlan [ID], and, or, not, ( )"
            ))
            }
        })
    }
}

/// The tests a filter is made of; each compiles to a load and a jump.
#[derive(Debug, Clone)]
enum Atom {
    True,
    False,
    EtherType(u16),
    /// IPv4 protocol field (the caller checked IPv4).
    Ip4Proto(u8),
    /// IPv6 next header, or the one behind a fragment header if `frag`.
    Ip6Proto(u8, bool),
    /// 32-bit word at the network header + off, masked, equals.
    Word(u32, u32, u32),
    NotFrag4,
    /// Port (0: source, 2: destination) behind a variable-length IPv4 header.
    Port4(u32, u16),
    /// Port behind a fixed IPv6 header.
    Port6(u32, u16),
    VlanPresent,
    VlanId(u16),
}

enum Tree {
    Atom(Atom),
    And(Box<Tree>, Box<Tree>),
    Or(Box<Tree>, Box<Tree>),
    Not(Box<Tree>),
}

fn and(a: Tree, b: Tree) -> Tree {
    Tree::And(Box::new(a), Box::new(b))
}
fn or(a: Tree, b: Tree) -> Tree {
    Tree::Or(Box::new(a), Box::new(b))
}
fn atom(a: Atom) -> Tree {
    Tree::Atom(a)
}
fn any_of(v: Vec<Tree>) -> Tree {
    v.into_iter().reduce(or).unwrap_or(atom(Atom::False))
}

const ETH_IP: u16 = 0x0800;
const ETH_IP6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
const ETH_RARP: u16 = 0x8035;

fn dirs(d: Dir, src: Tree, dst: impl FnOnce() -> Tree) -> Tree {
    match d {
        Dir::Src => src,
        Dir::Dst => dst(),
        Dir::Any => or(src, dst()),
    }
}

/// Words of an IPv6 prefix: (offset in the address, mask, value).
fn v6_words(a: std::net::Ipv6Addr, len: u8) -> Vec<(u32, u32, u32)> {
    let o = a.octets();
    let mut v = Vec::new();
    for w in 0..4u32 {
        let bits = (len as i32 - 32 * w as i32).clamp(0, 32) as u32;
        if bits == 0 {
            break;
        }
        let mask = if bits == 32 {
            u32::MAX
        } else {
            !(u32::MAX >> bits)
        };
        let i = 4 * w as usize;
        let val = u32::from_be_bytes(o[i..i + 4].try_into().unwrap()) & mask;
        v.push((4 * w, mask, val));
    }
    v
}

fn addr_tree(d: Dir, net: IpNet) -> Tree {
    match net {
        IpNet::V4(n) => {
            let mask = u32::from(n.netmask());
            let val = u32::from(n.network());
            let ip = |off| atom(Atom::Word(off, mask, val));
            let arp = |off| atom(Atom::Word(off, mask, val));
            any_of(vec![
                and(atom(Atom::EtherType(ETH_IP)), dirs(d, ip(12), || ip(16))),
                and(atom(Atom::EtherType(ETH_ARP)), dirs(d, arp(14), || arp(24))),
                and(
                    atom(Atom::EtherType(ETH_RARP)),
                    dirs(d, arp(14), || arp(24)),
                ),
            ])
        }
        IpNet::V6(n) => {
            let words = |base: u32| {
                v6_words(n.network(), n.prefix_len())
                    .into_iter()
                    .map(|(o, m, v)| atom(Atom::Word(base + o, m, v)))
                    .reduce(and)
                    .unwrap_or(atom(Atom::True))
            };
            and(
                atom(Atom::EtherType(ETH_IP6)),
                dirs(d, words(8), || words(24)),
            )
        }
    }
}

fn lower(e: &Expr) -> Tree {
    let ip = || atom(Atom::EtherType(ETH_IP));
    let ip6 = || atom(Atom::EtherType(ETH_IP6));
    let proto = |p: u8| {
        or(
            and(ip(), atom(Atom::Ip4Proto(p))),
            and(ip6(), atom(Atom::Ip6Proto(p, true))),
        )
    };
    match e {
        Expr::And(a, b) => and(lower(a), lower(b)),
        Expr::Or(a, b) => or(lower(a), lower(b)),
        Expr::Not(a) => Tree::Not(Box::new(lower(a))),
        Expr::Host(d, a) => addr_tree(*d, IpNet::from(*a)),
        Expr::Net(d, n) => addr_tree(*d, *n),
        Expr::Port(d, p) => {
            let l4 = [132u8, 6, 17];
            let p4 = any_of(l4.iter().map(|&x| atom(Atom::Ip4Proto(x))).collect());
            let p6 = any_of(l4.iter().map(|&x| atom(Atom::Ip6Proto(x, false))).collect());
            or(
                and(
                    ip6(),
                    and(
                        p6,
                        dirs(*d, atom(Atom::Port6(0, *p)), || atom(Atom::Port6(2, *p))),
                    ),
                ),
                and(
                    ip(),
                    and(
                        p4,
                        and(
                            atom(Atom::NotFrag4),
                            dirs(*d, atom(Atom::Port4(0, *p)), || atom(Atom::Port4(2, *p))),
                        ),
                    ),
                ),
            )
        }
        Expr::Tcp => proto(6),
        Expr::Udp => proto(17),
        Expr::Icmp => and(ip(), atom(Atom::Ip4Proto(1))),
        Expr::Icmp6 => and(ip6(), atom(Atom::Ip6Proto(58, true))),
        Expr::Arp => atom(Atom::EtherType(ETH_ARP)),
        Expr::Ip => ip(),
        Expr::Ip6 => ip6(),
        Expr::Vlan(None) => atom(Atom::VlanPresent),
        Expr::Vlan(Some(id)) => atom(Atom::VlanId(*id)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

enum Op {
    Stmt(Insn),
    Jump {
        code: u16,
        k: u32,
        t: Label,
        f: Label,
    },
    Goto(Label),
    Place(Label),
}

struct Gen {
    ops: Vec<Op>,
    labels: usize,
    l3: u32,
    link: Link,
}

impl Gen {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Stmt(Insn::stmt(code, k)));
    }
    fn jeq(&mut self, k: u32, t: Label, f: Label) {
        self.ops.push(Op::Jump {
            code: bpf::JMP | bpf::JEQ | bpf::K,
            k,
            t,
            f,
        });
    }
    fn tree(&mut self, tr: &Tree, t: Label, f: Label) {
        match tr {
            Tree::And(a, b) => {
                let mid = self.label();
                self.tree(a, mid, f);
                self.ops.push(Op::Place(mid));
                self.tree(b, t, f);
            }
            Tree::Or(a, b) => {
                let mid = self.label();
                self.tree(a, t, mid);
                self.ops.push(Op::Place(mid));
                self.tree(b, t, f);
            }
            Tree::Not(a) => self.tree(a, f, t),
            Tree::Atom(a) => self.atom(a, t, f),
        }
    }
    fn atom(&mut self, a: &Atom, t: Label, f: Label) {
        use bpf::*;
        let l3 = self.l3;
        match *a {
            Atom::True => self.ops.push(Op::Goto(t)),
            Atom::False => self.ops.push(Op::Goto(f)),
            Atom::EtherType(ty) => match self.link {
                Link::Ethernet => {
                    self.stmt(LD | H | ABS, 12);
                    self.jeq(ty as u32, t, f);
                }
                // A bare IP packet says what it is in its version nibble.
                Link::RawIp => {
                    let v = match ty {
                        ETH_IP => 0x40,
                        ETH_IP6 => 0x60,
                        _ => return self.ops.push(Op::Goto(f)),
                    };
                    self.stmt(LD | B | ABS, 0);
                    self.stmt(ALU | AND | K, 0xf0);
                    self.jeq(v, t, f);
                }
            },
            Atom::Ip4Proto(p) => {
                self.stmt(LD | B | ABS, l3 + 9);
                self.jeq(p as u32, t, f);
            }
            Atom::Ip6Proto(p, frag) => {
                self.stmt(LD | B | ABS, l3 + 6);
                if frag {
                    let behind = self.label();
                    self.jeq(p as u32, t, behind);
                    self.ops.push(Op::Place(behind));
                    let next = self.label();
                    self.jeq(44, next, f);
                    self.ops.push(Op::Place(next));
                    self.stmt(LD | B | ABS, l3 + 40);
                }
                self.jeq(p as u32, t, f);
            }
            Atom::Word(off, mask, val) => {
                self.stmt(LD | W | ABS, l3 + off);
                if mask != u32::MAX {
                    self.stmt(ALU | AND | K, mask);
                }
                self.jeq(val, t, f);
            }
            Atom::NotFrag4 => {
                self.stmt(LD | H | ABS, l3 + 6);
                self.ops.push(Op::Jump {
                    code: JMP | JSET | K,
                    k: 0x1fff,
                    t: f,
                    f: t,
                });
            }
            Atom::Port4(off, p) => {
                self.stmt(LDX | B | MSH, l3);
                self.stmt(LD | H | IND, l3 + off);
                self.jeq(p as u32, t, f);
            }
            Atom::Port6(off, p) => {
                self.stmt(LD | H | ABS, l3 + 40 + off);
                self.jeq(p as u32, t, f);
            }
            Atom::VlanPresent | Atom::VlanId(_) => {
                if self.link == Link::RawIp {
                    return self.ops.push(Op::Goto(f));
                }
                let (meta_v, inband) = (self.label(), self.label());
                self.stmt(LD | W | ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT);
                self.jeq(0, inband, meta_v);
                self.ops.push(Op::Place(meta_v));
                if let Atom::VlanId(id) = *a {
                    self.stmt(LD | W | ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG);
                    self.stmt(ALU | AND | K, 0x0fff);
                    self.jeq(id as u32, t, f);
                } else {
                    self.ops.push(Op::Goto(t));
                }
                // A tag the kernel left in the frame (for example the inner
                // one of a double-tagged frame).
                self.ops.push(Op::Place(inband));
                let (tagged, q) = (self.label(), self.label());
                self.stmt(LD | H | ABS, 12);
                self.jeq(0x8100, tagged, q);
                self.ops.push(Op::Place(q));
                self.jeq(0x88a8, tagged, f);
                self.ops.push(Op::Place(tagged));
                if let Atom::VlanId(id) = *a {
                    self.stmt(LD | H | ABS, 14);
                    self.stmt(ALU | AND | K, 0x0fff);
                    self.jeq(id as u32, t, f);
                } else {
                    self.ops.push(Op::Goto(t));
                }
            }
        }
    }
}

/// Compile a filter for a capture point. The program accepts a packet by
/// returning [`SNAPLEN`] and drops it by returning 0.
pub fn compile(e: &Expr, link: Link) -> Result<Vec<Insn>, FilterError> {
    let mut g = Gen {
        ops: Vec::new(),
        labels: 0,
        l3: if link == Link::Ethernet { 14 } else { 0 },
        link,
    };
    let (t, f) = (g.label(), g.label());
    g.tree(&lower(e), t, f);
    g.ops.push(Op::Place(t));
    g.ops.push(Op::Stmt(Insn::stmt(bpf::RET | bpf::K, SNAPLEN)));
    g.ops.push(Op::Place(f));
    g.ops.push(Op::Stmt(Insn::stmt(bpf::RET | bpf::K, 0)));
    // A jump to the very next instruction is dropped, which turns the
    // `Goto`s that join branches into nothing.
    let mut ops = g.ops;
    loop {
        let pos = positions(&ops, g.labels);
        let mut at = 0;
        let mut removed = false;
        ops.retain(|o| {
            let keep = match o {
                Op::Goto(l) => pos[l.0] != at + 1,
                _ => true,
            };
            if !matches!(o, Op::Place(_)) {
                at += 1;
            }
            if !keep {
                // Later positions shift; recompute on the next pass.
                removed = true;
                at -= 1;
            }
            keep
        });
        if !removed {
            break;
        }
    }
    let pos = positions(&ops, g.labels);
    let mut out = Vec::new();
    for o in &ops {
        let here = out.len();
        let rel = |l: &Label| pos[l.0] - here - 1;
        match o {
            Op::Place(_) => {}
            Op::Stmt(i) => out.push(*i),
            Op::Goto(l) => out.push(Insn::stmt(bpf::JMP | bpf::JA, rel(l) as u32)),
            Op::Jump { code, k, t, f } => {
                let (jt, jf) = (rel(t), rel(f));
                if jt > 255 || jf > 255 {
                    return err(
                        "the filter is too long for classic BPF's short jumps; split it or simplify it",
                    );
                }
                out.push(Insn {
                    code: *code,
                    jt: jt as u8,
                    jf: jf as u8,
                    k: *k,
                });
            }
        }
    }
    if out.len() > 4096 {
        return err("the filter compiles to more than 4096 instructions");
    }
    Ok(out)
}

fn positions(ops: &[Op], labels: usize) -> Vec<usize> {
    let mut pos = vec![usize::MAX; labels];
    let mut at = 0;
    // Removing a Goto uses positions computed before it; a Goto's label is
    // always after it, so a stale position only delays a removal to the
    // next pass.
    for o in ops {
        match o {
            Op::Place(l) => pos[l.0] = at,
            _ => at += 1,
        }
    }
    pos
}

/// `tcpdump -d`-style listing, for `weft capture --show-filter`.
pub fn listing(prog: &[Insn]) -> String {
    let mut s = String::new();
    for (n, i) in prog.iter().enumerate() {
        s.push_str(&format!(
            "({n:03}) code {:#06x} jt {} jf {} k {:#x}\n",
            i.code, i.jt, i.jf, i.k
        ));
    }
    s
}

#[cfg(test)]
mod tests;
