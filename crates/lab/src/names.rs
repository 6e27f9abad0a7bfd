//! Names: every node of a lab can reach the others by name, through
//! `/etc/netns/NETNS/hosts` (the `ip netns exec` convention; `weft exec`
//! and `weft check` commands see it as /etc/hosts).
//!
//! The lab has one hosts file, in its state directory; each node's
//! `/etc/netns/NETNS/hosts` is a symlink to it, so an edit that adds a node
//! rewrites one file, not one per node. The directories are written to the
//! journal before they are made, and `weft down` removes them (also after a
//! killed run). A directory is only ever removed when its `hosts` is a
//! symlink to this lab's file: nothing else in /etc/netns is touched.

use std::fs;
use std::path::{Path, PathBuf};

use weft_sys::exec::ETC_NETNS_DIR;
use weft_topo::Lab;

use crate::state;
use crate::Error;

/// The lab's hosts file: localhost, then every node's name with the address
/// it stands for (as in `weft ping`: its first IPv4 address, else IPv6).
pub fn hosts_text(lab: &Lab) -> String {
    let mut s = format!(
        "# written by weft for lab {}; removed by `weft down {}`\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        lab.name, lab.name
    );
    for n in lab.nodes.values() {
        if let Some(a) = weft_topo::check::node_address(n) {
            s.push_str(&format!("{a}\t{}\n", n.name));
        }
    }
    // A machine's share: the nodes on the other machines too.
    for (name, a) in &lab.remote_names {
        s.push_str(&format!("{a}\t{name}\n"));
    }
    s
}

fn shared_file(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("hosts")
}

fn etc_dir(netns: &str) -> PathBuf {
    Path::new(ETC_NETNS_DIR).join(netns)
}

const JOURNAL_PREFIX: &str = "etc ";

/// Directories the journal lists as made (or about to be made) for `lab`.
fn journaled(lab: &str) -> Vec<PathBuf> {
    fs::read_to_string(state::lab_dir(lab).join("journal"))
        .map(|s| {
            s.lines()
                .filter_map(|l| l.strip_prefix(JOURNAL_PREFIX))
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

fn journal(lab: &str, dirs: &[PathBuf]) -> Result<(), Error> {
    let p = state::lab_dir(lab).join("journal");
    let mut body = String::new();
    for d in dirs {
        body.push_str(JOURNAL_PREFIX);
        body.push_str(&d.to_string_lossy());
        body.push('\n');
    }
    state::append(&p, &body)
}

/// True when `dir/hosts` is our symlink to `target`.
fn ours(dir: &Path, target: &Path) -> bool {
    fs::read_link(dir.join("hosts")).is_ok_and(|t| t == target)
}

fn remove_dir(dir: &Path, target: &Path) {
    if ours(dir, target) {
        let _ = fs::remove_file(dir.join("hosts"));
    }
    // Only if empty: files someone else put there stay. A journaled
    // directory a killed run made but never linked is empty, and goes too.
    let _ = fs::remove_dir(dir);
}

/// Make the lab's names match `lab`: rewrite the shared file if it changed,
/// link it from every node's directory, and unlink nodes that left.
pub fn sync(lab: &Lab) -> Result<(), Error> {
    let target = shared_file(&lab.name);
    let text = hosts_text(lab);
    if fs::read_to_string(&target).ok().as_deref() != Some(text.as_str()) {
        let tmp = target.with_extension("tmp");
        fs::write(&tmp, &text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &target)
            .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    }
    let want: Vec<PathBuf> = lab.nodes.values().map(|n| etc_dir(&n.netns)).collect();
    // Journaled first, so a run killed in between still gets them removed.
    journal_all(lab)?;
    for d in &want {
        if ours(d, &target) {
            continue;
        }
        fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        let link = d.join("hosts");
        match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {
                let _ = fs::remove_file(&link);
            }
            Ok(_) => {
                return Err(Error::Missing {
                    what: format!("{} exists and is not weft's", link.display()),
                    help: "remove it, or weft cannot give the node names".into(),
                })
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| Error::io(format!("creating {}", link.display()), e))?;
    }
    for d in stale(&lab.name, &target) {
        if !want.contains(&d) {
            remove_dir(&d, &target);
        }
    }
    Ok(())
}

/// Our directories: journaled ones, and any `/etc/netns/weft-LAB.*` whose
/// hosts links to this lab's file (left by a killed run).
fn stale(lab: &str, target: &Path) -> Vec<PathBuf> {
    let mut v = journaled(lab);
    let prefix = weft_topo::netns_name(weft_topo::machines::split_share_name(lab).0, "");
    if let Ok(rd) = fs::read_dir(ETC_NETNS_DIR) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) && ours(&e.path(), target) {
                v.push(e.path());
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Journal the name directories of every node (after the journal was
/// rewritten).
pub fn journal_all(lab: &Lab) -> Result<(), Error> {
    let dirs: Vec<PathBuf> = lab.nodes.values().map(|n| etc_dir(&n.netns)).collect();
    journal(&lab.name, &dirs)
}

/// Remove every name directory of the lab, and the shared file.
pub fn remove_all(lab: &str) {
    let target = shared_file(lab);
    for d in stale(lab, &target) {
        remove_dir(&d, &target);
    }
    let _ = fs::remove_file(&target);
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_lists_every_node_by_its_address() {
        let src = r#"
name = "n"
[nodes.br]
kind = "bridge"
addresses = ["10.0.0.1/24", "fd00::1/64"]
[nodes.h]
count = 2
attach = "br"
[nodes.lonely]
"#;
        let lab = weft_topo::parse(src).unwrap().lab;
        let t = super::hosts_text(&lab);
        assert!(t.contains("\n127.0.0.1\tlocalhost\n"), "{t}");
        assert!(t.contains("\n10.0.0.1\tbr\n"), "{t}");
        assert!(t.contains("\n10.0.0.2\th1\n10.0.0.3\th2\n"), "{t}");
        assert!(!t.contains("lonely"), "{t}");
    }
}
