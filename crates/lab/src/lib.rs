//! Build, inspect and tear down Linux virtual network labs.
//!
//! For tests of networked programs, [`Lab`] builds a lab from a topology
//! file or in code, hands out nodes to run code and programs in, links to
//! take down and impair, captures; and removes it on drop (docs/library.md):
//!
//! ```no_run
//! let lab = weft::Lab::from_file("examples/bridge.toml").unwrap();
//! assert!(lab.ping("ns1", "ns2").unwrap());
//! let l = lab.node("ns2").unwrap().run(|| std::net::TcpListener::bind("0.0.0.0:7000"));
//! # drop(l);
//! ```
//!
//! [`up`], [`down`] and [`status`] are what the `weft` command runs.

// The library's own surface (docs/library.md), documented throughout.
#[warn(missing_docs)]
mod builder;
#[warn(missing_docs)]
mod context;
#[warn(missing_docs)]
mod handle;
#[warn(missing_docs)]
mod reap;
mod rootless;

mod apply;
mod checks;
mod error;
mod owner;
pub mod status;

// Modules the weft command drives: public for it, hidden from the
// library's documented surface.
#[doc(hidden)]
pub mod agent;
#[doc(hidden)]
pub mod capture;
#[doc(hidden)]
pub mod datapath;
#[doc(hidden)]
pub mod drawing;
#[doc(hidden)]
pub mod events;
#[doc(hidden)]
pub mod machines;
#[doc(hidden)]
pub mod names;
#[doc(hidden)]
pub mod runtime;
#[doc(hidden)]
pub mod services;
#[doc(hidden)]
pub mod state;
#[doc(hidden)]
pub mod trace;
#[doc(hidden)]
pub mod tunnels;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use builder::{Builder, Impair, NodeSpec, SwitchSpec};
pub use checks::CheckResult;
pub use context::Context;
pub use error::{Error, Outcome};
pub use handle::{Address, CaptureHandle, Lab, LinkHandle, NodeHandle, Process};
pub use reap::{reap_orphans, Reaped};
pub use status::{status, LabStatus};
pub use weft_topo as topo;
use weft_topo::{Diagnostics, IfaceKind, Parsed, Plan};

use crate::apply::{Exec, NsHandle};
use crate::state::State;
use weft_topo::exec::Kernel as _;

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
    // Bind sources are relative to the file's directory, made absolute
    // here so that the lab does not depend on where `weft up` ran.
    let dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let exists = |p: &Path| p.exists();
    let at = || {
        Some(weft_topo::FileDir {
            dir: &dir,
            exists: &exists,
        })
    };
    let parsed = weft_topo::parse_at(&text, None, at()).map_err(err)?;
    // A lab that is built keeps the addresses its hosts have.
    match state::load(&parsed.lab.name) {
        Ok(Some(st)) => weft_topo::parse_at(&text, Some(&st.lab), at()).map_err(err),
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
    /// The `weft` binary that runs the switch datapath (`weft datapath
    /// LAB`) for labs with switches; default: the running executable.
    pub datapath_exe: Option<PathBuf>,
    /// How long to wait for the lab to become usable; default: as long
    /// as the spanning tree timers in force need (the root's).
    pub ready_timeout: Option<Duration>,
}

impl Default for UpOptions<'_> {
    fn default() -> Self {
        UpOptions {
            dry_run: false,
            keep_on_error: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            source: None,
            progress: &|_| {},
            datapath_exe: None,
            ready_timeout: None,
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
    /// Things that are not errors but may keep the lab from working (a
    /// foreign nftables chain that drops forwarded packets).
    pub warnings: Vec<String>,
    /// The health checks run after applying (all passed, or `up` failed).
    pub checks: Vec<CheckResult>,
}

/// Build the lab, or bring a built one in line with `lab`, applying only
/// the difference. Returns once the lab is usable and its checks passed.
///
/// `up` is: plan (the difference between the built lab and `lab`) →
/// apply it in order → start or update the lab's processes (datapath,
/// tunnels) → wait until usable → run the checks. A failure at any of
/// these steps undoes what this run applied (or keeps it with
/// `keep_on_error`), and is returned as [`Error::Up`] saying which.
pub fn up(lab: &topo::Lab, opts: &UpOptions) -> Result<UpReport, Error> {
    let name = lab.name.as_str();
    let t0 = Instant::now();
    if opts.dry_run {
        let built = state::load(name)?;
        return Ok(UpReport {
            plan: weft_topo::plan(built.as_ref().map(|s| &s.lab), lab),
            changed: false,
            recovered: 0,
            apply_time: Duration::ZERO,
            wait_time: Duration::ZERO,
            warnings: Vec::new(),
            checks: Vec::new(),
        });
    }
    weft_sys::caps::require_admin("weft up")?;
    rootless::check(lab)?;
    machines::check_underlay(lab)?;
    // Images, podman and service users: refused before anything is built.
    services::preflight(lab)?;
    let _lock = state::lock(name)?;
    let built = state::load(name)?;
    // Namespaces the journal lists but the state does not were made by a run
    // that died half-way (or failed with --keep-on-error); they are ours:
    // remove them before planning.
    let known: std::collections::BTreeSet<String> = built
        .iter()
        .flat_map(|s| s.lab.nodes.values().map(|n| n.netns.clone()))
        .collect();
    let leftovers: Vec<String> = state::journal_entries(name)
        .into_iter()
        .filter(|ns| !known.contains(ns) && weft_sys::netns::exists(ns))
        .collect();
    // A run that died may have started services (and its supervisor) in
    // them; they would keep the namespaces alive, and a new lab starts
    // with none running.
    if built.is_none() {
        services::stop_all(name);
    }
    if !leftovers.is_empty() {
        end_processes(&leftovers);
        services::remove_mounts(&leftovers);
    }
    let recovered = remove_and_wait(&leftovers)?;
    let mut st = match built {
        Some(mut s) => {
            repair_drift(&mut s.lab);
            s
        }
        None => {
            state::journal_reset(name, &[])?;
            State {
                lab: topo::Lab::empty(name),
                source: None,
                next_index: state::FIRST_INDEX,
                sysctl_before: BTreeMap::new(),
                unfinished: false,
            }
        }
    };
    check_names_free(lab, &st.lab)?;
    let old_lab = st.lab.clone();
    let had_nodes = !old_lab.nodes.is_empty();
    let unfinished = st.unfinished;
    let plan = weft_topo::plan(Some(&old_lab), lab);
    let kernel_changed = !plan.is_empty();
    let mut run = Run {
        name,
        lab,
        old: &old_lab,
        had_nodes,
        opts,
        plan: &plan,
    };
    let mut handles = BTreeMap::new();
    let mut apply_time = Duration::ZERO;
    if kernel_changed {
        handles = run.apply(&mut st)?;
        apply_time = t0.elapsed();
    } else if old_lab != *lab || unfinished {
        // Edits that build nothing in the kernel (checks, switch and
        // tunnel settings) are still the lab's, and a (re)started datapath
        // reads its switches from the state: saved first.
        st.lab = lab.clone();
        st.source = opts.source.clone().or(st.source);
        st.unfinished = true;
        state::save(name, &st)?;
    }
    // From here on the lab is applied: whatever fails is undone like a
    // failed check.
    let t1 = Instant::now();
    let settled = run.settle(&mut handles, kernel_changed || unfinished);
    drop(handles);
    let (restarted, undone) = match settled {
        Ok(x) => x,
        Err(e) => return Err(run.fail(&mut st, e, true)),
    };
    let mut warnings = Vec::new();
    warnings.extend(undone.iter().map(|u| format!("runtime change undone: {u}")));
    // The lab is usable once the tunnels' handshakes are done (or each
    // one's wait is explained).
    warnings.extend(tunnels::wait_sessions(lab, tunnels::SESSION_WAIT));
    // Services start once the network is usable, before the checks (which
    // may test what they serve); only those whose definition changed
    // restart.
    let svc_changed = services::units_of(&old_lab) != services::units_of(lab);
    if let Err(e) = start_workloads(lab, Some(&old_lab), opts) {
        return Err(run.fail(&mut st, e, true));
    }
    let mut results = Vec::new();
    if kernel_changed || unfinished {
        warnings.splice(0..0, nat_warnings(lab));
        results = checks::run_all(lab);
        let failed: Vec<CheckResult> = results.iter().filter(|r| !r.ok).cloned().collect();
        if !failed.is_empty() {
            let e = Error::ChecksFailed {
                lab: name.to_string(),
                failed,
                warnings: warnings.clone(),
            };
            return Err(run.fail(&mut st, e, true));
        }
    }
    let wait_time = t1.elapsed();
    tracing::debug!(apply = ?apply_time, wait = ?wait_time, "up done");
    if st.unfinished {
        st.unfinished = false;
        state::save(name, &st)?;
    }
    Ok(UpReport {
        plan,
        changed: kernel_changed || unfinished || restarted || !undone.is_empty() || svc_changed,
        recovered,
        apply_time,
        wait_time: if kernel_changed || unfinished || restarted {
            wait_time
        } else {
            Duration::ZERO
        },
        warnings,
        checks: results,
    })
}

/// Whether operations make or remove interfaces of a switch node (or the
/// node itself): the datapath's sockets on its ports may then be stale,
/// so it is restarted rather than edited.
fn touches_switch_ports(ops: &[weft_topo::Op], labs: [&topo::Lab; 2]) -> bool {
    let is_switch = |n: &str| {
        labs.iter().any(|l| {
            l.nodes
                .get(n)
                .is_some_and(|x| x.kind == weft_topo::NodeKind::Switch)
        })
    };
    ops.iter().any(|o| match o.key() {
        weft_topo::ResKey::Veth { a, b } => is_switch(&a.node) || is_switch(&b.node),
        k @ (weft_topo::ResKey::Netns { .. } | weft_topo::ResKey::Device { .. }) => {
            is_switch(k.node())
        }
        _ => false,
    })
}

/// One `weft up`: what it turns into what, for applying and undoing.
struct Run<'a> {
    name: &'a str,
    lab: &'a topo::Lab,
    old: &'a topo::Lab,
    had_nodes: bool,
    opts: &'a UpOptions<'a>,
    plan: &'a Plan,
}

impl Run<'_> {
    /// Apply the plan's kernel operations (and write the name files
    /// beside them); on failure, undo the applied prefix. Leaves the state
    /// saved as the new lab, marked unfinished.
    fn apply(&mut self, st: &mut State) -> Result<BTreeMap<String, NsHandle>, Error> {
        let (name, lab, opts) = (self.name, self.lab, self.opts);
        let ops = &self.plan.ops;
        // Reserve this run's interface indexes on disk first: if it dies or
        // fails half-way, devices it made in surviving namespaces keep
        // indexes the next run will not hand out again.
        let first_index = st.next_index;
        let reserved_end = first_index + 2 * ops.len() as u32;
        st.next_index = reserved_end;
        state::save(name, st)?;
        st.next_index = first_index;
        // The name files depend only on the file: they are written (mostly
        // directory and symlink creation on /etc) while the kernel work runs.
        let names_job = {
            let lab = lab.clone();
            std::thread::spawn(move || names::sync(&lab))
        };
        let (result, applied, handles) = {
            let mut ex = Exec::new(name, lab, Some(self.old), st, opts.threads, opts.progress);
            let r = ex.apply(ops);
            let applied: Vec<weft_topo::Op> = r.done.iter().map(|&i| ops[i].clone()).collect();
            (
                r.error.map_or(Ok(()), Err),
                applied,
                std::mem::take(&mut ex.ns),
            )
        };
        let names_done = names_job.join().unwrap_or_else(|_| {
            Err(Error::Missing {
                what: "writing the name files failed (the writer panicked)".into(),
                help: "run `weft up` again".into(),
            })
        });
        st.next_index = st.next_index.max(reserved_end);
        if let Err(e) = result {
            if opts.keep_on_error {
                // The state keeps the lab as it was: `weft down` finds the
                // new namespaces in the journal, and the next `up` removes
                // them first, like a crashed run's.
                let _ = state::save(name, st);
                return Err(self.up_error(e, Outcome::Kept));
            }
            drop(handles);
            return Err(self.undo(st, &applied, false, e));
        }
        st.lab = lab.clone();
        st.source = opts.source.clone();
        st.unfinished = true;
        state::save(name, st)?;
        let nets: Vec<String> = lab.nodes.values().map(|n| n.netns.clone()).collect();
        state::journal_reset(name, &nets)?;
        // The journal was just rewritten: list the name directories again.
        let names = names_done.and_then(|()| names::journal_all(lab));
        if let Err(e) = names {
            drop(handles);
            return Err(self.fail(st, e, false));
        }
        Ok(handles)
    }

    /// Start or update the lab's processes and wait until it is usable
    /// (`wait`: the kernel side was just changed, or never finished).
    /// Returns whether the datapath was (re)started and the runtime
    /// changes that were undone.
    fn settle(
        &self,
        handles: &mut BTreeMap<String, NsHandle>,
        wait: bool,
    ) -> Result<(bool, Vec<String>), Error> {
        let (lab, opts) = (self.lab, self.opts);
        // Started before the bridges are waited for: in a loop of switches
        // and kernel bridges, both must hear each other's BPDUs to converge.
        let ports_changed = touches_switch_ports(&self.plan.ops, [lab, self.old]);
        let restarted = datapath::ensure(lab, opts.datapath_exe.as_deref(), ports_changed)?;
        if wait {
            apply::wait_ready(lab, handles, opts.ready_timeout, opts.progress)?;
        }
        if datapath::has_switches(lab) && (wait || restarted) {
            datapath::wait_ready(lab, opts.ready_timeout, opts.progress)?;
        }
        // `weft link`/`weft impair` changes: the file is the truth.
        let undone = runtime::restore(lab, restarted)?;
        // Tunnel processes run on the TUN/TAP ends the apply made; they
        // may also have died, or only their settings changed.
        tunnels::reconcile(lab)?;
        Ok((restarted, undone))
    }

    fn up_error(&self, error: Error, outcome: Outcome) -> Error {
        Error::Up {
            lab: self.name.to_string(),
            error: Box::new(error),
            outcome,
        }
    }

    /// A failure after the plan was applied: keep the lab as it is
    /// (`--keep-on-error`, marked unfinished) or undo the whole plan and
    /// bring the lab's processes back in line with the old lab.
    fn fail(&self, st: &mut State, e: Error, started: bool) -> Error {
        if self.opts.keep_on_error {
            st.unfinished = true;
            if let Err(se) = state::save(self.name, st) {
                tracing::warn!("saving the state of lab {}: {se}", self.name);
            }
            return self.up_error(e, Outcome::Kept);
        }
        // A plan with only implied removals applied nothing.
        let applied = if self.plan.is_empty() {
            Vec::new()
        } else {
            self.plan.ops.clone()
        };
        self.undo(st, &applied, started, e)
    }

    /// Undo `applied` (a prefix of the plan) after `e`; `started`: the
    /// lab's processes may have been changed too.
    fn undo(&self, st: &mut State, applied: &[weft_topo::Op], started: bool, e: Error) -> Error {
        let r = rollback(
            self.name,
            self.old,
            self.lab,
            st,
            self.had_nodes,
            applied,
            self.opts,
        );
        let outcome = match r {
            Ok(()) if !self.had_nodes => Outcome::Removed,
            Ok(()) => {
                let mut errs = Vec::new();
                if let Err(u) = names::sync(self.old) {
                    errs.push(u.to_string());
                }
                if started {
                    // The processes of the lab as it was (a datapath with
                    // the old switches, tunnels with the old settings).
                    let changed = touches_switch_ports(applied, [self.lab, self.old]);
                    if let Err(u) =
                        datapath::ensure(self.old, self.opts.datapath_exe.as_deref(), changed)
                    {
                        errs.push(u.to_string());
                    }
                    if let Err(u) = tunnels::reconcile(self.old) {
                        errs.push(u.to_string());
                    }
                    if let Err(u) = start_workloads(self.old, Some(self.lab), self.opts) {
                        errs.push(u.to_string());
                    }
                }
                if errs.is_empty() {
                    Outcome::Restored
                } else {
                    Outcome::RollbackFailed {
                        error: errs.join("; "),
                        left: Vec::new(),
                    }
                }
            }
            Err(Rollback { error, left }) => Outcome::RollbackFailed {
                error: error.to_string(),
                left,
            },
        };
        self.up_error(e, outcome)
    }
}

/// The nodes' mount namespaces, then their services (waited for).
fn start_workloads(
    lab: &topo::Lab,
    old: Option<&topo::Lab>,
    opts: &UpOptions,
) -> Result<(), Error> {
    services::sync_mounts(lab, old)?;
    services::ensure(lab, opts.datapath_exe.as_deref(), opts.progress)
}

/// A process that `weft down` ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// The namespace it was in.
    pub netns: String,
}

/// Ends every process inside these network namespaces or their nodes'
/// mount namespaces: SIGTERM, two seconds, SIGKILL.
fn end_processes(netns: &[String]) -> Vec<Ended> {
    let mut ids: Vec<(String, weft_sys::netns::NsIdentity)> = netns
        .iter()
        .filter_map(|ns| {
            weft_sys::netns::identity(ns)
                .ok()
                .map(|id| (ns.clone(), id))
        })
        .collect();
    ids.extend(services::mount_identities(netns));
    if ids.is_empty() {
        return Vec::new();
    }
    let just: Vec<_> = ids.iter().map(|(_, id)| *id).collect();
    let members = weft_sys::netns::members_of_many(&just);
    let mut out: Vec<Ended> = Vec::new();
    let mut procs = Vec::new();
    for (ns, id) in &ids {
        for &pid in members.get(id).into_iter().flatten() {
            if out.iter().any(|e| e.pid == pid) {
                continue;
            }
            if let Some(start_time) = weft_sys::process::start_time(pid) {
                procs.push(weft_sys::process::ProcId { pid, start_time });
                out.push(Ended {
                    pid,
                    comm: weft_sys::process::comm(pid).unwrap_or_default(),
                    netns: ns.clone(),
                });
            }
        }
    }
    let ran = weft_sys::process::stop_all(&procs, Duration::from_secs(2));
    out.retain(|e| ran.iter().any(|p| p.pid == e.pid));
    out.sort_by_key(|e| e.pid);
    out
}

/// Warnings about foreign nftables chains in the NAT nodes of a built lab.
fn nat_warnings(lab: &topo::Lab) -> Vec<String> {
    let mut out = Vec::new();
    for (node, n) in &lab.nat {
        let netns = &lab.nodes[node].netns;
        match apply::nat::foreign_drops(&lab.name, node, netns, n) {
            Ok(w) => out.extend(w),
            Err(e) => out.push(e.to_string()),
        }
    }
    out
}

/// The outcome of `weft check`.
#[derive(Debug)]
pub struct CheckReport {
    pub results: Vec<CheckResult>,
    pub warnings: Vec<String>,
}

/// Run a built lab's health checks now.
pub fn check(name: &str) -> Result<CheckReport, Error> {
    machines::check_key(name)?;
    weft_sys::caps::require_admin("weft check")?;
    let st = built(name)?;
    Ok(CheckReport {
        warnings: nat_warnings(&st.lab),
        results: checks::run_all(&st.lab),
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

/// Undoing failed: why, and the plan lines that were not undone.
struct Rollback {
    error: Error,
    left: Vec<String>,
}

/// Undo a partial apply: for a new lab, stop its processes and remove
/// every namespace this run made; otherwise apply the inverse of what took
/// effect.
fn rollback(
    name: &str,
    old: &topo::Lab,
    new: &topo::Lab,
    st: &mut State,
    had_nodes: bool,
    applied: &[weft_topo::Op],
    opts: &UpOptions,
) -> Result<(), Rollback> {
    let fail = |error: Error| Rollback {
        error,
        left: Vec::new(),
    };
    if !had_nodes {
        let mut errs = Vec::new();
        if let Err(e) = datapath::stop(name) {
            errs.push(e);
        }
        tunnels::stop_all(name);
        // Processes in the namespaces would keep them alive.
        services::stop_all(name);
        let nets = state::journal_entries(name);
        end_processes(&nets);
        services::remove_mounts(&nets);
        let watch = weft_sys::netns::watch_cleanup().ok();
        for n in state::journal_entries(name) {
            if let Err(e) = weft_sys::netns::delete(&n) {
                errs.push(e.into());
            }
        }
        if let Some(w) = watch {
            let _ = w.wait(Duration::from_secs(30));
        }
        if let Some(e) = errs.into_iter().next() {
            return Err(fail(e));
        }
        names::remove_all(name);
        state::remove(name).map_err(fail)?;
        return Ok(());
    }
    let mut ex = Exec::new(name, old, Some(new), st, opts.threads, opts.progress);
    let r = weft_topo::exec::undo(&mut ex, applied);
    drop(ex);
    // The lab is as it was; keep the indexes and sysctl values the undo used.
    st.lab = old.clone();
    st.unfinished = false;
    state::save(name, st).map_err(fail)?;
    if let Err((error, left)) = r {
        return Err(Rollback {
            error,
            left: Plan { ops: left }.lines(),
        });
    }
    let nets: Vec<String> = old.nodes.values().map(|n| n.netns.clone()).collect();
    state::journal_reset(name, &nets).map_err(fail)?;
    Ok(())
}

/// Refuse to take over a namespace that exists but is not this lab's.
fn check_names_free(new: &topo::Lab, built: &topo::Lab) -> Result<(), Error> {
    for n in new.nodes.values() {
        if !built.nodes.contains_key(&n.name) && weft_sys::netns::exists(&n.netns) {
            return Err(owner::taken(&n.name, &n.netns, &new.name));
        }
    }
    Ok(())
}

/// Forget built nodes whose namespace vanished behind weft's back (and the
/// veth ends cabled to them, which died with them), so the plan recreates
/// them.
fn repair_drift(lab: &mut topo::Lab) {
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
    /// Leave processes that are not the lab's services running (they keep
    /// their deleted namespaces alive; `held` lists them).
    pub keep_processes: bool,
}

#[derive(Debug, Default)]
pub struct DownReport {
    pub removed: Vec<String>,
    /// The lab's services that were stopped: `node:service (pid N)`.
    pub services: Vec<String>,
    /// Other processes in the lab's namespaces that were ended.
    pub ended: Vec<Ended>,
    /// Namespaces still kept alive by processes running in them: pid lists.
    pub held: Vec<(String, Vec<u32>)>,
}

/// Remove every namespace of the lab (and with them every interface, address
/// and route in them) and nothing else; works without the file, and after a
/// `weft up` that was killed.
pub fn down(name: &str, opts: &DownOptions) -> Result<DownReport, Error> {
    machines::check_key(name)?;
    weft_sys::caps::require_admin("weft down")?;
    // A lab without a state directory may still have tagged namespaces
    // (a lost /run/weft): nothing to lock, and nothing made for it.
    let _lock = state::lock_existing(name)?;
    // The datapath first, by its recorded pid: it holds sockets in the
    // switch namespaces.
    datapath::stop(name)?;
    // Tunnel processes run inside the namespaces and would keep them alive.
    tunnels::stop_all(name);
    let mut candidates: Vec<String> = state::journal_entries(name);
    if let Some(st) = state::load(name).ok().flatten() {
        candidates.extend(st.lab.nodes.values().map(|n| n.netns.clone()));
    }
    // Namespaces with the lab's prefix that the journal does not list are
    // taken only if they carry the lab's ownership tag.
    // A share (`LAB@MACHINE`) names its namespaces after the lab.
    let prefix = weft_topo::netns_name(weft_topo::machines::split_share_name(name).0, "");
    for ns in weft_sys::netns::list()? {
        if ns.starts_with(&prefix) && !candidates.contains(&ns) && has_owner_tag(&ns, name) {
            candidates.push(ns);
        }
    }
    candidates.sort();
    candidates.dedup();
    let mut report = DownReport {
        services: services::stop_all(name).services,
        ..DownReport::default()
    };
    if !opts.keep_processes {
        report.ended = end_processes(&candidates);
    }
    services::remove_mounts(&candidates);
    // weft's nftables tables go before the links they name.
    if let Some(st) = state::load(name).ok().flatten() {
        for node in st.lab.nat.keys() {
            if let Some(n) = st.lab.nodes.get(node) {
                if weft_sys::netns::exists(&n.netns) {
                    let _ = apply::nat::unload(node, &n.netns);
                }
            }
        }
    }
    let t0 = Instant::now();
    // Armed before the first deletion so it orders after all of them.
    let watch = if opts.no_wait {
        None
    } else {
        Some(weft_sys::netns::watch_cleanup()?)
    };
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
    names::remove_all(name);
    state::remove(name)?;
    Ok(report)
}

fn has_owner_tag(netns: &str, lab: &str) -> bool {
    owner::owner_of(netns).as_deref() == Some(lab)
}

/// The lab as last applied, or an error naming the labs that exist.
pub fn built(name: &str) -> Result<State, Error> {
    if let Some(st) = state::load(name)? {
        return Ok(st);
    }
    let shares = machines::shares_of(name);
    if shares.is_empty() {
        Err(Error::NoLab(name.to_string()))
    } else {
        Err(Error::OnlyShares {
            lab: name.to_string(),
            shares,
        })
    }
}

/// The built lab that has `node`: `lab` itself, or for a lab built here as
/// machine shares, the share (`LAB@MACHINE`) that has the node.
pub fn built_with(lab: &str, node: &str) -> Result<State, Error> {
    if !lab.contains('@') && state::load(lab)?.is_none() {
        for key in machines::shares_of(lab) {
            if let Some(st) = state::load(&key)?.filter(|s| s.lab.nodes.contains_key(node)) {
                return Ok(st);
            }
        }
    }
    built(lab)
}

/// The namespace of a node of a built lab (see [`built_with`]).
pub fn node_netns(lab: &str, node: &str) -> Result<String, Error> {
    let st = built_with(lab, node)?;
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

/// Where `weft exec LAB NODE` runs a command.
#[derive(Debug, Clone)]
pub enum ExecTarget {
    /// The node's network namespace, with a private view of files.
    Netns(String),
    /// The node's network namespace and its mount namespace file (binds).
    Node { netns: String, mntns: PathBuf },
    /// Inside the node's container (`podman exec`).
    Container(String),
}

/// Where a command run in a node of a built lab runs.
pub fn exec_target(lab: &str, node: &str) -> Result<ExecTarget, Error> {
    let netns = node_netns(lab, node)?;
    let st = built_with(lab, node)?;
    let n = &st.lab.nodes[node];
    if n.container.is_some() {
        return Ok(ExecTarget::Container(services::container_name(&netns)));
    }
    let holder = services::mntns_path(&netns);
    if !n.binds.is_empty() && weft_sys::mntns::exists(&holder) {
        return Ok(ExecTarget::Node {
            netns,
            mntns: holder,
        });
    }
    Ok(ExecTarget::Netns(netns))
}

/// Resolve a ping target: an IP address, or a node name (the address
/// [`weft_topo::check::node_address`] picks, as the hosts files list it).
pub fn resolve_target(lab: &topo::Lab, target: &str) -> Result<std::net::IpAddr, Error> {
    if let Ok(ip) = target.parse() {
        return Ok(ip);
    }
    if let Some(a) = lab.remote_names.get(target) {
        return Ok(*a);
    }
    let node = lab.nodes.get(target).ok_or_else(|| Error::NoNode {
        lab: lab.name.clone(),
        node: target.to_string(),
        known: lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    weft_topo::check::node_address(node).ok_or_else(|| {
        Error::invalid_help(
            format!("node {target} has no address to ping"),
            "give one of its interfaces an address, or ping an IP",
        )
    })
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

/// A lab that is up for as long as this value lives: `weft down` runs when it
/// is dropped (also when a test panics). For programs that build labs in
/// their own tests:
///
/// ```no_run
/// let lab = weft::Running::from_file("examples/bridge.toml").unwrap();
/// let ns1 = lab.netns("ns1").unwrap(); // "weft-br.ns1", for `ip netns exec`
/// # let _ = ns1;
/// // ... run the test against the lab ...
/// drop(lab); // removed again
/// ```
pub struct Running {
    name: String,
    lab: topo::Lab,
}

impl Running {
    /// Check the file, build the lab, wait until it is usable.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Running, Error> {
        let parsed = parse_file(path.as_ref()).map_err(Error::File)?;
        Running::up(parsed.lab)
    }

    /// Build a lab made in code (or parsed with [`weft_topo::parse`]).
    pub fn up(lab: topo::Lab) -> Result<Running, Error> {
        up(&lab, &UpOptions::default())?;
        Ok(Running {
            name: lab.name.clone(),
            lab,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lab as built.
    pub fn lab(&self) -> &topo::Lab {
        &self.lab
    }

    /// The network namespace of a node (`ip netns exec NAME ...`).
    pub fn netns(&self, node: &str) -> Result<String, Error> {
        node_netns(&self.name, node)
    }

    /// Ping from a node to a node name or address; true if anything answered.
    pub fn ping(&self, node: &str, target: &str) -> Result<bool, Error> {
        let ip = resolve_target(&self.lab, target)?;
        let opts = weft_sys::ping::PingOptions {
            count: 1,
            timeout: Duration::from_secs(1),
            ..Default::default()
        };
        Ok(ping(&self.name, node, ip, &opts, |_| {})?.received > 0)
    }

    /// Run a closure inside a node's network namespace (on a thread of its
    /// own: sockets it opens belong to the node).
    pub fn run_in<R: Send>(&self, node: &str, f: impl FnOnce() -> R + Send) -> Result<R, Error> {
        Ok(weft_sys::netns::run_in_named(&self.netns(node)?, f)?)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = down(&self.name, &DownOptions::default()) {
            eprintln!("weft: removing lab {}: {e}", self.name);
        }
    }
}
