//! The UDP transport on three threads: two workers that share the two
//! directions, device to peer (read, encrypt, send) and peer to device
//! (receive, decrypt, write), and one for the timers and the status file.
//! The protocol state is one [`Tunnel`] behind a mutex, held only for the
//! bookkeeping of a batch ([`Tunnel::prepare_send`],
//! [`Tunnel::prepare_receive`], [`Tunnel::finish_receive`]), never for the
//! cipher, which runs with the lock released. Each direction's buffers are
//! behind a mutex of their own, so a direction runs on one thread at a
//! time and keeps its packets in order: a batch is read, encrypted (or
//! decrypted) and written in the order it came.
//!
//! Which worker runs which direction is decided per event: both wait on
//! one one-shot epoll set ([`OneShot`]) holding the device and the socket,
//! the kernel wakes one of them per event, and the descriptor stays silent
//! until the batch it announced is through. Under load the two directions
//! run on both cores at once. At idle (the device's last batch was small)
//! the worker woken by the socket keeps the device for itself while it
//! writes to it, and reads right after what the kernel answered at once (a
//! ping's echo, a TCP ACK): one thread wakes per packet and round trip
//! instead of two (the previous fixed thread per direction woke the
//! device's thread for every answer).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::Socket;
use tun_rs::SyncDevice;
use weft_sys::fdio::OneShot;
use weft_sys::tundev::DevKind;
use weft_sys::udpbatch as udp;
use weft_tunnel::{Incoming, Open, Prepared, Received, Seal, Transmit, Tunnel, OVERHEAD};

use crate::impaired::{Control, Impairing};
use crate::{
    flush_plan, os, read_batch, status, store_status, write_status, DevWriter, HandshakeWatch, Io,
    IoCounters, Offloads, Options, Result, BATCH, TICK, VNET,
};

/// What the threads share.
struct Shared {
    t: Mutex<Tunnel>,
    /// Counters and offloads in use, added to by each thread per batch.
    stats: Mutex<(IoCounters, Offloads)>,
    /// Set by a thread that failed, so the others end too.
    failed: AtomicBool,
    /// The device (token [`DEV`]) and the socket ([`SOCK`]).
    ep: OneShot,
    out: Mutex<Out>,
    inn: Mutex<In>,
    /// The device's last batch was small: the path is idle enough for one
    /// thread to carry a packet and its answer.
    quiet: AtomicBool,
}

const DEV: u64 = 0;
const SOCK: u64 = 1;
/// A device batch below this many packets leaves the path "quiet".
const QUIET_BELOW: usize = 16;

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

    fn fail(&self, action: &str, e: std::io::Error) -> crate::Error {
        self.failed.store(true, Ordering::SeqCst);
        os(action.to_string(), e)
    }
}

/// The device-to-peer direction's buffers.
struct Out {
    io_c: IoCounters,
    off: Offloads,
    tso_in: Vec<u8>,
    inbufs: Vec<Vec<u8>>,
    insizes: Vec<usize>,
    plan: udp::TxPlan,
    scratch: udp::TxScratch,
    jobs: Vec<(usize, SocketAddr, Seal)>,
    extra: Vec<Transmit>,
}

/// The peer-to-device direction's buffers.
struct In {
    io_c: IoCounters,
    off: Offloads,
    rb: udp::RxBatch,
    plan: udp::TxPlan,
    scratch: udp::TxScratch,
    dgrams: Vec<Datagram>,
    jobs: Vec<(usize, Open, Option<usize>)>,
    extra: Vec<Transmit>,
    writer: DevWriter,
}

/// What a worker reaches: the shared state, the device and the socket.
struct Ends<'a> {
    sh: &'a Shared,
    dev: &'a SyncDevice,
    kind: DevKind,
    sock: &'a Socket,
    start: Instant,
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
    let ep = OneShot::new().map_err(|e| os("creating the tunnel's epoll set", e))?;
    ep.add(dev.as_raw_fd(), DEV)
        .and_then(|()| ep.add(sock.as_raw_fd(), SOCK))
        .map_err(|e| os("adding the device and socket to the epoll set", e))?;
    let out = Out {
        io_c: IoCounters::default(),
        off: offloads,
        tso_in: vec![0u8; VNET + 65535],
        inbufs: vec![vec![0u8; size]; BATCH],
        insizes: vec![0usize; BATCH],
        plan: udp::TxPlan::new(BATCH * (size + OVERHEAD) + 4096, offloads.udp_gso),
        scratch: udp::TxScratch::default(),
        jobs: Vec::with_capacity(BATCH),
        extra: vec![],
    };
    let writer = DevWriter::new(imp.clone(), start);
    let inn = In {
        io_c: IoCounters::default(),
        off: offloads,
        rb: udp::RxBatch::new(size.max(2048), offloads.udp_gro),
        plan: udp::TxPlan::new(64 << 10, offloads.udp_gso),
        scratch: udp::TxScratch::default(),
        dgrams: Vec::with_capacity(udp::MSGS),
        jobs: Vec::with_capacity(writer.bufs.len()),
        extra: vec![],
        writer,
    };
    let sh = Shared {
        t: Mutex::new(t),
        stats: Mutex::new((IoCounters::default(), offloads)),
        failed: AtomicBool::new(false),
        ep,
        out: Mutex::new(out),
        inn: Mutex::new(inn),
        quiet: AtomicBool::new(true),
    };
    let done = || stop.load(Ordering::SeqCst) || sh.failed.load(Ordering::SeqCst);
    let ends = Ends {
        sh: &sh,
        dev: &dev,
        kind,
        sock: &sock,
        start,
    };
    let res = std::thread::scope(|s| {
        let workers = [
            s.spawn(|| worker(&ends, &imp, &done)),
            s.spawn(|| worker(&ends, &imp, &done)),
        ];
        let timers = timers(o, &sh, &sock, (&imp, ctl.as_ref()), start, &done);
        for h in workers {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A direction's buffers hold nothing between batches that a panic
    // could leave half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker: wait for the device or the socket, run that direction's
/// batch, re-arm it; until `done`.
fn worker(e: &Ends, imp: &Impairing, done: &dyn Fn() -> bool) -> Result<()> {
    let (sh, dev_fd, sock_fd) = (e.sh, e.dev.as_raw_fd(), e.sock.as_raw_fd());
    while !done() {
        // With impairment on, held packets are due at their own times.
        let most = if imp.on() {
            imp.wait(e.start.elapsed(), TICK)
        } else {
            TICK
        };
        let ev = sh
            .ep
            .wait(most)
            .map_err(|x| sh.fail("waiting for the device and socket (epoll)", x))?;
        match ev {
            Some(DEV) => {
                let mut o = lock(&sh.out);
                let n = device_to_peer(e, &mut o);
                sh.quiet.store(n < QUIET_BELOW, Ordering::Relaxed);
                drop(o);
                sh.ep
                    .arm(dev_fd, DEV)
                    .map_err(|x| sh.fail("re-arming the device (epoll)", x))?;
            }
            Some(_) => {
                let mut i = lock(&sh.inn);
                // Idle: keep the device while writing to it, and read
                // what the kernel answers at once on this thread. A
                // device batch another worker runs keeps its own.
                let mut o = None;
                if sh.quiet.load(Ordering::Relaxed) {
                    if let Ok(g) = sh.out.try_lock() {
                        sh.ep
                            .disarm(dev_fd, DEV)
                            .map_err(|x| sh.fail("disarming the device (epoll)", x))?;
                        o = Some(g);
                    }
                }
                peer_to_device(e, &mut i);
                drop(i);
                if let Some(mut o) = o {
                    let n = device_to_peer(e, &mut o);
                    sh.quiet.store(n < QUIET_BELOW, Ordering::Relaxed);
                    drop(o);
                    sh.ep
                        .arm(dev_fd, DEV)
                        .map_err(|x| sh.fail("re-arming the device (epoll)", x))?;
                }
                sh.ep
                    .arm(sock_fd, SOCK)
                    .map_err(|x| sh.fail("re-arming the socket (epoll)", x))?;
            }
            None => {
                // Packets the impairment releases now. Waiting for a
                // batch the other worker runs (rather than trying again at
                // once) keeps this one from spinning on a due packet.
                if imp.on() {
                    let mut i = lock(&sh.inn);
                    let i = &mut *i;
                    i.writer.release(e.dev, e.kind, &mut i.io_c);
                    sh.count(&mut i.io_c, &i.off);
                }
            }
        }
    }
    Ok(())
}

/// Device to peer: read a batch, take its counters under the lock,
/// encrypt it without, send it with one `sendmmsg` (GSO-grouped).
/// Returns how many packets it read.
fn device_to_peer(e: &Ends, o: &mut Out) -> usize {
    let o = &mut *o;
    let sock = Some(e.sock);
    let n = read_batch(
        e.dev,
        e.kind,
        &mut o.tso_in,
        &mut o.inbufs,
        &mut o.insizes,
        &mut o.io_c,
    );
    if n == 0 {
        return 0;
    }
    {
        let mut t = e.sh.tunnel();
        let now = e.start.elapsed();
        for (i, (b, &len)) in o.inbufs.iter().zip(&o.insizes).take(n).enumerate() {
            if let Prepared::Seal(to, j) = t.prepare_send(now, &b[..len]) {
                o.jobs.push((i, to, j));
            }
        }
        o.extra.extend(std::iter::from_fn(|| t.poll_transmit()));
    }
    for (i, to, j) in o.jobs.drain(..) {
        let len = o.insizes[i];
        if o.plan.room() < len + OVERHEAD {
            flush_plan(sock, &mut o.plan, &mut o.scratch, &mut o.io_c, &mut o.off);
        }
        let dl = j.seal(&o.inbufs[i][..len], o.plan.space());
        o.plan.commit(to, dl);
    }
    for x in o.extra.drain(..) {
        if !o.plan.push(x.to, &x.data) {
            flush_plan(sock, &mut o.plan, &mut o.scratch, &mut o.io_c, &mut o.off);
            o.plan.push(x.to, &x.data);
        }
    }
    flush_plan(sock, &mut o.plan, &mut o.scratch, &mut o.io_c, &mut o.off);
    e.sh.count(&mut o.io_c, &o.off);
    n
}

/// One received datagram: where it came from, which message of the
/// batch and which bytes of it (GRO glues several).
type Datagram = (SocketAddr, usize, std::ops::Range<usize>);

/// Peer to device: receive up to 64 messages (more datagrams with GRO),
/// check them under the lock, decrypt them without, deliver them under the
/// lock, write them to the device (coalesced with TSO); a few rounds while
/// more are waiting.
fn peer_to_device(e: &Ends, i: &mut In) {
    let i = &mut *i;
    let fd = e.sock.as_raw_fd();
    // Packets the impairment releases now (none without it).
    i.writer.release(e.dev, e.kind, &mut i.io_c);
    let mut rounds = 0;
    while let Ok(n) = i.rb.recv(fd) {
        i.dgrams.clear();
        for k in 0..n {
            let Some(from) = i.rb.from(k) else { continue };
            let (len, seg) = (i.rb.lens[k], i.rb.segs[k]);
            if seg > 0 && seg < len {
                i.io_c.gro_datagrams += len.div_ceil(seg) as u64;
            }
            i.dgrams
                .extend(udp::segments(len, seg).map(|r| (from, k, r)));
        }
        for chunk in i.dgrams.chunks(i.writer.bufs.len()) {
            deliver(
                e.sh,
                &i.rb,
                chunk,
                &mut i.writer,
                &mut i.jobs,
                &mut i.extra,
                e.start,
            );
            i.writer.flush(e.dev, e.kind, &mut i.io_c);
        }
        rounds += 1;
        // Bounded, so the timers' lock and the device see their turn.
        if n < udp::MSGS || rounds == 4 {
            break;
        }
    }
    if !i.extra.is_empty() {
        for x in i.extra.drain(..) {
            i.plan.push(x.to, &x.data);
        }
        flush_plan(
            Some(e.sock),
            &mut i.plan,
            &mut i.scratch,
            &mut i.io_c,
            &mut i.off,
        );
    }
    e.sh.count(&mut i.io_c, &i.off);
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
        // Built under the protocol lock, written after it: the workers
        // need the lock for every batch, and a file write on a busy
        // machine can take milliseconds.
        let mut report = None;
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
                let warn = watch.check(now, t.counters(), t.is_up(now));
                let st = o.status_file.as_ref().map(|path| {
                    let (c, f) = sh.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    (path, status(o, &t, &c, &f, imp, start, watch.current()))
                });
                report = Some((warn, st));
            }
        }
        if let Some((warn, st)) = report {
            if let Some(w) = warn {
                eprintln!("weft tunnel: warning: {w}");
            }
            if let Some((path, v)) = st {
                let _ = store_status(path, &v);
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
