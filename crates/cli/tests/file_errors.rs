//! How `weft` prints the problems of a topology file: bounded, quick and
//! safe for the terminal, however large or strange the file. No kernel
//! needed: the file is refused before anything is built.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

/// `weft up --dry-run` of `text`, with a private state directory.
fn dry_run(tag: &str, text: &str) -> (Output, Duration) {
    let dir = std::env::temp_dir().join(format!("weft-file-errors-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lab.toml");
    std::fs::write(&file, text).unwrap();
    let t = Instant::now();
    let out = std::process::Command::new(common::weft_bin())
        .env("WEFT_STATE_DIR", dir.join("state"))
        .args(["up", "--dry-run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let took = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    (out, took)
}

/// Far above what a 50-problem report takes (about 25 KB), far below what
/// printing every problem with its whole line did (34 MB for `one_line`).
const MAX_OUTPUT: usize = 200_000;

/// Generous: the machine running the tests may be busy; this took 15 s
/// and more when the checks and the output grew faster than the file.
const MAX_TIME: Duration = Duration::from_secs(60);

#[test]
fn a_huge_bad_file_gives_a_bounded_report_quickly() {
    // 1,000 bad addresses on one 17 KB line.
    let addrs: Vec<String> = (0..1000)
        .map(|i| format!("\"10.0.{}.{}/24x\"", i / 250, i % 250))
        .collect();
    let one_line = format!(
        "name = \"big\"\n[nodes.a.interfaces.t]\nkind = \"tap\"\naddresses = [{}]\n",
        addrs.join(", ")
    );
    // 20,000 bad lines.
    let mut many = String::from("name = \"big\"\n");
    for i in 0..20_000 {
        many += &format!(
            "[nodes.n{i}.interfaces.t]\nkind = \"tap\"\naddresses = [\"10.{}.{}.1/24x\"]\n",
            i / 250,
            i % 250
        );
    }
    for (tag, text, total) in [("one-line", &one_line, 1000), ("many", &many, 20_000)] {
        let (out, took) = dry_run(tag, text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tag}: accepted");
        assert!(
            err.len() < MAX_OUTPUT,
            "{tag}: {} bytes of output for {} bytes of file",
            err.len(),
            text.len()
        );
        assert!(took < MAX_TIME, "{tag}: took {took:?}");
        let errors = err.lines().filter(|l| l.ends_with(": error")).count();
        assert_eq!(errors, 50, "{tag}: the first 50 are shown:\n{err}");
        assert!(
            err.contains(&format!("… and {} more problems like these", total - 50)),
            "{tag}: {}",
            &err[err.len().saturating_sub(400)..]
        );
        assert!(
            err.contains(&format!("{total} problem(s); nothing was changed")),
            "{tag}"
        );
        // Every shown line is cut around its column, the position right.
        assert!(
            err.lines().all(|l| l.chars().count() < 200),
            "{tag}: a long line was printed whole"
        );
    }
    let (out, _) = dry_run("one-line-pos", &one_line);
    let err = String::from_utf8_lossy(&out.stderr);
    // The 40th address: 14 + 39 * 16 (and the 11th to 39th are 17 wide).
    let col = 14 + 10 * 16 + 29 * 17;
    assert!(
        err.contains(&format!(
            "lab.toml:4:{col}: error\n  × node `a`: `10.0.0.39/24x` is not an address\n   ╭─["
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(":4:{col}]")),
        "miette's header has the file's column: {err}"
    );
}

#[test]
fn control_characters_from_the_file_never_reach_the_terminal() {
    // Escaped in the file, so in the names weft echoes; and raw in a line
    // weft shows.
    for (tag, text) in [
        (
            "ctl-names",
            "name = \"la\\u001b[31mb\"\n[nodes.\"n\\u0007x\"]\n",
        ),
        (
            "ctl-line",
            "name = \"x\"\n[nodes.ok]\nkind = \"host\" # \u{1b}[2J\u{7}\n",
        ),
    ] {
        let (out, _) = dry_run(tag, text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("lab.toml:"), "{err}");
        assert!(
            !err.bytes().any(|b| b == 0x1b || b == 0x07),
            "{tag}: raw control characters in: {err:?}"
        );
    }
}

/// `weft` with `args`, from a private state directory; its standard error.
fn stderr_of(args: &[&str]) -> String {
    let out = std::process::Command::new(common::weft_bin())
        .env(
            "WEFT_STATE_DIR",
            std::env::temp_dir().join(format!("weft-file-errors-{}-state", std::process::id())),
        )
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_problem_is_printed_once_at_its_position() {
    let dir = std::env::temp_dir().join(format!("weft-file-errors-{}-once", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A line of a file the script reads (`ip -batch`) is named in the words.
    let script = dir.join("s.sh");
    std::fs::write(&script, "ip netns add a\nip -batch links.txt\n").unwrap();
    std::fs::write(
        dir.join("links.txt"),
        "link add x type veth peer name y\nlink set zz up\n",
    )
    .unwrap();
    let bridge = common::root().join("tests/import/seed000-bridge.sh");
    let bad_yaml = common::root().join("tests/import/clab/bad-yaml.clab.yml");
    let lab = dir.join("lab.toml");
    std::fs::write(&lab, "name = \"x\"\n[nodes.a]\nfoo = 1\n").unwrap();
    // (command, where, the words of the problem, its help)
    let cases: [(&[&str], String, &str, &str); 4] = [
        (
            &["import", "script", bridge.to_str().unwrap()],
            "seed000-bridge.sh:51:1: error\n".into(),
            "there is no device `tap1` in namespace `ns2`",
            "is in namespace `ns1`",
        ),
        (
            &["import", "script", script.to_str().unwrap()],
            "s.sh: error\n".into(),
            "links.txt line 2: there is no device `zz`",
            "create `zz` before this line",
        ),
        (
            &["import", "clab", bad_yaml.to_str().unwrap()],
            "bad-yaml.clab.yml:6:1: error\n".into(),
            "did not find expected key",
            "a containerlab topology",
        ),
        (
            &["up", "--dry-run", lab.to_str().unwrap()],
            "lab.toml:3:1: error\n".into(),
            "unknown key `foo` in [nodes.a]",
            "the keys here are",
        ),
    ];
    for (args, at, words, help) in cases {
        let err = stderr_of(args);
        for s in [at.as_str(), words, help] {
            assert_eq!(
                err.matches(s).count(),
                1,
                "{args:?}: `{s}` not once in:\n{err}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
