//! Snapshots of a partition at a barrier: every operator's state and
//! timers, the watermark and the sink's pre-commit. Operators with a
//! chunked snapshot freeze their state at the barrier and hand it out in
//! chunks between batches.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::partition::Partition;
use crate::Result;
use crate::runtime::coordinator::{OperatorSnapshot, PartitionSnapshot};

/// A partition's snapshot between its barrier and its last chunk: the
/// operators froze their state at the barrier and hand it out in chunks
/// between batches.
pub(super) struct Pending {
    pub(super) snap: PartitionSnapshot,
    /// Operators (chain index) whose chunked snapshot is still open.
    pub(super) open: VecDeque<usize>,
    pub(super) chunk_bytes: u32,
}

impl Partition {
    /// At barrier `checkpoint`: snapshot every operator and its timers and
    /// pre-commit the sink. With `chunk_bytes`, an operator that has a
    /// chunked snapshot only freezes its state here; the snapshot is then
    /// complete once [`Partition::next_chunk`] has written it out, and this
    /// returns `None`.
    pub(super) fn snapshot(
        &mut self,
        checkpoint: u64,
        chunk_bytes: Option<u32>,
    ) -> Result<Option<PartitionSnapshot>> {
        debug_assert!(
            self.pending.is_none(),
            "the previous snapshot is finished first"
        );
        let started = Instant::now();
        let mut operators = Vec::with_capacity(self.operators.len());
        let mut open = VecDeque::new();
        for (i, (op, timers)) in self.operators.iter_mut().zip(&self.timers).enumerate() {
            let state = if chunk_bytes.is_some() && op.snapshot_begin()? {
                open.push_back(i);
                Vec::new()
            } else {
                op.snapshot()?
            };
            operators.push(OperatorSnapshot {
                name: op.name().to_string(),
                digest: op.digest().to_string(),
                state_version: op.state_version()?,
                state,
                timers: timers.encode(),
                timer_count: timers.len() as u64,
            });
        }
        let sink = self.sink.pre_commit(checkpoint)?;
        let snap = PartitionSnapshot {
            id: checkpoint,
            partition: self.id,
            watermark: self.watermark,
            operators,
            sink,
            pause: started.elapsed(),
            chunk_pause: Duration::ZERO,
        };
        match chunk_bytes {
            Some(chunk_bytes) if !open.is_empty() => {
                self.pending = Some(Pending {
                    snap,
                    open,
                    chunk_bytes,
                });
                Ok(None)
            }
            _ => Ok(Some(snap)),
        }
    }

    /// Write out one chunk of the open snapshot; the snapshot once its
    /// last chunk is in.
    pub(super) fn next_chunk(&mut self) -> Result<Option<PartitionSnapshot>> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        let Some(&i) = pending.open.front() else {
            return Ok(self.pending.take().map(|p| p.snap));
        };
        let started = Instant::now();
        let chunk = self.operators[i].snapshot_next(pending.chunk_bytes)?;
        let took = started.elapsed();
        pending.snap.chunk_pause = pending.snap.chunk_pause.max(took);
        match chunk {
            Some(bytes) => {
                let state = &mut pending.snap.operators[i].state;
                if state.is_empty() {
                    *state = bytes;
                } else {
                    state.extend_from_slice(&bytes);
                }
            }
            None => {
                pending.open.pop_front();
            }
        }
        if pending.open.is_empty() {
            return Ok(self.pending.take().map(|p| p.snap));
        }
        Ok(None)
    }
}
