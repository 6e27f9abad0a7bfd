//! What `weft capture`, `weft graph` and `weft trace` compute, without I/O:
//!
//! - [`bpf`]: classic BPF instructions and a small interpreter (the kernel's
//!   semantics, used to test compiled filters over real frame bytes).
//! - [`filter`]: the capture filter language (a tcpdump subset), parsed and
//!   compiled to classic BPF for `SO_ATTACH_FILTER`.
//! - [`pcapng`]: a pcapng writer, one interface block per capture point.
//! - [`decode`]: one-line summaries of captured frames.
//! - [`graph`]: drawings of a lab (text boxes, DOT, SVG).
#![forbid(unsafe_code)]

pub mod bpf;
pub mod decode;
pub mod filter;
pub mod graph;
pub mod pcapng;
