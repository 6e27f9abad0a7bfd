//! `weft graph`: draw a lab from its file (before `up`) or as built, with
//! the kernel's link state and the switch datapath's port roles and states.

use crate::Failure;
use std::path::Path;
use std::process::ExitCode;

use weft_see::graph::{self, LiveMap};

pub fn run(what: &str, format: &str, out: Option<&Path>) -> Result<ExitCode, Failure> {
    let (lab, live) = if what.ends_with(".toml") || Path::new(what).is_file() {
        let parsed = weft::parse_file(what).map_err(|e| {
            format!(
                "{what} has {} problem(s); `weft up --dry-run {what}` shows them",
                e.diagnostics.0.len()
            )
        })?;
        (parsed.lab, LiveMap::new())
    } else {
        let st = weft::built(what)?;
        let status = weft::status(Some(what))?;
        let live = status
            .first()
            .map(weft::drawing::live_map)
            .unwrap_or_default();
        (st.lab, live)
    };
    let s = match format {
        "text" => graph::text(&lab, &live),
        "dot" => graph::dot(&lab, &live),
        "svg" => graph::svg(&lab, &live),
        f => return Err(format!("unknown format {f}: use text, dot or svg").into()),
    };
    match out {
        Some(p) => std::fs::write(p, s).map_err(|e| format!("writing {}: {e}", p.display()))?,
        None => print!("{s}"),
    }
    Ok(ExitCode::SUCCESS)
}
