//! Labs whose owning program died: a [`crate::Lab`] records its process
//! (pid and start time) as `owner.json` in the lab's state directory
//! before it builds anything; the next [`crate::Lab`] built in the same
//! state directory, and every `weft` command, removes the labs whose owner
//! is gone (a test killed with SIGKILL never ran its `Drop`). Labs built
//! with `weft up` have no owner record and are never touched.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weft_sys::process::ProcId;

use crate::{state, DownOptions, Error};

#[derive(Serialize, Deserialize)]
struct Owner {
    pid: u32,
    start_time: u64,
}

fn owner_path(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("owner.json")
}

/// Record this process as the owner of `lab` (made now, or about to be).
pub(crate) fn claim(lab: &str) -> Result<(), Error> {
    state::check_key(lab)?;
    let pid = std::process::id();
    let start_time = weft_sys::process::start_time(pid).unwrap_or(0);
    let dir = state::lab_dir(lab);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join("owner.json.tmp");
    let body = serde_json::to_vec(&Owner { pid, start_time }).expect("serializes");
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, owner_path(lab)))
        .map_err(|e| Error::io(format!("recording the owner of lab {lab}"), e))
}

/// The owner of `lab` if it has a record and that process is gone.
fn orphaned(lab: &str) -> bool {
    let Ok(b) = std::fs::read(owner_path(lab)) else {
        return false;
    };
    let Ok(o) = serde_json::from_slice::<Owner>(&b) else {
        return false;
    };
    !weft_sys::process::is_running(ProcId {
        pid: o.pid,
        start_time: o.start_time,
    })
}

/// A lab removed because its owner died, and what was in the way.
#[derive(Debug)]
pub struct Reaped {
    /// The lab's name.
    pub lab: String,
    /// Processes still running in its namespaces (started by the dead
    /// owner), which were killed.
    pub killed: Vec<u32>,
}

/// Remove every lab in the state directory whose owning process died.
/// Called by [`crate::Lab`] before it builds a lab and by every `weft`
/// command; errors on one lab do not stop the others (they are reported
/// on stderr and tried again next time).
pub fn reap_orphans() -> Vec<Reaped> {
    let mut out = Vec::new();
    for lab in state::labs() {
        // Without the rights to remove it, it waits for a run that has
        // them (a `weft status` by another user must not fail).
        if !orphaned(&lab) || weft_sys::caps::require_admin("").is_err() {
            continue;
        }
        // The dead test's own processes keep its namespaces alive (and
        // its sockets bound): nobody else will end them. Found while the
        // namespaces still have their names (an identity taken then
        // cannot have been reused by a new namespace), never this process.
        let mut netns = state::journal_entries(&lab);
        if let Ok(Some(st)) = state::load(&lab) {
            netns.extend(st.lab.nodes.values().map(|n| n.netns.clone()));
        }
        let ids: Vec<_> = netns
            .iter()
            .filter_map(|n| weft_sys::netns::identity(n).ok())
            .collect();
        let me = std::process::id();
        let mut killed = Vec::new();
        for pid in weft_sys::netns::holders_of_many(&ids)
            .into_values()
            .flatten()
        {
            if pid == me || killed.contains(&pid) {
                continue;
            }
            if let Some(st) = weft_sys::process::start_time(pid) {
                let p = ProcId {
                    pid,
                    start_time: st,
                };
                let _ = weft_sys::process::stop(p, std::time::Duration::from_millis(200));
                killed.push(pid);
            }
        }
        match crate::down(&lab, &DownOptions::default()) {
            Ok(_) => out.push(Reaped { lab, killed }),
            Err(e) => eprintln!("weft: removing lab {lab}, whose program died: {e}"),
        }
    }
    out
}
