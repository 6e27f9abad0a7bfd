//! The topology file: its serde shape, expansion into a [`Lab`], and every
//! check that must pass before anything is built.
//!
//! `raw` holds the serde shapes, `expand` turns them into the model,
//! `attach` draws hosts' addresses, `validate` checks the whole lab; `de`
//! reads the TOML with positions, and `switch`, `tunnel`, `machines`,
//! `services` do the same for their own keys.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

use crate::error::{Diagnostic, Diagnostics, LineIndex};
use crate::model::*;

mod de;
mod machines;
pub use machines::VXLAN_PORT;
mod services;
mod tunnel;

type Span = Range<usize>;

mod switch;

mod attach;
mod expand;
mod raw;
mod validate;
use raw::Timers;
use raw::{RawIface, RawLab, RawLink, RawNode};
use validate::check_node_name;
pub use validate::{check_iface_name, check_lab_name, check_sysctl_key};

/// A checked, expanded lab and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub lab: Lab,
    pub warnings: Vec<Diagnostic>,
}

/// Largest `count` accepted: far above what a 2-core machine builds quickly,
/// low enough to catch a typo before it creates a million namespaces.
pub const MAX_COUNT: u32 = 10_000;

/// Parse, expand and check a topology file. Every problem is reported, each
/// with its position; nothing here touches the system.
pub fn parse(source: &str) -> Result<Parsed, Diagnostics> {
    parse_with(source, None)
}

/// [`parse`], keeping the addresses `attach` gave hosts in `previous` (the
/// lab as built), so that an edit never renumbers hosts it did not touch.
pub fn parse_with(source: &str, previous: Option<&Lab>) -> Result<Parsed, Diagnostics> {
    parse_at(source, previous, None)
}

/// Where a file is, for the host paths of `binds`: relative ones are taken
/// from `dir`, and each must pass `exists` (the caller's look at the disk;
/// this crate touches nothing).
pub struct FileDir<'a> {
    pub dir: &'a std::path::Path,
    pub exists: &'a dyn Fn(&std::path::Path) -> bool,
}

/// [`parse_with`] for a file in a directory (see [`FileDir`]). Without
/// one, relative bind sources are kept as written and not looked at.
pub fn parse_at(
    source: &str,
    previous: Option<&Lab>,
    dir: Option<FileDir>,
) -> Result<Parsed, Diagnostics> {
    let (raw, shape) = de::read::<RawLab>(source).map_err(sorted)?;
    let mut cx = Cx {
        previous,
        source,
        dir,
        lines: LineIndex::new(source),
        ..Cx::default()
    };
    let lab = cx.expand(raw);
    // What the checks say about a value the shape reading replaced with a
    // stand-in follows from that one problem: leave it out.
    cx.errors
        .retain(|d| d.span.as_ref().is_none_or(|s| !shape.covers(s)));
    cx.errors.extend(shape.errors);
    if cx.errors.is_empty() {
        Ok(Parsed {
            lab,
            warnings: cx.warnings,
        })
    } else {
        Err(sorted(cx.errors))
    }
}

/// Problems in file order (those without a position last).
fn sorted(mut errors: Vec<Diagnostic>) -> Diagnostics {
    errors.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    Diagnostics(errors)
}

#[derive(Default)]
struct Cx<'p> {
    previous: Option<&'p Lab>,
    dir: Option<FileDir<'p>>,
    /// Positions of services and their `after` entries, for the checks
    /// that need every node.
    service_spans: services::Spans,
    source: &'p str,
    lines: LineIndex,
    /// `allow_host_interfaces = true`: the file may use the machine's own
    /// interfaces (macvlan uplinks).
    allow_host: bool,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    node_span: HashMap<String, Span>,
    iface_span: HashMap<(String, String), Span>,
    addr_span: HashMap<(String, String, IpNet), Span>,
    route_span: HashMap<(String, usize), Span>,
    master_span: HashMap<(String, String), Span>,
    /// Groups written with `count`: name -> the nodes they became.
    groups: HashMap<String, (u32, Span)>,
    /// Hosts with `attach`, in the order they get addresses.
    attached: Vec<(String, String, Span, bool)>,
    /// `subnet` and `gateway` of bridge and switch nodes, for `attach`.
    segments: HashMap<String, (Option<IpNet>, Option<IpAddr>)>,
    /// Port settings written on interfaces of switch nodes.
    switch_ports: HashMap<(String, String), switch::RawPort>,
    /// `port = {..}` of attached hosts, by host.
    attach_ports: HashMap<String, Spanned<switch::RawAttachPort>>,
    /// Positions of `port = {..}` tables already checked (a group shares one).
    attach_port_seen: HashSet<usize>,
    /// Static MACs and mirrors of switch nodes, checked once ports are known.
    switch_extra: HashMap<String, switch::RawExtra>,
    /// Positions of each tunnel link's two underlay addresses.
    tunnel_spans: Vec<[Span; 2]>,
    machines: machines::MachinesCx,
    /// Set by `link_impair` for a link with two kernel ends.
    kernel_link_impair: Option<crate::impair::Impairment>,
    /// Ends of links refused for their other end (not reported as unlinked).
    broken_ends: HashSet<(String, String)>,
}

impl Cx<'_> {
    fn err(&mut self, span: Option<Span>, msg: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        let mut d = Diagnostic::new(msg, span);
        if !help.is_empty() {
            d = d.help(help);
        }
        self.errors.push(d);
    }

    /// `line L, column C` of a byte offset, for a second place in a message.
    fn at(&self, offset: usize) -> String {
        self.lines.at(self.source, offset)
    }
    fn expand(&mut self, raw: RawLab) -> Lab {
        let name = raw.name.get_ref().clone();
        if let Err(why) = check_lab_name(&name) {
            self.err(Some(raw.name.span()), why.to_string(), "");
        }
        let mut lab = Lab::empty(&name);
        self.allow_host = raw.allow_host_interfaces == Some(true);
        match &raw.vxlan_port {
            Some(p) if *p.get_ref() == 0 => self.err(
                Some(p.span()),
                "vxlan_port: 0 is not a UDP port",
                format!("leave it out for {}, VXLAN's port", machines::VXLAN_PORT),
            ),
            Some(p) => lab.vxlan_port = Some(*p.get_ref()),
            None => {}
        }
        self.add_machines(&mut lab, &raw.machines);
        for (key, rn) in &raw.nodes {
            self.add_node(&mut lab, key, rn);
        }
        for link in &raw.links {
            self.add_link(&mut lab, link);
        }
        self.attach_hosts(&mut lab);
        self.switch_ports(&mut lab);
        self.check(&lab);
        let mut more = Vec::new();
        let (spans, ispans) = (&self.addr_span, &self.iface_span);
        crate::nat::check_overlaps(
            &lab,
            &|n, i, a| {
                let k = (n.to_string(), i.to_string());
                spans
                    .get(&(k.0.clone(), k.1.clone(), *a))
                    .or(ispans.get(&k))
                    .cloned()
            },
            &mut more,
        );
        crate::nat::expand(&mut lab, &raw.nat, &mut more);
        crate::check::expand(&mut lab, &raw.checks, self.source, &self.lines, &mut more);
        self.errors.extend(more);
        self.check_tunnels(&lab);
        self.finish_vxlan(&mut lab);
        self.check_machines(&lab);
        self.check_services(&lab);
        lab
    }
}
