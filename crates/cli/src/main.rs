//! The `weft` command: a thin layer over the `weft` library.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod capture;
mod events;
mod graph;
mod import;
mod k8s;
mod render;
mod runtime;
mod trace;
mod tunnel;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Build, run, inspect and tear down Linux virtual networks"
)]
struct Cli {
    /// Log what weft does (also: RUST_LOG=weft=debug).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a lab from a topology file, or apply the file's changes to it.
    Up {
        file: PathBuf,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// On failure, leave what this run made in place.
        #[arg(long)]
        keep_on_error: bool,
        /// Print only errors.
        #[arg(short, long)]
        quiet: bool,
        /// Worker threads (default: the number of CPUs, at most 4).
        #[arg(long)]
        threads: Option<usize>,
        /// Build this machine's share of a lab that spans machines (its
        /// nodes and its ends of vxlan and tunnel links).
        #[arg(long)]
        machine: Option<String>,
        /// Seconds to wait for the lab to become usable (ports forwarding)
        /// before giving up and undoing the run (default: as long as the
        /// spanning tree timers in force need).
        #[arg(long, value_name = "SECS")]
        ready_timeout: Option<f64>,
        /// Spread a lab whose file declares no machines over N machines
        /// (LAB-0 .. LAB-{N-1}, underlays LAB-i.LAB; docs/topology.md).
        #[arg(long, requires = "machine")]
        machines: Option<usize>,
    },
    /// Remove a lab: every namespace, interface, address and route it made.
    Down {
        /// The lab's name, or its topology file.
        lab: String,
        /// Return without waiting for the kernel to finish the removal.
        #[arg(long)]
        no_wait: bool,
        /// Remove this machine's share of a lab that spans machines.
        #[arg(long)]
        machine: Option<String>,
        /// Leave processes other than the lab's services running (they
        /// keep their deleted namespaces alive).
        #[arg(long)]
        keep_processes: bool,
    },
    /// Show labs, their nodes, interfaces, addresses, bridges and ports.
    Status {
        /// A lab's name (or its file); all labs without it.
        lab: Option<String>,
        /// Machine-readable output (shape in docs/status.md).
        #[arg(long)]
        json: bool,
        /// Only this machine's share of a lab that spans machines.
        #[arg(long, requires = "lab")]
        machine: Option<String>,
    },
    /// Run a command inside a node, like `ip netns exec`.
    Exec {
        lab: String,
        node: String,
        #[arg(last = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// Run the lab's health checks (the file's [[checks]]) now.
    Check {
        /// The lab's name, or its topology file.
        lab: String,
    },
    /// Send ICMP echo requests from a node to a node name or address.
    Ping {
        lab: String,
        node: String,
        /// A node name (its addresses) or an IP address.
        target: String,
        /// Number of requests.
        #[arg(short = 'c', long, default_value_t = 3)]
        count: u32,
        /// Seconds between requests.
        #[arg(short = 'i', long, default_value_t = 0.2)]
        interval: f64,
        /// Seconds to wait for each reply.
        #[arg(short = 'W', long, default_value_t = 1.0)]
        timeout: f64,
        /// Send out of this interface (SO_BINDTODEVICE), like `ping -I`.
        #[arg(short = 'I', long)]
        interface: Option<String>,
        /// Payload bytes.
        #[arg(short = 's', long, default_value_t = 56)]
        size: usize,
    },
    /// Record packets of interfaces into one pcapng file (docs/capture.md).
    ///
    /// Capture points: NODE:IFACE; NODE (all its interfaces; a bridge node:
    /// all its ports); link:NODE:IFACE (both ends of a veth). Then an
    /// optional filter: host, net, port (src/dst), tcp, udp, icmp, icmp6,
    /// arp, ip, ip6, vlan [ID], and, or, not, ( ).
    Capture {
        lab: String,
        /// Capture points, then the filter.
        #[arg(required = true)]
        words: Vec<String>,
        /// Write pcapng to this file, or `-` for stdout (flushed per
        /// packet: `| wireshark -k -i -`). Without it: one line per packet.
        #[arg(short = 'w', long)]
        write: Option<String>,
        /// Stop after this many packets.
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Print what happens in a lab as it happens: spanning-tree role and
    /// state changes, topology changes, FDB learning, links down and up,
    /// impairment, checks, counters (docs/events.md).
    Events {
        lab: String,
        /// One JSON object a line (the documented, versioned shape).
        #[arg(long)]
        json: bool,
        /// First replay what is kept from this far back: 30s, 5m, 2h, all.
        #[arg(long)]
        since: Option<String>,
        /// Print what is kept and stop instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// A local web page drawing the lab live, with its events, nodes'
    /// interfaces and routes, and buttons for links, impairment and
    /// captures (its /api/ requests need the token printed at start).
    Serve {
        /// The lab; may be left out when there is only one.
        lab: Option<String>,
        /// Address to listen on; 127.0.0.1 with a free port unless given.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Draw a lab: a live lab by name (with link state), or a file before `up`.
    Graph {
        /// The lab's name, or a topology file.
        lab: String,
        /// text (box diagram), dot (Graphviz) or svg.
        #[arg(long, default_value = "text")]
        format: String,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// List the MACs a userspace switch has learned, like `bridge fdb show`.
    Fdb {
        lab: String,
        switch: String,
        #[arg(long)]
        json: bool,
    },
    /// Take a link of a running lab down or bring it back up, like pulling
    /// its cable (A and B: node names, or NODE:IFACE when they share
    /// several links). `weft up` of the file undoes it.
    Link {
        lab: String,
        a: String,
        b: String,
        /// down or up.
        state: String,
    },
    /// Delay, lose, duplicate, reorder or rate-limit the frames of a link
    /// in a running lab: its switch end, a wire between two kernel ends, or
    /// a tunnel link's processes (docs/conditions.md). `weft up` of the
    /// file undoes it.
    Impair(runtime::ImpairArgs),
    /// Serve a lab's switches (started by `weft up`, stopped by `weft down`).
    #[command(hide = true)]
    Datapath { lab: String },
    /// Run a lab's services (started by `weft up`, stopped by `weft down`).
    #[command(hide = true)]
    Supervise { lab: String },
    /// Print the output of a node's service (or container), kept in the
    /// lab's state directory (the newest 1-2 MiB).
    Logs {
        lab: String,
        /// NODE:SERVICE, or NODE when it runs one service or a container.
        target: String,
        /// Keep printing what it writes, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Explain, step by step, what happens to a ping from a node to a target,
    /// and prove it with a real probe captured on every interface of the path.
    Trace {
        lab: String,
        node: String,
        /// A node name (its address) or an IP address.
        target: String,
        /// Send out of this interface, like `ping -I`.
        #[arg(short = 'I', long)]
        interface: Option<String>,
        /// Probe with a UDP datagram to this port instead of a ping.
        #[arg(long, conflicts_with = "tcp")]
        udp: Option<u16>,
        /// Probe with a TCP connection attempt to this port.
        #[arg(long)]
        tcp: Option<u16>,
    },
    /// Make a tunnel key pair: the private key into FILE (mode 0600), the
    /// public key into FILE.pub and onto stdout.
    Keygen(tunnel::KeygenArgs),
    /// Run an encrypted tunnel to one peer over UDP or TCP (a VTun
    /// replacement); docs/tunnel.md.
    Tunnel(tunnel::TunnelArgs),
    /// Keep one machine's share of a lab built, in the foreground, until
    /// SIGTERM (a pod's main process; docs/scale.md).
    Agent(agent::AgentArgs),
    /// Print the Kubernetes objects (ConfigMap, headless Service,
    /// StatefulSet of agents) that run the lab over a cluster.
    K8s(k8s::K8sArgs),
    /// Write the lab file for a shell script or a containerlab topology
    /// (docs/import.md).
    Import(import::ImportArgs),
    /// Run a command (default: your shell) in weft's user namespace, where a
    /// user who is not root sees the labs: `weft enter -- ip netns list`
    /// (docs/library.md#without-root).
    Enter {
        #[arg(last = true)]
        cmd: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `weft ... | head -1` ends quietly; the servers keep ignoring SIGPIPE,
    // and capture ends on EPIPE itself (exit 0 when wireshark closes).
    if !matches!(
        cli.cmd,
        Cmd::Datapath { .. } | Cmd::Tunnel(_) | Cmd::Capture { .. } | Cmd::Serve { .. }
    ) {
        weft_sys::default_sigpipe();
    }
    // Without root, every command that touches labs first joins the
    // caller's user namespace (made if missing), while this process has a
    // single thread, as setns requires; the tunnel and the commands that
    // only read or write files stay where they are.
    if !matches!(
        cli.cmd,
        Cmd::Keygen(_) | Cmd::Tunnel(_) | Cmd::Import(_) | Cmd::K8s(_)
    ) && weft_sys::userns::wanted()
    {
        match weft_sys::userns::join() {
            Err(e) => {
                eprintln!("weft: {e}");
                return ExitCode::FAILURE;
            }
            Ok(j) if j.stranded > 0 => eprintln!(
                "weft: ended {} process(es) left in the user namespace of a killed keeper",
                j.stranded
            ),
            Ok(_) => {}
        }
    }
    if let Cmd::Enter { cmd } = &cli.cmd {
        let mut argv = cmd.clone();
        if argv.is_empty() {
            argv.push(std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into()));
        }
        let mut c = std::process::Command::new(&argv[0]);
        c.args(&argv[1..]);
        let e = std::os::unix::process::CommandExt::exec(&mut c);
        eprintln!("weft enter: running {}: {e}", argv[0].to_string_lossy());
        return ExitCode::from(125);
    }
    // exec must stay single-threaded until it has entered the namespace, so
    // it runs before anything that could start a thread.
    if let Cmd::Exec { lab, node, cmd } = &cli.cmd {
        // Its causes and its help, as every other command prints them.
        let r = weft::exec_target(lab, node).map_err(|e| match e.help() {
            Some(h) => format!("{}\nhelp: {h}", chain(&e)),
            None => chain(&e),
        });
        let err = match r {
            Ok(weft::ExecTarget::Netns(ns)) => match weft_sys::exec::exec_in(&ns, cmd) {
                Err(e) => e.to_string(),
                Ok(never) => match never {},
            },
            Ok(weft::ExecTarget::Node { netns, mntns }) => {
                match weft_sys::exec::exec_in_node(&netns, &mntns, cmd) {
                    Err(e) => e.to_string(),
                    Ok(never) => match never {},
                }
            }
            Ok(weft::ExecTarget::Container(name)) => {
                let mut argv: Vec<OsString> = vec!["podman".into(), "exec".into(), "-i".into()];
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    argv.push("-t".into());
                }
                argv.push(name.into());
                argv.extend(cmd.iter().cloned());
                let mut c = std::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                let e = std::os::unix::process::CommandExt::exec(&mut c);
                format!("running podman exec: {e}")
            }
            Err(e) => e,
        };
        eprintln!("weft exec: {err}");
        return ExitCode::from(125);
    }
    if matches!(cli.cmd, Cmd::Datapath { .. }) {
        // Its log goes to /run/weft/labs/LAB/datapath.log.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("weft_datapath=info"))
            .with_writer(std::io::stderr)
            .try_init();
    } else {
        init_logging(cli.verbose);
    }
    // Labs a program built with weft::Lab and then died without removing
    // (a test killed with SIGKILL) go at the next weft command
    // (docs/library.md#cleanup).
    if !matches!(
        cli.cmd,
        Cmd::Datapath { .. } | Cmd::Tunnel(_) | Cmd::Agent(_)
    ) {
        for r in weft::reap_orphans() {
            eprintln!(
                "weft: removed lab {}, whose program died without removing it",
                r.lab
            );
        }
    }
    let r = match cli.cmd {
        Cmd::Up {
            file,
            dry_run,
            keep_on_error,
            quiet,
            threads,
            machine,
            ready_timeout,
            machines,
        } => up(
            &file,
            UpFlags {
                dry_run,
                keep_on_error,
                quiet,
                threads,
                ready_timeout,
                machines,
            },
            machine.as_deref(),
        ),
        Cmd::Down {
            lab,
            no_wait,
            machine,
            keep_processes,
        } => down(&lab, no_wait, machine.as_deref(), keep_processes),
        // The file too, as `down` and `check` take it.
        Cmd::Status { lab, json, machine } => match lab.map(|l| name_or_file(&l)).transpose() {
            Err(e) => Err(e),
            Ok(lab) => {
                let key = lab.map(|l| weft::machines::key(&l, machine.as_deref()));
                status(key.as_deref(), json)
            }
        },
        Cmd::Check { lab } => check(&lab),
        Cmd::Ping {
            lab,
            node,
            target,
            count,
            interval,
            timeout,
            interface,
            size,
        } => render::ping(
            &lab, &node, &target, count, interval, timeout, interface, size,
        ),
        Cmd::Capture {
            lab,
            words,
            write,
            count,
            duration,
        } => capture::run(capture::Args {
            lab,
            words,
            write,
            count,
            duration,
        }),
        Cmd::Graph {
            lab,
            format,
            output,
        } => graph::run(&lab, &format, output.as_deref()),
        Cmd::Serve { lab, listen } => serve(lab, listen),
        Cmd::Events {
            lab,
            json,
            since,
            no_follow,
        } => events::run(&lab, json, since.as_deref(), !no_follow),
        Cmd::Fdb { lab, switch, json } => render::fdb(&lab, &switch, json),
        Cmd::Datapath { lab } => datapath(&lab),
        Cmd::Supervise { lab } => weft::services::supervise(&lab)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Failure::from),
        Cmd::Logs {
            lab,
            target,
            follow,
        } => logs(&lab, &target, follow),
        Cmd::Link { lab, a, b, state } => runtime::link(&lab, &a, &b, &state),
        Cmd::Impair(args) => runtime::impair(&args),
        Cmd::Trace {
            lab,
            node,
            target,
            interface,
            udp,
            tcp,
        } => {
            let probe = match (udp, tcp) {
                (Some(p), _) => weft::trace::Probe::Udp(p),
                (_, Some(p)) => weft::trace::Probe::Tcp(p),
                _ => weft::trace::Probe::Icmp,
            };
            trace::run(&lab, &node, &target, interface.as_deref(), probe)
        }
        Cmd::Keygen(a) => tunnel::keygen(&a),
        Cmd::Tunnel(a) => tunnel::run(a),
        Cmd::Import(a) => import::run(&a),
        Cmd::Agent(a) => agent::run(a),
        Cmd::K8s(a) => k8s::run(a),
        Cmd::Exec { .. } | Cmd::Enter { .. } => unreachable!(),
    };
    match r {
        Ok(code) => code,
        Err(f) => {
            f.print();
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// An error of the weft library: printed with its causes and help.
    Weft(weft::Error),
    /// An error of weft's OS layer.
    Sys(weft_sys::Error),
    /// The command line's own refusal, already worded.
    Said(String),
}

impl From<weft::Error> for Failure {
    fn from(e: weft::Error) -> Self {
        Failure::Weft(e)
    }
}

impl From<weft_topo::Error> for Failure {
    fn from(e: weft_topo::Error) -> Self {
        Failure::Weft(e.into())
    }
}

impl From<weft_sys::Error> for Failure {
    fn from(e: weft_sys::Error) -> Self {
        Failure::Sys(e)
    }
}

impl From<weft_serve::Error> for Failure {
    fn from(e: weft_serve::Error) -> Self {
        match e {
            weft_serve::Error::Lab(e) => Failure::Weft(e),
            e => Failure::Said(e.to_string()),
        }
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Said(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Said(s.to_string())
    }
}

/// An error and its causes on one line, each cause once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        // A wrapper that already printed its cause's text (io::Error
        // inside weft_sys::Error) adds nothing.
        if !s.ends_with(&t) {
            s = format!("{s}: {t}");
        }
        cur = c.source();
    }
    s
}

impl Failure {
    /// Print it for a person: what failed, then (for a failed `up`) what
    /// became of the lab, then what to do.
    fn print(&self) {
        match self {
            Failure::Weft(weft::Error::Up {
                lab,
                error,
                outcome,
            }) => {
                for line in chain(error.as_ref()).lines() {
                    eprintln!("weft: {line}");
                }
                eprintln!("weft: {}", outcome.describe(lab));
                if let Some(h) = self.help() {
                    eprintln!("help: {h}");
                }
            }
            // A bad file (`weft agent`'s, say) is shown as `weft up`
            // shows it: every problem at its line, not only the first.
            Failure::Weft(weft::Error::File(f)) => {
                show_diagnostics(&f.path, &f.source_text, &f.diagnostics.0, false);
                eprintln!(
                    "weft: {}: {} problem(s); nothing was changed",
                    f.path.display(),
                    f.diagnostics.0.len()
                );
            }
            Failure::Weft(e) => {
                for line in chain(e).lines() {
                    eprintln!("weft: {line}");
                }
                if let Some(h) = e.help() {
                    eprintln!("help: {h}");
                }
            }
            Failure::Sys(e) => eprintln!("weft: {}", chain(e)),
            Failure::Said(s) => eprintln!("weft: {s}"),
        }
    }

    fn help(&self) -> Option<String> {
        match self {
            Failure::Weft(e) => e.help(),
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Weft(e) => write!(f, "{}", chain(e)),
            Failure::Sys(e) => write!(f, "{}", chain(e)),
            Failure::Said(s) => write!(f, "{s}"),
        }
    }
}

fn init_logging(verbose: bool) {
    let filter = if verbose {
        tracing_subscriber::EnvFilter::new("weft=debug,weft_sys=debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Print the diagnostics of a file with the lines around each (at most
/// [`render::MAX_FILE_PROBLEMS`] of them).
fn show_diagnostics(path: &Path, text: &str, diags: &[weft_topo::Diagnostic], warning: bool) {
    eprint!("{}", render::file_diagnostics(path, text, diags, warning));
}

/// `weft up`'s switches.
struct UpFlags {
    dry_run: bool,
    keep_on_error: bool,
    quiet: bool,
    threads: Option<usize>,
    ready_timeout: Option<f64>,
    /// `--machines N`.
    machines: Option<usize>,
}

fn up(file: &Path, flags: UpFlags, machine: Option<&str>) -> Result<ExitCode, Failure> {
    let UpFlags {
        dry_run,
        keep_on_error,
        quiet,
        threads,
        ready_timeout,
        machines,
    } = flags;
    let ready_timeout = match ready_timeout {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(format!("--ready-timeout {s}: give a number of seconds above 0").into())
        }
        s => s.map(std::time::Duration::from_secs_f64),
    };
    let mut parsed = match weft::parse_file(file) {
        Ok(p) => p,
        Err(e) => {
            show_diagnostics(&e.path, &e.source_text, &e.diagnostics.0, false);
            return Err(format!(
                "{} was not applied: {} problem(s); nothing was changed",
                file.display(),
                e.diagnostics.0.len()
            )
            .into());
        }
    };
    if !quiet && !parsed.warnings.is_empty() {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        show_diagnostics(file, &text, &parsed.warnings, true);
    }
    parsed.lab = share(&parsed.lab, file, machine, machines)?;
    // A bar for long runs: many nodes, or STP's listening and learning wait.
    let stp = parsed
        .lab
        .nodes
        .values()
        .flat_map(|n| n.interfaces.values())
        .any(|i| matches!(&i.kind, weft_topo::IfaceKind::Bridge(b) if b.stp));
    let progress = render::Progress::new(
        !quiet && std::io::stderr().is_terminal() && (parsed.lab.nodes.len() >= 20 || stp),
    );
    let on_event = |e: weft::Event| progress.event(e);
    let mut opts = weft::UpOptions {
        dry_run,
        keep_on_error,
        source: Some(std::fs::canonicalize(file).unwrap_or(file.to_path_buf())),
        progress: &on_event,
        ready_timeout,
        ..Default::default()
    };
    if let Some(t) = threads {
        opts.threads = t.max(1);
    }
    let report = weft::up(&parsed.lab, &opts);
    progress.finish();
    let report = report?;
    let name = &parsed.lab.name;
    if dry_run {
        if report.plan.is_empty() {
            println!("lab {name} matches {}: nothing to change", file.display());
        } else {
            let (a, c, r) = report.plan.summary();
            println!("plan for lab {name}: {a} to add, {c} to change, {r} to remove (dry run: nothing changed)");
            print!("{}", report.plan);
        }
        return Ok(ExitCode::SUCCESS);
    }
    for w in &report.warnings {
        eprintln!("weft: warning: {w}");
    }
    if quiet {
        // -q prints less; the lab's event stream is the same.
        if report.changed {
            record_up(name, &report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if report.recovered > 0 {
        println!(
            "removed {} namespace(s) left by an interrupted `weft up` of {name}",
            report.recovered
        );
    }
    if !report.changed {
        println!("lab {name} is up to date: nothing to change");
        return Ok(ExitCode::SUCCESS);
    }
    let (a, c, r) = report.plan.summary();
    let lines = report.plan.lines();
    if lines.len() <= 60 {
        for l in &lines {
            println!("{l}");
        }
    } else {
        println!(
            "({} changes; `weft up --dry-run` on a changed file lists them)",
            lines.len()
        );
    }
    println!(
        "lab {name} is up: {a} added, {c} changed, {r} removed in {:.0} ms, usable after {:.0} ms more",
        report.apply_time.as_secs_f64() * 1e3,
        report.wait_time.as_secs_f64() * 1e3
    );
    record_up(name, &report);
    if !report.checks.is_empty() {
        println!("{} check(s) passed", report.checks.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `lab.up` with the plan, and the checks `up` ran, in the lab's events.
fn record_up(name: &str, report: &weft::UpReport) {
    let (a, c, r) = report.plan.summary();
    let mut evs = vec![weft::events::Event::new("lab.up")
        .with("added", a)
        .with("changed", c)
        .with("removed", r)
        .with(
            "changes",
            report
                .plan
                .lines()
                .into_iter()
                .take(500)
                .collect::<Vec<_>>(),
        )];
    evs.extend(report.checks.iter().map(check_event));
    weft::events::record_all(name, &evs);
}

fn serve(lab: Option<String>, listen: std::net::SocketAddr) -> Result<ExitCode, Failure> {
    let lab = match lab {
        Some(l) => l,
        None => {
            let labs: Vec<String> = weft::status(None)?.into_iter().map(|l| l.name).collect();
            match labs.as_slice() {
                [one] => one.clone(),
                [] => return Err("no lab is up; `weft up FILE` builds one".into()),
                more => {
                    return Err(format!(
                        "{} labs are up ({}); name one: weft serve NAME",
                        more.len(),
                        more.join(", ")
                    )
                    .into())
                }
            }
        }
    };
    let weft_bin = std::env::current_exe().map_err(|e| format!("finding the weft binary: {e}"))?;
    let s = weft_serve::bind(weft_serve::Options {
        lab: lab.clone(),
        listen,
        weft: weft_bin,
    })?;
    if weft_serve::is_exposed(&s.addr) {
        eprintln!(
            "weft: warning: serving lab {lab} on {}, reachable from other machines; anyone with the token can change the lab",
            s.addr
        );
    }
    println!("weft serve: lab {lab} on {}", s.url());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    s.run();
    Ok(ExitCode::SUCCESS)
}

fn check_event(c: &weft::CheckResult) -> weft::events::Event {
    weft::events::Event::new("check")
        .with("check", c.check.to_string())
        .with("ok", c.ok)
        .with("detail", c.detail.clone())
}

fn check(lab: &str) -> Result<ExitCode, Failure> {
    let name = if lab.ends_with(".toml") || Path::new(lab).is_file() {
        lab_name_of(Path::new(lab), "check")?
    } else {
        lab.to_string()
    };
    let r = weft::check(&name)?;
    for w in &r.warnings {
        eprintln!("weft: warning: {w}");
    }
    if r.results.is_empty() {
        println!("lab {name} has no checks (add [[checks]] to its file)");
        return Ok(ExitCode::SUCCESS);
    }
    for c in &r.results {
        println!("{c}");
    }
    let evs: Vec<_> = r.results.iter().map(check_event).collect();
    weft::events::record_all(&name, &evs);
    let failed = r.results.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        return Err(format!(
            "lab {name}: {failed} of {} check(s) failed",
            r.results.len()
        )
        .into());
    }
    println!("lab {name}: {} check(s) passed", r.results.len());
    Ok(ExitCode::SUCCESS)
}

/// What this `weft up` builds: the lab, or this machine's share of it
/// (placed over `--machines N`, underlay names resolved, key files relative
/// to the topology file).
fn share(
    lab: &weft_topo::Lab,
    file: &Path,
    machine: Option<&str>,
    spread: Option<usize>,
) -> Result<weft_topo::Lab, Failure> {
    let dir = std::fs::canonicalize(file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    Ok(weft::machines::prepare(lab, machine, spread, &dir)?)
}

fn logs(lab: &str, target: &str, follow: bool) -> Result<ExitCode, Failure> {
    let node = target.split(':').next().unwrap_or_default();
    let st = weft::built_with(lab, node)?;
    let mut out = std::io::stdout().lock();
    // `weft logs -f ... | head` ends once head has what it wanted, not
    // at the service's next line.
    let gone = || weft_sys::reader_gone(std::os::fd::AsFd::as_fd(&std::io::stdout()));
    weft::services::logs(&st.lab, target, follow, &mut out, &gone)?;
    Ok(ExitCode::SUCCESS)
}

fn down(
    lab: &str,
    no_wait: bool,
    machine: Option<&str>,
    keep_processes: bool,
) -> Result<ExitCode, Failure> {
    let name = if lab.ends_with(".toml") || Path::new(lab).is_file() {
        lab_name_of(Path::new(lab), "down")?
    } else {
        lab.to_string()
    };
    let shares = weft::machines::shares_of(&name);
    if machine.is_none() && !shares.is_empty() && weft::state::load(&name).ok().flatten().is_none()
    {
        return Err(format!(
            "lab {name} is built here as machine shares ({}): name one with --machine",
            shares.join(", ")
        )
        .into());
    }
    let name = weft::machines::key(&name, machine);
    let r = weft::down(
        &name,
        &weft::DownOptions {
            no_wait,
            keep_processes,
        },
    )?;
    for s in &r.services {
        println!("stopped service {s}");
    }
    for e in &r.ended {
        println!("ended process {} ({}) in {}", e.pid, e.comm, e.netns);
    }
    for (ns, pids) in &r.held {
        eprintln!(
            "weft: warning: {ns} was deleted, but processes still run in it and keep it alive: {}; they were not touched{}",
            pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
            if keep_processes { " (--keep-processes)" } else { " (they hold it open without running in it)" }
        );
    }
    if r.removed.is_empty() {
        println!("lab {name}: nothing to remove");
    } else {
        println!(
            "lab {name} is down: removed {} namespace(s)",
            r.removed.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A lab's name, or the name in a lab file given instead (`weft status`).
fn name_or_file(lab: &str) -> Result<String, Failure> {
    if lab.ends_with(".toml") || Path::new(lab).is_file() {
        lab_name_of(Path::new(lab), "status")
    } else {
        Ok(lab.to_string())
    }
}

/// The lab name of a file, even a file that no longer passes the checks
/// (for `weft CMD FILE`).
fn lab_name_of(path: &Path, cmd: &str) -> Result<String, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let v: toml::Table = text.parse().map_err(|e| {
        format!(
            "{}: {e}\nthe lab's name cannot be read from a file that is not valid TOML: give the name instead, `weft {cmd} NAME` (`weft status` lists the labs)",
            path.display()
        )
    })?;
    Ok(v.get("name")
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "{} has no `name`; give the lab's name instead",
                path.display()
            )
        })?)
}

fn status(lab: Option<&str>, json: bool) -> Result<ExitCode, Failure> {
    let labs = weft::status(lab)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&labs).expect("serializes")
        );
    } else if labs.is_empty() {
        println!("no labs on this machine");
    } else {
        print!("{}", render::status_table(&labs));
    }
    Ok(ExitCode::SUCCESS)
}

fn datapath(lab: &str) -> Result<ExitCode, Failure> {
    let st = weft::built(lab)?;
    weft_datapath::run(&st.lab, &weft::datapath::control_path(lab))
        .map_err(|e| format!("datapath of lab {lab}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
