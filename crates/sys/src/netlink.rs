//! rtnetlink, batched: many requests in one `sendmsg`, one ACK per batch.
//!
//! `ip` sends a request and waits for its answer, once per step. The kernel
//! however processes every message of a datagram in order and only answers
//! failures unless asked, so weft queues a namespace's whole configuration
//! and sends it in a few system calls. Devices are addressed by interface
//! indexes weft chooses itself, so no request waits for an earlier answer.
//!
//! Seams: `socket.rs` ([`Netlink`]: the socket, its queue and batching),
//! `read.rs` (dumps parsed into [`LinkState`], [`AddrState`],
//! [`NeighState`]), `build.rs` (request builders, one per `ip` command),
//! [`tc`] and `route_get.rs` (`ip route get`).

mod build;
pub mod observe;
mod read;
mod route_get;
mod socket;
pub mod tc;

pub use build::*;
pub use read::*;
pub use route_get::RouteLookup;
pub use socket::{Netlink, NlError, Request};
