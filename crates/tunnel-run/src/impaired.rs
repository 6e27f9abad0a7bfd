//! Impairment of the inner packets a tunnel end receives (a `kind =
//! "tunnel"` link with `impair = {...}`, docs/conditions.md): the
//! switch's pure core ([`weft_switch::impair`]) sits between decryption
//! and the device, and `weft impair` retunes it at run time through the
//! process's control socket ([`Control`]).
//!
//! The receiving end impairs, so each direction of a link is one
//! process's business, and a corrupted packet is known as such where it
//! is written: it goes to the device on its own, never coalesced with
//! others (the kernel would otherwise trust the coalesced segment's
//! checksum and hand the flipped bit to the application).

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use weft_switch::impair::{Impair, ImpairCounters};
use weft_topo::impair::{core_config, Impairment};

/// One received inner packet held by the impairment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub pkt: Vec<u8>,
    /// A bit was flipped: write it alone, so the receiver's checksum sees it.
    pub corrupted: bool,
}

fn at(now: Duration) -> weft_switch::Instant {
    weft_switch::Instant::from_nanos(now.as_nanos() as u64)
}

#[derive(Default)]
struct State {
    q: Option<Impair<Held>>,
    settings: Option<Impairment>,
    /// Counters of the queues replaced by run-time changes.
    past: ImpairCounters,
    /// Packets to write at once, before any the queue releases: what a
    /// replaced queue held, and packets passing while none is set.
    flush: Vec<Held>,
}

/// The impairment of one tunnel end's receive direction, shared by the
/// thread that writes to the device and the one that serves the control
/// socket. Without settings (and nothing held) [`Impairing::on`] is false
/// and the receive path does not come here.
#[derive(Default)]
pub struct Impairing {
    st: Mutex<State>,
    on: AtomicBool,
    /// Ever configured: the status file then shows the counters.
    used: AtomicBool,
}

impl Impairing {
    pub fn new(settings: Option<Impairment>) -> Impairing {
        let i = Impairing::default();
        if settings.is_some() {
            i.set(settings);
        }
        i
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, st: &State) {
        self.on
            .store(st.q.is_some() || !st.flush.is_empty(), Ordering::Release);
    }

    /// Whether packets go through here (settings, or packets to flush).
    pub fn on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// New settings (`None`: packets pass unchanged): a new queue, the
    /// PRNG from the settings' seed (0 without one; weft up always gives
    /// one), and what the old queue held is written at once.
    pub fn set(&self, settings: Option<Impairment>) {
        let mut st = self.lock();
        if let Some(mut old) = st.q.take() {
            let held = old.drain();
            st.past += old.counters();
            st.flush.extend(held);
        }
        st.q = settings
            .as_ref()
            .map(|i| Impair::new(core_config(i, i.seed.unwrap_or(0))));
        st.settings = settings;
        self.used.store(true, Ordering::Relaxed);
        self.update(&st);
    }

    /// Takes the packets received at `now` (since the tunnel started).
    pub fn push<'a>(&self, pkts: impl Iterator<Item = &'a [u8]>, now: Duration) {
        let mut st = self.lock();
        let st = &mut *st;
        match &mut st.q {
            Some(q) => {
                for p in pkts {
                    let h = Held {
                        pkt: p.to_vec(),
                        corrupted: false,
                    };
                    q.push_with(h, p.len(), at(now), |h, bit| {
                        h.pkt[bit / 8] ^= 0x80 >> (bit % 8);
                        h.corrupted = true;
                    });
                }
            }
            None => st.flush.extend(pkts.map(|p| Held {
                pkt: p.to_vec(),
                corrupted: false,
            })),
        }
    }

    /// Appends to `out`, in order, the packets due by `now`.
    pub fn due(&self, now: Duration, out: &mut Vec<Held>) {
        let mut st = self.lock();
        out.append(&mut st.flush);
        if let Some(q) = &mut st.q {
            while let Some(h) = q.pop_due(at(now)) {
                out.push(h);
            }
        }
        self.update(&st);
    }

    /// How long a thread waiting for packets may sleep before the next
    /// release, at most `most`; to the nanosecond (the wait,
    /// `fdio::poll_readable`, keeps it), so a release is not up to a
    /// millisecond late.
    pub fn wait(&self, now: Duration, most: Duration) -> Duration {
        if !self.on() {
            return most;
        }
        let st = self.lock();
        if !st.flush.is_empty() {
            return Duration::ZERO;
        }
        match st.q.as_ref().and_then(|q| q.next_release()) {
            None => most,
            Some(t) => {
                let ns = t.as_nanos().saturating_sub(now.as_nanos() as u64);
                Duration::from_nanos(ns).min(most)
            }
        }
    }

    /// What the status file shows: `null` if never impaired, else the
    /// settings now (`null` once cleared), the seed and the counters since
    /// the process started.
    pub fn status(&self) -> serde_json::Value {
        if !self.used.load(Ordering::Relaxed) {
            return serde_json::Value::Null;
        }
        let st = self.lock();
        let mut c = st.past;
        if let Some(q) = &st.q {
            c += q.counters();
        }
        serde_json::json!({
            "settings": st.settings.as_ref().map(|i| i.summary()),
            "seed": st.settings.as_ref().map(|i| i.seed.unwrap_or(0)),
            "offered": c.offered, "lost": c.lost, "burst_lost": c.burst_lost,
            "queue_full": c.queue_full, "corrupted": c.corrupted,
            "duplicated": c.duplicated, "reordered": c.reordered,
            "released": c.released,
            "held": st.q.as_ref().map_or(0, |q| q.len()),
        })
    }
}

/// The control socket `weft impair` retunes a running tunnel end through:
/// one request per connection, a line of JSON each way. Request
/// `{"impair": IMPAIRMENT}` (the receive direction's settings, as in
/// `weft_topo::impair::Impairment`; `null` clears); reply `{"ok": true}`
/// once the new settings are in force, or `{"error": "..."}`.
pub struct Control {
    l: UnixListener,
    path: PathBuf,
}

impl Control {
    /// Listens on `path` (a stale socket of an earlier run is replaced),
    /// readable by root only.
    pub fn bind(path: &Path) -> io::Result<Control> {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)?;
        l.set_nonblocking(true)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Control {
            l,
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.l.as_raw_fd()
    }

    /// Answers the requests waiting now.
    pub fn serve(&self, imp: &Impairing) {
        while let Ok((s, _)) = self.l.accept() {
            let _ = answer(s, imp);
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer(s: UnixStream, imp: &Impairing) -> io::Result<()> {
    s.set_nonblocking(false)?;
    // A client that connects and says nothing does not hold the tunnel up.
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        impair: Option<Impairment>,
    }
    let reply = match serde_json::from_str::<Req>(&line) {
        Ok(r) => match r.impair.as_ref().map(|i| i.check()) {
            Some(Err(e)) => serde_json::json!({ "error": e.to_string() }),
            _ => {
                imp.set(r.impair);
                serde_json::json!({ "ok": true })
            }
        },
        Err(e) => serde_json::json!({ "error": format!("bad request: {e}") }),
    };
    (&s).write_all(format!("{reply}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn packets_are_held_for_the_delay_and_pass_unchanged_when_cleared() {
        let imp = Impairing::new(Some(Impairment {
            delay_us: 10_000,
            seed: Some(1),
            ..Default::default()
        }));
        assert!(imp.on());
        imp.push([&b"one"[..], &b"two"[..]].into_iter(), ms(0));
        let mut out = vec![];
        imp.due(ms(9), &mut out);
        assert!(out.is_empty());
        assert_eq!(imp.wait(ms(9), ms(100)), ms(1));
        let ns = |n| Duration::from_nanos(n);
        assert_eq!(
            imp.wait(ns(9_999_700), ms(100)),
            ns(300),
            "not rounded to a millisecond"
        );
        imp.due(ms(10), &mut out);
        let pkts: Vec<&[u8]> = out.iter().map(|h| &h.pkt[..]).collect();
        assert_eq!(pkts, [&b"one"[..], &b"two"[..]]);

        // Cleared with a packet held: it is written at once, then the
        // path is off.
        imp.push([&b"three"[..]].into_iter(), ms(20));
        imp.set(None);
        assert!(imp.on());
        assert_eq!(imp.wait(ms(20), ms(100)), Duration::ZERO);
        out.clear();
        imp.due(ms(20), &mut out);
        assert_eq!(out[0].pkt, b"three");
        assert!(!imp.on());
        let s = imp.status();
        assert_eq!(s["settings"], serde_json::Value::Null);
        assert_eq!(s["offered"], 3);
        assert_eq!(s["released"], 3);
    }

    fn packets() -> Vec<Vec<u8>> {
        (0u32..400)
            .map(|i| [&[0x45u8; 16][..], &i.to_be_bytes()[..]].concat())
            .collect()
    }

    fn run(i: Impairment) -> (Vec<Held>, serde_json::Value) {
        let imp = Impairing::new(Some(i));
        imp.push(packets().iter().map(|p| &p[..]), ms(0));
        let mut out = vec![];
        imp.due(ms(0), &mut out);
        (out, imp.status())
    }

    #[test]
    fn the_same_seed_loses_the_same_packets() {
        let lossy = |seed| Impairment {
            loss_ppm: 300_000,
            seed: Some(seed),
            ..Default::default()
        };
        let (a, sa) = run(lossy(7));
        let (b, _) = run(lossy(7));
        let (c, _) = run(lossy(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // 30% of 400 lost: 120 expected, 5 standard deviations are 46.
        let lost = 400 - a.len();
        assert!((74..=166).contains(&lost), "{lost}");
        assert_eq!(sa["lost"], lost as u64);
        assert_eq!(sa["offered"], 400);
    }

    #[test]
    fn corruption_flips_one_bit_past_the_first_14_bytes_and_is_marked() {
        let (out, s) = run(Impairment {
            corrupt_ppm: 100_000,
            seed: Some(2),
            ..Default::default()
        });
        assert_eq!(out.len(), 400);
        let mut bad = 0;
        for (h, p) in out.iter().zip(packets()) {
            let diff: Vec<usize> = (0..p.len() * 8)
                .filter(|b| (h.pkt[b / 8] ^ p[b / 8]) & (0x80 >> (b % 8)) != 0)
                .collect();
            if h.corrupted {
                bad += 1;
                assert_eq!(diff.len(), 1, "{h:?}");
                assert!(diff[0] >= 14 * 8, "{h:?}");
            } else {
                assert!(diff.is_empty(), "{h:?}");
            }
        }
        // 10% of 400: 40 expected, 5 standard deviations are 30.
        assert!((10..=70).contains(&bad), "{bad}");
        assert_eq!(s["corrupted"], bad);
    }

    #[test]
    fn the_control_socket_sets_and_clears() {
        let dir = std::env::temp_dir().join(format!("weft-tn-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.ctl");
        let c = Control::bind(&path).unwrap();
        let imp = Impairing::new(None);
        let ask = |req: &str| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(format!("{req}\n").as_bytes()).unwrap();
            // Served by this thread, as the tunnel's timers thread would.
            c.serve(&imp);
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            line
        };
        assert!(ask(r#"{"impair": {"delay_us": 5000, "jitter_us": 0, "loss_ppm": 0, "duplicate_ppm": 0, "reorder_ppm": 0, "rate_bps": null, "seed": 3, "direction": "both"}}"#).contains("\"ok\":true"));
        assert!(imp.on());
        assert_eq!(imp.status()["settings"], "delay 5ms seed 3");
        // Checked as the file's settings are.
        let r = ask(
            r#"{"impair": {"delay_us": 0, "jitter_us": 5000, "loss_ppm": 0, "duplicate_ppm": 0, "reorder_ppm": 0, "rate_bps": null, "seed": 3, "direction": "both"}}"#,
        );
        assert!(r.contains("jitter"), "{r}");
        assert!(ask("nonsense").contains("bad request"));
        assert!(ask(r#"{"impair": null}"#).contains("\"ok\":true"));
        assert!(!imp.on());
        drop(c);
        assert!(!path.exists());
        let _ = std::fs::remove_dir(&dir);
    }
}
