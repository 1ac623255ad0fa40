//! The checkpoint coordinator: a thread that collects every partition's
//! snapshot for a barrier, uploads the blobs, writes `manifest.json` last
//! (the commit point), prunes old checkpoints, then tells every worker the
//! decision so each sink commits (or, for a failed checkpoint, aborts) what
//! it pre-committed. It never knows how a sink commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

use super::barrier::Reply;
use crate::checkpoint::manifest::{
    BlobRef, Kind, MANIFEST_FORMAT, Manifest, OperatorEntry, PartitionEntry, SourcePosition, folder,
};
use crate::checkpoint::store::StateStore;
use crate::sink::SinkSnapshot;
use crate::source::Position;
use crate::{Result, lock_or_recover};

/// The coordinator's decision on a checkpoint, sent to every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The manifest is durable: commit what the checkpoint covers.
    Commit(u64),
    /// The checkpoint failed or can no longer complete: what it covered
    /// waits for the next one.
    Abort(u64),
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
    /// The source's connector name.
    pub connector: &'static str,
    /// Source position at the barrier.
    pub source: Position,
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

/// What a partition hands over at a barrier.
#[derive(Debug)]
pub struct PartitionSnapshot {
    /// Checkpoint id.
    pub id: u64,
    /// Partition index.
    pub partition: usize,
    /// The partition's watermark.
    pub watermark: i64,
    /// Operators in chain order.
    pub operators: Vec<OperatorSnapshot>,
    /// What its sink pre-committed, if anything.
    pub sink: Option<SinkSnapshot>,
    /// How long the partition paused at the barrier (with chunked
    /// snapshots: freeze, timers and the sink's pre-commit).
    pub pause: Duration,
    /// The longest chunk call of a chunked snapshot (each one a short pause
    /// between batches); zero for blocking snapshots.
    pub chunk_pause: Duration,
}

/// Messages to the coordinator.
#[derive(Debug)]
pub enum CoordMsg {
    /// A barrier was injected.
    Begin(Begin),
    /// A partition reached it.
    Partition(PartitionSnapshot),
}

/// Figures of completed checkpoints, for reports and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    /// Completed checkpoints and savepoints.
    pub completed: u64,
    /// Completed savepoints (triggered and event-time ones), also counted
    /// in `completed`: the run summary counts them apart.
    pub savepoints: u64,
    /// Failed ones.
    pub failed: u64,
    /// The last completed manifest.
    pub last: Option<Manifest>,
    /// Longest partition pause at the barrier, last one.
    pub last_max_pause: Duration,
    /// Longest single chunk call of a chunked snapshot, last one.
    pub last_max_chunk_pause: Duration,
    /// Barrier-to-manifest time of the last one.
    pub last_duration: Duration,
    /// Time spent uploading blobs and the manifest, last one.
    pub last_upload: Duration,
    /// Recent ones, and duration and size histograms.
    pub history: super::figures::CheckpointHistory,
}

/// What became of a checkpoint's folder.
enum Written {
    /// The manifest is written.
    Manifest(Manifest),
    /// An event-time savepoint of that name exists, kept as it is.
    Kept,
    /// A savepoint of that name exists: refused, with why.
    NameTaken(String),
}

/// A checkpoint whose barrier was injected, waiting for its partitions.
struct InFlight {
    /// What the source said when it injected the barrier.
    begin: Begin,
    /// When the coordinator heard of it (for its duration).
    started: Instant,
    /// Each partition's snapshot, once it reached the barrier.
    partitions: Vec<Option<PartitionSnapshot>>,
}

/// The coordinator thread's state.
pub struct Coordinator {
    store: StateStore,
    job: String,
    /// Worker threads, recorded in manifests.
    parallelism: usize,
    partitions: usize,
    retain: usize,
    in_flight: BTreeMap<u64, InFlight>,
    /// One per worker: where decisions go.
    decisions: Vec<Sender<Decision>>,
    stats: Arc<Mutex<CheckpointStats>>,
    /// Checked before each manifest: refuses once another owner holds the
    /// partition (group jobs).
    fence: Option<crate::checkpoint::claim::Fence>,
}

impl Coordinator {
    /// A coordinator for `job` with `partitions` partitions on `parallelism`
    /// threads, telling workers through `decisions`.
    pub fn new(
        store: StateStore,
        job: &str,
        (parallelism, partitions): (usize, usize),
        retain: usize,
        decisions: Vec<Sender<Decision>>,
        stats: Arc<Mutex<CheckpointStats>>,
    ) -> Self {
        Self {
            store,
            job: job.to_string(),
            parallelism,
            partitions,
            retain: retain.max(1),
            in_flight: BTreeMap::new(),
            decisions,
            stats,
            fence: None,
        }
    }

    /// Check `fence` before each manifest is written.
    pub fn with_fence(mut self, fence: Option<crate::checkpoint::claim::Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// Serve until every sender hangs up; checkpoints that can no longer
    /// complete are then aborted.
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
                            partitions: (0..self.partitions).map(|_| None).collect(),
                        },
                    );
                }
                CoordMsg::Partition(t) => {
                    let id = t.id;
                    let Some(f) = self.in_flight.get_mut(&id) else {
                        tracing::error!(id, "partition snapshot for an unknown checkpoint");
                        continue;
                    };
                    let p = t.partition;
                    f.partitions[p] = Some(t);
                    if f.partitions.iter().all(Option::is_some) {
                        let f = self.in_flight.remove(&id).expect("present");
                        self.complete(f);
                    }
                }
            }
        }
        for (id, f) in std::mem::take(&mut self.in_flight) {
            tracing::warn!(id, name = %f.begin.name, "checkpoint not complete when the job ended");
            self.decide(Decision::Abort(id));
            if let Some(r) = f.begin.reply {
                let _ = r.send(Err("the job ended before the savepoint was complete".into()));
            }
        }
    }

    fn decide(&self, d: Decision) {
        for w in &self.decisions {
            let _ = w.send(d);
        }
    }

    fn complete(&mut self, f: InFlight) {
        let reply = f.begin.reply.clone();
        let kind = f.begin.kind;
        let id = f.begin.id;
        let name = f.begin.name.clone();
        let result = match self.write(f) {
            Ok(Written::Manifest(m)) => Ok(m),
            Ok(Written::Kept) => {
                // An event-time savepoint a restored run passes again: the
                // one taken before stays; what this barrier covered is
                // committed by the next checkpoint.
                tracing::info!(name = %name, "event-time savepoint exists already; kept as it is");
                self.decide(Decision::Abort(id));
                return;
            }
            Ok(Written::NameTaken(why)) => {
                // A name in use (two requests for one name at once): the
                // user's naming, not a failed checkpoint.
                tracing::warn!(name = %name, "savepoint refused: {why}");
                self.decide(Decision::Abort(id));
                if let Some(r) = reply {
                    let _ = r.send(Err(why));
                }
                return;
            }
            Err(e) => Err(e),
        };
        let mut stats = lock_or_recover(&self.stats);
        match &result {
            Ok(m) => {
                stats.completed += 1;
                if m.kind == Kind::Savepoint {
                    stats.savepoints += 1;
                }
                stats.last = Some(m.clone());
                let (took, pause) = (stats.last_duration, stats.last_max_pause);
                stats.history.completed(m, took, pause);
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
        self.decide(match result {
            Ok(_) => Decision::Commit(id),
            Err(_) => Decision::Abort(id),
        });
        if let Some(r) = reply {
            let _ = r.send(result.map_err(|e| e.to_string()));
        }
    }

    /// Upload the blobs, then the manifest, unless a savepoint of that
    /// name exists (savepoints are never replaced).
    fn write(&mut self, f: InFlight) -> Result<Written> {
        let b = &f.begin;
        let dir = folder(&self.job, b.kind, &b.name);
        let manifest_key = format!("{dir}/manifest.json");
        if let Some(exists) = self.savepoint_exists(b, &manifest_key)? {
            return Ok(exists);
        }
        let mut blobs = Vec::new();
        let (partitions, (max_pause, max_chunk)) =
            self.partition_entries(&dir, b, f.partitions, &mut blobs);
        let manifest = self.manifest(b, partitions);
        // Tests make every `N`th checkpoint fail here, as a store that
        // refuses a write would (`checkpoint-fails-every:N`).
        #[cfg(feature = "failpoints")]
        if let Some(n) = crate::failpoint::armed_at("checkpoint-fails-every")
            && b.kind == Kind::Checkpoint
            && n > 0
            && b.id.is_multiple_of(n)
        {
            return Err(crate::Error::External(format!(
                "failpoint checkpoint-fails-every:{n}: checkpoint {} not written",
                b.id
            )));
        }
        let upload = Instant::now();
        self.upload(&dir, &manifest_key, blobs, &manifest)?;
        let upload = upload.elapsed();
        if b.kind == Kind::Checkpoint
            && let Err(e) = self.prune()
        {
            // The checkpoint is complete; old ones are pruned next time.
            tracing::warn!("pruning old checkpoints: {e}");
        }
        let mut stats = lock_or_recover(&self.stats);
        stats.last_max_pause = max_pause;
        stats.last_max_chunk_pause = max_chunk;
        stats.last_duration = f.started.elapsed();
        stats.last_upload = upload;
        Ok(Written::Manifest(manifest))
    }

    /// Savepoints are never replaced: checked before any blob is written.
    /// `Some(Kept)`: an event-time savepoint of that name exists (kept;
    /// this one is skipped); `Some(NameTaken)`: any other savepoint of that
    /// name exists.
    fn savepoint_exists(&self, b: &Begin, manifest_key: &str) -> Result<Option<Written>> {
        if b.kind != Kind::Savepoint || self.store.get(manifest_key)?.is_none() {
            return Ok(None);
        }
        if b.name.starts_with(crate::checkpoint::EVENT_TIME_PREFIX) {
            return Ok(Some(Written::Kept));
        }
        Ok(Some(Written::NameTaken(format!(
            "a savepoint named `{}` exists already; savepoints are never replaced: \
             choose another name, or delete that one first",
            b.name
        ))))
    }

    /// Every partition's manifest entry, in partition order, and the
    /// longest partition pause and chunk call. The blobs the entries name go to `blobs`
    /// (store key, bytes).
    fn partition_entries(
        &self,
        dir: &str,
        b: &Begin,
        snapshots: Vec<Option<PartitionSnapshot>>,
        blobs: &mut Vec<(String, Bytes)>,
    ) -> (Vec<PartitionEntry>, (Duration, Duration)) {
        let mut partitions = Vec::with_capacity(self.partitions);
        let (mut max_pause, mut max_chunk) = (Duration::ZERO, Duration::ZERO);
        let mut source_positions: BTreeMap<usize, Value> =
            b.source.partitions.iter().cloned().collect();
        for (p, snap) in snapshots.into_iter().enumerate() {
            let snap = snap.expect("complete");
            max_pause = max_pause.max(snap.pause);
            max_chunk = max_chunk.max(snap.chunk_pause);
            let operators = snap
                .operators
                .into_iter()
                .enumerate()
                .map(|(i, op)| operator_entry(dir, p, i, op, blobs))
                .collect();
            let (sink, sink_blob) = sink_entry(dir, p, snap.sink, blobs);
            partitions.push(PartitionEntry {
                partition: p,
                watermark: snap.watermark,
                source: source_positions.remove(&p).unwrap_or(Value::Null),
                sink,
                sink_blob,
                operators,
            });
        }
        (partitions, (max_pause, max_chunk))
    }

    /// The manifest of the checkpoint `b` began.
    fn manifest(&self, b: &Begin, partitions: Vec<PartitionEntry>) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            job: self.job.clone(),
            kind: b.kind,
            id: b.id,
            name: b.name.clone(),
            wall_time_ms: b.wall_time_ms,
            watermark: b.watermark,
            max_event_time: b.max_event_time,
            host_version: crate::VERSION.into(),
            wit_version: crate::batch::ACCEPTED_WIT_VERSIONS[0].into(),
            parallelism: self.parallelism,
            source: SourcePosition {
                connector: b.connector.to_string(),
                position: b.source.reader.clone(),
            },
            partitions,
        }
    }

    /// Upload the blobs, then create the manifest: the commit point,
    /// created atomically, so two writers cannot both complete the same
    /// folder.
    fn upload(
        &self,
        dir: &str,
        manifest_key: &str,
        blobs: Vec<(String, Bytes)>,
        manifest: &Manifest,
    ) -> Result<()> {
        self.store.put_all(blobs)?;
        if let Some(fence) = &self.fence {
            fence()?;
        }
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| crate::Error::Internal(e.to_string()))?;
        if !self.store.put_new(manifest_key, Bytes::from(json))? {
            return Err(crate::Error::Savepoint {
                location: dir.to_string(),
                detail: "another writer completed this checkpoint folder first".into(),
            });
        }
        Ok(())
    }

    /// Keep the newest `retain` complete checkpoints (and any newer
    /// incomplete ones, which may still be in flight).
    fn prune(&self) -> Result<()> {
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
            // Only a manifest that reads counts: pruning must not keep
            // corrupt checkpoints in place of the last good ones.
            if file == "manifest.json"
                && matches!(
                    crate::checkpoint::manifest::read(&self.store, &format!("{prefix}{name}")),
                    Ok(Some(_))
                )
            {
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

/// Operator `i` of partition `p`: its entry, its state and timer blobs
/// added to `blobs`.
fn operator_entry(
    dir: &str,
    p: usize,
    i: usize,
    op: OperatorSnapshot,
    blobs: &mut Vec<(String, Bytes)>,
) -> OperatorEntry {
    let base = format!("partition-{p:04}/op-{i}-{}", op.name);
    let state = BlobRef::of(format!("{base}.state"), &op.state);
    let timers = BlobRef::of(format!("{base}.timers"), &op.timers);
    blobs.push((format!("{dir}/{}", state.path), Bytes::from(op.state)));
    blobs.push((format!("{dir}/{}", timers.path), Bytes::from(op.timers)));
    OperatorEntry {
        name: op.name,
        plugin_digest: op.digest,
        state_version: op.state_version,
        state,
        timers,
        timer_count: op.timer_count,
    }
}

/// What partition `p`'s sink pre-committed: its opaque state and, if it
/// wrote one, its blob (added to `blobs`).
fn sink_entry(
    dir: &str,
    p: usize,
    sink: Option<SinkSnapshot>,
    blobs: &mut Vec<(String, Bytes)>,
) -> (Option<Value>, Option<BlobRef>) {
    let Some(SinkSnapshot { state, blob }) = sink else {
        return (None, None);
    };
    let blob = blob.map(|b| {
        let r = BlobRef::of(format!("partition-{p:04}/sink"), &b);
        blobs.push((format!("{dir}/{}", r.path), Bytes::from(b)));
        r
    });
    (Some(state), blob)
}
