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

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::coordinator::{CoordMsg, Decision, OperatorSnapshot, PartitionSnapshot};
use super::metrics::Metrics;
use super::swap::{Pause, Probation, lap};
use crate::batch::{Batch, Origin, Outcome, Rejection, SourceBatch, Timer};
use crate::checkpoint::manifest::encode_timers;
use crate::checkpoint::restore::{RestoredOperator, RestoredPartition};
use crate::plugin::{Operator, OperatorFactory};
use crate::sink::dead_letter::{DeadLetter, DeadLetters, Stage};
use crate::sink::{End, Sink};
use crate::{Error, Result};

/// Chunk size of the snapshot taken at a swap barrier: the whole state is
/// needed at once, so chunks are large.
const SWAP_CHUNK_BYTES: u32 = 4 << 20;

/// How long a worker's input must be idle before it flushes its sinks.
const IDLE_FLUSH: Duration = Duration::from_millis(100);

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
}

/// Registered timers of one operator, ordered by time, deduplicated.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    set: BTreeSet<(i64, Vec<u8>)>,
}

impl Timers {
    /// Register a timer (idempotent).
    pub fn register(&mut self, t: Timer) {
        self.set.insert((t.time, t.key));
    }

    /// Remove and return every timer at or before `watermark`, in order.
    pub fn due(&mut self, watermark: i64) -> Vec<Timer> {
        let later = match watermark.checked_add(1) {
            Some(next) => self.set.split_off(&(next, Vec::new())),
            None => BTreeSet::new(),
        };
        std::mem::replace(&mut self.set, later)
            .into_iter()
            .map(|(time, key)| Timer { key, time })
            .collect()
    }

    /// Encode for a checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        encode_timers(self.set.iter().map(|(time, key)| (*time, &key[..])))
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

/// A new operator instance for `partition`: created, restored from
/// `restore` if given (state written by another component digest is
/// accepted only if the plugin reads its state version), then initialized.
pub fn instantiate(
    factory: &dyn OperatorFactory,
    partition: usize,
    restore: Option<&RestoredOperator>,
) -> Result<Box<dyn Operator>> {
    let mut op = factory.create(partition)?;
    if let Some(r) = restore {
        if r.digest != op.digest() {
            let accepted = op.accepted_versions()?;
            if !accepted.contains(&r.state_version) {
                let writes = op.state_version()?;
                return Err(Error::Savepoint {
                    location: format!("operator `{}`", r.name),
                    detail: format!(
                        "its state was written by plugin {} with state version {}; the plugin now \
                         configured ({}) writes version {writes} and restores versions {accepted:?}: \
                         no version meets",
                        short(&r.digest),
                        r.state_version,
                        short(op.digest()),
                    ),
                });
            }
            tracing::warn!(
                operator = %r.name, from = short(&r.digest), to = short(op.digest()),
                version = r.state_version, "restoring state into another plugin version"
            );
        }
        op.restore(&r.state, r.state_version)?;
    }
    factory.init(op.as_mut())?;
    Ok(op)
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
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
}

/// One partition: an operator chain instance, its timers, watermark and
/// sink writer.
pub struct Partition {
    id: usize,
    operators: Vec<Box<dyn Operator>>,
    timers: Vec<Timers>,
    sink: Box<dyn Sink>,
    watermark: i64,
    /// A snapshot taken at a barrier whose state is still being written
    /// out in chunks.
    pending: Option<Pending>,
    /// A new plugin version on probation in this partition.
    probation: Option<Box<OnProbation>>,
}

/// A partition while a swapped-in version is on probation: what it needs
/// to go back to the swap barrier and run the kept input again on the old
/// version, and the output it holds back until the probation passes.
struct OnProbation {
    /// The swapped operator (chain index).
    operator: usize,
    /// The old instance, as it was at the swap barrier.
    old: Box<dyn Operator>,
    /// The other operators' state at the barrier (chain index, state,
    /// version), for chains of more than one operator.
    others: Vec<(usize, Vec<u8>, u32)>,
    /// Timers and watermark at the barrier.
    timers: Vec<Timers>,
    watermark: i64,
    /// Input since the barrier, in order.
    input: Vec<Kept>,
    /// Output since the barrier, written once the probation passes.
    held: Vec<Batch>,
    /// Dead letters since the barrier, likewise.
    held_dead: Vec<HeldDeadLetter>,
}

/// Input kept during a probation.
enum Kept {
    Batch(SourceBatch, i64),
    Watermark(i64),
    End,
}

/// A dead letter held back during a probation.
struct HeldDeadLetter {
    operator: usize,
    reason: String,
    origin: Option<Origin>,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A partition's snapshot between its barrier and its last chunk: the
/// operators froze their state at the barrier and hand it out in chunks
/// between batches.
struct Pending {
    snap: PartitionSnapshot,
    /// Operators (chain index) whose chunked snapshot is still open.
    open: VecDeque<usize>,
    chunk_bytes: u32,
}

/// A partition's operator chain, restored, before its sink exists: the
/// job creates every chain (so a plugin or state that does not fit refuses
/// the run), then settles the output, then gives each chain its sink.
pub struct Chain {
    id: usize,
    operators: Vec<Box<dyn Operator>>,
    timers: Vec<Timers>,
    watermark: i64,
}

impl Chain {
    /// Build partition `id`'s chain, instantiating every operator (restored
    /// from `restored` if given: state, timers, watermark).
    pub fn new(
        id: usize,
        factories: &[Arc<dyn OperatorFactory>],
        restored: Option<&RestoredPartition>,
    ) -> Result<Self> {
        let mut operators = Vec::with_capacity(factories.len());
        let mut timers = Vec::with_capacity(factories.len());
        for (i, f) in factories.iter().enumerate() {
            let r = restored.and_then(|t| t.operators.get(i));
            operators.push(instantiate(f.as_ref(), id, r)?);
            let mut t = Timers::default();
            for timer in r.map(|r| r.timers.clone()).unwrap_or_default() {
                t.register(timer);
            }
            timers.push(t);
        }
        Ok(Self {
            id,
            operators,
            timers,
            watermark: restored.map_or(i64::MIN, |t| t.watermark),
        })
    }

    /// The partition, writing to `sink`.
    pub fn with_sink(self, sink: Box<dyn Sink>) -> Partition {
        Partition {
            id: self.id,
            operators: self.operators,
            timers: self.timers,
            sink,
            watermark: self.watermark,
            pending: None,
            probation: None,
        }
    }
}

impl Partition {
    /// At barrier `checkpoint`: snapshot every operator and its timers and
    /// pre-commit the sink. With `chunk_bytes`, an operator that has a
    /// chunked snapshot only freezes its state here; the snapshot is then
    /// complete once [`Partition::next_chunk`] has written it out, and this
    /// returns `None`.
    fn snapshot(
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
    fn next_chunk(&mut self) -> Result<Option<PartitionSnapshot>> {
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

    /// At swap barrier `checkpoint`: snapshot every operator (blocking: the
    /// new instance needs the state now), create the new version of the
    /// swapped operator in its own store and restore the snapshot into it.
    /// Returns the snapshot (the old version's, for the savepoint) and the
    /// pause, or why the new version failed (the partition then runs on
    /// the old one, untouched).
    fn swap_in(
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
    fn roll_back(&mut self, shared: &Shared, stats: &mut TaskStats) -> Result<()> {
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
        for kept in p.input {
            match kept {
                Kept::Batch(batch, watermark) => {
                    stats.batches_replayed += 1;
                    self.process(&batch, watermark, shared, stats)?;
                }
                Kept::Watermark(w) => self.advance(w, shared, stats)?,
                Kept::End => self.advance(i64::MAX, shared, stats)?,
            }
        }
        Ok(())
    }

    /// The new version passed its probation: write what it held back and
    /// let the old instance go.
    fn release(&mut self, shared: &Shared, stats: &mut TaskStats) -> Result<()> {
        let Some(p) = self.probation.take() else {
            return Ok(());
        };
        for batch in &p.held {
            self.sink.write(batch)?;
            stats.records_out += batch.len() as u64;
            shared.metrics.add_emitted(batch.len() as u64);
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
    fn keep(&mut self, input: Kept) -> Option<Kept> {
        match self.probation.as_mut() {
            Some(p) => {
                p.input.push(input);
                None
            }
            None => Some(input),
        }
    }

    /// Run one source batch through the chain, then fire due timers.
    fn process(
        &mut self,
        batch: &SourceBatch,
        watermark: i64,
        shared: &Shared,
        stats: &mut TaskStats,
    ) -> Result<()> {
        stats.batches += 1;
        stats.records_in += batch.data.len() as u64;
        self.chain(
            0,
            &batch.data,
            Some(&batch.origins),
            watermark,
            shared,
            stats,
        )?;
        self.advance(watermark, shared, stats)
    }

    /// Fire the timers due at `watermark`, operator by operator.
    fn advance(&mut self, watermark: i64, shared: &Shared, stats: &mut TaskStats) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        for i in 0..self.operators.len() {
            loop {
                let due = self.timers[i].due(watermark);
                if due.is_empty() {
                    break;
                }
                stats.timers_fired += due.len() as u64;
                let out = self.operators[i].on_timers(&due, watermark)?;
                self.register(i, out.timers);
                if !out.emitted.is_empty() {
                    self.chain(i + 1, &out.emitted, None, watermark, shared, stats)?;
                }
            }
        }
        Ok(())
    }

    fn register(&mut self, op: usize, timers: Vec<Timer>) {
        for t in timers {
            self.timers[op].register(t);
        }
    }

    /// Run `input` through operators `start..` and write the result.
    fn chain(
        &mut self,
        start: usize,
        input: &Batch,
        origins: Option<&[Origin]>,
        watermark: i64,
        shared: &Shared,
        stats: &mut TaskStats,
    ) -> Result<()> {
        let mut owned: Option<Batch> = None;
        for i in start..self.operators.len() {
            let current = owned.as_ref().unwrap_or(input);
            if current.is_empty() {
                return Ok(());
            }
            let out: Outcome = self.operators[i].process(current, watermark)?;
            if !out.rejected.is_empty() {
                let origins = if i == start { origins } else { None };
                self.dead_letter(i, current, origins, &out.rejected, shared)?;
                stats.rejected += out.rejected.len() as u64;
            }
            self.register(i, out.timers);
            owned = Some(out.emitted);
        }
        let last = owned.as_ref().unwrap_or(input);
        if !last.is_empty() {
            if let Some(p) = self.probation.as_mut() {
                p.held.push(owned.unwrap_or_else(|| input.clone()));
                return Ok(());
            }
            self.sink.write(last)?;
            stats.records_out += last.len() as u64;
            shared.metrics.add_emitted(last.len() as u64);
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        op: usize,
        batch: &Batch,
        origins: Option<&[Origin]>,
        rejected: &[Rejection],
        shared: &Shared,
    ) -> Result<()> {
        for r in rejected {
            let i = r.index as usize;
            let rec = batch
                .get(i)
                .ok_or_else(|| Error::Internal(format!("rejection index {i} out of range")))?;
            let origin = origins.and_then(|o| o.get(i)).copied();
            if let Some(p) = self.probation.as_mut() {
                p.held_dead.push(HeldDeadLetter {
                    operator: op,
                    reason: r.reason.clone(),
                    origin,
                    key: rec.key.to_vec(),
                    value: rec.value.to_vec(),
                });
                continue;
            }
            shared.dead_letters.write(&DeadLetter {
                stage: Stage::Operator {
                    operator: self.operators[op].name(),
                    partition: self.id,
                },
                reason: &r.reason,
                origin,
                key: Some(rec.key),
                value: rec.value,
            })?;
        }
        Ok(())
    }
}

/// A worker thread's partitions and channels.
pub struct Worker {
    /// Number of threads: partition `p` is at `partitions[p / threads]`.
    threads: usize,
    partitions: Vec<Partition>,
    shared: Shared,
    stats: TaskStats,
    /// Where snapshots go at barriers (`None`: no checkpointing).
    coordinator: Option<Sender<CoordMsg>>,
    /// Chunk size of chunked snapshots (`None`: blocking snapshots).
    chunk_bytes: Option<u32>,
    /// Checkpoints pre-committed and not yet decided, oldest first.
    undecided: Vec<u64>,
    /// A plugin swap between its barrier and the end of its probation.
    swap: Option<Arc<Probation>>,
    /// A swap that passed probation, promoted once its checkpoint
    /// completes.
    promoting: Option<Arc<Probation>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A worker that ends during a probation (an error: the job fails)
        // rolls the swap back; the other workers no longer wait for it at
        // the swap's barriers.
        if let Some(p) = self.swap.take() {
            p.fail("a worker ended during the probation");
        }
        self.shared
            .workers_gone
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Worker {
    /// Thread `thread` of `threads`, running `partitions` (each with
    /// `p % threads == thread`, in increasing order). Snapshots go to
    /// `coordinator`, written out in chunks of `chunk_bytes` between batches
    /// where the operators can (`None`: in one blocking call at the barrier).
    pub fn new(
        thread: usize,
        threads: usize,
        partitions: Vec<Partition>,
        shared: Shared,
        coordinator: Option<Sender<CoordMsg>>,
        chunk_bytes: Option<u32>,
    ) -> Self {
        debug_assert!(partitions.iter().all(|p| p.id % threads == thread));
        Self {
            threads,
            partitions,
            shared,
            stats: TaskStats::default(),
            coordinator,
            chunk_bytes,
            undecided: Vec::new(),
            swap: None,
            promoting: None,
        }
    }

    /// Process messages until the router hangs up, settle the checkpoints
    /// still undecided, and end the sinks (final at the end of the input).
    /// Emptied batches go back to the router through `recycle`.
    pub fn run(
        mut self,
        input: Receiver<TaskMsg>,
        decisions: Receiver<Decision>,
        recycle: Sender<SourceBatch>,
    ) -> Result<TaskStats> {
        let mut unflushed = false;
        let mut end = End::Stopped;
        loop {
            // Decisions first, without waiting: the input path stays a
            // plain channel receive (a select over both costs a third of
            // the throughput of a fast plugin).
            while let Ok(d) = decisions.try_recv() {
                self.decide(d)?;
            }
            if self.swap.as_ref().is_some_and(|p| p.has_failed()) {
                // The new version failed in another worker.
                self.roll_back_all()?;
            }
            let msg = if self.snapshots_open() {
                // A snapshot is being written out: one chunk per message,
                // and chunks back to back while the input is idle.
                self.next_chunk()?;
                match input.try_recv() {
                    Ok(m) => Ok(m),
                    Err(TryRecvError::Empty) => continue,
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            } else {
                input.recv_timeout(IDLE_FLUSH)
            };
            match msg {
                Ok(TaskMsg::Batch {
                    partition,
                    batch,
                    watermark,
                }) => {
                    if self.snapshots_open() {
                        self.stats.batches_during_snapshots += 1;
                    }
                    let p = locate(&mut self.partitions, self.threads, partition)?;
                    let done = p.process(&batch, watermark, &self.shared, &mut self.stats);
                    if let Some(Kept::Batch(batch, _)) = p.keep(Kept::Batch(batch, watermark)) {
                        let _ = recycle.send(batch);
                    }
                    self.on_probation(done)?;
                    unflushed = true;
                }
                Ok(TaskMsg::Watermark {
                    partition,
                    watermark,
                }) => {
                    let p = locate(&mut self.partitions, self.threads, partition)?;
                    let done = p.advance(watermark, &self.shared, &mut self.stats);
                    let _ = p.keep(Kept::Watermark(watermark));
                    self.on_probation(done)?;
                    unflushed = true;
                }
                Ok(TaskMsg::Barrier(id)) => {
                    self.finish_snapshots()?;
                    self.end_probation(id)?;
                    self.checkpoint(id)?;
                }
                Ok(TaskMsg::Swap { id, probation }) => {
                    self.finish_snapshots()?;
                    // The barrier ends an earlier swap's probation first
                    // (one that failed: a new swap waits for the rest).
                    self.end_probation(id)?;
                    self.swap_at(id, probation)?;
                }
                Ok(TaskMsg::EndOfInput) => {
                    for i in 0..self.partitions.len() {
                        let p = &mut self.partitions[i];
                        let done = p.advance(i64::MAX, &self.shared, &mut self.stats);
                        let _ = p.keep(Kept::End);
                        self.on_probation(done)?;
                    }
                    end = End::EndOfInput;
                    unflushed = true;
                }
                Err(RecvTimeoutError::Timeout) if unflushed => {
                    // Input is idle (a `follow` run waiting for files):
                    // make what was written so far visible.
                    for p in &mut self.partitions {
                        p.sink.flush()?;
                    }
                    self.shared.dead_letters.flush()?;
                    unflushed = false;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.finish_snapshots()?;
        // A probation still open at the end is decided now.
        self.end_probation(u64::MAX)?;
        self.settle(decisions)?;
        for p in &mut self.partitions {
            p.sink.end(end)?;
        }
        Ok(std::mem::take(&mut self.stats))
    }

    /// The result of running input through a partition: an error while a
    /// new version is on probation rolls the swap back (everywhere) and the
    /// job goes on; any other error ends the worker.
    fn on_probation(&mut self, done: Result<()>) -> Result<()> {
        let Err(e) = done else {
            return Ok(());
        };
        let on_probation = self.partitions.iter().any(|p| p.probation.is_some());
        match self.swap.clone() {
            Some(swap) if on_probation => {
                swap.fail(&e.to_string());
                self.roll_back_all()
            }
            _ => Err(e),
        }
    }

    /// Roll every partition of this worker back to the old version.
    fn roll_back_all(&mut self) -> Result<()> {
        for p in &mut self.partitions {
            p.roll_back(&self.shared, &mut self.stats)?;
        }
        Ok(())
    }

    /// Swap barrier `id`: snapshot each partition for the savepoint, swap
    /// in the new version, then meet the other workers: if the new version
    /// failed to restore anywhere, every partition stays on the old one.
    fn swap_at(&mut self, id: u64, probation: Arc<Probation>) -> Result<()> {
        let Some(coordinator) = self.coordinator.clone() else {
            return Err(Error::Internal("a swap barrier without checkpoints".into()));
        };
        // Set first: if this worker fails here, the others stop waiting.
        self.swap = Some(probation.clone());
        let mut failure = None;
        for p in &mut self.partitions {
            let (snap, swapped) = p.swap_in(id, &probation)?;
            match swapped {
                Ok(pause) => probation.add_pause(&pause),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
            let _ = coordinator.send(CoordMsg::Partition(snap));
        }
        self.undecided.push(id);
        if let Some(cause) = failure {
            probation.fail(&cause);
        }
        if !probation.round(id) {
            self.roll_back_all()?;
        }
        probation.swapped();
        Ok(())
    }

    /// At barrier `id` (`u64::MAX`: the end of the run) after a swap:
    /// meet the other workers; the new version passed if it failed
    /// nowhere, and what it held back is written before the snapshot;
    /// else every partition rolls back.
    fn end_probation(&mut self, id: u64) -> Result<()> {
        let Some(swap) = self.swap.take() else {
            return Ok(());
        };
        let passed = swap.round(id);
        if passed {
            for p in &mut self.partitions {
                p.release(&self.shared, &mut self.stats)?;
            }
            swap.passed(id);
            self.promoting = Some(swap.clone());
        } else {
            self.roll_back_all()?;
        }
        Ok(())
    }

    /// At barrier `id`: snapshot every partition and hand it to the
    /// coordinator.
    fn checkpoint(&mut self, id: u64) -> Result<()> {
        let Some(coordinator) = self.coordinator.clone() else {
            return Ok(());
        };
        for p in &mut self.partitions {
            if let Some(snap) = p.snapshot(id, self.chunk_bytes)? {
                let _ = coordinator.send(CoordMsg::Partition(snap));
            }
        }
        self.undecided.push(id);
        Ok(())
    }

    /// Write out one chunk of the first partition's open snapshot, and
    /// hand the snapshot over once it is complete.
    fn next_chunk(&mut self) -> Result<()> {
        let Some(p) = self.partitions.iter_mut().find(|p| p.pending.is_some()) else {
            return Ok(());
        };
        self.stats.snapshot_chunks += 1;
        if let Some(snap) = p.next_chunk()?
            && let Some(coordinator) = &self.coordinator
        {
            let _ = coordinator.send(CoordMsg::Partition(snap));
        }
        Ok(())
    }

    /// Write out every open snapshot (before the next barrier, and at the
    /// end).
    fn finish_snapshots(&mut self) -> Result<()> {
        while self.snapshots_open() {
            self.next_chunk()?;
        }
        Ok(())
    }

    /// Whether a partition has a chunked snapshot still being written out.
    fn snapshots_open(&self) -> bool {
        self.partitions.iter().any(|p| p.pending.is_some())
    }

    /// Commit or abort what checkpoint `d` covers in every sink.
    fn decide(&mut self, d: Decision) -> Result<()> {
        for p in &mut self.partitions {
            match d {
                Decision::Commit(id) => p.sink.commit(id)?,
                Decision::Abort(id) => p.sink.abort(id)?,
            }
        }
        if let (Decision::Commit(id), Some(swap)) = (d, &self.promoting) {
            swap.committed(id);
            if swap.is_over() {
                self.promoting = None;
            }
        }
        match d {
            Decision::Commit(id) => self.undecided.retain(|&u| u > id),
            Decision::Abort(id) => self.undecided.retain(|&u| u != id),
        }
        Ok(())
    }

    /// The input ended: wait for the decision on every checkpoint this
    /// worker pre-committed. The coordinator decides each one once every
    /// partition has reported (or answers abort when it can no longer
    /// complete), so this ends.
    fn settle(&mut self, decisions: Receiver<Decision>) -> Result<()> {
        // Hang up first: the coordinator finishes once every sender is gone.
        self.coordinator = None;
        while !self.undecided.is_empty() {
            match decisions.recv() {
                Ok(d) => self.decide(d)?,
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// The partition `p` among a worker's `partitions` (each `q` with
/// `q % threads == thread`, in order, so `p` is at `p / threads`).
fn locate(partitions: &mut [Partition], threads: usize, p: usize) -> Result<&mut Partition> {
    partitions
        .get_mut(p / threads)
        .filter(|x| x.id == p)
        .ok_or_else(|| Error::Internal(format!("partition {p} is not on this thread")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_once() {
        let mut t = Timers::default();
        for (k, time) in [("b", 20), ("a", 10), ("a", 10), ("c", 30)] {
            t.register(Timer {
                key: k.into(),
                time,
            });
        }
        assert_eq!(t.len(), 3);
        let due: Vec<_> = t.due(20).into_iter().map(|t| (t.key, t.time)).collect();
        assert_eq!(due, vec![(b"a".to_vec(), 10), (b"b".to_vec(), 20)]);
        assert!(t.due(29).is_empty());
        assert_eq!(t.due(i64::MAX).len(), 1);
        assert_eq!(t.len(), 0);
    }
}
