//! What a source's job-file table resolves to ([`SourceSpec`], with the
//! watermark settings that go with it), and what the source connectors
//! share in resolving theirs: where the key and the event time are in a
//! record, and `timestamp:` settings.

use std::path::Path;
use std::time::Duration;

use super::file::{FileSourceSpec, Format, KeySpec};
use super::hybrid::HybridSourceSpec;
use super::kafka::KafkaSourceSpec;
use crate::{Error, Result};

/// How long a partition may go without records before it stops holding
/// back the watermark, unless the source sets it (ms).
pub(crate) const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10_000;

/// A resolved source: which connector, with its settings.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A directory of files.
    Files(FileSourceSpec),
    /// A Kafka topic.
    Kafka(KafkaSourceSpec),
    /// A folder of files, then a Kafka topic.
    Hybrid(Box<HybridSourceSpec>),
}

impl SourceSpec {
    /// The folder the source reads, if it reads one: the job refuses
    /// output inside it (it would read its own output).
    pub(crate) fn folder(&self) -> Option<&Path> {
        match self {
            SourceSpec::Files(spec) if spec.url.is_none() => Some(&spec.dir),
            SourceSpec::Files(_) => None,
            SourceSpec::Kafka(_) => None,
            SourceSpec::Hybrid(spec) if spec.files.url.is_none() => Some(&spec.files.dir),
            SourceSpec::Hybrid(_) => None,
        }
    }

    /// The same input as a bounded what-if fork reads it: to its end as of
    /// the fork's start, or to event time `until`, never following it.
    pub(crate) fn bounded_for_fork(&mut self, until: Option<i64>) {
        match self {
            SourceSpec::Files(spec) => spec.bounded_for_fork(until),
            SourceSpec::Kafka(spec) => spec.bounded_for_fork(until),
            // The files are bounded already; the topic as a Kafka fork.
            SourceSpec::Hybrid(spec) => spec.kafka.bounded_for_fork(until),
        }
    }
}

/// A source's table resolved: the connector's spec and the job-level
/// settings that come with it.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedSource {
    /// The source.
    pub spec: SourceSpec,
    /// The watermark trails the largest event time seen by this much (ms).
    pub watermark_delay_ms: i64,
    /// A partition idle this long stops holding back the watermark.
    pub idle_timeout: Duration,
    /// Whether the input has partitions of its own (a topic's, found when
    /// the source connects), which the job's partitions then default to.
    pub own_partitions: bool,
}

/// The key and event-time locations of a record format: a CSV column or
/// a JSON field (`None`: not present, or for Kafka the record's own).
pub(crate) fn key_and_time(
    format: Format,
    (key_column, key_field): (Option<usize>, &Option<String>),
    (ts_column, ts_field): (Option<usize>, &Option<String>),
) -> Result<(KeySpec, KeySpec)> {
    let key = match (format, key_column, key_field) {
        (Format::Csv, Some(c), None) => KeySpec::Column(c),
        (Format::Jsonl, None, Some(f)) => KeySpec::Field(f.clone()),
        (_, None, None) => KeySpec::None,
        (Format::Csv, _, Some(_)) => {
            return Err(Error::Config(
                "csv sources take `key_column`, not `key_field`".into(),
            ));
        }
        (Format::Jsonl, Some(_), _) => {
            return Err(Error::Config(
                "jsonl sources take `key_field`, not `key_column`".into(),
            ));
        }
        (Format::Lines | Format::Raw, _, _) => {
            return Err(Error::Config(
                "lines sources have no key: remove `key_column`/`key_field`".into(),
            ));
        }
    };
    let timestamp = match (format, ts_column, ts_field) {
        (Format::Csv, Some(c), None) => KeySpec::Column(c),
        (Format::Jsonl, None, Some(f)) => KeySpec::Field(f.clone()),
        (_, None, None) => KeySpec::None,
        _ => {
            return Err(Error::Config(
                "timestamps: csv sources take `timestamp_column`, jsonl sources `timestamp_field`, lines none"
                    .into(),
            ));
        }
    };
    if let (KeySpec::Column(k), KeySpec::Column(t)) = (&key, &timestamp)
        && k == t
    {
        return Err(Error::Config(format!(
            "`key_column` and `timestamp_column` are both column {k}: the key and the event \
             time are read from different columns (a record keyed by its time needs its time \
             in two columns)"
        )));
    }
    Ok((key, timestamp))
}

/// `timestamp:<ms or RFC 3339>` as ms; `None` if `v` is not a time setting.
pub(crate) fn time_setting(what: &str, v: &str) -> Result<Option<i64>> {
    let Some(t) = v.strip_prefix("timestamp:") else {
        return Ok(None);
    };
    crate::clock::parse_time(t).map(Some).ok_or_else(|| {
        Error::Config(format!(
            "{what} `{v}`: not a time (ms or YYYY-MM-DDTHH:MM:SSZ)"
        ))
    })
}
