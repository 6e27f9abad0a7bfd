//! The bpf(2) system call: maps, program loading with the verifier's log,
//! `BPF_PROG_TEST_RUN`, and attaching a socket filter. Programs come as
//! encoded instructions (crates/ebpf builds them); attaching a classifier
//! to a port is a netlink request ([`crate::netlink::tc::bpf_filter`]).
//!
//! Written against the kernel's `union bpf_attr` directly rather than
//! through aya: the programs are raw instruction arrays made at run time
//! with map file descriptors already in them, and the few commands needed
//! are a page of code; aya would bring its ELF loader and an async
//! runtime-neutral API built around object files we do not have.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_MAP_GET_NEXT_KEY: u32 = 4;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;

/// `SO_ATTACH_BPF` (asm-generic/socket.h).
const SO_ATTACH_BPF: libc::c_int = 50;

/// Map kinds used here (`enum bpf_map_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    PercpuArray = 6,
}

/// Program kinds used here (`enum bpf_prog_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgType {
    SocketFilter = 1,
    SchedCls = 3,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
}

/// bpf(cmd, attr, sizeof attr).
fn sys_bpf<T>(cmd: u32, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialized repr(C) prefix of union bpf_attr
    // of the size passed; the kernel zero-extends shorter attrs and writes
    // back only fields inside it; pointers inside it are the caller's
    // buffers, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T,
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn name16(name: &str) -> [u8; 16] {
    // Kernel object names: up to 15 of [A-Za-z0-9_.].
    let mut b = [0u8; 16];
    for (d, s) in b[..15].iter_mut().zip(
        name.bytes()
            .filter(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'),
    ) {
        *d = s;
    }
    b
}

fn owned(r: libc::c_long) -> OwnedFd {
    // SAFETY: r is a new fd the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// The number of possible CPUs, as per-CPU maps size their values.
pub fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for part in s.trim().split(',') {
        let mut r = part.split('-').map(|x| x.parse::<usize>());
        match (r.next(), r.next()) {
            (Some(Ok(a)), Some(Ok(b))) if b >= a => n = n.max(b + 1),
            (Some(Ok(a)), None) => n = n.max(a + 1),
            _ => return Err(io::Error::other(format!("cannot read possible CPUs {s:?}"))),
        }
    }
    Ok(n)
}

/// A BPF map.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
    percpu: Option<usize>,
}

impl Map {
    pub fn create(
        kind: MapType,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> io::Result<Map> {
        let mut a = MapCreateAttr {
            map_type: kind as u32,
            key_size,
            value_size,
            max_entries,
            map_name: name16(name),
            ..Default::default()
        };
        let fd = owned(sys_bpf(BPF_MAP_CREATE, &mut a)?);
        let percpu = match kind {
            MapType::PercpuArray => Some(possible_cpus()?),
            _ => None,
        };
        Ok(Map {
            fd,
            key_size: key_size as usize,
            value_size: value_size as usize,
            percpu,
        })
    }

    /// The descriptor programs name the map by.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn check(&self, key: &[u8], value: Option<usize>) -> io::Result<()> {
        if key.len() != self.key_size || value.is_some_and(|v| v != self.value_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "BPF map key or value of the wrong size (key {} bytes, map takes {}; value takes {})",
                    key.len(),
                    self.key_size,
                    self.value_size
                ),
            ));
        }
        Ok(())
    }

    /// Creates or replaces the entry (`BPF_ANY`). Not for per-CPU maps.
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.check(key, Some(value.len()))?;
        if self.percpu.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "per-CPU map entries are written by the program only",
            ));
        }
        let mut a = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            ..Default::default()
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
    }

    /// The value, or for a per-CPU map each CPU's values one after the
    /// other (each padded to 8 bytes); `None` if there is no entry.
    pub fn lookup(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.check(key, None)?;
        let len = match self.percpu {
            Some(n) => self.value_size.div_ceil(8) * 8 * n,
            None => self.value_size,
        };
        let mut v = vec![0u8; len];
        let mut a = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: v.as_mut_ptr() as u64,
            ..Default::default()
        };
        match sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
            Ok(_) => Ok(Some(v)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A per-CPU array entry's `u64` fields summed over the CPUs.
    pub fn sum_percpu(&self, key: &[u8]) -> io::Result<Vec<u64>> {
        let stride = self.value_size.div_ceil(8) * 8;
        let words = self.value_size / 8;
        let mut sum = vec![0u64; words];
        if let Some(v) = self.lookup(key)? {
            for cpu in v.chunks_exact(stride) {
                for (s, w) in sum.iter_mut().zip(cpu.chunks_exact(8)) {
                    *s += u64::from_ne_bytes(w.try_into().unwrap());
                }
            }
        }
        Ok(sum)
    }

    /// Removes the entry; true if there was one.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        self.check(key, None)?;
        let mut a = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            ..Default::default()
        };
        match sys_bpf(BPF_MAP_DELETE_ELEM, &mut a) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every key (of a hash map), in the kernel's order.
    pub fn keys(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; self.key_size];
        loop {
            let mut a = ElemAttr {
                map_fd: self.fd.as_raw_fd() as u32,
                // No key: the first one.
                key: out.last().map_or(0, |k| k.as_ptr() as u64),
                value: next.as_mut_ptr() as u64,
                ..Default::default()
            };
            match sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut a) {
                Ok(_) => out.push(next.clone()),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The verifier (or the kernel) refused a program.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub name: String,
    pub errno: i32,
    /// The verifier's log (level 1), empty if it gave none.
    pub log: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the kernel refused BPF program {}: {}{}",
            self.name,
            io::Error::from_raw_os_error(self.errno),
            self.summary()
        )
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    /// The log's last non-empty lines, which say what failed.
    fn summary(&self) -> String {
        let lines: Vec<&str> = self.log.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = &lines[lines.len().saturating_sub(2)..];
        format!(" (verifier: {})", tail.join(" / "))
    }
}

/// A loaded program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` (encoded `struct bpf_insn`s). When the kernel refuses,
    /// loads again with the verifier's log on, so that the error says why.
    pub fn load(kind: ProgType, name: &str, insns: &[u64]) -> Result<Program, LoadError> {
        let license = CString::new("GPL").unwrap();
        let attempt = |log: &mut Vec<u8>| {
            let mut a = ProgLoadAttr {
                prog_type: kind as u32,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                prog_name: name16(name),
                ..Default::default()
            };
            if !log.is_empty() {
                a.log_level = 1;
                a.log_size = log.len() as u32;
                a.log_buf = log.as_mut_ptr() as u64;
            }
            sys_bpf(BPF_PROG_LOAD, &mut a)
        };
        match attempt(&mut Vec::new()) {
            Ok(fd) => Ok(Program { fd: owned(fd) }),
            Err(e) => {
                let mut log = vec![0u8; 1 << 20];
                let errno = e.raw_os_error().unwrap_or(0);
                if let Ok(fd) = attempt(&mut log) {
                    // Loads with the log on: a passing refusal (memory).
                    return Ok(Program { fd: owned(fd) });
                }
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                Err(LoadError {
                    name: name.to_string(),
                    errno,
                    log: String::from_utf8_lossy(&log[..end]).into_owned(),
                })
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Runs the program once on `frame` (`BPF_PROG_TEST_RUN`): its return
    /// value and the frame as it left it.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() * 2 + 256];
        let mut a = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut a)?;
        out.truncate(a.data_size_out as usize);
        Ok((a.retval, out))
    }

    /// Runs the program `repeat` times on `frame` (`BPF_PROG_TEST_RUN`,
    /// the kernel's own timer): its last return value and the mean time
    /// of one run in nanoseconds. For benchmarks: the frame is not reset
    /// between runs, so a program that changes it sees its own output.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
        let mut out = vec![0u8; frame.len() * 2 + 256];
        let mut a = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: repeat.max(1),
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut a)?;
        Ok((a.retval, a.duration))
    }

    /// Attaches the program (a socket filter) to `sock`, replacing any
    /// filter it had.
    pub fn attach_socket(&self, sock: BorrowedFd<'_>) -> io::Result<()> {
        let fd: libc::c_int = self.fd.as_raw_fd();
        // SAFETY: setsockopt reads an int (the program fd) of the size
        // passed from a live local.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_BPF,
                (&fd as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Takes any filter off `sock` (`SO_DETACH_FILTER`); fine if it had none.
pub fn detach_socket(sock: BorrowedFd<'_>) -> io::Result<()> {
    let v: libc::c_int = 0;
    // SAFETY: setsockopt reads an int of the size passed from a live local.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: `bpf_ktime_get_ns`'s clock, and
/// std's `Instant`'s on Linux.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Why bpf(2) cannot be used here, if it cannot: checked by creating a
/// one-entry array.
pub fn unavailable() -> Option<String> {
    match Map::create(MapType::Array, "weft_probe", 4, 4, 1) {
        Ok(_) => None,
        Err(e) => Some(format!("bpf(2) is not permitted here ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skips (loudly) where bpf(2) is not allowed.
    fn bpf_or_skip() -> bool {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: {why}; the BPF switch path is not tested here");
            return false;
        }
        true
    }

    // r0 = 7; exit / r0 = *(u32 *)(ctx + len) ; exit (hand-encoded, so
    // this crate needs no assembler).
    const RET7: [u64; 2] = [0x0000_0007_0000_00b7, 0x95];
    const RET_LEN: [u64; 2] = [0x1061, 0x95];

    #[test]
    fn a_trivial_program_loads_and_runs() {
        if !bpf_or_skip() {
            return;
        }
        let p = Program::load(ProgType::SchedCls, "weft_ret7", &RET7).unwrap();
        let frame = [0xffu8; 60];
        let (ret, out) = p.test_run(&frame).unwrap();
        assert_eq!(ret, 7);
        assert_eq!(out, frame);
        // r0 = skb->len: the program sees the frame it was given.
        let p = Program::load(ProgType::SchedCls, "weft_len", &RET_LEN).unwrap();
        assert_eq!(p.test_run(&[0u8; 99]).unwrap().0, 99);
    }

    #[test]
    fn a_refused_program_says_why() {
        if !bpf_or_skip() {
            return;
        }
        // exit without setting r0.
        let e = Program::load(ProgType::SchedCls, "weft_bad", &[0x95]).unwrap_err();
        assert_eq!(e.errno, libc::EACCES);
        assert!(e.log.contains("R0 !read_ok"), "{}", e.log);
        assert!(e.to_string().contains("R0 !read_ok"), "{e}");
    }

    #[test]
    fn maps_store_list_and_forget_entries() {
        if !bpf_or_skip() {
            return;
        }
        let m = Map::create(MapType::Hash, "weft_t", 8, 16, 16).unwrap();
        assert_eq!(m.lookup(&[1; 8]).unwrap(), None);
        m.update(&[1; 8], &[9; 16]).unwrap();
        m.update(&[2; 8], &[8; 16]).unwrap();
        assert_eq!(m.lookup(&[1; 8]).unwrap(), Some(vec![9; 16]));
        let mut keys = m.keys().unwrap();
        keys.sort();
        assert_eq!(keys, vec![vec![1; 8], vec![2; 8]]);
        assert!(m.delete(&[1; 8]).unwrap());
        assert!(!m.delete(&[1; 8]).unwrap());
        assert!(m.update(&[1; 4], &[0; 16]).is_err(), "wrong key size");
        let pc = Map::create(MapType::PercpuArray, "weft_pc", 4, 16, 2).unwrap();
        assert_eq!(pc.sum_percpu(&0u32.to_ne_bytes()).unwrap(), vec![0, 0]);
        assert!(possible_cpus().unwrap() >= 1);
    }
}
