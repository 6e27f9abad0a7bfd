//! Applying a plan, and undoing what was applied when a step fails.
//!
//! The executor knows nothing of netlink: it drives anything that can
//! apply operations — the real kernel (crates/lab) or [`ModelKernel`], a
//! map of resources that the planner's property tests run against without
//! root.

use std::collections::BTreeMap;

use crate::plan::{Op, Plan, Res, ResKey};

/// What applying some operations did: the indexes (into the slice given)
/// of those that took effect, in the order they did, and the error that
/// stopped the rest.
#[derive(Debug)]
pub struct Applied<E> {
    pub done: Vec<usize>,
    pub error: Option<E>,
}

/// Something that applies plan operations: the kernel, or a model of it.
///
/// An implementation may apply the operations in any order that respects
/// their dependencies (the real kernel batches by phase), but must report
/// in `done` exactly those that took effect, in the order they did.
pub trait Kernel {
    type Error;
    fn apply(&mut self, ops: &[Op]) -> Applied<Self::Error>;
}

/// A failed apply: the error, and what undoing the applied part did.
#[derive(Debug)]
pub struct Failed<E> {
    pub error: E,
    /// `Ok` when the applied part was undone; otherwise the undo's error
    /// and the operations of the undo plan that did not take effect.
    pub undo: Result<(), (E, Vec<Op>)>,
}

/// Apply `plan`; if a step fails, apply the inverse of what took effect,
/// so that the kernel is as it was.
pub fn execute<K: Kernel>(kernel: &mut K, plan: &Plan) -> Result<(), Failed<K::Error>> {
    let r = kernel.apply(&plan.ops);
    let Some(error) = r.error else {
        return Ok(());
    };
    let applied: Vec<Op> = r.done.iter().map(|&i| plan.ops[i].clone()).collect();
    Err(Failed {
        error,
        undo: undo(kernel, &applied),
    })
}

/// Apply the inverse of `applied` (operations that took effect, in order).
pub fn undo<K: Kernel>(kernel: &mut K, applied: &[Op]) -> Result<(), (K::Error, Vec<Op>)> {
    let inverse = Plan::inverse_of(applied);
    let r = kernel.apply(&inverse.ops);
    match r.error {
        None => Ok(()),
        Some(e) => {
            let left = inverse
                .ops
                .iter()
                .enumerate()
                .filter(|(i, _)| !r.done.contains(i))
                .map(|(_, o)| o.clone())
                .collect();
            Err((e, left))
        }
    }
}

/// Why the model refused an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// Adding what is there (EEXIST).
    Exists(Box<ResKey>),
    /// Removing or changing what is not there (ENOENT / ENODEV).
    Missing(Box<ResKey>),
    /// A change whose `from` is not what is there.
    Differs(Box<ResKey>),
    /// Something inside a namespace or on an interface that is not there.
    NoParent(Box<ResKey>),
    /// Refused on purpose (`fail_at`), as a kernel may refuse anything.
    Refused(usize),
    /// Removing a namespace or device that a process or file of weft's
    /// still uses (a process would keep a deleted namespace alive).
    InUse(Box<ResKey>),
}

/// A kernel as a map of resources, in the shapes the planner uses. It
/// honours the removals the real kernel does by itself: a namespace takes
/// everything in it, a device its addresses, settings and the routes
/// through it. Processes and files (the datapath, tunnel processes, name
/// files, services) are resources like the others: a tunnel process needs
/// its device, the others their namespace, to be added. Operations apply
/// in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelKernel {
    pub res: BTreeMap<ResKey, Res>,
    /// Refuse the operation with this number (counted over every
    /// operation this model has been asked to apply).
    pub fail_at: Option<usize>,
    /// Operations seen so far.
    pub seen: usize,
}

impl ModelKernel {
    pub fn new(res: BTreeMap<ResKey, Res>) -> Self {
        ModelKernel {
            res,
            fail_at: None,
            seen: 0,
        }
    }

    fn iface_exists(&self, node: &str, iface: &str) -> bool {
        self.res.keys().any(|k| match k {
            ResKey::Device { node: n, iface: i } => n == node && i == iface,
            ResKey::Veth { a, b } => {
                (a.node == node && a.iface == iface) || (b.node == node && b.iface == iface)
            }
            _ => false,
        }) || iface == "lo"
    }

    /// What must exist before `key` can.
    fn parent_ok(&self, key: &ResKey) -> bool {
        let ns = |n: &str| {
            self.res.contains_key(&ResKey::Netns {
                node: n.to_string(),
            })
        };
        match key {
            ResKey::Netns { .. } => true,
            ResKey::Veth { a, b } => ns(&a.node) && ns(&b.node),
            ResKey::Attrs { node, iface }
            | ResKey::Addr { node, iface, .. }
            | ResKey::Tunnel { node, iface } => ns(node) && self.iface_exists(node, iface),
            // Lab-wide: the datapath process, the hosts file.
            ResKey::Datapath { .. } | ResKey::Hosts { .. } => true,
            k => ns(k.node()),
        }
    }

    /// Whether a process or file of weft's is still in the namespace, or
    /// on the device, `key` names.
    fn in_use(&self, key: &ResKey) -> bool {
        let users = |node: &str, iface: Option<&str>| {
            self.res.keys().any(|k| match k {
                ResKey::Tunnel { node: n, iface: i } => n == node && iface.is_none_or(|x| x == i),
                ResKey::Names { node: n }
                | ResKey::Mounts { node: n }
                | ResKey::Service { node: n, .. } => n == node && iface.is_none(),
                _ => false,
            })
        };
        match key {
            ResKey::Netns { node } => users(node, None),
            ResKey::Device { node, iface } => users(node, Some(iface)),
            ResKey::Veth { a, b } => {
                users(&a.node, Some(&a.iface)) || users(&b.node, Some(&b.iface))
            }
            _ => false,
        }
    }

    /// Remove `key` and what the kernel removes with it.
    fn cascade(&mut self, key: &ResKey) {
        self.res.remove(key);
        match key {
            ResKey::Netns { node } => self.res.retain(|k, _| match k {
                ResKey::Veth { a, b } => a.node != *node && b.node != *node,
                k => k.node() != node,
            }),
            ResKey::Device { node, iface } => self.drop_iface(node, iface),
            ResKey::Veth { a, b } => {
                self.drop_iface(&a.node, &a.iface);
                self.drop_iface(&b.node, &b.iface);
            }
            _ => {}
        }
    }

    fn drop_iface(&mut self, node: &str, iface: &str) {
        self.res.retain(|k, _| match k {
            ResKey::Attrs { node: n, iface: i }
            | ResKey::Addr {
                node: n, iface: i, ..
            } => !(n == node && i == iface),
            ResKey::Route { node: n, route } => !(n == node && route.dev.as_deref() == Some(iface)),
            _ => true,
        });
    }

    fn apply_one(&mut self, op: &Op) -> Result<(), ModelError> {
        match op {
            Op::Add { key, val } => {
                if !self.parent_ok(key) {
                    return Err(ModelError::NoParent(Box::new(key.clone())));
                }
                // Routes are added with replace (`ip route replace`).
                if self.res.contains_key(key) && !matches!(key, ResKey::Route { .. }) {
                    return Err(ModelError::Exists(Box::new(key.clone())));
                }
                self.res.insert(key.clone(), val.clone());
            }
            // What goes by itself may already be gone.
            Op::Remove {
                key, implied: true, ..
            } => {
                self.res.remove(key);
            }
            Op::Remove { key, val, .. } => match self.res.get(key) {
                None => return Err(ModelError::Missing(Box::new(key.clone()))),
                Some(v) if v != val => return Err(ModelError::Differs(Box::new(key.clone()))),
                Some(_) if self.in_use(key) => {
                    return Err(ModelError::InUse(Box::new(key.clone())))
                }
                Some(_) => self.cascade(key),
            },
            Op::Change { key, from, to } => match self.res.get_mut(key) {
                None => return Err(ModelError::Missing(Box::new(key.clone()))),
                Some(v) if v != from => return Err(ModelError::Differs(Box::new(key.clone()))),
                Some(v) => *v = to.clone(),
            },
        }
        Ok(())
    }
}

impl Kernel for ModelKernel {
    type Error = ModelError;

    fn apply(&mut self, ops: &[Op]) -> Applied<ModelError> {
        let mut done = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let n = self.seen;
            self.seen += 1;
            let r = if self.fail_at == Some(n) {
                Err(ModelError::Refused(n))
            } else {
                self.apply_one(op)
            };
            match r {
                Ok(()) => done.push(i),
                Err(e) => {
                    return Applied {
                        done,
                        error: Some(e),
                    }
                }
            }
        }
        Applied { done, error: None }
    }
}
