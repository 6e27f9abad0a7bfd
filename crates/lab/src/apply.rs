//! Turn a plan into kernel objects, fast, and undo it when it fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use weft_sys::netlink::{self as nl, Netlink, NewLink, PortState, SetLink};
use weft_sys::{netns, sysctl, tuntap};
use weft_topo::plan::Attrs;
use weft_topo::{Endpoint, IfaceKind, Lab, Op, Res, ResKey, Route, RouteKind};

use crate::state::State;
use crate::{Error, Event};

pub(crate) mod nat;
pub(crate) mod procs;
mod uplink;
mod vxlan;

/// The ownership tag weft writes as `lo`'s alias in each namespace it makes,
/// so `weft down` can tell its namespaces from others' with similar names.
pub fn owner_tag(lab: &str) -> String {
    format!("weft:{lab}")
}

/// The MTU to set on a device: what the file says, or after `mtu` was
/// removed from the file, the kernel's default for the device. A device
/// the file never gave an MTU keeps the kernel's (`lo` its 65536).
fn mtu_to_set(from: Option<&Attrs>, to: &Attrs, fresh: bool, iface: &str) -> Option<u32> {
    match from {
        _ if fresh => None,
        None => to.mtu,
        Some(f) if f.mtu != to.mtu => {
            Some(to.mtu.unwrap_or(if iface == "lo" { 65536 } else { 1500 }))
        }
        Some(_) => None,
    }
}

/// One namespace being worked on: its fd, a netlink socket inside it, and
/// the indexes of its interfaces by name.
pub(crate) struct NsHandle {
    pub node: String,
    pub fd: OwnedFd,
    pub nl: Netlink,
    pub index: HashMap<String, u32>,
    /// (what, op number) of each queued request, to map refusals to ops.
    pub ops: Vec<usize>,
}

impl NsHandle {
    /// Open an existing namespace and learn its interface indexes.
    pub fn open(node: &str, netns_name: &str) -> Result<NsHandle, Error> {
        let fd = netns::open(netns_name)?;
        let sock = netns::route_socket_in(fd.as_fd())?;
        let mut nl = Netlink::from_fd(sock)
            .map_err(|e| Error::io(format!("netlink socket in {netns_name}"), e))?;
        let index = nl
            .links()
            .map_err(|e| Error::io(format!("listing the interfaces of {netns_name}"), e))?
            .into_iter()
            .map(|l| (l.name, l.index))
            .collect();
        Ok(NsHandle {
            node: node.to_string(),
            fd,
            nl,
            index,
            ops: Vec::new(),
        })
    }
}

pub(crate) struct Exec<'a> {
    pub lab_name: &'a str,
    pub new: &'a Lab,
    pub old: Option<&'a Lab>,
    pub state: &'a mut State,
    pub ns: BTreeMap<String, NsHandle>,
    pub threads: usize,
    pub progress: &'a dyn Fn(Event),
    /// Interfaces made in this run: their create-time MTU and MAC are set.
    created: BTreeSet<(String, String)>,
    /// Ports that joined their bridge in the request that created them.
    joined: BTreeSet<(String, String)>,
    /// Ops that took effect, for undoing them.
    pub applied: Vec<usize>,
    /// The `weft` binary that runs the datapath and the services'
    /// supervisor; default: the running executable.
    pub exe: Option<std::path::PathBuf>,
    /// Leave mount namespaces and services to
    /// [`procs::apply_workloads`], called once the lab is usable.
    pub defer_workloads: bool,
    /// The datapath was (re)started.
    pub restarted: bool,
}

/// The real kernel, as the planner's executor sees it: the same trait the
/// model kernel of the property tests implements (crates/topo exec.rs).
impl weft_topo::exec::Kernel for Exec<'_> {
    type Error = Error;

    fn apply(&mut self, ops: &[Op]) -> weft_topo::exec::Applied<Error> {
        let start = self.applied.len();
        let r = self.run(ops);
        weft_topo::exec::Applied {
            done: self.applied[start..].to_vec(),
            error: r.err(),
        }
    }
}

fn netns_of(new: &Lab, old: Option<&Lab>, node: &str) -> String {
    new.node(node)
        .or_else(|| old.and_then(|o| o.node(node)))
        .map(|n| n.netns.clone())
        .unwrap_or_else(|| weft_topo::netns_name(&new.name, node))
}

impl<'a> Exec<'a> {
    pub fn new(
        lab_name: &'a str,
        new: &'a Lab,
        old: Option<&'a Lab>,
        state: &'a mut State,
        threads: usize,
        progress: &'a dyn Fn(Event),
    ) -> Self {
        Exec {
            lab_name,
            new,
            old,
            state,
            ns: BTreeMap::new(),
            threads,
            progress,
            created: BTreeSet::new(),
            joined: BTreeSet::new(),
            applied: Vec::new(),
            exe: None,
            defer_workloads: false,
            restarted: false,
        }
    }

    fn handle(&mut self, node: &str) -> Result<&mut NsHandle, Error> {
        if !self.ns.contains_key(node) {
            let h = NsHandle::open(node, &netns_of(self.new, self.old, node))?;
            self.ns.insert(node.to_string(), h);
        }
        Ok(self.ns.get_mut(node).unwrap())
    }

    fn alloc_index(&mut self) -> u32 {
        let i = self.state.next_index;
        self.state.next_index += 1;
        i
    }

    fn index_of(&mut self, node: &str, iface: &str) -> Result<u32, Error> {
        let h = self.handle(node)?;
        h.index
            .get(iface)
            .copied()
            .ok_or_else(|| Error::NoInterface {
                node: node.to_string(),
                iface: iface.to_string(),
                known: String::new(),
            })
    }

    /// Apply the ops; on failure, `self.applied` says which took effect.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), Error> {
        let mut names = None;
        if let Err(e) = self
            .process_removals(ops)
            .and_then(|()| self.kernel(ops, &mut names))
        {
            // The name files were written (for the lab being applied) or
            // not: undoing must know which.
            if let Some(job) = names {
                if let Ok(Ok(())) = job.join() {
                    self.applied.extend((0..ops.len()).filter(|&i| {
                        matches!(ops[i].key(), ResKey::Names { .. } | ResKey::Hosts { .. })
                    }));
                }
            }
            return Err(e);
        }
        self.processes(ops, names)
    }

    /// The kernel objects of the ops; starts the name files' job in
    /// `names`.
    fn kernel(
        &mut self,
        ops: &[Op],
        names: &mut Option<std::thread::JoinHandle<Result<(), Error>>>,
    ) -> Result<(), Error> {
        let t0 = Instant::now();
        self.nat_removals(ops)?;
        self.removals(ops)?;
        let t1 = Instant::now();
        self.namespaces(ops)?;
        // The name files (an inode or two each on /etc's disk) are made
        // while the links are: creating namespaces keeps both cores busy,
        // the netlink batches that follow mostly one.
        *names = self.names_job(ops);
        let t2 = Instant::now();
        self.devices(ops)?;
        let t3 = Instant::now();
        self.sysctls(ops)?;
        let t4 = Instant::now();
        self.settings(ops)?;
        self.nat_loads(ops)?;
        tracing::debug!(
            removals = ?(t1 - t0), namespaces = ?(t2 - t1), devices = ?(t3 - t2), sysctls = ?(t4 - t3), settings = ?t4.elapsed(),
            ops = ops.len(), "applied"
        );
        Ok(())
    }

    fn removals(&mut self, ops: &[Op]) -> Result<(), Error> {
        let mut gone_ns = Vec::new();
        let mut batch = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let Op::Remove { key, implied, .. } = op else {
                continue;
            };
            if *implied {
                batch.push(i);
                continue;
            }
            let old = self.old.unwrap_or(self.new);
            match key {
                ResKey::Netns { node } => gone_ns.push((i, old.nodes[node].netns.clone())),
                ResKey::Veth { a, b } => {
                    // Delete from a side that stays (the other may be going).
                    let side = if self.new.nodes.contains_key(&a.node) {
                        a
                    } else {
                        b
                    };
                    let idx = self.index_of(&side.node, &side.iface)?;
                    let h = self.handle(&side.node)?;
                    h.nl.push(
                        nl::del_link(idx),
                        format!(
                            "ip link del {} (veth to {})",
                            side.iface,
                            if side == a { b } else { a }
                        ),
                    );
                    h.ops.push(i);
                }
                ResKey::Device { node, iface } => {
                    let idx = self.index_of(node, iface)?;
                    let h = self.handle(node)?;
                    h.nl.push(nl::del_link(idx), format!("ip link del {iface}"));
                    h.ops.push(i);
                }
                ResKey::Addr { node, iface, addr } => {
                    let idx = self.index_of(node, iface)?;
                    let h = self.handle(node)?;
                    h.nl.push(
                        nl::address(nl::Change::Remove, idx, *addr),
                        format!("ip addr del {addr} dev {iface}"),
                    );
                    h.ops.push(i);
                }
                ResKey::Route { node, route } => {
                    let spec = self.route_spec(node, route)?;
                    let h = self.handle(node)?;
                    h.nl.push(
                        nl::route(nl::Change::Remove, &spec),
                        format!("ip route del {route}"),
                    );
                    h.ops.push(i);
                }
                ResKey::Sysctl { node, key } => {
                    if let Some(before) = self.state.sysctl_before.remove(&format!("{node} {key}"))
                    {
                        let fd = self
                            .handle(node)?
                            .fd
                            .try_clone()
                            .map_err(|e| Error::io("dup", e))?;
                        let k = key.clone();
                        netns::run_in(fd.as_fd(), move || sysctl::write(&k, &before))??;
                    }
                    batch.push(i);
                }
                ResKey::Attrs { .. } => batch.push(i),
                // Done before this, in nat_removals.
                ResKey::Nat { .. } => {}
                // The datapath's: it forgets a switch when the lab settles.
                ResKey::Switch { .. } => batch.push(i),
                // Processes and files: before this, in process_removals.
                ResKey::Datapath { .. }
                | ResKey::Tunnel { .. }
                | ResKey::Names { .. }
                | ResKey::Hosts { .. }
                | ResKey::Mounts { .. }
                | ResKey::Service { .. } => {}
            }
        }
        self.flush()?;
        self.applied.extend(batch);
        for (i, name) in gone_ns {
            // Its handle goes first: the namespace is deleted next.
            self.ns.remove(ops[i].key().node());
            netns::delete(&name)?;
            self.applied.push(i);
        }
        Ok(())
    }

    fn namespaces(&mut self, ops: &[Op]) -> Result<(), Error> {
        let new_nodes: Vec<(usize, String)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Op::Add {
                    key: ResKey::Netns { node },
                    ..
                } => Some((i, node.clone())),
                _ => None,
            })
            .collect();
        // TUN/TAP devices are made through /dev/net/tun inside their
        // namespace: for new namespaces, while the worker is still in it.
        let mut tuns: HashMap<String, Vec<(usize, tuntap::TunTapSpec)>> = HashMap::new();
        for (i, o) in ops.iter().enumerate() {
            if let Op::Add {
                key: ResKey::Device { node, iface },
                val: Res::Device(k),
            } = o
            {
                if let Some(spec) = tun_spec(iface, k) {
                    tuns.entry(node.clone()).or_default().push((i, spec));
                }
            }
        }
        if !new_nodes.is_empty() {
            let names: Vec<String> = new_nodes
                .iter()
                .map(|(_, n)| self.new.nodes[n].netns.clone())
                .collect();
            crate::state::journal_netns(self.lab_name, &names)?;
            (self.progress)(Event::Stage {
                what: "creating namespaces",
                total: names.len(),
            });
            let by_netns: HashMap<&str, &str> = new_nodes
                .iter()
                .map(|(_, n)| (self.new.nodes[n].netns.as_str(), n.as_str()))
                .collect();
            let lab = self.new;
            let tuns_ref = &tuns;
            let created = netns::create_many(
                &names,
                self.threads,
                |netns_name| -> Result<HashMap<String, u32>, Error> {
                    let node = &lab.nodes[by_netns[netns_name]];
                    base_sysctls(node)?;
                    let mut idx = HashMap::new();
                    for (_, spec) in tuns_ref
                        .get(&node.name)
                        .map(|v| v.as_slice())
                        .unwrap_or(&[])
                    {
                        tuntap::create_persistent(spec)?;
                        idx.insert(
                            spec.name.clone(),
                            weft_sys::if_index(&spec.name).unwrap_or(0),
                        );
                    }
                    Ok(idx)
                },
            )?;
            let mut first_err = None;
            for ((i, node), res) in new_nodes.iter().zip(created) {
                match res {
                    Ok(c) => {
                        let mut nlh = Netlink::from_fd(c.route_socket)
                            .map_err(|e| Error::io(format!("netlink socket in {}", c.name), e))?;
                        nlh.push(
                            nl::set_link(
                                1,
                                &SetLink {
                                    up: Some(true),
                                    alias: Some(owner_tag(self.lab_name)),
                                    ..Default::default()
                                },
                            ),
                            "ip link set lo up".into(),
                        );
                        let mut index: HashMap<String, u32> = c.value;
                        index.insert("lo".into(), 1);
                        self.applied.push(*i);
                        for (ti, spec) in tuns.get(node).map(|v| v.as_slice()).unwrap_or(&[]) {
                            self.applied.push(*ti);
                            self.created.insert((node.clone(), spec.name.clone()));
                        }
                        self.ns.insert(
                            node.clone(),
                            NsHandle {
                                node: node.clone(),
                                fd: c.ns,
                                nl: nlh,
                                index,
                                ops: vec![*i],
                            },
                        );
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
                (self.progress)(Event::Step);
            }
            if let Some(e) = first_err {
                return Err(e.into());
            }
        }
        // TUN/TAP devices added to namespaces that already existed.
        for (node, specs) in &tuns {
            if new_nodes.iter().any(|(_, n)| n == node) {
                continue;
            }
            let fd = self
                .handle(node)?
                .fd
                .try_clone()
                .map_err(|e| Error::io("dup", e))?;
            let specs2 = specs.clone();
            let made: Vec<(String, u32)> =
                netns::run_in(fd.as_fd(), move || -> Result<Vec<(String, u32)>, Error> {
                    let mut v = Vec::new();
                    for (_, s) in &specs2 {
                        tuntap::create_persistent(s)?;
                        v.push((s.name.clone(), weft_sys::if_index(&s.name).unwrap_or(0)));
                    }
                    Ok(v)
                })??;
            for (n, i) in made {
                self.handle(node)?.index.insert(n.clone(), i);
                self.created.insert((node.clone(), n));
            }
            self.applied.extend(specs.iter().map(|(i, _)| *i));
        }
        Ok(())
    }

    fn devices(&mut self, ops: &[Op]) -> Result<(), Error> {
        for (i, op) in ops.iter().enumerate() {
            let Op::Add { key, val } = op else { continue };
            match (key, val) {
                (ResKey::Device { node, iface }, Res::Device(IfaceKind::Bridge(_))) => {
                    // The settings come from the lab: the plan keeps them in
                    // the bridge's Attrs (they change in place).
                    let b = match self.new.iface(&Endpoint::new(node, iface)).map(|i| &i.kind) {
                        Some(IfaceKind::Bridge(b)) => b.clone(),
                        _ => Default::default(),
                    };
                    let b = &b;
                    let at = self.attrs(node, iface);
                    let index = self.alloc_index();
                    let h = self.handle(node)?;
                    h.nl.push(
                        nl::new_bridge(
                            &NewLink {
                                index,
                                name: iface,
                                mtu: at.mtu,
                                mac: at.mac.map(|m| m.0),
                            },
                            &bridge_settings(b),
                        ),
                        format!("ip link add {iface} type bridge"),
                    );
                    h.index.insert(iface.clone(), index);
                    h.ops.push(i);
                    self.created.insert((node.clone(), iface.clone()));
                }
                (ResKey::Device { node, iface }, Res::Device(IfaceKind::Macvlan { host })) => {
                    self.add_macvlan(i, node, iface, host)?;
                }
                (ResKey::Device { node, iface }, Res::Device(IfaceKind::Vxlan(o))) => {
                    self.add_vxlan(i, node, iface, o)?;
                }
                (ResKey::Veth { a, b }, _) => {
                    let (mut x, mut y) = (a.clone(), b.clone());
                    // Create from the end that is a bridge port, so the port
                    // joins its bridge in the creating request.
                    if self.attrs(&x.node, &x.iface).master.is_none()
                        && self.attrs(&y.node, &y.iface).master.is_some()
                    {
                        std::mem::swap(&mut x, &mut y);
                    }
                    self.queue_veth(i, &x, &y)?;
                }
                _ => {}
            }
        }
        (self.progress)(Event::Stage {
            what: "creating links",
            total: 0,
        });
        self.flush()
    }

    fn queue_veth(&mut self, i: usize, x: &Endpoint, y: &Endpoint) -> Result<(), Error> {
        let (ax, ay) = (self.attrs(&x.node, &x.iface), self.attrs(&y.node, &y.iface));
        let master = match &ax.master {
            Some(m) => Some(self.index_of(&x.node, m)?),
            None => None,
        };
        let (ix, iy) = (self.alloc_index(), self.alloc_index());
        let peer_fd = if x.node == y.node {
            None
        } else {
            Some(self.handle(&y.node)?.fd.as_raw_fd())
        };
        let req = nl::new_veth(
            &NewLink {
                index: ix,
                name: &x.iface,
                mtu: ax.mtu,
                mac: ax.mac.map(|m| m.0),
            },
            master,
            &NewLink {
                index: iy,
                name: &y.iface,
                mtu: ay.mtu,
                mac: ay.mac.map(|m| m.0),
            },
            peer_fd,
        );
        let hx = self.handle(&x.node)?;
        hx.nl.push(
            req,
            format!(
                "ip link add {} type veth peer name {} netns {}",
                x.iface, y.iface, y.node
            ),
        );
        hx.index.insert(x.iface.clone(), ix);
        hx.ops.push(i);
        self.handle(&y.node)?.index.insert(y.iface.clone(), iy);
        self.created.insert((x.node.clone(), x.iface.clone()));
        self.created.insert((y.node.clone(), y.iface.clone()));
        if master.is_some() {
            // The creating end already joined its bridge.
            self.joined.insert((x.node.clone(), x.iface.clone()));
        }
        Ok(())
    }

    fn attrs(&self, node: &str, iface: &str) -> Attrs {
        self.new
            .node(node)
            .and_then(|n| n.interfaces.get(iface))
            .map(|i| Attrs {
                mtu: i.mtu,
                mac: i.mac,
                up: i.up,
                master: i.master.clone(),
                port: i.port.clone(),
                bridge: None,
            })
            .unwrap_or_default()
    }

    fn sysctls(&mut self, ops: &[Op]) -> Result<(), Error> {
        let mut by_node: BTreeMap<String, Vec<(usize, String, String)>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Add {
                    key: ResKey::Sysctl { node, key },
                    val: Res::Sysctl(v),
                }
                | Op::Change {
                    key: ResKey::Sysctl { node, key },
                    to: Res::Sysctl(v),
                    ..
                } => {
                    by_node
                        .entry(node.clone())
                        .or_default()
                        .push((i, key.clone(), v.clone()));
                }
                _ => {}
            }
        }
        for (node, list) in by_node {
            let fd = self
                .handle(&node)?
                .fd
                .try_clone()
                .map_err(|e| Error::io("dup", e))?;
            let l2: Vec<(String, String)> = list
                .iter()
                .map(|(_, k, v)| (k.clone(), v.clone()))
                .collect();
            let before: Vec<(String, String)> = netns::run_in(
                fd.as_fd(),
                move || -> Result<Vec<(String, String)>, Error> {
                    let mut out = Vec::new();
                    for (k, v) in &l2 {
                        let old = sysctl::read(k)?;
                        sysctl::ensure(k, v)?;
                        out.push((k.clone(), old));
                    }
                    Ok(out)
                },
            )??;
            for (k, old) in before {
                self.state
                    .sysctl_before
                    .entry(format!("{node} {k}"))
                    .or_insert(old);
            }
            self.applied.extend(list.iter().map(|(i, _, _)| *i));
        }
        Ok(())
    }

    /// Interface settings, addresses, link state and routes: one batch per
    /// namespace, in that order.
    fn settings(&mut self, ops: &[Op]) -> Result<(), Error> {
        let mut routes = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Add {
                    key: ResKey::Attrs { node, iface },
                    val: Res::Attrs(a),
                } => {
                    let fresh = self.created.contains(&(node.clone(), iface.clone()));
                    let joined = self.joined.contains(&(node.clone(), iface.clone()));
                    self.queue_attrs(i, node, iface, None, a, fresh, joined)?;
                }
                Op::Change {
                    key: ResKey::Attrs { node, iface },
                    from: Res::Attrs(f),
                    to: Res::Attrs(t),
                } => {
                    self.queue_attrs(i, node, iface, Some(f), t, false, false)?;
                }
                Op::Add {
                    key: ResKey::Addr { node, iface, addr },
                    ..
                } => {
                    let idx = self.index_of(node, iface)?;
                    let h = self.handle(node)?;
                    h.nl.push(
                        nl::address(nl::Change::Add, idx, *addr),
                        format!("ip addr add {addr} dev {iface}"),
                    );
                    h.ops.push(i);
                }
                Op::Add {
                    key: ResKey::Route { .. },
                    ..
                } => routes.push(i),
                _ => {}
            }
        }
        // Routes go last in each namespace's batch: a gateway is reachable
        // only once its interface has its address and is up.
        for i in routes {
            let ResKey::Route { node, route } = ops[i].key() else {
                unreachable!()
            };
            let spec = self.route_spec(node, route)?;
            let h = self.handle(node)?;
            h.nl.push(
                nl::route(nl::Change::Add, &spec),
                format!("ip route replace {route}"),
            );
            h.ops.push(i);
        }
        (self.progress)(Event::Stage {
            what: "configuring",
            total: 0,
        });
        self.flush()
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_attrs(
        &mut self,
        i: usize,
        node: &str,
        iface: &str,
        from: Option<&Attrs>,
        to: &Attrs,
        fresh: bool,
        joined: bool,
    ) -> Result<(), Error> {
        let idx = self.index_of(node, iface)?;
        let master = if joined || from.is_some_and(|f| f.master == to.master) {
            None
        } else {
            match &to.master {
                Some(m) => Some(self.index_of(node, m)?),
                None if from.is_some() => Some(0),
                None => None,
            }
        };
        let changed = |f: &dyn Fn(&Attrs) -> bool| from.is_none_or(f);
        let set = SetLink {
            up: if changed(&|o| o.up != to.up) {
                Some(to.up)
            } else {
                None
            },
            mtu: mtu_to_set(from, to, fresh, iface),
            mac: if !fresh && changed(&|o| o.mac != to.mac) {
                to.mac.map(|m| m.0)
            } else {
                None
            },
            master,
            alias: None,
        };
        let quiet_v6 = fresh && self.new.node(node).is_some_and(no_link_local);
        let h = self.handle(node)?;
        let queued = h.ops.len();
        if quiet_v6 {
            // Before anything brings the device up: the kernel makes the
            // link-local address when an up device gets its carrier.
            h.nl.push(
                nl::set_addr_gen_mode_none(idx),
                format!("ip link set {iface} addrgenmode none"),
            );
            h.ops.push(i);
        }
        // Join the bridge before setting port options; those need the port.
        if set.master.is_some() {
            h.nl.push(
                nl::set_link(
                    idx,
                    &SetLink {
                        master: set.master,
                        ..Default::default()
                    },
                ),
                format!("ip link set {iface} master ..."),
            );
            h.ops.push(i);
        }
        if (to.port.cost.is_some() || to.port.priority.is_some()) && changed(&|o| o.port != to.port)
        {
            h.nl.push(
                nl::set_port(idx, to.port.cost, to.port.priority),
                format!("ip link set {iface} type bridge_slave cost/priority"),
            );
            h.ops.push(i);
        }
        if changed(&|o| o.port.hairpin != to.port.hairpin) && (to.port.hairpin || from.is_some()) {
            h.nl.push(
                nl::set_hairpin(idx, to.port.hairpin),
                format!(
                    "ip link set {iface} type bridge_slave hairpin {}",
                    if to.port.hairpin { "on" } else { "off" }
                ),
            );
            h.ops.push(i);
        }
        if let (Some(b), false) = (&to.bridge, fresh) {
            if changed(&|o| o.bridge.as_ref() != Some(b)) {
                h.nl.push(
                    nl::set_bridge(idx, &bridge_settings(b)),
                    format!("ip link set {iface} type bridge ..."),
                );
                h.ops.push(i);
            }
        }
        let plain = SetLink {
            master: None,
            ..set
        };
        if plain.up.is_some() || plain.mtu.is_some() || plain.mac.is_some() {
            h.nl.push(
                nl::set_link(idx, &plain),
                format!("ip link set {iface}{}", if to.up { " up" } else { " down" }),
            );
            h.ops.push(i);
        }
        if h.ops.len() == queued {
            // Nothing to send: the op is done as it stands.
            self.applied.push(i);
        }
        Ok(())
    }

    fn route_spec(&mut self, node: &str, r: &Route) -> Result<nl::RouteSpec, Error> {
        let oif = match &r.dev {
            Some(d) => Some(self.index_of(node, d)?),
            None => None,
        };
        Ok(route_spec(r, oif))
    }

    /// Send every namespace's queue, two namespaces at a time.
    fn flush(&mut self) -> Result<(), Error> {
        let mut handles: Vec<&mut NsHandle> = self
            .ns
            .values_mut()
            .filter(|h| h.nl.pending() > 0)
            .collect();
        if handles.is_empty() {
            return Ok(());
        }
        let threads = self.threads.clamp(1, handles.len());
        let chunk = handles.len().div_ceil(threads);
        let results: Vec<FlushOutcome> = std::thread::scope(|s| {
            let workers: Vec<_> = handles
                .chunks_mut(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut ok = Vec::new();
                        let mut errs = Vec::new();
                        for h in part.iter_mut() {
                            let ops = std::mem::take(&mut h.ops);
                            match h.nl.flush() {
                                Ok(()) => ok.extend(ops),
                                Err(es) => {
                                    // An op is applied when none of its
                                    // requests was refused.
                                    let failed: BTreeSet<usize> = es
                                        .iter()
                                        .filter_map(|e| ops.get(e.index).copied())
                                        .collect();
                                    ok.extend(ops.iter().copied().filter(|o| !failed.contains(o)));
                                    errs.extend(es.into_iter().map(|e| (h.node.clone(), e)));
                                }
                            }
                        }
                        (ok, errs)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("flush worker"))
                .collect()
        });
        let mut first = None;
        for (ok, errs) in results {
            self.applied.extend(ok);
            for (node, e) in errs {
                tracing::warn!(node, what = %e.what, errno = e.errno, "kernel refused");
                first.get_or_insert(Error::kernel(&node, e.what, e.errno));
            }
        }
        self.applied.sort_unstable();
        self.applied.dedup();
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Per worker: the ops whose requests went out, and the refusals by node.
type FlushOutcome = (Vec<usize>, Vec<(String, nl::NlError)>);

pub(crate) fn bridge_settings(b: &weft_topo::BridgeOptions) -> nl::BridgeSettings {
    nl::BridgeSettings {
        stp: b.stp,
        forward_delay_cs: b.forward_delay_cs,
        hello_time_cs: b.hello_time_cs,
        max_age_cs: b.max_age_cs,
        ageing_time_cs: b.ageing_time_cs,
        priority: b.priority,
    }
}

fn tun_spec(name: &str, k: &IfaceKind) -> Option<tuntap::TunTapSpec> {
    let (mode, o) = match k {
        IfaceKind::Tun(o) => (tuntap::Mode::Tun, o),
        IfaceKind::Tap(o) => (tuntap::Mode::Tap, o),
        _ => return None,
    };
    Some(tuntap::TunTapSpec {
        name: name.to_string(),
        mode,
        owner: o.owner,
        group: o.group,
        multi_queue: o.multi_queue,
        pi: o.pi,
        vnet_hdr: o.vnet_hdr,
    })
}

fn has_ipv6(node: &weft_topo::Node) -> bool {
    node.interfaces
        .values()
        .any(|i| i.addresses.iter().any(|a| a.addr().is_ipv6()))
        || node.routes.iter().any(|r| r.ipv6)
}

/// Settings weft makes in every namespace it creates, before any interface
/// exists so that new interfaces inherit them.
fn base_sysctls(node: &weft_topo::Node) -> Result<(), Error> {
    if has_ipv6(node) {
        // Addresses are checked unique before building; duplicate address
        // detection would only keep them unusable for ~2 s.
        sysctl::write("net.ipv6.conf.default.accept_dad", "0")?;
        sysctl::write("net.ipv6.conf.all.accept_dad", "0")?;
    }
    Ok(())
}

/// Whether the interfaces weft makes in this node get no IPv6 link-local
/// address (`addrgenmode none`): a node without IPv6 then sends no router
/// solicitations, MLD reports or DAD probes onto the bridges. A node whose
/// file sets a `net.ipv6.` sysctl keeps the kernel's behaviour. Only when
/// the kernel has IPv6 at all.
fn no_link_local(node: &weft_topo::Node) -> bool {
    static KERNEL_IPV6: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !has_ipv6(node)
        && !node.sysctls.keys().any(|k| k.starts_with("net.ipv6."))
        && *KERNEL_IPV6.get_or_init(|| std::path::Path::new("/proc/sys/net/ipv6").exists())
}

/// Wait until the lab can carry traffic: every bridge port that has a
/// carrier is forwarding (or blocked by STP for good), and no address is
/// still tentative.
pub(crate) fn wait_ready(
    lab: &Lab,
    handles: &mut BTreeMap<String, NsHandle>,
    timeout: Option<Duration>,
    progress: &dyn Fn(Event),
) -> Result<Duration, Error> {
    let t0 = Instant::now();
    let mut limit = Duration::from_secs(5);
    let mut stp = false;
    for n in lab.nodes.values() {
        for i in n.interfaces.values() {
            if let IfaceKind::Bridge(b) = &i.kind {
                if b.stp {
                    stp = true;
                    let fd = Duration::from_millis(b.forward_delay_cs.unwrap_or(1500) as u64 * 10);
                    limit = limit.max(stp_limit(fd));
                }
            }
        }
    }
    let watch: Vec<String> = lab
        .nodes
        .values()
        .filter(|n| {
            n.interfaces
                .values()
                .any(|i| matches!(i.kind, IfaceKind::Bridge(_)))
                || n.interfaces
                    .values()
                    .any(|i| i.addresses.iter().any(|a| a.addr().is_ipv6()))
        })
        .map(|n| n.name.clone())
        .collect();
    // Make every link's carrier change take effect now rather than when the
    // kernel's linkwatch gets to it: ports and veth ends first, then the
    // bridges, whose own carrier follows their ports.
    for pass_bridges in [false, true] {
        for (node, h) in handles.iter_mut() {
            let Some(n) = lab.nodes.get(node) else {
                continue;
            };
            let idx: Vec<u32> = n
                .interfaces
                .values()
                .filter(|i| {
                    i.up && matches!(i.kind, IfaceKind::Bridge(_)) == pass_bridges
                        && !matches!(i.kind, IfaceKind::Loopback)
                })
                .filter_map(|i| h.index.get(&i.name).copied())
                .collect();
            if !idx.is_empty() {
                h.nl.sync_links(&idx)
                    .map_err(|e| Error::io(format!("syncing link state in node {node}"), e))?;
            }
        }
    }
    let mut announced = false;
    loop {
        let mut waiting = Vec::new();
        for node in &watch {
            let h = match handles.get_mut(node) {
                Some(h) => h,
                None => {
                    let netns = &lab.nodes[node].netns;
                    handles.insert(node.clone(), NsHandle::open(node, netns)?);
                    handles.get_mut(node).unwrap()
                }
            };
            // A bridge's carrier follows its first forwarding port (with STP,
            // late): make that take effect before looking.
            let bridges: Vec<u32> = lab.nodes[node]
                .interfaces
                .values()
                .filter(|i| matches!(i.kind, IfaceKind::Bridge(_)))
                .filter_map(|i| h.index.get(&i.name).copied())
                .collect();
            h.nl.sync_links(&bridges)
                .map_err(|e| Error::io(format!("syncing bridges of node {node}"), e))?;
            let links =
                h.nl.links()
                    .map_err(|e| Error::io(format!("reading links of node {node}"), e))?;
            for l in &links {
                // A bridge that heard a root with longer timers than its
                // own waits with the root's: so does weft.
                if let (Some(true), Some((fd, _))) = (l.stp, l.stp_times_cs) {
                    limit = limit.max(stp_limit(Duration::from_millis(u64::from(fd) * 10)));
                }
                if !l.admin_up || !l.lower_up {
                    continue;
                }
                // Carrier is on but linkwatch has not acted on it yet: the
                // device cannot send.
                if l.oper.is_down() {
                    waiting.push(format!("{node}:{} carrier not yet in effect", l.name));
                }
                if l.master.is_none() {
                    continue;
                }
                match l.port_state {
                    Some(PortState::Forwarding) | Some(PortState::Blocking) | None => {}
                    Some(s) => waiting.push(format!("{node}:{} {}", l.name, s.as_str())),
                }
            }
            if lab.nodes[node]
                .interfaces
                .values()
                .any(|i| i.addresses.iter().any(|a| a.addr().is_ipv6()))
            {
                let addrs =
                    h.nl.addresses()
                        .map_err(|e| Error::io(format!("reading addresses of node {node}"), e))?;
                for a in addrs.iter().filter(|a| a.tentative) {
                    waiting.push(format!("{node}: {} tentative", a.net));
                }
            }
        }
        if waiting.is_empty() {
            return Ok(t0.elapsed());
        }
        let limit = timeout.unwrap_or(limit);
        if t0.elapsed() > limit {
            return Err(Error::NotReady {
                lab: lab.name.clone(),
                secs: limit.as_secs_f64(),
                waiting,
            });
        }
        if stp && !announced {
            progress(Event::Stage {
                what: "waiting for STP (listening, learning, then forwarding)",
                total: 0,
            });
            announced = true;
        }
        if stp {
            progress(Event::Note(format!(
                "{} port(s) not forwarding yet, {:.0} s",
                waiting.len(),
                t0.elapsed().as_secs_f64()
            )));
        }
        std::thread::sleep(if stp {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(2)
        });
    }
}

/// How long ports may take to forward when `forward_delay` is in force:
/// listening, then learning, with room for a root that is heard late.
pub(crate) fn stp_limit(forward_delay: Duration) -> Duration {
    forward_delay * 2 + Duration::from_secs(5)
}

/// The netlink form of a file's route, its device already an index.
pub(crate) fn route_spec(r: &Route, oif: Option<u32>) -> nl::RouteSpec {
    nl::RouteSpec {
        dst: r.dst,
        ipv6: r.ipv6,
        kind: match r.kind {
            RouteKind::Unicast => nl::RouteKindSpec::Unicast,
            RouteKind::Blackhole => nl::RouteKindSpec::Blackhole,
            RouteKind::Unreachable => nl::RouteKindSpec::Unreachable,
            RouteKind::Prohibit => nl::RouteKindSpec::Prohibit,
        },
        via: r.via,
        oif,
        src: r.src,
        metric: r.metric,
        table: r.table,
        mtu: r.mtu,
        onlink: r.onlink,
        scope_link: r.scope_link,
    }
}
