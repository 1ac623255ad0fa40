//! Figures a person running a job looks at, beside the job-wide counters of
//! `metrics`: per partition and operator (records in and out, rejections,
//! time spent in the plugin, the latency of batch calls as a histogram),
//! and the recent checkpoints with their duration and size (histograms
//! too). Workers update them once per batch call, never per record; the
//! control endpoint reads them for `/status`, `/metrics` and the page.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Serialize;

use crate::checkpoint::manifest::{Kind, Manifest};
use crate::source::{SourceFigures, SourcePhase};

/// Histograms by label set.
pub type HistogramFamily = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

/// Checkpoints kept in [`CheckpointHistory::recent`].
pub const CHECKPOINT_HISTORY: usize = 20;

/// Figures of one operator in one partition.
#[derive(Debug, Default)]
pub struct OperatorFigures {
    /// Records given to the operator (batches and timers' outputs excluded).
    pub records_in: AtomicU64,
    /// Records it emitted.
    pub records_out: AtomicU64,
    /// Records it rejected (dead letters).
    pub rejected: AtomicU64,
    /// Wall time spent in the plugin (batch and timer calls), ns.
    pub busy_ns: AtomicU64,
}

/// Figures of one partition.
#[derive(Debug)]
pub struct PartitionFigures {
    /// Records routed to the partition.
    pub records_in: AtomicU64,
    /// Records the partition wrote to the sink.
    pub records_out: AtomicU64,
    /// The partition's watermark (`i64::MIN`: none yet).
    pub watermark: AtomicI64,
    /// Per operator, in chain order.
    pub operators: Vec<OperatorFigures>,
}

/// Per-partition and per-operator figures of a job, sized when its chain
/// is known.
#[derive(Debug)]
pub struct ChainFigures {
    /// Operator names, in chain order.
    pub operators: Vec<String>,
    /// Their plugins' digests as the job started (`None`: native).
    pub digests: Vec<Option<String>>,
    /// Worker threads (partition `p` runs on thread `p % threads`).
    pub threads: usize,
    /// Per partition.
    pub partitions: Vec<PartitionFigures>,
    /// Latency of one batch call into an operator, seconds, by operator.
    pub call_family: HistogramFamily,
    /// Its histogram of each operator, in chain order.
    pub call_seconds: Vec<Histogram>,
}

impl ChainFigures {
    /// Figures for `partitions` partitions on `threads` threads running
    /// `operators` (name and plugin digest).
    pub fn new(
        operators: Vec<(String, Option<String>)>,
        partitions: usize,
        threads: usize,
    ) -> Self {
        let (operators, digests): (Vec<_>, Vec<_>) = operators.into_iter().unzip();
        let partitions = (0..partitions)
            .map(|_| PartitionFigures {
                records_in: AtomicU64::new(0),
                records_out: AtomicU64::new(0),
                watermark: AtomicI64::new(i64::MIN),
                operators: operators
                    .iter()
                    .map(|_| OperatorFigures::default())
                    .collect(),
            })
            .collect();
        let call_family: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-5, 4.0, 10)));
        let call_seconds = operators
            .iter()
            .map(|name| call_family.get_or_create_owned(&vec![("operator".into(), name.clone())]))
            .collect();
        Self {
            operators,
            digests,
            call_family,
            threads: threads.max(1),
            partitions,
            call_seconds,
        }
    }

    /// Operator `op` of partition `p` took `took` for `records_in` records
    /// and emitted `records_out`, rejecting `rejected`. `batch`: a batch
    /// call (its latency goes to the histogram), not a timer call.
    pub fn called(
        &self,
        (p, op): (usize, usize),
        took: Duration,
        (records_in, records_out, rejected): (usize, usize, usize),
        batch: bool,
    ) {
        let Some(f) = self.partitions.get(p).and_then(|p| p.operators.get(op)) else {
            return;
        };
        f.records_in.fetch_add(records_in as u64, Ordering::Relaxed);
        f.records_out
            .fetch_add(records_out as u64, Ordering::Relaxed);
        f.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
        f.busy_ns.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if batch && let Some(h) = self.call_seconds.get(op) {
            h.observe(took.as_secs_f64());
        }
    }

    /// Partition `p` received `records_in` records and wrote
    /// `records_out`; its watermark is `watermark`.
    pub fn partition(&self, p: usize, records_in: usize, records_out: usize, watermark: i64) {
        if let Some(f) = self.partitions.get(p) {
            f.records_in.fetch_add(records_in as u64, Ordering::Relaxed);
            f.records_out
                .fetch_add(records_out as u64, Ordering::Relaxed);
            f.watermark.fetch_max(watermark, Ordering::Relaxed);
        }
    }
}

/// One completed checkpoint or savepoint, as the status page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointRecord {
    /// Checkpoint id.
    pub id: u64,
    /// Its name (the id, zero-padded, for checkpoints).
    pub name: String,
    /// `checkpoint` or `savepoint`.
    pub kind: &'static str,
    /// When it was taken (ms since the epoch).
    pub wall_time_ms: i64,
    /// Barrier to manifest, ms.
    pub duration_ms: f64,
    /// Size of its state blobs, bytes.
    pub bytes: u64,
    /// Longest pause of a partition at its barrier, ms.
    pub max_pause_ms: f64,
}

/// Recent checkpoints, and their durations and sizes as histograms.
#[derive(Debug, Clone)]
pub struct CheckpointHistory {
    /// The last [`CHECKPOINT_HISTORY`] completed, oldest first.
    pub recent: VecDeque<CheckpointRecord>,
    /// Barrier-to-manifest time, seconds.
    pub duration_seconds: Histogram,
    /// State size, bytes.
    pub size_bytes: Histogram,
}

impl Default for CheckpointHistory {
    fn default() -> Self {
        Self {
            recent: VecDeque::new(),
            duration_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            size_bytes: Histogram::new(exponential_buckets(1024.0, 4.0, 12)),
        }
    }
}

impl CheckpointHistory {
    /// `m` completed, `duration` after its barrier, with partitions paused
    /// at most `max_pause`.
    pub fn completed(&mut self, m: &Manifest, duration: Duration, max_pause: Duration) {
        let bytes = m.state_bytes();
        self.duration_seconds.observe(duration.as_secs_f64());
        self.size_bytes.observe(bytes as f64);
        if self.recent.len() == CHECKPOINT_HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(CheckpointRecord {
            id: m.id,
            name: m.name.clone(),
            kind: match m.kind {
                Kind::Checkpoint => "checkpoint",
                Kind::Savepoint => "savepoint",
            },
            wall_time_ms: m.wall_time_ms,
            duration_ms: duration.as_secs_f64() * 1e3,
            bytes,
            max_pause_ms: max_pause.as_secs_f64() * 1e3,
        });
    }
}

/// Seconds left to read a source's files at `bytes_per_s`: only in the
/// files phase of files that end (`follow` has no end), with a rate.
pub fn time_left(f: &SourceFigures, bytes_per_s: f64) -> Option<f64> {
    (f.phase == SourcePhase::Files && f.bounded && bytes_per_s > 0.0)
        .then(|| f.bytes_total.saturating_sub(f.bytes_done) as f64 / bytes_per_s)
}
