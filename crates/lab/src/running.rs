//! [`Running`]: a lab that is up for as long as a value lives.

use std::path::Path;
use std::time::Duration;

use crate::{
    down, node_netns, parse_file, ping, resolve_target, topo, up, DownOptions, Error, UpOptions,
};

/// A lab that is up for as long as this value lives: `weft down` runs when it
/// is dropped (also when a test panics). For programs that build labs in
/// their own tests:
///
/// ```no_run
/// let lab = weft::Running::from_file("examples/bridge.toml").unwrap();
/// let ns1 = lab.netns("ns1").unwrap(); // "weft-br.ns1", for `ip netns exec`
/// # let _ = ns1;
/// // ... run the test against the lab ...
/// drop(lab); // removed again
/// ```
pub struct Running {
    name: String,
    lab: topo::Lab,
}

impl Running {
    /// Check the file, build the lab, wait until it is usable.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Running, Error> {
        let parsed = parse_file(path.as_ref()).map_err(Error::File)?;
        Running::up(parsed.lab)
    }

    /// Build a lab made in code (or parsed with [`weft_topo::parse`]).
    pub fn up(lab: topo::Lab) -> Result<Running, Error> {
        up(&lab, &UpOptions::default())?;
        Ok(Running {
            name: lab.name.clone(),
            lab,
        })
    }

    /// The lab's name, as its file or [`topo::Lab`] says.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lab as built.
    pub fn lab(&self) -> &topo::Lab {
        &self.lab
    }

    /// The network namespace of a node (`ip netns exec NAME ...`).
    pub fn netns(&self, node: &str) -> Result<String, Error> {
        node_netns(&self.name, node)
    }

    /// Ping from a node to a node name or address; true if anything answered.
    pub fn ping(&self, node: &str, target: &str) -> Result<bool, Error> {
        let ip = resolve_target(&self.lab, target)?;
        let opts = weft_sys::ping::PingOptions {
            count: 1,
            timeout: Duration::from_secs(1),
            ..Default::default()
        };
        Ok(ping(&self.name, node, ip, &opts, |_| {})?.received > 0)
    }

    /// Run a closure inside a node's network namespace (on a thread of its
    /// own: sockets it opens belong to the node).
    pub fn run_in<R: Send>(&self, node: &str, f: impl FnOnce() -> R + Send) -> Result<R, Error> {
        Ok(weft_sys::netns::run_in_named(&self.netns(node)?, f)?)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = down(&self.name, &DownOptions::default()) {
            eprintln!("weft: removing lab {}: {e}", self.name);
        }
    }
}
