//! containerlab topologies (`*.clab.yml`): `linux`, `bridge`,
//! `ovs-bridge` and `host` nodes, links between them, and `exec` lines that
//! are `ip`/`sysctl` commands, replayed on the same model as scripts.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::model::{Model, Ovs, OvsPort, ROOT};
use crate::{emit, shell, ImportError, ImportErrors, Imported, Origin, Warning};

#[derive(Deserialize)]
struct Topo {
    name: Option<String>,
    mgmt: Option<Value>,
    topology: Topology,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
struct Topology {
    #[serde(default)]
    defaults: NodeDef,
    #[serde(default)]
    kinds: BTreeMap<String, NodeDef>,
    #[serde(default)]
    nodes: BTreeMap<String, Option<NodeDef>>,
    #[serde(default)]
    links: Vec<LinkDef>,
}

#[derive(Deserialize, Default, Clone)]
struct NodeDef {
    kind: Option<String>,
    image: Option<String>,
    #[serde(default)]
    exec: Vec<String>,
    #[serde(default)]
    binds: Vec<String>,
    cmd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct LinkDef {
    #[serde(default)]
    endpoints: Vec<Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    mtu: Option<u32>,
}

/// The kinds weft can build; everything else is a vendor system or a
/// container of a kind weft does not run.
const KINDS: &[&str] = &["linux", "bridge", "ovs-bridge", "host"];

/// Line (1-based) of the first line at or after `from` whose text, trimmed,
/// starts with `prefix`.
fn find_line(src: &str, from: usize, prefix: &str) -> Option<usize> {
    src.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(prefix)
                || t.starts_with(&format!("\"{}", prefix.trim_end_matches(':')))
                || t.starts_with(&format!("'{}", prefix.trim_end_matches(':')))
        })
        .map(|(n, _)| n + 1)
}

fn at(line: usize) -> Origin {
    Origin { file: None, line }
}

pub(crate) fn import(src: &str, lab: Option<&str>) -> Result<Imported, ImportErrors> {
    let topo: Topo = serde_yaml_ng::from_str(src).map_err(|e| ImportError {
        origin: e.location().map(|l| at(l.line())),
        message: e.to_string(),
        help: Some(
            "a containerlab topology: name, topology.nodes, topology.links (docs/import.md)".into(),
        ),
    })?;
    let name = lab
        .map(str::to_string)
        .unwrap_or_else(|| crate::lab_name_from(topo.name.as_deref().unwrap_or("clab")));
    let nodes_line = find_line(src, 1, "nodes:").unwrap_or(1);
    let links_line = find_line(src, 1, "links:").unwrap_or(1);
    let node_line = |n: &str| find_line(src, nodes_line, &format!("{n}:")).unwrap_or(nodes_line);

    let resolver = |_: &str| None;
    let mut m = Model::new(&resolver);
    let mut warnings = Vec::new();
    if let Some(mg) = &topo.mgmt {
        let _ = mg;
        warnings.push(Warning {
            origin: find_line(src, 1, "mgmt:").map(at),
            message: "the `mgmt` network is dropped: weft makes no management network (reach a node with `weft exec`, or add a bridge with `[nat.NODE]` yourself)".into(),
        });
    } else {
        warnings.push(Warning {
            origin: None,
            message: "containerlab's management network (eth0 in every node) is not made: weft nodes have only the links of the file".into(),
        });
    }
    for k in topo.rest.keys().filter(|k| k.as_str() != "prefix") {
        warnings.push(Warning {
            origin: find_line(src, 1, &format!("{k}:")).map(at),
            message: format!("top-level key `{k}` is not carried over"),
        });
    }

    // Resolve each node's kind and settings: node, then kinds.KIND, then defaults.
    let t = &topo.topology;
    let mut resolved: Vec<(String, NodeDef, usize)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut first_refused = None;
    for (n, def) in &t.nodes {
        let def = def.clone().unwrap_or_default();
        let kind = def
            .kind
            .clone()
            .or_else(|| t.defaults.kind.clone())
            .unwrap_or_else(|| "linux".into());
        let line = node_line(n);
        if !KINDS.contains(&kind.as_str()) {
            refused.push(format!("{n} ({kind})"));
            first_refused = Some(first_refused.map_or(line, |f: usize| f.min(line)));
            continue;
        }
        let kd = t.kinds.get(&kind).cloned().unwrap_or_default();
        let merged = NodeDef {
            kind: Some(kind),
            image: def
                .image
                .clone()
                .or(kd.image.clone())
                .or(t.defaults.image.clone()),
            exec: [t.defaults.exec.clone(), kd.exec.clone(), def.exec.clone()].concat(),
            binds: if def.binds.is_empty() {
                if kd.binds.is_empty() {
                    t.defaults.binds.clone()
                } else {
                    kd.binds.clone()
                }
            } else {
                def.binds.clone()
            },
            cmd: def
                .cmd
                .clone()
                .or(kd.cmd.clone())
                .or(t.defaults.cmd.clone()),
            env: [t.defaults.env.clone(), kd.env.clone(), def.env.clone()]
                .into_iter()
                .flatten()
                .collect(),
            rest: def.rest.clone(),
        };
        resolved.push((n.clone(), merged, line));
    }
    if !refused.is_empty() {
        return Err(ImportError {
            origin: first_refused.map(at),
            message: format!("weft imports only {} nodes; these are of other kinds: {}", KINDS.join(", "), refused.join(", ")),
            help: Some("vendor network systems run as containers or VMs that weft does not start; replace them with `linux` nodes (an FRR image, for example) or leave them out".into()),
        }
        .into());
    }

    enum Place {
        Ns(usize),
        Bridge(usize),
        Ovs(usize),
    }
    let mut places: BTreeMap<String, Place> = BTreeMap::new();
    for (n, def, line) in &resolved {
        let o = at(*line);
        match def.kind.as_deref() {
            Some("linux") => {
                let i = m.add_ns(n, &o)?;
                let q = |v: &str| toml::Value::String(v.to_string()).to_string();
                if let Some(img) = &def.image {
                    m.ns[i]
                        .extra
                        .push((format!("image = {}", q(img)), Some(o.clone())));
                    if let Some(cmd) = &def.cmd {
                        let words = shell::parse(cmd, None)
                            .ok()
                            .and_then(|s| match s.as_slice() {
                                [shell::Stmt::Cmd { words, .. }] => words
                                    .iter()
                                    .map(|w| w.literal())
                                    .collect::<Option<Vec<_>>>(),
                                _ => None,
                            });
                        match words {
                            Some(w) => m.ns[i].extra.push((format!("command = [{}]", w.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ")), Some(o.clone()))),
                            None => warnings.push(Warning { origin: Some(o.clone()), message: format!("node `{n}`: cmd `{cmd}` is not a plain list of words; not carried over") }),
                        }
                    }
                    if !def.env.is_empty() {
                        let env: Vec<String> = def
                            .env
                            .iter()
                            .map(|(k, v)| format!("{} = {}", q(k), q(v)))
                            .collect();
                        m.ns[i]
                            .extra
                            .push((format!("env = {{ {} }}", env.join(", ")), Some(o.clone())));
                    }
                } else if def.cmd.is_some() || !def.env.is_empty() {
                    warnings.push(Warning {
                        origin: Some(o.clone()),
                        message: format!(
                            "node `{n}`: cmd and env without an image are not carried over"
                        ),
                    });
                }
                if !def.binds.is_empty() {
                    let mut binds = Vec::new();
                    for b in &def.binds {
                        // containerlab's `:ro`/`:rw` suffix; weft's binds have none.
                        let mut b = b.as_str();
                        for suffix in [":ro", ":rw", ":z", ":Z"] {
                            if let Some(x) = b.strip_suffix(suffix) {
                                warnings.push(Warning {
                                    origin: Some(o.clone()),
                                    message: format!(
                                        "node `{n}`: bind `{b}`: the `{suffix}` option is dropped"
                                    ),
                                });
                                b = x;
                            }
                        }
                        binds.push(q(b));
                    }
                    m.ns[i]
                        .extra
                        .push((format!("binds = [{}]", binds.join(", ")), Some(o.clone())));
                    warnings.push(Warning {
                        origin: Some(o.clone()),
                        message: format!("node `{n}`: relative bind paths are taken from the lab file's directory: write the lab file next to the topology"),
                    });
                }
                places.insert(n.clone(), Place::Ns(i));
            }
            Some("bridge") => {
                let i = m.add_ns(n, &o)?;
                m.ns[i].bridge_node = true;
                let b = m.add_bridge(i, n, &o).map_err(|mut e| {
                    e.message = format!("bridge node `{n}`: {}", e.message);
                    e
                })?;
                m.set_up(b);
                places.insert(n.clone(), Place::Bridge(i));
            }
            Some("ovs-bridge") => {
                let i = m.add_ns(&format!("\u{0}ovs-{n}"), &o)?;
                m.ns[i].hidden = true;
                m.ovs.push(Ovs {
                    name: n.clone(),
                    ns: i,
                    origin: o.clone(),
                    ports: vec![],
                    stp: None,
                    alive: true,
                });
                places.insert(n.clone(), Place::Ovs(m.ovs.len() - 1));
            }
            _ => {
                places.insert(n.clone(), Place::Ns(ROOT));
            }
        }
        for k in def.rest.keys() {
            if !matches!(k.as_str(), "mgmt-ipv4" | "mgmt-ipv6" | "labels" | "group") {
                warnings.push(Warning {
                    origin: find_line(src, *line, &format!("{k}:"))
                        .map(at)
                        .or(Some(o.clone())),
                    message: format!("node `{n}`: `{k}` is not carried over"),
                });
            }
        }
    }

    // Links, before exec lines: containerlab cables the nodes first.
    let mut from = links_line;
    for (k, l) in t.links.iter().enumerate() {
        let line = find_line(src, from, "endpoints:")
            .or_else(|| find_line(src, from, "- "))
            .unwrap_or(links_line);
        from = line + 1;
        let o = at(line);
        if let Some(kind) = &l.kind {
            if kind != "veth" {
                return Err(ImportError {
                    origin: Some(o),
                    message: format!(
                        "link {}: type `{kind}` is not imported (only veth links between nodes)",
                        k + 1
                    ),
                    help: None,
                }
                .into());
            }
        }
        if l.endpoints.len() != 2 {
            return Err(ImportError {
                origin: Some(o),
                message: format!(
                    "link {} has {} endpoints; a veth link has two (\"a:eth1\", \"b:eth1\")",
                    k + 1,
                    l.endpoints.len()
                ),
                help: None,
            }
            .into());
        }
        let mut ends = Vec::new();
        for e in &l.endpoints {
            let (node, iface) = match e {
                Value::String(s) => match s.split_once(':') {
                    Some((a, b)) => (a.to_string(), b.to_string()),
                    None => {
                        return Err(ImportError {
                            origin: Some(o),
                            message: format!("endpoint `{s}` is not NODE:IFACE"),
                            help: None,
                        }
                        .into())
                    }
                },
                Value::Mapping(map) => {
                    let get = |k: &str| {
                        map.get(Value::String(k.into()))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    };
                    match (get("node"), get("interface")) {
                        (Some(a), Some(b)) => (a, b),
                        _ => {
                            return Err(ImportError {
                                origin: Some(o),
                                message: "an endpoint map needs `node` and `interface`".into(),
                                help: None,
                            }
                            .into())
                        }
                    }
                }
                _ => {
                    return Err(ImportError {
                        origin: Some(o),
                        message: "an endpoint is a string NODE:IFACE or a map {node, interface}"
                            .into(),
                        help: None,
                    }
                    .into())
                }
            };
            let place = places.get(&node).ok_or_else(|| ImportError {
                origin: Some(o.clone()),
                message: format!("link {}: there is no node `{node}`", k + 1),
                help: Some(format!(
                    "the nodes are: {}",
                    places.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            })?;
            let ns = match place {
                Place::Ns(i) | Place::Bridge(i) => *i,
                Place::Ovs(b) => m.ovs[*b].ns,
            };
            ends.push((node, iface, ns));
        }
        let (a, b) = m.add_veth((ends[0].2, &ends[0].1), (ends[1].2, &ends[1].1), &o)?;
        for (d, (node, _, _)) in [(a, &ends[0]), (b, &ends[1])] {
            m.set_up(d);
            if let Some(mtu) = l.mtu {
                m.devs[d].mtu = Some((mtu, o.clone()));
            }
            match &places[node] {
                Place::Bridge(_) => m.devs[d].master = Some(node.clone()),
                Place::Ovs(ob) => m.ovs[*ob].ports.push(OvsPort {
                    dev: d,
                    vlan: None,
                    trunk: vec![],
                    origin: o.clone(),
                }),
                Place::Ns(_) => {}
            }
        }
    }

    // exec lines, replayed in their node like `ip netns exec NODE ...`.
    for (n, def, line) in &resolved {
        let Some(Place::Ns(ns)) = places.get(n) else {
            if !def.exec.is_empty() {
                warnings.push(Warning {
                    origin: Some(at(*line)),
                    message: format!(
                        "node `{n}`: exec lines of a {} node are not replayed",
                        def.kind.as_deref().unwrap_or("")
                    ),
                });
            }
            continue;
        };
        let mut from = *line;
        for cmd in &def.exec {
            let l = src
                .lines()
                .enumerate()
                .skip(from - 1)
                .find(|(_, t)| t.contains(cmd.trim()))
                .map(|(k, _)| k + 1)
                .unwrap_or(*line);
            from = l;
            let stmts = shell::parse(cmd, None).map_err(|e| ImportError {
                origin: Some(at(l)),
                message: format!("exec line: {}", e.message),
                help: None,
            })?;
            let stmts = crate::model::relocate(stmts, &at(l));
            m.run(&stmts, *ns)?;
        }
    }
    let mut imported = emit::finish(m, &name, "clab")?;
    warnings.append(&mut imported.warnings);
    imported.warnings = warnings;
    Ok(imported)
}
