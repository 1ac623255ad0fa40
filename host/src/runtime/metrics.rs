//! Job-wide counters, updated once per batch (never per record), read by the
//! progress reporter; and the process CPU time, for events per CPU-second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::figures::ChainFigures;
use crate::source::{SourceFigures, SourceProgress};

/// Counters shared by the source and the tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    records_read: AtomicU64,
    bytes_read: AtomicU64,
    files_done: AtomicU64,
    emitted: AtomicU64,
    malformed: AtomicU64,
    /// Records behind the end of each input partition (Kafka consumer lag),
    /// updated every few seconds by the source; empty for files.
    lag: Mutex<Vec<i64>>,
    /// The same in time: how old the last record read is (ms, `-1`
    /// unknown).
    lag_age_ms: Mutex<Vec<i64>>,
    /// The topic the lag is of (Kafka sources).
    topic: OnceLock<String>,
    /// Per-partition and per-operator figures, once the chain is known.
    chain: OnceLock<ChainFigures>,
    /// The source's own progress (files and hybrid sources): phase, files
    /// and bytes of the total, event time, the switch.
    source: OnceLock<Arc<SourceProgress>>,
    /// Restarts of the job in this process so far (its restart strategy).
    restarts: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Records the source produced (valid ones).
    pub records_read: u64,
    /// Bytes the source read.
    pub bytes_read: u64,
    /// Files read to the end.
    pub files_done: u64,
    /// Records written to the sink.
    pub emitted: u64,
    /// Lines the source could not parse.
    pub malformed: u64,
}

impl Metrics {
    /// Count records and bytes read.
    pub fn add_read(&self, records: u64, bytes: u64) {
        self.records_read.fetch_add(records, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Count a finished file.
    pub fn add_file(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }
    /// Count records written to the sink.
    pub fn add_emitted(&self, n: u64) {
        self.emitted.fetch_add(n, Ordering::Relaxed);
    }
    /// Count malformed lines.
    pub fn add_malformed(&self, n: u64) {
        self.malformed.fetch_add(n, Ordering::Relaxed);
    }
    /// Set each partition's consumer lag.
    pub fn set_lag(&self, lag: &[i64], age_ms: &[i64]) {
        let mut l = crate::lock_or_recover(&self.lag);
        l.clear();
        l.extend_from_slice(lag);
        let mut a = crate::lock_or_recover(&self.lag_age_ms);
        a.clear();
        a.extend_from_slice(age_ms);
    }
    /// Each partition's consumer lag in time (ms, `-1` unknown).
    pub fn lag_age_ms(&self) -> Vec<i64> {
        crate::lock_or_recover(&self.lag_age_ms).clone()
    }
    /// Each partition's consumer lag (empty: the source has none).
    pub fn lag(&self) -> Vec<i64> {
        crate::lock_or_recover(&self.lag).clone()
    }
    /// Name the topic the consumer lag is of (set once).
    pub fn set_topic(&self, topic: &str) {
        let _ = self.topic.set(topic.to_string());
    }
    /// The topic the consumer lag is of.
    pub fn topic(&self) -> Option<&str> {
        self.topic.get().map(String::as_str)
    }
    /// Size the per-partition and per-operator figures (set once).
    pub fn set_chain(&self, figures: ChainFigures) {
        let _ = self.chain.set(figures);
    }
    /// Per-partition and per-operator figures (`None` before the chain is
    /// known).
    pub fn chain(&self) -> Option<&ChainFigures> {
        self.chain.get()
    }
    /// Register the source's progress handle (set once).
    pub fn set_source_progress(&self, progress: Option<Arc<SourceProgress>>) {
        if let Some(p) = progress {
            let _ = self.source.set(p);
        }
    }
    /// The source's progress now (`None`: its source has none).
    pub fn source_figures(&self) -> Option<SourceFigures> {
        self.source.get().map(|p| p.figures())
    }
    /// Set the restarts of the job in this process so far.
    pub fn set_restarts(&self, n: u64) {
        self.restarts.store(n, Ordering::Relaxed);
    }
    /// Restarts of the job in this process so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
    /// Read all counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            records_read: self.records_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
        }
    }
}

/// User plus system CPU time of this process so far.
pub fn process_cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full `rusage` into the pointer on success;
    // on failure we read the zeroed value.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
