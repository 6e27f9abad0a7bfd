//! `weft capture`: packets of one or many interfaces into one pcapng file,
//! onto stdout for a pipe, or as summary lines.

use crate::Failure;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use weft::capture::{Capture, Change, Ended, Point};
use weft_see::filter::Link;
use weft_see::pcapng::{self, LINKTYPE_ETHERNET, LINKTYPE_RAW};

pub struct Args {
    pub lab: String,
    /// Capture points, then the filter's words.
    pub words: Vec<String>,
    pub write: Option<String>,
    pub count: Option<u64>,
    pub duration: Option<f64>,
}

/// Split the trailing words: capture points first (anything with a `:`,
/// or a node's name that is not a filter word), the filter from the first
/// other word on.
fn split(lab: &weft_topo::Lab, words: &[String]) -> (Vec<String>, Vec<String>) {
    let mut points = Vec::new();
    let mut it = words.iter().peekable();
    while let Some(w) = it.peek() {
        let keyword = weft_see::filter::KEYWORDS.contains(&w.as_str());
        if w.contains(':') || (lab.nodes.contains_key(w.as_str()) && !keyword) {
            points.push(it.next().unwrap().clone());
        } else {
            break;
        }
    }
    (points, it.cloned().collect())
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    // A lab built here as machine shares: the share of the first node named.
    let first_node = a
        .words
        .first()
        .map(|w| w.strip_prefix("link:").unwrap_or(w))
        .and_then(|w| w.split(':').next())
        .unwrap_or_default();
    let st = weft::built_with(&a.lab, first_node)?;
    let (specs, filter_words) = split(&st.lab, &a.words);
    if specs.is_empty() {
        return Err(format!(
            "name at least one capture point: NODE:IFACE, a node (all its interfaces; a bridge node: all its ports), or link:NODE:IFACE (both ends of a veth); lab {} has nodes {}",
            a.lab,
            st.lab.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
        ).into());
    }
    let points = weft::capture::resolve(&st.lab, &specs)?;
    let filter = if filter_words.is_empty() {
        None
    } else {
        Some(weft_see::filter::parse(&filter_words).map_err(|e| format!("filter: {e}"))?)
    };
    let stop = weft_sys::packet::stop_on_signals()?;
    // Lines or `-w -` on stdout: `| head -3` ends the capture once head
    // has its lines, also on a link gone quiet (it waited for the next
    // packet to be killed by SIGPIPE), and quietly, as a closed pipe does.
    static READER_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if a.write.as_deref().is_none_or(|w| w == "-") {
        std::thread::spawn(move || loop {
            if weft_sys::reader_gone(std::os::fd::AsFd::as_fd(&std::io::stdout())) {
                READER_GONE.store(true, std::sync::atomic::Ordering::SeqCst);
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        });
    }
    let cap = Capture::open(points, filter.as_ref())?;
    let names: Vec<String> = cap.points.iter().map(|p| p.label()).collect();
    eprintln!(
        "weft capture: listening on {}{}",
        names.join(", "),
        if filter_words.is_empty() {
            String::new()
        } else {
            format!(" (filter: {})", filter_words.join(" "))
        }
    );
    let deadline = a
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let ifaces: Vec<(u16, u32, String)> = cap
        .links
        .iter()
        .zip(&names)
        .map(|(l, n)| {
            let lt = match l {
                Link::Ethernet => LINKTYPE_ETHERNET,
                Link::RawIp => LINKTYPE_RAW,
            };
            (lt, weft_see::filter::SNAPLEN, n.clone())
        })
        .collect();
    let result = match a.write.as_deref() {
        Some(path) => {
            let (out, flush_each): (Box<dyn Write>, bool) = if path == "-" {
                (Box::new(std::io::stdout().lock()), true)
            } else {
                let f = std::fs::File::create(path).map_err(|e| format!("creating {path}: {e}"))?;
                (Box::new(std::io::BufWriter::new(f)), false)
            };
            let mut w = pcapng::Writer::new(out, &ifaces, flush_each)
                .map_err(|e| format!("writing {path}: {e}"))?;
            let r = cap.run_watching(
                stop,
                deadline,
                a.count,
                |p| w.packet(p.point as u32, p.ts_ns, p.data, p.orig_len),
                say_change,
            );
            let fin = w.finish();
            if path != "-" {
                fin.map_err(|e| format!("writing {path}: {e}"))?;
            }
            r
        }
        None => {
            let mut out = std::io::stdout().lock();
            let links = cap.links.clone();
            let each = |p: &weft::capture::Packet| {
                let s = weft_see::decode::summarize(p.data, links[p.point])
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("{} bytes", p.data.len()));
                writeln!(
                    out,
                    "{} {} {} {s}",
                    clock(p.ts_ns),
                    names[p.point],
                    if p.outgoing { "out" } else { "in " }
                )?;
                out.flush()
            };
            cap.run_watching(stop, deadline, a.count, each, say_change)
        }
    };
    let (ended, n) = match result {
        Ok(r) => r,
        // The reader of `-w -` went away (wireshark closed): a normal end.
        Err(weft::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS)
        }
        Err(e) => return Err(e.into()),
    };
    if READER_GONE.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(ExitCode::SUCCESS);
    }
    let why = match ended {
        Ended::Count => "count reached",
        Ended::Duration => "duration over",
        Ended::Stopped => "stopped",
        Ended::Gone => "every node captured on is gone: the lab was taken down",
    };
    eprintln!("weft capture: {n} packet(s) captured ({why})");
    Ok(ExitCode::SUCCESS)
}

/// Tells the user, on stderr, what happened to an interface captured on
/// and what the capture does about it; `so_far` is the packets from it.
fn say_change(p: &Point, c: Change, so_far: u64) {
    let what = p.label();
    match c {
        Change::Down => eprintln!(
            "weft capture: {what} went down after {so_far} packet(s); captured again once it is up"
        ),
        Change::Up => eprintln!("weft capture: {what} is up again"),
        Change::Gone => eprintln!(
            "weft capture: {what} went away after {so_far} packet(s) (deleted, as a live edit does when it re-cables a link); waiting for an interface of that name, Ctrl-C ends the capture"
        ),
        Change::Back => eprintln!(
            "weft capture: {what} is there again (a new interface of that name); capturing on it"
        ),
        Change::NodeGone => eprintln!(
            "weft capture: {what}: node {} is gone (the lab was taken down), after {so_far} packet(s)",
            p.node
        ),
    }
}

/// `HH:MM:SS.uuuuuu` (UTC) of a timestamp.
fn clock(ts_ns: u64) -> String {
    let s = ts_ns / 1_000_000_000;
    let us = (ts_ns % 1_000_000_000) / 1000;
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}
