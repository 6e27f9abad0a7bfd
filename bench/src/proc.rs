//! Running a child with a wall-clock timeout and collecting its rusage.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns Ctrl-C / SIGTERM into a flag, so the harness can kill its own children and
/// remove its namespaces instead of dying with a half-built lab behind it.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[derive(Debug)]
pub struct Outcome {
    pub started: Instant,
    pub ended: Instant,
    /// Raw wait status; see [`Outcome::success`].
    pub status: libc::c_int,
    /// Peak resident set of the child (or of its largest reaped descendant), KiB.
    pub maxrss_kib: i64,
}

impl Outcome {
    pub fn wall(&self) -> Duration {
        self.ended - self.started
    }
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }
    pub fn describe_status(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit code {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

#[derive(Debug)]
pub enum RunError {
    Spawn(io::Error),
    TimedOut(Duration),
    Interrupted,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "could not start: {e}"),
            RunError::TimedOut(t) => write!(f, "timed out after {:.0} s (killed)", t.as_secs_f64()),
            RunError::Interrupted => write!(f, "interrupted"),
        }
    }
}

/// Runs `cmd` to completion, killing its whole process group after `timeout`.
///
/// The clock starts before `spawn`, because process start-up is exactly the cost the
/// baselines pay and weft avoids. Output goes to `log` (stdout and stderr both), so
/// a failure can be explained without pipes that could fill up and stall the child.
pub fn run_timed(
    cmd: &mut Command,
    stdin: Option<Vec<u8>>,
    log: &Path,
    timeout: Duration,
) -> Result<Outcome, RunError> {
    let out = File::create(log).map_err(RunError::Spawn)?;
    let err = out.try_clone().map_err(RunError::Spawn)?;
    cmd.stdout(out).stderr(err);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    // Own process group: a timeout or Ctrl-C can then kill bash together with the
    // `ip` it is running, and a terminal's Ctrl-C doesn't reach the child mid-step.
    cmd.process_group(0);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pid = child.id() as libc::pid_t;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A writer thread, so a child that stops reading cannot block us past the timeout.
        std::thread::spawn(move || {
            let _ = io::Write::write_all(&mut pipe, &data);
        });
    }

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: valid pointers to locals; pid is our own unreaped child.
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            if r == pid {
                break;
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        let _ = tx.send((Instant::now(), status, ru.ru_maxrss));
    });

    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((ended, status, maxrss_kib)) => {
                return Ok(Outcome {
                    started,
                    ended,
                    status,
                    maxrss_kib,
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(RunError::Spawn(io::Error::other("wait4 failed")))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let why = if interrupted() {
                    RunError::Interrupted
                } else if started.elapsed() > timeout {
                    RunError::TimedOut(timeout)
                } else {
                    continue;
                };
                // SAFETY: the group is the one we created for this child, still unreaped.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = rx.recv();
                return Err(why);
            }
        }
    }
}

/// Last lines of a log file on one line, for error messages and table notes.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Runs a helper command (not measured) and returns its stdout, failing on non-zero exit.
pub fn output(
    cmd: &mut Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<String, String> {
    let log = std::env::temp_dir().join(format!("weft-bench-{}.out", std::process::id()));
    let what = format!("{cmd:?}");
    let res = run_timed(cmd, stdin, &log, timeout);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    match res {
        Ok(o) if o.success() => Ok(text),
        Ok(o) => Err(format!("{what}: {}: {}", o.describe_status(), text.trim())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}
