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

    /// The key at `path`, created when absent. Several processes starting at once on the same
    /// path all end up with the one key that reached the disk first.
    pub fn load_or_generate(path: &Path) -> Result<SigningKey, String> {
        let (der, _) = load_or_create_pkcs8(path)?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(SigningKey)
            .map_err(|_| format!("{}: not a PKCS#8 Ed25519 private key", path.display()))
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
    let tmp = temp_beside(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let res = f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()));
    let res = res.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display())));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A temporary name next to `path`, unique to this process and call (two processes writing the
/// same file never share one).
fn temp_beside(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    path.with_file_name(name)
}

/// The PKCS#8 Ed25519 key at `path`, or a new one written there (0600) when there is none; true
/// when this call created it. The new key is published with a hard link, which fails when the
/// file exists, so of several processes racing, one key wins and every one of them reads it.
pub fn load_or_create_pkcs8(path: &Path) -> Result<(Vec<u8>, bool), String> {
    match std::fs::read(path) {
        Ok(b) => return Ok((b, false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{}: {e}", path.display())),
        Err(_) => {}
    }
    let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| "key generation failed".to_string())?;
    let tmp = temp_beside(path);
    write_private(&tmp, doc.as_ref())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((doc.as_ref().to_vec(), true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map(|b| (b, false)).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
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

#[cfg(test)]
mod race_tests {
    #[test]
    fn processes_racing_to_create_a_key_all_get_the_same_one() {
        let dir = std::env::temp_dir().join(format!("warden-key-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.key");
        let keys: Vec<(Vec<u8>, bool)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8).map(|_| s.spawn(|| super::load_or_create_pkcs8(&path).unwrap())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(keys.iter().filter(|(_, created)| *created).count(), 1, "exactly one created it");
        assert!(keys.iter().all(|(k, _)| *k == keys[0].0 && *k == std::fs::read(&path).unwrap()));
        // no temporary files are left behind
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
