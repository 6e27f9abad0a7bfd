//! The kernel's floor for the star: the least a program has to do to build
//! N hosts on one bridge, with addresses and a default route, and to remove
//! them. The yardstick `weft up` is measured against (bench/README.md).
//!
//! `starfloor up PREFIX N` makes namespaces `PREFIXbr` and `PREFIXh1..hN`
//! (named as `ip netns add` names them: a bind mount in /run/netns), the
//! bridge `br` (10.0.0.1/16) in the first, and in each host an `eth0` cabled
//! by a veth to a bridge port `hI`, with 10.0.x.y/16, lo up and a default
//! route via the bridge: the end state `weft up` makes of the same star
//! (no IPv6 link-local addresses: weft sets `addrgenmode none` on every
//! interface it makes; the floor writes `net.ipv6.conf.default.
//! addr_gen_mode = 1` once in the bridge's namespace and sets it per link on
//! each `eth0` by netlink; `STARFLOOR_SYSCTL=1` writes the sysctl in every
//! host instead, as weft did before), without weft's bookkeeping (no state file, no journal, no
//! aliases, no readiness wait). `starfloor down PREFIX N` removes the names
//! as `ip netns del` does.
//!
//! Nothing here is generic, and that is the point: one process; first the
//! namespaces, one thread per core, each thread `unshare`s its way through
//! its share of the hosts (a thread's namespace is the last one it made,
//! so no `setns` and no fork) and opens a netlink socket in each; then
//! every veth from the bridge's socket in a few datagrams; then each
//! host's settings, one datagram each. Every netlink request is sent
//! without asking for an acknowledgement (the kernel handles rtnetlink requests inside
//! `sendmsg`, so a refusal is already queued on the socket when `send`
//! returns and one non-blocking read finds it). A veth is made with its
//! master and up flag in one request, its peer straight in its namespace.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoData, InfoKind, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

const RUN: &str = "/run/netns";
const BRIDGE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PREFIX_LEN: u8 = 16;
const BR_INDEX: u32 = 1000;
/// The host end's index in its own namespace (lo is 1).
const ETH0: u32 = 2;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: starfloor up|down PREFIX N";
    let (Some(cmd), Some(prefix), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Ok(n) = n.parse::<usize>() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let t = Instant::now();
    let r = match cmd.as_str() {
        "up" => up(prefix, n),
        "down" => down(prefix, n),
        _ => Err(usage.to_string()),
    };
    match r {
        Ok(()) => eprintln!("starfloor {cmd} {n}: {:.3} s", t.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("starfloor {cmd}: {e}");
            std::process::exit(1);
        }
    }
}

fn cvt(r: libc::c_int, what: impl Fn() -> String) -> Result<libc::c_int, String> {
    if r < 0 {
        Err(format!("{}: {}", what(), io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in names")
}

/// `/run/netns` as `ip netns add` leaves it: a shared mount point, so a
/// name pinned later shows in every mount namespace.
fn ensure_run_dir() -> Result<(), String> {
    std::fs::create_dir_all(RUN).map_err(|e| format!("{RUN}: {e}"))?;
    let p = cstr(RUN);
    let none = cstr("none");
    for _ in 0..2 {
        // SAFETY: valid C strings; a propagation change moves no memory.
        let r = unsafe {
            libc::mount(
                none.as_ptr(),
                p.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if r == 0 {
            return Ok(());
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            break;
        }
        // Not a mount point yet: make it one.
        // SAFETY: as above.
        cvt(
            unsafe {
                libc::mount(
                    p.as_ptr(),
                    p.as_ptr(),
                    none.as_ptr(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            },
            || format!("bind-mounting {RUN} onto itself"),
        )?;
    }
    Err(format!(
        "making {RUN} a shared mount: {}",
        io::Error::last_os_error()
    ))
}

/// Moves the calling thread into a new network namespace and pins it under
/// `name`, as `ip netns add` does. Returns an fd of the namespace.
fn new_netns(name: &str, sysctl: bool) -> Result<OwnedFd, String> {
    // SAFETY: unshare affects only this thread's namespaces.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }, || {
        format!("{name}: unshare(CLONE_NEWNET)")
    })?;
    let path = cstr(&format!("{RUN}/{name}"));
    // SAFETY: creating an empty file by a valid path.
    let f = cvt(
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o444,
            )
        },
        || format!("creating {RUN}/{name}"),
    )?;
    // SAFETY: f is a fresh fd we own.
    drop(unsafe { OwnedFd::from_raw_fd(f) });
    let me = cstr("/proc/thread-self/ns/net");
    // SAFETY: valid C strings; a bind mount of this thread's namespace.
    cvt(
        unsafe {
            libc::mount(
                me.as_ptr(),
                path.as_ptr(),
                cstr("none").as_ptr(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        },
        || format!("bind-mounting the namespace on {RUN}/{name}"),
    )?;
    if !sysctl {
        // SAFETY: the fd is fresh and ours.
        return Ok(unsafe { OwnedFd::from_raw_fd(ns_fd(name)?) });
    }
    // No link-local addresses (weft's setting for a node without IPv6),
    // before any interface exists so they inherit it.
    let sc = cstr("/proc/sys/net/ipv6/conf/default/addr_gen_mode");
    // SAFETY: open/write/close of a sysctl file with a buffer we own.
    unsafe {
        let fd = cvt(
            libc::open(sc.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC),
            || format!("{name}: opening addr_gen_mode"),
        )?;
        let w = libc::write(fd, b"1".as_ptr().cast(), 1);
        libc::close(fd);
        if w != 1 {
            return Err(format!(
                "{name}: writing addr_gen_mode: {}",
                io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: the fd is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(ns_fd(name)?) })
}

/// An fd of the calling thread's network namespace.
fn ns_fd(name: &str) -> Result<RawFd, String> {
    let me = cstr("/proc/thread-self/ns/net");
    // SAFETY: opening our own namespace's nsfs file.
    cvt(
        unsafe { libc::open(me.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) },
        || format!("{name}: opening its namespace"),
    )
}

/// A NETLINK_ROUTE socket in the calling thread's namespace.
struct Nl {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl Nl {
    fn open() -> Result<Nl, String> {
        // SAFETY: plain socket(2).
        let fd = cvt(
            unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                )
            },
            || "netlink socket".into(),
        )?;
        Ok(Nl {
            // SAFETY: fd is a fresh fd we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            buf: Vec::with_capacity(4096),
            seq: 0,
        })
    }

    fn push(&mut self, msg: RouteNetlinkMessage, flags: u16) {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        self.seq += 1;
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let at = self.buf.len();
        self.buf.resize(at + m.buffer_len(), 0);
        m.serialize(&mut self.buf[at..]);
    }

    /// Sends what is queued in one datagram, asking for no answer; returns
    /// the first refusal already queued on the socket.
    fn send(&mut self, what: &str) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // SAFETY: buf is valid for its length.
        let r = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                self.buf.as_ptr().cast(),
                self.buf.len(),
                0,
            )
        };
        self.buf.clear();
        if r < 0 {
            return Err(format!("{what}: send: {}", io::Error::last_os_error()));
        }
        self.refusal(what)
    }

    /// The first refusal the kernel queued on the socket, without waiting.
    fn refusal(&self, what: &str) -> Result<(), String> {
        let mut rb = [0u8; 8192];
        loop {
            // SAFETY: rb is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    rb.as_mut_ptr().cast(),
                    rb.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(()),
                    Some(libc::EINTR) => continue,
                    _ => Err(format!("{what}: recv: {e}")),
                };
            }
            let mut off = 0;
            let n = n as usize;
            while off + 20 <= n {
                let len = u32::from_ne_bytes(rb[off..off + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rb[off + 4..off + 6].try_into().unwrap());
                if kind == libc::NLMSG_ERROR as u16 {
                    let code = i32::from_ne_bytes(rb[off + 16..off + 20].try_into().unwrap());
                    if code != 0 {
                        return Err(format!("{what}: {}", io::Error::from_raw_os_error(-code)));
                    }
                }
                if len < 16 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

fn link(index: u32, name: Option<&str>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    if let Some(n) = name {
        m.attributes.push(LinkAttribute::IfName(n.into()));
    }
    m
}

fn addr(index: u32, a: Ipv4Addr) -> RouteNetlinkMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.index = index;
    m.header.prefix_len = PREFIX_LEN;
    m.attributes.push(AddressAttribute::Local(a.into()));
    m.attributes.push(AddressAttribute::Address(a.into()));
    let bcast = u32::from(a) | (u32::MAX >> PREFIX_LEN);
    m.attributes.push(AddressAttribute::Broadcast(bcast.into()));
    RouteNetlinkMessage::NewAddress(m)
}

fn default_route() -> RouteNetlinkMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.table = 254;
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    m.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(BRIDGE)));
    m.attributes.push(RouteAttribute::Oif(ETH0));
    RouteNetlinkMessage::NewRoute(m)
}

fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(BRIDGE) + i as u32)
}

/// A host's namespace, made in the first phase, and a socket inside it.
struct Host {
    i: usize,
    ns: OwnedFd,
    nl: Nl,
}

/// Datagrams of up to this size (the kernel takes one up to the socket's
/// send buffer, 208 KiB by default).
const CHUNK: usize = 32 * 1024;

fn up(prefix: &str, n: usize) -> Result<(), String> {
    ensure_run_dir()?;
    let by_sysctl = std::env::var_os("STARFLOOR_SYSCTL").is_some();
    let threads = std::thread::available_parallelism()
        .map_or(2, |p| p.get())
        .min(n.max(1));
    let prefix = prefix.to_string();
    // The bridge's namespace is made by a thread of its own, so the main
    // thread stays where it was; its socket stays in that namespace.
    let p2 = prefix.clone();
    let (_br_ns, mut br) = std::thread::spawn(move || -> Result<(OwnedFd, Nl), String> {
        let ns = new_netns(&format!("{p2}br"), true)?;
        let mut nl = Nl::open()?;
        let mut br = link(BR_INDEX, Some("br"));
        br.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::StpState(
                netlink_packet_route::link::BridgeStpState::Disabled,
            )])),
        ]));
        nl.push(RouteNetlinkMessage::NewLink(br), NLM_F_CREATE | NLM_F_EXCL);
        nl.push(addr(BR_INDEX, BRIDGE), NLM_F_CREATE | NLM_F_EXCL);
        nl.push(RouteNetlinkMessage::SetLink(link(1, None)), 0);
        nl.send("bridge")?;
        Ok((ns, nl))
    })
    .join()
    .map_err(|_| "bridge thread panicked".to_string())??;
    // 1. The namespaces, on every core: the kernel's per-namespace setup
    // is the largest part, and partly runs in parallel.
    let mut hosts: Vec<Host> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let prefix = &prefix;
                s.spawn(move || -> Result<Vec<Host>, String> {
                    (1..=n)
                        .filter(|i| i % threads == t)
                        .map(|i| {
                            let ns = new_netns(&format!("{prefix}h{i}"), by_sysctl)?;
                            Ok(Host {
                                i,
                                ns,
                                nl: Nl::open()?,
                            })
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for w in workers {
            all.extend(w.join().map_err(|_| "worker panicked".to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    // 2. Every cable from the bridge's socket, in few datagrams: port hI,
    // up, in the bridge, with its peer eth0 in the host's namespace (not
    // up yet: a veth end cannot open before its peer is linked to it).
    for h in &hosts {
        let mut port = link(BR_INDEX + h.i as u32, Some(&format!("h{}", h.i)));
        port.attributes.push(LinkAttribute::Controller(BR_INDEX));
        let mut peer = link(ETH0, Some("eth0"));
        peer.header.flags = LinkFlags::empty();
        peer.header.change_mask = LinkFlags::empty();
        peer.attributes
            .push(LinkAttribute::NetNsFd(h.ns.as_raw_fd()));
        port.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        br.push(
            RouteNetlinkMessage::NewLink(port),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        if br.buf.len() >= CHUNK {
            br.send("veths")?;
        }
    }
    br.send("veths")?;
    // 3. Each host's own settings, one datagram each.
    for h in &mut hosts {
        h.nl.push(RouteNetlinkMessage::SetLink(link(1, None)), 0);
        if !by_sysctl {
            // The same as the namespace's sysctl, for the one link that
            // would get an address, without the sysctl's cost: its handler
            // only try-locks RTNL and restarts the write until it gets it,
            // spinning while another thread builds.
            let mut m = LinkMessage::default();
            m.header.index = ETH0;
            m.attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                    vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
                )]));
            h.nl.push(RouteNetlinkMessage::SetLink(m), 0);
        }
        h.nl.push(RouteNetlinkMessage::SetLink(link(ETH0, None)), 0);
        h.nl.push(addr(ETH0, host_addr(h.i)), NLM_F_CREATE | NLM_F_EXCL);
        h.nl.push(default_route(), NLM_F_CREATE | NLM_F_EXCL);
        h.nl.send(&format!("{prefix}h{}", h.i))?;
    }
    Ok(())
}

fn down(prefix: &str, n: usize) -> Result<(), String> {
    let mut errors = Vec::new();
    // A name that is not there (after a failed `up`) is already removed.
    let mut fail = |what: String| {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            errors.push(format!("{what}: {e}"));
        }
    };
    for name in
        std::iter::once(format!("{prefix}br")).chain((1..=n).map(|i| format!("{prefix}h{i}")))
    {
        let p = cstr(&format!("{RUN}/{name}"));
        // SAFETY: a valid C string; a lazy unmount of our own name.
        if unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0 {
            fail(format!("unmounting {name}"));
        }
        // SAFETY: as above; removing the file the mount was on.
        if unsafe { libc::unlink(p.as_ptr()) } != 0 {
            fail(format!("removing {RUN}/{name}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} failures, first: {}", errors.len(), errors[0]))
    }
}
