//! Collected samples and the Markdown they become.

use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// The kernel's floor: `starfloor`, the least a program does.
    Floor,
    Step,
    Batch,
    Weft,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Floor, Method::Step, Method::Batch, Method::Weft];
    pub fn label(self) -> &'static str {
        match self {
            Method::Floor => "floor",
            Method::Step => "per-step script",
            Method::Batch => "ip -batch",
            Method::Weft => "weft",
        }
    }
}

/// One build-and-remove, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub up: f64,
    /// Until the removal commands returned.
    pub down_cmd: f64,
    /// Until the kernel had destroyed the namespaces (sentinel signal).
    pub down_done: f64,
    pub maxrss_kib: i64,
}

#[derive(Clone, Debug)]
pub enum Cell {
    Ok(Vec<Sample>),
    Failed(String),
    Skipped(String),
}

#[derive(Default)]
pub struct Report {
    pub machine: String,
    pub runs: usize,
    pub sizes: Vec<usize>,
    pub methods: Vec<Method>,
    pub cells: BTreeMap<(usize, Method), Cell>,
    /// Kernel time to destroy the sentinel alone, included in every "down" figure.
    pub sentinel_s: Option<f64>,
}

/// Median, min, max.
pub fn summary(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((med, v[0], v[n - 1]))
}

fn secs(v: Vec<f64>) -> String {
    match summary(v) {
        Some((m, lo, hi)) if lo == hi => format!("{m:.3}"),
        Some((m, lo, hi)) => format!("{m:.3} ({lo:.3}–{hi:.3})"),
        None => "—".into(),
    }
}

impl Report {
    fn samples(&self, n: usize, m: Method) -> Option<&[Sample]> {
        match self.cells.get(&(n, m)) {
            Some(Cell::Ok(v)) if !v.is_empty() => Some(v),
            _ => None,
        }
    }

    fn median(&self, n: usize, m: Method, f: impl Fn(&Sample) -> f64) -> Option<f64> {
        summary(self.samples(n, m)?.iter().map(f).collect()).map(|s| s.0)
    }

    fn cell(&self, n: usize, m: Method, f: impl Fn(&Sample) -> f64) -> String {
        match self.cells.get(&(n, m)) {
            Some(Cell::Ok(v)) => secs(v.iter().map(f).collect()),
            Some(Cell::Failed(_)) => "**FAILED**".into(),
            Some(Cell::Skipped(_)) => "skipped".into(),
            None => "—".into(),
        }
    }

    fn ratio(&self, n: usize, num: Method, den: Method, f: fn(&Sample) -> f64) -> String {
        self.ratio_with(n, num, f, den, f)
    }

    fn ratio_with(
        &self,
        n: usize,
        num: Method,
        fnum: impl Fn(&Sample) -> f64,
        den: Method,
        fden: impl Fn(&Sample) -> f64,
    ) -> String {
        match (self.median(n, num, fnum), self.median(n, den, fden)) {
            (Some(a), Some(b)) if b > 0.0 && num == Method::Weft && den == Method::Floor => {
                format!("{:.2}×", a / b)
            }
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
            _ => "—".into(),
        }
    }

    pub fn any_failed(&self) -> bool {
        self.cells.values().any(|c| matches!(c, Cell::Failed(_)))
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let (fl, st, ba, we) = (Method::Floor, Method::Step, Method::Batch, Method::Weft);
        let _ = writeln!(o, "## Star build benchmark (`bench/`, binary `star`)\n");
        let _ = writeln!(o, "{}\n", self.machine);
        let _ = writeln!(
            o,
            "Star of N hosts on one bridge, each host its own namespace. Seconds: median of \
             {} run(s), (min–max). Ratios are of medians: build is method / weft (above 1×: \
             weft faster), except weft / floor (how far weft is above the least any program \
             needs; 1× is the floor); removal is weft / ip -batch (below 1×: weft faster).\n",
            self.runs
        );

        let _ = writeln!(o, "### Build (`up`): until the lab is built\n");
        let _ = writeln!(
            o,
            "| hosts | floor | per-step script | ip -batch | weft | weft / floor | per-step / weft | ip -batch / weft | weft peak RSS |"
        );
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &n in &self.sizes {
            let rss = match self.samples(n, we) {
                Some(v) => {
                    let max = v.iter().map(|s| s.maxrss_kib).max().unwrap_or(0);
                    format!("{:.1} MiB", max as f64 / 1024.0)
                }
                None => "—".into(),
            };
            let _ = writeln!(
                o,
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {rss} |",
                self.cell(n, fl, |s| s.up),
                self.cell(n, st, |s| s.up),
                self.cell(n, ba, |s| s.up),
                self.cell(n, we, |s| s.up),
                self.ratio(n, we, fl, |s| s.up),
                self.ratio(n, st, we, |s| s.up),
                self.ratio(n, ba, we, |s| s.up),
            );
        }

        let _ = writeln!(
            o,
            "\n### Removal (`down`): until the kernel has destroyed the namespaces\n"
        );
        let _ = writeln!(
            o,
            "| hosts | floor | per-step script | ip -batch | weft | weft / ip -batch | commands returned: floor / per-step / ip -batch / weft |"
        );
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|");
        // weft's `down` returns only once the kernel is done (it waits with
        // the same two-sentinel signal), so its own return time is its
        // "done" time whenever the harness's check confirms that (the check
        // then takes no longer than the sentinels alone); charging it the
        // harness's check too would count the wait twice. A run whose check
        // says otherwise is charged the check's time, and flagged below.
        let alone = self.sentinel_s.unwrap_or(0.0);
        let weft_done = move |s: &Sample| {
            if s.down_done - s.down_cmd <= alone + 0.05 {
                s.down_cmd
            } else {
                s.down_done
            }
        };
        for &n in &self.sizes {
            let returned = [fl, st, ba, we]
                .map(|m| match self.median(n, m, |s| s.down_cmd) {
                    Some(v) => format!("{v:.3}"),
                    None => "—".into(),
                })
                .join(" / ");
            let _ = writeln!(
                o,
                "| {n} | {} | {} | {} | {} | {} | {returned} |",
                self.cell(n, fl, |s| s.down_done),
                self.cell(n, st, |s| s.down_done),
                self.cell(n, ba, |s| s.down_done),
                self.cell(n, we, weft_done),
                self.ratio_with(n, we, weft_done, ba, |s| s.down_done),
            );
        }

        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "\"Until the kernel has destroyed the namespaces\": after the removal commands return, \
             the harness drops a sentinel namespace, waits for the kernel to report its veth \
             gone, then does the same with a second one; namespaces are destroyed in order and in \
             batches, and the second sentinel cannot share a batch with the lab's last namespaces, \
             so the lab's are completely gone by then. weft's `down` waits the same way before it \
             returns, so its figure is the time it returned, once the same check, run after it, \
             confirms that nothing was left (the check took no longer than the sentinels alone); \
             otherwise the check's time counts and a note says so.{}",
            match self.sentinel_s {
                Some(s) => format!(
                    " Every removal figure includes one sentinel teardown (the harness's, or weft's \
                     own), measured alone at {:.3} s.",
                    s
                ),
                None => String::new(),
            }
        );
        let mut notes = Vec::new();
        // weft claims `down` returns once the kernel is done; if the sentinel still takes
        // much longer than it does alone, that claim does not hold.
        for &n in &self.sizes {
            let lag = self.median(n, we, |s| s.down_done - s.down_cmd);
            if let (Some(lag), Some(alone)) = (lag, self.sentinel_s) {
                if lag > alone + 0.05 {
                    notes.push(format!(
                        "- weft at {n} hosts: the kernel finished {lag:.3} s after `weft down` \
                         returned (sentinel alone: {alone:.3} s), so `down` returns early"
                    ));
                }
            }
        }
        for ((n, m), c) in &self.cells {
            match c {
                Cell::Failed(why) => {
                    notes.push(format!("- {} at {n} hosts FAILED: {why}", m.label()))
                }
                Cell::Skipped(why) => {
                    notes.push(format!("- {} at {n} hosts skipped: {why}", m.label()))
                }
                Cell::Ok(_) => {}
            }
        }
        notes.dedup();
        if !notes.is_empty() {
            let _ = writeln!(o, "\n{}", notes.join("\n"));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(summary(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(summary(vec![4.0, 1.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(summary(vec![]), None);
    }

    #[test]
    fn table_has_ratios_and_marks_failures() {
        let s = |up| Sample {
            up,
            down_cmd: 0.01,
            down_done: 0.2,
            maxrss_kib: 10240,
        };
        let mut r = Report {
            runs: 1,
            sizes: vec![10],
            ..Default::default()
        };
        r.cells.insert((10, Method::Step), Cell::Ok(vec![s(4.0)]));
        r.cells
            .insert((10, Method::Batch), Cell::Failed("ping".into()));
        r.cells.insert((10, Method::Weft), Cell::Ok(vec![s(0.5)]));
        r.cells.insert((10, Method::Floor), Cell::Ok(vec![s(0.4)]));
        let md = r.markdown();
        assert!(
            md.contains(
                "| 10 | 0.400 | 4.000 | **FAILED** | 0.500 | 1.25× | 8.0× | — | 10.0 MiB |"
            ),
            "{md}"
        );
        assert!(md.contains("ip -batch at 10 hosts FAILED: ping"));
        assert!(r.any_failed());
    }

    #[test]
    fn flags_a_weft_down_that_returns_before_the_kernel() {
        let s = |down_cmd| Sample {
            up: 1.0,
            down_cmd,
            down_done: 0.5,
            maxrss_kib: 0,
        };
        let mut r = Report {
            runs: 1,
            sizes: vec![10],
            sentinel_s: Some(0.015),
            ..Default::default()
        };
        r.cells.insert((10, Method::Weft), Cell::Ok(vec![s(0.49)]));
        assert!(!r.markdown().contains("returns early"));
        r.cells.insert((10, Method::Weft), Cell::Ok(vec![s(0.01)]));
        assert!(r.markdown().contains("returns early"));
    }

    #[test]
    fn weft_down_counts_its_own_return_only_when_the_check_confirms_it() {
        let sample = |down_cmd, down_done| Sample {
            up: 1.0,
            down_cmd,
            down_done,
            maxrss_kib: 0,
        };
        let mut r = Report {
            runs: 1,
            sizes: vec![10],
            sentinel_s: Some(0.030),
            ..Default::default()
        };
        r.cells
            .insert((10, Method::Batch), Cell::Ok(vec![sample(0.1, 0.5)]));
        // Verified: the check after weft took about the sentinels' own time.
        r.cells
            .insert((10, Method::Weft), Cell::Ok(vec![sample(0.45, 0.48)]));
        let md = r.markdown();
        assert!(md.contains("| 10 | — | — | 0.500 | 0.450 | 0.9× |"), "{md}");
        // Not verified: charged the check's time, and flagged.
        r.cells
            .insert((10, Method::Weft), Cell::Ok(vec![sample(0.2, 0.6)]));
        let md = r.markdown();
        assert!(md.contains("| 10 | — | — | 0.500 | 0.600 | 1.2× |"), "{md}");
        assert!(md.contains("returns early"));
    }
}
