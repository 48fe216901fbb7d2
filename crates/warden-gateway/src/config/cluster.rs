//! `[cluster]`: what several Wardens behind one load balancer share.

use super::*;

/// `[cluster]`: the key that lets any replica serve any request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The key (32 bytes, base64: `openssl rand -base64 32`) that seals 2025 session ids, task
    /// ids and 2026 `requestState`, so that any replica opens what another issued. Every replica
    /// must be given the same. Absent: a random key per process (one replica; session ids, task
    /// ids and `requestState` do not survive a restart).
    pub key: Option<SecretRef>,
    /// Keys that still open what they sealed but seal nothing new: to rotate, give the new key as
    /// `key` and the old one here until `session_max_age_secs` has passed.
    #[serde(default)]
    pub previous_keys: Vec<SecretRef>,
    /// Seconds a 2025 session id stays valid from its `initialize`: until then any replica
    /// that does not hold the session takes it up (unless it was ended with DELETE); after it,
    /// the client gets 404 and starts a new session. Default 86400 (a day).
    #[serde(default = "default_session_max_age")]
    pub session_max_age_secs: u64,
}

fn default_session_max_age() -> u64 {
    86_400
}

impl Default for ClusterConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl ClusterConfig {
    /// The sealer of this configuration: the configured keys, or a random one.
    pub fn sealer(&self) -> Result<crate::seal::Sealer, String> {
        let Some(key) = &self.key else {
            if !self.previous_keys.is_empty() {
                return Err("cluster.previous_keys: only beside cluster.key".into());
            }
            return Ok(crate::seal::Sealer::random());
        };
        let parse = |at: &str, s: &SecretRef| {
            crate::seal::Sealer::parse_key(&s.resolve().map_err(|e| format!("{at}: {e}"))?)
                .map_err(|e| format!("{at}: {e}"))
        };
        let current = parse("cluster.key", key)?;
        let previous = (self.previous_keys.iter().enumerate())
            .map(|(i, s)| parse(&format!("cluster.previous_keys[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::seal::Sealer::with_keys(&current, &previous))
    }
}
