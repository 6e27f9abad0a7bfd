//! weft's one contact with the operating system. Every `unsafe` block of the
//! project lives in this crate; the layers above (topo, lab) are safe Rust.

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
