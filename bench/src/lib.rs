//! Harness pieces for weft's build-speed benchmarks (`src/bin/star.rs` drives them).
//!
//! Everything here needs root and only ever touches network namespaces whose names
//! the bench chose (`wb-*`) or weft labs it created (`weft-star*`).

pub mod docs;
pub mod netns;
pub mod proc;
pub mod report;
pub mod scripts;
