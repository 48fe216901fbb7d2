//! Kill switches: an operator turns off a whole upstream or one of its tools at runtime. A killed
//! target disappears from listings and its calls are refused from the next call on; with
//! `cancel_in_flight` the calls already running are cancelled too (the upstream gets
//! `notifications/cancelled`). State is written to a private file after each flip, so a restart
//! keeps it, and every flip is logged with who did it and why.
//!
//! Backend: in memory with a file, per process. Sharing between replicas (Redis) is still to come.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// One flipped switch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Kill {
    pub server: String,
    /// `None`: the whole upstream.
    pub tool: Option<String>,
    pub reason: String,
    /// Who flipped it, as the admin client declared it.
    pub by: String,
    /// Unix seconds.
    pub at: u64,
    pub cancel_in_flight: bool,
}

fn key(server: &str, tool: Option<&str>) -> String {
    format!("{server}\0{}", tool.unwrap_or(""))
}

pub struct KillSwitches {
    map: RwLock<BTreeMap<String, Kill>>,
    any: AtomicBool,
    path: Option<PathBuf>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl KillSwitches {
    /// Switches saved at `path` (none when the file does not exist yet).
    pub fn load(path: Option<PathBuf>) -> Result<KillSwitches, String> {
        let list: Vec<Kill> = match &path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
                Err(e) => return Err(format!("{}: {e}", p.display())),
            },
            None => vec![],
        };
        let map: BTreeMap<String, Kill> = list.into_iter().map(|k| (key(&k.server, k.tool.as_deref()), k)).collect();
        for k in map.values() {
            tracing::warn!(server = %k.server, tool = ?k.tool, reason = %k.reason, by = %k.by, "kill switch active");
        }
        Ok(KillSwitches {
            any: AtomicBool::new(!map.is_empty()),
            map: RwLock::new(map),
            path,
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    /// Is this upstream, or this tool of it, switched off?
    pub fn killed(&self, server: &str, tool: Option<&str>) -> bool {
        self.find(server, tool).is_some()
    }

    fn find(&self, server: &str, tool: Option<&str>) -> Option<Kill> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let m = self.map.read();
        m.get(&key(server, None)).or_else(|| tool.and_then(|t| m.get(&key(server, Some(t))))).cloned()
    }

    /// Counts flips; listings cached before a flip are stale.
    pub fn generation(&self) -> u64 {
        *self.changed.borrow()
    }

    pub fn list(&self) -> Vec<Kill> {
        self.map.read().values().cloned().collect()
    }

    pub fn kill(&self, k: Kill) -> Result<(), String> {
        tracing::warn!(server = %k.server, tool = ?k.tool, reason = %k.reason, by = %k.by,
            cancel_in_flight = k.cancel_in_flight, "kill switch flipped: off");
        self.update(|m| {
            m.insert(key(&k.server, k.tool.as_deref()), k.clone());
        })
    }

    /// Turn a switch back on; false when it was not off.
    pub fn revive(&self, server: &str, tool: Option<&str>, by: &str) -> Result<bool, String> {
        let mut was = false;
        self.update(|m| was = m.remove(&key(server, tool)).is_some())?;
        if was {
            tracing::warn!(server, tool = ?tool, by, "kill switch flipped: revived");
        }
        Ok(was)
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Kill>)) -> Result<(), String> {
        let bytes = {
            let mut m = self.map.write();
            f(&mut m);
            self.any.store(!m.is_empty(), Ordering::Release);
            serde_json::to_vec_pretty(&m.values().collect::<Vec<_>>()).expect("kills serialise")
        };
        self.changed.send_modify(|n| *n += 1);
        match &self.path {
            Some(p) => crate::auth::builtin::write_private(p, &bytes),
            None => Ok(()),
        }
    }

    /// Resolves when a switch covering this call is flipped with `cancel_in_flight`.
    pub async fn cancelled(&self, server: &str, tool: Option<&str>) {
        let mut rx = self.changed.subscribe();
        loop {
            if self.find(server, tool).is_some_and(|k| k.cancel_in_flight) {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
