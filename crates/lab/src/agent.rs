//! `weft agent FILE --machine M`: one machine's share kept as the file says,
//! for as long as the agent runs (a pod's main process).
//!
//! Each round (at start, then every `interval`) reads the file again,
//! places and resolves it ([`crate::machines::prepare`]: peers' names are
//! looked up anew, so a peer pod that came back with another address gets
//! its VXLAN ends rebuilt), and runs the library's [`crate::up`] on the
//! share. `up` is what makes this safe to repeat and to restart: it
//! changes nothing when the share matches, removes namespaces a killed
//! run left half-made (its journal), rebuilds namespaces that vanished,
//! restarts a dead datapath and dead tunnel processes. Then the share's
//! checks run, and the readiness file exists exactly while the share is
//! built and they pass. SIGTERM or SIGINT: the share is taken down
//! ([`crate::down`]) and the agent returns, without waiting for the
//! round's name lookups or checks (only for an `up` under way).
//!
//! Two agents for one machine would undo each other's work: the first
//! holds an flock on `STATE/agents/LAB@M.lock` (released by the kernel
//! when it dies, even by SIGKILL), and a second is refused.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weft_topo::machines::share_name;

use crate::{state, DownOptions, Error, UpOptions};

pub struct AgentOptions<'a> {
    pub file: PathBuf,
    pub machine: String,
    /// `--machines N`: spread a file without `[machines]` over N machines.
    pub machines: Option<usize>,
    /// Time between rounds.
    pub interval: Duration,
    /// Set (by SIGTERM) to stop: the share is taken down.
    pub stop: &'a AtomicBool,
    /// One line per event worth a log line.
    pub log: &'a dyn Fn(&str),
}

/// Where an agent's lock and readiness file live.
pub fn dir() -> PathBuf {
    state::state_root().join("agents")
}

/// The readiness file of a share (`LAB@M`): present while the agent has
/// the share built and its checks pass.
pub fn ready_path(key: &str) -> PathBuf {
    dir().join(format!("{key}.ready"))
}

/// The agent's claim on a machine, released on drop or death.
pub struct AgentLock {
    _file: File,
    path: PathBuf,
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Claims machine `key` (`LAB@M`) for this process, or says which process
/// has it.
pub fn lock(key: &str) -> Result<AgentLock, Error> {
    crate::machines::check_key(key)?;
    let d = dir();
    std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    let path = d.join(format!("{key}.lock"));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let got = weft_sys::try_flock_exclusive(f.as_raw_fd())
        .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
    if !got {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let (lab, m) = weft_topo::machines::split_share_name(key);
        return Err(Error::Machine {
            machine: m.unwrap_or_default().to_string(),
            detail: format!(
                "lab {lab}: this machine is already served by another weft agent (pid {}; lock {}): one agent per machine; stop that one first",
                holder.trim(),
                path.display()
            ),
        });
    }
    f.set_len(0)
        .and_then(|_| writeln!(f, "{}", std::process::id()))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(AgentLock { _file: f, path })
}

/// What one round did.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// The share was built or changed (or a process restarted).
    Changed,
    /// It already matched the file.
    Unchanged,
    /// `stop` was set while it looked up names or ran checks; it left
    /// them unfinished.
    Stopped,
}

/// Runs `f` on a thread of its own until it returns or `stop` is set;
/// `None` on stop, the thread left to end by itself. Only for what
/// changes nothing a stopping agent must wait for: name lookups (a
/// resolver can take tens of seconds per name) and checks (each up to its
/// timeout; a command check's process dies with the share's namespaces).
fn unless_stopped<T: Send + 'static>(
    stop: &AtomicBool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(v) => return Some(v),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the agent's round thread panicked")
            }
        }
    }
}

/// One round: read, place, resolve, `up`, check. Ok(true) when ready.
/// `opts.stop` ends it early, except while `up` changes the share (that
/// holds the lab's lock; its waits, for ports and services to be ready,
/// are bounded by their timeouts).
pub fn round(opts: &AgentOptions) -> Result<(Round, bool), Error> {
    let parsed = crate::parse_file(&opts.file).map_err(Error::File)?;
    let dir = std::fs::canonicalize(&opts.file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let (lab, machine, spread) = (parsed.lab, opts.machine.clone(), opts.machines);
    let Some(share) = unless_stopped(opts.stop, move || {
        crate::machines::prepare(&lab, Some(&machine), spread, &dir)
    }) else {
        return Ok((Round::Stopped, false));
    };
    let share = share?;
    let up = UpOptions {
        source: Some(std::fs::canonicalize(&opts.file).unwrap_or(opts.file.clone())),
        // Run below, where a stop does not wait for them; a failing one
        // keeps the share (not ready) rather than undoing it.
        run_checks: false,
        ..Default::default()
    };
    let r = crate::up(&share, &up)?;
    for w in &r.warnings {
        (opts.log)(&format!("warning: {w}"));
    }
    let changed = r.changed || r.recovered > 0;
    if r.recovered > 0 {
        (opts.log)(&format!(
            "removed {} namespace(s) a killed run left half-made",
            r.recovered
        ));
    }
    if changed {
        let (a, c, x) = r.plan.summary();
        (opts.log)(&format!(
            "share {} built: {a} added, {c} changed, {x} removed",
            share.name
        ));
    }
    let name = share.name.clone();
    let Some(checks) = unless_stopped(opts.stop, move || crate::check(&name)) else {
        return Ok((Round::Stopped, false));
    };
    let checks = checks?;
    let failed: Vec<String> = checks
        .results
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.to_string())
        .collect();
    if !failed.is_empty() {
        (opts.log)(&format!("not ready: {}", failed.join("; ")));
    }
    Ok((
        if changed {
            Round::Changed
        } else {
            Round::Unchanged
        },
        failed.is_empty(),
    ))
}

/// Runs until `opts.stop` is set, then takes the share down. Errors of a
/// round (a peer's name that does not resolve yet, a failed check) are
/// logged and retried; the file's own errors and a second agent are not.
pub fn run(opts: &AgentOptions) -> Result<(), Error> {
    let lab = crate::parse_file(&opts.file).map_err(Error::File)?.lab;
    let key = share_name(&lab.name, &opts.machine);
    let _lock = lock(&key)?;
    let ready = ready_path(&key);
    let _ = std::fs::remove_file(&ready);
    (opts.log)(&format!(
        "agent for machine {} of lab {} (pid {}); ready file {}",
        opts.machine,
        lab.name,
        std::process::id(),
        ready.display()
    ));
    let mut last_error: Option<String> = None;
    while !opts.stop.load(Ordering::SeqCst) {
        match round(opts) {
            Ok((Round::Stopped, _)) => break,
            Ok((_, ok)) => {
                if last_error.take().is_some() {
                    (opts.log)("round succeeded");
                }
                if ok {
                    if !ready.exists() {
                        std::fs::write(&ready, b"ready\n")
                            .map_err(|e| Error::io(format!("writing {}", ready.display()), e))?;
                        (opts.log)("ready");
                    }
                } else {
                    let _ = std::fs::remove_file(&ready);
                }
            }
            Err(e) => {
                let _ = std::fs::remove_file(&ready);
                let msg = e.to_string();
                // A lab file that no longer parses, or a second agent, is
                // not something waiting fixes... but a ConfigMap edit may:
                // log once per distinct error and keep trying.
                if last_error.as_deref() != Some(&msg) {
                    (opts.log)(&format!("round failed (retrying): {msg}"));
                }
                last_error = Some(msg);
            }
        }
        let until = Instant::now() + opts.interval;
        while Instant::now() < until && !opts.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(&ready);
    (opts.log)(&format!("stopping: taking share {key} down"));
    let r = crate::down(&key, &DownOptions::default())?;
    (opts.log)(&format!(
        "share {key} down: removed {} namespace(s)",
        r.removed.len()
    ));
    Ok(())
}
