//! Writing the model out as a weft lab file, every value annotated with the
//! input line it comes from, and checking the result with `weft-topo` so
//! that its problems point back at the input.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{DevKind, Model, ROOT};
use crate::{ImportError, ImportErrors, Imported, Origin, Warning};

/// The output, line by line, each with the origin of what it holds.
#[derive(Default)]
struct Out {
    lines: Vec<(String, Option<Origin>)>,
}

impl Out {
    fn push(&mut self, line: impl Into<String>, o: Option<&Origin>) {
        let mut line = line.into();
        if let Some(o) = o {
            if o.line > 0 {
                line = format!("{line:<40} # {o}");
            }
        }
        self.lines.push((line, o.cloned().filter(|o| o.line > 0)));
    }
    fn blank(&mut self) {
        self.lines.push((String::new(), None));
    }
    fn text(&self) -> String {
        let mut s: String = self
            .lines
            .iter()
            .map(|(l, _)| l.trim_end())
            .collect::<Vec<_>>()
            .join("\n");
        s.push('\n');
        s
    }
    /// The origin of output line `n` (1-based), or of the nearest line
    /// above it that has one.
    fn origin_of(&self, n: usize) -> Option<Origin> {
        (0..n.min(self.lines.len()))
            .rev()
            .find_map(|k| self.lines[k].1.clone())
    }
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        q(s)
    }
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A node name weft accepts (letters, digits, `-`, `_`; 1 to 64).
fn node_name(s: &str) -> String {
    let mut n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    n.truncate(64);
    if n.is_empty() {
        "node".into()
    } else {
        n
    }
}

struct Port {
    vlan: Option<u32>,
    trunk: Vec<u32>,
    native: Option<u32>,
}

/// Where a device ends up: node and interface name.
type Place = (String, String);

pub(crate) fn finish(mut m: Model, lab: &str, what: &str) -> Result<Imported, ImportErrors> {
    let mut warnings = std::mem::take(&mut m.warnings);
    let mut used: BTreeSet<String> = BTreeSet::new();
    let unique = |base: String, used: &mut BTreeSet<String>| -> String {
        let mut n = base.clone();
        let mut k = 2;
        while used.contains(&n) {
            n = format!("{base}-{k}");
            k += 1;
        }
        used.insert(n.clone());
        n
    };
    // Node names: one per namespace (the machine's own is `host`).
    let mut ns_node: HashMap<usize, String> = HashMap::new();
    for (i, ns) in m.ns.iter().enumerate() {
        if !ns.alive || ns.hidden || i == ROOT {
            continue;
        }
        let n = node_name(&ns.name);
        if n != ns.name {
            warnings.push(Warning {
                origin: ns.origin.clone(),
                message: format!("namespace `{}` becomes node `{n}` (node names take letters, digits, `-` and `_`)", ns.name),
            });
        }
        ns_node.insert(i, unique(n, &mut used));
    }
    // OVS bridges become weft switches holding their ports.
    let mut switch_of: HashMap<usize, (String, Port)> = HashMap::new();
    let mut switches: Vec<(String, Option<String>, Origin)> = Vec::new();
    for b in m.ovs.iter().filter(|b| b.alive) {
        let name = unique(node_name(&b.name), &mut used);
        let vlans: BTreeSet<u32> = b
            .ports
            .iter()
            .flat_map(|p| p.vlan.into_iter().chain(p.trunk.iter().copied()))
            .collect();
        for p in &b.ports {
            let port = if p.vlan.is_some() || !p.trunk.is_empty() {
                Port {
                    vlan: p.vlan,
                    trunk: p.trunk.clone(),
                    native: None,
                }
            } else if vlans.is_empty() {
                Port {
                    vlan: None,
                    trunk: vec![],
                    native: None,
                }
            } else {
                // An OVS port with neither tag nor trunks carries every VLAN.
                warnings.push(Warning {
                    origin: Some(p.origin.clone()),
                    message: format!("OVS port `{}` carries all VLANs; in weft it is a trunk of the bridge's VLANs ({}) with untagged frames in VLAN 1", m.devs[p.dev].name, vlans.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
                });
                Port {
                    vlan: None,
                    trunk: vlans.iter().copied().collect(),
                    native: Some(1),
                }
            };
            switch_of.insert(p.dev, (name.clone(), port));
        }
        switches.push((
            name,
            Some(b.stp.clone().unwrap_or_else(|| "off".into())),
            b.origin.clone(),
        ));
    }
    let root_used = m.devs.iter().enumerate().any(|(k, d)| {
        d.alive
            && d.ns == ROOT
            && !switch_of.contains_key(&k)
            && (!matches!(d.kind, DevKind::Lo) || extra_lo(&d.addrs))
    }) || !m.ns[ROOT].routes.is_empty()
        || !m.ns[ROOT].sysctls.is_empty();
    if root_used {
        let n = unique("host".into(), &mut used);
        warnings.push(Warning {
            origin: None,
            message: format!("what the input does in the machine's own namespace goes into node `{n}` (weft never changes the machine's namespace)"),
        });
        ns_node.insert(ROOT, n);
    }
    let place =
        |d: usize, m: &Model, switch_of: &HashMap<usize, (String, Port)>| -> Option<Place> {
            let dev = &m.devs[d];
            if let Some((s, _)) = switch_of.get(&d) {
                return Some((s.clone(), dev.name.clone()));
            }
            ns_node.get(&dev.ns).map(|n| (n.clone(), dev.name.clone()))
        };
    // VLAN devices: the kernel here has no 802.1Q, so a switch goes on the
    // cable of the parent, with an access port per VLAN device.
    let mut vlan_sw: BTreeMap<usize, String> = BTreeMap::new();
    let mut extra_links: Vec<(Place, Place, Origin)> = Vec::new();
    let mut sw_ports: BTreeMap<String, Vec<(String, Port, Option<Origin>)>> = BTreeMap::new();
    for dev in m.devs.iter() {
        let DevKind::Vlan { parent, id } = dev.kind else {
            continue;
        };
        if !dev.alive {
            continue;
        }
        let Some((pnode, pname)) = place(parent, &m, &switch_of) else {
            continue;
        };
        let sw = match vlan_sw.get(&parent) {
            Some(s) => s.clone(),
            None => {
                let s = unique(node_name(&format!("vlan-{pnode}-{pname}")), &mut used);
                vlan_sw.insert(parent, s.clone());
                switches.push((s.clone(), Some("off".into()), m.devs[parent].origin.clone()));
                extra_links.push((
                    (pnode.clone(), pname.clone()),
                    (s.clone(), "untagged".into()),
                    m.devs[parent].origin.clone(),
                ));
                sw_ports.entry(s.clone()).or_default().push((
                    "untagged".into(),
                    Port {
                        vlan: None,
                        trunk: vec![],
                        native: None,
                    },
                    None,
                ));
                s
            }
        };
        let port = format!("v{id}");
        warnings.push(Warning {
            origin: Some(dev.origin.clone()),
            message: format!("VLAN device `{}`: this kernel has no 802.1Q, so switch `{sw}` goes on `{pname}`'s cable; `{}` becomes a veth to its access port `{port}` (VLAN {id}) and the cable's far end a trunk", dev.name, dev.name),
        });
        // A VLAN device may have been moved away from its parent's node.
        let vnode = ns_node
            .get(&dev.ns)
            .cloned()
            .unwrap_or_else(|| pnode.clone());
        extra_links.push((
            (vnode, dev.name.clone()),
            (sw.clone(), port.clone()),
            dev.origin.clone(),
        ));
        sw_ports.entry(sw.clone()).or_default().push((
            port,
            Port {
                vlan: Some(id),
                trunk: vec![],
                native: None,
            },
            Some(dev.origin.clone()),
        ));
    }
    for (parent, sw) in &vlan_sw {
        let ids: Vec<u32> = m
            .devs
            .iter()
            .filter(|d| {
                d.alive && matches!(d.kind, DevKind::Vlan { parent: p, .. } if p == *parent)
            })
            .filter_map(|d| match d.kind {
                DevKind::Vlan { id, .. } => Some(id),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        sw_ports.entry(sw.clone()).or_default().push((
            "trunk".into(),
            Port {
                vlan: None,
                trunk: ids,
                native: Some(1),
            },
            None,
        ));
    }
    let endpoint = |d: usize, m: &Model| -> Option<Place> {
        if let Some(s) = vlan_sw.get(&d) {
            return Some((s.clone(), "trunk".into()));
        }
        place(d, m, &switch_of)
    };

    let mut out = Out::default();
    out.push(
        format!("# Imported by `weft import {what}` (docs/import.md): `# line N` names"),
        None,
    );
    out.push("# the line of the input each value comes from.", None);
    out.push(format!("name = {}", q(lab)), None);

    // Host nodes, in namespace order.
    let mut order: Vec<usize> = ns_node.keys().copied().collect();
    order.sort();
    for i in order {
        let node = ns_node[&i].clone();
        let ns = &m.ns[i];
        out.blank();
        out.push(format!("[nodes.{}]", key(&node)), ns.origin.as_ref());
        let bridge_dev = if ns.bridge_node {
            m.devs.iter().position(|d| {
                d.alive && d.ns == i && d.name == ns.name && matches!(d.kind, DevKind::Bridge(_))
            })
        } else {
            None
        };
        if let Some(b) = bridge_dev {
            out.push("kind = \"bridge\"", None);
            if let DevKind::Bridge(opts) = &m.devs[b].kind {
                bridge_opts(&mut out, opts);
            }
            addresses(&mut out, &m.devs[b].addrs);
        }
        for (l, o) in &ns.extra {
            out.push(l.clone(), o.as_ref());
        }
        if !ns.routes.is_empty() {
            out.push("routes = [", None);
            for (r, o) in &ns.routes {
                out.push(format!("  {},", q(r)), Some(o));
            }
            out.push("]", None);
        }
        if !ns.sysctls.is_empty() {
            out.blank();
            out.push(format!("[nodes.{}.sysctls]", key(&node)), None);
            for (k, (v, o)) in &ns.sysctls {
                let val = v
                    .parse::<i64>()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| q(v));
                out.push(format!("{} = {val}", q(k)), Some(o));
            }
        }
        for (d, dev) in m.devs.iter().enumerate() {
            if !dev.alive || dev.ns != i || switch_of.contains_key(&d) || Some(d) == bridge_dev {
                continue;
            }
            if matches!(dev.kind, DevKind::Lo) {
                let extra: Vec<(String, Origin)> = dev
                    .addrs
                    .iter()
                    .filter(|(a, _)| a != "127.0.0.1/8" && a != "::1/128")
                    .cloned()
                    .collect();
                if !extra.is_empty() {
                    out.blank();
                    out.push(format!("[nodes.{}.interfaces.lo]", key(&node)), None);
                    addresses(&mut out, &extra);
                }
                continue;
            }
            out.blank();
            out.push(
                format!("[nodes.{}.interfaces.{}]", key(&node), key(&dev.name)),
                Some(&dev.origin),
            );
            match &dev.kind {
                DevKind::Bridge(opts) => {
                    out.push("kind = \"bridge\"", None);
                    bridge_opts(&mut out, opts);
                }
                DevKind::Tun(t) | DevKind::Tap(t) => {
                    out.push(
                        format!(
                            "kind = \"{}\"",
                            if matches!(dev.kind, DevKind::Tun(_)) {
                                "tun"
                            } else {
                                "tap"
                            }
                        ),
                        None,
                    );
                    if let Some(u) = t.owner {
                        out.push(format!("owner = {u}"), None);
                    }
                    if let Some(g) = t.group {
                        out.push(format!("group = {g}"), None);
                    }
                    for (k, on) in [
                        ("multi_queue", t.multi_queue),
                        ("pi", t.pi),
                        ("vnet_hdr", t.vnet_hdr),
                    ] {
                        if on {
                            out.push(format!("{k} = true"), None);
                        }
                    }
                }
                _ => {}
            }
            addresses(&mut out, &dev.addrs);
            if let Some((mtu, o)) = &dev.mtu {
                out.push(format!("mtu = {mtu}"), Some(o));
            }
            if let Some((mac, o)) = &dev.mac {
                out.push(format!("mac = {}", q(mac)), Some(o));
            }
            if !dev.up {
                out.push("up = false", None);
            }
            if let Some(b) = &dev.master {
                if bridge_dev.is_none() {
                    out.push(format!("master = {}", q(b)), None);
                }
            } else if bridge_dev.is_some() {
                out.push("port = false", None);
            }
            if let Some(c) = dev.cost {
                out.push(format!("cost = {c}"), None);
            }
            if let Some(p) = dev.port_priority {
                out.push(format!("priority = {p}"), None);
            }
        }
    }
    // Switch nodes: OVS bridges and the VLAN switches.
    for (name, stp, origin) in &switches {
        out.blank();
        out.push(format!("[nodes.{}]", key(name)), Some(origin));
        out.push("kind = \"switch\"", None);
        if let Some(s) = stp {
            out.push(format!("stp = {}", q(s)), None);
        }
        let mut ports: Vec<(String, Port, Option<Origin>)> = Vec::new();
        for (d, (s, p)) in &switch_of {
            if s == name {
                ports.push((
                    m.devs[*d].name.clone(),
                    Port {
                        vlan: p.vlan,
                        trunk: p.trunk.clone(),
                        native: p.native,
                    },
                    Some(m.devs[*d].origin.clone()),
                ));
            }
        }
        ports.sort_by(|a, b| a.0.cmp(&b.0));
        ports.extend(sw_ports.remove(name).unwrap_or_default());
        for (pname, p, o) in ports {
            out.blank();
            out.push(
                format!("[nodes.{}.interfaces.{}]", key(name), key(&pname)),
                o.as_ref(),
            );
            if let Some(v) = p.vlan {
                out.push(format!("vlan = {v}"), None);
            }
            if !p.trunk.is_empty() {
                out.push(
                    format!(
                        "trunk = [{}]",
                        p.trunk
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                );
            }
            if let Some(n) = p.native {
                out.push(format!("native = {n}"), None);
            }
        }
    }
    // Cables.
    for (d, dev) in m.devs.iter().enumerate() {
        let DevKind::Veth { peer } = dev.kind else {
            continue;
        };
        if !dev.alive || peer < d {
            continue;
        }
        let (Some(a), Some(b)) = (endpoint(d, &m), endpoint(peer, &m)) else {
            continue;
        };
        out.blank();
        out.push("[[links]]", Some(&dev.origin));
        out.push(
            format!(
                "endpoints = [{}, {}]",
                q(&format!("{}:{}", a.0, a.1)),
                q(&format!("{}:{}", b.0, b.1))
            ),
            None,
        );
    }
    for (a, b, o) in &extra_links {
        out.blank();
        out.push("[[links]]", Some(o));
        out.push(
            format!(
                "endpoints = [{}, {}]",
                q(&format!("{}:{}", a.0, a.1)),
                q(&format!("{}:{}", b.0, b.1))
            ),
            None,
        );
    }
    if !m.notes.is_empty() {
        out.blank();
        out.push(
            "# Not imported: the input's lines that are no part of the lab file.",
            None,
        );
        for n in &m.notes {
            let mut first = true;
            for l in n.text.lines() {
                if first {
                    out.push(format!("# {}: {l}", n.origin), None);
                    first = false;
                } else {
                    out.push(format!("#   {l}"), None);
                }
            }
            out.push(format!("#   ({})", n.why), None);
        }
    }

    let toml = out.text();
    let map_diag = |d: &weft_topo::Diagnostic| -> (Option<Origin>, String) {
        let line = d.line_col(&toml).map(|(l, _)| l);
        let origin = line.and_then(|l| out.origin_of(l));
        let at = line
            .and_then(|l| out.lines.get(l - 1))
            .map(|(t, _)| {
                format!(
                    " (in the lab file written: `{}`)",
                    t.split(" # ").next().unwrap_or("").trim()
                )
            })
            .unwrap_or_default();
        (origin, at)
    };
    match weft_topo::parse(&toml) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                let (origin, _) = map_diag(w);
                warnings.push(Warning {
                    origin,
                    message: w.message.clone(),
                });
            }
            Ok(Imported { toml, warnings })
        }
        Err(diags) => Err(ImportErrors(
            diags
                .0
                .iter()
                .map(|d| {
                    let (origin, at) = map_diag(d);
                    ImportError {
                        origin,
                        message: d.message.clone(),
                        help: Some(format!("{}{at}", d.help.clone().unwrap_or_default())),
                    }
                })
                .collect(),
        )),
    }
}

fn extra_lo(addrs: &[(String, Origin)]) -> bool {
    addrs
        .iter()
        .any(|(a, _)| a != "127.0.0.1/8" && a != "::1/128")
}

fn addresses(out: &mut Out, addrs: &[(String, Origin)]) {
    match addrs {
        [] => {}
        [(a, o)] => out.push(format!("addresses = [{}]", q(a)), Some(o)),
        _ => {
            out.push("addresses = [", None);
            for (a, o) in addrs {
                out.push(format!("  {},", q(a)), Some(o));
            }
            out.push("]", None);
        }
    }
}

fn bridge_opts(out: &mut Out, o: &crate::model::BridgeOpts) {
    if let Some(s) = o.stp {
        out.push(format!("stp = {s}"), o.at.get("stp"));
    }
    for (k, v) in [
        ("forward_delay", o.forward_delay),
        ("hello_time", o.hello_time),
        ("max_age", o.max_age),
        ("ageing_time", o.ageing_time),
    ] {
        if let Some(v) = v {
            out.push(format!("{k} = {}", num(v)), o.at.get(k));
        }
    }
    if let Some(p) = o.priority {
        out.push(format!("priority = {p}"), o.at.get("priority"));
    }
}
