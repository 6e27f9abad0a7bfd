//! Probe: delete the named namespaces (all whose names start with ARG) and
//! time until the kernel has destroyed them. For comparing teardown costs.
use std::time::{Duration, Instant};

fn main() {
    let prefix = std::env::args().nth(1).expect("prefix");
    let names: Vec<String> = weft_sys::netns::list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let t0 = Instant::now();
    let w = weft_sys::netns::watch_cleanup().unwrap();
    let t1 = Instant::now();
    for n in &names {
        weft_sys::netns::delete(n).unwrap();
    }
    let t2 = Instant::now();
    w.wait(Duration::from_secs(60)).unwrap();
    println!(
        "{} namespaces: arm {:?}, delete {:?}, kernel {:?}, total {:?}",
        names.len(),
        t1 - t0,
        t2 - t1,
        t2.elapsed(),
        t0.elapsed()
    );
}
