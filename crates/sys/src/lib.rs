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
//! - [`caps`]: the up-front root check.
//! - [`tunnel`]: the `weft tunnel` datapath (TUN/TAP device, batched UDP, TCP).
//!
//! Namespace-relative operations (sysctls, TUN/TAP, ping, netlink sockets)
//! act in the network namespace of the *calling thread*; run them inside
//! [`netns::run_in`] or a [`netns::create_many`] setup closure, never on a
//! shared async runtime thread.

pub mod caps;
pub mod error;
pub mod exec;
pub mod mntns;
pub mod netlink;
pub mod netns;
pub mod packet;
pub mod ping;
pub mod port;
pub mod process;
pub mod spawn;
pub mod sysctl;
pub mod tunnel;
pub mod tuntap;

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

/// The index of an interface by name in the calling thread's namespace
/// (`if_nametoindex`), or `None` if there is none.
pub fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}
