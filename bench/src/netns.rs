//! Namespace bookkeeping and the "kernel has finished removing" signal.
//!
//! Deleting a namespace only unmounts its name; the kernel destroys it later, in one
//! ordered work queue (`cleanup_net`), batching whatever namespaces are pending. So
//! the harness keeps an observer namespace `wb-obs` holding one end of a veth into
//! each of two sentinel namespaces, `wb-sent` and `wb-sent2`. After a method's
//! removal commands return, the harness drops the first sentinel and waits for the
//! kernel to report its veth gone, then the second. The first can share a batch with
//! the lab's last namespaces (its veth goes while that batch is still tearing down the
//! rest); the second cannot, so when its veth goes every namespace deleted before has
//! been destroyed completely. The same signal serves all three methods, including
//! weft's, so their "down" figures are comparable. The sentinels' own teardown is
//! measured alone at start-up and reported.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::proc::{interrupted, output};

pub const OBSERVER: &str = "wb-obs";
/// (namespace, observer-side veth) of the two sentinels.
const SENTINELS: [(&str, &str); 2] = [("wb-sent", "wbo0"), ("wb-sent2", "wbo1")];
const SENT_IF: &str = "wbs0";
const QUICK: Duration = Duration::from_secs(20);

/// Names from `ip netns list` (which may append ` (id: N)`).
pub fn list() -> Result<Vec<String>, String> {
    let text = output(Command::new("ip").args(["netns", "list"]), None, QUICK)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Deletes namespaces by name with one `ip -force -batch`, carrying on past errors.
pub fn delete(names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let lines: String = names.iter().map(|n| format!("netns del {n}\n")).collect();
    let timeout = QUICK + Duration::from_millis(20) * names.len() as u32;
    output(
        Command::new("ip").args(["-force", "-batch", "-"]),
        Some(lines.into_bytes()),
        timeout,
    )
    .map(drop)
}

/// What `ip netns del` does, done in-process so that dropping the sentinel adds no
/// process start-up to the measured removal.
fn unmount_name(name: &str) -> io::Result<()> {
    let path = std::ffi::CString::new(format!("/run/netns/{name}")).expect("no NUL in name");
    // SAFETY: path is a valid C string.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::unlink(path.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A NETLINK_ROUTE socket created inside a named namespace, subscribed to link events.
pub struct LinkWatcher {
    fd: OwnedFd,
}

impl LinkWatcher {
    pub fn open_in(ns: &str) -> io::Result<Self> {
        let path = format!("/run/netns/{ns}");
        // A socket stays in the namespace it was created in, so a short-lived thread
        // can enter the namespace, make the socket and die, leaving us where we were.
        std::thread::spawn(move || -> io::Result<OwnedFd> {
            let nsf = File::open(&path)?;
            // SAFETY: plain syscalls on fds we own; only this thread changes namespace.
            unsafe {
                if libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let mut sa: libc::sockaddr_nl = std::mem::zeroed();
                sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
                sa.nl_groups = libc::RTMGRP_LINK as u32;
                let r = libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                );
                if r != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(fd)
            }
        })
        .join()
        .map_err(|_| io::Error::other("watcher thread panicked"))?
        .map(|fd| LinkWatcher { fd })
    }

    /// Discards queued events, so an old one cannot end a new measurement.
    fn drain(&self) {
        let mut buf = [0u8; 16384];
        // SAFETY: buf is valid for its length.
        while unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        } > 0
        {}
    }

    /// Blocks until the kernel announces RTM_DELLINK for `ifindex`; returns when it did.
    fn wait_dellink(&self, ifindex: i32, timeout: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            if interrupted() {
                return Err("interrupted".into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kernel did not finish removing within {:.0} s",
                    timeout.as_secs_f64()
                ));
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                continue;
            }
            // SAFETY: buf is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let now = Instant::now();
            if n < 0 {
                let e = io::Error::last_os_error();
                // ENOBUFS means we missed events; the check below still sees the result.
                if e.raw_os_error() == Some(libc::ENOBUFS) || e.raw_os_error() == Some(libc::EINTR)
                {
                    continue;
                }
                return Err(format!("netlink recv: {e}"));
            }
            if dellink_in(&buf[..n as usize], ifindex) {
                return Ok(now);
            }
        }
    }
}

/// True if the datagram holds an RTM_DELLINK for `ifindex`.
fn dellink_in(mut msgs: &[u8], ifindex: i32) -> bool {
    const NLMSG_HDR: usize = 16;
    while msgs.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(msgs[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(msgs[4..6].try_into().unwrap());
        if len < NLMSG_HDR || len > msgs.len() {
            return false;
        }
        // struct ifinfomsg: family u8, pad u8, type u16, index i32, ...
        if kind == libc::RTM_DELLINK && len >= NLMSG_HDR + 8 {
            let idx = i32::from_ne_bytes(msgs[NLMSG_HDR + 4..NLMSG_HDR + 8].try_into().unwrap());
            if idx == ifindex {
                return true;
            }
        }
        let aligned = (len + 3) & !3;
        msgs = &msgs[aligned.min(msgs.len())..];
    }
    false
}

/// The observer namespace plus two re-armable sentinels; see the module docs.
///
/// Two, because the kernel destroys namespaces in batches: the first
/// sentinel may join the batch that holds the last of the lab's namespaces,
/// and its veth goes while that batch is still tearing the rest down; the
/// second, dropped only then, lands in a later batch, which starts once that
/// batch has finished. (weft's own `down` waits the same way.)
pub struct Finish {
    watcher: LinkWatcher,
    armed: Option<[i32; 2]>,
}

impl Finish {
    /// Creates `wb-obs`; the caller has made sure no `wb-*` names are left over.
    pub fn new() -> Result<Self, String> {
        ip(&["netns", "add", OBSERVER])?;
        let watcher =
            LinkWatcher::open_in(OBSERVER).map_err(|e| format!("watcher in {OBSERVER}: {e}"))?;
        Ok(Finish {
            watcher,
            armed: None,
        })
    }

    /// Creates the sentinel namespaces and their veths to the observer (not measured).
    pub fn arm(&mut self) -> Result<(), String> {
        let mut idx = [0i32; 2];
        for (slot, (ns, obs_if)) in idx.iter_mut().zip(SENTINELS) {
            ip(&["netns", "add", ns])?;
            ip(&[
                "-n", OBSERVER, "link", "add", obs_if, "type", "veth", "peer", "name", SENT_IF,
                "netns", ns,
            ])?;
            let text = ip(&["-n", OBSERVER, "-o", "link", "show", obs_if])?;
            // `ip` also says "Peer netns reference is invalid" on stderr
            // (merged here) when it meets a peer in a namespace being
            // destroyed: read the index from the device's own line.
            *slot = text
                .lines()
                .find(|l| l.contains(&format!(": {obs_if}@")))
                .and_then(|l| l.split(':').next())
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| format!("cannot read ifindex from {text:?}"))?;
        }
        self.watcher.drain();
        self.armed = Some(idx);
        Ok(())
    }

    /// Drops the sentinels one after the other and waits until the kernel has
    /// destroyed the second (and so finished every namespace whose last
    /// reference went before the first). Returns that instant.
    pub fn wait(&mut self, timeout: Duration) -> Result<Instant, String> {
        let idx = self.armed.take().ok_or("sentinel not armed")?;
        let mut done = Instant::now();
        for ((ns, _), i) in SENTINELS.iter().zip(idx) {
            unmount_name(ns).map_err(|e| format!("dropping {ns}: {e}"))?;
            done = self.watcher.wait_dellink(i, timeout)?;
        }
        Ok(done)
    }

    /// Time the kernel needs to destroy the sentinel alone: the floor of every "down".
    pub fn calibrate(&mut self) -> Result<Duration, String> {
        self.arm()?;
        let t0 = Instant::now();
        Ok(self.wait(QUICK)? - t0)
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    output(Command::new("ip").args(args), None, QUICK)
}

#[cfg(test)]
mod tests {
    use super::dellink_in;

    fn msg(kind: u16, idx: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&32u32.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&[0u8; 4]);
        m.extend_from_slice(&idx.to_ne_bytes());
        m.extend_from_slice(&[0u8; 8]);
        m
    }

    #[test]
    fn finds_dellink_for_the_right_index_only() {
        let mut two = msg(libc::RTM_NEWLINK, 7);
        two.extend(msg(libc::RTM_DELLINK, 7));
        assert!(dellink_in(&two, 7));
        assert!(!dellink_in(&two, 8));
        assert!(!dellink_in(&msg(libc::RTM_NEWLINK, 7), 7));
        assert!(!dellink_in(&[1, 2, 3], 7));
    }
}
