//! weft's one contact with the operating system. Every `unsafe` block of the
//! project lives in this crate; the layers above (topo, lab) are safe Rust.
//!
//! - [`netns`]: named network namespaces (`ip netns add/del/list/exec`),
//!   created in bulk on worker threads, plus [`netns::watch_cleanup`].
//! - [`tuntap`]: persistent TUN/TAP devices (`ip tuntap add`).
//! - [`sysctl`]: per-namespace `net.*` sysctls.
//! - [`exec`]: `ip netns exec` for a single-threaded process.
//! - [`spawn`]: start a program in a namespace from a threaded process.
//! - [`ping`]: ICMP echo over raw sockets, IPv4 and IPv6.
//! - [`packet`]: AF_PACKET capture sockets with a classic BPF filter.
//! - [`port`]: batched AF_PACKET ports with offload headers, and epoll, for the userspace switch.
//! - [`bpf`]: the bpf(2) system call: maps, programs, test runs.
//! - [`caps`]: the up-front root check.
//! - [`userns`]: running without root: the keeper of the caller's user
//!   namespace, joined before anything else.
//! - [`tundev`], [`udpbatch`], [`fdio`]: what the `weft tunnel` process
//!   (crates/tunnel-run) needs of the OS: its TUN/TAP device, batched UDP
//!   with GSO/GRO, polling.
//!
//! Namespace-relative operations (sysctls, TUN/TAP, ping, netlink sockets)
//! act in the network namespace of the *calling thread*; run them inside
//! [`netns::run_in`] or a [`netns::create_many`] setup closure, never on a
//! shared async runtime thread.

pub mod bpf;
pub mod caps;
pub mod error;
pub mod exec;
pub mod fdio;
pub mod mntns;
pub mod netlink;
pub mod netns;
pub mod packet;
pub mod ping;
pub mod port;
pub mod process;
pub mod spawn;
pub mod sysctl;
pub mod tundev;
pub mod tuntap;
pub mod udpbatch;
pub mod userns;

pub use error::{Error, Result};
pub use netns::route_socket;

#[cfg(test)]
pub(crate) mod testutil;

/// Take an exclusive `flock` on an open file, waiting for other holders.
pub fn flock_exclusive(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a caller-provided open fd has no memory effects.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Try to take an exclusive `flock` without waiting: false when another
/// open file description holds it.
pub fn try_flock_exclusive(fd: std::os::fd::RawFd) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock on a caller-provided open fd has no memory effects.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Let a closed pipe end the process quietly, as it ends `cat` or `ip`:
/// SIGPIPE back to its default action (the Rust runtime ignores it, which
/// turns `weft ... | head -1` into a panic in `println!`). Also what
/// programs `weft exec` starts inherit: an ignored signal survives exec.
/// Not for long-running servers (`weft datapath`, `weft tunnel`), which
/// must survive a peer closing a socket.
pub fn default_sigpipe() {
    // SAFETY: installing SIG_DFL for SIGPIPE touches no memory and no
    // handler runs; done before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether whoever reads `fd` is gone: the reading end of a pipe was
/// closed, or a terminal hung up (`poll` reports POLLERR or POLLHUP). A
/// command that follows a stream (`weft events`, `weft logs -f`) writes
/// only when something happens, so `weft events LAB | head -3` would
/// otherwise wait for the next event before SIGPIPE ends it; it asks this
/// between writes.
pub fn reader_gone(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: poll on one live pollfd, without waiting.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// A program's UDP socket bound to local `port` in the calling thread's
/// network namespace: its inode and the pid of a process holding it.
/// Sockets the kernel holds itself (a VXLAN device's) are in the table
/// too but in no process's file table, so they do not count.
pub fn udp_port_holder(port: u16) -> std::io::Result<Option<(u64, u32)>> {
    let mut inodes = Vec::new();
    for f in ["udp", "udp6"] {
        let text = match std::fs::read_to_string(format!("/proc/thread-self/net/{f}")) {
            Ok(t) => t,
            // No IPv6 in this kernel.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        inodes.extend(udp_inodes_on(&text, port));
    }
    if inodes.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for p in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Processes come and go, and some fd tables are not readable.
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(|e| e.ok()) {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if let Some(i) = wanted.iter().position(|w| target.as_os_str() == w.as_str()) {
                    return Ok(Some((inodes[i], pid)));
                }
            }
        }
    }
    Ok(None)
}

/// Inodes of the sockets bound to local `port` in a /proc/net/udp table.
fn udp_inodes_on(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit_once(':')?.1;
            let inode: u64 = cols.get(9)?.parse().ok()?;
            (u16::from_str_radix(local_port, 16).ok()? == port).then_some(inode)
        })
        .collect()
}

/// The index of an interface by name in the calling thread's namespace
/// (`if_nametoindex`), or `None` if there is none.
pub fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

#[cfg(test)]
mod udp_tests {
    #[test]
    fn sockets_on_the_port_are_found_by_inode() {
        // Two lines of /proc/net/udp on 8472 (0x2118) and one on 53.
        let t = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                 1: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 516077 2 0000000000000000 0\n\
                 2: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 11 2 0000000000000000 0\n\
                 3: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81234 2 0000000000000000 0\n";
        assert_eq!(super::udp_inodes_on(t, 8472), [516077, 81234]);
        assert_eq!(super::udp_inodes_on(t, 53), [11]);
        assert!(super::udp_inodes_on(t, 4789).is_empty());
    }

    #[test]
    fn a_programs_socket_is_found_with_its_process() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        let (_, pid) = super::udp_port_holder(port).unwrap().expect("held");
        assert_eq!(pid, std::process::id());
        drop(s);
        assert_eq!(super::udp_port_holder(port).unwrap(), None);
    }
}

#[cfg(test)]
mod reader_tests {
    use std::os::fd::AsFd;

    #[test]
    fn a_pipe_whose_reader_closed_is_seen_without_writing() {
        let (reader, writer) = std::io::pipe().unwrap();
        assert!(!super::reader_gone(writer.as_fd()));
        drop(reader);
        assert!(super::reader_gone(writer.as_fd()));
        // A file has no reader to lose.
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(!super::reader_gone(f.as_fd()));
    }
}
