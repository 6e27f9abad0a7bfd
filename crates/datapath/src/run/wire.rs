//! Wires: the hidden namespaces that carry impaired links between two
//! kernel ends (weft_topo::wire). Each wire's two veth ends are AF_PACKET
//! sockets; every frame read on one end is sent out of the other,
//! unchanged (MACs, VLAN tags, BPDUs, GSO frames with their virtio-net
//! header), through an impairment queue for its direction. A thread of
//! the datapath process of its own serves all of a lab's wires, so a busy
//! wire and the switches do not wait on each other.
//!
//! The control socket is the main thread's: it reaches the wires through
//! [`WireCtl`], which shares their queues and counters behind a mutex
//! (taken once per wake-up of the wires' thread, uncontended but for a
//! `weft status` or `weft impair`) and wakes the thread through a socket
//! pair when the settings change.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use weft_switch::impair::{Fate, Impair, ImpairCounters};
use weft_switch::Instant;
use weft_sys::port::{PacketSocket, Poller, Ready, RxBatch, TxFrame};
use weft_topo::impair::{core_config, Direction, Impairment};

use super::impaired::{corrupt, derived_seed, Held, IN_STREAM};
use super::{io_err, Error, RX_BATCH};
use crate::control::{Reply, WireInfo, WireWay};

/// What the wires' thread and the control socket share about one wire.
pub(super) struct Wire {
    name: String,
    /// The link's two ends, as the file wrote them (`h1:eth0`).
    link: [String; 2],
    /// The impairment in force; `None`: frames pass straight through.
    settings: Option<Impairment>,
    /// The file's impairment when last applied: a live edit of the lab
    /// sets the wire again only when the file's changed (else what `weft
    /// impair` set stays).
    file: Impairment,
    /// The lab's name, for the seed derived from the names.
    lab: String,
    seed: u64,
    /// `q[0]`: frames read on w0, bound for w1 (the link's `out`
    /// direction); `q[1]` the other way. `None`: not impaired that way.
    q: [Option<Impair<Held>>; 2],
    /// Counters of queues replaced by a change of settings, so that the
    /// totals run on.
    before: [ImpairCounters; 2],
    /// Frames sent out of the far end, per direction.
    passed: [u64; 2],
    /// Frames held by queues that a change of settings replaced: they go
    /// out at once (direction, frame).
    flush: Vec<(usize, Held)>,
    tx_errors: u64,
}

impl Wire {
    /// New queues for `settings`, the PRNG from its seed (or the one
    /// derived from the names); what the old queues held is sent on.
    fn set(&mut self, settings: Option<Impairment>) {
        for s in 0..2 {
            if let Some(mut old) = self.q[s].take() {
                let c = *old.counters();
                for h in old.drain() {
                    self.flush.push((s, h));
                }
                // What the drain released is counted as passed when sent.
                self.before[s] += &c;
            }
        }
        self.seed = settings
            .as_ref()
            .and_then(|i| i.seed)
            .unwrap_or_else(|| derived_seed(&self.lab, &self.name, "wire"));
        self.q = match &settings {
            None => [None, None],
            Some(i) => {
                let out = i
                    .direction
                    .has_out()
                    .then(|| Impair::new(core_config(i, self.seed)));
                let back = match &i.inbound {
                    Some(inb) => Some(Impair::new(core_config(inb, self.seed ^ IN_STREAM))),
                    None => (i.direction != Direction::Out)
                        .then(|| Impair::new(core_config(i, self.seed ^ IN_STREAM))),
                };
                [out, back]
            }
        };
        self.settings = settings;
    }

    fn info(&self) -> WireInfo {
        let way = |s: usize| {
            let z = ImpairCounters::default();
            let c = self.q[s].as_ref().map_or(&z, |q| q.counters());
            let b = &self.before[s];
            WireWay {
                passed: self.passed[s],
                dropped: b.lost + c.lost + b.queue_full + c.queue_full,
                lost: b.lost + c.lost,
                queue_full: b.queue_full + c.queue_full,
                delayed: b.released + c.released,
                corrupted: b.corrupted + c.corrupted,
                duplicated: b.duplicated + c.duplicated,
                reordered: b.reordered + c.reordered,
                held: self.q[s].as_ref().map_or(0, |q| q.len()),
                impaired: self.q[s].is_some(),
            }
        };
        WireInfo {
            name: self.name.clone(),
            link: self.link.clone(),
            settings: self.settings.as_ref().map(|i| i.summary()),
            seed: self.settings.as_ref().map(|_| self.seed),
            seed_given: self.settings.as_ref().is_some_and(|i| i.seed.is_some()),
            out: way(0),
            back: way(1),
            tx_errors: self.tx_errors,
        }
    }
}

/// The main thread's handle on the wires: status and new settings.
pub(super) struct WireCtl {
    wires: Arc<Mutex<Vec<Wire>>>,
    wake: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(w: &Mutex<Vec<Wire>>) -> MutexGuard<'_, Vec<Wire>> {
    // A panic on the wires' thread leaves the counters as they were; they
    // are still worth reading.
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl WireCtl {
    /// Stops the wires' thread, which closes their sockets, and hands
    /// the wires back (counters, queues) for [`start`] to go on with.
    pub(super) fn stop(mut self) -> Vec<Wire> {
        // The thread ends when its end of the wake-up socket reads EOF.
        let _ = self.wake.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *lock(&self.wires))
    }

    pub(super) fn status(&self) -> Vec<WireInfo> {
        lock(&self.wires).iter().map(Wire::info).collect()
    }

    /// `weft impair` on a wired link: new settings (`None`: none, frames
    /// pass straight through), in force from the next frame.
    pub(super) fn set(&self, name: &str, settings: Option<Impairment>) -> Reply {
        let mut wires = lock(&self.wires);
        let Some(w) = wires.iter_mut().find(|w| w.name == name) else {
            return Reply::Error {
                message: format!(
                    "no wire {name} in this lab (wires: {})",
                    wires
                        .iter()
                        .map(|w| w.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        };
        w.set(settings);
        tracing::info!(wire = %name, settings = ?w.settings.as_ref().map(|i| i.summary()), "wire impairment changed");
        drop(wires);
        // The thread may sleep on a release time the old queues had.
        let _ = (&self.wake).write_all(&[1]);
        Reply::Done
    }
}

/// Token of the wake-up socket in the wires' epoll set.
const WAKE: u64 = u64::MAX;

/// Opens every wire among `nodes` (of lab `lab`) and serves them on a
/// thread; `None` when there is none. A wire of `kept` (a thread stopped
/// by a live edit) with the same name and link goes on with its counters
/// and queues, set again only if the file's impairment changed.
pub(super) fn start<'a>(
    lab: &str,
    nodes: impl Iterator<Item = &'a weft_topo::Node>,
    mut kept: Vec<Wire>,
) -> Result<Option<WireCtl>, Error> {
    let mut wires = Vec::new();
    let mut socks = Vec::new();
    for node in nodes {
        let Some(w) = &node.wire else { continue };
        let ends = weft_sys::netns::run_in_named(&node.netns, || {
            weft_topo::wire::ENDS.map(PacketSocket::open)
        })?;
        let [a, b] = ends;
        socks.push([
            a.map_err(io_err(format!("opening wire {} end w0", node.name)))?,
            b.map_err(io_err(format!("opening wire {} end w1", node.name)))?,
        ]);
        let link = w.link.clone().map(|e| e.to_string());
        if let Some(k) = kept
            .iter()
            .position(|k| k.name == node.name && k.link == link)
        {
            let mut wire = kept.swap_remove(k);
            if wire.file != w.impair {
                wire.file = w.impair.clone();
                wire.set(Some(w.impair.clone()));
            }
            wires.push(wire);
            continue;
        }
        let mut wire = Wire {
            name: node.name.clone(),
            link,
            settings: None,
            file: w.impair.clone(),
            lab: lab.to_string(),
            seed: 0,
            q: [None, None],
            before: Default::default(),
            passed: [0; 2],
            flush: Vec::new(),
            tx_errors: 0,
        };
        wire.set(Some(w.impair.clone()));
        wires.push(wire);
    }
    let n = wires.len();
    if n == 0 {
        return Ok(None);
    }
    let poller = Poller::new().map_err(io_err("creating the wires' epoll set"))?;
    for (k, (w, pair)) in wires.iter().zip(&socks).enumerate() {
        for (s, sock) in pair.iter().enumerate() {
            poller
                .add(sock.as_fd(), (k * 2 + s) as u64)
                .map_err(io_err(format!("watching wire {}", w.name)))?;
        }
    }
    let (wake, woken) = UnixStream::pair().map_err(io_err("the wires' wake-up socket"))?;
    woken
        .set_nonblocking(true)
        .map_err(io_err("the wires' wake-up socket"))?;
    poller
        .add(woken.as_fd(), WAKE)
        .map_err(io_err("watching the wires' wake-up socket"))?;
    let shared = Arc::new(Mutex::new(wires));
    let theirs = shared.clone();
    let thread = std::thread::Builder::new()
        .name("weft-wires".into())
        .spawn(move || serve(theirs, socks, poller, woken))
        .map_err(io_err("starting the wires' thread"))?;
    tracing::info!(wires = n, "wires serving");
    Ok(Some(WireCtl {
        wires: shared,
        wake,
        thread: Some(thread),
    }))
}

fn serve(
    shared: Arc<Mutex<Vec<Wire>>>,
    socks: Vec<[PacketSocket; 2]>,
    mut poller: Poller,
    mut woken: UnixStream,
) {
    let clock = std::time::Instant::now();
    let now = || Instant::from_nanos(clock.elapsed().as_nanos() as u64);
    let mut rx = RxBatch::new(RX_BATCH);
    let mut ready: Vec<Ready> = Vec::new();
    let mut due: Vec<Held> = Vec::new();
    loop {
        let deadline = lock(&shared)
            .iter()
            .flat_map(|w| w.q.iter().flatten().filter_map(|q| q.next_release()))
            .min();
        // Without frames held, wake now and then anyway: nothing else to do.
        let timeout = deadline.map_or(std::time::Duration::from_millis(500), |d| {
            d.saturating_duration_since(now())
        });
        if let Err(e) = poller.wait(&mut ready, Some(timeout)) {
            tracing::warn!("wires: waiting for frames: {e}");
            return;
        }
        let mut wires = lock(&shared);
        for r in &ready {
            if r.token == WAKE {
                let mut sink = [0u8; 64];
                loop {
                    match woken.read(&mut sink) {
                        // WireCtl::stop: the sockets close with the thread.
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                continue;
            }
            let (k, s) = (r.token as usize / 2, r.token as usize % 2);
            if r.error {
                // The end went down (ENETDOWN) or away: read the error, or
                // every wait reports it again at once and the thread spins;
                // an end whose interface is gone (its node was removed) is
                // no longer watched.
                let _ = socks[k][s].take_error();
                if socks[k][s].carrier().is_err() {
                    tracing::warn!(wire = %wires[k].name, end = s, "the wire's interface is gone; no longer watched");
                    let _ = poller.remove(socks[k][s].as_fd());
                    continue;
                }
            }
            read(&mut wires[k], &socks[k], s, &mut rx, &now);
        }
        let t = now();
        for (w, ends) in wires.iter_mut().zip(&socks) {
            for (s, h) in std::mem::take(&mut w.flush) {
                send(w, ends, s, std::slice::from_ref(&h));
            }
            for s in 0..2 {
                due.clear();
                while let Some(h) = w.q[s].as_mut().and_then(|q| q.pop_due(t)) {
                    due.push(h);
                }
                if !due.is_empty() {
                    // One system call for everything due on this end.
                    send(w, ends, s, &due);
                }
            }
        }
    }
}

/// Sends frames that went direction `s` out of the far end.
fn send(w: &mut Wire, ends: &[PacketSocket; 2], s: usize, frames: &[Held]) {
    let tx: Vec<TxFrame<'_>> = frames
        .iter()
        .map(|h| TxFrame {
            vnet: h.vnet,
            head: &h.frame,
            tag: None,
            tail: &[],
        })
        .collect();
    w.passed[s] += tx.len() as u64;
    match ends[1 - s].send_batch(&tx) {
        Ok((_, dropped)) => w.tx_errors += dropped as u64,
        Err(_) => w.tx_errors += 1,
    }
}

/// Reads what waits on end `s` of wire `w`: into its queue, or straight
/// out of the other end when that way is not impaired.
fn read(
    w: &mut Wire,
    ends: &[PacketSocket; 2],
    s: usize,
    rx: &mut RxBatch,
    now: &impl Fn() -> Instant,
) {
    for _ in 0..8 {
        let n = match ends[s].recv_batch(rx) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(wire = %w.name, "receive: {e}");
                return;
            }
        };
        if n == 0 {
            return;
        }
        // The batch's arrival time, read after it was received: every
        // frame in it came before, so its delay is never short. (Read
        // once before the batches, a thread preempted on a loaded machine
        // stamped frames that came later with an earlier time, and the
        // wire let them out early: 3.6 ms through a 10 ms delay.)
        let now = now();
        let mut direct: Vec<TxFrame<'_>> = Vec::new();
        for i in 0..n {
            let Some((vnet, frame)) = rx.frame(i) else {
                continue;
            };
            match &mut w.q[s] {
                Some(q) => {
                    let held = Held {
                        frame: frame.to_vec(),
                        vnet,
                    };
                    if let Fate::Lost | Fate::QueueFull =
                        q.push_with(held, frame.len(), now, corrupt)
                    {
                        tracing::trace!(wire = %w.name, "impairment dropped a frame");
                    }
                }
                None => direct.push(TxFrame {
                    vnet,
                    head: frame,
                    tag: None,
                    tail: &[],
                }),
            }
        }
        if !direct.is_empty() {
            w.passed[s] += direct.len() as u64;
            if let Ok((_, dropped)) = ends[1 - s].send_batch(&direct) {
                w.tx_errors += dropped as u64;
            } else {
                w.tx_errors += 1;
            }
        }
        rx.release();
        if n < rx.capacity() {
            return;
        }
    }
}
