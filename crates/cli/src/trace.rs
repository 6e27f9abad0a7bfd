//! `weft trace`: the steps, then the verdict as the exit status.

use std::process::ExitCode;

pub fn run(lab: &str, node: &str, target: &str, iface: Option<&str>) -> Result<ExitCode, String> {
    let t = weft::trace::trace(lab, node, target, iface).map_err(|e| e.to_string())?;
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
