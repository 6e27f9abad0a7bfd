//! `weft agent FILE --machine M`: keeps one machine's share as the file
//! says, in the foreground, until SIGTERM (docs/scale.md).

use crate::Failure;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The topology file (read again every round).
    file: PathBuf,
    /// The machine this is.
    #[arg(long)]
    machine: String,
    /// Spread a file without [machines] over N machines (LAB-0 ..).
    #[arg(long)]
    machines: Option<usize>,
    /// Seconds between rounds (re-resolve, rebuild, restart, check).
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
}

pub fn run(a: AgentArgs) -> Result<ExitCode, Failure> {
    let stop = weft_sys::packet::stop_on_signals()?;
    let log = |l: &str| eprintln!("weft agent: {l}");
    let opts = weft::agent::AgentOptions {
        file: a.file,
        machine: a.machine,
        machines: a.machines,
        interval: Duration::from_secs_f64(a.interval.clamp(0.1, 3600.0)),
        stop,
        log: &log,
    };
    weft::agent::run(&opts)?;
    Ok(ExitCode::SUCCESS)
}
