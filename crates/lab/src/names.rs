//! Names: every node of a lab can reach the others by name, through
//! `/etc/netns/NETNS/hosts` (the `ip netns exec` convention; `weft exec`
//! and `weft check` commands see it as /etc/hosts).
//!
//! The lab has one hosts file, in its state directory, and one directory
//! of name files beside it (`etc/`, holding `hosts`, a symlink to the
//! file); each node's `/etc/netns/NETNS` is a symlink to that directory.
//! So an edit that adds a node rewrites one file, not one per node, and a
//! node costs one inode in /etc, which on a disk without a journal (this
//! machine's) is slow to allocate after many were freed: ext4 skips
//! recently deleted inodes one by one. Where `/etc/netns/NETNS` already is
//! a directory (made by someone else, or by an earlier weft), weft's
//! `hosts` goes inside it instead, as a symlink to the file. The entries
//! are written to the journal before they are made, and `weft down`
//! removes them (also after a killed run). An entry is only ever removed
//! when it links to this lab's: nothing else in /etc/netns is touched.

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

/// The lab's directory of name files, which each node's entry links to.
fn shared_dir(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("etc")
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

/// How a node's entry in /etc/netns is the lab's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ours {
    /// A symlink to the lab's directory of name files.
    Link,
    /// A directory whose `hosts` is a symlink to the lab's hosts file.
    Dir,
}

fn ours(entry: &Path, lab: &str) -> Option<Ours> {
    match fs::read_link(entry) {
        Ok(t) => (t == shared_dir(lab)).then_some(Ours::Link),
        Err(_) => fs::read_link(entry.join("hosts"))
            .is_ok_and(|t| t == shared_file(lab))
            .then_some(Ours::Dir),
    }
}

fn remove_entry(entry: &Path, lab: &str) {
    match ours(entry, lab) {
        Some(Ours::Link) => {
            let _ = fs::remove_file(entry);
        }
        Some(Ours::Dir) => {
            let _ = fs::remove_file(entry.join("hosts"));
            // Only if empty: files someone else put there stay.
            let _ = fs::remove_dir(entry);
        }
        // A journaled directory a killed earlier weft made but never
        // linked is empty, and goes too; anything else stays.
        None => {
            let _ = fs::remove_dir(entry);
        }
    }
}

/// A symlink at `link` to `target`, replacing a symlink that is there.
fn relink(target: &Path, link: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            let _ = fs::remove_file(link);
        }
        Ok(_) => {
            return Err(Error::Missing {
                what: format!("{} exists and is not weft's", link.display()),
                help: "remove it, or weft cannot give the node names".into(),
            })
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| Error::io(format!("creating {}", link.display()), e))
}

/// Make the lab's names match `lab`: rewrite the shared file if it changed,
/// link every node's entry to it, and unlink nodes that left.
pub fn sync(lab: &Lab) -> Result<(), Error> {
    let target = shared_file(&lab.name);
    let text = hosts_text(lab);
    if fs::read_to_string(&target).ok().as_deref() != Some(text.as_str()) {
        let tmp = target.with_extension("tmp");
        fs::write(&tmp, &text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &target)
            .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    }
    let shared = shared_dir(&lab.name);
    let inner = shared.join("hosts");
    if fs::read_link(&inner).ok().as_deref() != Some(target.as_path()) {
        fs::create_dir_all(&shared)
            .map_err(|e| Error::io(format!("creating {}", shared.display()), e))?;
        relink(&target, &inner)?;
    }
    let want: Vec<PathBuf> = lab.nodes.values().map(|n| etc_dir(&n.netns)).collect();
    // Journaled first, so a run killed in between still gets them removed.
    journal_all(lab)?;
    if !want.is_empty() {
        fs::create_dir_all(ETC_NETNS_DIR)
            .map_err(|e| Error::io(format!("creating {ETC_NETNS_DIR}"), e))?;
    }
    for d in &want {
        if ours(d, &lab.name).is_some() {
            continue;
        }
        match fs::symlink_metadata(d) {
            Ok(m) if m.is_dir() => relink(&target, &d.join("hosts"))?,
            Ok(_) => {
                return Err(Error::Missing {
                    what: format!("{} exists and is not weft's", d.display()),
                    help: "remove it, or weft cannot give the node names".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::os::unix::fs::symlink(&shared, d)
                    .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
            }
            Err(e) => return Err(Error::io(format!("inspecting {}", d.display()), e)),
        }
    }
    for d in stale(&lab.name) {
        if !want.contains(&d) {
            remove_entry(&d, &lab.name);
        }
    }
    Ok(())
}

/// Our entries: journaled ones, and any `/etc/netns/weft-LAB.*` that
/// links to this lab's (left by a killed run).
fn stale(lab: &str) -> Vec<PathBuf> {
    let mut v = journaled(lab);
    let prefix = weft_topo::netns_name(weft_topo::machines::split_share_name(lab).0, "");
    if let Ok(rd) = fs::read_dir(ETC_NETNS_DIR) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix)
                && ours(&e.path(), lab).is_some()
            {
                v.push(e.path());
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Journal the name entries of every node (after the journal was
/// rewritten).
pub fn journal_all(lab: &Lab) -> Result<(), Error> {
    let dirs: Vec<PathBuf> = lab.nodes.values().map(|n| etc_dir(&n.netns)).collect();
    journal(&lab.name, &dirs)
}

/// Remove every name entry of the lab, and the shared file and directory.
pub fn remove_all(lab: &str) {
    for d in stale(lab) {
        remove_entry(&d, lab);
    }
    let shared = shared_dir(lab);
    let _ = fs::remove_file(shared.join("hosts"));
    let _ = fs::remove_dir(&shared);
    let _ = fs::remove_file(shared_file(lab));
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
