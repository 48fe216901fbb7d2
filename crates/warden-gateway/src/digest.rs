//! Digests for keys, caches and fingerprints: SHA-256 and lower-case hex. A leaf: it imports
//! nothing of the crate.

use ring::digest::{digest, SHA256};

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    warden_audit::event::hex(b)
}

/// SHA-256 of `b` (cache keys, PKCE, token hashes, fingerprints).
pub fn sha256(b: &[u8]) -> [u8; 32] {
    digest(&SHA256, b).as_ref().try_into().expect("32 bytes")
}

/// `bytes` random bytes as hex (ids, cookie secrets); `None` when the system has no randomness.
pub fn random_hex(bytes: usize) -> Option<String> {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new().fill(&mut b).ok()?;
    Some(hex(&b))
}
