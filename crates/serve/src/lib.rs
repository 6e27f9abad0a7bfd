//! `weft serve`: a local web page that draws a lab live (the SVG of
//! `weft graph`, redrawn every second), lists its events, shows a node's
//! interfaces and routes and the output of `ip addr` / `ip route` in it,
//! and takes links down and up, sets impairment and records captures.
//!
//! Security: it listens on 127.0.0.1 unless told otherwise (and then
//! warns); every API request, reading or changing, must carry the token
//! printed at start (the page has it from its URL and sends it as the
//! `X-Weft-Token` header); requests whose `Host` is not the address served
//! are refused (a web page elsewhere cannot rebind a name to it); no CORS
//! headers are ever sent; the page can run only `ip addr` and `ip route`.
//! Changes and refusals are recorded as events (docs/events.md).
//!
//! The page's HTML, JS and CSS are plain files in `web/`, compiled in; no
//! CDN, no build step. Parameters travel in the query string, also for
//! POST (the changes), so there is no body to parse.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};
use weft::events::{self, Event};

const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// Longest capture the page may ask for.
pub const MAX_CAPTURE_S: f64 = 30.0;

/// Why serving, or one API request, failed. An API error is answered with
/// status 400 and the message as `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lab library refused or failed (no such lab, no such link, ...).
    #[error(transparent)]
    Lab(#[from] weft::Error),
    /// The address could not be bound.
    #[error("listening on {addr}: {source}; give another address with --listen 127.0.0.1:PORT")]
    Listen {
        addr: SocketAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server is bound, but not to an IP address.
    #[error("the server is not on an IP address")]
    NotIp,
    /// An API request lacks a parameter.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// An API request's parameter is not usable; `why` says what to give.
    #[error("{param} {value:?}: {why}")]
    Bad {
        param: &'static str,
        value: String,
        why: String,
    },
    /// A node the page asked about is not in the lab.
    #[error("no node {node} in lab {lab}")]
    NoNode { node: String, lab: String },
    /// The `weft` binary could not be run (for `exec` or `capture`).
    #[error("running `weft {what}`: {source}")]
    Run {
        what: &'static str,
        source: std::io::Error,
    },
    /// `weft capture` ran and failed; `stderr` is what it said.
    #[error("capture of {point} failed: {stderr}")]
    Capture { point: String, stderr: String },
    /// No such API (or not with this method).
    #[error("no API {method} {action}")]
    NoApi {
        method: &'static str,
        action: String,
    },
}

pub struct Options {
    pub lab: String,
    pub listen: SocketAddr,
    /// The `weft` binary, run for captures and `ip` in a node.
    pub weft: std::path::PathBuf,
}

pub struct Serving {
    server: Server,
    pub addr: SocketAddr,
    pub token: String,
    lab: String,
    weft: std::path::PathBuf,
    /// The lab as last read, shared by the page's requests and the kernel
    /// poller (at 500 hosts a read is most of what serving costs).
    snap: Mutex<Option<Arc<Snapshot>>>,
}

/// The lab read once: as built, and as the kernel and datapath have it.
struct Snapshot {
    at: Instant,
    /// Wall clock of the read, milliseconds since the epoch.
    read_ms: u64,
    /// How long reading took.
    took: Duration,
    lab: weft_topo::Lab,
    status: Vec<weft::LabStatus>,
}

impl Snapshot {
    fn live(&self) -> weft_see::graph::LiveMap {
        self.status
            .first()
            .map(weft::drawing::live_map)
            .unwrap_or_default()
    }
}

/// A snapshot younger than this is good enough for a page or the poller
/// (both come every second); a change made from the page drops it.
const SNAPSHOT_FOR: Duration = Duration::from_millis(800);

fn token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Binds the address and makes the token; [`Serving::run`] serves.
pub fn bind(o: Options) -> Result<Serving, Error> {
    weft::built(&o.lab)?;
    let server = Server::http(o.listen).map_err(|source| Error::Listen {
        addr: o.listen,
        source,
    })?;
    let addr = server.server_addr().to_ip().ok_or(Error::NotIp)?;
    Ok(Serving {
        snap: Mutex::new(None),
        server,
        addr,
        token: token(),
        lab: o.lab,
        weft: o.weft,
    })
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn text(code: u16, ctype: &str, body: impl Into<Vec<u8>>) -> Reply {
    Response::from_data(body.into())
        .with_status_code(code)
        .with_header(header("Content-Type", ctype))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
}

fn json_reply(code: u16, v: &Value) -> Reply {
    text(code, "application/json", v.to_string())
}

fn error(code: u16, msg: &str) -> Reply {
    json_reply(code, &json!({ "error": msg }))
}

fn query(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Serving {
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.token)
    }

    /// Serves until the process ends, each request on a thread of its own
    /// so that a capture (up to [`MAX_CAPTURE_S`]) does not stop the
    /// drawing; changes to the lab take the lab's lock as the commands do.
    pub fn run(self) {
        let me = std::sync::Arc::new(self);
        // Kernel bridges' port states and kernel links' carrier go into
        // the event stream while the page is served.
        let poller = me.clone();
        std::thread::spawn(move || {
            let mut k = events::KernelWatch::new(&poller.lab);
            loop {
                // The read the page uses too, when it is fresh.
                if let Ok(s) = poller.snapshot() {
                    k.poll_with(&s.status);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        for req in me.server.incoming_requests() {
            let me = me.clone();
            std::thread::spawn(move || {
                let reply = me.handle(&req);
                let _ = req.respond(reply);
            });
        }
    }

    fn host_ok(&self, req: &Request) -> bool {
        let host = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Host"))
            .map(|h| h.value.as_str().to_string());
        let port = self.addr.port();
        match host {
            None => false,
            Some(h) => {
                h == self.addr.to_string()
                    || h == format!("localhost:{port}")
                    || h == format!("127.0.0.1:{port}")
                    || h == format!("[::1]:{port}")
            }
        }
    }

    fn token_ok(&self, req: &Request) -> bool {
        let given = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("X-Weft-Token"))
            .map(|h| h.value.as_str().to_string())
            .or_else(|| {
                query(req.url())
                    .into_iter()
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v)
            });
        // Compared in full whatever the input, so timing says nothing.
        given.is_some_and(|g| {
            g.len() == self.token.len()
                && g.bytes()
                    .zip(self.token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }

    fn refuse(&self, action: &str, why: &str) -> Reply {
        events::record(
            &self.lab,
            Event::new("serve.refused")
                .with("action", action)
                .with("why", why),
        );
        error(403, why)
    }

    fn done(&self, action: &str, detail: &str) {
        events::record(
            &self.lab,
            Event::new("serve.action")
                .with("action", action)
                .with("detail", detail),
        );
    }

    fn handle(&self, req: &Request) -> Reply {
        if !self.host_ok(req) {
            return error(
                421,
                "wrong Host: weft serve answers only to the address it printed",
            );
        }
        let path = req.url().split('?').next().unwrap_or("/").to_string();
        match (req.method(), path.as_str()) {
            (Method::Get, "/") => text(200, "text/html; charset=utf-8", INDEX),
            (Method::Get, "/app.js") => text(200, "text/javascript; charset=utf-8", APP_JS),
            (Method::Get, "/app.css") => text(200, "text/css; charset=utf-8", APP_CSS),
            (_, p) if p.starts_with("/api/") => {
                let action = p.trim_start_matches("/api/").to_string();
                if !self.token_ok(req) {
                    return self.refuse(
                        &action,
                        "no token, or a wrong one: open the URL `weft serve` printed (it carries the token)",
                    );
                }
                match self.api(req, &action) {
                    Ok(r) => r,
                    Err(e) => error(400, &e.to_string()),
                }
            }
            _ => error(404, "no such page"),
        }
    }

    fn api(&self, req: &Request, action: &str) -> Result<Reply, Error> {
        let q = query(req.url());
        let arg = |k: &'static str| {
            q.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .ok_or(Error::Missing(k))
        };
        let post = *req.method() == Method::Post;
        match (action, post) {
            ("graph.svg", false) => {
                let snap = self.snapshot()?;
                let t1 = Instant::now();
                let svg = weft_see::graph::svg(&snap.lab, &snap.live());
                // What the server spent: reading the lab, drawing it.
                let timing = format!(
                    "status;dur={:.1}, svg;dur={:.1}",
                    snap.took.as_secs_f64() * 1e3,
                    t1.elapsed().as_secs_f64() * 1e3
                );
                Ok(text(200, "image/svg+xml", svg)
                    .with_header(header("X-Weft-Read-Ms", &snap.read_ms.to_string()))
                    .with_header(header("Server-Timing", &timing)))
            }
            ("live", false) => {
                // The page's redraw: the drawing without counters (so it
                // stays the same while only traffic changes, and the page
                // keeps it when its hash is the one the page has), and
                // what each cable carried, for the rates.
                let snap = self.snapshot()?;
                let t1 = Instant::now();
                let mut live = snap.live();
                let traffic = weft_see::graph::traffic(&snap.lab, &live);
                for l in live.values_mut() {
                    l.counters = None;
                }
                let svg = weft_see::graph::svg(&snap.lab, &live);
                let etag = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    svg.hash(&mut h);
                    format!("{:016x}", h.finish())
                };
                let same = arg("etag").is_ok_and(|e| e == etag);
                let pair = |c: Option<(u64, u64)>| c.map(|(b, f)| json!([b, f]));
                let traffic: Vec<Value> = traffic
                    .into_iter()
                    .map(|(a, b, ab, ba)| json!([a.to_string(), b.to_string(), pair(ab), pair(ba)]))
                    .collect();
                Ok(json_reply(
                    200,
                    &json!({
                        "read_ms": snap.read_ms,
                        "etag": etag,
                        "svg": if same { None } else { Some(svg) },
                        "traffic": traffic,
                        "timing": {
                            "status_ms": snap.took.as_secs_f64() * 1e3,
                            "svg_ms": t1.elapsed().as_secs_f64() * 1e3,
                        },
                    }),
                ))
            }
            ("lab", false) => {
                let st = weft::status(Some(&self.lab))?;
                Ok(json_reply(200, &json!({ "lab": self.lab, "status": st })))
            }
            ("events", false) => {
                let after: u64 = arg("after").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                let mut evs = events::read(&self.lab, after + 1)?;
                let skip = evs.len().saturating_sub(500);
                evs.drain(..skip);
                Ok(json_reply(200, &json!(evs)))
            }
            ("node", false) => {
                let name = arg("name")?;
                let st = weft::status(Some(&self.lab))?;
                let node = st
                    .iter()
                    .flat_map(|l| &l.nodes)
                    .find(|n| n.name == name)
                    .ok_or_else(|| Error::NoNode {
                        node: name.clone(),
                        lab: self.lab.clone(),
                    })?;
                Ok(json_reply(200, &json!(node)))
            }
            ("exec", false) => {
                let node = arg("node")?;
                let args: &[&str] = match arg("cmd")?.as_str() {
                    "ip addr" => &["ip", "addr"],
                    "ip route" => &["ip", "route"],
                    other => {
                        return Ok(self.refuse(
                            "exec",
                            &format!(
                            "`{other}` is not one of the read-only commands (ip addr, ip route)"
                        ),
                        ))
                    }
                };
                let out = Command::new(&self.weft)
                    .args(["exec", &self.lab, &node, "--"])
                    .args(args)
                    .output()
                    .map_err(|source| Error::Run {
                        what: "exec",
                        source,
                    })?;
                let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&out.stderr));
                Ok(text(200, "text/plain; charset=utf-8", s))
            }
            ("link", true) => {
                let (a, b, state) = (arg("a")?, arg("b")?, arg("state")?);
                let up = match state.as_str() {
                    "up" => true,
                    "down" => false,
                    s => {
                        return Err(Error::Bad {
                            param: "state",
                            value: s.to_string(),
                            why: "say up or down".into(),
                        })
                    }
                };
                let (ea, eb) = weft::runtime::set_link(&self.lab, &a, &b, up)?;
                self.changed();
                self.done("link", &format!("{ea} — {eb} {state}"));
                Ok(json_reply(
                    200,
                    &json!({ "a": ea.to_string(), "b": eb.to_string(), "state": state }),
                ))
            }
            ("impair", true) => {
                let (a, b) = (arg("a")?, arg("b")?);
                let imp = if arg("clear").is_ok() {
                    None
                } else {
                    let delay = arg("delay").unwrap_or_default();
                    let loss = arg("loss").unwrap_or_default();
                    let i = weft_topo::impair::Impairment {
                        delay_us: if delay.is_empty() {
                            0
                        } else {
                            weft_topo::impair::parse_duration(&delay).map_err(|e| Error::Bad {
                                param: "delay",
                                value: delay.clone(),
                                why: e.to_string(),
                            })?
                        },
                        loss_ppm: if loss.is_empty() {
                            0
                        } else {
                            weft_topo::impair::parse_percent(&loss).map_err(|e| Error::Bad {
                                param: "loss",
                                value: loss.clone(),
                                why: e.to_string(),
                            })?
                        },
                        ..Default::default()
                    };
                    Some(i)
                };
                let what = imp.as_ref().map_or("cleared".to_string(), |i| i.summary());
                let port = weft::runtime::set_impair(&self.lab, &a, &b, imp)?;
                self.changed();
                self.done("impair", &format!("{port}: {what}"));
                Ok(json_reply(
                    200,
                    &json!({ "port": port.to_string(), "impair": what }),
                ))
            }
            ("capture", true) => {
                let point = arg("point")?;
                let secs: f64 = arg("seconds")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(3.0_f64)
                    .clamp(0.5, MAX_CAPTURE_S);
                if point.starts_with('-') {
                    return Err(Error::Bad {
                        param: "point",
                        value: point,
                        why: "give NODE:IFACE".into(),
                    });
                }
                let out = Command::new(&self.weft)
                    .args(["capture", &self.lab, &point, "-w", "-", "--duration"])
                    .arg(secs.to_string())
                    .output()
                    .map_err(|source| Error::Run {
                        what: "capture",
                        source,
                    })?;
                if !out.status.success() {
                    return Err(Error::Capture {
                        point,
                        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                self.done(
                    "capture",
                    &format!("{point} for {secs} s, {} bytes", out.stdout.len()),
                );
                let file = format!("{}-{}.pcapng", self.lab, point.replace([':', '/'], "-"));
                Ok(
                    text(200, "application/vnd.tcpdump.pcap", out.stdout).with_header(header(
                        "Content-Disposition",
                        &format!("attachment; filename=\"{file}\""),
                    )),
                )
            }
            (_, true) | (_, false) => Err(Error::NoApi {
                method: if post { "POST" } else { "GET" },
                action: action.to_string(),
            }),
        }
    }

    /// The lab as read at most [`SNAPSHOT_FOR`] ago. Requests that come
    /// while it is read wait for that read rather than making their own.
    fn snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        let mut cur = self.snap.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cur.as_ref().filter(|s| s.at.elapsed() < SNAPSHOT_FOR) {
            return Ok(s.clone());
        }
        let t0 = Instant::now();
        let st = weft::built(&self.lab)?;
        let status = vec![weft::status::status_of(&self.lab, &st)];
        let s = Arc::new(Snapshot {
            at: Instant::now(),
            read_ms: events::now_ms(),
            took: t0.elapsed(),
            lab: st.lab,
            status,
        });
        *cur = Some(s.clone());
        Ok(s)
    }

    /// After a change: the next read sees it.
    fn changed(&self) {
        *self.snap.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Whether serving on `addr` reaches beyond this machine.
pub fn is_exposed(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// How long a page waits between redraws (the page's JS has the same).
pub const REFRESH: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            query("/api/exec?node=h1&cmd=ip%20route&x=a+b"),
            [
                ("node".to_string(), "h1".to_string()),
                ("cmd".to_string(), "ip route".to_string()),
                ("x".to_string(), "a b".to_string())
            ]
        );
        // A cut-short or bad escape stays as it was.
        assert_eq!(decode("50%"), "50%");
        assert_eq!(decode("%zz1"), "%zz1");
        assert_eq!(decode("%41"), "A");
    }

    #[test]
    fn only_loopback_is_private() {
        assert!(!is_exposed(&"127.0.0.1:80".parse().unwrap()));
        assert!(!is_exposed(&"[::1]:80".parse().unwrap()));
        assert!(is_exposed(&"0.0.0.0:80".parse().unwrap()));
        assert!(is_exposed(&"192.168.1.2:80".parse().unwrap()));
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
