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
    /// The switch nodes it was started for; a change restarts it.
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

/// Makes the datapath match `lab`: starts it when the lab has switches and
/// none runs (or it died); stops it when the lab has no switch left. A
/// change of switch settings goes to the running datapath, which keeps
/// its learned MACs and spanning tree; it is restarted only when that
/// cannot be (a switch added or removed, the STP protocol changed) or
/// `ports_changed` (a switch port's interface was removed and made again,
/// so its socket would point at the removed one). Ports added or removed
/// are opened or closed by the running datapath.
/// Returns true if a datapath was (re)started.
pub fn ensure(lab: &Lab, exe: Option<&Path>, ports_changed: bool) -> Result<bool, Error> {
    let name = lab.name.as_str();
    if !has_switches(lab) {
        stop(name)?;
        return Ok(false);
    }
    let want = switches_of(lab);
    if let Some(r) = running(name) {
        if !ports_changed && r.switches == want {
            return Ok(false);
        }
        if !ports_changed {
            match reconfigure(lab, &r.switches) {
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
                Err(e) => tracing::info!("restarting the datapath of lab {name}: {e}"),
            }
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

/// Sends the running datapath every switch of `lab` whose settings
/// differ from the recorded `before`, then the impairments. An error means
/// the datapath could not take a change in place.
fn reconfigure(lab: &Lab, before: &serde_json::Value) -> Result<(), Error> {
    let old: Vec<weft_topo::Node> =
        serde_json::from_value(without_impair(before)).unwrap_or_default();
    let new: Vec<weft_topo::Node> =
        serde_json::from_value(without_impair(&switches_of(lab))).unwrap_or_default();
    let names = |v: &[weft_topo::Node]| v.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    if names(&old) != names(&new) {
        return Err(Error::Datapath {
            lab: lab.name.clone(),
            detail: "switches were added or removed".into(),
        });
    }
    for (o, n) in old.iter().zip(&new) {
        if o != n {
            let req = Request::Configure {
                node: Box::new(lab.nodes[&n.name].clone()),
            };
            expect_done(&lab.name, query(&lab.name, &req)?)?;
        }
    }
    retune(lab, before)
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
