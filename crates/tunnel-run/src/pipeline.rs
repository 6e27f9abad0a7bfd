//! The UDP transport on three threads: device to peer (read, encrypt,
//! send), peer to device (receive, decrypt, write) and timers with the
//! status file. The two directions run on both cores at once; the protocol
//! state is one [`Tunnel`] behind a mutex, held only for the bookkeeping
//! of a batch ([`Tunnel::prepare_send`], [`Tunnel::prepare_receive`],
//! [`Tunnel::finish_receive`]), never for the cipher, which runs on the
//! batch's own thread with the lock released. Each direction keeps its
//! packets in order: a batch is read, encrypted (or decrypted) and written
//! in the order it came.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::Socket;
use tun_rs::SyncDevice;
use weft_sys::tundev::DevKind;
use weft_sys::udpbatch as udp;
use weft_tunnel::{Incoming, Open, Prepared, Received, Seal, Transmit, Tunnel, OVERHEAD};

use crate::impaired::{Control, Impairing};
use crate::{
    flush_plan, os, read_batch, write_status, DevWriter, HandshakeWatch, Io, IoCounters, Offloads,
    Options, Result, BATCH, TICK, VNET,
};

/// What the threads share.
struct Shared {
    t: Mutex<Tunnel>,
    /// Counters and offloads in use, added to by each thread per batch.
    stats: Mutex<(IoCounters, Offloads)>,
    /// Set by a thread that failed, so the others end too.
    failed: AtomicBool,
}

impl Shared {
    fn tunnel(&self) -> MutexGuard<'_, Tunnel> {
        // A thread that panicked holding the lock leaves the state as
        // consistent as any batch boundary; go on with it.
        self.t.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, io_c: &mut IoCounters, off: &Offloads) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.0.add(io_c);
        if !off.udp_gso {
            s.1.udp_gso = false;
        }
        *io_c = IoCounters::default();
    }
}

/// Run the UDP tunnel on `dev` and `sock` until `stop` is set.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    o: &Options,
    t: Tunnel,
    start: Instant,
    stop: &AtomicBool,
    io: Io,
    sock: Socket,
    offloads: Offloads,
) -> Result<Tunnel> {
    let Io {
        dev,
        kind,
        imp,
        ctl,
    } = io;
    let size = usize::from(o.mtu) + 14 + OVERHEAD + 64;
    let sh = Shared {
        t: Mutex::new(t),
        stats: Mutex::new((IoCounters::default(), offloads)),
        failed: AtomicBool::new(false),
    };
    let done = || stop.load(Ordering::SeqCst) || sh.failed.load(Ordering::SeqCst);
    let res = std::thread::scope(|s| {
        let out = s.spawn(|| device_to_peer(&sh, &dev, kind, &sock, size, offloads, start, &done));
        let imp_in = imp.clone();
        let inn = s.spawn(|| {
            let writer = DevWriter::new(imp_in, start);
            peer_to_device(&sh, &dev, kind, &sock, writer, size, offloads, start, &done)
        });
        let timers = timers(o, &sh, &sock, (&imp, ctl.as_ref()), start, &done);
        for h in [out, inn] {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        timers
    });
    let t = sh.t.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = &o.status_file {
        let (io_c, off) = sh.stats.into_inner().unwrap_or_else(|e| e.into_inner());
        let _ = write_status(path, o, &t, &io_c, &off, &imp, start, None);
    }
    res.map(|()| t)
}

/// Wait up to a tick for `fd` to be readable. Errors end the tunnel.
fn wait(sh: &Shared, fd: i32, what: &str, ready: &mut Vec<bool>) -> Result<bool> {
    wait_for(sh, fd, what, ready, TICK)
}

/// Wait up to `most` for `fd` to be readable.
fn wait_for(
    sh: &Shared,
    fd: i32,
    what: &str,
    ready: &mut Vec<bool>,
    most: Duration,
) -> Result<bool> {
    match weft_sys::fdio::poll_readable(&[fd], most, ready) {
        Ok(_) => Ok(ready[0]),
        Err(e) => {
            sh.failed.store(true, Ordering::SeqCst);
            Err(os(format!("waiting for the {what} (poll)"), e))
        }
    }
}

/// Device to peer: read a batch, take its counters under the lock,
/// encrypt it without, send it with one `sendmmsg` (GSO-grouped).
#[allow(clippy::too_many_arguments)]
fn device_to_peer(
    sh: &Shared,
    dev: &SyncDevice,
    kind: DevKind,
    sock: &Socket,
    size: usize,
    mut off: Offloads,
    start: Instant,
    done: &dyn Fn() -> bool,
) -> Result<()> {
    let mut io_c = IoCounters::default();
    let mut tso_in = vec![0u8; VNET + 65535];
    let mut inbufs = vec![vec![0u8; size]; BATCH];
    let mut insizes = vec![0usize; BATCH];
    let mut plan = udp::TxPlan::new(BATCH * (size + OVERHEAD) + 4096, off.udp_gso);
    let mut scratch = udp::TxScratch::default();
    let mut jobs: Vec<(usize, SocketAddr, Seal)> = Vec::with_capacity(BATCH);
    let mut extra: Vec<Transmit> = vec![];
    let mut ready = vec![];
    let sock = Some(sock);
    while !done() {
        if !wait(sh, dev.as_raw_fd(), "device", &mut ready)? {
            continue;
        }
        let n = read_batch(dev, kind, &mut tso_in, &mut inbufs, &mut insizes, &mut io_c);
        if n == 0 {
            continue;
        }
        {
            let mut t = sh.tunnel();
            let now = start.elapsed();
            for (i, (b, &len)) in inbufs.iter().zip(&insizes).take(n).enumerate() {
                if let Prepared::Seal(to, j) = t.prepare_send(now, &b[..len]) {
                    jobs.push((i, to, j));
                }
            }
            extra.extend(std::iter::from_fn(|| t.poll_transmit()));
        }
        for (i, to, j) in jobs.drain(..) {
            let len = insizes[i];
            if plan.room() < len + OVERHEAD {
                flush_plan(sock, &mut plan, &mut scratch, &mut io_c, &mut off);
            }
            let dl = j.seal(&inbufs[i][..len], plan.space());
            plan.commit(to, dl);
        }
        for x in extra.drain(..) {
            if !plan.push(x.to, &x.data) {
                flush_plan(sock, &mut plan, &mut scratch, &mut io_c, &mut off);
                plan.push(x.to, &x.data);
            }
        }
        flush_plan(sock, &mut plan, &mut scratch, &mut io_c, &mut off);
        sh.count(&mut io_c, &off);
    }
    Ok(())
}

/// One received datagram: where it came from, which message of the
/// batch and which bytes of it (GRO glues several).
type Datagram = (SocketAddr, usize, std::ops::Range<usize>);

/// Peer to device: receive up to 64 messages (more datagrams with GRO),
/// check them under the lock, decrypt them without, deliver them under the
/// lock, write them to the device (coalesced with TSO).
#[allow(clippy::too_many_arguments)]
fn peer_to_device(
    sh: &Shared,
    dev: &SyncDevice,
    kind: DevKind,
    sock: &Socket,
    mut writer: DevWriter,
    size: usize,
    mut off: Offloads,
    start: Instant,
    done: &dyn Fn() -> bool,
) -> Result<()> {
    let mut io_c = IoCounters::default();
    let mut rb = udp::RxBatch::new(size.max(2048), off.udp_gro);
    let mut plan = udp::TxPlan::new(64 << 10, off.udp_gso);
    let mut scratch = udp::TxScratch::default();
    let mut dgrams: Vec<Datagram> = Vec::with_capacity(udp::MSGS);
    let mut jobs: Vec<(usize, Open, Option<usize>)> = Vec::with_capacity(writer.bufs.len());
    let mut extra: Vec<Transmit> = vec![];
    let mut ready = vec![];
    let fd = sock.as_raw_fd();
    let sock = Some(sock);
    while !done() {
        let readable = wait_for(sh, fd, "UDP socket", &mut ready, writer.wait(TICK))?;
        // Packets the impairment releases now (none without it).
        writer.release(dev, kind, &mut io_c);
        if !readable {
            continue;
        }
        let mut rounds = 0;
        while let Ok(n) = rb.recv(fd) {
            dgrams.clear();
            for i in 0..n {
                let Some(from) = rb.from(i) else { continue };
                let (len, seg) = (rb.lens[i], rb.segs[i]);
                if seg > 0 && seg < len {
                    io_c.gro_datagrams += len.div_ceil(seg) as u64;
                }
                dgrams.extend(udp::segments(len, seg).map(|r| (from, i, r)));
            }
            for chunk in dgrams.chunks(writer.bufs.len()) {
                deliver(sh, &rb, chunk, &mut writer, &mut jobs, &mut extra, start);
                writer.flush(dev, kind, &mut io_c);
            }
            rounds += 1;
            // Bounded, so the timers' lock and the device see their turn.
            if n < udp::MSGS || rounds == 4 {
                break;
            }
        }
        if !extra.is_empty() {
            for x in extra.drain(..) {
                plan.push(x.to, &x.data);
            }
            flush_plan(sock, &mut plan, &mut scratch, &mut io_c, &mut off);
        }
        sh.count(&mut io_c, &off);
    }
    Ok(())
}

/// Decrypt `chunk` (at most the writer's buffers) into the writer, in
/// order; what the tunnel wants sent goes to `extra`.
fn deliver(
    sh: &Shared,
    rb: &udp::RxBatch,
    chunk: &[Datagram],
    writer: &mut DevWriter,
    jobs: &mut Vec<(usize, Open, Option<usize>)>,
    extra: &mut Vec<Transmit>,
    start: Instant,
) {
    jobs.clear();
    let now = start.elapsed();
    {
        let mut t = sh.tunnel();
        for (k, (from, i, r)) in chunk.iter().enumerate() {
            if let Incoming::Open(j) = t.prepare_receive(now, *from, &rb.data(*i)[r.clone()]) {
                jobs.push((k, j, None));
            }
        }
        extra.extend(std::iter::from_fn(|| t.poll_transmit()));
    }
    // The cipher, without the lock; buffer w of the writer for the w-th job.
    let base = writer.n;
    debug_assert!(base + jobs.len() <= writer.bufs.len());
    for (w, (k, j, opened)) in jobs.iter_mut().enumerate() {
        let (_, i, r) = &chunk[*k];
        let d = &rb.data(*i)[r.clone()];
        let b = &mut writer.bufs[base + w];
        b.resize(VNET + d.len(), 0);
        *opened = j.open(d, &mut b[VNET..]);
    }
    let mut t = sh.tunnel();
    for (w, (k, j, opened)) in jobs.iter().enumerate() {
        let from = chunk[*k].0;
        if let Received::Packet(len) = t.finish_receive(now, from, j, *opened) {
            // Packets kept move down over those dropped, in order.
            writer.bufs.swap(writer.n, base + w);
            writer.bufs[writer.n].truncate(VNET + len);
            writer.n += 1;
        }
    }
    extra.extend(std::iter::from_fn(|| t.poll_transmit()));
}

/// Timers every tick, the handshake watch and the status file every
/// second; returns when `done`.
fn timers(
    o: &Options,
    sh: &Shared,
    sock: &Socket,
    (imp, ctl): (&Impairing, Option<&Control>),
    start: Instant,
    done: &dyn Fn() -> bool,
) -> Result<()> {
    let mut io_c = IoCounters::default();
    let mut ctl_ready = vec![];
    let mut off = sh.stats.lock().unwrap_or_else(|e| e.into_inner()).1;
    let mut plan = udp::TxPlan::new(64 << 10, false);
    let mut scratch = udp::TxScratch::default();
    let mut watch = HandshakeWatch::new(Duration::from_secs(30));
    let mut was_up = false;
    let mut next_status = Instant::now();
    let sock = Some(sock);
    while !done() {
        let up_now;
        {
            let mut t = sh.tunnel();
            t.tick(start.elapsed());
            while let Some(x) = t.poll_transmit() {
                plan.push(x.to, &x.data);
            }
            up_now = t.is_up(start.elapsed());
            // A session coming up (or going) is written at once: `weft
            // up` waits for it in the status file.
            if up_now != was_up {
                was_up = up_now;
                next_status = Instant::now();
            }
            if Instant::now() >= next_status {
                next_status = Instant::now() + Duration::from_secs(1);
                let now = start.elapsed();
                if let Some(w) = watch.check(now, t.counters(), t.is_up(now)) {
                    eprintln!("weft tunnel: warning: {w}");
                }
                if let Some(path) = &o.status_file {
                    let (c, f) = sh.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let _ = write_status(path, o, &t, &c, &f, imp, start, watch.current());
                }
            }
        }
        flush_plan(sock, &mut plan, &mut scratch, &mut io_c, &mut off);
        sh.count(&mut io_c, &off);
        let pause = TICK.min(next_status.saturating_duration_since(Instant::now()));
        match ctl {
            // `weft impair` is answered within the pause, not after it.
            Some(c) => {
                let deadline = Instant::now() + pause;
                while !done() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    let _ = weft_sys::fdio::poll_readable(&[c.fd()], left, &mut ctl_ready);
                    if ctl_ready.first() == Some(&true) {
                        c.serve(imp);
                    }
                }
            }
            None => std::thread::sleep(pause),
        }
    }
    Ok(())
}
