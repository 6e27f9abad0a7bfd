//! `weft graph`: draw a lab from its file (before `up`) or as built, with
//! the kernel's link state.

use crate::Failure;
use std::path::Path;
use std::process::ExitCode;

use weft_see::graph::{self, Live, LiveMap};
use weft_topo::Endpoint;

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
        let mut live = LiveMap::new();
        for n in status.iter().flat_map(|l| &l.nodes) {
            for i in &n.interfaces {
                live.insert(
                    Endpoint::new(&n.name, &i.name),
                    Live {
                        state: if i.present {
                            i.state.clone().unwrap_or_else(|| "unknown".into())
                        } else {
                            "missing".into()
                        },
                        port_state: i.port_state.map(str::to_string),
                        addresses: i.addresses.clone(),
                    },
                );
            }
        }
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
