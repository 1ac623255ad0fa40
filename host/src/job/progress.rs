//! Progress ticks of a running job: the counters now and at the previous
//! tick, the source's own figures (phase, files and bytes of the total,
//! event time reached) and an estimate of the time left, sent to the
//! caller's callback from a thread of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::RunOptions;
use crate::runtime::figures::time_left;
use crate::runtime::{Metrics, Snapshot};
use crate::source::SourceFigures;

/// Receives progress ticks.
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Counters at a progress tick.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Time since the job started.
    pub elapsed: Duration,
    /// Counters now.
    pub now: Snapshot,
    /// Counters at the previous tick.
    pub previous: Snapshot,
    /// Time since the previous tick.
    pub interval: Duration,
    /// Each input partition's consumer lag (Kafka; empty for files).
    pub lag: Vec<i64>,
    /// The source's own figures (files and hybrid sources).
    pub source: Option<SourceFigures>,
    /// Bytes of files read per second, over the files read in this run so
    /// far (`None`: not known yet, or not reading files).
    pub bytes_per_s: Option<f64>,
    /// Time left to read the files at that rate (`None`: not known, the
    /// files are followed, or they are read).
    pub eta: Option<Duration>,
}

impl Progress {
    /// Records read per second since the previous tick.
    pub fn records_per_s(&self) -> f64 {
        self.now
            .records_read
            .saturating_sub(self.previous.records_read) as f64
            / self.interval.as_secs_f64().max(1e-3)
    }

    /// The consumer lag over every input partition (`None`: none known).
    pub fn total_lag(&self) -> Option<i64> {
        let known: Vec<i64> = self.lag.iter().copied().filter(|&l| l >= 0).collect();
        (!known.is_empty()).then(|| known.iter().sum())
    }
}

/// The files' read rate over this run: from the first tick that saw the
/// listing to now.
#[derive(Debug, Default)]
struct FilesRate {
    /// When the listing was first seen, and the bytes read then.
    base: Option<(Instant, u64)>,
}

impl FilesRate {
    /// The rate and time left, given the figures now.
    fn update(&mut self, f: Option<&SourceFigures>) -> (Option<f64>, Option<Duration>) {
        let Some(f) = f.filter(|f| f.files_total > 0) else {
            return (None, None);
        };
        let (at, from) = *self.base.get_or_insert((Instant::now(), f.bytes_done));
        let secs = at.elapsed().as_secs_f64();
        if secs < 0.2 || f.bytes_done <= from {
            return (None, None);
        }
        let rate = (f.bytes_done - from) as f64 / secs;
        (Some(rate), time_left(f, rate).map(Duration::from_secs_f64))
    }
}

/// The progress reporter thread, if the caller wants ticks.
pub(super) struct ProgressThread {
    /// Set to end the thread.
    done: Arc<AtomicBool>,
    /// The thread (`None`: no callback).
    thread: Option<JoinHandle<()>>,
}

impl ProgressThread {
    /// End the thread and wait for it.
    pub(super) fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

/// Start ticking `options.progress` (taken) every `options.progress_every`.
pub(super) fn start(
    options: &mut RunOptions,
    metrics: &Arc<Metrics>,
    started: Instant,
) -> ProgressThread {
    let done = Arc::new(AtomicBool::new(false));
    let thread = options.progress.take().map(|mut report| {
        let every = options.progress_every.unwrap_or(Duration::from_secs(1));
        let metrics = metrics.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut previous = Snapshot::default();
            let mut last = Instant::now();
            let mut rate = FilesRate::default();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() < every {
                    continue;
                }
                let now = metrics.snapshot();
                let source = metrics.source_figures();
                let (bytes_per_s, eta) = rate.update(source.as_ref());
                report(&Progress {
                    elapsed: started.elapsed(),
                    now,
                    previous,
                    interval: last.elapsed(),
                    lag: metrics.lag(),
                    source,
                    bytes_per_s,
                    eta,
                });
                previous = now;
                last = Instant::now();
            }
        })
    });
    ProgressThread { done, thread }
}
