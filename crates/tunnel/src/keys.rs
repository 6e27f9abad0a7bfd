//! Static X25519 keys and their text form (standard base64 of 32 bytes, the
//! same form WireGuard's `wg genkey` uses, so keys are easy to compare).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use curve25519_dalek::montgomery::MontgomeryPoint;

/// Key length in bytes (X25519).
pub const KEY_LEN: usize = 32;

/// A static private key. Its `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub(crate) [u8; KEY_LEN]);

/// A static public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub(crate) [u8; KEY_LEN]);

/// Why a key's text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not base64: {0}")]
    Base64(String),
    #[error("a key is 32 bytes (44 base64 characters), this one decodes to {0} bytes")]
    Length(usize),
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        let mut k = [0u8; KEY_LEN];
        getrandom::fill(&mut k).expect("the OS random source failed");
        PrivateKey(k)
    }

    pub fn from_bytes(b: [u8; KEY_LEN]) -> PrivateKey {
        PrivateKey(b)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The matching public key (X25519 base-point multiplication with the
    /// usual clamping, as Noise's DH does).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(MontgomeryPoint::mul_base_clamped(self.0).to_bytes())
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn from_base64(s: &str) -> Result<PrivateKey, KeyError> {
        decode(s).map(PrivateKey)
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key())
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        // Best effort (black_box keeps the stores); copies made by moves
        // are not covered.
        self.0 = [0; KEY_LEN];
        std::hint::black_box(&self.0);
    }
}

impl PublicKey {
    pub fn from_bytes(b: [u8; KEY_LEN]) -> PublicKey {
        PublicKey(b)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn from_base64(s: &str) -> Result<PublicKey, KeyError> {
        decode(s).map(PublicKey)
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

fn decode(s: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let v = STANDARD
        .decode(s.trim())
        .map_err(|e| KeyError::Base64(e.to_string()))?;
    <[u8; KEY_LEN]>::try_from(v.as_slice()).map_err(|_| KeyError::Length(v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7748_public_key() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let sk = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let pk = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(PrivateKey(sk).public_key().0, pk);
    }

    #[test]
    fn base64_round_trip_and_errors() {
        let k = PrivateKey::generate();
        let s = k.to_base64();
        assert_eq!(s.len(), 44);
        assert_eq!(PrivateKey::from_base64(&format!("{s}\n")).unwrap(), k);
        assert_eq!(PublicKey::from_base64("AAAA"), Err(KeyError::Length(3)),);
        assert!(matches!(
            PublicKey::from_base64("!!"),
            Err(KeyError::Base64(_))
        ));
        assert!(!format!("{k:?}").contains(&s));
    }

    fn hex(s: &str) -> [u8; 32] {
        let mut o = [0u8; 32];
        for (i, b) in o.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        o
    }
}
