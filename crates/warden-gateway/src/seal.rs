//! Sealed envelopes: what Warden hands a client instead of keeping a table (2025 session ids,
//! task ids, 2026 `requestState`), encrypted and authenticated with AES-256-GCM under a key
//! every replica holds (`[cluster] key`), so that any replica opens what another sealed.
//!
//! Each purpose has its own associated data: an envelope sealed as a task id never opens as a
//! session id. The first key seals; every key opens (rotation: add the new key first, keep the
//! old one in `previous_keys` until what it sealed has expired).
//!
//! Defends against: forged or altered envelopes (the tag), reading what one carries (the
//! cipher), an envelope of one kind used as another (associated data per purpose).
//! Does not defend against: replay of an unexpired envelope by the caller it was issued to (the
//! users check the owner and an expiry inside it); a leaked key (anyone holding it seals
//! envelopes every replica accepts: keep it in a secret); more than about 2³² envelopes under one
//! key (nonces are random, 96 bits: rotate the key well before, yearly at most).

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

const NONCE: usize = 12;
const TAG: usize = 16;

/// Seals with the first key, opens with any.
pub struct Sealer {
    keys: Vec<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

fn key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte key"))
}

impl Sealer {
    /// A key of this process only (one replica; nothing sealed survives a restart).
    pub fn random() -> Sealer {
        Sealer { keys: vec![key(&rand::random())] }
    }

    /// `current` seals; `current` and `previous` open.
    pub fn with_keys(current: &[u8; 32], previous: &[[u8; 32]]) -> Sealer {
        let keys = std::iter::once(current).chain(previous).map(key).collect();
        Sealer { keys }
    }

    /// A key written as base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        let t = text.trim();
        let raw = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(t).ok())
            .ok_or("not base64 (make one with `openssl rand -base64 32`)")?;
        raw.try_into().map_err(|r: Vec<u8>| format!("{} bytes; a key is 32 bytes of base64", r.len()))
    }

    /// `plain` sealed for `purpose`: base64url (no padding) of nonce, ciphertext and tag.
    pub fn seal(&self, purpose: &[u8], mut plain: Vec<u8>) -> String {
        let nonce: [u8; NONCE] = rand::random();
        self.keys[0]
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose), &mut plain)
            .expect("sealing cannot fail below 64 GB");
        let mut out = Vec::with_capacity(NONCE + plain.len());
        out.extend_from_slice(&nonce);
        out.extend(plain);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// What `sealed` carries, if one of the keys sealed it for `purpose`, unaltered.
    pub fn open(&self, purpose: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed.trim()).ok()?;
        if raw.len() < NONCE + TAG {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE);
        self.keys.iter().find_map(|k| {
            let mut buf = body.to_vec();
            let n = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let len = k.open_in_place(n, Aad::from(purpose), &mut buf).ok()?.len();
            buf.truncate(len);
            Some(buf)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_unaltered_for_its_purpose_with_a_known_key() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let s = Sealer::with_keys(&a, &[]);
        let env = s.seal(b"p1", b"hello".to_vec());
        assert_eq!(s.open(b"p1", &env).as_deref(), Some(&b"hello"[..]));
        assert_eq!(s.open(b"p2", &env), None, "another purpose");
        assert_eq!(Sealer::with_keys(&b, &[]).open(b"p1", &env), None, "another key");
        assert_eq!(Sealer::random().open(b"p1", &env), None, "a process's own key");
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&env).unwrap();
        for i in [0, NONCE, raw.len() - 1] {
            raw[i] ^= 1;
            let altered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
            assert_eq!(s.open(b"p1", &altered), None, "byte {i} altered");
            raw[i] ^= 1;
        }
        for junk in ["", "AAAA", "!!!", &"A".repeat(10_000)] {
            assert_eq!(s.open(b"p1", junk), None);
        }
        assert_ne!(s.seal(b"p1", b"hello".to_vec()), env, "a fresh nonce per seal");
    }

    #[test]
    fn rotation_seals_with_the_new_key_and_still_opens_the_old() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let before = Sealer::with_keys(&old, &[]);
        let env = before.seal(b"p", b"x".to_vec());
        let after = Sealer::with_keys(&new, &[old]);
        assert_eq!(after.open(b"p", &env).as_deref(), Some(&b"x"[..]), "the previous key still opens");
        let fresh = after.seal(b"p", b"y".to_vec());
        assert_eq!(before.open(b"p", &fresh), None, "new envelopes are sealed with the new key");
        assert_eq!(Sealer::with_keys(&new, &[]).open(b"p", &env), None, "the old key dropped: closed");
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes_only() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let k = [7u8; 32];
        assert_eq!(Sealer::parse_key(&STANDARD.encode(k)).unwrap(), k);
        assert_eq!(Sealer::parse_key(&format!("{}\n", URL_SAFE_NO_PAD.encode(k))).unwrap(), k);
        assert!(Sealer::parse_key(&STANDARD.encode([7u8; 16])).unwrap_err().contains("16 bytes"));
        assert!(Sealer::parse_key("not a key!").is_err());
    }
}
