//! What weft knows about the labs it built, kept under /run/weft.
//!
//! /run is a tmpfs: it lives exactly as long as the namespaces it describes
//! (both vanish at reboot). Per lab:
//! - `journal`: one line per namespace, appended *before* the namespace is
//!   created, so a `weft up` killed at any point leaves a record of all it
//!   may have made;
//! - `state.json`: the lab as last applied, written atomically once an
//!   apply has finished;
//! - `lock`: held (flock) by whoever changes the lab.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_topo::Lab;

use crate::Error;

/// Root of weft's state: a [`crate::Context`]'s state directory once one
/// was used; else `WEFT_STATE_DIR` (tests use that to keep their labs
/// apart; without root, joining weft's user namespace sets it to
/// `$XDG_RUNTIME_DIR/weft/state`, see weft_sys::userns); else /run/weft.
pub fn state_root() -> PathBuf {
    if let Some(d) = crate::context::state_dir() {
        return d;
    }
    std::env::var_os("WEFT_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/weft"))
}

/// The state directory of a lab (or of a share, `LAB@MACHINE`). Only for
/// a name [`check_key`] accepted: the functions here that read or write
/// state check it first.
pub fn lab_dir(name: &str) -> PathBuf {
    state_root().join("labs").join(name)
}

/// The one check every command's lab name passes before it becomes part
/// of a path (`weft link ../../x ...` must not reach outside the state
/// directory): a lab name, or a share's state key `LAB@MACHINE`.
pub fn check_key(key: &str) -> Result<(), Error> {
    let (lab, machine) = weft_topo::machines::split_share_name(key);
    weft_topo::file::check_lab_name(lab).map_err(|e| Error::invalid(e.to_string()))?;
    if let Some(m) = machine {
        weft_topo::file::check_lab_name(m).map_err(|e| Error::Machine {
            machine: m.to_string(),
            detail: e.to_string().replace("lab name", "name"),
        })?;
    }
    Ok(())
}

fn checked_dir(name: &str) -> Result<PathBuf, Error> {
    check_key(name)?;
    Ok(lab_dir(name))
}

/// The first interface index weft hands out. Kernel-chosen indexes in a
/// fresh namespace start at 2, so weft's never collide with them, and the
/// two ends of a veth never share an index (which would delay the bridge
/// port's carrier by up to a second).
pub const FIRST_INDEX: u32 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub lab: Lab,
    /// The file it came from, when it came from a file.
    pub source: Option<PathBuf>,
    pub next_index: u32,
    /// Values sysctls had before weft set them, so removing a sysctl from
    /// the file restores it: "node key" -> value.
    #[serde(default)]
    pub sysctl_before: BTreeMap<String, String>,
    /// The lab was applied but not finished (not usable in time, a check
    /// failed) and kept with `--keep-on-error`: the next `up` finishes it
    /// even when the file did not change.
    #[serde(default)]
    pub unfinished: bool,
}

pub fn load(name: &str) -> Result<Option<State>, Error> {
    let p = checked_dir(name)?.join("state.json");
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::State {
            path: p,
            detail: format!("{e}; the file is corrupt: `weft down {name}` still removes the lab using the journal"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

pub fn save(name: &str, st: &State) -> Result<(), Error> {
    let dir = checked_dir(name)?;
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join("state.json.tmp");
    let body = serde_json::to_vec_pretty(st).expect("state serializes");
    fs::write(&tmp, body).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, dir.join("state.json"))
        .map_err(|e| Error::io(format!("writing state of lab {name}"), e))
}

/// Names of the namespaces the journal says weft may have created.
pub fn journal_entries(name: &str) -> Vec<String> {
    fs::read_to_string(lab_dir(name).join("journal"))
        .map(|s| {
            s.lines()
                .filter_map(|l| l.strip_prefix("netns "))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Record namespaces about to be created, in one write: a write(2) that has
/// returned survives the process being killed.
pub fn journal_netns(name: &str, netns: &[String]) -> Result<(), Error> {
    if netns.is_empty() {
        return Ok(());
    }
    let dir = checked_dir(name)?;
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut body = String::with_capacity(netns.len() * 32);
    for n in netns {
        body.push_str("netns ");
        body.push_str(n);
        body.push('\n');
    }
    append(&dir.join("journal"), &body)
}

/// Appends `body` to the file at `p` (made if missing) in one write, so a
/// journal line is either there whole or not at all.
pub(crate) fn append(p: &Path, body: &str) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
    f.write_all(body.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", p.display()), e))
}

/// Rewrite the journal to hold exactly these namespaces (after an apply
/// removed some, so the journal does not grow without bound).
pub fn journal_reset(name: &str, netns: &[String]) -> Result<(), Error> {
    let p = lab_dir(name).join("journal");
    let _ = fs::remove_file(&p);
    journal_netns(name, netns)
}

pub fn remove(name: &str) -> Result<(), Error> {
    let dir = lab_dir(name);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}

/// Labs that have a state directory.
pub fn labs() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(state_root().join("labs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// An exclusive lock on a lab, released on drop.
pub struct LabLock {
    _file: File,
    /// The state directory, when this lock made it: on drop it goes again
    /// if nothing else was put in it (a `weft up` refused before it built
    /// anything leaves no trace).
    made: Option<PathBuf>,
}

/// Lock a lab that may not exist yet (`weft up`): its state directory is
/// made if missing, and removed again on drop if it stayed empty.
pub fn lock(name: &str) -> Result<LabLock, Error> {
    let dir = checked_dir(name)?;
    let made = !dir.is_dir();
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let f = lock_in(name, &dir)?.expect("the directory was just made");
    Ok(LabLock {
        _file: f,
        made: made.then_some(dir),
    })
}

/// Lock a lab that exists; `None` (and nothing made) when it has no state
/// directory. For commands that change a built lab (`weft link`, `weft
/// down`): an unknown name must not leave a directory behind.
pub fn lock_existing(name: &str) -> Result<Option<LabLock>, Error> {
    let dir = checked_dir(name)?;
    Ok(lock_in(name, &dir)?.map(|f| LabLock {
        _file: f,
        made: None,
    }))
}

/// Open and lock `dir/lock`; `None` when `dir` does not exist.
fn lock_in(name: &str, dir: &Path) -> Result<Option<File>, Error> {
    let p: &Path = &dir.join("lock");
    let f = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", p.display()), e)),
    };
    nix_flock(&f).map_err(|e| Error::io(format!("locking lab {name} ({})", p.display()), e))?;
    Ok(Some(f))
}

impl Drop for LabLock {
    fn drop(&mut self) {
        let Some(dir) = &self.made else { return };
        let only_lock = fs::read_dir(dir)
            .is_ok_and(|d| d.filter_map(|e| e.ok()).all(|e| e.file_name() == "lock"));
        if only_lock {
            let _ = fs::remove_file(dir.join("lock"));
            let _ = fs::remove_dir(dir);
        }
    }
}

fn nix_flock(f: &File) -> io::Result<()> {
    weft_sys::flock_exclusive(f.as_raw_fd())
}
