use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::testutil::{ip, unique, NsGuard};

#[test]
fn validate_name_rejects_paths() {
    assert!(validate_name("weft-a").is_ok());
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        assert!(validate_name(bad).is_err(), "{bad:?}");
    }
    assert!(validate_name(&"x".repeat(256)).is_err());
}

#[test]
fn create_many_list_exec_delete() {
    let names: Vec<String> = (0..50).map(|_| unique("many")).collect();
    let mut guard = NsGuard(names.clone());
    let results = create_many(&names, 2, |n| {
        // Runs inside the new namespace: its own loopback, nothing else.
        Ok::<_, Error>(format!(
            "{n}:{}",
            fs::read_link(THREAD_NETNS).unwrap().display()
        ))
    })
    .unwrap();
    let created: Vec<Created<String>> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(created.len(), 50);
    let listed = list().unwrap();
    let mut inodes = std::collections::HashSet::new();
    for (c, n) in created.iter().zip(&names) {
        assert_eq!(&c.name, n);
        assert!(listed.contains(n), "{n} not listed");
        assert!(exists(n));
        let id = identity_of(c.ns.as_fd()).unwrap();
        assert_eq!(id, identity(n).unwrap());
        assert!(c.value.contains(&format!("[{}]", id.ino)), "{}", c.value);
        inodes.insert(id.ino);
    }
    assert_eq!(inodes.len(), 50, "every name got its own namespace");
    // The creating thread went home: this (test) thread's namespace differs.
    let here = fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    assert!(!inodes.contains(&here));

    // iproute2 sees and can use them.
    let out = ip(&["netns", "exec", &names[7], "ip", "-o", "link"]);
    assert!(out.contains("lo:"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    drop(created);
    let watch = watch_cleanup().unwrap();
    for n in &names {
        delete(n).unwrap();
        assert!(!exists(n));
    }
    delete(&names[0]).unwrap(); // idempotent
    guard.0.clear();
    watch.wait(Duration::from_secs(30)).unwrap();
    let listed = list().unwrap();
    assert!(names.iter().all(|n| !listed.contains(n)));
}

#[test]
fn create_fails_clearly_when_name_taken_and_cleans_up_on_setup_error() {
    let mut guard = NsGuard::default();
    let name = guard.create("taken");
    let err = create(&name, |_| Ok::<_, Error>(())).unwrap_err();
    assert!(matches!(err, Error::NetnsExists { .. }), "{err}");
    // Still the original, still usable.
    open(&name).unwrap();

    let other = unique("setupfail");
    guard.0.push(other.clone());
    let err = create(&other, |_| Err::<(), _>("no tun here")).unwrap_err();
    assert!(err.to_string().contains(&other), "{err}");
    assert!(err.to_string().contains("no tun here"), "{err}");
    assert!(!exists(&other), "half-made namespace left behind");
}

#[test]
fn open_missing_and_leftover_file() {
    let name = unique("missing");
    assert!(matches!(open(&name), Err(Error::NetnsMissing { .. })));
    ensure_run_dir().unwrap();
    let p = path(&name);
    fs::write(&p, b"").unwrap();
    let err = open(&name).unwrap_err();
    assert!(err.to_string().contains("not a mounted namespace"), "{err}");
    delete(&name).unwrap();
    assert!(!p.exists());
}

#[test]
fn run_in_and_route_socket_in() {
    let mut guard = NsGuard::default();
    let name = guard.create("runin");
    let fd = open(&name).unwrap();
    let ino = run_in(fd.as_fd(), || fs::metadata(THREAD_NETNS).unwrap().ino()).unwrap();
    assert_eq!(ino, identity(&name).unwrap().ino);
    let ino2 = run_in_named(&name, || fs::metadata(THREAD_NETNS).unwrap().ino()).unwrap();
    assert_eq!(ino, ino2);

    // The socket sees the namespace's links: only lo.
    let sock = route_socket_in(fd.as_fd()).unwrap();
    let links = crate::netlink::Netlink::from_fd(sock)
        .unwrap()
        .links()
        .unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
}

#[test]
fn holders_finds_processes_in_namespace() {
    let mut guard = NsGuard::default();
    let name = guard.create("holders");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "30"])
        .spawn()
        .unwrap();
    let id = identity(&name).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = false;
    while Instant::now() < deadline {
        if holders_of(id).contains(&child.id()) {
            found = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "sleep {} not reported as holder", child.id());
    // This test process holds an fd only while `fd` is open.
    let fd = open(&name).unwrap();
    assert!(holders(&name).contains(&std::process::id()));
    drop(fd);
}

/// The same check for the sentinel watch `weft down` uses: armed before the
/// deletions, it must not return while a deleted namespace's veth ends are
/// still in the surviving one.
#[test]
fn cleanup_watch_sees_veth_peers_vanish() {
    let mut guard = NsGuard::default();
    let keep = guard.create("keepw");
    let n = 200;
    let names: Vec<String> = (0..n).map(|_| unique("dyingw")).collect();
    guard.0.extend(names.iter().cloned());
    drop(create_many(&names, 2, |_| Ok::<_, Error>(())).unwrap());
    let mut batch = String::new();
    for (i, ns) in names.iter().enumerate() {
        batch.push_str(&format!(
            "link add v{i} netns {keep} type veth peer name p{i} netns {ns}\n"
        ));
    }
    let file = std::env::temp_dir().join(format!("{}.batch", unique("vethw")));
    fs::write(&file, batch).unwrap();
    ip(&["-batch", file.to_str().unwrap()]);
    let _ = fs::remove_file(&file);
    let count = |ns: &str| ip(&["-n", ns, "-o", "link"]).lines().count();
    assert_eq!(count(&keep), n + 1);
    let watch = watch_cleanup().unwrap();
    for ns in &names {
        delete(ns).unwrap();
    }
    let t = Instant::now();
    watch.wait(Duration::from_secs(60)).unwrap();
    let waited = t.elapsed();
    let left = count(&keep);
    assert_eq!(
        left,
        1,
        "{} veth ends still in {keep} after {waited:?}",
        left - 1
    );
    eprintln!("cleanup watch for {n} namespaces took {waited:?}");
}

#[test]
fn cleanup_watch_with_nothing_pending_is_quick() {
    let t = Instant::now();
    watch_cleanup()
        .unwrap()
        .wait(Duration::from_secs(10))
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// Not a correctness test: reports the speed of the creation path the lab
/// uses. Run with `--ignored --nocapture` (in release mode for real numbers).
#[test]
#[ignore]
fn bench_create_1000() {
    let names: Vec<String> = (0..1000).map(|_| unique("bench")).collect();
    let _guard = NsGuard(names.clone());
    let threads = std::env::var("WEFT_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let t = Instant::now();
    let created = create_many(&names, threads, |_| Ok::<_, Error>(())).unwrap();
    let el = t.elapsed();
    assert!(created.iter().all(|r| r.is_ok()));
    eprintln!("created 1000 namespaces on {threads} threads in {el:?}");
    drop(created);
    let watch = watch_cleanup().unwrap();
    let t = Instant::now();
    for n in &names {
        delete(n).unwrap();
    }
    eprintln!("deleted 1000 names in {:?}", t.elapsed());
    let t = Instant::now();
    watch.wait(Duration::from_secs(120)).unwrap();
    eprintln!("kernel cleanup took {:?}", t.elapsed());
}

#[test]
fn create_many_keeps_order_and_reports_per_name() {
    let a = unique("order");
    let b = unique("order");
    let names = vec![a.clone(), "bad/name".to_string(), b.clone(), a.clone()];
    let _guard = NsGuard(vec![a.clone(), b.clone()]);
    let res = create_many(&names, 2, |n| Ok::<_, Error>(n.len())).unwrap();
    assert_eq!(res.len(), 4);
    assert_eq!(res[0].as_ref().unwrap().name, a);
    assert!(matches!(res[1], Err(Error::NetnsName { .. })));
    assert_eq!(res[2].as_ref().unwrap().value, b.len());
    assert!(matches!(res[3], Err(Error::NetnsExists { .. })));
    assert!(exists(&a) && exists(&b));
}

#[test]
fn panicking_setup_leaves_nothing_behind() {
    let name = unique("panic");
    let _guard = NsGuard(vec![name.clone()]);
    let n2 = name.clone();
    let caught = std::panic::catch_unwind(move || {
        let _ = create(&n2, |_| -> std::result::Result<(), Error> {
            panic!("setup blew up")
        });
    });
    assert!(caught.is_err());
    assert!(!exists(&name));
}
