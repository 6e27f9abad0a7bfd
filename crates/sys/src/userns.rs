//! Running without root: weft's own user namespace for the caller.
//!
//! A user who is not root gets a *keeper*: a small process (forked from
//! the first weft program that needs it) that made a user namespace in
//! which the caller's uid and gid are root, and a mount namespace in which
//! `/run/netns`, `/etc/netns` and the state directory are private tmpfs
//! mounts. Every weft program of that user then joins the keeper's user
//! and mount namespaces before doing anything ([`join`]); its own network
//! namespace stays the machine's, where it has no capability, so nothing
//! it does can touch the machine's interfaces. The labs' namespaces are
//! made from inside, owned by the keeper's user namespace, and reachable
//! only through it.
//!
//! The keeper is found through `DIR/keeper.pid` (`DIR`: [`base_dir`],
//! `$XDG_RUNTIME_DIR/weft`, else `/tmp/weft-UID`), checked against the
//! process's start time; `DIR/keeper.lock` serializes finding, making and
//! leaving. It leaves when no namespace is left in its `/run/netns` and no
//! other process is in its user namespace, so the last `weft down` (or the
//! end of the last test that built a lab) ends it, and its namespaces and
//! mounts go with it.
//!
//! `setns` into a user or mount namespace is refused to a process with
//! more than one thread, so joining happens first thing: in `weft`'s
//! `main`, and for any other program linking this crate (another
//! project's tests using the `weft` library) in a constructor that runs
//! before `main` (see [`joined_at_start`]).

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::{Error, Result};

/// `WEFT_ROOTLESS`: `1` builds labs in weft's user namespace even when the
/// process could build them as root (tests of this mode run as root too);
/// `0` never does (a user without the capabilities is told to be root).
/// Unset: only a process without CAP_NET_ADMIN and CAP_SYS_ADMIN does.
pub const ENV: &str = "WEFT_ROOTLESS";

/// Set by [`join`] for the processes it starts: the keeper's pid. A process
/// with it that is in a user namespace is inside weft's (the refusals of
/// what cannot work without root apply).
pub const ENV_KEEPER: &str = "WEFT_KEEPER";

/// The namespaces made private in the keeper's mount namespace (besides
/// the state directory).
pub const PRIVATE_DIRS: [&str; 2] = [crate::netns::RUN_DIR, crate::exec::ETC_NETNS_DIR];

/// A process in weft's user namespace.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The keeper's pid.
    pub keeper: u32,
    /// True if this process started the keeper.
    pub created: bool,
    /// Processes ended because they were left in the namespace of a
    /// keeper that had been killed.
    pub stranded: usize,
    /// The private state directory (`DIR/state`).
    pub state_dir: PathBuf,
}

static AT_START: OnceLock<Result<Joined>> = OnceLock::new();
static JOINED: OnceLock<Joined> = OnceLock::new();

/// True if this process is in the machine's first user namespace (where
/// root is the machine's root): its uid map is the identity over all ids.
pub fn in_init_userns() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .map(|m| is_identity_map(&m))
        .unwrap_or(true)
}

fn is_identity_map(map: &str) -> bool {
    let f: Vec<&str> = map.split_whitespace().collect();
    f == ["0", "0", "4294967295"]
}

/// Whether this process should build labs in weft's user namespace: it
/// is in the machine's user namespace and `WEFT_ROOTLESS` is `1`, or it is
/// unset and the process lacks CAP_NET_ADMIN or CAP_SYS_ADMIN.
pub fn wanted() -> bool {
    let forced = match std::env::var(ENV).as_deref() {
        Ok("0") => return false,
        Ok("1") => true,
        _ => false,
    };
    if !in_init_userns() {
        return false;
    }
    forced || !has_admin()
}

fn has_admin() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| crate::caps::parse_cap_eff(&s))
        .is_some_and(|eff| crate::caps::missing_admin(eff).is_empty())
}

/// True if this process works inside weft's user namespace: it joined
/// one, or was started by a process that had (and is in a user namespace).
pub fn inside() -> bool {
    JOINED.get().is_some() || (std::env::var_os(ENV_KEEPER).is_some() && !in_init_userns())
}

/// What the constructor that runs before `main` did in a program that is
/// not `weft` itself: `None` if joining was not wanted (root, or
/// `WEFT_ROOTLESS=0`), else whether it joined.
pub fn joined_at_start() -> Option<&'static Result<Joined>> {
    AT_START.get()
}

/// The error of a join that was wanted before `main` and failed, for
/// [`crate::caps::require_admin`] to report instead of "run as root".
pub(crate) fn start_failure() -> Option<&'static crate::Error> {
    match AT_START.get() {
        Some(Err(e)) => Some(e),
        _ => None,
    }
}

/// In weft's user namespace: the keeper's own network namespace, empty and
/// never used for traffic, where threads that built a lab's namespace
/// return (this process's own is the machine's, which a thread may leave
/// but, without the machine's root, not enter again).
pub(crate) fn home_netns() -> Option<Result<OwnedFd>> {
    if !inside() {
        return None;
    }
    let pid = JOINED
        .get()
        .map(|j| j.keeper)
        .or_else(|| std::env::var(ENV_KEEPER).ok()?.parse().ok())?;
    Some(
        fs::File::open(format!("/proc/{pid}/ns/net"))
            .map(OwnedFd::from)
            .map_err(|e| {
                Error::os(
                    format!("opening the network namespace of weft's keeper (pid {pid})"),
                    e,
                )
            }),
    )
}

/// The per-user directory of the keeper's files: `$XDG_RUNTIME_DIR/weft`
/// when that is a directory of the caller's, else `/tmp/weft-UID`.
pub fn base_dir() -> PathBuf {
    let uid = nix::unistd::getuid().as_raw();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if fs::metadata(&d).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
            return d.join("weft");
        }
    }
    PathBuf::from(format!("/tmp/weft-{uid}"))
}

/// Makes `dir` (mode 0700) or checks that the existing one is the
/// caller's own and closed to others: in /tmp anyone could have made it
/// first, or left a symlink there.
fn own_dir(dir: &Path) -> Result<()> {
    let uid = nix::unistd::getuid().as_raw();
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::os_hint(
                format!("creating {}", dir.display()),
                e,
                "weft keeps its user namespace's files there; set XDG_RUNTIME_DIR to a directory of yours",
            ))
        }
    }
    let m = fs::symlink_metadata(dir).map_err(|e| Error::os(format!("{}", dir.display()), e))?;
    if !m.is_dir() || m.uid() != uid || m.permissions().mode() & 0o022 != 0 {
        return Err(Error::Rootless {
            what: format!(
                "{} is not a directory of yours closed to others (owner {}, mode {:o})",
                dir.display(),
                m.uid(),
                m.permissions().mode() & 0o7777
            ),
            help: "remove it, or set XDG_RUNTIME_DIR to a directory of yours".into(),
        });
    }
    Ok(())
}

/// The number of threads of this process.
fn threads() -> usize {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A process's start time (field 22 of `/proc/PID/stat`), to tell it from
/// a later process that got the same pid.
fn start_time(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&s)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The keeper that `DIR/keeper.pid` names, if it still runs.
fn live_keeper(base: &Path) -> Option<u32> {
    let text = fs::read_to_string(base.join("keeper.pid")).ok()?;
    let mut f = text.split_whitespace();
    let pid: u32 = f.next()?.parse().ok()?;
    let start: u64 = f.next()?.parse().ok()?;
    // A killed keeper may linger as a zombie until init reaps it: its
    // namespaces are gone already.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
    (parse_start_time(&stat) == Some(start) && state != "Z" && state != "X").then_some(pid)
}

/// Ends the processes left in the user namespace of a keeper that died
/// without leaving (killed): a switch datapath, services, a program that
/// had joined. Nothing can reach their labs any more. `keeper.pid` names
/// that namespace (`user:[INODE]`); returns how many were ended.
fn end_stranded(base: &Path) -> usize {
    let Ok(text) = fs::read_to_string(base.join("keeper.pid")) else {
        return 0;
    };
    let Some(ns) = text.split_whitespace().nth(2).map(PathBuf::from) else {
        return 0;
    };
    let own = std::process::id();
    let mut n = 0;
    for p in fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != own)
    {
        if fs::read_link(format!("/proc/{p}/ns/user")).is_ok_and(|l| l == ns) {
            let pid = nix::unistd::Pid::from_raw(p as i32);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// The running keeper's pid, if there is one (for `weft status` and
/// tests; nothing is made).
pub fn keeper() -> Option<u32> {
    live_keeper(&base_dir())
}

/// Joins the caller's weft user namespace, making its keeper if none
/// runs: `setns` into the keeper's user and mount namespaces, back to the
/// same working directory. Must be called while the process has one
/// thread. Sets `WEFT_STATE_DIR` (if unset) to the private state
/// directory and `WEFT_KEEPER` for the programs this one starts.
pub fn join() -> Result<Joined> {
    if let Some(j) = JOINED.get() {
        return Ok(j.clone());
    }
    if threads() != 1 {
        return Err(Error::Rootless {
            what: "joining weft's user namespace: this process already runs several threads".into(),
            help: "the kernel lets only a single-threaded process enter a user namespace: join before starting threads (weft does it before main)".into(),
        });
    }
    let base = base_dir();
    if let Some(parent) = base.parent() {
        if !parent.exists() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::os(format!("creating {}", parent.display()), e))?;
        }
    }
    own_dir(&base)?;
    let state_dir = base.join("state");
    match fs::DirBuilder::new().mode(0o700).create(&state_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::os(format!("creating {}", state_dir.display()), e)),
    }
    let cwd = std::env::current_dir().ok();
    let lock = lock(&base)?;
    let mut stranded = 0;
    let (pid, created) = match live_keeper(&base) {
        Some(pid) => (pid, false),
        None => {
            stranded = end_stranded(&base);
            (spawn_keeper(&base, &state_dir)?, true)
        }
    };
    let open = |ns: &str| {
        fs::File::open(format!("/proc/{pid}/ns/{ns}"))
            .map(OwnedFd::from)
            .map_err(|e| {
                Error::os(
                    format!("opening the {ns} namespace of weft's keeper (pid {pid})"),
                    e,
                )
            })
    };
    let user = open("user")?;
    let mnt = open("mnt")?;
    nix::sched::setns(&user, nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| {
        Error::os_hint(
            format!("entering the user namespace of weft's keeper (pid {pid})"),
            e,
            "the process must be single-threaded and the keeper yours",
        )
    })?;
    nix::sched::setns(&mnt, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
        Error::os(
            format!("entering the mount namespace of weft's keeper (pid {pid})"),
            e,
        )
    })?;
    drop(lock);
    // setns(CLONE_NEWNS) moves the working directory to the namespace's
    // root; relative paths given on the command line mean the old one.
    if let Some(d) = cwd {
        let _ = std::env::set_current_dir(d);
    }
    if std::env::var_os("WEFT_STATE_DIR").is_none() {
        std::env::set_var("WEFT_STATE_DIR", &state_dir);
    }
    std::env::set_var(ENV_KEEPER, pid.to_string());
    let j = Joined {
        keeper: pid,
        created,
        stranded,
        state_dir,
    };
    let _ = JOINED.set(j.clone());
    Ok(j)
}

fn lock(base: &Path) -> Result<fs::File> {
    let p = base.join("keeper.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| Error::os(format!("opening {}", p.display()), e))?;
    crate::flock_exclusive(f.as_raw_fd())
        .map_err(|e| Error::os(format!("locking {}", p.display()), e))?;
    Ok(f)
}

/// Starts a keeper (detached: its own session, parent init) and records
/// it in `DIR/keeper.pid`; returns its pid once its namespaces are ready,
/// or what failed and which setting to change.
fn spawn_keeper(base: &Path, state_dir: &Path) -> Result<u32> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::os("making a pipe to weft's keeper", e))?;
    // SAFETY: the caller checked that this process has a single thread, so
    // the child is a complete copy in which any code may run.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::os("starting weft's keeper", e))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            // SAFETY: still single-threaded (a fork copies only the calling
            // thread).
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => keeper_main(w, uid, gid, base, state_dir),
                // SAFETY: _exit ends this intermediate process without
                // running the parent's destructors or atexit handlers twice.
                _ => unsafe { libc::_exit(0) },
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut msg = String::new();
            let _ = fs::File::from(r).read_to_string(&mut msg);
            let msg = msg.trim();
            if let Some(pid) = msg.strip_prefix("ok ").and_then(|p| p.parse::<u32>().ok()) {
                let start = start_time(pid).ok_or_else(|| Error::Rootless {
                    what: format!("weft's keeper (pid {pid}) ended as soon as it started"),
                    help: "run again; if it persists, report it".into(),
                })?;
                let p = base.join("keeper.pid");
                let tmp = base.join("keeper.pid.tmp");
                let ns = fs::read_link(format!("/proc/{pid}/ns/user"))
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                fs::write(&tmp, format!("{pid} {start} {ns}\n"))
                    .and_then(|()| fs::rename(&tmp, &p))
                    .map_err(|e| Error::os(format!("writing {}", p.display()), e))?;
                return Ok(pid);
            }
            let (what, help) = msg
                .strip_prefix("err ")
                .and_then(|m| m.split_once('\t'))
                .unwrap_or((msg, ""));
            Err(Error::Rootless {
                what: if what.is_empty() {
                    "weft's keeper died while making its namespaces".into()
                } else {
                    what.to_string()
                },
                help: if help.is_empty() {
                    "run as root instead (or with WEFT_ROOTLESS=0 to be told what is missing)"
                        .into()
                } else {
                    help.to_string()
                },
            })
        }
    }
}

/// What to change when `unshare(CLONE_NEWUSER)` failed with `errno`, from
/// the values of the sysctls that restrict unprivileged user namespaces
/// (`None`: this kernel has no such sysctl).
pub fn advice(
    errno: i32,
    unprivileged_userns_clone: Option<&str>,
    max_user_namespaces: Option<&str>,
    apparmor_restrict: Option<&str>,
) -> String {
    fn v(s: Option<&str>) -> Option<&str> {
        s.map(str::trim)
    }
    if v(unprivileged_userns_clone) == Some("0") {
        return "unprivileged user namespaces are disabled on this machine: as root, \
                `sysctl -w kernel.unprivileged_userns_clone=1` (or run weft as root)"
            .into();
    }
    if v(max_user_namespaces) == Some("0") {
        return "user namespaces are disabled on this machine (user.max_user_namespaces = 0): \
                as root, `sysctl -w user.max_user_namespaces=15000` (or run weft as root)"
            .into();
    }
    if v(apparmor_restrict) == Some("1") {
        return "AppArmor restricts unprivileged user namespaces on this machine: as root, \
                `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or give weft an \
                AppArmor profile with `userns,` (or run weft as root)"
            .into();
    }
    if errno == libc::ENOSPC {
        return "the limit of user namespaces is reached (user.max_user_namespaces): raise it \
                as root with `sysctl -w user.max_user_namespaces=15000`"
            .into();
    }
    "the kernel refused an unprivileged user namespace (a seccomp filter or a container \
     runtime may forbid it); run weft as root, or allow unshare(CLONE_NEWUSER) here"
        .into()
}

fn advice_here(errno: i32) -> String {
    let r = |p: &str| fs::read_to_string(p).ok();
    advice(
        errno,
        r("/proc/sys/kernel/unprivileged_userns_clone").as_deref(),
        r("/proc/sys/user/max_user_namespaces").as_deref(),
        r("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref(),
    )
}

/// The keeper: makes the namespaces, says so on `w`, then holds them
/// until it is idle. Never returns.
fn keeper_main(w: OwnedFd, uid: u32, gid: u32, base: &Path, state_dir: &Path) -> ! {
    // The caller's pipes (a test harness reading weft's output) must not
    // stay open in a process that outlives it.
    detach_stdio(w.as_raw_fd());
    let r = make_namespaces(uid, gid, state_dir);
    let mut w = fs::File::from(w);
    match r {
        Ok(()) => {
            let _ = writeln!(w, "ok {}", std::process::id());
        }
        Err((what, help)) => {
            let _ = write!(w, "err {what}\t{help}");
            drop(w);
            // SAFETY: ends the keeper without unwinding into its parent's
            // stack, a copy of which it runs on.
            unsafe { libc::_exit(1) }
        }
    }
    drop(w);
    let name = CString::new("weft-keeper").expect("no NUL");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    keep(base);
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// stdin, stdout and stderr to /dev/null, every other descriptor but
/// `keep` closed.
fn detach_stdio(keep: RawFd) {
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this
            // process owns; no Rust object holds them.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let fds: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && fd != keep {
            // SAFETY: closes descriptors this process no longer uses; the
            // one of the directory listing above is already closed (EBADF).
            unsafe { libc::close(fd) };
        }
    }
}

type Failed = (String, String);

fn make_namespaces(uid: u32, gid: u32, state_dir: &Path) -> std::result::Result<(), Failed> {
    use nix::sched::CloneFlags;
    nix::sched::unshare(
        CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET,
    )
    .map_err(|e| {
        (
            format!("making weft's user namespace: unshare(CLONE_NEWUSER): {e}"),
            advice_here(e as i32),
        )
    })?;
    let write = |p: &str, body: String| {
        fs::write(p, &body).map_err(|e| {
            (
                format!(
                    "making weft's user namespace: writing {:?} to {p}: {e}",
                    body.trim()
                ),
                "report this: a single-id map needs no privilege".to_string(),
            )
        })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    let mnt = |e: nix::errno::Errno, what: String| {
        (
            format!("making weft's mount namespace: {what}: {e}"),
            "report this, with /proc/self/mountinfo".to_string(),
        )
    };
    use nix::mount::{mount, MsFlags};
    // Slave: the machine's later mounts still appear; ours never leave.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| mnt(e, "mount --make-rslave /".into()))?;
    for d in PRIVATE_DIRS {
        private_dir(Path::new(d)).map_err(|(e, what)| mnt(e, what))?;
    }
    tmpfs(state_dir, 0o700)
        .map_err(|e| mnt(e, format!("mounting a tmpfs on {}", state_dir.display())))?;
    Ok(())
}

fn tmpfs(dir: &Path, mode: u32) -> nix::Result<()> {
    nix::mount::mount(
        Some("weft"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(format!("mode={mode:o}").as_str()),
    )
}

/// Makes `dir` an empty tmpfs of this mount namespace. When it does not
/// exist, its parent (`/run`, `/etc`, owned by the machine's root, where
/// the user may not make it) is covered by a tmpfs holding a bind of
/// every entry the parent had, and `dir` is made there.
fn private_dir(dir: &Path) -> std::result::Result<(), (nix::errno::Errno, String)> {
    if dir.is_dir() {
        return tmpfs(dir, 0o755)
            .map_err(|e| (e, format!("mounting a tmpfs on {}", dir.display())));
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    cover(parent)?;
    nix::unistd::mkdir(dir, nix::sys::stat::Mode::from_bits_truncate(0o755))
        .map_err(|e| (e, format!("creating {}", dir.display())))
}

/// An entry of a directory about to be covered: a symlink made again, or
/// a detached copy of its mount tree moved back on top of a placeholder.
enum Entry {
    Link(PathBuf),
    Tree { dir: bool, fd: OwnedFd },
}

fn cover(parent: &Path) -> std::result::Result<(), (nix::errno::Errno, String)> {
    let err = |what: String| move |e| (e, what);
    let io = |what: String| {
        move |e: io::Error| {
            (
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                what,
            )
        }
    };
    let mode = fs::metadata(parent)
        .map_err(io(format!("reading {}", parent.display())))?
        .permissions()
        .mode()
        & 0o7777;
    let mut entries = Vec::new();
    for e in fs::read_dir(parent).map_err(io(format!("listing {}", parent.display())))? {
        let e = e.map_err(io(format!("listing {}", parent.display())))?;
        let p = e.path();
        let ft = e
            .file_type()
            .map_err(io(format!("reading {}", p.display())))?;
        let entry = if ft.is_symlink() {
            Entry::Link(fs::read_link(&p).map_err(io(format!("reading {}", p.display())))?)
        } else {
            Entry::Tree {
                dir: ft.is_dir(),
                fd: open_tree(&p).map_err(err(format!("open_tree {}", p.display())))?,
            }
        };
        entries.push((e.file_name(), entry));
    }
    tmpfs(parent, mode).map_err(err(format!("mounting a tmpfs on {}", parent.display())))?;
    for (name, entry) in entries {
        let p = parent.join(name);
        match entry {
            Entry::Link(target) => std::os::unix::fs::symlink(&target, &p)
                .map_err(io(format!("making the symlink {}", p.display())))?,
            Entry::Tree { dir, fd } => {
                if dir {
                    fs::create_dir(&p)
                } else {
                    fs::File::create(&p).map(drop)
                }
                .map_err(io(format!("making {}", p.display())))?;
                move_mount(&fd, &p)
                    .map_err(err(format!("moving a copy of {} back", p.display())))?;
            }
        }
    }
    Ok(())
}

fn cpath(p: &Path) -> nix::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)
}

/// `open_tree(AT_FDCWD, p, OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached
/// copy of the mount tree at `p` (a recursive bind mount not yet placed).
fn open_tree(p: &Path) -> nix::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let c = cpath(p)?;
    // SAFETY: open_tree reads the NUL-terminated path and returns a new
    // descriptor, which we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `move_mount(fd, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH)`: places a
/// detached tree from [`open_tree`] at `to`.
fn move_mount(fd: &OwnedFd, to: &Path) -> nix::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let c = cpath(to)?;
    let empty = CString::new("").expect("no NUL");
    // SAFETY: move_mount reads two NUL-terminated paths; fd is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// The keeper's life: every second, is a namespace left in its
/// `/run/netns`, or another process in its user namespace? Twice no, then
/// (under the lock, so that no one is joining) once more no: it removes
/// `keeper.pid` and ends.
fn keep(base: &Path) {
    let me = fs::read_link("/proc/self/ns/user").ok();
    let mut idle = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if busy(me.as_deref()) {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < 2 {
            continue;
        }
        let Ok(_lock) = lock(base) else { continue };
        if busy(me.as_deref()) {
            idle = 0;
            continue;
        }
        let p = base.join("keeper.pid");
        if live_keeper(base) == Some(std::process::id()) {
            let _ = fs::remove_file(p);
        }
        return;
    }
}

fn busy(me: Option<&Path>) -> bool {
    let Some(me) = me else { return true };
    let netns = fs::read_dir(crate::netns::RUN_DIR).is_ok_and(|mut d| d.next().is_some());
    if netns {
        return true;
    }
    let own = std::process::id();
    fs::read_dir("/proc").is_ok_and(|d| {
        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&p| p != own)
            .any(|p| fs::read_link(format!("/proc/{p}/ns/user")).is_ok_and(|l| l == me))
    })
}

/// Opens `/dev/net/tun` for reading and writing, as making a TUN/TAP
/// device does: `Err` with the advice when the caller may not (it is
/// often mode 0600, for the machine's root only).
pub fn check_tun() -> Result<()> {
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let mode = fs::metadata("/dev/net/tun")
                .map(|m| format!("mode {:o}", m.permissions().mode() & 0o777))
                .unwrap_or_else(|_| "missing".into());
            Err(crate::Error::Rootless {
                what: format!("/dev/net/tun ({mode}) cannot be opened by you: {e}"),
                help: "TUN/TAP devices need it readable and writable (as root: `chmod 0666 \
                       /dev/net/tun`, which lets users make devices only in namespaces of \
                       their own), or run weft as root"
                    .into(),
            })
        }
    }
}

/// The constructor: in a program that is not `weft` (whose `main` joins
/// for the commands that need it), join weft's user namespace before
/// `main` starts threads, if this process will need it.
extern "C" fn before_main() {
    let _ = std::panic::catch_unwind(|| {
        let weft = std::env::current_exe()
            .ok()
            .is_some_and(|p| p.file_name().is_some_and(|n| n == "weft"));
        if weft || !wanted() {
            return;
        }
        let _ = AT_START.set(join());
    });
}

/// Runs [`before_main`] from the `.init_array` section, as C constructors
/// run: after the dynamic loader, before `main` and before any thread.
#[used]
#[link_section = ".init_array"]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_map_is_the_identity() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map(""));
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            "4711 (a) b (c) S 1 4711 4711 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(stat), Some(98765));
        let me = std::process::id();
        assert!(start_time(me).is_some());
    }

    /// A missing private directory covers its parent: every entry is still
    /// there (files, directories with what is mounted inside them,
    /// symlinks), and the new directory is writable. In a mount namespace
    /// of a child process, so nothing of the machine's changes.
    #[test]
    fn a_missing_directory_is_made_over_a_copy_of_its_parent() {
        let d = std::env::temp_dir().join(format!("weft-cover-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("file"), b"kept").unwrap();
        std::os::unix::fs::symlink("file", d.join("link")).unwrap();
        let check = || -> std::result::Result<(), Box<dyn std::error::Error>> {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            // A mount inside an entry must come back with it.
            tmpfs(&d.join("sub"), 0o755).map_err(|e| e.to_string())?;
            fs::write(d.join("sub/inner"), b"mounted").map_err(|e| e.to_string())?;
            private_dir(&d.join("netns")).map_err(|(e, w)| format!("{w}: {e}"))?;
            let read = |p: &str| fs::read_to_string(d.join(p)).map_err(|e| format!("{p}: {e}"));
            if read("file")? != "kept" || read("sub/inner")? != "mounted" || read("link")? != "kept"
            {
                return Err("an entry changed".into());
            }
            if fs::read_link(d.join("link")).map_err(|e| e.to_string())? != Path::new("file") {
                return Err("the symlink changed".into());
            }
            fs::write(d.join("netns/x"), b"").map_err(|e| format!("netns/x: {e}"))?;
            Ok(())
        };
        // SAFETY: the child runs the check (its own mount namespace) and
        // leaves with _exit; the harness's other threads are not copied,
        // and glibc's fork handlers leave malloc usable in the child.
        let pid = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = match check() {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("cover: {e}");
                        1
                    }
                };
                // SAFETY: ends the child without running the harness's
                // destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let st = nix::sys::wait::waitpid(pid, None).unwrap();
        // Outside, nothing changed.
        assert!(!d.join("netns").exists());
        assert!(!d.join("sub/inner").exists());
        fs::remove_dir_all(&d).unwrap();
        assert_eq!(st, nix::sys::wait::WaitStatus::Exited(pid, 0));
    }

    #[test]
    fn advice_names_the_setting_that_forbids_user_namespaces() {
        let a = advice(libc::EPERM, Some("0\n"), Some("1000"), None);
        assert!(a.contains("kernel.unprivileged_userns_clone=1"), "{a}");
        let a = advice(libc::ENOSPC, None, Some("0\n"), None);
        assert!(a.contains("user.max_user_namespaces=15000"), "{a}");
        let a = advice(libc::EACCES, Some("1"), Some("1000"), Some("1\n"));
        assert!(
            a.contains("kernel.apparmor_restrict_unprivileged_userns=0"),
            "{a}"
        );
        let a = advice(libc::ENOSPC, None, Some("1000"), Some("0"));
        assert!(a.contains("limit"), "{a}");
        let a = advice(libc::EPERM, None, None, None);
        assert!(a.contains("seccomp"), "{a}");
    }
}
