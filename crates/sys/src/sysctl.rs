//! Per-namespace network sysctls (`sysctl -w net.ipv4.ip_forward=1`).
//!
//! Files under `/proc/sys/net` resolve against the network namespace of the
//! thread that opens them, so these functions act on the calling thread's
//! namespace; use them inside [`crate::netns::run_in`] or a
//! [`crate::netns::create_many`] setup closure.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Why a sysctl key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("weft only sets network sysctls, whose keys start with `net.`")]
    NotNet,
    #[error("it names the whole net tree, not a setting")]
    WholeTree,
    #[error("it has an empty component (two dots in a row, or a dot at an end)")]
    EmptyComponent,
    #[error("it contains {0:?}; allowed are letters, digits and _-/@:")]
    Char(char),
    /// `/` stands for `.`: the component would be `.` or `..`.
    #[error("component {component:?} would mean {means:?} in the path", means = .component.replace('/', "."))]
    Escapes { component: String },
}

/// Checks a key in `sysctl(8)` syntax that weft may touch: it must start
/// with `net.` (the only namespaced tree), have non-empty components made of
/// `[A-Za-z0-9_-/@:]`, and no component that maps to `.` or `..`.
pub fn validate_key(key: &str) -> std::result::Result<(), BadKey> {
    if key != "net" && !key.starts_with("net.") {
        return Err(BadKey::NotNet);
    }
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 {
        return Err(BadKey::WholeTree);
    }
    for part in parts {
        if part.is_empty() {
            return Err(BadKey::EmptyComponent);
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-/@:".contains(*c)))
        {
            return Err(BadKey::Char(c));
        }
        // `/` stands for `.`, so `//` would be `..` and escape the tree.
        let mapped = part.replace('/', ".");
        if mapped == "." || mapped == ".." {
            return Err(BadKey::Escapes {
                component: part.to_string(),
            });
        }
    }
    Ok(())
}

/// The `/proc/sys` path of a key (`net.ipv4.conf.eth0/10.rp_filter` →
/// `/proc/sys/net/ipv4/conf/eth0.10/rp_filter`).
pub fn key_path(key: &str) -> Result<PathBuf> {
    validate_key(key).map_err(|reason| Error::SysctlKey {
        key: key.to_string(),
        reason,
    })?;
    let mut p = PathBuf::from("/proc/sys");
    for part in key.split('.') {
        p.push(part.replace('/', "."));
    }
    Ok(p)
}

/// Reads a sysctl (`sysctl -n KEY`), without the trailing newline.
pub fn read(key: &str) -> Result<String> {
    let path = key_path(key)?;
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim_end_matches('\n').to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::SysctlMissing {
            key: key.to_string(),
        }),
        Err(e) => Err(Error::os(
            format!("reading sysctl {key} ({})", path.display()),
            e,
        )),
    }
}

/// Writes a sysctl (`sysctl -w KEY=VALUE`).
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = key_path(key)?;
    let mut f = match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::SysctlMissing {
                key: key.to_string(),
            })
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(Error::os_hint(
                format!("setting sysctl {key}={value}"),
                e,
                "it is read-only in this namespace, or weft is not running as root",
            ))
        }
        Err(e) => return Err(Error::os(format!("setting sysctl {key}={value}"), e)),
    };
    // One write() call: procfs parses each write as a whole value.
    f.write_all(value.as_bytes()).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            Error::os_hint(
                format!("setting sysctl {key}={value}"),
                e,
                "the kernel rejected the value; check its range and format",
            )
        } else {
            Error::os(format!("setting sysctl {key}={value}"), e)
        }
    })
}

/// Sets a sysctl only if it differs (comparing with whitespace normalised,
/// since the kernel prints vectors tab-separated); returns whether it wrote.
pub fn ensure(key: &str, value: &str) -> Result<bool> {
    let current = read(key)?;
    if normalize(&current) == normalize(value) {
        return Ok(false);
    }
    write(key, value)?;
    Ok(true)
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns;
    use crate::testutil::{ip, NsGuard};

    #[test]
    fn keys_accepted() {
        for k in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.eth0/10.rp_filter",
            "net.ipv6.conf.all.disable_ipv6",
            "net.ipv4.conf.veth-a_1.forwarding",
            "net.ipv4.neigh.br@x:1.gc_stale_time",
        ] {
            assert_eq!(validate_key(k), Ok(()), "{k}");
        }
    }

    #[test]
    fn keys_rejected() {
        for k in [
            "",
            "net",
            "kernel.hostname",
            "vm.swappiness",
            "netfoo.x",
            "net..ipv4",
            "net.ipv4.",
            ".net.ipv4",
            "net.ipv4.conf.//.rp_filter",
            "net.ipv4.conf./.rp_filter",
            "net.ipv4.conf.eth 0.rp_filter",
            "net.ipv4.conf.eth0\n.rp_filter",
            "net.ipv4.ip_forward=1",
            "net.ipv4.*",
        ] {
            assert!(validate_key(k).is_err(), "{k:?} accepted");
        }
        let e = key_path("kernel.hostname").unwrap_err().to_string();
        assert!(e.contains("kernel.hostname") && e.contains("net."), "{e}");
    }

    #[test]
    fn key_to_path() {
        assert_eq!(
            key_path("net.ipv4.conf.eth0/10.rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.10/rp_filter")
        );
    }

    #[test]
    fn normalize_whitespace() {
        assert_eq!(normalize("4096\t131072\t6291456\n"), "4096 131072 6291456");
    }

    #[test]
    fn read_write_ensure_in_fresh_namespace() {
        let host_forward = read("net.ipv4.ip_forward").unwrap();
        let mut guard = NsGuard::default();
        let ns = guard.create("sysctl");
        ip(&[
            "-n", &ns, "link", "add", "a.1", "type", "veth", "peer", "name", "b",
        ]);
        netns::run_in_named(&ns, || {
            assert_eq!(read("net.ipv4.ip_forward").unwrap(), "0");
            assert!(ensure("net.ipv4.ip_forward", "1").unwrap());
            assert!(!ensure("net.ipv4.ip_forward", "1\n").unwrap());
            assert_eq!(read("net.ipv4.ip_forward").unwrap(), "1");

            // An interface name with a dot.
            write("net.ipv4.conf.a/1.rp_filter", "2").unwrap();
            assert_eq!(read("net.ipv4.conf.a/1.rp_filter").unwrap(), "2");

            let e = read("net.ipv4.conf.nosuch0.rp_filter").unwrap_err();
            assert!(matches!(e, Error::SysctlMissing { .. }), "{e}");
            assert!(e.to_string().contains("interface to exist"), "{e}");
            let e = write("net.ipv4.conf.nosuch0.rp_filter", "1").unwrap_err();
            assert!(matches!(e, Error::SysctlMissing { .. }), "{e}");
            let e = write("net.ipv4.ip_forward", "banana").unwrap_err();
            assert!(e.to_string().contains("net.ipv4.ip_forward=banana"), "{e}");
        })
        .unwrap();
        // The host's value is untouched.
        assert_eq!(read("net.ipv4.ip_forward").unwrap(), host_forward);
    }
}
