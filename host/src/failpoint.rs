//! Test-only failpoints: places where a test makes the process fail on
//! purpose. Today in the Kafka sink, between a durable checkpoint and the
//! transaction that commits its output: `kafka-before-commit` aborts the
//! process before the first commit, `kafka-before-commit:N` before the
//! `N`th, `kafka-before-commit-after-2s` two seconds after reaching the
//! first (other threads go on meanwhile). In the checkpoint coordinator,
//! `checkpoint-fails-every:N` fails every checkpoint whose id is a
//! multiple of `N` before it is written, as a store that refuses it would.
//! In the hybrid source, `hybrid-after-switch` aborts the process right
//! after it switched to Kafka, before the first Kafka checkpoint, and
//! `hybrid-file-ms:N` spends `N` ms after each file of the history (so a
//! test can stop a run inside it). In the workers, `task-fails-after-commits:N`
//! fails the first batch after every `N` committed checkpoints as a plugin
//! trap would (a transient failure, for the restart strategies). Several may be armed, comma-separated.
//!
//! Compiled only with the `failpoints` cargo feature, which the tests
//! crate turns on; `cargo build --release -p weir` leaves it out. Even
//! compiled in (a workspace build unifies the feature into the `weir`
//! binary too), a failpoint is armed only in a process that called
//! [`enable`] (the tests' `weir-it` binary does, first thing) and then only
//! by the `WEIR_FAILPOINT` environment variable.

use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable naming the armed failpoint.
const ENV: &str = "WEIR_FAILPOINT";

/// Set by [`enable`]: this process reads [`ENV`].
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Let `WEIR_FAILPOINT` arm failpoints in this process (test binaries
/// only).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// `N` when `WEIR_FAILPOINT` (a comma-separated list) holds `name:N` in a
/// process that enabled failpoints (the failpoint fires at its `N`th
/// pass).
pub(crate) fn armed_at(name: &str) -> Option<u64> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let v = std::env::var(ENV).ok()?;
    v.split(',')
        .find_map(|f| f.strip_prefix(name)?.strip_prefix(':')?.parse().ok())
}

/// Whether failpoint `name` is armed in this process (`WEIR_FAILPOINT`
/// names it, alone or in a comma-separated list).
pub(crate) fn armed(name: &str) -> bool {
    ENABLED.load(Ordering::Relaxed)
        && std::env::var(ENV).is_ok_and(|v| v.split(',').any(|f| f == name))
}
