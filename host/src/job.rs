//! Running a job: load the plugins, start one thread per task, run the
//! source on the calling thread, then join everything and report.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::batch::SourceBatch;
use crate::config::{Plan, PluginSource};
use crate::engine::WeirEngine;
use crate::metrics::{Metrics, Snapshot, process_cpu_time};
use crate::sink::dead_letter::DeadLetters;
use crate::source::file::FileSource;
use crate::source::{FileTable, Router, Source};
use crate::task::{OperatorFactory, Task, TaskMsg, TaskStats, WasmOperatorFactory};
use crate::{Error, Result};

/// Batches in flight per task before the source waits (backpressure).
const CHANNEL_DEPTH: usize = 8;

/// Receives progress ticks.
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// How a run is driven from outside.
#[derive(Default)]
pub struct RunOptions {
    /// Set to stop a `follow` run; the job then drains and ends cleanly.
    pub stop: Arc<AtomicBool>,
    /// Called about once per `progress_every` with the counters so far.
    pub progress: Option<ProgressFn>,
    /// Interval of `progress`. Default one second.
    pub progress_every: Option<Duration>,
}

/// Counters at a progress tick.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Time since the job started.
    pub elapsed: Duration,
    /// Counters now.
    pub now: Snapshot,
    /// Counters at the previous tick.
    pub previous: Snapshot,
    /// Time since the previous tick.
    pub interval: Duration,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Job name.
    pub name: String,
    /// Final counters.
    pub totals: Snapshot,
    /// Dead letters written (malformed plus rejected).
    pub dead_letters: u64,
    /// Per-task statistics.
    pub tasks: Vec<TaskStats>,
    /// Wall time.
    pub elapsed: Duration,
    /// CPU time of the process during the run.
    pub cpu: Duration,
}

impl JobReport {
    /// Records read per wall-clock second.
    pub fn records_per_sec(&self) -> f64 {
        self.totals.records_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Records read per CPU second.
    pub fn records_per_cpu_sec(&self) -> f64 {
        self.totals.records_read as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// Load each operator's component (through the compiled-component cache).
pub fn load_operators(engine: &WeirEngine, plan: &Plan) -> Result<Vec<Arc<dyn OperatorFactory>>> {
    plan.operators
        .iter()
        .map(|op| {
            let loaded = match &op.plugin {
                PluginSource::Path(p) => engine.load_file(&op.name, p)?,
                PluginSource::Bytes(b) => engine.load(&op.name, b)?,
            };
            tracing::debug!(plugin = %op.name, digest = %loaded.digest, cached = loaded.from_cache, "plugin loaded");
            Ok(Arc::new(WasmOperatorFactory::new(engine.clone(), loaded, op.config.clone())) as Arc<dyn OperatorFactory>)
        })
        .collect()
}

/// Run `plan` with its Wasm plugins.
pub fn run(plan: &Plan, options: RunOptions) -> Result<JobReport> {
    let engine = WeirEngine::new(plan.engine.clone())?;
    let factories = load_operators(&engine, plan)?;
    run_with(plan, &factories, options)
}

/// Run `plan` with the given operator chain (the benchmark passes native
/// operators here).
pub fn run_with(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    mut options: RunOptions,
) -> Result<JobReport> {
    let started = Instant::now();
    let cpu_start = process_cpu_time();
    let metrics = Arc::new(Metrics::default());
    let dead_letters = Arc::new(DeadLetters::open(plan.dead_letter.as_deref())?);
    let files: FileTable = Arc::default();
    let n = plan.parallelism;

    // Instantiate every task's operators before reading anything, so a
    // broken plugin fails the job before any input is consumed.
    let mut tasks = Vec::with_capacity(n);
    for id in 0..n {
        let sink = crate::sink::open(&plan.sink, id)?;
        tasks.push(Task::new(
            id,
            factories,
            sink,
            dead_letters.clone(),
            files.clone(),
            metrics.clone(),
        )?);
    }

    let (recycle_tx, recycle_rx) = crossbeam_channel::unbounded::<SourceBatch>();
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for task in tasks {
        let (tx, rx) = crossbeam_channel::bounded::<TaskMsg>(CHANNEL_DEPTH);
        senders.push(tx);
        let recycle = recycle_tx.clone();
        let id = task.id;
        let handle = std::thread::Builder::new()
            .name(format!("weir-task-{id}"))
            .spawn(move || task.run(rx, recycle))
            .map_err(|e| Error::Internal(format!("spawning task thread: {e}")))?;
        handles.push(handle);
    }
    drop(recycle_tx);

    let progress_done = Arc::new(AtomicBool::new(false));
    let progress_thread = options.progress.take().map(|mut report| {
        let every = options.progress_every.unwrap_or(Duration::from_secs(1));
        let metrics = metrics.clone();
        let done = progress_done.clone();
        std::thread::spawn(move || {
            let mut previous = Snapshot::default();
            let mut last = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
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
                });
                previous = now;
                last = Instant::now();
            }
        })
    });

    let mut router = Router::new(
        senders,
        recycle_rx,
        plan.batch.clone(),
        plan.source.watermark_delay_ms,
        dead_letters.clone(),
        files,
        metrics.clone(),
    );
    let mut source = FileSource::new(plan.source.clone(), options.stop.clone());
    let source_result = source.run(&mut router);
    let _ = router.finish();

    let mut first_error = source_result.err();
    let mut stats = Vec::with_capacity(n);
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(Error::Internal("a task thread panicked".into()));
            }
        }
    }
    progress_done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = progress_thread {
        let _ = t.join();
    }
    dead_letters.flush()?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(JobReport {
        name: plan.name.clone(),
        totals: metrics.snapshot(),
        dead_letters: dead_letters.count(),
        tasks: stats,
        elapsed: started.elapsed(),
        cpu: process_cpu_time().saturating_sub(cpu_start),
    })
}
