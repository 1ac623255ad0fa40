//! Hot swaps: a new version of one operator's plugin taken into a running
//! job, with probation and rollback.
//!
//! - [`Swapper`] (the control endpoint's side) runs the pre-flight before
//!   anything pauses: compile the new component (cache), check its WIT
//!   version and imports, instantiate it once and ask whether it reads the
//!   running state version. Only then does it ask the router for a swap
//!   barrier (a savepoint named `swap-N`, kept like any savepoint).
//! - At that barrier every worker snapshots its partitions (the savepoint,
//!   old version), creates the new instance in its own store and restores
//!   the snapshot into it. The old instance and the barrier's state stay.
//! - [`Probation`] is what the workers share until the new version has
//!   passed: `probation_batches` batches, then the next barrier (which the
//!   router brings forward once those batches are sent). Until then each
//!   partition holds back its output and keeps its input; any failure of
//!   the new version (trap, error, deadline, memory cap) anywhere rolls
//!   every partition back to the old instance and replays the kept input,
//!   so no record is lost or written twice. The workers meet at each
//!   barrier of the swap ([`Probation::round`]) so that all of them decide
//!   the same.
//! - [`SwapLog`] keeps every swap's record (times, digests, pause, outcome)
//!   in memory for `GET /status` and in the store (`jobs/<job>/swaps/`)
//!   for `weir plugin history`; the components swapped in are stored by
//!   digest (`jobs/<job>/plugins/<digest>.wasm`), so a restart from a
//!   checkpoint runs the version that checkpoint names.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Trigger;
use crate::checkpoint::store::StateStore;
use crate::config::{OperatorSpec, PluginSource};
use crate::digest::sha256_hex;
use crate::plugin::{OperatorFactory, WasmOperatorFactory, WeirEngine};
use crate::{Error, Result, lock_or_recover};

/// Default number of batches a new version runs on probation.
pub const DEFAULT_PROBATION_BATCHES: u64 = 16;

/// How long a swap request waits for the swap barrier.
const SWAP_WAIT: Duration = Duration::from_secs(120);

/// The store folder of a job's swap records.
pub fn history_prefix(job: &str) -> String {
    format!("jobs/{job}/swaps/")
}

/// The store key of a component the job has run, by digest.
pub fn component_key(job: &str, digest: &str) -> String {
    format!("jobs/{job}/plugins/{digest}.wasm")
}

/// Where a swap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Pre-flight passed; waiting for the swap barrier.
    Requested,
    /// Swapped; the new version is on probation.
    Probation,
    /// Passed probation, and the checkpoint after it completed.
    Promoted,
    /// The new version failed; every partition runs the old one again.
    RolledBack,
}

/// The pause of a swap, the longest over the partitions.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Pause {
    /// Snapshot of the old instance (ms).
    pub snapshot_ms: f64,
    /// Creating the new instance (ms).
    pub instantiate_ms: f64,
    /// Restoring the snapshot into it (ms).
    pub restore_ms: f64,
    /// The whole pause of a partition at the swap barrier (ms).
    pub total_ms: f64,
}

impl Pause {
    fn max(&mut self, other: &Pause) {
        self.snapshot_ms = self.snapshot_ms.max(other.snapshot_ms);
        self.instantiate_ms = self.instantiate_ms.max(other.instantiate_ms);
        self.restore_ms = self.restore_ms.max(other.restore_ms);
        self.total_ms = self.total_ms.max(other.total_ms);
    }

    /// A partition's pause from its phase times.
    pub fn of(snapshot: Duration, instantiate: Duration, restore: Duration) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            snapshot_ms: ms(snapshot),
            instantiate_ms: ms(instantiate),
            restore_ms: ms(restore),
            total_ms: ms(snapshot + instantiate + restore),
        }
    }
}

/// One swap, as `GET /status` and `weir plugin history` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapRecord {
    /// Number of the swap in the job's history (1, 2, ...).
    pub seq: u64,
    /// Operator name.
    pub operator: String,
    /// Digest of the version that ran before.
    pub from_digest: String,
    /// Digest of the version swapped in.
    pub to_digest: String,
    /// `swap`, or `rollback` (a swap back to the previous version).
    pub kind: String,
    /// When the swap was asked for (ms since the epoch).
    pub requested_ms: i64,
    /// The savepoint taken at the swap barrier (old version's state).
    pub savepoint: String,
    /// Its checkpoint id, once the barrier was injected.
    pub checkpoint: Option<u64>,
    /// Where it stands.
    pub outcome: Outcome,
    /// Why it was rolled back.
    pub cause: Option<String>,
    /// The pause at the swap barrier.
    pub pause: Option<Pause>,
    /// The checkpoint that ended the probation.
    pub promoted_at: Option<u64>,
    /// When it was promoted or rolled back (ms since the epoch).
    pub ended_ms: Option<i64>,
}

impl SwapRecord {
    /// Swap `seq` of `operator` from `from` to `to`, just asked for.
    pub fn requested(seq: u64, operator: &str, (from, to): (&str, &str), kind: &str) -> Self {
        Self {
            seq,
            operator: operator.to_string(),
            from_digest: from.to_string(),
            to_digest: to.to_string(),
            kind: kind.to_string(),
            requested_ms: now_ms(),
            savepoint: format!("swap-{seq}"),
            checkpoint: None,
            outcome: Outcome::Requested,
            cause: None,
            pause: None,
            promoted_at: None,
            ended_ms: None,
        }
    }
}

/// The version an operator runs now.
#[derive(Clone)]
pub struct Current {
    /// Component digest.
    pub digest: String,
    /// Its factory.
    pub factory: Arc<dyn OperatorFactory>,
}

/// Every swap of the job: in memory, and in the store.
pub struct SwapLog {
    job: String,
    store: StateStore,
    records: Mutex<Vec<SwapRecord>>,
    /// Each operator's running version, in chain order.
    current: Mutex<Vec<Current>>,
}

impl SwapLog {
    /// The log of `job`, with the records already in the store; operators
    /// run `current`.
    pub fn open(job: &str, store: StateStore, current: Vec<Current>) -> Result<Self> {
        let records = read_history(&store, job)?;
        Ok(Self {
            job: job.to_string(),
            store,
            records: Mutex::new(records),
            current: Mutex::new(current),
        })
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Vec<SwapRecord> {
        lock_or_recover(&self.records).clone()
    }

    /// Each operator's running version.
    pub fn current(&self) -> Vec<Current> {
        lock_or_recover(&self.current).clone()
    }

    fn next_seq(&self) -> u64 {
        lock_or_recover(&self.records)
            .iter()
            .map(|r| r.seq)
            .max()
            .unwrap_or(0)
            + 1
    }

    fn add(&self, record: SwapRecord) {
        let mut records = lock_or_recover(&self.records);
        self.persist(&record);
        records.push(record);
    }

    /// Change record `seq` and write it to the store (under the lock, so
    /// the store never keeps an older version of a record).
    fn update(&self, seq: u64, f: impl FnOnce(&mut SwapRecord)) -> Option<SwapRecord> {
        let mut records = lock_or_recover(&self.records);
        let r = records.iter_mut().find(|r| r.seq == seq)?;
        f(r);
        let updated = r.clone();
        self.persist(&updated);
        Some(updated)
    }

    /// On a restart: a swap the previous run left without an outcome was
    /// promoted if the restored checkpoint runs its version (`running`:
    /// operator name and digest), else it ended with that run.
    pub fn settle_open(&self, running: &[(String, String)]) {
        let open: Vec<SwapRecord> = self
            .records()
            .into_iter()
            .filter(|r| matches!(r.outcome, Outcome::Requested | Outcome::Probation))
            .collect();
        for r in open {
            let promoted = running
                .iter()
                .any(|(name, digest)| *name == r.operator && *digest == r.to_digest);
            self.update(r.seq, |r| {
                if promoted {
                    r.outcome = Outcome::Promoted;
                    r.cause = Some("the job stopped after the checkpoint that promoted it".into());
                } else {
                    r.outcome = Outcome::RolledBack;
                    r.cause = Some("the job stopped before the swap was promoted".into());
                }
                r.ended_ms = Some(now_ms());
            });
        }
    }

    fn persist(&self, r: &SwapRecord) {
        let key = format!("{}{:06}.json", history_prefix(&self.job), r.seq);
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        if let Err(e) = self.store.put(&key, Bytes::from(bytes)) {
            tracing::warn!(swap = r.seq, "cannot write the swap record: {e}");
        }
    }

    fn set_current(&self, operator: usize, current: Current) {
        if let Some(c) = lock_or_recover(&self.current).get_mut(operator) {
            *c = current;
        }
    }
}

/// The swap records of `job` in `store`, oldest first.
pub fn read_history(store: &StateStore, job: &str) -> Result<Vec<SwapRecord>> {
    let mut keys: Vec<String> = store
        .list(&history_prefix(job))?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".json"))
        .collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(bytes) = store.get(&k)? else {
            continue;
        };
        match serde_json::from_slice::<SwapRecord>(&bytes) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(key = %k, "skipping an unreadable swap record: {e}"),
        }
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// What the workers are told to do at a swap barrier.
pub struct SwapOrder {
    /// The swap's number.
    pub seq: u64,
    /// Index of the operator in the chain.
    pub operator: usize,
    /// The new version.
    pub factory: Arc<dyn OperatorFactory>,
    /// Its digest.
    pub digest: String,
    /// Batches the new version must run before the probation can end.
    pub probation_batches: u64,
}

/// Rendezvous of the workers at the barriers of a swap.
#[derive(Default)]
struct Meet {
    /// The barrier being met at.
    id: u64,
    arrived: usize,
    /// Decided barriers: (id, passed).
    decided: Vec<(u64, bool)>,
}

/// How often a worker waiting at a swap's barrier looks whether another
/// one ended.
const MEET_POLL: Duration = Duration::from_millis(50);

/// What the workers share while a swap is on.
pub struct Probation {
    /// The swap.
    pub order: SwapOrder,
    log: Arc<SwapLog>,
    workers: usize,
    /// Worker threads of the job that ended (for any reason): they no
    /// longer come to a barrier.
    gone: Arc<AtomicUsize>,
    failed: AtomicBool,
    meet: Mutex<Meet>,
    met: Condvar,
    pause: Mutex<Pause>,
    reply: Mutex<Option<Sender<std::result::Result<SwapRecord, String>>>>,
    /// The checkpoint whose completion promotes the new version (0: none).
    promote_at: AtomicU64,
    /// The outcome is final (promoted or rolled back).
    ended: AtomicBool,
}

impl std::fmt::Debug for Probation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probation")
            .field("seq", &self.order.seq)
            .field("operator", &self.order.operator)
            .field("digest", &self.order.digest)
            .field("failed", &self.has_failed())
            .finish()
    }
}

impl Probation {
    /// A swap run by `workers` worker threads.
    pub fn new(
        order: SwapOrder,
        log: Arc<SwapLog>,
        (workers, gone): (usize, Arc<AtomicUsize>),
        reply: Sender<std::result::Result<SwapRecord, String>>,
    ) -> Self {
        Self {
            order,
            log,
            workers,
            gone,
            failed: AtomicBool::new(false),
            meet: Mutex::new(Meet::default()),
            met: Condvar::new(),
            pause: Mutex::new(Pause::default()),
            reply: Mutex::new(Some(reply)),
            promote_at: AtomicU64::new(0),
            ended: AtomicBool::new(false),
        }
    }

    /// Whether the new version failed somewhere.
    #[inline]
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The new version failed (`cause`): every partition rolls back. The
    /// first cause is the one recorded.
    pub fn fail(&self, cause: &str) {
        if self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(
            swap = self.order.seq, to = %short(&self.order.digest),
            "rolling back the swap: {cause}"
        );
        self.end(Outcome::RolledBack, Some(cause.to_string()), None);
    }

    /// A partition's pause at the swap barrier.
    pub fn add_pause(&self, p: &Pause) {
        lock_or_recover(&self.pause).max(p);
    }

    /// The swap barrier `id` was injected.
    pub fn injected(&self, id: u64) {
        self.log.update(self.order.seq, |r| r.checkpoint = Some(id));
    }

    /// Meet the other workers at barrier `id` of the swap; true when the
    /// new version failed nowhere (every worker gets the same answer).
    /// Workers that ended are not waited for; `u64::MAX` (a worker's end of
    /// input) joins the barrier the others are meeting at, if any.
    pub fn round(&self, id: u64) -> bool {
        let mut m = lock_or_recover(&self.meet);
        let open = m.arrived > 0 && !m.decided.iter().any(|(d, _)| *d == m.id);
        let id = if id == u64::MAX && open { m.id } else { id };
        if let Some(&(_, passed)) = m.decided.iter().find(|(d, _)| *d == id) {
            return passed;
        }
        if m.id != id {
            m.id = id;
            m.arrived = 0;
        }
        m.arrived += 1;
        loop {
            if let Some(&(_, passed)) = m.decided.iter().find(|(d, _)| *d == id) {
                return passed;
            }
            if m.arrived + self.gone.load(Ordering::Acquire) >= self.workers {
                let passed = !self.has_failed();
                m.decided.push((id, passed));
                self.met.notify_all();
                return passed;
            }
            m = self
                .met
                .wait_timeout(m, MEET_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every worker swapped at the barrier (or rolled back): answer the
    /// request.
    pub fn swapped(&self) {
        let Some(reply) = lock_or_recover(&self.reply).take() else {
            return;
        };
        let pause = *lock_or_recover(&self.pause);
        let record = if self.has_failed() {
            self.log.update(self.order.seq, |r| r.pause = Some(pause))
        } else {
            tracing::info!(
                swap = self.order.seq, to = %short(&self.order.digest),
                pause_ms = pause.total_ms, "swapped; the new version is on probation"
            );
            self.log.update(self.order.seq, |r| {
                r.pause = Some(pause);
                // Not over an outcome a failure recorded meanwhile.
                if r.outcome == Outcome::Requested {
                    r.outcome = Outcome::Probation;
                }
            })
        };
        let _ = reply.send(record.ok_or_else(|| "the swap record is gone".to_string()));
    }

    /// The probation passed at barrier `id`: the new version is promoted
    /// when that checkpoint completes.
    pub fn passed(&self, id: u64) {
        self.promote_at.store(id, Ordering::Release);
    }

    /// Checkpoint `id` completed: promote the new version if it was the
    /// one its probation waited for.
    pub fn committed(&self, id: u64) {
        let at = self.promote_at.load(Ordering::Acquire);
        if at == 0 || id < at || self.has_failed() {
            return;
        }
        self.log.set_current(
            self.order.operator,
            Current {
                digest: self.order.digest.clone(),
                factory: self.order.factory.clone(),
            },
        );
        tracing::info!(
            swap = self.order.seq, to = %short(&self.order.digest), checkpoint = id,
            "the new version passed probation: promoted"
        );
        // `id`, not `at`: if the checkpoint that ended the probation
        // failed, the next one that completes holds the new version.
        self.end(Outcome::Promoted, None, Some(id));
    }

    /// Whether the outcome is final.
    pub fn is_over(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn end(&self, outcome: Outcome, cause: Option<String>, promoted_at: Option<u64>) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        self.log.update(self.order.seq, |r| {
            r.outcome = outcome;
            r.cause = cause;
            r.promoted_at = promoted_at;
            r.ended_ms = Some(now_ms());
        });
    }
}

/// Why a swap was refused (before anything paused).
#[derive(Debug)]
pub struct Refused {
    /// HTTP status for the control endpoint.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

/// The control endpoint's side of swaps.
pub struct Swapper {
    engine: WeirEngine,
    store: StateStore,
    job: String,
    operators: Vec<OperatorSpec>,
    log: Arc<SwapLog>,
    triggers: Sender<Trigger>,
    workers: usize,
    /// Worker threads that ended.
    gone: Arc<AtomicUsize>,
    /// The swap under way, if any: one at a time.
    active: Mutex<Option<Arc<Probation>>>,
}

/// Most batches a probation may ask for (held output and kept input grow
/// with it).
pub const MAX_PROBATION_BATCHES: u64 = 100_000;

/// Largest component a swap reads.
const MAX_COMPONENT_BYTES: u64 = 1 << 30;

impl Swapper {
    /// Swaps for `job` (operators `operators`, run by `workers` threads).
    pub fn new(
        engine: WeirEngine,
        store: StateStore,
        job: &str,
        operators: Vec<OperatorSpec>,
        log: Arc<SwapLog>,
        (triggers, workers, gone): (Sender<Trigger>, usize, Arc<AtomicUsize>),
    ) -> Self {
        Self {
            engine,
            store,
            job: job.to_string(),
            operators,
            log,
            triggers,
            workers,
            gone,
            active: Mutex::new(None),
        }
    }

    /// The log, for status.
    pub fn log(&self) -> &SwapLog {
        &self.log
    }

    /// Swap `operator` to the component at `path`; answers once every
    /// partition runs it on probation (or rolled back at the barrier).
    pub fn swap(
        &self,
        operator: &str,
        path: &std::path::Path,
        probation_batches: u64,
    ) -> std::result::Result<SwapRecord, Refused> {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_COMPONENT_BYTES {
            return Err(refused(
                400,
                format!("{} is {size} bytes: not a plugin component", path.display()),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            refused(
                400,
                format!("cannot read the plugin {}: {e}", path.display()),
            )
        })?;
        self.swap_bytes(operator, bytes, probation_batches, "swap")
    }

    /// Swap `operator` back to the version it ran before its last promoted
    /// swap (the component is kept in the store).
    pub fn rollback(
        &self,
        operator: &str,
        probation_batches: u64,
    ) -> std::result::Result<SwapRecord, Refused> {
        let i = self.operator_index(operator)?;
        let current = self.log.current()[i].digest.clone();
        let last = self
            .log
            .records()
            .into_iter()
            .rev()
            .find(|r| {
                r.operator == operator && r.outcome == Outcome::Promoted && r.to_digest == current
            })
            .ok_or_else(|| {
                refused(
                    409,
                    format!(
                        "operator `{operator}` runs {}, which no promoted swap brought in: \
                         nothing to roll back to",
                        short(&current)
                    ),
                )
            })?;
        let bytes = self
            .store
            .get(&component_key(&self.job, &last.from_digest))
            .map_err(|e| refused(500, e.to_string()))?
            .ok_or_else(|| {
                refused(
                    409,
                    format!(
                        "the previous version {} is not in the store",
                        short(&last.from_digest)
                    ),
                )
            })?;
        self.swap_bytes(operator, bytes.to_vec(), probation_batches, "rollback")
    }

    fn operator_index(&self, operator: &str) -> std::result::Result<usize, Refused> {
        self.operators
            .iter()
            .position(|o| o.name == operator)
            .ok_or_else(|| {
                let names: Vec<&str> = self.operators.iter().map(|o| o.name.as_str()).collect();
                refused(
                    404,
                    format!("this job has no operator `{operator}` (it has {names:?})"),
                )
            })
    }

    fn swap_bytes(
        &self,
        operator: &str,
        bytes: Vec<u8>,
        probation_batches: u64,
        kind: &str,
    ) -> std::result::Result<SwapRecord, Refused> {
        let i = self.operator_index(operator)?;
        if probation_batches > MAX_PROBATION_BATCHES {
            return Err(refused(
                400,
                format!("probation_batches is at most {MAX_PROBATION_BATCHES}"),
            ));
        }
        let mut active = lock_or_recover(&self.active);
        if let Some(a) = active.as_ref().filter(|a| !a.is_over()) {
            return Err(refused(
                409,
                format!(
                    "swap {} of operator `{}` is still on probation; wait for its outcome",
                    a.order.seq, self.operators[a.order.operator].name
                ),
            ));
        }
        let current = self.log.current()[i].clone();
        let factory = self.preflight(i, &bytes, &current)?;
        let digest = sha256_hex(&bytes);
        self.keep_components(i, &current.digest, &digest, bytes)?;
        let seq = self.log.next_seq();
        self.log.add(SwapRecord::requested(
            seq,
            operator,
            (&current.digest, &digest),
            kind,
        ));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let probation = Arc::new(Probation::new(
            SwapOrder {
                seq,
                operator: i,
                factory,
                digest,
                probation_batches,
            },
            self.log.clone(),
            (self.workers, self.gone.clone()),
            tx,
        ));
        *active = Some(probation.clone());
        drop(active);
        let gone = || {
            refused(
                503,
                "the job ended before the swap barrier; nothing was swapped",
            )
        };
        self.triggers
            .send(Trigger::Swap {
                probation: probation.clone(),
            })
            .map_err(|_| gone())?;
        match rx.recv_timeout(SWAP_WAIT) {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(e)) => Err(refused(500, e)),
            Err(_) => {
                // The barrier never came (the job is ending): the swap did
                // not happen.
                probation.fail("the job ended before the swap barrier");
                Err(gone())
            }
        }
    }

    /// Pre-flight: compile (cache), check the WIT version and imports,
    /// instantiate once and ask whether it reads the running state
    /// version. Nothing has paused yet.
    fn preflight(
        &self,
        i: usize,
        bytes: &[u8],
        current: &Current,
    ) -> std::result::Result<Arc<dyn OperatorFactory>, Refused> {
        let spec = &self.operators[i];
        let name = &spec.name;
        let digest = sha256_hex(bytes);
        if digest == current.digest {
            return Err(refused(
                409,
                format!(
                    "operator `{name}` already runs this component ({})",
                    short(&digest)
                ),
            ));
        }
        let loaded = self
            .engine
            .load(name, bytes)
            .map_err(|e| refused(400, e.to_string()))?;
        let factory: Arc<dyn OperatorFactory> = Arc::new(WasmOperatorFactory::new(
            self.engine.clone(),
            loaded,
            spec.config.clone(),
        ));
        let running = current
            .factory
            .create(0)
            .and_then(|mut op| op.state_version())
            .map_err(|e| refused(500, format!("asking the running version: {e}")))?;
        let mut probe = factory
            .create(0)
            .map_err(|e| refused(400, format!("the new component: {e}")))?;
        let accepted = probe
            .accepted_versions()
            .map_err(|e| refused(400, format!("the new component: {e}")))?;
        if !accepted.contains(&running) {
            let writes = probe.state_version().unwrap_or_default();
            return Err(refused(
                409,
                format!(
                    "the new component ({}) cannot read the running state: operator `{name}` \
                     writes state version {running}; the new one writes {writes} and reads \
                     {accepted:?}. Nothing was changed.",
                    short(&digest)
                ),
            ));
        }
        Ok(factory)
    }

    /// Keep the running and the new component in the store by digest, so
    /// that restarts and rollbacks find them.
    fn keep_components(
        &self,
        i: usize,
        running: &str,
        new: &str,
        bytes: Vec<u8>,
    ) -> std::result::Result<(), Refused> {
        let put = |digest: &str, bytes: Vec<u8>| {
            self.store
                .put_new(&component_key(&self.job, digest), Bytes::from(bytes))
                .map(|_| ())
                .map_err(|e| refused(500, format!("storing the component: {e}")))
        };
        put(new, bytes)?;
        let key = component_key(&self.job, running);
        if self.store.get(&key).ok().flatten().is_none() {
            let original = match &self.operators[i].plugin {
                PluginSource::Path(p) => std::fs::read(p).ok(),
                PluginSource::Bytes(b) => Some(b.to_vec()),
            };
            match original.filter(|b| sha256_hex(b) == running) {
                Some(b) => put(running, b)?,
                None => tracing::warn!(
                    operator = %self.operators[i].name,
                    "the running component's file changed since the job started; a rollback \
                     to it will not be possible"
                ),
            }
        }
        Ok(())
    }
}

/// The first 12 hex digits of a digest.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Time since `t` and now.
pub fn lap(t: &mut Instant) -> Duration {
    let now = Instant::now();
    let d = now - *t;
    *t = now;
    d
}

/// The factories `operators` of a job that restarts from a checkpoint
/// naming `digests`: an operator whose checkpoint names a version a swap
/// brought in (kept in the store) runs that version again, unless the job
/// file names a version the job never ran (an upgrade at restart).
pub fn versions_for_restart(
    engine: &WeirEngine,
    store: &StateStore,
    job: &str,
    operators: &[OperatorSpec],
    factories: &mut [Arc<dyn OperatorFactory>],
    digests: &[String],
) -> Result<()> {
    let history = read_history(store, job)?;
    for (i, spec) in operators.iter().enumerate() {
        let (Some(named), Some(configured)) = (digests.get(i), factories[i].digest()) else {
            continue;
        };
        if named == configured {
            continue;
        }
        // Versions this job ran: the ones swaps started from, and the ones
        // they brought in, unless rolled back (a checkpoint never holds
        // those; a job file naming one asks for it on purpose).
        let ran = |d: &str| {
            history.iter().any(|r| {
                r.operator == spec.name
                    && (r.from_digest == d
                        || (r.to_digest == d && r.outcome != Outcome::RolledBack))
            })
        };
        if !ran(configured) || !ran(named) {
            continue;
        }
        let Some(bytes) = store.get(&component_key(job, named))? else {
            return Err(Error::Savepoint {
                location: format!("{}/{}", store.url(), component_key(job, named)),
                detail: format!(
                    "the checkpoint names plugin {} for operator `{}` (swapped in), but the \
                     store no longer holds that component",
                    short(named),
                    spec.name
                ),
            });
        };
        let loaded = engine.load(&spec.name, &bytes)?;
        tracing::info!(
            operator = %spec.name, digest = %short(named),
            "resuming on the plugin version the checkpoint names (swapped in earlier)"
        );
        factories[i] = Arc::new(WasmOperatorFactory::new(
            engine.clone(),
            loaded,
            spec.config.clone(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::StoreSpec;
    use crate::plugin::Operator;

    /// A factory that is never called: the rendezvous does not create
    /// instances.
    struct Unused;
    impl OperatorFactory for Unused {
        fn name(&self) -> &str {
            "op"
        }
        fn create(&self, _: usize) -> Result<Box<dyn Operator>> {
            Err(Error::Internal("not in this test".into()))
        }
        fn init(&self, _: &mut dyn Operator) -> Result<()> {
            Ok(())
        }
    }

    fn probation(workers: usize) -> (Arc<Probation>, Arc<AtomicUsize>, Arc<SwapLog>) {
        let spec = StoreSpec {
            url: "memory://".into(),
            ..Default::default()
        };
        let store = StateStore::open(&spec, std::path::Path::new(".")).unwrap();
        let log = Arc::new(SwapLog::open("job", store, Vec::new()).unwrap());
        log.add(SwapRecord::requested(1, "op", ("a", "b"), "swap"));
        let gone = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let p = Probation::new(
            SwapOrder {
                seq: 1,
                operator: 0,
                factory: Arc::new(Unused),
                digest: "b".into(),
                probation_batches: 1,
            },
            log.clone(),
            (workers, gone.clone()),
            tx,
        );
        (Arc::new(p), gone, log)
    }

    fn meet(p: &Arc<Probation>, id: u64) -> std::thread::JoinHandle<bool> {
        let p = p.clone();
        std::thread::spawn(move || p.round(id))
    }

    #[test]
    fn every_worker_gets_the_same_verdict() {
        let (p, _, log) = probation(3);
        let a = meet(&p, 7);
        let b = meet(&p, 7);
        std::thread::sleep(Duration::from_millis(20));
        p.fail("trap in partition 2");
        let c = meet(&p, 7);
        assert_eq!(
            [a.join().unwrap(), b.join().unwrap(), c.join().unwrap()],
            [false; 3]
        );
        let r = &log.records()[0];
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert_eq!(r.cause.as_deref(), Some("trap in partition 2"));
        // A later failure does not change the first cause.
        p.fail("another");
        assert_eq!(
            log.records()[0].cause.as_deref(),
            Some("trap in partition 2")
        );
    }

    #[test]
    fn a_worker_that_ended_is_not_waited_for() {
        let (p, gone, _) = probation(3);
        let a = meet(&p, 7);
        let b = meet(&p, 7);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!a.is_finished(), "waits for the third worker");
        gone.fetch_add(1, Ordering::AcqRel);
        assert!(a.join().unwrap() && b.join().unwrap(), "passed");
    }

    #[test]
    fn the_end_of_a_run_joins_the_barrier_being_met() {
        let (p, _, _) = probation(2);
        let a = meet(&p, 9);
        std::thread::sleep(Duration::from_millis(20));
        // The other worker's input ended (it never saw barrier 9).
        let b = meet(&p, u64::MAX);
        assert!(a.join().unwrap() && b.join().unwrap());
        // Rounds after a decided one start afresh.
        let c = meet(&p, 10);
        let d = meet(&p, 10);
        assert!(c.join().unwrap() && d.join().unwrap());
    }

    #[test]
    fn a_restart_settles_open_swaps_by_the_version_it_runs() {
        let (_, _, log) = probation(1);
        log.settle_open(&[("op".into(), "b".into())]);
        assert_eq!(log.records()[0].outcome, Outcome::Promoted);
        let (_, _, log) = probation(1);
        log.settle_open(&[("op".into(), "a".into())]);
        assert_eq!(log.records()[0].outcome, Outcome::RolledBack);
    }
}
