//! A model of what the commands do to namespaces and devices, replayed
//! instead of run: `ip`, `brctl`, `tunctl`, `vconfig`, `ovs-vsctl`,
//! `sysctl`, `ifconfig`. It refuses what the kernel would refuse in a way
//! that means the script is wrong (an unknown namespace or device), and
//! keeps aside, with a warning, what it cannot express.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::shell::{self, Part, Stmt, Word};
use crate::{ImportError, Note, Origin, Warning};

/// The namespace the script starts in: the machine's own.
pub const ROOT: usize = 0;

#[derive(Debug, Clone, Default)]
pub struct BridgeOpts {
    /// The line that last set each option (by its key in the lab file).
    pub at: BTreeMap<&'static str, Origin>,
    pub stp: Option<bool>,
    pub forward_delay: Option<f64>,
    pub hello_time: Option<f64>,
    pub max_age: Option<f64>,
    pub ageing_time: Option<f64>,
    pub priority: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct TunOpts {
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub multi_queue: bool,
    pub pi: bool,
    pub vnet_hdr: bool,
}

#[derive(Debug, Clone)]
pub enum DevKind {
    Veth { peer: usize },
    Bridge(BridgeOpts),
    Tun(TunOpts),
    Tap(TunOpts),
    Vlan { parent: usize, id: u32 },
    Lo,
}

#[derive(Debug, Clone)]
pub struct Dev {
    pub name: String,
    pub ns: usize,
    pub kind: DevKind,
    pub addrs: Vec<(String, Origin)>,
    pub up: bool,
    pub master: Option<String>,
    pub mtu: Option<(u32, Origin)>,
    pub mac: Option<(String, Origin)>,
    /// STP path cost and port priority as a bridge port.
    pub cost: Option<u32>,
    pub port_priority: Option<u32>,
    pub origin: Origin,
    pub alive: bool,
}

#[derive(Debug, Clone)]
pub struct Ns {
    pub name: String,
    pub origin: Option<Origin>,
    pub alive: bool,
    /// `ip route` arguments, in weft's route syntax.
    pub routes: Vec<(String, Origin)>,
    pub sysctls: BTreeMap<String, (String, Origin)>,
    /// Holds only OVS ports (containerlab's ovs-bridge): not a node.
    pub hidden: bool,
    /// Written as a `kind = "bridge"` node (containerlab's bridge kind).
    pub bridge_node: bool,
    /// Extra lines for the node's table (comments, keys), with origins.
    pub extra: Vec<(String, Option<Origin>)>,
}

#[derive(Debug, Clone)]
pub struct OvsPort {
    pub dev: usize,
    pub vlan: Option<u32>,
    pub trunk: Vec<u32>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Ovs {
    pub name: String,
    pub ns: usize,
    pub origin: Origin,
    pub ports: Vec<OvsPort>,
    pub stp: Option<String>,
    pub alive: bool,
}

/// How a command was taken.
enum Flow {
    Done,
    /// Nothing to import (shows or tests something): a comment, no warning.
    Note(String),
    /// Not expressible: a comment and a warning.
    Skip(String),
}

type R = Result<Flow, ImportError>;

/// A device an earlier line named but the import left out: the lines that
/// use it are skipped too, with this as the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{name}` was not imported ({why})")]
struct NotImported {
    name: String,
    why: String,
}

impl From<NotImported> for String {
    fn from(n: NotImported) -> String {
        n.to_string()
    }
}

/// Reads `ip -batch FILE` files (the importer does no I/O itself).
pub type Resolver<'a> = &'a dyn Fn(&str) -> Option<String>;

pub struct Model<'a> {
    pub ns: Vec<Ns>,
    pub devs: Vec<Dev>,
    pub ovs: Vec<Ovs>,
    /// Devices set aside (their kind is not modelled): (ns, name) -> why.
    skipped: HashMap<(usize, String), String>,
    pub notes: Vec<Note>,
    pub warnings: Vec<Warning>,
    env: HashMap<String, String>,
    resolver: Resolver<'a>,
}

fn err(o: &Origin, message: impl Into<String>) -> ImportError {
    ImportError {
        origin: Some(o.clone()),
        message: message.into(),
        help: None,
    }
}

fn err_help(o: &Origin, message: impl Into<String>, help: impl Into<String>) -> ImportError {
    ImportError {
        origin: Some(o.clone()),
        message: message.into(),
        help: Some(help.into()),
    }
}

/// iproute2 matches a keyword by prefix, first in its own order.
fn pick<'k>(word: &str, order: &[&'k str]) -> Option<&'k str> {
    if word.is_empty() {
        return None;
    }
    order.iter().copied().find(|k| k.starts_with(word))
}

fn parse_u32(o: &Origin, what: &str, v: Option<&String>) -> Result<u32, ImportError> {
    let v = v.ok_or_else(|| err(o, format!("`{what}` needs a value")))?;
    v.parse()
        .map_err(|_| err(o, format!("`{what} {v}`: `{v}` is not a number")))
}

fn on_off(o: &Origin, what: &str, v: Option<&String>) -> Result<bool, ImportError> {
    match v.map(String::as_str) {
        Some("on" | "yes" | "1" | "true") => Ok(true),
        Some("off" | "no" | "0" | "false") => Ok(false),
        other => Err(err(
            o,
            format!("`{what}` takes on or off, not `{}`", other.unwrap_or("")),
        )),
    }
}

impl<'a> Model<'a> {
    pub fn new(resolver: Resolver<'a>) -> Self {
        let mut m = Model {
            ns: vec![Ns {
                name: String::new(),
                origin: None,
                alive: true,
                routes: vec![],
                sysctls: BTreeMap::new(),
                hidden: false,
                bridge_node: false,
                extra: vec![],
            }],
            devs: vec![],
            ovs: vec![],
            skipped: HashMap::new(),
            notes: vec![],
            warnings: vec![],
            env: HashMap::new(),
            resolver,
        };
        m.add_lo(
            ROOT,
            Origin {
                file: None,
                line: 0,
            },
        );
        m
    }

    fn add_lo(&mut self, ns: usize, origin: Origin) {
        self.devs.push(Dev {
            name: "lo".into(),
            ns,
            kind: DevKind::Lo,
            addrs: vec![],
            up: false,
            master: None,
            mtu: None,
            mac: None,
            cost: None,
            port_priority: None,
            origin,
            alive: true,
        });
    }

    /// Make a namespace (also used by the containerlab reader).
    pub fn add_ns(&mut self, name: &str, o: &Origin) -> Result<usize, ImportError> {
        if let Some(i) = self
            .ns
            .iter()
            .position(|n| n.alive && n.name == name && !name.is_empty())
        {
            let at = self.ns[i]
                .origin
                .as_ref()
                .map(|o| format!(" (made at {o})"))
                .unwrap_or_default();
            return Err(err(o, format!("namespace `{name}` already exists{at}; ip would say: Cannot create namespace file \"/run/netns/{name}\": File exists")));
        }
        self.ns.push(Ns {
            name: name.to_string(),
            origin: Some(o.clone()),
            alive: true,
            routes: vec![],
            sysctls: BTreeMap::new(),
            hidden: false,
            bridge_node: false,
            extra: vec![],
        });
        let i = self.ns.len() - 1;
        self.add_lo(i, o.clone());
        Ok(i)
    }

    pub fn ns_desc(&self, ns: usize) -> String {
        if ns == ROOT {
            "the machine's own namespace".into()
        } else {
            format!("namespace `{}`", self.ns[ns].name)
        }
    }

    fn ns_named(&self, name: &str, o: &Origin) -> Result<usize, ImportError> {
        self.ns
            .iter()
            .position(|n| n.alive && !n.hidden && n.name == name && !name.is_empty())
            .ok_or_else(|| {
                let known: Vec<&str> = self.ns.iter().filter(|n| n.alive && !n.name.is_empty() && !n.hidden).map(|n| n.name.as_str()).collect();
                err_help(
                    o,
                    format!("there is no namespace `{name}` at this point (ip would say: Cannot open network namespace \"{name}\": No such file or directory)"),
                    if known.is_empty() {
                        "add it first with `ip netns add` (no namespace exists yet)".to_string()
                    } else {
                        format!("add it first with `ip netns add {name}`, or use one of the namespaces made so far: {}", known.join(", "))
                    },
                )
            })
    }

    fn find(&self, ns: usize, name: &str) -> Option<usize> {
        self.devs
            .iter()
            .position(|d| d.alive && d.ns == ns && d.name == name)
    }

    /// A device by name, or why it cannot be used.
    fn dev(
        &self,
        ns: usize,
        name: &str,
        o: &Origin,
    ) -> Result<Result<usize, NotImported>, ImportError> {
        if let Some(i) = self.find(ns, name) {
            return Ok(Ok(i));
        }
        if let Some(why) = self.skipped.get(&(ns, name.to_string())) {
            return Ok(Err(NotImported {
                name: name.to_string(),
                why: why.clone(),
            }));
        }
        let elsewhere: Vec<String> = self
            .devs
            .iter()
            .filter(|d| d.alive && d.name == name && !self.ns[d.ns].hidden)
            .map(|d| self.ns_desc(d.ns))
            .collect();
        let help = if elsewhere.is_empty() {
            format!("create `{name}` before this line (ip link add / ip tuntap add / brctl addbr), or check its spelling")
        } else {
            format!(
                "`{name}` is in {}: run the command there (ip -n NS / ip netns exec NS)",
                elsewhere.join(" and ")
            )
        };
        Err(err_help(
            o,
            format!("there is no device `{name}` in {} at this point (ip would say: Cannot find device \"{name}\")", self.ns_desc(ns)),
            help,
        ))
    }

    fn new_dev(
        &mut self,
        ns: usize,
        name: &str,
        kind: DevKind,
        o: &Origin,
    ) -> Result<usize, ImportError> {
        if let Err(why) = weft_topo::file::check_iface_name(name) {
            return Err(err(o, format!("interface name `{name}`: {why}")));
        }
        if let Some(i) = self.find(ns, name) {
            return Err(err(
                o,
                format!("{} already has a device `{name}` (made at {}); ip would say: RTNETLINK answers: File exists", self.ns_desc(ns), self.devs[i].origin),
            ));
        }
        self.skipped.remove(&(ns, name.to_string()));
        self.devs.push(Dev {
            name: name.to_string(),
            ns,
            kind,
            addrs: vec![],
            up: false,
            master: None,
            mtu: None,
            mac: None,
            cost: None,
            port_priority: None,
            origin: o.clone(),
            alive: true,
        });
        Ok(self.devs.len() - 1)
    }

    /// Add a veth pair (also used by the containerlab reader).
    pub fn add_veth(
        &mut self,
        a: (usize, &str),
        b: (usize, &str),
        o: &Origin,
    ) -> Result<(usize, usize), ImportError> {
        if a == b {
            return Err(err(
                o,
                format!("a veth pair needs two names; both ends are `{}`", a.1),
            ));
        }
        let i = self.new_dev(a.0, a.1, DevKind::Lo, o)?;
        let j = match self.new_dev(b.0, b.1, DevKind::Veth { peer: i }, o) {
            Ok(j) => j,
            Err(e) => {
                self.devs[i].alive = false;
                return Err(e);
            }
        };
        self.devs[i].kind = DevKind::Veth { peer: j };
        Ok((i, j))
    }

    /// Add a bridge device (also used by the containerlab reader).
    pub fn add_bridge(&mut self, ns: usize, name: &str, o: &Origin) -> Result<usize, ImportError> {
        self.new_dev(ns, name, DevKind::Bridge(BridgeOpts::default()), o)
    }

    pub fn set_up(&mut self, dev: usize) {
        self.devs[dev].up = true;
    }

    /// Delete a device as the kernel does: a veth takes its peer along, a
    /// bridge releases its ports, VLANs on it go too, routes through it go.
    fn delete(&mut self, i: usize) {
        if !self.devs[i].alive {
            return;
        }
        self.devs[i].alive = false;
        let (ns, name) = (self.devs[i].ns, self.devs[i].name.clone());
        self.drop_routes(ns, &name);
        match self.devs[i].kind.clone() {
            DevKind::Veth { peer } => self.delete(peer),
            DevKind::Bridge(_) => {
                for d in self.devs.iter_mut().filter(|d| d.alive && d.ns == ns) {
                    if d.master.as_deref() == Some(&name) {
                        d.master = None;
                    }
                }
            }
            _ => {}
        }
        let vlans: Vec<usize> = (0..self.devs.len())
            .filter(|&k| {
                self.devs[k].alive
                    && matches!(self.devs[k].kind, DevKind::Vlan { parent, .. } if parent == i)
            })
            .collect();
        for v in vlans {
            self.delete(v);
        }
        for b in &mut self.ovs {
            b.ports.retain(|p| p.dev != i);
        }
    }

    fn drop_routes(&mut self, ns: usize, dev: &str) {
        self.ns[ns].routes.retain(|(r, _)| {
            let w: Vec<&str> = r.split_whitespace().collect();
            !w.windows(2)
                .any(|p| (p[0] == "dev" || p[0] == "oif") && p[1] == dev)
        });
    }

    // ---------------------------------------------------------------- replay

    /// Replay statements in namespace `ns`.
    pub fn run(&mut self, stmts: &[Stmt], ns: usize) -> Result<(), ImportError> {
        for s in stmts {
            match s {
                Stmt::Unsupported { origin, text, why } => {
                    self.skip_note(origin, text, why);
                }
                Stmt::For {
                    origin,
                    var,
                    list,
                    body,
                } => {
                    let mut items = Vec::new();
                    for w in list {
                        items.extend(self.expand(w, origin)?);
                    }
                    let saved = self.env.get(var).cloned();
                    for it in items {
                        self.env.insert(var.clone(), it);
                        self.run(body, ns)?;
                    }
                    match saved {
                        Some(v) => self.env.insert(var.clone(), v),
                        None => self.env.remove(var),
                    };
                }
                Stmt::Cmd {
                    origin,
                    words,
                    out,
                    stdin,
                    text,
                } => {
                    // Assignments before a command, or alone (also after
                    // `export`/`readonly`/`local`, which here only set).
                    let words: &[Word] = match words.first().and_then(Word::literal).as_deref() {
                        Some("export" | "readonly" | "local") if words.len() > 1 => &words[1..],
                        _ => words,
                    };
                    let mut k = 0;
                    let mut assigns = Vec::new();
                    while k < words.len() {
                        match assignment(&words[k]) {
                            Some((n, v)) => assigns.push((n, v)),
                            None => break,
                        }
                        k += 1;
                    }
                    if k == words.len() {
                        for (n, v) in assigns {
                            let mut val = String::new();
                            for p in &v.0 {
                                match p {
                                    Part::Lit(l) => val.push_str(l),
                                    Part::Var { name, .. } => {
                                        val.push_str(&self.var(name, origin)?)
                                    }
                                }
                            }
                            self.env.insert(n, val);
                        }
                        continue;
                    }
                    let mut argv = Vec::new();
                    for w in &words[k..] {
                        argv.extend(self.expand(w, origin)?);
                    }
                    let out = match out {
                        Some(w) => Some(self.expand(w, origin)?.join(" ")),
                        None => None,
                    };
                    self.command(ns, &argv, out.as_deref(), stdin.as_deref(), origin, text)?;
                }
            }
        }
        Ok(())
    }

    fn var(&self, name: &str, o: &Origin) -> Result<String, ImportError> {
        if let Some(c) = name
            .chars()
            .next()
            .filter(|c| !c.is_ascii_alphabetic() && *c != '_')
        {
            let why = match c {
                '?' => "is the exit status of the command before, and weft import runs no command",
                '$' | '!' => "is a process id, known only when the script runs",
                _ => "is an argument of the script, and weft import reads it without arguments",
            };
            return Err(err_help(
                o,
                format!("`${c}` {why}"),
                "write the value out, or set a variable at the top (NAME=value) and use that",
            ));
        }
        self.env.get(name).cloned().ok_or_else(|| {
            err_help(
                o,
                format!("variable `{name}` is not set at this point"),
                format!("set it earlier in the script ({name}=value); weft import does not read the environment"),
            )
        })
    }

    fn expand(&self, w: &Word, o: &Origin) -> Result<Vec<String>, ImportError> {
        let mut out: Vec<String> = vec![];
        let mut cur: Option<String> = None;
        for p in &w.0 {
            match p {
                Part::Lit(l) => cur.get_or_insert_with(String::new).push_str(l),
                Part::Var { name, quoted: true } => cur
                    .get_or_insert_with(String::new)
                    .push_str(&self.var(name, o)?),
                Part::Var {
                    name,
                    quoted: false,
                } => {
                    let v = self.var(name, o)?;
                    let mut fields = v.split_whitespace().peekable();
                    if v.starts_with(char::is_whitespace) {
                        if let Some(c) = cur.take() {
                            out.push(c);
                        }
                    }
                    while let Some(f) = fields.next() {
                        cur.get_or_insert_with(String::new).push_str(f);
                        if fields.peek().is_some() {
                            out.push(cur.take().unwrap());
                        }
                    }
                    if v.ends_with(char::is_whitespace) {
                        if let Some(c) = cur.take() {
                            out.push(c);
                        }
                    }
                }
            }
        }
        if let Some(c) = cur {
            out.push(c);
        }
        Ok(out)
    }

    fn note(&mut self, o: &Origin, text: &str, why: &str) {
        self.notes.push(Note {
            origin: o.clone(),
            text: text.to_string(),
            why: why.to_string(),
            warned: false,
        });
    }

    fn skip_note(&mut self, o: &Origin, text: &str, why: &str) {
        self.notes.push(Note {
            origin: o.clone(),
            text: text.to_string(),
            why: why.to_string(),
            warned: true,
        });
        self.warnings.push(Warning {
            origin: Some(o.clone()),
            message: format!("not imported: {why}"),
        });
    }

    /// Run one command (after expansion) in namespace `ns`.
    fn command(
        &mut self,
        ns: usize,
        argv: &[String],
        out: Option<&str>,
        stdin: Option<&str>,
        o: &Origin,
        text: &str,
    ) -> Result<(), ImportError> {
        let flow = self.dispatch(ns, argv, out, stdin, o)?;
        match flow {
            Flow::Done => {}
            Flow::Note(why) => self.note(o, text, &why),
            Flow::Skip(why) => self.skip_note(o, text, &why),
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        ns: usize,
        argv: &[String],
        out: Option<&str>,
        stdin: Option<&str>,
        o: &Origin,
    ) -> R {
        let mut argv = argv;
        // `sudo [-E] CMD`, `exec CMD`, `command CMD`: the command itself.
        while let Some(first) = argv.first() {
            if first == "sudo" || first == "command" || first == "exec" {
                argv = &argv[1..];
                while argv.first().is_some_and(|a| a.starts_with('-')) {
                    argv = &argv[1..];
                }
            } else {
                break;
            }
        }
        let Some(prog) = argv.first() else {
            return Ok(Flow::Note("empty command".into()));
        };
        let prog = prog.rsplit('/').next().unwrap_or(prog).to_string();
        let args = &argv[1..];
        let out_devnull = out.is_none_or(|t| t == "/dev/null");
        match prog.as_str() {
            "ip" => self.ip(ns, args, stdin, o),
            "brctl" => self.brctl(ns, args, o),
            "tunctl" => self.tunctl(ns, args, o),
            "vconfig" => self.vconfig(ns, args, o),
            "ovs-vsctl" => self.ovs_vsctl(ns, args, o),
            "sysctl" => self.sysctl(ns, args, o),
            "ifconfig" => self.ifconfig(ns, args, o),
            "echo" | "printf" if out.is_some_and(|t| t.starts_with("/sys/class/net/")) => {
                let val = args.iter().filter(|a| !a.starts_with('-')).cloned().collect::<Vec<_>>().join(" ");
                self.sysfs(ns, out.unwrap(), &val, o)
            }
            "echo" | "printf" if out.is_some_and(|t| t.starts_with("/proc/sys/")) => {
                let key = out.unwrap().trim_start_matches("/proc/sys/").replace('/', ".");
                let val = args.iter().filter(|a| !a.starts_with('-')).cloned().collect::<Vec<_>>().join(" ");
                self.set_sysctl(ns, &key, &val, o)
            }
            "sh" | "bash" | "dash" if args.first().map(String::as_str) == Some("-c") => {
                let Some(script) = args.get(1) else {
                    return Err(err(o, "`sh -c` needs a command string"));
                };
                let stmts = shell::parse(script, o.file.as_deref()).map_err(|e| err(o, format!("in `{prog} -c`: {}", e.message)))?;
                let stmts = relocate(stmts, o);
                self.run(&stmts, ns)?;
                Ok(Flow::Done)
            }
            "nsenter" => {
                let mut k = 0;
                let mut target = None;
                while k < args.len() && args[k].starts_with('-') {
                    let a = &args[k];
                    if let Some(p) = a.strip_prefix("--net=").or_else(|| a.strip_prefix("-n")) {
                        if !p.is_empty() {
                            target = Some(p.to_string());
                        }
                    }
                    k += 1;
                }
                let Some(path) = target else {
                    return Ok(Flow::Skip("`nsenter` is read only as `nsenter --net=/run/netns/NS CMD`".into()));
                };
                let name = path.trim_start_matches("/var").trim_start_matches("/run/netns/").to_string();
                let target = self.ns_named(&name, o)?;
                self.dispatch(target, &args[k..], out, stdin, o)
            }
            "set" | "true" | ":" | "export" | "shopt" | "trap" => Ok(Flow::Note("shell setting: nothing to import".into())),
            "modprobe" => Ok(Flow::Note("loads a kernel module: weft loads none (docs/topology.md lists what the kernel needs)".into())),
            "bridge" => {
                let shows = args.first().is_some_and(|a| pick(a, &["link", "fdb", "mdb", "vlan", "monitor"]).is_some())
                    && args.get(1).is_none_or(|s| pick(s, &["show", "list"]).is_some());
                if shows {
                    Ok(Flow::Note("shows something: nothing to import (`weft status`)".into()))
                } else {
                    Ok(Flow::Skip(
                        "`bridge` changes (fdb, vlan, link set) are not modelled: a port's cost and priority are `brctl setpathcost`/`setportprio` or `ip link set ... type bridge_slave`; VLANs and static MACs are a weft switch's (docs/switch.md)".into(),
                    ))
                }
            }
            "ping" | "ping6" | "arping" | "tcpdump" | "tshark" | "traceroute" | "tracepath" | "cat" | "sleep" | "echo" | "printf" | "ls"
            | "grep" | "ss" | "netstat" | "arp" | "route" | "wait" | "lsmod" | "ethtool" | "iperf" | "iperf3" | "nc" | "curl" | "wget" | "mtr" => {
                if out_devnull {
                    Ok(Flow::Note("shows or tests something: nothing to import (try it on the lab with `weft exec`)".into()))
                } else {
                    Ok(Flow::Skip(format!("`{prog}` writing to a file is not replayed")))
                }
            }
            "ip6tables" | "iptables" | "nft" | "tc" | "ebtables" | "iptables-legacy" => Ok(Flow::Skip(format!(
                "`{prog}` rules are not modelled; weft's own NAT and port forwards are `[nat.NODE]` (docs/topology.md), run others with `weft exec`"
            ))),
            _ => Ok(Flow::Skip(format!("`{prog}` is a program weft import does not model; run it in the lab with `weft exec`"))),
        }
    }

    // ------------------------------------------------------------------- ip

    fn ip(&mut self, mut ns: usize, args: &[String], stdin: Option<&str>, o: &Origin) -> R {
        let mut k = 0;
        let mut family6 = false;
        let mut batch: Option<String> = None;
        while k < args.len() && args[k].starts_with('-') && args[k].len() > 1 {
            let opt = args[k].trim_start_matches('-');
            match opt {
                "n" | "netns" => {
                    let name = args
                        .get(k + 1)
                        .ok_or_else(|| err(o, "`ip -n` needs a namespace name"))?;
                    ns = self.ns_named(name, o)?;
                    k += 2;
                    continue;
                }
                "b" | "batch" => {
                    batch = Some(
                        args.get(k + 1)
                            .ok_or_else(|| err(o, "`ip -batch` needs a file name"))?
                            .clone(),
                    );
                    k += 2;
                    continue;
                }
                "6" => family6 = true,
                "4" | "0" | "d" | "details" | "s" | "stats" | "statistics" | "br" | "brief"
                | "c" | "color" | "j" | "json" | "p" | "pretty" | "o" | "oneline" | "force"
                | "h" | "human" | "iec" | "t" | "timestamp" => {}
                "f" | "family" => {
                    family6 = args.get(k + 1).map(String::as_str) == Some("inet6");
                    k += 2;
                    continue;
                }
                _ if opt.starts_with("color") => {}
                "a" | "all" => return Ok(Flow::Skip("`ip -all` is not replayed".into())),
                _ => {
                    return Err(err(
                        o,
                        format!("`ip {}`: an option weft import does not know", args[k]),
                    ))
                }
            }
            k += 1;
        }
        if let Some(file) = batch {
            let text = if file == "-" {
                stdin.map(str::to_string).ok_or_else(|| err(o, "`ip -batch -` reads standard input, and this command has none (use a here-document: ip -batch - <<EOF)"))?
            } else {
                (self.resolver)(&file).ok_or_else(|| err(o, format!("cannot read the `ip -batch` file `{file}` (a path relative to the script's directory)")))?
            };
            let fname = if file == "-" {
                None
            } else {
                Some(file.clone())
            };
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let bo = match &fname {
                    Some(f) => Origin {
                        file: Some(f.clone()),
                        line: n + 1,
                    },
                    None => Origin {
                        file: o.file.clone(),
                        line: o.line + 1 + n,
                    },
                };
                let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                let flow = self.ip_object(ns, family6, &words, &bo)?;
                match flow {
                    Flow::Done => {}
                    Flow::Note(why) => self.note(&bo, line, &why),
                    Flow::Skip(why) => self.skip_note(&bo, line, &why),
                }
            }
            return Ok(Flow::Done);
        }
        self.ip_object(ns, family6, &args[k..], o)
    }

    fn ip_object(&mut self, ns: usize, family6: bool, args: &[String], o: &Origin) -> R {
        const OBJECTS: &[&str] = &[
            "address",
            "addrlabel",
            "maddress",
            "route",
            "rule",
            "neighbor",
            "neighbour",
            "ntable",
            "link",
            "l2tp",
            "fou",
            "ila",
            "macsec",
            "tunnel",
            "tunl",
            "tuntap",
            "tap",
            "token",
            "tcpmetrics",
            "monitor",
            "xfrm",
            "mroute",
            "mrule",
            "netns",
            "netconf",
            "vrf",
            "sr",
            "nexthop",
            "mptcp",
            "ioam",
            "stats",
        ];
        let Some(w) = args.first() else {
            return Err(err(
                o,
                "`ip` without an object (link, addr, route, netns, tuntap)",
            ));
        };
        let Some(obj) = pick(w, OBJECTS) else {
            return Err(err_help(
                o,
                format!("`ip {w}`: Object \"{w}\" is unknown (ip would say: try \"ip help\")"),
                "the objects are link, address, route, netns, tuntap, ... (`ip 1 ...` is a typo for `ip l ...` in one of the seed articles)",
            ));
        };
        let rest = &args[1..];
        match obj {
            "link" => self.ip_link(ns, rest, o),
            "address" => self.ip_addr(ns, family6, rest, o),
            "route" => self.ip_route(ns, family6, rest, o),
            "netns" => self.ip_netns(rest, o),
            "tuntap" | "tap" => self.ip_tuntap(ns, rest, o),
            _ if rest.is_empty()
                || rest
                    .first()
                    .and_then(|s| pick(s, &["show", "list", "lst"]))
                    .is_some() =>
            {
                Ok(Flow::Note("shows something: nothing to import".into()))
            }
            _ => Ok(Flow::Skip(format!(
                "`ip {obj}` is not modelled by weft import"
            ))),
        }
    }

    fn ip_netns(&mut self, args: &[String], o: &Origin) -> R {
        let sub = args.first().map(String::as_str).unwrap_or("list");
        let Some(sub) = pick(
            sub,
            &[
                "list", "show", "lst", "list-id", "add", "attach", "set", "delete", "identify",
                "pids", "exec", "monitor",
            ],
        ) else {
            return Err(err(o, format!("`ip netns {sub}`: unknown command")));
        };
        match sub {
            "add" => {
                let name = args
                    .get(1)
                    .ok_or_else(|| err(o, "`ip netns add` needs a name"))?;
                self.add_ns(name, o)?;
                Ok(Flow::Done)
            }
            "delete" => {
                let name = args
                    .get(1)
                    .ok_or_else(|| err(o, "`ip netns delete` needs a name"))?;
                let i = self.ns_named(name, o)?;
                self.ns[i].alive = false;
                let devs: Vec<usize> = (0..self.devs.len())
                    .filter(|&d| self.devs[d].alive && self.devs[d].ns == i)
                    .collect();
                for d in devs {
                    self.delete(d);
                }
                Ok(Flow::Done)
            }
            "exec" => {
                let name = args
                    .get(1)
                    .ok_or_else(|| err(o, "`ip netns exec` needs a namespace and a command"))?;
                let i = self.ns_named(name, o)?;
                self.dispatch(i, &args[2..], None, None, o)
            }
            "list" | "show" | "lst" | "list-id" | "identify" | "pids" | "monitor" => {
                Ok(Flow::Note("shows something: nothing to import".into()))
            }
            _ => Ok(Flow::Skip(format!("`ip netns {sub}` is not modelled"))),
        }
    }

    fn ip_link(&mut self, ns: usize, args: &[String], o: &Origin) -> R {
        let sub = args.first().map(String::as_str).unwrap_or("show");
        let Some(sub) = pick(
            sub,
            &[
                "add", "set", "change", "replace", "delete", "show", "lst", "list",
            ],
        ) else {
            return Err(err(
                o,
                format!("`ip link {sub}`: unknown command (add, set, delete, show)"),
            ));
        };
        let a = &args[1..];
        match sub {
            "add" => self.link_add(ns, a, o),
            "set" | "change" => self.link_set(ns, a, o),
            "delete" => {
                let mut name = None;
                let mut k = 0;
                while k < a.len() {
                    match a[k].as_str() {
                        "dev" => {
                            name = a.get(k + 1).cloned();
                            k += 1;
                        }
                        "type" | "group" => k += 1,
                        w if name.is_none() => name = Some(w.to_string()),
                        _ => {}
                    }
                    k += 1;
                }
                let name = name.ok_or_else(|| err(o, "`ip link delete` needs a device"))?;
                match self.dev(ns, &name, o)? {
                    Ok(i) => {
                        self.delete(i);
                        Ok(Flow::Done)
                    }
                    Err(why) => Ok(Flow::Skip(why.into())),
                }
            }
            "replace" => Ok(Flow::Skip("`ip link replace` is not modelled".into())),
            _ => Ok(Flow::Note("shows something: nothing to import".into())),
        }
    }

    fn link_add(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        let mut name: Option<String> = None;
        let mut parent: Option<String> = None;
        let mut target_ns = ns;
        let mut mtu = None;
        let mut mac = None;
        let mut up = false;
        let mut k = 0;
        let mut kind: Option<String> = None;
        while k < a.len() {
            let w = a[k].as_str();
            let v = a.get(k + 1);
            match w {
                "name" | "dev" => {
                    name = v.cloned();
                    k += 1;
                }
                "link" => {
                    parent = v.cloned();
                    k += 1;
                }
                "netns" => {
                    target_ns =
                        self.ns_named(v.ok_or_else(|| err(o, "`netns` needs a namespace"))?, o)?;
                    k += 1;
                }
                "mtu" => {
                    mtu = Some(parse_u32(o, "mtu", v)?);
                    k += 1;
                }
                "address" => {
                    mac = v.cloned();
                    k += 1;
                }
                "up" => up = true,
                "txqueuelen" | "txqlen" | "qlen" | "numtxqueues" | "numrxqueues" | "group"
                | "alias" => k += 1,
                "type" => {
                    kind = v.cloned();
                    k += 2;
                    break;
                }
                _ if name.is_none() => name = Some(w.to_string()),
                _ => {
                    return Err(err(
                        o,
                        format!("`ip link add`: `{w}` is not an option weft import reads"),
                    ))
                }
            }
            k += 1;
        }
        let kind =
            kind.ok_or_else(|| err(o, "`ip link add` needs `type` (veth, bridge, vlan, ...)"))?;
        let targs = &a[k.min(a.len())..];
        // veth names its own end `vethN` when no name is given; scripts name it.
        let name = name.ok_or_else(|| {
            err(
                o,
                "`ip link add` without a name: weft import needs the names the script uses",
            )
        })?;
        let made = match kind.as_str() {
            "veth" => {
                let mut t = 0;
                let mut peer_name = None;
                // The kernel makes the peer in the namespace the command runs
                // in unless the peer names its own (veth_newlink: src_net).
                let mut peer_ns = ns;
                let mut peer_mtu = None;
                let mut peer_mac = None;
                if targs.first().map(String::as_str) == Some("peer") {
                    t = 1;
                }
                while t < targs.len() {
                    let w = targs[t].as_str();
                    let v = targs.get(t + 1);
                    match w {
                        "name" => {
                            peer_name = v.cloned();
                            t += 1;
                        }
                        "netns" => {
                            peer_ns = self.ns_named(v.ok_or_else(|| err(o, "`netns` needs a namespace"))?, o)?;
                            t += 1;
                        }
                        "mtu" => {
                            peer_mtu = Some(parse_u32(o, "mtu", v)?);
                            t += 1;
                        }
                        "address" => {
                            peer_mac = v.cloned();
                            t += 1;
                        }
                        "txqueuelen" | "numtxqueues" | "numrxqueues" => t += 1,
                        _ if peer_name.is_none() => peer_name = Some(w.to_string()),
                        _ => return Err(err(o, format!("`ip link add ... type veth peer`: `{w}` is not an option weft import reads"))),
                    }
                    t += 1;
                }
                let peer_name = peer_name.ok_or_else(|| err(o, "a veth without `peer name NAME`: the kernel would pick the name; write it in the script"))?;
                let (i, j) = self.add_veth((target_ns, &name), (peer_ns, &peer_name), o)?;
                if let Some(m) = peer_mtu.or(mtu) {
                    self.devs[j].mtu = Some((m, o.clone()));
                }
                if let Some(m) = peer_mac {
                    self.devs[j].mac = Some((m, o.clone()));
                }
                i
            }
            "bridge" => {
                let mut b = BridgeOpts::default();
                self.bridge_args(&mut b, targs, o)?;
                self.new_dev(target_ns, &name, DevKind::Bridge(b), o)?
            }
            "vlan" => {
                let p = parent.ok_or_else(|| err(o, "`type vlan` needs `link PARENT`"))?;
                let mut id = None;
                let mut t = 0;
                while t < targs.len() {
                    if targs[t] == "id" {
                        id = Some(parse_u32(o, "id", targs.get(t + 1))?);
                    }
                    t += 2;
                }
                let id = id.ok_or_else(|| err(o, "`type vlan` needs `id N`"))?;
                return self.add_vlan(ns, &p, &name, id, target_ns, o);
            }
            other => {
                let why = match other {
                    "dummy" => "this kernel has no dummy devices; an address for the node itself can go on `lo` (`[nodes.N.interfaces.lo]`)".to_string(),
                    "vxlan" => "VXLAN devices are made by `kind = \"vxlan\"` links between machines (docs/topology.md)".to_string(),
                    "macvlan" => "a macvlan on the machine's interface is `kind = \"macvlan\"` with allow_host_interfaces (docs/topology.md); write it by hand".to_string(),
                    _ => format!("devices of type `{other}` are not modelled"),
                };
                self.skipped
                    .insert((target_ns, name.clone()), format!("type {other}"));
                return Ok(Flow::Skip(why));
            }
        };
        if let Some(m) = mtu {
            self.devs[made].mtu = Some((m, o.clone()));
        }
        if let Some(m) = mac {
            self.devs[made].mac = Some((m, o.clone()));
        }
        if up {
            self.devs[made].up = true;
        }
        Ok(Flow::Done)
    }

    /// `ip link add|set BR type bridge OPTION VALUE ...` (times in
    /// centiseconds, as ip takes them); unknown options warn.
    fn bridge_args(
        &mut self,
        b: &mut BridgeOpts,
        targs: &[String],
        o: &Origin,
    ) -> Result<(), ImportError> {
        let mut t = 0;
        while t < targs.len() {
            let w = targs[t].as_str();
            let v = targs.get(t + 1);
            if !bridge_opt(b, w, v, 100.0, o)? {
                self.warnings.push(Warning {
                    origin: Some(o.clone()),
                    message: format!("bridge option `{w}` is not carried over (weft sets stp, forward_delay, hello_time, max_age, ageing_time and priority)"),
                });
            }
            t += 2;
        }
        Ok(())
    }

    /// `echo V > /sys/class/net/DEV/bridge/OPTION` and
    /// `.../DEV/brport/{path_cost,priority}`: the old way to set bridges.
    fn sysfs(&mut self, ns: usize, path: &str, val: &str, o: &Origin) -> R {
        let parts: Vec<&str> = path
            .trim_start_matches("/sys/class/net/")
            .split('/')
            .collect();
        let [dev, dir, key] = parts.as_slice() else {
            return Ok(Flow::Skip(format!(
                "`{path}` is not a bridge or bridge port setting weft import reads"
            )));
        };
        let i = match self.dev(ns, dev, o)? {
            Ok(i) => i,
            Err(why) => return Ok(Flow::Skip(why.into())),
        };
        let v = val.trim().to_string();
        match (*dir, &mut self.devs[i].kind) {
            ("bridge", DevKind::Bridge(b)) => {
                if !bridge_opt(b, key, Some(&v), 100.0, o)? {
                    return Ok(Flow::Skip(format!(
                        "bridge setting `{key}` is not carried over"
                    )));
                }
            }
            ("brport", _) if *key == "path_cost" => {
                self.devs[i].cost = Some(parse_u32(o, key, Some(&v))?)
            }
            ("brport", _) if *key == "priority" => {
                self.devs[i].port_priority = Some(parse_u32(o, key, Some(&v))?)
            }
            _ => {
                return Ok(Flow::Skip(format!(
                    "`{path}` is not a bridge or bridge port setting weft import reads"
                )))
            }
        }
        Ok(Flow::Done)
    }

    fn add_vlan(
        &mut self,
        ns: usize,
        parent: &str,
        name: &str,
        id: u32,
        target_ns: usize,
        o: &Origin,
    ) -> R {
        let p = match self.dev(ns, parent, o)? {
            Ok(p) => p,
            Err(why) => {
                self.skipped
                    .insert((target_ns, name.to_string()), why.to_string());
                return Ok(Flow::Skip(why.into()));
            }
        };
        if !matches!(self.devs[p].kind, DevKind::Veth { .. }) {
            self.skipped.insert(
                (target_ns, name.to_string()),
                "VLAN on a device that is not a veth".into(),
            );
            return Ok(Flow::Skip(format!("VLAN `{name}` sits on `{parent}`, which is not a veth end; weft carries VLANs on switch ports, reached through veth cables")));
        }
        if target_ns != ns {
            self.skipped
                .insert((target_ns, name.to_string()), "VLAN moved".into());
            return Ok(Flow::Skip(
                "a VLAN device made in another namespace than its parent is not modelled".into(),
            ));
        }
        if !(1..=4094).contains(&id) {
            return Err(err(o, format!("VLAN id {id} is out of range (1-4094)")));
        }
        self.new_dev(ns, name, DevKind::Vlan { parent: p, id }, o)?;
        Ok(Flow::Done)
    }

    fn link_set(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        let mut k = 0;
        let mut name = None;
        if a.first().map(String::as_str) == Some("dev") {
            name = a.get(1).cloned();
            k = 2;
        } else if let Some(n) = a.first() {
            name = Some(n.clone());
            k = 1;
        }
        let name = name.ok_or_else(|| err(o, "`ip link set` needs a device"))?;
        let i = match self.dev(ns, &name, o)? {
            Ok(i) => i,
            Err(why) => return Ok(Flow::Skip(why.into())),
        };
        let mut skipped = Vec::new();
        while k < a.len() {
            let w = a[k].as_str();
            let v = a.get(k + 1);
            match w {
                "up" => self.devs[i].up = true,
                "down" => self.devs[i].up = false,
                "netns" => {
                    let to =
                        self.ns_named(v.ok_or_else(|| err(o, "`netns` needs a namespace"))?, o)?;
                    self.move_dev(i, to, o)?;
                    k += 1;
                }
                "master" => {
                    let b = v.ok_or_else(|| err(o, "`master` needs a bridge"))?.clone();
                    self.set_master(i, &b, o)?;
                    k += 1;
                }
                "nomaster" => self.devs[i].master = None,
                "mtu" => {
                    self.devs[i].mtu = Some((parse_u32(o, "mtu", v)?, o.clone()));
                    k += 1;
                }
                "address" => {
                    self.devs[i].mac = Some((
                        v.ok_or_else(|| err(o, "`address` needs a MAC"))?.clone(),
                        o.clone(),
                    ));
                    k += 1;
                }
                "name" => {
                    let new = v.ok_or_else(|| err(o, "`name` needs a name"))?.clone();
                    if let Err(why) = weft_topo::file::check_iface_name(&new) {
                        return Err(err(o, format!("interface name `{new}`: {why}")));
                    }
                    if self.find(self.devs[i].ns, &new).is_some() {
                        return Err(err(
                            o,
                            format!(
                                "`{new}` already exists in {}",
                                self.ns_desc(self.devs[i].ns)
                            ),
                        ));
                    }
                    let old = std::mem::replace(&mut self.devs[i].name, new.clone());
                    let dns = self.devs[i].ns;
                    for d in self.devs.iter_mut().filter(|d| d.alive && d.ns == dns) {
                        if d.master.as_deref() == Some(&old) {
                            d.master = Some(new.clone());
                        }
                    }
                    k += 1;
                }
                "type" if v.map(String::as_str) == Some("bridge") => {
                    let mut b = match &self.devs[i].kind {
                        DevKind::Bridge(b) => b.clone(),
                        _ => {
                            return Err(err(
                                o,
                                format!(
                                "`{name}` is not a bridge (ip would say: Operation not supported)"
                            ),
                            ))
                        }
                    };
                    self.bridge_args(&mut b, &a[k + 2..], o)?;
                    self.devs[i].kind = DevKind::Bridge(b);
                    break;
                }
                "type" if v.map(String::as_str) == Some("bridge_slave") => {
                    k += 2;
                    while k < a.len() {
                        match a[k].as_str() {
                            "cost" => self.devs[i].cost = Some(parse_u32(o, "cost", a.get(k + 1))?),
                            "priority" => {
                                self.devs[i].port_priority =
                                    Some(parse_u32(o, "priority", a.get(k + 1))?)
                            }
                            other => skipped.push(format!("bridge_slave {other}")),
                        }
                        k += 2;
                    }
                    continue;
                }
                "alias" | "txqueuelen" | "txqlen" | "qlen" | "group" => {
                    k += 1;
                }
                "promisc" | "arp" | "multicast" | "allmulticast" | "dynamic" | "trailers"
                | "carrier" => {
                    skipped.push(format!("{w} {}", v.map(String::as_str).unwrap_or("")));
                    k += 1;
                }
                _ => {
                    return Err(err(
                        o,
                        format!("`ip link set`: `{w}` is not an option weft import reads"),
                    ))
                }
            }
            k += 1;
        }
        if !skipped.is_empty() {
            return Ok(Flow::Skip(format!(
                "settings not carried over: {}",
                skipped.join(", ")
            )));
        }
        Ok(Flow::Done)
    }

    /// Move a device to another namespace: the kernel takes it down and
    /// drops its addresses and its bridge membership.
    fn move_dev(&mut self, i: usize, to: usize, o: &Origin) -> Result<(), ImportError> {
        let name = self.devs[i].name.clone();
        if matches!(self.devs[i].kind, DevKind::Bridge(_) | DevKind::Lo) {
            return Err(err(o, format!("`{name}` cannot change namespace (ip would say: RTNETLINK answers: Invalid argument)")));
        }
        if let Some(j) = self.find(to, &name) {
            return Err(err(
                o,
                format!(
                    "{} already has a device `{name}` (made at {})",
                    self.ns_desc(to),
                    self.devs[j].origin
                ),
            ));
        }
        let from = self.devs[i].ns;
        self.drop_routes(from, &name);
        let d = &mut self.devs[i];
        if !d.addrs.is_empty() {
            let list: Vec<&str> = d.addrs.iter().map(|(a, _)| a.as_str()).collect();
            self.warnings.push(Warning {
                origin: Some(o.clone()),
                message: format!("moving `{name}` to another namespace drops its addresses ({}), as the kernel does", list.join(", ")),
            });
        }
        let d = &mut self.devs[i];
        d.addrs.clear();
        d.up = false;
        d.master = None;
        d.ns = to;
        for b in &mut self.ovs {
            b.ports.retain(|p| p.dev != i);
        }
        Ok(())
    }

    fn set_master(&mut self, i: usize, bridge: &str, o: &Origin) -> Result<(), ImportError> {
        let ns = self.devs[i].ns;
        let b = self.find(ns, bridge).ok_or_else(|| {
            err_help(
                o,
                format!("there is no bridge `{bridge}` in {} at this point (ip would say: Device does not exist)", self.ns_desc(ns)),
                "a port and its bridge must be in the same namespace; create the bridge first",
            )
        })?;
        if !matches!(self.devs[b].kind, DevKind::Bridge(_)) {
            return Err(err(o, format!("`{bridge}` is not a bridge")));
        }
        if b == i {
            return Err(err(o, format!("`{bridge}` cannot be its own port")));
        }
        self.devs[i].master = Some(bridge.to_string());
        Ok(())
    }

    fn ip_addr(&mut self, ns: usize, family6: bool, args: &[String], o: &Origin) -> R {
        let sub = args.first().map(String::as_str).unwrap_or("show");
        let Some(sub) = pick(
            sub,
            &[
                "add", "change", "chg", "replace", "delete", "show", "lst", "list", "flush",
                "save", "showdump", "restore",
            ],
        ) else {
            return Err(err(
                o,
                format!("`ip addr {sub}`: unknown command (add, del, flush, show)"),
            ));
        };
        let a = &args[1..];
        match sub {
            "add" | "replace" | "change" | "chg" | "delete" => {
                let mut addr = None;
                let mut dev = None;
                let mut k = 0;
                while k < a.len() {
                    let w = a[k].as_str();
                    match w {
                        "dev" => {
                            dev = a.get(k + 1).cloned();
                            k += 1;
                        }
                        "local" => {
                            addr = a.get(k + 1).cloned();
                            k += 1;
                        }
                        "brd" | "broadcast" | "label" | "scope" | "valid_lft" | "preferred_lft"
                        | "metric" | "proto" => k += 1,
                        "noprefixroute" | "home" | "nodad" | "optimistic" | "mngtmpaddr"
                        | "autojoin" => {}
                        "peer" | "remote" | "anycast" => {
                            return Ok(Flow::Skip(format!("`ip addr` with `{w}` is not modelled")))
                        }
                        _ if addr.is_none() => addr = Some(w.to_string()),
                        _ => {
                            return Err(err(
                                o,
                                format!(
                                    "`ip addr {sub}`: `{w}` is not an option weft import reads"
                                ),
                            ))
                        }
                    }
                    k += 1;
                }
                let addr =
                    addr.ok_or_else(|| err(o, format!("`ip addr {sub}` needs an address")))?;
                let dev =
                    dev.ok_or_else(|| err(o, format!("`ip addr {sub}` needs `dev IFACE`")))?;
                let _ = family6;
                let i = match self.dev(ns, &dev, o)? {
                    Ok(i) => i,
                    Err(why) => return Ok(Flow::Skip(why.into())),
                };
                let norm = normalize_addr(&addr).ok_or_else(|| {
                    err(
                        o,
                        format!("`{addr}` is not an address (ADDR or ADDR/PREFIX)"),
                    )
                })?;
                let same = |x: &String| {
                    normalize_addr(x).as_deref() == Some(norm.as_str())
                        || (!addr.contains('/') && x.split('/').next() == Some(addr.as_str()))
                };
                if sub == "delete" {
                    let before = self.devs[i].addrs.len();
                    self.devs[i].addrs.retain(|(x, _)| !same(x));
                    if before == self.devs[i].addrs.len() {
                        return Ok(Flow::Skip(format!("`{dev}` has no address {addr} here (ip would say: RTNETLINK answers: Cannot assign requested address)")));
                    }
                } else if self.devs[i].addrs.iter().any(|(x, _)| same(x)) {
                    if sub == "add" {
                        return Ok(Flow::Skip(format!("`{dev}` already has {addr}: the kernel refuses it (File exists), so the script's run leaves it out too")));
                    }
                } else {
                    self.devs[i].addrs.push((norm, o.clone()));
                }
                Ok(Flow::Done)
            }
            "flush" => {
                let dev = a
                    .iter()
                    .position(|w| w == "dev")
                    .and_then(|k| a.get(k + 1))
                    .or(a.first());
                let Some(dev) = dev else {
                    return Ok(Flow::Skip(
                        "`ip addr flush` without a device is not modelled".into(),
                    ));
                };
                match self.dev(ns, dev, o)? {
                    Ok(i) => {
                        self.devs[i].addrs.clear();
                        Ok(Flow::Done)
                    }
                    Err(why) => Ok(Flow::Skip(why.into())),
                }
            }
            _ => Ok(Flow::Note("shows something: nothing to import".into())),
        }
    }

    fn ip_route(&mut self, ns: usize, family6: bool, args: &[String], o: &Origin) -> R {
        let sub = args.first().map(String::as_str).unwrap_or("show");
        let Some(sub) = pick(
            sub,
            &[
                "add", "change", "chg", "replace", "prepend", "append", "test", "delete", "show",
                "list", "lst", "get", "flush", "save", "restore", "showdump",
            ],
        ) else {
            return Err(err(
                o,
                format!("`ip route {sub}`: unknown command (add, replace, del, show)"),
            ));
        };
        let a = &args[1..];
        if !matches!(
            sub,
            "add" | "replace" | "change" | "chg" | "append" | "prepend" | "delete"
        ) {
            if sub == "flush" {
                return Ok(Flow::Skip("`ip route flush` is not modelled".into()));
            }
            return Ok(Flow::Note("shows something: nothing to import".into()));
        }
        let mut words: Vec<String> = Vec::new();
        let mut dropped = Vec::new();
        let mut k = 0;
        while k < a.len() {
            let w = a[k].as_str();
            match w {
                "to" => {}
                "proto" | "protocol" | "realm" | "realms" => {
                    dropped.push(format!(
                        "{w} {}",
                        a.get(k + 1).map(String::as_str).unwrap_or("")
                    ));
                    k += 1;
                }
                "nexthop" | "encap" | "nhid" => {
                    return Ok(Flow::Skip(format!("routes with `{w}` are not modelled")))
                }
                _ => words.push(w.to_string()),
            }
            k += 1;
        }
        if let Some(dev) = words
            .windows(2)
            .find(|p| p[0] == "dev" || p[0] == "oif")
            .map(|p| p[1].clone())
        {
            if let Err(why) = self.dev(ns, &dev, o)? {
                return Ok(Flow::Skip(why.into()));
            }
        }
        let first_is_type = words.first().is_some_and(|w| {
            matches!(
                w.as_str(),
                "unicast" | "blackhole" | "unreachable" | "prohibit"
            )
        });
        let dest = words
            .get(usize::from(first_is_type))
            .cloned()
            .unwrap_or_default();
        if family6
            && matches!(dest.as_str(), "default" | "any" | "all")
            && !words.iter().any(|w| w.contains(':'))
        {
            words.insert(0, "-6".into());
        }
        let route = words.join(" ");
        let key = route_key(&words);
        if sub == "delete" {
            let before = self.ns[ns].routes.len();
            self.ns[ns].routes.retain(|(r, _)| {
                route_key(&r.split_whitespace().map(str::to_string).collect::<Vec<_>>()) != key
            });
            if before == self.ns[ns].routes.len() {
                return Ok(Flow::Skip(format!("no route `{route}` was added before this line (a route the kernel made itself is not modelled)")));
            }
            return Ok(Flow::Done);
        }
        // The kernel made a route to each up interface's subnet; adding the
        // same one again fails with File exists, so the script's run lacks it.
        if sub == "add" || sub == "append" || sub == "prepend" {
            if let Some(why) = self.connected_clash(ns, &words) {
                return Ok(Flow::Skip(why));
            }
        }
        let exists = self.ns[ns].routes.iter().position(|(r, _)| {
            route_key(&r.split_whitespace().map(str::to_string).collect::<Vec<_>>()) == key
        });
        match (sub, exists) {
            ("add", Some(j)) => {
                return Ok(Flow::Skip(format!(
                    "the route was already added at {}: the kernel refuses it (File exists)",
                    self.ns[ns].routes[j].1
                )));
            }
            (_, Some(j)) => self.ns[ns].routes[j] = (route, o.clone()),
            (_, None) => self.ns[ns].routes.push((route, o.clone())),
        }
        if !dropped.is_empty() {
            self.warnings.push(Warning {
                origin: Some(o.clone()),
                message: format!(
                    "route options dropped (weft adds its routes as proto static): {}",
                    dropped.join(", ")
                ),
            });
        }
        Ok(Flow::Done)
    }

    fn connected_clash(&self, ns: usize, words: &[String]) -> Option<String> {
        if words
            .iter()
            .any(|w| matches!(w.as_str(), "metric" | "preference" | "priority" | "table"))
        {
            return None;
        }
        let dest: IpNet = words.iter().find_map(|w| w.parse().ok())?;
        for d in self.devs.iter().filter(|d| d.alive && d.ns == ns && d.up) {
            for (a, _) in &d.addrs {
                if let Ok(n) = a.parse::<IpNet>() {
                    if n.trunc() == dest && n.prefix_len() < n.max_prefix_len() {
                        return Some(format!(
                            "the kernel already made the route {dest} dev {} for the address {a}, so it refuses this one (RTNETLINK answers: File exists); the script's run lacks it too",
                            d.name
                        ));
                    }
                }
            }
        }
        None
    }

    fn ip_tuntap(&mut self, ns: usize, args: &[String], o: &Origin) -> R {
        let sub = args.first().map(String::as_str).unwrap_or("show");
        let Some(sub) = pick(sub, &["add", "delete", "del", "show", "list", "lst"]) else {
            return Err(err(
                o,
                format!("`ip tuntap {sub}`: unknown command (add, del, show)"),
            ));
        };
        let a = &args[1..];
        let mut name = None;
        let mut mode = None;
        let mut opts = TunOpts::default();
        let mut k = 0;
        while k < a.len() {
            let w = a[k].as_str();
            let v = a.get(k + 1);
            match w {
                "dev" | "name" => {
                    name = v.cloned();
                    k += 1;
                }
                "mode" | "mod" => {
                    mode = v.cloned();
                    k += 1;
                }
                "user" | "group" => {
                    let val = v.ok_or_else(|| err(o, format!("`{w}` needs a value")))?;
                    match val.parse::<u32>() {
                        Ok(n) if w == "user" => opts.owner = Some(n),
                        Ok(n) => opts.group = Some(n),
                        Err(_) => self.warnings.push(Warning {
                            origin: Some(o.clone()),
                            message: format!("`{w} {val}`: weft takes a numeric {}; write `{}` by hand in the file", if w == "user" { "uid" } else { "gid" }, if w == "user" { "owner = UID" } else { "group = GID" }),
                        }),
                    }
                    k += 1;
                }
                "multi_queue" => opts.multi_queue = true,
                "pi" => opts.pi = true,
                "vnet_hdr" => opts.vnet_hdr = true,
                "one_queue" => {}
                _ if name.is_none() => name = Some(w.to_string()),
                _ => {
                    return Err(err(
                        o,
                        format!("`ip tuntap {sub}`: `{w}` is not an option weft import reads"),
                    ))
                }
            }
            k += 1;
        }
        match sub {
            "add" => {
                let name = name.ok_or_else(|| err(o, "`ip tuntap add` needs `dev NAME`"))?;
                let kind = match mode.as_deref() {
                    Some("tun") => DevKind::Tun(opts),
                    Some("tap") => DevKind::Tap(opts),
                    _ => return Err(err(o, "`ip tuntap add` needs `mode tun` or `mode tap`")),
                };
                self.new_dev(ns, &name, kind, o)?;
                Ok(Flow::Done)
            }
            "delete" | "del" => {
                let name = name.ok_or_else(|| err(o, "`ip tuntap del` needs `dev NAME`"))?;
                match self.dev(ns, &name, o)? {
                    Ok(i) => {
                        self.delete(i);
                        Ok(Flow::Done)
                    }
                    Err(why) => Ok(Flow::Skip(why.into())),
                }
            }
            _ => Ok(Flow::Note("shows something: nothing to import".into())),
        }
    }

    // ------------------------------------------------------- other programs

    fn brctl(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        let sub = a.first().map(String::as_str).unwrap_or("show");
        let b = a.get(1);
        let need_b = |o: &Origin| {
            b.cloned()
                .ok_or_else(|| err(o, format!("`brctl {sub}` needs a bridge")))
        };
        let bridge = |m: &Self, o: &Origin| -> Result<Result<usize, NotImported>, ImportError> {
            let name = need_b(o)?;
            match m.dev(ns, &name, o)? {
                Ok(i) if matches!(m.devs[i].kind, DevKind::Bridge(_)) => Ok(Ok(i)),
                Ok(_) => Err(err(
                    o,
                    format!("`{name}` is not a bridge (brctl would say: Operation not supported)"),
                )),
                Err(w) => Ok(Err(w)),
            }
        };
        macro_rules! opts {
            ($m:expr, $o:expr) => {
                match bridge($m, $o)? {
                    Ok(i) => match &mut $m.devs[i].kind {
                        DevKind::Bridge(opts) => opts,
                        _ => unreachable!(),
                    },
                    Err(why) => return Ok(Flow::Skip(why.into())),
                }
            };
        }
        let secs = |o: &Origin, v: Option<&String>| -> Result<f64, ImportError> {
            let v = v.ok_or_else(|| err(o, format!("`brctl {sub}` needs a time in seconds")))?;
            v.parse::<f64>()
                .map_err(|_| err(o, format!("`{v}` is not a time in seconds")))
        };
        match sub {
            "addbr" => {
                let name = need_b(o)?;
                self.new_dev(ns, &name, DevKind::Bridge(BridgeOpts::default()), o)?;
                Ok(Flow::Done)
            }
            "delbr" => match bridge(self, o)? {
                Ok(i) => {
                    if self.devs[i].up {
                        return Err(err(o, format!("bridge `{}` is still up (brctl would say: Operation not permitted); `ip link set {} down` first", self.devs[i].name, self.devs[i].name)));
                    }
                    self.delete(i);
                    Ok(Flow::Done)
                }
                Err(w) => Ok(Flow::Skip(w.into())),
            },
            "addif" | "delif" => {
                let name = need_b(o)?;
                if a.len() < 3 {
                    return Err(err(o, format!("`brctl {sub}` needs a bridge and a device")));
                }
                if let Err(w) = bridge(self, o)? {
                    return Ok(Flow::Skip(w.into()));
                }
                for port in &a[2..] {
                    let p = match self.dev(ns, port, o)? {
                        Ok(p) => p,
                        Err(w) => return Ok(Flow::Skip(w.into())),
                    };
                    if sub == "addif" {
                        self.set_master(p, &name, o)?;
                    } else {
                        self.devs[p].master = None;
                    }
                }
                Ok(Flow::Done)
            }
            "stp" => {
                let on = on_off(o, "brctl stp", a.get(2))?;
                {
                    let b = opts!(self, o);
                    b.stp = Some(on);
                    b.at.insert("stp", o.clone());
                }
                Ok(Flow::Done)
            }
            "setfd" | "sethello" | "setmaxage" | "setageing" | "setageingtime" => {
                let v = secs(o, a.get(2))?;
                let b = opts!(self, o);
                let (field, slot) = match sub {
                    "setfd" => ("forward_delay", &mut b.forward_delay),
                    "sethello" => ("hello_time", &mut b.hello_time),
                    "setmaxage" => ("max_age", &mut b.max_age),
                    _ => ("ageing_time", &mut b.ageing_time),
                };
                *slot = Some(v);
                b.at.insert(field, o.clone());
                Ok(Flow::Done)
            }
            "setbridgeprio" => {
                let v = parse_u32(o, "setbridgeprio", a.get(2))?;
                {
                    let b = opts!(self, o);
                    b.priority = Some(v);
                    b.at.insert("priority", o.clone());
                }
                Ok(Flow::Done)
            }
            "setpathcost" | "setportprio" => {
                if let Err(w) = bridge(self, o)? {
                    return Ok(Flow::Skip(w.into()));
                }
                let port = a
                    .get(2)
                    .ok_or_else(|| err(o, format!("`brctl {sub}` needs a port")))?;
                let v = parse_u32(o, sub, a.get(3))?;
                match self.dev(ns, port, o)? {
                    Ok(p) if sub == "setpathcost" => self.devs[p].cost = Some(v),
                    Ok(p) => self.devs[p].port_priority = Some(v),
                    Err(w) => return Ok(Flow::Skip(w.into())),
                }
                Ok(Flow::Done)
            }
            "show" | "showmacs" | "showstp" => Ok(Flow::Note(
                "shows something: nothing to import (`weft status`, `weft fdb`)".into(),
            )),
            _ => Err(err(o, format!("`brctl {sub}`: unknown command"))),
        }
    }

    fn tunctl(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        let mut name = None;
        let mut delete = None;
        let mut tun = false;
        let mut opts = TunOpts::default();
        let mut k = 0;
        while k < a.len() {
            let v = a.get(k + 1);
            match a[k].as_str() {
                "-t" => {
                    name = v.cloned();
                    k += 1;
                }
                "-d" => {
                    delete = v.cloned();
                    k += 1;
                }
                "-u" | "-g" => {
                    let val = v.ok_or_else(|| err(o, format!("`tunctl {}` needs a value", a[k])))?;
                    match val.parse::<u32>() {
                        Ok(n) if a[k] == "-u" => opts.owner = Some(n),
                        Ok(n) => opts.group = Some(n),
                        Err(_) => self.warnings.push(Warning {
                            origin: Some(o.clone()),
                            message: format!("`tunctl {} {val}`: weft takes a numeric id; write owner/group by hand", a[k]),
                        }),
                    }
                    k += 1;
                }
                "-n" => tun = true,
                "-p" | "-b" => {}
                w => return Err(err(o, format!("`tunctl {w}`: an option weft import does not know (-t, -d, -u, -g, -n, -p)"))),
            }
            k += 1;
        }
        if let Some(d) = delete {
            return match self.dev(ns, &d, o)? {
                Ok(i) => {
                    self.delete(i);
                    Ok(Flow::Done)
                }
                Err(w) => Ok(Flow::Skip(w.into())),
            };
        }
        let prefix = if tun { "tun" } else { "tap" };
        let name = name.unwrap_or_else(|| {
            (0..)
                .map(|n| format!("{prefix}{n}"))
                .find(|n| self.find(ns, n).is_none())
                .unwrap()
        });
        let kind = if tun {
            DevKind::Tun(opts)
        } else {
            DevKind::Tap(opts)
        };
        self.new_dev(ns, &name, kind, o)?;
        Ok(Flow::Done)
    }

    fn vconfig(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        match a.first().map(String::as_str) {
            Some("add") => {
                let parent = a.get(1).ok_or_else(|| err(o, "`vconfig add` needs a device and a VLAN id"))?;
                let id = parse_u32(o, "vconfig add", a.get(2))?;
                // vconfig's default name type: DEV_PLUS_VID_NO_PAD.
                let name = format!("{parent}.{id}");
                self.add_vlan(ns, parent, &name, id, ns, o)
            }
            Some("rem") => {
                let d = a.get(1).ok_or_else(|| err(o, "`vconfig rem` needs a device"))?;
                match self.dev(ns, d, o)? {
                    Ok(i) => {
                        self.delete(i);
                        Ok(Flow::Done)
                    }
                    Err(w) => Ok(Flow::Skip(w.into())),
                }
            }
            Some(s @ ("set_flag" | "set_egress_map" | "set_ingress_map" | "set_name_type")) => Ok(Flow::Skip(format!(
                "`vconfig {s}` is not carried over (weft's switch ports carry VLANs without flags or priority maps)"
            ))),
            other => Err(err(o, format!("`vconfig {}`: unknown command (add, rem)", other.unwrap_or("")))),
        }
    }

    fn ovs_vsctl(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        let mut skips = Vec::new();
        let cmds: Vec<&[String]> = a.split(|w| w == "--").collect();
        // `-- set interface P type=internal` makes P an internal port.
        let internal: Vec<String> = cmds
            .iter()
            .filter(|c| {
                c.len() >= 4
                    && c[0] == "set"
                    && c[1].eq_ignore_ascii_case("interface")
                    && c[3..].iter().any(|x| x == "type=internal")
            })
            .map(|c| c[2].clone())
            .collect();
        for c in cmds {
            let mut c = c;
            while c.first().is_some_and(|w| w.starts_with("--")) {
                c = &c[1..];
            }
            let Some(cmd) = c.first() else { continue };
            let r = &c[1..];
            match cmd.as_str() {
                "add-br" => {
                    let name = r
                        .first()
                        .ok_or_else(|| err(o, "`ovs-vsctl add-br` needs a name"))?;
                    if r.len() > 1 {
                        skips.push("fake bridges (add-br NAME PARENT VLAN)".to_string());
                        continue;
                    }
                    if self.ovs.iter().any(|b| b.alive && &b.name == name) {
                        if a.iter().any(|w| w == "--may-exist") {
                            continue;
                        }
                        return Err(err(o, format!("OVS bridge `{name}` already exists (ovs-vsctl would say: cannot create a bridge named {name} because a bridge named {name} already exists)")));
                    }
                    self.ovs.push(Ovs {
                        name: name.clone(),
                        ns,
                        origin: o.clone(),
                        ports: vec![],
                        stp: None,
                        alive: true,
                    });
                    // The bridge's own internal port, `ovs-br` in the namespace.
                    self.skipped.insert(
                        (ns, name.clone()),
                        "the OVS bridge's internal port: a weft switch has no address of its own"
                            .into(),
                    );
                }
                "del-br" => {
                    let name = r
                        .first()
                        .ok_or_else(|| err(o, "`ovs-vsctl del-br` needs a name"))?;
                    match self.ovs.iter_mut().find(|b| b.alive && &b.name == name) {
                        Some(b) => b.alive = false,
                        None if a.iter().any(|w| w == "--if-exists") => {}
                        None => return Err(err(o, format!("there is no OVS bridge `{name}` (ovs-vsctl would say: no bridge named {name})"))),
                    }
                }
                "add-port" => {
                    let br = r
                        .first()
                        .ok_or_else(|| err(o, "`ovs-vsctl add-port` needs a bridge and a port"))?;
                    let port = r
                        .get(1)
                        .ok_or_else(|| err(o, "`ovs-vsctl add-port` needs a bridge and a port"))?;
                    let b = self.ovs.iter().position(|b| b.alive && &b.name == br).ok_or_else(|| {
                        err_help(o, format!("there is no OVS bridge `{br}` at this point (ovs-vsctl would say: no bridge named {br})"), format!("`ovs-vsctl add-br {br}` first"))
                    })?;
                    if internal.contains(port) {
                        self.skipped
                            .insert((ns, port.clone()), "an OVS internal port".into());
                        skips.push(format!("internal port `{port}` (a weft switch's ports are veth cables: cable a host to it instead)"));
                        continue;
                    }
                    let d = match self.dev(self.ovs[b].ns, port, o)? {
                        Ok(d) => d,
                        Err(w) => {
                            skips.push(w.into());
                            continue;
                        }
                    };
                    if !matches!(self.devs[d].kind, DevKind::Veth { .. }) {
                        skips.push(format!("port `{port}` is not a veth end (a weft switch's ports are veth cables)"));
                        continue;
                    }
                    let mut p = OvsPort {
                        dev: d,
                        vlan: None,
                        trunk: vec![],
                        origin: o.clone(),
                    };
                    for col in &r[2..] {
                        self.ovs_port_col(&mut p, col, o, &mut skips)?;
                    }
                    self.ovs[b].ports.push(p);
                }
                "del-port" => {
                    let port = r
                        .last()
                        .ok_or_else(|| err(o, "`ovs-vsctl del-port` needs a port"))?;
                    for b in &mut self.ovs {
                        b.ports.retain(|p| &self.devs[p.dev].name != port);
                    }
                }
                "set" => {
                    let table = r
                        .first()
                        .map(|t| t.to_ascii_lowercase())
                        .unwrap_or_default();
                    let rec = r.get(1).cloned().unwrap_or_default();
                    match table.as_str() {
                        "port" => {
                            let Some((b, k)) = self.ovs.iter().enumerate().find_map(|(b, br)| {
                                br.ports
                                    .iter()
                                    .position(|p| self.devs[p.dev].name == rec)
                                    .map(|k| (b, k))
                            }) else {
                                skips.push(format!("`set port {rec}`: not a port weft imported"));
                                continue;
                            };
                            let mut p = self.ovs[b].ports[k].clone();
                            for col in &r[2..] {
                                self.ovs_port_col(&mut p, col, o, &mut skips)?;
                            }
                            self.ovs[b].ports[k] = p;
                        }
                        "bridge" => {
                            let Some(b) = self.ovs.iter().position(|b| b.alive && b.name == rec)
                            else {
                                return Err(err(o, format!("there is no OVS bridge `{rec}`")));
                            };
                            for col in &r[2..] {
                                match col.split_once('=') {
                                    Some(("stp_enable", v)) => {
                                        self.ovs[b].stp =
                                            Some(if v == "true" { "stp" } else { "off" }.into())
                                    }
                                    Some(("rstp_enable", v)) => {
                                        self.ovs[b].stp =
                                            Some(if v == "true" { "rstp" } else { "off" }.into())
                                    }
                                    _ => skips.push(format!("bridge setting `{col}`")),
                                }
                            }
                        }
                        "interface" if internal.contains(&rec) => {}
                        _ => skips.push(format!("`set {table} ...`")),
                    }
                }
                "show" | "list" | "get" | "list-br" | "list-ports" | "find" => {
                    return Ok(Flow::Note(
                        "shows something: nothing to import (`weft status`)".into(),
                    ));
                }
                other => skips.push(format!("`ovs-vsctl {other}`")),
            }
        }
        if skips.is_empty() {
            Ok(Flow::Done)
        } else {
            Ok(Flow::Skip(format!(
                "not carried over: {}",
                skips.join("; ")
            )))
        }
    }

    fn ovs_port_col(
        &self,
        p: &mut OvsPort,
        col: &str,
        o: &Origin,
        skips: &mut Vec<String>,
    ) -> Result<(), ImportError> {
        match col.split_once('=') {
            Some(("tag", v)) => {
                p.vlan = Some(
                    v.parse()
                        .map_err(|_| err(o, format!("`tag={v}` is not a VLAN number")))?,
                )
            }
            Some(("trunks", v)) => {
                p.trunk = v
                    .trim_matches(|c| c == '[' || c == ']' || c == '"')
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.trim().parse().map_err(|_| {
                            err(o, format!("`trunks={v}` is not a list of VLAN numbers"))
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(("vlan_mode", "access" | "trunk")) => {}
            _ => skips.push(format!("port setting `{col}`")),
        }
        Ok(())
    }

    fn sysctl(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        let mut any = false;
        for w in a {
            if w == "-p" || w.starts_with("--load") || w == "--system" {
                return Ok(Flow::Skip("`sysctl -p` reads a file on the machine; write its `net.` keys into the script or the lab file".into()));
            }
            if w.starts_with('-') {
                continue;
            }
            if let Some((k, v)) = w.split_once('=') {
                {
                    let key = k.trim().replace('/', ".");
                    if let Flow::Skip(why) = self.set_sysctl(ns, &key, v.trim(), o)? {
                        return Ok(Flow::Skip(why));
                    }
                    any = true;
                }
            }
        }
        if any {
            Ok(Flow::Done)
        } else {
            Ok(Flow::Note("reads a setting: nothing to import".into()))
        }
    }

    fn set_sysctl(&mut self, ns: usize, key: &str, val: &str, o: &Origin) -> R {
        if let Err(why) = weft_topo::file::check_sysctl_key(key) {
            return Ok(Flow::Skip(format!("sysctl `{key}`: {why}")));
        }
        self.ns[ns]
            .sysctls
            .insert(key.to_string(), (val.to_string(), o.clone()));
        Ok(Flow::Done)
    }

    fn ifconfig(&mut self, ns: usize, a: &[String], o: &Origin) -> R {
        let Some(name) = a.first() else {
            return Ok(Flow::Note("shows something: nothing to import".into()));
        };
        if name == "-a" {
            return Ok(Flow::Note("shows something: nothing to import".into()));
        }
        if a.len() == 1 {
            return Ok(Flow::Note("shows something: nothing to import".into()));
        }
        let i = match self.dev(ns, name, o)? {
            Ok(i) => i,
            Err(w) => return Ok(Flow::Skip(w.into())),
        };
        let mut k = 1;
        let mut addr: Option<String> = None;
        let mut mask: Option<u8> = None;
        while k < a.len() {
            let v = a.get(k + 1);
            match a[k].as_str() {
                "up" => self.devs[i].up = true,
                "down" => self.devs[i].up = false,
                "netmask" => {
                    let m: std::net::Ipv4Addr = v
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| err(o, "`netmask` needs a dotted mask"))?;
                    mask = Some(u32::from(m).count_ones() as u8);
                    k += 1;
                }
                "mtu" => {
                    self.devs[i].mtu = Some((parse_u32(o, "mtu", v)?, o.clone()));
                    k += 1;
                }
                "hw" => {
                    let mac = a
                        .get(k + 2)
                        .ok_or_else(|| err(o, "`hw ether` needs a MAC"))?;
                    self.devs[i].mac = Some((mac.clone(), o.clone()));
                    k += 2;
                }
                "broadcast" => k += 1,
                w if addr.is_none() && w.parse::<IpAddr>().is_ok()
                    || w.parse::<IpNet>().is_ok() =>
                {
                    addr = Some(w.to_string())
                }
                w => {
                    return Err(err(
                        o,
                        format!("`ifconfig`: `{w}` is not an option weft import reads"),
                    ))
                }
            }
            k += 1;
        }
        if let Some(addr) = addr {
            let full = if addr.contains('/') {
                addr
            } else {
                let ip: std::net::Ipv4Addr = addr
                    .parse()
                    .map_err(|_| err(o, format!("`{addr}` is not an IPv4 address")))?;
                // ifconfig without netmask takes the address's class.
                let class = match ip.octets()[0] {
                    0..=127 => 8,
                    128..=191 => 16,
                    _ => 24,
                };
                format!("{addr}/{}", mask.unwrap_or(class))
            };
            // ifconfig replaces the interface's first IPv4 address.
            self.devs[i].addrs.retain(|(x, _)| x.contains(':'));
            self.devs[i].addrs.insert(0, (full, o.clone()));
        }
        Ok(Flow::Done)
    }
}

/// One bridge option; `per_second` is the value's unit (100 for ip's and
/// sysfs's centiseconds). False if the option is not one weft has.
fn bridge_opt(
    b: &mut BridgeOpts,
    key: &str,
    v: Option<&String>,
    per_second: f64,
    o: &Origin,
) -> Result<bool, ImportError> {
    let secs = |v| -> Result<f64, ImportError> { Ok(parse_u32(o, key, v)? as f64 / per_second) };
    let field = match key {
        "stp_state" => "stp",
        "forward_delay" => "forward_delay",
        "hello_time" => "hello_time",
        "max_age" => "max_age",
        "ageing_time" => "ageing_time",
        "priority" => "priority",
        _ => return Ok(false),
    };
    b.at.insert(field, o.clone());
    match key {
        "stp_state" => b.stp = Some(parse_u32(o, key, v)? != 0),
        "forward_delay" => b.forward_delay = Some(secs(v)?),
        "hello_time" => b.hello_time = Some(secs(v)?),
        "max_age" => b.max_age = Some(secs(v)?),
        "ageing_time" => b.ageing_time = Some(secs(v)?),
        "priority" => b.priority = Some(parse_u32(o, key, v)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit(first)) = w.0.first() else {
        return None;
    };
    let (name, rest) = first.split_once('=')?;
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let mut v = Word(vec![Part::Lit(rest.to_string())]);
    v.0.extend(w.0[1..].iter().cloned());
    Some((name.to_string(), v))
}

/// `ADDR` or `ADDR/PREFIX` in canonical form (a bare address is a host route's /32 or /128).
fn normalize_addr(a: &str) -> Option<String> {
    if let Ok(n) = a.parse::<IpNet>() {
        return Some(n.to_string());
    }
    let ip: IpAddr = a.parse().ok()?;
    Some(IpNet::from(ip).to_string())
}

/// What identifies a route for replace/delete: destination, table, metric.
fn route_key(words: &[String]) -> (String, String, String) {
    let mut dest = String::new();
    let mut table = "main".to_string();
    let mut metric = "0".to_string();
    let mut k = 0;
    while k < words.len() {
        let w = words[k].as_str();
        match w {
            "-6" | "unicast" => {}
            "via" | "dev" | "oif" | "src" | "mtu" | "scope" => k += 1,
            "table" => {
                table = words.get(k + 1).cloned().unwrap_or_default();
                if table == "254" {
                    table = "main".into();
                }
                k += 1;
            }
            "metric" | "preference" | "priority" => {
                metric = words.get(k + 1).cloned().unwrap_or_default();
                k += 1;
            }
            _ if dest.is_empty() => {
                dest = match w {
                    "0/0" | "any" | "all" => "default".into(),
                    _ => w
                        .parse::<IpNet>()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| w.to_string()),
                }
            }
            _ => {}
        }
        k += 1;
    }
    (dest, table, metric)
}

/// Statements of a nested `sh -c` string (or a containerlab `exec` line)
/// keep the outer command's line.
pub(crate) fn relocate(stmts: Vec<Stmt>, o: &Origin) -> Vec<Stmt> {
    stmts
        .into_iter()
        .map(|s| match s {
            Stmt::Cmd {
                words,
                out,
                stdin,
                text,
                ..
            } => Stmt::Cmd {
                origin: o.clone(),
                words,
                out,
                stdin,
                text,
            },
            Stmt::For {
                var, list, body, ..
            } => Stmt::For {
                origin: o.clone(),
                var,
                list,
                body: relocate(body, o),
            },
            Stmt::Unsupported { text, why, .. } => Stmt::Unsupported {
                origin: o.clone(),
                text,
                why,
            },
        })
        .collect()
}
