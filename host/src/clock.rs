//! The machine's wall-clock time, where the host records it (checkpoint
//! manifests, leases, swap records). Event time never comes from here: it
//! is in the records.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
