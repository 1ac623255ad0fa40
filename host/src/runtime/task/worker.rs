//! A worker thread: runs the partitions `p` with `p % parallelism ==
//! thread`, takes snapshots at barriers, commits or aborts at the
//! coordinator's decisions, and takes part in swaps.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::partition::Partition;
use super::probation::Kept;
use super::{Shared, TaskMsg, TaskStats};
use crate::batch::SourceBatch;
use crate::runtime::coordinator::{CoordMsg, Decision};
use crate::runtime::swap::Probation;
use crate::sink::End;
use crate::{Error, Result};

/// How long a worker's input must be idle before it flushes its sinks.
const IDLE_FLUSH: Duration = Duration::from_millis(100);

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
    /// The newest checkpoint committed (0: none yet).
    last_committed: u64,
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
            last_committed: 0,
            swap: None,
            promoting: None,
        }
    }

    /// Process messages until the router hangs up, settle the checkpoints
    /// still undecided, and end the sinks (final at the end of the input).
    /// Emptied batches go back to the router through `recycle`.
    pub fn run(
        mut self,
        input: crate::runtime::handoff::Receiver<TaskMsg>,
        decisions: Receiver<Decision>,
        recycle: Sender<SourceBatch>,
    ) -> Result<TaskStats> {
        let mut unflushed = false;
        let mut end = End::Stopped;
        // The barrier of the checkpoint taken at the end of the input.
        let mut final_barrier = None;
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
                    #[cfg(feature = "failpoints")]
                    task_fails(&self.partitions, self.threads, partition)?;
                    if self.swap.is_none() {
                        let p = locate(&mut self.partitions, self.threads, partition)?;
                        p.process(&batch, watermark, &self.shared, &mut self.stats)?;
                        let _ = recycle.send(batch);
                    } else {
                        self.on_probation(partition, Kept::Batch(batch, watermark), &recycle)?;
                    }
                    unflushed = true;
                }
                Ok(TaskMsg::Watermark {
                    partition,
                    watermark,
                }) => {
                    if self.swap.is_none() {
                        let p = locate(&mut self.partitions, self.threads, partition)?;
                        p.advance(watermark, &self.shared, &mut self.stats)?;
                    } else {
                        self.on_probation(partition, Kept::Watermark(watermark), &recycle)?;
                    }
                    unflushed = true;
                }
                Ok(TaskMsg::Barrier(id)) => {
                    if end == End::EndOfInput {
                        final_barrier = Some(id);
                    }
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
                        if self.swap.is_none() {
                            let p = &mut self.partitions[i];
                            p.advance(i64::MAX, &self.shared, &mut self.stats)?;
                        } else {
                            let id = self.partitions[i].id;
                            self.on_probation(id, Kept::End, &recycle)?;
                        }
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
        if final_barrier.is_some_and(|f| self.last_committed < f) {
            // The final checkpoint failed: what no checkpoint covers stays
            // uncommitted, as after a stop, for the next run to settle.
            end = End::Stopped;
            self.stats.final_checkpoint_failed = true;
        }
        for p in &mut self.partitions {
            p.sink.end(end)?;
        }
        Ok(std::mem::take(&mut self.stats))
    }

    /// Run `input` through `partition` while a swap is open (the plain
    /// path, with no swap, does not come here): the partition keeps the
    /// input for a replay while its new version is on probation, and an
    /// error then rolls the swap back (everywhere) and the job goes on; any
    /// other error ends the worker.
    fn on_probation(
        &mut self,
        partition: usize,
        input: Kept,
        recycle: &Sender<SourceBatch>,
    ) -> Result<()> {
        let p = locate(&mut self.partitions, self.threads, partition)?;
        let done = p.run(&input, &self.shared, &mut self.stats);
        if let (Ok(()), Kept::Batch(batch, _), Some(swap)) = (&done, &input, &self.swap)
            && p.probation.is_some()
        {
            // Evidence: a batch the new version ran without failing.
            swap.checked(batch.data.len());
        }
        if let Some(Kept::Batch(batch, _)) = p.keep(input) {
            let _ = recycle.send(batch);
        }
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
        let mut passed = swap.round(id);
        if passed && let Some(why) = swap.short_of_evidence() {
            // Every worker arrived: the figures are final, and each one
            // decides the same.
            swap.fail(&why);
            passed = false;
        }
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
        // Dead letters of records before the barrier are written (the
        // source's before it sent the barrier on, this worker's before it
        // got here): made durable before the checkpoint can cover them.
        self.shared.dead_letters.flush()?;
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
                Decision::Commit(id) => {
                    self.last_committed = self.last_committed.max(id);
                    p.sink.commit(id)?;
                    self.shared.committed.set(p.id, id);
                }
                Decision::Abort(id) => p.sink.abort(id)?,
            }
        }
        #[cfg(feature = "failpoints")]
        if let Decision::Commit(_) = d {
            COMMITS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
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

/// Commit decisions the process's workers received (failpoint
/// `task-fails-after-commits`).
#[cfg(feature = "failpoints")]
static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Failpoint `task-fails-after-commits:N`: the first batch a worker
/// receives once `N` more checkpoints committed since the last time it
/// fired fails as a trap of the partition's first operator would (a
/// transient failure after progress: a restart goes on from there).
#[cfg(feature = "failpoints")]
fn task_fails(partitions: &[Partition], threads: usize, p: usize) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FIRED_AT: AtomicU64 = AtomicU64::new(0);
    let Some(n) = crate::failpoint::armed_at("task-fails-after-commits").filter(|&n| n > 0) else {
        return Ok(());
    };
    let commits = COMMITS.load(Ordering::Acquire);
    let fired = FIRED_AT.load(Ordering::Acquire);
    if commits < fired + n
        || FIRED_AT
            .compare_exchange(fired, commits, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return Ok(());
    }
    let plugin = partitions
        .get(p / threads)
        .and_then(|x| x.operators.first())
        .map(|o| o.name().to_string())
        .unwrap_or_default();
    Err(Error::Plugin {
        plugin,
        task: p,
        call: "process (failpoint task-fails-after-commits)".into(),
        detail: "a failure on purpose".into(),
    })
}
