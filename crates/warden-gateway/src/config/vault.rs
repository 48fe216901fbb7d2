//! `[vault]`: where users' upstream credentials are kept, encrypted (`crate::vault`).

use super::*;

/// `[vault]`: the credential vault — each user's own tokens for upstreams that act on the
/// user's account, encrypted at rest (AES-256-GCM), per principal and tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The key tokens are encrypted with: 32 bytes, base64 (`openssl rand -base64 32`).
    pub key: SecretRef,
    /// Keys that still decrypt but encrypt nothing new. To rotate: make the new key `key`, keep
    /// the old one here, run `warden credentials rotate`, then remove it.
    #[serde(default)]
    pub previous_keys: Vec<SecretRef>,
    /// The SQLite file (without `url`). Default `warden-data/vault.sqlite` beside the config
    /// file.
    pub path: Option<PathBuf>,
    /// PostgreSQL, shared by replicas: `postgres://user@host:5432/db` (the password in
    /// `password`, not here). The table `warden_credentials` is created when absent. TLS as the
    /// URL's `sslmode` and `sslrootcert` say, as libpq's (default `prefer`; across a network,
    /// `verify-full` with `sslrootcert`).
    #[serde(default, serialize_with = "mask::opt_url")]
    pub url: Option<String>,
    /// PostgreSQL: the password, kept out of the URL.
    pub password: Option<SecretRef>,
}
