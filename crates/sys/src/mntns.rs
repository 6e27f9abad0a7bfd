//! A node's private files: a mount namespace kept alive by a bind mount of
//! its `/proc/PID/ns/mnt` onto a file (as `ip netns` keeps network
//! namespaces, and `unshare --mount=FILE` keeps mount namespaces), with
//! the node's binds and tmpfs mounts applied inside. Processes enter it
//! with `setns` (`nsenter --mount=FILE`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::exec::ETC_NETNS_DIR;
use crate::netns;

/// One mount in the node: a host path bound, or a fresh tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: Option<PathBuf>,
    pub target: PathBuf,
}

/// Makes `dir` a mount point with private propagation: a mount namespace
/// file may only be bound onto a mount that is not shared, or the kernel
/// refuses (EINVAL), since the namespace could then contain itself.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::os(format!("creating {}", dir.display()), e))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy();
    let mounted = mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(d.as_ref()));
    if !mounted {
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::os(format!("mount --bind {d} {d}"), e))?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::os(format!("mount --make-private {d}"), e))
}

/// Steps of the child, for the error message.
const STEPS: [&str; 7] = [
    "entering the network namespace",
    "unshare(CLONE_NEWNS)",
    "mount --make-rslave /",
    "mounting the node's sysfs on /sys",
    "mounting",
    "binding the name file",
    "waiting for the parent",
];

/// Creates the mount namespace `holder` (a file path in a directory made
/// with [`prepare_dir`]) for the node in network namespace `ns_name`: the
/// machine's mounts (slave: later host mounts still appear), the node's
/// own `/sys`, `mounts` in order, then `/etc/netns/NS/*` over `/etc/*`
/// (weft's hosts and resolv.conf win over a bind of `/etc`).
pub fn create(holder: &Path, ns_name: &str, mounts: &[Mount]) -> Result<()> {
    let what = |s: &str| format!("node mount namespace {}: {s}", holder.display());
    let netfd: OwnedFd = netns::open(ns_name)?;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::Invalid(what(&format!("{} contains a NUL byte", p.display()))))
    };
    // (source or NULL for tmpfs, target)
    let mut plan: Vec<(Option<CString>, CString, String)> = Vec::new();
    for m in mounts {
        plan.push((
            m.source.as_deref().map(c).transpose()?,
            c(&m.target)?,
            match &m.source {
                Some(s) => format!("{}:{}", s.display(), m.target.display()),
                None => format!("tmpfs:{}", m.target.display()),
            },
        ));
    }
    let mut etc: Vec<(CString, CString)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(Path::new(ETC_NETNS_DIR).join(ns_name)) {
        for e in entries.flatten() {
            etc.push((c(&e.path())?, c(&Path::new("/etc").join(e.file_name()))?));
        }
    }
    let name = CString::new(ns_name).map_err(|_| Error::Invalid(what("NUL in name")))?;
    // The kernel lets a process bind a mount namespace only if it is
    // newer than the process's own (`mnt_ns_loop`), by id; ids come from
    // per-CPU batches, so one made later on another CPU can be older. The
    // machine's first namespace is older than all, but weft's user
    // namespace's (without root) or a container's is not: on that refusal
    // the namespace is made again on each CPU in turn; on the CPU that
    // made the caller's, any later one is newer.
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut r = attempt(holder, &netfd, &name, &plan, &etc, None, &what);
    for &cpu in &cpus {
        match &r {
            Err(Refused::Bind(nix::errno::Errno::EINVAL)) => {}
            _ => break,
        }
        r = attempt(holder, &netfd, &name, &plan, &etc, Some(cpu), &what);
    }
    r.map_err(|e| match e {
        Refused::Bind(errno) => Error::os(what("binding it to its file"), errno),
        Refused::Other(e) => e,
    })
}

/// Why an attempt failed: the bind of the namespace to its file (which
/// another CPU may fix), or anything else.
enum Refused {
    Bind(nix::errno::Errno),
    Other(Error),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Other(e)
    }
}

/// The mounts of `plan` and `etc`.
type Plan = [(Option<CString>, CString, String)];

/// One try at [`create`]: a child (on `cpu`, if given) makes the namespace
/// and its mounts, and this process binds it to `holder`.
fn attempt(
    holder: &Path,
    netfd: &OwnedFd,
    name: &CString,
    plan: &Plan,
    etc: &[(CString, CString)],
    cpu: Option<usize>,
    what: &dyn Fn(&str) -> String,
) -> std::result::Result<(), Refused> {
    let cs = |s: &str| CString::new(s).expect("no NUL");
    let (root, sys, sysfs, tmpfs, mode) = (
        cs("/"),
        cs("/sys"),
        cs("sysfs"),
        cs("tmpfs"),
        cs("mode=0755"),
    );
    let mut set = nix::sched::CpuSet::new();
    if let Some(c) = cpu {
        set.set(c)
            .map_err(|e| Refused::Other(Error::os(what("CPU set"), e)))?;
    }
    let (to_parent_r, to_parent_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::os(what("pipe"), e))?;
    let (to_child_r, to_child_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::os(what("pipe"), e))?;
    // SAFETY: the child calls only async-signal-safe system calls on memory
    // prepared above, then _exit; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::os(what("fork"), std::io::Error::last_os_error()).into());
    }
    if pid == 0 {
        // SAFETY: see the fork above; raw system calls only.
        unsafe {
            let fail = |step: u8, idx: u8| -> ! {
                let errno = *libc::__errno_location();
                let mut msg = [step, idx, 0, 0, 0, 0];
                msg[2..].copy_from_slice(&errno.to_le_bytes());
                libc::write(to_parent_w.as_raw_fd(), msg.as_ptr().cast(), msg.len());
                libc::_exit(1)
            };
            // A CPU the caller may not use leaves the child where it is.
            if cpu.is_some() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
            if libc::setns(netfd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                fail(0, 0);
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                fail(1, 0);
            }
            let null = std::ptr::null();
            if libc::mount(
                null,
                root.as_ptr(),
                null,
                libc::MS_SLAVE | libc::MS_REC,
                null.cast(),
            ) != 0
            {
                fail(2, 0);
            }
            libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
            if libc::mount(name.as_ptr(), sys.as_ptr(), sysfs.as_ptr(), 0, null.cast()) != 0 {
                fail(3, 0);
            }
            for (i, (src, dst, _)) in plan.iter().enumerate() {
                let r = match src {
                    None => libc::mount(
                        tmpfs.as_ptr(),
                        dst.as_ptr(),
                        tmpfs.as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        mode.as_ptr().cast(),
                    ),
                    Some(s) => libc::mount(
                        s.as_ptr(),
                        dst.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        null.cast(),
                    ),
                };
                if r != 0 {
                    fail(4, i as u8);
                }
            }
            for (i, (s, d)) in etc.iter().enumerate() {
                if libc::mount(s.as_ptr(), d.as_ptr(), null, libc::MS_BIND, null.cast()) != 0 {
                    fail(5, i as u8);
                }
            }
            let ok = [255u8; 6];
            libc::write(to_parent_w.as_raw_fd(), ok.as_ptr().cast(), ok.len());
            let mut b = [0u8; 1];
            libc::read(to_child_r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(to_parent_w);
    drop(to_child_r);
    let mut msg = [0u8; 6];
    let n = nix::unistd::read(&to_parent_r, &mut msg).unwrap_or(0);
    let result = if n == 6 && msg[0] == 255 {
        bind_holder(pid, holder).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => Refused::Bind(nix::errno::Errno::EINVAL),
            _ => Refused::Other(Error::os(what("binding it to its file"), e)),
        })
    } else if n == 6 {
        let errno =
            nix::errno::Errno::from_raw(i32::from_le_bytes([msg[2], msg[3], msg[4], msg[5]]));
        let step = STEPS[usize::from(msg[0]).min(STEPS.len() - 1)];
        let detail = match msg[0] {
            4 => {
                let m = &plan[usize::from(msg[1])].2;
                let hint = if errno == nix::errno::Errno::ENOENT {
                    " (the path in the node must exist on this machine: create it, e.g. mkdir -p)"
                } else {
                    ""
                };
                format!("{step} {m}{hint}")
            }
            _ => step.to_string(),
        };
        Err(Error::os(what(&detail), errno).into())
    } else {
        Err(Error::Invalid(what("the helper process died")).into())
    };
    let _ = nix::unistd::write(&to_child_w, &[1]);
    drop(to_child_w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    result
}

fn bind_holder(pid: libc::pid_t, holder: &Path) -> std::io::Result<()> {
    std::fs::File::create(holder)?;
    let src = format!("/proc/{pid}/ns/mnt");
    mount(
        Some(src.as_str()),
        holder,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(std::io::Error::from)
}

/// Binds `src` over `dst` again inside the mount namespace `holder` (the
/// previous mount there is detached first): a name file replaced by a
/// rename is a new inode, which a bind made earlier does not show.
pub fn rebind(holder: &Path, src: &Path, dst: &Path) -> Result<()> {
    let what = format!(
        "binding {} over {} in {}",
        src.display(),
        dst.display(),
        holder.display()
    );
    let fd = open(holder)?;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::Invalid(format!("{what}: a path contains a NUL byte")))
    };
    let (s, d) = (c(src)?, c(dst)?);
    // SAFETY: the child calls only system calls on memory prepared above,
    // then _exit; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::os(what, std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see the fork above.
        unsafe {
            let null = std::ptr::null();
            if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                libc::_exit(*libc::__errno_location() & 0x7f);
            }
            libc::umount2(d.as_ptr(), libc::MNT_DETACH);
            if libc::mount(s.as_ptr(), d.as_ptr(), null, libc::MS_BIND, null.cast()) != 0 {
                libc::_exit(*libc::__errno_location() & 0x7f);
            }
            libc::_exit(0);
        }
    }
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => {
            Err(Error::os(what, nix::errno::Errno::from_raw(code)))
        }
        Ok(other) => Err(Error::Invalid(format!(
            "{what}: the helper ended with {other:?}"
        ))),
        Err(e) => Err(Error::os(what, e)),
    }
}

/// Unmounts and removes a mount namespace file (the namespace goes when
/// no process is left in it). Missing is fine.
pub fn remove(holder: &Path) -> Result<()> {
    match umount2(holder, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::os(format!("umount {}", holder.display()), e)),
    }
    match std::fs::remove_file(holder) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::os(format!("removing {}", holder.display()), e)),
    }
}

/// Opens a mount namespace file for [`crate::spawn`] or `setns`.
pub fn open(holder: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(holder, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::os(format!("opening mount namespace {}", holder.display()), e))
}

/// True if `holder` is a mount namespace file (a bound `ns/mnt`).
pub fn exists(holder: &Path) -> bool {
    let d = holder.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(d.as_ref()))
}

/// The identity of a mount namespace file, to find processes in it.
pub fn identity(holder: &Path) -> Option<netns::NsIdentity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(holder).ok()?;
    Some(netns::NsIdentity {
        dev: m.dev(),
        ino: m.ino(),
    })
}
