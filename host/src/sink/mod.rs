//! Sinks: where emitted records go, as lifecycles the runtime drives.
//!
//! A [`SinkFactory`] is resolved from the job file ([`open`]). Before any
//! task starts it checks what it can ([`SinkFactory::validate`]), then brings
//! the output to the restored checkpoint or clears it for a fresh run
//! ([`SinkFactory::recover`]), and makes one [`Sink`] per partition. The
//! partition's task thread owns its sink: it writes, and at a barrier calls
//! [`Sink::pre_commit`], whose answer goes into the checkpoint as the sink's
//! opaque state. Once the checkpoint's manifest is durable, the coordinator
//! tells every task and each sink [`Sink::commit`]s; a failed checkpoint is
//! [`Sink::abort`]ed. The runtime never knows how a sink commits (renaming
//! files, a Kafka transaction). Dead letters have their own output,
//! [`dead_letter::DeadLetters`], shared by the source and all tasks.
//!
//! Each connector with settings is a folder (`file/`, `kafka/`) holding its
//! job-file table and its resolution (`config.rs`) beside the sink itself;
//! `stdout.rs` has none. A new connector is a folder, a variant of
//! [`SinkSpec`], an arm in `config::SinkConfig` and one in [`open`].

pub(crate) mod dead_letter;
mod file;
pub(crate) mod kafka;
mod stdout;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::Result;
use crate::batch::Batch;
use dead_letter::DeadLetters;

pub use file::{FileSinkConfig, FileSinkSpec};
pub use kafka::{Delivery, KafkaSinkConfig, KafkaSinkSpec};

/// A resolved sink.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    /// Standard output.
    Stdout,
    /// A directory of per-partition part files.
    Files(FileSinkSpec),
    /// A Kafka topic.
    Kafka(KafkaSinkSpec),
}

impl SinkSpec {
    /// The folder the sink writes into, if it writes files there: the job
    /// refuses one inside its source's folder (it would read its output).
    pub(crate) fn folder(&self) -> Option<&Path> {
        match self {
            SinkSpec::Stdout | SinkSpec::Kafka(_) => None,
            SinkSpec::Files(spec) => Some(&spec.dir),
        }
    }
}

/// What a sink records in a checkpoint at a barrier.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSnapshot {
    /// Small state, kept in the manifest (file names, epoch ids).
    pub state: Value,
    /// Bulk state, stored as a blob beside the operator state (records
    /// written ahead of a transaction).
    pub blob: Option<Vec<u8>>,
}

/// What a restored sink gets back from the checkpoint.
#[derive(Debug, Clone)]
pub struct RestoredSink {
    /// Id of the checkpoint it was taken at.
    pub checkpoint: u64,
    /// [`SinkSnapshot::state`].
    pub state: Value,
    /// [`SinkSnapshot::blob`], verified against the manifest.
    pub blob: Option<Bytes>,
}

/// How a run ended, as sinks need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// All input was processed: what was written is final.
    EndOfInput,
    /// The job stopped (or failed): what no checkpoint covers stays
    /// uncommitted, for the next restore to settle.
    Stopped,
}

/// One partition's writer of emitted records.
pub trait Sink: Send {
    /// Write every record of `batch`.
    fn write(&mut self, batch: &Batch) -> Result<()>;
    /// Push buffered output out (and, without checkpoints, commit it).
    fn flush(&mut self) -> Result<()>;
    /// At barrier `checkpoint`: close the epoch's output so the checkpoint
    /// can commit it. The returned state is stored in the checkpoint and
    /// given back to [`SinkFactory::recover`] and [`SinkFactory::create`] on
    /// restore; `None` for sinks without transactions.
    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<SinkSnapshot>>;
    /// Checkpoint `checkpoint` is durable: make what it covers visible.
    fn commit(&mut self, checkpoint: u64) -> Result<()>;
    /// Checkpoint `checkpoint` failed: what it covered waits for the next
    /// one.
    fn abort(&mut self, checkpoint: u64) -> Result<()>;
    /// The partition is done; `end` says whether its output is final.
    fn end(&mut self, end: End) -> Result<()>;
}

/// Makes a job's sinks and settles its output on start.
pub trait SinkFactory: Send + Sync {
    /// Check what can be checked without touching output.
    fn validate(&self) -> Result<()>;
    /// Fence earlier writers of the output of partitions `0..partitions`
    /// before any state is read (a group job's new owner of a partition):
    /// whatever they commit after this fails. Default: nothing to fence.
    fn fence(&self, _partitions: usize) -> Result<()> {
        Ok(())
    }
    /// Bring the output to a restored checkpoint (`restored`: each
    /// partition's sink state in it) or, for a fresh run (`None`), clear it.
    /// Called once, after every operator accepted its state and before
    /// any sink is created. It may still refuse the run (nothing written).
    /// Records it cannot write go to `dead_letters`.
    fn recover(
        &self,
        restored: Option<&[Option<RestoredSink>]>,
        dead_letters: &Arc<DeadLetters>,
    ) -> Result<()>;
    /// The sink of `partition`, continuing from its restored state.
    fn create(
        &self,
        partition: usize,
        restored: Option<&RestoredSink>,
        dead_letters: &Arc<DeadLetters>,
    ) -> Result<Box<dyn Sink>>;
    /// A restore point's sink states (one per partition it holds) for a
    /// job with `partitions` partitions: a rescaled restore. Pure: nothing
    /// is touched. `Err` says why this sink's state cannot move to other
    /// partitions and what to do. The default takes a restore point
    /// without sink state and refuses any other.
    fn rescale(
        &self,
        states: &[Option<RestoredSink>],
        partitions: usize,
    ) -> std::result::Result<Vec<Option<RestoredSink>>, String> {
        if states.iter().all(Option::is_none) {
            return Ok(vec![None; partitions]);
        }
        Err(format!(
            "its sink keeps state per partition that it cannot move to other partitions: \
             restore it with its {} partitions",
            states.len()
        ))
    }
}

/// The sink factory for `spec` of job `job`; `checkpoints` says whether
/// output can wait for checkpoints to commit (exactly once).
/// Where a sink keeps data that must outlive a crash until a checkpoint
/// covers it, and that its memory budget does not hold (the job's state
/// store).
pub trait Spill: Send + Sync {
    /// Write `bytes` at `key`.
    fn put(&self, key: &str, bytes: bytes::Bytes) -> Result<()>;
    /// Read `key`; `None` if it does not exist.
    fn get(&self, key: &str) -> Result<Option<bytes::Bytes>>;
    /// Delete `key`; nothing there is not an error.
    fn delete(&self, key: &str) -> Result<()>;
}

/// The sink factory for `spec`; `spill` is the job's state store, when
/// checkpoints are on.
pub fn open(
    spec: &SinkSpec,
    job: &str,
    spill: Option<Arc<dyn Spill>>,
) -> Result<Box<dyn SinkFactory>> {
    let checkpoints = spill.is_some();
    Ok(match spec {
        SinkSpec::Stdout => Box::new(stdout::StdoutFactory),
        SinkSpec::Files(spec) => {
            Box::new(file::FileSinkFactory::new(spec.clone(), job, checkpoints))
        }
        SinkSpec::Kafka(spec) => Box::new(kafka::KafkaSinkFactory::new(spec.clone(), job, spill)?),
    })
}
