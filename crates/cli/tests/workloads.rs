//! Workloads in nodes through the real binary: services (order, readiness,
//! failures and rollback, edits, restarts, logs), private files per node,
//! containers, and `weft down` leaving no process of the lab behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{alive, Lab};

const PAIR: &str = r#"
name = "x"
[nodes.a.interfaces.eth0]
addresses = ["10.77.0.1/24"]
[nodes.b.interfaces.eth0]
addresses = ["10.77.0.2/24"]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
"#;

fn lab_with(tag: &str, extra: &str) -> Lab {
    Lab::from_text(tag, &format!("{PAIR}{extra}"))
}

/// `node:service` -> (pid, phase, restarts), from the supervisor's record.
fn services(lab: &Lab) -> Vec<(String, u32, String, u64)> {
    let p = lab
        .state
        .join("labs")
        .join(&lab.name)
        .join("services/status.json");
    let Ok(b) = std::fs::read(&p) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["units"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, u)| {
            (
                k.clone(),
                u["pid"].as_u64().unwrap_or(0) as u32,
                u["phase"].as_str().unwrap().to_string(),
                u["restarts"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn pid_of(lab: &Lab, id: &str) -> u32 {
    services(lab)
        .into_iter()
        .find(|s| s.0 == id)
        .unwrap_or_else(|| panic!("no service {id}"))
        .1
}

/// Processes whose network namespace is one of the lab's.
fn processes_in(lab: &Lab) -> Vec<u32> {
    let mut ids = Vec::new();
    for ns in lab.namespaces() {
        if let Ok(m) = std::fs::metadata(Path::new("/run/netns").join(ns)) {
            use std::os::unix::fs::MetadataExt;
            ids.push((m.dev(), m.ino()));
        }
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(e.path().join("ns/net")) {
            if ids.contains(&(m.dev(), m.ino())) {
                out.push(pid);
            }
        }
    }
    out
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn services_start_after_what_they_need_and_down_stops_them() {
    let lab = lab_with(
        "svc",
        r#"
[nodes.a.services.http]
command = ["python3", "-m", "http.server", "8080"]
ready = { tcp = 8080 }
[nodes.b.services.fetch]
# Runs only once a:http answers: fetching at once must work.
command = ["sh", "-c", "python3 -c \"import urllib.request as u; print('status', u.urlopen('http://10.77.0.1:8080/').status)\" && exec sleep 1000"]
after = ["a:http"]
ready = { delay = "300ms" }
env = { GREETING = "hi" }
"#,
    );
    lab.up();
    let s = services(&lab);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s.iter().all(|x| x.2 == "ready" && alive(x.1)), "{s:?}");
    // The fetch ran (its first try worked: `sh -c A && B` stops on failure).
    wait_for("b:fetch's output", 20, || {
        lab.ok(&["logs", &lab.name, "b:fetch"])
            .contains("status 200")
    });
    // A node with one service: the node name is enough.
    assert!(lab.ok(&["logs", &lab.name, "a"]).contains("GET / HTTP"));
    let pids: Vec<u32> = s.iter().map(|x| x.1).collect();
    let out = lab.ok(&["down", &lab.name]);
    assert!(out.contains("stopped service a:http"), "{out}");
    assert!(out.contains("stopped service b:fetch"), "{out}");
    for p in pids {
        assert!(!alive(p), "service pid {p} outlived down");
    }
    assert!(lab.namespaces().is_empty());
}

#[test]
fn down_ends_every_process_in_the_lab_unless_told_to_keep_them() {
    // Replaces the old behaviour (processes outliving down, with a warning).
    let lab = lab_with("end", "");
    lab.up();
    let mut shell = Command::new("ip")
        .args(["netns", "exec", &lab.netns("b"), "sleep", "1000"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // `ip netns exec` joins the namespace before it becomes `sleep`: wait
    // for both, or down may find (and name) it as `ip`.
    let sleeping = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    };
    wait_for("sleep in b", 30, || {
        processes_in(&lab).contains(&shell.id()) && sleeping(shell.id())
    });
    let out = lab.ok(&["down", &lab.name]);
    assert!(
        out.contains(&format!(
            "ended process {} (sleep) in {}",
            shell.id(),
            lab.netns("b")
        )),
        "{out}"
    );
    assert!(shell.wait().unwrap().code().is_none(), "killed by a signal");
    assert!(lab.namespaces().is_empty());

    // --keep-processes: left running, and said so.
    lab.up();
    let mut kept = Command::new("ip")
        .args(["netns", "exec", &lab.netns("a"), "sleep", "1000"])
        .spawn()
        .unwrap();
    wait_for("sleep in a", 30, || {
        processes_in(&lab).contains(&kept.id()) && sleeping(kept.id())
    });
    let o = lab.run(&["down", &lab.name, "--keep-processes"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains(&kept.id().to_string()),
        "{err}"
    );
    assert!(alive(kept.id()));
    kept.kill().unwrap();
    kept.wait().unwrap();
}

#[test]
fn a_service_that_fails_rolls_the_lab_back_naming_it_with_its_log() {
    for (tag, svc, words) in [
        (
            "exit",
            "command = [\"sh\", \"-c\", \"echo boom-on-stderr >&2; exit 3\"]\nready = { delay = \"2s\" }",
            vec!["node a, service s", "exited (exit status: 3) before it was ready", "boom-on-stderr"],
        ),
        (
            "never",
            "command = [\"sleep\", \"100\"]\nready = { tcp = 9 }\ntimeout = \"1s\"",
            vec!["node a, service s", "not ready within 1.0 s", "port 9"],
        ),
    ] {
        let lab = lab_with(tag, &format!("[nodes.a.services.s]\n{svc}\n"));
        let t0 = Instant::now();
        let o = lab.run(&["up", lab.file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{tag}: up succeeded");
        for w in &words {
            assert!(err.contains(w), "{tag}: no {w:?} in {err}");
        }
        if tag == "exit" {
            let tail = format!(
                "weft: its last log lines (weft logs {} a:s):\nweft:   boom-on-stderr\n",
                lab.name
            );
            assert!(err.contains(&tail), "{tag}: no {tail:?} in {err}");
        }
        assert!(err.contains("was new, so it was removed"), "{tag}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{tag}: took {:?}", t0.elapsed());
        assert!(lab.namespaces().is_empty(), "{tag}: rolled back");
        assert!(processes_in(&lab).is_empty());
    }
}

#[test]
fn a_service_whose_program_is_missing_is_refused_before_anything_is_built() {
    let lab = lab_with(
        "nocmd",
        "[nodes.a.services.s]\ncommand = [\"/no/such/program\"]\n",
    );
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "up succeeded");
    assert!(
        err.contains("node a, service s: it runs `/no/such/program`, which is not on this machine"),
        "{err}"
    );
    assert!(err.contains("install the package"), "{err}");
    assert!(lab.namespaces().is_empty());
    assert!(!lab.state.join("labs").join(&lab.name).exists(), "{err}");
}

#[test]
fn an_edit_restarts_only_the_changed_services_and_those_after_them() {
    let base = r#"
[nodes.a.services.one]
command = ["sleep", "1000"]
[nodes.a.services.two]
command = ["sleep", "1001"]
after = ["one"]
[nodes.b.services.three]
command = ["sleep", "1002"]
"#;
    let lab = lab_with("edit", base);
    lab.up();
    let before: Vec<u32> = ["a:one", "a:two", "b:three"]
        .iter()
        .map(|s| pid_of(&lab, s))
        .collect();
    lab.rewrite(&format!(
        "{PAIR}{}",
        base.replace("\"1000\"]", "\"1000\"]\nenv = { X = \"1\" }")
    ));
    let out = lab.up();
    assert!(!out.contains("up to date"), "{out}");
    let after: Vec<u32> = ["a:one", "a:two", "b:three"]
        .iter()
        .map(|s| pid_of(&lab, s))
        .collect();
    assert_ne!(before[0], after[0], "the edited service restarted");
    assert_ne!(before[1], after[1], "the one after it restarted");
    assert_eq!(before[2], after[2], "the other kept running");
    assert!(!alive(before[0]) && !alive(before[1]));
    // The same file again: nothing restarts.
    lab.up();
    let again: Vec<u32> = ["a:one", "a:two", "b:three"]
        .iter()
        .map(|s| pid_of(&lab, s))
        .collect();
    assert_eq!(after, again);
}

#[test]
fn restart_policies() {
    let lab = lab_with(
        "restart",
        r#"
[nodes.a.services.fragile]
command = ["sleep", "1000"]
restart = "on-failure"
[nodes.a.services.once]
command = ["sleep", "1001"]
"#,
    );
    lab.up();
    let (f0, o0) = (pid_of(&lab, "a:fragile"), pid_of(&lab, "a:once"));
    Command::new("kill")
        .args(["-KILL", &f0.to_string(), &o0.to_string()])
        .status()
        .unwrap();
    wait_for("fragile restarted", 15, || {
        services(&lab)
            .iter()
            .any(|s| s.0 == "a:fragile" && s.3 == 1 && s.1 != 0 && alive(s.1))
    });
    wait_for("once exited", 15, || {
        services(&lab)
            .iter()
            .any(|s| s.0 == "a:once" && s.2 == "exited")
    });
}

/// The lab's services as `weft status --json` shows them, by `node:name`.
fn status_services(lab: &Lab) -> std::collections::BTreeMap<String, serde_json::Value> {
    lab.status_json()[0]["services"]
        .as_array()
        .expect("services is an array")
        .iter()
        .map(|s| {
            (
                format!(
                    "{}:{}",
                    s["node"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                ),
                s.clone(),
            )
        })
        .collect()
}

#[test]
fn status_shows_each_service_running_exited_or_restarting() {
    let lab = lab_with("svcstat", "");
    // The two that end wait for the test to say so: no race with readiness.
    let go = lab.file.parent().unwrap().join("go");
    let wait_go = format!("while [ ! -e {} ]; do sleep 0.05; done", go.display());
    lab.rewrite(&format!(
        r#"{PAIR}
[nodes.a.services.up]
command = ["sleep", "1000"]
[nodes.a.services.once]
command = ["sh", "-c", "{wait_go}; exit 4"]
restart = "no"
[nodes.b.services.flaky]
command = ["sh", "-c", "{wait_go}; exit 3"]
restart = "always"
"#
    ));
    lab.up();
    let s = status_services(&lab);
    assert_eq!(
        s.keys().collect::<Vec<_>>(),
        ["a:once", "a:up", "b:flaky"],
        "{s:?}"
    );
    let up_pid = pid_of(&lab, "a:up");
    assert_eq!(s["a:up"]["state"], "running", "{s:?}");
    assert_eq!(s["a:up"]["pid"], up_pid, "{s:?}");
    assert_eq!(s["a:up"]["restarts"], 0, "{s:?}");
    assert_eq!(s["a:up"]["container"], serde_json::Value::Null, "{s:?}");
    std::fs::write(&go, "").unwrap();
    wait_for("once exited and flaky restarted", 30, || {
        let s = status_services(&lab);
        s["a:once"]["state"] == "exited" && s["b:flaky"]["restarts"].as_u64() >= Some(1)
    });
    let s = status_services(&lab);
    assert_eq!(s["a:once"]["exit"]["code"], 4, "{s:?}");
    assert_eq!(s["a:once"]["pid"], serde_json::Value::Null, "{s:?}");
    let flaky = &s["b:flaky"];
    match flaky["state"].as_str() {
        Some("restarting") => assert_eq!(flaky["exit"]["code"], 3, "{s:?}"),
        Some("running") => assert!(flaky["pid"].is_u64(), "{s:?}"),
        other => panic!("flaky is {other:?}: {s:?}"),
    }
    let text = lab.ok(&["status", &lab.name]);
    assert!(
        text.contains(&format!("    service up: running, pid {up_pid}\n")),
        "{text}"
    );
    assert!(
        text.contains("    service once: exited with code 4\n"),
        "{text}"
    );
    // Between restarts it says how the last run ended; running, its pid.
    let flaky_line = text
        .lines()
        .find(|l| l.starts_with("    service flaky: "))
        .unwrap_or_else(|| panic!("no flaky in {text}"));
    assert!(
        (flaky_line.starts_with("    service flaky: restarting (exited with code 3), restarts ")
            || flaky_line.starts_with("    service flaky: running, pid "))
            && flaky_line.contains(", restarts "),
        "{text}"
    );
    // Each under its node.
    let b_at = text.find("  host b ").unwrap_or_else(|| panic!("{text}"));
    assert!(text.find("service up:").unwrap() < b_at, "{text}");
    assert!(text.find("service flaky:").unwrap() > b_at, "{text}");
}

#[test]
fn logs_are_capped() {
    let lab = lab_with(
        "logcap",
        r#"
[nodes.a.services.noisy]
command = ["sh", "-c", "yes 0123456789abcdef | head -c 5000000; echo LAST-LINE; exec sleep 1000"]
"#,
    );
    lab.up();
    let dir = lab.state.join("labs").join(&lab.name).join("services");
    wait_for("the log was cut", 20, || {
        dir.join("a.noisy.log.1").exists()
            && std::fs::metadata(dir.join("a.noisy.log")).is_ok_and(|m| m.len() <= 1 << 20)
    });
    let log = lab.ok(&["logs", &lab.name, "a:noisy"]);
    assert!(log.len() <= 2 << 20, "{} bytes", log.len());
    wait_for("the last line", 10, || {
        lab.ok(&["logs", &lab.name, "a:noisy"])
            .contains("LAST-LINE")
    });
}

#[test]
fn binds_give_each_node_its_own_files_and_exec_and_services_see_them() {
    let lab = lab_with("binds", "");
    let dir = lab.file.parent().unwrap().to_path_buf();
    for n in ["a", "b"] {
        std::fs::create_dir_all(dir.join(n)).unwrap();
        std::fs::write(dir.join(n).join("id"), format!("I am {n}\n")).unwrap();
    }
    let text = format!(
        r#"{PAIR}
[nodes.a]
binds = ["./a:/mnt", "tmpfs:/srv"]
[nodes.b]
binds = ["./b:/mnt", "tmpfs:/srv"]
[nodes.a.services.w]
command = ["sh", "-c", "cat /mnt/id > /srv/seen; exec sleep 1000"]
"#
    );
    lab.rewrite(&text);
    lab.up();
    let cat = |n: &str, f: &str| lab.ok(&["exec", &lab.name, n, "--", "cat", f]);
    assert_eq!(cat("a", "/mnt/id"), "I am a\n");
    assert_eq!(cat("b", "/mnt/id"), "I am b\n");
    // The service wrote into a's tmpfs; exec in a sees it, b and the
    // machine do not.
    wait_for("the service's file", 10, || {
        cat("a", "/srv/seen") == "I am a\n"
    });
    let o = lab.run(&["exec", &lab.name, "b", "--", "cat", "/srv/seen"]);
    assert!(!o.status.success());
    assert!(!Path::new("/srv/seen").exists());
    // weft's name files stay in place, and follow an edit that adds a node.
    assert!(cat("a", "/etc/hosts").contains("written by weft"));
    lab.rewrite(&format!(
        "{text}[nodes.c.interfaces.t0]\nkind = \"tap\"\naddresses = [\"10.79.0.1/24\"]\n"
    ));
    lab.up();
    let hosts = cat("a", "/etc/hosts");
    assert!(hosts.contains("10.79.0.1\tc\n"), "{hosts}");
    assert_eq!(cat("a", "/srv/seen"), "I am a\n", "the edit kept a's files");
    lab.ok(&["down", &lab.name]);
    let mnt = lab.state.join("mnt");
    let left: Vec<PathBuf> = std::fs::read_dir(&mnt)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "mount namespace files left: {left:?}");
}

#[test]
fn sigkill_of_up_while_services_start_then_down_leaves_nothing() {
    let mut text =
        String::from("name = \"x\"\n[nodes.sw]\nkind = \"bridge\"\nsubnet = \"10.78.0.0/24\"\n");
    text.push_str("[nodes.h]\ncount = 8\nattach = \"sw\"\n");
    text.push_str(
        "[nodes.h.services.slow]\ncommand = [\"sleep\", \"1000\"]\nready = { delay = \"5s\" }\n",
    );
    text.push_str("[nodes.h.services.next]\ncommand = [\"sleep\", \"1001\"]\nafter = [\"slow\"]\n");
    let lab = Lab::from_text("svckill", &text);
    let mut up = lab.spawn_up();
    // Killed once services run but before they are ready.
    wait_for("services starting", 30, || {
        services(&lab).iter().filter(|s| alive(s.1)).count() >= 8
    });
    Command::new("kill")
        .args(["-KILL", &up.id().to_string()])
        .status()
        .unwrap();
    assert!(!up.wait().unwrap().success());
    let pids: Vec<u32> = services(&lab)
        .iter()
        .map(|s| s.1)
        .filter(|p| *p != 0)
        .collect();
    assert!(!pids.is_empty());
    let o = lab.ok(&["down", lab.file.to_str().unwrap()]);
    assert!(o.contains("stopped service"), "{o}");
    for p in pids {
        assert!(!alive(p), "pid {p} survived");
    }
    assert!(lab.namespaces().is_empty());
    // Nothing weft started for the lab is left: no process has the lab's
    // name in its command line (the supervisor is `weft supervise LAB`).
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            assert!(!c.contains(&format!("supervise {}", lab.name)), "left: {c}");
        }
    }
}

/// Makes the directory tree `dir` the local image `image` (`podman
/// import` of its tar), then removes the tree.
fn import_tree(dir: &Path, image: &str) {
    let tar = dir.with_extension("tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let ok = Command::new("podman")
        .arg("import")
        .arg(&tar)
        .arg(image)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "podman import");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(&tar);
}

/// A tiny local image (busybox-static and its applet links, imported with
/// `podman import`: nothing is pulled). None, said loudly, when podman
/// cannot run containers on this machine.
fn busybox_image() -> Option<(String, Vec<(String, String)>)> {
    let image = "localhost/weft-test-busybox".to_string();
    let have = Command::new("podman")
        .args(["image", "exists", &image])
        .status();
    if !matches!(have, Ok(s) if s.success()) {
        let dir = std::env::temp_dir().join(format!("weft-bb-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
            .expect("busybox-static is installed");
        for a in [
            "sh", "cat", "httpd", "sleep", "wget", "hostname", "ip", "ls",
        ] {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(a));
        }
        import_tree(&dir, &image);
    }
    // Some machines (cgroups v1/v2 hybrids, low rlimits in a sandbox) need
    // runc and lower limits: podman takes them from CONTAINERS_CONF.
    let try_run = |env: &[(String, String)]| {
        Command::new("podman")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                &image,
                "sh",
                "-c",
                "true",
            ])
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if try_run(&[]) {
        return Some((image, Vec::new()));
    }
    let conf = std::env::temp_dir().join("weft-test-containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    let env = vec![("CONTAINERS_CONF".to_string(), conf.display().to_string())];
    if try_run(&env) {
        return Some((image, env));
    }
    eprintln!("SKIPPED: podman cannot run a container on this machine, with crun or runc");
    None
}

#[test]
fn a_container_runs_in_its_node_and_exec_enters_it() {
    let Some((image, env)) = busybox_image() else {
        return;
    };
    let lab = lab_with("ctr", "");
    let dir = lab.file.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "served from the container\n").unwrap();
    let text = format!(
        "{PAIR}\n[nodes.a]\nimage = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\nbinds = [\"./www:/www\"]\n"
    );
    lab.rewrite(&text);
    let run = |args: &[&str]| {
        let o = lab
            .weft()
            .envs(env.iter().cloned())
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "weft {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    run(&["up", lab.file.to_str().unwrap()]);
    // Served from a, fetched from b over the lab's link.
    let got = run(&[
        "exec",
        &lab.name,
        "b",
        "--",
        "python3",
        "-c",
        "import urllib.request as u; print(u.urlopen('http://10.77.0.1/').read().decode(), end='')",
    ]);
    assert_eq!(got, "served from the container\n");
    // exec enters the container: busybox's /bin/busybox is there, and the
    // node's interface.
    let inside = run(&[
        "exec",
        &lab.name,
        "a",
        "--",
        "sh",
        "-c",
        "ls /bin/busybox; ip -o addr",
    ]);
    assert!(
        inside.contains("/bin/busybox") && inside.contains("10.77.0.1/24"),
        "{inside}"
    );
    let cname = lab.netns("a");
    let s = status_services(&lab);
    assert_eq!(s["a:container"]["container"], cname.as_str(), "{s:?}");
    assert_eq!(s["a:container"]["state"], "running", "{s:?}");
    let pid = s["a:container"]["pid"].as_u64().expect("podman run's pid");
    let text = run(&["status", &lab.name]);
    assert!(
        text.contains(&format!("    container {cname}: running, pid {pid}\n")),
        "{text}"
    );
    let out = run(&["down", &lab.name]);
    assert!(out.contains("stopped service a:container"), "{out}");
    let ps = Command::new("podman")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(&cname),
        "container left"
    );
}

/// A container whose command ends at once (a shell without a terminal, as
/// an imported containerlab node's image may have) is running only for a
/// moment: `up` fails naming it and saying what to give, instead of
/// calling the lab up with the container gone.
#[test]
fn a_container_whose_command_ends_at_once_fails_up() {
    let Some((image, env)) = busybox_image() else {
        return;
    };
    let lab = lab_with("ctrend", "");
    lab.rewrite(&format!(
        "{PAIR}\n[nodes.a]\nimage = \"{image}\"\ncommand = [\"sh\"]\n"
    ));
    let o = lab
        .weft()
        .envs(env.iter().cloned())
        .args(["up", lab.file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("node a, service container: it exited (exit status: 0) before it was ready")
            && err.contains("command = [\"sleep\", \"infinity\"]"),
        "{err}"
    );
    assert!(lab.namespaces().is_empty());
}

#[test]
fn a_missing_image_is_refused_before_anything_is_built() {
    let lab = lab_with(
        "noimg",
        "[nodes.c]\nimage = \"localhost/weft-no-such-image\"\n",
    );
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("no local image `localhost/weft-no-such-image`"),
        "{err}"
    );
    assert!(lab.namespaces().is_empty());
}

#[test]
fn ospf_routers_converge_before_up_returns_and_trace_follows_them() {
    assert!(
        Path::new("/usr/lib/frr/ospfd").exists(),
        "this test needs Debian's frr package (the README's test command installs it)"
    );
    let lab = Lab::example_with_dir("ospf", "ospf");
    let out = lab.up();
    assert!(out.contains("1 check(s) passed"), "{out}");
    // Every route between the hosts came from OSPF, none from weft.
    for r in ["r1", "r2", "r3", "r4"] {
        let routes = lab.ip(r, &["route", "show", "proto", "ospf"]);
        assert!(!routes.trim().is_empty(), "{r} learned nothing: {routes}");
    }
    assert!(lab.ping("h1", "h2", None));
    let t = lab.ok(&["trace", &lab.name, "h1", "h2"]);
    for r in ["r1", "r2", "r3", "r4"] {
        assert!(t.contains(&format!("router: {r} forwards it")), "{t}");
    }
    assert!(t.contains("delivered"), "{t}");
    // Each router has its own /run/frr: vtysh in r2 talks to r2's daemons.
    let n = lab.ok(&[
        "exec",
        &lab.name,
        "r2",
        "--",
        "vtysh",
        "-c",
        "show ip ospf neighbor",
    ]);
    assert_eq!(n.matches("Full/").count(), 2, "{n}");
    lab.ok(&["down", &lab.name]);
    assert!(processes_in(&lab).is_empty());
}

#[test]
fn bgp_between_two_autonomous_systems() {
    assert!(
        Path::new("/usr/lib/frr/bgpd").exists(),
        "this test needs Debian's frr package (the README's test command installs it)"
    );
    let lab = Lab::example_with_dir("bgp", "bgp");
    let out = lab.up();
    assert!(out.contains("1 check(s) passed"), "{out}");
    assert!(lab
        .ip("a1", &["route", "show", "proto", "bgp"])
        .contains("10.2.0.0/24"));
    assert!(lab
        .ip("a2", &["route", "show", "proto", "bgp"])
        .contains("10.1.0.0/24"));
    assert!(lab.ping("h2", "h1", None));
}

#[test]
fn a_failed_service_edit_puts_the_old_services_back() {
    let good = "[nodes.a.services.s]\ncommand = [\"sleep\", \"1000\"]\n";
    let lab = lab_with("svcundo", good);
    lab.up();
    lab.rewrite(&format!(
        "{PAIR}[nodes.a.services.s]\ncommand = [\"sh\", \"-c\", \"echo broken; exit 1\"]\nready = {{ delay = \"1s\" }}\n"
    ));
    let o = lab.run(&["up", lab.file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("node a, service s") && err.contains("broken"),
        "{err}"
    );
    assert!(err.contains("restored"), "{err}");
    // The lab and its service are as before the edit.
    assert_eq!(lab.namespaces().len(), 2);
    let s = services(&lab);
    assert!(
        s.iter()
            .any(|x| x.0 == "a:s" && x.2 == "ready" && alive(x.1)),
        "{s:?}"
    );
    let cmd = std::fs::read_to_string(format!("/proc/{}/cmdline", pid_of(&lab, "a:s"))).unwrap();
    assert_eq!(cmd, "sleep\u{0}1000\u{0}");
}

#[test]
fn the_next_up_recovers_from_a_killed_supervisor_or_a_killed_up() {
    let text = format!(
        "{PAIR}[nodes.a.services.s]\ncommand = [\"sleep\", \"1000\"]\nready = {{ delay = \"3s\" }}\n"
    );
    let lab = lab_with("svcrec", "");
    lab.rewrite(&text);
    // up killed while the service starts; the next up (not down) finishes
    // the job: the service runs once, in the lab's namespace.
    let mut up = lab.spawn_up();
    wait_for("the service started", 30, || {
        services(&lab).iter().any(|s| alive(s.1))
    });
    let first = pid_of(&lab, "a:s");
    Command::new("kill")
        .args(["-KILL", &up.id().to_string()])
        .status()
        .unwrap();
    up.wait().unwrap();
    lab.up();
    let second = pid_of(&lab, "a:s");
    assert!(alive(second));
    assert!(second == first || !alive(first), "two copies run");
    assert_eq!(processes_in(&lab), vec![second]);
    // The supervisor killed: the services keep running, and the next up
    // replaces both without a duplicate.
    let sup: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            lab.state
                .join("labs")
                .join(&lab.name)
                .join("services/supervisor.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sup = sup["pid"].as_u64().unwrap() as u32;
    Command::new("kill")
        .args(["-KILL", &sup.to_string()])
        .status()
        .unwrap();
    // kill returns once the signal is sent: an up in the moment before
    // the supervisor is gone finds it running and has nothing to do.
    wait_for("the supervisor gone", 30, || !alive(sup));
    assert!(alive(second));
    lab.up();
    let third = pid_of(&lab, "a:s");
    assert!(!alive(second) && alive(third));
    assert_eq!(processes_in(&lab), vec![third]);
}

#[test]
fn logs_follow_prints_what_a_service_writes_next() {
    let lab = lab_with(
        "logf",
        "[nodes.a.services.tick]\ncommand = [\"sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done\"]\n",
    );
    lab.up();
    let mut f = lab
        .weft()
        .args(["logs", &lab.name, "a", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = f.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        let t0 = Instant::now();
        // Lines written after `logs -f` started arrive while it runs.
        while !seen.contains("tick 15") && t0.elapsed() < Duration::from_secs(30) {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    let seen = reader.join().unwrap();
    f.kill().unwrap();
    f.wait().unwrap();
    assert!(
        seen.contains("tick 1\n") && seen.contains("tick 15"),
        "{seen}"
    );
}

/// The files the repository's Containerfile puts into the image `weft k8s`
/// runs: the run stage's Debian packages (`apt-get install ...`), its
/// directories (`mkdir -p ...`).
fn containerfile_run_stage() -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(common::root().join("Containerfile")).unwrap();
    let stage = text.rsplit_once("\nFROM ").expect("a run stage").1;
    // Continued lines joined, as the shell reads them.
    let words: Vec<&str> = stage.split_whitespace().filter(|w| *w != "\\").collect();
    let after = |cmd: &[&str]| -> Vec<String> {
        let at = words
            .windows(cmd.len())
            .position(|w| w == cmd)
            .unwrap_or_else(|| panic!("no `{}` in the run stage", cmd.join(" ")));
        words[at + cmd.len()..]
            .iter()
            .take_while(|w| !w.starts_with('&') && !w.contains(['[', ']']) && **w != "COPY")
            .filter(|w| !w.starts_with('-'))
            .map(|w| w.to_string())
            .take_while(|w| w != "RUN" && w != "ENTRYPOINT")
            .collect()
    };
    (after(&["apt-get", "install"]), after(&["mkdir"]))
}

/// Copy `file` into the tree `root` at the same path, with the shared
/// libraries it loads (as the packages' dependencies would bring them).
fn copy_with_libraries(root: &Path, file: &Path, to: &Path) {
    let dst = root.join(to.strip_prefix("/").unwrap());
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(file, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", file.display()));
    let ldd = Command::new("ldd").arg(file).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = match line.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
            let d = root.join(&lib[1..]);
            if !d.exists() {
                std::fs::create_dir_all(d.parent().unwrap()).unwrap();
                std::fs::copy(lib, &d).unwrap();
            }
        }
    }
}

/// An image laid out as the Containerfile's run stage, from this
/// machine's files (nothing is pulled: the tests may not depend on the
/// network): weft, the run stage's packages as Debian installed them here
/// (`dpkg -L`) with their libraries, its directories, and busybox for the
/// test's shell. `with_packages` false leaves the packages out.
fn containerfile_image(tag: &str, with_packages: bool) -> String {
    let (packages, dirs) = containerfile_run_stage();
    let image = format!("localhost/weft-test-{tag}-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("weft-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_with_libraries(
        &dir,
        Path::new(common::weft_bin()),
        Path::new("/usr/local/bin/weft"),
    );
    copy_with_libraries(&dir, Path::new("/bin/busybox"), Path::new("/bin/busybox"));
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    for d in dirs.iter().chain(&["/tmp".to_string(), "/etc".to_string()]) {
        std::fs::create_dir_all(dir.join(d.trim_start_matches('/'))).unwrap();
    }
    for p in packages.iter().filter(|_| with_packages) {
        let list = Command::new("dpkg").args(["-L", p]).output().unwrap();
        assert!(
            list.status.success(),
            "the Containerfile installs {p}, which this machine lacks (apt-get install {p})"
        );
        for f in String::from_utf8_lossy(&list.stdout).lines() {
            let f = Path::new(f);
            if f.is_file() && !f.starts_with("/usr/share") {
                copy_with_libraries(&dir, f, f);
            }
        }
    }
    import_tree(&dir, &image);
    image
}

/// The Containerfile's run stage installs nftables because weft runs
/// `nft` for a NAT node: in an image laid out as that stage, a lab with
/// `[nat.gw]` comes up and its host reaches the outside through the NAT;
/// without the packages, `up` is refused for want of `nft`. (Building the
/// Containerfile itself pulls its base images and Debian's packages from
/// the network, which the tests may not use.)
#[test]
fn the_containerfile_image_runs_a_nat_lab() {
    common::require_root();
    let (packages, _) = containerfile_run_stage();
    assert_eq!(packages, ["nftables"], "the run stage's packages changed");
    let Some((busybox, env)) = busybox_image() else {
        return;
    };
    // weft in a pod needs NET_ADMIN and SYS_ADMIN (docs/scale.md): here, a
    // privileged container. Some sandboxes that run containers refuse it.
    let privileged = Command::new("podman")
        .args(["run", "--rm", "--privileged", "--network", "none", &busybox])
        .args(["sh", "-c", "true"])
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !privileged {
        eprintln!(
            "SKIPPED: podman cannot run a privileged container on this machine; the \
             Containerfile's nftables is not tested here"
        );
        return;
    }
    let lab = r#"name = "rvimg"
[nodes.gw]
kind = "bridge"
addresses = ["192.168.1.1/24"]
[nodes.gw.interfaces.wan]
port = false
addresses = ["198.51.100.1/24"]
[nodes.out.interfaces.eth0]
addresses = ["198.51.100.2/24"]
[nodes.h]
attach = "gw"
[[links]]
endpoints = ["gw:wan", "out:eth0"]
[nat.gw]
uplink = "wan"
"#;
    let dir = std::env::temp_dir().join(format!("weft-rvimg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lab.toml"), lab).unwrap();
    // `out` has no route to the host's network: only the NAT's rewrite
    // brings the answer back.
    let script = "weft up /lab/lab.toml && weft ping rvimg h 198.51.100.2 -c 1 -W 5; s=$?; weft down rvimg; exit $s";
    let run = |image: &str| {
        Command::new("podman")
            .args(["run", "--rm", "--privileged", "--network", "none"])
            .arg("-v")
            .arg(format!("{}:/lab:ro", dir.display()))
            .args(["--entrypoint", "/bin/sh", image, "-c", script])
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    };
    for (tag, with) in [("image", true), ("image-bare", false)] {
        let image = containerfile_image(tag, with);
        let o = run(&image);
        let _ = Command::new("podman")
            .args(["rmi", "-f", &image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if with {
            assert!(o.status.success(), "{said}");
            assert!(said.contains("1 received"), "{said}");
        } else {
            assert!(!o.status.success(), "up without nft: {said}");
            assert!(said.contains("NAT needs the `nft` program"), "{said}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
