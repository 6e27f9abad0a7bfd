//! The processes behind `kind = "tunnel"` links: `weft up` makes a key pair
//! per end (in the lab's state directory, mode 0600), starts one
//! `weft tunnel` per end inside its node, records its PID, and on every
//! later `weft up` restarts any that died or whose settings changed;
//! `weft down` stops them by PID (after checking the PID is still theirs)
//! before removing the namespaces. Each writes a status file that
//! `weft status` shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_topo::impair::{Direction, Impairment};
use weft_topo::{Endpoint, Lab};

use crate::{state, Error};

fn dir(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("tunnels")
}

pub(crate) fn stem(ep: &Endpoint) -> String {
    format!("{}-{}", ep.node, ep.iface)
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Running {
    pid: u32,
    args: Vec<String>,
}

/// One end of a tunnel link as `weft status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelStatus {
    pub node: String,
    pub iface: String,
    /// The other end, `NODE:IFACE`.
    pub peer: String,
    pub pid: Option<u32>,
    pub running: bool,
    /// What the process last wrote (docs/tunnel.md: the status file):
    /// endpoint, up, last_handshake_unix, bytes, drops by reason, ...
    pub state: serde_json::Value,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// The program to start: a [`crate::Context`]'s `weft` binary, or
/// `WEFT_EXE`, or the running `weft`.
fn exe() -> Result<String, Error> {
    crate::context::helper_exe().map(|p| p.to_string_lossy().into_owned())
}

/// The key pair of one end, made on first use.
fn key(d: &Path, ep: &Endpoint) -> Result<(PathBuf, weft_tunnel::PublicKey), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = d.join(format!("{}.key", stem(ep)));
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(k) = weft_tunnel::PrivateKey::from_base64(&text) {
            return Ok((path, k.public_key()));
        }
    }
    let k = weft_tunnel::PrivateKey::generate();
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(format!("writing the tunnel key {}", path.display())))?;
    f.write_all(format!("{}\n", k.to_base64()).as_bytes())
        .map_err(io(format!("writing the tunnel key {}", path.display())))?;
    Ok((path, k.public_key()))
}

pub(crate) fn sock(a: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(a, port).to_string()
}

/// The seed's second stream, for the `in` direction (as the datapath's
/// wires and ports draw it).
const IN_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

/// What end `i` of `t` impairs with `imp` (the link's settings): the
/// inner packets it receives, so the second end takes the `out` direction
/// (from the first end to the second) and the first end `in`. The seed
/// is the given one or one derived from the lab and link names, `in` on
/// its second stream, so each way replays on its own.
pub(crate) fn receive_impair(
    lab: &str,
    t: &weft_topo::TunnelLink,
    imp: &Impairment,
    i: usize,
) -> Option<Impairment> {
    let seed = imp.seed.unwrap_or_else(|| {
        weft_datapath::config::stable_hash(&[lab, "tunnel", &t.ends[0].endpoint.to_string()])
    });
    let (way, seed) = if i == 1 {
        (imp.direction.has_out().then(|| imp.clone()), seed)
    } else {
        let way = match &imp.inbound {
            Some(b) => Some((**b).clone()),
            None => imp.direction.has_in().then(|| imp.clone()),
        };
        (way, seed ^ IN_STREAM)
    };
    way.map(|mut w| {
        w.inbound = None;
        w.direction = Direction::Both;
        w.seed = Some(seed);
        w
    })
}

/// The control socket of an end's process, beside its status file.
fn control_path(status: &Path) -> PathBuf {
    status.with_extension("ctl")
}

/// `weft tunnel`'s arguments for end `me` of `t`, after `prefix` (the
/// program and how it reaches the end's namespace).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tunnel_args(
    lab: &str,
    mut a: Vec<String>,
    t: &weft_topo::TunnelLink,
    (me, peer): (&weft_topo::TunnelEnd, &weft_topo::TunnelEnd),
    key: String,
    peer_key: String,
    mtu: u32,
    status: &Path,
) -> Vec<String> {
    a.extend([
        "--dev".into(),
        me.endpoint.iface.clone(),
        "--mode".into(),
        if t.tap { "tap" } else { "tun" }.into(),
        "--key".into(),
        key,
        "--peer-key".into(),
        peer_key,
        "--listen".into(),
        sock(me.underlay, t.port),
        "--transport".into(),
        if t.tcp { "tcp" } else { "udp" }.into(),
        "--mtu".into(),
        mtu.to_string(),
        "--keepalive".into(),
        "10".into(),
        "--status".into(),
        status.display().to_string(),
        "--control".into(),
        control_path(status).display().to_string(),
    ]);
    if let Some(c) = &t.cipher {
        a.extend(["--cipher".into(), c.clone()]);
    }
    let i = usize::from(me.endpoint != t.ends[0].endpoint);
    if let Some(imp) = t.impair.as_ref().and_then(|x| receive_impair(lab, t, x, i)) {
        a.extend([
            "--impair".into(),
            serde_json::to_string(&imp).expect("serializes"),
        ]);
    }
    // UDP: both ends know each other. TCP: the end listed first connects,
    // the other listens.
    if !t.tcp || me.endpoint == t.ends[0].endpoint {
        a.extend(["--peer".into(), sock(peer.underlay, t.port)]);
    }
    a
}

/// The command lines the lab wants, by file stem.
fn wanted(lab: &Lab, d: &Path, exe: &str) -> Result<Vec<(String, Vec<String>)>, Error> {
    let mut out = vec![];
    for t in &lab.tunnels {
        if t.across {
            out.extend(crate::machines::tunnel_ends(lab, t, d, exe)?);
            continue;
        }
        let keys = [key(d, &t.ends[0].endpoint)?, key(d, &t.ends[1].endpoint)?];
        for i in 0..2 {
            let (me, peer) = (&t.ends[i], &t.ends[1 - i]);
            let mtu = lab
                .node(&me.endpoint.node)
                .and_then(|n| n.interfaces.get(&me.endpoint.iface))
                .and_then(|i| i.mtu)
                .unwrap_or(1400);
            let st = stem(&me.endpoint);
            let prefix = vec![
                exe.into(),
                "exec".into(),
                lab.name.clone(),
                me.endpoint.node.clone(),
                "--".into(),
                exe.into(),
                "tunnel".into(),
            ];
            let a = tunnel_args(
                &lab.name,
                prefix,
                t,
                (me, peer),
                keys[i].0.display().to_string(),
                keys[1 - i].1.to_base64(),
                mtu,
                &d.join(format!("{st}.json")),
            );
            out.push((st, a));
        }
    }
    Ok(out)
}

fn read_running(path: &Path) -> Option<Running> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn marker(args: &[String]) -> String {
    // The status file is unique to one end of one lab (a key file is not:
    // ends between machines use their machine's key).
    args.iter()
        .skip_while(|a| *a != "--status")
        .nth(1)
        .cloned()
        .unwrap_or_default()
}

/// Start what is missing, restart what died or changed, stop what the lab
/// no longer has. Returns a line per change.
pub fn reconcile(lab: &Lab) -> Result<Vec<String>, Error> {
    let d = dir(&lab.name);
    if lab.tunnels.is_empty() && !d.exists() {
        return Ok(vec![]);
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(io(format!("creating {}", d.display())))?;
    }
    let exe = exe()?;
    let want = wanted(lab, &d, &exe)?;
    let mut notes = vec![];
    // Stop ends the lab no longer has.
    for e in std::fs::read_dir(&d)
        .map_err(io(format!("reading {}", d.display())))?
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pid") {
            let st = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !want.iter().any(|(s, _)| *s == st) {
                if let Some(r) = read_running(&p) {
                    weft_sys::process::stop_marked(r.pid, &marker(&r.args), Duration::from_secs(2));
                }
                for x in ["pid", "json", "key"] {
                    let _ = std::fs::remove_file(d.join(format!("{st}.{x}")));
                }
                notes.push(format!("- tunnel {st} stopped"));
            }
        }
    }
    for (st, args) in want {
        let pidf = d.join(format!("{st}.pid"));
        let m = marker(&args);
        if let Some(r) = read_running(&pidf) {
            let alive =
                weft_sys::process::cmdline(r.pid).is_some_and(|c| c.iter().any(|a| a.contains(&m)));
            if alive && r.args == args {
                continue;
            }
            if alive {
                weft_sys::process::stop_marked(r.pid, &m, Duration::from_secs(2));
            }
        }
        let _ = std::fs::remove_file(d.join(format!("{st}.json")));
        let env = crate::context::helper_env();
        let env: Vec<(&str, &std::ffi::OsStr)> =
            env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let pid = weft_sys::process::spawn_argv_env(&args, &env, &d.join(format!("{st}.log")))?;
        let r = Running { pid, args };
        std::fs::write(&pidf, serde_json::to_vec(&r).expect("serializes"))
            .map_err(io(format!("writing {}", pidf.display())))?;
        notes.push(format!("+ tunnel {st} (pid {pid})"));
    }
    Ok(notes)
}

/// How long `weft up` waits for tunnel handshakes: one takes
/// milliseconds, and a first initiation lost to a peer still starting is
/// retried after 5 s.
pub const SESSION_WAIT: Duration = Duration::from_secs(8);

/// Wait until every tunnel link with both ends in this lab has a session
/// (its handshake done, so the first packet after `weft up` passes), at
/// most `within`. Returns a warning per end still without one, with what
/// its process last said (a wrong key, no answer). Ends towards another
/// machine are not waited for: that machine may not be built yet.
pub fn wait_sessions(lab: &Lab, within: Duration) -> Vec<String> {
    let d = dir(&lab.name);
    let ends: Vec<(&Endpoint, &Endpoint)> = lab
        .tunnels
        .iter()
        .filter(|t| !t.across)
        .flat_map(|t| {
            [
                (&t.ends[0].endpoint, &t.ends[1].endpoint),
                (&t.ends[1].endpoint, &t.ends[0].endpoint),
            ]
        })
        .filter(|(me, _)| lab.nodes.contains_key(&me.node))
        .collect();
    let state = |me: &Endpoint| -> serde_json::Value {
        std::fs::read(d.join(format!("{}.json", stem(me))))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let t0 = std::time::Instant::now();
    let mut waiting = ends.clone();
    while !waiting.is_empty() && t0.elapsed() < within {
        waiting.retain(|(me, _)| state(me)["up"] != true);
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    waiting
        .into_iter()
        .map(|(me, peer)| {
            let why = state(me)["warning"]
                .as_str()
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            format!(
                "tunnel {me} <-> {peer} has no session after {:.0} s, so it carries no traffic yet{why}; `weft status {}` shows when it comes up, its log is {}",
                within.as_secs_f64(),
                lab.name,
                d.join(format!("{}.log", stem(me))).display()
            )
        })
        .collect()
}

/// Stops the tunnel process of one end (a removed tunnel link, or one
/// whose namespace or device goes), before what it runs on is removed.
pub fn stop_end(lab: &str, ep: &Endpoint) {
    let d = dir(lab);
    let st = stem(ep);
    if let Some(r) = read_running(&d.join(format!("{st}.pid"))) {
        weft_sys::process::stop_marked(r.pid, &marker(&r.args), Duration::from_secs(2));
    }
    for x in ["pid", "json"] {
        let _ = std::fs::remove_file(d.join(format!("{st}.{x}")));
    }
}

/// Whether the recorded tunnel process of an end still runs.
pub fn end_running(lab: &str, ep: &Endpoint) -> bool {
    read_running(&dir(lab).join(format!("{}.pid", stem(ep)))).is_some_and(|r| {
        let m = marker(&r.args);
        weft_sys::process::cmdline(r.pid).is_some_and(|c| c.iter().any(|a| a.contains(&m)))
    })
}

/// Stop every tunnel process of the lab (by recorded PID). Never fails:
/// `weft down` goes on to remove the namespaces regardless.
pub fn stop_all(name: &str) {
    let d = dir(name);
    let Ok(rd) = std::fs::read_dir(&d) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pid") {
            if let Some(r) = read_running(&p) {
                weft_sys::process::stop_marked(r.pid, &marker(&r.args), Duration::from_secs(2));
            }
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Each tunnel end of a lab, with what its process last reported.
pub fn status(lab: &Lab) -> Vec<TunnelStatus> {
    let d = dir(&lab.name);
    let mut out = vec![];
    for t in &lab.tunnels {
        for i in 0..2 {
            let (me, peer): (&Endpoint, &Endpoint) = (&t.ends[i].endpoint, &t.ends[1 - i].endpoint);
            // A machine's share runs only its own ends.
            if !lab.nodes.contains_key(&me.node) {
                continue;
            }
            let st = stem(me);
            let r = read_running(&d.join(format!("{st}.pid")));
            let running = r.as_ref().is_some_and(|r| {
                weft_sys::process::cmdline(r.pid)
                    .is_some_and(|c| c.iter().any(|a| a.contains(&marker(&r.args))))
            });
            let state = std::fs::read(d.join(format!("{st}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::Value::Null);
            out.push(TunnelStatus {
                node: me.node.clone(),
                iface: me.iface.clone(),
                peer: peer.to_string(),
                pid: r.map(|r| r.pid),
                running,
                state,
            });
        }
    }
    out
}

/// Sets the impairment of one end's process through its control socket
/// (`weft impair` on a tunnel link): `settings` are what it receives
/// ([`receive_impair`]), `None` clears. Returns once they are in force.
pub(crate) fn set_end_impair(
    lab: &str,
    ep: &Endpoint,
    settings: Option<&Impairment>,
) -> Result<(), Error> {
    use std::io::{BufRead, BufReader, Write};
    let path = control_path(&dir(lab).join(format!("{}.json", stem(ep))));
    let what = format!("retuning the tunnel process of {ep} ({})", path.display());
    let s = std::os::unix::net::UnixStream::connect(&path).map_err(io(what.clone()))?;
    // The process answers within its 0.1 s timer pause; a loaded machine
    // may take longer.
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io(what.clone()))?;
    let req = serde_json::json!({ "impair": settings });
    (&s).write_all(format!("{req}\n").as_bytes())
        .map_err(io(what.clone()))?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(io(what.clone()))?;
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    if reply["ok"] == true {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{what}: {}",
        reply["error"].as_str().unwrap_or("no answer")
    )))
}

#[cfg(test)]
mod tests {
    /// The lab file's `cipher` spellings are the ones `weft tunnel --cipher` takes.
    #[test]
    fn the_files_cipher_names_are_the_tunnels() {
        assert_eq!(weft_topo::TUNNEL_CIPHERS, weft_tunnel::CipherChoice::NAMES);
        for n in weft_topo::TUNNEL_CIPHERS {
            assert!(n.parse::<weft_tunnel::CipherChoice>().is_ok(), "{n}");
        }
    }
}
