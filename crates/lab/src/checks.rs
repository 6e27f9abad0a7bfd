//! Running the lab's health checks: ping, TCP connect, a command exiting 0,
//! each in its node and bounded by its timeout. All run at once.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use weft_sys::spawn::{command_in, View};
use weft_topo::check::{Check, CheckKind};
use weft_topo::Lab;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The check, as the file says it.
    pub check: Check,
    /// It passed.
    pub ok: bool,
    /// Why it failed, or what answered.
    pub detail: String,
    /// How long it ran (at most its timeout).
    pub took: Duration,
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} ({:.0} ms)",
            if self.ok { "ok  " } else { "FAIL" },
            self.check,
            self.detail,
            self.took.as_secs_f64() * 1e3
        )
    }
}

/// Run every check of `lab` (which must be built).
pub fn run_all(lab: &Lab) -> Vec<CheckResult> {
    std::thread::scope(|s| {
        let hs: Vec<_> = lab
            .checks
            .iter()
            .map(|c| s.spawn(move || run_one(lab, c)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("check thread"))
            .collect()
    })
}

fn run_one(lab: &Lab, c: &Check) -> CheckResult {
    let t0 = Instant::now();
    let timeout = Duration::from_millis(c.timeout_ms);
    let netns = lab
        .nodes
        .get(&c.from)
        .map(|n| n.netns.clone())
        .unwrap_or_default();
    let (ok, detail) = match &c.kind {
        CheckKind::Ping { addr, .. } => {
            let addr = *addr;
            let opts = weft_sys::ping::PingOptions {
                count: 1,
                timeout,
                ..Default::default()
            };
            match weft_sys::netns::run_in_named(&netns, move || {
                weft_sys::ping::ping(addr, &opts, |_| {})
            }) {
                Ok(Ok(s)) if s.received > 0 => (true, format!("{addr} answered")),
                Ok(Ok(_)) => (
                    false,
                    format!("no reply from {addr} within {:.1} s", timeout.as_secs_f64()),
                ),
                Ok(Err(e)) | Err(e) => (false, e.to_string()),
            }
        }
        CheckKind::Tcp { addr, .. } => {
            let addr = *addr;
            match weft_sys::netns::run_in_named(&netns, move || {
                std::net::TcpStream::connect_timeout(&addr, timeout)
            }) {
                Ok(Ok(_)) => (true, format!("{addr} accepted the connection")),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => (
                    false,
                    format!(
                        "no answer from {addr} within {:.1} s",
                        timeout.as_secs_f64()
                    ),
                ),
                Ok(Err(e)) => (false, format!("connecting to {addr}: {e}")),
                Err(e) => (false, e.to_string()),
            }
        }
        CheckKind::Command { argv } => command(&netns, argv, timeout),
    };
    CheckResult {
        check: c.clone(),
        ok,
        detail,
        took: t0.elapsed(),
    }
}

fn command(netns: &str, argv: &[String], timeout: Duration) -> (bool, String) {
    let mut cmd = match command_in(netns, &argv[0], &argv[1..], View::Full) {
        Ok(c) => c,
        Err(e) => return (false, e.to_string()),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, format!("starting {}: {e}", argv[0])),
    };
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = err.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if t0.elapsed() >= timeout => {
                // Ours, by pid.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    // A grandchild may keep the pipes open: wait briefly, not forever.
    let text = {
        let t = Instant::now();
        while !reader.is_finished() && t.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if reader.is_finished() {
            reader.join().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let tail: Vec<&str> = text.trim().lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let said = if tail.is_empty() {
        String::new()
    } else {
        format!("; it printed: {}", tail.join(" / "))
    };
    match status {
        Some(st) if st.success() => (true, "exited 0".into()),
        Some(st) => (false, format!("{} {st}{said}", argv[0])),
        None => (
            false,
            format!(
                "{} did not finish within {:.1} s and was killed{said}",
                argv[0],
                timeout.as_secs_f64()
            ),
        ),
    }
}
