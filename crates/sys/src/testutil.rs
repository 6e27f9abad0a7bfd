//! Helpers for kernel tests: unique namespace names and cleanup guards, so
//! parallel tests never collide and a failing test leaves nothing behind.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `weft-t-PID-TAG-N`, unique within the machine while this process lives.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("weft-t-{}-{tag}-{n}", std::process::id())
}

/// Deletes its namespaces when dropped, even when the test panics.
#[derive(Default)]
pub struct NsGuard(pub Vec<String>);

impl NsGuard {
    /// Creates a namespace named `unique(tag)` and guards it.
    pub fn create(&mut self, tag: &str) -> String {
        let name = unique(tag);
        self.0.push(name.clone());
        netns::create(&name, |_| Ok::<_, crate::Error>(())).unwrap_or_else(|e| panic!("{e}"));
        name
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = netns::delete(n);
        }
    }
}

/// Runs `ip ARGS` (tests only; the library never runs `ip`), panicking on
/// failure; returns stdout.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
