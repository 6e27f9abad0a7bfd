//! Services, binds and images in the file: what is accepted, and what is
//! refused (with its position) before anything is built.

use std::path::Path;

use weft_topo::workload::{Ready, Restart, ServiceRef};
use weft_topo::{parse_at, Diagnostics, FileDir, Lab};

const NET: &str = r#"
name = "w"
[nodes.a]
[nodes.b]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
"#;

fn parse_in(extra: &str, exists: &dyn Fn(&Path) -> bool) -> Result<Lab, Diagnostics> {
    let text = format!("{NET}{extra}");
    parse_at(
        &text,
        None,
        Some(FileDir {
            dir: Path::new("/labs"),
            exists,
        }),
    )
    .map(|p| p.lab)
}

fn ok(extra: &str) -> Lab {
    parse_in(extra, &|_| true).unwrap_or_else(|e| panic!("{:?}", e.0))
}

/// The one error's message and the text its position points at.
fn refused(extra: &str, exists: &dyn Fn(&Path) -> bool) -> (String, String) {
    let text = format!("{NET}{extra}");
    let e = parse_in(extra, exists).expect_err("accepted");
    assert_eq!(e.0.len(), 1, "{:?}", e.0);
    let d = &e.0[0];
    let at = d
        .span
        .clone()
        .map(|s| text[s].to_string())
        .unwrap_or_default();
    (d.message.clone(), at)
}

#[test]
fn services_with_every_key() {
    let lab = ok(r#"
[nodes.a.services.db]
command = ["sleep", "100"]
ready = { delay = "200ms" }
[nodes.b.services.web]
command = ["python3", "-m", "http.server", "80"]
ready = { tcp = 80 }
after = ["a:db"]
restart = "on-failure"
env = { LOG = "debug" }
user = "nobody"
timeout = "5s"
[nodes.b.services.probe]
command = ["sleep", "1"]
ready = { command = ["true"] }
after = ["web"]
"#);
    let web = &lab.nodes["b"].services["web"];
    assert_eq!(web.ready, Ready::Tcp { port: 80 });
    assert_eq!(web.after, [ServiceRef::new("a", "db")]);
    assert_eq!(web.restart, Restart::OnFailure);
    assert_eq!(web.env["LOG"], "debug");
    assert_eq!(web.user.as_deref(), Some("nobody"));
    assert_eq!(web.timeout_ms, 5000);
    assert_eq!(
        lab.nodes["a"].services["db"].ready,
        Ready::Delay { ms: 200 }
    );
    // `after = ["web"]` is the same node's.
    assert_eq!(
        lab.nodes["b"].services["probe"].after,
        [ServiceRef::new("b", "web")]
    );
}

#[test]
fn binds_resolve_from_the_file_directory() {
    let lab = ok(r#"
[nodes.c]
binds = ["./r1/frr:/etc/frr", "tmpfs:/run/frr/", "/srv/x:/srv/y"]
"#);
    let b: Vec<String> = lab.nodes["c"].binds.iter().map(|b| b.to_string()).collect();
    assert_eq!(
        b,
        ["/labs/r1/frr:/etc/frr", "tmpfs:/run/frr", "/srv/x:/srv/y"]
    );
}

#[test]
fn a_missing_host_path_is_refused_at_the_bind() {
    let (msg, at) = refused("[nodes.c]\nbinds = [\"./nope:/etc/frr\"]\n", &|p| {
        p != Path::new("/labs/./nope")
    });
    assert!(msg.contains("/labs/./nope does not exist"), "{msg}");
    assert_eq!(at, "\"./nope:/etc/frr\"");
}

#[test]
fn binds_over_the_system_are_refused() {
    for target in ["/", "/proc", "/sys/", "/dev", "//dev"] {
        let (msg, at) = refused(
            &format!("[nodes.c]\nbinds = [\"tmpfs:{target}\"]\n"),
            &|_| true,
        );
        assert!(msg.contains("would hide"), "{target}: {msg}");
        assert_eq!(at, format!("\"tmpfs:{target}\""));
    }
}

#[test]
fn an_unknown_after_target_is_refused_with_its_position() {
    let (msg, at) = refused(
        "[nodes.a.services.x]\ncommand = [\"true\"]\nafter = [\"b:nope\"]\n",
        &|_| true,
    );
    assert!(msg.contains("node `b` has no service `nope`"), "{msg}");
    assert_eq!(at, "\"b:nope\"");
    let (msg, _) = refused(
        "[nodes.a.services.x]\ncommand = [\"true\"]\nafter = [\"zz:y\"]\n",
        &|_| true,
    );
    assert!(msg.contains("there is no node `zz`"), "{msg}");
}

#[test]
fn a_cycle_in_after_is_refused_with_the_cycle() {
    let (msg, _) = refused(
        r#"
[nodes.a.services.x]
command = ["true"]
after = ["b:y"]
[nodes.b.services.y]
command = ["true"]
after = ["b:z"]
[nodes.b.services.z]
command = ["true"]
after = ["a:x"]
"#,
        &|_| true,
    );
    assert!(msg.contains("cycle: a:x -> b:y -> b:z -> a:x"), "{msg}");
}

#[test]
fn bad_service_keys_are_refused() {
    for (extra, words) in [
        ("command = []", "`command` is empty"),
        (
            "command = [\"x\"]\nready = { tcp = 1, delay = \"1s\" }",
            "exactly one",
        ),
        (
            "command = [\"x\"]\nrestart = \"sometimes\"",
            "restart `sometimes`",
        ),
        ("command = [\"x\"]\ntimeout = \"soon\"", "not a duration"),
        ("command = [\"x\"]\nafter = [\"a:b:c\"]", "not a service"),
    ] {
        let (msg, _) = refused(&format!("[nodes.a.services.s]\n{extra}\n"), &|_| true);
        assert!(msg.contains(words), "{extra}: {msg}");
    }
}

#[test]
fn image_nodes() {
    let lab = ok(
        "[nodes.c]\nimage = \"weft-busybox\"\ncommand = [\"httpd\", \"-f\"]\nenv = { A = \"1\" }\n",
    );
    let c = lab.nodes["c"].container.as_ref().unwrap();
    assert_eq!(c.image, "weft-busybox");
    assert_eq!(c.command, ["httpd", "-f"]);
    let (msg, _) = refused("[nodes.c]\ncommand = [\"x\"]\n", &|_| true);
    assert!(msg.contains("has none"), "{msg}");
    let (msg, _) = refused(
        "[nodes.c]\nimage = \"i\"\n[nodes.c.services.s]\ncommand = [\"x\"]\n",
        &|_| true,
    );
    assert!(msg.contains("cannot also run services"), "{msg}");
}
