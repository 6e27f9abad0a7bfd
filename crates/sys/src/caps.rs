//! Capability checks, so weft fails up front with advice instead of with an
//! EPERM half-way through building a lab.

use crate::error::{Error, Result};

/// `CAP_NET_ADMIN`: links, addresses, routes, nsids, sysctls.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`: namespaces and mounts.
pub const CAP_SYS_ADMIN: u32 = 21;

/// The effective capability set from the text of `/proc/PID/status`.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Names of the admin capabilities missing from `cap_eff`.
pub fn missing_admin(cap_eff: u64) -> Vec<&'static str> {
    [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| cap_eff & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect()
}

/// Fails unless this process has CAP_NET_ADMIN and CAP_SYS_ADMIN; `action`
/// names what needs them ("weft up").
pub fn require_admin(action: &str) -> Result<()> {
    // A program that needed weft's user namespace and could not join it
    // is told why, not "run as root".
    if let Some(e) = crate::userns::start_failure() {
        return Err(Error::Rootless {
            what: format!("{action}: joining weft's user namespace"),
            help: e.to_string(),
        });
    }
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::os("reading /proc/self/status to check capabilities", e))?;
    let eff = parse_cap_eff(&status).ok_or_else(|| {
        Error::Invalid("checking capabilities: /proc/self/status has no CapEff line".into())
    })?;
    check(action, eff)
}

fn check(action: &str, cap_eff: u64) -> Result<()> {
    let missing = missing_admin(cap_eff);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::NotAdmin {
        action: action.to_string(),
        missing: if missing.len() == 2 {
            "CAP_NET_ADMIN and CAP_SYS_ADMIN".to_string()
        } else {
            missing[0].to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "Name:\tweft\nUmask:\t0022\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
    const USER: &str = "Name:\tweft\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
        CapEff:\t0000000000000000\n";

    #[test]
    fn parses_cap_eff() {
        assert_eq!(parse_cap_eff(ROOT), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff(USER), Some(0));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }

    #[test]
    fn root_passes_user_fails_with_advice() {
        assert!(check("weft up", parse_cap_eff(ROOT).unwrap()).is_ok());
        let e = check("weft up", 0).unwrap_err().to_string();
        assert_eq!(
            e,
            "weft up needs CAP_NET_ADMIN and CAP_SYS_ADMIN: run it as root (e.g. with sudo), \
             or as a user without WEFT_ROOTLESS=0 (weft then builds in a user namespace of its own)"
        );
        let only_net = 1u64 << CAP_NET_ADMIN;
        let e = check("weft down", only_net).unwrap_err().to_string();
        assert!(e.starts_with("weft down needs CAP_SYS_ADMIN:"), "{e}");
    }

    #[test]
    fn this_test_process_is_admin() {
        // Kernel tests need root anyway; this documents the assumption.
        require_admin("weft-sys tests").unwrap();
    }
}
