//! weft's topology model: parse a lab file (keeping positions for errors),
//! check it completely, expand shorthands, and diff two labs into a plan.
//!
//! Pure: nothing here touches the system, so every rule is unit-tested.

pub mod check;
pub mod error;
pub mod exec;
pub mod file;
pub mod impair;
pub mod machines;
pub mod model;
pub mod nat;
pub mod placement;
pub mod plan;
pub mod route;
pub mod wire;
pub mod workload;

pub use error::{Diagnostic, Diagnostics, Error, LineIndex, NameKind};
pub use file::{parse, parse_at, parse_with, FileDir, Parsed};
pub use model::*;
pub use plan::{plan, Op, Plan, Res, ResKey};
