//! Properties of the importer against a tiny reference model: any script
//! of veth pairs between namespaces imports to exactly those cables,
//! addresses and states; no input makes it panic; every error names a line
//! of the input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_topo::IfaceKind;

fn none(_: &str) -> Option<String> {
    None
}

#[derive(Debug, Clone)]
struct Pair {
    a: usize,
    b: usize,
    up_a: bool,
    addr_a: bool,
}

fn pairs() -> impl Strategy<Value = (usize, Vec<Pair>)> {
    (1usize..5).prop_flat_map(|n| {
        let pair = (0..n, 0..n, any::<bool>(), any::<bool>())
            .prop_map(|(a, b, up_a, addr_a)| Pair { a, b, up_a, addr_a });
        (Just(n), proptest::collection::vec(pair, 0..8))
    })
}

proptest! {
    #[test]
    fn veth_scripts_import_to_the_same_cables((n, ps) in pairs(), loop_form in any::<bool>()) {
        let mut s = String::new();
        if loop_form {
            s += "for i in";
            for k in 0..n { s += &format!(" {k}"); }
            s += "; do\n  ip netns add n$i\ndone\n";
        } else {
            for k in 0..n { s += &format!("ip netns add n{k}\n"); }
        }
        // name -> (node, peer, up, address)
        let mut want: BTreeMap<String, (String, String, bool, Option<String>)> = BTreeMap::new();
        for (k, p) in ps.iter().enumerate() {
            s += &format!("ip link add a{k} type veth peer name b{k}\n");
            s += &format!("ip link set a{k} netns n{}\nip link set b{k} netns n{}\n", p.a, p.b);
            if p.addr_a {
                s += &format!("ip -n n{} addr add 10.{k}.0.1/24 dev a{k}\n", p.a);
            }
            if p.up_a {
                s += &format!("ip netns exec n{} ip link set dev a{k} up\n", p.a);
            }
            s += &format!("ip -n n{} l s b{k} up\n", p.b);
            want.insert(format!("a{k}"), (format!("n{}", p.a), format!("n{}:b{k}", p.b), p.up_a, p.addr_a.then(|| format!("10.{k}.0.1/24"))));
            want.insert(format!("b{k}"), (format!("n{}", p.b), format!("n{}:a{k}", p.a), true, None));
        }
        let imported = weft_import::script(&s, "p", &none).map_err(|e| TestCaseError::fail(format!("{e:?}\n{s}")))?;
        let lab = weft_topo::parse(&imported.toml).unwrap().lab;
        prop_assert_eq!(lab.nodes.len(), n);
        let mut seen = 0;
        for node in lab.nodes.values() {
            for (name, i) in &node.interfaces {
                let IfaceKind::Veth { peer } = &i.kind else { continue };
                let (wn, wp, wup, waddr) = &want[name];
                prop_assert_eq!(&node.name, wn);
                prop_assert_eq!(&peer.to_string(), wp);
                prop_assert_eq!(i.up, *wup);
                prop_assert_eq!(i.addresses.first().map(|a| a.to_string()), waddr.clone());
                seen += 1;
            }
        }
        prop_assert_eq!(seen, want.len());
    }

    #[test]
    fn no_input_panics_and_errors_name_an_input_line(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("ip netns add n1".to_string()),
                Just("ip link add x type veth peer name y".to_string()),
                Just("ip link set x netns n1".to_string()),
                Just("ip -n n1 addr add 10.0.0.1/24 dev x".to_string()),
                Just("ip -n n1 route add default via 10.0.0.9".to_string()),
                Just("brctl addbr br0".to_string()),
                Just("brctl addif br0 y".to_string()),
                Just("for i in 1 2; do".to_string()),
                Just("done".to_string()),
                Just("if true; then".to_string()),
                Just("fi".to_string()),
                Just("echo 1 > /proc/sys/net/ipv4/ip_forward".to_string()),
                Just("ovs-vsctl add-br s0 -- add-port s0 y tag=3".to_string()),
                Just("vconfig add x 10".to_string()),
                "[ -~]{0,30}",
            ],
            0..12,
        )
    ) {
        let src = lines.join("\n");
        let nlines = src.lines().count().max(1);
        if let Err(errs) = weft_import::script(&src, "p", &none) {
            for e in errs.0 {
                if let Some(o) = e.origin {
                    prop_assert!(o.line >= 1 && o.line <= nlines + 1, "line {} of {nlines}: {}", o.line, e.message);
                }
            }
        }
    }
}
