//! weft's switch datapath: one process per lab (`weft datapath LAB`, started
//! by `weft up`) that hosts every `kind = "switch"` node of the lab.
//!
//! For each port, an AF_PACKET socket on the port's veth end inside the
//! switch's namespace ([`weft_sys::port`]); one epoll loop reads ports in
//! batches, hands each frame to the switch core ([`weft_switch::Switch`])
//! with the time from the monotonic clock, queues what the core says to
//! send per output port, and sends each queue as one batch. The frame is
//! not copied between the receive buffer and the send: the output is
//! gathered from slices of it (plus a 4-byte tag when one is pushed). See
//! docs/switch.md.

pub mod bpfpath;
pub mod config;
pub mod control;
pub mod events;
pub mod fastpath;
mod run;

pub use run::{run, Error};
