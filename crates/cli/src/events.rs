//! `weft events LAB [--json] [--since DUR|all] [--no-follow]`: the lab's
//! event stream (docs/events.md).

use crate::Failure;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::process::ExitCode;
use std::time::Duration;

use weft::events::{self, Event, Follow, KernelWatch};

/// `30s`, `5m`, `2h`, `all`: how far back to replay.
fn since_ms(s: &str) -> Result<u64, Failure> {
    if s == "all" {
        return Ok(0);
    }
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("--since {s}: give a duration like 30s, 5m, 2h, or `all`"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("--since {s}: the unit is one of ms, s, m, h").into()),
    };
    Ok(events::now_ms().saturating_sub((secs * 1000.0) as u64))
}

fn print(out: &mut impl std::io::Write, e: &Event, json: bool) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, e)?;
        writeln!(out)
    } else {
        writeln!(out, "{}", events::human(e))
    }
}

pub fn run(lab: &str, json: bool, since: Option<&str>, follow: bool) -> Result<ExitCode, Failure> {
    let since = since.map(since_ms).transpose()?;
    // Start following before reading what is kept, so that nothing
    // written in between is lost (it may then show twice: drop by ts).
    let mut tail = Follow::new(lab)?;
    let kept = events::read(lab, since.unwrap_or(u64::MAX))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut last = 0;
    for e in &kept {
        last = last.max(e.ts);
        if print(&mut out, e, json).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut kernel = KernelWatch::new(lab);
    let mut next_kernel = std::time::Instant::now();
    loop {
        if std::time::Instant::now() >= next_kernel {
            // Recorded in the stream, so the tail below prints them.
            kernel.poll();
            next_kernel = std::time::Instant::now() + Duration::from_secs(1);
        }
        for e in tail.poll() {
            if since.is_some() && e.ts < last {
                continue;
            }
            // A closed pipe (`| head`) ends the command quietly.
            if print(&mut out, &e, json).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if out.flush().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        // Nothing may be written for a long time: `| head` that has
        // what it wanted must not wait for the next event.
        if weft_sys::reader_gone(std::io::stdout().as_fd()) {
            return Ok(ExitCode::SUCCESS);
        }
        if !tail.lab_exists() {
            let e = Event::new("lab.gone");
            let _ = print(&mut out, &e, json);
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
