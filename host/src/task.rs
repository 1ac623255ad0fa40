//! A task: one pipeline instance on its own thread. It owns one instance of
//! each operator of the chain, their event-time timers, and its sink writer.
//! It receives packed batches routed to it by key and runs them through the
//! chain; rejected records go to the dead-letter output.

use std::collections::BTreeSet;
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::batch::{Batch, Origin, Outcome, SourceBatch, Timer};
use crate::checkpoint::manifest::encode_timers;
use crate::checkpoint::restore::{RestoredOperator, RestoredTask};
use crate::checkpoint::{CoordMsg, OperatorSnapshot, TaskSnapshot};
use crate::engine::{LoadedPlugin, WeirEngine};
use crate::metrics::Metrics;
use crate::plugin::PluginInstance;
use crate::sink::Sink;
use crate::sink::dead_letter::{DeadLetter, DeadLetters, Stage};
use crate::source::FileTable;
use crate::{Error, Result};

/// How long a task's input must be idle before it flushes its sink.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

/// An operator instance as a task sees it: Wasm plugins implement it, and so
/// does the benchmark's native build of the same logic.
pub trait Operator: Send {
    /// Name for errors and dead letters.
    fn name(&self) -> &str;
    /// Process one batch.
    fn process(&mut self, batch: &Batch, watermark: i64) -> Result<Outcome>;
    /// Handle fired timers.
    fn on_timers(&mut self, fired: &[Timer], watermark: i64) -> Result<Outcome>;
    /// Serialize the state.
    fn snapshot(&mut self) -> Result<Vec<u8>>;
    /// Restore a snapshot written by state version `from_version`.
    fn restore(&mut self, bytes: &[u8], from_version: u32) -> Result<()>;
    /// Call the operator's `init` with its configuration.
    fn init_with(&mut self, config: &[(String, String)]) -> Result<()>;
    /// Identity of the code (component digest), recorded in checkpoints.
    fn digest(&self) -> &str;
    /// The state schema version `snapshot` writes.
    fn state_version(&mut self) -> Result<u32>;
    /// The state schema versions `restore` accepts.
    fn accepted_versions(&mut self) -> Result<Vec<u32>>;
}

/// Makes one [`Operator`] per task.
pub trait OperatorFactory: Send + Sync {
    /// Name of the operator.
    fn name(&self) -> &str;
    /// A new instance for `task`, without state; `init` not yet called.
    fn create(&self, task: usize) -> Result<Box<dyn Operator>>;
    /// Call `init` on an instance with the job's configuration.
    fn init(&self, op: &mut dyn Operator) -> Result<()>;

    /// A new instance for `task`: created, restored from `restore` if given
    /// (state written by another component digest is accepted only if the
    /// plugin reads its state version), then initialized.
    fn instantiate(
        &self,
        task: usize,
        restore: Option<&RestoredOperator>,
    ) -> Result<Box<dyn Operator>> {
        let mut op = self.create(task)?;
        if let Some(r) = restore {
            if r.digest != op.digest() {
                let accepted = op.accepted_versions()?;
                if !accepted.contains(&r.state_version) {
                    let writes = op.state_version()?;
                    return Err(Error::Savepoint {
                        location: format!("operator `{}`", r.name),
                        detail: format!(
                            "its state was written by plugin {} with state version {}; the plugin now \
                             configured ({}) writes version {writes} and restores versions {accepted:?}: \
                             no version meets",
                            short(&r.digest),
                            r.state_version,
                            short(op.digest()),
                        ),
                    });
                }
                tracing::warn!(
                    operator = %r.name, from = short(&r.digest), to = short(op.digest()),
                    version = r.state_version, "restoring state into another plugin version"
                );
            }
            op.restore(&r.state, r.state_version)?;
        }
        self.init(op.as_mut())?;
        Ok(op)
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

impl Operator for PluginInstance {
    fn name(&self) -> &str {
        PluginInstance::name(self)
    }
    fn process(&mut self, batch: &Batch, watermark: i64) -> Result<Outcome> {
        PluginInstance::process(self, batch, watermark)
    }
    fn on_timers(&mut self, fired: &[Timer], watermark: i64) -> Result<Outcome> {
        PluginInstance::on_timers(self, fired, watermark)
    }
    fn snapshot(&mut self) -> Result<Vec<u8>> {
        PluginInstance::snapshot(self)
    }
    fn restore(&mut self, bytes: &[u8], from_version: u32) -> Result<()> {
        PluginInstance::restore(self, bytes, from_version)
    }
    fn init_with(&mut self, config: &[(String, String)]) -> Result<()> {
        PluginInstance::init(self, config)
    }
    fn digest(&self) -> &str {
        PluginInstance::digest(self)
    }
    fn state_version(&mut self) -> Result<u32> {
        PluginInstance::state_version(self)
    }
    fn accepted_versions(&mut self) -> Result<Vec<u32>> {
        PluginInstance::accepted_versions(self)
    }
}

/// Instantiates a loaded Wasm plugin per task and calls `init`.
pub struct WasmOperatorFactory {
    engine: WeirEngine,
    plugin: LoadedPlugin,
    config: Vec<(String, String)>,
}

impl WasmOperatorFactory {
    /// A factory for `plugin` with its `init` configuration.
    pub fn new(engine: WeirEngine, plugin: LoadedPlugin, config: Vec<(String, String)>) -> Self {
        Self {
            engine,
            plugin,
            config,
        }
    }
}

impl OperatorFactory for WasmOperatorFactory {
    fn name(&self) -> &str {
        &self.plugin.name
    }
    fn create(&self, task: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(PluginInstance::new(
            &self.engine,
            &self.plugin,
            task,
        )?))
    }
    fn init(&self, op: &mut dyn Operator) -> Result<()> {
        op.init_with(&self.config)
    }
}

/// A message from the source to a task.
#[derive(Debug)]
pub enum TaskMsg {
    /// Records, and the watermark as of the last of them.
    Batch(SourceBatch, i64),
    /// The watermark advanced.
    Watermark(i64),
    /// Checkpoint barrier `id`: snapshot now, everything before it is in.
    Barrier(u64),
    /// The input ended: fire every remaining timer.
    EndOfInput,
}

/// What a task did.
#[derive(Debug, Clone, Default)]
pub struct TaskStats {
    /// Records received from the source.
    pub records_in: u64,
    /// Records written to the sink.
    pub records_out: u64,
    /// Records rejected by operators.
    pub rejected: u64,
    /// Batches received.
    pub batches: u64,
    /// Timers fired.
    pub timers_fired: u64,
}

/// Registered timers of one operator, ordered by time, deduplicated.
#[derive(Debug, Default)]
pub struct Timers {
    set: BTreeSet<(i64, Vec<u8>)>,
}

impl Timers {
    /// Register a timer (idempotent).
    pub fn register(&mut self, t: Timer) {
        self.set.insert((t.time, t.key));
    }

    /// Remove and return every timer at or before `watermark`, in order.
    pub fn due(&mut self, watermark: i64) -> Vec<Timer> {
        let later = match watermark.checked_add(1) {
            Some(next) => self.set.split_off(&(next, Vec::new())),
            None => BTreeSet::new(),
        };
        std::mem::replace(&mut self.set, later)
            .into_iter()
            .map(|(time, key)| Timer { key, time })
            .collect()
    }

    /// Encode for a checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        encode_timers(self.set.iter().map(|(time, key)| (*time, &key[..])))
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none are pending.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Everything a task thread needs.
pub struct Task {
    /// Task index.
    pub id: usize,
    /// The operator chain.
    pub operators: Vec<Box<dyn Operator>>,
    /// Timers per operator.
    pub timers: Vec<Timers>,
    /// The sink writer.
    pub sink: Box<dyn Sink>,
    /// The dead-letter output.
    pub dead_letters: Arc<DeadLetters>,
    /// File names, for dead letters.
    pub files: FileTable,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Statistics.
    pub stats: TaskStats,
    /// Current watermark.
    pub watermark: i64,
    /// Where snapshots go at barriers (`None`: no checkpointing).
    pub coordinator: Option<Sender<CoordMsg>>,
}

impl Task {
    /// Build a task, instantiating every operator (restored from `restored`
    /// if given: state, timers, watermark).
    #[allow(clippy::too_many_arguments)] // one call site, every part needed
    pub fn new(
        id: usize,
        factories: &[Arc<dyn OperatorFactory>],
        sink: Box<dyn Sink>,
        dead_letters: Arc<DeadLetters>,
        files: FileTable,
        metrics: Arc<Metrics>,
        coordinator: Option<Sender<CoordMsg>>,
        restored: Option<&RestoredTask>,
    ) -> Result<Self> {
        let mut operators = Vec::with_capacity(factories.len());
        let mut timers = Vec::with_capacity(factories.len());
        for (i, f) in factories.iter().enumerate() {
            let r = restored.and_then(|t| t.operators.get(i));
            operators.push(f.instantiate(id, r)?);
            let mut t = Timers::default();
            for timer in r.map(|r| r.timers.clone()).unwrap_or_default() {
                t.register(timer);
            }
            timers.push(t);
        }
        Ok(Self {
            id,
            timers,
            operators,
            sink,
            dead_letters,
            files,
            metrics,
            stats: TaskStats::default(),
            watermark: restored.map_or(i64::MIN, |t| t.watermark),
            coordinator,
        })
    }

    /// Process messages until the source hangs up, then fire all remaining
    /// timers (end of input is the end of event time) and flush the sink.
    /// Emptied batches go back to the source through `recycle`.
    pub fn run(
        mut self,
        input: Receiver<TaskMsg>,
        recycle: Sender<SourceBatch>,
    ) -> Result<TaskStats> {
        let mut unflushed = false;
        loop {
            match input.recv_timeout(IDLE_FLUSH) {
                Ok(TaskMsg::Batch(batch, watermark)) => {
                    self.process(&batch, watermark)?;
                    let _ = recycle.send(batch);
                    unflushed = true;
                }
                Ok(TaskMsg::Watermark(w)) => {
                    self.advance(w)?;
                    unflushed = true;
                }
                Ok(TaskMsg::Barrier(id)) => self.checkpoint(id)?,
                Ok(TaskMsg::EndOfInput) => {
                    self.advance(i64::MAX)?;
                    unflushed = true;
                }
                Err(RecvTimeoutError::Timeout) if unflushed => {
                    // Input is idle (a `follow` run waiting for files):
                    // make what was written so far visible.
                    self.sink.flush()?;
                    self.dead_letters.flush()?;
                    unflushed = false;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.sink.end()?;
        Ok(self.stats)
    }

    /// At barrier `id`: snapshot every operator and its timers, close the
    /// sink's current file, and hand it all to the coordinator.
    fn checkpoint(&mut self, id: u64) -> Result<()> {
        let Some(coordinator) = self.coordinator.clone() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut operators = Vec::with_capacity(self.operators.len());
        for (op, timers) in self.operators.iter_mut().zip(&self.timers) {
            let state = op.snapshot()?;
            operators.push(OperatorSnapshot {
                name: op.name().to_string(),
                digest: op.digest().to_string(),
                state_version: op.state_version()?,
                state,
                timers: timers.encode(),
                timer_count: timers.len() as u64,
            });
        }
        let sink = self.sink.prepare_commit()?;
        let _ = coordinator.send(CoordMsg::Task(TaskSnapshot {
            id,
            task: self.id,
            watermark: self.watermark,
            operators,
            sink,
            pause: started.elapsed(),
        }));
        Ok(())
    }

    /// Run one source batch through the chain, then fire due timers.
    pub fn process(&mut self, batch: &SourceBatch, watermark: i64) -> Result<()> {
        self.stats.batches += 1;
        self.stats.records_in += batch.data.len() as u64;
        self.chain(0, &batch.data, Some(&batch.origins), watermark)?;
        self.advance(watermark)
    }

    /// Fire the timers due at `watermark`, operator by operator.
    pub fn advance(&mut self, watermark: i64) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        for i in 0..self.operators.len() {
            loop {
                let due = self.timers[i].due(watermark);
                if due.is_empty() {
                    break;
                }
                self.stats.timers_fired += due.len() as u64;
                let out = self.operators[i].on_timers(&due, watermark)?;
                self.register(i, out.timers);
                if !out.emitted.is_empty() {
                    self.chain(i + 1, &out.emitted, None, watermark)?;
                }
            }
        }
        Ok(())
    }

    fn register(&mut self, op: usize, timers: Vec<Timer>) {
        for t in timers {
            self.timers[op].register(t);
        }
    }

    /// Run `input` through operators `start..` and write the result.
    fn chain(
        &mut self,
        start: usize,
        input: &Batch,
        origins: Option<&[Origin]>,
        watermark: i64,
    ) -> Result<()> {
        let mut owned: Option<Batch> = None;
        for i in start..self.operators.len() {
            let current = owned.as_ref().unwrap_or(input);
            if current.is_empty() {
                return Ok(());
            }
            let out = self.operators[i].process(current, watermark)?;
            if !out.rejected.is_empty() {
                let origins = if i == start { origins } else { None };
                self.dead_letter(i, current, origins, &out.rejected)?;
            }
            self.register(i, out.timers);
            owned = Some(out.emitted);
        }
        let last = owned.as_ref().unwrap_or(input);
        if !last.is_empty() {
            self.sink.write(last)?;
            self.stats.records_out += last.len() as u64;
            self.metrics.add_emitted(last.len() as u64);
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        op: usize,
        batch: &Batch,
        origins: Option<&[Origin]>,
        rejected: &[crate::batch::Rejection],
    ) -> Result<()> {
        let files = self
            .files
            .read()
            .map_err(|_| Error::Internal("file table lock poisoned".into()))?;
        for r in rejected {
            let i = r.index as usize;
            let rec = batch
                .get(i)
                .ok_or_else(|| Error::Internal(format!("rejection index {i} out of range")))?;
            let origin = origins.and_then(|o| o.get(i));
            self.dead_letters.write(&DeadLetter {
                stage: Stage::Operator {
                    operator: self.operators[op].name(),
                    task: self.id,
                },
                reason: &r.reason,
                file: origin
                    .and_then(|o| files.get(o.file as usize))
                    .map(|p| p.as_path()),
                line: origin.map(|o| o.line),
                key: Some(rec.key),
                value: rec.value,
            })?;
        }
        self.stats.rejected += rejected.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_once() {
        let mut t = Timers::default();
        for (k, time) in [("b", 20), ("a", 10), ("a", 10), ("c", 30)] {
            t.register(Timer {
                key: k.into(),
                time,
            });
        }
        assert_eq!(t.len(), 3);
        let due: Vec<_> = t.due(20).into_iter().map(|t| (t.key, t.time)).collect();
        assert_eq!(due, vec![(b"a".to_vec(), 10), (b"b".to_vec(), 20)]);
        assert!(t.due(29).is_empty());
        assert_eq!(t.due(i64::MAX).len(), 1);
        assert!(t.is_empty());
    }
}
