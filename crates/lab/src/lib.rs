//! Build, inspect and tear down Linux virtual network labs.
//!
//! This is the library behind the `weft` command, for programs that build
//! labs themselves (for example in their own integration tests):
//!
//! ```no_run
//! let parsed = weft::parse_file("examples/bridge.toml").unwrap();
//! let report = weft::up(&parsed.lab, &weft::UpOptions::default()).unwrap();
//! println!("{}", report.plan);
//! weft::down("br", &weft::DownOptions::default()).unwrap();
//! ```

mod apply;
mod error;
pub mod state;
pub mod status;
pub mod tunnels;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::Error;
pub use status::{status, LabStatus};
pub use weft_topo as topo;
use weft_topo::{Diagnostics, IfaceKind, Lab, Parsed, Plan};

use crate::apply::{Exec, NsHandle};
use crate::state::State;

/// Progress of a long operation, for a progress bar.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new stage; `total` steps follow (0 when not counted).
    Stage {
        what: &'static str,
        total: usize,
    },
    Step,
    Note(String),
}

/// A file that failed to parse: the diagnostics and the text they point in.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", path.display(), diagnostics)]
pub struct FileError {
    pub path: PathBuf,
    pub source_text: String,
    pub diagnostics: Diagnostics,
}

/// Read and check a topology file.
pub fn parse_file(path: impl AsRef<Path>) -> Result<Parsed, Box<FileError>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Box::new(FileError {
            path: path.to_path_buf(),
            source_text: String::new(),
            diagnostics: Diagnostics(vec![weft_topo::Diagnostic::new(
                format!("cannot read the file: {e}"),
                None,
            )]),
        })
    })?;
    let err = |d| {
        Box::new(FileError {
            path: path.to_path_buf(),
            source_text: text.clone(),
            diagnostics: d,
        })
    };
    let parsed = weft_topo::parse(&text).map_err(err)?;
    // A lab that is built keeps the addresses its hosts have.
    match state::load(&parsed.lab.name) {
        Ok(Some(st)) => weft_topo::parse_with(&text, Some(&st.lab)).map_err(err),
        _ => Ok(parsed),
    }
}

pub struct UpOptions<'a> {
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// On failure, leave what this run made in place (for debugging).
    pub keep_on_error: bool,
    /// Worker threads for namespace creation and netlink batches.
    pub threads: usize,
    /// The file the lab came from, recorded for `weft status`.
    pub source: Option<PathBuf>,
    pub progress: &'a dyn Fn(Event),
}

impl Default for UpOptions<'_> {
    fn default() -> Self {
        UpOptions {
            dry_run: false,
            keep_on_error: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            source: None,
            progress: &|_| {},
        }
    }
}

#[derive(Debug)]
pub struct UpReport {
    pub plan: Plan,
    /// False when the lab already matched the file.
    pub changed: bool,
    /// Namespaces from an interrupted earlier run that were removed first.
    pub recovered: usize,
    pub apply_time: Duration,
    /// Time spent waiting for ports to forward (STP) and addresses to settle.
    pub wait_time: Duration,
}

/// Build the lab, or bring a built one in line with `lab`, applying only
/// the difference. Returns once the lab is usable.
pub fn up(lab: &Lab, opts: &UpOptions) -> Result<UpReport, Error> {
    let name = lab.name.as_str();
    let t0 = Instant::now();
    let old_state = if opts.dry_run {
        state::load(name)?
    } else {
        None
    };
    if opts.dry_run {
        let old = old_state.as_ref().map(|s| &s.lab);
        return Ok(UpReport {
            plan: weft_topo::plan(old, lab),
            changed: false,
            recovered: 0,
            apply_time: Duration::ZERO,
            wait_time: Duration::ZERO,
        });
    }
    weft_sys::caps::require_admin("weft up")?;
    let _lock = state::lock(name)?;
    let mut recovered = 0;
    let mut st = match state::load(name)? {
        Some(mut s) => {
            // Namespaces journaled but not in the state were added by an
            // edit that died half-way; they are ours, so remove them.
            let known: std::collections::BTreeSet<&str> =
                s.lab.nodes.values().map(|n| n.netns.as_str()).collect();
            let leftovers: Vec<String> = state::journal_entries(name)
                .into_iter()
                .filter(|ns| !known.contains(ns.as_str()) && weft_sys::netns::exists(ns))
                .collect();
            recovered += remove_and_wait(&leftovers)?;
            repair_drift(&mut s.lab);
            s
        }
        None => {
            // A journal without a state: an earlier `weft up` died half-way.
            // What it made is ours; remove it and start clean.
            let left: Vec<String> = state::journal_entries(name)
                .into_iter()
                .filter(|ns| weft_sys::netns::exists(ns))
                .collect();
            recovered += remove_and_wait(&left)?;
            state::journal_reset(name, &[])?;
            State {
                lab: Lab {
                    name: name.to_string(),
                    nodes: BTreeMap::new(),
                    tunnels: Vec::new(),
                },
                source: None,
                next_index: state::FIRST_INDEX,
                sysctl_before: BTreeMap::new(),
            }
        }
    };
    check_names_free(lab, &st.lab)?;
    let old_lab = st.lab.clone();
    let had_nodes = !old_lab.nodes.is_empty();
    let plan = weft_topo::plan(Some(&old_lab), lab);
    if plan.is_empty() {
        // Tunnel processes may have died, or only their settings changed.
        tunnels::reconcile(lab)?;
        if st.lab.tunnels != lab.tunnels {
            st.lab = lab.clone();
            state::save(name, &st)?;
        }
        return Ok(UpReport {
            plan,
            changed: false,
            recovered,
            apply_time: Duration::ZERO,
            wait_time: Duration::ZERO,
        });
    }
    let mut handles;
    let result = {
        let mut ex = Exec::new(
            name,
            lab,
            Some(&old_lab),
            &mut st,
            opts.threads,
            opts.progress,
        );
        let r = ex.run(&plan.ops);
        let applied: Vec<weft_topo::Op> = ex.applied.iter().map(|&i| plan.ops[i].clone()).collect();
        handles = std::mem::take(&mut ex.ns);
        r.map_err(|e| (e, applied))
    };
    if let Err((e, applied)) = result {
        if opts.keep_on_error {
            st.lab = lab.clone();
            st.source = opts.source.clone();
            let _ = state::save(name, &st);
            return Err(e);
        }
        drop(handles);
        let undo = rollback(name, &old_lab, lab, &mut st, had_nodes, &applied, opts);
        return Err(match undo {
            Ok(()) => e,
            Err(u) => Error::Other(format!("{e}\nand undoing the partial change failed too: {u}\n`weft down {name}` removes the lab")),
        });
    }
    let apply_time = t0.elapsed();
    st.lab = lab.clone();
    st.source = opts.source.clone();
    state::save(name, &st)?;
    let nets: Vec<String> = lab.nodes.values().map(|n| n.netns.clone()).collect();
    state::journal_reset(name, &nets)?;
    let wait_time = apply::wait_ready(lab, &mut handles, opts.progress)?;
    tunnels::reconcile(lab)?;
    tracing::debug!(apply = ?apply_time, wait = ?wait_time, "up done");
    Ok(UpReport {
        plan,
        changed: true,
        recovered,
        apply_time,
        wait_time,
    })
}

/// Delete namespaces and wait until the kernel has destroyed them (and the
/// veths cabled from them into surviving namespaces), so their names can be
/// used again at once.
fn remove_and_wait(netns: &[String]) -> Result<usize, Error> {
    if netns.is_empty() {
        return Ok(0);
    }
    let watch = weft_sys::netns::watch_cleanup()?;
    for ns in netns {
        weft_sys::netns::delete(ns)?;
    }
    watch.wait(Duration::from_secs(60))?;
    Ok(netns.len())
}

/// Undo a partial apply: for a new lab, remove every namespace this run
/// made; otherwise apply the inverse of what took effect.
fn rollback(
    name: &str,
    old: &Lab,
    new: &Lab,
    st: &mut State,
    had_nodes: bool,
    applied: &[weft_topo::Op],
    opts: &UpOptions,
) -> Result<(), Error> {
    if !had_nodes {
        let mut errs = Vec::new();
        let watch = weft_sys::netns::watch_cleanup().ok();
        for n in state::journal_entries(name) {
            if let Err(e) = weft_sys::netns::delete(&n) {
                errs.push(e.to_string());
            }
        }
        if let Some(w) = watch {
            let _ = w.wait(Duration::from_secs(30));
        }
        if errs.is_empty() {
            state::remove(name)?;
            return Ok(());
        }
        return Err(Error::Other(errs.join("; ")));
    }
    let undo = Plan::inverse_of(applied);
    let mut ex = Exec::new(name, old, Some(new), st, opts.threads, opts.progress);
    let r = ex.run(&undo.ops);
    drop(ex);
    if r.is_ok() {
        let nets: Vec<String> = old.nodes.values().map(|n| n.netns.clone()).collect();
        state::journal_reset(name, &nets)?;
    }
    r
}

/// Refuse to take over a namespace that exists but is not this lab's.
fn check_names_free(new: &Lab, built: &Lab) -> Result<(), Error> {
    for n in new.nodes.values() {
        if !built.nodes.contains_key(&n.name) && weft_sys::netns::exists(&n.netns) {
            return Err(Error::Other(format!(
                "node {}: network namespace {} already exists and is not part of lab {}; remove it (`ip netns del {}`) or rename the lab",
                n.name, n.netns, new.name, n.netns
            )));
        }
    }
    Ok(())
}

/// Forget built nodes whose namespace vanished behind weft's back (and the
/// veth ends cabled to them, which died with them), so the plan recreates
/// them.
fn repair_drift(lab: &mut Lab) {
    let gone: Vec<String> = lab
        .nodes
        .values()
        .filter(|n| !weft_sys::netns::exists(&n.netns))
        .map(|n| n.name.clone())
        .collect();
    for g in &gone {
        lab.nodes.remove(g);
    }
    for n in lab.nodes.values_mut() {
        n.interfaces.retain(
            |_, i| !matches!(&i.kind, IfaceKind::Veth { peer } if gone.contains(&peer.node)),
        );
    }
}

/// A deleted namespace and its identity (to find processes keeping it).
type Deleted = (String, Option<weft_sys::netns::NsIdentity>);

#[derive(Default)]
pub struct DownOptions {
    /// Return without waiting for the kernel to finish destroying the
    /// namespaces.
    pub no_wait: bool,
}

#[derive(Debug, Default)]
pub struct DownReport {
    pub removed: Vec<String>,
    /// Namespaces still kept alive by processes running in them: pid lists.
    pub held: Vec<(String, Vec<u32>)>,
}

/// Remove every namespace of the lab (and with them every interface, address
/// and route in them) and nothing else; works without the file, and after a
/// `weft up` that was killed.
pub fn down(name: &str, opts: &DownOptions) -> Result<DownReport, Error> {
    weft_topo::file::check_lab_name(name).map_err(Error::Other)?;
    weft_sys::caps::require_admin("weft down")?;
    let _lock = state::lock(name)?;
    // Tunnel processes run inside the namespaces and would keep them alive.
    tunnels::stop_all(name);
    let mut candidates: Vec<String> = state::journal_entries(name);
    if let Some(st) = state::load(name).ok().flatten() {
        candidates.extend(st.lab.nodes.values().map(|n| n.netns.clone()));
    }
    // Namespaces with the lab's prefix that the journal does not list are
    // taken only if they carry the lab's ownership tag.
    let prefix = weft_topo::netns_name(name, "");
    for ns in weft_sys::netns::list()? {
        if ns.starts_with(&prefix) && !candidates.contains(&ns) && has_owner_tag(&ns, name) {
            candidates.push(ns);
        }
    }
    candidates.sort();
    candidates.dedup();
    let t0 = Instant::now();
    // Armed before the first deletion so it orders after all of them.
    let watch = if opts.no_wait {
        None
    } else {
        Some(weft_sys::netns::watch_cleanup()?)
    };
    let mut report = DownReport::default();
    let mut held_ids = Vec::new();
    // Deleting is a umount and an unlink per namespace (~0.1-0.2 ms each on
    // this machine's ext4 /run); two threads halve it for big labs.
    let present: Vec<String> = candidates
        .into_iter()
        .filter(|ns| weft_sys::netns::exists(ns))
        .collect();
    let chunk = present.len().div_ceil(2).max(1);
    let results: Vec<Result<Vec<Deleted>, Error>> = std::thread::scope(|s| {
        let workers: Vec<_> = present
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut done = Vec::with_capacity(part.len());
                    for ns in part {
                        let id = weft_sys::netns::identity(ns).ok();
                        weft_sys::netns::delete(ns)?;
                        done.push((ns.clone(), id));
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("delete worker"))
            .collect()
    });
    for r in results {
        for (ns, id) in r? {
            if let Some(id) = id {
                held_ids.push((ns.clone(), id));
            }
            report.removed.push(ns);
        }
    }
    let t1 = Instant::now();
    let ids: Vec<_> = held_ids.iter().map(|(_, id)| *id).collect();
    let mut holders = weft_sys::netns::holders_of_many(&ids);
    for (ns, id) in held_ids {
        if let Some(pids) = holders.remove(&id) {
            report.held.push((ns, pids));
        }
    }
    tracing::debug!(namespaces = report.removed.len(), delete = ?(t1 - t0), holders = ?t1.elapsed(), "deleted");
    if !opts.no_wait && !report.removed.is_empty() && report.held.is_empty() {
        let t2 = Instant::now();
        if let Some(w) = watch {
            w.wait(Duration::from_secs(60))?;
        }
        tracing::debug!(wait = ?t2.elapsed(), "kernel done");
    }
    state::remove(name)?;
    Ok(report)
}

fn has_owner_tag(netns: &str, lab: &str) -> bool {
    NsHandle::open("", netns)
        .ok()
        .and_then(|mut h| h.nl.links().ok())
        .is_some_and(|links| {
            links
                .iter()
                .any(|l| l.index == 1 && l.alias.as_deref() == Some(apply::owner_tag(lab).as_str()))
        })
}

/// The lab as last applied, or an error naming the labs that exist.
pub fn built(name: &str) -> Result<State, Error> {
    state::load(name)?.ok_or_else(|| Error::NoLab(name.to_string()))
}

/// The namespace of a node of a built lab.
pub fn node_netns(lab: &str, node: &str) -> Result<String, Error> {
    let st = built(lab)?;
    st.lab
        .nodes
        .get(node)
        .map(|n| n.netns.clone())
        .ok_or_else(|| Error::NoNode {
            lab: lab.to_string(),
            node: node.to_string(),
            known: st.lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
        })
}

/// Resolve a ping target: an IP address, or a node name (its first IPv4
/// address, else its first IPv6 one; `lo` is not considered).
pub fn resolve_target(lab: &Lab, target: &str) -> Result<std::net::IpAddr, Error> {
    if let Ok(ip) = target.parse() {
        return Ok(ip);
    }
    let node = lab.nodes.get(target).ok_or_else(|| Error::NoNode {
        lab: lab.name.clone(),
        node: target.to_string(),
        known: lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    let addrs: Vec<std::net::IpAddr> = node
        .interfaces
        .values()
        .filter(|i| !matches!(i.kind, IfaceKind::Loopback))
        .flat_map(|i| i.addresses.iter().map(|a| a.addr()))
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| Error::Other(format!("node {target} has no address to ping; give one of its interfaces an address, or ping an IP")))
}

/// ICMP echo from inside a node, with weft's own sockets.
pub fn ping(
    lab: &str,
    node: &str,
    target: std::net::IpAddr,
    opts: &weft_sys::ping::PingOptions,
    on_event: impl FnMut(weft_sys::ping::PingEvent) + Send,
) -> Result<weft_sys::ping::PingSummary, Error> {
    let ns = node_netns(lab, node)?;
    let opts = opts.clone();
    Ok(weft_sys::netns::run_in_named(&ns, move || {
        weft_sys::ping::ping(target, &opts, on_event)
    })??)
}

/// The neighbour-cache entry a node has for an address, with the name of
/// the interface it is on: `("veth0", "incomplete")`.
pub fn neighbour(
    lab: &str,
    node: &str,
    addr: std::net::IpAddr,
) -> Result<Option<(String, String)>, Error> {
    let ns = node_netns(lab, node)?;
    let mut h = NsHandle::open(node, &ns)?;
    let neigh =
        h.nl.neighbours()
            .map_err(|e| Error::io(format!("reading the neighbour table of {node}"), e))?;
    let Some(n) = neigh.into_iter().find(|n| n.addr == addr) else {
        return Ok(None);
    };
    let name = h
        .index
        .iter()
        .find(|(_, &i)| i == n.index)
        .map(|(k, _)| k.clone())
        .unwrap_or_default();
    Ok(Some((name, n.state)))
}
