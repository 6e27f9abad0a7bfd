//! [`Lab`]: a lab owned by a program (a test), removed when it is
//! dropped, with handles on its nodes and links and captures of its
//! traffic. docs/library.md walks through it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use weft_sys::process::ProcId;

use crate::builder::{Builder, Impair};
use crate::{Context, DownOptions, Error, FileError, UpOptions};

/// A lab that is up for as long as this value lives. Dropping it (also
/// when a test panics) kills the processes started in it and removes it;
/// if the program is killed instead, the next `Lab` or `weft` command
/// removes it (see [`crate::reap_orphans`]).
///
/// ```no_run
/// let lab = weft::Lab::from_toml(r#"
/// name = "pair"
/// [nodes.a.interfaces.eth0]
/// addresses = ["10.0.0.1/24"]
/// [nodes.b.interfaces.eth0]
/// addresses = ["10.0.0.2/24"]
/// [[links]]
/// endpoints = ["a:eth0", "b:eth0"]
/// "#).unwrap();
/// assert!(lab.ping("a", "b").unwrap());
/// ```
pub struct Lab {
    name: String,
    topology: weft_topo::Lab,
    procs: Mutex<Vec<ProcId>>,
}

/// Unique lab names within this process.
static SERIAL: AtomicU32 = AtomicU32::new(0);

/// `base` made unique to this process and call, within the 32 characters
/// a lab name may have: `base-PID-N`.
fn unique_name(base: &str) -> String {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{}-{n}", std::process::id());
    let keep = 32usize.saturating_sub(suffix.len()).min(base.len());
    format!("{}{suffix}", &base[..keep])
}

/// The file's text with its top-level `name` replaced.
fn renamed(text: &str, name: &str) -> Option<String> {
    let mut t: toml::Table = text.parse().ok()?;
    t.insert("name".into(), toml::Value::String(name.into()));
    toml::to_string(&t).ok()
}

impl Lab {
    /// Describe a lab in code; `name` is made unique to the run (see
    /// [`Context::exact_name`]).
    pub fn builder(name: &str) -> Builder {
        Builder::new(name)
    }

    /// Build the lab a topology file's text describes (docs/topology.md),
    /// with the default [`Context`].
    pub fn from_toml(text: &str) -> Result<Lab, Error> {
        Lab::from_toml_with(&Context::new(), text)
    }

    /// Build the lab a topology file describes, with the default context.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Lab, Error> {
        Lab::from_file_with(&Context::new(), path)
    }

    /// [`Lab::from_file`] with a context.
    pub fn from_file_with(ctx: &Context, path: impl AsRef<Path>) -> Result<Lab, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let dir = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        Lab::build(ctx, &text, path.to_path_buf(), dir)
    }

    /// Build the lab a topology file's text describes: checked (every
    /// problem reported, nothing built), named uniquely (unless the
    /// context says [`Context::exact_name`]), built, and returned once it
    /// is usable and its checks passed.
    pub fn from_toml_with(ctx: &Context, text: &str) -> Result<Lab, Error> {
        Lab::build(ctx, text, PathBuf::from("<toml>"), None)
    }

    fn build(ctx: &Context, text: &str, path: PathBuf, dir: Option<PathBuf>) -> Result<Lab, Error> {
        ctx.install()?;
        crate::reap::reap_orphans();
        let exists = |p: &Path| p.exists();
        let parse = |text: &str| {
            let at = dir.as_deref().map(|d| weft_topo::FileDir {
                dir: d,
                exists: &exists,
            });
            weft_topo::parse_at(text, None, at).map_err(|d| {
                Error::File(Box::new(FileError {
                    path: path.clone(),
                    source_text: text.to_string(),
                    diagnostics: d,
                }))
            })
        };
        // Checked as written first, so problems point into the caller's text.
        let mut topology = parse(text)?.lab;
        if !ctx.exact {
            let name = unique_name(&topology.name);
            let text = renamed(text, &name).ok_or_else(|| {
                Error::invalid(format!("renaming lab {} to {name}", topology.name))
            })?;
            topology = parse(&text)?.lab;
        }
        let name = topology.name.clone();
        if crate::state::load(&name)?.is_some() {
            return Err(Error::invalid_help(
                format!("lab {name} is already built"),
                "remove it first (`weft down NAME`), or let weft::Lab pick a unique name",
            ));
        }
        crate::reap::claim(&name)?;
        let opts = UpOptions {
            source: dir.is_some().then(|| path.clone()),
            ..UpOptions::default()
        };
        if let Err(e) = crate::up(&topology, &opts) {
            // Whatever the failed run left, and the owner record.
            let _ = crate::down(&name, &DownOptions::default());
            return Err(e);
        }
        let topology = crate::built(&name).map(|s| s.lab).unwrap_or(topology);
        Ok(Lab {
            name,
            topology,
            procs: Mutex::new(Vec::new()),
        })
    }

    /// The lab's name (unique to this run unless [`Context::exact_name`]);
    /// `weft status NAME` shows it while it is up.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lab as built: nodes with their namespaces, interfaces and
    /// addresses (those `attach` handed out included).
    pub fn topology(&self) -> &weft_topo::Lab {
        &self.topology
    }

    /// A node of the lab.
    pub fn node(&self, name: &str) -> Result<NodeHandle<'_>, Error> {
        let n = self.topology.nodes.get(name).ok_or_else(|| Error::NoNode {
            lab: self.name.clone(),
            node: name.to_string(),
            known: self
                .topology
                .nodes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        Ok(NodeHandle { lab: self, node: n })
    }

    /// The link between nodes `a` and `b` (or `"a:eth0"`, `"sw:p1"` when
    /// they have several).
    pub fn link(&self, a: &str, b: &str) -> Result<LinkHandle<'_>, Error> {
        // A tunnel link takes `impair` (its processes impair), not down/up.
        if crate::runtime::find_tunnel(&self.topology, a, b).is_none() {
            crate::runtime::find_link(&self.topology, a, b)?;
        }
        Ok(LinkHandle {
            lab: self,
            a: a.to_string(),
            b: b.to_string(),
        })
    }

    /// The lab's events from now on (docs/events.md), typed as
    /// `weft events --json` prints them: an iterator that waits for each
    /// next one, or [`Stream::next_timeout`](crate::events::Stream::next_timeout).
    /// What is kept from before: [`crate::events::read`].
    pub fn events(&self) -> Result<crate::events::Stream, Error> {
        crate::events::Stream::new(&self.name)
    }

    /// Ping from a node to a node name or address; true if it answered
    /// within a second.
    pub fn ping(&self, node: &str, target: &str) -> Result<bool, Error> {
        let ip = crate::resolve_target(&self.topology, target)?;
        let opts = weft_sys::ping::PingOptions {
            count: 1,
            timeout: Duration::from_secs(1),
            ..Default::default()
        };
        Ok(crate::ping(&self.name, node, ip, &opts, |_| {})?.received > 0)
    }

    /// Record the packets of capture points into a pcapng file until the
    /// returned handle is stopped or dropped. Points are written as for
    /// `weft capture` (docs/capture.md): `"a:eth0"`, a node (all its
    /// interfaces), `"link:a:eth0"` (both ends of a veth).
    pub fn capture(&self, points: &[&str], file: impl AsRef<Path>) -> Result<CaptureHandle, Error> {
        use weft_see::pcapng::{Writer, LINKTYPE_ETHERNET, LINKTYPE_RAW};
        let specs: Vec<String> = points.iter().map(|s| s.to_string()).collect();
        let pts = crate::capture::resolve(&self.topology, &specs)?;
        let cap = crate::capture::Capture::open(pts, None)?;
        let ifaces: Vec<(u16, u32, String)> = cap
            .links
            .iter()
            .zip(&cap.points)
            .map(|(l, p)| {
                let lt = match l {
                    weft_see::filter::Link::Ethernet => LINKTYPE_ETHERNET,
                    weft_see::filter::Link::RawIp => LINKTYPE_RAW,
                };
                (lt, weft_see::filter::SNAPLEN, p.label())
            })
            .collect();
        let path = file.as_ref().to_path_buf();
        let f = std::fs::File::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut w = Writer::new(std::io::BufWriter::new(f), &ifaces, false)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let p = path.clone();
        let thread = std::thread::spawn(move || {
            let (_, n) = cap.run(&s, None, None, |pk| {
                w.packet(pk.point as u32, pk.ts_ns, pk.data, pk.orig_len)
            })?;
            w.finish()
                .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
            Ok(n)
        });
        Ok(CaptureHandle {
            stop,
            thread: Some(thread),
            path,
        })
    }

    /// Remove the lab now, reporting what failed (dropping it does the
    /// same and prints the failure).
    pub fn down(mut self) -> Result<(), Error> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), Error> {
        let procs = std::mem::take(&mut *self.procs.lock().unwrap_or_else(|p| p.into_inner()));
        for p in procs {
            let _ = weft_sys::process::stop(p, Duration::from_millis(500));
        }
        if self.name.is_empty() {
            return Ok(());
        }
        let name = std::mem::take(&mut self.name);
        crate::down(&name, &DownOptions::default()).map(|_| ())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let name = self.name.clone();
        if let Err(e) = self.remove() {
            eprintln!("weft: removing lab {name}: {e}");
        }
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("name", &self.name).finish()
    }
}

/// One address of a node: the interface, the address, its prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The interface that has it.
    pub iface: String,
    /// The address.
    pub addr: IpAddr,
    /// The prefix length (`24` in `10.0.0.1/24`).
    pub prefix: u8,
}

/// A node of a [`Lab`]: see [`Lab::node`].
pub struct NodeHandle<'l> {
    lab: &'l Lab,
    node: &'l weft_topo::Node,
}

impl NodeHandle<'_> {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// Its network namespace (`ip netns exec NETNS ...`).
    pub fn netns(&self) -> &str {
        &self.node.netns
    }

    /// Run `f` on a thread of its own inside the node's network
    /// namespace, and return its result. Sockets it opens belong to the
    /// node and stay there when handed back (a socket keeps the namespace
    /// it was made in): bind a `std::net::TcpListener` or `UdpSocket`
    /// here, return it, and use it from any thread; for tokio, call
    /// `set_nonblocking(true)` on it and then
    /// `tokio::net::TcpListener::from_std(listener)` inside the runtime.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, Error> {
        Ok(weft_sys::netns::run_in_named(&self.node.netns, f)?)
    }

    /// Start a program in the node's network namespace, with stdout and
    /// stderr captured (read them with [`Process::wait_with_output`]; a
    /// program that writes more than a pipe holds, ~64 KiB, blocks until
    /// they are read) and stdin from /dev/null. It is killed when the lab
    /// is dropped. Only the network namespace is the node's: files are
    /// the machine's (`weft exec` also mounts the node's own hosts file).
    pub fn spawn(&self, cmd: &mut Command) -> Result<Process, Error> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{:?}", cmd.get_program());
        // A child process starts in the namespaces of the thread that
        // forks it.
        let child = self
            .run(|| cmd.spawn())?
            .map_err(|e| Error::io(format!("starting {what} in node {}", self.name()), e))?;
        if let Some(st) = weft_sys::process::start_time(child.id()) {
            self.lab
                .procs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ProcId {
                    pid: child.id(),
                    start_time: st,
                });
        }
        Ok(Process { child })
    }

    /// Run a program in the node to its end and return its exit status
    /// and output.
    pub fn output(&self, cmd: &mut Command) -> Result<Output, Error> {
        let what = format!("{:?}", cmd.get_program());
        self.spawn(cmd)?
            .wait_with_output()
            .map_err(|e| Error::io(format!("running {what} in node {}", self.name()), e))
    }

    /// The node's addresses as built, interface by interface.
    pub fn addresses(&self) -> Vec<Address> {
        self.node
            .interfaces
            .iter()
            .flat_map(|(name, i)| {
                i.addresses.iter().map(|a| Address {
                    iface: name.clone(),
                    addr: a.addr(),
                    prefix: a.prefix_len(),
                })
            })
            .collect()
    }

    /// The address that stands for the node (what `weft ping LAB X NODE`
    /// pings): its first IPv4 address, else its first address.
    pub fn ip(&self) -> Option<IpAddr> {
        weft_topo::check::node_address(self.node)
    }
}

/// A program started in a node with [`NodeHandle::spawn`].
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child process, for its pipes or `try_wait`.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kill it now (SIGKILL) and reap it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }

    /// Wait for it to end; its exit status and everything it wrote.
    pub fn wait_with_output(self) -> std::io::Result<Output> {
        self.child.wait_with_output()
    }
}

/// The link between two nodes of a [`Lab`]: see [`Lab::link`]. Changes
/// last until the lab is removed (or `weft up` restores its file).
pub struct LinkHandle<'l> {
    lab: &'l Lab,
    a: String,
    b: String,
}

impl LinkHandle<'_> {
    /// Take the link down (both ends; carrier lost on both sides).
    pub fn down(&self) -> Result<(), Error> {
        crate::runtime::set_link(&self.lab.name, &self.a, &self.b, false).map(|_| ())
    }

    /// Bring it up again.
    pub fn up(&self) -> Result<(), Error> {
        crate::runtime::set_link(&self.lab.name, &self.a, &self.b, true).map(|_| ())
    }

    /// Impair the link from now on: its switch end (when one end is a
    /// port of a `kind = "switch"` node), or the wire of a link between
    /// two kernel ends (see docs/conditions.md), put in now when the link
    /// has none. The PRNG starts again from the seed.
    pub fn impair(&self, imp: &Impair) -> Result<(), Error> {
        let s = imp.settings()?;
        crate::runtime::set_impair(&self.lab.name, &self.a, &self.b, Some(s)).map(|_| ())
    }

    /// Remove the link's impairment (a wire stays, passing frames
    /// unchanged, until `weft up` of the file or the lab's end).
    pub fn clear_impair(&self) -> Result<(), Error> {
        crate::runtime::set_impair(&self.lab.name, &self.a, &self.b, None).map(|_| ())
    }
}

/// A capture running on a thread: see [`Lab::capture`].
pub struct CaptureHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64, Error>>>,
    path: PathBuf,
}

impl CaptureHandle {
    /// The pcapng file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop (taking what is already queued), finish the file; the number
    /// of packets written.
    pub fn stop(mut self) -> Result<u64, Error> {
        self.finish()
    }

    fn finish(&mut self) -> Result<u64, Error> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(Error::invalid("the capture thread panicked"))),
            None => Ok(0),
        }
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
