//! The plan's processes and files: the datapath and each switch's
//! settings in it, tunnel processes, name files, mount namespaces and
//! services. Each kind is brought in line with the lab being applied in
//! one step (the datapath is told every switch change at once, the tunnel
//! ends are reconciled together), and every operation of that kind counts
//! as applied when the step succeeds: a bulk step that reaches the target
//! lab is what applying each operation in turn would reach.
//!
//! Removals run before the kernel work (a process would keep a deleted
//! namespace alive, a tunnel would run on a deleted device); additions and
//! changes after it, services last.

use std::path::Path;
use std::thread::JoinHandle;

use weft_topo::{Lab, NodeKind, Op, ResKey};

use super::Exec;
use crate::{datapath, names, services, tunnels, Error, Event};

/// The interfaces of switch (and wire) nodes that operations remove and
/// make again (a port cabled to another node; `(node, "")`: the node's
/// namespace, so all of them): the datapath's sockets on them point at
/// the removed ones and are opened again. Ports only added or only
/// removed are plain live edits of the running datapath.
pub(crate) fn remade_switch_ports(ops: &[Op], labs: [&Lab; 2]) -> datapath::Remade {
    // A wire's ends are the datapath's sockets too.
    let is_switch = |n: &str| {
        labs.iter().any(|l| {
            l.nodes
                .get(n)
                .is_some_and(|x| x.kind == NodeKind::Switch || x.wire.is_some())
        })
    };
    let mut removed = std::collections::BTreeSet::new();
    let mut added = std::collections::BTreeSet::new();
    for o in ops {
        let side = match o {
            Op::Remove { .. } => &mut removed,
            Op::Add { .. } => &mut added,
            Op::Change { .. } => continue,
        };
        match o.key() {
            ResKey::Veth { a, b } => {
                for e in [a, b] {
                    if is_switch(&e.node) {
                        side.insert((e.node.clone(), e.iface.clone()));
                    }
                }
            }
            ResKey::Device { node, iface } if is_switch(node) => {
                side.insert((node.clone(), iface.clone()));
            }
            ResKey::Netns { node } if is_switch(node) => {
                side.insert((node.clone(), String::new()));
            }
            _ => {}
        }
    }
    removed.intersection(&added).cloned().collect()
}

fn is_workload(k: &ResKey) -> bool {
    matches!(k, ResKey::Mounts { .. } | ResKey::Service { .. })
}

/// The indexes of the operations on keys that `pick` selects, and of
/// those that are removals.
fn select(ops: &[Op], pick: impl Fn(&ResKey) -> bool) -> (Vec<usize>, bool) {
    let idx: Vec<usize> = (0..ops.len()).filter(|&i| pick(ops[i].key())).collect();
    let removes = idx.iter().any(|&i| matches!(ops[i], Op::Remove { .. }));
    (idx, removes)
}

/// The lab `lab` without the services, containers and binds that `ops`
/// remove.
fn without_removed(lab: &Lab, ops: &[Op]) -> Lab {
    let mut l = lab.clone();
    for o in ops {
        let Op::Remove { key, .. } = o else { continue };
        match key {
            ResKey::Service { node, service } => {
                if let Some(n) = l.nodes.get_mut(node) {
                    if service == weft_topo::workload::CONTAINER_SERVICE {
                        n.container = None;
                    }
                    n.services.remove(service);
                }
            }
            ResKey::Mounts { node } => {
                if let Some(n) = l.nodes.get_mut(node) {
                    n.binds.clear();
                }
            }
            _ => {}
        }
    }
    l
}

/// Brings the mount namespaces and services in line with `new` (the lab
/// before is `old`); returns the indexes of the additions and changes of
/// `ops` that took effect (removals are [`Exec::process_removals`]').
pub(crate) fn apply_workloads(
    new: &Lab,
    old: Option<&Lab>,
    ops: &[Op],
    exe: Option<&Path>,
    progress: &dyn Fn(Event),
) -> Result<Vec<usize>, Error> {
    let (mut idx, _) = select(ops, is_workload);
    idx.retain(|&i| !matches!(ops[i], Op::Remove { .. }));
    if idx.is_empty() {
        return Ok(idx);
    }
    services::sync_mounts(new, old)?;
    services::ensure(new, exe, progress)?;
    Ok(idx)
}

impl Exec<'_> {
    /// Starts writing the name files of the lab being applied, when the
    /// plan changes them: they depend only on the file, and writing them
    /// (directories and links on /etc) overlaps the kernel work.
    pub(super) fn names_job(&self, ops: &[Op]) -> Option<JoinHandle<Result<(), Error>>> {
        let (idx, _) = select(ops, |k| {
            matches!(k, ResKey::Names { .. } | ResKey::Hosts { .. })
        });
        if idx.is_empty() {
            return None;
        }
        let lab = self.new.clone();
        Some(std::thread::spawn(move || names::sync(&lab)))
    }

    /// Stops what the plan removes, before the kernel objects it uses go.
    pub(super) fn process_removals(&mut self, ops: &[Op]) -> Result<(), Error> {
        let Some(current) = self.old else {
            return Ok(());
        };
        let mut done = Vec::new();
        let (w, removes) = select(ops, is_workload);
        if removes {
            let kept = without_removed(current, ops);
            services::sync_mounts(&kept, Some(current))?;
            services::ensure(&kept, self.exe.as_deref(), self.progress)?;
            done.extend(
                w.into_iter()
                    .filter(|&i| matches!(ops[i], Op::Remove { .. })),
            );
        }
        for (i, o) in ops.iter().enumerate() {
            match o {
                Op::Remove {
                    key: ResKey::Tunnel { node, iface },
                    ..
                } => {
                    tunnels::stop_end(self.lab_name, &weft_topo::Endpoint::new(node, iface));
                    done.push(i);
                }
                Op::Remove {
                    key: ResKey::Datapath { .. },
                    ..
                } => {
                    datapath::stop(self.lab_name)?;
                    done.push(i);
                }
                _ => {}
            }
        }
        done.sort_unstable();
        self.applied.extend(done);
        Ok(())
    }

    /// Saves the lab being applied, marked unfinished, for the processes
    /// about to start that read it (the kernel side is done; a run that
    /// dies from here on is finished by the next). The state in memory
    /// keeps the lab as it was until `up` commits.
    fn save_applying(&mut self) -> Result<(), Error> {
        let was = (self.state.lab.clone(), self.state.unfinished);
        self.state.lab = self.new.clone();
        self.state.unfinished = true;
        let saved = crate::state::save(self.lab_name, self.state);
        (self.state.lab, self.state.unfinished) = was;
        saved
    }

    /// Starts or changes what the plan adds or changes, after the kernel
    /// work that makes what it runs on. Services are left for
    /// [`apply_workloads`] when `defer_workloads` is set (`weft up` starts
    /// them once the network is usable).
    pub(super) fn processes(
        &mut self,
        ops: &[Op],
        names_job: Option<JoinHandle<Result<(), Error>>>,
    ) -> Result<(), Error> {
        let adds = |o: &Op| !matches!(o, Op::Remove { .. });
        let (dp, _) = select(ops, |k| {
            matches!(k, ResKey::Datapath { .. } | ResKey::Switch { .. })
        });
        let remade = remade_switch_ports(ops, [self.new, self.old.unwrap_or(self.new)]);
        // Anything but the datapath's own removal (done before the kernel
        // work): a switch or wire added, changed or removed, or a port
        // made again, is told to the running datapath (or starts one).
        let told = dp.iter().any(|&i| {
            !matches!(
                ops[i],
                Op::Remove {
                    key: ResKey::Datapath { .. },
                    ..
                }
            )
        });
        if told || !remade.is_empty() {
            // A (re)started datapath reads its switches from the state.
            self.save_applying()?;
            self.restarted = datapath::ensure(self.new, self.exe.as_deref(), &remade)?;
        }
        // Removed switches' settings counted with the kernel removals.
        self.applied
            .extend(dp.into_iter().filter(|&i| adds(&ops[i])));
        let (tun, _) = select(ops, |k| matches!(k, ResKey::Tunnel { .. }));
        let tun_adds: Vec<usize> = tun.into_iter().filter(|&i| adds(&ops[i])).collect();
        if !tun_adds.is_empty() {
            // A tunnel process starts as `weft exec LAB NODE -- weft
            // tunnel ...`, which finds its node in the saved state: saved
            // before, or it may read the lab as it was and exit.
            self.save_applying()?;
            tunnels::reconcile(self.new)?;
            self.applied.extend(tun_adds);
        }
        if let Some(job) = names_job {
            job.join().unwrap_or_else(|_| {
                Err(Error::Missing {
                    what: "writing the name files failed (the writer panicked)".into(),
                    help: "run `weft up` again".into(),
                })
            })?;
            // Mount namespaces bind the name files, which were rewritten
            // (by rename): they bind the new ones.
            if self.new.nodes.values().any(|n| !n.binds.is_empty()) {
                services::sync_mounts(self.new, self.old)?;
            }
            let (idx, _) = select(ops, |k| {
                matches!(k, ResKey::Names { .. } | ResKey::Hosts { .. })
            });
            self.applied.extend(idx);
        }
        if !self.defer_workloads {
            let done =
                apply_workloads(self.new, self.old, ops, self.exe.as_deref(), self.progress)?;
            self.applied.extend(done);
        }
        Ok(())
    }
}
