//! `weft up`: plan, apply in order, wait until usable, check; on failure
//! undo what this run applied.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weft_topo::exec::Kernel as _;
use weft_topo::{IfaceKind, Plan};

use crate::apply::{self, Exec, NsHandle};
use crate::down::{end_processes, remove_and_wait};
use crate::lookup::nat_warnings;
use crate::state::{self, State};
use crate::{
    checks, datapath, machines, names, owner, runtime, services, topo, tunnels, CheckResult, Error,
    Event, Outcome,
};

/// How [`up`] builds a lab; [`UpOptions::default`] is what `weft up FILE` does.
pub struct UpOptions<'a> {
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// On failure, leave what this run made in place (for debugging).
    pub keep_on_error: bool,
    /// Worker threads for namespace creation and netlink batches.
    pub threads: usize,
    /// The file the lab came from, recorded for `weft status`.
    pub source: Option<PathBuf>,
    /// Called with each stage and step, for a progress bar.
    pub progress: &'a dyn Fn(Event),
    /// The `weft` binary that runs the switch datapath (`weft datapath
    /// LAB`) for labs with switches; default: the running executable.
    pub datapath_exe: Option<PathBuf>,
    /// How long to wait for the lab to become usable; default: as long
    /// as the spanning tree timers in force need (the root's).
    pub ready_timeout: Option<Duration>,
    /// Run the file's checks after a change, undoing the run when one
    /// fails (default). Off for a caller that runs them itself and keeps
    /// what was built either way (`weft agent`: a check may wait for a
    /// peer machine, and the agent must not wait on it to stop).
    pub run_checks: bool,
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
            run_checks: true,
        }
    }
}

/// What [`up`] did.
#[derive(Debug)]
pub struct UpReport {
    /// The plan it applied (empty when the lab already matched the file).
    pub plan: Plan,
    /// False when the lab already matched the file.
    pub changed: bool,
    /// Namespaces from an interrupted earlier run that were removed first.
    pub recovered: usize,
    /// Time spent applying the plan.
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
/// `up` is one path: plan (the difference between the built lab, as it
/// really is, and `lab`: kernel objects, the datapath and each switch's
/// settings, tunnel processes, name files, mounts and services) → apply it
/// in order → wait until usable → start the services → run the checks. A
/// failure at any of these steps applies the inverse of what this run
/// applied (or keeps it with `keep_on_error`), and is returned as
/// [`Error::Up`] saying which.
pub fn up(lab: &topo::Lab, opts: &UpOptions) -> Result<UpReport, Error> {
    let name = lab.name.as_str();
    let t0 = Instant::now();
    if opts.dry_run {
        let built = state::load(name)?;
        return Ok(UpReport {
            plan: plan_from(built.as_ref().map(|s| &s.lab), lab),
            changed: false,
            recovered: 0,
            apply_time: Duration::ZERO,
            wait_time: Duration::ZERO,
            warnings: Vec::new(),
            checks: Vec::new(),
        });
    }
    weft_sys::caps::require_admin("weft up")?;
    crate::rootless::check(lab)?;
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
    let plan = plan_from(Some(&old_lab), lab);
    let changed = !plan.is_empty();
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
    let mut restarted = false;
    if changed {
        (handles, restarted) = run.apply(&mut st)?;
        apply_time = t0.elapsed();
    } else if old_lab != *lab {
        // Edits that make and change nothing (the checks, say) are still
        // the lab's: `weft check` reads them from the state.
        st.lab = lab.clone();
        st.source = opts.source.clone().or(st.source.take());
        state::save(name, &st)?;
    }
    // From here on the lab is applied: whatever fails is undone like a
    // failed check.
    let t1 = Instant::now();
    // Waiting for addresses and ports is for kernel changes; a process
    // (re)started is waited for by itself.
    let kernel = plan.ops.iter().any(|o| {
        !o.key().is_process() && !matches!(o, weft_topo::Op::Remove { implied: true, .. })
    });
    let settled = run.settle(&mut handles, kernel || unfinished, restarted);
    drop(handles);
    let undone = match settled {
        Ok(x) => x,
        Err(e) => return Err(run.fail(&mut st, e)),
    };
    let mut warnings = Vec::new();
    warnings.extend(undone.iter().map(|u| format!("runtime change undone: {u}")));
    // The lab is usable once the tunnels' handshakes are done (or each
    // one's wait is explained).
    warnings.extend(tunnels::wait_sessions(lab, tunnels::SESSION_WAIT));
    // Services start once the network is usable, before the checks (which
    // may test what they serve): the plan's last operations. A run that
    // never finished (a service that failed, kept with --keep-on-error)
    // brings every service in line again.
    let workloads = if unfinished {
        plan_from(None, lab).ops
    } else {
        plan.ops.clone()
    };
    if let Err(e) = apply::procs::apply_workloads(
        lab,
        Some(&old_lab),
        &workloads,
        opts.datapath_exe.as_deref(),
        opts.progress,
    ) {
        return Err(run.fail(&mut st, e));
    }
    let mut results = Vec::new();
    if changed || unfinished {
        warnings.splice(0..0, nat_warnings(lab));
    }
    if (changed || unfinished) && opts.run_checks {
        results = checks::run_all(lab);
        let failed: Vec<CheckResult> = results.iter().filter(|r| !r.ok).cloned().collect();
        if !failed.is_empty() {
            let e = Error::ChecksFailed {
                lab: name.to_string(),
                failed,
                warnings: warnings.clone(),
            };
            return Err(run.fail(&mut st, e));
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
        changed: changed || unfinished || !undone.is_empty(),
        recovered,
        apply_time,
        wait_time: if changed || unfinished {
            wait_time
        } else {
            Duration::ZERO
        },
        warnings,
        checks: results,
    })
}

/// The plan from the built lab `old` to `lab`. The processes of the built
/// lab that are not running (a datapath or tunnel process that died, the
/// services of a supervisor that died) are not counted as built, so the
/// plan starts them again.
fn plan_from(old: Option<&topo::Lab>, lab: &topo::Lab) -> Plan {
    let mut before = old.map(weft_topo::plan::resources).unwrap_or_default();
    let supervised = services::supervised(&lab.name);
    before.retain(|k, _| match k {
        weft_topo::ResKey::Service { .. } => supervised,
        weft_topo::ResKey::Datapath { lab } => datapath::pid(lab).is_some(),
        weft_topo::ResKey::Tunnel { node, iface } => {
            tunnels::end_running(&lab.name, &weft_topo::Endpoint::new(node, iface))
        }
        _ => true,
    });
    weft_topo::plan::diff(&before, &weft_topo::plan::resources(lab))
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
    /// Apply the plan's operations but the services (started once the lab
    /// is usable); on failure, undo the applied prefix. Leaves the state
    /// saved as the new lab, marked unfinished. Returns the namespace
    /// handles (for the wait) and whether the datapath was (re)started.
    fn apply(&mut self, st: &mut State) -> Result<(BTreeMap<String, NsHandle>, bool), Error> {
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
        let (result, applied, handles, restarted) = {
            let mut ex = Exec::new(name, lab, Some(self.old), st, opts.threads, opts.progress);
            ex.exe = opts.datapath_exe.clone();
            ex.defer_workloads = true;
            let r = ex.apply(ops);
            let applied: Vec<weft_topo::Op> = r.done.iter().map(|&i| ops[i].clone()).collect();
            (
                r.error.map_or(Ok(()), Err),
                applied,
                std::mem::take(&mut ex.ns),
                ex.restarted,
            )
        };
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
            return Err(self.undo(st, &applied, e));
        }
        st.lab = lab.clone();
        st.source = opts.source.clone();
        st.unfinished = true;
        state::save(name, st)?;
        let nets: Vec<String> = lab.nodes.values().map(|n| n.netns.clone()).collect();
        state::journal_reset(name, &nets)?;
        // The journal was just rewritten: list the name directories again.
        if let Err(e) = names::journal_all(lab) {
            drop(handles);
            return Err(self.fail(st, e));
        }
        Ok((handles, restarted))
    }

    /// Wait until the lab is usable (`wait`: the plan changed something,
    /// or an earlier run never finished) and put back what `weft link` and
    /// `weft impair` changed at run time. Returns the runtime changes that
    /// were undone.
    fn settle(
        &self,
        handles: &mut BTreeMap<String, NsHandle>,
        wait: bool,
        restarted: bool,
    ) -> Result<Vec<String>, Error> {
        let (lab, opts) = (self.lab, self.opts);
        if wait {
            apply::wait_ready(lab, handles, opts.ready_timeout, opts.progress)?;
        }
        if datapath::has_switches(lab) && (wait || restarted) {
            datapath::wait_ready(lab, opts.ready_timeout, opts.progress)?;
        }
        // `weft link`/`weft impair` changes: the file is the truth.
        runtime::restore(lab, restarted)
    }

    fn up_error(&self, error: Error, outcome: Outcome) -> Error {
        Error::Up {
            lab: self.name.to_string(),
            error: Box::new(error),
            outcome,
        }
    }

    /// A failure after the plan was applied: keep the lab as it is
    /// (`--keep-on-error`, marked unfinished) or undo the whole plan, the
    /// processes with the rest.
    fn fail(&self, st: &mut State, e: Error) -> Error {
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
        self.undo(st, &applied, e)
    }

    /// Apply the inverse of `applied` (a prefix of the plan) after `e`.
    fn undo(&self, st: &mut State, applied: &[weft_topo::Op], e: Error) -> Error {
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
            Ok(()) => Outcome::Restored,
            Err(r) => Outcome::RollbackFailed {
                error: r.error.to_string(),
                left: r.left,
            },
        };
        self.up_error(e, outcome)
    }
}

/// Undoing failed: why, and the plan lines that were not undone (boxed
/// where returned: the rare path need not widen every `Result`).
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
) -> Result<(), Box<Rollback>> {
    let fail = |error: Error| {
        Box::new(Rollback {
            error,
            left: Vec::new(),
        })
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
    ex.exe = opts.datapath_exe.clone();
    let r = weft_topo::exec::undo(&mut ex, applied);
    drop(ex);
    // The lab is as it was; keep the indexes and sysctl values the undo used.
    st.lab = old.clone();
    st.unfinished = false;
    state::save(name, st).map_err(fail)?;
    if let Err((error, left)) = r {
        return Err(Box::new(Rollback {
            error,
            left: Plan { ops: left }.lines(),
        }));
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
