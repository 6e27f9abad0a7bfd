//! `xsktx`: the AF_XDP send path's cost on a veth, against AF_PACKET's.
//!
//!   xsktx IFNAME DST_MAC SRC_IP DST_IP PORT SECS [PPS]
//!
//! Sends the same 64-byte UDP frames as `swgen send` (to the same
//! receiver, `swgen recv`), but through an AF_XDP socket in copy mode
//! (the only mode veth has): frames are written once into the UMEM, and
//! each batch is 64 descriptors on the TX ring and one `sendto` kick. No
//! XDP program is needed to send. Prints the same JSON line as
//! `swgen send`. `bench/switch.sh` runs it next to `swgen` as the send
//! path's floor (issue #17: would AF_XDP ports make weft's userspace path
//! cheaper per frame?). Hand-written: the AF_XDP crates on crates.io wrap
//! libxdp/libbpf (C libraries to build), far more than 60 lines of ring
//! code for one measurement.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const FRAMES: u32 = 4096;
const CHUNK: u32 = 2048;
const RING: u32 = 2048;
const BATCH: u32 = 64;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setopt<T>(fd: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v is a live T of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn frame(dst: [u8; 6], src: [u8; 6], sip: [u8; 4], dip: [u8; 4], port: u16) -> Vec<u8> {
    let len = 64;
    let mut f = Vec::with_capacity(42 + len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + len) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&sip);
    ip[16..20].copy_from_slice(&dip);
    let mut s: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(42 + len, 0x5a);
    f
}

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).expect("MAC"))
        .collect();
    v.try_into().expect("MAC of 6 bytes")
}

fn main() -> io::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 7 {
        eprintln!("usage: xsktx IFNAME DST_MAC SRC_IP DST_IP PORT SECS [PPS]");
        std::process::exit(2);
    }
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().expect("IPv4").octets();
    let (ifname, dst, sip, dip) = (&a[1], mac(&a[2]), ip(&a[3]), ip(&a[4]));
    let port: u16 = a[5].parse().expect("port");
    let secs: f64 = a[6].parse().expect("seconds");
    let pps: u64 = a.get(7).map(|p| p.parse().expect("pps")).unwrap_or(0);
    let cname = std::ffi::CString::new(ifname.as_str()).unwrap();
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::other(format!("no interface {ifname}")));
    }
    let src = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))?;
    let f = frame(dst, mac(src.trim()), sip, dip, port);

    // SAFETY: plain socket(2); the fd is closed at exit.
    let fd = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    let ulen = (FRAMES * CHUNK) as usize;
    // SAFETY: a fresh anonymous mapping, checked below.
    let umem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ulen,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if umem == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    for i in 0..FRAMES as usize {
        // SAFETY: chunk i lies inside the mapping; the frame is < CHUNK.
        unsafe {
            std::ptr::copy_nonoverlapping(
                f.as_ptr(),
                (umem as *mut u8).add(i * CHUNK as usize),
                f.len(),
            )
        };
    }
    let reg = libc::xdp_umem_reg {
        addr: umem as u64,
        len: ulen as u64,
        chunk_size: CHUNK,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setopt(fd, libc::XDP_UMEM_REG, &reg)?;
    setopt(fd, libc::XDP_UMEM_FILL_RING, &RING)?;
    setopt(fd, libc::XDP_UMEM_COMPLETION_RING, &RING)?;
    setopt(fd, libc::XDP_TX_RING, &RING)?;
    // SAFETY: plain data; zeroed is valid.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut ol = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: the kernel writes at most ol bytes into off.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut ol,
        )
    })?;
    let map = |len: u64, pgoff: u64| -> io::Result<*mut u8> {
        // SAFETY: maps a ring the kernel made for fd; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(p.cast())
        }
    };
    let tx = map(
        off.tx.desc + u64::from(RING) * std::mem::size_of::<libc::xdp_desc>() as u64,
        libc::XDP_PGOFF_TX_RING as u64,
    )?;
    let cq = map(
        off.cr.desc + u64::from(RING) * 8,
        libc::XDP_UMEM_PGOFF_COMPLETION_RING,
    )?;
    // SAFETY: plain data; zeroed is valid.
    let mut sa: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
    sa.sxdp_family = libc::AF_XDP as u16;
    sa.sxdp_flags = libc::XDP_COPY;
    sa.sxdp_ifindex = ifindex;
    sa.sxdp_queue_id = 0;
    // SAFETY: a valid sockaddr_xdp of the size passed.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_xdp).cast(),
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })?;
    // SAFETY: the producer/consumer words are 4-aligned u32s inside the
    // ring mappings, which live until the process exits.
    let (tx_prod, tx_cons, cq_prod, cq_cons) = unsafe {
        (
            &*(tx.add(off.tx.producer as usize) as *const AtomicU32),
            &*(tx.add(off.tx.consumer as usize) as *const AtomicU32),
            &*(cq.add(off.cr.producer as usize) as *const AtomicU32),
            &*(cq.add(off.cr.consumer as usize) as *const AtomicU32),
        )
    };
    // SAFETY: the descriptor array starts at off.tx.desc in the TX mapping.
    let descs = unsafe { tx.add(off.tx.desc as usize) as *mut libc::xdp_desc };
    let _ = tx_cons;
    let (mut prod, mut done, mut errors) = (0u32, 0u64, 0u64);
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    while t0.elapsed() < limit {
        // Completed frames free their slots (and UMEM chunks).
        let c = cq_prod.load(Ordering::Acquire);
        let cc = cq_cons.load(Ordering::Relaxed);
        if c != cc {
            done += u64::from(c.wrapping_sub(cc));
            cq_cons.store(c, Ordering::Release);
        }
        let outstanding = prod.wrapping_sub(c);
        let n = BATCH.min(RING - outstanding);
        for k in 0..n {
            let i = prod.wrapping_add(k);
            // SAFETY: slot i % RING of the TX ring is ours (not yet
            // produced); the chunk it names holds the frame.
            unsafe {
                *descs.add((i % RING) as usize) = libc::xdp_desc {
                    addr: u64::from((i % FRAMES) * CHUNK),
                    len: f.len() as u32,
                    options: 0,
                };
            }
        }
        prod = prod.wrapping_add(n);
        tx_prod.store(prod, Ordering::Release);
        // SAFETY: a kick with no data; the kernel sends what the ring holds.
        let r = unsafe {
            libc::sendto(
                fd,
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => errors += 1,
                _ => return Err(io::Error::last_os_error()),
            }
        }
        if pps > 0 {
            let due = Duration::from_secs_f64(prod as f64 / pps as f64);
            if let Some(w) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(w);
            }
        }
    }
    // The last frames' completions.
    std::thread::sleep(Duration::from_millis(20));
    let c = cq_prod.load(Ordering::Acquire);
    done += u64::from(c.wrapping_sub(cq_cons.load(Ordering::Relaxed)));
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{{\"sent\": {done}, \"secs\": {dt:.4}, \"errors\": {errors}, \"pps\": {:.0}}}",
        done as f64 / dt
    );
    Ok(())
}
