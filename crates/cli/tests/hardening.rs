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
}
