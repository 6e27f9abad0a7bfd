//! The fuzz drivers as ordinary tests: every stored corpus input (seeds and
//! any crash the fuzzer once found), then random inputs. A crash file that
//! libFuzzer writes goes into `corpus/TARGET/` and stays a test from then on.

use proptest::prelude::*;

fn run_corpus(target: &str, f: fn(&[u8])) {
    for (path, bytes) in weft_fuzz::corpus(target) {
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
