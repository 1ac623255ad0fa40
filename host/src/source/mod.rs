//! Sources: connectors that read records and hand them to the runtime.
//!
//! A source is resolved from the job file by [`open`], which checks
//! everything it can (paths, formats, the restored position against the
//! input) before the job touches any output or state. It then [`Source::run`]s
//! on the job's source thread, writing into an [`Output`] (the runtime's
//! router, which it knows only through this trait): records with their
//! [`Origin`], malformed input, and, when the output says a barrier is due,
//! the barrier with the source's [`Position`] at that record boundary. The
//! position is opaque to the runtime: the connector that wrote it reads it
//! back on restore.
//!
//! Each connector is a folder (`file/`, `kafka/`) holding its job-file table
//! and its resolution (`config.rs`) beside the source itself; `resolve.rs`
//! holds what a table resolves to ([`SourceSpec`]) and what the connectors
//! share in resolving theirs. A new connector is a folder, a variant of
//! [`SourceSpec`], an arm in `config::SourceConfig` and one in [`open`].

pub(crate) mod file;
mod format;
pub(crate) mod hybrid;
pub(crate) mod kafka;
mod progress;
pub(crate) mod resolve;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

use crate::Result;
use crate::batch::{Origin, Origins};

pub use progress::{SourceFigures, SourcePhase, SourceProgress, SwitchFigures};
pub(crate) use resolve::SourceSpec;

/// How a source run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The input ended (a bounded source read everything).
    EndOfInput,
    /// The job was stopped (Ctrl-C, `weir stop`, a failed task).
    Stopped,
}

/// A source's position at a record boundary, opaque to the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    /// The reader's own position (files: file, offset, line); `null` if
    /// it has none beyond its partitions'.
    pub reader: Value,
    /// Per partition (Kafka: the next offset of each); empty for sources
    /// with one position for all partitions.
    pub partitions: Vec<(usize, Value)>,
}

/// A record inside a text handed to [`Output::records`]: byte ranges of its
/// key and its value (the whole line), and the place its origin names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Start of the key.
    pub key_start: u32,
    /// End of the key.
    pub key_end: u32,
    /// Start of the value.
    pub start: u32,
    /// End of the value.
    pub end: u32,
    /// The origin's offset (files: the line number).
    pub line: u64,
}

impl RecordSpan {
    /// The key's bytes in `text`.
    #[inline(always)]
    pub fn key<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.key_start as usize..self.key_end as usize]
    }

    /// The value's bytes in `text`.
    #[inline(always)]
    pub fn value<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.start as usize..self.end as usize]
    }

    /// The record's origin in `unit`.
    #[inline(always)]
    pub fn origin(&self, unit: u32) -> Origin {
        Origin {
            unit,
            offset: self.line,
        }
    }
}

/// [`Output::records`] as one [`Output::record`] per span: the trait's
/// default, and the router's way when it has several partitions.
#[inline(always)]
pub fn record_each<O: Output + ?Sized>(
    out: &mut O,
    text: &[u8],
    spans: &[RecordSpan],
    unit: u32,
) -> ControlFlow<()> {
    for s in spans {
        out.record(
            Some(s.key(text)),
            s.value(text),
            crate::batch::NO_TIMESTAMP,
            s.origin(unit),
        )?;
    }
    ControlFlow::Continue(())
}

/// Where a source writes: the runtime's router, as a connector sees it.
/// `Break` means the job is stopping (a savepoint with stop was taken, or
/// the tasks hung up): the source returns [`Completion::Stopped`].
pub trait Output {
    /// Route one record to its partition (`key: None`: round-robin).
    fn record(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()>;
    /// Route one record to `partition` (sources whose partitions are the
    /// job's, such as Kafka's): no re-hashing, and the partition keeps its
    /// own event time and watermark.
    fn record_in(
        &mut self,
        partition: usize,
        key: &[u8],
        value: &[u8],
        timestamp: i64,
        origin: Origin,
    ) -> ControlFlow<()>;
    /// Route records cut from one `text`, in order, each keyed, without an
    /// event time, from `unit` (its origin's offset is the span's `line`):
    /// the same as a [`Output::record`] for each, in one call.
    fn records(&mut self, text: &[u8], spans: &[RecordSpan], unit: u32) -> ControlFlow<()> {
        record_each(self, text, spans, unit)
    }
    /// Send input that could not be parsed to the dead-letter output.
    fn malformed(&mut self, origin: Origin, reason: &str, raw: &[u8]) -> Result<()>;
    /// Between chunks of input: send batches older than the linger time.
    fn tick(&mut self) -> ControlFlow<()>;
    /// The input is idle: send every partly filled batch and the watermark.
    fn flush(&mut self) -> ControlFlow<()>;
    /// A barrier due now (a trigger, or the checkpoint interval). Sources
    /// ask between records, about once per chunk of input, and hand the
    /// token back at once with their position ([`Output::barrier`]).
    fn barrier_due(&mut self) -> Option<Barrier>;
    /// A barrier due before a record with event time `timestamp` (the
    /// event-time savepoint schedule).
    fn event_time_barrier(&mut self, timestamp: i64) -> Option<Barrier>;
    /// Inject the barrier `token` stands for after everything routed so
    /// far, at `position`.
    fn barrier(&mut self, token: Barrier, position: Position) -> ControlFlow<()>;
    /// A bounded source read all its input, up to `position`: the runtime
    /// fires the remaining timers and, with checkpoints on, takes a final
    /// checkpoint at `position`, so that all output (also what the timers
    /// emit) is committed by a checkpoint like any other. The source then
    /// returns [`Completion::EndOfInput`].
    fn end_of_input(&mut self, position: Position) -> ControlFlow<()>;
    /// The id the next barrier will get (`None`: no checkpoints).
    fn next_barrier_id(&self) -> Option<u64>;
    /// The newest checkpoint whose manifest is durable and whose output
    /// every sink has committed, if any: how far a source may tell the
    /// outside world it got (a consumer group's offsets).
    fn committed_checkpoint(&self) -> Option<u64>;
    /// Whether the job is stopping (the tasks hung up).
    fn is_stopping(&self) -> bool;
    /// Count bytes read, for progress.
    fn read_bytes(&mut self, n: u64);
    /// Count a finished unit of input (a file), for progress.
    fn unit_done(&mut self);
    /// Each partition's lag behind the end of its input (Kafka), for
    /// progress and metrics.
    /// `lag` in records, `age_ms` in time (how old the last record read
    /// is while records are left; `-1` unknown).
    fn report_lag(&mut self, lag: &[i64], age_ms: &[i64]);
}

/// A barrier the runtime asks a source to place at its next record
/// boundary: an opaque token, handed back with the source's position there
/// ([`Output::barrier`]). What the barrier is (checkpoint, savepoint, swap)
/// is the runtime's business.
#[derive(Debug)]
#[must_use = "a barrier token is handed back with the position"]
pub struct Barrier {
    seq: u64,
}

impl Barrier {
    /// The runtime's token number `seq`.
    pub(crate) fn new(seq: u64) -> Self {
        Self { seq }
    }

    /// The number the runtime gave it.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

/// A running source.
pub trait Source: Send {
    /// Connector name recorded in checkpoints (`files`, `kafka`).
    fn connector(&self) -> &'static str;
    /// The number of partitions the input has (Kafka: the topic's), which
    /// the job's partitions must be; `None`: any (files).
    fn partitions(&self) -> Option<usize> {
        None
    }
    /// Where records came from, for dead letters.
    fn origins(&self) -> Arc<dyn Origins>;
    /// How far the source has come (files and hybrid sources), for the
    /// progress display and `/status`; `None`: nothing beyond the job's
    /// counters.
    fn progress(&self) -> Option<Arc<SourceProgress>> {
        None
    }
    /// Produce records into `out` until the input ends or the job stops.
    fn run(&mut self, out: &mut dyn Output) -> Result<Completion>;
}

/// What a restored source gets back: what it recorded at the barrier.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The connector that wrote it.
    pub connector: String,
    /// The reader's own position.
    pub reader: Value,
    /// Each partition's position, in partition order.
    pub partitions: Vec<Value>,
}

/// Resolve and check the source of `spec`, restored to `restored` if given.
/// Nothing is read yet; a bad path or a position that does not fit the
/// input is refused here, before the job touches output or state.
pub fn open(
    spec: &SourceSpec,
    stop: Arc<AtomicBool>,
    restored: Option<Restored>,
) -> Result<Box<dyn Source>> {
    match spec {
        SourceSpec::Files(spec) => Ok(Box::new(file::FileSource::open(
            spec.clone(),
            stop,
            restored,
        )?)),
        SourceSpec::Kafka(spec) => {
            let (spec, restored) = match restored {
                Some(r) => hybrid::kafka_from_files(spec, hybrid::live_part(r, &spec.topic)?)?,
                None => (spec.clone(), None),
            };
            Ok(Box::new(kafka::KafkaSource::open(spec, stop, restored)?))
        }
        SourceSpec::Hybrid(spec) => Ok(Box::new(hybrid::HybridSource::open(
            (**spec).clone(),
            stop,
            restored,
        )?)),
    }
}
