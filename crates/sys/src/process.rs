//! Starting, identifying and stopping weft's own background processes
//! (the switch datapath). A process is named by its pid *and* its start
//! time, so a recycled pid is never mistaken for ours.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process as recorded: pid and start time (clock ticks after boot,
/// field 22 of /proc/PID/stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

/// Starts `exe args` in a process group of its own (a Ctrl-C at the
/// terminal of `weft up` does not reach it), stdin from /dev/null, output
/// appended to `log`; does not wait for it.
pub fn spawn_detached(exe: &Path, args: &[&str], log: &Path) -> io::Result<ProcId> {
    spawn_detached_env(exe, args, &[], log)
}

/// [`spawn_detached`] with environment variables added (the library
/// hands its state directory to the processes it starts this way).
pub fn spawn_detached_env(
    exe: &Path,
    args: &[&str],
    envs: &[(&str, &std::ffi::OsStr)],
    log: &Path,
) -> io::Result<ProcId> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let child = Command::new(exe)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    // The child handle is dropped without waiting: the process outlives
    // this one (it is reaped by init once we exit).
    let start_time = start_time(pid).ok_or_else(|| {
        io::Error::other(format!("process {pid} vanished right after it started"))
    })?;
    Ok(ProcId { pid, start_time })
}

/// Start time of a live (not zombie) process.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

struct Stat {
    start_time: u64,
    /// The kernel has begun tearing it down (PF_EXITING): a killed
    /// process keeps its pid and start time for some milliseconds while
    /// it closes its sockets and maps, and is not a zombie yet.
    exiting: bool,
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// include/linux/sched.h: set as do_exit starts.
const PF_EXITING: u64 = 0x4;

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    if fields.first() == Some(&"Z") {
        return None;
    }
    let flags: u64 = fields.get(6)?.parse().ok()?;
    // Field 31: the thread's pending signals. A SIGKILL is put there the
    // moment it is sent, before the process runs again to begin its exit.
    let pending: u64 = fields.get(28)?.parse().ok()?;
    Some(Stat {
        start_time: fields.get(19)?.parse().ok()?,
        exiting: flags & PF_EXITING != 0 || pending & (1 << (libc::SIGKILL - 1)) != 0,
    })
}

/// True while the recorded process (same pid, same start) is alive and
/// not on its way out: one that was killed counts as gone at once, so
/// whoever restarts it does not wait for the kernel to finish with it.
pub fn is_running(p: ProcId) -> bool {
    stat(p.pid).is_some_and(|s| s.start_time == p.start_time && !s.exiting)
}

/// True until the recorded process is gone entirely (exiting included):
/// what a stop waits for before reusing what the process held.
pub fn exists(p: ProcId) -> bool {
    start_time(p.pid) == Some(p.start_time)
}

/// Stops the recorded process: SIGTERM, then SIGKILL after `grace`.
/// Does nothing if it is gone or the pid now belongs to another process.
/// Returns true if it was running.
pub fn stop(p: ProcId, grace: Duration) -> io::Result<bool> {
    if !exists(p) {
        return Ok(false);
    }
    // One already exiting is waited for like one that took the signal:
    // the caller may reuse what it held once this returns.
    let was = is_running(p);
    if was {
        signal(p.pid, libc::SIGTERM)?;
    }
    let t0 = Instant::now();
    while exists(p) {
        if t0.elapsed() > grace {
            signal(p.pid, libc::SIGKILL)?;
            let t1 = Instant::now();
            while exists(p) && t1.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(5));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(was)
}

/// The short command name of a process (`/proc/PID/comm`).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Stops many processes at once: SIGTERM to each, then SIGKILL to those
/// still running after `grace`, and waits (up to two seconds more) until
/// they are gone. Processes whose pid now names another start are left
/// alone. Returns those that were running.
pub fn stop_all(procs: &[ProcId], grace: Duration) -> Vec<ProcId> {
    let running: Vec<ProcId> = procs.iter().copied().filter(|p| is_running(*p)).collect();
    for p in &running {
        let _ = signal(p.pid, libc::SIGTERM);
    }
    let t0 = Instant::now();
    let alive = || {
        running
            .iter()
            .copied()
            .filter(|p| is_running(*p))
            .collect::<Vec<_>>()
    };
    while !alive().is_empty() && t0.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = alive();
    for p in &left {
        let _ = signal(p.pid, libc::SIGKILL);
    }
    let t1 = Instant::now();
    while !alive().is_empty() && t1.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    running
}

/// Sends `sig` to a process group (`kill(-pgid, sig)`); a group that is
/// gone is not an error.
pub fn signal_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::other(format!(
            "refusing to signal process group {pgid}"
        )));
    }
    // SAFETY: kill(2) on a group weft started (its leader's pid), checked > 1.
    if unsafe { libc::kill(-(pgid as libc::pid_t), sig) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(e)
}

/// Sends `sig` to a process.
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) with a pid we recorded and checked just before.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(e)
}

/// Start `argv` (program, then arguments) in its own process group (so a Ctrl-C meant for the
/// starter does not reach it), stdin from /dev/null, stdout and stderr
/// appended to `log`, with `envs` added. Returns its PID (callers that
/// stop it later find it by a marker in its command line, [`stop_marked`]).
pub fn spawn_argv_env(
    argv: &[String],
    envs: &[(&str, &std::ffi::OsStr)],
    log: &std::path::Path,
) -> crate::Result<u32> {
    use std::os::unix::process::CommandExt;
    let what = format!("starting {}", argv.join(" "));
    let os = |action: String, err| crate::Error::Os {
        action,
        err,
        hint: None,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| os(format!("opening {}", log.display()), e))?;
    let f2 = f.try_clone().map_err(|e| os(what.clone(), e))?;
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(f2)
        .process_group(0)
        .spawn()
        .map_err(|e| os(what.clone(), e))?;
    Ok(child.id())
}

/// The command line of a live (not zombie) process.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Stop the process `pid` if its command line still contains `marker`
/// (so a reused PID is never touched): SIGTERM, then SIGKILL after
/// `timeout`. True when no such process runs any more.
pub fn stop_marked(pid: u32, marker: &str, timeout: Duration) -> bool {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let ours = |pid| cmdline(pid).is_some_and(|c| c.iter().any(|a| a.contains(marker)));
    if !ours(pid) {
        return true;
    }
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if !ours(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(p, Signal::SIGKILL);
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(2) {
        if !ours(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Make SIGTERM and SIGINT set the returned flag instead of ending the
/// process (a server loop checks it and ends cleanly).
pub fn stop_on_signals() -> &'static std::sync::atomic::AtomicBool {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
    }
    &STOP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_stop_by_pid_and_start_time() {
        let dir = std::env::temp_dir().join(format!("weft-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = spawn_detached(Path::new("/bin/sleep"), &["30"], &dir.join("log")).unwrap();
        assert!(is_running(p));
        // Same pid, other start time: not ours, left alone.
        let other = ProcId {
            start_time: p.start_time + 1,
            ..p
        };
        assert!(!is_running(other));
        assert!(!stop(other, Duration::from_millis(10)).unwrap());
        assert!(is_running(p));
        assert!(stop(p, Duration::from_secs(2)).unwrap());
        assert!(!is_running(p));
        assert!(start_time(std::process::id()).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Lines laid out as the kernel writes /proc/PID/stat (a name with
    /// spaces and a parenthesis, 52 fields).
    #[test]
    fn a_process_tearing_down_is_not_running_and_a_zombie_does_not_exist() {
        let live = "4242 (weft (dp) x) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 3 0 987654 10000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(live).unwrap();
        assert_eq!(s.start_time, 987654);
        assert!(!s.exiting);
        // The same process after SIGKILL, in do_exit: flags | PF_EXITING.
        let dying = live
            .replace(" 4194560 ", " 4194564 ")
            .replacen(") S ", ") R ", 1);
        let s = parse_stat(&dying).unwrap();
        assert_eq!(s.start_time, 987654);
        assert!(s.exiting);
        // Killed, not yet run since: SIGKILL (bit 8) pending, field 31.
        let killed = live.replace(
            " 18446744073709551615 1 1 0 0 0 0 ",
            " 18446744073709551615 1 1 0 0 0 256 ",
        );
        assert_ne!(killed, live);
        let s = parse_stat(&killed).unwrap();
        assert!(s.exiting);
        let zombie = live.replacen(") S ", ") Z ", 1);
        assert!(parse_stat(&zombie).is_none());
        assert!(parse_stat("4242 (x) S 1").is_none());
    }
}
