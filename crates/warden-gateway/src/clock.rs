//! Wall-clock time as the stages record and compare it (unix seconds). A leaf.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch (0 on a clock before it).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Milliseconds since the unix epoch (0 on a clock before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
