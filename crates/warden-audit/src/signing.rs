//! Ed25519 signatures for what an operator vouches for (pin files, audit checkpoints):
//! a key file (PKCS#8 DER, the same form as the built-in authorization server's key, written
//! 0600), a public key as base64 in config, and detached signatures as base64 over the exact
//! bytes of the signed file.
//!
//! Defends against a file edited by someone without the private key (a pin file rewritten to
//! trust a malicious definition): the verifier refuses it.
//! Does not defend against: a stolen private key, or an attacker who can also change the
//! configured public key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::path::{Path, PathBuf};

/// A signing key loaded from its key file.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// A new key, written to `path` (refusing to overwrite one) readable by its owner only.
    pub fn generate(path: &Path) -> Result<SigningKey, String> {
        if path.exists() {
            return Err(format!("{}: already exists; not overwriting a key", path.display()));
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| "key generation failed".to_string())?;
        write_private(path, pkcs8.as_ref())?;
        Self::load(path)
    }

    pub fn load(path: &Path) -> Result<SigningKey, String> {
        let der = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(SigningKey)
            .map_err(|_| format!("{}: not a PKCS#8 Ed25519 private key", path.display()))
    }

    /// The public key, base64 (what `content.pin_public_key` holds).
    pub fn public_key(&self) -> String {
        B64.encode(self.0.public_key().as_ref())
    }

    /// A detached signature over `data`, base64.
    pub fn sign(&self, data: &[u8]) -> String {
        B64.encode(self.0.sign(data).as_ref())
    }
}

/// Write `bytes` to `path` readable by its owner only (0600), atomically (a temporary file,
/// fsync, rename): a crash leaves the old file or the new one, never half of either.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Check a base64 public key's form (config validation).
pub fn parse_public_key(b64: &str) -> Result<Vec<u8>, String> {
    match B64.decode(b64.trim()) {
        Ok(k) if k.len() == 32 => Ok(k),
        _ => Err("expected the base64 of a 32-byte Ed25519 public key (printed by `warden pin keygen`)".into()),
    }
}

/// Verify a detached base64 signature over `data` with a base64 public key.
pub fn verify(public_key: &str, data: &[u8], signature: &str) -> Result<(), String> {
    let key = parse_public_key(public_key)?;
    let sig = B64.decode(signature.trim()).map_err(|_| "the signature is not base64".to_string())?;
    UnparsedPublicKey::new(&ED25519, key).verify(data, &sig).map_err(|_| "the signature does not verify".to_string())
}

/// Where the detached signature of `file` lives: `file` + `.sig`.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let dir = std::env::temp_dir().join(format!("warden-sign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kf = dir.join("k.pem");
        let _ = std::fs::remove_file(&kf);
        let k = SigningKey::generate(&kf).unwrap();
        assert!(SigningKey::generate(&kf).is_err(), "never overwrites a key");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&kf).unwrap().permissions().mode() & 0o777, 0o600);
        let again = SigningKey::load(&kf).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        let sig = k.sign(b"pins");
        assert!(verify(&k.public_key(), b"pins", &sig).is_ok());
        assert!(verify(&k.public_key(), b"pins!", &sig).is_err());
        let other = SigningKey::generate(&dir.join("other.pem")).unwrap();
        assert!(verify(&other.public_key(), b"pins", &sig).is_err());
        assert!(verify("bm90IGEga2V5", b"pins", &sig).is_err());
        assert!(verify(&k.public_key(), b"pins", "%%%").is_err());
        assert_eq!(signature_path(Path::new("/a/pins.json")), Path::new("/a/pins.json.sig"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
