//! Sources and the [`Router`] they feed. A source produces records with
//! their origin; the router (runtime side) assigns each to a task by key with
//! Kafka's default partitioner, packs them into batches, tracks the
//! watermark and sends batches to task threads. The runtime knows nothing
//! about files: a source is anything that implements [`Source`].

pub mod file;
pub mod format;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::batch::{NO_TIMESTAMP, Origin, SourceBatch};
use crate::config::BatchSettings;
use crate::metrics::Metrics;
use crate::partition::partition_for_key;
use crate::sink::dead_letter::{DeadLetter, DeadLetters, Stage};
use crate::task::TaskMsg;
use crate::{Error, Result};

/// Names of the files a source has opened, indexed by [`Origin::file`].
pub type FileTable = Arc<RwLock<Vec<PathBuf>>>;

/// A source of records.
pub trait Source: Send {
    /// Produce records into `router` until the input ends or the job stops.
    fn run(&mut self, router: &mut Router) -> Result<()>;
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
        }
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

    /// Flush and hang up: the tasks then drain and finish.
    pub fn finish(mut self) -> Result<(), Disconnected> {
        let r = self.flush();
        self.senders.clear();
        r
    }
}
