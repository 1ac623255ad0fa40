//! Test-only failpoints: places where a test makes the process fail on
//! purpose (today one: `kafka-before-commit` aborts the process between a
//! durable checkpoint and the Kafka transaction that commits its output).
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

/// Whether failpoint `name` is armed in this process.
pub(crate) fn armed(name: &str) -> bool {
    ENABLED.load(Ordering::Relaxed) && std::env::var(ENV).is_ok_and(|v| v == name)
}
