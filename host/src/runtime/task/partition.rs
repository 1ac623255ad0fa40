//! A partition: one instance of the operator chain with its timers,
//! watermark and sink writer (the unit of state), and how input runs
//! through it: batches through the chain, timers as the watermark passes
//! them, rejected records to the dead-letter output.

use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use super::TaskStats;
use super::probation::{HeldDeadLetter, OnProbation};
use super::snapshot::Pending;
use super::timers::Timers;
use crate::batch::{Batch, Origin, Outcome, Rejection, SourceBatch, Timer};
use crate::checkpoint::restore::{RestoredOperator, RestoredPartition};
use crate::digest::short;
use crate::plugin::{Operator, OperatorFactory, StateShape, Takeover};
use crate::sink::Sink;
use crate::sink::dead_letter::{DeadLetter, Stage};
use crate::{Error, Result};

/// A new operator instance for `partition`: created, restored from
/// `restore` if given (state written by another component digest is
/// accepted only if its shape is the plugin's, or one the plugin declares
/// it migrates from, and the plugin reads its state version), then
/// initialized.
pub fn instantiate(
    factory: &dyn OperatorFactory,
    partition: usize,
    restore: Option<&RestoredOperator>,
) -> Result<Box<dyn Operator>> {
    let mut op = factory.create(partition)?;
    if let Some(r) = restore {
        if r.digest != op.digest() {
            let to = short(op.digest()).to_string();
            let refused = |detail: String| Error::Savepoint {
                location: format!("operator `{}`", r.name),
                detail: format!(
                    "its state was written by plugin {} with state version {}; the plugin now \
                     configured ({}) {detail}",
                    short(&r.digest),
                    r.state_version,
                    to,
                ),
            };
            let old = StateShape::of_blob(&r.state, r.state_version);
            let new = StateShape::of_plugin(factory, partition)?;
            let takeover = new
                .takes_over(&old)
                .map_err(|e| refused(format!("cannot read it: {e}")))?;
            let accepted = op.accepted_versions()?;
            if takeover == Takeover::ByVersion && !accepted.contains(&r.state_version) {
                let writes = op.state_version()?;
                return Err(refused(format!(
                    "writes version {writes} and restores versions {accepted:?}: no version meets"
                )));
            }
            tracing::warn!(
                operator = %r.name, from = short(&r.digest), to = short(op.digest()),
                version = r.state_version, "restoring state into another plugin version"
            );
        }
        op.restore(&r.state, r.state_version)?;
    }
    factory.init(op.as_mut())?;
    Ok(op)
}

/// One partition: an operator chain instance, its timers, watermark and
/// sink writer.
pub struct Partition {
    pub(super) id: usize,
    pub(super) operators: Vec<Box<dyn Operator>>,
    pub(super) timers: Vec<Timers>,
    pub(super) sink: Box<dyn Sink>,
    pub(super) watermark: i64,
    /// A snapshot taken at a barrier whose state is still being written
    /// out in chunks.
    pub(super) pending: Option<Pending>,
    /// A new plugin version on probation in this partition.
    pub(super) probation: Option<Box<OnProbation>>,
}

/// A partition's operator chain, restored, before its sink exists: the
/// job creates every chain (so a plugin or state that does not fit refuses
/// the run), then settles the output, then gives each chain its sink.
pub struct Chain {
    id: usize,
    operators: Vec<Box<dyn Operator>>,
    timers: Vec<Timers>,
    watermark: i64,
}

impl Chain {
    /// Build partition `id`'s chain, instantiating every operator (restored
    /// from `restored` if given: state, timers, watermark).
    pub fn new(
        id: usize,
        factories: &[Arc<dyn OperatorFactory>],
        restored: Option<&RestoredPartition>,
    ) -> Result<Self> {
        let mut operators = Vec::with_capacity(factories.len());
        let mut timers = Vec::with_capacity(factories.len());
        for (i, f) in factories.iter().enumerate() {
            let r = restored.and_then(|t| t.operators.get(i));
            operators.push(instantiate(f.as_ref(), id, r)?);
            let mut t = Timers::default();
            for timer in r.map(|r| r.timers.clone()).unwrap_or_default() {
                t.register(timer);
            }
            timers.push(t);
        }
        Ok(Self {
            id,
            operators,
            timers,
            watermark: restored.map_or(i64::MIN, |t| t.watermark),
        })
    }

    /// The partition, writing to `sink`.
    pub fn with_sink(self, sink: Box<dyn Sink>) -> Partition {
        Partition {
            id: self.id,
            operators: self.operators,
            timers: self.timers,
            sink,
            watermark: self.watermark,
            pending: None,
            probation: None,
        }
    }
}

impl Partition {
    /// Run one source batch through the chain, then fire due timers.
    pub(super) fn process(
        &mut self,
        batch: &SourceBatch,
        watermark: i64,
        shared: &Shared,
        stats: &mut TaskStats,
    ) -> Result<()> {
        stats.batches += 1;
        stats.records_in += batch.data.len() as u64;
        if let Some(f) = shared.metrics.chain() {
            f.partition(self.id, batch.data.len(), 0, watermark);
        }
        self.chain(
            0,
            &batch.data,
            Some(&batch.origins),
            watermark,
            shared,
            stats,
        )?;
        self.advance(watermark, shared, stats)
    }

    /// Fire the timers due at `watermark`, operator by operator.
    pub(super) fn advance(
        &mut self,
        watermark: i64,
        shared: &Shared,
        stats: &mut TaskStats,
    ) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        for i in 0..self.operators.len() {
            loop {
                let due = self.timers[i].due(watermark);
                if due.is_empty() {
                    break;
                }
                stats.timers_fired += due.len() as u64;
                let started = Instant::now();
                let out = self.operators[i].on_timers(&due, watermark)?;
                if let Some(f) = shared.metrics.chain() {
                    let n = (0, out.emitted.len(), 0);
                    f.called((self.id, i), started.elapsed(), n, false);
                }
                self.register(i, out.timers);
                if !out.emitted.is_empty() {
                    self.chain(i + 1, &out.emitted, None, watermark, shared, stats)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn register(&mut self, op: usize, timers: Vec<Timer>) {
        for t in timers {
            self.timers[op].register(t);
        }
    }

    /// Run `input` through operators `start..` and write the result.
    pub(super) fn chain(
        &mut self,
        start: usize,
        input: &Batch,
        origins: Option<&[Origin]>,
        watermark: i64,
        shared: &Shared,
        stats: &mut TaskStats,
    ) -> Result<()> {
        let mut owned: Option<Batch> = None;
        for i in start..self.operators.len() {
            let current = owned.as_ref().unwrap_or(input);
            if current.is_empty() {
                return Ok(());
            }
            let started = Instant::now();
            let out: Outcome = self.operators[i].process(current, watermark)?;
            if let Some(f) = shared.metrics.chain() {
                let n = (current.len(), out.emitted.len(), out.rejected.len());
                f.called((self.id, i), started.elapsed(), n, true);
            }
            if !out.rejected.is_empty() {
                let origins = if i == start { origins } else { None };
                self.dead_letter(i, current, origins, &out.rejected, shared)?;
                stats.rejected += out.rejected.len() as u64;
            }
            self.register(i, out.timers);
            owned = Some(out.emitted);
        }
        let last = owned.as_ref().unwrap_or(input);
        if !last.is_empty() {
            if let Some(p) = self.probation.as_mut() {
                p.held.push(owned.unwrap_or_else(|| input.clone()));
                return Ok(());
            }
            self.sink.write(last)?;
            stats.records_out += last.len() as u64;
            shared.metrics.add_emitted(last.len() as u64);
            if let Some(f) = shared.metrics.chain() {
                f.partition(self.id, 0, last.len(), watermark);
            }
        }
        Ok(())
    }

    pub(super) fn dead_letter(
        &mut self,
        op: usize,
        batch: &Batch,
        origins: Option<&[Origin]>,
        rejected: &[Rejection],
        shared: &Shared,
    ) -> Result<()> {
        for r in rejected {
            let i = r.index as usize;
            let rec = batch
                .get(i)
                .ok_or_else(|| Error::Internal(format!("rejection index {i} out of range")))?;
            let origin = origins.and_then(|o| o.get(i)).copied();
            if let Some(p) = self.probation.as_mut() {
                p.held_dead.push(HeldDeadLetter {
                    operator: op,
                    reason: r.reason.clone(),
                    origin,
                    key: rec.key.to_vec(),
                    value: rec.value.to_vec(),
                });
                continue;
            }
            shared.dead_letters.write(&DeadLetter {
                stage: Stage::Operator {
                    operator: self.operators[op].name(),
                    partition: self.id,
                },
                reason: &r.reason,
                origin,
                key: Some(rec.key),
                value: rec.value,
            })?;
        }
        Ok(())
    }
}
