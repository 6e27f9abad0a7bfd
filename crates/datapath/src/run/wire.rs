//! Wires: the hidden namespaces that carry impaired links between two
//! kernel ends (weft_topo::wire). Each wire's two veth ends are AF_PACKET
//! sockets; every frame read on one end is sent out of the other,
//! unchanged (MACs, VLAN tags, BPDUs, GSO frames with their virtio-net
//! header), through an impairment queue for its direction. A thread of
//! the datapath process of its own serves all of a lab's wires, so a busy
//! wire and the switches do not wait on each other.

use std::os::fd::AsFd;

use weft_switch::impair::{Fate, Impair};
use weft_switch::Instant;
use weft_sys::port::{PacketSocket, Poller, Ready, RxBatch, TxFrame};
use weft_topo::impair::Direction;
use weft_topo::Lab;

use super::impaired::{core_config, corrupt, derived_seed, Held, IN_STREAM};
use super::{io_err, Error, RX_BATCH};

struct Wire {
    name: String,
    /// The sockets on `w0` and `w1`.
    ends: [PacketSocket; 2],
    /// `q[0]`: frames read on w0, bound for w1 (the link's `out`
    /// direction); `q[1]` the other way. `None`: not impaired that way.
    q: [Option<Impair<Held>>; 2],
    tx_errors: u64,
}

/// Opens every wire of `lab` and serves them on a thread; how many.
pub(super) fn start(lab: &Lab) -> Result<usize, Error> {
    let mut wires = Vec::new();
    for node in lab.nodes.values() {
        let Some(w) = &node.wire else { continue };
        let ends = weft_sys::netns::run_in_named(&node.netns, || {
            weft_topo::wire::ENDS.map(PacketSocket::open)
        })?;
        let [a, b] = ends;
        let ends = [
            a.map_err(io_err(format!("opening wire {} end w0", node.name)))?,
            b.map_err(io_err(format!("opening wire {} end w1", node.name)))?,
        ];
        let i = &w.impair;
        let seed = i
            .seed
            .unwrap_or_else(|| derived_seed(&lab.name, &node.name, "wire"));
        let out = i
            .direction
            .has_out()
            .then(|| Impair::new(core_config(i, seed)));
        let back = match &i.inbound {
            Some(inb) => Some(Impair::new(core_config(inb, seed ^ IN_STREAM))),
            None => (i.direction != Direction::Out)
                .then(|| Impair::new(core_config(i, seed ^ IN_STREAM))),
        };
        wires.push(Wire {
            name: node.name.clone(),
            ends,
            q: [out, back],
            tx_errors: 0,
        });
    }
    let n = wires.len();
    if n == 0 {
        return Ok(0);
    }
    let poller = Poller::new().map_err(io_err("creating the wires' epoll set"))?;
    for (k, w) in wires.iter().enumerate() {
        for (s, sock) in w.ends.iter().enumerate() {
            poller
                .add(sock.as_fd(), (k * 2 + s) as u64)
                .map_err(io_err(format!("watching wire {}", w.name)))?;
        }
    }
    std::thread::Builder::new()
        .name("weft-wires".into())
        .spawn(move || serve(wires, poller))
        .map_err(io_err("starting the wires' thread"))?;
    tracing::info!(wires = n, "wires serving");
    Ok(n)
}

fn serve(mut wires: Vec<Wire>, mut poller: Poller) {
    let clock = std::time::Instant::now();
    let now = || Instant::from_nanos(clock.elapsed().as_nanos() as u64);
    let mut rx = RxBatch::new(RX_BATCH);
    let mut ready: Vec<Ready> = Vec::new();
    loop {
        let deadline = wires
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
        for r in &ready {
            let (k, s) = (r.token as usize / 2, r.token as usize % 2);
            read(&mut wires[k], s, &mut rx, now());
        }
        let t = now();
        let mut due: Vec<Held> = Vec::new();
        for w in &mut wires {
            for s in 0..2 {
                due.clear();
                while let Some(h) = w.q[s].as_mut().and_then(|q| q.pop_due(t)) {
                    due.push(h);
                }
                if due.is_empty() {
                    continue;
                }
                // One system call for everything due on this end.
                let tx: Vec<TxFrame<'_>> = due
                    .iter()
                    .map(|h| TxFrame {
                        vnet: h.vnet,
                        head: &h.frame,
                        tag: None,
                        tail: &[],
                    })
                    .collect();
                match w.ends[1 - s].send_batch(&tx) {
                    Ok((_, dropped)) => w.tx_errors += dropped as u64,
                    Err(_) => w.tx_errors += 1,
                }
            }
        }
    }
}

/// Reads what waits on end `s` of wire `w`: into its queue, or straight
/// out of the other end when that way is not impaired.
fn read(w: &mut Wire, s: usize, rx: &mut RxBatch, now: Instant) {
    for _ in 0..8 {
        let n = match w.ends[s].recv_batch(rx) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(wire = %w.name, "receive: {e}");
                return;
            }
        };
        if n == 0 {
            return;
        }
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
            if let Ok((_, dropped)) = w.ends[1 - s].send_batch(&direct) {
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
