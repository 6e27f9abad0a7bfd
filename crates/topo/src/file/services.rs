//! `[nodes.X.services.NAME]`, `binds` and `image`: what runs in a node,
//! checked before anything is built.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{check_node_name, Cx, RawNode, Span};
use crate::model::*;
use crate::workload::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    command: Spanned<Vec<String>>,
    ready: Option<Spanned<RawReady>>,
    #[serde(default)]
    after: Vec<Spanned<String>>,
    restart: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    user: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    tcp: Option<u16>,
    command: Option<Vec<String>>,
    delay: Option<String>,
}

/// Where each service and each of its `after` entries is written.
pub(super) type Spans = HashMap<ServiceRef, (Span, Vec<Span>)>;

/// A node's workload as written, before it is copied to each node of a
/// `count` group. `after` entries without a node have an empty node name:
/// "this node".
#[derive(Default, Clone)]
pub(super) struct Workload {
    services: BTreeMap<String, (Service, Span, Vec<Span>)>,
    binds: Vec<Bind>,
    container: Option<Container>,
}

/// `"1s"`, `"500ms"`, `"2m"` to milliseconds, at most an hour.
pub(crate) fn parse_millis(s: &str) -> Result<u64, crate::Error> {
    let t = s.trim();
    let bad = || crate::Error::Malformed {
        what: "a duration",
        value: s.into(),
        help: "write a number with ms, s or m, like \"5s\"".into(),
    };
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60e3)
    } else {
        return Err(bad());
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let ms = v * mult;
    if !(0.0..=3_600_000.0).contains(&ms) {
        return Err(crate::Error::OutOfRange {
            value: s.into(),
            range: "0 to 60m",
        });
    }
    Ok(ms.round() as u64)
}

impl Cx<'_> {
    pub(super) fn node_workload(&mut self, base: &str, rn: &RawNode) -> Workload {
        let mut w = Workload::default();
        for (key, raw) in &rn.services {
            let name = key.get_ref();
            if let Err(why) = check_node_name(name) {
                self.err(
                    Some(key.span()),
                    format!("node `{base}`: service name `{name}`: {why}"),
                    "",
                );
                continue;
            }
            if let Some(svc) = self.service(base, name, raw) {
                let after_spans = raw.get_ref().after.iter().map(|a| a.span()).collect();
                w.services
                    .insert(name.clone(), (svc, key.span(), after_spans));
            }
        }
        let mut targets: HashMap<String, Span> = HashMap::new();
        for b in &rn.binds {
            let Some(bind) = self.bind(base, b) else {
                continue;
            };
            let t = normalize(&bind.target);
            if targets.insert(t.clone(), b.span()).is_some() {
                self.err(
                    Some(b.span()),
                    format!("node `{base}`: two binds onto `{t}`"),
                    "keep one of them",
                );
                continue;
            }
            w.binds.push(bind);
        }
        match &rn.image {
            Some(image) => {
                if image.get_ref().trim().is_empty() {
                    self.err(
                        Some(image.span()),
                        format!("node `{base}`: `image` is empty"),
                        "name a local image, as `podman images` lists it",
                    );
                }
                if let Some((k, _)) = rn.services.iter().next() {
                    self.err(
                        Some(k.span()),
                        format!(
                            "node `{base}` runs image `{}`, so it cannot also run services",
                            image.get_ref()
                        ),
                        "put the program in the image's command, or in a node without `image`",
                    );
                }
                w.container = Some(Container {
                    image: image.get_ref().clone(),
                    command: rn
                        .command
                        .as_ref()
                        .map(|c| c.get_ref().clone())
                        .unwrap_or_default(),
                    env: rn.env.clone(),
                });
            }
            None => {
                if let Some(c) = &rn.command {
                    self.err(
                        Some(c.span()),
                        format!("node `{base}`: `command` on a node is the command of its `image`, and it has none"),
                        format!("write the program as a service: [nodes.{base}.services.NAME] command = [...]"),
                    );
                }
                if !rn.env.is_empty() {
                    self.err(
                        rn.command.as_ref().map(|c| c.span()),
                        format!("node `{base}`: `env` on a node is the environment of its `image`, and it has none"),
                        format!("write it on a service: [nodes.{base}.services.NAME] env = {{ ... }}"),
                    );
                }
            }
        }
        w
    }

    /// The node's copy of a workload, `after` resolved and positions kept.
    pub(super) fn workload_for(
        &mut self,
        node: &str,
        w: &Workload,
    ) -> (BTreeMap<String, Service>, Vec<Bind>, Option<Container>) {
        let mut services = BTreeMap::new();
        for (name, (svc, span, after_spans)) in &w.services {
            let mut svc = svc.clone();
            for a in &mut svc.after {
                if a.node.is_empty() {
                    a.node = node.to_string();
                }
            }
            self.service_spans.insert(
                ServiceRef::new(node, name),
                (span.clone(), after_spans.clone()),
            );
            services.insert(name.clone(), svc);
        }
        (services, w.binds.clone(), w.container.clone())
    }

    fn service(&mut self, node: &str, name: &str, raw: &Spanned<RawService>) -> Option<Service> {
        let r = raw.get_ref();
        let what = format!("node `{node}`, service `{name}`");
        let mut ok = true;
        if r.command.get_ref().is_empty() || r.command.get_ref()[0].is_empty() {
            self.err(
                Some(r.command.span()),
                format!("{what}: `command` is empty"),
                "write the program and its arguments: command = [\"python3\", \"-m\", \"http.server\", \"80\"]",
            );
            ok = false;
        }
        let ready = match &r.ready {
            None => Ready::Started,
            Some(sp) => {
                let rr = sp.get_ref();
                let given = [rr.tcp.is_some(), rr.command.is_some(), rr.delay.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                let help = "write one of ready = { tcp = PORT }, { command = [...] } or { delay = \"1s\" }";
                if given != 1 {
                    self.err(
                        Some(sp.span()),
                        format!("{what}: `ready` takes exactly one of tcp, command and delay"),
                        help,
                    );
                    ok = false;
                    Ready::Started
                } else if let Some(port) = rr.tcp {
                    if port == 0 {
                        self.err(
                            Some(sp.span()),
                            format!("{what}: ready tcp port 0 is not a port"),
                            "write the port the service listens on, 1 to 65535",
                        );
                        ok = false;
                    }
                    Ready::Tcp { port }
                } else if let Some(argv) = &rr.command {
                    if argv.is_empty() || argv[0].is_empty() {
                        self.err(
                            Some(sp.span()),
                            format!("{what}: the ready command is empty"),
                            help,
                        );
                        ok = false;
                    }
                    Ready::Command { argv: argv.clone() }
                } else {
                    let d = rr.delay.as_deref().unwrap_or_default();
                    match parse_millis(d) {
                        Ok(ms) => Ready::Delay { ms },
                        Err(why) => {
                            self.err(Some(sp.span()), format!("{what}: ready delay {why}"), "");
                            ok = false;
                            Ready::Started
                        }
                    }
                }
            }
        };
        let restart = match r.restart.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("no", _)) => Restart::No,
            Some(("on-failure", _)) => Restart::OnFailure,
            Some(("always", _)) => Restart::Always,
            Some((other, span)) => {
                self.err(
                    Some(span),
                    format!("{what}: restart `{other}` is not known"),
                    "write restart = \"no\" (the default), \"on-failure\" or \"always\"",
                );
                ok = false;
                Restart::No
            }
        };
        let timeout_ms = match &r.timeout {
            None => DEFAULT_TIMEOUT_MS,
            Some(t) => match parse_millis(t.get_ref()) {
                Ok(0) => {
                    self.err(
                        Some(t.span()),
                        format!("{what}: timeout 0 leaves no time to start"),
                        "write a time such as \"30s\"",
                    );
                    ok = false;
                    0
                }
                Ok(ms) => ms,
                Err(why) => {
                    self.err(Some(t.span()), format!("{what}: timeout {why}"), "");
                    ok = false;
                    0
                }
            },
        };
        for k in r.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.err(
                    Some(raw.span()),
                    format!("{what}: environment variable name {k:?} cannot be set"),
                    "use a name without = or NUL",
                );
                ok = false;
            }
        }
        if r.env.values().any(|v| v.contains('\0')) {
            self.err(
                Some(raw.span()),
                format!("{what}: an environment value contains a NUL byte"),
                "",
            );
            ok = false;
        }
        if let Some(u) = &r.user {
            if u.get_ref().is_empty() || u.get_ref().contains(['\0', ':', '/']) {
                self.err(
                    Some(u.span()),
                    format!("{what}: `{}` is not a user name", u.get_ref()),
                    "write a user name or a numeric uid",
                );
                ok = false;
            }
        }
        let mut after = Vec::new();
        for a in &r.after {
            let text = a.get_ref();
            let (n, s) = match text.split_once(':') {
                Some((n, s)) => (n, s),
                None => ("", text.as_str()),
            };
            if s.is_empty() || text.matches(':').count() > 1 {
                self.err(
                    Some(a.span()),
                    format!("{what}: after `{text}` is not a service"),
                    "write \"NODE:SERVICE\", or \"SERVICE\" for one in the same node",
                );
                ok = false;
                continue;
            }
            after.push(ServiceRef::new(n, s));
        }
        ok.then(|| Service {
            command: r.command.get_ref().clone(),
            ready,
            after,
            restart,
            env: r.env.clone(),
            user: r.user.as_ref().map(|u| u.get_ref().clone()),
            timeout_ms,
        })
    }

    fn bind(&mut self, node: &str, b: &Spanned<String>) -> Option<Bind> {
        let text = b.get_ref();
        let span = Some(b.span());
        let help = "write \"HOST-PATH:PATH-IN-NODE\" (a host path relative to the file's directory, or absolute) or \"tmpfs:PATH-IN-NODE\"";
        let Some((src, dst)) = text.rsplit_once(':') else {
            self.err(
                span,
                format!("node `{node}`: bind `{text}` has no `:`"),
                help,
            );
            return None;
        };
        if let Err(why) = check_bind_target(dst) {
            self.err(
                span,
                format!("node `{node}`: bind `{text}`: {why}"),
                "bind onto a directory or file such as /etc/frr or /run/frr",
            );
            return None;
        }
        if src == "tmpfs" {
            return Some(Bind {
                source: None,
                target: normalize(dst),
            });
        }
        if src.is_empty() {
            self.err(
                span,
                format!("node `{node}`: bind `{text}` has no host path"),
                help,
            );
            return None;
        }
        let path = Path::new(src);
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            // Without the file's directory (text parsed on its own, as
            // `weft graph` of a string does), the path stays as written.
            match &self.dir {
                Some(d) => d.dir.join(path),
                None => path.to_path_buf(),
            }
        };
        if let Some(d) = &self.dir {
            if !(d.exists)(&full) {
                self.err(
                    span,
                    format!("node `{node}`: bind `{text}`: the host path {} does not exist", full.display()),
                    "create it, or correct the path (relative paths start at the topology file's directory)",
                );
                return None;
            }
        }
        let Some(full) = full.to_str().map(|s| {
            if s.starts_with('/') {
                normalize(s)
            } else {
                s.to_string()
            }
        }) else {
            self.err(
                span,
                format!("node `{node}`: bind `{text}`: the host path is not UTF-8"),
                "",
            );
            return None;
        };
        Some(Bind {
            source: Some(full),
            target: normalize(dst),
        })
    }

    /// `after` names existing services and has no cycle.
    pub(super) fn check_services(&mut self, lab: &Lab) {
        let all = all_services(lab);
        let mut bad = false;
        for (me, svc) in &all {
            let spans = self.service_spans.get(me).cloned();
            for (i, dep) in svc.after.iter().enumerate() {
                let at = spans.as_ref().and_then(|(_, a)| a.get(i).cloned());
                let Some(node) = lab.nodes.get(&dep.node) else {
                    self.err(
                        at,
                        format!(
                            "service {me}: after `{dep}`: there is no node `{}`",
                            dep.node
                        ),
                        format!(
                            "the nodes are: {}",
                            lab.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    bad = true;
                    continue;
                };
                if !node.services.contains_key(&dep.service) {
                    let known: Vec<&str> = node.services.keys().map(|s| s.as_str()).collect();
                    self.err(
                        at,
                        format!(
                            "service {me}: after `{dep}`: node `{}` has no service `{}`",
                            dep.node, dep.service
                        ),
                        if known.is_empty() {
                            format!("node `{}` runs no services", dep.node)
                        } else {
                            format!("its services are: {}", known.join(", "))
                        },
                    );
                    bad = true;
                } else if *dep == *me {
                    self.err(
                        at,
                        format!("service {me} is after itself"),
                        "remove it from its own `after`",
                    );
                    bad = true;
                }
            }
        }
        if bad {
            return;
        }
        if let Err(cycle) = start_order(&all) {
            let at = self.service_spans.get(&cycle[0]).map(|(s, _)| s.clone());
            let text: Vec<String> = cycle.iter().map(|s| s.to_string()).collect();
            self.err(
                at,
                format!(
                    "services wait for each other in a cycle: {}",
                    text.join(" -> ")
                ),
                "remove one of these `after` entries",
            );
        }
    }
}
