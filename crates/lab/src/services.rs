//! The programs a lab runs in its nodes: services, containers, and the
//! nodes' private mount namespaces.
//!
//! One supervisor process per lab (`weft supervise LAB`, started like the
//! datapath) starts them in dependency order, watches readiness, applies
//! restart policies and caps their logs. Why one per lab and not one per
//! service: a 500-host lab with a service per host would otherwise run 500
//! more weft processes (each a few MB of RSS), and the dependency order
//! across nodes needs one place that sees every service's state anyway.
//!
//! What it runs is in `services/spec.json` (written by `weft up`, with a
//! generation number), what it did in `services/status.json` (each
//! service's pid and start time, state, restarts), both in the lab's state
//! directory. `weft down` needs neither the supervisor nor `weft up`
//! alive: it stops the supervisor, then every recorded service by process
//! group, then every other process inside the lab's namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weft_sys::mntns;
use weft_sys::process::{self, ProcId};
use weft_topo::workload::{self, Ready, Restart, ServiceRef, CONTAINER_SERVICE};
use weft_topo::Lab;

use crate::{state, Error, Event};

/// A log is cut to its newest half once it passes this size.
pub const LOG_CAP: u64 = 1 << 20;
/// Time between SIGTERM and SIGKILL when a service is stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// A service without `ready` counts as ready once it has run this long.
const STARTED_AFTER: Duration = Duration::from_millis(200);
/// First wait before a restart; doubled up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(20);
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn dir(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("services")
}
fn spec_path(lab: &str) -> PathBuf {
    dir(lab).join("spec.json")
}
fn status_path(lab: &str) -> PathBuf {
    dir(lab).join("status.json")
}
fn supervisor_path(lab: &str) -> PathBuf {
    dir(lab).join("supervisor.json")
}
/// The log of one service (`NODE:SERVICE`).
pub fn log_path(lab: &str, id: &ServiceRef) -> PathBuf {
    dir(lab).join(format!("{}.{}.log", id.node, id.service))
}

/// Directory of the node mount namespace files: a private mount (see
/// [`mntns::prepare_dir`]) of its own.
fn mnt_dir() -> PathBuf {
    state::state_root().join("mnt")
}

/// The mount namespace file of a node with binds.
pub fn mntns_path(netns: &str) -> PathBuf {
    mnt_dir().join(netns)
}

/// The name podman knows a node's container by.
pub fn container_name(netns: &str) -> String {
    netns.to_string()
}

/// One program the supervisor runs, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub id: ServiceRef,
    pub netns: String,
    /// The node's mount namespace file, when it has binds.
    pub mntns: Option<PathBuf>,
    /// Runs on the host as is (podman, which joins the node itself).
    pub on_host: bool,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub ready: Ready,
    pub after: Vec<ServiceRef>,
    pub restart: Restart,
    pub timeout_ms: u64,
    /// The node's binds: a change remakes its mount namespace, so its
    /// services restart.
    pub mounts: Vec<String>,
    /// Run on the host after it stopped (`podman rm -f NAME`).
    pub cleanup: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Spec {
    generation: u64,
    units: Vec<Unit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Waiting,
    Starting,
    Ready,
    /// Exited, waiting to be restarted.
    Backoff,
    /// Exited, not restarted (its restart policy).
    Exited,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitStatus {
    pub phase: Phase,
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
    pub restarts: u32,
    pub detail: String,
    /// A container's name, for `podman rm` after a crash.
    #[serde(default)]
    pub cleanup: Vec<String>,
    /// How its process last ended, until it is started again.
    #[serde(default)]
    pub exit: Option<Exit>,
}

/// How a service's process ended: its exit code, or the signal that
/// killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The code it passed to `exit`; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
}

impl From<std::process::ExitStatus> for Exit {
    fn from(st: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        Exit {
            code: st.code(),
            signal: st.signal(),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "code {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => write!(f, "an unknown status"),
        }
    }
}

/// One service or container of a lab as `weft status` shows it: the
/// file's name for it, and what its supervisor last recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// The node it runs in.
    pub node: String,
    /// The service's name in the file; `container` for the node's image.
    pub name: String,
    /// The name podman knows the node's container by (`podman exec NAME`);
    /// `None` for a service.
    pub container: Option<String>,
    /// Its process (for a container, `podman run`'s), while one runs.
    pub pid: Option<u32>,
    /// `waiting` (for those it runs after), `starting` (not ready yet),
    /// `running`, `restarting` (exited, started again after a pause),
    /// `exited` (not restarted, by its `restart`), `failed` (did not
    /// start or become ready), `gone` (recorded running, but its process
    /// is not there and no supervisor watches it: `weft up` restarts it).
    pub state: &'static str,
    /// How its process last ended, for `restarting`, `exited`, `failed`.
    pub exit: Option<Exit>,
    /// Restarts by its `restart` policy since `weft up` started it.
    pub restarts: u32,
    /// The supervisor's words: `ready after 0.2 s`, `exited (exit
    /// status: 3); restarting`.
    pub detail: String,
}

/// The services and containers of lab `lab` as its supervisor last wrote
/// them, in the order of the file's nodes and services; empty when the
/// lab runs none.
pub fn services_status(lab: &str) -> Vec<ServiceStatus> {
    let Some(spec) = load_spec(lab) else {
        return Vec::new();
    };
    let recorded = status(lab).unwrap_or_default();
    let watched = supervised(lab);
    spec.units
        .iter()
        .map(|u| {
            let r = recorded.units.get(&u.id.to_string());
            let proc_id = r.and_then(|r| {
                Some(ProcId {
                    pid: r.pid?,
                    start_time: r.start_time?,
                })
            });
            let state = match r.map(|r| r.phase) {
                None | Some(Phase::Waiting) => "waiting",
                Some(Phase::Starting | Phase::Ready)
                    if !watched && !proc_id.is_some_and(process::is_running) =>
                {
                    "gone"
                }
                Some(Phase::Starting) => "starting",
                Some(Phase::Ready) => "running",
                Some(Phase::Backoff) => "restarting",
                Some(Phase::Exited) => "exited",
                Some(Phase::Failed) => "failed",
            };
            ServiceStatus {
                node: u.id.node.clone(),
                name: u.id.service.clone(),
                container: (u.id.service == CONTAINER_SERVICE).then(|| container_name(&u.netns)),
                pid: proc_id.map(|p| p.pid),
                state,
                exit: r.and_then(|r| r.exit),
                restarts: r.map_or(0, |r| r.restarts),
                detail: r.map(|r| r.detail.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub generation: u64,
    pub units: BTreeMap<String, UnitStatus>,
}

/// The units of `lab`: its services, and a `container` unit per image node.
pub fn units_of(lab: &Lab) -> Vec<Unit> {
    let mut out = Vec::new();
    for n in lab.nodes.values() {
        let mntns = (!n.binds.is_empty()).then(|| mntns_path(&n.netns));
        let mounts: Vec<String> = n.binds.iter().map(|b| b.to_string()).collect();
        for (name, s) in &n.services {
            out.push(Unit {
                id: ServiceRef::new(&n.name, name),
                netns: n.netns.clone(),
                mntns: mntns.clone(),
                on_host: false,
                argv: s.command.clone(),
                env: s.env.clone(),
                user: s.user.clone(),
                ready: s.ready.clone(),
                after: s.after.clone(),
                restart: s.restart,
                timeout_ms: s.timeout_ms,
                mounts: mounts.clone(),
                cleanup: Vec::new(),
            });
        }
        if let Some(c) = &n.container {
            let cname = container_name(&n.netns);
            let mut argv: Vec<String> = [
                "podman",
                "run",
                "--rm",
                "--replace",
                "--name",
                &cname,
                "--network",
                &format!("ns:{}", weft_sys::netns::path(&n.netns).display()),
                "--hostname",
                &n.name,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            // weft's name files, as in every other node.
            for f in ["hosts", "resolv.conf"] {
                let p = Path::new(weft_sys::exec::ETC_NETNS_DIR)
                    .join(&n.netns)
                    .join(f);
                if p.exists() {
                    argv.push("-v".into());
                    argv.push(format!("{}:/etc/{f}:ro", p.display()));
                }
            }
            for b in &n.binds {
                match &b.source {
                    Some(s) => {
                        argv.push("-v".into());
                        argv.push(format!("{s}:{}", b.target));
                    }
                    None => {
                        argv.push("--tmpfs".into());
                        argv.push(b.target.clone());
                    }
                }
            }
            for (k, v) in &c.env {
                argv.push("-e".into());
                argv.push(format!("{k}={v}"));
            }
            argv.push(c.image.clone());
            argv.extend(c.command.iter().cloned());
            out.push(Unit {
                id: ServiceRef::new(&n.name, CONTAINER_SERVICE),
                netns: n.netns.clone(),
                mntns: None,
                on_host: true,
                argv,
                env: BTreeMap::new(),
                user: None,
                ready: Ready::Command {
                    argv: container_ready(&cname),
                },
                after: Vec::new(),
                restart: Restart::No,
                timeout_ms: workload::DEFAULT_TIMEOUT_MS,
                mounts: Vec::new(),
                cleanup: vec![
                    "podman".into(),
                    "rm".into(),
                    "--force".into(),
                    "--time".into(),
                    "2".into(),
                    cname,
                ],
            });
        }
    }
    out
}

/// A container counts as ready as a service without `ready` does: running,
/// and still running 0.2 s later. Running once is not enough: a command
/// that ends at once (an image's shell, with no terminal) is running for
/// a moment while `podman run` is still busy, and the lab was called up
/// with the container already gone.
fn container_ready(cname: &str) -> Vec<String> {
    let secs = STARTED_AFTER.as_secs_f64();
    vec![
        "sh".into(),
        "-c".into(),
        // Quiet: before podman made the container, its "no such
        // container" would fill the log.
        format!(
            "r() {{ test \"$(podman container inspect --format '{{{{.State.Running}}}}' {cname} 2>/dev/null)\" = true; }}; r && sleep {secs} && r"
        ),
    ]
}

/// The program a service's `command` starts, when it is not there: a
/// path that does not exist, or a name found in no directory of the
/// service's `PATH`. A program under one of the node's binds is not looked
/// for (the node sees other files there), and neither is what a shell
/// (`sh -c '...'`) runs.
fn missing_program(
    command: &[String],
    env: &BTreeMap<String, String>,
    binds: &[weft_topo::workload::Bind],
) -> Option<String> {
    let program = command.first()?;
    if program.contains('/') {
        let p = Path::new(program);
        let bound = binds.iter().any(|b| p.starts_with(&b.target));
        return (!bound && p.is_absolute() && !p.is_file()).then(|| program.clone());
    }
    let path = env.get("PATH").map(String::as_str).unwrap_or(PATH);
    let found = path.split(':').any(|d| {
        let bound = binds.iter().any(|b| Path::new(d).starts_with(&b.target));
        bound || Path::new(d).join(program).is_file()
    });
    (!found).then(|| program.clone())
}

/// Whether `podman image inspect --format '{{json .Config.Cmd}}|{{json
/// .Config.Entrypoint}}'` names a command; None when it cannot be read.
fn image_has_command(inspect: &str) -> Option<bool> {
    let (cmd, entry) = inspect.trim().split_once('|')?;
    let words = |j: &str| serde_json::from_str::<Option<Vec<String>>>(j).ok();
    let (cmd, entry) = (words(cmd)?, words(entry)?);
    Some(cmd.is_some_and(|v| !v.is_empty()) || entry.is_some_and(|v| !v.is_empty()))
}

/// What must hold before a lab with workloads is built: podman and every
/// image present, every `user` known. Checked before anything is made.
pub fn preflight(lab: &Lab) -> Result<(), Error> {
    let images: BTreeSet<(&str, &str)> = lab
        .nodes
        .values()
        .filter_map(|n| {
            n.container
                .as_ref()
                .map(|c| (n.name.as_str(), c.image.as_str()))
        })
        .collect();
    if !images.is_empty() {
        let v = std::process::Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(v, Ok(s) if s.success()) {
            let (node, _) = images.iter().next().expect("not empty");
            return Err(Error::Missing {
                what: format!(
                    "node {node} runs an image, and podman is not installed (or does not run)"
                ),
                help: "install it: apt-get install podman".into(),
            });
        }
        for (node, image) in &images {
            let ok = std::process::Command::new("podman")
                .args(["image", "exists", image])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(Error::Missing {
                    what: format!("node {node}: there is no local image `{image}`"),
                    help: "weft pulls nothing: build or load it first (podman build, podman load, podman import); `podman images` lists the local ones".into(),
                });
            }
        }
        // An image made with `podman import` (docs/topology.md's tiny
        // one) has no command of its own: podman would refuse to start it
        // only after the network was built, and the lab rolled back.
        for n in lab.nodes.values() {
            let Some(c) = n.container.as_ref().filter(|c| c.command.is_empty()) else {
                continue;
            };
            let out = std::process::Command::new("podman")
                .args(["image", "inspect", "--format"])
                .arg("{{json .Config.Cmd}}|{{json .Config.Entrypoint}}")
                .arg(&c.image)
                .stderr(Stdio::null())
                .output();
            let has = out
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| image_has_command(&String::from_utf8_lossy(&o.stdout)));
            if has == Some(false) {
                return Err(Error::Missing {
                    what: format!(
                        "node {}: the image `{}` has no command of its own (no CMD or ENTRYPOINT), and the node gives none",
                        n.name, c.image
                    ),
                    help: format!(
                        "give the node one: command = [\"httpd\", \"-f\", \"-p\", \"80\"] under [nodes.{}], or build the image with a CMD",
                        n.name
                    ),
                });
            }
        }
    }
    for n in lab.nodes.values() {
        for (name, s) in &n.services {
            let ready = match &s.ready {
                Ready::Command { argv } => {
                    missing_program(argv, &s.env, &n.binds).map(|p| (p, "its `ready` command runs"))
                }
                _ => None,
            };
            let missing = missing_program(&s.command, &s.env, &n.binds)
                .map(|p| (p, "it runs"))
                .or(ready);
            if let Some((program, what)) = missing {
                return Err(Error::Missing {
                    what: format!(
                        "node {}, service {name}: {what} `{program}`, which is not on this machine",
                        n.name
                    ),
                    help: "install the package that has it (FRR's daemons in /usr/lib/frr: \
                           apt-get install frr), or fix the service's `command` or `ready`"
                        .into(),
                });
            }
            if let Some(u) = &s.user {
                weft_sys::spawn::lookup_user(u).map_err(|e| Error::Missing {
                    what: format!("node {}, service {name}: {e}", n.name),
                    help: "create the user, or change the service's `user`".into(),
                })?;
            }
        }
    }
    Ok(())
}

/// Makes the nodes' mount namespaces match `lab`: created for nodes with
/// binds, remade when the binds changed, removed for nodes without.
/// `old` is the lab as built before (None: nothing was). A node running an
/// image has none: podman mounts its binds in the container (`-v`), and
/// their paths in the node are the image's, not the machine's.
pub fn sync_mounts(lab: &Lab, old: Option<&Lab>) -> Result<(), Error> {
    let own = |n: &&weft_topo::Node| !n.binds.is_empty() && n.container.is_none();
    if let Some(old) = old {
        for n in old.nodes.values().filter(own) {
            let same = lab
                .nodes
                .get(&n.name)
                .is_some_and(|m| m.binds == n.binds && m.netns == n.netns && m.container.is_none());
            if !same {
                mntns::remove(&mntns_path(&n.netns))?;
            }
        }
    }
    let with: Vec<_> = lab.nodes.values().filter(own).collect();
    if with.is_empty() {
        return Ok(());
    }
    mntns::prepare_dir(&mnt_dir())?;
    for n in with {
        let holder = mntns_path(&n.netns);
        if mntns::exists(&holder) {
            // weft's name files are rewritten by rename: bind the new ones.
            let etc = Path::new(weft_sys::exec::ETC_NETNS_DIR).join(&n.netns);
            for e in std::fs::read_dir(&etc).into_iter().flatten().flatten() {
                mntns::rebind(&holder, &e.path(), &Path::new("/etc").join(e.file_name())).map_err(
                    |source| Error::NodeFiles {
                        node: n.name.clone(),
                        source: Box::new(source),
                    },
                )?;
            }
            continue;
        }
        let mounts: Vec<mntns::Mount> = n
            .binds
            .iter()
            .map(|b| mntns::Mount {
                source: b.source.as_ref().map(PathBuf::from),
                target: PathBuf::from(&b.target),
            })
            .collect();
        mntns::create(&holder, &n.netns, &mounts).map_err(|source| Error::NodeFiles {
            node: n.name.clone(),
            source: Box::new(source),
        })?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn load_spec(lab: &str) -> Option<Spec> {
    serde_json::from_slice(&std::fs::read(spec_path(lab)).ok()?).ok()
}

/// What the supervisor last wrote.
pub fn status(lab: &str) -> Option<Status> {
    serde_json::from_slice(&std::fs::read(status_path(lab)).ok()?).ok()
}

fn supervisor(lab: &str) -> Option<ProcId> {
    #[derive(Deserialize)]
    struct R {
        pid: u32,
        start_time: u64,
    }
    let r: R = serde_json::from_slice(&std::fs::read(supervisor_path(lab)).ok()?).ok()?;
    Some(ProcId {
        pid: r.pid,
        start_time: r.start_time,
    })
}

/// Whether the lab's services' supervisor runs (it keeps the services
/// running and restarts them by their policy).
pub fn supervised(lab: &str) -> bool {
    supervisor(lab).is_some_and(process::is_running)
}

/// Makes the running services match `lab` and waits until every one is
/// ready. Only services whose definition changed (or that run after one
/// that did) are restarted. On failure the error names the service and
/// shows its log's last lines; the services are left as they are (the
/// caller rolls back).
pub fn ensure(lab: &Lab, exe: Option<&Path>, progress: &dyn Fn(Event)) -> Result<(), Error> {
    let name = lab.name.as_str();
    let units = units_of(lab);
    let running = supervisor(name).filter(|p| process::is_running(*p));
    if units.is_empty() && running.is_none() && load_spec(name).is_none() {
        return Ok(());
    }
    std::fs::create_dir_all(dir(name))
        .map_err(|e| Error::io(format!("creating {}", dir(name).display()), e))?;
    let generation = load_spec(name).map_or(0, |s| s.generation) + 1;
    let spec = Spec {
        generation,
        units: units.clone(),
    };
    write_atomic(
        &spec_path(name),
        &serde_json::to_vec_pretty(&spec).expect("spec serializes"),
    )
    .map_err(|e| Error::io("writing the services' spec", e))?;
    let sup = match running {
        Some(p) => p,
        None => {
            // A supervisor that died left its services running: they are
            // stopped, and the new one starts every service afresh.
            stop_recorded(name);
            // The running program is weft only for the command: a test
            // using the library would run its own binary as `supervise`
            // (the harness then ran no test and exited).
            let exe = match exe {
                Some(e) => e.to_path_buf(),
                None => crate::context::helper_exe()?,
            };
            // The state directory too, as the datapath gets it: a
            // context's is not the supervisor's default.
            let env = crate::context::helper_env();
            let env: Vec<(&str, &std::ffi::OsStr)> =
                env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
            let p = process::spawn_detached_env(
                &exe,
                &["supervise", name],
                &env,
                &dir(name).join("supervisor.log"),
            )
            .map_err(|e| {
                Error::io(
                    format!(
                        "starting the service supervisor ({} supervise {name})",
                        exe.display()
                    ),
                    e,
                )
            })?;
            write_atomic(
                &supervisor_path(name),
                format!("{{\"pid\":{},\"start_time\":{}}}", p.pid, p.start_time).as_bytes(),
            )
            .map_err(|e| Error::io("recording the service supervisor", e))?;
            p
        }
    };
    if units.is_empty() {
        return Ok(());
    }
    progress(Event::Stage {
        what: "starting services",
        total: units.len(),
    });
    let cap: u64 = units.iter().map(|u| u.timeout_ms).sum::<u64>() + 30_000;
    let t0 = Instant::now();
    let mut reported = 0;
    loop {
        if !process::is_running(sup) {
            let log = tail(&dir(name).join("supervisor.log"), 5);
            return Err(Error::SupervisorExited {
                lab: name.to_string(),
                pid: sup.pid,
                log_tail: log.join("\n"),
            });
        }
        if let Some(st) = status(name).filter(|s| s.generation == generation) {
            let mut ready = 0;
            let mut failed: Vec<(&Unit, &UnitStatus)> = Vec::new();
            for u in &units {
                let Some(s) = st.units.get(&u.id.to_string()) else {
                    continue;
                };
                match s.phase {
                    Phase::Ready => ready += 1,
                    Phase::Failed | Phase::Exited | Phase::Backoff => failed.push((u, s)),
                    _ => {}
                }
            }
            // The cause, not a service that waited for it.
            failed.sort_by_key(|(_, s)| s.detail.starts_with("not started"));
            if let Some((u, s)) = failed.first() {
                return Err(failure(name, u, s));
            }
            for _ in reported..ready {
                progress(Event::Step);
            }
            reported = ready;
            if ready == units.len() {
                return Ok(());
            }
        }
        if t0.elapsed() > Duration::from_millis(cap) {
            return Err(Error::Timeout {
                what: format!("the services of lab {name} becoming ready"),
                secs: t0.elapsed().as_secs_f64(),
                detail: "see `weft logs`".into(),
            });
        }
        std::thread::sleep(TICK);
    }
}

fn failure(lab: &str, u: &Unit, s: &UnitStatus) -> Error {
    Error::Service {
        lab: lab.to_string(),
        node: u.id.node.clone(),
        service: u.id.service.clone(),
        detail: s.detail.clone(),
        log: tail(&log_path(lab, &u.id), 10).into(),
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// What [`stop_all`] ended.
#[derive(Debug, Default)]
pub struct Stopped {
    /// `node:service (pid N)` for each service that was running.
    pub services: Vec<String>,
}

/// Stops the supervisor and every service of the lab (process group:
/// SIGTERM, [`STOP_GRACE`], SIGKILL), removes its containers, and forgets
/// them. Works from the records alone, after `weft up` or the supervisor
/// were killed.
pub fn stop_all(lab: &str) -> Stopped {
    let mut out = Stopped::default();
    if let Some(p) = supervisor(lab) {
        // It starts nothing more once gone; its services live on in their
        // own process groups and are stopped below.
        let _ = process::stop(p, Duration::from_secs(1));
    }
    let mut cleanups: Vec<Vec<String>> = load_spec(lab)
        .map(|s| s.units.into_iter().map(|u| u.cleanup).collect())
        .unwrap_or_default();
    let mut procs = Vec::new();
    if let Some(st) = status(lab) {
        for (id, s) in &st.units {
            cleanups.push(s.cleanup.clone());
            if let (Some(pid), Some(start_time)) = (s.pid, s.start_time) {
                let p = ProcId { pid, start_time };
                if process::is_running(p) {
                    out.services.push(format!("{id} (pid {pid})"));
                    procs.push(p);
                }
            }
        }
    }
    stop_groups(&procs, STOP_GRACE);
    cleanups.sort();
    cleanups.dedup();
    for c in cleanups.iter().filter(|c| !c.is_empty()) {
        let _ = std::process::Command::new(&c[0])
            .args(&c[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(dir(lab));
    out
}

/// Stops the services a status file records (no supervisor involved).
fn stop_recorded(lab: &str) {
    let Some(st) = status(lab) else { return };
    let procs: Vec<ProcId> = st
        .units
        .values()
        .filter_map(|s| {
            Some(ProcId {
                pid: s.pid?,
                start_time: s.start_time?,
            })
        })
        .collect();
    stop_groups(&procs, STOP_GRACE);
    for s in st.units.values() {
        if let Some((p, args)) = s.cleanup.split_first() {
            let _ = std::process::Command::new(p)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = std::fs::remove_file(status_path(lab));
}

/// SIGTERM to each process group, SIGKILL after `grace` to those whose
/// leader still runs (and to every group, for children it left).
fn stop_groups(procs: &[ProcId], grace: Duration) {
    for p in procs {
        let _ = process::signal_group(p.pid, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while procs.iter().any(|p| process::exists(*p)) && t0.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in procs {
        let _ = process::signal_group(p.pid, libc::SIGKILL);
    }
    let t1 = Instant::now();
    while procs.iter().any(|p| process::exists(*p)) && t1.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes the mount namespace files of these namespaces' nodes.
pub fn remove_mounts(netns: &[String]) {
    for ns in netns {
        let _ = mntns::remove(&mntns_path(ns));
    }
}

/// Identities of the mount namespaces of these nodes, for finding
/// processes in them.
pub fn mount_identities(netns: &[String]) -> Vec<(String, weft_sys::netns::NsIdentity)> {
    netns
        .iter()
        .filter_map(|ns| mntns::identity(&mntns_path(ns)).map(|id| (ns.clone(), id)))
        .filter(|(ns, _)| mntns::exists(&mntns_path(ns)))
        .collect()
}

/// Prints a service's log (`weft logs LAB NODE[:SERVICE]`); with `follow`,
/// keeps printing what it appends until `stop` returns true. A node
/// without `:SERVICE` means its only service, or its container.
pub fn logs(
    lab: &Lab,
    target: &str,
    follow: bool,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<(), Error> {
    let (node, service) = match target.split_once(':') {
        Some((n, s)) => (n.to_string(), Some(s.to_string())),
        None => (target.to_string(), None),
    };
    let n = lab.nodes.get(&node).ok_or_else(|| Error::NoNode {
        lab: lab.name.clone(),
        node: node.clone(),
        known: lab.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    let mut names: Vec<String> = n.services.keys().cloned().collect();
    if n.container.is_some() {
        names.push(CONTAINER_SERVICE.into());
    }
    let service = match service {
        Some(s) if names.contains(&s) => s,
        Some(s) => {
            return Err(Error::Invalid {
                what: format!("node {node} has no service {s}"),
                help: Some(if names.is_empty() {
                    "it runs none".to_string()
                } else {
                    format!("its services: {}", names.join(", "))
                }),
            })
        }
        None if names.len() == 1 => names.remove(0),
        None if names.is_empty() => {
            return Err(Error::Invalid {
                what: format!("node {node} runs no services"),
                help: Some("services are [nodes.NODE.services.NAME] in the file".into()),
            })
        }
        None => {
            return Err(Error::Invalid {
                what: format!("node {node} runs several services"),
                help: Some(format!("name one, like {node}:{}", names[0])),
            })
        }
    };
    let id = ServiceRef::new(&node, &service);
    let path = log_path(&lab.name, &id);
    let copy = |from: u64, out: &mut dyn Write| -> u64 {
        let Ok(mut f) = std::fs::File::open(&path) else {
            return from;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        // Cut by the supervisor: start again from its beginning.
        let from = if len < from { 0 } else { from };
        let _ = f.seek(SeekFrom::Start(from));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let _ = out.write_all(&buf);
        let _ = out.flush();
        from + buf.len() as u64
    };
    let older = path.with_extension("log.1");
    if older.exists() {
        if let Ok(b) = std::fs::read(&older) {
            let _ = out.write_all(&b);
        }
    }
    let mut at = copy(0, out);
    while follow && !stop() {
        std::thread::sleep(Duration::from_millis(100));
        at = copy(at, out);
    }
    Ok(())
}

// ---------------------------------------------------------------------
// The supervisor.

struct Run {
    unit: Unit,
    log: PathBuf,
    phase: Phase,
    child: Option<Child>,
    proc_id: Option<ProcId>,
    since: Instant,
    restarts: u32,
    detail: String,
    /// How its process last ended, until it is started again.
    exit: Option<Exit>,
    /// A ready command being tried.
    probe: Option<(Child, Instant)>,
    next_probe: Instant,
}

impl Run {
    fn new(lab: &str, unit: Unit) -> Run {
        Run {
            log: log_path(lab, &unit.id),
            unit,
            phase: Phase::Waiting,
            child: None,
            proc_id: None,
            since: Instant::now(),
            restarts: 0,
            detail: String::new(),
            exit: None,
            probe: None,
            next_probe: Instant::now(),
        }
    }
}

/// The supervisor: runs until the lab's spec file disappears (the lab was
/// taken down) or it is killed.
pub fn supervise(lab: &str) -> Result<(), Error> {
    let mut runs: BTreeMap<ServiceRef, Run> = BTreeMap::new();
    let mut order: Vec<ServiceRef> = Vec::new();
    let mut generation = 0;
    let mut last_cap = Instant::now();
    let mut dirty = true;
    loop {
        let Some(spec) = load_spec(lab) else {
            let procs: Vec<ProcId> = runs.values().filter_map(|r| r.proc_id).collect();
            stop_groups(&procs, STOP_GRACE);
            return Ok(());
        };
        if spec.generation != generation {
            generation = spec.generation;
            reconcile(lab, &mut runs, spec.units);
            order = start_order(&runs);
            dirty = true;
        }
        for id in &order {
            dirty |= step(lab, id, &mut runs);
        }
        if dirty {
            write_status(lab, generation, &runs);
            dirty = false;
        }
        if last_cap.elapsed() > Duration::from_secs(1) {
            last_cap = Instant::now();
            for id in runs.keys() {
                cap_log(&log_path(lab, id));
            }
        }
        std::thread::sleep(TICK);
    }
}

fn start_order(runs: &BTreeMap<ServiceRef, Run>) -> Vec<ServiceRef> {
    let defs: BTreeMap<ServiceRef, workload::Service> = runs
        .iter()
        .map(|(k, r)| {
            (
                k.clone(),
                workload::Service {
                    command: r.unit.argv.clone(),
                    ready: r.unit.ready.clone(),
                    after: r.unit.after.clone(),
                    restart: r.unit.restart,
                    env: BTreeMap::new(),
                    user: None,
                    timeout_ms: r.unit.timeout_ms,
                },
            )
        })
        .collect();
    let refs: BTreeMap<ServiceRef, &workload::Service> =
        defs.iter().map(|(k, v)| (k.clone(), v)).collect();
    workload::start_order(&refs).unwrap_or_else(|_| refs.keys().cloned().collect())
}

/// Applies a new spec: stops units that are gone or changed (and those
/// after a changed one), keeps the rest running.
fn reconcile(lab: &str, runs: &mut BTreeMap<ServiceRef, Run>, units: Vec<Unit>) {
    let new: BTreeMap<ServiceRef, Unit> = units.into_iter().map(|u| (u.id.clone(), u)).collect();
    let mut restart: BTreeSet<ServiceRef> = runs
        .iter()
        .filter(|(k, r)| new.get(*k) != Some(&r.unit))
        .map(|(k, _)| k.clone())
        .collect();
    loop {
        let more: Vec<ServiceRef> = new
            .values()
            .filter(|u| !restart.contains(&u.id) && runs.contains_key(&u.id))
            .filter(|u| u.after.iter().any(|d| restart.contains(d)))
            .map(|u| u.id.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        restart.extend(more);
    }
    let stopping: Vec<Run> = restart.iter().filter_map(|k| runs.remove(k)).collect();
    let procs: Vec<ProcId> = stopping.iter().filter_map(|r| r.proc_id).collect();
    stop_groups(&procs, STOP_GRACE);
    for mut r in stopping {
        if let Some(c) = r.child.as_mut() {
            let _ = c.wait();
        }
        run_cleanup(&r.unit);
    }
    for (k, u) in new {
        runs.entry(k).or_insert_with(|| Run::new(lab, u));
    }
}

fn run_cleanup(u: &Unit) {
    if let Some((p, args)) = u.cleanup.split_first() {
        let _ = std::process::Command::new(p)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Advances one unit; true if its status changed.
fn step(lab: &str, id: &ServiceRef, runs: &mut BTreeMap<ServiceRef, Run>) -> bool {
    let phase = runs[id].phase;
    match phase {
        Phase::Waiting => {
            let deps = runs[id].unit.after.clone();
            let mut blocked = None;
            let mut all_ready = true;
            for d in &deps {
                match runs.get(d).map(|r| r.phase) {
                    Some(Phase::Ready) | None => {}
                    Some(Phase::Failed) | Some(Phase::Exited) => blocked = Some(d.clone()),
                    _ => all_ready = false,
                }
            }
            let r = runs.get_mut(id).expect("known");
            if let Some(d) = blocked {
                r.phase = Phase::Failed;
                r.detail = format!("not started: it runs after {d}, which failed");
                return true;
            }
            if all_ready {
                start(lab, r);
                return true;
            }
            false
        }
        Phase::Starting => {
            let r = runs.get_mut(id).expect("known");
            if let Some(code) = exited(r) {
                r.phase = Phase::Failed;
                r.detail = format!("it exited ({code}) before it was ready");
                r.proc_id = None;
                return true;
            }
            match is_ready(r) {
                Some(true) => {
                    r.phase = Phase::Ready;
                    r.detail = format!("ready after {:.1} s", r.since.elapsed().as_secs_f64());
                    true
                }
                _ if r.since.elapsed() > Duration::from_millis(r.unit.timeout_ms) => {
                    if let Some(p) = r.proc_id.take() {
                        stop_groups(&[p], Duration::from_secs(1));
                    }
                    if let Some(c) = r.child.as_mut() {
                        let _ = c.wait();
                    }
                    r.phase = Phase::Failed;
                    r.detail = format!(
                        "not ready within {:.1} s ({}); it was stopped",
                        r.unit.timeout_ms as f64 / 1000.0,
                        describe_ready(&r.unit.ready)
                    );
                    true
                }
                _ => false,
            }
        }
        Phase::Ready => {
            let r = runs.get_mut(id).expect("known");
            let Some(code) = exited(r) else { return false };
            r.proc_id = None;
            let again = match r.unit.restart {
                Restart::Always => true,
                Restart::OnFailure => code != "exit status: 0",
                Restart::No => false,
            };
            if again {
                r.phase = Phase::Backoff;
                r.detail = format!("exited ({code}); restarting");
                r.since = Instant::now();
            } else {
                r.phase = Phase::Exited;
                r.detail = format!("exited ({code})");
            }
            true
        }
        Phase::Backoff => {
            let r = runs.get_mut(id).expect("known");
            let wait = BACKOFF
                .saturating_mul(1 << r.restarts.min(6))
                .min(MAX_BACKOFF);
            if r.since.elapsed() < wait {
                return false;
            }
            r.restarts += 1;
            start(lab, r);
            // A restarted service is not waited for again: it counts as
            // ready for those after it, as systemd does.
            if r.phase == Phase::Starting {
                r.phase = Phase::Ready;
            }
            true
        }
        Phase::Exited | Phase::Failed => false,
    }
}

fn describe_ready(r: &Ready) -> String {
    match r {
        Ready::Started => "waiting for it to keep running".into(),
        Ready::Tcp { port } => format!("nothing accepted a TCP connection on port {port}"),
        Ready::Command { argv } => format!("`{}` did not exit 0", argv.join(" ")),
        Ready::Delay { ms } => format!("delay {ms} ms"),
    }
}

fn exited(r: &mut Run) -> Option<String> {
    let c = r.child.as_mut()?;
    match c.try_wait() {
        Ok(Some(st)) => {
            r.child = None;
            r.exit = Some(st.into());
            Some(st.to_string())
        }
        _ => None,
    }
}

fn start(lab: &str, r: &mut Run) {
    r.since = Instant::now();
    r.detail.clear();
    r.exit = None;
    let u = &r.unit;
    let log = log_path(lab, &u.id);
    // io::Error keeps the kind of what failed; the text says which step.
    let spawned = (|| -> std::io::Result<Child> {
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("opening its log {}: {e}", log.display()))
            })?;
        let err = out.try_clone()?;
        let user = u
            .user
            .as_deref()
            .map(weft_sys::spawn::lookup_user)
            .transpose()
            .map_err(std::io::Error::other)?;
        let mut cmd = if u.on_host {
            let mut c = std::process::Command::new(&u.argv[0]);
            c.args(&u.argv[1..]);
            std::os::unix::process::CommandExt::process_group(&mut c, 0);
            c
        } else {
            weft_sys::spawn::command_in_node(
                &u.netns,
                u.mntns.as_deref(),
                &u.argv[0],
                &u.argv[1..],
                user,
            )
            .map_err(std::io::Error::other)?
        };
        if !u.on_host {
            cmd.env_clear().env("PATH", PATH).current_dir("/");
        }
        cmd.envs(&u.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        cmd.spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting {}: {e}", u.argv[0])))
    })();
    match spawned {
        Ok(child) => {
            let pid = child.id();
            r.proc_id = process::start_time(pid).map(|start_time| ProcId { pid, start_time });
            r.child = Some(child);
            r.phase = Phase::Starting;
            r.probe = None;
            r.next_probe = Instant::now();
        }
        Err(e) => {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut f| writeln!(f, "weft: {e}"));
            r.phase = Phase::Failed;
            r.detail = e.to_string();
        }
    }
}

/// Some(true) once ready; None while not yet known.
fn is_ready(r: &mut Run) -> Option<bool> {
    let elapsed = r.since.elapsed();
    match r.unit.ready.clone() {
        Ready::Started => Some(elapsed >= STARTED_AFTER),
        Ready::Delay { ms } => Some(elapsed >= Duration::from_millis(ms)),
        Ready::Tcp { port } => {
            if Instant::now() < r.next_probe {
                return None;
            }
            r.next_probe = Instant::now() + Duration::from_millis(50);
            let ok = weft_sys::netns::run_in_named(&r.unit.netns, move || {
                let t = Duration::from_millis(200);
                std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), t).is_ok()
                    || std::net::TcpStream::connect_timeout(
                        &(std::net::Ipv6Addr::LOCALHOST, port).into(),
                        t,
                    )
                    .is_ok()
            })
            .unwrap_or(false);
            Some(ok)
        }
        Ready::Command { argv } => {
            if let Some((c, t)) = r.probe.as_mut() {
                match c.try_wait() {
                    Ok(Some(st)) => {
                        r.probe = None;
                        r.next_probe = Instant::now() + Duration::from_millis(200);
                        return Some(st.success());
                    }
                    Ok(None) if t.elapsed() > Duration::from_secs(10) => {
                        let _ = c.kill();
                        let _ = c.wait();
                        r.probe = None;
                    }
                    _ => {}
                }
                return None;
            }
            if Instant::now() < r.next_probe {
                return None;
            }
            let cmd = if r.unit.on_host {
                let mut c = std::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                Ok(c)
            } else {
                weft_sys::spawn::command_in_node(
                    &r.unit.netns,
                    r.unit.mntns.as_deref(),
                    &argv[0],
                    &argv[1..],
                    None,
                )
            };
            let Ok(mut cmd) = cmd else { return Some(false) };
            // Its output goes to the service's log, to explain a failure.
            let log = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&r.log);
            let mut ok_out = false;
            if let Ok(f) = log {
                if let Ok(f2) = f.try_clone() {
                    cmd.stdout(if r.unit.on_host {
                        Stdio::null()
                    } else {
                        f.into()
                    })
                    .stderr(f2);
                    ok_out = true;
                }
            }
            if !ok_out {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
            cmd.stdin(Stdio::null());
            match cmd.spawn() {
                Ok(c) => r.probe = Some((c, Instant::now())),
                Err(e) => {
                    r.detail = format!("the ready command {}: {e}", argv[0]);
                    r.next_probe = Instant::now() + Duration::from_millis(500);
                }
            }
            None
        }
    }
}

fn write_status(lab: &str, generation: u64, runs: &BTreeMap<ServiceRef, Run>) {
    let st = Status {
        generation,
        units: runs
            .iter()
            .map(|(k, r)| {
                (
                    k.to_string(),
                    UnitStatus {
                        phase: r.phase,
                        pid: r.proc_id.map(|p| p.pid),
                        start_time: r.proc_id.map(|p| p.start_time),
                        restarts: r.restarts,
                        detail: r.detail.clone(),
                        cleanup: r.unit.cleanup.clone(),
                        exit: r.exit,
                    },
                )
            })
            .collect(),
    };
    let _ = write_atomic(
        &status_path(lab),
        &serde_json::to_vec_pretty(&st).expect("status serializes"),
    );
}

/// Keeps a log under [`LOG_CAP`]: its newest [`LOG_CAP`] bytes move to
/// `NAME.log.1` and it starts again empty (the service appends, so it
/// carries on at the new end). Checked every second.
fn cap_log(path: &Path) {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len <= LOG_CAP {
        return;
    }
    let mut newest = Vec::with_capacity(LOG_CAP as usize);
    if f.seek(SeekFrom::Start(len - LOG_CAP)).is_err()
        || Read::by_ref(&mut f)
            .take(LOG_CAP)
            .read_to_end(&mut newest)
            .is_err()
    {
        return;
    }
    // From the first whole line on.
    let cut = newest.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
    let _ = std::fs::write(path.with_extension("log.1"), &newest[cut..]);
    let _ = f.set_len(0);
}

#[cfg(test)]
mod tests {

    /// The container's readiness script against a stand-in `podman` that
    /// answers `Running` from a list, one answer per call.
    fn container_ready_with(answers: &[&str]) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "weft-ready-{}-{}",
            std::process::id(),
            answers.join("-")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, a) in answers.iter().enumerate() {
            std::fs::write(dir.join(format!("answer{i}")), a).unwrap();
        }
        let podman = dir.join("podman");
        std::fs::write(
            &podman,
            format!(
                "#!/bin/sh\nn=$(cat {d}/calls 2>/dev/null || echo 0)\necho $((n+1)) > {d}/calls\ncat {d}/answer$n\n",
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv = container_ready("weft-x.a");
        let path = format!("{}:/usr/bin:/bin", dir.display());
        let ok = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("PATH", path)
            .status()
            .unwrap()
            .success();
        let _ = std::fs::remove_dir_all(&dir);
        ok
    }

    #[test]
    fn a_container_is_ready_when_it_is_still_running_a_moment_later() {
        assert!(container_ready_with(&["true", "true"]));
        // Running for a moment, then gone: a shell that ended at once.
        assert!(!container_ready_with(&["true", "false"]));
        assert!(!container_ready_with(&["false", "true"]));
    }
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_image_without_cmd_or_entrypoint_has_no_command() {
        assert_eq!(image_has_command("null|null\n"), Some(false));
        assert_eq!(image_has_command("[]|null"), Some(false));
        assert_eq!(image_has_command("[\"/bin/sh\"]|null"), Some(true));
        assert_eq!(
            image_has_command("null|[\"/docker-entrypoint.sh\"]"),
            Some(true)
        );
        assert_eq!(image_has_command("no such image"), None);
    }

    #[test]
    fn a_missing_program_is_named_and_one_under_a_bind_is_not_looked_for() {
        let none = BTreeMap::new();
        assert_eq!(missing_program(&argv(&["sh", "-c", "x"]), &none, &[]), None);
        assert_eq!(missing_program(&argv(&["/bin/sh"]), &none, &[]), None);
        assert_eq!(
            missing_program(&argv(&["/usr/lib/weft-no-such/zebra"]), &none, &[]),
            Some("/usr/lib/weft-no-such/zebra".into())
        );
        assert_eq!(
            missing_program(&argv(&["weft-no-such-program"]), &none, &[]),
            Some("weft-no-such-program".into())
        );
        // The node sees the bound directory, not the machine's.
        let bind = weft_topo::workload::Bind {
            source: Some("/tmp".into()),
            target: "/usr/lib/weft-no-such".into(),
        };
        assert_eq!(
            missing_program(&argv(&["/usr/lib/weft-no-such/zebra"]), &none, &[bind]),
            None
        );
        // The service's own PATH is the one searched.
        let env = BTreeMap::from([("PATH".to_string(), "/weft-no-such-dir".to_string())]);
        assert_eq!(
            missing_program(&argv(&["sh"]), &env, &[]),
            Some("sh".into())
        );
    }
}
