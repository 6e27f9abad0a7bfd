//! The planner and executor against a model kernel, without root: random
//! labs (written as topology files, so they pass the same checks as a
//! user's) and random edits between them.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_topo::exec::{self, Kernel, ModelKernel};
use weft_topo::plan::{resources, Plan};
use weft_topo::{plan, Lab, Res, ResKey};

/// One random lab: up to four nodes, some of them bridges, links between
/// them, addresses, TAP devices, MTUs, sysctls, routes.
#[derive(Debug, Clone)]
struct Spec {
    nodes: Vec<NodeSpec>,
    /// (node a, node b) indexes; links only between existing nodes.
    links: Vec<(usize, usize, bool)>,
    /// A tunnel link between two hosts: (a, b, TAP, UDP port).
    tunnel: Option<(usize, usize, bool, u16)>,
}

#[derive(Debug, Clone)]
struct NodeSpec {
    present: bool,
    bridge: Option<bool>,
    /// A weft switch with this bridge priority (when not a bridge).
    switch: Option<u16>,
    tap: Option<Option<u32>>,
    forwarding: Option<bool>,
    route: Option<u8>,
    /// A service running `sleep N`, and whether the node binds a tmpfs.
    service: Option<(u8, bool)>,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        any::<bool>(),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec![4096u16, 32768])),
        prop::option::of(prop::option::of(prop::sample::select(vec![
            1400u32, 1500, 9000,
        ]))),
        prop::option::of(any::<bool>()),
        prop::option::of(0u8..3),
        prop::option::of((1u8..3, any::<bool>())),
    )
        .prop_map(
            |(present, bridge, switch, tap, forwarding, route, service)| NodeSpec {
                present,
                bridge,
                switch: switch.filter(|_| bridge.is_none()),
                tap,
                forwarding,
                route,
                service,
            },
        )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(node_spec(), 4),
        prop::collection::vec((0usize..4, 0usize..4, any::<bool>()), 0..5),
        prop::option::of((
            0usize..4,
            0usize..4,
            any::<bool>(),
            prop::sample::select(vec![5000u16, 5001]),
        )),
    )
        .prop_map(|(nodes, links, tunnel)| Spec {
            nodes,
            links,
            tunnel,
        })
}

fn text(s: &Spec) -> String {
    let mut t = String::from("name = \"p\"\n");
    let mut links = String::new();
    let mut ifaces: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (k, &(a, b, addressed)) in s.links.iter().enumerate() {
        if a == b || !s.nodes[a].present || !s.nodes[b].present {
            continue;
        }
        let (ia, ib) = (format!("l{k}a"), format!("l{k}b"));
        links += &format!("[[links]]\nendpoints = [\"n{a}:{ia}\", \"n{b}:{ib}\"]\n");
        // Bridge ports carry no address.
        for (n, i, host) in [(a, &ia, 1), (b, &ib, 2)] {
            if addressed && s.nodes[n].bridge.is_none() && s.nodes[n].switch.is_none() {
                ifaces.entry(n).or_default().push(format!(
                    "[nodes.n{n}.interfaces.{i}]\naddresses = [\"10.{k}.0.{host}/24\"]\n"
                ));
            }
        }
    }
    for (i, n) in s.nodes.iter().enumerate() {
        if !n.present {
            continue;
        }
        t += &format!("[nodes.n{i}]\n");
        if let Some(stp) = n.bridge {
            t += &format!("kind = \"bridge\"\nstp = {stp}\n");
        }
        if let Some(p) = n.switch {
            t += &format!("kind = \"switch\"\npriority = {p}\n");
            continue;
        }
        if let Some(f) = n.forwarding {
            t += &format!(
                "sysctls = {{ \"net.ipv4.ip_forward\" = {} }}\n",
                u8::from(f)
            );
        }
        if let Some(r) = n.route {
            t += &format!("routes = [\"blackhole 192.168.{r}.0/24\"]\n");
        }
        if let Some((_, true)) = n.service {
            t += "binds = [\"tmpfs:/srv\"]\n";
        }
        if let (Some(mtu), None) = (&n.tap, n.bridge) {
            t += &format!(
                "[nodes.n{i}.interfaces.t0]\nkind = \"tap\"\naddresses = [\"172.16.{i}.1/24\"]\n"
            );
            if let Some(m) = mtu {
                t += &format!("mtu = {m}\n");
            }
        }
        for s in ifaces.get(&i).into_iter().flatten() {
            t += s;
        }
        if let Some((secs, _)) = n.service {
            t += &format!("[nodes.n{i}.services.s]\ncommand = [\"sleep\", \"{secs}\"]\n");
        }
    }
    let host =
        |k: usize| s.nodes[k].present && s.nodes[k].bridge.is_none() && s.nodes[k].switch.is_none();
    if let Some((a, b, tap, port)) = s.tunnel.filter(|&(a, b, ..)| a != b && host(a) && host(b)) {
        let mode = if tap { "tap" } else { "tun" };
        links += &format!(
            "[[links]]\nkind = \"tunnel\"\nmode = \"{mode}\"\nport = {port}\nendpoints = [\"n{a}:wt\", \"n{b}:wt\"]\nunderlay = [\"192.0.2.{a}\", \"192.0.2.{b}\"]\n"
        );
        // Each end's underlay address, on a TAP device of its own.
        for k in [a, b] {
            links += &format!(
                "[nodes.n{k}.interfaces.ul]\nkind = \"tap\"\naddresses = [\"192.0.2.{k}/24\"]\n"
            );
        }
    }
    t + &links
}

fn lab(s: &Spec) -> Lab {
    let t = text(s);
    match weft_topo::parse(&t) {
        Ok(p) => p.lab,
        Err(d) => panic!("generated file refused: {d:?}\n{t}"),
    }
}

fn model_of(l: &Lab) -> ModelKernel {
    ModelKernel::new(resources(l))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Applying plan(old, new) to old gives new.
    #[test]
    fn applying_the_plan_gives_the_new_lab(a in spec(), b in spec()) {
        let (old, new) = (lab(&a), lab(&b));
        let p = plan(Some(&old), &new);
        let mut k = model_of(&old);
        let r = k.apply(&p.ops);
        prop_assert!(r.error.is_none(), "{:?}\n{}", r.error, p);
        prop_assert_eq!(&k.res, &resources(&new), "plan:\n{}", p);
        // From nothing, too.
        let mut k = ModelKernel::default();
        let r = k.apply(&plan(None, &new).ops);
        prop_assert!(r.error.is_none(), "{:?}", r.error);
        prop_assert_eq!(k.res, resources(&new));
    }

    /// A lab compared with itself needs nothing done.
    #[test]
    fn the_plan_from_a_lab_to_itself_is_empty(a in spec()) {
        let l = lab(&a);
        let p = plan(Some(&l), &l);
        prop_assert!(p.ops.is_empty(), "{}", p);
        prop_assert!(p.is_empty());
    }

    /// Any prefix of a plan, then its inverse, gives back the old lab.
    #[test]
    fn every_prefix_is_undone_by_its_inverse(a in spec(), b in spec()) {
        let (old, new) = (lab(&a), lab(&b));
        let p = plan(Some(&old), &new);
        for n in 0..=p.ops.len() {
            let mut k = model_of(&old);
            let r = k.apply(&p.ops[..n]);
            prop_assert!(r.error.is_none());
            let r = k.apply(&Plan::inverse_of(&p.ops[..n]).ops);
            prop_assert!(r.error.is_none(), "undoing {} op(s): {:?}\n{}", n, r.error, p);
            prop_assert_eq!(&k.res, &resources(&old), "after undoing {} op(s) of\n{}", n, p);
        }
    }

    /// An operation refused at any point rolls the model back to the old lab.
    #[test]
    fn a_refusal_anywhere_rolls_back(a in spec(), b in spec(), at in any::<prop::sample::Index>()) {
        let (old, new) = (lab(&a), lab(&b));
        let p = plan(Some(&old), &new);
        prop_assume!(!p.ops.is_empty());
        let mut k = model_of(&old);
        k.fail_at = Some(at.index(p.ops.len()));
        let r = exec::execute(&mut k, &p);
        let failed = r.expect_err("the refusal is reported");
        prop_assert!(failed.undo.is_ok(), "{:?}", failed.undo);
        prop_assert_eq!(&k.res, &resources(&old));
    }
}

/// The model honours what the kernel removes by itself: a namespace
/// takes its devices, addresses and routes with it.
#[test]
fn a_namespace_takes_what_is_in_it() {
    let l = weft_topo::parse(
        "name = \"m\"\n[nodes.a]\nroutes = [\"blackhole 192.168.1.0/24\"]\n[nodes.a.interfaces.t0]\nkind = \"tap\"\naddresses = [\"10.0.0.1/24\"]\n[nodes.b.interfaces.t0]\nkind = \"tap\"\n",
    )
    .unwrap()
    .lab;
    let mut k = model_of(&l);
    let key = ResKey::Netns { node: "a".into() };
    let remove = |key: ResKey, val: Res| weft_topo::Op::Remove {
        key,
        val,
        implied: false,
    };
    // Its name files are weft's, not the kernel's: they go first.
    let r = k.apply(&[remove(key.clone(), Res::Netns)]);
    assert_eq!(
        r.error,
        Some(exec::ModelError::InUse(Box::new(key.clone())))
    );
    let r = k.apply(&[
        remove(ResKey::Names { node: "a".into() }, Res::Names),
        remove(key, Res::Netns),
    ]);
    assert!(r.error.is_none());
    // What is left is b's, and the lab's hosts file.
    assert!(k.res.keys().all(|k| k.node() != "a"), "{:?}", k.res.keys());
    assert!(!k.res.is_empty());
}

/// A refused step undoes exactly what took effect before it.
#[test]
fn a_refusal_after_two_steps_undoes_those_two() {
    let new = weft_topo::parse(
        "name = \"m\"\n[nodes.a.interfaces.t0]\nkind = \"tap\"\naddresses = [\"10.0.0.1/24\"]\n",
    )
    .unwrap()
    .lab;
    let p = plan(None, &new);
    let mut k = ModelKernel {
        fail_at: Some(2),
        ..Default::default()
    };
    let failed = exec::execute(&mut k, &p).unwrap_err();
    assert_eq!(failed.error, exec::ModelError::Refused(2));
    assert!(failed.undo.is_ok());
    assert!(k.res.is_empty());
    // The undo was two operations: seen = 3 applied or refused + 2.
    assert_eq!(k.seen, 5);
}

/// Processes are resources of the plan like kernel objects: a service's
/// new command is one change; a node that goes has its service and name
/// files removed before its namespace; a lab with a switch has a datapath.
#[test]
fn processes_are_planned_with_the_kernel_objects() {
    let base = "name = \"m\"\n[nodes.sw]\nkind = \"switch\"\n[nodes.a.interfaces.eth0]\naddresses = [\"10.0.0.1/24\"]\n[nodes.a.services.web]\ncommand = [\"sleep\", \"1\"]\n[[links]]\nendpoints = [\"a:eth0\", \"sw:p1\"]\n";
    let old = weft_topo::parse(base).unwrap().lab;
    let keys: Vec<ResKey> = resources(&old).into_keys().collect();
    assert!(keys.contains(&ResKey::Datapath { lab: "m".into() }));
    assert!(keys.contains(&ResKey::Names { node: "a".into() }));
    assert!(plan(Some(&old), &old).ops.is_empty());
    let edited = weft_topo::parse(&base.replace("\"1\"]", "\"2\"]"))
        .unwrap()
        .lab;
    let p = plan(Some(&old), &edited);
    assert_eq!(
        p.lines(),
        ["~ service a:web (definition changed: restarts)"]
    );
    assert_eq!(p.summary(), (0, 1, 0));
    // Node a removed: its service, name files and namespace, in that order.
    let gone = weft_topo::parse("name = \"m\"\n[nodes.sw]\nkind = \"switch\"\n")
        .unwrap()
        .lab;
    let p = plan(Some(&old), &gone);
    let at = |k: &ResKey| p.ops.iter().position(|o| o.key() == k).unwrap();
    let svc = at(&ResKey::Service {
        node: "a".into(),
        service: "web".into(),
    });
    let names = at(&ResKey::Names { node: "a".into() });
    let ns = at(&ResKey::Netns { node: "a".into() });
    assert!(svc < ns && names < ns, "{p}");
    assert!(p.lines().contains(&"- service a:web".to_string()), "{p}");
    let mut k = model_of(&old);
    assert!(k.apply(&p.ops).error.is_none());
    assert_eq!(k.res, resources(&gone));
}
