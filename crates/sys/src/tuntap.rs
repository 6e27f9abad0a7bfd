//! Persistent TUN/TAP devices (`ip tuntap add`), made through
//! `/dev/net/tun`. A device is created in the network namespace of the
//! thread that opens `/dev/net/tun`, so call this inside
//! [`crate::netns::run_in`] or a [`crate::netns::create_many`] setup
//! closure. Deleting is an ordinary RTM_DELLINK (`ip link del NAME`).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode as FileMode;

use crate::error::{Error, Result};

/// Layer 3 (TUN) or layer 2 (TAP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tun,
    Tap,
}

/// What `ip tuntap add dev NAME mode tun|tap [user U] [group G]
/// [multi_queue] [pi] [vnet_hdr]` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunTapSpec {
    pub name: String,
    pub mode: Mode,
    /// `user U`: this uid may attach without CAP_NET_ADMIN.
    pub owner: Option<u32>,
    /// `group G`: members of this gid may attach.
    pub group: Option<u32>,
    pub multi_queue: bool,
    /// Prefix packets with the 4-byte packet-information header (that is,
    /// do NOT set IFF_NO_PI).
    pub pi: bool,
    pub vnet_hdr: bool,
}

impl TunTapSpec {
    /// A plain device: no owner, no group, single queue, no pi, no vnet_hdr.
    pub fn new(name: impl Into<String>, mode: Mode) -> Self {
        TunTapSpec {
            name: name.into(),
            mode,
            owner: None,
            group: None,
            multi_queue: false,
            pi: false,
            vnet_hdr: false,
        }
    }

    fn what(&self) -> &'static str {
        match self.mode {
            Mode::Tun => "TUN device",
            Mode::Tap => "TAP device",
        }
    }

    /// The IFF_* flags for TUNSETIFF.
    pub fn flags(&self) -> libc::c_short {
        let mut f = match self.mode {
            Mode::Tun => libc::IFF_TUN,
            Mode::Tap => libc::IFF_TAP,
        };
        if !self.pi {
            f |= libc::IFF_NO_PI;
        }
        if self.multi_queue {
            f |= libc::IFF_MULTI_QUEUE;
        }
        if self.vnet_hdr {
            f |= libc::IFF_VNET_HDR;
        }
        f as libc::c_short
    }
}

/// Why a name cannot be a network interface's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadIfname {
    #[error("it is empty")]
    Empty,
    #[error("it is {0} bytes long; the kernel allows at most 15")]
    TooLong(usize),
    #[error("`.` and `..` are not interface names")]
    Dot,
    #[error("it contains {0:?}")]
    Char(char),
}

/// Checks a network interface name as the kernel would (`dev_valid_name`):
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> std::result::Result<(), BadIfname> {
    if name.is_empty() {
        return Err(BadIfname::Empty);
    }
    if name.len() >= libc::IFNAMSIZ {
        return Err(BadIfname::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(BadIfname::Dot);
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || *c == '\0')
    {
        return Err(BadIfname::Char(c));
    }
    Ok(())
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags in the
/// union. The tail pads it to the kernel's 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

nix::ioctl_write_ptr_bad!(tun_set_iff, libc::TUNSETIFF, IfReqFlags);
nix::ioctl_write_int_bad!(tun_set_persist, libc::TUNSETPERSIST);
nix::ioctl_write_int_bad!(tun_set_owner, libc::TUNSETOWNER);
nix::ioctl_write_int_bad!(tun_set_group, libc::TUNSETGROUP);

/// Creates a persistent TUN/TAP device in the calling thread's network
/// namespace, like `ip tuntap add dev NAME mode MODE ...`. Fails if a
/// device of that name already exists (TUNSETIFF would otherwise silently
/// attach to an existing device of the same kind).
pub fn create_persistent(spec: &TunTapSpec) -> Result<()> {
    let what = spec.what();
    let name = &spec.name;
    let action = || format!("creating {what} {name}");
    validate_ifname(name)
        .map_err(|r| Error::Invalid(format!("{}: invalid name: {r}", action())))?;
    if nix::net::if_::if_nametoindex(name.as_str()).is_ok() {
        return Err(Error::os_hint(
            action(),
            std::io::Error::from_raw_os_error(libc::EEXIST),
            format!("a device named {name} already exists in this namespace; delete it with `ip link del {name}` or pick another name"),
        ));
    }
    let tun: OwnedFd = match nix::fcntl::open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        FileMode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) | Err(Errno::ENODEV) | Err(Errno::ENXIO) => {
            return Err(Error::NoTun {
                what,
                name: name.clone(),
            })
        }
        Err(e) => return Err(Error::os(format!("{}: opening /dev/net/tun", action()), e)),
    };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: spec.flags(),
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = tun.as_raw_fd();
    // SAFETY: `fd` is an open /dev/net/tun fd and `req` a live, correctly
    // laid out ifreq for the duration of the call.
    unsafe { tun_set_iff(fd, &req) }.map_err(|e| {
        let hint = match e {
            Errno::EPERM => Some("creating TUN/TAP devices needs CAP_NET_ADMIN (run as root)"),
            Errno::EINVAL if spec.multi_queue => {
                Some("the kernel rejected the flags; is multi_queue supported?")
            }
            _ => None,
        };
        match hint {
            Some(h) => Error::os_hint(format!("{}: TUNSETIFF", action()), e, h),
            None => Error::os(format!("{}: TUNSETIFF", action()), e),
        }
    })?;
    // Until TUNSETPERSIST the device dies with `tun`, so any failure below
    // leaves nothing behind.
    if let Some(uid) = spec.owner {
        // SAFETY: plain integer ioctl on our open tun fd.
        unsafe { tun_set_owner(fd, uid as libc::c_int) }.map_err(|e| {
            Error::os(
                format!("{}: setting owner uid {uid} (TUNSETOWNER)", action()),
                e,
            )
        })?;
    }
    if let Some(gid) = spec.group {
        // SAFETY: plain integer ioctl on our open tun fd.
        unsafe { tun_set_group(fd, gid as libc::c_int) }.map_err(|e| {
            Error::os(
                format!("{}: setting group gid {gid} (TUNSETGROUP)", action()),
                e,
            )
        })?;
    }
    // SAFETY: plain integer ioctl on our open tun fd.
    unsafe { tun_set_persist(fd, 1) }.map_err(|e| {
        Error::os(
            format!("{}: making it persistent (TUNSETPERSIST)", action()),
            e,
        )
    })?;
    Ok(())
}

/// Attaches to an existing TUN/TAP device in the calling thread's network
/// namespace, as a VM's emulator does, and returns the fd that reads and
/// writes its packets (frames, for a TAP). The device must have been made
/// with the same mode and `multi_queue`; `pi` and `vnet_hdr` of `spec`
/// become the device's from now on.
pub fn attach(spec: &TunTapSpec) -> Result<OwnedFd> {
    let what = spec.what();
    let name = &spec.name;
    validate_ifname(name)
        .map_err(|r| Error::Invalid(format!("opening {what} {name}: invalid name: {r}")))?;
    if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
        return Err(Error::Invalid(format!(
            "opening {what} {name}: there is no such device in this namespace"
        )));
    }
    let tun: OwnedFd = nix::fcntl::open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        FileMode::empty(),
    )
    .map_err(|e| Error::os(format!("opening {what} {name}: opening /dev/net/tun"), e))?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: spec.flags(),
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `tun` is an open /dev/net/tun fd and `req` a live, correctly
    // laid out ifreq for the duration of the call.
    unsafe { tun_set_iff(tun.as_raw_fd(), &req) }
        .map_err(|e| Error::os(format!("opening {what} {name}: TUNSETIFF"), e))?;
    Ok(tun)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns;
    use crate::testutil::{ip, NsGuard};

    #[test]
    fn flags_follow_spec() {
        let mut s = TunTapSpec::new("t0", Mode::Tun);
        assert_eq!(s.flags() as i32, libc::IFF_TUN | libc::IFF_NO_PI);
        s.pi = true;
        assert_eq!(s.flags() as i32, libc::IFF_TUN);
        let mut s = TunTapSpec::new("t0", Mode::Tap);
        s.multi_queue = true;
        s.vnet_hdr = true;
        assert_eq!(
            s.flags() as i32,
            libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR
        );
    }

    #[test]
    fn ifreq_layout_matches_kernel() {
        assert_eq!(
            std::mem::size_of::<IfReqFlags>(),
            std::mem::size_of::<libc::ifreq>()
        );
        assert_eq!(std::mem::offset_of!(IfReqFlags, flags), libc::IFNAMSIZ);
    }

    #[test]
    fn ifnames() {
        assert!(validate_ifname("tap0").is_ok());
        assert!(validate_ifname("a.1").is_ok());
        assert!(validate_ifname("123456789012345").is_ok());
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "1234567890123456"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_tun_and_tap_then_delete_by_netlink() {
        let mut guard = NsGuard::default();
        let ns = guard.create("tuntap");
        netns::run_in_named(&ns, || {
            let mut tun = TunTapSpec::new("wtun0", Mode::Tun);
            tun.owner = Some(54321);
            tun.pi = true;
            create_persistent(&tun).unwrap();
            let mut tap = TunTapSpec::new("wtap0", Mode::Tap);
            tap.group = Some(54322);
            tap.vnet_hdr = true;
            tap.multi_queue = true;
            create_persistent(&tap).unwrap();
            let e = create_persistent(&tap).unwrap_err().to_string();
            assert!(e.contains("wtap0 already exists"), "{e}");
        })
        .unwrap();

        let tun = ip(&["-n", &ns, "-d", "link", "show", "wtun0"]);
        assert!(tun.contains("link/none"), "{tun}");
        assert!(tun.contains("tun type tun pi on vnet_hdr off"), "{tun}");
        assert!(tun.contains("persist on user 54321"), "{tun}");
        let tap = ip(&["-n", &ns, "-d", "link", "show", "wtap0"]);
        assert!(tap.contains("link/ether"), "{tap}");
        assert!(
            tap.contains("tun type tap pi off vnet_hdr on multi_queue"),
            "{tap}"
        );
        assert!(tap.contains("persist on group 54322"), "{tap}");
        // Not in the host namespace.
        assert!(nix::net::if_::if_nametoindex("wtun0").is_err());

        netns::run_in_named(&ns, || {
            // `ip link del` by index: RTM_DELLINK works on persistent TUN/TAP.
            let mut nl = crate::netlink::Netlink::open().unwrap();
            for name in ["wtun0", "wtap0"] {
                let index = crate::if_index(name).unwrap();
                nl.push(
                    crate::netlink::del_link(index),
                    format!("ip link del {name}"),
                );
            }
            nl.flush().unwrap();
        })
        .unwrap();
        let left = ip(&["-n", &ns, "-o", "link"]);
        assert_eq!(left.lines().count(), 1, "{left}");
    }
}
