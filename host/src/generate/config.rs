//! The settings of `weir generate` ([`GenerateConfig`]), their defaults and
//! their validation.

use std::io;

/// Settings of `weir generate`.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Seed of the random generator; equal seeds (and settings) give
    /// byte-identical output. Default 42.
    pub seed: u64,
    /// Total number of events to write. Default 1,000,000.
    pub events: u64,
    /// Cap of the pool of concurrently live state machines (Flink hard-codes
    /// 1000). Must be at least 1. Default 1000.
    pub max_machines: usize,
    /// Smallest address a new state machine may get (inclusive). Default 0.
    pub min_address: u32,
    /// Bound of the addresses new state machines may get (exclusive); must be
    /// greater than `min_address`. Default 10,000.
    pub max_address: u32,
    /// Probability, in `[0, 1]`, that an advanced machine emits an invalid
    /// transition instead of a valid one (and is then forgotten).
    /// Default 0.001.
    pub error_prob: f64,
    /// A file is closed, and the next line goes to a new file, once it holds
    /// at least this many bytes; lines are never split across files. Must be
    /// positive. Default 64 MiB.
    pub file_size: u64,
    /// Timestamp (milliseconds since the Unix epoch) of the first event.
    /// Default 1,700,000,000,000.
    pub start_time_ms: i64,
    /// Event time advances by 1 ms every this many events: event `i`
    /// (0-based) gets `start_time_ms + i / events_per_ms`. Must be at least 1.
    /// Default 1.
    pub events_per_ms: u64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            events: 1_000_000,
            max_machines: 1000,
            min_address: 0,
            max_address: 10_000,
            error_prob: 0.001,
            file_size: 64 * 1024 * 1024,
            start_time_ms: 1_700_000_000_000,
            events_per_ms: 1,
        }
    }
}

impl GenerateConfig {
    /// Rejects settings `generate` cannot honour, as `InvalidInput` errors.
    pub(super) fn validate(&self) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if self.max_address <= self.min_address {
            return invalid(format!(
                "generate: max_address ({}) must be greater than min_address ({})",
                self.max_address, self.min_address
            ));
        }
        if self.max_machines == 0 {
            return invalid("generate: max_machines must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.error_prob) {
            return invalid(format!(
                "generate: error_prob ({}) must be between 0 and 1",
                self.error_prob
            ));
        }
        if self.file_size == 0 {
            return invalid("generate: file_size must be greater than 0 bytes".to_owned());
        }
        if self.events_per_ms == 0 {
            return invalid("generate: events_per_ms must be at least 1".to_owned());
        }
        Ok(())
    }
}
