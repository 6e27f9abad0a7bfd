//! weft's nftables table in a node: loaded after everything else of a run
//! (its rules name interfaces and addresses), removed before anything else.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use weft_sys::spawn::{command_in, View};
use weft_topo::nat;
use weft_topo::{Op, Res, ResKey};

use super::Exec;
use crate::Error;

/// Where Debian and most distributions put administration programs. They
/// are on root's `PATH` but not on other users' (Debian's default user
/// `PATH` has no sbin directory), and weft runs labs for any user.
const SBIN: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The program `name` as found on `path` (the `PATH` variable's value),
/// else in one of `sbin`, else `name` itself (so running it fails with
/// "not found"). Written here rather than taken from a crate: `which`
/// looks only on `PATH`, and the sbin directories are the point.
fn system_program(name: &str, path: Option<&std::ffi::OsStr>, sbin: &[&str]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let on_path = path.map(|p| std::env::split_paths(p).collect::<Vec<_>>());
    on_path
        .unwrap_or_default()
        .into_iter()
        .chain(sbin.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Run `nft ARGS` in a namespace with `input` on stdin; its stdout.
pub(crate) fn nft(
    node: &str,
    netns: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, Error> {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let program = system_program("nft", std::env::var_os("PATH").as_deref(), SBIN);
    let mut cmd = command_in(netns, &program.to_string_lossy(), &argv, View::NetOnly)?;
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Missing {
                what: format!(
                    "node {node}: NAT needs the `nft` program, which is not installed \
                     (looked on PATH and in {})",
                    SBIN.join(", ")
                ),
                help: "Debian: apt-get install nftables".into(),
            }
        } else {
            Error::io(format!("node {node}: running nft in {netns}"), e)
        }
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("node {node}: writing the ruleset to nft"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("node {node}: waiting for nft"), e))?;
    if !out.status.success() {
        return Err(Error::Nft {
            node: node.to_string(),
            detail: format!(
                "nft {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Load weft's table with this NAT, replacing what it held, atomically.
pub(crate) fn load(node: &str, netns: &str, n: &nat::Nat) -> Result<(), Error> {
    match &n.behaviour {
        // Map updates have no JSON syntax in nftables 1.0.6 (nat/behaviour.rs).
        Some(b) => nft(
            node,
            netns,
            &["-f", "-"],
            Some(&nat::behaviour::ruleset_text(n, b)),
        ),
        None => nft(
            node,
            netns,
            &["-j", "-f", "-"],
            Some(&nat::ruleset(n).to_string()),
        ),
    }
    .map(|_| ())
}

/// Delete weft's table (nothing else), if it is there.
pub(crate) fn unload(node: &str, netns: &str) -> Result<(), Error> {
    nft(
        node,
        netns,
        &["-j", "-f", "-"],
        Some(&nat::delete().to_string()),
    )
    .map(|_| ())
}

/// Forward-hook chains of other tables in the namespace that drop by
/// policy, each explained: weft's table cannot override them.
pub(crate) fn foreign_drops(
    lab: &str,
    node: &str,
    netns: &str,
    n: &nat::Nat,
) -> Result<Vec<String>, Error> {
    let chains = nft(node, netns, &["-j", "list", "chains"], None)?;
    let drops = nat::foreign_forward_drops(&chains).map_err(|e| Error::Nft {
        node: node.to_string(),
        detail: e.to_string(),
    })?;
    Ok(drops
        .into_iter()
        .map(|d| {
            let rule = |r: &str| {
                format!(
                    "`weft exec {lab} {node} -- nft insert rule {} {} {} {r}`",
                    d.family, d.table, d.chain
                )
            };
            format!(
                "node {node}: {d} is not weft's and drops forwarded packets unless its own rules accept them, \
                 so NAT and port forwards through {node} may not work; weft does not change other tables. \
                 To let the lab's traffic through, accept it in that chain: {}, {} and {} \
                 (with Docker: the same rules in its DOCKER-USER chain)",
                rule(&format!("iifname \"{}\" accept", n.bridge)),
                rule(&format!("oifname \"{}\" ct state established,related accept", n.bridge)),
                rule(&format!("oifname \"{}\" ct status dnat accept", n.bridge)),
            )
        })
        .collect())
}

impl Exec<'_> {
    fn netns_of_node(&self, node: &str) -> String {
        super::netns_of(self.new, self.old, node)
    }

    /// Tables that go: before any link or device is removed.
    pub(crate) fn nat_removals(&mut self, ops: &[Op]) -> Result<(), Error> {
        for (i, op) in ops.iter().enumerate() {
            if let Op::Remove {
                key: ResKey::Nat { node },
                implied: false,
                ..
            } = op
            {
                unload(node, &self.netns_of_node(node))?;
                self.applied.push(i);
            }
        }
        Ok(())
    }

    /// Tables that are new or changed: after everything else.
    pub(crate) fn nat_loads(&mut self, ops: &[Op]) -> Result<(), Error> {
        for (i, op) in ops.iter().enumerate() {
            let (node, n) = match op {
                Op::Add {
                    key: ResKey::Nat { node },
                    val: Res::Nat(n),
                }
                | Op::Change {
                    key: ResKey::Nat { node },
                    to: Res::Nat(n),
                    ..
                } => (node, n),
                _ => continue,
            };
            load(node, &self.netns_of_node(node), n)?;
            self.applied.push(i);
        }
        self.applied.sort_unstable();
        self.applied.dedup();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory with an executable `nft` and a non-executable `tc`.
    fn sbin_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-sbin-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (name, mode) in [("nft", 0o755), ("tc", 0o644)] {
            std::fs::write(d.join(name), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        d
    }

    #[test]
    fn a_user_path_without_sbin_still_finds_nft_there() {
        let d = sbin_dir("user");
        let sbin = [d.to_str().unwrap()];
        // Debian's default PATH for a user who is not root.
        let user_path = std::ffi::OsStr::new("/nonexistent/bin:/nonexistent/usr/bin");
        assert_eq!(system_program("nft", Some(user_path), &sbin), d.join("nft"));
        assert_eq!(system_program("nft", None, &sbin), d.join("nft"));
        // Not executable, or not there: the bare name, which fails to run.
        assert_eq!(
            system_program("tc", Some(user_path), &sbin),
            PathBuf::from("tc")
        );
        assert_eq!(
            system_program("nope", Some(user_path), &sbin),
            PathBuf::from("nope")
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn path_comes_before_sbin() {
        let first = sbin_dir("first");
        let second = sbin_dir("second");
        let path = std::env::join_paths([&first]).unwrap();
        let sbin = [second.to_str().unwrap()];
        assert_eq!(system_program("nft", Some(&path), &sbin), first.join("nft"));
        for d in [first, second] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
