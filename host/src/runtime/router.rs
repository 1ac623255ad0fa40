//! The router: the runtime's side of a source ([`Output`]). It assigns each
//! record to a partition by key with Kafka's default partitioner, packs
//! records into per-partition batches, tracks the watermark and sends
//! batches to the worker thread running the partition. It also injects
//! barriers: when one is due (see [`Barriers`]) the source hands over its
//! position, the router flushes every partition's batch and sends the
//! barrier to every worker after it, so each partition snapshots exactly
//! what arrived before it.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::barrier::{Barrier, BarrierRequest, Committed, Pending, Trigger};
use super::coordinator::{Begin, CoordMsg};
use super::handoff;
use super::metrics::Metrics;
use super::swap::Probation;
use super::task::TaskMsg;
use crate::Result;
use crate::batch::{NO_TIMESTAMP, Origin, SourceBatch};
use crate::checkpoint::manifest::{Kind, checkpoint_name};
use crate::checkpoint::{check_savepoint_name, event_time_savepoint_name, savepoint_name};
use crate::sink::dead_letter::{DeadLetter, DeadLetters, Stage};
use crate::source::{Completion, Output, Position, RecordSpan};

mod partition_time;
mod route;
use partition_time::PartitionTime;

/// Resolved batching settings.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Most records per batch.
    pub max_records: usize,
    /// Most key+value bytes per batch.
    pub max_bytes: usize,
    /// Idle flush delay.
    pub linger: Duration,
}

impl Default for BatchSettings {
    /// 8192 records, 1 MiB, 50 ms (the job file's `[batch]` defaults).
    fn default() -> Self {
        Self {
            max_records: 8192,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(50),
        }
    }
}

/// Barrier scheduling: periodic checkpoints, triggered savepoints and
/// savepoints on an event-time schedule.
pub struct Barriers {
    coordinator: Sender<CoordMsg>,
    triggers: Receiver<Trigger>,
    interval: Option<Duration>,
    next_periodic: Instant,
    every_event_time: Option<i64>,
    next_event_time: Option<i64>,
    next_id: u64,
    /// What each partition's sink committed.
    committed: Arc<Committed>,
    /// Take a checkpoint when a bounded input ends (see
    /// [`Output::end_of_input`]).
    at_end: bool,
}

impl Barriers {
    /// Barriers to `coordinator`; ids start at `next_id`; the coordinator
    /// workers publish what their sinks committed in `committed`.
    pub fn new(
        coordinator: Sender<CoordMsg>,
        triggers: Receiver<Trigger>,
        (interval, every_event_time): (Option<Duration>, Option<i64>),
        next_id: u64,
        committed: Arc<Committed>,
    ) -> Self {
        Self {
            coordinator,
            triggers,
            next_periodic: Instant::now() + interval.unwrap_or(Duration::MAX / 4),
            interval,
            every_event_time: every_event_time.filter(|&e| e > 0),
            next_event_time: None,
            next_id,
            committed,
            at_end: interval.is_some(),
        }
    }

    /// Whether to take a final checkpoint at the end of a bounded input:
    /// by default when periodic checkpoints are on; a sink that commits
    /// only through checkpoints (Kafka, exactly once) needs it always.
    pub fn final_checkpoint(mut self, yes: bool) -> Self {
        self.at_end = yes;
        self
    }
}

/// Routes records to partitions in packed batches.
pub struct Router {
    /// One per worker thread; partition `p` runs on thread `p % threads`.
    senders: Vec<handoff::Sender<TaskMsg>>,
    /// The batch being filled, per partition.
    pending: Vec<SourceBatch>,
    recycled: Receiver<SourceBatch>,
    settings: BatchSettings,
    watermark_delay: i64,
    max_timestamp: i64,
    watermark: i64,
    sent_watermark: Vec<i64>,
    next_round_robin: usize,
    last_flush: Instant,
    dead_letters: Arc<DeadLetters>,
    metrics: Arc<Metrics>,
    disconnected: bool,
    /// The source's connector name, recorded with its positions.
    connector: &'static str,
    barriers: Option<Barriers>,
    /// Per-partition event time, once the source routes by partition.
    partition_time: Option<PartitionTime>,
    idle_timeout: Duration,
    /// The workers were told the input ended ([`Output::end_of_input`]).
    ended: bool,
    /// A swap on probation and the batches sent since its barrier: the
    /// periodic checkpoint waits until the probation's batches are sent,
    /// then comes at once (it ends the probation).
    swap_watch: Option<(Arc<Probation>, u64)>,
    /// Barriers the source holds a token for and has not injected yet.
    handed_out: Pending,
}

impl Router {
    /// A router over `partitions` partitions run by the workers behind
    /// `senders`.
    #[allow(clippy::too_many_arguments)] // one call site; every part is needed
    pub fn new(
        senders: Vec<handoff::Sender<TaskMsg>>,
        partitions: usize,
        recycled: Receiver<SourceBatch>,
        settings: BatchSettings,
        watermark_delay: i64,
        dead_letters: Arc<DeadLetters>,
        metrics: Arc<Metrics>,
        (connector, idle_timeout): (&'static str, Duration),
    ) -> Self {
        Self {
            pending: (0..partitions).map(|_| SourceBatch::default()).collect(),
            sent_watermark: vec![i64::MIN; partitions],
            senders,
            recycled,
            settings,
            watermark_delay,
            max_timestamp: i64::MIN,
            watermark: i64::MIN,
            next_round_robin: 0,
            last_flush: Instant::now(),
            dead_letters,
            metrics,
            disconnected: false,
            connector,
            barriers: None,
            partition_time: None,
            idle_timeout,
            ended: false,
            swap_watch: None,
            handed_out: Pending::default(),
        }
    }

    /// The watermark partition `p` gets with its next batch.
    fn watermark_of(&self, p: usize) -> i64 {
        let Some(t) = &self.partition_time else {
            return self.watermark;
        };
        let own = t.max[p].saturating_sub(self.watermark_delay);
        if t.is_idle(p) {
            own.max(self.watermark)
        } else {
            own
        }
    }

    /// With per-partition event time: the job's watermark is the slowest
    /// active partition's (every partition's when all are idle).
    fn combine_watermarks(&mut self) {
        let Some(t) = &mut self.partition_time else {
            return;
        };
        t.settle();
        let t = &*t;
        let delay = self.watermark_delay;
        let own = |p: usize| t.max[p].saturating_sub(delay);
        let active = (0..t.max.len()).filter(|&p| !t.is_idle(p));
        let combined = active
            .map(own)
            .min()
            .unwrap_or_else(|| (0..t.max.len()).map(own).min().unwrap_or(i64::MIN));
        self.watermark = self.watermark.max(combined);
    }

    /// Inject checkpoint barriers through `barriers`.
    pub fn with_barriers(mut self, barriers: Barriers) -> Self {
        self.barriers = Some(barriers);
        self
    }

    /// Continue from a restored watermark and largest event time.
    pub fn resume_event_time(&mut self, watermark: i64, max_event_time: i64) {
        self.watermark = watermark;
        self.max_timestamp = max_event_time;
        self.sent_watermark.iter_mut().for_each(|w| *w = watermark);
    }

    fn partitions(&self) -> usize {
        self.pending.len()
    }

    /// Send `partition`'s pending batch; `full` when it closed at its size
    /// limit (more follow right behind it: the worker need not wake for it
    /// alone).
    fn send(&mut self, partition: usize, full: bool) -> ControlFlow<()> {
        let fresh = self.recycled.try_recv().map(|mut b| {
            b.clear();
            b
        });
        let batch = std::mem::replace(&mut self.pending[partition], fresh.unwrap_or_default());
        self.metrics.add_read(batch.data.len() as u64, 0);
        if let Some((_, sent)) = &mut self.swap_watch {
            *sent += 1;
        }
        let watermark = self.watermark_of(partition);
        self.sent_watermark[partition] = watermark;
        self.deliver_as(
            partition % self.senders.len(),
            TaskMsg::Batch {
                partition,
                batch,
                watermark,
            },
            !full,
        )
    }

    fn deliver(&mut self, thread: usize, msg: TaskMsg) -> ControlFlow<()> {
        self.deliver_as(thread, msg, true)
    }

    fn deliver_as(&mut self, thread: usize, msg: TaskMsg, urgent: bool) -> ControlFlow<()> {
        match self.senders[thread].send(msg, urgent) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => {
                self.disconnected = true;
                ControlFlow::Break(())
            }
        }
    }

    /// Flush and hang up: the workers then drain and finish. At the end of
    /// the input they also fire all remaining timers.
    pub fn finish(mut self, completion: Completion) -> ControlFlow<()> {
        let mut r = Output::flush(&mut self);
        if completion == Completion::EndOfInput && !self.ended {
            for thread in 0..self.senders.len() {
                if self.deliver(thread, TaskMsg::EndOfInput).is_break() {
                    r = ControlFlow::Break(());
                }
            }
        }
        self.senders.clear();
        r
    }
}

impl Output for Router {
    #[inline]
    fn record(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()> {
        let partition = match key {
            Some(k) => self.key_partition(k),
            None => {
                self.next_round_robin = (self.next_round_robin + 1) % self.partitions();
                self.next_round_robin
            }
        };
        if timestamp != NO_TIMESTAMP && timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
            self.watermark = timestamp.saturating_sub(self.watermark_delay);
        }
        self.push(partition, key.unwrap_or_default(), value, timestamp, origin)
    }

    #[inline]
    fn record_in(
        &mut self,
        partition: usize,
        key: &[u8],
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()> {
        self.route_in(partition, key, value, timestamp, origin)
    }

    fn records(&mut self, text: &[u8], spans: &[RecordSpan], unit: u32) -> ControlFlow<()> {
        self.route_spans(text, spans, unit)
    }

    fn malformed(&mut self, origin: Origin, reason: &str, raw: &[u8]) -> Result<()> {
        self.dead_letters.write(&DeadLetter {
            stage: Stage::Source,
            reason,
            origin: Some(origin),
            key: None,
            value: raw,
        })?;
        self.metrics.add_malformed(1);
        Ok(())
    }

    fn tick(&mut self) -> ControlFlow<()> {
        if let Some(t) = &mut self.partition_time {
            t.settle();
        }
        if self.last_flush.elapsed() >= self.settings.linger {
            return Output::flush(self);
        }
        ControlFlow::Continue(())
    }

    fn flush(&mut self) -> ControlFlow<()> {
        self.combine_watermarks();
        for p in 0..self.partitions() {
            let watermark = self.watermark_of(p);
            if !self.pending[p].data.is_empty() {
                self.send(p, false)?;
            } else if self.sent_watermark[p] < watermark {
                self.sent_watermark[p] = watermark;
                self.deliver(
                    p % self.senders.len(),
                    TaskMsg::Watermark {
                        partition: p,
                        watermark,
                    },
                )?;
            }
        }
        self.last_flush = Instant::now();
        ControlFlow::Continue(())
    }

    fn barrier_due(&mut self) -> Option<Barrier> {
        let req = self.request_due()?;
        Some(self.handed_out.hand_out(req))
    }

    #[inline]
    fn event_time_barrier(&mut self, timestamp: i64) -> Option<Barrier> {
        let req = self.event_time_request(timestamp)?;
        Some(self.handed_out.hand_out(req))
    }

    fn next_barrier_id(&self) -> Option<u64> {
        self.barriers.as_ref().map(|b| b.next_id)
    }

    fn committed_checkpoint(&self) -> Option<u64> {
        let id = self.barriers.as_ref()?.committed.all();
        (id > 0).then_some(id)
    }

    fn barrier(&mut self, token: Barrier, position: Position) -> ControlFlow<()> {
        match self.handed_out.take(token) {
            Some(req) => self.inject(req, position),
            None => {
                tracing::error!("a source handed back a barrier token twice; ignored");
                ControlFlow::Continue(())
            }
        }
    }

    fn end_of_input(&mut self, position: Position) -> ControlFlow<()> {
        Output::flush(self)?;
        for thread in 0..self.senders.len() {
            self.deliver(thread, TaskMsg::EndOfInput)?;
        }
        self.ended = true;
        if !self.barriers.as_ref().is_some_and(|b| b.at_end) {
            return ControlFlow::Continue(());
        }
        self.inject(BarrierRequest::checkpoint(), position)
    }

    fn is_stopping(&self) -> bool {
        self.disconnected
    }

    fn read_bytes(&mut self, n: u64) {
        self.metrics.add_read(0, n);
    }

    fn unit_done(&mut self) {
        self.metrics.add_file();
    }

    fn report_lag(&mut self, lag: &[i64], age_ms: &[i64]) {
        self.metrics.set_lag(lag, age_ms);
    }
}

impl Router {
    /// The barrier due now, if any: a trigger, the end of a probation,
    /// the checkpoint interval.
    fn request_due(&mut self) -> Option<BarrierRequest> {
        let b = self.barriers.as_mut()?;
        match b.triggers.try_recv() {
            Ok(Trigger::Savepoint { name, stop, reply }) => {
                // An empty name asks for the default one, as over HTTP.
                let name = name.filter(|n| !n.is_empty());
                match name.as_deref().map(check_savepoint_name) {
                    Some(Err(refused)) => {
                        // Neither a savepoint nor a stop: the asker hears
                        // why, and the schedule below goes on.
                        tracing::warn!("savepoint refused: {refused}");
                        if let Some(r) = reply {
                            let _ = r.send(Err(refused.to_string()));
                        }
                    }
                    _ => {
                        return Some(BarrierRequest {
                            kind: Kind::Savepoint,
                            name,
                            stop,
                            reply,
                            swap: None,
                        });
                    }
                }
            }
            Ok(Trigger::Checkpoint { stop }) => {
                return Some(BarrierRequest {
                    stop,
                    ..BarrierRequest::checkpoint()
                });
            }
            Ok(Trigger::Swap { probation }) => {
                return Some(BarrierRequest {
                    kind: Kind::Savepoint,
                    name: Some(format!("swap-{}", probation.order.seq)),
                    stop: false,
                    reply: None,
                    swap: Some(probation),
                });
            }
            Err(_) => {}
        }
        let now = Instant::now();
        if let Some((p, sent)) = &self.swap_watch {
            // The checkpoint that ends a probation comes once its batches
            // are sent; a periodic one due meanwhile waits (for input, up
            // to the probation's deadline, which rolls the swap back).
            if p.has_failed() {
                // Rolled back already: the next barrier comes on schedule.
            } else if p.end_due(*sent) {
                if let Some(i) = b.interval {
                    b.next_periodic = now + i;
                }
                return Some(BarrierRequest::checkpoint());
            } else {
                return None;
            }
        }
        if now >= b.next_periodic {
            b.next_periodic = now + b.interval.unwrap_or(Duration::MAX / 4);
            return Some(BarrierRequest::checkpoint());
        }
        None
    }

    /// The event-time savepoint due before a record at `timestamp`.
    #[inline]
    fn event_time_request(&mut self, timestamp: i64) -> Option<BarrierRequest> {
        let b = self.barriers.as_mut()?;
        let every = b.every_event_time?;
        if timestamp == NO_TIMESTAMP {
            return None;
        }
        let after = timestamp
            .max(self.max_timestamp)
            .saturating_sub(self.watermark_delay);
        // The next multiple of `every` after `t`; none past the end of
        // time, so extreme event times end the schedule instead of
        // wrapping around (which would take a savepoint per record).
        let after_t = |t: i64| {
            t.div_euclid(every)
                .checked_add(1)
                .and_then(|n| n.checked_mul(every))
                .unwrap_or(i64::MAX)
        };
        let next = *b
            .next_event_time
            .get_or_insert_with(|| after_t(self.watermark.max(after)));
        if after < next || next == i64::MAX {
            return None;
        }
        b.next_event_time = Some(after_t(after));
        Some(BarrierRequest {
            kind: Kind::Savepoint,
            name: Some(event_time_savepoint_name(next)),
            stop: false,
            reply: None,
            swap: None,
        })
    }

    /// Inject `req` after everything routed so far, at `position`.
    fn inject(&mut self, req: BarrierRequest, position: Position) -> ControlFlow<()> {
        self.combine_watermarks();
        let Some(b) = self.barriers.as_mut() else {
            if let Some(r) = req.reply {
                let _ = r.send(Err("this job has no state store configured".into()));
            }
            return if req.stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            };
        };
        let id = b.next_id;
        b.next_id += 1;
        let name = match req.kind {
            Kind::Checkpoint => checkpoint_name(id),
            Kind::Savepoint => req.name.unwrap_or_else(|| savepoint_name(id)),
        };
        let wall_time_ms = crate::clock::now_ms();
        let begin = Begin {
            id,
            kind: req.kind,
            name,
            connector: self.connector,
            source: position,
            watermark: self.watermark,
            max_event_time: self.max_timestamp,
            wall_time_ms,
            reply: req.reply,
        };
        let _ = b.coordinator.send(CoordMsg::Begin(begin));
        for p in 0..self.partitions() {
            if !self.pending[p].data.is_empty() {
                self.send(p, false)?;
            }
        }
        // A swap barrier starts a probation; the next barrier ends it.
        self.swap_watch = req.swap.clone().map(|p| (p, 0));
        for thread in 0..self.senders.len() {
            let msg = match &req.swap {
                Some(p) => TaskMsg::Swap {
                    id,
                    probation: p.clone(),
                },
                None => TaskMsg::Barrier(id),
            };
            self.deliver(thread, msg)?;
        }
        if let Some(p) = &req.swap {
            p.injected(id);
        }
        if req.stop {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}
