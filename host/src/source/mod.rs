//! Sources and the [`Router`] they feed. A source produces records with
//! their origin; the router (runtime side) assigns each to a task by key with
//! Kafka's default partitioner, packs them into batches, tracks the
//! watermark and sends batches to task threads. The runtime knows nothing
//! about files: a source is anything that implements [`Source`].

pub mod file;
pub mod format;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::batch::{NO_TIMESTAMP, Origin, SourceBatch};
use crate::checkpoint::manifest::{Kind, SourcePosition, checkpoint_name};
use crate::checkpoint::{
    Begin, CoordMsg, Reply, Trigger, event_time_savepoint_name, savepoint_name,
};
use crate::config::BatchSettings;
use crate::metrics::Metrics;
use crate::partition::partition_for_key;
use crate::sink::dead_letter::{DeadLetter, DeadLetters, Stage};
use crate::task::TaskMsg;
use crate::{Error, Result};

/// Names of the files a source has opened, indexed by [`Origin::file`].
pub type FileTable = Arc<RwLock<Vec<PathBuf>>>;

/// How a source run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The input ended (a bounded source read everything).
    EndOfInput,
    /// The job was stopped (Ctrl-C, `weir stop`, a failed task).
    Stopped,
}

/// A source of records.
pub trait Source: Send {
    /// Produce records into `router` until the input ends or the job stops.
    fn run(&mut self, router: &mut Router) -> Result<Completion>;
}

/// A barrier the source should inject at its next record boundary.
#[derive(Debug)]
pub struct BarrierRequest {
    kind: Kind,
    name: Option<String>,
    stop: bool,
    reply: Option<Reply>,
}

/// Barrier injection: periodic checkpoints, triggered savepoints and
/// savepoints on an event-time schedule.
pub struct Barriers {
    coordinator: Sender<CoordMsg>,
    triggers: Receiver<Trigger>,
    interval: Option<Duration>,
    next_periodic: Instant,
    every_event_time: Option<i64>,
    next_event_time: Option<i64>,
    next_id: u64,
}

impl Barriers {
    /// Barriers to `coordinator`; ids start at `next_id`.
    pub fn new(
        coordinator: Sender<CoordMsg>,
        triggers: Receiver<Trigger>,
        interval: Option<Duration>,
        every_event_time: Option<i64>,
        next_id: u64,
    ) -> Self {
        Self {
            coordinator,
            triggers,
            next_periodic: Instant::now() + interval.unwrap_or(Duration::MAX / 4),
            interval,
            every_event_time: every_event_time.filter(|&e| e > 0),
            next_event_time: None,
            next_id,
        }
    }
}

/// The tasks hung up (one failed); the source should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// Routes records to task channels in packed batches.
pub struct Router {
    senders: Vec<Sender<TaskMsg>>,
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
    files: FileTable,
    metrics: Arc<Metrics>,
    disconnected: bool,
    barriers: Option<Barriers>,
}

impl Router {
    /// A router over task channels.
    pub fn new(
        senders: Vec<Sender<TaskMsg>>,
        recycled: Receiver<SourceBatch>,
        settings: BatchSettings,
        watermark_delay: i64,
        dead_letters: Arc<DeadLetters>,
        files: FileTable,
        metrics: Arc<Metrics>,
    ) -> Self {
        let n = senders.len();
        Self {
            pending: (0..n).map(|_| SourceBatch::default()).collect(),
            sent_watermark: vec![i64::MIN; n],
            senders,
            recycled,
            settings,
            watermark_delay,
            max_timestamp: i64::MIN,
            watermark: i64::MIN,
            next_round_robin: 0,
            last_flush: Instant::now(),
            dead_letters,
            files,
            metrics,
            disconnected: false,
            barriers: None,
        }
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

    /// A barrier due now: a trigger from outside or the periodic interval.
    /// Sources call this between records, about once per chunk of input.
    pub fn pending_barrier(&mut self) -> Option<BarrierRequest> {
        let b = self.barriers.as_mut()?;
        if let Ok(Trigger::Savepoint { name, stop, reply }) = b.triggers.try_recv() {
            return Some(BarrierRequest {
                kind: Kind::Savepoint,
                name,
                stop,
                reply,
            });
        }
        let now = Instant::now();
        if now >= b.next_periodic {
            b.next_periodic = now + b.interval.unwrap_or(Duration::MAX / 4);
            return Some(BarrierRequest {
                kind: Kind::Checkpoint,
                name: None,
                stop: false,
                reply: None,
            });
        }
        None
    }

    /// Whether a record with event time `timestamp` moves the watermark
    /// across a boundary of the event-time savepoint schedule; if so the
    /// savepoint is due before the record.
    #[inline]
    pub fn event_time_barrier(&mut self, timestamp: i64) -> Option<BarrierRequest> {
        let b = self.barriers.as_mut()?;
        let every = b.every_event_time?;
        if timestamp == NO_TIMESTAMP {
            return None;
        }
        let after = timestamp
            .max(self.max_timestamp)
            .saturating_sub(self.watermark_delay);
        let next = *b
            .next_event_time
            .get_or_insert_with(|| (self.watermark.max(after).div_euclid(every) + 1) * every);
        if after < next {
            return None;
        }
        b.next_event_time = Some((after.div_euclid(every) + 1) * every);
        Some(BarrierRequest {
            kind: Kind::Savepoint,
            name: Some(event_time_savepoint_name(next)),
            stop: false,
            reply: None,
        })
    }

    /// Inject the barrier due now (see [`Router::pending_barrier`]), if
    /// any, at `position`. Returns whether the source must stop: a
    /// savepoint with stop was taken, or the tasks hung up.
    pub fn barrier_if_due(&mut self, position: &SourcePosition) -> bool {
        match self.pending_barrier() {
            Some(req) => self.barrier(req, position.clone()).unwrap_or(true),
            None => false,
        }
    }

    /// Inject a barrier after everything routed so far, at source position
    /// `position`. Returns whether the job should stop after it.
    pub fn barrier(
        &mut self,
        req: BarrierRequest,
        position: SourcePosition,
    ) -> Result<bool, Disconnected> {
        let Some(b) = self.barriers.as_mut() else {
            if let Some(r) = req.reply {
                let _ = r.send(Err("this job has no state store configured".into()));
            }
            return Ok(req.stop);
        };
        let id = b.next_id;
        b.next_id += 1;
        let name = match req.kind {
            Kind::Checkpoint => checkpoint_name(id),
            Kind::Savepoint => req.name.unwrap_or_else(|| savepoint_name(id)),
        };
        let wall_time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let begin = Begin {
            id,
            kind: req.kind,
            name,
            source: position,
            watermark: self.watermark,
            max_event_time: self.max_timestamp,
            wall_time_ms,
            reply: req.reply,
        };
        let _ = b.coordinator.send(CoordMsg::Begin(begin));
        for task in 0..self.senders.len() {
            if !self.pending[task].data.is_empty() {
                self.send(task)?;
            }
            self.deliver(task, TaskMsg::Barrier(id))?;
        }
        Ok(req.stop)
    }

    /// Number of tasks.
    pub fn parallelism(&self) -> usize {
        self.senders.len()
    }

    /// The file table origins refer to.
    pub fn files(&self) -> &FileTable {
        &self.files
    }

    /// The shared counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Route one record; `key: None` spreads records round-robin.
    #[inline]
    pub fn record(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> Result<(), Disconnected> {
        let n = self.senders.len();
        let task = match key {
            Some(k) if n > 1 => partition_for_key(k, n as u32) as usize,
            Some(_) => 0,
            None => {
                self.next_round_robin = (self.next_round_robin + 1) % n;
                self.next_round_robin
            }
        };
        if timestamp != NO_TIMESTAMP && timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
            self.watermark = timestamp.saturating_sub(self.watermark_delay);
        }
        let batch = &mut self.pending[task];
        batch.push(key.unwrap_or_default(), value, timestamp, origin);
        if batch.data.len() >= self.settings.max_records
            || batch.data.byte_size() >= self.settings.max_bytes
        {
            self.send(task)?;
        }
        Ok(())
    }

    /// Send a malformed input line to the dead-letter output.
    pub fn malformed(&mut self, file: u32, line: u64, reason: &str, raw: &[u8]) -> Result<()> {
        let files = self
            .files
            .read()
            .map_err(|_| Error::Internal("file table lock poisoned".into()))?;
        self.dead_letters.write(&DeadLetter {
            stage: Stage::Source,
            reason,
            file: files.get(file as usize).map(|p| p.as_path()),
            line: Some(line),
            key: None,
            value: raw,
        })?;
        self.metrics.add_malformed(1);
        Ok(())
    }

    /// Called by sources now and then (per chunk, or when idle): sends
    /// partly filled batches older than the linger time and tells idle tasks
    /// the watermark moved.
    pub fn tick(&mut self) -> Result<(), Disconnected> {
        if self.last_flush.elapsed() >= self.settings.linger {
            self.flush()?;
        }
        Ok(())
    }

    /// Send every partly filled batch and the current watermark.
    pub fn flush(&mut self) -> Result<(), Disconnected> {
        for task in 0..self.senders.len() {
            if !self.pending[task].data.is_empty() {
                self.send(task)?;
            } else if self.sent_watermark[task] < self.watermark {
                self.sent_watermark[task] = self.watermark;
                self.deliver(task, TaskMsg::Watermark(self.watermark))?;
            }
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Whether a task hung up.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    fn send(&mut self, task: usize) -> Result<(), Disconnected> {
        let fresh = self.recycled.try_recv().map(|mut b| {
            b.clear();
            b
        });
        let batch = std::mem::replace(&mut self.pending[task], fresh.unwrap_or_default());
        self.metrics.add_read(batch.data.len() as u64, 0);
        self.sent_watermark[task] = self.watermark;
        self.deliver(task, TaskMsg::Batch(batch, self.watermark))
    }

    fn deliver(&mut self, task: usize, msg: TaskMsg) -> Result<(), Disconnected> {
        self.senders[task].send(msg).map_err(|_| {
            self.disconnected = true;
            Disconnected
        })
    }

    /// Flush and hang up: the tasks then drain and finish. At the end of
    /// the input they also fire all remaining timers.
    pub fn finish(mut self, completion: Completion) -> Result<(), Disconnected> {
        let mut r = self.flush();
        if completion == Completion::EndOfInput {
            for task in 0..self.senders.len() {
                r = r.and(self.deliver(task, TaskMsg::EndOfInput));
            }
        }
        self.senders.clear();
        r
    }
}
