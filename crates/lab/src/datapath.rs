//! The lab's switch datapath process (`weft datapath LAB`): started by
//! `weft up` when the lab has `kind = "switch"` nodes, recorded (pid and
//! start time) in `/run/weft/labs/LAB/datapath.json` before `up` returns,
//! found again by a later `up`, and stopped by `weft down` by that pid.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weft_datapath::control::{self, Reply, Request, StatusReply};
use weft_sys::process::{self, ProcId};
use weft_topo::{Lab, NodeKind, SwitchStp};

use crate::{state, Error, Event};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    pid: u32,
    start_time: u64,
    /// The switch and wire nodes it serves now: `up` sends it what
    /// changed since.
    switches: serde_json::Value,
}

pub fn control_path(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("datapath.sock")
}

fn record_path(lab: &str) -> PathBuf {
    state::lab_dir(lab).join("datapath.json")
}

/// Switches, or wires (impaired kernel links, weft_topo::wire): the
/// datapath serves both.
pub fn has_switches(lab: &Lab) -> bool {
    lab.nodes
        .values()
        .any(|n| n.kind == NodeKind::Switch || n.wire.is_some())
}

fn switches_of(lab: &Lab) -> serde_json::Value {
    let v: Vec<_> = lab
        .nodes
        .values()
        .filter(|n| n.kind == NodeKind::Switch || n.wire.is_some())
        .collect();
    serde_json::to_value(v).expect("nodes serialize")
}

fn load(lab: &str) -> Option<Record> {
    let b = std::fs::read(record_path(lab)).ok()?;
    serde_json::from_slice(&b).ok()
}

fn running(lab: &str) -> Option<Record> {
    load(lab).filter(|r| {
        process::is_running(ProcId {
            pid: r.pid,
            start_time: r.start_time,
        })
    })
}

/// Pid of the lab's datapath if it runs.
pub fn pid(lab: &str) -> Option<u32> {
    running(lab).map(|r| r.pid)
}

/// Stops the lab's datapath, if one runs (checked by pid and start time).
pub fn stop(lab: &str) -> Result<bool, Error> {
    let Some(r) = load(lab) else { return Ok(false) };
    let p = ProcId {
        pid: r.pid,
        start_time: r.start_time,
    };
    let was = process::stop(p, Duration::from_secs(2)).map_err(|e| {
        Error::io(
            format!("stopping the datapath of lab {lab} (pid {})", r.pid),
            e,
        )
    })?;
    let _ = std::fs::remove_file(record_path(lab));
    let _ = std::fs::remove_file(control_path(lab));
    Ok(was)
}

/// Interfaces of switch or wire nodes removed and made again, as
/// `(node, iface)`; `(node, "")`: the node's namespace (all of them).
pub type Remade = std::collections::BTreeSet<(String, String)>;

/// Makes the datapath match `lab`: starts it when the lab has switches and
/// none runs (or it died); stops it when the lab has no switch left. Any
/// other change goes to the running datapath, which keeps its pid, its
/// learned MACs and spanning tree: switches added or removed, settings
/// changed (a switch whose STP protocol changed starts over alone), ports
/// added, removed or (in `remade`) made again, wires added, removed or
/// changed. Returns true if a datapath was (re)started.
pub fn ensure(lab: &Lab, exe: Option<&Path>, remade: &Remade) -> Result<bool, Error> {
    let name = lab.name.as_str();
    if !has_switches(lab) {
        stop(name)?;
        return Ok(false);
    }
    let want = switches_of(lab);
    if let Some(r) = running(name) {
        if remade.is_empty() && r.switches == want {
            return Ok(false);
        }
        match reconfigure(lab, &r.switches, remade) {
            Ok(()) => {
                save_record(
                    name,
                    &Record {
                        switches: want,
                        ..r
                    },
                )?;
                return Ok(false);
            }
            // Only a datapath that cannot take the edit (one of an older
            // weft, or one that failed it half-way) comes here.
            Err(e) => tracing::warn!("restarting the datapath of lab {name}: {e}"),
        }
    }
    stop(name)?;
    let exe = match exe {
        Some(e) => e.to_path_buf(),
        None => crate::context::helper_exe()?,
    };
    let dir = state::lab_dir(name);
    let env = crate::context::helper_env();
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let p = process::spawn_detached_env(&exe, &["datapath", name], &env, &dir.join("datapath.log"))
        .map_err(|e| {
            Error::io(
                format!(
                    "starting the switch datapath ({} datapath {name})",
                    exe.display()
                ),
                e,
            )
        })?;
    save_record(
        name,
        &Record {
            pid: p.pid,
            start_time: p.start_time,
            switches: want,
        },
    )?;
    Ok(true)
}

fn save_record(name: &str, rec: &Record) -> Result<(), Error> {
    let tmp = state::lab_dir(name).join("datapath.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(rec).expect("record serializes"))
        .and_then(|_| std::fs::rename(&tmp, record_path(name)))
        .map_err(|e| Error::io(format!("recording the datapath of lab {name}"), e))
}

/// The switch nodes as recorded, with every port's impairment left out.
fn without_impair(switches: &serde_json::Value) -> serde_json::Value {
    let mut v = switches.clone();
    for n in v.as_array_mut().into_iter().flatten() {
        let ports = n
            .pointer_mut("/switch/ports")
            .and_then(|p| p.as_object_mut());
        for p in ports.into_iter().flat_map(|p| p.values_mut()) {
            if let Some(o) = p.as_object_mut() {
                o.remove("impair");
            }
        }
    }
    v
}

/// Sends the running datapath what changed in `lab` since the recorded
/// `before` ([`edits`]), then the impairments. An error means the
/// datapath could not take a change in place.
fn reconfigure(lab: &Lab, before: &serde_json::Value, remade: &Remade) -> Result<(), Error> {
    for req in edits(lab, before, remade) {
        expect_done(&lab.name, edit(&lab.name, &req)?)?;
    }
    retune(lab, before)
}

/// The live edits that take a datapath serving `before` (as recorded) to
/// `lab`, in order: switches removed (or whose namespace was made again),
/// switches added (or made again) and changed, ports whose interface was
/// made again (`remade`) opened again, the wires. Port impairments are
/// [`retune`]'s.
fn edits(lab: &Lab, before: &serde_json::Value, remade: &Remade) -> Vec<Request> {
    let old: Vec<weft_topo::Node> =
        serde_json::from_value(without_impair(before)).unwrap_or_default();
    let new: Vec<weft_topo::Node> =
        serde_json::from_value(without_impair(&switches_of(lab))).unwrap_or_default();
    let mut out = Vec::new();
    let is_switch = |n: &weft_topo::Node| n.kind == NodeKind::Switch;
    let find = |v: &[weft_topo::Node], name: &str| v.iter().find(|n| n.name == name).cloned();
    let whole = |n: &str| remade.contains(&(n.to_string(), String::new()));
    for o in old.iter().filter(|o| is_switch(o)) {
        let kept = find(&new, &o.name).filter(|n| is_switch(n));
        if kept.is_none() || whole(&o.name) {
            out.push(Request::RemoveSwitch {
                switch: o.name.clone(),
            });
        }
    }
    for n in new.iter().filter(|n| is_switch(n)) {
        let node = Box::new(lab.nodes[&n.name].clone());
        match find(&old, &n.name).filter(|o| is_switch(o)) {
            Some(_) if whole(&n.name) => out.push(Request::AddSwitch { node }),
            None => out.push(Request::AddSwitch { node }),
            Some(o) => {
                if &o != n {
                    out.push(Request::Configure { node });
                }
                // Ports there before and now whose interface was made
                // again (a port new to the switch was opened just now).
                let had = |p: &String| o.switch.as_ref().is_some_and(|s| s.ports.contains_key(p));
                for p in n
                    .switch
                    .iter()
                    .flat_map(|s| s.ports.keys())
                    .filter(|p| had(p))
                {
                    if remade.contains(&(n.name.clone(), p.clone())) {
                        out.push(Request::Reopen {
                            switch: n.name.clone(),
                            port: p.clone(),
                        });
                    }
                }
            }
        }
    }
    let wires = |v: &[weft_topo::Node]| {
        v.iter()
            .filter(|n| n.wire.is_some())
            .cloned()
            .collect::<Vec<_>>()
    };
    let (was, now) = (wires(&old), wires(&new));
    if was != now || now.iter().any(|w| remade.iter().any(|(n, _)| n == &w.name)) {
        out.push(Request::Wires { nodes: now });
    }
    out
}

/// Sets on the running datapath every port impairment of `lab` that
/// differs from the recorded `before`.
fn retune(lab: &Lab, before: &serde_json::Value) -> Result<(), Error> {
    let old: Vec<weft_topo::Node> = serde_json::from_value(before.clone()).unwrap_or_default();
    for n in lab.nodes.values() {
        let Some(sw) = &n.switch else { continue };
        let was = old
            .iter()
            .find(|o| o.name == n.name)
            .and_then(|o| o.switch.as_ref());
        for (port, p) in &sw.ports {
            let before = was
                .and_then(|w| w.ports.get(port))
                .and_then(|q| q.impair.clone());
            if before == p.impair {
                continue;
            }
            let req = Request::Impair {
                switch: n.name.clone(),
                port: port.clone(),
                impair: p.impair.clone(),
            };
            expect_done(&lab.name, query(&lab.name, &req)?)?;
        }
    }
    Ok(())
}

/// An answer that should be `Done`: a refusal or anything else is an error.
pub(crate) fn expect_done(lab: &str, reply: Reply) -> Result<(), Error> {
    match reply {
        Reply::Done => Ok(()),
        Reply::Error { message } => Err(Error::Datapath {
            lab: lab.to_string(),
            detail: message,
        }),
        other => Err(unexpected(lab, &other)),
    }
}

fn unexpected(lab: &str, reply: &Reply) -> Error {
    Error::Datapath {
        lab: lab.to_string(),
        detail: format!("unexpected answer {}", reply.kind()),
    }
}

/// How long a live edit may take: a switch added or made again opens its
/// ports and may load a tc BPF program per port, which on a loaded
/// machine takes far longer than a status query.
const EDIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends the lab's running datapath a live edit and waits for its answer.
fn edit(lab: &str, req: &Request) -> Result<Reply, Error> {
    control::request(&control_path(lab), req, EDIT_TIMEOUT)
        .map_err(|e| Error::io(format!("changing the switch datapath of lab {lab}"), e))
}

/// Asks the lab's datapath something.
pub fn query(lab: &str, req: &Request) -> Result<Reply, Error> {
    if running(lab).is_none() {
        return Err(Error::DatapathNotRunning {
            lab: lab.to_string(),
        });
    }
    control::request(&control_path(lab), req, Duration::from_secs(2))
        .map_err(|e| Error::io(format!("asking the switch datapath of lab {lab}"), e))
}

/// The status of every switch, or `None` when the lab has no datapath.
pub fn status(lab: &str) -> Option<StatusReply> {
    match query(lab, &Request::Status) {
        Ok(Reply::Status(s)) => Some(s),
        _ => None,
    }
}

/// Waits until the datapath answers and every switch port with a carrier
/// forwards (or is an alternate/backup port): with RSTP well under a
/// second; with 802.1D (or towards a kernel bridge) about 2 x the forward
/// delay in force, which is the root's (a kernel bridge's or another
/// switch's), not necessarily the switch's own.
pub fn wait_ready(
    lab: &Lab,
    timeout: Option<Duration>,
    progress: &dyn Fn(Event),
) -> Result<Duration, Error> {
    let t0 = Instant::now();
    let mut limit = Duration::from_secs(5);
    for n in lab.nodes.values() {
        if let Some(sw) = &n.switch {
            if sw.stp != SwitchStp::Off {
                let fd = Duration::from_millis(u64::from(sw.forward_delay_cs.unwrap_or(1500)) * 10);
                limit = limit.max(crate::apply::stp_limit(fd));
            }
        }
    }
    let path = control_path(&lab.name);
    let mut announced = false;
    loop {
        let waiting: Vec<String> =
            match control::request(&path, &Request::Status, Duration::from_secs(2)) {
                Ok(Reply::Status(s)) => {
                    for sw in s.switches.iter().filter(|s| s.stp != "off") {
                        limit = limit.max(crate::apply::stp_limit(Duration::from_millis(
                            sw.forward_delay_ms,
                        )));
                    }
                    s.switches.iter().flat_map(|s| s.waiting()).collect()
                }
                Ok(other) => return Err(unexpected(&lab.name, &other)),
                Err(e) => {
                    if running(&lab.name).is_none() {
                        let log =
                            std::fs::read_to_string(state::lab_dir(&lab.name).join("datapath.log"))
                                .unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(5).collect();
                        return Err(Error::DatapathExited {
                            lab: lab.name.clone(),
                            log_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                        });
                    }
                    vec![format!("datapath not answering yet ({e})")]
                }
            };
        if waiting.is_empty() {
            return Ok(t0.elapsed());
        }
        if !announced && t0.elapsed() > Duration::from_millis(300) {
            announced = true;
            progress(Event::Stage {
                what: "waiting for switch ports to forward",
                total: 0,
            });
        }
        let limit = timeout.unwrap_or(limit);
        if t0.elapsed() > limit {
            return Err(Error::NotReady {
                lab: lab.name.clone(),
                secs: limit.as_secs_f64(),
                waiting,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "x"
[nodes.s1]
kind = "switch"
[nodes.s2]
kind = "switch"
[nodes.h1.interfaces.eth0]
addresses = ["10.0.0.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.0.0.2/24"]
[nodes.h3.interfaces.eth0]
addresses = ["10.0.1.3/24"]
[nodes.h4.interfaces.eth0]
addresses = ["10.0.1.4/24"]
[[links]]
endpoints = ["h1:eth0", "s1:p1"]
[[links]]
endpoints = ["h2:eth0", "s2:p1"]
[[links]]
endpoints = ["h3:eth0", "h4:eth0"]
"#;

    fn lab(text: &str) -> Lab {
        weft_topo::parse(text).unwrap().lab
    }

    /// The requests' names and their subjects, in order.
    fn kinds(reqs: &[Request]) -> Vec<String> {
        reqs.iter()
            .map(|r| match r {
                Request::AddSwitch { node } => format!("add {}", node.name),
                Request::RemoveSwitch { switch } => format!("remove {switch}"),
                Request::Configure { node } => format!("configure {}", node.name),
                Request::Reopen { switch, port } => format!("reopen {switch}:{port}"),
                Request::Wires { nodes } => format!("wires {}", nodes.len()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn plan(before: &str, after: &str, remade: &[(&str, &str)]) -> Vec<String> {
        let rec = switches_of(&lab(before));
        let remade: Remade = remade
            .iter()
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect();
        kinds(&edits(&lab(after), &rec, &remade))
    }

    #[test]
    fn nothing_changed_is_no_request() {
        assert!(plan(BASE, BASE, &[]).is_empty());
    }

    #[test]
    fn switches_added_removed_and_changed_are_each_one_request() {
        let added = format!(
            "{BASE}[nodes.s3]\nkind = \"switch\"\n[[links]]\nendpoints = [\"s2:u\", \"s3:u\"]\n"
        );
        // s2 gains port u: changed; s3 is new.
        assert_eq!(plan(BASE, &added, &[]), ["configure s2", "add s3"]);
        assert_eq!(plan(&added, BASE, &[]), ["remove s3", "configure s2"]);
        let rstp_off = BASE.replacen("kind = \"switch\"", "kind = \"switch\"\nstp = \"off\"", 1);
        assert_eq!(plan(BASE, &rstp_off, &[]), ["configure s1"]);
    }

    #[test]
    fn a_port_made_again_is_reopened_and_a_namespace_made_again_restarts_that_switch() {
        // h1 re-cabled from s1:p1 to s1's new p1 peer h5.
        let recabled = BASE
            .replace("[\"h1:eth0\", \"s1:p1\"]", "[\"h5:eth0\", \"s1:p1\"]")
            .replace("[nodes.h1.interfaces.eth0]", "[nodes.h5.interfaces.eth0]");
        assert_eq!(
            plan(BASE, &recabled, &[("s1", "p1")]),
            ["configure s1", "reopen s1:p1"]
        );
        // Only the interface made again (same settings): reopened alone.
        assert_eq!(plan(BASE, BASE, &[("s2", "p1")]), ["reopen s2:p1"]);
        assert_eq!(plan(BASE, BASE, &[("s2", "")]), ["remove s2", "add s2"]);
    }

    #[test]
    fn wires_added_removed_or_changed_send_the_whole_set() {
        let wired = BASE.replace(
            "endpoints = [\"h3:eth0\", \"h4:eth0\"]",
            "endpoints = [\"h3:eth0\", \"h4:eth0\"]\nimpair = { delay = \"5ms\" }",
        );
        assert_eq!(plan(BASE, &wired, &[]), ["wires 1"]);
        assert_eq!(plan(&wired, BASE, &[]), ["wires 0"]);
        let slower = wired.replace("5ms", "7ms");
        assert_eq!(plan(&wired, &slower, &[]), ["wires 1"]);
        assert!(plan(&wired, &wired, &[]).is_empty());
        // A wire's end made again (its host's veth): opened again.
        assert_eq!(plan(&wired, &wired, &[("~h3.eth0", "w0")]), ["wires 1"]);
    }
}
