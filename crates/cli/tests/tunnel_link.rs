//! `kind = "tunnel"` links in a topology file: `weft up` starts a
//! `weft tunnel` per end, `weft status` shows them, a later `weft up`
//! restarts one that died, and `weft down` stops them by PID.

mod common;

use std::time::{Duration, Instant};

use common::Lab;

fn tunnels(lab: &Lab) -> Vec<serde_json::Value> {
    lab.status_json()[0]["tunnels"].as_array().unwrap().clone()
}

fn wait_up(lab: &Lab) -> Vec<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        let t = tunnels(lab);
        if t.len() == 2
            && t.iter()
                .all(|e| e["running"] == true && e["state"]["up"] == true)
        {
            return t;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "tunnels never came up: {t:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit_once(')').map(|x| x.1.trim_start().as_bytes()[0]),
            Some(b'Z')
        )
    })
}

#[test]
fn tunnel_links_are_started_shown_restarted_and_stopped() {
    let lab = Lab::example("tlink", "tunnel.toml");
    lab.up();
    let t = wait_up(&lab);
    assert!(
        lab.ping_within("m1", "10.9.0.2", Duration::from_secs(30))
            .is_some(),
        "no ping across the tunnel link"
    );
    assert_eq!(t[0]["node"], "m1");
    assert_eq!(t[0]["peer"], "m2:wt0");
    assert_eq!(t[0]["state"]["mode"], "tap");
    assert_eq!(t[1]["state"]["endpoint"], "10.77.0.1:5000");
    let text = lab.ok(&["status", &lab.name]);
    assert!(text.contains("tunnel m1:wt0 <-> m2:wt0"), "{text}");
    assert!(text.contains("drops none"), "{text}");

    // A tunnel process dies: the next `weft up` starts it again.
    let pid = t[1]["pid"].as_u64().unwrap();
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let t0 = Instant::now();
    while alive(pid) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "pid {pid} ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tunnels(&lab)[1]["running"], false);
    // The plan starts it again: the built lab is the lab as it runs.
    let out = lab.up();
    assert!(out.contains("+ tunnel process on m2:wt0"), "{out}");
    assert!(lab.up().contains("nothing to change"));
    let t = wait_up(&lab);
    assert_ne!(t[1]["pid"].as_u64().unwrap(), pid);
    assert!(
        lab.ping_within("m1", "10.9.0.2", Duration::from_secs(20))
            .is_some(),
        "no ping after the restart"
    );

    // `weft down` stops both processes before removing the namespaces.
    let pids: Vec<u64> = t.iter().map(|e| e["pid"].as_u64().unwrap()).collect();
    let out = lab.ok(&["down", &lab.name]);
    assert!(out.contains("is down"), "{out}");
    for p in pids {
        assert!(!alive(p), "tunnel pid {p} survived weft down");
    }
}

#[test]
fn the_first_ping_after_up_crosses_a_tunnel_link() {
    // `weft up` returns once the handshake is done: no ping is lost to it.
    for round in 0..3 {
        let lab = Lab::example("tfirst", "tunnel.toml");
        let out = lab.up();
        assert!(lab.ping("m1", "10.9.0.2", None), "round {round}: {out}");
        let t = tunnels(&lab);
        assert!(t.iter().all(|e| e["state"]["up"] == true), "{t:#?}");
    }
}
