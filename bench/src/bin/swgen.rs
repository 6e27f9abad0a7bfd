//! Load tools for `bench/switch.sh` (run inside the bench's namespaces):
//!
//! - `send`: a 64-byte UDP packet generator faster than iperf3. iperf3
//!   sends one packet per system call (about 550 kpps here), so above that
//!   the sender, not the switch, is measured. This one writes prebuilt
//!   Ethernet/IPv4/UDP frames to an AF_PACKET socket with
//!   `PACKET_QDISC_BYPASS`, 64 frames per `sendmmsg`, for a fixed time.
//! - `recv`: counts the UDP packets a socket receives (`recvmmsg`) and the
//!   time between the first and the last.
//! - `tapfwd`: a minimal forwarder between two TAP devices with
//!   `IFF_VNET_HDR` and TSO/checksum offload on, so that GSO frames pass:
//!   the TAP alternative to weft's AF_PACKET ports, measured in the same
//!   run to pick between them.
//!
//! Needs root; touches only the interface and namespaces it is given.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send UDP frames out of IFNAME for SECS seconds.
    Send {
        #[arg(long)]
        ifname: String,
        /// Destination MAC (the receiver's eth0).
        #[arg(long)]
        dst_mac: String,
        #[arg(long)]
        src_ip: std::net::Ipv4Addr,
        #[arg(long)]
        dst_ip: std::net::Ipv4Addr,
        #[arg(long, default_value_t = 5201)]
        port: u16,
        /// UDP payload bytes.
        #[arg(long, default_value_t = 64)]
        len: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Distinct source MACs to cycle through (fills a switch's table);
        /// 1 = the interface's own.
        #[arg(long, default_value_t = 1)]
        srcs: usize,
        /// Stop after this many frames (0 = only the time bound).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Frames per second at most (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        pps: u64,
    },
    /// Count UDP packets arriving on PORT; stop SECS after start or 1 s
    /// after the last packet.
    Recv {
        #[arg(long, default_value_t = 5201)]
        port: u16,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
    },
    /// Forward between two new TAP devices A and B until killed or SECS.
    Tapfwd {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        #[arg(long, default_value_t = 600.0)]
        secs: f64,
    },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Send {
            ifname,
            dst_mac,
            src_ip,
            dst_ip,
            port,
            len,
            secs,
            srcs,
            count,
            pps,
        } => send(
            &ifname, &dst_mac, src_ip, dst_ip, port, len, secs, srcs, count, pps,
        ),
        Cmd::Recv { port, secs } => recv(port, secs),
        Cmd::Tapfwd { a, b, secs } => tapfwd(&a, &b, secs),
    };
    if let Err(e) = r {
        eprintln!("swgen: {e}");
        std::process::exit(1);
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setopt(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: v is a live c_int of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    })
    .map(drop)
}

fn parse_mac(s: &str) -> io::Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::other(format!("bad MAC {s}: {e}")))?;
    v.try_into()
        .map_err(|_| io::Error::other(format!("bad MAC {s}")))
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    ifr
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in h.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn frame(
    dst: [u8; 6],
    src: [u8; 6],
    sip: std::net::Ipv4Addr,
    dip: std::net::Ipv4Addr,
    port: u16,
    len: usize,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = (20 + 8 + len) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&sip.octets());
    ip[16..20].copy_from_slice(&dip.octets());
    let c = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    // Checksum 0: none, allowed for UDP over IPv4.
    f.extend_from_slice(&[0, 0]);
    f.resize(42 + len, 0x5a);
    f
}

const BATCH: usize = 64;

#[allow(clippy::too_many_arguments)]
fn send(
    ifname: &str,
    dst_mac: &str,
    sip: std::net::Ipv4Addr,
    dip: std::net::Ipv4Addr,
    port: u16,
    len: usize,
    secs: f64,
    srcs: usize,
    count: u64,
    pps: u64,
) -> io::Result<()> {
    let dst = parse_mac(dst_mac)?;
    // SAFETY: plain socket(2).
    let raw =
        cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let r = fd.as_raw_fd();
    let mut ifr = ifreq(ifname);
    // SAFETY: SIOCGIFINDEX fills the ifreq we pass.
    cvt(unsafe { libc::ioctl(r, libc::SIOCGIFINDEX, &mut ifr) })
        .map_err(|e| io::Error::other(format!("no interface {ifname}: {e}")))?;
    // SAFETY: written by SIOCGIFINDEX.
    let ifindex = unsafe { ifr.ifr_ifru.ifru_ifindex };
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass.
    cvt(unsafe { libc::ioctl(r, libc::SIOCGIFHWADDR, &mut ifr) })?;
    // SAFETY: written by SIOCGIFHWADDR.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    let own: [u8; 6] = std::array::from_fn(|i| hw[i] as u8);
    // Straight to the device: no qdisc, the cheapest way into a veth.
    setopt(r, 263, 20 /* PACKET_QDISC_BYPASS */, 1)?;
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    // Protocol 0: this socket receives nothing.
    // SAFETY: valid sockaddr_ll of the size passed.
    cvt(unsafe {
        libc::bind(
            r,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    })?;
    let srcs = srcs.max(1);
    let frames: Vec<Vec<u8>> = (0..srcs)
        .map(|i| {
            let src = if srcs == 1 {
                own
            } else {
                let b = (i as u32).to_be_bytes();
                [0x02, 0xbe, b[0], b[1], b[2], b[3]]
            };
            frame(dst, src, sip, dip, port, len)
        })
        .collect();
    // SAFETY: iovec and mmsghdr are plain data; zeroed is valid.
    let mut iov: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let (mut sent, mut errors, mut pos) = (0u64, 0u64, 0usize);
    while t0.elapsed() < limit && (count == 0 || sent < count) {
        let n = if count == 0 {
            BATCH
        } else {
            BATCH.min((count - sent) as usize)
        };
        for k in 0..n {
            let f = &frames[(pos + k) % srcs];
            iov[k] = libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            };
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at an iovec in `iov` pointing into
        // `frames`, all alive during the call.
        let got = unsafe { libc::sendmmsg(r, hdrs.as_mut_ptr(), n as u32, 0) };
        if got < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                    errors += 1;
                    // The device's peer is full: one frame counted as lost.
                    pos += 1;
                    continue;
                }
                _ => return Err(e),
            }
        }
        sent += got as u64;
        pos = (pos + got as usize) % srcs;
        if pps > 0 {
            let due = Duration::from_secs_f64(sent as f64 / pps as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{{\"sent\": {sent}, \"secs\": {dt:.4}, \"errors\": {errors}, \"pps\": {:.0}, \"cpu_us\": {}}}",
        sent as f64 / dt,
        cpu_us()
    );
    Ok(())
}

/// CPU time (user + system) this process has used, in µs: with the
/// frame counts, what sending or receiving costs per frame (the bench's
/// model of the rate any switch could reach here).
fn cpu_us() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

fn recv(port: u16, secs: f64) -> io::Result<()> {
    let sock = std::net::UdpSocket::bind(("0.0.0.0", port))?;
    let r = sock.as_raw_fd();
    let _ = setopt(r, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20);
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    // SAFETY: plain data.
    let mut iov: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let (mut n, mut first, mut last) = (0u64, None::<Instant>, None::<Instant>);
    println!("{{\"ready\": true}}");
    while t0.elapsed() < limit {
        if last.is_some_and(|l| l.elapsed() > Duration::from_secs(1)) {
            break;
        }
        for k in 0..BATCH {
            iov[k] = libc::iovec {
                iov_base: bufs[k].as_mut_ptr().cast(),
                iov_len: 2048,
            };
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: headers point at iovecs into `bufs`, alive for the call;
        // the socket's read timeout bounds the wait.
        let got = unsafe {
            libc::recvmmsg(
                r,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got <= 0 {
            continue;
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = Some(now);
        n += got as u64;
    }
    let dt = match (first, last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let pps = if dt > 0.0 { n as f64 / dt } else { 0.0 };
    println!(
        "{{\"received\": {n}, \"secs\": {dt:.4}, \"pps\": {pps:.0}, \"cpu_us\": {}}}",
        cpu_us()
    );
    Ok(())
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 1;
const TUN_F_TSO4: libc::c_ulong = 2;
const TUN_F_TSO6: libc::c_ulong = 4;

fn open_tap(name: &str) -> io::Result<OwnedFd> {
    // SAFETY: plain open(2) of a constant path.
    let raw = cvt(unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    })?;
    // SAFETY: fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = ifreq(name);
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads the ifreq we pass.
    cvt(unsafe { libc::ioctl(raw, TUNSETIFF, &mut ifr) })
        .map_err(|e| io::Error::other(format!("creating TAP {name}: {e}")))?;
    // The kernel may hand us checksum-less and 64 KiB TSO frames.
    // SAFETY: TUNSETOFFLOAD takes the flags by value.
    cvt(unsafe { libc::ioctl(raw, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) })?;
    Ok(fd)
}

fn tapfwd(a: &str, b: &str, secs: f64) -> io::Result<()> {
    let fds = [open_tap(a)?, open_tap(b)?];
    println!("{{\"ready\": true}}");
    let mut buf = vec![0u8; 65536 + 64];
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut pfd = [
        libc::pollfd {
            fd: fds[0].as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: fds[1].as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    while t0.elapsed() < limit {
        // SAFETY: two valid pollfds.
        let r = unsafe { libc::poll(pfd.as_mut_ptr(), 2, 200) };
        if r <= 0 {
            continue;
        }
        for i in 0..2 {
            if pfd[i].revents & libc::POLLIN == 0 {
                continue;
            }
            let (from, to) = (fds[i].as_raw_fd(), fds[1 - i].as_raw_fd());
            // A few frames per wakeup: a TAP has no batch read.
            for _ in 0..64 {
                // SAFETY: reads into our buffer, bounded by its length.
                let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                // The virtio-net header passes with the frame: GSO and
                // checksum offload stay with the receiving stack.
                // SAFETY: writes n bytes of our buffer.
                unsafe { libc::write(to, buf.as_ptr().cast(), n as usize) };
            }
        }
    }
    Ok(())
}
