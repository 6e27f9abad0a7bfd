//! The data ciphers, and how the two ends agree on one.
//!
//! The handshake is always `Noise_KK_25519_ChaChaPoly_BLAKE2s`; its two
//! split keys then key the data cipher the responder picked from the
//! initiator's offer (docs/tunnel.md, "Cipher"). AES-256-GCM is ~3.4x
//! faster than ChaCha20-Poly1305 on a CPU with AES-NI, and slower without
//! (ring's software AES), so each end says whether it is fast here.

use std::fmt;
use std::str::FromStr;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

/// Bytes of the tag each data message carries (both ciphers).
pub(crate) const TAG: usize = 16;

/// A data cipher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    ChaCha20Poly1305,
    Aes256Gcm,
}

impl Cipher {
    pub const ALL: [Cipher; 2] = [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm];

    /// The name in configuration files, flags and status output.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// Its bit in an offer, and its byte in a response.
    fn bit(self) -> u8 {
        match self {
            Cipher::ChaCha20Poly1305 => 1,
            Cipher::Aes256Gcm => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Cipher> {
        Cipher::ALL.into_iter().find(|c| c.bit() == b)
    }

    pub(crate) fn byte(self) -> u8 {
        self.bit()
    }

    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &AES_256_GCM,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which data cipher one end uses: `auto` (the default) accepts both and
/// prefers AES-256-GCM where this CPU runs it in hardware; a named one is
/// the only one this end offers or accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CipherChoice {
    #[default]
    Auto,
    Only(Cipher),
}

impl CipherChoice {
    /// Every accepted spelling, for error messages.
    pub const NAMES: [&'static str; 3] = ["auto", "chacha20-poly1305", "aes-256-gcm"];

    pub fn name(self) -> &'static str {
        match self {
            CipherChoice::Auto => "auto",
            CipherChoice::Only(c) => c.name(),
        }
    }

    /// The offer byte of a first handshake message from this end, where
    /// AES is (`aes_fast`) or is not hardware-accelerated.
    pub(crate) fn offer(self, aes_fast: bool) -> u8 {
        match self {
            CipherChoice::Auto => {
                Cipher::ChaCha20Poly1305.bit()
                    | Cipher::Aes256Gcm.bit()
                    | if aes_fast { PREFERS_AES } else { 0 }
            }
            CipherChoice::Only(c) => {
                c.bit()
                    | if c == Cipher::Aes256Gcm {
                        PREFERS_AES
                    } else {
                        0
                    }
            }
        }
    }
}

impl FromStr for CipherChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(CipherChoice::Auto),
            _ => Cipher::ALL
                .into_iter()
                .find(|c| c.name() == s)
                .map(CipherChoice::Only)
                .ok_or_else(|| {
                    format!(
                        "cipher `{s}` is not known; write one of {}",
                        CipherChoice::NAMES.map(|n| format!("\"{n}\"")).join(", ")
                    )
                }),
        }
    }
}

impl fmt::Display for CipherChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Offer bit: the offering end runs AES-256-GCM in hardware.
const PREFERS_AES: u8 = 4;
/// Bits an offer may have; others make it malformed (room for later ciphers
/// means a new protocol version, not silently ignored bits).
const OFFER_BITS: u8 = 1 | 2 | PREFERS_AES;

/// The responder's pick from the initiator's offer and its own: a cipher
/// both accept; AES-256-GCM only if both run it in hardware or one of them
/// accepts nothing else. None: no cipher in common (or a malformed offer).
pub(crate) fn choose(theirs: u8, ours: u8) -> Option<Cipher> {
    if theirs & !OFFER_BITS != 0 {
        return None;
    }
    let both = theirs & ours;
    let chacha = both & Cipher::ChaCha20Poly1305.bit() != 0;
    let aes = both & Cipher::Aes256Gcm.bit() != 0;
    match (chacha, aes) {
        (true, true) if both & PREFERS_AES != 0 => Some(Cipher::Aes256Gcm),
        (true, _) => Some(Cipher::ChaCha20Poly1305),
        (false, true) => Some(Cipher::Aes256Gcm),
        (false, false) => None,
    }
}

/// Whether ring runs AES-256-GCM on this CPU in hardware (AES and carry-less
/// multiply instructions). ring does not say, so ask the CPU the same way.
pub fn aes_is_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// One session's data keys: one direction each.
pub(crate) struct Keys {
    cipher: Cipher,
    send: LessSafeKey,
    recv: LessSafeKey,
}

impl Keys {
    /// From Noise's split (`first` keys initiator-to-responder).
    pub(crate) fn new(
        cipher: Cipher,
        initiator: bool,
        first: &[u8; 32],
        second: &[u8; 32],
    ) -> Keys {
        let key = |k: &[u8; 32]| {
            LessSafeKey::new(UnboundKey::new(cipher.algorithm(), k).expect("a 32-byte key"))
        };
        let (send, recv) = if initiator {
            (first, second)
        } else {
            (second, first)
        };
        Keys {
            cipher,
            send: key(send),
            recv: key(recv),
        }
    }

    pub(crate) fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Noise's nonce for each cipher: four zero bytes and the counter,
    /// little-endian for ChaChaPoly and big-endian for AESGCM.
    fn nonce(&self, counter: u64) -> Nonce {
        let mut n = [0u8; 12];
        match self.cipher {
            Cipher::ChaCha20Poly1305 => n[4..].copy_from_slice(&counter.to_le_bytes()),
            Cipher::Aes256Gcm => n[4..].copy_from_slice(&counter.to_be_bytes()),
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypt `buf[..len]` in place and put the tag after it; `buf` needs
    /// `len + TAG` bytes. The caller never reuses a counter in a session.
    pub(crate) fn seal(&self, counter: u64, buf: &mut [u8], len: usize) -> usize {
        let tag = self
            .send
            .seal_in_place_separate_tag(self.nonce(counter), Aad::empty(), &mut buf[..len])
            .expect("a message under the cipher's limit");
        buf[len..len + TAG].copy_from_slice(tag.as_ref());
        len + TAG
    }

    /// Decrypt ciphertext and tag `buf` in place: the plaintext's length,
    /// or None if it fails authentication.
    pub(crate) fn open(&self, counter: u64, buf: &mut [u8]) -> Option<usize> {
        self.recv
            .open_in_place(self.nonce(counter), Aad::empty(), buf)
            .ok()
            .map(|p| p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Cipher = Cipher::Aes256Gcm;
    const C: Cipher = Cipher::ChaCha20Poly1305;

    #[test]
    fn the_pick_is_what_both_accept_aes_only_when_both_are_fast() {
        let auto = |fast| CipherChoice::Auto.offer(fast);
        let only = |c| CipherChoice::Only(c).offer(false);
        assert_eq!(choose(auto(true), auto(true)), Some(A));
        assert_eq!(choose(auto(true), auto(false)), Some(C));
        assert_eq!(choose(auto(false), auto(true)), Some(C));
        assert_eq!(choose(auto(false), auto(false)), Some(C));
        // A named cipher wins over `auto`, fast or not, either way round.
        for fast in [true, false] {
            assert_eq!(choose(only(A), auto(fast)), Some(A));
            assert_eq!(choose(auto(fast), only(A)), Some(A));
            assert_eq!(choose(only(C), auto(fast)), Some(C));
            assert_eq!(choose(auto(fast), only(C)), Some(C));
        }
        assert_eq!(choose(only(A), only(A)), Some(A));
        assert_eq!(choose(only(C), only(C)), Some(C));
        assert_eq!(choose(only(A), only(C)), None);
        assert_eq!(choose(only(C), only(A)), None);
        // Unknown bits and empty offers.
        assert_eq!(choose(0x08 | auto(true), auto(true)), None);
        assert_eq!(choose(0, auto(true)), None);
    }

    #[test]
    fn choices_parse_and_name_themselves() {
        for n in CipherChoice::NAMES {
            let c: CipherChoice = n.parse().unwrap();
            assert_eq!(c.name(), n);
        }
        let e = "aes-128-gcm".parse::<CipherChoice>().unwrap_err();
        assert!(e.contains("\"aes-256-gcm\""), "{e}");
        assert!("AES-256-GCM".parse::<CipherChoice>().is_err());
    }

    /// Each cipher, each direction: what one end seals the other opens;
    /// another counter, a flipped bit or the wrong direction's key does not.
    #[test]
    fn both_ciphers_round_trip_in_both_directions_and_refuse_tampering() {
        let k1 = [7u8; 32];
        let k2 = [9u8; 32];
        for c in Cipher::ALL {
            let i = Keys::new(c, true, &k1, &k2);
            let r = Keys::new(c, false, &k1, &k2);
            let msg = b"an inner packet of some length, 45 bytes long";
            for (from, to) in [(&i, &r), (&r, &i)] {
                for counter in [0u64, 1, 0x0102_0304_0506_0708] {
                    let mut buf = [0u8; 64];
                    buf[..msg.len()].copy_from_slice(msg);
                    let n = from.seal(counter, &mut buf, msg.len());
                    assert_eq!(n, msg.len() + TAG);
                    assert_ne!(&buf[..msg.len()], &msg[..]);
                    let mut good = buf;
                    assert_eq!(to.open(counter, &mut good[..n]), Some(msg.len()));
                    assert_eq!(&good[..msg.len()], &msg[..]);
                    // The wrong counter, a flipped bit, the sender's own key.
                    let mut b = buf;
                    assert_eq!(to.open(counter + 1, &mut b[..n]), None);
                    for at in [0, n - 1] {
                        let mut b = buf;
                        b[at] ^= 1;
                        assert_eq!(to.open(counter, &mut b[..n]), None);
                    }
                    let mut b = buf;
                    assert_eq!(from.open(counter, &mut b[..n]), None);
                }
            }
        }
        // The same keys and message under the two ciphers differ, and one
        // cipher's message does not open under the other.
        let a = Keys::new(A, true, &k1, &k2);
        let c = Keys::new(C, true, &k1, &k2);
        let c_r = Keys::new(C, false, &k1, &k2);
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        a.seal(5, &mut x, 16);
        c.seal(5, &mut y, 16);
        assert_ne!(x, y);
        assert_eq!(c_r.open(5, &mut x), None);
    }

    /// The nonce layouts are Noise's: checked against ring with a nonce
    /// built here by hand, so a change of layout shows.
    #[test]
    fn nonces_are_noise_layouts() {
        let k = [3u8; 32];
        for (c, nonce) in [
            (C, [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]),
            (A, [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
        ] {
            let keys = Keys::new(c, true, &k, &[0u8; 32]);
            let mut buf = [0x5au8; 40];
            let n = keys.seal(0x0102_0304_0506_0708, &mut buf, 24);
            let plain = LessSafeKey::new(UnboundKey::new(c.algorithm(), &k).unwrap());
            let p = plain
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut buf[..n],
                )
                .unwrap();
            assert_eq!(p, &[0x5au8; 24][..]);
        }
    }
}
