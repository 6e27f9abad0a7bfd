//! `ip netns exec NAME CMD...`, done by weft itself: the process joins the
//! namespace, gets a private view of `/sys` and `/etc/netns/NAME` files, and
//! then becomes CMD, so stdin, stdout and the exit status pass straight
//! through.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};
use crate::netns;

/// Where iproute2 keeps per-namespace overrides of files in `/etc`.
pub const ETC_NETNS_DIR: &str = "/etc/netns";

/// Runs `argv` inside the named namespace, replacing this process (the
/// equivalent of `ip netns exec NAME ARGV...`). Returns only on failure.
///
/// Must be called while the process is single-threaded (before any thread
/// or async runtime starts): a private mount namespace cannot be made in a
/// multi-threaded process.
pub fn exec_in(ns_name: &str, argv: &[OsString]) -> Result<Infallible> {
    let cargv = to_cstrings(argv)?;
    for warning in enter_for_exec(ns_name)? {
        // The process is about to become another program; stderr is the
        // only place left to say this (`ip netns exec` does the same).
        eprintln!("weft: warning: {warning}");
    }
    let err = match nix::unistd::execvp(&cargv[0], &cargv) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let cmd = argv[0].to_string_lossy();
    Err(match err {
        Errno::ENOENT => Error::os_hint(
            format!("running {cmd} in network namespace {ns_name}"),
            err,
            "command not found (is it in PATH?)",
        ),
        Errno::EACCES => Error::os_hint(
            format!("running {cmd} in network namespace {ns_name}"),
            err,
            "the file is not executable",
        ),
        _ => Error::os(format!("running {cmd} in network namespace {ns_name}"), err),
    })
}

/// Runs `argv` in a node that has its own mount namespace file `mntns`
/// (see [`crate::mntns`]): joins the network namespace and that mount
/// namespace (`nsenter --net=... --mount=...`), replacing this process.
/// Single-threaded callers only, as [`exec_in`].
pub fn exec_in_node(
    ns_name: &str,
    mntns: &std::path::Path,
    argv: &[OsString],
) -> Result<Infallible> {
    let cargv = to_cstrings(argv)?;
    let threads = thread_count();
    if threads > 1 {
        return Err(multithreaded(ns_name, Some(threads)));
    }
    let net = netns::open(ns_name)?;
    let mnt = crate::mntns::open(mntns)?;
    setns(&net, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::os(format!("entering network namespace {ns_name}"), e))?;
    setns(&mnt, CloneFlags::CLONE_NEWNS).map_err(|e| {
        Error::os(
            format!("entering the mount namespace {}", mntns.display()),
            e,
        )
    })?;
    nix::unistd::chdir("/").map_err(|e| Error::os("chdir /", e))?;
    let err = match nix::unistd::execvp(&cargv[0], &cargv) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(Error::os(
        format!(
            "running {} in node namespace {ns_name}",
            argv[0].to_string_lossy()
        ),
        err,
    ))
}

/// Converts a command line for execvp, rejecting what it cannot carry.
pub fn to_cstrings(argv: &[OsString]) -> Result<Vec<CString>> {
    if argv.is_empty() {
        return Err(Error::Invalid(
            "running a command in a namespace: no command given".into(),
        ));
    }
    argv.iter()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| {
                Error::Invalid(format!(
                    "running a command in a namespace: argument {:?} contains a NUL byte",
                    a
                ))
            })
        })
        .collect()
}

/// Everything `ip netns exec` does before exec: join the namespace, make
/// mounts private to this process, mount a sysfs that shows the
/// namespace's devices on `/sys`, and bind `/etc/netns/NAME/*` over
/// `/etc/*`. Returns warnings for binds that failed (not fatal, as in
/// iproute2). Public so that a forked child can use it.
pub fn enter_for_exec(ns_name: &str) -> Result<Vec<String>> {
    let threads = thread_count();
    if threads > 1 {
        return Err(multithreaded(ns_name, Some(threads)));
    }
    let fd = netns::open(ns_name)?;
    setns(&fd, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::os(format!("entering network namespace {ns_name}"), e))?;
    drop(fd);
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| match e {
        Errno::EINVAL => multithreaded(ns_name, None),
        e => Error::os(
            format!("entering network namespace {ns_name}: making a private mount namespace"),
            e,
        ),
    })?;
    // Slave, not private: mounts made on the host later (new namespaces in
    // /run/netns) still appear here, but nothing done here leaks back.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        Error::os(
            format!("entering network namespace {ns_name}: mount --make-rslave /"),
            e,
        )
    })?;
    remount_sys(ns_name)?;
    Ok(bind_etc(ns_name))
}

fn multithreaded(ns_name: &str, threads: Option<usize>) -> Error {
    let n = threads
        .map(|n| format!(" ({n} threads)"))
        .unwrap_or_default();
    Error::Invalid(format!(
        "entering network namespace {ns_name} to run a command: the process is multi-threaded{n}, \
         and a private mount namespace (unshare(CLONE_NEWNS)) needs a single-threaded one; \
         call exec_in before starting threads or an async runtime"
    ))
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// A sysfs mounted in this network namespace lists its devices under
/// /sys/class/net; the inherited one lists the host's.
fn remount_sys(ns_name: &str) -> Result<()> {
    let mut flags = MsFlags::empty();
    if umount2("/sys", MntFlags::MNT_DETACH).is_err() {
        // Could not unmount (or nothing mounted): we overlay instead, and a
        // read-only sysfs cannot be shadowed by a read-write one.
        if let Ok(st) = nix::sys::statvfs::statvfs("/sys") {
            if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
                flags |= MsFlags::MS_RDONLY;
            }
        }
    }
    mount(Some(ns_name), "/sys", Some("sysfs"), flags, None::<&str>).map_err(|e| {
        Error::os(
            format!("entering network namespace {ns_name}: mounting sysfs on /sys"),
            e,
        )
    })
}

fn bind_etc(ns_name: &str) -> Vec<String> {
    let dir = std::path::Path::new(ETC_NETNS_DIR).join(ns_name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for entry in entries.flatten() {
        let src = entry.path();
        let dst = std::path::Path::new("/etc").join(entry.file_name());
        if let Err(e) = mount(
            Some(&src),
            &dst,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            warnings.push(format!(
                "binding {} over {} failed: {e}",
                src.display(),
                dst.display()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ip, NsGuard};
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};

    #[test]
    fn argv_checks() {
        assert!(to_cstrings(&[])
            .unwrap_err()
            .to_string()
            .contains("no command"));
        let bad = [OsString::from("echo"), OsString::from("a\0b")];
        assert!(to_cstrings(&bad).unwrap_err().to_string().contains("NUL"));
        let ok = to_cstrings(&[OsString::from("ip"), OsString::from("link")]).unwrap();
        assert_eq!(ok[1].as_bytes(), b"link");
    }

    #[test]
    fn refuses_in_multithreaded_process_without_side_effects() {
        // The test harness runs tests on threads, so this process has many.
        let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let e = enter_for_exec("weft-t-whatever").unwrap_err().to_string();
        assert!(e.contains("multi-threaded"), "{e}");
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            before
        );
    }

    /// Forks (the child is single-threaded), runs a shell in the namespace
    /// and checks what it sees: the namespace's links via netlink and via
    /// /sys, and /etc/hosts replaced by /etc/netns/NAME/hosts.
    #[test]
    fn exec_in_forked_child() {
        let mut guard = NsGuard::default();
        let ns = guard.create("exec");
        ip(&[
            "-n", &ns, "link", "add", "wexa", "type", "veth", "peer", "name", "wexb",
        ]);
        let etc = std::path::Path::new(ETC_NETNS_DIR).join(&ns);
        // Removes what the test made: its directory, and /etc/netns only if
        // the test created it.
        struct RmDir(std::path::PathBuf, bool);
        impl Drop for RmDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
                if self.1 {
                    let _ = std::fs::remove_dir(ETC_NETNS_DIR);
                }
            }
        }
        let made_parent = !std::path::Path::new(ETC_NETNS_DIR).exists();
        std::fs::create_dir_all(&etc).unwrap();
        let _rm = RmDir(etc.clone(), made_parent);
        std::fs::write(etc.join("hosts"), "10.9.8.7 weft-test-host\n").unwrap();

        let (r, w) = nix::unistd::pipe().unwrap();
        let argv: Vec<OsString> = [
            "sh",
            "-c",
            "ip -o link | cut -d: -f2; echo SYS; ls /sys/class/net; echo ETC; cat /etc/hosts; exit 7",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        // SAFETY: the child only redirects stdout and execs (or reports and
        // _exits); it never returns into the test harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: fds 1 and `w` are open; dup2 is async-signal-safe.
                unsafe { libc::dup2(w.as_raw_fd(), 1) };
                let e = exec_in(&ns, &argv).unwrap_err();
                eprintln!("child: {e}");
                // SAFETY: leave without running the harness's destructors.
                unsafe { libc::_exit(101) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let mut out = String::new();
                // SAFETY: `r` is ours; the File takes it over.
                let mut f =
                    unsafe { std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(r)) };
                f.read_to_string(&mut out).unwrap();
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 7),
                    "{out}"
                );
                let (links, rest) = out.split_once("SYS").unwrap();
                let (sys, hosts) = rest.split_once("ETC").unwrap();
                for want in ["lo", "wexa@wexb", "wexb@wexa"] {
                    assert!(
                        links.lines().any(|l| l.trim() == want),
                        "{want} missing: {out}"
                    );
                }
                assert_eq!(links.trim().lines().count(), 3, "{out}");
                let sys: Vec<&str> = sys.split_whitespace().collect();
                assert_eq!(sys, ["lo", "wexa", "wexb"], "{out}");
                assert_eq!(hosts.trim(), "10.9.8.7 weft-test-host", "{out}");
            }
        }
        // The host's /etc/hosts is untouched.
        let host = std::fs::read_to_string("/etc/hosts").unwrap();
        assert!(!host.contains("weft-test-host"));
    }
}
