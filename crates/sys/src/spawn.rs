//! Start a program inside a named network namespace from a multi-threaded
//! process: the child joins the namespace between fork and exec, using only
//! system calls (no allocation), so it is safe whatever the parent's other
//! threads hold.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::error::{Error, Result};
use crate::exec::ETC_NETNS_DIR;
use crate::netns;

/// What the child sees besides the network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Only the network namespace (enough for `nft`, `ip`).
    NetOnly,
    /// As `ip netns exec` / `weft exec`: a private mount namespace with the
    /// namespace's own `/sys` and `/etc/netns/NAME/*` bound over `/etc/*`
    /// (so `/etc/netns/NAME/hosts` answers name lookups).
    Full,
}

/// A [`Command`] for `program args...` that runs in network namespace
/// `ns_name`. Spawn it like any other (stdio, wait, kill by its pid).
pub fn command_in(ns_name: &str, program: &str, args: &[String], view: View) -> Result<Command> {
    let fd: OwnedFd = netns::open(ns_name)?;
    let c = |s: &str| {
        CString::new(s).map_err(|_| {
            Error::Invalid(format!(
                "running {program} in {ns_name}: {s:?} contains a NUL byte"
            ))
        })
    };
    let name = c(ns_name)?;
    let (root, sys, sysfs, none) = (c("/")?, c("/sys")?, c("sysfs")?, c("none")?);
    let mut binds: Vec<(CString, CString)> = Vec::new();
    if view == View::Full {
        let dir = std::path::Path::new(ETC_NETNS_DIR).join(ns_name);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let src = CString::new(e.path().as_os_str().as_bytes());
                let dst = CString::new(
                    std::path::Path::new("/etc")
                        .join(e.file_name())
                        .as_os_str()
                        .as_bytes(),
                );
                if let (Ok(s), Ok(d)) = (src, dst) {
                    binds.push((s, d));
                }
            }
        }
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    let hook = move || -> std::io::Result<()> {
        let err = std::io::Error::last_os_error;
        // SAFETY: only async-signal-safe system calls on memory prepared
        // before the fork; `fd` stays open until exec (it is O_CLOEXEC).
        unsafe {
            if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(err());
            }
            if view == View::NetOnly {
                return Ok(());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(err());
            }
            // Slave: host mounts still appear, nothing here leaks back.
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(err());
            }
            libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
            libc::mount(
                name.as_ptr(),
                sys.as_ptr(),
                sysfs.as_ptr(),
                0,
                std::ptr::null(),
            );
            for (s, d) in &binds {
                // As iproute2: a bind that fails is not fatal.
                libc::mount(
                    s.as_ptr(),
                    d.as_ptr(),
                    none.as_ptr(),
                    libc::MS_BIND,
                    std::ptr::null(),
                );
            }
        }
        Ok(())
    };
    // SAFETY: the hook allocates nothing and calls only system calls.
    unsafe {
        cmd.pre_exec(hook);
    }
    Ok(cmd)
}

/// Who a service runs as: uid, gid (from the passwd entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user (name or numeric uid) up in the passwd database.
pub fn lookup_user(user: &str) -> Result<RunAs> {
    let found = if let Ok(uid) = user.parse::<u32>() {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
    } else {
        nix::unistd::User::from_name(user)
    };
    match found {
        Ok(Some(u)) => Ok(RunAs {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(Error::Invalid(format!(
            "there is no user `{user}` on this machine (getent passwd {user})"
        ))),
        Err(e) => Err(Error::os(format!("looking up user {user}"), e)),
    }
}

/// A [`Command`] for a program that runs in a node: in its network
/// namespace and, when the node has one, its mount namespace file
/// `mntns` (else a private view as [`View::Full`]); in a process group of
/// its own (so it and its children are stopped together); as `user` when
/// given (switched after the namespaces are entered, which needs root).
pub fn command_in_node(
    ns_name: &str,
    mntns: Option<&std::path::Path>,
    program: &str,
    args: &[String],
    user: Option<RunAs>,
) -> Result<Command> {
    let mut cmd = match mntns {
        None => command_in(ns_name, program, args, View::Full)?,
        Some(m) => {
            let net: OwnedFd = netns::open(ns_name)?;
            let mnt: OwnedFd = crate::mntns::open(m)?;
            let root = CString::new("/").expect("no NUL");
            let mut cmd = Command::new(program);
            cmd.args(args);
            let hook = move || -> std::io::Result<()> {
                let err = std::io::Error::last_os_error;
                // SAFETY: system calls only, on fds and memory made before
                // the fork; the fds are O_CLOEXEC.
                unsafe {
                    if libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) != 0
                        || libc::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS) != 0
                        || libc::chdir(root.as_ptr()) != 0
                    {
                        return Err(err());
                    }
                }
                Ok(())
            };
            // SAFETY: the hook allocates nothing and calls only system calls.
            unsafe {
                cmd.pre_exec(hook);
            }
            cmd
        }
    };
    cmd.process_group(0);
    if let Some(u) = user {
        let hook = move || -> std::io::Result<()> {
            // SAFETY: system calls only; runs after the namespace hook
            // (hooks run in the order they were added), while still root.
            unsafe {
                let gid = u.gid as libc::gid_t;
                if libc::setgroups(1, &gid) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(u.uid as libc::uid_t) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the hook allocates nothing and calls only system calls.
        unsafe {
            cmd.pre_exec(hook);
        }
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ip, NsGuard};

    #[test]
    fn runs_in_the_namespace_from_a_threaded_process() {
        let mut guard = NsGuard::default();
        let ns = guard.create("spawn");
        ip(&[
            "-n", &ns, "link", "add", "wspa", "type", "veth", "peer", "name", "wspb",
        ]);
        let out = command_in(&ns, "ip", &["-o".into(), "link".into()], View::NetOnly)
            .unwrap()
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("wspa@wspb"), "{text}");
        let full = command_in(&ns, "ls", &["/sys/class/net".into()], View::Full)
            .unwrap()
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&full.stdout);
        assert_eq!(
            names.split_whitespace().collect::<Vec<_>>(),
            ["lo", "wspa", "wspb"]
        );
        // The caller is where it was.
        assert!(crate::if_index("wspa").is_none());
        assert!(command_in("weft-t-no-such-ns", "true", &[], View::NetOnly).is_err());
    }
}
