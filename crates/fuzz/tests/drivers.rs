//! The fuzz drivers as ordinary tests: every stored corpus input (seeds and
//! any crash the fuzzer once found), then random inputs. A crash file that
//! libFuzzer writes goes into `corpus/TARGET/` and stays a test from then on.

use std::path::PathBuf;

use proptest::prelude::*;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    // An empty corpus would make these tests pass without running anything.
    assert!(
        v.len() >= 3,
        "corpus {} has {} inputs",
        dir.display(),
        v.len()
    );
    v
}

fn run_corpus(target: &str, f: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let r = std::panic::catch_unwind(|| f(&bytes));
        assert!(r.is_ok(), "{} fails", path.display());
    }
}

#[test]
fn wire_corpus() {
    run_corpus("wire", weft_fuzz::wire);
}

#[test]
fn switch_corpus() {
    run_corpus("switch", weft_fuzz::switch);
}

#[test]
fn tunnel_receive_corpus() {
    run_corpus("tunnel_receive", weft_fuzz::tunnel_receive);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
    #[test]
    fn wire_random(b in prop::collection::vec(any::<u8>(), 0..120)) {
        weft_fuzz::wire(&b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
    #[test]
    fn switch_random(b in prop::collection::vec(any::<u8>(), 0..2000)) {
        weft_fuzz::switch(&b);
    }
}

proptest! {
    // Each case does a handshake (four Diffie-Hellman operations).
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn tunnel_receive_random(b in prop::collection::vec(any::<u8>(), 0..600)) {
        weft_fuzz::tunnel_receive(&b);
    }
}
