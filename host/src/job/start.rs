//! Starting a prepared job: the line that says what it restores, the
//! checkpoint coordinator, one worker thread per unit of parallelism, the
//! progress reporter, the control endpoint with its swapper, and the router
//! (with barriers when checkpointing) the source writes to.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::RunOptions;
use super::Trigger;
use super::plugins;
use super::prepare::Prepared;
use super::progress::{self, ProgressThread};
use crate::batch::SourceBatch;
use crate::checkpoint::manifest::{Kind, Manifest};
use crate::checkpoint::restore::Restored;
use crate::checkpoint::store::StateStore;
use crate::config::Plan;
use crate::runtime::control::{Bound, ControlServer, JobHandle};
use crate::runtime::handoff;
use crate::runtime::swap::Swapper;
use crate::runtime::{
    Barriers, CheckpointStats, CoordMsg, Coordinator, Decision, Partition, Router, Shared, TaskMsg,
    TaskStats, Worker,
};
use crate::source::file::FilePosition;
use crate::{Error, Result};

/// Batches in flight per partition before the source waits (backpressure).
const CHANNEL_DEPTH: usize = 8;

/// The threads of a started job, joined by [`super::finish::finish`].
pub(super) struct Running {
    /// One per unit of parallelism; each returns its statistics.
    pub workers: Vec<JoinHandle<Result<TaskStats>>>,
    /// The checkpoint coordinator (checkpoints on).
    pub coordinator: Option<JoinHandle<()>>,
    /// The control endpoint, when the plan serves one.
    pub control: Option<ControlServer>,
    /// The progress reporter.
    pub progress: ProgressThread,
    /// Checkpoint figures, shared with the coordinator.
    pub stats: Arc<Mutex<CheckpointStats>>,
    /// Barrier requests nobody reads (checkpoints off), kept open until the
    /// job ends.
    pub unread_triggers: Option<Receiver<Trigger>>,
}

/// Start the coordinator, the workers, the progress reporter and the
/// control endpoint; returns the router the source writes to.
pub(super) fn start(
    job: &mut Prepared,
    partitions: Vec<Partition>,
    options: &mut RunOptions,
    started: Instant,
) -> Result<(Router, Running)> {
    let bound = job.control.take();
    let job = &*job;
    let plan = &job.plan;
    if let Some(r) = &job.restored {
        tracing::info!("{}", restore_line(&plan.name, r));
    }
    let stats = Arc::new(Mutex::new(CheckpointStats::default()));
    let threads = plan.parallelism.min(plan.partitions);
    let (decision_txs, decision_rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| crossbeam_channel::unbounded::<Decision>())
        .unzip();
    let (coord_tx, coordinator) = start_coordinator(
        plan,
        (job.store.as_ref(), job.fence.clone()),
        decision_txs,
        &stats,
    )?;
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
    let progress = progress::start(options, &job.shared.metrics, started);

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
    let (router, unread_triggers) = with_checkpoints(router, job, coord_tx, trigger_rx)?;
    let swaps = plugins::swapper(job, trigger_tx.clone(), threads)?;
    let control = start_control(
        plan,
        bound,
        (trigger_tx, swaps, job.store.as_ref()),
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

/// What a run restores, said before its first record: the checkpoint or
/// savepoint (kind, name, where), when it was taken, the source position,
/// each operator's plugin version and state version, and the versions that
/// wrote it.
fn restore_line(job: &str, r: &Restored) -> String {
    let m = &r.manifest;
    let kind = match m.kind {
        Kind::Checkpoint => "checkpoint",
        Kind::Savepoint => "savepoint",
    };
    let mut operators: Vec<String> = Vec::new();
    for op in m.partitions.iter().flat_map(|p| &p.operators) {
        let line = format!(
            "{} plugin {} state v{}",
            op.name,
            &op.plugin_digest[..op.plugin_digest.len().min(12)],
            op.state_version
        );
        if !operators.contains(&line) {
            operators.push(line);
        }
    }
    format!(
        "restoring job `{job}` from {kind} `{}` ({}): taken {}, event time {}; {} partitions; \
         source at {}; operators: {}; written by weir {} (WIT {})",
        m.name,
        r.location,
        crate::clock::format_time(m.wall_time_ms),
        crate::clock::format_time(m.watermark),
        m.partitions.len(),
        describe_position(m),
        operators.join(", "),
        m.host_version,
        m.wit_version,
    )
}

/// A restored source position in a few words: the file source's file,
/// offset and line; Kafka's next offset per partition; other connectors
/// by name.
fn describe_position(m: &Manifest) -> String {
    let p = &m.source;
    match p.connector.as_str() {
        "files" => match FilePosition::from_value(&p.position) {
            Ok(FilePosition {
                file: Some(file),
                offset,
                line,
                ..
            }) => format!("{file} byte {offset} (line {line})"),
            Ok(_) => "the first file".into(),
            Err(_) => "a file position".into(),
        },
        "kafka" => {
            let topic = p.position["topic"].as_str().unwrap_or("?");
            format!("kafka topic {topic} offsets {}", m.partition_offsets())
        }
        other => format!("its {other} position"),
    }
}

/// The router with barriers (when checkpointing: it then reads the
/// barrier requests, else they come back), the final checkpoint a bounded
/// input needs, and the restored event time.
fn with_checkpoints(
    mut router: Router,
    job: &Prepared,
    coordinator: Option<Sender<CoordMsg>>,
    triggers: Receiver<Trigger>,
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
            job.shared.committed.clone(),
        );
        // A bounded input always ends with a checkpoint at its end
        // position, also with `interval_ms = 0` (savepoints only): the file
        // and Kafka sinks commit only through checkpoints, so without it
        // the output after the last savepoint would stay uncommitted.
        router = router.with_barriers(barriers.final_checkpoint(true));
    }
    if let Some(r) = &job.restored {
        router.resume_event_time(r.manifest.watermark, r.manifest.max_event_time);
    }
    Ok((router, unread))
}

/// The control endpoint, when the plan serves one (bound in
/// [`super::prepare::prepare`]).
fn start_control(
    plan: &Plan,
    bound: Option<Bound>,
    (triggers, swaps, store): (Sender<Trigger>, Option<Arc<Swapper>>, Option<&StateStore>),
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
        dead_letters: shared.dead_letters.clone(),
        checkpoints: stats.clone(),
        started: std::time::Instant::now(),
        parallelism: plan.parallelism.min(plan.partitions),
        savepoints: plan.checkpoint.is_some(),
        store: store.cloned(),
        swaps,
    };
    ControlServer::serve(bound, handle).map(Some)
}

/// The coordinator's input and thread, when checkpointing.
type CoordinatorThread = (Option<Sender<CoordMsg>>, Option<JoinHandle<()>>);

/// The coordinator thread, when checkpointing.
fn start_coordinator(
    plan: &Plan,
    (store, fence): (Option<&StateStore>, Option<crate::checkpoint::claim::Fence>),
    decisions: Vec<Sender<Decision>>,
    stats: &Arc<Mutex<CheckpointStats>>,
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
        stats.clone(),
    )
    .with_fence(fence);
    let handle = std::thread::Builder::new()
        .name("weir-checkpoints".into())
        .spawn(move || coord.run(rx))
        .map_err(|e| Error::Internal(format!("spawning coordinator: {e}")))?;
    Ok((Some(tx), Some(handle)))
}

/// The workers' inputs, the batches they hand back for reuse, and their
/// threads.
type Started = (
    Vec<handoff::Sender<TaskMsg>>,
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
        let (tx, rx) = handoff::channel::<TaskMsg>(CHANNEL_DEPTH * parts.len().max(1));
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
