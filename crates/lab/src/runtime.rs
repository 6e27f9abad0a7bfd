//! Changes to a running lab that are not in its file: `weft link A B
//! down|up` and `weft impair A B ...`. They act at once, without
//! restarting anything, and are recorded in
//! `/run/weft/labs/LAB/runtime.json` so that `weft status` shows them.
//! The file stays the truth: a later `weft up` of it undoes them.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weft_datapath::control::Request;
use weft_sys::netlink::{self, Netlink, SetLink};
use weft_sys::netns;
use weft_topo::impair::Impairment;
use weft_topo::{Endpoint, IfaceKind, Lab, NodeKind};

use crate::{datapath, state, Error};

/// What differs from the file right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// Links taken down, each as its two ends (`a:eth0`, `sw:p1`).
    #[serde(default)]
    pub links_down: Vec<[String; 2]>,
    /// Impairment set at run time per switch port (`sw:p1`); `None` means
    /// cleared where the file has one.
    #[serde(default)]
    pub impair: BTreeMap<String, Option<Impairment>>,
    /// Impairment set at run time per wire (`~h1.eth0`, the wire of an
    /// impaired link between two kernel ends); `None` means cleared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub wires: BTreeMap<String, Option<Impairment>>,
    /// Impairment set at run time per tunnel link, named by its first end
    /// (`h1:wt0`); `None` means cleared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tunnels: BTreeMap<String, Option<Impairment>>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.links_down.is_empty()
            && self.impair.is_empty()
            && self.wires.is_empty()
            && self.tunnels.is_empty()
    }

    /// One line per change, for `weft status` and `weft up`.
    pub fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .links_down
            .iter()
            .map(|[a, b]| format!("link {a} — {b} down"))
            .collect();
        for (port, i) in &self.impair {
            v.push(match i {
                Some(i) => format!("impair {port}: {}", i.summary()),
                None => format!("impair {port}: cleared"),
            });
        }
        for (wire, i) in &self.wires {
            v.push(match i {
                Some(i) => format!("impair wire {wire}: {}", i.summary()),
                None => format!("impair wire {wire}: cleared"),
            });
        }
        for (t, i) in &self.tunnels {
            v.push(match i {
                Some(i) => format!("impair tunnel {t}: {}", i.summary()),
                None => format!("impair tunnel {t}: cleared"),
            });
        }
        v
    }
}

fn path(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("runtime.json")
}

/// The runtime changes of a lab, if any.
pub fn load(lab: &str) -> Option<Overrides> {
    let b = std::fs::read(path(lab)).ok()?;
    serde_json::from_slice::<Overrides>(&b)
        .ok()
        .filter(|o| !o.is_empty())
}

fn save(lab: &str, o: &Overrides) -> Result<(), Error> {
    let p = path(lab);
    if o.is_empty() {
        let _ = std::fs::remove_file(&p);
        return Ok(());
    }
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(o).expect("serializes"))
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| Error::io(format!("recording runtime changes in {}", p.display()), e))
}

/// The veth link between `a` and `b`, each a node name or `NODE:IFACE`.
pub fn find_link(lab: &Lab, a: &str, b: &str) -> Result<(Endpoint, Endpoint), Error> {
    let parse = |s: &str| -> Result<(String, Option<String>), Error> {
        let (n, i) = match s.split_once(':') {
            Some((n, i)) => (n.to_string(), Some(i.to_string())),
            None => (s.to_string(), None),
        };
        // The far end of a wired vxlan link is on another machine, not in
        // this machine's share, but named by the wire.
        let far_end = || {
            lab.nodes
                .values()
                .filter_map(|x| x.wire.as_ref())
                .any(|w| w.link.iter().any(|e| e.node == n))
        };
        if !lab.nodes.contains_key(&n) && !far_end() {
            return Err(Error::NoNode {
                lab: lab.name.clone(),
                node: n,
                known: lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        Ok((n, i))
    };
    let (an, ai) = parse(a)?;
    let (bn, bi) = parse(b)?;
    if !lab.nodes.contains_key(&an) && lab.nodes.contains_key(&bn) {
        // Only the far end of a wire is known here: look from the near end.
        return find_link(lab, b, a).map(|(x, y)| (y, x));
    }
    // Every cable of A: (its interface, the far end).
    let cables: Vec<(String, Endpoint)> = lab
        .nodes
        .get(&an)
        .into_iter()
        .flat_map(|n| n.interfaces.values())
        .filter_map(|i| match &i.kind {
            // A wire in the link (an impaired kernel link) is not a hop:
            // the link's other end is past it.
            IfaceKind::Veth { peer } => {
                let peer = match lab.nodes.get(&peer.node).and_then(|n| n.wire.as_ref()) {
                    Some(w) => w.link.iter().find(|e| e.node != an || e.iface != i.name)?,
                    None => peer,
                };
                Some((i.name.clone(), peer.clone()))
            }
            _ => None,
        })
        .collect();
    let found: Vec<(Endpoint, Endpoint)> = cables
        .iter()
        .filter(|(i, p)| {
            p.node == bn
                && (ai.is_none() || ai.as_ref() == Some(i))
                && (bi.is_none() || bi.as_ref() == Some(&p.iface))
        })
        .map(|(i, p)| (Endpoint::new(&an, i), p.clone()))
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(Error::invalid_help(
            format!("lab {} has no link between {a} and {b}", lab.name),
            if cables.is_empty() {
                format!(
                    "{an} has no cables; `weft status {}` lists the interfaces and their peers",
                    lab.name
                )
            } else {
                format!(
                    "{an}'s cables: {}",
                    cables
                        .iter()
                        .map(|(i, p)| format!("{an}:{i} — {p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        )),
        n => Err(Error::invalid_help(
            format!(
                "{an} and {bn} are joined by {n} links ({})",
                found
                    .iter()
                    .map(|(x, y)| format!("{x} — {y}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "name one end as NODE:IFACE",
        )),
    }
}

fn is_switch(lab: &Lab, e: &Endpoint) -> bool {
    lab.nodes.get(&e.node).map(|n| n.kind) == Some(NodeKind::Switch)
}

/// `ip link set dev IFACE up|down` in the node's namespace.
fn set_iface(lab: &Lab, e: &Endpoint, up: bool) -> Result<(), Error> {
    let ns = &lab.nodes[&e.node].netns;
    let fd = netns::open(ns)?;
    let sock = netns::route_socket_in(fd.as_fd())?;
    let mut nl =
        Netlink::from_fd(sock).map_err(|e| Error::io(format!("netlink socket in {ns}"), e))?;
    let links = nl
        .links()
        .map_err(|err| Error::io(format!("listing the interfaces of {ns}"), err))?;
    let index_of = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
    let index = index_of(&e.iface).ok_or_else(|| Error::NoInterface {
        node: e.node.clone(),
        iface: e.iface.clone(),
        known: String::new(),
    })?;
    let word = if up { "up" } else { "down" };
    nl.push(
        netlink::set_link(
            index,
            &SetLink {
                up: Some(up),
                ..Default::default()
            },
        ),
        format!("ip link set dev {} {word}", e.iface),
    );
    nl.flush().map_err(|errs| {
        Error::kernel(
            &e.node,
            format!("ip link set dev {} {word}", e.iface),
            errs.first().map_or(libc::EIO, |x| x.errno),
        )
    })?;
    if up {
        // Down took the routes through the interface (and IPv6 addresses)
        // with it; the file's come back. Each is a replace; one that still
        // cannot be made (its gateway behind another link that is down)
        // is left out, as the kernel would.
        let node = &lab.nodes[&e.node];
        for a in &node.interfaces[&e.iface].addresses {
            nl.push(
                netlink::address(netlink::Change::Add, index, *a),
                format!("ip addr add {a} dev {}", e.iface),
            );
        }
        for r in &node.routes {
            let oif = match &r.dev {
                Some(d) => match index_of(d) {
                    Some(i) => Some(i),
                    None => continue,
                },
                None => None,
            };
            let spec = crate::apply::route_spec(r, oif);
            nl.push(
                netlink::route(netlink::Change::Add, &spec),
                format!("ip route replace {r}"),
            );
        }
        if let Err(errs) = nl.flush() {
            for x in errs {
                tracing::debug!(node = %e.node, what = %x.what, errno = x.errno, "not restored");
            }
        }
    }
    Ok(())
}

fn ask(lab: &str, req: Request) -> Result<(), Error> {
    datapath::expect_done(lab, datapath::query(lab, &req)?)
}

/// Sets one end of a link down or up: a kernel interface through
/// netlink, a switch port by telling the datapath. A host cabled to a
/// switch keeps its interface up (and its routes): the switch port alone
/// goes out of service, as when a switch port is shut.
fn set_end(lab: &Lab, e: &Endpoint, up: bool) -> Result<(), Error> {
    if is_switch(lab, e) {
        ask(
            &lab.name,
            Request::Link {
                switch: e.node.clone(),
                port: e.iface.clone(),
                up,
            },
        )
    } else {
        set_iface(lab, e, up)
    }
}

/// The ends `weft link` acts on: the switch ends of a link that has
/// one, else both kernel ends.
fn ends<'a>(lab: &Lab, a: &'a Endpoint, b: &'a Endpoint) -> Vec<&'a Endpoint> {
    let sw: Vec<&Endpoint> = [a, b].into_iter().filter(|e| is_switch(lab, e)).collect();
    if sw.is_empty() {
        vec![a, b]
    } else {
        sw
    }
}

/// Waits until a link brought up carries frames: both kernel ends with a
/// carrier, switch ports forwarding (RSTP agrees within milliseconds;
/// 802.1D takes its forward delays, as at `weft up`).
fn wait_usable(lab: &Lab, a: &Endpoint, b: &Endpoint) -> Result<(), Error> {
    let t0 = std::time::Instant::now();
    for e in [a, b] {
        if is_switch(lab, e) {
            continue;
        }
        let ns = &lab.nodes[&e.node].netns;
        let fd = netns::open(ns)?;
        let sock = netns::route_socket_in(fd.as_fd())?;
        let mut nl = Netlink::from_fd(sock)
            .map_err(|err| Error::io(format!("netlink socket in {ns}"), err))?;
        loop {
            let up = nl
                .links()
                .map_err(|err| Error::io(format!("listing the interfaces of {ns}"), err))?
                .into_iter()
                .any(|l| l.name == e.iface && l.admin_up && l.lower_up);
            if up {
                break;
            }
            if t0.elapsed() > std::time::Duration::from_secs(5) {
                return Err(Error::Timeout {
                    what: format!("{e} getting a carrier after it was set up"),
                    secs: 5.0,
                    detail: format!("`weft status {}` shows it", lab.name),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    if is_switch(lab, a) || is_switch(lab, b) {
        datapath::wait_ready(lab, None, &|_| {})?;
    }
    Ok(())
}

/// `weft link LAB A B down|up`. Returns the link's two ends.
pub fn set_link(name: &str, a: &str, b: &str, up: bool) -> Result<(Endpoint, Endpoint), Error> {
    let _lock = state::lock_existing(name)?;
    let st = crate::built(name)?;
    let (ea, eb) = find_link(&st.lab, a, b)?;
    for e in ends(&st.lab, &ea, &eb) {
        set_end(&st.lab, e, up)?;
    }
    if up {
        wait_usable(&st.lab, &ea, &eb)?;
    } else if is_switch(&st.lab, &ea) || is_switch(&st.lab, &eb) {
        // The spanning tree works round the link before the command
        // returns, as `weft up` waits for it: what runs next sees the lab
        // usable again, not a tree half-way through a change.
        datapath::wait_ready(&st.lab, None, &|_| {})?;
    }
    let mut o = load(name).unwrap_or_default();
    let pair = [ea.to_string(), eb.to_string()];
    o.links_down
        .retain(|[x, y]| !(pair.contains(x) && pair.contains(y)));
    if !up {
        o.links_down.push(pair);
    }
    save(name, &o)?;
    crate::events::record(
        name,
        crate::events::Event::new(if up { "link.up" } else { "link.down" })
            .with("a", ea.to_string())
            .with("b", eb.to_string()),
    );
    Ok((ea, eb))
}

/// What `weft impair` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Impaired {
    /// The switch port at one end of the link (the switch impairs it).
    Port(Endpoint),
    /// The wire in a link between two kernel ends.
    Wire {
        /// `~NODE.IFACE`.
        wire: String,
        link: [Endpoint; 2],
    },
    /// A tunnel link: its processes impair what they receive.
    Tunnel { link: [Endpoint; 2] },
}

impl Impaired {
    /// `switch port sw:p1`, `link h1:eth0 — h2:eth0 (wire ~h1.eth0)`.
    pub fn describe(&self) -> String {
        match self {
            Impaired::Port(p) => format!("switch port {p}"),
            Impaired::Wire { wire, link } => {
                format!("link {} — {} (wire {wire})", link[0], link[1])
            }
            Impaired::Tunnel { link } => format!("tunnel {} — {}", link[0], link[1]),
        }
    }
}

/// The port (`sw:p1`) or the wire (`~h1.eth0`).
impl std::fmt::Display for Impaired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Impaired::Port(p) => p.fmt(f),
            Impaired::Wire { wire, .. } => f.write_str(wire),
            Impaired::Tunnel { link } => link[0].fmt(f),
        }
    }
}

/// `weft impair` on a wired link: the wire takes the new settings over
/// the datapath's control socket; its counters run on.
fn set_wire_impair(
    st: &state::State,
    wire: &str,
    imp: Option<Impairment>,
) -> Result<Impaired, Error> {
    let name = &st.lab.name;
    let node = &st.lab.nodes[wire];
    let w = node.wire.as_ref().expect("a wire node");
    ask(
        name,
        Request::Wire {
            wire: wire.to_string(),
            impair: imp.clone(),
        },
    )?;
    let mut o = load(name).unwrap_or_default();
    if imp.as_ref() == Some(&w.impair) {
        o.wires.remove(wire);
    } else {
        o.wires.insert(wire.to_string(), imp.clone());
    }
    save(name, &o)?;
    let e = match &imp {
        Some(i) => crate::events::Event::new("impair.set").with("impair", i.summary()),
        None => crate::events::Event::new("impair.cleared"),
    };
    crate::events::record(
        name,
        e.node(wire)
            .with("a", w.link[0].to_string())
            .with("b", w.link[1].to_string()),
    );
    Ok(Impaired::Wire {
        wire: wire.to_string(),
        link: w.link.clone(),
    })
}

/// The MAC an interface has now, from the kernel.
fn current_mac(lab: &Lab, e: &Endpoint) -> Result<Option<weft_topo::Mac>, Error> {
    let ns = &lab.nodes[&e.node].netns;
    let fd = netns::open(ns)?;
    let sock = netns::route_socket_in(fd.as_fd())?;
    let mut nl =
        Netlink::from_fd(sock).map_err(|err| Error::io(format!("netlink socket in {ns}"), err))?;
    Ok(nl
        .links()
        .map_err(|err| Error::io(format!("listing the interfaces of {ns}"), err))?
        .into_iter()
        .find(|l| l.name == e.iface)
        .and_then(|l| l.mac)
        .map(weft_topo::Mac))
}

/// `weft impair` on a link between two kernel ends that has no wire: the
/// lab is brought to itself plus a wire in that link, as `weft up` of a
/// file with `impair` on the link would (the link's veth pair is made
/// again, with the ends' names, MACs, addresses and routes; the datapath
/// starts or restarts to serve the wire). Other runtime changes stay: they
/// are kept from `up`'s restore and told to the (re)started datapath
/// again. `weft up` of the file removes the wire.
fn insert_wire(name: &str, a: &Endpoint, b: &Endpoint, imp: Impairment) -> Result<Impaired, Error> {
    let st = crate::built(name)?;
    let mut lab = st.lab.clone();
    // The ends keep the MACs they have (a new veth would get new ones).
    for e in [a, b] {
        let mac = current_mac(&lab, e)?;
        if let Some(i) = lab
            .nodes
            .get_mut(&e.node)
            .and_then(|n| n.interfaces.get_mut(&e.iface))
        {
            i.mac = i.mac.or(mac);
        }
    }
    let Some(wire) = weft_topo::wire::insert_at_run_time(&mut lab, a, b, imp.clone()) else {
        return Err(Error::invalid(format!(
            "{a} — {b} is not a veth link between two kernel ends"
        )));
    };
    let kept = load(name);
    let _ = std::fs::remove_file(path(name));
    let up = crate::up(
        &lab,
        &crate::UpOptions {
            source: st.source.clone(),
            ..Default::default()
        },
    );
    let mut o = kept.unwrap_or_default();
    o.wires.insert(wire.clone(), Some(imp.clone()));
    save(name, &o)?;
    up?;
    for (port, i) in &o.impair {
        if let Some((sw, p)) = port.split_once(':') {
            ask(
                name,
                Request::Impair {
                    switch: sw.to_string(),
                    port: p.to_string(),
                    impair: i.clone(),
                },
            )?;
        }
    }
    for (w, i) in &o.wires {
        if *w != wire {
            ask(
                name,
                Request::Wire {
                    wire: w.clone(),
                    impair: i.clone(),
                },
            )?;
        }
    }
    crate::events::record(
        name,
        crate::events::Event::new("impair.set")
            .with("impair", imp.summary())
            .node(&wire)
            .with("a", a.to_string())
            .with("b", b.to_string()),
    );
    Ok(Impaired::Wire {
        wire,
        link: [a.min(b).clone(), a.max(b).clone()],
    })
}

/// The tunnel link between `a` and `b` (each a node or `NODE:IFACE`).
pub(crate) fn find_tunnel<'a>(lab: &'a Lab, a: &str, b: &str) -> Option<&'a weft_topo::TunnelLink> {
    let is = |s: &str, e: &Endpoint| match s.split_once(':') {
        Some((n, i)) => e.node == n && e.iface == i,
        None => e.node == s,
    };
    lab.tunnels.iter().find(|t| {
        let [x, y] = [&t.ends[0].endpoint, &t.ends[1].endpoint];
        (is(a, x) && is(b, y)) || (is(a, y) && is(b, x))
    })
}

/// `weft impair` on a tunnel link: each end's process (on this machine)
/// takes the settings of the direction it receives, over its control
/// socket.
fn set_tunnel_impair(
    lab: &Lab,
    t: &weft_topo::TunnelLink,
    imp: Option<Impairment>,
) -> Result<Impaired, Error> {
    let name = &lab.name;
    for i in 0..2 {
        let ep = &t.ends[i].endpoint;
        if !lab.nodes.contains_key(&ep.node) {
            // The other machine's end: `weft impair` there sets it.
            continue;
        }
        let want = imp
            .as_ref()
            .and_then(|x| crate::tunnels::receive_impair(name, t, x, i));
        crate::tunnels::set_end_impair(name, ep, want.as_ref())?;
    }
    let key = t.ends[0].endpoint.to_string();
    let mut o = load(name).unwrap_or_default();
    if imp == t.impair {
        o.tunnels.remove(&key);
    } else {
        o.tunnels.insert(key, imp.clone());
    }
    save(name, &o)?;
    let e = match &imp {
        Some(i) => crate::events::Event::new("impair.set").with("impair", i.summary()),
        None => crate::events::Event::new("impair.cleared"),
    };
    let link = [t.ends[0].endpoint.clone(), t.ends[1].endpoint.clone()];
    crate::events::record(
        name,
        e.with("a", link[0].to_string())
            .with("b", link[1].to_string()),
    );
    Ok(Impaired::Tunnel { link })
}

/// `weft impair LAB A B ...`: sets (or with `None` clears) the
/// impairment of the link's switch end, or of the wire in a link between
/// two kernel ends (put in at run time when the link has none). Returns
/// which.
pub fn set_impair(
    name: &str,
    a: &str,
    b: &str,
    imp: Option<Impairment>,
) -> Result<Impaired, Error> {
    if let Some(i) = &imp {
        i.check()?;
    }
    let _lock = state::lock_existing(name)?;
    let st = crate::built(name)?;
    if let Some(t) = find_tunnel(&st.lab, a, b) {
        return set_tunnel_impair(&st.lab, t, imp);
    }
    let (ea, eb) = find_link(&st.lab, a, b)?;
    let end = if is_switch(&st.lab, &ea) {
        ea
    } else if is_switch(&st.lab, &eb) {
        eb
    } else if let Some(w) = st.lab.wire_of(&ea) {
        let wire = w.name.clone();
        return set_wire_impair(&st, &wire, imp);
    } else {
        let Some(imp) = imp else {
            return Err(Error::invalid_help(
                format!("{ea} — {eb} is not impaired"),
                format!("`weft status {name}` shows the impaired links"),
            ));
        };
        // `up` takes the lab's lock itself.
        drop(_lock);
        return insert_wire(name, &ea, &eb, imp);
    };
    ask(
        name,
        Request::Impair {
            switch: end.node.clone(),
            port: end.iface.clone(),
            impair: imp.clone(),
        },
    )?;
    let file = st.lab.nodes[&end.node]
        .switch
        .as_ref()
        .and_then(|s| s.ports.get(&end.iface))
        .and_then(|p| p.impair.clone());
    let mut o = load(name).unwrap_or_default();
    if file == imp {
        o.impair.remove(&end.to_string());
    } else {
        o.impair.insert(end.to_string(), imp.clone());
    }
    save(name, &o)?;
    let e = match &imp {
        Some(i) => crate::events::Event::new("impair.set").with("impair", i.summary()),
        None => crate::events::Event::new("impair.cleared"),
    };
    crate::events::record(name, e.node(&end.node).port(&end.iface));
    Ok(Impaired::Port(end))
}

/// Undoes the runtime changes so the lab is as its file says: links
/// taken down come back up, impairments return to the file's (a datapath
/// just (re)started has the file's already). Called by `weft up`;
/// returns what was undone.
pub fn restore(lab: &Lab, datapath_fresh: bool) -> Result<Vec<String>, Error> {
    let Some(o) = load(&lab.name) else {
        return Ok(Vec::new());
    };
    let mut undone = Vec::new();
    for [a, b] in &o.links_down {
        let Ok((ea, eb)) = find_link(lab, a, b) else {
            continue;
        };
        for e in ends(lab, &ea, &eb) {
            if is_switch(lab, e) && datapath_fresh {
                continue;
            }
            set_end(lab, e, true)?;
        }
        wait_usable(lab, &ea, &eb)?;
        undone.push(format!("link {a} — {b} up again"));
    }
    for port in o.impair.keys() {
        let Some((sw, p)) = port.split_once(':') else {
            continue;
        };
        let Some(want) = lab
            .nodes
            .get(sw)
            .and_then(|n| n.switch.as_ref())
            .and_then(|s| s.ports.get(p))
            .map(|x| x.impair.clone())
        else {
            continue;
        };
        if !datapath_fresh {
            ask(
                &lab.name,
                Request::Impair {
                    switch: sw.to_string(),
                    port: p.to_string(),
                    impair: want.clone(),
                },
            )?;
        }
        undone.push(match want {
            Some(i) => format!("impair {port} back to the file's {}", i.summary()),
            None => format!("impair {port} cleared, as in the file"),
        });
    }
    for wire in o.wires.keys() {
        let Some(want) = lab.nodes.get(wire).and_then(|n| n.wire.as_ref()) else {
            continue;
        };
        if !datapath_fresh {
            ask(
                &lab.name,
                Request::Wire {
                    wire: wire.clone(),
                    impair: Some(want.impair.clone()),
                },
            )?;
        }
        undone.push(format!(
            "impair wire {wire} back to the file's {}",
            want.impair.summary()
        ));
    }
    for key in o.tunnels.keys() {
        let Some(t) = lab
            .tunnels
            .iter()
            .find(|t| t.ends[0].endpoint.to_string() == *key)
        else {
            continue;
        };
        for i in 0..2 {
            let ep = &t.ends[i].endpoint;
            if !lab.nodes.contains_key(&ep.node) {
                continue;
            }
            let want = t
                .impair
                .as_ref()
                .and_then(|x| crate::tunnels::receive_impair(&lab.name, t, x, i));
            // A process (re)started by this `up` has no socket yet, or has
            // it with the file's settings already: nothing to put back.
            let _ = crate::tunnels::set_end_impair(&lab.name, ep, want.as_ref());
        }
        undone.push(match &t.impair {
            Some(i) => format!("impair tunnel {key} back to the file's {}", i.summary()),
            None => format!("impair tunnel {key} cleared, as in the file"),
        });
    }
    for wire in o.wires.keys().filter(|w| !lab.nodes.contains_key(*w)) {
        undone.push(format!("wire {wire} removed, as the file has none"));
    }
    save(&lab.name, &Overrides::default())?;
    Ok(undone)
}

/// Whether this kernel has netem (`sch_netem`), found by trying: a
/// `netem` qdisc added on `lo` in a scratch network namespace (`unshare
/// --net`, gone when `tc` exits), so nothing of the machine is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netem {
    Available,
    /// Not there, or cannot be told: what `tc` said.
    Missing(String),
}

/// Tries netem now (docs/conditions.md, "Netem"). weft impairs through
/// its own wires either way: they replay from a seed on every kernel and
/// give the same statistics; this says whether netem could be compared.
pub fn netem() -> Netem {
    let out = std::process::Command::new("unshare")
        .args(["--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem"])
        .args(["delay", "1ms"])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Netem::Available,
        Ok(o) => Netem::Missing(format!(
            "`tc qdisc add dev lo root netem delay 1ms` in a scratch namespace: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Netem::Missing(format!("cannot run `unshare --net tc` to try netem: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
name = "rt"
[nodes.sw]
kind = "switch"
[nodes.a.interfaces.e1]
[nodes.a.interfaces.e2]
[nodes.b.interfaces.eth0]
[[links]]
endpoints = ["a:e1", "sw:p1"]
[[links]]
endpoints = ["a:e2", "sw:p2"]
[[links]]
endpoints = ["b:eth0", "a:e3"]
"#;

    #[test]
    fn links_are_found_by_node_names_or_ends() {
        let lab = weft_topo::parse(LAB).unwrap().lab;
        let (x, y) = find_link(&lab, "b", "a").unwrap();
        assert_eq!(
            (x.to_string(), y.to_string()),
            ("b:eth0".into(), "a:e3".into())
        );
        let (x, y) = find_link(&lab, "sw", "a:e2").unwrap();
        assert_eq!(
            (x.to_string(), y.to_string()),
            ("sw:p2".into(), "a:e2".into())
        );
        match find_link(&lab, "a", "sw").unwrap_err() {
            Error::Invalid { what, help } => {
                assert!(what.contains("2 links"), "{what}");
                assert!(
                    help.as_deref().is_some_and(|h| h.contains("NODE:IFACE")),
                    "{help:?}"
                );
            }
            e => panic!("{e}"),
        }
        let e = find_link(&lab, "b", "sw").unwrap_err().to_string();
        assert!(e.contains("no link between b and sw"), "{e}");
        let e = find_link(&lab, "zz", "sw").unwrap_err().to_string();
        assert!(e.contains("no node zz"), "{e}");
    }

    #[test]
    fn overrides_read_as_lines() {
        let mut o = Overrides::default();
        assert!(o.is_empty());
        o.links_down.push(["a:e1".into(), "sw:p1".into()]);
        o.impair.insert(
            "sw:p2".into(),
            Some(Impairment {
                delay_us: 50_000,
                ..Default::default()
            }),
        );
        o.impair.insert("sw:p1".into(), None);
        assert_eq!(
            o.lines(),
            [
                "link a:e1 — sw:p1 down",
                "impair sw:p1: cleared",
                "impair sw:p2: delay 50ms"
            ]
        );
    }
}
