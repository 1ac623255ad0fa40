//! What a swap records: its [`Outcome`], the [`Pause`] it cost, and the
//! [`SwapRecord`] that `GET /status` and `weir plugin history` show.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;

/// Where a swap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Pre-flight passed; waiting for the swap barrier.
    Requested,
    /// Swapped; the new version is on probation.
    Probation,
    /// Passed probation, and the checkpoint after it completed.
    Promoted,
    /// The new version failed, or its probation ran out of time or input
    /// before it had run its batches; every partition runs the old one
    /// again.
    RolledBack,
    /// A rollback of a stopped job (or one a restart strategy decided):
    /// the next run starts on `to_digest` from the newest checkpoint.
    Scheduled,
}

/// The pause of a swap, the longest over the partitions.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Pause {
    /// Snapshot of the old instance (ms).
    pub snapshot_ms: f64,
    /// Creating the new instance (ms).
    pub instantiate_ms: f64,
    /// Restoring the snapshot into it (ms).
    pub restore_ms: f64,
    /// The whole pause of a partition at the swap barrier (ms).
    pub total_ms: f64,
}

impl Pause {
    pub(super) fn max(&mut self, other: &Pause) {
        self.snapshot_ms = self.snapshot_ms.max(other.snapshot_ms);
        self.instantiate_ms = self.instantiate_ms.max(other.instantiate_ms);
        self.restore_ms = self.restore_ms.max(other.restore_ms);
        self.total_ms = self.total_ms.max(other.total_ms);
    }

    /// A partition's pause from its phase times.
    pub fn of(snapshot: Duration, instantiate: Duration, restore: Duration) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            snapshot_ms: ms(snapshot),
            instantiate_ms: ms(instantiate),
            restore_ms: ms(restore),
            total_ms: ms(snapshot + instantiate + restore),
        }
    }
}

/// One swap, as `GET /status` and `weir plugin history` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapRecord {
    /// Number of the swap in the job's history (1, 2, ...).
    pub seq: u64,
    /// Operator name.
    pub operator: String,
    /// Digest of the version that ran before.
    pub from_digest: String,
    /// Digest of the version swapped in.
    pub to_digest: String,
    /// `swap`, or `rollback` (a swap back to the previous version).
    pub kind: String,
    /// When the swap was asked for (ms since the epoch).
    pub requested_ms: i64,
    /// The savepoint taken at the swap barrier (old version's state).
    pub savepoint: String,
    /// Its checkpoint id, once the barrier was injected.
    pub checkpoint: Option<u64>,
    /// Where it stands.
    pub outcome: Outcome,
    /// Why it was rolled back.
    pub cause: Option<String>,
    /// The pause at the swap barrier.
    pub pause: Option<Pause>,
    /// The checkpoint that ended the probation.
    pub promoted_at: Option<u64>,
    /// When it was promoted or rolled back (ms since the epoch).
    pub ended_ms: Option<i64>,
    /// Batches the new version had to run before it could be promoted.
    #[serde(default)]
    pub probation_batches: u64,
    /// Batches the new version ran on probation (over every partition).
    #[serde(default)]
    pub checked_batches: u64,
    /// Records in them.
    #[serde(default)]
    pub checked_records: u64,
}

impl SwapRecord {
    /// Swap `seq` of `operator` from `from` to `to`, just asked for.
    pub fn requested(seq: u64, operator: &str, (from, to): (&str, &str), kind: &str) -> Self {
        Self {
            seq,
            operator: operator.to_string(),
            from_digest: from.to_string(),
            to_digest: to.to_string(),
            kind: kind.to_string(),
            requested_ms: now_ms(),
            savepoint: format!("swap-{seq}"),
            checkpoint: None,
            outcome: Outcome::Requested,
            cause: None,
            pause: None,
            promoted_at: None,
            ended_ms: None,
            probation_batches: 0,
            checked_batches: 0,
            checked_records: 0,
        }
    }
}
