//! Running a job: load the plugins, start one thread per task, run the
//! source on the calling thread, then join everything and report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;
use std::time::{Duration, Instant};

use crate::batch::SourceBatch;
use crate::checkpoint::restore::{self, Restored};
use crate::checkpoint::store::StateStore;
use crate::checkpoint::{CheckpointStats, CoordMsg, Coordinator, Trigger};
use crate::config::{Plan, PluginSource, SinkSpec};
use crate::control::{ControlServer, JobHandle};
use crate::engine::WeirEngine;
use crate::metrics::{Metrics, Snapshot, process_cpu_time};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::file as file_sink;
use crate::source::file::FileSource;
use crate::source::{Barriers, Completion, FileTable, Router, Source};
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
    /// Start from this checkpoint or savepoint: a name, `latest`,
    /// `before:TIME`, or the URL of a savepoint folder.
    pub from_savepoint: Option<String>,
    /// Extra source of barrier requests (tests, embedding programs); the
    /// control endpoint has its own.
    pub triggers: Option<Receiver<Trigger>>,
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
    /// How the source ended.
    pub completion: Completion,
    /// Checkpoint figures.
    pub checkpoints: CheckpointStats,
    /// Where the run was restored from, if it was.
    pub restored_from: Option<String>,
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
    let files: FileTable = Arc::default();
    let n = plan.parallelism;

    // Restore: find and verify the savepoint before anything else.
    let store = plan
        .checkpoint
        .as_ref()
        .map(|c| StateStore::open(&c.store, std::path::Path::new(".")))
        .transpose()?;
    let restored = match (&options.from_savepoint, &store) {
        (Some(sel), Some(store)) => Some(load_for_plan(store, plan, sel)?),
        (Some(_), None) => {
            return Err(Error::Config(
                "--from-savepoint needs checkpoints enabled (a [state] store)".into(),
            ));
        }
        _ => None,
    };
    let sink_dir = match &plan.sink {
        SinkSpec::Files { dir } => Some(dir.clone()),
        SinkSpec::Stdout => None,
    };
    let next_seqs = match &restored {
        Some(r) => file_sink::next_seqs(&r.manifest.tasks),
        None => vec![0; n],
    };
    let dead_letters = Arc::new(DeadLetters::open(plan.dead_letter.as_deref())?);

    // The coordinator, when checkpointing.
    let stats = Arc::new(Mutex::new(CheckpointStats::default()));
    let (coord_tx, coordinator) = match (&plan.checkpoint, &store) {
        (Some(c), Some(store)) => {
            let (tx, rx) = crossbeam_channel::unbounded::<CoordMsg>();
            let coord = Coordinator::new(
                store.clone(),
                &plan.name,
                n,
                c.retain,
                sink_dir.clone(),
                stats.clone(),
            );
            let handle = std::thread::Builder::new()
                .name("weir-checkpoints".into())
                .spawn(move || coord.run(rx))
                .map_err(|e| Error::Internal(format!("spawning coordinator: {e}")))?;
            (Some(tx), Some(handle))
        }
        _ => (None, None),
    };

    // Instantiate (and restore) every task's operators before reading
    // anything, so a broken plugin or savepoint fails the job before any
    // input is consumed.
    let mut tasks = Vec::with_capacity(n);
    for (id, &next_seq) in next_seqs.iter().enumerate().take(n) {
        let sink = crate::sink::open(&plan.sink, id, next_seq, plan.checkpoint.is_some())?;
        tasks.push(Task::new(
            id,
            factories,
            sink,
            dead_letters.clone(),
            files.clone(),
            metrics.clone(),
            coord_tx.clone(),
            restored.as_ref().and_then(|r| r.tasks.get(id)),
        )?);
    }

    // Every operator accepted its state: only now bring the output folder
    // to the restored point (or clear it for a fresh run).
    match (&sink_dir, &restored) {
        (Some(dir), Some(r)) => {
            file_sink::recover(dir, &r.manifest.tasks)?;
        }
        (Some(dir), None) => file_sink::clear(dir)?,
        _ => {}
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
    let (trigger_tx, trigger_rx) = crossbeam_channel::unbounded::<Trigger>();
    if let Some(extra) = options.triggers.take() {
        let tx = trigger_tx.clone();
        std::thread::spawn(move || {
            for t in extra {
                if tx.send(t).is_err() {
                    break;
                }
            }
        });
    }
    if let (Some(c), Some(tx)) = (&plan.checkpoint, &coord_tx) {
        // Ids continue after every complete checkpoint or savepoint of the
        // job (not only the restored one), so a new checkpoint never reuses
        // the folder of an existing one.
        let newest = match &store {
            Some(s) => crate::checkpoint::manifest::list(s, &plan.name)?
                .iter()
                .map(|f| f.manifest.id)
                .max()
                .unwrap_or(0),
            None => 0,
        };
        let next_id = newest.max(restored.as_ref().map_or(0, |r| r.manifest.id)) + 1;
        router = router.with_barriers(Barriers::new(
            tx.clone(),
            trigger_rx,
            c.interval,
            c.savepoint_every_event_time_ms,
            next_id,
        ));
    }
    if let Some(r) = &restored {
        router.resume_event_time(r.manifest.watermark, r.manifest.max_event_time);
    }
    drop(coord_tx);
    let control = match plan.control {
        Some(addr) => Some(ControlServer::start(
            addr,
            JobHandle {
                job: plan.name.clone(),
                triggers: trigger_tx.clone(),
                stop: options.stop.clone(),
                metrics: metrics.clone(),
                checkpoints: stats.clone(),
            },
        )?),
        None => None,
    };
    drop(trigger_tx);

    let mut source = FileSource::new(
        plan.source.clone(),
        options.stop.clone(),
        restored.as_ref().map(|r| r.manifest.source.clone()),
    );
    let source_result = source.run(&mut router);
    let completion = *source_result.as_ref().unwrap_or(&Completion::Stopped);
    let _ = router.finish(completion);

    let mut first_error = source_result.err();
    let mut task_stats = Vec::with_capacity(n);
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => task_stats.push(s),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(Error::Internal("a task thread panicked".into()));
            }
        }
    }
    // Every sender is gone now: the coordinator finishes what is in flight.
    if let Some(c) = coordinator {
        let _ = c.join();
    }
    drop(control);
    progress_done.store(true, Ordering::Relaxed);
    if let Some(t) = progress_thread {
        let _ = t.join();
    }
    dead_letters.flush()?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if completion == Completion::EndOfInput
        && let Some(dir) = &sink_dir
    {
        // All input is processed: everything written is final.
        file_sink::commit_all(dir)?;
    }
    let checkpoints = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(JobReport {
        name: plan.name.clone(),
        totals: metrics.snapshot(),
        dead_letters: dead_letters.count(),
        tasks: task_stats,
        elapsed: started.elapsed(),
        cpu: process_cpu_time().saturating_sub(cpu_start),
        completion,
        checkpoints,
        restored_from: restored.map(|r| r.location),
    })
}

/// Load `selector` for `plan` and check it fits: same parallelism, same
/// operator chain.
pub fn load_for_plan(store: &StateStore, plan: &Plan, selector: &str) -> Result<Restored> {
    let r = restore::load(store, &plan.name, selector)?;
    if r.manifest.parallelism != plan.parallelism {
        return Err(r.error(format!(
            "it was taken with parallelism {}; run the job with parallelism {} to restore it",
            r.manifest.parallelism, r.manifest.parallelism
        )));
    }
    let theirs: Vec<&str> = r.manifest.tasks[0]
        .operators
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let ours: Vec<&str> = plan.operators.iter().map(|o| o.name.as_str()).collect();
    if theirs != ours {
        return Err(r.error(format!(
            "it holds operators {theirs:?}; this job has {ours:?}"
        )));
    }
    Ok(r)
}
