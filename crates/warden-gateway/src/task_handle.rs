//! Task handles (the tasks extension, SEP-2663): the task id a client is given for an
//! upstream's task. It is an AEAD envelope (AES-256-GCM, a key of this process) of the
//! upstream, the upstream's own task id, the caller it was created for (binding key: issuer,
//! subject, tenant), the tool and an expiry, sealed by [`crate::seal`] — so Warden keeps no table
//! of tasks, and any request naming the task is routed by opening its id, on any replica that
//! shares the `[cluster] key`.
//!
//! Defends against: a caller reaching another caller's task (the id opens only for the caller
//! it was sealed to: otherwise it is "unknown", like a made-up one), a forged or altered id
//! naming another upstream's or another tool's task, and an id used past its expiry.
//! Does not defend against: without a `[cluster] key`, the key is per process: on another
//! replica or after a restart the id is unknown and the task is lost to the client (not reached
//! wrongly).

use crate::seal::Sealer;
use serde_json::{json, Value};
use std::sync::Arc;

const AAD: &[u8] = b"warden-task/v1";
const PREFIX: &str = "wt1.";
/// How long a handle opens (and the most `ttlMs` a client is told).
pub const MAX_TTL_SECS: u64 = 24 * 3600;
/// The longest upstream task id Warden carries.
pub const MAX_UPSTREAM_ID: usize = 256;

/// What a task id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    /// The upstream's configured name.
    pub server: String,
    /// The upstream's own task id.
    pub task: String,
    /// The caller's binding key.
    pub owner: String,
    /// The tool whose call created it (the upstream's own name).
    pub tool: String,
    pub read_only: bool,
    /// Unix seconds after which the handle no longer opens.
    pub expires: u64,
}

/// Seals and opens task ids.
pub struct TaskHandles {
    sealer: Arc<Sealer>,
}

impl Default for TaskHandles {
    fn default() -> Self {
        TaskHandles::new(Arc::new(Sealer::random()))
    }
}

impl TaskHandles {
    pub fn new(sealer: Arc<Sealer>) -> TaskHandles {
        TaskHandles { sealer }
    }

    pub fn seal(&self, h: &Handle) -> String {
        let data = serde_json::to_vec(&json!({"s": h.server, "t": h.task, "o": h.owner, "n": h.tool,
                                              "r": h.read_only, "e": h.expires}))
        .expect("json");
        format!("{PREFIX}{}", self.sealer.seal(AAD, data))
    }

    /// The handle `id` stands for, if it was sealed with one of the keys, for `owner`, and is
    /// unexpired.
    pub fn open(&self, id: &str, owner: &str, now: u64) -> Option<Handle> {
        let plain = self.sealer.open(AAD, id.strip_prefix(PREFIX)?)?;
        let v: Value = serde_json::from_slice(&plain).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let h = Handle {
            server: s("s")?,
            task: s("t")?,
            owner: s("o")?,
            tool: s("n")?,
            read_only: v.get("r").and_then(Value::as_bool)?,
            expires: v.get("e").and_then(Value::as_u64)?,
        };
        (h.owner == owner && h.expires >= now).then_some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Handle {
        Handle {
            server: "up".into(),
            task: "t-1".into(),
            owner: "iss|alice|".into(),
            tool: "slow".into(),
            read_only: false,
            expires: 1_000,
        }
    }

    #[test]
    fn opens_only_for_its_owner_unaltered_and_in_time() {
        let k = TaskHandles::default();
        let id = k.seal(&handle());
        assert!(id.starts_with(PREFIX));
        assert_eq!(k.open(&id, "iss|alice|", 999), Some(handle()));
        assert_eq!(k.open(&id, "iss|mallory|", 999), None, "another caller's task is unknown");
        assert_eq!(k.open(&id, "iss|alice|", 1_001), None, "expired");
        // Any changed byte (the envelope is authenticated), another key, or no envelope at all.
        use base64::Engine;
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&id[PREFIX.len()..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let altered = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(k.open(&altered, "iss|alice|", 999), None);
        assert_eq!(TaskHandles::default().open(&id, "iss|alice|", 999), None);
        for junk in ["", "t-1", "wt1.", "wt1.!!!", "wt1.AAAA"] {
            assert_eq!(k.open(junk, "iss|alice|", 0), None, "{junk}");
        }
        assert_ne!(k.seal(&handle()), id, "a fresh nonce per seal");
    }
}
