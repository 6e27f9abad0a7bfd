//! `weft link` and `weft impair`: changes to a running lab.

use crate::Failure;
use std::process::ExitCode;

use weft_topo::impair::{self, Direction, Impairment};

pub fn link(lab: &str, a: &str, b: &str, state: &str) -> Result<ExitCode, Failure> {
    let up = match state {
        "up" => true,
        "down" => false,
        other => return Err(format!("`{other}`: write down or up").into()),
    };
    let (x, y) = weft::runtime::set_link(lab, a, b, up)?;
    println!(
        "link {x} — {y} is {state} (`weft up` of the file brings it back to the file's state)"
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ImpairArgs {
    lab: String,
    /// One end: a node name, or NODE:IFACE.
    a: String,
    /// The other end.
    b: String,
    /// Delay of every frame, like 20ms.
    #[arg(long)]
    delay: Option<String>,
    /// The delay varies within ± this (at most the delay).
    #[arg(long)]
    jitter: Option<String>,
    /// Share of frames dropped, like 1%.
    #[arg(long)]
    loss: Option<String>,
    /// Share of frames sent twice.
    #[arg(long)]
    duplicate: Option<String>,
    /// Share of frames sent without the delay, ahead of others.
    #[arg(long)]
    reorder: Option<String>,
    /// Rate limit, like 10mbit.
    #[arg(long)]
    rate: Option<String>,
    /// Seed of the random choices: the same seed and traffic give the same outcome.
    #[arg(long)]
    seed: Option<u64>,
    /// both (default), out (frames the switch sends to the other end) or in.
    #[arg(long)]
    direction: Option<String>,
    /// Remove the impairment.
    #[arg(long, conflicts_with_all = ["delay", "jitter", "loss", "duplicate", "reorder", "rate", "seed", "direction"])]
    clear: bool,
}

fn settings(a: &ImpairArgs) -> Result<Impairment, Failure> {
    let opt = |name: &str, v: &Option<String>, f: fn(&str) -> Result<u64, String>| {
        v.as_deref()
            .map(|s| f(s).map_err(|e| format!("--{name}: {e}")))
            .transpose()
    };
    let pct = |s: &str| impair::parse_percent(s).map(u64::from);
    let i = Impairment {
        delay_us: opt("delay", &a.delay, impair::parse_duration)?.unwrap_or(0),
        jitter_us: opt("jitter", &a.jitter, impair::parse_duration)?.unwrap_or(0),
        loss_ppm: opt("loss", &a.loss, pct)?.unwrap_or(0) as u32,
        duplicate_ppm: opt("duplicate", &a.duplicate, pct)?.unwrap_or(0) as u32,
        reorder_ppm: opt("reorder", &a.reorder, pct)?.unwrap_or(0) as u32,
        rate_bps: opt("rate", &a.rate, impair::parse_rate)?,
        seed: a.seed,
        direction: match &a.direction {
            Some(d) => Direction::parse(d).map_err(|e| format!("--{e}"))?,
            None => Direction::Both,
        },
    };
    i.check().map_err(|(k, why)| format!("--{k}: {why}"))?;
    Ok(i)
}

pub fn impair(a: &ImpairArgs) -> Result<ExitCode, Failure> {
    let imp = if a.clear {
        None
    } else {
        let i = settings(a)?;
        if i == (Impairment {
            seed: i.seed,
            direction: i.direction,
            ..Default::default()
        }) {
            return Err(
                "say what to do: --delay, --jitter, --loss, --duplicate, --reorder or --rate, or --clear"
                    .into(),
            );
        }
        Some(i)
    };
    let port = weft::runtime::set_impair(&a.lab, &a.a, &a.b, imp.clone())?;
    match imp {
        Some(i) => println!("switch port {port}: impair {}", i.summary()),
        None => println!("switch port {port}: impairment cleared"),
    }
    Ok(ExitCode::SUCCESS)
}
