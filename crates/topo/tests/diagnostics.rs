//! What the file check says about a bad file: every problem, each once, at
//! its own place, in words that name the key and what it takes.

use weft_topo::{parse, Diagnostic};

/// (line, column, message, help) of every problem in `src`.
fn problems(src: &str) -> Vec<(usize, usize, String, String)> {
    let errs: Vec<Diagnostic> = match parse(src) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e.0,
    };
    errs.iter()
        .map(|d| {
            let (l, c) = d.line_col(src).unwrap_or((0, 0));
            (l, c, d.message.clone(), d.help.clone().unwrap_or_default())
        })
        .collect()
}

#[test]
fn four_unknown_keys_are_four_reports_at_their_keys() {
    let src = "name = \"x\"\n[nodes.a]\ncolour = 1\nflavour = 2\n[nodes.a.interfaces.e]\nkind = \"tap\"\nspeed = 3\n[nodes.b]\nkidn = \"host\"\n";
    let p = problems(src);
    assert_eq!(p.len(), 4, "{p:#?}");
    let at: Vec<(usize, usize)> = p.iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(at, [(3, 1), (4, 1), (7, 1), (9, 1)], "{p:#?}");
    assert!(
        p[0].2.contains("unknown key `colour` in [nodes.a]"),
        "{p:#?}"
    );
    assert!(
        p[2].2.contains("[nodes.a.interfaces.e]"),
        "names the table: {p:#?}"
    );
    assert!(p[3].3.contains("did you mean `kind`?"), "{p:#?}");
}

#[test]
fn a_negative_mtu_names_key_and_range_and_hides_nothing() {
    let src = "name = \"x\"\n[nodes.a.interfaces.t]\nkind = \"tap\"\nmtu = -1\naddresses = [\"nonsense\"]\n[nodes.b]\ncolour = 1\n[nodes.c.interfaces.t]\nkind = \"tap\"\nmtu = 9\n";
    let p = problems(src);
    let msgs: Vec<&str> = p.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(p.len(), 4, "{p:#?}");
    assert_eq!((p[0].0, p[0].1), (4, 7));
    assert!(
        msgs[0].contains("`mtu` = -1 is out of range: it is a whole number from 68 to 65535"),
        "{msgs:?}"
    );
    assert!(msgs[0].contains("[nodes.a.interfaces.t]"), "{msgs:?}");
    // The other problems, of both kinds, are still there; the -1 is not
    // reported a second time by the later range check.
    assert!(msgs[1].contains("`nonsense` is not an address"), "{msgs:?}");
    assert!(msgs[2].contains("unknown key `colour`"), "{msgs:?}");
    assert!(msgs[3].contains("MTU 9 is out of range"), "{msgs:?}");
}

#[test]
fn wrong_types_are_each_reported_with_what_the_key_takes() {
    let src = "name = \"x\"\n[nodes.s]\nkind = \"switch\"\nfdb_size = \"big\"\n[nodes.s.interfaces.p]\nvlan = 5000\nedge = \"yes\"\n[nodes.h.interfaces.e]\n[[links]]\nendpoints = [\"h:e\", \"s:p\"]\nmtu = 1.5\n";
    let p = problems(src);
    let msgs: Vec<&str> = p.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(
        msgs[0].contains("`fdb_size` = \"big\" is a string, and it takes a whole number"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("`vlan` = 5000 is out of range: it is a whole number from 1 to 4094")
            || msgs[1].contains("5000 is not a VLAN id"),
        "{msgs:?}"
    );
    assert!(
        msgs[2].contains("`edge` = \"yes\" is a string, and it takes true or false"),
        "{msgs:?}"
    );
    assert!(msgs[3].contains("[links (item 1)] `mtu` = 1.5"), "{msgs:?}");
}

#[test]
fn a_missing_required_key_is_reported_with_the_other_problems() {
    let src = "name = \"x\"\n[nodes.a]\ncolour = 1\n[[links]]\nends = [\"a:e\", \"b:e\"]\n";
    let p = problems(src);
    let msgs: Vec<&str> = p.iter().map(|x| x.2.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("unknown key `colour`")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("unknown key `ends`")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("missing key `endpoints`")),
        "{msgs:?}"
    );
}

#[test]
fn a_link_to_an_unknown_node_is_one_problem() {
    let src = "name = \"x\"\n[nodes.a.interfaces.veth2]\naddresses = [\"10.0.0.1/24\"]\n[[links]]\nendpoints = [\"a:veth2\", \"nosuch:e\"]\n[[links]]\nendpoints = [\"nosuch2:e\", \"a:veth3\"]\n";
    let p = problems(src);
    assert_eq!(
        p.len(),
        2,
        "only the unknown nodes, no unlinked veths: {p:#?}"
    );
    assert!(p[0].2.contains("there is no node `nosuch`"), "{p:#?}");
    assert!(p[1].2.contains("there is no node `nosuch2`"), "{p:#?}");
}

const ROUTES: &str = "name = \"x\"
[nodes.r]
routes = [\"10.1.0.0/16 vai 10.0.0.9\", \"10.2.0.0/16 via 10.0.0.9\", \"10.3.0.0/16 via 10.9.0.9\"]
[nodes.r.interfaces.t]
kind = \"tap\"
addresses = [\"10.0.0.2/24\"]
[nodes.p]
routes = [\"10.5.0.0/16 va 10.7.0.9\", \"10.6.0.0/16 via 10.8.0.9\"]
[nodes.p.interfaces.t]
kind = \"tap\"
addresses = [\"10.0.0.4/24\"]
";

#[test]
fn route_problems_point_at_their_own_route() {
    let p = problems(ROUTES);
    let gw: Vec<_> = p.iter().filter(|x| x.2.contains("gateway")).collect();
    assert_eq!(gw.len(), 2, "{p:#?}");
    // The third route of r, after one that did not parse, and the second
    // of two on p's line: each at its own column.
    assert!(gw[0].2.contains("10.3.0.0/16"), "{gw:?}");
    assert_eq!((gw[0].0, gw[0].1), (3, 67), "{gw:?}");
    assert!(gw[1].2.contains("10.6.0.0/16"), "{gw:?}");
    assert_eq!((gw[1].0, gw[1].1), (8, 38), "{gw:?}");
}

#[test]
fn duplicates_say_where_the_other_is_as_line_and_column() {
    let src = "name = \"x\"\n[nodes.br]\nkind = \"bridge\"\n[nodes.h]\ncount = 3\nattach = \"br\"\n[nodes.h2]\nattach = \"br\"\n";
    let p = problems(src);
    assert!(
        p[0].3.contains("the other is at line 4, column 8"),
        "{p:#?}"
    );
    assert!(!p[0].3.contains("byte"), "{p:#?}");
    let src = "name = \"x\"\n[nodes.a]\nkind = \"host\"\n\n[nodes.a]\nkind = \"bridge\"\n";
    let p = problems(src);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].0, p[0].1), (5, 8));
    assert!(
        p[0].2
            .contains("node `a` is declared twice (first at line 2, column 8)"),
        "{p:#?}"
    );
    let src = "name = \"x\"\n[nodes.a]\nkind = \"host\"\nkind = \"bridge\"\n";
    let p = problems(src);
    assert!(
        p[0].2
            .contains("`nodes.a.kind` is written twice (first at line 3, column 1)"),
        "{p:#?}"
    );
}

#[test]
fn stp_timer_wording_fits_the_bound_and_the_device() {
    let bridge = "name = \"x\"\n[nodes.br]\nkind = \"bridge\"\nstp = true\nforward_delay = 31\n";
    let p = problems(bridge);
    assert!(
        p[0].2
            .starts_with("bridge `br`: forward_delay = 31 s is out of range"),
        "{p:#?}"
    );
    assert!(
        !p[0].2.contains("shorter") && !p[0].2.contains("less"),
        "31 is too long, not too short: {p:#?}"
    );
    let short = problems(&bridge.replace("31", "1"));
    assert!(
        short[0]
            .2
            .contains("(with STP on, the kernel refuses less)"),
        "{short:#?}"
    );
    let switch = "name = \"x\"\n[nodes.sw]\nkind = \"switch\"\nforward_delay = 2\n";
    let p = problems(switch);
    assert!(
        p[0].2.starts_with("switch `sw`: forward_delay = 2 s"),
        "{p:#?}"
    );
    assert!(
        !p[0].2.contains("kernel") && !p[0].2.contains("bridge"),
        "a weft switch is not a kernel bridge: {p:#?}"
    );
    assert!(p[0].2.contains("802.1D"), "{p:#?}");
}

#[test]
fn control_characters_in_names_are_escaped() {
    let src = "name = \"la\\u001b[31mb\"\n[nodes.\"n\\u0007x\"]\n[[links]]\nendpoints = [\"q\\u001b:e\", \"r:e\"]\n";
    let p = problems(src);
    assert!(p.len() >= 3, "{p:#?}");
    for (_, _, m, h) in &p {
        assert!(
            !m.chars().any(|c| c.is_control()),
            "raw control character in {m:?}"
        );
        assert!(
            !h.chars().any(|c| c.is_control()),
            "raw control character in {h:?}"
        );
    }
    assert!(p.iter().any(|x| x.2.contains("la\\u{1b}[31mb")), "{p:#?}");
}

#[test]
fn an_unquoted_dotted_sysctl_key_gets_the_quoted_spelling() {
    let src = "name = \"x\"\n[nodes.a]\nsysctls = { net.ipv4.conf.all.forwarding = 1 }\n";
    let p = problems(src);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].3
            .contains("write the key in quotes: \"net.ipv4.conf.all.forwarding\" = 1"),
        "{p:#?}"
    );
}

#[test]
fn a_file_without_a_name_says_so_once() {
    let p = problems("[nodes.a]\ncolour = 1\n");
    let msgs: Vec<&str> = p.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(
        msgs.iter()
            .filter(|m| m.contains("missing key `name`"))
            .count(),
        1,
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("unknown key `colour`")),
        "{msgs:?}"
    );
}
