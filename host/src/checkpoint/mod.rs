//! Checkpoints and savepoints with aligned barriers.
//!
//! The source injects a barrier between two records into every task's input
//! (one source feeds all tasks in order, so the barrier is aligned by
//! construction). Each task, on reaching it, snapshots its operators, copies
//! its timers, closes its in-progress sink file and hands everything to the
//! [`Coordinator`] thread, then goes on processing: a task pauses only for
//! the guest's serialization. The coordinator uploads the blobs, writes
//! `manifest.json` last (the commit point), commits the sink files the
//! checkpoint covers, prunes old checkpoints and answers whoever asked for a
//! savepoint.

pub mod manifest;
pub mod restore;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use manifest::{
    BlobRef, Kind, MANIFEST_FORMAT, Manifest, OperatorEntry, SinkState, SourcePosition, TaskEntry,
    checkpoint_name, folder,
};
use store::StateStore;

/// Checkpointing settings of a plan.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// Where checkpoints and savepoints go.
    pub store: StateStore,
    /// Periodic checkpoint interval (`None`: savepoints only).
    pub interval: Option<Duration>,
    /// Complete checkpoints kept (savepoints are always kept).
    pub retain: usize,
    /// Take a savepoint each time the watermark crosses a multiple of this
    /// many ms of event time.
    pub savepoint_every_event_time_ms: Option<i64>,
}

/// Reply to whoever asked for a savepoint.
pub type Reply = Sender<Result<Manifest, String>>;

/// A request from outside (control endpoint, `weir stop`).
#[derive(Debug)]
pub enum Trigger {
    /// Take a savepoint; with `stop`, end the job right after it.
    Savepoint {
        /// Savepoint name (default `sp-<id>`).
        name: Option<String>,
        /// Stop the job once the barrier is injected.
        stop: bool,
        /// Gets the manifest when the savepoint is complete.
        reply: Option<Reply>,
    },
}

/// What the source tells the coordinator when it injects a barrier.
#[derive(Debug)]
pub struct Begin {
    /// Checkpoint id.
    pub id: u64,
    /// Kind.
    pub kind: Kind,
    /// Folder name.
    pub name: String,
    /// Source position at the barrier.
    pub source: SourcePosition,
    /// Watermark at the barrier.
    pub watermark: i64,
    /// Largest event time before the barrier.
    pub max_event_time: i64,
    /// Wall time of the barrier.
    pub wall_time_ms: i64,
    /// Who to tell when it completes.
    pub reply: Option<Reply>,
}

/// One operator's part of a task snapshot.
#[derive(Debug)]
pub struct OperatorSnapshot {
    /// Operator name.
    pub name: String,
    /// Digest of the component.
    pub digest: String,
    /// State schema version.
    pub state_version: u32,
    /// `snapshot` bytes.
    pub state: Vec<u8>,
    /// Encoded timers.
    pub timers: Vec<u8>,
    /// Number of timers.
    pub timer_count: u64,
}

/// What a task hands over at a barrier.
#[derive(Debug)]
pub struct TaskSnapshot {
    /// Checkpoint id.
    pub id: u64,
    /// Task index.
    pub task: usize,
    /// The task's watermark.
    pub watermark: i64,
    /// Operators in chain order.
    pub operators: Vec<OperatorSnapshot>,
    /// File sink state, if any.
    pub sink: Option<SinkState>,
    /// How long the task paused.
    pub pause: Duration,
}

/// Messages to the coordinator.
#[derive(Debug)]
pub enum CoordMsg {
    /// A barrier was injected.
    Begin(Begin),
    /// A task reached it.
    Task(TaskSnapshot),
}

/// Figures of completed checkpoints, for reports and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    /// Completed checkpoints and savepoints.
    pub completed: u64,
    /// Failed ones.
    pub failed: u64,
    /// The last completed manifest.
    pub last: Option<Manifest>,
    /// Longest task pause of the last one.
    pub last_max_pause: Duration,
    /// Barrier-to-manifest time of the last one.
    pub last_duration: Duration,
    /// Time spent uploading blobs and the manifest, last one.
    pub last_upload: Duration,
}

struct InFlight {
    begin: Begin,
    started: Instant,
    tasks: Vec<Option<TaskSnapshot>>,
}

/// The coordinator thread's state.
pub struct Coordinator {
    store: StateStore,
    job: String,
    parallelism: usize,
    retain: usize,
    sink_dir: Option<PathBuf>,
    in_flight: BTreeMap<u64, InFlight>,
    /// Sink files of failed checkpoints, committed by the next good one.
    carry: Vec<Vec<String>>,
    stats: Arc<Mutex<CheckpointStats>>,
}

impl Coordinator {
    /// A coordinator for `job`.
    pub fn new(
        store: StateStore,
        job: &str,
        parallelism: usize,
        retain: usize,
        sink_dir: Option<PathBuf>,
        stats: Arc<Mutex<CheckpointStats>>,
    ) -> Self {
        Self {
            store,
            job: job.to_string(),
            parallelism,
            retain: retain.max(1),
            sink_dir,
            in_flight: BTreeMap::new(),
            carry: vec![Vec::new(); parallelism],
            stats,
        }
    }

    /// Serve until every sender hangs up.
    pub fn run(mut self, rx: Receiver<CoordMsg>) {
        for msg in rx {
            match msg {
                CoordMsg::Begin(b) => {
                    let id = b.id;
                    self.in_flight.insert(
                        id,
                        InFlight {
                            begin: b,
                            started: Instant::now(),
                            tasks: (0..self.parallelism).map(|_| None).collect(),
                        },
                    );
                }
                CoordMsg::Task(t) => {
                    let id = t.id;
                    let Some(f) = self.in_flight.get_mut(&id) else {
                        tracing::error!(id, "task snapshot for an unknown checkpoint");
                        continue;
                    };
                    let task = t.task;
                    f.tasks[task] = Some(t);
                    if f.tasks.iter().all(Option::is_some) {
                        let f = self.in_flight.remove(&id).expect("present");
                        self.complete(f);
                    }
                }
            }
        }
    }

    fn complete(&mut self, f: InFlight) {
        let reply = f.begin.reply.clone();
        let kind = f.begin.kind;
        let result = self.write(f);
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(m) => {
                stats.completed += 1;
                stats.last = Some(m.clone());
                tracing::info!(
                    kind = ?kind, name = %m.name, bytes = m.state_bytes(),
                    ms = stats.last_duration.as_millis() as u64, "checkpoint complete"
                );
            }
            Err(e) => {
                stats.failed += 1;
                tracing::error!("checkpoint failed: {e}");
            }
        }
        drop(stats);
        if let Some(r) = reply {
            let _ = r.send(result.map_err(|e| e.to_string()));
        }
    }

    fn write(&mut self, f: InFlight) -> crate::Result<Manifest> {
        let b = &f.begin;
        let dir = folder(&self.job, b.kind, &b.name);
        let mut blobs = Vec::new();
        let mut tasks = Vec::with_capacity(self.parallelism);
        let mut max_pause = Duration::ZERO;
        for (t, snap) in f.tasks.into_iter().enumerate() {
            let snap = snap.expect("complete");
            max_pause = max_pause.max(snap.pause);
            let mut operators = Vec::new();
            for (i, op) in snap.operators.into_iter().enumerate() {
                let base = format!("task-{t:04}/op-{i}-{}", op.name);
                let state = BlobRef::of(format!("{base}.state"), &op.state);
                let timers = BlobRef::of(format!("{base}.timers"), &op.timers);
                blobs.push((format!("{dir}/{}", state.path), Bytes::from(op.state)));
                blobs.push((format!("{dir}/{}", timers.path), Bytes::from(op.timers)));
                operators.push(OperatorEntry {
                    name: op.name,
                    plugin_digest: op.digest,
                    state_version: op.state_version,
                    state,
                    timers,
                    timer_count: op.timer_count,
                });
            }
            let sink = snap.sink.map(|mut s| {
                let mut pending = std::mem::take(&mut self.carry[t]);
                pending.append(&mut s.pending);
                SinkState { pending, ..s }
            });
            tasks.push(TaskEntry {
                task: t,
                watermark: snap.watermark,
                sink,
                operators,
            });
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            job: self.job.clone(),
            kind: b.kind,
            id: b.id,
            name: b.name.clone(),
            wall_time_ms: b.wall_time_ms,
            watermark: b.watermark,
            max_event_time: b.max_event_time,
            host_version: crate::VERSION.into(),
            wit_version: crate::engine::ACCEPTED_WIT_VERSIONS[0].into(),
            parallelism: self.parallelism,
            source: b.source.clone(),
            tasks,
        };
        let upload = Instant::now();
        let written = self.store.put_all(blobs).and_then(|()| {
            let json = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| crate::Error::Internal(e.to_string()))?;
            self.store
                .put(&format!("{dir}/manifest.json"), Bytes::from(json))
        });
        if let Err(e) = written {
            // Not committed: its sink files wait for the next checkpoint.
            for t in &manifest.tasks {
                if let Some(s) = &t.sink {
                    self.carry[t.task].extend(s.pending.iter().cloned());
                }
            }
            return Err(e);
        }
        let upload = upload.elapsed();
        if let Some(dir) = &self.sink_dir {
            for t in &manifest.tasks {
                for name in t.sink.iter().flat_map(|s| &s.pending) {
                    crate::sink::file::commit(dir, name)?;
                }
            }
        }
        if b.kind == Kind::Checkpoint {
            self.prune()?;
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.last_max_pause = max_pause;
        stats.last_duration = f.started.elapsed();
        stats.last_upload = upload;
        Ok(manifest)
    }

    /// Keep the newest `retain` complete checkpoints (and any newer
    /// incomplete ones, which may still be in flight).
    fn prune(&self) -> crate::Result<()> {
        let prefix = format!("jobs/{}/checkpoints/", self.job);
        let mut complete: Vec<String> = Vec::new();
        let mut all: Vec<String> = Vec::new();
        for (key, _) in self.store.list(&prefix)? {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((name, file)) = rest.split_once('/') else {
                continue;
            };
            if all.last().map(String::as_str) != Some(name) {
                all.push(name.to_string());
            }
            if file == "manifest.json" {
                complete.push(name.to_string());
            }
        }
        if complete.len() <= self.retain {
            return Ok(());
        }
        let oldest_kept = complete[complete.len() - self.retain].clone();
        for name in all.iter().filter(|n| **n < oldest_kept) {
            // The manifest sorts before the blobs, so it goes first and the
            // checkpoint stops existing before its blobs do.
            self.store.delete_prefix(&format!("{prefix}{name}/"))?;
        }
        Ok(())
    }
}

/// Default name of a triggered savepoint.
pub fn savepoint_name(id: u64) -> String {
    format!("sp-{}", checkpoint_name(id))
}

/// Name of the savepoint taken when the watermark reaches `boundary`.
pub fn event_time_savepoint_name(boundary: i64) -> String {
    let t = manifest::format_time(boundary);
    format!("et-{}", t.replace([':', '.'], "-"))
}
