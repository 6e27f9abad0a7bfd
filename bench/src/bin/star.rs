//! Star build benchmark: weft against a per-step `ip` script and an `ip -batch` script.
//! See bench/README.md. Needs root; touches only `wb-*` namespaces and `weft-star*` labs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use weft_bench::netns::{self, Finish};
use weft_bench::proc::{self, interrupted, log_tail, run_timed};
use weft_bench::report::{Cell, Method, Report, Sample};
use weft_bench::{docs, scripts};

#[derive(Parser)]
#[command(
    about = "Time building and removing a star lab: the kernel's floor, per-step ip script, ip -batch, weft"
)]
struct Args {
    /// Numbers of hosts.
    #[arg(long, value_delimiter = ',', default_value = "10,100,500,1000")]
    sizes: Vec<usize>,
    /// Runs per size and method; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The weft binary [default: target/release/weft in the workspace].
    #[arg(long)]
    weft: Option<PathBuf>,
    /// Which methods to run (floor, step, batch, weft).
    #[arg(long, value_delimiter = ',', default_value = "step,batch,weft")]
    methods: Vec<String>,
    /// Write the table into this Markdown file, between the bench:star markers.
    #[arg(long, value_name = "FILE")]
    write_docs: Option<PathBuf>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace")
        .to_path_buf()
}

/// Generous limits. The baselines grow with N²: every `ip -n` unshares the mount
/// namespace, copying one `/run/netns` mount per existing namespace.
fn up_timeout(n: usize) -> Duration {
    let n = n as u64;
    Duration::from_millis(30_000 + 60 * n + n * n / 8)
}
fn down_timeout(n: usize) -> Duration {
    Duration::from_secs(10) + Duration::from_millis(20) * n as u32
}
const QUICK: Duration = Duration::from_secs(20);

fn lab_name(n: usize) -> String {
    format!("star{n}")
}

/// Prefix of the namespaces a method's lab uses.
fn prefix(m: Method, n: usize) -> String {
    match m {
        Method::Weft => weft_topo::netns_name(&lab_name(n), ""),
        _ => format!("wb-s{n}-"),
    }
}

/// Removes what earlier (possibly crashed) runs of the bench left behind, and only that:
/// `wb-*` namespaces, and `weft-star<N>.*` labs through `weft down`.
struct Cleaner {
    weft: Option<PathBuf>,
}

impl Cleaner {
    fn leftovers(&self) -> Result<(Vec<String>, BTreeSet<String>), String> {
        let names = netns::list()?;
        let ours = names
            .iter()
            .filter(|n| n.starts_with("wb-"))
            .cloned()
            .collect();
        let labs = names
            .iter()
            .filter_map(|n| n.strip_prefix("weft-star"))
            .filter_map(|rest| rest.split_once('.'))
            .filter(|(num, _)| !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()))
            .map(|(num, _)| format!("star{num}"))
            .collect();
        Ok((ours, labs))
    }

    fn clean(&self, keep_observer: bool) -> Result<(), String> {
        let (mut ours, labs) = self.leftovers()?;
        if keep_observer {
            ours.retain(|n| n != netns::OBSERVER);
        }
        netns::delete(&ours)?;
        for lab in labs {
            let Some(weft) = &self.weft else {
                return Err(format!(
                    "lab {lab} is left over and no weft binary to remove it (`weft down {lab}`)"
                ));
            };
            eprintln!("removing left-over lab {lab} with weft down");
            proc::output(Command::new(weft).args(["down", &lab]), None, QUICK * 3)?;
        }
        Ok(())
    }
}

impl Drop for Cleaner {
    fn drop(&mut self) {
        if let Err(e) = self.clean(false) {
            eprintln!("weft-bench: CLEANUP FAILED: {e}");
        }
        match self.leftovers() {
            Ok((a, b)) if a.is_empty() && b.is_empty() => {}
            Ok((a, b)) => eprintln!("weft-bench: namespaces left behind: {a:?} labs: {b:?}"),
            Err(e) => eprintln!("weft-bench: cannot list namespaces: {e}"),
        }
    }
}

struct Ctx {
    work: PathBuf,
    /// The `starfloor` binary, built beside this one.
    floor: PathBuf,
    weft: Option<PathBuf>,
    finish: Finish,
    cleaner: Cleaner,
}

impl Ctx {
    /// One build, check, and removal of the star with `n` hosts by method `m`.
    fn measure(&mut self, m: Method, n: usize, run: usize) -> Result<Sample, String> {
        let star = scripts::Star::new(prefix(m, n), n);
        let present = netns::list()?;
        if star.namespaces().iter().any(|ns| present.contains(ns)) {
            self.cleaner.clean(true)?;
        }
        let tag = format!("star{n}-{m:?}-{run}").to_lowercase();
        let log = |what: &str| self.work.join(format!("{tag}-{what}.log"));

        let (mut up, mut down) = match m {
            Method::Step => (self.bash(n, "step-up"), self.bash(n, "step-down")),
            Method::Batch => (self.bash(n, "batch-up"), self.bash(n, "batch-down")),
            Method::Floor => {
                let floor = |what: &str| {
                    let mut c = Command::new(&self.floor);
                    c.args([what, &star.prefix, &n.to_string()]);
                    c
                };
                (floor("up"), floor("down"))
            }
            Method::Weft => {
                let weft = self
                    .weft
                    .as_ref()
                    .expect("weft rows run only with a binary");
                let mut up = Command::new(weft);
                up.args(["up", "--quiet"])
                    .arg(self.work.join(format!("{}.toml", lab_name(n))));
                let mut down = Command::new(weft);
                down.args(["down", &lab_name(n)]);
                (up, down)
            }
        };

        let u =
            run_timed(&mut up, None, &log("up"), up_timeout(n)).map_err(|e| format!("up: {e}"))?;
        if !u.success() {
            return Err(format!(
                "up: {}: {}",
                u.describe_status(),
                log_tail(&log("up"), 5)
            ));
        }
        // Outside the timed region: a lab that does not work is not a result.
        verify(&star).map_err(|e| format!("lab not usable after up: {e}"))?;

        self.finish.arm()?;
        let d = run_timed(&mut down, None, &log("down"), down_timeout(n))
            .map_err(|e| format!("down: {e}"))?;
        let done = self.finish.wait(down_timeout(n));
        if !d.success() {
            return Err(format!(
                "down: {}: {}",
                d.describe_status(),
                log_tail(&log("down"), 5)
            ));
        }
        let done = done?;
        let left: Vec<String> = netns::list()?
            .into_iter()
            .filter(|ns| ns.starts_with(&star.prefix))
            .collect();
        if !left.is_empty() {
            return Err(format!(
                "down returned but {} namespaces remain, e.g. {}",
                left.len(),
                left[0]
            ));
        }
        Ok(Sample {
            up: u.wall().as_secs_f64(),
            down_cmd: d.wall().as_secs_f64(),
            down_done: (done - d.started).as_secs_f64(),
            maxrss_kib: u.maxrss_kib,
        })
    }

    fn bash(&self, n: usize, which: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.work.join(format!("star{n}-{which}.sh")));
        c
    }

    fn write_inputs(&self, n: usize) -> std::io::Result<()> {
        let s = scripts::Star::new(prefix(Method::Step, n), n);
        let files = [
            (format!("star{n}-step-up.sh"), scripts::per_step_up(&s)),
            (format!("star{n}-step-down.sh"), scripts::per_step_down(&s)),
            (format!("star{n}-batch-up.sh"), scripts::batch_up(&s)),
            (format!("star{n}-batch-down.sh"), scripts::batch_down(&s)),
            (
                format!("{}.toml", lab_name(n)),
                scripts::weft_lab(&lab_name(n), n),
            ),
        ];
        for (name, text) in files {
            std::fs::write(self.work.join(name), text)?;
        }
        Ok(())
    }
}

/// Every namespace exists, h1 reaches the bridge, and h1 reaches hN across it.
fn verify(star: &scripts::Star) -> Result<(), String> {
    // Each name by itself: a listing of /run/netns (`ip netns list`, one
    // readdir) missed a name or two now and then while other programs made
    // and removed their namespaces there, for every method alike.
    let missing: Vec<String> = star
        .namespaces()
        .into_iter()
        .filter(|n| !Path::new("/run/netns").join(n).exists())
        .collect();
    if let Some(first) = missing.first() {
        return Err(format!(
            "{} namespaces missing, e.g. {first}",
            missing.len()
        ));
    }
    let h1 = star.host_ns(1);
    let hn = star.host_ns(star.hosts);
    // Read hN's address from the kernel, since weft chooses its own.
    let text = proc::output(
        Command::new("ip").args(["-n", &hn, "-4", "-o", "addr", "show", "dev", "eth0"]),
        None,
        QUICK,
    )?;
    let target = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .ok_or_else(|| format!("{hn} has no IPv4 address on eth0"))?
        .to_owned();
    let mut targets = vec![scripts::BRIDGE_ADDR.to_string()];
    if star.hosts > 1 {
        targets.push(target);
    }
    for t in targets {
        proc::output(
            Command::new("ip").args(["netns", "exec", &h1, "ping", "-c1", "-W2", "-q", &t]),
            None,
            QUICK,
        )
        .map_err(|e| format!("ping {h1} -> {t} failed: {e}"))?;
    }
    Ok(())
}

fn machine_line() -> String {
    let sh = |c: &str| {
        proc::output(Command::new("sh").args(["-c", c]), None, QUICK)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    };
    format!(
        "Machine: {} cores ({}), {} GiB RAM, kernel {}, {}; weft commit {}; measured {}; \
         load average at start {}.",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'"),
        sh("awk '/MemTotal/ {printf \"%.0f\", $2/1048576}' /proc/meminfo"),
        sh("uname -r"),
        sh("ip -V | sed 's/^ip utility, //; s/,.*//'"),
        sh(&format!(
            "git -C '{}' rev-parse --short HEAD",
            workspace_root().display()
        )),
        sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        load_average().map_or("?".into(), |l| format!("{l:.2}")),
    )
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn preflight() -> Result<(), String> {
    // SAFETY: trivial syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (network namespaces)".into());
    }
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
        ("bash", "bash"),
    ] {
        proc::output(
            Command::new("sh").args(["-c", &format!("command -v {tool}")]),
            None,
            QUICK,
        )
        .map_err(|_| format!("`{tool}` not found; apt-get install {pkg}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    preflight()?;
    let mut methods = Vec::new();
    for m in &args.methods {
        methods.push(match m.as_str() {
            "floor" => Method::Floor,
            "step" => Method::Step,
            "batch" => Method::Batch,
            "weft" => Method::Weft,
            other => {
                return Err(format!(
                    "unknown method {other:?} (floor, step, batch, weft)"
                ))
            }
        });
    }
    if args.runs == 0 || args.sizes.iter().any(|&n| n == 0 || n > 60000) {
        return Err("--runs must be ≥ 1 and sizes within 1..=60000".into());
    }
    proc::install_signal_handlers();
    // Two cores: anything else running (a build in another worktree) shows up directly
    // in the per-step figures, so say so rather than publish noise silently.
    if let Some(load) = load_average().filter(|&l| l > 0.5) {
        eprintln!("warning: load average {load:.2} at start; figures will be noisy");
    }

    let root = workspace_root();
    let weft_path = args
        .weft
        .clone()
        .unwrap_or_else(|| root.join("target/release/weft"));
    let weft = weft_path.is_file().then(|| weft_path.clone());
    let want_weft = methods.contains(&Method::Weft);
    if want_weft && weft.is_none() {
        eprintln!(
            "\n!!! weft binary not found at {}\n!!! the weft rows are SKIPPED. Build it with \
             `cargo build --release -p weft-cli` or pass --weft PATH.\n",
            weft_path.display()
        );
    }
    let work = root.join("target/bench-star");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let cleaner = Cleaner { weft: weft.clone() };
    cleaner.clean(false)?;
    let mut finish = Finish::new()?;
    let mut cal = Vec::new();
    for _ in 0..3 {
        cal.push(finish.calibrate()?.as_secs_f64());
    }
    let floor = std::env::current_exe()
        .map_err(|e| format!("finding this program: {e}"))?
        .with_file_name("starfloor");
    if methods.contains(&Method::Floor) && !floor.is_file() {
        return Err(format!(
            "{} not found: cargo build --release -p weft-bench",
            floor.display()
        ));
    }
    let mut ctx = Ctx {
        work,
        floor,
        weft,
        finish,
        cleaner,
    };

    let mut report = Report {
        machine: machine_line(),
        runs: args.runs,
        sizes: args.sizes.clone(),
        methods: methods.clone(),
        cells: BTreeMap::new(),
        sentinel_s: weft_bench::report::summary(cal).map(|s| s.0),
    };
    for &n in &args.sizes {
        for &m in &methods {
            let cell = if m == Method::Weft && ctx.weft.is_none() {
                Cell::Skipped(format!("no weft binary at {}", weft_path.display()))
            } else {
                Cell::Ok(Vec::new())
            };
            report.cells.insert((n, m), cell);
        }
    }

    let started = Instant::now();
    'all: for &n in &args.sizes {
        ctx.write_inputs(n)
            .map_err(|e| format!("writing scripts: {e}"))?;
        for run in 0..args.runs {
            // Methods alternate within a run so slow drift on the machine hits all alike.
            for &m in &methods {
                let Some(Cell::Ok(samples)) = report.cells.get_mut(&(n, m)) else {
                    continue;
                };
                eprint!("n={n:<5} run {}/{} {:<16} ", run + 1, args.runs, m.label());
                match ctx.measure(m, n, run) {
                    Ok(s) => {
                        eprintln!(
                            "up {:7.3} s  down {:6.3} s (commands returned {:6.3} s)  maxrss {:6.1} MiB",
                            s.up,
                            s.down_done,
                            s.down_cmd,
                            s.maxrss_kib as f64 / 1024.0
                        );
                        samples.push(s);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e}");
                        report.cells.insert((n, m), Cell::Failed(e));
                        if let Err(e) = ctx.cleaner.clean(true) {
                            eprintln!("cleanup after failure: {e}");
                        }
                    }
                }
                if interrupted() {
                    break 'all;
                }
            }
        }
    }
    if interrupted() {
        eprintln!("interrupted; cleaning up");
        return Ok(ExitCode::from(130));
    }
    eprintln!("done in {:.0} s\n", started.elapsed().as_secs_f64());

    let md = report.markdown();
    println!("{md}");
    if let Some(path) = &args.write_docs {
        let old = std::fs::read_to_string(path).ok();
        let new = docs::replace_section(old.as_deref(), &md)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if want_weft && ctx.weft.is_none() {
        eprintln!(
            "!!! weft rows SKIPPED: no weft binary at {}",
            weft_path.display()
        );
    }
    Ok(if report.any_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
