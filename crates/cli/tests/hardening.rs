//! What a new user hit (issue 10), through the real binary: bad lab
//! names, refused runs leaving state behind, closed pipes, misleading
//! hints and wording.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::Lab;

/// Run `weft ARGS` with its stdout a pipe whose reader closes it: at once
/// (before the command can have written anything, so its first write
/// fails), or after the first byte (`| head -1` of a command that prints
/// over time). Returns (exit status, stderr).
fn with_closed_pipe(
    lab: Option<&Lab>,
    args: &[&str],
    read_first: bool,
) -> (std::process::ExitStatus, String) {
    let mut c = match lab {
        Some(l) => l.weft(),
        None => Command::new(common::weft_bin()),
    };
    let mut child = c
        .args(args)
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    if read_first {
        let mut first = [0u8; 1];
        let _ = out.read(&mut first);
    }
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), err)
}

fn assert_quiet(status: std::process::ExitStatus, err: &str, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(!err.contains("Broken pipe"), "{what}: {err}");
    assert_ne!(status.code(), Some(101), "{what}: {err}");
    // Either finished or ended by SIGPIPE, as `cat` would be.
    assert!(
        status.success() || status.signal() == Some(libc_sigpipe()),
        "{what}: {status:?} {err}"
    );
}

fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    // A command without a lab: the graph of a file is longer than one line.
    let (st, err) = with_closed_pipe(None, &["graph", "examples/star.toml"], false);
    assert_quiet(st, &err, "weft graph FILE | head -1");
    // And one that prints over time, from a live lab.
    let lab = Lab::example("pipe", "veth.toml");
    lab.up();
    let (st, err) = with_closed_pipe(
        Some(&lab),
        &["ping", &lab.name, "ns1", "ns2", "-c", "3", "-i", "0.05"],
        true,
    );
    assert_quiet(st, &err, "weft ping | head -1");
    let (st, err) = with_closed_pipe(Some(&lab), &["status", &lab.name], false);
    assert_quiet(st, &err, "weft status | head -1");
    // Capture prints per packet: pings give it some, after the close.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (name, state, done) = (lab.name.clone(), lab.state.clone(), done.clone());
        std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            while !done.load(std::sync::atomic::Ordering::SeqCst)
                && t0.elapsed() < std::time::Duration::from_secs(20)
            {
                let _ = Command::new(common::weft_bin())
                    .args(["ping", &name, "ns1", "ns2", "-c", "1"])
                    .env("WEFT_STATE_DIR", &state)
                    .output();
            }
        })
    };
    let (st, err) = with_closed_pipe(Some(&lab), &["capture", &lab.name, "ns1:veth0"], true);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    pinger.join().unwrap();
    assert_quiet(st, &err, "weft capture | head -1");
}

/// Files and directories under `dir`, recursively (for "nothing was made").
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            out.extend(tree(&e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_bad_or_unknown_lab_name_is_refused_by_every_command_and_creates_nothing() {
    let lab = Lab::example("names", "veth.toml");
    // The state directory exists (another lab is there), so a path
    // escape would land in it.
    std::fs::create_dir_all(lab.state.join("labs")).unwrap();
    let before = tree(lab.file.parent().unwrap());
    for name in ["../escape", "../../escape2", "UPPER", "nosuch"] {
        for args in [
            vec!["link", name, "a", "b", "down"],
            vec!["impair", name, "a", "b", "--loss", "1%"],
            vec!["status", name],
            vec!["ping", name, "a", "b"],
            vec!["trace", name, "a", "b"],
            vec!["fdb", name, "s"],
            vec!["check", name],
            vec!["graph", name],
            vec!["capture", name, "a", "-c", "1"],
            vec!["down", name],
        ] {
            let o = lab.run(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            if name == "nosuch" {
                // `down` of an unknown lab has nothing to remove: fine.
                if args[0] != "down" {
                    assert!(!o.status.success(), "weft {args:?} succeeded");
                    assert!(err.contains("no lab named nosuch"), "{args:?}: {err}");
                    // The help says how to build it (as root; a user is
                    // told whose labs they can see instead).
                    assert!(
                        err.contains("weft up FILE") || err.contains("labs you built"),
                        "{args:?}: {err}"
                    );
                }
            } else {
                assert!(!o.status.success(), "weft {args:?} succeeded");
                assert!(
                    err.contains(&format!("lab name `{name}` ")),
                    "{args:?}: {err}"
                );
            }
        }
        let after = tree(lab.file.parent().unwrap());
        assert_eq!(before, after, "lab name {name} made something");
    }
    // `weft exec` too (it runs before anything else).
    let o = lab.run(&["exec", "../escape", "a", "--", "true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("lab name `../escape` "));
}

#[test]
fn a_refused_up_names_the_owning_lab_and_leaves_no_state() {
    let lab = Lab::example("taken", "veth.toml");
    let theirs = lab.netns("ns2");
    let ip = |args: &[&str]| {
        assert!(Command::new("ip").args(args).status().unwrap().success());
    };
    ip(&["netns", "add", &theirs]);
    // As another weft lab tags its namespaces.
    ip(&["-n", &theirs, "link", "set", "lo", "alias", "weft:otherlab"]);
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let _ = Command::new("ip").args(["netns", "del", &theirs]).status();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("weft lab otherlab"), "{err}");
    assert!(!err.contains("ip netns del"), "{err}");
    assert!(lab.namespaces().is_empty(), "nothing was built");
    assert!(
        !lab.state.join("labs").join(&lab.name).exists(),
        "a refused up left {:?}",
        tree(&lab.state)
    );
    // Not a weft lab's: deleting it is the advice.
    ip(&["netns", "add", &theirs]);
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let _ = Command::new("ip").args(["netns", "del", &theirs]).status();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("ip netns del {theirs}")), "{err}");
    assert!(!lab.state.join("labs").join(&lab.name).exists());
}

#[test]
fn status_without_privileges_says_so() {
    let lab = Lab::example("nopriv", "veth.toml");
    lab.up();
    // The state is readable to others; the namespaces are not enterable.
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            common::weft_bin(),
            "status",
            &lab.name,
        ])
        .env("WEFT_STATE_DIR", &lab.state)
        // Without this, weft would build in a user namespace of its own.
        .env("WEFT_ROOTLESS", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(!out.contains("MISSING"), "{out}");
    assert!(
        err.contains("weft status needs") && err.contains("root"),
        "{err}"
    );
}

#[test]
fn refusals_say_what_to_do_and_print_nothing_else() {
    let lab = Lab::example("words", "veth.toml");
    lab.up();
    // A file with a syntax error cannot name its lab.
    let broken = lab.file.with_file_name("broken.toml");
    std::fs::write(&broken, format!("name = \"{}\"\n[nodes.a\n", lab.name)).unwrap();
    let o = lab.run(&["down", broken.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`weft down NAME`"), "{err}");
    // An unknown node is refused before any ping output.
    let o = lab.run(&["ping", &lab.name, "nosuch", "ns2"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.is_empty(), "printed before refusing: {out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no node nosuch"));
}

#[test]
fn an_interface_without_an_mtu_in_the_file_keeps_the_kernels() {
    let lab = Lab::example("lomtu", "veth.toml");
    lab.up();
    for node in ["ns1", "ns2"] {
        assert_eq!(lab.iface(node, "lo")["mtu"], 65536, "{node}:lo");
        assert_eq!(lab.iface(node, node_iface(node))["mtu"], 1500);
    }
}

fn node_iface(node: &str) -> &'static str {
    if node == "ns1" {
        "veth0"
    } else {
        "veth1"
    }
}

#[test]
fn pings_hint_blames_a_missing_address_only_when_it_is_missing() {
    let lab = Lab::example("hint", "bridge.toml");
    lab.up();
    // Nobody has this address: the hint says so.
    let o = lab.run(&[
        "ping",
        &lab.name,
        "ns1",
        "192.168.50.77",
        "-c",
        "1",
        "-W",
        "0.5",
    ]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("nothing on that link owns the address"),
        "{out}"
    );
    // ns2 has its address, but its cable is pulled: the hint must not
    // claim otherwise, and points to `weft trace`.
    lab.ok(&["link", &lab.name, "ns2", "br0", "down"]);
    let o = lab.run(&["ping", &lab.name, "ns1", "ns2", "-c", "1", "-W", "0.5"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("nothing on that link owns"), "{out}");
    assert!(out.contains("ns2:tap2"), "{out}");
    assert!(
        out.contains(&format!("`weft trace {} ns1 ns2`", lab.name)),
        "{out}"
    );
}
