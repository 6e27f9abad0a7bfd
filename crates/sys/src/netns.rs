//! Named network namespaces, compatible with iproute2's `ip netns`: a
//! namespace NAME is kept alive by a bind mount of its nsfs inode on
//! `/run/netns/NAME`, so `ip netns list/exec/del` see weft's namespaces and
//! weft sees theirs.
//!
//! Creation never forks and never runs `ip`: worker threads `unshare` into a
//! fresh namespace, pin it with a bind mount, set it up, and `setns` back.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

use crate::error::{Error, Result};

/// A NETLINK_ROUTE socket in the calling thread's current network namespace.
///
/// Equivalent to `socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE)`;
/// the socket stays tied to this namespace for its whole life, whatever
/// namespace the thread moves to later.
pub fn route_socket() -> Result<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| Error::os("opening a NETLINK_ROUTE socket", e))
}

/// Where iproute2 (and weft) pin named network namespaces.
pub const RUN_DIR: &str = "/run/netns";

/// The nsfs link of the calling thread's network namespace. `/proc/self`
/// would name the main thread's, which is wrong on worker threads.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// `/run/netns/NAME`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(RUN_DIR).join(name)
}

/// Checks that `name` can be a file in `/run/netns` (as `ip netns add` does).
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "`.` and `..` are not names"
    } else if name.contains('/') {
        "it contains `/`"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::NetnsName {
        name: name.to_string(),
        reason,
    })
}

static RUN_DIR_READY: Mutex<bool> = Mutex::new(false);

/// Prepares `/run/netns` the way `ip netns add` does before its first
/// namespace: `mkdir -p -m 0755 /run/netns; mount --make-shared /run/netns`,
/// and if it is not a mount point yet, `mount --bind /run/netns /run/netns`
/// first.
///
/// The shared mount makes namespaces pinned later visible in mount
/// namespaces cloned earlier (e.g. by `ip netns exec`). Done once per
/// process; later calls return at once.
pub fn ensure_run_dir() -> Result<()> {
    let mut ready = RUN_DIR_READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return Ok(());
    }
    match nix::unistd::mkdir(RUN_DIR, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => {
            return Err(Error::os_hint(
                format!("creating directory {RUN_DIR}"),
                e,
                "managing network namespaces needs root",
            ))
        }
    }
    let mut bound = false;
    loop {
        let shared = mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        );
        match shared {
            Ok(()) => break,
            // EINVAL: not a mount point yet; make it one and retry.
            Err(Errno::EINVAL) if !bound => {
                mount(
                    Some(RUN_DIR),
                    RUN_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| {
                    Error::os_hint(
                        format!("bind-mounting {RUN_DIR} onto itself"),
                        e,
                        "managing network namespaces needs CAP_SYS_ADMIN (run as root)",
                    )
                })?;
                bound = true;
            }
            Err(e) => {
                return Err(Error::os_hint(
                    format!("making {RUN_DIR} a shared mount"),
                    e,
                    "managing network namespaces needs CAP_SYS_ADMIN (run as root)",
                ))
            }
        }
    }
    *ready = true;
    Ok(())
}

/// A namespace made by [`create_many`], with handles opened inside it.
#[derive(Debug)]
pub struct Created<T> {
    pub name: String,
    /// `O_RDONLY` fd of the namespace, for [`run_in`] / `setns`.
    pub ns: OwnedFd,
    /// An unbound NETLINK_ROUTE socket that lives in the new namespace.
    pub route_socket: OwnedFd,
    /// What `setup` returned.
    pub value: T,
}

/// Creates the named namespaces like `ip netns add NAME` each, spread over
/// `threads` worker threads, and runs `setup(name)` inside each new
/// namespace (on a thread that sits in it, so sysctls and `/dev/net/tun`
/// resolve there).
///
/// The outer error is for failures that affect every name (preparing
/// `/run/netns`); the inner results are per name, in the order of `names`.
/// A name that fails leaves nothing behind. The fds in [`Created`] keep the
/// namespace alive even after [`delete`]: drop them before waiting with [`watch_cleanup`].
///
/// One extra thread creates the `/run/netns/NAME` files ahead of the
/// workers: on a disk-backed `/run` that file creation costs as much as
/// the namespace itself, and it needs no namespace, so it overlaps.
pub fn create_many<T, E, F>(
    names: &[String],
    threads: usize,
    setup: F,
) -> Result<Vec<Result<Created<T>>>>
where
    T: Send,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    F: Fn(&str) -> std::result::Result<T, E> + Sync,
{
    if names.is_empty() {
        return Ok(Vec::new());
    }
    ensure_run_dir()?;
    let threads = threads.clamp(1, names.len());
    let chunk = names.len().div_ceil(threads);
    let parts: Vec<&[String]> = names.chunks(chunk).collect();
    let setup = &setup;
    let results = std::thread::scope(|s| {
        let (txs, rxs): (Vec<_>, Vec<_>) = parts.iter().map(|_| mpsc::channel()).unzip();
        let creator = {
            let parts = parts.clone();
            std::thread::Builder::new()
                .name("weft-netns-files".into())
                .spawn_scoped(s, move || create_files(&parts, chunk, txs))
        };
        if let Err(e) = creator {
            return names
                .iter()
                .map(|n| {
                    Err(Error::os(
                        format!("creating network namespace {n}: spawning a thread"),
                        std::io::Error::new(e.kind(), e.to_string()),
                    ))
                })
                .collect();
        }
        let workers: Vec<_> = parts
            .iter()
            .zip(rxs)
            .map(|(part, rx)| {
                let part: &[String] = part;
                std::thread::Builder::new()
                    .name("weft-netns".into())
                    .spawn_scoped(s, move || create_on_worker(part, rx, setup))
            })
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for (w, part) in workers.into_iter().zip(&parts) {
            match w {
                Ok(handle) => match handle.join() {
                    Ok(rs) => out.extend(rs),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                // The receiver died with the failed spawn, so the creator
                // removes this part's files itself.
                Err(e) => out.extend(part.iter().map(|n| {
                    Err(Error::os(
                        format!("creating network namespace {n}: spawning a worker thread"),
                        std::io::Error::new(e.kind(), e.to_string()),
                    ))
                })),
            }
        }
        out
    });
    Ok(results)
}

/// Creates one namespace; see [`create_many`].
pub fn create<T, E, F>(name: &str, setup: F) -> Result<Created<T>>
where
    T: Send,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    F: Fn(&str) -> std::result::Result<T, E> + Sync,
{
    create_many(&[name.to_string()], 1, setup)?
        .pop()
        .expect("one result per name")
}

/// Creates the `/run/netns` files, interleaving the parts so that every
/// worker gets its first file early, and hands each result to the part's
/// worker in order. A file whose worker is gone is removed again.
fn create_files(parts: &[&[String]], chunk: usize, txs: Vec<mpsc::Sender<Result<()>>>) {
    let mut txs: Vec<Option<mpsc::Sender<Result<()>>>> = txs.into_iter().map(Some).collect();
    for i in 0..chunk {
        for (part, tx_slot) in parts.iter().zip(txs.iter_mut()) {
            let (Some(name), Some(tx)) = (part.get(i), tx_slot.as_ref()) else {
                continue;
            };
            let res = create_file(name);
            let made = res.is_ok();
            if tx.send(res).is_err() {
                if made {
                    let _ = fs::remove_file(path(name));
                }
                *tx_slot = None;
            }
        }
    }
}

/// `/run/netns/NAME`, created exclusively: a file that is already there
/// belongs to someone else (another lab, `ip netns add`), never to us.
fn create_file(name: &str) -> Result<()> {
    validate_name(name)?;
    let path = path(name);
    match nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(_fd) => Ok(()),
        Err(Errno::EEXIST) => Err(Error::NetnsExists {
            name: name.to_string(),
        }),
        Err(e) => Err(Error::os(
            format!(
                "creating network namespace {name}: creating {}",
                path.display()
            ),
            e,
        )),
    }
}

fn create_on_worker<T, E, F>(
    names: &[String],
    files: mpsc::Receiver<Result<()>>,
    setup: &F,
) -> Vec<Result<Created<T>>>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    F: Fn(&str) -> std::result::Result<T, E>,
{
    let home = home_netns();
    let mut out = Vec::with_capacity(names.len());
    let mut stranded: Option<String> = home.as_ref().err().map(|e| e.to_string());
    for name in names {
        let file = files.recv().unwrap_or_else(|_| {
            Err(Error::Invalid(format!(
                "creating network namespace {name}: the file-creating thread is gone"
            )))
        });
        if let Err(e) = file {
            out.push(Err(e));
            continue;
        }
        let home = match (&home, &stranded) {
            (Ok(home), None) => home,
            (_, why) => {
                let why = why.clone().unwrap_or_default();
                drop(Partial {
                    path: &path(name),
                    mounted: false,
                    armed: true,
                });
                out.push(Err(Error::Invalid(format!(
                    "creating network namespace {name}: skipped, {why}"
                ))));
                continue;
            }
        };
        let (res, returned) = create_one(name, home.as_fd(), setup);
        if let Err(e) = returned {
            // This thread is stuck in a namespace that is not its own;
            // creating more from here would nest them wrongly.
            stranded = Some(format!(
                "the worker thread could not return to its namespace: {e}"
            ));
        }
        out.push(res);
    }
    out
}

/// Undoes a half-made namespace unless disarmed.
struct Partial<'a> {
    path: &'a std::path::Path,
    mounted: bool,
    armed: bool,
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.mounted {
            let _ = umount2(self.path, MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_file(self.path);
    }
}

/// Turns the freshly created (empty) file `/run/netns/NAME` into a
/// namespace. Returns the result for `name` and whether the thread made it
/// back home.
fn create_one<T, E, F>(
    name: &str,
    home: BorrowedFd<'_>,
    setup: &F,
) -> (Result<Created<T>>, std::result::Result<(), Errno>)
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    F: Fn(&str) -> std::result::Result<T, E>,
{
    let path = path(name);
    let action = || format!("creating network namespace {name}");
    let mut partial = Partial {
        path: &path,
        mounted: false,
        armed: true,
    };
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        let err = match e {
            Errno::ENOSPC => Error::os_hint(
                format!("{}: unshare(CLONE_NEWNET)", action()),
                e,
                "the namespace limit is reached (see /proc/sys/user/max_net_namespaces)",
            ),
            Errno::EPERM => Error::os_hint(
                format!("{}: unshare(CLONE_NEWNET)", action()),
                e,
                "creating network namespaces needs CAP_SYS_ADMIN (run as root)",
            ),
            e => Error::os(format!("{}: unshare(CLONE_NEWNET)", action()), e),
        };
        return (Err(err), Ok(()));
    }
    // From here on the thread lives in the new namespace; it must go home
    // whatever happens below.
    let inside = (|| -> Result<Created<T>> {
        let ns = open_thread_netns().map_err(|e| Error::Invalid(format!("{}: {e}", action())))?;
        mount(
            Some(THREAD_NETNS),
            &path,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            Error::os(
                format!(
                    "{}: bind-mounting {THREAD_NETNS} on {}",
                    action(),
                    path.display()
                ),
                e,
            )
        })?;
        partial.mounted = true;
        let route_socket =
            route_socket().map_err(|e| Error::Invalid(format!("{}: {e}", action())))?;
        let value = setup(name).map_err(|e| Error::Setup {
            name: name.to_string(),
            source: e.into(),
        })?;
        Ok(Created {
            name: name.to_string(),
            ns,
            route_socket,
            value,
        })
    })();
    let back = setns(home, CloneFlags::CLONE_NEWNET);
    if inside.is_ok() {
        partial.armed = false;
    }
    drop(partial);
    (inside, back)
}

/// Where a worker thread returns after working in a new namespace: the
/// one it is in, or without root the keeper's (the machine's namespace
/// is one a user may leave but not enter again; docs/architecture.md).
fn home_netns() -> Result<OwnedFd> {
    match crate::userns::home_netns() {
        Some(r) => r,
        None => open_thread_netns(),
    }
}

fn open_thread_netns() -> Result<OwnedFd> {
    nix::fcntl::open(
        THREAD_NETNS,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::os(format!("opening {THREAD_NETNS}"), e))
}

/// Opens the named namespace (`O_RDONLY`), for `setns` or [`run_in`].
pub fn open(name: &str) -> Result<OwnedFd> {
    validate_name(name)?;
    let path = path(name);
    let fd = match nix::fcntl::open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            return Err(Error::NetnsMissing {
                name: name.to_string(),
            })
        }
        Err(e) => {
            return Err(Error::os(
                format!("opening network namespace {name} ({})", path.display()),
                e,
            ))
        }
    };
    // A plain file here is the leftover of an interrupted `ip netns add` or
    // weft run; setns() on it would fail with a confusing EINVAL.
    let is_ns = fstatfs(&fd)
        .map(|st| st.filesystem_type() == NSFS_MAGIC)
        .unwrap_or(false);
    if !is_ns {
        return Err(Error::Invalid(format!(
            "opening network namespace {name}: {} is not a mounted namespace (left over from an \
             interrupted creation?); remove it with `ip netns del {name}`",
            path.display()
        )));
    }
    Ok(fd)
}

/// Whether `/run/netns/NAME` exists (`ip netns list | grep NAME`).
pub fn exists(name: &str) -> bool {
    validate_name(name).is_ok() && path(name).exists()
}

/// The names in `/run/netns`, sorted (`ip netns list`). A missing directory
/// means no namespaces.
pub fn list() -> Result<Vec<String>> {
    let dir = match fs::read_dir(RUN_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::os(format!("listing {RUN_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| Error::os(format!("listing {RUN_DIR}"), e))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Removes the name, like `ip netns del NAME`: lazily unmount and unlink
/// `/run/netns/NAME`. The kernel destroys the namespace once nothing else
/// holds it (processes, open fds, sockets); see [`holders`] and
/// [`watch_cleanup`]. A missing namespace is not an error.
pub fn delete(name: &str) -> Result<()> {
    validate_name(name)?;
    let path = path(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point, i.e. a leftover plain file.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(Error::os(
                format!(
                    "deleting network namespace {name}: unmounting {}",
                    path.display()
                ),
                e,
            ))
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::os(
            format!(
                "deleting network namespace {name}: removing {}",
                path.display()
            ),
            e,
        )),
    }
}

/// Runs `f` on a fresh thread that has joined the namespace `ns` (the
/// in-process `ip netns exec`). `setns` affects only the calling thread, so
/// this never moves the caller (or an async runtime's worker) anywhere.
/// A panic in `f` is propagated.
pub fn run_in<R, F>(ns: BorrowedFd<'_>, f: F) -> Result<R>
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("weft-netns-run".into())
            .spawn_scoped(s, move || -> Result<R> {
                setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::os(
                        format!("entering network namespace fd {}", ns.as_raw_fd()),
                        e,
                    )
                })?;
                Ok(f())
            })
            .map_err(|e| Error::os("spawning a thread to enter a network namespace", e))?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// [`run_in`] for a namespace given by name.
pub fn run_in_named<R, F>(name: &str, f: F) -> Result<R>
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    let fd = open(name)?;
    run_in(fd.as_fd(), f)
}

/// An unbound NETLINK_ROUTE socket that lives in `ns`.
pub fn route_socket_in(ns: BorrowedFd<'_>) -> Result<OwnedFd> {
    run_in(ns, route_socket)?
}

/// A NETLINK_ROUTE socket in each of `namespaces`, made by one thread that
/// enters them in turn: reading many namespaces (`weft status` of a
/// 500-host lab, polled every second by `weft serve`) then costs one
/// thread, not one per namespace.
pub fn route_sockets_in(namespaces: &[BorrowedFd<'_>]) -> Result<Vec<Result<OwnedFd>>> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("weft-netns-sockets".into())
            .spawn_scoped(s, move || {
                namespaces
                    .iter()
                    .map(|ns| {
                        setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                            Error::os(
                                format!("entering network namespace fd {}", ns.as_raw_fd()),
                                e,
                            )
                        })?;
                        route_socket()
                    })
                    .collect()
            })
            .map_err(|e| Error::os("spawning a thread to enter network namespaces", e))?;
        match handle.join() {
            Ok(r) => Ok(r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The identity (nsfs device and inode) of a network namespace; two handles
/// name the same namespace exactly when their identities are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NsIdentity {
    pub dev: u64,
    pub ino: u64,
}

/// The identity of the named namespace.
pub fn identity(name: &str) -> Result<NsIdentity> {
    validate_name(name)?;
    match fs::metadata(path(name)) {
        Ok(m) => Ok(NsIdentity {
            dev: m.dev(),
            ino: m.ino(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NetnsMissing {
            name: name.to_string(),
        }),
        Err(e) => Err(Error::os(format!("inspecting network namespace {name}"), e)),
    }
}

/// The identity of the namespace behind an fd.
pub fn identity_of(ns: BorrowedFd<'_>) -> Result<NsIdentity> {
    let st = nix::sys::stat::fstat(ns).map_err(|e| Error::os("inspecting a namespace fd", e))?;
    Ok(NsIdentity {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
    })
}

/// PIDs of processes that are in the named namespace (any of their
/// threads) or hold an open fd of it. Empty if the name does not exist;
/// call it before [`delete`] or use [`holders_of`] with a saved identity.
///
/// Sockets created in the namespace also keep it alive but cannot be traced
/// back from outside; they are not reported.
pub fn holders(name: &str) -> Vec<u32> {
    identity(name).map(holders_of).unwrap_or_default()
}

/// [`holders`] for a namespace identity.
pub fn holders_of(id: NsIdentity) -> Vec<u32> {
    holders_of_many(&[id]).remove(&id).unwrap_or_default()
}

/// [`holders_of`] for many namespaces in one pass over `/proc`: a lab of a
/// thousand namespaces must not walk every process's fds a thousand times.
pub fn holders_of_many(ids: &[NsIdentity]) -> std::collections::HashMap<NsIdentity, Vec<u32>> {
    let wanted: std::collections::HashSet<NsIdentity> = ids.iter().copied().collect();
    let mut out: std::collections::HashMap<NsIdentity, Vec<u32>> = std::collections::HashMap::new();
    let identity = |p: &std::path::Path| {
        fs::metadata(p)
            .ok()
            .map(|m| NsIdentity {
                dev: m.dev(),
                ino: m.ino(),
            })
            .filter(|i| wanted.contains(i))
    };
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let base = entry.path();
        let mut found: Vec<NsIdentity> = Vec::new();
        if let Ok(tasks) = fs::read_dir(base.join("task")) {
            found.extend(
                tasks
                    .flatten()
                    .filter_map(|t| identity(&t.path().join("ns/net"))),
            );
        }
        if let Ok(fds) = fs::read_dir(base.join("fd")) {
            found.extend(fds.flatten().filter_map(|f| identity(&f.path())));
        }
        found.sort_by_key(|i| (i.dev, i.ino));
        found.dedup();
        for id in found {
            out.entry(id).or_default().push(pid);
        }
    }
    out
}

/// PIDs of processes with a thread inside one of the given namespaces
/// (network or mount: `/proc/PID/task/*/ns/{net,mnt}`), by namespace. Unlike
/// [`holders_of_many`], a process that only holds an fd of one is not a
/// member. The calling process is never listed.
pub fn members_of_many(ids: &[NsIdentity]) -> std::collections::HashMap<NsIdentity, Vec<u32>> {
    let wanted: std::collections::HashSet<NsIdentity> = ids.iter().copied().collect();
    let mut out: std::collections::HashMap<NsIdentity, Vec<u32>> = std::collections::HashMap::new();
    let me = std::process::id();
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(tasks) = fs::read_dir(entry.path().join("task")) else {
            continue;
        };
        let mut found: Vec<NsIdentity> = Vec::new();
        for t in tasks.flatten() {
            for kind in ["ns/net", "ns/mnt"] {
                if let Ok(m) = fs::metadata(t.path().join(kind)) {
                    let id = NsIdentity {
                        dev: m.dev(),
                        ino: m.ino(),
                    };
                    if wanted.contains(&id) {
                        found.push(id);
                    }
                }
            }
        }
        found.sort_by_key(|i| (i.dev, i.ino));
        found.dedup();
        for id in found {
            out.entry(id).or_default().push(pid);
        }
    }
    out
}

/// Waits until the kernel has finished destroying every network namespace
/// whose last reference was dropped before this call (deleted names whose
/// fds, sockets and processes are all gone), so their devices (e.g. veth
/// peers left in surviving namespaces) have disappeared too.
///
/// A new, unnamed network namespace, alive as long as the fd.
fn anonymous_netns() -> Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<OwnedFd> {
            let home = home_netns()?;
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::os("creating a canary network namespace", e))?;
            let fd = open_thread_netns();
            // Return so that, once the fd is dropped, nothing else holds it.
            setns(home, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::os("leaving the canary network namespace", e))?;
            fd
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A watch armed *before* namespaces are deleted: [`CleanupWatch::wait`]
/// returns once the kernel has finished destroying every namespace deleted
/// before it.
///
/// It owns three anonymous namespaces (nothing of the host's is touched): an
/// observer and two sentinels, each sentinel joined to the observer by a
/// veth. The kernel destroys deleted namespaces on one ordered work queue,
/// in batches: each batch takes everything pending, unregisters the devices
/// of all its namespaces, then runs the rest of their teardown. So:
/// - sentinel 1, dropped after the deletions, is in the last batch that
///   holds any of them (or a later one); its veth vanishing (the observer
///   hears RTM_DELLINK) says that batch is tearing down devices;
/// - sentinel 2, dropped only then, cannot join that batch: its veth
///   vanishes after that batch has finished completely.
///
/// The cost over the kernel's own work is one tiny extra batch.
pub struct CleanupWatch {
    listener: crate::netlink::Netlink,
    sentinels: Vec<(OwnedFd, u32)>,
    _observer: OwnedFd,
}

const RTNLGRP_LINK: u32 = 1;

/// Arm a [`CleanupWatch`]; call before deleting.
pub fn watch_cleanup() -> Result<CleanupWatch> {
    let action = "preparing to wait for namespace teardown";
    let observer = anonymous_netns()?;
    let mut listener = crate::netlink::Netlink::from_fd(route_socket_in(observer.as_fd())?)
        .map_err(|e| Error::os(action.to_string(), e))?;
    listener
        .subscribe(RTNLGRP_LINK)
        .map_err(|e| Error::os(action.to_string(), e))?;
    let mut nl = crate::netlink::Netlink::from_fd(route_socket_in(observer.as_fd())?)
        .map_err(|e| Error::os(action.to_string(), e))?;
    let mut sentinels = Vec::new();
    for name in ["sentinel1", "sentinel2"] {
        let ns = anonymous_netns()?;
        nl.push(
            crate::netlink::new_veth(
                &crate::netlink::NewLink {
                    name,
                    ..Default::default()
                },
                None,
                &crate::netlink::NewLink {
                    name: "peer",
                    ..Default::default()
                },
                Some(ns.as_raw_fd()),
            ),
            format!("ip link add {name} type veth peer name peer netns SENTINEL"),
        );
        sentinels.push((ns, name));
    }
    nl.flush()
        .map_err(|e| Error::Invalid(format!("{action}: {}", e[0])))?;
    let links = nl.links().map_err(|e| Error::os(action.to_string(), e))?;
    let sentinels = sentinels
        .into_iter()
        .map(|(ns, name)| {
            let idx = links.iter().find(|l| l.name == name).map(|l| l.index);
            idx.map(|i| (ns, i))
                .ok_or_else(|| Error::Invalid(format!("{action}: the veth {name} vanished")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CleanupWatch {
        listener,
        sentinels,
        _observer: observer,
    })
}

impl CleanupWatch {
    pub fn wait(mut self, timeout: Duration) -> Result<()> {
        let action = "waiting for the kernel to destroy deleted network namespaces";
        let deadline = Instant::now() + timeout;
        for (ns, index) in std::mem::take(&mut self.sentinels) {
            drop(ns);
            self.wait_dellink(index, deadline, timeout, action)?;
        }
        Ok(())
    }

    fn wait_dellink(
        &self,
        index: u32,
        deadline: Instant,
        timeout: Duration,
        action: &str,
    ) -> Result<()> {
        loop {
            let Some(msgs) = self
                .listener
                .recv_until(deadline)
                .map_err(|e| Error::os(action.to_string(), e))?
            else {
                return Err(Error::Timeout {
                    what: action.into(),
                    timeout,
                    hint: Some("namespace teardown is slow (many devices?); `ip netns list` shows what is left".into()),
                });
            };
            for m in msgs {
                if let RouteNetlinkMessage::DelLink(l) = m {
                    if l.header.index == index {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
