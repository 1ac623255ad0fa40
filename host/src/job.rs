//! Running a job: resolve its source, sink and plugins and check them,
//! restore its partitions, settle the output, start the coordinator and one
//! worker thread per unit of parallelism, run the source on the calling
//! thread, then join everything and report. [`run_with`] calls the steps in
//! that order: `prepare` (every check, before output or state is touched),
//! `settle_output`, `start`, `run_source`, `finish`; the helpers they use
//! follow them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::batch::SourceBatch;
use crate::checkpoint::Trigger;
use crate::checkpoint::lease::Lease;
use crate::checkpoint::manifest;
use crate::checkpoint::restore::{self, Restored};
use crate::checkpoint::store::StateStore;
use crate::config::{Plan, PluginSource};
use crate::plugin::{OperatorFactory, WasmOperatorFactory, WeirEngine};
use crate::runtime::control::{Bound, ControlServer, JobHandle};
use crate::runtime::swap::{self, Current, SwapLog, Swapper};
use crate::runtime::{
    Barriers, Chain, CheckpointStats, CoordMsg, Coordinator, Decision, Metrics, Partition, Router,
    Shared, Snapshot, TaskMsg, TaskStats, Worker, process_cpu_time,
};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::{self, SinkFactory};
use crate::source::{self, Completion, Source};
use crate::{Error, Result, lock_or_recover};

/// Batches in flight per partition before the source waits (backpressure).
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
    /// A what-if fork of this job: `from_savepoint` names a savepoint of
    /// the job called this, and the run starts from its state and source
    /// positions with a fresh output (none of the job's sink state).
    pub fork_of: Option<String>,
}

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

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Job name.
    pub name: String,
    /// Final counters.
    pub totals: Snapshot,
    /// Dead letters written (malformed plus rejected).
    pub dead_letters: u64,
    /// Per worker thread statistics.
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

/// Run `plan` with its Wasm plugins. A restart from a checkpoint runs the
/// plugin versions the checkpoint names where a swap brought them in; the
/// control endpoint can swap plugins while the job runs.
pub fn run(plan: &Plan, options: RunOptions) -> Result<JobReport> {
    let engine = WeirEngine::new(plan.engine.clone())?
        .for_job(options.fork_of.as_deref().unwrap_or(&plan.name));
    let mut factories = load_operators(&engine, plan)?;
    let restart = (
        options.from_savepoint.as_deref(),
        options.fork_of.as_deref(),
    );
    resume_versions(&engine, plan, restart, &mut factories)?;
    run_inner(plan, &factories, Some(engine), options)
}

/// Run `plan` with the given operator chain (the benchmark passes native
/// operators here); no plugin swaps.
pub fn run_with(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    options: RunOptions,
) -> Result<JobReport> {
    run_inner(plan, factories, None, options)
}

/// The versions a restart from `selector` runs (see
/// [`swap::versions_for_restart`]); a selector that finds nothing is left
/// to `prepare` to refuse.
fn resume_versions(
    engine: &WeirEngine,
    plan: &Plan,
    (selector, fork_of): (Option<&str>, Option<&str>),
    factories: &mut [Arc<dyn OperatorFactory>],
) -> Result<()> {
    let (Some(selector), Some(store)) = (selector, open_store(plan)?) else {
        return Ok(());
    };
    let Ok(found) = manifest::select(&store, fork_of.unwrap_or(&plan.name), selector) else {
        return Ok(());
    };
    let digests: Vec<String> = found
        .manifest
        .partitions
        .first()
        .map(|p| {
            p.operators
                .iter()
                .map(|o| o.plugin_digest.clone())
                .collect()
        })
        .unwrap_or_default();
    swap::versions_for_restart(
        engine,
        &store,
        fork_of.unwrap_or(&plan.name),
        &plan.operators,
        factories,
        &digests,
    )
}

fn run_inner(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    engine: Option<WeirEngine>,
    mut options: RunOptions,
) -> Result<JobReport> {
    let clock = (Instant::now(), process_cpu_time());
    let mut job = prepare(plan, factories, &options)?;
    job.engine = engine;
    let partitions = settle_output(&mut job)?;
    let (router, running) = start(&mut job, partitions, &mut options, clock.0)?;
    let source_result = run_source(job.source.as_mut(), router);
    finish(job, running, source_result, clock)
}

/// What [`prepare`] checked and opened; nothing of the output or state has
/// been touched yet.
struct Prepared {
    /// The plan with the partitions the source imposes.
    plan: Plan,
    store: Option<StateStore>,
    restored: Option<Restored>,
    source: Box<dyn Source>,
    sinks: Box<dyn SinkFactory>,
    shared: Shared,
    /// Every partition's operators, instantiated and restored.
    chains: Vec<Chain>,
    /// The id the first barrier gets (checkpoints on).
    next_id: Option<u64>,
    /// This run's lease on the job (checkpoints on): one run per job.
    _lease: Option<Lease>,
    /// The control endpoint's listener, bound before anything is touched.
    control: Option<Bound>,
    /// The engine, for plugin swaps (`None`: native operators, no swaps).
    engine: Option<WeirEngine>,
    /// The operators' factories as the job starts.
    factories: Vec<Arc<dyn OperatorFactory>>,
}

/// Everything that can be refused is checked before output or state is
/// touched: the savepoint, the source, the sink, every operator.
fn prepare(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    options: &RunOptions,
) -> Result<Prepared> {
    let store = open_store(plan)?;
    let lease = store
        .as_ref()
        .map(|s| Lease::acquire_or_stop(s, &plan.name, options.stop.clone()))
        .transpose()?;
    let restored = find_restore_point(
        plan,
        store.as_ref(),
        options.from_savepoint.as_deref(),
        options.fork_of.as_deref(),
    )?;
    let next_id = store
        .as_ref()
        .map(|s| next_checkpoint_id(s, plan, restored.as_ref()))
        .transpose()?;
    let source = source::open(
        &plan.source,
        options.stop.clone(),
        restored.as_ref().map(source_position),
    )?;
    let plan = with_source_partitions(plan, source.partitions())?;
    let sinks = sink::open(&plan.sink, &plan.name, plan.checkpoint.is_some())?;
    sinks.validate()?;
    let shared = Shared {
        dead_letters: Arc::new(DeadLetters::open(
            plan.dead_letter.as_deref(),
            source.origins(),
        )?),
        metrics: Arc::new(Metrics::default()),
        workers_gone: Arc::default(),
    };
    let control = plan
        .control
        .map(|a| ControlServer::bind(a, &plan.name))
        .transpose()?;
    let chains = build_chains(&plan, factories, restored.as_ref())?;
    Ok(Prepared {
        plan,
        store,
        restored,
        source,
        sinks,
        shared,
        chains,
        next_id,
        _lease: lease,
        control,
        engine: None,
        factories: factories.to_vec(),
    })
}

/// Every operator accepted its state: only now bring the output to the
/// restored point (or clear it for a fresh run), then open each
/// partition's sink.
fn settle_output(job: &mut Prepared) -> Result<Vec<Partition>> {
    let sink_states: Option<Vec<_>> = job
        .restored
        .as_ref()
        .map(|r| r.partitions.iter().map(|p| p.sink.clone()).collect());
    job.sinks.recover(sink_states.as_deref())?;
    let chains = std::mem::take(&mut job.chains);
    chains
        .into_iter()
        .enumerate()
        .map(|(p, chain)| {
            let restored = sink_states.as_ref().and_then(|s| s[p].as_ref());
            Ok(chain.with_sink(job.sinks.create(p, restored)?))
        })
        .collect()
}

/// The threads of a started job, joined by [`finish`].
struct Running {
    workers: Vec<JoinHandle<Result<TaskStats>>>,
    coordinator: Option<JoinHandle<()>>,
    control: Option<ControlServer>,
    progress: ProgressThread,
    stats: Arc<Mutex<CheckpointStats>>,
    /// Barrier requests nobody reads (checkpoints off), kept open until the
    /// job ends.
    unread_triggers: Option<Receiver<Trigger>>,
}

/// Start the coordinator, the workers, the progress reporter and the
/// control endpoint; returns the router the source writes to.
fn start(
    job: &mut Prepared,
    partitions: Vec<Partition>,
    options: &mut RunOptions,
    started: Instant,
) -> Result<(Router, Running)> {
    let bound = job.control.take();
    let job = &*job;
    let plan = &job.plan;
    let stats = Arc::new(Mutex::new(CheckpointStats::default()));
    let completed = Arc::new(AtomicU64::new(0));
    let threads = plan.parallelism.min(plan.partitions);
    let (decision_txs, decision_rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| crossbeam_channel::unbounded::<Decision>())
        .unzip();
    let (coord_tx, coordinator) =
        start_coordinator(plan, job.store.as_ref(), decision_txs, (&stats, &completed))?;
    let chunk_bytes = plan
        .checkpoint
        .as_ref()
        .and_then(|c| c.snapshot_chunk_bytes);
    let (senders, recycle_rx, workers) = start_workers(
        threads,
        partitions,
        &job.shared,
        (coord_tx.as_ref(), chunk_bytes),
        decision_rxs,
    )?;
    let progress = start_progress(options, &job.shared.metrics, started);

    let router = Router::new(
        senders,
        plan.partitions,
        recycle_rx,
        plan.batch.clone(),
        plan.watermark_delay_ms,
        job.shared.dead_letters.clone(),
        job.shared.metrics.clone(),
        (job.source.connector(), plan.idle_timeout),
    );
    let (trigger_tx, trigger_rx) = crossbeam_channel::unbounded::<Trigger>();
    forward_triggers(options.triggers.take(), &trigger_tx);
    let (router, unread_triggers) =
        with_checkpoints(router, job, coord_tx, trigger_rx, &completed)?;
    let swaps = swapper(job, trigger_tx.clone(), threads)?;
    let control = start_control(
        plan,
        bound,
        (trigger_tx, swaps),
        options,
        &job.shared,
        &stats,
    )?;
    let running = Running {
        workers,
        coordinator,
        control,
        progress,
        stats,
        unread_triggers,
    };
    Ok((router, running))
}

/// The router with barriers (when checkpointing: it then reads the
/// barrier requests, else they come back), the final checkpoint a bounded
/// input needs, and the restored event time.
fn with_checkpoints(
    mut router: Router,
    job: &Prepared,
    coordinator: Option<Sender<CoordMsg>>,
    triggers: Receiver<Trigger>,
    completed: &Arc<AtomicU64>,
) -> Result<(Router, Option<Receiver<Trigger>>)> {
    let plan = &job.plan;
    let mut unread = Some(triggers);
    if let (Some(c), Some(tx), Some(_)) = (&plan.checkpoint, coordinator, &job.store) {
        let next_id = job.next_id.unwrap_or(1);
        let barriers = Barriers::new(
            tx,
            unread.take().expect("not taken yet"),
            (c.interval, c.savepoint_every_event_time_ms),
            next_id,
            completed.clone(),
        );
        // A bounded input ends with a checkpoint when checkpoints are
        // periodic, and always for a sink that commits only through them.
        let at_end = c.interval.is_some() || job.sinks.commits_only_at_checkpoints();
        router = router.with_barriers(barriers.final_checkpoint(at_end));
    }
    if let Some(r) = &job.restored {
        router.resume_event_time(r.manifest.watermark, r.manifest.max_event_time);
    }
    Ok((router, unread))
}

/// The control endpoint, when the plan serves one (bound in [`prepare`]).
fn start_control(
    plan: &Plan,
    bound: Option<Bound>,
    (triggers, swaps): (Sender<Trigger>, Option<Arc<Swapper>>),
    options: &RunOptions,
    shared: &Shared,
    stats: &Arc<Mutex<CheckpointStats>>,
) -> Result<Option<ControlServer>> {
    let Some(bound) = bound else {
        return Ok(None);
    };
    let handle = JobHandle {
        job: plan.name.clone(),
        triggers,
        stop: options.stop.clone(),
        metrics: shared.metrics.clone(),
        checkpoints: stats.clone(),
        savepoints: plan.checkpoint.is_some(),
        swaps,
    };
    ControlServer::serve(bound, handle).map(Some)
}

/// Plugin swaps, when the job runs Wasm plugins with checkpoints.
fn swapper(
    job: &Prepared,
    triggers: Sender<Trigger>,
    threads: usize,
) -> Result<Option<Arc<Swapper>>> {
    let (Some(engine), Some(store), Some(_)) = (&job.engine, &job.store, &job.plan.checkpoint)
    else {
        return Ok(None);
    };
    let current: Vec<Current> = job
        .factories
        .iter()
        .map(|f| Current {
            digest: f.digest().unwrap_or_default().to_string(),
            factory: f.clone(),
        })
        .collect();
    let running: Vec<(String, String)> = job
        .plan
        .operators
        .iter()
        .zip(&current)
        .map(|(o, c)| (o.name.clone(), c.digest.clone()))
        .collect();
    let log = Arc::new(SwapLog::open(&job.plan.name, store.clone(), current)?);
    log.settle_open(&running);
    Ok(Some(Arc::new(Swapper::new(
        engine.clone(),
        store.clone(),
        &job.plan.name,
        job.plan.operators.clone(),
        log,
        (triggers, threads, job.shared.workers_gone.clone()),
    ))))
}

/// Run the source on this thread until its input ends, it is stopped or it
/// fails; then flush the router and hang up, so the workers drain.
fn run_source(source: &mut dyn Source, mut router: Router) -> Result<Completion> {
    let result = source.run(&mut router);
    let _ = router.finish(*result.as_ref().unwrap_or(&Completion::Stopped));
    result
}

/// Join every thread and report; the source's error comes first, then the
/// first worker's.
fn finish(
    job: Prepared,
    running: Running,
    source_result: Result<Completion>,
    (started, cpu_start): (Instant, Duration),
) -> Result<JobReport> {
    let Running {
        workers,
        coordinator,
        control,
        progress,
        stats,
        unread_triggers: _unread_triggers,
    } = running;
    let completion = *source_result.as_ref().unwrap_or(&Completion::Stopped);
    let mut first_error = source_result.err();
    let task_stats = join_workers(workers, &mut first_error);
    // Every sender is gone now: the coordinator finishes what is in flight.
    if let Some(c) = coordinator {
        let _ = c.join();
    }
    drop(control);
    progress.stop();
    job.shared.dead_letters.flush()?;
    if let Some(e) = first_error {
        return Err(e);
    }
    let checkpoints = lock_or_recover(&stats).clone();
    Ok(JobReport {
        name: job.plan.name.clone(),
        totals: job.shared.metrics.snapshot(),
        dead_letters: job.shared.dead_letters.count(),
        tasks: task_stats,
        elapsed: started.elapsed(),
        cpu: process_cpu_time().saturating_sub(cpu_start),
        completion,
        checkpoints,
        restored_from: job.restored.map(|r| r.location),
    })
}

/// The state store, when checkpoints are on.
fn open_store(plan: &Plan) -> Result<Option<StateStore>> {
    plan.checkpoint
        .as_ref()
        .map(|c| StateStore::open(&c.store, std::path::Path::new(".")))
        .transpose()
}

/// Find and verify the checkpoint or savepoint to start from, if asked.
fn find_restore_point(
    plan: &Plan,
    store: Option<&StateStore>,
    selector: Option<&str>,
    fork_of: Option<&str>,
) -> Result<Option<Restored>> {
    match (selector, store) {
        (Some(sel), Some(store)) => {
            let Some(job) = fork_of else {
                return Ok(Some(load_for_plan(store, plan, sel)?));
            };
            let mut r = load_checked(store, plan, job, sel)?;
            // A fork writes its own output: none of the job's sink state.
            for p in &mut r.partitions {
                p.sink = None;
            }
            Ok(Some(r))
        }
        (Some(_), None) => Err(Error::Config(
            "--from-savepoint needs checkpoints enabled (a [state] store)".into(),
        )),
        (None, _) => Ok(None),
    }
}

/// The plan with the partitions the source imposes (Kafka: the topic's);
/// `partitions = 0` in a plan means "the source's".
fn with_source_partitions(plan: &Plan, source: Option<usize>) -> Result<Plan> {
    let mut plan = plan.clone();
    match source {
        Some(n) if plan.partitions == 0 || plan.partitions == n => plan.partitions = n,
        Some(n) => {
            return Err(Error::Config(format!(
                "the job sets partitions = {}, but its source has {n} partitions; remove the setting",
                plan.partitions
            )));
        }
        None if plan.partitions == 0 => {
            return Err(Error::Config("partitions must be at least 1".into()));
        }
        None => {}
    }
    Ok(plan)
}

/// What the source recorded in a restored checkpoint.
fn source_position(r: &Restored) -> source::Restored {
    source::Restored {
        connector: r.manifest.source.connector.clone(),
        reader: r.manifest.source.position.clone(),
        partitions: r.partitions.iter().map(|p| p.source.clone()).collect(),
    }
}

/// Instantiate (and restore) every partition's operators before reading
/// anything, so a broken plugin or savepoint fails the job before any input
/// is consumed or output touched.
fn build_chains(
    plan: &Plan,
    factories: &[Arc<dyn OperatorFactory>],
    restored: Option<&Restored>,
) -> Result<Vec<Chain>> {
    (0..plan.partitions)
        .map(|p| Chain::new(p, factories, restored.and_then(|r| r.partitions.get(p))))
        .collect()
}

/// The coordinator's input and thread, when checkpointing.
type CoordinatorThread = (Option<Sender<CoordMsg>>, Option<JoinHandle<()>>);

/// The coordinator thread, when checkpointing.
fn start_coordinator(
    plan: &Plan,
    store: Option<&StateStore>,
    decisions: Vec<Sender<Decision>>,
    (stats, completed): (&Arc<Mutex<CheckpointStats>>, &Arc<AtomicU64>),
) -> Result<CoordinatorThread> {
    let (Some(c), Some(store)) = (&plan.checkpoint, store) else {
        return Ok((None, None));
    };
    let (tx, rx) = crossbeam_channel::unbounded::<CoordMsg>();
    let coord = Coordinator::new(
        store.clone(),
        &plan.name,
        (plan.parallelism, plan.partitions),
        c.retain,
        decisions,
        (stats.clone(), completed.clone()),
    );
    let handle = std::thread::Builder::new()
        .name("weir-checkpoints".into())
        .spawn(move || coord.run(rx))
        .map_err(|e| Error::Internal(format!("spawning coordinator: {e}")))?;
    Ok((Some(tx), Some(handle)))
}

type Started = (
    Vec<Sender<TaskMsg>>,
    Receiver<SourceBatch>,
    Vec<JoinHandle<Result<TaskStats>>>,
);

/// One worker thread per unit of parallelism; partition `p` goes to thread
/// `p % threads`.
fn start_workers(
    threads: usize,
    partitions: Vec<Partition>,
    shared: &Shared,
    (coordinator, chunk_bytes): (Option<&Sender<CoordMsg>>, Option<u32>),
    decisions: Vec<Receiver<Decision>>,
) -> Result<Started> {
    let mut per_thread: Vec<Vec<Partition>> = (0..threads).map(|_| Vec::new()).collect();
    for (p, partition) in partitions.into_iter().enumerate() {
        per_thread[p % threads].push(partition);
    }
    let (recycle_tx, recycle_rx) = crossbeam_channel::unbounded::<SourceBatch>();
    let mut senders = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for (thread, (parts, decisions)) in per_thread.into_iter().zip(decisions).enumerate() {
        let (tx, rx) = crossbeam_channel::bounded::<TaskMsg>(CHANNEL_DEPTH * parts.len().max(1));
        senders.push(tx);
        let worker = Worker::new(
            thread,
            threads,
            parts,
            shared.clone(),
            coordinator.cloned(),
            chunk_bytes,
        );
        let recycle = recycle_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("weir-task-{thread}"))
            .spawn(move || worker.run(rx, decisions, recycle))
            .map_err(|e| Error::Internal(format!("spawning task thread: {e}")))?;
        handles.push(handle);
    }
    Ok((senders, recycle_rx, handles))
}

/// Join the workers; the first error (after the source's) is kept.
fn join_workers(
    workers: Vec<JoinHandle<Result<TaskStats>>>,
    first_error: &mut Option<Error>,
) -> Vec<TaskStats> {
    let mut stats = Vec::with_capacity(workers.len());
    for h in workers {
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
    stats
}

/// Extra barrier requests (tests, embedding programs) join the control
/// endpoint's.
fn forward_triggers(extra: Option<Receiver<Trigger>>, to: &Sender<Trigger>) {
    if let Some(extra) = extra {
        let tx = to.clone();
        std::thread::spawn(move || {
            for t in extra {
                if tx.send(t).is_err() {
                    break;
                }
            }
        });
    }
}

/// Ids continue after every complete checkpoint or savepoint of the job
/// (not only the restored one), so a new checkpoint never reuses the folder
/// of an existing one.
fn next_checkpoint_id(store: &StateStore, plan: &Plan, restored: Option<&Restored>) -> Result<u64> {
    // Every id in use: complete manifests, and checkpoint folders whose
    // manifest is missing or corrupt (never written into again).
    let newest = manifest::list(store, &plan.name)?
        .iter()
        .map(|f| f.manifest.id)
        .chain(manifest::checkpoint_folder_ids(store, &plan.name)?)
        .max()
        .unwrap_or(0);
    Ok(newest.max(restored.map_or(0, |r| r.manifest.id)) + 1)
}

/// The progress reporter thread, if the caller wants ticks.
struct ProgressThread {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressThread {
    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

fn start_progress(
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

/// Load `selector` for `plan` and check it fits: same partitions, same
/// operator chain. The parallelism may differ: partitions move between
/// threads.
pub fn load_for_plan(store: &StateStore, plan: &Plan, selector: &str) -> Result<Restored> {
    load_checked(store, plan, &plan.name, selector)
}

/// [`load_for_plan`] for a savepoint of job `job` (a fork's is another
/// job's).
fn load_checked(store: &StateStore, plan: &Plan, job: &str, selector: &str) -> Result<Restored> {
    let r = restore::load(store, job, selector)?;
    let theirs = r.manifest.partitions.len();
    if plan.partitions != 0 && theirs != plan.partitions {
        return Err(r.error(format!(
            "it holds {theirs} partitions; this job has {} (set `partitions = {theirs}` in the job \
             file, or `--parallelism {theirs}` when the partitions default to the parallelism)",
            plan.partitions
        )));
    }
    let theirs: Vec<&str> = r
        .manifest
        .partitions
        .first()
        .map(|p| p.operators.iter().map(|o| o.name.as_str()).collect())
        .unwrap_or_default();
    let ours: Vec<&str> = plan.operators.iter().map(|o| o.name.as_str()).collect();
    if theirs != ours {
        return Err(r.error(format!(
            "it holds operators {theirs:?}; this job has {ours:?}"
        )));
    }
    Ok(r)
}
