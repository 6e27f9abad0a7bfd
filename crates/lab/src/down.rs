//! `weft down`: stop the lab's processes and remove its namespaces.

use std::time::{Duration, Instant};

use crate::{apply, datapath, machines, names, owner, services, state, tunnels, Error};

/// A process that `weft down` ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// The namespace it was in.
    pub netns: String,
}

/// Ends every process inside these network namespaces or their nodes'
/// mount namespaces: SIGTERM, two seconds, SIGKILL.
pub(crate) fn end_processes(netns: &[String]) -> Vec<Ended> {
    let mut ids: Vec<(String, weft_sys::netns::NsIdentity)> = netns
        .iter()
        .filter_map(|ns| {
            weft_sys::netns::identity(ns)
                .ok()
                .map(|id| (ns.clone(), id))
        })
        .collect();
    ids.extend(services::mount_identities(netns));
    if ids.is_empty() {
        return Vec::new();
    }
    let just: Vec<_> = ids.iter().map(|(_, id)| *id).collect();
    let members = weft_sys::netns::members_of_many(&just);
    let mut out: Vec<Ended> = Vec::new();
    let mut procs = Vec::new();
    for (ns, id) in &ids {
        for &pid in members.get(id).into_iter().flatten() {
            if out.iter().any(|e| e.pid == pid) {
                continue;
            }
            if let Some(start_time) = weft_sys::process::start_time(pid) {
                procs.push(weft_sys::process::ProcId { pid, start_time });
                out.push(Ended {
                    pid,
                    comm: weft_sys::process::comm(pid).unwrap_or_default(),
                    netns: ns.clone(),
                });
            }
        }
    }
    let ran = weft_sys::process::stop_all(&procs, Duration::from_secs(2));
    out.retain(|e| ran.iter().any(|p| p.pid == e.pid));
    out.sort_by_key(|e| e.pid);
    out
}

/// Delete namespaces and wait until the kernel has destroyed them (and the
/// veths cabled from them into surviving namespaces), so their names can be
/// used again at once.
pub(crate) fn remove_and_wait(netns: &[String]) -> Result<usize, Error> {
    if netns.is_empty() {
        return Ok(0);
    }
    let watch = weft_sys::netns::watch_cleanup()?;
    for ns in netns {
        weft_sys::netns::delete(ns)?;
    }
    watch.wait(Duration::from_secs(60))?;
    Ok(netns.len())
}

/// A deleted namespace and its identity (to find processes keeping it).
type Deleted = (String, Option<weft_sys::netns::NsIdentity>);

/// How [`down`] removes a lab; the default is what `weft down LAB` does.
#[derive(Default)]
pub struct DownOptions {
    /// Return without waiting for the kernel to finish destroying the
    /// namespaces.
    pub no_wait: bool,
    /// Leave processes that are not the lab's services running (they keep
    /// their deleted namespaces alive; `held` lists them).
    pub keep_processes: bool,
}

/// What [`down`] removed.
#[derive(Debug, Default)]
pub struct DownReport {
    /// The network namespaces deleted.
    pub removed: Vec<String>,
    /// The lab's services that were stopped: `node:service (pid N)`.
    pub services: Vec<String>,
    /// Other processes in the lab's namespaces that were ended.
    pub ended: Vec<Ended>,
    /// Namespaces still kept alive by processes running in them: pid lists.
    pub held: Vec<(String, Vec<u32>)>,
}

/// Remove every namespace of the lab (and with them every interface, address
/// and route in them) and nothing else; works without the file, and after a
/// `weft up` that was killed.
pub fn down(name: &str, opts: &DownOptions) -> Result<DownReport, Error> {
    machines::check_key(name)?;
    weft_sys::caps::require_admin("weft down")?;
    // A lab without a state directory may still have tagged namespaces
    // (a lost /run/weft): nothing to lock, and nothing made for it.
    let _lock = state::lock_existing(name)?;
    // The datapath first, by its recorded pid: it holds sockets in the
    // switch namespaces.
    datapath::stop(name)?;
    // Tunnel processes run inside the namespaces and would keep them alive.
    tunnels::stop_all(name);
    let mut candidates: Vec<String> = state::journal_entries(name);
    if let Some(st) = state::load(name).ok().flatten() {
        candidates.extend(st.lab.nodes.values().map(|n| n.netns.clone()));
    }
    // Namespaces with the lab's prefix that the journal does not list are
    // taken only if they carry the lab's ownership tag.
    // A share (`LAB@MACHINE`) names its namespaces after the lab.
    let prefix = weft_topo::netns_name(weft_topo::machines::split_share_name(name).0, "");
    for ns in weft_sys::netns::list()? {
        if ns.starts_with(&prefix) && !candidates.contains(&ns) && has_owner_tag(&ns, name) {
            candidates.push(ns);
        }
    }
    candidates.sort();
    candidates.dedup();
    let mut report = DownReport {
        services: services::stop_all(name).services,
        ..DownReport::default()
    };
    if !opts.keep_processes {
        report.ended = end_processes(&candidates);
    }
    services::remove_mounts(&candidates);
    // weft's nftables tables go before the links they name.
    if let Some(st) = state::load(name).ok().flatten() {
        for node in st.lab.nat.keys() {
            if let Some(n) = st.lab.nodes.get(node) {
                if weft_sys::netns::exists(&n.netns) {
                    let _ = apply::nat::unload(node, &n.netns);
                }
            }
        }
    }
    let t0 = Instant::now();
    // Armed before the first deletion so it orders after all of them.
    let watch = if opts.no_wait {
        None
    } else {
        Some(weft_sys::netns::watch_cleanup()?)
    };
    let mut held_ids = Vec::new();
    // Deleting is a umount and an unlink per namespace (~0.1-0.2 ms each on
    // this machine's ext4 /run); two threads halve it for big labs.
    let present: Vec<String> = candidates
        .into_iter()
        .filter(|ns| weft_sys::netns::exists(ns))
        .collect();
    let chunk = present.len().div_ceil(2).max(1);
    let results: Vec<Result<Vec<Deleted>, Error>> = std::thread::scope(|s| {
        let workers: Vec<_> = present
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut done = Vec::with_capacity(part.len());
                    for ns in part {
                        let id = weft_sys::netns::identity(ns).ok();
                        weft_sys::netns::delete(ns)?;
                        done.push((ns.clone(), id));
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("delete worker"))
            .collect()
    });
    for r in results {
        for (ns, id) in r? {
            if let Some(id) = id {
                held_ids.push((ns.clone(), id));
            }
            report.removed.push(ns);
        }
    }
    let t1 = Instant::now();
    let ids: Vec<_> = held_ids.iter().map(|(_, id)| *id).collect();
    let mut holders = weft_sys::netns::holders_of_many(&ids);
    for (ns, id) in held_ids {
        if let Some(pids) = holders.remove(&id) {
            report.held.push((ns, pids));
        }
    }
    tracing::debug!(namespaces = report.removed.len(), delete = ?(t1 - t0), holders = ?t1.elapsed(), "deleted");
    // The name directories (on /etc's disk) go while the kernel destroys
    // the namespaces: neither waits for the other.
    let waited = std::thread::scope(|s| {
        let names = s.spawn(|| names::remove_all(name));
        let mut waited = Ok(());
        if !opts.no_wait && !report.removed.is_empty() && report.held.is_empty() {
            let t2 = Instant::now();
            if let Some(w) = watch {
                waited = w.wait(Duration::from_secs(60));
            }
            tracing::debug!(wait = ?t2.elapsed(), "kernel done");
        }
        if let Err(p) = names.join() {
            std::panic::resume_unwind(p);
        }
        waited
    });
    waited?;
    state::remove(name)?;
    Ok(report)
}

fn has_owner_tag(netns: &str, lab: &str) -> bool {
    owner::owner_of(netns).as_deref() == Some(lab)
}
