//! Progress ticks of a running job: the counters now and at the previous
//! tick, sent to the caller's callback from a thread of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::RunOptions;
use crate::runtime::{Metrics, Snapshot};

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
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() < every {
                    continue;
                }
                let now = metrics.snapshot();
                report(&Progress {
                    elapsed: started.elapsed(),
                    now,
                    previous,
                    interval: last.elapsed(),
                    lag: metrics.lag(),
                });
                previous = now;
                last = Instant::now();
            }
        })
    });
    ProgressThread { done, thread }
}
