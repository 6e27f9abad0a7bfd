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
    )
        .prop_map(
            |(present, bridge, switch, tap, forwarding, route)| NodeSpec {
                present,
                bridge,
                switch: switch.filter(|_| bridge.is_none()),
                tap,
                forwarding,
                route,
            },
        )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(node_spec(), 4),
        prop::collection::vec((0usize..4, 0usize..4, any::<bool>()), 0..5),
    )
        .prop_map(|(nodes, links)| Spec { nodes, links })
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
    let r = k.apply(&[weft_topo::Op::Remove {
        key,
        val: Res::Netns,
        implied: false,
    }]);
    assert!(r.error.is_none());
    assert!(k.res.keys().all(|k| k.node() == "b"), "{:?}", k.res.keys());
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
