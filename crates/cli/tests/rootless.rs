//! weft run by a user who is not root (issue 13): the lab is built in a
//! user namespace weft makes for that user, held by a keeper process; the
//! machine's namespaces, links, /run/netns and /etc/netns never change;
//! the keeper ends with the last lab. Each test runs weft as a uid of its
//! own that has no account (setpriv), with a HOME and XDG_RUNTIME_DIR
//! made for it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;

/// A user without an account, and its directories.
struct User {
    uid: u32,
    dir: PathBuf,
}

impl User {
    fn new(n: u32) -> User {
        common::require_root();
        let uid = 60000 + (std::process::id() % 2000) * 8 + n;
        let dir = std::env::temp_dir().join(format!("weft-rl-{uid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        for d in [&dir, &dir.join("run")] {
            std::os::unix::fs::chown(d, Some(uid), Some(uid)).unwrap();
        }
        User { uid, dir }
    }

    fn command(&self, prog: &str) -> Command {
        let id = self.uid.to_string();
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={id}"),
            &format!("--regid={id}"),
            "--clear-groups",
            "--",
            prog,
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &self.dir)
        .env("XDG_RUNTIME_DIR", self.dir.join("run"))
        .current_dir(&self.dir);
        c
    }

    fn weft(&self, args: &[&str]) -> Output {
        self.command(common::weft_bin())
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.weft(args);
        assert!(
            o.status.success(),
            "weft {args:?} as uid {} failed: {}{}",
            self.uid,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// A lab file the user can read.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    fn keeper_pid(&self) -> Option<u32> {
        let t = std::fs::read_to_string(self.dir.join("run/weft/keeper.pid")).ok()?;
        t.split_whitespace().next()?.parse().ok()
    }

    /// The keeper ends once its last namespace is gone (it looks every
    /// second); nothing of the user's runs afterwards.
    fn wait_keeper_gone(&self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            let procs = users_processes(self.uid);
            if procs.is_empty() && self.keeper_pid().is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "uid {}'s processes are still running: {:?}",
            self.uid,
            users_processes(self.uid)
        );
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // The keeper and anything else of this uid, if a test failed.
        for p in users_processes(self.uid) {
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn users_processes(uid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let real = s
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok());
        let zombie = s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if real == Some(uid) && !zombie {
            v.push(pid);
        }
    }
    v
}

/// Names in a directory of the machine's (empty when it does not exist).
fn names_in(dir: &str, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn host_links() -> Vec<String> {
    let o = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| Some(l.split(':').nth(1)?.trim().split('@').next()?.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_user_builds_uses_and_removes_a_lab_and_the_machine_sees_nothing() {
    let u = User::new(0);
    let name = format!("rl-{}", u.uid);
    let prefix = weft_topo::netns_name(&name, "");
    let text = std::fs::read_to_string(common::root().join("examples/bridge.toml")).unwrap();
    let text = text.replacen("name = \"br\"", &format!("name = \"{name}\""), 1);
    let file = u.file("bridge", &text);
    let links = host_links();

    let out = u.ok(&["up", file.to_str().unwrap()]);
    assert!(out.contains(&format!("lab {name} is up")), "{out}");
    let keeper = u.keeper_pid().expect("a keeper runs");
    assert!(users_processes(u.uid).contains(&keeper));
    // Nothing of it in the machine's namespaces or directories.
    assert!(names_in("/run/netns", &prefix).is_empty());
    assert!(names_in("/etc/netns", &prefix).is_empty());
    assert!(!Path::new("/run/weft/labs").join(&name).exists());
    assert_eq!(host_links(), links);

    // Everything else as under root.
    u.ok(&["ping", &name, "ns1", "ns2", "-c", "1"]);
    u.ok(&["ping", &name, "ns1", "192.168.50.254", "-c", "1"]);
    let status = u.ok(&["status"]);
    assert!(status.contains(&format!("lab {name}")), "{status}");
    let names = u.ok(&["exec", &name, "ns1", "--", "cat", "/etc/hosts"]);
    assert!(names.contains("ns2"), "{names}");
    // The user's own view of its namespaces.
    let list = u.ok(&["enter", "--", "ip", "netns", "list"]);
    assert!(list.contains(&format!("{prefix}ns1")), "{list}");

    let out = u.ok(&["down", &name]);
    assert!(out.contains("removed 3 namespace(s)"), "{out}");
    u.wait_keeper_gone();
    assert_eq!(host_links(), links);
}

/// A node's private files without root: its mount namespace is bound to
/// its file by the keeper (the kernel refuses that bind to a process that
/// joined the user namespace), and a service and `weft exec` see the binds.
#[test]
fn a_user_gives_a_node_private_files() {
    let u = User::new(4);
    let name = format!("rl-{}", u.uid);
    let data = u.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("motd"), "from the user\n").unwrap();
    for p in [&data, &data.join("motd")] {
        std::os::unix::fs::chown(p, Some(u.uid), Some(u.uid)).unwrap();
    }
    let file = u.file(
        "binds",
        &format!(
            "name = \"{name}\"\n[nodes.a]\nbinds = [\"./data:/mnt\", \"tmpfs:/media\"]\n\
             [nodes.a.services.w]\ncommand = [\"sh\", \"-c\", \"cp /mnt/motd /media/copy && exec sleep 600\"]\n\
             ready = {{ command = [\"test\", \"-f\", \"/media/copy\"] }}\n"
        ),
    );
    let out = u.ok(&["up", file.to_str().unwrap()]);
    assert!(out.contains(&format!("lab {name} is up")), "{out}");
    let seen = u.ok(&["exec", &name, "a", "--", "cat", "/mnt/motd", "/media/copy"]);
    assert_eq!(seen, "from the user\nfrom the user\n");
    // The tmpfs is the node's own: not in the user's view.
    assert!(!Path::new("/media/copy").exists());
    u.ok(&["down", &name]);
    u.wait_keeper_gone();
}

/// Debian's PATH for a user who is not root has no sbin directory, where
/// `nft` is: weft looks there too (it said nft was not installed).
#[test]
fn a_user_whose_path_has_no_sbin_gets_nat() {
    let u = User::new(5);
    let name = format!("rl-{}", u.uid);
    let file = u.file(
        "nat",
        &format!(
            "name = \"{name}\"\n[nodes.gw]\nkind = \"bridge\"\naddresses = [\"10.7.0.1/24\"]\n\
             [nodes.gw.interfaces.wan]\nport = false\naddresses = [\"203.0.113.1/24\"]\n\
             [nodes.c]\nattach = \"gw\"\n\
             [nodes.srv.interfaces.eth0]\naddresses = [\"203.0.113.10/24\"]\n\
             [[links]]\nendpoints = [\"gw:wan\", \"srv:eth0\"]\n\
             [nat.gw]\nuplink = \"wan\"\n"
        ),
    );
    let user_path = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";
    let run = |args: &[&str]| {
        let o = u
            .command(common::weft_bin())
            .env("PATH", user_path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "weft {args:?} with PATH={user_path} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["up", "-q", file.to_str().unwrap()]);
    // srv has no route to 10.7.0.0/24: only the masquerade makes it answer.
    run(&["ping", &name, "c", "srv", "-c", "5", "-W", "2"]);
    run(&["down", &name]);
    u.wait_keeper_gone();
}

#[test]
fn what_needs_the_machines_namespace_is_refused_before_anything_is_built() {
    let u = User::new(1);
    let name = format!("rl-{}", u.uid);
    let file = u.file(
        "macvlan",
        &format!(
            "name = \"{name}\"\nallow_host_interfaces = true\n\
             [nodes.edge.interfaces.wan]\nkind = \"macvlan\"\nhost_interface = \"lo\"\n"
        ),
    );
    let o = u.weft(&["up", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("edge:wan is a macvlan on the machine's interface lo") && err.contains("root"),
        "{err}"
    );
    // A lab the user did not build: root's may have that name.
    let o = u.weft(&["status", "rl-nosuch"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("only the labs you built"), "{err}");
    // A service as another user: only the user exists inside.
    let file = u.file(
        "svcuser",
        &format!(
            "name = \"{name}\"\n[nodes.web.services.http]\ncommand = [\"sleep\", \"60\"]\n\
             user = \"nobody\"\n"
        ),
    );
    let o = u.weft(&["up", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("node web, service http runs as user nobody")
            && err.contains("leave `user` out"),
        "{err}"
    );
    let list = u.ok(&["enter", "--", "ls", "/run/netns"]);
    assert!(list.trim().is_empty(), "{list}");
    u.wait_keeper_gone();
}

#[test]
fn a_killed_up_leaves_nothing_after_the_next_command() {
    let u = User::new(2);
    let name = format!("rl-{}", u.uid);
    let file = u.file(
        "many",
        &format!(
            "name = \"{name}\"\n[nodes.br0]\nkind = \"bridge\"\nstp = false\n\
             addresses = [\"10.9.0.254/24\"]\n[nodes.h]\ncount = 60\nattach = \"br0\"\n"
        ),
    );
    let mut up = u
        .command(common::weft_bin())
        .args(["up", "-q", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some of its namespaces exist (setpriv execs weft: the
    // child is weft itself).
    let t0 = Instant::now();
    loop {
        let n = u.ok(&["enter", "--", "ls", "/run/netns"]).lines().count();
        if n >= 5 || t0.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-KILL", &up.id().to_string()])
        .status()
        .unwrap();
    let _ = up.wait();
    let out = u.ok(&["down", &name]);
    assert!(out.contains("removed"), "{out}");
    let list = u.ok(&["enter", "--", "ls", "/run/netns"]);
    assert!(list.trim().is_empty(), "{list}");
    u.wait_keeper_gone();
    assert!(names_in("/run/netns", &weft_topo::netns_name(&name, "")).is_empty());
}

#[test]
fn a_killed_keeper_leaves_nothing_after_the_next_command() {
    let u = User::new(3);
    let name = format!("rl-{}", u.uid);
    let text = std::fs::read_to_string(common::root().join("examples/switch.toml")).unwrap();
    let text = text.replacen("name = \"sw\"", &format!("name = \"{name}\""), 1);
    let file = u.file("switch", &text);
    u.ok(&["up", "-q", file.to_str().unwrap()]);
    let keeper = u.keeper_pid().expect("a keeper runs");
    // The switch's datapath runs inside, besides the keeper.
    let inside: Vec<u32> = users_processes(u.uid)
        .into_iter()
        .filter(|&p| p != keeper)
        .collect();
    assert!(!inside.is_empty(), "the datapath runs");
    Command::new("kill")
        .args(["-KILL", &keeper.to_string()])
        .status()
        .unwrap();
    // kill returns once the signal is sent: a weft in the moment before
    // the keeper is gone (or a zombie) would find it alive and join it.
    let t0 = Instant::now();
    while users_processes(u.uid).contains(&keeper) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "keeper {keeper} survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = u.weft(&["status"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("left in the user namespace of a killed keeper"),
        "{err}"
    );
    // The datapath went, and the new keeper ends with nothing to hold.
    u.wait_keeper_gone();
}
