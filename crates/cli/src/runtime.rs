//! `weft link` and `weft impair`: changes to a running lab.

use crate::Failure;
use std::process::ExitCode;

use weft_topo::impair::{self, Direction, Impairment, Spelling};

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
    /// Start from a named preset: wifi, lossy-wifi, lte, satellite (the other options override its values).
    #[arg(long)]
    preset: Option<String>,
    /// Delay of every frame, like 20ms.
    #[arg(long)]
    delay: Option<String>,
    /// The delay varies within ± this (at most the delay).
    #[arg(long)]
    jitter: Option<String>,
    /// Share of frames dropped, like 1%.
    #[arg(long)]
    loss: Option<String>,
    /// Burst loss (Gilbert-Elliott): ENTER,EXIT[,LOSS[,GOOD_LOSS]], like 1%,25% (LOSS in the bad state defaults to 100%).
    #[arg(long)]
    burst: Option<String>,
    /// Share of frames with one bit flipped, like 0.1%.
    #[arg(long)]
    corrupt: Option<String>,
    /// Share of frames sent twice.
    #[arg(long)]
    duplicate: Option<String>,
    /// Share of frames sent without the delay, ahead of others.
    #[arg(long)]
    reorder: Option<String>,
    /// Rate limit, like 10mbit.
    #[arg(long)]
    rate: Option<String>,
    /// With --rate: frames waiting for the link at most (default: a wait of at most 500 ms).
    #[arg(long)]
    queue: Option<u32>,
    /// Seed of the random choices: the same seed and traffic give the same outcome.
    #[arg(long)]
    seed: Option<u64>,
    /// both (default), out (frames the switch sends to the other end) or in.
    #[arg(long)]
    direction: Option<String>,
    /// Remove the impairment.
    #[arg(long, conflicts_with_all = ["preset", "delay", "jitter", "loss", "burst", "corrupt", "duplicate", "reorder", "rate", "queue", "seed", "direction"])]
    clear: bool,
}

fn settings(a: &ImpairArgs) -> Result<Impairment, Failure> {
    let opt = |name: &str, v: &Option<String>, f: fn(&str) -> Result<u64, weft_topo::Error>| {
        v.as_deref()
            .map(|s| f(s).map_err(|e| format!("--{name}: {e}")))
            .transpose()
    };
    let pct = |s: &str| impair::parse_percent(s).map(u64::from);
    let mut i = match &a.preset {
        Some(p) => impair::preset(p).map_err(|e| format!("--{e}"))?,
        None => Impairment::default(),
    };
    let set = |slot: &mut u64, v: Option<u64>| {
        if let Some(v) = v {
            *slot = v
        }
    };
    let set32 = |slot: &mut u32, v: Option<u64>| {
        if let Some(v) = v {
            *slot = v as u32
        }
    };
    set(
        &mut i.delay_us,
        opt("delay", &a.delay, impair::parse_duration)?,
    );
    set(
        &mut i.jitter_us,
        opt("jitter", &a.jitter, impair::parse_duration)?,
    );
    set32(&mut i.loss_ppm, opt("loss", &a.loss, pct)?);
    set32(&mut i.corrupt_ppm, opt("corrupt", &a.corrupt, pct)?);
    set32(&mut i.duplicate_ppm, opt("duplicate", &a.duplicate, pct)?);
    set32(&mut i.reorder_ppm, opt("reorder", &a.reorder, pct)?);
    if let Some(b) = &a.burst {
        let v: Vec<u32> = b
            .split(',')
            .map(|p| impair::parse_percent(p).map_err(|e| format!("--burst: {e}")))
            .collect::<Result<_, _>>()?;
        if !(2..=4).contains(&v.len()) {
            return Err(Failure::from(format!(
                "--burst `{b}`: write ENTER,EXIT[,LOSS[,GOOD_LOSS]], like 1%,25%"
            )));
        }
        i.burst = Some(impair::Burst {
            enter_ppm: v[0],
            exit_ppm: v[1],
            loss_ppm: v.get(2).copied().unwrap_or(1_000_000),
            good_loss_ppm: v.get(3).copied().unwrap_or(0),
        });
    }
    if let Some(r) = opt("rate", &a.rate, impair::parse_rate)? {
        i.rate_bps = Some(r);
    }
    if a.queue.is_some() {
        i.queue = a.queue;
    }
    if a.seed.is_some() {
        i.seed = a.seed;
    }
    if let Some(d) = &a.direction {
        i.direction = Direction::parse(d).map_err(|e| format!("--{e}"))?;
    }
    // The advice names the flags itself (`--queue ...: add --rate 10mbit`).
    i.check_as(Spelling::Flags).map_err(|e| e.to_string())?;
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
                "say what to do: --preset, --delay, --jitter, --loss, --burst, --corrupt, --duplicate, --reorder or --rate, or --clear"
                    .into(),
            );
        }
        Some(i)
    };
    let what = weft::runtime::set_impair(&a.lab, &a.a, &a.b, imp.clone())?.describe();
    match imp {
        Some(i) => println!("{what}: impair {}", i.summary()),
        None => println!("{what}: impairment cleared"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: super::ImpairArgs,
    }

    /// What `weft impair polab h1 sw ARGS` refuses, before any lab is looked at.
    fn refusal(args: &[&str]) -> String {
        let argv = ["impair", "polab", "h1", "sw"].iter().chain(args);
        let cmd = Cmd::try_parse_from(argv).expect("the flags parse");
        match super::settings(&cmd.args) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{args:?} was accepted"),
        }
    }

    #[test]
    fn advice_names_flags() {
        for (args, said) in [
            (&["--reorder", "1%"][..], "--reorder sends some frames at once, ahead of the delayed ones, so it needs a delay: add --delay 10ms or so"),
            (&["--queue", "10"], "--queue is the buffer in front of a rate limit: add --rate 10mbit or so"),
            (&["--delay", "1ms", "--jitter", "2ms"], "--jitter is larger than --delay: a frame cannot leave before it came; write a --jitter of at most the delay"),
            (&["--burst", "1%,0%"], "--burst exit is 0%: the link would stay bad for ever once it turned bad; write --burst ENTER,25% or so"),
            (&["--preset", "lte", "--queue", "0"], "--queue 0 is out of range: write 1 to 100000 frames"),
        ] {
            assert_eq!(refusal(args), said, "{args:?}");
        }
    }
}
