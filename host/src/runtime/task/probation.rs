//! A partition while a swapped-in version is on probation: the swap at
//! the barrier, the output and dead letters held back, the input kept,
//! and the way back (rollback and replay) or forward (release).

use std::time::{Duration, Instant};

use super::partition::Partition;
use super::timers::Timers;
use super::{Shared, TaskStats};
use crate::batch::{Batch, Origin, SourceBatch};
use crate::plugin::Operator;
use crate::runtime::coordinator::PartitionSnapshot;
use crate::runtime::swap::{Pause, Probation};
use crate::sink::dead_letter::{DeadLetter, Stage};
use crate::{Error, Result};

/// Chunk size of the snapshot taken at a swap barrier: the whole state is
/// needed at once, so chunks are large.
const SWAP_CHUNK_BYTES: u32 = 4 << 20;

/// Time since `t` and now; `t` becomes now.
fn lap(t: &mut Instant) -> Duration {
    let now = Instant::now();
    let d = now - *t;
    *t = now;
    d
}

/// A partition while a swapped-in version is on probation: what it needs
/// to go back to the swap barrier and run the kept input again on the old
/// version, and the output it holds back until the probation passes.
pub(super) struct OnProbation {
    /// The swapped operator (chain index).
    pub(super) operator: usize,
    /// The old instance, as it was at the swap barrier.
    pub(super) old: Box<dyn Operator>,
    /// The other operators' state at the barrier (chain index, state,
    /// version), for chains of more than one operator.
    pub(super) others: Vec<(usize, Vec<u8>, u32)>,
    /// Timers and watermark at the barrier.
    pub(super) timers: Vec<Timers>,
    pub(super) watermark: i64,
    /// Input since the barrier, in order.
    pub(super) input: Vec<Kept>,
    /// Output since the barrier, written once the probation passes.
    pub(super) held: Vec<Batch>,
    /// Dead letters since the barrier, likewise.
    pub(super) held_dead: Vec<HeldDeadLetter>,
}

/// Input kept during a probation.
pub(super) enum Kept {
    Batch(SourceBatch, i64),
    Watermark(i64),
    End,
}

/// A dead letter held back during a probation.
pub(super) struct HeldDeadLetter {
    pub(super) operator: usize,
    pub(super) reason: String,
    pub(super) origin: Option<Origin>,
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
}

impl Partition {
    /// At swap barrier `checkpoint`: snapshot every operator (blocking: the
    /// new instance needs the state now), create the new version of the
    /// swapped operator in its own store and restore the snapshot into it.
    /// Returns the snapshot (the old version's, for the savepoint) and the
    /// pause, or why the new version failed (the partition then runs on
    /// the old one, untouched).
    pub(super) fn swap_in(
        &mut self,
        checkpoint: u64,
        probation: &Probation,
    ) -> Result<(PartitionSnapshot, Result<Pause, String>)> {
        let mut t = Instant::now();
        // The state now, in one go: through the chunked snapshot where the
        // plugin has one (no sort; large chunks), else the blocking one.
        let mut snap = self.snapshot(checkpoint, Some(SWAP_CHUNK_BYTES))?;
        while snap.is_none() {
            snap = self.next_chunk()?;
        }
        let mut snap = snap.ok_or_else(|| Error::Internal("no snapshot at the swap".into()))?;
        let snapshot = lap(&mut t);
        let order = &probation.order;
        let i = order.operator;
        let mut new = match order.factory.create(self.id) {
            Ok(op) => op,
            Err(e) => return Ok((snap, Err(e.to_string()))),
        };
        let instantiate = lap(&mut t);
        let s = &snap.operators[i];
        let restored = new
            .restore(&s.state, s.state_version)
            .and_then(|()| order.factory.init(new.as_mut()));
        let restore = lap(&mut t);
        let pause = Pause::of(snapshot, instantiate, restore);
        snap.pause = snap.pause.max(snapshot + instantiate + restore);
        if let Err(e) = restored {
            return Ok((snap, Err(e.to_string())));
        }
        let others = if self.operators.len() > 1 {
            snap.operators
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, o)| (j, o.state.clone(), o.state_version))
                .collect()
        } else {
            Vec::new()
        };
        let old = std::mem::replace(&mut self.operators[i], new);
        self.probation = Some(Box::new(OnProbation {
            operator: i,
            old,
            others,
            timers: self.timers.clone(),
            watermark: self.watermark,
            input: Vec::new(),
            held: Vec::new(),
            held_dead: Vec::new(),
        }));
        Ok((snap, Ok(pause)))
    }

    /// The new version failed: go back to the swap barrier on the old
    /// instance (state, timers, watermark), drop what the new one held
    /// back, and run the kept input again.
    pub(super) fn roll_back(&mut self, shared: &Shared, stats: &mut TaskStats) -> Result<()> {
        let Some(p) = self.probation.take() else {
            return Ok(());
        };
        let p = *p;
        self.operators[p.operator] = p.old;
        for (j, state, version) in &p.others {
            self.operators[*j].restore(state, *version)?;
        }
        self.timers = p.timers;
        self.watermark = p.watermark;
        for kept in &p.input {
            if let Kept::Batch(..) = kept {
                stats.batches_replayed += 1;
            }
            self.run(kept, shared, stats)?;
        }
        Ok(())
    }

    /// Run one piece of input (as it is kept) through the partition.
    pub(super) fn run(
        &mut self,
        input: &Kept,
        shared: &Shared,
        stats: &mut TaskStats,
    ) -> Result<()> {
        match input {
            Kept::Batch(batch, watermark) => self.process(batch, *watermark, shared, stats),
            Kept::Watermark(w) => self.advance(*w, shared, stats),
            Kept::End => self.advance(i64::MAX, shared, stats),
        }
    }

    /// The new version passed its probation: write what it held back and
    /// let the old instance go.
    pub(super) fn release(&mut self, shared: &Shared, stats: &mut TaskStats) -> Result<()> {
        let Some(p) = self.probation.take() else {
            return Ok(());
        };
        for batch in &p.held {
            self.sink.write(batch)?;
            stats.records_out += batch.len() as u64;
            shared.metrics.add_emitted(batch.len() as u64);
            if let Some(f) = shared.metrics.chain() {
                f.partition(self.id, 0, batch.len(), self.watermark);
            }
        }
        for d in &p.held_dead {
            shared.dead_letters.write(&DeadLetter {
                stage: Stage::Operator {
                    operator: self.operators[d.operator].name(),
                    partition: self.id,
                },
                reason: &d.reason,
                origin: d.origin,
                key: Some(&d.key),
                value: &d.value,
            })?;
        }
        Ok(())
    }

    /// Keep `input` while on probation; it comes back when not.
    pub(super) fn keep(&mut self, input: Kept) -> Option<Kept> {
        match self.probation.as_mut() {
            Some(p) => {
                p.input.push(input);
                None
            }
            None => Some(input),
        }
    }
}
