//! Tasks: worker threads that run partitions.
//!
//! A [`Partition`] is one instance of the operator chain with its timers,
//! watermark and sink writer: the unit of state. A [`Worker`] is a thread
//! running the partitions `p` with `p % parallelism == thread`. It receives
//! packed batches addressed to its partitions and runs them through their
//! chains; rejected records go to the dead-letter output. At a barrier it
//! snapshots each of its partitions and hands them to the coordinator;
//! when the coordinator says the checkpoint is durable (or failed), each
//! partition's sink commits (or aborts) what it pre-committed.
//!
//! Its parts: `timers` (per operator, by event time), `partition` (a chain
//! instance and how input runs through it), `snapshot` (snapshots at
//! barriers, written out in chunks), `probation` (a swapped-in version on
//! trial: held output, kept input, rollback) and `worker` (the thread).

mod partition;
mod probation;
mod snapshot;
mod timers;
mod worker;

use std::sync::Arc;

pub use partition::{Chain, Partition};
pub use worker::Worker;

use super::metrics::Metrics;
use super::swap::Probation;
use crate::batch::SourceBatch;
use crate::sink::dead_letter::DeadLetters;

/// A message from the source's router to a worker.
#[derive(Debug)]
pub enum TaskMsg {
    /// Records for `partition`, and the watermark as of the last of them.
    Batch {
        /// Partition index.
        partition: usize,
        /// The records.
        batch: SourceBatch,
        /// Watermark after them.
        watermark: i64,
    },
    /// The watermark of `partition` advanced.
    Watermark {
        /// Partition index.
        partition: usize,
        /// The new watermark.
        watermark: i64,
    },
    /// Checkpoint barrier `id`: everything before it is in; snapshot every
    /// partition of the worker.
    Barrier(u64),
    /// The input ended: fire every remaining timer.
    EndOfInput,
    /// Barrier `id` (a savepoint) at which operator
    /// `probation.order.operator` swaps to a new plugin version: snapshot,
    /// swap, and run the new version on probation.
    Swap {
        /// Checkpoint id.
        id: u64,
        /// The swap, shared by every worker.
        probation: Arc<Probation>,
    },
}

/// What a worker did.
#[derive(Debug, Clone, Default)]
pub struct TaskStats {
    /// Records received from the source.
    pub records_in: u64,
    /// Records written to the sink.
    pub records_out: u64,
    /// Records rejected by operators.
    pub rejected: u64,
    /// Batches received.
    pub batches: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// Batches processed while a chunked snapshot was being written out.
    pub batches_during_snapshots: u64,
    /// Chunks of chunked snapshots written.
    pub snapshot_chunks: u64,
    /// Batches run again on the old version after a swap rolled back.
    pub batches_replayed: u64,
    /// The input ended, but the checkpoint taken at its end failed: the
    /// output after the newest complete checkpoint was left uncommitted.
    pub final_checkpoint_failed: bool,
}

/// What every partition shares: outputs and counters.
#[derive(Clone)]
pub struct Shared {
    /// The dead-letter output.
    pub dead_letters: Arc<DeadLetters>,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Worker threads that ended (a swap's barriers stop waiting for them).
    pub workers_gone: Arc<std::sync::atomic::AtomicUsize>,
    /// What each partition's sink committed (see [`Committed`]).
    pub committed: Arc<crate::runtime::Committed>,
}
