//! The Kafka source's job-file table (`[source] type = "kafka"`) and what
//! it resolves to.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::source::file::{Format, KeySpec};
use crate::source::resolve::{self, DEFAULT_IDLE_TIMEOUT_MS, ResolvedSource, SourceSpec};
use crate::{Error, Result};

/// A Kafka topic as a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, e.g. `127.0.0.1:9092`. Required.
    pub brokers: String,
    /// The topic. Required.
    pub topic: String,
    /// Consumer group offsets are committed to after each checkpoint (for
    /// lag tools; a restore never reads them). Default `weir-<job>`.
    pub group_id: Option<String>,
    /// Where a fresh run starts: `earliest`, `latest`, `committed` (the
    /// group's offsets) or `timestamp:<ms or RFC 3339>`. Default `earliest`.
    #[serde(default)]
    pub start: Option<String>,
    /// Start offsets for some partitions, overriding `start`:
    /// `{ 0 = 1200, 3 = 40 }`. Default none.
    #[serde(default)]
    pub start_offsets: BTreeMap<String, i64>,
    /// End of a bounded run: `latest` (the end offsets seen at start) or
    /// `timestamp:<ms or RFC 3339>`. Default: none (run until stopped).
    pub until: Option<String>,
    /// How record values are parsed: `raw`, `csv`, `jsonl`, `lines`.
    /// Default `raw`.
    #[serde(default = "default_raw")]
    pub format: Format,
    /// CSV: key column in the value. Default: the Kafka record key.
    pub key_column: Option<usize>,
    /// JSON lines: key field in the value. Default: the Kafka record key.
    pub key_field: Option<String>,
    /// CSV: event-time column (ms). Default: the Kafka record timestamp.
    pub timestamp_column: Option<usize>,
    /// JSON lines: event-time field (ms). Default: the Kafka timestamp.
    pub timestamp_field: Option<String>,
    /// The watermark trails each partition's largest event time by this
    /// much (ms). Default 0.
    #[serde(default)]
    pub watermark_delay_ms: i64,
    /// A partition without records for this long (ms) stops holding back
    /// the job's watermark and follows the slowest active partition.
    /// Default 10000.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A restored offset no longer in the log: `fail`, `earliest`, `latest`.
    /// Default `fail`.
    #[serde(default = "default_fail")]
    pub on_offset_out_of_range: String,
    /// `manual` (default): this process reads every partition of the topic.
    /// `group`: several processes with the same job file and `group_id`
    /// share the partitions through the consumer group; each partition's
    /// state moves with it through the state store.
    #[serde(default)]
    pub assignment: Option<String>,
    /// Group mode's rebalance protocol: `classic` (default: the classic
    /// group protocol with the cooperative-sticky assignor, any broker) or
    /// `consumer` (KIP-848, brokers from Kafka 4.0).
    #[serde(default)]
    pub group_protocol: Option<String>,
    /// librdkafka properties for every client the source makes (the
    /// consumer, the lag reader): security (`security.protocol`, `sasl.*`,
    /// `ssl.*`) and tuning. The keys Weir owns (`group.id`: use
    /// `group_id`; `isolation.level`, `enable.auto.commit`, ...) are
    /// refused. Default none.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_raw() -> Format {
    Format::Raw
}
fn default_idle_timeout_ms() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}
fn default_fail() -> String {
    "fail".into()
}

/// Where a fresh run starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The first offset still in the log.
    Earliest,
    /// The end of the log at start (only new records).
    Latest,
    /// The group's committed offsets (earliest where it has none).
    Committed,
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// Where a bounded run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// The end offsets seen at start.
    Latest,
    /// The first record at or after this time (ms), exclusive.
    Timestamp(i64),
}

/// What to do when a restored offset is not in the log any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRange {
    /// Refuse the run (default).
    Fail,
    /// Start at the first offset still in the log.
    Earliest,
    /// Start at the end of the log.
    Latest,
}

/// A resolved Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSourceSpec {
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group offsets are committed to (lag tools).
    pub group_id: String,
    /// Where a fresh run starts.
    pub start: Start,
    /// Explicit start offsets for some partitions (override `start`).
    pub start_offsets: Vec<(usize, i64)>,
    /// The job file says where a fresh run starts (`start` or
    /// `start_offsets`): a run from a files job's savepoint starts there,
    /// not after the files.
    pub start_given: bool,
    /// Optional end of a bounded run.
    pub until: Option<Until>,
    /// How record values are parsed.
    pub format: Format,
    /// Key location in the value; `None`: the Kafka record key.
    pub key: KeySpec,
    /// Event-time location in the value; `None`: the Kafka timestamp.
    pub timestamp: KeySpec,
    /// A restored offset outside the log.
    pub out_of_range: OutOfRange,
    /// librdkafka consumer properties, passed through.
    pub properties: Vec<(String, String)>,
    /// Group mode (`assignment = "group"`): the rebalance protocol.
    pub group: Option<GroupProtocol>,
    /// A group member's run of one partition: read only this Kafka
    /// partition, as the run's partition 0, and commit no offsets (the
    /// group member does).
    pub only: Option<usize>,
}

/// The consumer group protocol of group mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// The classic protocol with the cooperative-sticky assignor.
    Classic,
    /// KIP-848 (`group.protocol=consumer`): the broker assigns.
    Consumer,
}

impl KafkaSourceSpec {
    /// The Kafka partition id of the run's partition `local`.
    pub(crate) fn kafka_id(&self, local: usize) -> i32 {
        self.only.unwrap_or(local) as i32
    }

    /// The run's partition of Kafka partition `id`, if it reads it.
    pub(crate) fn local(&self, id: i32) -> Option<usize> {
        match self.only {
            Some(p) => (p as i32 == id).then_some(0),
            None => usize::try_from(id).ok(),
        }
    }
}

impl KafkaSourceSpec {
    /// What a what-if fork reads: its own consumer group (offsets are
    /// committed there for lag tools), and an end: the offsets at its
    /// start, or event time `until`.
    pub(crate) fn bounded_for_fork(&mut self, until: Option<i64>) {
        self.group_id = format!("{}-fork", self.group_id);
        self.until = Some(match until {
            Some(t) => Until::Timestamp(t),
            None => Until::Latest,
        });
    }
}

impl KafkaSourceConfig {
    /// The resolved source of job `job` (it names the default group).
    pub(crate) fn resolve(&self, job: &str) -> Result<ResolvedSource> {
        crate::kafka::refuse_owned("[source]", self.properties.keys())?;
        let (key, timestamp) = resolve::key_and_time(
            self.format,
            (self.key_column, &self.key_field),
            (self.timestamp_column, &self.timestamp_field),
        )?;
        let start = match self.start.as_deref().unwrap_or("earliest") {
            "earliest" => Start::Earliest,
            "latest" => Start::Latest,
            "committed" => Start::Committed,
            other => Start::Timestamp(resolve::time_setting("start", other)?.ok_or_else(|| {
                Error::Config(format!(
                    "start `{other}`: use earliest, latest, committed or timestamp:<time>"
                ))
            })?),
        };
        let until = match self.until.as_deref() {
            None => None,
            Some("latest") => Some(Until::Latest),
            Some(other) => Some(Until::Timestamp(
                resolve::time_setting("until", other)?.ok_or_else(|| {
                    Error::Config(format!("until `{other}`: use latest or timestamp:<time>"))
                })?,
            )),
        };
        let out_of_range = match self.on_offset_out_of_range.as_str() {
            "fail" => OutOfRange::Fail,
            "earliest" => OutOfRange::Earliest,
            "latest" => OutOfRange::Latest,
            other => {
                return Err(Error::Config(format!(
                    "on_offset_out_of_range `{other}`: use fail, earliest or latest"
                )));
            }
        };
        let start_offsets = self
            .start_offsets
            .iter()
            .map(|(p, o)| {
                p.parse::<usize>().map(|p| (p, *o)).map_err(|_| {
                    Error::Config(format!("start_offsets: `{p}` is not a partition number"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let group = match (self.assignment.as_deref(), self.group_protocol.as_deref()) {
            (None | Some("manual"), None) => None,
            (None | Some("manual"), Some(_)) => {
                return Err(Error::Config(
                    "group_protocol applies to assignment = \"group\" only".into(),
                ));
            }
            (Some("group"), protocol) => {
                if self.group_id.is_none() {
                    return Err(Error::Config(
                        "assignment = \"group\" needs `group_id`: the processes that share the \
                         topic's partitions name the same group"
                            .into(),
                    ));
                }
                Some(match protocol.unwrap_or("classic") {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    other => {
                        return Err(Error::Config(format!(
                            "group_protocol `{other}`: use classic (cooperative-sticky) or \
                             consumer (KIP-848)"
                        )));
                    }
                })
            }
            (Some(other), _) => {
                return Err(Error::Config(format!(
                    "assignment `{other}`: use manual (this process reads every partition) or \
                     group (processes share them through the consumer group)"
                )));
            }
        };
        let spec = KafkaSourceSpec {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            group_id: self
                .group_id
                .clone()
                .unwrap_or_else(|| format!("weir-{job}")),
            start,
            start_offsets,
            start_given: self.start.is_some() || !self.start_offsets.is_empty(),
            until,
            format: self.format,
            key,
            timestamp,
            out_of_range,
            properties: self
                .properties
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect(),
            group,
            only: None,
        };
        Ok(ResolvedSource {
            spec: SourceSpec::Kafka(spec),
            watermark_delay_ms: self.watermark_delay_ms.max(0),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            own_partitions: true,
        })
    }
}
