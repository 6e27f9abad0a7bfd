//! weft's one contact with the operating system. Every `unsafe` block of the
//! project lives in this crate; the layers above (topo, lab) are safe Rust.

pub mod netlink;
