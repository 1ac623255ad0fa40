//! The job file a user writes (TOML, [`JobFile`]) and the resolved [`Plan`]
//! the runtime executes. Unknown fields are refused, every field has a
//! documented default, and relative paths resolve against the job file's
//! folder.
//!
//! ```toml
//! name = "state-machine"
//! parallelism = 2
//!
//! [source]
//! type = "files"
//! path = "events/"
//! format = "csv"
//! key_column = 0
//! timestamp_column = 2
//!
//! [[operators]]
//! name = "state-machine"
//! plugin = "state-machine.wasm"
//!
//! [sink]
//! type = "file"
//! path = "out/"
//!
//! [dead_letter]
//! path = "out/dead-letters.jsonl"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::checkpoint::store::StoreSpec;
pub use crate::plugin::EngineSettings;
pub use crate::sink::{Delivery, FileSinkSpec, KafkaSinkSpec, SinkSpec};
pub use crate::source::SourceSpec;
pub use crate::source::file::{FileSourceSpec, Format, KeySpec};
pub use crate::source::kafka::{KafkaSourceSpec, OutOfRange, Start, Until};
use crate::{Error, Result};

/// A job file as the user writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// Job name, used in logs. Default: the job file's name without extension.
    pub name: Option<String>,
    /// Worker threads; they run the partitions. Default 1.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Partitions: the unit of state. Records are routed to them by key
    /// (Kafka's default partitioner); each has its own operator instances,
    /// state, timers and sink output. A savepoint restores only into the
    /// same number of partitions, with any parallelism. Default: the
    /// parallelism.
    pub partitions: Option<usize>,
    /// Where records come from.
    pub source: SourceConfig,
    /// The operator chain, applied in order. At least one.
    pub operators: Vec<OperatorConfig>,
    /// Where emitted records go. Default: stdout.
    #[serde(default)]
    pub sink: SinkConfig,
    /// Where malformed and rejected records go. Default: standard error.
    pub dead_letter: Option<DeadLetterConfig>,
    /// Sandbox limits and the compiled-component cache.
    #[serde(default)]
    pub engine: EngineConfig,
    /// How records are grouped into batches for the Wasm boundary.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Where checkpoints and savepoints are stored.
    #[serde(default)]
    pub state: StateConfig,
    /// Periodic checkpoints and scheduled savepoints.
    #[serde(default)]
    pub checkpoints: CheckpointConfig,
    /// The control endpoint a running job serves.
    #[serde(default)]
    pub control: ControlConfig,
}

/// The state store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `file:///abs/path`, a folder path (relative to the job file),
    /// `memory://` or `s3://bucket/prefix`. Default `weir-state`.
    #[serde(default = "default_state_url")]
    pub url: String,
    /// S3 endpoint. Default `AWS_ENDPOINT`.
    pub endpoint: Option<String>,
    /// S3 region. Default `AWS_REGION`.
    pub region: Option<String>,
    /// S3 access key id. Default `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// S3 secret access key. Default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP. Default `AWS_ALLOW_HTTP`.
    pub allow_http: Option<bool>,
}

fn default_state_url() -> String {
    "weir-state".into()
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            url: default_state_url(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: None,
        }
    }
}

/// Checkpointing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Checkpoint every this many ms; 0 turns periodic checkpoints off
    /// (savepoints still work). Default 10000.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub interval_ms: u64,
    /// Complete checkpoints kept. Default 3.
    #[serde(default = "default_retain")]
    pub retain: usize,
    /// Take a savepoint whenever the watermark crosses a multiple of this
    /// many ms of event time (3600000: every hour). Default 0 (off).
    #[serde(default)]
    pub savepoint_every_event_time_ms: i64,
    /// Chunked snapshots: at a barrier a plugin built against
    /// weir:plugin@0.2.0 freezes its state and the task writes it out in
    /// chunks of about this many KiB between batches, so the stream does not
    /// stop for the whole serialization. 0 takes every snapshot in one
    /// blocking call instead. Default 1024.
    #[serde(default = "default_snapshot_chunk_kib")]
    pub snapshot_chunk_kib: u32,
    /// Turn checkpoints, savepoints and the exactly-once file sink off.
    /// Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_checkpoint_interval_ms() -> u64 {
    10_000
}
fn default_retain() -> usize {
    3
}
fn default_snapshot_chunk_kib() -> u32 {
    1024
}
fn default_true() -> bool {
    true
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval_ms: default_checkpoint_interval_ms(),
            retain: default_retain(),
            savepoint_every_event_time_ms: 0,
            snapshot_chunk_kib: default_snapshot_chunk_kib(),
            enabled: true,
        }
    }
}

/// The control endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Address to serve on; must be a loopback address. Port 0 picks a
    /// free port (the CLI finds it through a file in the run folder).
    /// Default `127.0.0.1:0`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Serve it at all. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_listen() -> String {
    "127.0.0.1:0".into()
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            enabled: true,
        }
    }
}

fn default_parallelism() -> usize {
    1
}

/// A source.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A directory of files read as one ordered stream.
    Files(FileSourceConfig),
    /// A Kafka topic; each of its partitions is a partition of the job.
    Kafka(KafkaSourceConfig),
}

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
    #[serde(default = "default_start")]
    pub start: String,
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
    /// librdkafka consumer properties, passed through. Default none.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_start() -> String {
    "earliest".into()
}
fn default_raw() -> Format {
    Format::Raw
}
fn default_idle_timeout_ms() -> u64 {
    10_000
}
fn default_fail() -> String {
    "fail".into()
}

/// A directory of files, read in name order as one stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The directory. Hidden files (`.name`) are skipped, so a writer can
    /// write `.name` and rename it when complete.
    pub path: PathBuf,
    /// Record format. Required.
    pub format: Format,
    /// CSV: 0-based column holding the key. Default: no key (round-robin).
    pub key_column: Option<usize>,
    /// JSON lines: top-level field holding the key (a string or a number).
    pub key_field: Option<String>,
    /// CSV: 0-based column holding the event time in ms. Default: none.
    pub timestamp_column: Option<usize>,
    /// JSON lines: top-level field holding the event time in ms (a number).
    pub timestamp_field: Option<String>,
    /// CSV: skip the first line of every file. Default false.
    #[serde(default)]
    pub header: bool,
    /// Keep watching the directory for new files until stopped. Default false.
    #[serde(default)]
    pub follow: bool,
    /// How often `follow` looks for new files, in ms. Default 200.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// The watermark trails the largest event time seen by this much (ms):
    /// how out of order events may arrive. Default 0.
    #[serde(default)]
    pub watermark_delay_ms: i64,
}

fn default_poll_ms() -> u64 {
    200
}

/// One operator of the chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Name used in logs, errors and dead letters.
    pub name: String,
    /// Path of the component (`.wasm`).
    pub plugin: PathBuf,
    /// Passed to the plugin's `init` as key/value strings. Default empty.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

/// A sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// One line per emitted record value on standard output.
    #[default]
    Stdout,
    /// A directory with JSON-lines part files per partition.
    File {
        /// The directory (created if missing).
        path: PathBuf,
    },
    /// A Kafka topic (it must exist).
    Kafka {
        /// Bootstrap servers. Required.
        brokers: String,
        /// The output topic. Required.
        topic: String,
        /// `exactly-once` (default with checkpoints on: output is produced
        /// in a transaction once the checkpoint covering it is durable) or
        /// `at-least-once` (produced right away, repeated after a restore).
        delivery: Option<String>,
        /// Topic for the exactly-once progress markers (created if
        /// missing). Default `<topic>.weir-progress`.
        progress_topic: Option<String>,
        /// librdkafka producer properties, passed through (e.g.
        /// `compression.type`, `linger.ms`, `batch.size`). Default none.
        #[serde(default)]
        properties: BTreeMap<String, String>,
    },
}

/// The dead-letter output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A JSON-lines file (appended to).
    pub path: PathBuf,
}

/// Sandbox limits and the compiled-component cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Longest a single call into a plugin may run, in ms. Default 10000.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Longest one `snapshot` or `restore` call may run, in ms: they
    /// serialize a whole state, so they are not held to the per-batch
    /// deadline. Default 600000 (10 minutes).
    #[serde(default = "default_state_call_timeout_ms")]
    pub state_call_timeout_ms: u64,
    /// Most linear memory one plugin instance may have, in MiB. Default 1024.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Where compiled components are cached (a private folder: mode 0700,
    /// owned by the user). Default `$WEIR_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/weir/components`, else `~/.cache/weir/components`;
    /// none of them: no cache.
    pub cache_dir: Option<PathBuf>,
}

fn default_call_timeout_ms() -> u64 {
    EngineSettings::DEFAULT_CALL_TIMEOUT_MS
}
fn default_state_call_timeout_ms() -> u64 {
    EngineSettings::DEFAULT_STATE_CALL_TIMEOUT_MS
}
fn default_memory_mb() -> u64 {
    EngineSettings::DEFAULT_MEMORY_MB
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            call_timeout_ms: default_call_timeout_ms(),
            state_call_timeout_ms: default_state_call_timeout_ms(),
            memory_mb: default_memory_mb(),
            cache_dir: None,
        }
    }
}

/// Batching across the Wasm boundary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records in one batch. Default 1024.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Most key and value bytes in one batch. Default 1 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Longest a partly filled batch waits when input is idle, in ms.
    /// Default 50.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

fn default_max_records() -> usize {
    1024
}
fn default_max_bytes() -> usize {
    1 << 20
}
fn default_linger_ms() -> u64 {
    50
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            linger_ms: default_linger_ms(),
        }
    }
}

impl JobFile {
    /// Read and parse a job file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(Error::io("reading job file", path))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parse a job file's text.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Check the job and resolve it into a plan. Relative paths resolve
    /// against `base` (the job file's folder).
    pub fn resolve(&self, default_name: &str, base: &Path) -> Result<Plan> {
        if self.parallelism == 0 {
            return Err(Error::Config("parallelism must be at least 1".into()));
        }
        if self.partitions == Some(0) {
            return Err(Error::Config("partitions must be at least 1".into()));
        }
        let name = self.job_name(default_name)?;
        let (source, watermark_delay_ms) = self.resolve_source(base, &name)?;
        let sink = self.resolve_sink(base)?;
        let dead_letter = self.dead_letter.as_ref().map(|d| base.join(&d.path));
        if let SourceSpec::Files(src) = &source {
            outside_source(&src.dir, &sink, dead_letter.as_deref())?;
        }
        let partitions = match (&source, self.partitions) {
            (_, Some(p)) => p,
            // The topic's partitions, found when the source connects.
            (SourceSpec::Kafka(_), None) => 0,
            (SourceSpec::Files(_), None) => self.parallelism,
        };
        let idle_timeout = match &self.source {
            SourceConfig::Kafka(k) => Duration::from_millis(k.idle_timeout_ms.max(1)),
            SourceConfig::Files(_) => Duration::from_millis(default_idle_timeout_ms()),
        };
        Ok(Plan {
            name,
            parallelism: self.parallelism,
            partitions,
            source,
            watermark_delay_ms,
            idle_timeout,
            operators: self.resolve_operators(base)?,
            sink,
            dead_letter,
            engine: EngineSettings {
                call_timeout: Duration::from_millis(self.engine.call_timeout_ms.max(1)),
                state_call_timeout: Duration::from_millis(self.engine.state_call_timeout_ms.max(1)),
                memory_bytes: self.engine.memory_mb.saturating_mul(1 << 20) as usize,
                cache_dir: self.engine.cache_dir.as_ref().map(|d| base.join(d)),
            },
            batch: BatchSettings {
                max_records: self.batch.max_records.max(1),
                max_bytes: self.batch.max_bytes.max(1),
                linger: Duration::from_millis(self.batch.linger_ms),
            },
            checkpoint: self.resolve_checkpoints(base),
            control: self.resolve_control()?,
        })
    }

    /// The job name: it names folders in the state store.
    fn job_name(&self, default_name: &str) -> Result<String> {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_string());
        if name.is_empty()
            || name.chars().all(|c| c == '.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(Error::Config(format!(
                "job name `{name}`: use letters, digits, `-`, `_` and `.` (it names folders in the state store)"
            )));
        }
        Ok(name)
    }

    /// The sink.
    fn resolve_sink(&self, base: &Path) -> Result<SinkSpec> {
        Ok(match &self.sink {
            SinkConfig::Stdout => SinkSpec::Stdout,
            SinkConfig::File { path } => SinkSpec::Files(FileSinkSpec {
                dir: base.join(path),
            }),
            SinkConfig::Kafka {
                brokers,
                topic,
                delivery,
                progress_topic,
                properties,
            } => SinkSpec::Kafka(KafkaSinkSpec {
                brokers: brokers.clone(),
                topic: topic.clone(),
                delivery: match delivery.as_deref() {
                    // Exactly once commits at checkpoints: the default only
                    // when there are checkpoints.
                    None if self.checkpoints.enabled => Delivery::ExactlyOnce,
                    None => Delivery::AtLeastOnce,
                    Some("exactly-once") => Delivery::ExactlyOnce,
                    Some("at-least-once") => Delivery::AtLeastOnce,
                    Some(other) => {
                        return Err(Error::Config(format!(
                            "sink delivery `{other}`: use `exactly-once` or `at-least-once`"
                        )));
                    }
                },
                progress_topic: progress_topic
                    .clone()
                    .unwrap_or_else(|| format!("{topic}.weir-progress")),
                properties: properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }),
        })
    }

    /// The source and the watermark delay.
    fn resolve_source(&self, base: &Path, job: &str) -> Result<(SourceSpec, i64)> {
        let src = match &self.source {
            SourceConfig::Files(src) => src,
            SourceConfig::Kafka(k) => return resolve_kafka_source(k, job),
        };
        let (key, timestamp) = key_and_time(
            src.format,
            (src.key_column, &src.key_field),
            (src.timestamp_column, &src.timestamp_field),
        )?;
        if src.format == Format::Raw {
            return Err(Error::Config(
                "file sources read csv, jsonl or lines, not raw".into(),
            ));
        }
        let spec = FileSourceSpec {
            dir: base.join(&src.path),
            format: src.format,
            key,
            timestamp,
            header: src.header,
            follow: src.follow,
            poll_interval: Duration::from_millis(src.poll_interval_ms.max(1)),
            until: None,
        };
        Ok((SourceSpec::Files(spec), src.watermark_delay_ms.max(0)))
    }

    /// The operator chain: at least one, names unique.
    fn resolve_operators(&self, base: &Path) -> Result<Vec<OperatorSpec>> {
        if self.operators.is_empty() {
            return Err(Error::Config(
                "a job needs at least one [[operators]] entry".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        self.operators
            .iter()
            .map(|op| {
                if !names.insert(op.name.clone()) {
                    return Err(Error::Config(format!(
                        "two operators are named `{}`",
                        op.name
                    )));
                }
                Ok(OperatorSpec {
                    name: op.name.clone(),
                    plugin: PluginSource::Path(base.join(&op.plugin)),
                    config: op
                        .config
                        .iter()
                        .map(|(k, v)| (k.clone(), toml_scalar(v)))
                        .collect(),
                })
            })
            .collect()
    }

    fn resolve_checkpoints(&self, base: &Path) -> Option<CheckpointPlan> {
        self.checkpoints.enabled.then(|| CheckpointPlan {
            store: StoreSpec {
                url: resolve_store_url(&self.state.url, base),
                endpoint: self.state.endpoint.clone(),
                region: self.state.region.clone(),
                access_key_id: self.state.access_key_id.clone(),
                secret_access_key: self.state.secret_access_key.clone(),
                allow_http: self.state.allow_http,
            },
            interval: (self.checkpoints.interval_ms > 0)
                .then(|| Duration::from_millis(self.checkpoints.interval_ms)),
            retain: self.checkpoints.retain.max(1),
            savepoint_every_event_time_ms: (self.checkpoints.savepoint_every_event_time_ms > 0)
                .then_some(self.checkpoints.savepoint_every_event_time_ms),
            snapshot_chunk_bytes: (self.checkpoints.snapshot_chunk_kib > 0)
                .then(|| self.checkpoints.snapshot_chunk_kib.saturating_mul(1024)),
        })
    }

    /// The control endpoint's address: loopback only.
    fn resolve_control(&self) -> Result<Option<std::net::SocketAddr>> {
        if !self.control.enabled {
            return Ok(None);
        }
        let addr: std::net::SocketAddr =
            self.control.listen.parse().map_err(|e| {
                Error::Config(format!("control.listen `{}`: {e}", self.control.listen))
            })?;
        if !addr.ip().is_loopback() {
            return Err(Error::Config(format!(
                "control.listen `{addr}` must be a loopback address (127.0.0.1)"
            )));
        }
        Ok(Some(addr))
    }
}

/// Refuse a sink or dead-letter path inside the source folder: the job
/// would read its own output.
fn outside_source(source: &Path, sink: &SinkSpec, dead_letter: Option<&Path>) -> Result<()> {
    let normal = |p: &Path| -> PathBuf {
        let abs = std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf());
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    let src = normal(source);
    let inside = |p: &Path| normal(p).starts_with(&src);
    if let SinkSpec::Files(f) = sink
        && inside(&f.dir)
    {
        return Err(Error::Config(format!(
            "the sink folder {} is inside the source folder {}: the job would read its own output",
            f.dir.display(),
            source.display()
        )));
    }
    if let Some(d) = dead_letter
        && inside(d)
    {
        return Err(Error::Config(format!(
            "the dead-letter file {} is inside the source folder {}: the job would read it as input",
            d.display(),
            source.display()
        )));
    }
    Ok(())
}

/// The key and event-time locations of a record format: a CSV column or
/// a JSON field (`None`: not present, or for Kafka the record's own).
fn key_and_time(
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
    Ok((key, timestamp))
}

/// `timestamp:<ms or RFC 3339>` as ms; `None` if `v` is not a time setting.
fn time_setting(what: &str, v: &str) -> Result<Option<i64>> {
    let Some(t) = v.strip_prefix("timestamp:") else {
        return Ok(None);
    };
    crate::checkpoint::manifest::parse_time(t)
        .map(Some)
        .ok_or_else(|| {
            Error::Config(format!(
                "{what} `{v}`: not a time (ms or YYYY-MM-DDTHH:MM:SSZ)"
            ))
        })
}

fn resolve_kafka_source(k: &KafkaSourceConfig, job: &str) -> Result<(SourceSpec, i64)> {
    let (key, timestamp) = key_and_time(
        k.format,
        (k.key_column, &k.key_field),
        (k.timestamp_column, &k.timestamp_field),
    )?;
    let start = match k.start.as_str() {
        "earliest" => Start::Earliest,
        "latest" => Start::Latest,
        "committed" => Start::Committed,
        other => Start::Timestamp(time_setting("start", other)?.ok_or_else(|| {
            Error::Config(format!(
                "start `{other}`: use earliest, latest, committed or timestamp:<time>"
            ))
        })?),
    };
    let until = match k.until.as_deref() {
        None => None,
        Some("latest") => Some(Until::Latest),
        Some(other) => Some(Until::Timestamp(time_setting("until", other)?.ok_or_else(
            || Error::Config(format!("until `{other}`: use latest or timestamp:<time>")),
        )?)),
    };
    let out_of_range = match k.on_offset_out_of_range.as_str() {
        "fail" => OutOfRange::Fail,
        "earliest" => OutOfRange::Earliest,
        "latest" => OutOfRange::Latest,
        other => {
            return Err(Error::Config(format!(
                "on_offset_out_of_range `{other}`: use fail, earliest or latest"
            )));
        }
    };
    let start_offsets = k
        .start_offsets
        .iter()
        .map(|(p, o)| {
            p.parse::<usize>().map(|p| (p, *o)).map_err(|_| {
                Error::Config(format!("start_offsets: `{p}` is not a partition number"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = KafkaSourceSpec {
        brokers: k.brokers.clone(),
        topic: k.topic.clone(),
        group_id: k.group_id.clone().unwrap_or_else(|| format!("weir-{job}")),
        start,
        start_offsets,
        until,
        format: k.format,
        key,
        timestamp,
        out_of_range,
        properties: k
            .properties
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect(),
    };
    Ok((SourceSpec::Kafka(spec), k.watermark_delay_ms.max(0)))
}

/// A folder path becomes an absolute `file://` URL; URLs stay as they are.
fn resolve_store_url(url: &str, base: &Path) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    let path = base.join(url);
    let path = if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|d| d.join(&path))
            .unwrap_or(path)
    };
    format!("file://{}", path.display())
}

fn toml_scalar(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A `.wasm` file.
    Path(PathBuf),
    /// Component bytes held in memory (the demo's embedded plugin).
    Bytes(Arc<[u8]>),
}

/// A resolved operator.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    /// Name for logs, errors and dead letters.
    pub name: String,
    /// The component.
    pub plugin: PluginSource,
    /// `init` configuration.
    pub config: Vec<(String, String)>,
}

/// Resolved batching settings.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Most records per batch.
    pub max_records: usize,
    /// Most key+value bytes per batch.
    pub max_bytes: usize,
    /// Idle flush delay.
    pub linger: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        let b = BatchConfig::default();
        Self {
            max_records: b.max_records,
            max_bytes: b.max_bytes,
            linger: Duration::from_millis(b.linger_ms),
        }
    }
}

/// Resolved checkpoint settings.
#[derive(Debug, Clone)]
pub struct CheckpointPlan {
    /// The state store.
    pub store: StoreSpec,
    /// Periodic checkpoint interval (`None`: off).
    pub interval: Option<Duration>,
    /// Complete checkpoints kept.
    pub retain: usize,
    /// Event-time savepoint schedule (ms).
    pub savepoint_every_event_time_ms: Option<i64>,
    /// Chunk size of chunked snapshots (`None`: blocking snapshots).
    pub snapshot_chunk_bytes: Option<u32>,
}

impl CheckpointPlan {
    /// The default chunk size of chunked snapshots, in bytes.
    pub const DEFAULT_CHUNK_BYTES: u32 = 1 << 20;
}

/// What the runtime executes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Job name.
    pub name: String,
    /// Worker threads.
    pub parallelism: usize,
    /// Partitions (the unit of state); partition `p` runs on thread
    /// `p % parallelism`.
    pub partitions: usize,
    /// The source.
    pub source: SourceSpec,
    /// The watermark trails the largest event time seen by this much (ms).
    pub watermark_delay_ms: i64,
    /// A partition idle this long stops holding back the watermark
    /// (sources with their own partitions).
    pub idle_timeout: Duration,
    /// The operator chain.
    pub operators: Vec<OperatorSpec>,
    /// The sink.
    pub sink: SinkSpec,
    /// Dead-letter file (`None`: standard error).
    pub dead_letter: Option<PathBuf>,
    /// Sandbox settings.
    pub engine: EngineSettings,
    /// Batching settings.
    pub batch: BatchSettings,
    /// Checkpointing (`None`: no checkpoints, savepoints or restores).
    pub checkpoint: Option<CheckpointPlan>,
    /// Control endpoint address (`None`: not served).
    pub control: Option<std::net::SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
        parallelism = 4
        [source]
        type = "files"
        path = "in"
        format = "csv"
        key_column = 0
        timestamp_column = 2
        [[operators]]
        name = "sm"
        plugin = "sm.wasm"
        config = { timeout_ms = 500, mode = "strict" }
        [sink]
        type = "file"
        path = "out"
    "#;

    #[test]
    fn resolves_paths_and_defaults() {
        let plan = JobFile::parse(JOB)
            .unwrap()
            .resolve("job", Path::new("/jobs"))
            .unwrap();
        assert_eq!(plan.name, "job");
        assert_eq!(plan.parallelism, 4);
        assert_eq!(plan.partitions, 4);
        let SourceSpec::Files(src) = &plan.source else {
            panic!("a file source")
        };
        assert_eq!(src.dir, Path::new("/jobs/in"));
        assert_eq!(src.key, KeySpec::Column(0));
        assert_eq!(src.timestamp, KeySpec::Column(2));
        assert_eq!(
            plan.operators[0].config,
            vec![
                ("mode".into(), "strict".into()),
                ("timeout_ms".into(), "500".into())
            ]
        );
        assert!(matches!(plan.sink, SinkSpec::Files(ref s) if s.dir == Path::new("/jobs/out")));
        assert_eq!(plan.engine.call_timeout, Duration::from_secs(10));
        assert_eq!(plan.batch.max_records, 1024);
    }

    #[test]
    fn resolves_kafka_source_and_sink() {
        let job = r#"
            parallelism = 2
            [source]
            type = "kafka"
            brokers = "127.0.0.1:9092"
            topic = "events"
            format = "csv"
            key_column = 0
            start = "timestamp:2023-11-14T22:13:20Z"
            start_offsets = { 3 = 40 }
            until = "latest"
            [[operators]]
            name = "sm"
            plugin = "sm.wasm"
            [sink]
            type = "kafka"
            brokers = "127.0.0.1:9092"
            topic = "alerts"
            properties = { "compression.type" = "lz4" }
        "#;
        let plan = JobFile::parse(job)
            .unwrap()
            .resolve("job", Path::new("/jobs"))
            .unwrap();
        assert_eq!(plan.partitions, 0, "the topic's, found at start");
        let SourceSpec::Kafka(k) = &plan.source else {
            panic!("a kafka source")
        };
        assert_eq!(k.start, Start::Timestamp(1_700_000_000_000));
        assert_eq!(k.start_offsets, vec![(3, 40)]);
        assert_eq!(k.until, Some(Until::Latest));
        assert_eq!(k.key, KeySpec::Column(0));
        assert_eq!(k.timestamp, KeySpec::None, "the Kafka timestamp");
        assert_eq!(k.group_id, "weir-job");
        let SinkSpec::Kafka(s) = &plan.sink else {
            panic!("a kafka sink")
        };
        assert_eq!(s.delivery, Delivery::ExactlyOnce);
        assert_eq!(s.progress_topic, "alerts.weir-progress");
        assert_eq!(
            s.properties,
            vec![("compression.type".into(), "lz4".into())]
        );
        // Without checkpoints nothing could commit exactly once: the
        // default is then at least once.
        let off = JobFile::parse(&format!("{job}\n[checkpoints]\nenabled = false\n"))
            .unwrap()
            .resolve("job", Path::new("/jobs"))
            .unwrap();
        let SinkSpec::Kafka(s) = &off.sink else {
            panic!("a kafka sink")
        };
        assert_eq!(s.delivery, Delivery::AtLeastOnce);
        let bad = JobFile::parse(&job.replace("\"latest\"\n", "\"soon\"\n")).unwrap();
        let err = bad.resolve("job", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("until `soon`"), "{err}");
    }

    #[test]
    fn refuses_unknown_fields_and_bad_combinations() {
        let err = JobFile::parse(&JOB.replace("parallelism", "paralelism")).unwrap_err();
        assert!(err.to_string().contains("paralelism"), "{err}");
        let job = JobFile::parse(&JOB.replace("key_column = 0", "key_field = \"a\"")).unwrap();
        let err = job.resolve("job", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("key_column"), "{err}");
        let job = JobFile::parse(&JOB.replace("parallelism = 4", "parallelism = 0")).unwrap();
        assert!(job.resolve("job", Path::new("/")).is_err());
        for bad in ["../x", ".", ".."] {
            let job = JobFile::parse(&format!("name = \"{bad}\"\n{JOB}")).unwrap();
            let err = job.resolve("job", Path::new("/")).unwrap_err();
            assert!(err.to_string().contains("job name"), "{bad}: {err}");
        }
        // Output inside the input folder would be read back as input.
        let job = JobFile::parse(&JOB.replace("path = \"out\"", "path = \"in/out\"")).unwrap();
        let err = job.resolve("job", Path::new("/jobs")).unwrap_err();
        assert!(err.to_string().contains("its own output"), "{err}");
        let job = JobFile::parse(&format!(
            "{JOB}\n[dead_letter]\npath = \"in/../in/dead.jsonl\"\n"
        ))
        .unwrap();
        let err = job.resolve("job", Path::new("/jobs")).unwrap_err();
        assert!(err.to_string().contains("dead-letter file"), "{err}");
    }
}
