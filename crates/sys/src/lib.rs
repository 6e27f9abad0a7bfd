//! weft's one contact with the operating system. Every `unsafe` block of the
//! project lives in this crate; the layers above (topo, lab) are safe Rust.
//!
//! - [`netns`]: named network namespaces (`ip netns add/del/list/exec`),
//!   created in bulk on worker threads, plus [`netns::wait_cleanup`].
//! - [`tuntap`]: persistent TUN/TAP devices (`ip tuntap add`).
//! - [`sysctl`]: per-namespace `net.*` sysctls.
//! - [`exec`]: `ip netns exec` for a single-threaded process.
//! - [`ping`]: ICMP echo over raw sockets, IPv4 and IPv6.
//! - [`caps`]: the up-front root check.
//!
//! Namespace-relative operations (sysctls, TUN/TAP, ping, netlink sockets)
//! act in the network namespace of the *calling thread*; run them inside
//! [`netns::run_in`] or a [`netns::create_many`] setup closure, never on a
//! shared async runtime thread.

pub mod caps;
pub mod error;
pub mod exec;
pub mod netns;
pub mod ping;
mod rtnl;
pub mod sysctl;
pub mod tuntap;

pub use error::{Error, Result};
pub use rtnl::route_socket;

#[cfg(test)]
pub(crate) mod testutil;
