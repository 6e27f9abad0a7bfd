//! `weft trace`: the steps, then the verdict as the exit status.

use crate::Failure;
use std::process::ExitCode;

pub fn run(
    lab: &str,
    node: &str,
    target: &str,
    iface: Option<&str>,
    probe: weft::trace::Probe,
) -> Result<ExitCode, Failure> {
    let t = weft::trace::trace(lab, node, target, iface, probe)?;
    println!("trace {node} -> {target} in lab {lab}");
    for s in &t.steps {
        println!("{s}");
    }
    Ok(if t.verdict == weft::trace::Verdict::Delivered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
